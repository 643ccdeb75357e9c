"""Decode runs (sim.core.replica) change speed, never results: advancing runs of decode-only
iterations at once gives the same per-request, per-iteration and summary results, bit for bit,
as stepping every iteration on its own; and each profile's ``decode_steps`` equals its ``step``."""

from __future__ import annotations

import copy
import dataclasses
import typing
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim
from calibration.profile import BatchShape
from sim.config import EngineSpec, RouterSpec
from sim.core.plans import Planner
from tests.test_conservation import scenarios
from tests.test_determinism import SCENARIOS, _same_result

_CHAT = {"name": "chat", "prompt_tokens": {"dist": "lognormal", "mean": 900, "p99": 6000, "max": 12000},
         "output_tokens": {"dist": "lognormal", "mean": 180, "p99": 900, "max": 2000},
         "slo": {"ttft_s": 1.0, "tpot_s": 0.05}}

# Beyond the determinism scenarios (explicit profiles, preemption, prefill-first with a central
# queue, static with a horizon, roofline on two replicas): measured profiles, chunked prefill of
# long prompts under a small token budget, sessions released by completions, priorities,
# a horizon cutting runs in flight, and many replicas.
EXTRA: dict[str, dict[str, Any]] = {
    "measured_a100_chunked_preempting": {
        "seed": 2, "model": "llama-3.1-8b", "quantization": "bf16", "hardware": "a100-80gb",
        "profile": {"kind": "auto"},
        "engine": {"max_num_seqs": 64, "max_num_batched_tokens": 1024, "gpu_memory_fraction": 0.25},
        "workload": {"arrival": {"rate_per_s": 6.0}, "num_requests": 300, "classes": [_CHAT]},
    },
    "roofline_tp2_sessions_priorities_horizon": {
        "seed": 4, "model": "llama-3.1-70b", "hardware": "h100-sxm", "quantization": "fp8", "tp": 2,
        "replicas": 3, "router": {"policy": "round_robin"},
        "workload": {"arrival": {"rate_per_s": 4.0}, "duration_s": 40,
                     "classes": [dict(_CHAT, priority=1, share=2.0),
                                 {"name": "agent", "priority": 0, "share": 1.0,
                                  "prompt_tokens": {"dist": "uniform", "low": 100, "high": 2000},
                                  "output_tokens": {"dist": "uniform", "low": 10, "high": 400},
                                  "sessions": {"turns": {"dist": "uniform", "low": 1, "high": 4},
                                               "think_time": {"mean_s": 2.0}}}]},
        "measurement": {"horizon_s": 30.0},
    },
    # Found by test_conservation: an arrival whose time sits half an ulp off a run's boundary, from
    # where no float delay reaches the boundary (the engine then schedules at the boundary itself).
    "unreachable_boundary": {
        "seed": 93, "profile": {"kind": "explicit", "fixed_s": 0.01, "kv_capacity_tokens": 69},
        "engine": {"max_num_seqs": 4, "max_num_batched_tokens": 8, "block_size": 1},
        "workload": {"arrival": {"rate_per_s": 1000.0}, "num_requests": 30,
                     "classes": [{"name": "c0", "prompt_tokens": {"dist": "fixed", "value": 2},
                                  "output_tokens": {"dist": "uniform", "low": 9, "high": 20}}]},
    },
    "many_replicas_moe": {
        "seed": 9, "model": "mixtral-8x7b", "hardware": "h100-sxm", "quantization": "fp8", "tp": 2,
        "replicas": 8,
        "workload": {"arrival": {"rate_per_s": 40.0}, "num_requests": 600, "classes": [_CHAT]},
    },
}
ALL = {**{k: v for k, (v, _) in SCENARIOS.items()}, **EXTRA}
# Every scheduler and router the configuration allows, read from its types: a new policy is
# covered by these tests without editing them.
SCHEDULERS = typing.get_args(EngineSpec.model_fields["scheduler"].annotation)
ADMISSIONS = typing.get_args(EngineSpec.model_fields["admission"].annotation)
ROUTERS = typing.get_args(RouterSpec.model_fields["policy"].annotation)
# Scenarios of ALL again with every other admission policy than their own (the golden fingerprints
# cover ALL as it is, so these live apart): each with runs of many iterations planned.
OTHER_ADMISSION = {f"{name}__{adm}": {**data, "engine": {**data.get("engine", {}), "admission": adm}}
                   for name, data in (("explicit_three_replicas_preempting", None),
                                      ("measured_a100_chunked_preempting", None),
                                      ("roofline_tp2_sessions_priorities_horizon", None))
                   for adm in ADMISSIONS if adm != "recompute"
                   for data in [copy.deepcopy(ALL[name])]}


