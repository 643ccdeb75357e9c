"""The scenario reference, generated from the scenario's own schema: ``docs/scenario.md``.

Every key of :class:`sim.config.Scenario` and of the specs nested in it (profile, engine, router,
workload, arrivals, rate profiles, classes, lengths, measurement, cost) gets a row: its type,
default, allowed values and meaning. The type and the allowed values come from the pydantic
fields' annotations and constraints, the meaning from their ``description``, each section's
introduction from the spec's docstring; a discriminated union (profile kinds, arrival
processes, rate shapes, length distributions) gets a table per member. Nothing is written by
hand, so the reference cannot drift from the code: ``tests/test_reference.py`` fails when the
committed page differs from what this module renders. Regenerate it with::

    python -m sim.reference > docs/scenario.md
"""

from __future__ import annotations

import inspect
import json
import re
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, Discriminator
from pydantic.fields import FieldInfo

__all__ = ["REGENERATE", "scenario_reference", "scenario_specs"]

REGENERATE = "python -m sim.reference > docs/scenario.md"

_HEADER = f"""\
# Scenario reference

<!-- Generated from the scenario's schema by `{REGENERATE}`: do not edit by hand. -->

Every key a scenario can hold, generated from the schema that validates it (`sim/config.py` and
the specs it composes), so it is always the code's own account. A scenario is a YAML (`.yaml`,
`.yml`) or TOML (`.toml`) file, or a dict given to `load_scenario`. Every mapping is strict: a key
that is not listed here is an error. Only `workload` is required; any other key left out takes
the default shown.

In the tables, *required* means the key must be given, *unset* that it is optional and has no
value unless given, and `[]` in a path marks each entry of a list. Numbers are never coerced: a
boolean or a string is refused where a number is expected (an integer is accepted where a float
is), and infinite or NaN numbers are refused everywhere. Units are in the key names and
meanings: `_s` seconds, `_per_s` per second, `_gib` GiB, `_tb_s` TB/s, `_gb_s` GB/s, `usd` US
dollars, `_w` watts; lengths are in tokens.

How the keys work together, with worked examples and the rules checked across keys, is in the
[scenarios guide](scenarios-guide.md).
"""


# ---------------------------------------------------------------------------------------------
# Reading the schema: a field's annotation, unwrapped into what the tables need


@dataclass(frozen=True)
class _Union:
    """A discriminated union of specs: ``key`` names the member (``kind``, ``process``, ...);
    ``implied`` is the member a mapping without the key becomes (None: the key is required)."""

    key: str
    members: tuple[type[BaseModel], ...]
    implied: str | None = None


_Spec = Union[type[BaseModel], _Union]


@dataclass
class _Section:
    """One section of the page: a spec, or a union of specs, and every path it is used at."""

    target: _Spec
    paths: list[str] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9_]+", "-", self.paths[0].replace("[]", "").lower()).strip("-") or "top-level"

    @property
    def title(self) -> str:
        return f"`{self.paths[0]}`" if self.paths[0] else "Top level"


def _strip(tp: Any) -> tuple[Any, list[Any]]:
    """``tp`` without ``Annotated`` wrappers, and the metadata they carried (constraints, tags)."""
    meta: list[Any] = []
    while get_origin(tp) is Annotated:
        tp, *extra = get_args(tp)
        for m in extra:
            meta += m.metadata if isinstance(m, FieldInfo) else [m]
    return tp, meta


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _unwrap(tp: Any, meta: list[Any] = ()) -> tuple[Any, list[Any]]:  # type: ignore[assignment]
    """``tp`` without ``Annotated`` and ``| None``, and every constraint met on the way."""
    tp, inner = _strip(tp)
    meta = [*meta, *inner]
    if _is_union(tp) and type(None) in get_args(tp):
        rest = [a for a in get_args(tp) if a is not type(None)]
        tp, inner = _strip(rest[0] if len(rest) == 1 else Union[tuple(rest)])
        meta += inner
    return tp, meta


def _literal_values(tp: Any) -> tuple[Any, ...] | None:
    tp, _ = _strip(tp)
    return get_args(tp) if get_origin(tp) is Literal else None


def _as_union(tp: Any, meta: list[Any]) -> _Union | None:
    """A union of specs, with the key whose single-valued literal tells its members apart."""
    if not _is_union(tp):
        return None
    members = tuple(_strip(a)[0] for a in get_args(tp))
    if not all(isinstance(m, type) and issubclass(m, BaseModel) for m in members):
        return None
    # A callable discriminator decides for a mapping without the key (e.g. arrivals: poisson).
    pick = next((m.discriminator for m in meta if isinstance(m, Discriminator) and callable(m.discriminator)), None)
    for key in members[0].model_fields:
        values = [_literal_values(m.model_fields[key].annotation) if key in m.model_fields else None for m in members]
        if all(v is not None and len(v) == 1 for v in values) and len({v[0] for v in values}) == len(members):
            return _Union(key, members, None if pick is None else str(pick({})))
    raise TypeError(f"a union of {[m.__name__ for m in members]} with no key telling them apart")


