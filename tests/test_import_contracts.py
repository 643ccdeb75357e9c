"""The import contracts in ``pyproject.toml`` (``[tool.importlinter]``) hold, and they bite.

``lint-imports`` reads the source files of the packages it finds first on ``sys.path``, with the
directory it runs in put first; so it checks the working tree it runs in, and a copy of the three
packages with one import added shows what each contract refuses. Each run takes about a second.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
PACKAGES = ("sim", "workloads", "calibration")


def _contracts() -> dict[str, dict]:
    """The declared contracts by id."""
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the packages under ``cwd`` with the repository's contracts (no cache: the
    copies change between runs; wide: a contract's name and verdict stay on one line)."""
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
         "--no-cache", "--no-logo", str(PYPROJECT)],
        cwd=cwd, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})


def test_the_repository_keeps_every_contract() -> None:
    r = lint_imports(REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Contracts: {len(_contracts())} kept, 0 broken." in r.stdout, r.stdout


def _sources_only(directory: str, names: list[str]) -> set[str]:
    """What ``shutil.copytree`` leaves out: everything but Python sources and folders."""
    return {n for n in names
            if n == "__pycache__" or not (n.endswith(".py") or os.path.isdir(os.path.join(directory, n)))}


@pytest.mark.parametrize(("module", "back_import", "contract", "reported"), [
    # calibration and workloads never import sim ...
    ("calibration/catalog.py", "import sim", "packages", "calibration.catalog -> sim (l."),
    # ... nor each other
    ("workloads/table.py", "import calibration.catalog", "packages", "workloads.table -> calibration.catalog (l."),
    # sim's rooms: the core never reads results, results never drive the engine, fitting and analysis
    # stay apart
    ("sim/core/state.py", "import sim.results.records", "rooms", "sim.core.state -> sim.results.records (l."),
    ("sim/results/metrics.py", "from sim.engine import simulate", "rooms", "sim.results.metrics -> sim.engine (l."),
    ("sim/fitting/validate.py", "from sim.analysis.slo import parse_slo", "rooms",
     "sim.fitting.validate -> sim.analysis.slo (l."),
    # the plans serve the replica loop through their interface and never reach back into it
    ("sim/core/plans.py", "import sim.core.replica", "core-layers", "sim.core.plans -> sim.core.replica (l."),
    # nothing below the command line imports it
    ("sim/config.py", "from sim.cli.common import fail", "cli-on-top", "sim.config -> sim.cli.common (l."),
    # the command modules never import the app (nor the shared helpers a command module)
    ("sim/cli/common.py", "import sim.cli.app", "cli-layers", "sim.cli.common -> sim.cli.app (l."),
    ("sim/cli/common.py", "import sim.cli.run", "acyclic", "No cycles are allowed in sim."),
    # no cycle inside a package: spec reads the preset numbers, which must not read spec
    ("workloads/fitted_presets.py", "from workloads.spec import WorkloadSpec", "acyclic",
     "No cycles are allowed in workloads."),
    # the fitting room: re-enacting a run never reaches up into the optimiser that calls it
    ("sim/fitting/reenact.py", "import sim.fitting.optimise", "fitting-layers",
     "sim.fitting.reenact -> sim.fitting.optimise (l."),
])
def test_a_back_import_breaks_its_contract(tmp_path: Path, module: str, back_import: str, contract: str,
                                           reported: str) -> None:
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=_sources_only)
    with open(tmp_path / module, "a") as f:
        f.write(f"\n{back_import}  # a deliberate back-import\n")
    r = lint_imports(tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{_contracts()[contract]['name']} BROKEN" in r.stdout, r.stdout
    assert reported in r.stdout, r.stdout


def _layered(contract: dict) -> set[str]:
    return {m.strip() for layer in contract["layers"] for m in layer.split("|")}


def _children(package: Path) -> set[str]:
    """The modules and packages directly inside ``package`` (``__init__`` aside)."""
    return {p.stem for p in package.glob("*.py") if p.stem != "__init__"} | \
        {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}


def test_every_room_of_sim_is_placed_in_the_contracts() -> None:
    """A new module or room directly under ``sim/`` must be placed in the rooms contract, or it would
    escape it."""
    assert _layered(_contracts()["rooms"]) == _children(REPO / "sim")


def test_every_command_line_module_is_placed_in_the_contracts() -> None:
    """A new ``sim/cli/`` module must be placed in the command line's layers, or they would not see it."""
    assert _layered(_contracts()["cli-layers"]) == _children(REPO / "sim" / "cli")


def test_every_core_module_is_placed_in_the_contracts() -> None:
    """A new ``sim/core/`` module must be placed in the core's layers, or they would not see it."""
    assert _layered(_contracts()["core-layers"]) == _children(REPO / "sim" / "core")


def test_every_fitting_module_is_placed_in_the_contracts() -> None:
    """A new ``sim/fitting/`` module must be placed in the fitting room's layers, or they would not see it."""
    assert _layered(_contracts()["fitting-layers"]) == _children(REPO / "sim" / "fitting")
