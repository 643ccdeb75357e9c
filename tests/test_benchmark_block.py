"""The summary's ``benchmark`` block reports a run as a serving benchmark's client would
(:mod:`sim.results.benchmark`, vLLM's ``benchmark_serving`` definitions).

- A micro-scenario computed by hand: duration, throughputs, and TTFT/TPOT/ITL mean and percentiles.
- A saturated finite benchmark (a fixed count of requests sent faster than one replica serves
  them): the block's mean ITL is the requests' own TPOT, where the measurement window, which ends
  at the last arrival, reported several times more (issue 19's 454 ms against 81 ms).
- Degenerate runs give nulls, never NaN; every records mode gives the same block.
- Over random small scenarios: output tokens/s × duration is the completed requests' output
  tokens, percentiles are ordered, the mean ITL from per-request sums is the mean of every gap
  the iteration log pooled, and the pooled percentiles are numpy's on the repeated sample.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim
from sim.results.benchmark import repeated_percentiles
from tests.test_conservation import scenarios, simulate_with_state
from tests.test_decode_runs import ALL

STATS = ("mean", "p50", "p90", "p99")


def _requests(prompt: list[int], output: list[int], arrival: float | np.ndarray = 0.0) -> pa.Table:
    """A request table of one class ``x``, sent at ``arrival`` (one time for all, or one each)."""
    n = len(prompt)
    return pa.table({"request_id": np.arange(n), "arrival_s": np.broadcast_to(np.asarray(arrival, np.float64), n),
                     "prompt_tokens": np.asarray(prompt), "output_tokens": np.asarray(output),
                     "class": pa.array(["x"] * n)})


def _scenario(profile: dict[str, Any], **more: Any) -> sim.Scenario:
    return sim.load_scenario({"profile": profile, **more, "workload": {
        "arrival": {"rate_per_s": 1.0}, "num_requests": 1,
        "classes": [{"name": "x", "prompt_tokens": {"dist": "fixed", "value": 4},
                     "output_tokens": {"dist": "fixed", "value": 2}}]}})


# T = 1 s + 0.25 s per token computed; two batch slots.
_HAND = _scenario({"kind": "explicit", "fixed_s": 1.0, "per_token_s": 0.25, "kv_capacity_tokens": 4096},
                  engine={"max_num_seqs": 2})


def test_a_hand_computed_run() -> None:
    """A, B, C sent at 0.5 s with 4-token prompts and 3, 2, 2 output tokens; two slots.
    [0.5, 3.5): A and B prefill (8 tokens): first tokens at 3.5.  [3.5, 5): both decode; B ends.
    [5, 7.25): A decodes, C prefills (5 tokens): A ends, C's first token.  [7.25, 8.5): C ends."""
    b = sim.simulate(_HAND, requests=_requests([4, 4, 4], [3, 2, 2], 0.5)).summary["benchmark"]
    assert (b["duration_s"], b["completed"], b["input_tokens"], b["output_tokens"]) == (8.0, 3, 12, 7)
    assert (b["requests_per_s"], b["input_tokens_per_s"], b["output_tokens_per_s"]) == (3 / 8, 12 / 8, 7 / 8)
    # TTFT 3, 3, 6.75; TPOT (7.25 - 3.5) / 2, (5 - 3.5) / 1, (8.5 - 7.25) / 1; gaps 1.5, 2.25 | 1.5 | 1.25.
    want = {"ttft_s": (12.75 / 3, 3.0, 3 + 0.8 * 3.75, 3 + 0.98 * 3.75),
            "tpot_s": (4.625 / 3, 1.5, 1.5 + 0.8 * 0.375, 1.5 + 0.98 * 0.375),
            "itl_s": (6.5 / 4, 1.5, 1.5 + 0.7 * 0.75, 1.5 + 0.97 * 0.75)}
    for name, values in want.items():
        assert [b[name][k] for k in STATS] == pytest.approx(values, rel=1e-12, abs=0), name


def test_degenerate_runs_give_nulls_not_nan() -> None:
    # All outputs of one token: TTFT and throughput, no TPOT or ITL.
    one = sim.simulate(_HAND, requests=_requests([4, 4], [1, 1])).summary
    b = one["benchmark"]
    assert b["duration_s"] == 3.0 and b["output_tokens_per_s"] == 2 / 3 and b["ttft_s"]["p99"] == 3.0
    assert all(b[m][k] is None for m in ("tpot_s", "itl_s") for k in STATS)
    # Nothing completes before the horizon: no duration, no rates, no statistics.
    cut = sim.simulate(sim.load_scenario({**_HAND.to_dict(), "measurement": {"horizon_s": 2.0}}),
                       requests=_requests([4, 4], [3, 3])).summary
    b = cut["benchmark"]
    assert b["completed"] == 0 and b["duration_s"] is None and b["output_tokens_per_s"] is None
    assert all(b[m][k] is None for m in ("ttft_s", "tpot_s", "itl_s") for k in STATS)
    for s in (one, cut):
        json.dumps(s, allow_nan=False)


