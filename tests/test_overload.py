"""Overload and distortion said out loud: a run offered more than it can serve is flagged in the
summary and warned about on the command line; one at half its capacity is not. Utilisation
figures that show headroom where the busy fraction reads 100%."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import sim
from sim.results.records import OVERLOAD_SHORTFALL
from tests.helpers import _merge, run_app


def _one_at_a_time(rate: float, **overrides: Any) -> sim.Scenario:
    """One sequence at a time, 10 tokens out in 10 iterations of exactly 10 ms: the replica
    serves exactly 10 requests/s, whatever arrives."""
    base = {
        "profile": {"kind": "explicit", "fixed_s": 0.01, "kv_capacity_tokens": 4096},
        "engine": {"max_num_seqs": 1, "max_num_batched_tokens": 64},
        "measurement": {"warmup_s": 10.0},
        "workload": {"arrival": {"rate_per_s": rate}, "duration_s": 100.0,
                     "classes": [{"name": "x", "prompt_tokens": {"dist": "fixed", "value": 1},
                                  "output_tokens": {"dist": "fixed", "value": 10}}]},
    }
    return sim.load_scenario(_merge(base, overrides))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_and_a_half_times_capacity_is_overloaded(seed: int) -> None:
    s = sim.simulate(_one_at_a_time(25.0, seed=seed), records="summary").summary
    load = s["load"]
    assert load["overloaded"] is True
    # The departure rate is the capacity (10/s: the server never idles), the backlog grows by the difference.
    assert load["departure_rate_per_s"] == pytest.approx(10.0, rel=0.02)
    assert load["backlog_growth_per_s"] == pytest.approx(load["arrival_rate_per_s"] - 10.0, rel=0.05)
    assert any(w.startswith("overloaded:") for w in s["warnings"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_half_capacity_is_not_overloaded(seed: int) -> None:
    s = sim.simulate(_one_at_a_time(5.0, seed=seed), records="summary").summary
    assert s["load"]["overloaded"] is False
    assert s["warnings"] == []
    # Yet the server works half the time: busy fraction and batch slots say so.
    assert s["busy_fraction"]["mean"] == pytest.approx(0.5, abs=0.05)
    assert s["utilisation"]["batch_slots"] == pytest.approx(0.5, abs=0.05)


def test_just_below_capacity_is_not_overloaded() -> None:
    # 90% load: a queue that is long but stable; its backlog does not grow with the window.
    for seed in range(3):
        s = sim.simulate(_one_at_a_time(9.0, seed=seed, workload={"duration_s": 400.0}), records="summary").summary
        assert s["load"]["overloaded"] is False, (seed, s["load"])
        assert s["load"]["departure_rate_per_s"] > (1 - OVERLOAD_SHORTFALL) * s["load"]["arrival_rate_per_s"]


def _default_at(rate: float) -> sim.Scenario:
    d = sim.default_scenario().to_dict()
    d["workload"]["arrival"]["rate_per_s"] = rate
    d["workload"]["duration_s"] = 120.0
    return sim.load_scenario(d)


@pytest.mark.slow
def test_default_scenario_warns_at_two_and_a_half_times_its_capacity_and_not_at_half() -> None:
    # The default replica's capacity, measured as what it completes when swamped.
    swamped = sim.simulate(_default_at(60.0), records="summary").summary["load"]
    capacity = swamped["departure_rate_per_s"]
    assert swamped["overloaded"]
    over = run_app("run", "--set", f"workload.arrival.rate_per_s={2.5 * capacity:.3f}", "--set",
                   "workload.duration_s=120", "--no-write", "-q")
    assert over.exit_code == 0
    assert over.stderr.startswith("capsim: warning: overloaded: "), over.stderr
    half = run_app("run", "--set", f"workload.arrival.rate_per_s={0.5 * capacity:.3f}", "--set",
                   "workload.duration_s=120", "--no-write", "-q")
    assert half.exit_code == 0 and half.stderr == "", half.stderr


def test_utilisation_shows_headroom_that_the_busy_fraction_hides() -> None:
    low = sim.simulate(_default_at(4.0), records="summary").summary
    high = sim.simulate(_default_at(16.0), records="summary").summary
    assert low["busy_fraction"]["mean"] > 0.99 and high["busy_fraction"]["mean"] > 0.99
    for key in ("kv_cache", "batch_slots", "mfu"):
        assert 0 < low["utilisation"][key] < high["utilisation"][key] <= 1, key
    assert high["utilisation"]["batch_slots"] > 2.5 * low["utilisation"]["batch_slots"]


def test_utilisation_agrees_with_the_iteration_table() -> None:
    result = sim.simulate(_one_at_a_time(5.0, measurement={"warmup_s": 0.0}))
    s, it = result.summary, result.iterations
    lo, hi = s["window"]["start_s"], s["window"]["end_s"]
    start, dur = it.column("start_s").to_numpy(), it.column("duration_s").to_numpy()
    inside = np.clip(np.minimum(start + dur, hi) - np.maximum(start, lo), 0, None)
    blocks = result.scenario.kv_capacity_tokens // result.scenario.engine.block_size
    kv = float(np.sum(inside * it.column("kv_blocks_used").to_numpy())) / ((hi - lo) * blocks)
    assert s["utilisation"]["kv_cache"] == pytest.approx(kv, rel=1e-9)
    assert s["utilisation"]["mfu"] is None and s["utilisation"]["mbu"] is None  # explicit: no hardware peak


def test_mbu_is_bounded_by_the_memory_efficiency_the_roofline_assumed() -> None:
    s = sim.simulate(_merge_profile(_default_at(8.0), {"kind": "roofline"}), records="summary").summary
    # A roofline iteration moves its bytes at most at memory_efficiency x peak bandwidth.
    assert 0 < s["utilisation"]["mbu"] <= 0.8 + 1e-9
    assert 0 < s["utilisation"]["mfu"] <= 0.6 + 1e-9


def _merge_profile(s: sim.Scenario, profile: dict[str, Any]) -> sim.Scenario:
    d = s.to_dict()
    d["profile"] = profile
    return sim.load_scenario(d)


def test_cut_prompts_are_counted_and_warned_about() -> None:
    s = sim.load_scenario({
        "profile": {"kind": "explicit", "fixed_s": 0.01, "kv_capacity_tokens": 1 << 20},
        "engine": {"max_num_batched_tokens": 1 << 17},
        "workload": {"arrival": {"rate_per_s": 1.0}, "num_requests": 3,
                     "classes": [{"name": "x", "prompt_tokens": {"dist": "fixed", "value": 131_000},
                                  "output_tokens": {"dist": "fixed", "value": 100}}]},
    })
    summary = sim.simulate(s, records="summary").summary
    assert summary["truncated_requests"] == 3
    assert any("3 requests were cut to fit the model's context of 131,072 tokens" in w for w in summary["warnings"])


def test_rejections_and_the_horizon_are_warned_about() -> None:
    from tests.helpers import requests

    s = _one_at_a_time(25.0, measurement={"warmup_s": 0.0, "horizon_s": 50.0})
    table = requests([0.0, 0.5, 1.0], [1, 5000, 1], [10, 10, 10])  # the second needs more KV than there is
    summary = sim.simulate(s, requests=table, records="summary").summary
    assert summary["requests"]["rejected"] == 1
    assert "1 requests rejected: 1 needs more KV blocks than a replica has" in summary["warnings"]
    swamped = sim.simulate(s, records="summary").summary
    assert swamped["requests"]["in_flight"] > 0
    assert any(w.startswith(f"{swamped['requests']['in_flight']:,} requests were still in flight at the horizon")
               for w in swamped["warnings"])


def _batching(rate: float, max_num_seqs: int, seed: int = 0, warmup_s: float = 0.0, **workload: Any) -> sim.Scenario:
    """Continuous batching where every iteration takes 10 ms whatever the batch: a request of 100
    output tokens spends 1 s in service, so a stable server holds about ``rate`` requests, and
    ``max_num_seqs`` requests/s is its capacity."""
    return sim.load_scenario({
        "seed": seed, "profile": {"kind": "explicit", "fixed_s": 0.01, "kv_capacity_tokens": 1_000_000},
        "engine": {"max_num_seqs": max_num_seqs, "max_num_batched_tokens": 8192},
        "measurement": {"warmup_s": warmup_s},
        "workload": {"arrival": {"rate_per_s": rate}, **workload,
                     "classes": [{"name": "x", "prompt_tokens": {"dist": "fixed", "value": 16},
                                  "output_tokens": {"dist": "fixed", "value": 100}}]},
    })


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_short_run_filling_its_batch_from_empty_is_undetermined_not_overloaded(seed: int) -> None:
    # 300 requests at 50/s, room for 256 in the batch: the backlog grows from 0 to ~50 in service
    # (a sixth of the arrivals), which the backlog rule alone called overloaded before the
    # admission queue was looked at; nothing ever waits to be scheduled.
    s = sim.simulate(_batching(50.0, 256, num_requests=300, seed=seed), records="summary").summary
    load = s["load"]
    assert load["verdict"] == "undetermined" and load["overloaded"] is False, load
    assert load["backlog_at_end"] - load["backlog_at_start"] >= 10 and load["waiting_at_end"] < 10
    assert [w for w in s["warnings"] if w.startswith(("overloaded", "undetermined"))] == [s["warnings"][0]]
    assert s["warnings"][0].startswith("undetermined load: ") and "too short to tell" in s["warnings"][0]
    # The same load for long enough, past a warm-up, is stable: the server sustains it.
    long = sim.simulate(_batching(50.0, 256, seed=seed, warmup_s=20.0, duration_s=120.0), records="summary").summary
    assert long["load"]["verdict"] == "stable" and long["warnings"] == [], long["load"]
    # Over capacity (32 slots of 1 s: 32 requests/s), the admission queue grows even in the short run.
    over = sim.simulate(_batching(50.0, 32, num_requests=300, seed=seed), records="summary").summary["load"]
    assert over["verdict"] == "overloaded" and over["overloaded"] is True and over["waiting_at_end"] >= 50, over

