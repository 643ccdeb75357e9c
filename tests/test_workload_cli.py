"""The ``capsim workload`` commands: describe, fit, presets, and their one-line errors (exit 2).

Run in-process through typer's ``CliRunner`` (stdout and stderr kept apart), plus one real
subprocess to check what a shell user sees. Fitting uses the smallest shared trace (Mooncake
synthetic, 4k requests) so the fit takes about two seconds; the written YAML is loaded back into
a full `Scenario`, which is what "loadable as a scenario's workload" means.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import assert_one_line_error, run_app
from sim.config import load_scenario
from tests.shared_data import AZURE_CONV, MOONCAKE_SYNTH, need
from workloads import generate
from workloads.presets import PRESETS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


_run = run_app
_one_line_error = assert_one_line_error


def test_help_lists_the_workload_commands_with_examples():
    top = _run("--help")
    assert top.exit_code == 0 and "workload" in top.output and "run" in top.output
    sub = _run("workload", "--help")
    assert sub.exit_code == 0
    for cmd in ("describe", "fit", "presets"):
        assert cmd in sub.output
    fit_help = _run("workload", "fit", "--help")
    assert "Examples:" in fit_help.output and "capsim workload fit" in fit_help.output


def test_describe_prints_stats_and_plots(tmp_path: Path):
    png = tmp_path / "conv.png"
    r = _run("workload", "describe", need(AZURE_CONV), "--plot", png)
    assert r.exit_code == 0, r.output
    for needle in ("19,366", "5.530 req/s", "1.094", "1.521", "prompt tokens mean / p50 / p90 / p99"):
        assert needle in r.stdout
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000


def test_fit_writes_a_scenario_ready_workload(tmp_path: Path):
    out, png = tmp_path / "synth.yaml", tmp_path / "synth.png"
    r = _run("workload", "fit", need(MOONCAKE_SYNTH), "-o", out, "--plot", png, "--name", "synth")
    assert r.exit_code == 0, r.output
    for needle in ("statistic", "trace", "fit", "error", "mean rate (req/s)", "inter-arrival CV",
                   "peak/mean, 1-min windows", "prompt p99", "output p50"):
        assert needle in r.stdout
    text = out.read_text()
    assert text.startswith("# workload fitted to") and "capsim workload fit" in text
    data = yaml.safe_load(text)
    sc = load_scenario({"workload": data})
    w = sc.workload
    assert w.classes[0].name == "synth" and w.duration_s == pytest.approx(1022.0, abs=0.1)
    assert w.mean_rate_per_s == pytest.approx(3.907, rel=1e-3)
    table = generate(w, seed=1, max_context=sc.max_context)
    assert 3000 < table.num_rows < 5000  # one span of a ~3.9 req/s trace of 3,993 requests
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
    # A scenario file can name the written file as its workload (read in place, relative to it).
    scenario_file = tmp_path / "scenario.yaml"
    scenario_file.write_text("name: fitted\nworkload: synth.yaml\n")
    assert load_scenario(scenario_file).workload == w
    # The stop rule can be swapped as the header says.
    assert load_scenario({"workload": {**data, "duration_s": None, "num_requests": 50}}).workload.num_requests == 50


def test_presets_lists_every_preset_with_source():
    r = _run("workload", "presets")
    assert r.exit_code == 0, r.output
    flat = " ".join(r.stdout.split())
    for name in PRESETS:
        assert name in r.stdout
    assert "2026-11-23" in flat and "CC-BY-4.0" in flat and "Apache-2.0" in flat


def test_malformed_trace_is_one_line_exit_2(tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"timestamp": 0, "input_length": 5, "output_length": 2, "hash_ids": []}\n{"timestamp": \n')
    _one_line_error(_run("workload", "describe", bad), str(bad))
    _one_line_error(_run("workload", "fit", bad, "-o", tmp_path / "w.yaml"), str(bad))
    assert not (tmp_path / "w.yaml").exists()
    headerless = tmp_path / "x.csv"
    headerless.write_text("x,y\n1,2\n")
    _one_line_error(_run("workload", "describe", headerless), "cannot tell the trace format")
    _one_line_error(_run("workload", "describe", tmp_path / "missing.csv"), "file not found")


def test_bad_options_are_one_line_exit_2(tmp_path: Path):
    trace = need(MOONCAKE_SYNTH)
    _one_line_error(_run("workload", "describe", trace, "--columns", "arrival_s"), "--columns", "ROLE=COLUMN")
    _one_line_error(_run("workload", "describe", trace, "--format", "azure-2025"), "unknown trace format")
    _one_line_error(_run("workload", "describe", trace, "--plot", tmp_path / "p.gif"), "--plot", ".png")
    _one_line_error(_run("workload", "fit", trace, "-o", tmp_path / "w.json"), "--out", ".yaml")


def test_a_trace_too_short_to_fit_is_one_line_exit_2(tmp_path: Path):
    f = tmp_path / "two.csv"
    f.write_text("t,in,out\n0,10,5\n1,12,6\n")
    cols = "arrival_s=t,prompt_tokens=in,output_tokens=out"
    described = _run("workload", "describe", f, "--columns", cols)
    assert described.exit_code == 0 and "1.000 req/s" in described.stdout  # (2 - 1) arrivals over 1 s
    _one_line_error(_run("workload", "fit", f, "--columns", cols), "cannot fit a workload to 2 arrival")


def test_subprocess_error_is_one_line_on_stderr(tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,ten,5\n")
    p = subprocess.run([sys.executable, "-m", "sim.cli", "workload", "describe", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert p.stdout == "" and len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("capsim: error: ")
