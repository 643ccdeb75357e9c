"""The command-line reference, generated from the commands themselves: ``docs/cli-reference.md``.

Every command and subcommand of ``capsim`` (walked from :data:`sim.cli.app.app`, so a new command
appears by itself) gets a section: its usage line, its help text and every argument and option
with its type, default and help, all read from the Typer/Click objects that parse the command
line. Nothing is written by hand, so the page cannot drift from ``capsim --help``:
``tests/test_cli_reference.py`` fails when the committed page differs from what this module
renders, and when a command or an option has no help. Regenerate it with::

    python -m sim.cli.reference > docs/cli-reference.md

Typer has parsed with its own copy of Click in some versions and with the click package in
others, so objects are read through the interface both share (``params``, ``opts``, ``help``,
``default``, ``list_commands``), never through ``isinstance``.
"""

from __future__ import annotations

import re
import sys
import textwrap
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import PurePath
from typing import Any

__all__ = ["REGENERATE", "Command", "cli_reference", "commands"]

REGENERATE = "python -m sim.cli.reference > docs/cli-reference.md"

_HEADER = f"""\
# CLI reference

<!-- Generated from the commands by `{REGENERATE}`: do not edit by hand. -->

Every command of `capsim`, with every argument and option, generated from the definitions that
parse the command line, so it says what `capsim COMMAND --help` says. Every command also takes
`--help`. How the commands fit together, with worked examples, is in
[Running capsim](cli.md) and the guide of each command; an invalid option or value is refused in
one line on stderr with exit code 2.
"""


@dataclass(frozen=True)
class Command:
    """One command of the tree: its words (``("capsim", "workload", "fit")``), the Click command
    object and the context it runs in (which resolves its subcommands)."""

    path: tuple[str, ...]
    command: Any
    context: Any

    @property
    def name(self) -> str:
        """As typed: ``capsim workload fit``."""
        return " ".join(self.path)

    @property
    def is_group(self) -> bool:
        """A group holds subcommands (``capsim workload``); a leaf runs."""
        return hasattr(self.command, "list_commands")


def _app_command() -> Any:
    """The Click group behind ``capsim``, as Typer builds it when the program starts."""
    import typer.main

    from sim.cli.app import app

    return typer.main.get_command(app)


def commands(root: Any = None) -> Iterator[Command]:
    """Every visible command under ``root`` (default: ``capsim``), depth first in the order
    ``capsim --help`` lists them, the root first."""

    def walk(command: Any, path: tuple[str, ...], parent: Any) -> Iterator[Command]:
        context = command.context_class(command, info_name=path[-1], parent=parent)
        yield Command(path, command, context)
        if hasattr(command, "list_commands"):
            for name in command.list_commands(context):
                sub = command.get_command(context, name)
                if sub is not None and not sub.hidden:
                    yield from walk(sub, (*path, name), context)

    yield from walk(_app_command() if root is None else root, ("capsim",), None)


# ---------------------------------------------------------------------------------------------
# Help text: as the terminal shows it, then as Markdown


def help_text(command: Any, text: str | None) -> str:
    """``text`` (a command's or a parameter's help) as ``--help`` prints it: cut at Click's
    ``\\f`` and, in Typer's rich mode, with its markup rendered (``\\[`` is a plain ``[``)."""
    text = (text or "").split("\f")[0].strip()
    if getattr(command, "rich_markup_mode", None) == "rich":
        from rich.markup import render

        text = render(text).plain
    return text


_SPECIAL = re.compile(r"[\\`*\[\]]|(?<!\w)_|_(?!\w)")  # Markdown's markup; an underscore inside a word is text


def _escape(text: str) -> str:
    """One line of plain text for Markdown: its markup characters escaped, ``<`` as an entity,
    and a start that would open a list, a heading or a quote escaped."""
    text = _SPECIAL.sub(lambda m: "\\" + m.group(0), text).replace("<", "&lt;")
    text = re.sub(r"^(\d+)([.)]\s)", r"\1\\\2", text)  # "12. " would open a numbered list
    return re.sub(r"^([-+]\s|#|>)", r"\\\1", text)


def _blocks(text: str) -> list[str]:
    """Help paragraphs as Markdown blocks. Click's ``\\b`` marks a paragraph it must not rewrap;
    indented lines (examples, a spec) become a code block, the lines around them prose."""
    out: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        para = para.removeprefix("\b").strip("\n")
        lines = para.splitlines()
        i = 0
        while i < len(lines):
            indented = lines[i][:1].isspace()
            j = i
            while j < len(lines) and lines[j][:1].isspace() == indented:
                j += 1
            chunk = lines[i:j]
            if indented:
                out.append("```\n" + textwrap.dedent("\n".join(chunk)) + "\n```")
            else:
                out.append(_escape(" ".join(line.strip() for line in chunk)))
            i = j
    return [b for b in out if b.strip()]


def _summary(command: Any) -> str:
    """The first sentence of a command's help, for the table of commands."""
    first = re.split(r"\n\s*\n", help_text(command, command.help))[0]
    first = " ".join(first.split())
    sentence = re.split(r"(?<=\.)\s", first, maxsplit=1)[0]
    return _escape(sentence).replace("|", "\\|")


# ---------------------------------------------------------------------------------------------
# Parameters: names, types, defaults