def _spec_of(tp: Any, meta: list[Any] = ()) -> _Spec | None:  # type: ignore[assignment]
    """The spec (or union of specs) a field holds, looking through ``None``, lists and mappings."""
    tp, meta = _unwrap(tp, meta)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    union = _as_union(tp, meta)
    if union is not None:
        return union
    if get_origin(tp) in (tuple, list, dict):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        return _spec_of(args[-1]) if args else None
    return None


def _is_list(tp: Any) -> bool:
    return get_origin(_unwrap(tp)[0]) in (tuple, list)


def _member_name(union: _Union, model: type[BaseModel]) -> str:
    return str(_literal_values(model.model_fields[union.key].annotation)[0])  # type: ignore[index]


# ---------------------------------------------------------------------------------------------
# Rendering cells


def _num(x: Any) -> str:
    """A number as one would write it: ``0.6``, ``8192``, ``1e-5``, ``1e9``."""
    if isinstance(x, int) and abs(x) >= 10_000:
        return f"{x:,}"
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e6:
        return str(int(x))
    text = f"{x:g}" if isinstance(x, float) else str(x)
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m.group(1) == "-" else "") + m.group(2), text)


def _bounds(meta: list[Any]) -> str:
    """Numeric constraints as an interval (``(0, 1]``) or a bound (``>= 1``)."""
    lo = hi = None
    for m in meta:
        if isinstance(m, at.Ge):
            lo = ("[", m.ge)
        elif isinstance(m, at.Gt):
            lo = ("(", m.gt)
        elif isinstance(m, at.Le):
            hi = ("]", m.le)
        elif isinstance(m, at.Lt):
            hi = (")", m.lt)
    if lo and hi:
        return f"{lo[0]}{_num(lo[1])}, {_num(hi[1])}{hi[0]}"
    if lo:
        return (">= " if lo[0] == "[" else "> ") + _num(lo[1])
    if hi:
        return ("<= " if hi[0] == "]" else "< ") + _num(hi[1])
    return ""


def _min_length(meta: list[Any], what: str) -> str:
    for m in meta:
        if isinstance(m, at.MinLen) and m.min_length > 0:
            if not what:
                return "non-empty"
            return f"at least {m.min_length} {what}" if m.min_length != 1 else "at least one"
    return ""


def _code_list(values: tuple[Any, ...]) -> str:
    return ", ".join(f"`{v}`" for v in values)


_SCALARS = {int: "int", float: "float", str: "string", bool: "bool"}


def _type_and_allowed(tp: Any, meta: list[Any], anchor: Callable[[_Spec], str]) -> tuple[str, str]:
    """The type column and the allowed column of a field of annotation ``tp``."""
    tp, meta = _unwrap(tp, meta)
    values = _literal_values(tp)
    if values is not None:
        return "string", _code_list(values)
    spec = _spec_of(tp, meta)
    origin = get_origin(tp)
    if origin in (tuple, list):
        count = _min_length(meta, "entries")
        if spec is not None:
            return f"list of [mappings](#{anchor(spec)})", count
        item, item_meta = _strip([a for a in get_args(tp) if a is not Ellipsis][0])
        item_type, item_allowed = _type_and_allowed(item, item_meta, anchor)
        return f"list of {item_type}", "; ".join(x for x in (count, item_allowed and f"each {item_allowed}") if x)
    if origin is dict:
        key, value = get_args(tp)
        value, value_meta = _strip(value)
        keys = _literal_values(key)
        value_type, value_allowed = _type_and_allowed(value, value_meta, anchor)
        parts = (keys and f"keys {_code_list(keys)}", value_allowed and f"values {value_allowed}")
        return f"mapping of string to {value_type}", "; ".join(p for p in parts if p)
    if spec is not None:
        return f"[mapping](#{anchor(spec)})", ""
    if tp not in _SCALARS:
        raise TypeError(f"the reference does not know how to show type {tp!r}")
    return _SCALARS[tp], _bounds(meta) or (_min_length(meta, "") if tp is str else "")


def _flow(value: Any) -> str:
    """Plain data in YAML's flow style: ``{kind: roofline}``, ``[{name: trace}]``."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return _num(value)
    return str(value)


def _written(model: BaseModel, key: str | None) -> Any:
    """A spec instance as the keys one would write: those away from their defaults, and ``key``
    (the member's name within its union)."""
    out = model.model_dump(mode="json", exclude_defaults=True)
    return {key: getattr(model, key), **out} if key is not None else out


def _default(f: FieldInfo) -> str:
    if f.is_required():
        return "required"
    value = f.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    spec = _spec_of(f.annotation, list(f.metadata))
    key = spec.key if isinstance(spec, _Union) else None
    if isinstance(value, BaseModel):
        written = _written(value, key)
        return f"`{_flow(written)}`" if written else "all defaults"
    if isinstance(value, tuple) and value and all(isinstance(v, BaseModel) for v in value):
        return f"`{_flow([_written(v, key) for v in value])}`"
    return f"`{_flow(value)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _prose(doc: str | None) -> str:
    """A docstring as Markdown: paragraphs joined, reST roles and double backticks made plain code."""
    if not doc:
        return ""
    text = inspect.cleandoc(doc)
    text = re.sub(r":(?:class|func|mod|meth|data|attr):`~?([^`]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n"))


