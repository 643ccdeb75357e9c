"""Fitting a profile to serving benchmarks by inverse simulation.

- A benchmark CSV made by simulating a known profile (roofline coefficients times known factors)
  is fitted back: the factors, the fixed overhead and every metric come back.
- The re-enactment of a run agrees with the engine's own closed loop, and a run simulated with
  fewer requests than measured stands for the longer one.
- A "real-world" CSV (gaps, extra columns, mixed concurrency and rate rows, two configurations)
  fits and reports errors only for what was measured; the profile it writes is one the simulator
  uses; ``capsim calibrate --from-benchmarks`` prints the fit.
- Each malformed CSV gives one line naming the file, the row and the column.
- Before any fitting, rows faster than the hardware allows, rows whose columns contradict each
  other and latencies in milliseconds are refused; the published benchmarks pass. After fitting,
  a poor fit is refused with its figures, or kept labelled poor with ``--keep-poor-fit``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import sim
from calibration.measured import ProfileRecord, coefficients_from_roofline, read_profile, write_profile
from calibration.spec import RooflineProfileSpec, build_profile
from sim.fitting.benchmark_checks import check_benchmarks, hardware_limits
from sim.fitting.benchmark_csv import BENCHMARK_METRICS, BenchmarkRow, read_benchmarks
from sim.fitting.benchmark_fit import fit_from_benchmarks
from sim.fitting.fit_report import format_fit
from sim.fitting.fit_result import POOR_FIT_MEDIAN
from sim.fitting.reenact import simulate_benchmark, simulation_plan
from tests.helpers import assert_one_line_error, run_app

CONFIG = ("llama-3.1-8b", "bf16", "h100-sxm", 1)
TRUE_FACTORS = {"compute": 0.7, "memory": 1.3}
TRUE_T0 = 3e-3
HEADER = ["model", "quantization", "hardware", "tp", "input_tokens", "output_tokens", "concurrency", "request_rate",
          "num_requests", *BENCHMARK_METRICS]

# (input_tokens, output_tokens, concurrency, request_rate, num_requests): single requests with short
# and long prompts (overhead against compute, TTFT's intercept and slope), a full batch of long
# contexts and a middling one, and two open-loop rates. All small enough to simulate whole.
SYNTHETIC = [(128, 64, 1, None, 4), (4096, 32, 1, None, 3), (512, 32, 1, None, 3), (4096, 32, 64, None, 192),
             (1024, 64, 16, None, 48), (1024, 32, None, 8.0, 40), (2048, 16, None, 2.0, 25)]


def roofline_coefficients(model: str = "llama-3.1-8b", hardware: str = "h100-sxm") -> dict[str, float]:
    return coefficients_from_roofline(build_profile(RooflineProfileSpec(), model=model, hardware=hardware,
                                                    quantization="bf16", tp=1))  # type: ignore[arg-type]


def true_coefficients() -> dict[str, float]:
    c = roofline_coefficients()
    for k in ("c_lin", "c_pf", "c_head"):
        c[k] *= TRUE_FACTORS["compute"]
    for k in ("w", "c_dc"):
        c[k] *= TRUE_FACTORS["memory"]
    c["t0"] = TRUE_T0
    return c


def bench_row(i: int, inp: int, out: int, conc: int | None, rate: float | None, n: int,
              config: tuple[str, str, str, int] = CONFIG) -> BenchmarkRow:
    return BenchmarkRow(i, *config, input_tokens=inp, output_tokens=out, concurrency=conc, request_rate=rate,
                        num_requests=n, metrics={})


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def synthetic_csv(tmp_path_factory) -> Path:
    """The benchmark a server with the true coefficients would report, each run simulated whole
    (and a rate row averaged over the arrival streams the fit will use)."""
    true, start = true_coefficients(), roofline_coefficients()
    lines = []
    for i, spec in enumerate(SYNTHETIC, start=1):
        row = bench_row(i, *spec)
        n, streams = simulation_plan(row, start)
        assert n == row.num_requests  # simulated whole: the truth is an exact zero of the fit
        m = simulate_benchmark(row, true, seed=0, streams=streams)
        lines.append([*CONFIG, row.input_tokens, row.output_tokens, row.concurrency or "", row.request_rate or "",
                      row.num_requests, *(repr(m[k]) for k in BENCHMARK_METRICS)])
    return write_csv(tmp_path_factory.mktemp("bench") / "synthetic.csv", HEADER, lines)


@pytest.fixture(scope="module")
def synthetic_fit(synthetic_csv):
    fits = fit_from_benchmarks(synthetic_csv, cv_folds=0)
    assert len(fits) == 1
    return fits[0]


def test_fit_recovers_known_factors_and_metrics(synthetic_fit):
    f = synthetic_fit
    assert f.configuration == CONFIG
    assert f.factors["compute"] == pytest.approx(TRUE_FACTORS["compute"], rel=0.03)
    assert f.factors["memory"] == pytest.approx(TRUE_FACTORS["memory"], rel=0.03)
    assert f.coefficients["t0"] == pytest.approx(TRUE_T0, rel=0.03)
    true = true_coefficients()
    for k in ("c_lin", "c_pf", "c_head", "w", "c_dc"):
        assert f.coefficients[k] == pytest.approx(true[k], rel=0.03), k
    assert f.coefficients["c_seq"] == 0.0
    assert f.median_error < 0.005 and f.max_error < 0.03, format_fit(f)
    assert all(len(r.error) == len(BENCHMARK_METRICS) for r in f.rows)
    # These rows pin every factor: well under 5% per 1% of measurement noise, so no warning.
    assert max(f.uncertainty.values()) < 0.05 and not any("hardly" in n for n in f.notes), f.notes


def test_same_seed_same_runs():
    """Common random numbers: a rate row re-enacted twice sends the same requests, so the
    objective the optimiser sees is a function of the coefficients alone."""
    row = bench_row(1, 512, 32, None, 8.0, 30)
    assert simulate_benchmark(row, true_coefficients(), streams=3) == simulate_benchmark(row, true_coefficients(), streams=3)
    assert simulate_benchmark(row, true_coefficients(), seed=1) != simulate_benchmark(row, true_coefficients(), seed=2)


def test_profile_record_is_filed_and_used_by_the_simulator(synthetic_fit, tmp_path):
    f = synthetic_fit
    r = f.record
    assert r.kind == "derived-from-measured" and (r.model, r.quantization, r.hardware, r.tp) == CONFIG
    assert "synthetic.csv" in r.source and "rows 1-7" in r.source
    assert r.validity == {"input_tokens_min": 128.0, "input_tokens_max": 4096.0, "output_tokens_min": 16.0,
                          "output_tokens_max": 64.0, "concurrency_min": 1.0, "concurrency_max": 64.0,
                          "request_rate_min": 2.0, "request_rate_max": 8.0}
    assert r.layers == 32 and r.coefficients == f.coefficients
    js = write_profile(tmp_path, r, f.table)
    assert read_profile(js) == r
    assert f.table.num_rows == len(SYNTHETIC) and "measured_ttft_p99_s" in f.table.column_names
    # A scenario that names the directory prices its iterations with the fitted coefficients.
    s = sim.load_scenario({"profile": {"kind": "measured", "path": str(tmp_path)},
                           "workload": {"arrival": {"rate_per_s": 2.0}, "num_requests": 5,
                                        "classes": [{"name": "x", "prompt_tokens": {"dist": "fixed", "value": 64},
                                                     "output_tokens": {"dist": "fixed", "value": 8}}]}})
    summary = sim.simulate(s).summary
    assert summary["profile"]["kind"] == "derived-from-measured"
    assert summary["profile"]["assumptions"]["t0"] == pytest.approx(f.coefficients["t0"])


def _client_metrics(requests) -> dict[str, float]:
    """What vLLM's benchmark client computes from its requests (every request once)."""
    ttft = requests.column("ttft_s").to_numpy()
    e2e = requests.column("e2e_s").to_numpy()
    out = requests.column("output_tokens").to_numpy()
    arrival = requests.column("arrival_s").to_numpy()
    tpot = (e2e - ttft) / (out - 1)
    duration = float((arrival + e2e).max())
    return {"output_tokens_per_s": out.sum() / duration, "requests_per_s": out.size / duration,
            "ttft_mean_s": ttft.mean(), "ttft_p50_s": np.percentile(ttft, 50), "ttft_p99_s": np.percentile(ttft, 99),
            "tpot_mean_s": tpot.mean(), "tpot_p50_s": np.percentile(tpot, 50), "tpot_p99_s": np.percentile(tpot, 99),
            "itl_mean_s": (e2e - ttft).sum() / (out - 1).sum()}


