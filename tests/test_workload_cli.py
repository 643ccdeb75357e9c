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
    p = subprocess.run([sys.executable, "-m", "sim.cli.app", "workload", "describe", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert p.stdout == "" and len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("capsim: error: ")


# ----------------------------------------------------------------------------------------------
# Issue 16: traces too short for what is asked, flags the messages name, a progress bar


AZ_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def _azure(tmp_path: Path, *rows: tuple[int, int, int]) -> Path:
    f = tmp_path / "a.csv"
    f.write_text(AZ_HEADER + "".join(f"2023-11-16 18:17:{s:02d}.5000000,{p},{o}\n" for s, p, o in rows))
    return f


def test_describe_refuses_a_trace_without_a_rate_and_never_prints_nan(tmp_path: Path):
    _one_line_error(_run("workload", "describe", _azure(tmp_path, (1, 5, 1))),
                    "the trace holds 1 request: a rate needs at least 2 requests at distinct times")
    f = tmp_path / "g.csv"
    f.write_text("t,in,out\n7,2,3\n7,3,4\n")
    _one_line_error(_run("workload", "describe", f, "--columns", "arrival_s=t,prompt_tokens=in,output_tokens=out"),
                    "all 2 requests arrive at the same instant (7 s)")
    two = _run("workload", "describe", _azure(tmp_path, (1, 5, 1), (2, 5, 1)))
    assert two.exit_code == 0, two.output
    flat = " ".join(two.stdout.split())
    assert "nan" not in flat.lower()
    assert "- (needs 3 arrivals at distinct times)" in flat or "needs 3 arrivals" in flat
    assert "a length column is constant" in flat


def test_fit_refuses_fewer_than_a_hundred_arrivals(tmp_path: Path):
    from workloads.fit import MIN_ARRIVALS

    assert MIN_ARRIVALS == 100
    f = _azure(tmp_path, (1, 5, 1), (2, 6, 1), (3, 7, 1))
    _one_line_error(_run("workload", "fit", f), "cannot fit a workload to 3 arrival(s) spanning 2 s: need at least "
                                                "100 arrivals at distinct times")


def test_allow_duplicates_is_a_flag_and_the_message_names_it(tmp_path: Path):
    f = _azure(tmp_path, (1, 5, 1), (1, 5, 1), (2, 5, 1))
    _one_line_error(_run("workload", "describe", f), "pass --allow-duplicates")
    r = _run("workload", "describe", f, "--allow-duplicates")
    assert r.exit_code == 0, r.output
    assert "3" in r.stdout


def test_bad_flags_name_the_flag(tmp_path: Path):
    g = tmp_path / "g.csv"
    g.write_text("t,in,out\n1,2,3\n2,3,4\n")
    _one_line_error(_run("workload", "describe", g, "--columns", "arrival_s=t,prompt=in,output_tokens=out"),
                    "columns (--columns) has an unknown role 'prompt'")
    _one_line_error(_run("workload", "describe", g, "--columns", "arrival_s=t,prompt_tokens=in,output_tokens=out",
                         "--time-unit", "min"), "time_unit (--time-unit) 'min' is not one of s, ms, us, ns")
    _one_line_error(_run("workload", "describe", g, "--format", "csv"), "--columns arrival_s=COL")
    _one_line_error(_run("workload", "fit", g, "--seed", "-3"), "--seed -3: must be >= 0")


def test_fit_reports_its_steps_to_the_progress_callback():
    import numpy as np
    import pyarrow as pa

    from workloads.fit import fit

    rng = np.random.default_rng(4)
    t = np.sort(rng.uniform(0, 100, 400))
    table = pa.table({"arrival_s": t - t[0], "prompt_tokens": rng.integers(10, 1000, 400),
                      "output_tokens": rng.integers(1, 100, 400)})
    seen: list[tuple[str, int, int]] = []
    fit(table, sample_requests=20_000, progress=lambda step, done, total: seen.append((step, done, total)))
    steps = [s for s, _, _ in seen]
    assert steps[0] == "describing the trace" and steps[-1] == "done"
    assert any(s.startswith("gamma base CV") for s in steps) and any(s.startswith("weibull base CV") for s in steps)
    done = [d for _, d, _ in seen]
    assert done == sorted(done) and done[0] == 0
    assert all(0 <= d <= total for _, d, total in seen)
    assert seen[-1][1] == seen[-1][2]  # 100% at the end


def test_fit_shows_a_progress_bar_with_a_percentage_on_a_terminal(tmp_path: Path):
    import numpy as np
    import re

    rng = np.random.default_rng(1)
    f = tmp_path / "g.csv"
    f.write_text("t,in,out\n" + "".join(f"{x:.6f},{rng.integers(10, 1000)},{rng.integers(1, 100)}\n"
                                        for x in np.cumsum(rng.exponential(0.5, 200))))
    from typer.testing import CliRunner

    from sim.cli.app import app

    r = CliRunner().invoke(app, ["workload", "fit", str(f), "--columns", "arrival_s=t,prompt_tokens=in,output_tokens=out"],
                           env={"FORCE_COLOR": "1"})  # rich draws live output only on a terminal
    assert r.exit_code == 0, r.output
    assert "fitting g.csv" in r.stderr and "100%" in r.stderr
    assert len(set(re.findall(r"\b\d{1,3}%", r.stderr))) >= 3  # several steps, not a spinner
    plain = _run("workload", "fit", str(f), "--columns", "arrival_s=t,prompt_tokens=in,output_tokens=out")
    assert plain.exit_code == 0 and plain.stderr == ""  # piped: no bar, nothing on stderr


def test_fit_of_perfectly_regular_arrivals_searches_the_lowest_cv():
    import numpy as np
    import pyarrow as pa

    from workloads.fit import fit

    # Gaps all 1 s: CV 0, below any base's range (it used to reach math.log(0)).
    n = 200
    table = pa.table({"arrival_s": np.arange(n, dtype=float), "prompt_tokens": np.full(n, 10),
                      "output_tokens": np.full(n, 5)})
    r = fit(table, sample_requests=20_000)
    assert any("inter-arrival CV 0 is below the lowest the bases reach; searched for 0.05" in n for n in r.notes)
    assert r.workload["arrival"]["process"] in ("gamma", "weibull")