def _load(name: str) -> sim.Scenario:
    return sim.load_scenario(copy.deepcopy({**ALL, **OTHER_ADMISSION}[name]))


@pytest.mark.parametrize("name", [*ALL, *OTHER_ADMISSION])
def test_decode_runs_give_the_step_by_step_results(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    s = _load(name)
    stepped = sim.simulate(s, decode_runs=False)
    runs: list[int] = []
    real = Planner._commit_run

    def spy(self: Planner, j: int, started: int) -> None:
        runs.append(j)
        real(self, j, started)

    monkeypatch.setattr(Planner, "_commit_run", spy)
    fast = sim.simulate(s, decode_runs=True)
    _same_result(stepped, fast)
    # The fast path did the work it claims: runs of many iterations.
    assert max(runs) > 3, runs[:20]
    assert sum(runs) > 0.3 * stepped.iterations.num_rows


def test_scenarios_exercise_what_they_claim() -> None:
    r = sim.simulate(_load("measured_a100_chunked_preempting")).summary
    assert r["requests"]["preemptions"] > 0
    assert "measured" in r["profile"]["kind"]
    h = sim.simulate(_load("roofline_tp2_sessions_priorities_horizon"))
    assert h.summary["requests"]["in_flight"] > 0
    assert h.iterations.column("tokens_out").to_numpy()[-3:].min() == 0  # an iteration cut at the horizon


def _profiles() -> list[Any]:
    out = []
    for data in ({"profile": {"kind": "roofline"}},
                 {"model": "mixtral-8x7b", "hardware": "h100-sxm", "quantization": "fp8", "tp": 2},
                 {"model": "llama-3.1-8b", "quantization": "bf16", "hardware": "a100-80gb", "profile": {"kind": "auto"}},
                 {"model": "llama-3.1-70b", "quantization": "fp16", "hardware": "h100-sxm", "tp": 4,
                  "profile": {"kind": "auto"}},
                 # A measured profile whose KV reads are rescaled (fp8 KV against the 16 bits measured).
                 {"quantization": "fp8", "kv_cache_dtype": "fp8", "profile": {"kind": "auto"}},
                 {"profile": {"kind": "explicit", "fixed_s": 0.01, "per_token_s": 3e-5, "decode_attention_s": 7e-9,
                              "kv_capacity_tokens": 100000}}):
        base = {"workload": {"arrival": {"rate_per_s": 1.0}, "num_requests": 1, "classes": [_CHAT]}}
        out.append(sim.load_scenario({**base, **data}).build_profile())
    return out


PROFILES = _profiles()


@settings(max_examples=200, deadline=None)
@given(which=st.integers(0, len(PROFILES)), data=st.data())
def test_decode_steps_equals_step_bit_for_bit(which: int, data: st.DataObject) -> None:
    """A run of decode-only iterations whose batch shrinks as sequences complete: one
    ``decode_steps`` call prices each iteration as ``step`` does, bit for bit, whether the
    profile's per-batch-size table is grown by the call or already holds the sizes.

    ``which == len(PROFILES)``: the measured A100 profile without its linear-layer table, so that
    the knee's ``**`` prices the linear layers (numpy's vectorised ``**`` differs from Python's in
    the last bit at some batch sizes: a ``decode_steps`` that took it on arrays fails here)."""
    if which == len(PROFILES):
        measured = PROFILES[2]
        assert "knee" in measured.record.coefficients
        profile = dataclasses.replace(measured, record=dataclasses.replace(measured.record, linear_table=None))
    else:
        profile = PROFILES[which]
    n = data.draw(st.integers(1, 300), label="sequences")
    first = np.asarray(data.draw(st.lists(st.integers(1, 131072), min_size=n, max_size=n), label="contexts"), np.int64)
    left = np.asarray(data.draw(st.lists(st.integers(1, 12), min_size=n, max_size=n), label="iterations"), np.int64)
    empty = np.empty(0, np.int64)
    seqs, context, want = [], [], []
    for k in range(int(left.max())):
        active = first[left > k] + k  # each iteration adds a token to every sequence still running
        seqs.append(active.size)
        context.append(int(active.sum()))
        want.append(profile.step(BatchShape(empty, empty, active)))
    seqs_a, context_a = np.asarray(seqs, np.int64), np.asarray(context, np.float64)
    expected = [[w.seconds for w in want], [w.flops for w in want], [w.bytes for w in want]]
    # A fresh profile (an empty table) priced on the run's small last iterations, then grown by the
    # whole run; and the shared profile, whose table earlier examples have grown.
    fresh = dataclasses.replace(profile)
    tail = len(seqs) // 2
    for p, start in ((fresh, tail), (fresh, 0), (profile, 0)):
        got = p.decode_steps(seqs_a[start:], context_a[start:])
        # NaN equals NaN here (the explicit profile's FLOPs and bytes).
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected)[:, start:], strict=True)
    # A plain int: the same batch size in every iteration.
    got = profile.decode_steps(seqs[0], np.full(3, float(context[0])))
    np.testing.assert_array_equal(np.asarray(got), np.repeat(np.asarray(expected)[:, :1], 3, axis=1), strict=True)