def test_concurrency_row_is_the_engines_closed_loop(tmp_path):
    """The re-enacted run equals the engine's own closed loop of C users without think time,
    scored as the benchmark client scores it."""
    row = bench_row(1, 700, 24, 6, None, 20)
    coef = true_coefficients()
    got = simulate_benchmark(row, coef)
    record = ProfileRecord(model="llama-3.1-8b", quantization="bf16", hardware="h100-sxm", tp=1, kind="measured",
                           coefficients=coef, layers=32, validity={}, heldout_error={}, source="test")
    (tmp_path / "p.json").write_text(record.to_json())
    s = sim.load_scenario({"profile": {"kind": "measured", "path": str(tmp_path)},
                           "workload": {"arrival": {"process": "closed_loop", "users": 6}, "num_requests": 20,
                                        "classes": [{"name": "x", "prompt_tokens": {"dist": "fixed", "value": 700},
                                                     "output_tokens": {"dist": "fixed", "value": 24}}]}})
    want = _client_metrics(sim.simulate(s).requests)
    for k in BENCHMARK_METRICS:
        assert got[k] == pytest.approx(want[k], rel=1e-9), k


@pytest.mark.parametrize("conc, rate, tol", [(16, None, 0.01), (None, 12.0, 0.03)], ids=["concurrency", "rate"])
def test_fewer_simulated_requests_stand_for_the_whole_run(conc, rate, tol):
    """400 requests simulated whole against 80 (closed loop: whole rounds; rate: averaged over
    streams): means and throughput agree within ``tol``; warm-up and drain are not overweighted."""
    row = bench_row(1, 512, 32, conc, rate, 400)
    coef = roofline_coefficients()
    whole = simulate_benchmark(row, coef)
    part = simulate_benchmark(row, coef, requests=80, streams=4)
    for k in ("output_tokens_per_s", "requests_per_s", "ttft_mean_s", "tpot_mean_s", "itl_mean_s"):
        assert part[k] == pytest.approx(whole[k], rel=tol), k
    assert part["note"] is None


def test_simulation_plan_bounds_the_work():
    coef = roofline_coefficients()
    # Concurrency 1, 256 output tokens: every token is an iteration, so few requests suffice.
    assert simulation_plan(bench_row(1, 512, 256, 1, None, 1000), coef) == (16, 1)
    # A large batch: at most max_requests, in whole rounds of users.
    assert simulation_plan(bench_row(1, 512, 128, 64, None, 1000), coef) == (384, 1)
    # Never fewer than three rounds of every user.
    assert simulation_plan(bench_row(1, 512, 128, 200, None, 1000), coef)[0] == 600
    # A short open-loop run is repeated over several arrival streams; a long one is not.
    assert simulation_plan(bench_row(1, 512, 32, None, 8.0, 30), coef) == (30, 7)
    assert simulation_plan(bench_row(1, 512, 32, None, 8.0, 1000), coef)[1] == 1
    # Whatever was measured, never more than measured.
    assert simulation_plan(bench_row(1, 512, 32, 4, None, 5), coef) == (5, 1)



