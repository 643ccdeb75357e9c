"""Checking a profile against serving benchmarks: ``capsim validate --benchmarks``.

- Every predicted value is the re-enactment of its row with the profile named, with the requests a
  fit would simulate (no fitting): a roofline, an engine preset, and a measured profile file whose
  predictions equal the fit's own simulation of its coefficients.
- The error column is (predicted − measured) / measured, and the summary's medians and p90s are
  those of the per-row errors, per metric and overall.
- A row the simulator cannot take is listed with the reason; the others still run.
- The command prints the table and the summary, writes the CSVs and the JSON, prints a progress
  line per row, and refuses bad input in one line (the bad-input corpus holds more cases).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from calibration.measured import write_profile
from sim.fitting.benchmark_csv import read_benchmarks
from sim.fitting.benchmark_validate import RowCheck, format_validation, validate_benchmarks
from sim.fitting.reenact import (profile_record, roofline_coefficients, simulate_benchmark, simulate_row,
                                 simulation_plan)
from tests.helpers import assert_one_line_error, run_app
from tests.shared_data import SHARED, need

# Rows 1-4: one configuration at two concurrencies and two rates (small enough to run in seconds);
# row 5: Llama-3.1-70B in 16 bits on one 24 GB L4, whose weights do not fit; row 6: a TPOT faster
# than one read of the weights at the H100's peak bandwidth.
BENCH = """\
model,quantization,hardware,tp,input_tokens,output_tokens,concurrency,request_rate,num_requests,output_tokens_per_s,ttft_mean_s,tpot_mean_s,notes
llama-3.1-8b,bf16,h100-sxm,1,1024,64,1,,6,118.5,0.0231,0.00795,one user
llama-3.1-8b,bf16,h100-sxm,1,512,32,8,,40,760,0.0712,,
llama-3.1-8b,bf16,h100-sxm,1,2048,32,,4,30,,0.0416,0.00862,poisson
llama-3.1-8b,bf16,h100-sxm,1,256,64,,10,40,,0.0172,0.0084,
llama-3.1-70b,bf16,l4,1,1024,64,1,,10,1.49,5.0,0.6,does not fit
llama-3.1-8b,bf16,h100-sxm,1,1024,64,1,,6,,0.0231,0.0001,too fast
"""
ROOFLINE = {"kind": "roofline"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("validate") / "bench.csv"
    path.write_text(BENCH)
    return path


@pytest.fixture(scope="module")
def roofline_check(bench):
    lines: list[str] = []
    return validate_benchmarks(bench, profile=ROOFLINE, max_requests=30, progress=lines.append), lines


def test_predictions_are_the_rows_reenacted_with_the_profile(bench, roofline_check):
    v, _ = roofline_check
    rows = {r.row: r for r in read_benchmarks(bench)}
    assert [r.row for r in v.rows] == [1, 2, 3, 4]
    for check in v.rows:
        row = rows[check.row]
        n, streams = simulation_plan(row, roofline_coefficients(row), max_requests=30)
        assert (check.simulated_requests, check.streams) == (n, streams)
        sim = simulate_row(row, ROOFLINE, requests=n, streams=streams)
        assert check.predicted == {m: sim[m] for m in row.metrics}
        assert check.measured == row.metrics
        assert check.profile_kind == "derived"
    # The cap bites where a row measured more requests than it allows.
    assert v.rows[1].simulated_requests < v.rows[1].num_requests == 40


def test_errors_and_summary_are_those_of_the_rows(roofline_check):
    v, _ = roofline_check
    for check in v.rows:
        assert check.error == {m: (check.predicted[m] - x) / x for m, x in check.measured.items()}
    summary = v.summary()
    every = []
    for metric in ("output_tokens_per_s", "ttft_mean_s", "tpot_mean_s"):
        errs = np.abs([c.error[metric] for c in v.rows if metric in c.error])
        every.extend(errs)
        assert summary[metric]["median"] == pytest.approx(np.median(errs), rel=1e-12)
        assert summary[metric]["p90"] == pytest.approx(np.percentile(errs, 90), rel=1e-12)
        assert summary[metric]["points"] == errs.size
    assert summary["overall"]["median"] == pytest.approx(np.median(every), rel=1e-12)
    assert summary["overall"]["p90"] == pytest.approx(np.percentile(every, 90), rel=1e-12)
    assert summary["overall"]["points"] == 9
    table = v.table()
    assert table.num_rows == 9
    assert table.column("error").to_pylist() == [c.error[m] for c in v.rows for m in c.measured]


def test_a_row_that_cannot_be_simulated_is_listed_and_the_rest_run(roofline_check):
    v, lines = roofline_check
    assert [s.row for s in v.skipped] == [5, 6]
    assert v.skipped[0].reason.startswith("model = 'llama-3.1-70b' (bf16) does not fit"), v.skipped[0].reason
    assert v.skipped[1].reason.startswith("row 6, column 'tpot_mean_s': 0.0001 s per token is faster than the "
                                          "hardware allows"), v.skipped[1].reason
    assert len(lines) == 6 and lines[4].startswith("row 5/6 llama-3.1-70b/bf16/l4/tp1") and "skipped" in lines[4]
    text = format_validation(v)
    assert "skipped row 5 (llama-3.1-70b/bf16/l4/tp1): model = 'llama-3.1-70b' (bf16) does not fit" in text
    assert "overall" in text and "error: (predicted − measured) / measured" in text


def test_a_measured_profile_predicts_what_its_coefficients_simulate(bench, tmp_path):
    """A profile file priced as is: the same numbers the fit's own simulation of those
    coefficients gives (so nothing is fitted on the way)."""
    rows = read_benchmarks(bench)[:4]
    coef = {k: v * 1.3 for k, v in roofline_coefficients(rows[0]).items()}
    write_profile(tmp_path / "profiles", profile_record(rows[0], coef, kind="measured"), pa.table({"row": [1]}))
    v = validate_benchmarks(bench, profile={"kind": "measured", "path": str(tmp_path / "profiles")}, max_requests=30)
    assert [c.row for c in v.rows] == [1, 2, 3, 4]
    assert v.skipped[0].reason.startswith("no profile for llama-3.1-70b/bf16/l4/tp1 in "), v.skipped[0].reason
    for check, row in zip(v.rows, rows):
        sim = simulate_benchmark(row, coef, requests=check.simulated_requests, streams=check.streams)
        assert check.predicted == {m: sim[m] for m in row.metrics}
        assert check.profile_kind == "measured"


def test_an_engine_preset_prices_every_row(bench):
    engine = {"preset": "tensorrt-llm-0.17"}
    v = validate_benchmarks(bench, profile=ROOFLINE, engine=engine, max_requests=30)
    row = read_benchmarks(bench)[1]
    check = next(c for c in v.rows if c.row == row.row)
    sim = simulate_row(row, ROOFLINE, engine=engine, requests=check.simulated_requests, streams=check.streams)
    assert check.predicted == {m: sim[m] for m in row.metrics}
    assert v.engine["preset"] == "tensorrt-llm-0.17" and v.engine["admission"] == "reserve"
    with pytest.raises(ValueError, match=r"engine: preset = 'tensorrt-llm-9': unknown engine preset"):
        validate_benchmarks(bench, engine={"preset": "tensorrt-llm-9"})


def test_published_rows_are_predicted_whole(tmp_path):
    """Two of the shared TensorRT-LLM rows (every request queued at once): simulated whole."""
    path = need(SHARED / "benchmarks" / "tensorrt-llm-0.17-max-throughput.csv")
    small = tmp_path / "trt.csv"
    small.write_text("".join(path.read_text().splitlines(keepends=True)[:3]))
    v = validate_benchmarks(small, profile=ROOFLINE, engine={"preset": "tensorrt-llm-0.17"})
    assert not v.skipped and len(v.rows) == 2
    for c in v.rows:
        assert isinstance(c, RowCheck) and c.simulated_requests == c.num_requests
        assert abs(c.error["output_tokens_per_s"]) < 0.5  # the datasheet roofline is within 50% of TensorRT-LLM here


# -- the command line ----------------------------------------------------------------------------

def test_cli_prints_the_table_and_writes_csv_and_json(bench, tmp_path):
    r = run_app("validate", "--benchmarks", bench, "--profile", "roofline", "--max-requests", 30, "-o", tmp_path)
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "row  configuration" in out and "llama-3.1-8b/bf16/h100-sxm/tp1" in out and "overall" in out
    assert "skipped row 5" in out and "skipped row 6" in out
    progress = r.stderr.strip().splitlines()
    assert [p.split(" ", 2)[1] for p in progress] == ["1/6", "2/6", "3/6", "4/6", "5/6", "6/6"]
    with open(tmp_path / "validate-benchmarks.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    data = json.loads((tmp_path / "validate-benchmarks.json").read_text())
    assert len(lines) == 9 and data["profile"] == ROOFLINE
    first = data["rows"][0]
    assert float(lines[0]["predicted"]) == first["predicted"][lines[0]["metric"]]
    assert float(lines[0]["error"]) == first["error"][lines[0]["metric"]]
    assert lines[0]["simulated_requests"] == str(first["simulated_requests"])
    assert data["skipped"][0]["row"] == 5
    with open(tmp_path / "validate-benchmarks-summary.csv", newline="") as f:
        summary = {s["metric"]: s for s in csv.DictReader(f)}
    assert float(summary["overall"]["median_abs_error"]) == data["summary"]["overall"]["median"]


@pytest.mark.parametrize(("args", "needle"), [
    (("--benchmarks", "absent.csv"), "absent.csv: no such benchmark file"),
    (("--benchmarks", "BENCH", "--engine", "trt"), "--engine 'trt': unknown engine preset"),
    (("--benchmarks", "BENCH", "--model", "llama-3.1-8b"), "--model does not apply with --benchmarks"),
    (("--benchmarks", "BENCH", "--rate", "3"), "--rate does not apply with --benchmarks"),
    (("--benchmarks", "BENCH", "--alongside"), "--alongside does not apply with --benchmarks"),
    (("--benchmarks", "BENCH", "--profile", "nowhere.json"), "--profile nowhere.json: no such file or directory"),
    (("--engine", "vllm-0.8", "--model", "llama-3.2-1b"), "--engine applies only with --benchmarks"),
    (("--max-requests", "5",), "--max-requests applies only with --benchmarks"),
], ids=["missing-file", "unknown-engine", "model", "rate", "alongside", "profile", "engine-alone", "max-requests-alone"])
def test_cli_bad_input_is_one_line(bench, tmp_path, args, needle):
    args = tuple(str(bench) if a == "BENCH" else a for a in args)
    r = run_app("validate", *args, "-o", tmp_path / "out")
    assert_one_line_error(r, needle)
    assert not (tmp_path / "out").exists()
