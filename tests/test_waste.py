"""Idle-capacity waste: the parts add up to the provisioned GPU-seconds exactly over random
scenarios (hypothesis), and each part means what the definitions in sim.results.waste say."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim import simulate
from sim.results.waste import PARTS, WasteReference, waste_of
from tests.helpers import scenario


def _check_adds_up(w: dict) -> None:
    """Every window's parts, and the overall parts, sum to the provisioned GPU-seconds; none negative."""
    win = w["windows"]
    provisioned = 0.0
    for k, length in enumerate(win["length_s"]):
        parts = [win[f"{p}_gpu_s"][k] for p in PARTS]
        assert all(v is None or v >= -1e-9 for v in parts), parts
        total = sum(v for v in parts if v is not None)
        assert total == pytest.approx(length * w["tp_replicas"], rel=1e-9, abs=1e-9)
        provisioned += length * w["tp_replicas"]
    overall = [w["gpu_s"][p] for p in PARTS]
    assert sum(v for v in overall if v is not None) == pytest.approx(w["gpu_s"]["provisioned"], rel=1e-9, abs=1e-9)
    assert w["gpu_s"]["provisioned"] == pytest.approx(provisioned, rel=1e-12)


@st.composite
def _scenarios(draw: st.DrawFn):
    """Small explicit-profile scenarios: 1-3 replicas, tp 1-2, light to overloaded Poisson or a
    stepped rate, KV caches a few sequences fill (preemption), waste windows of 2-20 s."""
    replicas, tp = draw(st.integers(1, 3)), draw(st.sampled_from([1, 2]))
    rate = draw(st.floats(0.5, 40.0))
    if draw(st.booleans()):
        arrival = {"rate_per_s": rate}
    else:
        arrival = {"rate_per_s": None, "rate_profile": {"shape": "steps", "times_s": [0.0, 10.0, 20.0, 30.0],
                                    "rates_per_s": [rate, rate / 10, rate * 2, rate / 4]}}
    kv = draw(st.sampled_from([128, 256, 4096]))
    return scenario(
        seed=draw(st.integers(0, 50)), replicas=replicas, tp=tp,
        profile={"kind": "explicit", "fixed_s": 0.01, "per_token_s": 0.0005, "kv_capacity_tokens": kv},
        engine={"block_size": 16, "max_num_seqs": 8, "max_num_batched_tokens": 256},
        cost={"window_s": draw(st.sampled_from([2.0, 7.5, 20.0])), "usd_per_gpu_hour": 2.0},
        measurement={"warmup_s": draw(st.sampled_from([0.0, 3.0]))},
        workload={"arrival": arrival, "num_requests": None, "duration_s": 40.0,
                  "classes": [{"name": "x", "prompt_tokens": {"dist": "uniform", "low": 4, "high": 100},
                               "output_tokens": {"dist": "uniform", "low": 1, "high": 60}}]})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_scenarios(), st.floats(0.2, 30.0), st.floats(5.0, 3000.0))
def test_waste_parts_add_up_to_the_provisioned_gpu_seconds(s, rate, tokens):
    sm = simulate(s, records="summary").summary
    for ref in (None, WasteReference(rate_per_s=rate, output_tokens_per_s=tokens, source="test")):
        w = waste_of(sm, s, ref)
        w["tp_replicas"] = s.tp * s.replicas
        _check_adds_up(w)
        if ref is None:
            assert w["gpu_s"]["under_filled"] is None and w["gpu_s"]["over_provisioned"] is None
        usd = [w["usd"][p] for p in PARTS if w["usd"][p] is not None]
        assert sum(usd) == pytest.approx(sm["cost"]["total_usd"], rel=1e-9)


def test_the_summary_carries_waste_and_preemption_shows_as_recompute():
    s = scenario(seed=2, replicas=2,
                 profile={"kind": "explicit", "fixed_s": 0.005, "per_token_s": 0.0001, "kv_capacity_tokens": 256},
                 engine={"block_size": 16, "max_num_seqs": 8, "max_num_batched_tokens": 256},
                 workload={"arrival": {"rate_per_s": 200.0}, "num_requests": 60,
                           "classes": [{"name": "x", "prompt_tokens": {"dist": "uniform", "low": 20, "high": 120},
                                        "output_tokens": {"dist": "uniform", "low": 10, "high": 60}}]})
    res = simulate(s)
    assert res.summary["requests"]["preemptions"] > 0
    w = res.summary["waste"]
    assert w["gpu_s"]["recompute"] > 0
    # Recompute seconds are the recomputed tokens' share of each iteration, from the records alone.
    it = res.iterations
    dur, redo = it.column("duration_s").to_numpy(), it.column("recompute_tokens").to_numpy()
    tokens = it.column("prefill_tokens").to_numpy() + it.column("decode_seqs").to_numpy()
    lo, hi = res.summary["window"]["start_s"], res.summary["window"]["end_s"]
    start = it.column("start_s").to_numpy()
    inside = (np.minimum(start + dur, hi) - np.maximum(start, lo)).clip(0)  # seconds in the window
    assert w["gpu_s"]["recompute"] == pytest.approx((inside * redo / tokens).sum(), rel=1e-6)


def _summary(busy, redo, out, arrivals, length=100.0):
    """A summary's windows and cost as waste_of reads them."""
    n = len(busy)
    return {"windows": {"start_s": [k * length for k in range(n)], "length_s": [length] * n, "busy_s": busy,
                        "recompute_s": redo, "output_tokens": out, "arrivals": arrivals},
            "cost": {"total_usd": 10.0}}


def test_definitions_by_hand():
    # 3 replicas of tp 2, two 100 s windows; the reference replica turns out 50 tokens/s at 2 requests/s.
    sc = SimpleNamespace(tp=2, replicas=3)
    ref = WasteReference(rate_per_s=2.0, output_tokens_per_s=50.0, source="hand")
    sm = _summary(busy=[150.0, 300.0], redo=[10.0, 0.0], out=[2000, 12000], arrivals=[100, 550])
    w = waste_of(sm, sc, ref)["windows"]
    # Window 0: work 140 replica-s; useful = 2000 / 50 = 40 replica-s -> 80 GPU-s; under-filled
    # (140 - 40) x 2 = 200; recompute 20; idle (300 - 150) x 2 = 300. Load 1 request/s needs 1
    # replica: 2 spare x 2 GPUs x 100 s = 400 GPU-s, all 300 idle then 100 of under-filled.
    assert [w[f"{p}_gpu_s"][0] for p in PARTS] == pytest.approx([80.0, 100.0, 20.0, 0.0, 400.0])
    assert w["replicas_needed"][0] == 1
    # Window 1: every replica busy, 300 replica-s of work, 12000 / 50 = 240 useful; load 5.5/s needs
    # 3 replicas (ceil 2.75): nothing over-provisioned.
    assert [w[f"{p}_gpu_s"][1] for p in PARTS] == pytest.approx([480.0, 120.0, 0.0, 0.0, 0.0])
    assert w["replicas_needed"][1] == 3
    # A faster-than-reference window counts as useful at most its busy time.
    fast = waste_of(_summary(busy=[100.0], redo=[0.0], out=[99_999], arrivals=[600]), sc, ref)["windows"]
    assert fast["useful_gpu_s"][0] == pytest.approx(200.0) and fast["under_filled_gpu_s"][0] == 0.0


def test_a_reference_must_be_positive():
    with pytest.raises(ValueError, match=r"reference rate_per_s = 0.0, output_tokens_per_s = 5: both must be > 0"):
        WasteReference(rate_per_s=0.0, output_tokens_per_s=5, source="x")