# -- rate inf: every request at once --------------------------------------------------------------

# Single requests (the overhead and the prompt's slope) and two all-at-once runs, sent as
# ``--request-rate inf`` sends them: the batches fill from one queue at time 0.
ALL_AT_ONCE = [(128, 64, 1, None, 4), (4096, 32, 1, None, 3), (1024, 32, None, float("inf"), 48),
               (4096, 32, None, float("inf"), 64)]


def test_a_rate_inf_row_is_re_enacted_all_at_once():
    """Every request of a rate-inf row is sent at time 0 and the run is simulated whole (nothing to
    extrapolate), so it is the same run as a closed loop of num_requests users; a capped run would
    not be (its queue would be shorter), and simulation_plan never caps one."""
    from sim.fitting.reenact import benchmark_requests

    inf = bench_row(1, 1024, 32, None, float("inf"), 48)
    t = benchmark_requests(inf, 48, seed=0)
    assert t.column("arrival_s").to_pylist() == [0.0] * 48 and t.column("after_id").to_pylist() == [-1] * 48
    assert simulation_plan(inf, roofline_coefficients()) == (48, 1)
    assert simulation_plan(bench_row(1, 512, 128, None, float("inf"), 30000), roofline_coefficients()) == (30000, 1)
    coef = true_coefficients()
    assert simulate_benchmark(inf, coef) == simulate_benchmark(bench_row(1, 1024, 32, 48, None, 48), coef)


def test_rate_inf_rows_are_fitted(tmp_path):
    """--from-benchmarks takes rate-inf rows: the truth comes back from a CSV that has them, and the
    profile's validity counts them as num_requests users (a finite figure, so the JSON stays JSON)."""
    true = true_coefficients()
    lines = []
    for i, spec in enumerate(ALL_AT_ONCE, start=1):
        m = simulate_benchmark(bench_row(i, *spec), true)
        lines.append([*CONFIG, spec[0], spec[1], spec[2] or "", "inf" if spec[3] else "", spec[4],
                      *(repr(m[k]) for k in BENCHMARK_METRICS)])
    path = write_csv(tmp_path / "inf.csv", HEADER, lines)
    (f,) = fit_from_benchmarks(path, cv_folds=0)
    assert f.median_error < 0.005, format_fit(f)
    assert f.factors["compute"] == pytest.approx(TRUE_FACTORS["compute"], rel=0.03)
    assert f.factors["memory"] == pytest.approx(TRUE_FACTORS["memory"], rel=0.03)
    assert f.coefficients["t0"] == pytest.approx(TRUE_T0, rel=0.03)
    assert [r.load for r in f.rows][2:] == ["rate inf (all at once)"] * 2
    assert f.record.validity["concurrency_max"] == 64.0 and "request_rate_max" not in f.record.validity
    assert read_profile(write_profile(tmp_path / "out", f.record, f.table)) == f.record
    assert "rate inf (all at once)" in format_fit(f)


# -- a real-world CSV ----------------------------------------------------------------------------

REAL_WORLD = """\
date,model,quantization,hardware,tp,input_tokens,output_tokens,concurrency,request_rate,num_requests,output_tokens_per_s,requests_per_s,ttft_mean_s,ttft_p50_s,ttft_p99_s,tpot_mean_s,tpot_p50_s,tpot_p99_s,itl_mean_s,notes
2025-03-02,llama-3.1-8b,bf16,h100-sxm,1,1024,64,1,,100,118.5,,0.0231,,,0.00795,,,0.00795,vllm bench serve --max-concurrency 1
2025-03-02,llama-3.1-8b,bf16,h100-sxm,1,1024,64,8,,200,760,11.9,0.0712,0.0705,,0.00918,0.00915,,,

2025-03-02,llama-3.1-8b,bf16,h100-sxm,1,1024,64,32,,400,1850,,0.181,,0.52,0.0131,,0.0152,0.0131,
2025-03-03,llama-3.1-8b,bf16,h100-sxm,1,2048,32,,4,200,124,3.9,0.0416,0.0398,0.0785,0.00862,,,,poisson
2025-03-03,llama-3.1-8b,bf16,h100-sxm,1,256,64,,10,300,,,0.0172,,,,0.00841,,,
2025-03-04,llama-3.2-1b,bf16,l4,1,512,32,4,,100,,,0.0452,,,0.0108,,,,"second GPU, two rows"
2025-03-04,llama-3.2-1b,bf16,l4,1,512,32,,2.5,100,,,0.0188,,,0.0101,,,,
"""


@pytest.fixture(scope="module")
def real_world_fits(tmp_path_factory):
    path = tmp_path_factory.mktemp("real") / "vllm-bench.csv"
    path.write_text(REAL_WORLD)
    messages: list[str] = []
    fits = fit_from_benchmarks(path, seed=1, progress=messages.append, max_requests=60, iteration_budget=600,
                               cv_folds=3)
    return path, fits, messages