def _first_sentence(doc: str | None) -> str:
    text = _prose(doc).split("\n\n")[0]
    m = re.match(r"(.+?[.:;])(\s|$)", text)
    return (m.group(1) if m else text).rstrip(".:;")


# ---------------------------------------------------------------------------------------------
# The page


def _identity(spec: _Spec) -> Any:
    return spec.members if isinstance(spec, _Union) else spec


def _collect(root: type[BaseModel]) -> list[_Section]:
    """Every spec reachable from ``root``, in reading order: a spec, then the specs its fields
    hold, in field order; a union's members together, then what they hold. Each spec once, with
    every path it is used at."""
    seen: dict[Any, _Section] = {}
    order: list[_Section] = []

    def visit(spec: _Spec, path: str) -> None:
        if _identity(spec) in seen:
            if path not in seen[_identity(spec)].paths:  # union members share fields (rate_per_s...)
                seen[_identity(spec)].paths.append(path)
            return
        seen[_identity(spec)] = section = _Section(spec, [path])
        order.append(section)
        for model in spec.members if isinstance(spec, _Union) else (spec,):
            for name, f in model.model_fields.items():
                child = _spec_of(f.annotation, list(f.metadata))
                if child is not None:
                    visit(child, f"{path}{'.' if path else ''}{name}{'[]' if _is_list(f.annotation) else ''}")

    visit(root, "")
    return order


def _fields_table(model: type[BaseModel], anchor: Callable[[_Spec], str], key: str | None = None) -> list[str]:
    """One row per field of ``model``: a union member's ``key`` first, then the fields the class
    declares itself, then those it inherits."""
    own = [n for n in inspect.get_annotations(model) if n in model.model_fields]
    names = sorted(model.model_fields, key=lambda n: (n != key, n not in own))
    rows = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for name in names:
        f = model.model_fields[name]
        tp, allowed = _type_and_allowed(f.annotation, list(f.metadata), anchor)
        rows.append(f"| `{name}` | {tp} | {_default(f)} | {_cell(allowed)} | {_cell(f.description or '')} |")
    return rows


def _render(section: _Section, anchor: Callable[[_Spec], str]) -> list[str]:
    out = ["", f'<a id="{section.anchor}"></a>', "", f"## {section.title}", ""]
    if len(section.paths) > 1:
        out += ["Used at " + ", ".join(f"`{p}`" for p in section.paths) + ".", ""]
    spec = section.target
    if not isinstance(spec, _Union):
        intro = _prose(spec.__doc__)
        return out + ([intro, ""] if intro else []) + _fields_table(spec, anchor)
    implied = f" (`{spec.implied}` when it is left out)" if spec.implied else " (required)"
    out += [f"`{spec.key}` picks one{implied}:", "", f"| `{spec.key}` | what it is |", "|---|---|"]
    for m in spec.members:
        name = _member_name(spec, m)
        what = m.model_fields[spec.key].description or _first_sentence(m.__doc__)
        out.append(f"| [`{name}`](#{section.anchor}-{name}) | {_cell(what)} |")
    for m in spec.members:
        name = _member_name(spec, m)
        out += ["", f'<a id="{section.anchor}-{name}"></a>', "", f"### `{spec.key}: {name}`", ""]
        intro = _prose(m.__doc__)
        out += ([intro, ""] if intro else []) + _fields_table(m, anchor, spec.key)
    return out


def scenario_specs() -> list[type[BaseModel]]:
    """Every spec a scenario is made of (``Scenario`` first, each union's members), in the
    reference's order: what the reference documents, for tests that every key is described."""
    from sim.config import Scenario

    return [m for s in _collect(Scenario) for m in (s.target.members if isinstance(s.target, _Union) else (s.target,))]


def scenario_reference() -> str:
    """The scenario reference as Markdown (what ``docs/scenario.md`` holds)."""
    from sim.config import Scenario

    sections = _collect(Scenario)
    by_identity = {_identity(s.target): s for s in sections}

    def anchor(spec: _Spec) -> str:
        return by_identity[_identity(spec)].anchor

    out = [_HEADER, "## Contents", ""]
    out += [f"- [{s.title}](#{s.anchor})" for s in sections]
    for s in sections:
        out += _render(s, anchor)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(scenario_reference())
