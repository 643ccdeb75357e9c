"""Conservation invariants over small random scenarios (hypothesis).

Whatever the scheduler, router, KV pressure or horizon: every request ends in exactly one state,
every token emitted is accounted for, KV blocks are never over-committed and all come back,
latencies are ordered, and one replica runs one iteration at a time. (Little's law on the
measurement window is checked elsewhere.)
"""

from __future__ import annotations

import typing
from contextlib import contextmanager
from typing import Any, Iterator
from unittest import mock

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import sim
import sim.engine
from sim.core.run import Run
from sim.config import EngineSpec, RouterSpec
from sim.core.state import COMPLETED, REJECTED, RUNNING

# Every scheduler and router the configuration allows (a new policy is drawn without editing this file).
SCHEDULERS = typing.get_args(EngineSpec.model_fields["scheduler"].annotation)
ADMISSIONS = typing.get_args(EngineSpec.model_fields["admission"].annotation)
ROUTERS = typing.get_args(RouterSpec.model_fields["policy"].annotation)
REASON_KV = "needs more KV blocks than a replica has"
REASON_BUDGET = "prompt + output exceed max_num_batched_tokens without chunked prefill"
REASON_PROMPT_BUDGET = "prompt exceeds max_num_batched_tokens without chunked prefill"