def test_real_world_csv_fits_each_configuration(real_world_fits):
    path, fits, messages = real_world_fits
    assert [f.configuration for f in fits] == [CONFIG, ("llama-3.2-1b", "bf16", "l4", 1)]
    rows = read_benchmarks(path)
    assert [r.row for r in rows] == [1, 2, 3, 4, 5, 6, 7]  # the blank line is not a row
    for f in fits:
        for r in f.rows:
            present = {m for m in BENCHMARK_METRICS if m in rows[r.row - 1].metrics}
            assert set(r.measured) == set(r.fitted) == set(r.error) == present
            for m in present:
                assert r.error[m] == pytest.approx(r.fitted[m] / r.measured[m] - 1)
        assert f.median_error < 0.15, format_fit(f)
        assert all(0.1 < v < 10 for v in f.factors.values()), f.factors
    first, second = fits
    assert [r.row for r in first.rows] == [1, 2, 3, 4, 5] and [r.row for r in second.rows] == [6, 7]
    assert first.rows[0].simulated_requests == 10  # 64 tokens at concurrency 1: capped, weighted up
    assert any("rows 1-5 simulate fewer requests than measured" in n for n in first.notes)
    assert set(first.heldout_error) == {"itl", "throughput", "tpot", "ttft"}
    assert all(e["points"] >= 1 for e in first.heldout_error.values())
    assert second.heldout_error == {} and any("too few to cross-validate" in n for n in second.notes)
    assert "rows 6-7" in second.record.source
    assert messages and messages[0].startswith("llama-3.1-8b/bf16/h100-sxm/tp1: simulation 1, factors compute ×1.000")
    # The measurements table keeps the gaps as nulls.
    col = first.table.column("measured_requests_per_s").to_pylist()
    assert col[1] == 11.9 and col[0] is None


def test_format_fit_shows_measured_against_fitted(real_world_fits):
    _, fits, _ = real_world_fits
    text = format_fit(fits[0])
    assert text.startswith("llama-3.1-8b / bf16 / h100-sxm / tp1: 5 benchmark row(s), 24 measured values")
    assert "factors against the roofline: compute ×" in text and "held-out error (cross-validated)" in text
    lines = text.splitlines()
    row1 = next(i for i, line in enumerate(lines) if line.lstrip().startswith("1  concurrency 1"))
    assert "output_tokens_per_s" in lines[row1] and "118.5 tok/s" in lines[row1]
    # Row 1 measured 4 metrics: exactly 4 lines before row 2 starts.
    assert lines[row1 + 4].lstrip().startswith("2  concurrency 8")
    assert "ttft_p50_s" not in "".join(lines[row1:row1 + 4])


def test_cli_fits_and_writes_profiles(tmp_path):
    path = write_csv(tmp_path / "bench.csv", ["model", "quantization", "hardware", "tp", "input_tokens",
                                              "output_tokens", "concurrency", "num_requests", "tpot_mean_s"],
                     [["llama-3.2-1b", "bf16", "l4", 1, 512, 16, 4, 12, 0.0105]])
    out = tmp_path / "profiles"
    r = run_app("calibrate", "--from-benchmarks", path, "-o", out)
    assert r.exit_code == 0, r.output
    assert "llama-3.2-1b / bf16 / l4 / tp1: 1 benchmark row(s), 1 measured values" in r.stdout
    assert "tpot_mean_s" in r.stdout and "10.5 ms" in r.stdout
    js = out / "llama-3.2-1b__bf16__l4__tp1.json"
    assert js.exists() and js.with_suffix(".parquet").exists()
    assert read_profile(js).kind == "derived-from-measured"


def test_cli_error_is_one_line(tmp_path):
    path = write_csv(tmp_path / "bad.csv", HEADER, [[*CONFIG, 512, 32, 4, 2.0, 10, 100.0] + [""] * 8])
    assert_one_line_error(run_app("calibrate", "--from-benchmarks", path),
                          "bad.csv: row 1, columns 'concurrency' and 'request_rate': both are set")


# -- malformed CSVs: one line naming the file, the row and the column ----------------------------

GOOD = ["llama-3.1-8b", "bf16", "h100-sxm", "1", "512", "32", "4", "", "20", "100.5"] + [""] * 8


def _bad(tmp_path: Path, header: list[str] = HEADER, rows: list[list[str]] | None = None, text: str | None = None):
    path = tmp_path / "bench.csv"
    if text is not None:
        path.write_text(text)
    else:
        write_csv(path, header, rows if rows is not None else [GOOD])
    return path


def _with(**cells: str) -> list[str]:
    row = list(GOOD)
    for k, v in cells.items():
        row[HEADER.index(k)] = v
    return row


def _raises(path: Path, pattern: str, fit: bool = False) -> None:
    with pytest.raises(ValueError, match=pattern) as e:
        (fit_from_benchmarks if fit else read_benchmarks)(path)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"{path}: ")


def test_a_good_row_reads(tmp_path):
    (row,) = read_benchmarks(_bad(tmp_path))
    assert (row.row, row.concurrency, row.request_rate, row.metrics) == (1, 4, None, {"output_tokens_per_s": 100.5})


def test_engine_columns_read_into_the_rows_engine(tmp_path):
    header = HEADER + ["engine", "kv_cache_dtype", "kv_memory_fraction", "max_num_seqs", "max_num_batched_tokens",
                       "admission"]
    (row,) = read_benchmarks(_bad(tmp_path, header, [GOOD + ["tensorrt-llm-0.14-triton", "fp8", "0.95", "256", "4096",
                                                             "recompute"]]))
    assert row.engine == "tensorrt-llm-0.14" and row.kv_cache_dtype == "fp8"
    assert row.engine_settings == {"preset": "tensorrt-llm-0.14", "kv_memory_fraction": 0.95, "max_num_seqs": 256,
                                   "max_num_batched_tokens": 4096, "admission": "recompute"}
    sim.config.EngineSpec.model_validate(row.engine_settings)  # a scenario's engine section as it is


def test_empty_engine_cells_keep_the_defaults(tmp_path):
    (row,) = read_benchmarks(_bad(tmp_path, HEADER + ["engine", "kv_cache_dtype"], [GOOD + ["", ""]]))
    assert (row.engine, row.engine_settings, row.kv_cache_dtype) == (None, {}, None)


def test_request_rate_inf_sends_every_request_at_once(tmp_path):
    (row,) = read_benchmarks(_bad(tmp_path, rows=[_with(concurrency="", request_rate="inf")]))
    assert row.request_rate == float("inf") and row.all_at_once and row.load == "rate inf (all at once)"


