"""The notebooks in notebooks/ are committed clean, use only the public API, and state a question
and its answer. (Running them is nbmake's job: ``python -m pytest`` executes every notebook top to
bottom, see notebooks/conftest.py.)

What each check holds every committed notebook to:

- **Clean**: no code cell has outputs or an execution count (a notebook is committed as written,
  not as last run: outputs are the machine's, and they make every diff noisy).
- **Public API only**: a name is *private* when any dotted part of it starts with ``_`` (dunders
  such as ``__all__`` excepted). In code cells, parsed with :mod:`ast`, that rules out
  ``import a._b``, ``from a._b import c``, ``from a import _c``, attribute access ``x._y`` on
  anything, and ``getattr(x, "_y")``. Two packages are internal as a whole: ``sim.core`` (the
  engine's insides: analysis code, and so notebooks, go through ``simulate`` and its results) and
  ``sim.cli`` (the command line, a thin shell over the same API). Names imported from ``sim``
  itself must be in ``sim.__all__`` (or be a subpackage or module of sim).
- **Question and answer**: the first cell is Markdown (it states the question); the last cell is
  code that prints an f-string with at least one computed value in it (the answer, in a
  sentence), and the cell before it is Markdown.
- **Listed**: notebooks/README.md names every notebook.

Each check is a function returning the problems it finds, run on every notebook and, in the
last tests, on broken notebooks to show that it fails.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import pytest

import sim

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
INTERNAL = ("sim.core", "sim.cli")


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _parse(cell: dict) -> ast.Module:
    # IPython's magics and shell escapes are not Python: parse them as blank lines.
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in _source(cell).splitlines()]
    return ast.parse("\n".join(lines))


def _private(dotted: str) -> bool:
    return any(p.startswith("_") and not (p.startswith("__") and p.endswith("__")) for p in dotted.split("."))


def _internal(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in INTERNAL)


def output_problems(nb: dict) -> list[str]:
    """Code cells with outputs or an execution count."""
    out = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        if cell.get("outputs"):
            out.append(f"cell {i}: has {len(cell['outputs'])} output(s)")
        if cell.get("execution_count") is not None:
            out.append(f"cell {i}: execution_count is {cell['execution_count']}, not null")
    return out


def private_problems(nb: dict) -> list[str]:
    """Imports and attribute accesses of private or internal names (see the module docstring)."""
    public = set(sim.__all__)
    out = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        try:
            tree = _parse(cell)
        except SyntaxError as e:
            out.append(f"cell {i}: does not parse: {e}")
            continue
        for node in ast.walk(tree):
            where = f"cell {i}, line {getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if _private(alias.name) or _internal(alias.name):
                        out.append(f"{where}: import {alias.name}")
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level or _private(module) or _internal(module):
                    out.append(f"{where}: from {'.' * node.level}{module} import ...")
                    continue
                for alias in node.names:
                    full = f"{module}.{alias.name}"
                    if alias.name == "*" or _private(alias.name) or _internal(full):
                        out.append(f"{where}: from {module} import {alias.name}")
                    elif module == "sim" and alias.name not in public and importlib.util.find_spec(full) is None:
                        out.append(f"{where}: from sim import {alias.name}: not in sim.__all__")
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                out.append(f"{where}: attribute .{node.attr}")
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                  and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                  and isinstance(node.args[1].value, str) and _private(node.args[1].value)):
                out.append(f"{where}: getattr(..., {node.args[1].value!r})")
    return out


def _prints_fstring(cell: dict) -> bool:
    """Whether the cell calls print() on an f-string holding at least one computed value (alone, or
    within an expression that joins several)."""
    try:
        tree = _parse(cell)
    except SyntaxError:
        return False
    return any(isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
               and any(isinstance(sub, ast.FormattedValue) for a in node.args for sub in ast.walk(a))
               for node in ast.walk(tree))


def shape_problems(nb: dict) -> list[str]:
    """A Markdown question first; a Markdown heading then a code cell printing the answer last."""
    cells = nb["cells"]
    if len(cells) < 3:
        return [f"{len(cells)} cell(s): a question, some work and an answer need at least 3"]
    out = []
    if cells[0]["cell_type"] != "markdown" or not _source(cells[0]).strip():
        out.append("the first cell is not a Markdown cell stating the question")
    if cells[-2]["cell_type"] != "markdown":
        out.append("the cell before the last is not Markdown (the answer's heading)")
    if cells[-1]["cell_type"] != "code" or not _prints_fstring(cells[-1]):
        out.append("the last cell is not code that prints an f-string with computed values (the answer)")
    return out


def _load(path: Path) -> dict:
    nb = json.loads(path.read_text())
    assert nb.get("nbformat") == 4, f"{path.name}: nbformat {nb.get('nbformat')}, expected 4"
    return nb


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 6, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    assert output_problems(_load(path)) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_only_public_names(path):
    assert private_problems(_load(path)) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_question_first_answer_last(path):
    assert shape_problems(_load(path)) == []


def test_readme_lists_every_notebook():
    readme = (NOTEBOOKS_DIR / "README.md").read_text()
    assert [p.name for p in NOTEBOOKS if p.name not in readme] == []


# --- each check fails on a notebook that breaks its rule ------------------------------------------


def _nb(*cells: tuple[str, str]) -> dict:
    """A notebook of (cell type, source) pairs, clean."""
    return {"nbformat": 4, "cells": [{"cell_type": kind, "source": src, "metadata": {},
                                      **({"outputs": [], "execution_count": None} if kind == "code" else {})}
                                     for kind, src in cells]}


GOOD = _nb(("markdown", "# Q\n\n**Question.** How fast?"), ("code", "import sim\nx = 1"),
           ("markdown", "## Answer"), ("code", 'print(f"x is {x}")'))


def test_checks_pass_a_good_notebook():
    assert output_problems(GOOD) == private_problems(GOOD) == shape_problems(GOOD) == []


def test_outputs_and_execution_counts_are_found():
    nb = json.loads(json.dumps(GOOD))
    nb["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "1\n"}]
    nb["cells"][3]["execution_count"] = 7
    assert output_problems(nb) == ["cell 1: has 1 output(s)", "cell 3: execution_count is 7, not null"]


@pytest.mark.parametrize("code, found", [
    ("from sim.analysis.plan import _Search", "from sim.analysis.plan import _Search"),
    ("from sim import _WHERE", "from sim import _WHERE"),
    ("from sim import simulatee", "from sim import simulatee: not in sim.__all__"),
    ("import sim.analysis._private", "import sim.analysis._private"),
    ("from sim.core.run import run", "from sim.core.run import ..."),
    ("from sim import core", "from sim import core"),
    ("import sim.cli.app", "import sim.cli.app"),
    ("import sim\nsim.analysis.plan._result", "attribute ._result"),
    ("r = object()\nr._cache", "attribute ._cache"),
    ("import sim\ngetattr(sim, '_WHERE')", "getattr(..., '_WHERE')"),
    ("from . import x", "from . import ..."),
])
def test_private_and_internal_names_are_found(code, found):
    problems = private_problems(_nb(("code", code)))
    assert len(problems) == 1 and problems[0].endswith(found), problems


def test_public_names_pass():
    code = ("import sim\nfrom sim import Scenario, simulate, analysis\nfrom sim.analysis.sweep import read_summaries\n"
            "import workloads.fit\nx = sim.__all__\nclass A:\n    def __init__(self):\n        self.__dict__")
    assert private_problems(_nb(("code", code))) == []


@pytest.mark.parametrize("cells, found", [
    ([("code", "x = 1"), ("markdown", "## Answer"), ("code", 'print(f"{x}")')], "first cell"),
    ([("markdown", "# Q"), ("code", "x = 1"), ("code", 'print(f"{x}")')], "before the last"),
    ([("markdown", "# Q"), ("code", "x = 1"), ("markdown", "## Answer"), ("code", 'print("x is 1")')], "last cell"),
    ([("markdown", "# Q"), ("code", "x = 1"), ("markdown", "## Answer"), ("code", 'print(f"x is 1")')], "last cell"),
    ([("markdown", "# Q"), ("code", "x = 1"), ("markdown", "## Answer"), ("markdown", "x is 1")], "last cell"),
])
def test_missing_question_or_answer_is_found(cells, found):
    problems = shape_problems(_nb(*cells))
    assert len(problems) == 1 and found in problems[0], problems