# Click's type names (older Typer) as the Python names Typer's own parameters report.
_CLICK_TYPES = {"integer": "int", "text": "str", "boolean": "bool", "float": "float", "path": "path",
                "integer range": "int", "float range": "float", "filename": "file", "uuid": "uuid"}


def _annotation_type(annotation: Any) -> str:
    """A parameter's Python annotation as a type name: ``int``, ``path``, ``a|b`` for an Enum."""
    if typing.get_origin(annotation) in (list, tuple, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None) and a is not Ellipsis]
        return _annotation_type(args[0]) if args else "str"
    if isinstance(annotation, type):
        if issubclass(annotation, Enum):
            return "|".join(str(m.value) for m in annotation)
        if issubclass(annotation, PurePath):
            return "path"
        return annotation.__name__
    return str(annotation)


def param_type(param: Any) -> str:
    """``flag`` for an on/off option, else the value's type (an Enum's choices joined by ``|``)."""
    if getattr(param, "is_flag", False) and not getattr(param, "count", False):
        return "flag"
    descriptor = getattr(param, "type_descriptor", None)  # Typer's own parameters (Typer >= 0.20)
    if descriptor is not None:
        return _annotation_type(descriptor.annotation)
    choices = getattr(param.type, "choices", None)  # Click's types
    if choices:
        return "|".join(str(getattr(c, "value", c)) for c in choices)
    return _CLICK_TYPES.get(param.type.name, param.type.name)


def _bounds(param: Any) -> str | None:
    """The allowed range (``>= 1``, ``0 to 1``), from Typer's ``min``/``max`` or a Click range type."""
    click_type = getattr(param, "type", None)  # Typer's own parameters have none
    low = getattr(param, "min", getattr(click_type, "min", None))
    high = getattr(param, "max", getattr(click_type, "max", None))
    if low is not None and high is not None:
        return f"{low} to {high}"
    if low is not None:
        return f">= {low}"
    if high is not None:
        return f"<= {high}"
    return None


def _default(param: Any) -> str | None:
    """The default as the user would type it, or None where there is nothing to show (no
    default, an empty list, a flag that is off, or the command hides it)."""
    show = getattr(param, "show_default", True)
    if isinstance(show, str):
        return show
    value = param.default
    if show is False or value is None or callable(value) or value in ((), []):
        return None
    if param_type(param) == "flag":
        return None if value is False else "on"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _param_line(command: Any, param: Any) -> str:
    """One argument or option as a Markdown list item: names, metavar, facts, help."""
    if param.param_type_name == "argument":
        names = f"`{(param.metavar or param.name).upper()}`"
    else:
        names = ", ".join(f"`{o}`" for o in (*param.opts, *getattr(param, "secondary_opts", ())))
        if param.metavar:
            names += f" `{param.metavar}`"
    facts = [param_type(param)]
    if getattr(param, "multiple", False) or param.nargs == -1:
        facts.append("repeatable")
    bounds = _bounds(param)
    if bounds:
        facts.append(bounds)
    if param.required:
        facts.append("required")
    elif param.param_type_name == "argument":
        facts.append("optional")
    default = _default(param)
    if default is not None:
        facts.append(f"default `{default}`")
    envvar = getattr(param, "envvar", None)
    if envvar:
        facts.append("env " + ", ".join(f"`{e}`" for e in ([envvar] if isinstance(envvar, str) else envvar)))
    text = " ".join(help_text(command, param.help).split())
    return f"- {names} ({', '.join(facts)}): {_escape(text)}"


def _usage(cmd: Command) -> str:
    """``capsim workload fit [OPTIONS] FILE``: arguments in capitals, optional ones in brackets."""
    pieces = ["[OPTIONS]"]
    for p in cmd.command.params:
        if p.param_type_name != "argument" or getattr(p, "hidden", False):
            continue
        name = (p.metavar or p.name).upper() + ("..." if p.nargs != 1 else "")
        pieces.append(name if p.required else f"[{name}]")
    if cmd.is_group:
        pieces.append("COMMAND [ARGS]...")
    return f"{cmd.name} {' '.join(pieces)}"


def _params(cmd: Command) -> list[str]:
    """The command's arguments, then its options, each list under a bold label."""
    params = [p for p in cmd.command.params if not getattr(p, "hidden", False)]
    parts = []
    for kind, title in (("argument", "Arguments"), ("option", "Options")):
        lines = [_param_line(cmd.command, p) for p in params if p.param_type_name == kind]
        if lines:
            parts.append(f"**{title}**\n\n" + "\n".join(lines))
    return parts


def _section(cmd: Command) -> str:
    """One command's section: heading (a subcommand one level down), usage, help, parameters."""
    level = "#" * min(len(cmd.path), 4)
    return "\n\n".join([f"{level} {cmd.name}", f"```\n{_usage(cmd)}\n```",
                        *_blocks(help_text(cmd.command, cmd.command.help)), *_params(cmd)])


def cli_reference() -> str:
    """The whole page: the header, what ``capsim`` is (and any option of its own), a table of the
    commands, then a section per command."""
    root, *rest = commands()
    table = ["| command | what it does |", "|---|---|"]
    table += [f"| [`{c.name}`](#{c.name.replace(' ', '-')}) | {_summary(c.command)} |" for c in rest]
    return "\n\n".join([_HEADER.rstrip("\n"), *_blocks(help_text(root.command, root.command.help)), *_params(root),
                        "\n".join(table), *(_section(c) for c in rest)]) + "\n"


if __name__ == "__main__":
    sys.stdout.write(cli_reference())
