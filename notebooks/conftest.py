"""How the test suite runs the notebooks (nbmake: ``--nbmake`` in pyproject.toml's addopts).

Each notebook is executed top to bottom in a fresh kernel and fails on any error. Around each
one, this file:

- puts this checkout first on the kernel's ``PYTHONPATH``, so that a notebook imports the capsim
  the tests are testing, even where another checkout is installed (the kernel is a process of its
  own: it does not see the test session's ``sys.path``);
- skips a notebook whose metadata names modules that do not import here
  (``"capsim": {"requires": ["torch"]}``: 04_calibration needs the ``calibrate`` extra), naming
  them, as the tests that need those extras skip;
- fails a notebook that wrote into the repository: notebooks write only to temporary directories.
  Files are compared by path, size and modification time before and after the run (caches left
  out: ``__pycache__``, ``.pytest_cache``, ``.hypothesis``, ``.ipynb_checkpoints``).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
_CACHES = {".git", "__pycache__", ".pytest_cache", ".hypothesis", ".ipynb_checkpoints", ".benchmarks"}


def _is_notebook(item: pytest.Item) -> bool:
    return item.path.suffix == ".ipynb"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not _is_notebook(item):
            continue
        requires = json.loads(item.path.read_text()).get("metadata", {}).get("capsim", {}).get("requires", [])
        missing = [m for m in requires if importlib.util.find_spec(m) is None]
        if missing:
            item.add_marker(pytest.mark.skip(reason=f"{item.path.name} needs {', '.join(missing)}, not installed "
                                                    "(torch: pip install -e '.[calibrate]')"))


def _files() -> dict[str, tuple[int, int]]:
    """Every file of the checkout outside caches: relative path -> (size, mtime in ns)."""
    out = {}
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in _CACHES and not d.endswith(".egg-info")]
        for name in files:
            st = os.stat(os.path.join(root, name))
            out[os.path.relpath(os.path.join(root, name), REPO)] = (st.st_size, st.st_mtime_ns)
    return out


_BEFORE = pytest.StashKey[dict]()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if _is_notebook(item):
        item.stash[_BEFORE] = _files()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    if not _is_notebook(item):
        return (yield)
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *([saved] if saved else [])])
    try:
        return (yield)
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved


def pytest_runtest_teardown(item: pytest.Item) -> None:
    # Checked here rather than in the call: nbmake reports any failure of the call that is not a
    # cell's as its own internal error.
    before = item.stash.get(_BEFORE, None)
    if before is None:
        return
    after = _files()
    changed = sorted(p for p in after.keys() | before.keys() if after.get(p) != before.get(p))
    if changed:
        pytest.fail(f"{item.path.name} wrote into the repository (write to a tempfile directory instead): "
                    f"{', '.join(changed[:10])}" + (f" and {len(changed) - 10} more" if len(changed) > 10 else ""),
                    pytrace=False)