def test_the_shared_files_name_their_engines():
    from tests.shared_data import SHARED, need

    for name, engine in (("tensorrt-llm-0.17-max-throughput.csv", "tensorrt-llm-0.17"),
                         ("tensorrt-llm-0.14-online.csv", "tensorrt-llm-0.14")):
        rows = read_benchmarks(need(SHARED / "benchmarks" / name))
        assert {r.engine for r in rows} == {engine}


def test_missing_required_column(tmp_path):
    header = [h for h in HEADER if h != "num_requests"]
    _raises(_bad(tmp_path, header, [GOOD[:8] + GOOD[9:]]), r"header: missing column\(s\) 'num_requests'; a benchmark")


def test_no_load_column(tmp_path):
    header = [h for h in HEADER if h not in ("concurrency", "request_rate")]
    _raises(_bad(tmp_path, header, [GOOD[:6] + GOOD[8:]]), r"header: needs a column 'concurrency' or 'request_rate'")


def test_both_concurrency_and_rate(tmp_path):
    _raises(_bad(tmp_path, rows=[GOOD, _with(request_rate="2.5")]),
            r"row 2, columns 'concurrency' and 'request_rate': both are set \('4', '2.5'\)")


def test_neither_concurrency_nor_rate(tmp_path):
    _raises(_bad(tmp_path, rows=[_with(concurrency="")]), r"row 1, columns 'concurrency' and 'request_rate': neither")


def test_non_numeric_number(tmp_path):
    _raises(_bad(tmp_path, rows=[GOOD, GOOD, _with(input_tokens="1k")]), r"row 3, column 'input_tokens': '1k' is not a number")


def test_non_positive_number(tmp_path):
    _raises(_bad(tmp_path, rows=[_with(num_requests="0")]), r"row 1, column 'num_requests': '0' must be > 0")


def test_negative_metric(tmp_path):
    _raises(_bad(tmp_path, rows=[_with(ttft_mean_s="-0.02")]), r"row 1, column 'ttft_mean_s': '-0.02' must be > 0")


def test_an_infinite_metric_or_concurrency_is_refused(tmp_path):
    # request_rate = inf is read (every request at once: test_request_rate_inf_sends_every_request_at_once)
    _raises(_bad(tmp_path, rows=[_with(ttft_mean_s="inf")]), r"row 1, column 'ttft_mean_s': 'inf' must be a finite")
    _raises(_bad(tmp_path, rows=[_with(concurrency="inf")]), r"row 1, column 'concurrency': 'inf' must be a finite")
    _raises(_bad(tmp_path, rows=[_with(concurrency="", request_rate="-inf")]),
            r"row 1, column 'request_rate': '-inf' must be a finite number")


def test_fractional_tp(tmp_path):
    _raises(_bad(tmp_path, rows=[_with(tp="1.5")]), r"row 1, column 'tp': '1.5' must be a whole number")


def test_row_without_metrics(tmp_path):
    _raises(_bad(tmp_path, rows=[GOOD, _with(output_tokens_per_s="")]),
            r"row 2, metric columns: all empty; give at least one of output_tokens_per_s")


def test_unknown_model(tmp_path):
    _raises(_bad(tmp_path, rows=[_with(model="llama-3.1-8")]),
            r"row 1, column 'model': unknown model 'llama-3.1-8' \(did you mean 'llama-3.1-8b'")


def test_unknown_hardware(tmp_path):
    _raises(_bad(tmp_path, rows=[_with(hardware="h100")]), r"row 1, column 'hardware': unknown hardware 'h100' \(did you mean")


def test_unknown_quantization(tmp_path):
    _raises(_bad(tmp_path, rows=[_with(quantization="fp-8")]),
            r"row 1, column 'quantization': unknown quantization 'fp-8' \(did you mean 'fp8'")


def test_duplicate_column(tmp_path):
    _raises(_bad(tmp_path, HEADER + ["ttft_mean_s"], [GOOD + ["0.1"]]), r"header: column 'ttft_mean_s' appears twice")


def test_empty_file(tmp_path):
    _raises(_bad(tmp_path, text=""), r"empty file; expected a header row")


def test_header_only(tmp_path):
    _raises(_bad(tmp_path, text=",".join(HEADER) + "\n\n"), r"no data rows after the header")


def test_vllm_field_names_in_milliseconds(tmp_path):
    _raises(_bad(tmp_path, HEADER + ["mean_ttft_ms"], [GOOD + ["21.5"]]),
            r"column 'mean_ttft_ms': is vLLM's result field; name it 'ttft_mean_s' in seconds")


def test_misspelt_metric(tmp_path):
    _raises(_bad(tmp_path, HEADER + ["tpot_mean"], [GOOD + ["0.01"]]),
            r"column 'tpot_mean': is not a known column \(did you mean 'tpot_mean_s'\?\)")


def test_unrelated_extra_columns_are_ignored(tmp_path):
    (row,) = read_benchmarks(_bad(tmp_path, HEADER + ["date", "server"], [GOOD + ["2025-01-01", "vllm 0.8"]]))
    assert row.metrics == {"output_tokens_per_s": 100.5}


def test_too_many_cells(tmp_path):
    _raises(_bad(tmp_path, rows=[GOOD + ["x"]]), rf"row 1: {len(HEADER) + 1} cells but the header names {len(HEADER)}")


def test_tp_that_does_not_divide_the_heads(tmp_path):
    _raises(_bad(tmp_path, rows=[_with(tp="3")]), r"row 1, column 'tp': 3 must divide llama-3.1-8b's 32 attention heads")


def test_longer_than_the_context(tmp_path):
    _raises(_bad(tmp_path, rows=[_with(input_tokens="131000", output_tokens="100")]),
            r"row 1, column 'input_tokens': input_tokens \+ output_tokens = 131100 exceeds llama-3.1-8b's context")