class _StepOnly:
    """A profile with ``step`` alone (no ``decode_steps``), as a user's own profile may be."""

    def __init__(self, inner: Any):
        self._inner = inner
        self.provenance = inner.provenance

    def kv_capacity_tokens(self, replica: Any) -> int:
        return self._inner.kv_capacity_tokens(replica)

    def memory_shortfall_bytes(self, replica: Any) -> float:
        return self._inner.memory_shortfall_bytes(replica)

    def step(self, batch: BatchShape) -> Any:
        return self._inner.step(batch)


def test_a_profile_without_decode_steps_is_priced_step_by_step_in_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _load("explicit_three_replicas_preempting")
    plain = sim.Scenario.build_profile
    monkeypatch.setattr(sim.Scenario, "build_profile", lambda self: _StepOnly(plain(self)))
    assert not hasattr(s.build_profile(), "decode_steps")
    _same_result(sim.simulate(s, decode_runs=False), sim.simulate(s))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_decode_runs_equal_step_by_step_on_random_scenarios(data: dict[str, Any]) -> None:
    """Random engines, schedulers, KV sizes, routers, horizons and workloads (the conservation
    test's strategy, which found the unreachable-boundary tie): the same results either way."""
    s = sim.load_scenario(data)
    _same_result(sim.simulate(s, decode_runs=False), sim.simulate(s))


