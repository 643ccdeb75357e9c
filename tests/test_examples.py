"""The user-facing surfaces run as documented: the CLI on the default scenario and the resolved
scenario round trip. (The notebooks in notebooks/ run through nbmake: see tests/test_notebooks.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from sim import default_scenario, load_scenario


def _capsim(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim.cli.app", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_capsim_run_default_writes_results_with_provenance(tmp_path):
    out = tmp_path / "out"
    proc = _capsim("run", "--set", "workload.duration_s=40", "--set", "measurement.warmup_s=5", "-o", str(out),
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ttft_s" in proc.stdout and "goodput" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "iterations.parquet", "requests.parquet", "scenario.yaml", "summary.json", "timeline.parquet"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["profile"]["kind"] == "derived-from-measured"  # the shipped H100 profile (issue 7)
    assert summary["requests"]["completed"] == summary["requests"]["arrived"] > 300
    # The written scenario repeats the run.
    again = _capsim("run", str(out / "scenario.yaml"), "-o", str(tmp_path / "again"), "-q", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again" / "requests.parquet").read_bytes() == (out / "requests.parquet").read_bytes()


def test_show_scenario_round_trips(tmp_path):
    proc = _capsim("run", "--show-scenario", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert load_scenario(yaml.safe_load(proc.stdout)) == default_scenario()