def test_requests_in_flight_at_the_horizon() -> None:
    """A (2 tokens) and B (10) sent at 0, horizon 8 s. [0, 3): both prefill. [3, 4.5): both
    decode, A ends. Then B alone, 1.25 s a token: 5.75, 7. Only A counts; the ITL pool holds the
    gaps up to A's last token (A's 1.5 and B's 1.5), not B's later ones (which are not known apart)."""
    s = sim.load_scenario({**_HAND.to_dict(), "measurement": {"horizon_s": 8.0}})
    summ = sim.simulate(s, requests=_requests([4, 4], [2, 10])).summary
    b = summ["benchmark"]
    assert summ["requests"]["in_flight"] == 1
    assert (b["duration_s"], b["completed"], b["output_tokens"], b["output_tokens_per_s"]) == (4.5, 1, 2, 2 / 4.5)
    assert [b["itl_s"][k] for k in STATS] == [1.5] * 4
    assert "left out: 1 in flight at the horizon" in b["note"]


def test_saturated_finite_benchmark_reports_the_requests_tpot() -> None:
    """300 requests sent at 60/s to one replica that serves about 7/s: the window ends at the last
    arrival (5 s into a 40 s run), so its gaps are those of batches full of prefills; the client's
    ITL and throughput cover the whole run."""
    s = _scenario({"kind": "roofline"}, model="llama-3.1-8b", hardware="h100-sxm")
    res = sim.simulate(s, requests=_requests([2000] * 300, [500] * 300, np.arange(300) / 60.0))
    summ, b, req = res.summary, res.summary["benchmark"], res.requests
    assert summ["load"]["overloaded"]
    tpot = float(np.mean(req.column("tpot_s").to_numpy()))
    assert b["itl_s"]["mean"] == pytest.approx(tpot, rel=0.03)
    assert b["tpot_s"]["mean"] == pytest.approx(tpot, rel=1e-12)
    assert summ["latency_s"]["itl"]["mean"] > 3 * tpot  # what the window reports instead
    finish = req.column("arrival_s").to_numpy() + req.column("e2e_s").to_numpy()
    assert b["duration_s"] == pytest.approx(finish.max(), rel=1e-12)
    assert b["output_tokens_per_s"] == pytest.approx(300 * 500 / finish.max(), rel=1e-12)
    assert summ["throughput"]["output_tokens_per_s"] < 0.2 * b["output_tokens_per_s"]


@pytest.mark.parametrize("name", ["explicit_three_replicas_preempting", "static_with_horizon",
                                  "roofline_tp2_sessions_priorities_horizon"])
def test_every_records_mode_gives_the_same_block(name: str, tmp_path) -> None:
    s = sim.load_scenario(copy.deepcopy(ALL[name]))
    full = sim.simulate(s).summary["benchmark"]
    assert full["completed"] and full["itl_s"]["p99"] is not None
    assert sim.simulate(s, records="summary").summary["benchmark"] == full
    assert sim.simulate(s, records="stream", stream_to=tmp_path).summary["benchmark"] == full


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_block_invariants(data: dict[str, Any]) -> None:
    res, run = simulate_with_state(sim.load_scenario(data))
    b, req = res.summary["benchmark"], res.requests
    done = req.column("status").to_numpy(zero_copy_only=False) == "completed"
    out = req.column("output_tokens").to_numpy()[done]
    json.dumps(b, allow_nan=False)
    assert b["completed"] == done.sum() and b["output_tokens"] == out.sum()
    if not done.any():
        assert b["duration_s"] is None and b["output_tokens_per_s"] is None
        return
    assert b["output_tokens_per_s"] * b["duration_s"] == pytest.approx(out.sum(), rel=1e-12)
    assert b["requests_per_s"] * b["duration_s"] == pytest.approx(done.sum(), rel=1e-12)
    for m in ("ttft_s", "tpot_s", "itl_s"):
        st_ = b[m]
        if st_["mean"] is not None:
            assert st_["p50"] <= st_["p90"] <= st_["p99"], m
    if b["itl_s"]["mean"] is None:
        assert not (out > 1).any()
        return
    # Every gap the logs pooled up to the last completed token; without requests left in flight
    # they are exactly the completed requests' gaps, whose mean the block took from per-request sums.
    end = float(np.nextafter(run.reqs.finish[done].max(), np.inf))
    pieces = [p for e in run.engines for p in e.log.gaps_between(-np.inf, end)]
    values = np.concatenate([v if keep is None else v[keep] for v, _, keep in pieces])
    counts = np.concatenate([np.ones(v.size, np.int64) if keep is None else c[keep] for v, c, keep in pieces])
    assert [b["itl_s"][k] for k in STATS[1:]] == repeated_percentiles(values, counts)
    if res.summary["requests"]["in_flight"] == 0:
        assert counts.sum() == (out - 1).sum()
        assert b["itl_s"]["mean"] == pytest.approx(np.dot(values, counts) / counts.sum(), rel=1e-9)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 10.0, allow_subnormal=False), st.integers(1, 5)), min_size=1, max_size=30),
       st.lists(st.floats(0.0, 100.0), min_size=1, max_size=5))
def test_repeated_percentiles_are_numpys_on_the_repeated_sample(pairs: list[tuple[float, int]],
                                                                 qs: list[float]) -> None:
    values, counts = np.array([v for v, _ in pairs]), np.array([c for _, c in pairs])
    assert repeated_percentiles(values, counts, qs) == np.percentile(np.repeat(values, counts), qs).tolist()
