"""Load curves against queueing theory and their invariants; the rate a curve sets; the executor
seam; ``capsim curve``.

The queueing checks use an M/D/1-like configuration: one sequence per iteration, one-token
requests and a constant step time d (explicit profile), so a replica is a single server with
deterministic service d, whose mean wait is Pollaczek–Khinchine's W = ρd / (2(1 − ρ)). Inverted,
the highest load with mean queueing delay at most W is ρ* = 2W / (d + 2W).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from sim.analysis.curve import POINT_SCHEMA, CurveError, LoadCurve, load_curve, with_rate
from sim.analysis.executor import InlineExecutor, local_executor, map_points
from sim.analysis.slo import parse_slo
from tests.helpers import assert_one_line_error, run_app, scenario

D = 0.01  # seconds per iteration: the service time


def md1(n: int, **overrides: Any):
    """One server, deterministic service D, Poisson arrivals, ``n`` one-token requests."""
    return scenario(profile={"kind": "explicit", "fixed_s": D, "kv_capacity_tokens": 1024},
                    engine={"max_num_seqs": 1, "max_num_batched_tokens": 16},
                    workload={"num_requests": n}, **overrides)


def batching(n: int, **overrides: Any):
    """Continuous batching with chunked prefill: prompt and output lengths vary, batches fill up."""
    return scenario(profile={"kind": "explicit", "fixed_s": 0.004, "per_token_s": 2e-5, "kv_capacity_tokens": 1 << 16},
                    engine={"max_num_seqs": 16, "max_num_batched_tokens": 512},
                    workload={"num_requests": n, "classes": [
                        {"name": "x", "prompt_tokens": {"dist": "uniform", "low": 20, "high": 200},
                         "output_tokens": {"dist": "uniform", "low": 5, "high": 40}, "slo": {"ttft_s": 0.1}}]},
                    **overrides)


# ---------------------------------------------------------------------------------------------
# Queueing theory


@pytest.mark.slow
def test_md1_highest_rate_under_a_mean_queueing_slo_matches_pollaczek_khinchine():
    w = 2 * D
    rho_star = 2 * w / (D + 2 * w)  # 0.8
    # Grid around the answer, then bisection per seed to 0.5% (the answer sits up to that much
    # below the crossing by construction). 20,000 requests and 3 seeds: over six sets of seeds
    # (scenario seed 0, 10, ..., 50) the mean came out -0.3% off P-K (sd 0.5%, worst -1.0%, which
    # is seed 0's, the one here): 2% of margin, four standard deviations.
    rates = [rho_star * 0.95 / D, rho_star * 1.05 / D, 1.1 / D]
    with local_executor(2) as pool:  # the process pool's path, on purpose
        c = load_curve(md1(20_000), slos=[f"queue_mean={w}"], rates=rates, seeds=3, rel_tol=0.005, executor=pool)
    mr = c.max_rate
    assert mr.min <= mr.mean <= mr.max and len(mr.per_seed) == 3 and not mr.at_least
    assert abs(mr.mean * D / rho_star - 1) < 0.03, f"highest rate {mr.mean:.2f}/s vs P-K {rho_star / D:.2f}/s"
    for s, rate in mr.per_seed.items():  # each seed's answer passed, and 1% above it did not
        passed = [r for r in c.bisection.to_pylist() + c.points.to_pylist() if r["seed"] == s and r["meets_slo"]]
        assert max(r["rate_per_s"] for r in passed) == rate
        assert all(r["queue_mean_s"] <= w for r in passed)


def test_saturation_is_reported_at_rho_1_1_and_not_at_0_9():
    c = load_curve(md1(4000), slos=[], rates=[0.9 / D, 1.1 / D], seeds=3, rel_tol=0.05, workers=1)
    rows = c.points.to_pylist()
    assert len(rows) == 6
    for r in rows:
        light = r["rate_per_s"] < 1 / D
        assert r["saturated"] is (not light) and r["meets_slo"] is light
        # Saturation is reported as such: no statistic of an unfinished run. (One-token requests
        # have no tpot and no inter-token gaps at any load.)
        for m in ("ttft", "e2e", "queue"):
            for st in ("p50", "p90", "p95", "p99", "mean"):
                assert (r[f"{m}_{st}_s"] is None) is not light, (r["rate_per_s"], m, st)
        assert r["requests_per_s"] > 0 and r["output_tokens_per_s"] > 0  # throughput is kept
    assert c.saturation_rate_per_s == pytest.approx(0.9 / D)
    assert c.capacity_per_s == pytest.approx(1 / D, rel=0.02)  # what a saturated server serves: 1/d
    # With no target the highest rate is the knee, bisected between the two rates.
    assert 0.9 / D <= c.max_rate.min <= c.max_rate.max < 1.1 / D


def test_throughput_does_not_fall_as_offered_load_rises_until_saturation():
    c = load_curve(batching(1500), seeds=2, rel_tol=0.04, workers=1)
    rates = sorted(set(c.points.column("rate_per_s").to_pylist()))
    assert 10 <= len(rates) <= 16 and c.saturation_rate_per_s is not None
    assert any(c.points.column("saturated").to_pylist())  # the automatic range goes past saturation
    for seed in c.seeds:
        rows = sorted((r for r in c.points.to_pylist() if r["seed"] == seed), key=lambda r: r["rate_per_s"])
        first_saturated = next(i for i, r in enumerate(rows) if r["saturated"])
        upto = rows[:first_saturated + 1]  # up to and including the first saturated point
        for a, b in zip(upto, upto[1:]):
            # Statistical noise in throughput measured over a finite window: 2% slack. The grid's
            # steps are 6% or more of the rate, so a real fall of throughput still fails.
            for col in ("requests_per_s", "output_tokens_per_s"):
                assert b[col] >= 0.98 * a[col], (seed, col, a["rate_per_s"], a[col], b["rate_per_s"], b[col])


def test_more_replicas_never_lower_the_highest_rate_under_the_slos():
    one = load_curve(md1(3000), slos=["queue_mean=20ms"], seeds=2, rel_tol=0.02, workers=1)
    two = load_curve(md1(3000, replicas=2), slos=["queue_mean=20ms"], seeds=2, rel_tol=0.02, workers=1)
    assert two.max_rate.min >= one.max_rate.max
    assert two.max_rate.mean > 1.5 * one.max_rate.mean  # two servers, not a rounding of one
    # The waste reference is per replica: about the same per replica in both.
    assert two.reference is not None and one.reference is not None
    assert two.reference.rate_per_s == pytest.approx(two.max_rate.mean / 2)
    assert two.reference.rate_per_s >= one.reference.rate_per_s


# ---------------------------------------------------------------------------------------------
# The result


@pytest.fixture(scope="module")
def small_curve() -> LoadCurve:
    return load_curve(md1(1500), slos=["queue_mean=20ms"], seeds=2, rel_tol=0.05, workers=1)


def test_points_have_the_schema_one_row_per_rate_and_seed(small_curve):
    p = small_curve.points
    assert p.schema == POINT_SCHEMA
    pairs = list(zip(p.column("rate_per_s").to_pylist(), p.column("seed").to_pylist()))
    assert pairs == sorted(set(pairs))  # one row each, sorted by rate then seed
    assert set(p.column("seed").to_pylist()) == {0, 1}
    assert small_curve.bisection.schema == POINT_SCHEMA
    assert small_curve.slos == (parse_slo("queue_mean=20ms"),)
    assert small_curve.provenance["kind"] == "explicit"


def test_the_reference_is_the_output_rate_at_the_highest_passing_rate(small_curve):
    ref, mr = small_curve.reference, small_curve.max_rate
    assert ref is not None and ref.rate_per_s == mr.mean
    rows = small_curve.points.to_pylist() + small_curve.bisection.to_pylist()
    at = [next(r for r in rows if r["seed"] == s and r["rate_per_s"] == rate) for s, rate in mr.per_seed.items()]
    assert ref.output_tokens_per_s == pytest.approx(sum(r["output_tokens_per_s"] for r in at) / len(at))


def test_write_puts_parquet_and_json_whole_and_nothing_else(small_curve, tmp_path):
    out = tmp_path / "c"
    written = small_curve.write(out)
    assert sorted(p.name for p in written) == ["curve.json", "curve.parquet"]
    assert sorted(p.name for p in out.iterdir()) == ["curve.json", "curve.parquet"]  # no temporary left
    assert pq.read_table(out / "curve.parquet").equals(small_curve.points)
    data = json.loads((out / "curve.json").read_text())
    assert data["max_rate_per_s"]["mean"] == small_curve.max_rate.mean
    assert data["slos"] == ["queue_mean=20ms"] and len(data["points"]) == small_curve.points.num_rows
    assert set(data["method"]) >= {"saturation", "max_rate", "grid"}


def test_a_target_no_rate_meets_gives_0_with_a_note():
    # One-token requests have no tpot: the statistic is missing at every rate, so nothing meets.
    c = load_curve(md1(300), slos=["tpot_p99=1s"], rates=[20, 40], seeds=1, workers=1)
    assert c.max_rate.per_seed == {0: 0.0} and c.reference is None
    assert c.bisection.num_rows == 4  # 20 halved four times: 10, 5, 2.5, 1.25, then given up
    assert any("met the SLOs at no rate tried, down to 1.25 requests/s" in n for n in c.notes)


def test_a_target_every_given_rate_meets_is_a_lower_bound():
    c = load_curve(md1(300), slos=["queue_mean=1s"], rates=[10, 20], seeds=2, workers=1)
    assert c.max_rate.at_least and c.max_rate.mean == 20 and c.bisection.num_rows == 0
    assert any("at least 20" in n for n in c.notes)


def test_load_curve_refuses_bad_arguments_before_running():
    s = md1(100)
    with pytest.raises(CurveError, match="seeds = 0: must be a whole number >= 1"):
        load_curve(s, seeds=0)
    with pytest.raises(CurveError, match="rates: -1 is not a rate"):
        load_curve(s, rates=[1, -1])
    with pytest.raises(CurveError, match="no class named 'chat'"):
        load_curve(s, slos=["chat:ttft_p99=1s"])
    with pytest.raises(CurveError, match="rel_tol"):
        load_curve(s, rel_tol=0)


# ---------------------------------------------------------------------------------------------
# The offered load


def test_with_rate_sets_a_renewal_rate_and_drops_a_rate_profile():
    s = scenario(workload={"arrival": {"process": "gamma", "cv": 2.0,
                                       "rate_profile": {"shape": "ramp", "from_rate_per_s": 1.0,
                                                        "to_rate_per_s": 5.0, "over_s": 10.0}}})
    a = with_rate(s, 7.5).workload.arrival
    assert (a.process, a.rate_per_s, a.rate_profile, a.cv) == ("gamma", 7.5, None, 2.0)
    assert with_rate(scenario(), 3).workload.arrival.rate_per_s == 3.0
    assert with_rate(scenario(), 3).workload.num_requests == scenario().workload.num_requests


def test_with_rate_scales_every_mmpp_state_to_the_mean():
    s = scenario(workload={"arrival": {"process": "mmpp", "states": [
        {"rate_per_s": 2.0, "mean_duration_s": 30.0}, {"rate_per_s": 10.0, "mean_duration_s": 10.0},
        {"rate_per_s": 0.0, "mean_duration_s": 5.0}]}})
    a = with_rate(s, 12.0).workload.arrival
    assert a.mean_rate_per_s == pytest.approx(12.0)
    factor = 12.0 / s.workload.arrival.mean_rate_per_s
    assert [st.rate_per_s for st in a.states] == pytest.approx([2.0 * factor, 10.0 * factor, 0.0])
    assert [st.mean_duration_s for st in a.states] == [30.0, 10.0, 5.0]


@pytest.mark.parametrize("arrival, what", [
    ({"process": "trace", "path": "t.csv", "format": "csv", "columns": {"arrival_s": "t"}}, "a trace replay"),
    ({"process": "closed_loop", "users": 4}, "a closed loop"),
])
def test_with_rate_refuses_a_process_without_a_rate(arrival, what):
    s = scenario(workload={"arrival": arrival, "num_requests": 10})
    with pytest.raises(CurveError) as e:
        with_rate(s, 5.0)
    assert str(e.value).startswith(f"workload.arrival.process = {arrival['process']!r} is {what}")
    assert "a load curve needs an arrival process with a rate" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="needs an arrival process with a rate"):
        load_curve(s, workers=1)


@pytest.mark.parametrize("rate", [0, -1.0, math.inf, math.nan])
def test_with_rate_refuses_a_rate_that_is_not_one(rate):
    with pytest.raises(CurveError, match="must be a finite number of requests/s > 0"):
        with_rate(scenario(), rate)


# ---------------------------------------------------------------------------------------------
# The executor seam


def _square(x: int) -> int:
    return x * x


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise RuntimeError("three")
    return x


def test_map_points_yields_in_item_order_on_a_pool_and_inline():
    seen: list[tuple[int, int]] = []
    assert list(map_points(_square, range(20), workers=2, progress=lambda d, t: seen.append((d, t)))) == \
        [x * x for x in range(20)]
    assert [d for d, _ in seen] == list(range(1, 21)) and {t for _, t in seen} == {20}
    assert list(map_points(_square, [3, 1, 2], executor=InlineExecutor())) == [9, 1, 4]


def test_map_points_raises_the_first_failure():
    with pytest.raises(RuntimeError, match="three"):
        list(map_points(_fail_on_three, range(6), workers=1))
    with pytest.raises(RuntimeError, match="three"):
        list(map_points(_fail_on_three, range(6), workers=2))


def test_local_executor_is_inline_for_one_worker_and_refuses_zero():
    assert isinstance(local_executor(1), InlineExecutor)
    with pytest.raises(ValueError, match="workers = 0: must be a whole number >= 1"):
        local_executor(0)


# ---------------------------------------------------------------------------------------------
# capsim curve


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "md1.yaml"
    path.write_text(yaml.safe_dump(md1(800).to_dict()))
    return path


def test_capsim_curve_writes_parquet_json_and_charts(scenario_file, tmp_path):
    out = tmp_path / "out"
    res = run_app("curve", scenario_file, "--slo", "queue_mean=20ms", "--seeds", "2", "--workers", "1",
                  "--tolerance", "0.05", "-o", out)
    assert res.exit_code == 0, res.output
    assert "highest rate meeting the SLOs (queue_mean=20ms)" in res.stdout
    assert {"curve.parquet", "curve.json"} <= {p.name for p in out.iterdir()}
    data = json.loads((out / "curve.json").read_text())
    assert data["max_rate_per_s"]["mean"] > 0 and len(data["points"]) == pq.read_table(out / "curve.parquet").num_rows


def test_capsim_curve_with_given_rates_and_no_slo(scenario_file, tmp_path):
    res = run_app("curve", scenario_file, "--rates", "50,90,110", "--slo", "none", "--seeds", "1", "-j", "1",
                  "--no-charts", "-q", "-o", tmp_path / "o")
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "o" / "curve.json").read_text())
    assert [p["rate_per_s"] for p in data["points"]] == [50.0, 90.0, 110.0] and data["slos"] == []
    assert not list((tmp_path / "o").glob("*.png"))


@pytest.mark.parametrize("args, needles", [
    (["--slo", "ttft_p99=fast"], ["--slo 'ttft_p99=fast': expected [CLASS:]METRIC_STAT=LIMIT"]),
    (["--slo", "ttft_p98=1s"], ["--slo 'ttft_p98=1s': unknown statistic 'p98'"]),
    (["--slo", "chat:ttft_p99=1s"], ["no class named 'chat'"]),
    (["--seeds", "0"], ["--seeds 0: must be >= 1"]),
    (["--rates", "1,-2"], ["--rates '1,-2': -2 is not a rate"]),
    (["--rates", "1,x"], ["--rates '1,x': 'x' is not a number"]),
    (["--workers", "0"], ["--workers 0: must be >= 1"]),
    (["--set", "workload.arrival={process: closed_loop, users: 2}"], ["a load curve needs an arrival process"]),
])
def test_capsim_curve_bad_input_is_one_line_and_exit_2(scenario_file, tmp_path, args, needles):
    assert_one_line_error(run_app("curve", scenario_file, *args, "-q", "-o", tmp_path / "o"), *needles)
    assert not (tmp_path / "o" / "curve.json").exists()