def _tie_engine(draw: st.DrawFn, n: int, replicas: bool = False) -> dict[str, Any]:
    """Scenario keys for tie tests of ``n`` given requests: steps of 0.625 s (+ 0.25 s per token),
    so that iteration boundaries fall on the 1/8 s grid arrivals are drawn on; small caches and
    batch limits, any scheduler; with ``replicas``, 2 or 3 replicas behind the least-KV-load router
    (drawn right after the scheduler: the derandomized sample below depends on the order of draws)."""
    scheduler = draw(st.sampled_from(SCHEDULERS))
    fleet = {"replicas": draw(st.integers(2, 3)), "router": {"policy": "least_kv_load"}} if replicas else {}
    return {
        **fleet,
        "profile": {"kind": "explicit", "fixed_s": 0.625, "per_token_s": draw(st.sampled_from([0.0, 0.25])),
                    "kv_capacity_tokens": draw(st.sampled_from([16, 24, 1000]))},
        "engine": {"scheduler": scheduler, "max_num_seqs": draw(st.integers(2, 6)),
                   "max_num_batched_tokens": draw(st.integers(6, 16)), "block_size": draw(st.sampled_from([1, 2])),
                   "chunked_prefill": scheduler == "continuous" and draw(st.booleans())},
        "workload": {"arrival": {"rate_per_s": 1.0}, "num_requests": n,
                     "classes": [{"name": "x", "prompt_tokens": {"dist": "fixed", "value": 1},
                                  "output_tokens": {"dist": "fixed", "value": 1}}]},
    }


@st.composite
def _tied_runs(draw: st.DrawFn) -> tuple[dict[str, Any], Any]:
    """A small one-replica scenario whose iterations last 0.625 s plus a quarter second per token
    and whose requests arrive on whole or half seconds, so arrivals land exactly on iteration
    boundaries; with follow-up requests (think times of 0, 0.5 or 1 s) and priorities.

    No iteration lasts a multiple of half a second, so no request is released exactly one
    iteration before the boundary it lands on. What plans order only approximately (see
    sim.core.replica) stays out: that double tie, and, among several replicas, events at one
    replica's boundary that land on another's."""
    import pyarrow as pa

    n = draw(st.integers(2, 24))
    arrival = [float(draw(st.integers(0, 24))) / 2 for _ in range(n)]
    after = [-1] * n
    think = [0.0] * n
    for i in range(1, n):
        if draw(st.integers(0, 3)) == 0:  # follows an earlier request
            after[i] = draw(st.integers(0, i - 1))
            arrival[i] = float("nan")
            think[i] = draw(st.sampled_from([0.0, 0.5, 1.0]))
    table = pa.table({
        "request_id": np.arange(n, dtype=np.int64),
        "arrival_s": np.asarray(arrival),
        "prompt_tokens": np.asarray([draw(st.integers(1, 6)) for _ in range(n)], np.int64),
        "output_tokens": np.asarray([draw(st.integers(1, 9)) for _ in range(n)], np.int64),
        "class": pa.array(["x"] * n, pa.string()),
        "priority": np.asarray([draw(st.integers(0, 1)) for _ in range(n)], np.int64),
        "after_id": np.asarray(after, np.int64),
        "think_s": np.asarray(think),
    })
    data = _tie_engine(draw, n)
    if draw(st.integers(0, 3)) == 0:
        data["measurement"] = {"horizon_s": float(draw(st.integers(1, 16)))}
    data["engine"]["admission"] = draw(st.sampled_from(ADMISSIONS))  # drawn last: the draws before keep their order
    return data, table


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_tied_runs())
def test_plans_order_ties_at_iteration_boundaries_as_stepping_does(case: tuple[dict[str, Any], Any]) -> None:
    """Arrivals and follow-up requests exactly at iteration boundaries: the plans see each where
    stepping one by one would."""
    data, table = case
    s = sim.load_scenario(data)
    _same_result(sim.simulate(s, requests=table, decode_runs=False), sim.simulate(s, requests=table))



@pytest.mark.parametrize("admission", ADMISSIONS)
@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_scheduler_and_router_gives_the_same_results_with_plans_on_and_off(scheduler: str, router: str,
                                                                                   admission: str) -> None:
    # Three replicas under KV pressure (preemption, or requests waiting for whole sequences' blocks)
    # with two priority classes, short enough to run the whole product of policies.
    data = copy.deepcopy(ALL["explicit_three_replicas_preempting"])
    data["engine"] = {**data.get("engine", {}), "scheduler": scheduler, "admission": admission,
                      **({"chunked_prefill": None} if scheduler != "continuous" else {})}
    data["router"] = {"policy": router}
    s = sim.load_scenario(data)
    _same_result(sim.simulate(s, decode_runs=False), sim.simulate(s))


