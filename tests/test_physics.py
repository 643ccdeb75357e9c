"""Physical limits and conservation laws that every run must respect."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from calibration import BatchShape, RooflineProfileSpec, build_profile
from sim import default_scenario, load_scenario, simulate


def _variant(rate: float, duration: float = 120.0, **engine) -> dict:
    d = default_scenario().to_dict()
    d["engine"] = {**d["engine"], **engine}
    d["workload"] = {**d["workload"], "arrival": {"process": "poisson", "rate_per_s": rate}, "duration_s": duration}
    d["measurement"] = {"warmup_s": 20.0}
    return d


@settings(max_examples=200, deadline=None)
@given(tp=st.sampled_from([1, 2, 4, 8]), batch=st.integers(1, 512), ctx=st.integers(1, 131072),
       hbm=st.sampled_from([None, 1.0, 3.35, 6.7]))
def test_decode_step_never_faster_than_reading_weights_once(tp, batch, ctx, hbm):
    prof = build_profile(RooflineProfileSpec(hbm_tb_s=hbm), model="llama-3.1-8b", hardware="h100-sxm",
                         quantization="bf16", tp=tp)
    empty = np.empty(0, np.int64)
    cost = prof.step(BatchShape(empty, empty, np.full(batch, ctx)))
    floor = prof.weight_bytes_per_gpu / (prof.gpu.hbm_tb_s * 1e12)
    assert cost.seconds >= floor
    # Neither FLOP/s nor bytes/s may exceed the datasheet peaks.
    assert cost.flops / cost.seconds <= prof.gpu.bf16_tflops * 1e12
    assert cost.bytes / cost.seconds <= prof.gpu.hbm_tb_s * 1e12


@settings(max_examples=100, deadline=None)
@given(chunk=st.integers(1, 16384), start=st.integers(0, 65536))
def test_prefill_step_never_faster_than_peak_flops(chunk, start):
    prof = build_profile(RooflineProfileSpec(), model="llama-3.1-8b", hardware="h100-sxm", quantization="bf16", tp=1)
    empty = np.empty(0, np.int64)
    cost = prof.step(BatchShape(np.array([chunk]), np.array([start]), empty))
    assert cost.seconds >= cost.flops / (prof.gpu.bf16_tflops * 1e12)
    assert cost.seconds >= prof.weight_bytes_per_gpu / (prof.gpu.hbm_tb_s * 1e12)


def test_default_run_respects_hbm_floor_on_every_iteration():
    res = simulate(load_scenario(_variant(12.0, duration=60.0)))
    # The default is priced by a shipped measured-efficiency profile; its weights, FLOPs and bytes
    # are the roofline model's (``base``).
    prof = default_scenario().build_profile()
    prof = getattr(prof, "base", prof)
    floor = prof.weight_bytes_per_gpu / (prof.gpu.hbm_tb_s * 1e12)
    dur = res.iterations.column("duration_s").to_numpy()
    assert dur.size > 1000 and dur.min() >= floor
    mbu = res.iterations.column("bytes").to_numpy() / dur / (prof.gpu.hbm_tb_s * 1e12)
    mfu = res.iterations.column("flops").to_numpy() / dur / (prof.gpu.bf16_tflops * 1e12)
    assert mbu.max() <= 1.0 and mfu.max() <= 1.0


def test_doubling_hbm_bandwidth_speeds_up_decode_bound_serving():
    base = _variant(8.0, duration=60.0)
    fast = {**base, "profile": {"kind": "roofline", "hbm_tb_s": 6.7}}
    a = simulate(load_scenario(base)).summary["latency_s"]["tpot"]["p50"]
    b = simulate(load_scenario(fast)).summary["latency_s"]["tpot"]["p50"]
    # Decode is bandwidth-bound: twice the bandwidth must cut TPOT substantially but less than 2x
    # (the fixed overhead and compute-bound prefill chunks do not scale).
    assert 0.5 < b / a < 0.8


@pytest.mark.slow
def test_continuous_batching_beats_static_at_the_same_p99_ttft():
    target = 6.0  # s: the best p99 TTFT static batching manages on this workload is about 5.9 s
    def best(policy: str, rates: list[float]) -> float:
        feasible = []
        for rate in rates:
            s = simulate(load_scenario(_variant(rate, scheduler=policy))).summary
            if s["latency_s"]["ttft"]["p99"] <= target:
                feasible.append(s["throughput"]["output_tokens_per_s"])
        assert feasible, f"{policy}: no rate in {rates} meets p99 TTFT <= {target} s"
        return max(feasible)
    static = best("static", [0.5, 1.0, 2.0])
    continuous = best("continuous", [5.0, 10.0, 20.0])
    # Measured: static about 220 output tokens/s, continuous about 4,250.
    assert continuous > 5 * static, (continuous, static)


LITTLE = {
    "default": _variant(12.0, duration=300.0),
    "prefill_first": _variant(10.0, duration=300.0, scheduler="prefill_first", max_num_batched_tokens=24576),
    "three_replicas_round_robin": {**_variant(30.0, duration=200.0), "replicas": 3,
                                   "router": {"policy": "round_robin"}},
    "preempting": {**_variant(6.0, duration=900.0),
                   "profile": {"kind": "explicit", "fixed_s": 0.01, "per_token_s": 2e-5, "kv_capacity_tokens": 20000}},
}


@pytest.mark.parametrize("name", sorted(LITTLE))
def test_littles_law_holds_on_the_measurement_window(name):
    s = simulate(load_scenario(LITTLE[name])).summary
    lam_w = s["throughput"]["requests_per_s"] * s["latency_s"]["e2e"]["mean"]
    assert s["requests"]["measured"] > 1000
    if name == "preempting":
        assert s["requests"]["preemptions"] > 0
    assert abs(s["mean_in_system"] / lam_w - 1) < 0.02, (s["mean_in_system"], lam_w)
