"""The command-line reference stays true to the commands: docs/cli-reference.md is what
sim/cli/reference.py renders from the command tree now, it names every command and option, and
every command and option has help to render."""

from __future__ import annotations

from pathlib import Path

from sim.cli.reference import REGENERATE, cli_reference, commands

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_docs_cli_reference_md_is_the_generated_reference():
    committed = (DOCS / "cli-reference.md").read_text()
    assert committed == cli_reference(), (
        f"docs/cli-reference.md differs from the commands' reference: regenerate it with `{REGENERATE}`")


def test_every_command_and_option_has_help():
    missing = []
    for cmd in commands():
        if not (cmd.command.help or "").strip():
            missing.append(cmd.name)
        missing += [f"{cmd.name} {p.opts[0] if p.param_type_name == 'option' else p.name}"
                    for p in cmd.command.params if not getattr(p, "hidden", False) and not (p.help or "").strip()]
    assert missing == [], f"commands and options without help: {missing}"


def test_the_reference_has_every_command_and_option():
    tree = {cmd.name: cmd for cmd in commands()}
    # The walk reaches the subcommands of every group, not only the top level.
    for name in ("capsim run", "capsim sweep", "capsim workload fit", "capsim workload presets",
                 "capsim catalog show", "capsim catalog profiles"):
        assert name in tree, name
    text = cli_reference()
    for name, cmd in tree.items():
        if name != "capsim":
            assert f"# {name}\n" in text and f"(#{name.replace(' ', '-')})" in text, name
        for p in cmd.command.params:
            for opt in (p.opts if p.param_type_name == "option" else ()):
                assert f"`{opt}`" in text, f"{name} {opt}"
    # Facts read from the parameters, not from rendered help.
    assert "capsim report [OPTIONS] SOURCE_DIR\n" in text and "capsim run [OPTIONS] [SCENARIO]\n" in text
    assert "- `--out`, `-o` `DIR` (str, default `capsim-out`): " in text              # capsim run
    assert "- `--set`, `-s` `KEY=VALUE` (str, repeatable): " in text
    assert "- `--tp` (int, >= 1, default `1`): " in text                             # capsim calibrate
    assert "- `--kind`, `-k` (hardware|models|quantizations): " in text               # capsim catalog
    assert "- `--out`, `-o` `DIR` (str, required): " in text                          # capsim sweep
    assert "- `--option` `HW:QUANT[:TP]` (str, repeatable): " in text                 # capsim compare
    assert "- `--no-write` (flag): " in text and "- `SPEC` (path, required): " in text


def test_help_is_rendered_as_the_terminal_shows_it():
    text = cli_reference()
    # Rich markup escapes are undone, and indented examples become code blocks.
    assert "  hardware: [h100-sxm, l40s]\n" in text and "\\[h100-sxm" not in text
    assert "Examples:\n\n```\ncapsim run                 " in text
    assert "\x08" not in text and "\f" not in text