def test_policy_lists_come_from_the_config():
    assert {"continuous", "prefill_first", "static"} <= set(SCHEDULERS)
    assert {"recompute", "reserve"} <= set(ADMISSIONS)
    assert {"round_robin", "least_outstanding"} <= set(ROUTERS)


def test_a_plan_claim_is_declared_by_a_class_itself_and_never_inherited():
    from sim.core.scheduling import PlanClaim, make_scheduler, plan_claim
    from sim.core.scheduling.continuous import ContinuousScheduler

    base = make_scheduler("continuous", max_num_seqs=8, max_num_batched_tokens=64, block_size=16, chunked=True)
    assert plan_claim(base) == PlanClaim("grow", 64)

    class Derived(ContinuousScheduler):  # forms batches its own way: must restate the claim to be planned
        pass

    assert plan_claim(Derived(8, 64, 16, True)) is None

    class Restated(ContinuousScheduler):
        decode_run = "grow"

    assert plan_claim(Restated(8, 64, 16, True)) == PlanClaim("grow", 64)

    class Wrong(ContinuousScheduler):
        decode_run = "sometimes"

    with pytest.raises(ValueError, match=r"Wrong\.decode_run = 'sometimes': must be 'grow' or 'reserved'"):
        plan_claim(Wrong(8, 64, 16, True))


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("admission", ADMISSIONS)
def test_each_admission_policy_is_a_class_that_states_its_own_claim(scheduler: str, admission: str):
    from sim.core.scheduling import make_scheduler, plan_claim

    made = make_scheduler(scheduler, max_num_seqs=8, max_num_batched_tokens=64, block_size=16,
                          chunked=scheduler == "continuous", admission=admission)
    claim = plan_claim(made)
    assert claim is not None and "decode_run" in type(made).__dict__
    # Blocks reserved at admission (reserve, and static under either) leave decodes nothing to take.
    reserved = admission == "reserve" or scheduler == "static"
    assert claim.mode == ("reserved" if reserved else "grow")
    assert claim.closed == (scheduler == "static")  # only static batching admits nothing into a batch in flight

    class Derived(type(made)):  # a reserving scheduler's subclass inherits no claim either
        pass

    assert plan_claim(Derived(*(getattr(made, f.name) for f in dataclasses.fields(made)))) is None


def test_decode_steps_is_a_declared_capability():
    from calibration.profile import DecodeStepsProfile, decode_steps_of

    for name in ("explicit_one_replica", "roofline_default_profile", "measured_a100_chunked_preempting"):
        p = _load(name).build_profile()
        assert isinstance(p, DecodeStepsProfile) and decode_steps_of(p) == p.decode_steps
    assert decode_steps_of(_StepOnly(_load("explicit_one_replica").build_profile())) is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.integers(1, 4))
def test_a_router_reading_kv_state_gives_the_same_results_with_plans_on_and_off(data: dict[str, Any], replicas: int):
    # The replica view (sim.core.view) is what stepping one by one would show, even while plans run ahead.
    data = copy.deepcopy(data)
    data["replicas"] = replicas
    data["router"] = {**data["router"], "policy": "least_kv_load"}
    s = sim.load_scenario(data)
    _same_result(sim.simulate(s, decode_runs=False), sim.simulate(s))


