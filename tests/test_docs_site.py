"""The documentation site builds: ``mkdocs build --strict`` from the repository root, with no
warning (a broken link or anchor, a page missing from the nav, a docstring the API reference
cannot render, a notebook that cannot be converted). Needs the ``docs`` extra; skipped without it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason="mkdocs is not installed (pip install -e \".[docs]\")")
def test_the_site_builds_strictly_without_warnings(tmp_path):
    # This checkout's packages first, whichever capsim is installed: the API reference reads them.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's banner about MkDocs 2: not about this site
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    output = r.stdout + r.stderr
    warnings = [line for line in output.splitlines() if line.lstrip().startswith(("WARNING", "ERROR"))]
    assert r.returncode == 0 and not warnings, f"mkdocs build --strict failed (exit {r.returncode}):\n{output}"
    assert (tmp_path / "site" / "cli-reference" / "index.html").is_file()
