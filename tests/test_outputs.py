"""Where a run's results go: ``-o`` is checked before simulating, the directory ends up holding
exactly that run's files (or the run refuses, with ``--existing refuse``), every file is written
whole, and the CLI lists only what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import sim
from sim.results.records import OUTPUT_FILES, OutputError, check_output_dir
from tests.helpers import assert_one_line_error, run_app

_SCENARIO = {
    "profile": {"kind": "explicit", "fixed_s": 0.01, "per_token_s": 1e-5, "kv_capacity_tokens": 4096},
    "workload": {"arrival": {"rate_per_s": 10.0}, "num_requests": 30,
                 "classes": [{"name": "x", "prompt_tokens": {"dist": "fixed", "value": 50},
                              "output_tokens": {"dist": "fixed", "value": 5}}]},
}


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_SCENARIO))
    return path


def test_a_summary_run_into_a_full_runs_directory_leaves_only_its_own_files(scenario_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out).mkdir()
    (out / "notes.txt").write_text("mine")  # not capsim's: never touched
    assert run_app("run", scenario_file, "-o", out, "-q").exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([*OUTPUT_FILES, "notes.txt"])
    result = run_app("run", scenario_file, "-o", out, "--records", "summary", "--set", "workload.num_requests=40")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "scenario.yaml", "summary.json"]
    assert json.loads((out / "summary.json").read_text())["requests"]["arrived"] == 40
    # The CLI names exactly what it wrote.
    listed = [line for line in result.stdout.splitlines() if line.startswith("results:")]
    assert listed == [f"results: {out}/ (summary.json, scenario.yaml)"], result.stdout


def test_the_cli_lists_every_table_of_a_full_run(scenario_file: Path, tmp_path: Path) -> None:
    result = run_app("run", scenario_file, "-o", tmp_path / "o")
    assert f"results: {tmp_path / 'o'}/ ({', '.join(OUTPUT_FILES)})" in result.stdout


def test_existing_refuse_stops_before_simulating(scenario_file: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("{}")

    def no_simulation(*args: object, **kwargs: object) -> None:
        raise AssertionError("simulated although the output directory was refused")

    monkeypatch.setattr("sim.engine.simulate", no_simulation)
    result = run_app("run", scenario_file, "-o", out, "--existing", "refuse")
    assert_one_line_error(result, f"--out {out}: holds an earlier run's results (summary.json)")
    assert (out / "summary.json").read_text() == "{}"


@pytest.mark.parametrize("target, message", [
    ("file", "is a file, not a directory"),
    ("file/sub", "cannot be created:"),
    ("", "empty directory name"),
])
def test_an_unusable_out_is_refused_before_simulating(scenario_file: Path, tmp_path: Path, target: str, message: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("x")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sim.engine.simulate", lambda *a, **k: pytest.fail("simulated before checking --out"))
    assert_one_line_error(run_app("run", scenario_file, "-o", target), message)


def test_out_dot_writes_into_the_current_directory(scenario_file: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert run_app("run", scenario_file, "-o", ".", "-q").exit_code == 0
    assert (here / "summary.json").exists()


def test_check_output_dir_creates_nothing(tmp_path: Path) -> None:
    check_output_dir(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
    with pytest.raises(OutputError, match="existing is refuse"):
        (tmp_path / "c").mkdir()
        (tmp_path / "c" / "requests.parquet").write_text("")
        check_output_dir(tmp_path / "c", "refuse")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere: permissions cannot be refused")
def test_an_unwritable_directory_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(OutputError, match="permission denied"):
        check_output_dir(locked)


def test_write_leaves_no_temporary_files_and_replaces_whole_files(tmp_path: Path) -> None:
    result = sim.simulate(sim.load_scenario(_SCENARIO))
    result.write(tmp_path)
    result.write(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(OUTPUT_FILES)
    assert result.files == OUTPUT_FILES
    assert sim.simulate(sim.load_scenario(_SCENARIO), records="summary").files == ("summary.json", "scenario.yaml")


def test_help_is_not_cut_when_piped() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERMINAL_WIDTH", "LINES")}
    proc = subprocess.run([sys.executable, "-m", "sim.cli.app", "run", "--help"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout
    assert "capsim run my.yaml --set workload.classes.0.slo.ttft_s=0.5 --seed 3 --no-write" in proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) >= 100