@st.composite
def _tied_arrivals(draw: st.DrawFn) -> tuple[dict[str, Any], pa.Table]:
    """Several replicas, requests arriving on a grid of 1/8 s where iterations of 0.625 s + 0.25 s
    per token end too: many arrivals land exactly on iteration boundaries of plans in flight.
    (Requests released by completions are left out: which replica's completion is handled first
    at equal times is one of the ties plans order only approximately, see sim.core.replica.)"""
    n = draw(st.integers(2, 14))
    table = pa.table({
        "request_id": np.arange(n, dtype=np.int64),
        "arrival_s": np.asarray([draw(st.integers(0, 40)) / 8 for _ in range(n)], np.float64),
        "prompt_tokens": np.asarray([draw(st.integers(1, 6)) for _ in range(n)], np.int64),
        "output_tokens": np.asarray([draw(st.integers(1, 9)) for _ in range(n)], np.int64),
        "class": pa.array(["x"] * n, pa.string()),
        "priority": np.asarray([draw(st.integers(0, 1)) for _ in range(n)], np.int64),
    })
    return _tie_engine(draw, n, replicas=True), table


# A fixed sample (derandomized): one tie remains approximate on several replicas, an arrival landing
# exactly where a plan ends (see the strict xfail below), and a random search finds it now and then.
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True,
          database=None)
@given(_tied_arrivals())
def test_the_kv_view_orders_ties_at_iteration_boundaries_as_stepping_does(case: tuple[dict[str, Any], Any]) -> None:
    data, table = case
    s = sim.load_scenario(data)
    _same_result(sim.simulate(s, requests=table, decode_runs=False), sim.simulate(s, requests=table))


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "known approximation (sim/core/plans.py, Ties): on several replicas a plan's end event is created when the plan "
    "starts, so at its last boundary it comes before an arrival created later but before stepping would have "
    "scheduled that last iteration; stepping handles the arrival first (here request 3 at 3.75 s sees replica 0 "
    "holding 5 blocks and goes to replica 1; with plans replica 0 has already finished and takes it). It is not the "
    "view's: least_outstanding routes request 3 differently the same way"))
def test_an_arrival_exactly_at_a_plans_last_boundary_on_several_replicas():
    data = {"replicas": 2, "router": {"policy": "least_kv_load"},
            "profile": {"kind": "explicit", "fixed_s": 0.625, "kv_capacity_tokens": 16},
            "engine": {"scheduler": "prefill_first", "max_num_seqs": 2, "max_num_batched_tokens": 6, "block_size": 1},
            "workload": {"arrival": {"rate_per_s": 1.0}, "num_requests": 7,
                         "classes": [{"name": "x", "prompt_tokens": {"dist": "fixed", "value": 1},
                                      "output_tokens": {"dist": "fixed", "value": 1}}]}}
    table = pa.table({"request_id": np.arange(7), "arrival_s": np.array([0, 0.125, 1.375, 3.75, 0, 0, 0.0]),
                      "prompt_tokens": np.ones(7, np.int64), "output_tokens": np.array([1, 5, 1, 1, 1, 1, 1]),
                      "class": pa.array(["x"] * 7, pa.string()), "priority": np.zeros(7, np.int64)})
    s = sim.load_scenario(data)
    _same_result(sim.simulate(s, requests=table, decode_runs=False), sim.simulate(s, requests=table))


def test_the_kv_view_is_the_iteration_log_at_every_arrival():
    # Recorded at each routing decision: the view of every replica equals the kv_blocks_used of the
    # iteration that replica was running then, as the step-by-step log says.
    from sim.core.view import ReplicaViews

    s = _load("explicit_three_replicas_preempting")
    seen: dict[bool, list[tuple[float, int, int]]] = {True: [], False: []}
    real = ReplicaViews.kv_blocks_used
    for runs in (True, False):
        def spy(self, k, runs=runs):
            used = real(self, k)
            seen[runs].append((self._engines[k].env.now, k, used))
            return used
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(ReplicaViews, "kv_blocks_used", spy)
            sim.simulate(sim.load_scenario({**ALL["explicit_three_replicas_preempting"],
                                            "router": {"policy": "least_kv_load"}}), decode_runs=runs)
    assert seen[True] and seen[True] == seen[False]
    assert s.replicas > 1
