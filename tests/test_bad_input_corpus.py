"""Every case of the bad-input corpus (``tests/corpus``) through the real command line.

A refused input exits 2 with one ``capsim: error:`` line that matches the case's pattern, prints
nothing on stdout and raises nothing (``CliRunner`` turns an unhandled exception into
``result.exception``: any exception other than the ``SystemExit`` of a deliberate exit is a
traceback a user would have seen). An accepted input exits 0 and says why it was accepted.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.corpus import Accepted, BadInput

_MODULES = ("scenarios", "cli", "workloads", "traces", "benchmarks")


def _collect(attr: str) -> list:
    cases = []
    for name in _MODULES:
        try:
            module = importlib.import_module(f"tests.corpus.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"tests.corpus.{name}":
                raise
            continue
        cases.extend(getattr(module, attr, []))
    return cases


CASES: list[BadInput] = _collect("CASES")
ACCEPTED: list[Accepted] = _collect("ACCEPTED")


def _invoke(argv: tuple[str, ...], files, tmp_path: Path):
    from sim.cli.app import app

    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        return CliRunner().invoke(app, list(argv))
    finally:
        os.chdir(cwd)


def test_the_corpus_is_large_and_its_ids_unique() -> None:
    ids = [c.id for c in CASES + ACCEPTED]
    assert len(set(ids)) == len(ids), sorted({i for i in ids if ids.count(i) > 1})
    assert len(CASES) + len(ACCEPTED) >= 150, len(CASES) + len(ACCEPTED)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_refused_in_one_line(case: BadInput, tmp_path: Path) -> None:
    result = _invoke(case.argv, case.files, tmp_path)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback: {result.exception!r}\n{result.output}")
    assert "Traceback" not in result.output
    assert result.exit_code == 2, result.output
    assert result.stdout == "", result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("capsim: error: "), result.stderr
    assert re.search(case.expect, lines[0]), f"{case.expect!r} not in {lines[0]!r}"


@pytest.mark.parametrize("case", ACCEPTED, ids=lambda c: c.id)
def test_odd_input_is_accepted_with_a_stated_reason(case: Accepted, tmp_path: Path) -> None:
    result = _invoke(case.argv, case.files, tmp_path)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback: {result.exception!r}\n{result.output}")
    assert result.exit_code == 0, result.output
    assert re.search(case.says, result.stdout + result.stderr), result.stdout + result.stderr