def test_per_token_metric_of_one_token_responses(tmp_path):
    _raises(_bad(tmp_path, rows=[_with(output_tokens="1", tpot_mean_s="0.01")]),
            r"row 1, column 'tpot_mean_s': needs output_tokens >= 2")


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"nowhere\.csv: no such benchmark file"):
        read_benchmarks(tmp_path / "nowhere.csv")


def test_weights_that_do_not_fit(tmp_path):
    _raises(_bad(tmp_path, rows=[GOOD, _with(model="llama-3.1-70b")]),
            r"row 2, column 'tp': model = 'llama-3.1-70b' \(bf16\) does not fit", fit=True)


def test_request_larger_than_the_kv_cache(tmp_path):
    _raises(_bad(tmp_path, rows=[_with(hardware="a10g", input_tokens="100000")]),
            r"row 1, column 'input_tokens': a request of 100000 \+ 32 tokens needs \d+ KV tokens but .* holds \d+",
            fit=True)


def test_bad_engine_settings(tmp_path):
    with pytest.raises(ValueError, match=r"^engine: max_num_seqs = 0: must be greater than or equal to 1"):
        fit_from_benchmarks(_bad(tmp_path), engine={"max_num_seqs": 0})


def test_row_numbers_skip_blank_lines(tmp_path):
    text = ",".join(HEADER) + "\n\n" + ",".join(GOOD) + "\n\n" + ",".join(_with(tp="0")) + "\n"
    _raises(_bad(tmp_path, text=text), r"row 2, column 'tp': '0' must be > 0")



# -- refused before fitting: impossible, contradictory or in milliseconds -------------------------

README_HEADER = ("model,quantization,hardware,tp,input_tokens,output_tokens,concurrency,request_rate,num_requests,"
                 "output_tokens_per_s,ttft_mean_s,tpot_mean_s")
README_ROWS = ["llama-3.1-8b,bf16,h100-sxm,1,1024,128,1,,100,118.5,0.0231,0.00795",
               "llama-3.1-8b,bf16,h100-sxm,1,1024,128,32,,400,1850,0.181,0.0131",
               "llama-3.1-8b,bf16,h100-sxm,1,2048,32,,4,200,124,0.0416,0.00862"]


