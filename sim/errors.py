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
            msg += f"; allowed keys{' in ' + parent_path if parent_path else ''}: {', '.join(allowed)}"
            parts.append(msg)
            continue
        text = e["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
        if kind == "missing":
            parts.append(f"{path}: required key is missing")
        elif path and not isinstance(e.get("input"), dict):
            parts.append(f"{path} = {_show(e['input'])}: {text}")
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
