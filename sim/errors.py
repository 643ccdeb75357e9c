"""User-facing errors: one line that names the key, the value and what is allowed."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["ScenarioError", "format_validation_error"]


class ScenarioError(ValueError):
    """A scenario that cannot be simulated. ``str(err)`` is one line, fit for a terminal."""


def _unwrap(tp: Any) -> Any:
    """Strip Annotated/Optional wrappers down to the type that holds the next key."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
            else:
                return tp
        else:
            return tp


def _union_member(tp: Any, tag: str) -> Any | None:
    """The member of a discriminated union whose Literal tag is ``tag``."""
    for member in typing.get_args(tp):
        if typing.get_origin(member) is typing.Annotated:  # a Tag()-ed member of a callable discriminator
            member = typing.get_args(member)[0]
        if isinstance(member, type) and issubclass(member, BaseModel):
            for f in member.model_fields.values():
                if typing.get_origin(f.annotation) is typing.Literal and tag in typing.get_args(f.annotation):
                    return member
    return None


def _walk(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[str, Any]:
    """Turn pydantic's ``loc`` into a dotted key path, dropping union tags, and return the type
    that ``loc`` leads to (a model, for listing the keys allowed inside it)."""
    path = ""
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(part, int):
            path += f"[{part}]"
            args = typing.get_args(tp)
            tp = args[0] if args else Any
            continue
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            member = _union_member(tp, str(part))
            if member is not None:
                tp = member
                continue
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            tp = field.annotation if field is not None else Any
        else:
            tp = Any
        path += f".{part}" if path else str(part)
    return path, _unwrap(tp)


def _tags_with_key(root: type[BaseModel], parent_loc: tuple[Any, ...], key: str) -> list[str]:
    """Where ``parent_loc`` ends in a member of a tagged union (``profile.auto``), the tags of the
    other members that do have ``key``: a key given under the wrong ``kind``."""
    if len(parent_loc) < 2:
        return []
    _, union = _walk(root, parent_loc[:-1])
    if typing.get_origin(union) not in (typing.Union, types.UnionType):
        return []
    tags = []
    for member in typing.get_args(union):
        if typing.get_origin(member) is typing.Annotated:
            member = typing.get_args(member)[0]
        if isinstance(member, type) and issubclass(member, BaseModel) and key in member.model_fields:
            for f in member.model_fields.values():
                if typing.get_origin(f.annotation) is typing.Literal:
                    tags.extend(str(t) for t in typing.get_args(f.annotation))
                    break
    return [t for t in tags if t != str(parent_loc[-1])]


def _numeric_text_hint(kind: str, value: Any) -> str:
    """Why a number may have arrived as text: YAML 1.1 reads ``1e12`` (no dot, no sign in the
    exponent) as a string, so the user sees a refusal of what they wrote as a number."""
    if kind not in ("float_type", "int_type", "int_parsing", "float_parsing") or not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return " (it is text: quoted, or a YAML exponent without a dot such as 1e12; write 1.0e+12, or 1000000000000)"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def format_validation_error(err: ValidationError, root: type[BaseModel]) -> str:
    """Every error of ``err`` as ``key = value: rule``, joined into one line."""
    parts = []
    errors = err.errors()
    locs = [tuple(e["loc"]) for e in errors]
    for e in errors:
        loc = tuple(e["loc"])
        # A container that failed only because an item inside it failed adds nothing.
        if any(len(o) > len(loc) and o[: len(loc)] == loc for o in locs):
            continue
        path, _ = _walk(root, loc)
        kind = e["type"]
        if kind == "union_tag_invalid":
            ctx = e["ctx"]
            key = ctx["discriminator"].strip(chr(39))
            key = "process" if key.endswith("()") else key  # the arrival union's callable discriminator
            tags = [t.strip(" '") for t in ctx["expected_tags"].split(",")]
            hint = difflib.get_close_matches(str(ctx["tag"]), tags, n=1)
            parts.append(f"{path + '.' if path else ''}{key} = {ctx['tag']!r}: must be one of {ctx['expected_tags']}"
                         + (f" (did you mean {hint[0]!r}?)" if hint else ""))
            continue
        if kind == "union_tag_not_found":
            parts.append(f"{path}: needs the key {e['ctx']['discriminator'].strip(chr(39))}")
            continue
        if kind == "extra_forbidden":
            parent_path, parent = _walk(root, tuple(e["loc"][:-1]))
            is_model = isinstance(parent, type) and issubclass(parent, BaseModel)
            allowed = sorted(parent.model_fields) if is_model else []
            key = str(e["loc"][-1])
            hint = difflib.get_close_matches(key, allowed, n=1)
            shown = path if key.isprintable() else (parent_path + "." if parent_path else "") + repr(key)
            msg = f"{shown}: unknown key"
            msg += f" (did you mean {hint[0]!r}?)" if hint else ""
            owners = _tags_with_key(root, tuple(e["loc"][:-1]), key) if not hint else []
            if owners:
                tag = e["loc"][-2]
                msg += (f" for kind {tag!r}: it belongs to kind {' or '.join(repr(o) for o in owners)}; "
                        f"set {parent_path}.kind = {owners[0]!r} too")
            msg += f"; allowed keys{' in ' + parent_path if parent_path else ''}: {', '.join(allowed)}"
            parts.append(msg)
            continue
        text = e["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
        if kind == "model_type":  # pydantic names its class: "a valid dictionary or instance of WorkloadSpec"
            text = "must be a mapping of keys"
        if kind == "missing":
            parts.append(f"{path}: required key is missing")
        elif path and not isinstance(e.get("input"), dict):
            parts.append(f"{path} = {_show(e['input'])}: {text}{_numeric_text_hint(kind, e.get('input'))}")
        elif path:
            # A model's own validator names its field ("max_num_seqs = 4: ..."): give it the full path.
            _, model = _walk(root, loc)
            first = text.split(" ", 1)[0]
            if isinstance(model, type) and issubclass(model, BaseModel) and first in model.model_fields:
                parts.append(f"{path}.{text}")
            else:
                parts.append(f"{path}: {text}")
        else:
            parts.append(text)
    return "; ".join(parts)