def _readme_csv(tmp_path: Path, rows: list[str], name: str = "bench.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([README_HEADER, *rows]) + "\n")
    return path


def _in_ms(row: str) -> str:
    """The row with its latencies (the last two cells) in milliseconds."""
    cells = row.split(",")
    cells[-2:] = [f"{float(v) * 1000:g}" for v in cells[-2:]]
    return ",".join(cells)


def _refused(path: Path, pattern: str) -> None:
    """Refused by the checks that run before fitting, in one line naming the file."""
    with pytest.raises(ValueError, match=pattern) as e:
        check_benchmarks(path, read_benchmarks(path))
    assert "\n" not in str(e.value) and str(e.value).startswith(f"{path}: ")


def test_the_readme_rows_pass_the_checks(tmp_path):
    check_benchmarks(_readme_csv(tmp_path, README_ROWS), read_benchmarks(_readme_csv(tmp_path, README_ROWS)))


def test_readme_rows_in_milliseconds_are_refused(tmp_path):
    """The README's example with its latencies ×1000: row 1's latencies make 956 requests in flight
    at concurrency 1 by Little's law, and are plausible divided by 1000; refused, saying so, by the
    command before any fitting (nothing on stdout, no profile)."""
    path = _readme_csv(tmp_path, [_in_ms(r) for r in README_ROWS])
    pattern = (r"row 1, columns 'ttft_mean_s', 'tpot_mean_s', 'output_tokens_per_s': 23\.1 and 7\.95 look like "
               r"milliseconds: in seconds, by Little's law 0\.9258 requests/s × 1033 s of latency = 956\.1 requests in "
               r"flight, but concurrency 1 keeps at most 1; give seconds \(0\.0231 and 0\.00795\)")
    _refused(path, pattern)
    with pytest.raises(ValueError, match=pattern):
        fit_from_benchmarks(path)
    r = run_app("calibrate", "--from-benchmarks", path, "-o", tmp_path / "out")
    assert_one_line_error(r, "bench.csv: row 1, columns", "look like milliseconds")
    assert r.stdout == "" and not (tmp_path / "out").exists()


def test_milliseconds_without_throughput_are_refused(tmp_path):
    """Without a throughput to weigh them against: a TPOT slower than the slowest iteration the
    hardware can run, or a TTFT at concurrency 1 slower than its prefill's iterations."""
    _refused(_readme_csv(tmp_path, [README_ROWS[0], _in_ms(README_ROWS[2])]),
             r"row 2, column 'tpot_mean_s': 8\.62 looks like milliseconds: a token every 8\.62 s is slower than the "
             r"slowest iteration of llama-3\.1-8b \(bf16\) on h100-sxm at tp 1 \(1\.\d+ s: .*\); give seconds "
             r"\(0\.00862\)")
    _refused(_readme_csv(tmp_path, ["llama-3.1-8b,bf16,h100-sxm,1,1024,128,1,,100,,23.1,"]),
             r"row 1, column 'ttft_mean_s': 23\.1 looks like milliseconds: alone on the server \(concurrency 1\)")
    # The same value at a rate can be queueing: not refused as milliseconds.
    check_benchmarks(_readme_csv(tmp_path, ["llama-3.1-8b,bf16,h100-sxm,1,1024,128,,40,100,,23.1,"]),
                     read_benchmarks(_readme_csv(tmp_path, ["llama-3.1-8b,bf16,h100-sxm,1,1024,128,,40,100,,23.1,"])))


def test_a_billion_tokens_per_second_at_concurrency_1_is_refused(tmp_path):
    """One sequence gains at most one token per decode step, and a step reads all 15 GB of
    Llama-3.1-8B's bf16 weights: at most 3.35 TB/s / 15 GB = 223 tokens/s on an H100 SXM."""
    lim = hardware_limits("llama-3.1-8b", "bf16", "h100-sxm", 1)
    assert lim.read_bytes == pytest.approx(15.0e9, rel=0.02) and 1 / lim.step_min_s == pytest.approx(223, rel=0.01)
    path = _readme_csv(tmp_path, ["llama-3.1-8b,bf16,h100-sxm,1,1024,128,1,,100,1e9,0.0231,0.00795"])
    _refused(path, r"row 1, column 'output_tokens_per_s': 1e\+09 output tokens/s is faster than the hardware allows: at "
                   r"concurrency 1 at most 1 sequence gains one token per decode step, and every decode step of "
                   r"llama-3\.1-8b \(bf16\) on h100-sxm at tp 1 reads at least 15 GB of weights per GPU, 4\.48 ms at its "
                   r"peak 3\.35 TB/s: at most 223\.1 output tokens/s")
    assert_one_line_error(run_app("calibrate", "--from-benchmarks", path, "-o", tmp_path / "out"),
                          "row 1, column 'output_tokens_per_s': 1e+09 output tokens/s is faster than the hardware allows")


def test_ttft_of_100_s_with_a_tpot_of_a_nanosecond_is_refused(tmp_path):
    path = _readme_csv(tmp_path, [README_ROWS[0], "llama-3.1-8b,bf16,h100-sxm,1,1024,128,32,,400,,100,1e-9"])
    _refused(path, r"row 2, column 'tpot_mean_s': 1e-09 s per token is faster than the hardware allows: every decode "
                   r"step of llama-3\.1-8b \(bf16\) on h100-sxm at tp 1 reads at least 15 GB")
    with pytest.raises(ValueError, match=r"row 2, column 'tpot_mean_s': 1e-09 s per token"):
        fit_from_benchmarks(path)


@pytest.mark.parametrize("row, pattern", [
    # A prompt of 8192 tokens: at least 8192 × 15 GFLOP at 989 TFLOP/s, about 0.12 s.
    ("llama-3.1-8b,bf16,h100-sxm,1,8192,128,1,,100,,0.01,", r"row 1, column 'ttft_mean_s': 0\.01 s to the first token "
     r"is faster than the hardware allows: a prompt of 8192 tokens takes .* at least 1\d\d ms"),
    ("llama-3.1-8b,bf16,h100-sxm,1,2048,32,,200,200,6000,,", r"row 1, column 'output_tokens_per_s': 6000 output "
     r"tokens/s is faster than the hardware allows: a request of 2048 \+ 32 tokens"),
    ("llama-3.1-8b,bf16,h100-sxm,1,1024,128,1,,100,118.5,0.2,0.05", r"row 1, columns 'ttft_mean_s', 'tpot_mean_s', "
     r"'output_tokens_per_s': by Little's law 0\.9258 requests/s × 6\.55 s of latency .* = 6\.064 requests in flight, "
     r"but a closed loop of concurrency 1 keeps 1"),
    ("llama-3.1-8b,bf16,h100-sxm,1,1024,128,64,,400,200,0.0231,0.00795", r"row 1, columns 'ttft_mean_s', "
     r"'tpot_mean_s', 'output_tokens_per_s': by Little's law .* concurrency 64 keeps 64 \(refused outside 0\.1–1\.5×"),
    ("llama-3.1-8b,bf16,h100-sxm,1,2048,32,,1,200,124,0.0416,0.00862", r"row 1, columns 'request_rate', "
     r"'output_tokens_per_s': requests complete at 3\.875/s but are sent at 1/s"),
], ids=["prefill-beyond-peak-flops", "throughput-beyond-peak-flops", "little-too-many", "little-too-few",
        "faster-than-sent"])
def test_impossible_rows_are_refused(tmp_path, row, pattern):
    _refused(_readme_csv(tmp_path, [row]), pattern)


def test_columns_that_contradict_each_other_are_refused(tmp_path):
    base = README_ROWS[0]
    path = tmp_path / "c.csv"
    path.write_text(README_HEADER + ",ttft_p50_s,ttft_p99_s,itl_mean_s,requests_per_s\n" + base + ",0.05,0.03,,\n")
    _refused(path, r"row 1, columns 'ttft_p50_s', 'ttft_p99_s': the median 0\.05 exceeds the 99th percentile 0\.03")
    path.write_text(README_HEADER + ",itl_mean_s\n" + base + ",7.95\n")
    _refused(path, r"row 1, columns 'itl_mean_s', 'tpot_mean_s': 7\.95 and 0\.00795 are 1e\+03× apart, .*; 7\.95 looks "
                   r"like milliseconds: give seconds")
    path.write_text(README_HEADER + ",requests_per_s\n" + base + ",0.3\n")
    _refused(path, r"row 1, columns 'output_tokens_per_s', 'requests_per_s': 118\.5 output tokens/s but 0\.3 "
                   r"requests/s × 128 output_tokens = 38\.4")
    # Within the stated tolerances, the same columns pass.
    path.write_text(README_HEADER + ",ttft_p50_s,ttft_p99_s,itl_mean_s,requests_per_s\n" + base + ",0.02,0.03,0.008,0.9\n")
    check_benchmarks(path, read_benchmarks(path))


def test_the_published_benchmarks_pass_the_checks(tmp_path):
    """Every row of the published tables that the reader takes ('inf' request rates are left out
    here; every row names catalog hardware and models since gh200 and mixtral-8x22b were added)
    passes every check: the bounds are for mistakes, not for real servers."""
    from tests.shared_data import SHARED, need

    checked = 0
    for name in ("tensorrt-llm-0.17-max-throughput.csv", "tensorrt-llm-0.14-online.csv"):
        with open(need(SHARED / "benchmarks" / name), newline="") as f:
            records = list(csv.DictReader(f))
        header = [h for h in records[0] if h in {*HEADER, "requests_per_s", "itl_mean_s", "ttft_mean_s"}]
        keep = [r for r in records if r["request_rate"] != "inf"]
        path = write_csv(tmp_path / name, header, [[r[h] for h in header] for r in keep])
        rows = read_benchmarks(path)
        check_benchmarks(path, rows)
        checked += len(rows)
    assert checked >= 220, checked


def test_the_published_gh200_and_mixtral_8x22b_rows_validate_as_published():
    """The max-throughput table read as it is, engine columns and all: its GH200 and Mixtral-8x22B
    rows (refused as unknown names before the catalog had them) pass the checks, and each of their
    configurations loads as a scenario whose KV cache holds the row's longest request."""
    from tests.shared_data import SHARED, need

    path = need(SHARED / "benchmarks" / "tensorrt-llm-0.17-max-throughput.csv")
    rows = read_benchmarks(path)
    new = [r for r in rows if r.hardware == "gh200" or r.model == "mixtral-8x22b"]
    assert (len(rows), sum(r.hardware == "gh200" for r in new), sum(r.model == "mixtral-8x22b" for r in new)) == (
        180, 20, 15)
    check_benchmarks(path, new)
    for model, quantization, hardware, tp in sorted({r.configuration for r in new}):
        longest = max(r.input_tokens + r.output_tokens for r in new if r.configuration == (model, quantization,
                                                                                           hardware, tp))
        s = sim.load_scenario({"model": model, "quantization": quantization, "hardware": hardware, "tp": tp,
                               "workload": {"arrival": {"rate_per_s": 1.0}, "num_requests": 1, "classes": [
                                   {"name": "bench", "prompt_tokens": {"dist": "fixed", "value": 128},
                                    "output_tokens": {"dist": "fixed", "value": 128}}]}})
        assert s.kv_capacity_tokens >= longest, (model, hardware, tp)


# -- refused after fitting: a poor fit ------------------------------------------------------------

# The same run measured twice, ten times apart: no step-time model reproduces both (two rows of a
# few requests at concurrency 1: a fit of well under a second).
POOR = ("model,quantization,hardware,tp,input_tokens,output_tokens,concurrency,num_requests,ttft_mean_s,tpot_mean_s\n"
        "llama-3.1-8b,bf16,h100-sxm,1,512,8,1,4,0.02,0.008\n"
        "llama-3.1-8b,bf16,h100-sxm,1,512,8,1,4,0.3,0.1\n")


def test_a_poor_fit_is_refused_with_its_figures(tmp_path):
    path = tmp_path / "poor.csv"
    path.write_text(POOR)
    pattern = (r"poor\.csv: llama-3\.1-8b/bf16/h100-sxm/tp1: poor fit, refused: median error (\d+\.\d)% over 4 measured "
               r"values, max (\d+\.\d)% \(row [12], (ttft|tpot)_mean_s: measured [\d.]+ ms, fitted [\d.]+ ms\), above "
               r"the 25% a profile may have; .* or pass --keep-poor-fit to write the profile labelled poor$")
    with pytest.raises(ValueError, match=pattern) as e:
        fit_from_benchmarks(path)
    import re

    median, worst = (float(v) for v in re.search(pattern, str(e.value)).groups()[:2])
    assert POOR_FIT_MEDIAN * 100 < median <= worst
    r = run_app("calibrate", "--from-benchmarks", path, "-o", tmp_path / "out")
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.splitlines()[-1].startswith("capsim: error: ") and "poor fit, refused" in r.stderr.splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_a_poor_fit_kept_with_the_flag_is_labelled_poor(tmp_path, synthetic_fit):
    path = tmp_path / "poor.csv"
    path.write_text(POOR)
    out = tmp_path / "out"
    r = run_app("calibrate", "--from-benchmarks", path, "-o", out, "--keep-poor-fit")
    assert r.exit_code == 0, r.output
    assert "POOR FIT (median above 25%): kept and labelled poor" in r.stdout
    rec = read_profile(out / "llama-3.1-8b__bf16__h100-sxm__tp1.json")
    assert rec.poor and rec.meta["quality"] == "poor"
    assert rec.meta["quality_note"].startswith("median error ") and rec.meta["fit_error"]["median"] > POOR_FIT_MEDIAN
    # A good fit is labelled good, and the warning a poor one carries reaches a run's summary.
    assert synthetic_fit.quality == "good" and synthetic_fit.record.meta["quality"] == "good"
    assert not synthetic_fit.record.poor
    s = sim.load_scenario({"profile": {"kind": "measured", "path": str(out)},
                           "workload": {"arrival": {"rate_per_s": 2.0}, "num_requests": 5,
                                        "classes": [{"name": "x", "prompt_tokens": {"dist": "fixed", "value": 64},
                                                     "output_tokens": {"dist": "fixed", "value": 8}}]}})
    assert sim.simulate(s).summary["profile"]["source"].startswith("warning: a poor fit, kept with --keep-poor-fit "
                                                                   "(median error ")


def test_quant_has_no_short_flag():
    """``-q`` is ``--quiet`` in ``capsim run``; in ``calibrate`` it named ``--quant``, and no longer does."""
    import inspect

    from sim.cli.calibrate import calibrate_command

    params = inspect.signature(calibrate_command).parameters
    assert params["quant"].default.param_decls == ("--quant",)
    r = run_app("calibrate", "-q", "bf16", "--from-benchmarks", "x.csv")
    assert r.exit_code == 2 and "No such option: -q" in r.output
    # The flag's help states the threshold the fit applies.
    assert f"(median {POOR_FIT_MEDIAN:.0%})" in params["keep_poor_fit"].default.help