@contextmanager
def spy_runs() -> Iterator[list[Run]]:
    """Run the real ``simulate`` while keeping hold of its ``Run`` (engine state after the run)."""
    runs: list[Run] = []
    real = sim.engine.Run

    class Spy(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            runs.append(self)

    with mock.patch.object(sim.engine, "Run", Spy):
        yield runs


def simulate_with_state(s: sim.Scenario) -> tuple[sim.SimResult, Run]:
    with spy_runs() as runs:
        result = sim.simulate(s)
    assert len(runs) == 1
    return result, runs[0]


# -- strategies -------------------------------------------------------------------------------

def _length(draw: st.DrawFn, hi: int, long: bool) -> dict[str, Any]:
    """Fixed or uniform lengths up to ``hi``; ``long`` keeps them above a third of it (hypothesis
    favours the bounds of a range, and sequences of one token never outgrow the cache)."""
    lo = max(1, hi // 3) if long else 1
    a = draw(st.integers(lo, hi))
    if draw(st.booleans()):
        return {"dist": "fixed", "value": a}
    b = draw(st.integers(lo, hi))
    return {"dist": "uniform", "low": min(a, b), "high": max(a, b)}


_SHARE = st.sampled_from([0.1, 0.3, 0.7])


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """A small random scenario as a dict. About half are under KV pressure: many requests at
    once against a cache a few sequences fill, so that running sequences outgrow it (preemption)."""
    pressure = draw(st.booleans())
    policy = draw(st.sampled_from([*SCHEDULERS, "continuous_unchunked"]))
    block_size = draw(st.sampled_from([1, 4, 16]))
    # Capacity in whole blocks plus a ragged tail that must be ignored.
    blocks = max(2, draw(st.integers(32, 160) if pressure else st.integers(24, 600)) // block_size)
    kv_tokens = blocks * block_size + draw(st.integers(0, block_size - 1))
    kv_usable = blocks * block_size
    max_num_seqs = draw(st.integers(4, 16) if pressure else st.integers(1, 16))
    max_num_batched_tokens = draw(st.integers(max(max_num_seqs, 8), 384))
    engine: dict[str, Any] = {
        "scheduler": "continuous" if policy.startswith("continuous") else policy,
        "max_num_seqs": max_num_seqs, "max_num_batched_tokens": max_num_batched_tokens, "block_size": block_size,
    }
    if policy == "continuous_unchunked":
        engine["chunked_prefill"] = False
    classes = []
    for k in range(draw(st.integers(1, 2))):
        # Lengths scale with the cache. Prompts must fit it (validation refuses more);
        # prompt + output may not, and then the request is rejected at run time.
        prompt_share = draw(st.sampled_from([0.1, 0.3]) if pressure else _SHARE)
        output_share = draw(st.sampled_from([0.3, 0.7]) if pressure else _SHARE)
        classes.append({
            "name": f"c{k}", "share": draw(st.sampled_from([1.0, 2.0, 5.0])), "priority": draw(st.integers(0, 2)),
            "prompt_tokens": _length(draw, max(1, min(kv_usable, 200, int(kv_usable * prompt_share))), pressure),
            "output_tokens": _length(draw, max(1, min(96, int(kv_usable * output_share))), pressure),
        })
    router: dict[str, Any] = {"policy": draw(st.sampled_from(ROUTERS))}
    if not pressure and draw(st.booleans()):
        router["max_outstanding_per_replica"] = draw(st.integers(1, 8))
    rate = 1000.0 if pressure else draw(st.sampled_from([20.0, 200.0, 1000.0]))
    data: dict[str, Any] = {
        "seed": draw(st.integers(0, 2**16)),
        "replicas": draw(st.integers(1, 3)),
        "profile": {"kind": "explicit", "fixed_s": draw(st.sampled_from([0.002, 0.01, 0.03])),
                    "per_token_s": draw(st.sampled_from([0.0, 1e-5, 1e-4])), "kv_capacity_tokens": kv_tokens},
        "engine": engine,
        "router": router,
        "workload": {"arrival": {"rate_per_s": rate}, "classes": classes,
                     "num_requests": draw(st.integers(30, 80) if pressure else st.integers(1, 60))},
    }
    if draw(st.integers(0, 2)) == 0:
        data["measurement"] = {"horizon_s": draw(st.sampled_from([0.05, 0.3, 1.0]))}
    engine["admission"] = draw(st.sampled_from(ADMISSIONS))  # drawn last: the draws before keep their order
    return data


# -- the invariants ---------------------------------------------------------------------------

def _np(t: pa.Table, name: str) -> np.ndarray:
    col = t.column(name)
    if pa.types.is_string(col.type):
        return np.asarray(col.to_pylist(), dtype=object)
    return col.to_numpy(zero_copy_only=False)


def check_invariants(s: sim.Scenario, res: sim.SimResult, run: Run) -> None:
    req, it, summ = res.requests, res.iterations, res.summary
    horizon = s.measurement.horizon_s
    n = req.num_rows
    status = _np(req, "status")
    reason = np.asarray(req.column("reject_reason").to_pylist(), dtype=object)
    prompt, output = _np(req, "prompt_tokens"), _np(req, "output_tokens")
    arrival = _np(req, "arrival_s")
    done, rejected, in_flight = status == "completed", status == "rejected", status == "in_flight"
    not_arrived = status == "not_arrived"

    # Every request is in exactly one state, and the summary counts them.
    assert (done.astype(int) + rejected + in_flight + not_arrived == 1).all(), set(status)
    counts = summ["requests"]
    assert counts["arrived"] + counts["not_arrived"] == n
    assert (counts["completed"], counts["rejected"], counts["in_flight"], counts["not_arrived"]) == (
        done.sum(), rejected.sum(), in_flight.sum(), not_arrived.sum())
    if horizon is None:
        assert not in_flight.any(), "requests left in flight with no horizon"
        assert not not_arrived.any()
    else:
        # Released by the source exactly when they arrived before the horizon.
        assert (not_arrived == (arrival >= horizon)).all()

    # Rejected requests say why; others carry no reason.
    arrived = ~not_arrived
    assert all(r is not None for r in reason[rejected])
    assert all(r is None for r in reason[~rejected])
    assert sum(counts["rejected_by_reason"].values()) == counts["rejected"]
    # ... and never-servable is exactly what the reject rule says.
    kv_blocks = s.kv_capacity_tokens // s.engine.block_size
    kv_len = prompt + output - 1
    never = -(-kv_len // s.engine.block_size) > kv_blocks
    if not s.engine.chunked:
        # Recompute re-prefills prompt and output at once; reserve never preempts, so only the prompt
        # is ever prefilled (static keeps recompute's rule).
        reserving = s.engine.admission == "reserve" and s.engine.scheduler != "static"
        never |= (prompt if reserving else kv_len) > s.engine.max_num_batched_tokens
    assert (rejected == (never & arrived)).all()

    # Tokens: each completed request emitted exactly its output; in-flight ones fewer; the
    # iterations table accounts for every emitted token (exactly the completed ones when drained).
    r = run.reqs
    assert (r.generated[done] == output[done]).all()
    assert (r.generated[in_flight] < output[in_flight]).all()
    assert (r.generated[rejected] == 0).all()
    assert (r.generated[not_arrived] == 0).all()
    tokens_out = _np(it, "tokens_out")
    assert tokens_out.sum() == output[done].sum() + r.generated[in_flight].sum()
    if horizon is None:
        assert tokens_out.sum() == output[done].sum()
        # Computed tokens: each request's KV once (prompt and every output token but the last),
        # plus what preemption threw away and the iterations recorded as recomputed.
        computed = _np(it, "prefill_tokens").sum() + _np(it, "decode_seqs").sum()
        redo = _np(it, "recompute_tokens")
        assert (redo >= 0).all() and (redo <= _np(it, "prefill_tokens")).all()
        assert computed == (prompt[done] + output[done] - 1).sum() + redo.sum()
        assert redo.sum() == 0 or counts["preemptions"] > 0

    # KV blocks: never above capacity, held only by running requests, all free once drained.
    kv_used = _np(it, "kv_blocks_used")
    assert (kv_used <= kv_blocks).all() and (kv_used >= 0).all()
    for st_ in run.states:
        assert st_.total_blocks == kv_blocks
        assert 0 <= st_.free_blocks <= st_.total_blocks
        mine = r.replica == st_.index
        assert st_.total_blocks - st_.free_blocks == r.blocks[mine].sum()
    assert (r.blocks >= 0).all()
    assert (r.blocks[r.status != RUNNING] == 0).all()
    if horizon is None:
        for st_ in run.states:
            assert st_.free_blocks == st_.total_blocks and not st_.waiting and not st_.run.size
        assert r.blocks.sum() == 0
        assert not run.central
    assert ((r.status == COMPLETED) == done).all() and ((r.status == REJECTED) == rejected).all()

    # Batches respect the engine's limits.
    seqs = _np(it, "prefill_seqs") + _np(it, "decode_seqs")
    assert (seqs >= 1).all() and (seqs <= s.engine.max_num_seqs).all()
    assert (_np(it, "prefill_tokens") + _np(it, "decode_seqs") <= s.engine.max_num_batched_tokens).all()
    assert (tokens_out <= seqs).all()
    if s.engine.scheduler == "static" or s.engine.admission == "reserve":
        assert counts["preemptions"] == 0  # whole sequences' blocks reserved at admission: nothing to evict
        assert (_np(it, "recompute_tokens") == 0).all()
    assert counts["preemptions"] == _np(req, "preemptions").sum()

    # Latencies of completed requests are ordered and non-negative; tpot needs two tokens.
    queue, ttft, e2e, tpot = (_np(req, c) for c in ("queue_s", "ttft_s", "e2e_s", "tpot_s"))
    assert (queue[done] >= 0).all()
    assert (queue[done] <= ttft[done]).all()
    assert (ttft[done] <= e2e[done]).all()
    assert (np.isnan(tpot[done]) == (output[done] == 1)).all()
    assert (tpot[done & (output > 1)] >= 0).all()
    assert np.isnan(e2e[~done]).all() and np.isnan(tpot[~done]).all()
    assert np.isnan(queue[rejected]).all() and np.isnan(ttft[rejected]).all()
    # Rejected requests never reach a replica; completed ones say where they ran.
    rep = np.asarray(req.column("replica").to_pylist(), dtype=object)
    assert all(k is None for k in rep[rejected])
    assert all(k is not None and 0 <= k < s.replicas for k in rep[done])
    slo = req.column("slo_met")
    assert slo.null_count == n - done.sum()

    # One replica runs one iteration at a time; each takes time.
    dur = _np(it, "duration_s")
    assert (dur > 0).all()
    it_rep, start = _np(it, "replica"), _np(it, "start_s")
    for k in range(s.replicas):
        m = it_rep == k
        st_k, du_k = start[m], dur[m]
        assert (st_k[1:] >= st_k[:-1] + du_k[:-1]).all(), f"replica {k}: overlapping iterations"
    if horizon is not None and it.num_rows:
        # Every iteration started before the horizon; at most one per replica runs past it
        # (recorded with no tokens out, cut there in the timeline).
        assert (start < horizon).all()
        past = start + dur > horizon
        assert np.bincount(it_rep[past], minlength=s.replicas).max(initial=0) <= 1
        assert (_np(it, "tokens_out")[past] == 0).all()

    # The timeline tiles [0, end] per replica with alternating idle and busy intervals, and its
    # busy time is the iterations' time (cut at the end of a run with a horizon).
    tl = res.timeline
    end = summ["simulated_s"]
    tl_rep, tl_state = _np(tl, "replica"), _np(tl, "state")
    tl_start, tl_end = _np(tl, "start_s"), _np(tl, "end_s")
    for k in range(s.replicas):
        m = tl_rep == k
        if not m.any():
            assert end == 0.0 and n == 0
            continue
        a, b, state = tl_start[m], tl_end[m], tl_state[m]
        assert a[0] == 0.0 and b[-1] == end and (a[1:] == b[:-1]).all() and (b > a).all()
        assert (state[1:] != state[:-1]).all()
        busy = float((b - a)[state == "busy"].sum())
        ran = float((np.minimum(start + dur, end) - start)[it_rep == k].sum())
        assert busy == pytest.approx(ran, rel=1e-9, abs=1e-12)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_conservation(data: dict[str, Any]) -> None:
    s = sim.load_scenario(data)
    res, run = simulate_with_state(s)
    # What the example exercised (shown by --hypothesis-show-statistics).
    counts = res.summary["requests"]
    event(f"scheduler {s.engine.scheduler}{'' if s.engine.chunked or s.engine.scheduler != 'continuous' else ' unchunked'}")
    event(f"admission {s.engine.admission}")
    for what in ("preemptions", "rejected", "in_flight"):
        event(f"{what} > 0: {counts[what] > 0}")
    check_invariants(s, res, run)


# -- deterministic cases ----------------------------------------------------------------------

def _two_class(long_prompt: int, long_output: int, **engine: Any) -> dict[str, Any]:
    return {
        "seed": 4,
        "profile": {"kind": "explicit", "fixed_s": 0.01, "kv_capacity_tokens": 64},
        "engine": {"block_size": 16, "max_num_seqs": 4, "max_num_batched_tokens": 64, **engine},
        "workload": {"arrival": {"rate_per_s": 20.0}, "num_requests": 40, "classes": [
            {"name": "long", "prompt_tokens": {"dist": "fixed", "value": long_prompt},
             "output_tokens": {"dist": "fixed", "value": long_output}},
            {"name": "short", "prompt_tokens": {"dist": "fixed", "value": 10},
             "output_tokens": {"dist": "fixed", "value": 5}},
        ]},
    }


@pytest.mark.parametrize("engine, reason", [
    ({}, REASON_KV),
    ({"scheduler": "prefill_first"}, REASON_KV),
    ({"scheduler": "static"}, REASON_KV),
    ({"admission": "reserve"}, REASON_KV),
    ({"scheduler": "prefill_first", "admission": "reserve"}, REASON_KV),
])
def test_request_too_long_for_kv_at_run_time_is_rejected_and_counted(engine: dict[str, Any], reason: str) -> None:
    # A 60-token prompt fits 4 blocks of 16; with 10 output tokens the sequence needs 69 > 64.
    s = sim.load_scenario(_two_class(60, 10, **engine))
    res, run = simulate_with_state(s)
    check_invariants(s, res, run)
    cls = _np(res.requests, "class")
    status = _np(res.requests, "status")
    long_ = cls == "long"
    assert long_.any() and (~long_).any()
    assert (status[long_] == "rejected").all()
    assert (status[~long_] == "completed").all()
    assert set(res.requests.column("reject_reason").filter(pa.array(long_)).to_pylist()) == {reason}
    counts = res.summary["requests"]
    assert counts["rejected"] == long_.sum()
    assert counts["rejected_by_reason"] == {reason: int(long_.sum())}
    assert counts["completed"] + counts["rejected"] == counts["arrived"] == 40
    # Rejected requests never reached a replica.
    assert res.requests.column("replica").filter(pa.array(long_)).null_count == long_.sum()


def test_sequence_that_exactly_fills_the_kv_cache_is_served() -> None:
    # 60 + 5 - 1 = 64 tokens: exactly 4 blocks, the whole cache. The last token is never cached.
    s = sim.load_scenario(_two_class(60, 5))
    res, run = simulate_with_state(s)
    check_invariants(s, res, run)
    assert res.summary["requests"]["completed"] == 40
    assert int(_np(res.iterations, "kv_blocks_used").max()) == 4


def test_without_chunking_a_sequence_over_the_token_budget_is_rejected() -> None:
    # Plenty of KV, but 50 + 20 - 1 = 69 tokens exceed a 64-token budget: a recompute after a
    # preemption could never be prefilled in one iteration.
    data = _two_class(50, 20, scheduler="prefill_first")
    data["profile"]["kv_capacity_tokens"] = 4096
    s = sim.load_scenario(data)
    res, run = simulate_with_state(s)
    check_invariants(s, res, run)
    long_ = _np(res.requests, "class") == "long"
    assert res.summary["requests"]["rejected_by_reason"] == {REASON_BUDGET: int(long_.sum())}
    # With chunked prefill the same requests are served; so they are under reserving admission,
    # which never re-prefills, so that only the 50-token prompt must fit the budget.
    for engine in ({"scheduler": "continuous"}, {"admission": "reserve"}):
        res = sim.simulate(sim.load_scenario({**data, "engine": {**data["engine"], **engine}}))
        assert res.summary["requests"]["completed"] == 40, engine


def test_without_chunking_reserve_refuses_only_a_prompt_over_the_token_budget() -> None:
    data = _two_class(70, 20, scheduler="prefill_first", admission="reserve")
    data["profile"]["kv_capacity_tokens"] = 4096
    s = sim.load_scenario(data)
    res, run = simulate_with_state(s)
    check_invariants(s, res, run)
    long_ = _np(res.requests, "class") == "long"
    assert res.summary["requests"]["rejected_by_reason"] == {REASON_PROMPT_BUDGET: int(long_.sum())}
    assert res.summary["requests"]["completed"] == int((~long_).sum())


def test_preemption_is_exercised_and_conserves_tokens() -> None:
    # Guard that the property test's space reaches preemption: a fixed heavy case must preempt.
    data = {
        "seed": 2, "replicas": 2,
        "profile": {"kind": "explicit", "fixed_s": 0.005, "kv_capacity_tokens": 256},
        "engine": {"block_size": 16, "max_num_seqs": 8, "max_num_batched_tokens": 256},
        "router": {"policy": "round_robin"},
        "workload": {"arrival": {"rate_per_s": 200.0}, "num_requests": 60, "classes": [
            {"name": "hi", "priority": 0, "prompt_tokens": {"dist": "uniform", "low": 20, "high": 120},
             "output_tokens": {"dist": "uniform", "low": 10, "high": 60}},
            {"name": "lo", "priority": 1, "prompt_tokens": {"dist": "uniform", "low": 20, "high": 120},
             "output_tokens": {"dist": "uniform", "low": 10, "high": 60}}]},
    }
    for scheduler in ("continuous", "prefill_first"):
        data["engine"]["scheduler"] = scheduler
        s = sim.load_scenario(data)
        res, run = simulate_with_state(s)
        check_invariants(s, res, run)
        assert res.summary["requests"]["preemptions"] > 0, scheduler


def test_requests_after_the_horizon_carry_no_reject_reason() -> None:
    data = _two_class(60, 10)
    data["workload"]["classes"] = data["workload"]["classes"][:1]  # every request is too long
    data["measurement"] = {"horizon_s": 0.5}
    res = sim.simulate(sim.load_scenario(data))
    status = res.requests.column("status").to_pylist()
    reasons = res.requests.column("reject_reason").to_pylist()
    assert "not_arrived" in status  # requests arriving after 0.5 s
    assert all((r is not None) == (st_ == "rejected") for st_, r in zip(status, reasons))
    counts = res.summary["requests"]
    assert sum(counts["rejected_by_reason"].values()) == counts["rejected"]


def test_timeline_counts_the_iteration_cut_by_the_horizon_as_busy() -> None:
    # One request, 1 s iterations from t0 ~ 0.033: [t0, t0+1), [t0+1, t0+2), then one running at 2.5.
    data = {
        "profile": {"kind": "explicit", "fixed_s": 1.0, "kv_capacity_tokens": 1000},
        "measurement": {"horizon_s": 2.5},
        "workload": {"arrival": {"rate_per_s": 100.0}, "num_requests": 1, "classes": [
            {"name": "a", "prompt_tokens": {"dist": "fixed", "value": 5},
             "output_tokens": {"dist": "fixed", "value": 10}}]},
    }
    res = sim.simulate(sim.load_scenario(data))
    last = res.timeline.to_pylist()[-1]
    assert (last["state"], last["end_s"]) == ("busy", 2.5), last
