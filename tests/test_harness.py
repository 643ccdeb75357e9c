"""The calibration harness: the decoder against a plain reference, the KV-cache paths against
each other, quantized schemes against fp32 within quantization error, timing sanity, the grid
planner, and one budgeted measurement of Llama-3.2-1B on this machine's CPU.

Skipped as a whole where torch is not installed (it is the optional ``calibrate`` extra).
CUDA-only checks are skipped where no GPU is visible.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pyarrow as pa
import pytest

torch = pytest.importorskip("torch")

from calibration.catalog import ModelArch  # noqa: E402
from calibration.fit import MIN_STEPS, fit_step_model  # noqa: E402
from calibration.harness.grid import (  # noqa: E402
    Axes,
    CostModel,
    Shape,
    default_axes,
    layer_counts,
    layer_differences,
    plan,
    priority_order,
    probe_shapes,
    serving_axes,
)
from calibration.harness.model import (  # noqa: E402
    RMS_EPS,
    ROPE_THETA,
    HarnessError,
    build_model,
    chunk_attention,
    make_linear,
    quantize_int4_groups,
    resolve_scheme,
)
from calibration.harness.clock import CPU_CLOCK, StepClock, step_clock  # noqa: E402
from calibration.harness.run import MEASUREMENT_SCHEMA, measure  # noqa: E402
from calibration.harness.timing import Timing, time_decode, time_prefill  # noqa: E402

CUDA = torch.cuda.is_available()

# Small enough to run in milliseconds, shaped like the real thing: GQA (4 query heads per KV
# head), widths that are multiples of 128 (the int4 layout's group), untied head.
TINY = ModelArch(key="tiny", name="Tiny", layers=4, hidden=256, heads=8, kv_heads=2, head_dim=32, intermediate=512,
                 vocab=512, max_context=4096, source="tests")
# Attention-heavy: wide KV (8 KV heads of 64), narrow linears, for timing checks that must hold
# on a busy two-core machine.
WIDE_KV = ModelArch(key="wide-kv", name="Wide KV", layers=2, hidden=512, heads=8, kv_heads=8, head_dim=64,
                    intermediate=1024, vocab=1024, max_context=8192, source="tests")


def _tokens(batch: int, length: int, vocab: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def _logits(model, tokens: torch.Tensor, chunks: list[int] | None = None) -> torch.Tensor:
    """Last-position logits of ``tokens`` run as consecutive chunks (one shot by default)."""
    b, n = tokens.shape
    cache = model.new_cache(b * n).reshape(b, n)
    chunks = chunks or [n]
    assert sum(chunks) == n
    start = 0
    with torch.inference_mode():
        for c in chunks:
            out = model(tokens[:, start:start + c], start, cache)
            start += c
    return out.float()


def _reference_logits(model, tokens: torch.Tensor) -> torch.Tensor:
    """A plain float64 forward over the whole sequence, written independently of the model:
    per-head loops, explicit repetition of KV heads, an explicit causal mask, rotary by
    complex multiplication of adjacent (first-half, second-half) pairs."""
    arch = model.arch
    nh, nkv, d, h = arch.heads, arch.kv_heads, arch.head_dim, arch.hidden
    b, n = tokens.shape
    f64 = torch.float64

    def rms(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + RMS_EPS) * w.to(f64)

    pos = torch.arange(n, dtype=f64)
    inv = ROPE_THETA ** (-torch.arange(0, d, 2, dtype=f64) / d)
    rot = torch.polar(torch.ones(n, d // 2, dtype=f64), torch.outer(pos, inv))  # (n, d/2) complex

    def rope(x: torch.Tensor) -> torch.Tensor:  # (b, n, heads, d)
        z = torch.complex(x[..., : d // 2], x[..., d // 2:]) * rot[None, :, None, :]
        return torch.cat((z.real, z.imag), dim=-1)

    x = model.embed.to(f64)[tokens]
    mask = torch.full((n, n), float("-inf"), dtype=f64).triu(1)
    for layer in model.layers:
        wqkv = layer.qkv.weight.to(f64)
        wq, wk, wv = wqkv[: nh * d], wqkv[nh * d: (nh + nkv) * d], wqkv[(nh + nkv) * d:]
        a = rms(x, layer.input_norm)
        q = rope((a @ wq.T).view(b, n, nh, d))
        k = rope((a @ wk.T).view(b, n, nkv, d))
        v = (a @ wv.T).view(b, n, nkv, d)
        heads = []
        for i in range(nh):
            j = i // (nh // nkv)
            s = q[:, :, i] @ k[:, :, j].transpose(1, 2) / math.sqrt(d) + mask
            heads.append(torch.softmax(s, dim=-1) @ v[:, :, j])
        x = x + torch.cat(heads, dim=-1) @ layer.o.weight.to(f64).T
        a = rms(x, layer.post_norm)
        gu = a @ layer.gate_up.weight.to(f64).T
        gate, up = gu[..., : arch.intermediate], gu[..., arch.intermediate:]
        x = x + (torch.nn.functional.silu(gate) * up) @ layer.down.weight.to(f64).T
    last = rms(x[:, -1], model.norm)
    head = model.embed if model.head is None else model.head.weight
    return last @ head.to(f64).T


# -- the model -----------------------------------------------------------------------------------------

def test_fp32_forward_matches_a_plain_reference():
    model = build_model(TINY, "fp32", layers=2, seed=1)
    tokens = _tokens(2, 20, TINY.vocab)
    got = _logits(model, tokens).double()
    want = _reference_logits(model, tokens)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4), float((got - want).abs().max())


def test_prefill_then_decode_equals_a_full_forward_fp32():
    model = build_model(TINY, "fp32", layers=2, seed=2)
    tokens = _tokens(3, 24, TINY.vocab, seed=1)
    b, n = tokens.shape
    cache = model.new_cache(b * n).reshape(b, n)
    with torch.inference_mode():
        model(tokens[:, :20], 0, cache)
        for t in range(20, n):  # four decode steps, each against the full forward of its prefix
            step = model(tokens[:, t:t + 1], t, cache).float()
            full = _logits(model, tokens[:, : t + 1])
            assert torch.allclose(step, full, rtol=1e-5, atol=1e-5), (t, float((step - full).abs().max()))


def test_chunked_prefill_gives_the_logits_and_cache_of_one_shot_fp32():
    model = build_model(TINY, "fp32", layers=3, seed=3)
    tokens = _tokens(2, 40, TINY.vocab, seed=2)
    one = _logits(model, tokens)
    chunked = _logits(model, tokens, chunks=[7, 16, 1, 16])
    assert torch.allclose(one, chunked, rtol=1e-5, atol=1e-5), float((one - chunked).abs().max())
    # The caches agree too, position by position.
    c1, c2 = model.new_cache(80).reshape(2, 40), model.new_cache(80).reshape(2, 40)
    with torch.inference_mode():
        model(tokens, 0, c1)
        for s, e in ((0, 13), (13, 40)):
            model(tokens[:, s:e], s, c2)
    for a, b in zip(c1.k + c1.v, c2.k + c2.v):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("heads, kv_heads, chunk, start", [(8, 2, 33, 70), (4, 4, 16, 1), (8, 2, 1, 9), (6, 3, 5, 0)])
def test_chunk_attention_equals_one_masked_attention(dtype, tol, heads, kv_heads, chunk, start):
    # The CPU merges an unmasked pass over the cached prefix and a causal pass over the chunk by
    # log-sum-exp; the reference is a float64 softmax over the bottom-right causal mask.
    g = torch.Generator().manual_seed(heads * 100 + chunk + start)
    q = torch.randn(2, heads, chunk, 16, generator=g).to(dtype)
    k = torch.randn(2, kv_heads, start + chunk, 16, generator=g).to(dtype)
    v = torch.randn(2, kv_heads, start + chunk, 16, generator=g).to(dtype)
    rep = heads // kv_heads
    kk, vv = (t.double().repeat_interleave(rep, dim=1) for t in (k, v))
    scores = q.double() @ kk.transpose(-1, -2) / 4.0
    allowed = torch.ones(chunk, start + chunk, dtype=torch.bool).tril(diagonal=start)
    ref = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ vv
    got = chunk_attention(q, k, v, start)
    assert got.dtype == dtype and got.shape == q.shape
    assert torch.allclose(got.double(), ref, rtol=tol, atol=tol), float((got.double() - ref).abs().max())


def test_fewer_layers_share_the_first_layers_of_more():
    small, big = build_model(TINY, "fp32", layers=2, seed=4), build_model(TINY, "fp32", layers=4, seed=4)
    tokens = _tokens(1, 10, TINY.vocab)
    cache = big.new_cache(10)
    with torch.inference_mode():
        got = big(tokens, 0, cache, layers=2).float()
    assert torch.equal(got, _logits(small, tokens))


@pytest.mark.parametrize(("quant", "rel", "corr"), [("bf16", 0.03, 0.999), ("int8", 0.10, 0.99),
                                                    ("int4-awq", 0.20, 0.98)])
def test_quantized_schemes_stay_within_quantization_error_of_fp32(quant, rel, corr):
    """Same seed, same fp32 weights underneath: the quantized model's logits are the fp32
    model's up to the scheme's rounding (measured: bf16 0.7%, int8 4%, int4 10% relative)."""
    tokens = _tokens(2, 24, TINY.vocab, seed=5)
    ref = _logits(build_model(TINY, "fp32", layers=2, seed=6), tokens)
    got = _logits(build_model(TINY, quant, layers=2, seed=6), tokens)
    err = float((got - ref).norm() / ref.norm())
    r = float(np.corrcoef(got.flatten().numpy(), ref.flatten().numpy())[0, 1])
    assert err < rel and r > corr, (err, r)


def _kernel_or_skip(kernel: str, weight: torch.Tensor, dtype: torch.dtype, x: torch.Tensor) -> torch.Tensor:
    try:
        return make_linear(weight, None, kernel, dtype)(x).float()
    except (RuntimeError, NotImplementedError) as e:  # this CPU build lacks the op
        pytest.skip(f"{kernel} on CPU: {e}")


@pytest.mark.parametrize(("kernel", "dtype", "rel"), [("int8-int-mm", torch.bfloat16, 0.03),
                                                       ("fp8-scaled-mm", torch.bfloat16, 0.08),
                                                       ("int8-dynamic", torch.float32, 0.05)])
def test_w8a8_linears_match_a_dense_matmul(kernel, dtype, rel):
    """The CUDA paths' modules (``torch._int_mm``, ``torch._scaled_mm``) also run on CPU in
    torch 2.13: their scales and layouts are checked here even where no GPU is present."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(384, 256, generator=gen) / 16
    x = torch.randn(20, 256, generator=gen)
    ref = x @ w.T
    got = _kernel_or_skip(kernel, w, dtype, x.to(dtype))
    assert float((got - ref).norm() / ref.norm()) < rel


def test_int4_linear_is_exact_on_its_dequantized_weights():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(256, 384, generator=gen) / 16
    x = torch.randn(5, 384, generator=gen)
    codes, scale, zero = quantize_int4_groups(w)
    assert codes.min() >= 0 and codes.max() <= 15
    deq = ((codes.float() - 8).view(256, 3, 128) * scale[..., None] + zero[..., None]).view(256, 384)
    assert float((deq - w).norm() / w.norm()) < 0.15  # 4-bit rounding of Gaussian weights
    got = _kernel_or_skip("int4-tinygemm", w, torch.bfloat16, x.bfloat16())
    ref = x @ deq.T
    assert float((got - ref).norm() / ref.norm()) < 0.01  # only bf16 rounding left


def test_schemes_resolve_per_device_and_refuse_what_has_no_kernel():
    assert resolve_scheme("int8", "cpu").kernel == "int8-dynamic"
    assert resolve_scheme("int4", "cpu").quant == "int4-awq"
    fp16 = resolve_scheme("fp16", "cpu")
    assert fp16.act_dtype == torch.bfloat16 and "bf16" in (fp16.note or "")
    with pytest.raises(HarnessError, match=r"quant = 'fp8' on cpu: .*no fp8 matmul"):
        resolve_scheme("fp8", "cpu")
    with pytest.raises(HarnessError, match=r"quant = 'int3': unknown scheme"):
        resolve_scheme("int3", "cpu")
    with pytest.raises(HarnessError, match=r"device = 'tpu'"):
        resolve_scheme("bf16", "tpu")
    if not CUDA:
        with pytest.raises(HarnessError, match=r"device = 'cuda': torch.cuda.is_available\(\) is False"):
            resolve_scheme("bf16", "cuda")


def test_kv_cache_views_share_one_allocation_and_refuse_overflow():
    model = build_model(TINY, "fp32", layers=1, seed=0)
    cache = model.new_cache(100)
    assert cache.reshape(4, 25).k[0].shape == (4, TINY.kv_heads, 25, TINY.head_dim)
    assert cache.k[0].untyped_storage().data_ptr() == cache.reshape(1, 100).k[0].untyped_storage().data_ptr()
    with pytest.raises(HarnessError, match="101 tokens exceed the capacity of 100"):
        cache.reshape(1, 101)
    with pytest.raises(HarnessError, match="cannot hold 1 sequences at positions 99..100"):
        with torch.inference_mode():
            model(_tokens(1, 2, TINY.vocab), 99, cache)


def test_a_moe_model_and_impossible_layer_counts_are_refused_in_one_line():
    with pytest.raises(HarnessError, match="mixture of experts"):
        build_model("mixtral-8x7b", "fp32", layers=1)
    with pytest.raises(HarnessError, match="layers = 5: must be an integer from 1 to the 4 layers of tiny"):
        build_model(TINY, "fp32", layers=5)
    with pytest.raises(HarnessError, match="budget_s = 0"):
        measure(TINY, "fp32", budget_s=0)


# -- timing ---------------------------------------------------------------------------------------------

def test_timing_summary_orders_its_percentiles():
    t = Timing.from_samples([0.3, 0.1, 0.2, 0.5, 0.4])
    assert (t.p10_s, t.median_s, t.p90_s, t.repeats) == (pytest.approx(0.14), 0.3, pytest.approx(0.46), 5)
    with pytest.raises(HarnessError, match="at least one run"):
        Timing.from_samples([])


def test_the_cpu_step_clock_is_this_threads_cpu_time_on_one_thread_and_restores_the_threads():
    prev = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with step_clock(torch.device("cpu")) as clock:
            assert clock.name == CPU_CLOCK and torch.get_num_threads() == 1
            t0 = clock.now()
            time.sleep(0.05)  # time off the core (asleep, or waiting while another process runs) is not counted
            asleep = clock.stamp() - t0
        assert torch.get_num_threads() == 3
        with pytest.raises(KeyError), step_clock(torch.device("cpu")):
            assert torch.get_num_threads() == 1
            raise KeyError("a failing step")
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(prev)
    assert 0 <= asleep < 0.01, asleep


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="this platform cannot pin a thread to a core")
def test_the_cpu_step_clock_pins_the_thread_to_one_core_and_restores_its_cores():
    # A calibration and a real run a minute later must run on the same core: the scheduler moving
    # the thread between a core it shares and one it has alone changed its steps' CPU time 10-20%.
    before = os.sched_getaffinity(0)
    with step_clock(torch.device("cpu")):
        assert os.sched_getaffinity(0) == {max(before)}
        with step_clock(torch.device("cpu")):  # nested (time_step inside serve): the same core
            assert os.sched_getaffinity(0) == {max(before)}
        assert os.sched_getaffinity(0) == {max(before)}
    assert os.sched_getaffinity(0) == before
    with pytest.raises(KeyError), step_clock(torch.device("cpu")):
        raise KeyError("a failing step")
    assert os.sched_getaffinity(0) == before


def test_step_times_are_positive_and_grow_with_work():
    model = build_model(WIDE_KV, "fp32", seed=0)
    cache = model.new_cache(32 * 2049)
    d1 = time_decode(model, cache, 1, 2048, repeats=5)
    d32 = time_decode(model, cache, 32, 2048, repeats=5)
    p32 = time_prefill(model, cache, 32, 0, repeats=5)
    p512 = time_prefill(model, cache, 512, 0, repeats=5)
    for t in (d1, d32, p32, p512):
        assert t.repeats == 5 and len(t.samples_s) == 5
        assert 0 < t.p10_s <= t.median_s <= t.p90_s
    # 32x the KV read and 32x the tokens; 16x the tokens and ~16x the attention work.
    assert d32.median_s > d1.median_s
    assert p512.median_s > p32.median_s


# -- the grid -------------------------------------------------------------------------------------------

def test_layer_counts_double_where_the_model_allows():
    assert layer_counts(2, 16) == (2, 4)
    assert layer_counts(16, 16) == (8, 16)
    assert layer_counts(1, 1) == (1,)


def _synthetic_cost() -> CostModel:
    """1 ms fixed, 0.1 ms a token, 1e-8 s an attention pair at 2 layers; decode 1 ms + 0.05 ms a
    sequence + 2e-8 s a cached token."""
    return CostModel(layers=2, prefill=(1e-3, 1e-4, 1e-8), decode=(1e-3, 5e-5, 2e-8))


def test_cost_model_fit_recovers_known_coefficients():
    truth = _synthetic_cost()
    axes = default_axes(layers=2, full_layers=16)
    shapes = probe_shapes(axes) + [Shape.prefill(512, 512), Shape.decode(64, 4096)]
    fitted = CostModel.fit(2, [(s, truth.step_s(s)) for s in shapes])
    for s in shapes:
        assert fitted.step_s(s) == pytest.approx(truth.step_s(s), rel=1e-6)
    assert fitted.step_s(Shape.decode(1, 64), layers=4) == pytest.approx(2 * truth.step_s(Shape.decode(1, 64)))


def test_priority_order_starts_at_the_corners_and_alternates_phases():
    axes = default_axes(layers=2, full_layers=16)
    shapes = axes.shapes("prefill") + axes.shapes("decode")
    order = priority_order(axes, shapes)
    assert sorted(order) == sorted(shapes)
    assert order[:4] == [Shape.prefill(16, 0), Shape.decode(1, 64), Shape.prefill(2048, 4096), Shape.decode(64, 4096)]
    assert [s.phase for s in order[:8]] == ["prefill", "decode"] * 4


def test_plan_fits_the_budget_and_keeps_both_phases_ends_and_layer_counts():
    axes = default_axes(layers=2, full_layers=16)
    cost = _synthetic_cost()
    for budget in (2.0, 30.0, 1e4):
        p = plan(axes, cost, budget, kv_alloc_s_per_token=1e-7)
        assert p.est_s <= budget
        assert p.phases == {"prefill", "decode"} and p.layer_counts == {2, 4}
        # Every shape comes as a pair of layer counts, one after the other.
        assert [pt.layers for pt in p.points] == [2, 4] * (len(p) // 2)
        assert all(pt.repeats >= 3 for pt in p.points)
        shapes = [pt.shape for pt in p.points]
        assert shapes[0] == Shape.prefill(16, 0) and shapes[2] == Shape.decode(1, 64)
        assert p.kv_tokens == max(s.kv_tokens for s in shapes)
    assert len(plan(axes, cost, 1e4)) == 2 * (len(axes.shapes("prefill")) + len(axes.shapes("decode")))
    # A memory limit removes the decode shapes whose KV does not fit.
    p = plan(axes, cost, 1e4, max_kv_tokens=10_000)
    assert max(pt.shape.kv_tokens for pt in p.points) <= 10_000


def test_serving_axes_span_the_shapes_a_workload_runs():
    # Each axis: its two ends and the power of two nearest their geometric mean.
    a = serving_axes(prompt_tokens=(16, 128), output_tokens=(8, 64), max_num_seqs=8, max_num_batched_tokens=512,
                     layers=2, full_layers=16)
    assert (a.chunks, a.starts, a.batches, a.contexts, a.layer_counts) == (
        (16, 32, 128), (0, 64), (1, 2, 8), (16, 64, 191), (2, 4))
    # Four prompts of at most 64 tokens always fit a budget of 512 whole: no chunk at an offset.
    b = serving_axes(prompt_tokens=(16, 64), output_tokens=(4, 12), max_num_seqs=4, max_num_batched_tokens=512,
                     layers=1, full_layers=16)
    assert (b.chunks, b.starts, b.batches, b.contexts, b.layer_counts) == (
        (16, 32, 64), (0,), (1, 2, 4), (16, 32, 75), (1, 2))
    # Long prompts: chunks capped by the token budget.
    c = serving_axes(prompt_tokens=(100, 3000), output_tokens=(1, 100), max_num_seqs=2, max_num_batched_tokens=512,
                     layers=1, full_layers=16)
    assert c.chunks == (100, 256, 512) and c.starts == (0, 1500) and c.batches == (1, 2)
    with pytest.raises(ValueError, match=r"prompt_tokens = \(0, 5\).*need ranges of lengths >= 1"):
        serving_axes(prompt_tokens=(0, 5), output_tokens=(1, 2), max_num_seqs=1, max_num_batched_tokens=8, layers=1,
                     full_layers=2)


def test_plan_rejects_a_nonsense_budget():
    with pytest.raises(ValueError, match="budget_s = -1"):
        plan(default_axes(layers=2, full_layers=16), _synthetic_cost(), -1)
    with pytest.raises(ValueError, match="chunks = \\(\\)"):
        Axes(chunks=(), starts=(0,), batches=(1,), contexts=(64,), layer_counts=(1,))


def test_layer_differences_separate_per_layer_from_fixed_time():
    rows = {"phase": [], "layers": [], "sequences": [], "chunk": [], "start": [], "context": [], "seconds": []}
    cases = (("prefill", 1, 64, 0, 0.010, 0.004), ("decode", 8, 0, 512, 0.02, 0.001))
    for phase, seqs, chunk, ctx, fixed, per in cases:
        for n in (2, 4):
            for k, v in (("phase", phase), ("layers", n), ("sequences", seqs), ("chunk", chunk), ("start", 0),
                         ("context", ctx), ("seconds", fixed + n * per)):
                rows[k].append(v)
    rows["layers"].append(2)  # a shape at one layer count only is left out
    for k, v in (("phase", "decode"), ("sequences", 1), ("chunk", 0), ("start", 0), ("context", 64),
                 ("seconds", 0.5)):
        rows[k].append(v)
    diff = layer_differences(pa.table(rows))
    assert diff.num_rows == 2
    assert diff.column("per_layer_s").to_pylist() == pytest.approx([0.004, 0.001])
    assert diff.column("fixed_s").to_pylist() == pytest.approx([0.010, 0.02])


# -- one measurement ------------------------------------------------------------------------------------

def test_measure_llama_3_2_1b_int8_within_budget():
    calls: list[tuple[int, int, float]] = []
    threads = torch.get_num_threads()
    m = measure("llama-3.2-1b", "int8", layers=2, budget_s=20, progress=lambda d, n, eta: calls.append((d, n, eta)))
    # The budget is charged on the harness's own clock (thread CPU time on one intra-op thread),
    # which a busy machine cannot lengthen: it stopped about when that clock reached the budget
    # (the plan leaves the last unit's estimate of slack, and the smallest shape of each phase
    # runs whatever the clock says). Wall time is not asserted: on a shared machine it is longer.
    meta = m.meta
    assert meta["clock"] == CPU_CLOCK and meta["threads"] == 1 and torch.get_num_threads() == threads
    assert meta["elapsed_s"] <= 20 * 1.25, meta["elapsed_s"]
    assert meta["grid_size"] < meta["grid_candidates"]  # 20 s does not buy the whole grid: the budget decided
    t = m.table
    assert t.schema == MEASUREMENT_SCHEMA and t.num_rows >= 4
    assert set(t.column("phase").to_pylist()) == {"prefill", "decode"}
    assert set(t.column("layers").to_pylist()) == {2, 4}
    for r in t.to_pylist():
        assert 0 < r["p10_s"] <= r["seconds"] <= r["p90_s"] and r["repeats"] >= 1
        if r["phase"] == "prefill":
            assert r["context"] == 0 and r["tokens"] == r["chunk"] > 0
        else:
            assert r["chunk"] == r["start"] == 0 and r["tokens"] == r["sequences"]
    assert m.layer_differences().num_rows == t.num_rows // 2
    assert meta["model"] == "llama-3.2-1b" and meta["quant"] == "int8" and meta["layers"] == [2, 4]
    assert meta["full_layers"] == 16 and meta["budget_s"] == 20
    for key in ("device", "torch_version", "threads", "date_utc", "kernel", "scheme"):
        assert meta[key], key
    # Progress counts both passes over the grid (the second, reversed, pools repeats against drift;
    # skipped points have no second pass, so the count jumps over them) and ends at the total.
    total = 2 * meta["grid_size"]
    done = [c[0] for c in calls]
    assert all(c[1] == total for c in calls) and done[-1] == total and (np.diff(done) >= 1).all()
    assert len(calls) == meta["grid_size"] + t.num_rows
    assert all(c[2] >= 0 for c in calls) and calls[-1][2] == 0


def _ticks(tick: float) -> StepClock:
    """A clock that advances ``tick`` seconds each time it is read: every timed step then costs
    one tick whatever its shape, so what a budget buys is fixed in advance."""
    reads = iter(range(1 << 62))
    return StepClock("ticks", lambda: next(reads) * tick)


def test_measure_charges_its_budget_on_its_own_clock():
    # On a clock where a step costs 10 ms, the harness plans and skips by that clock alone (the
    # model's real speed, and the machine's load, do not enter): a budget buys a fixed set of
    # points, the same every run; a larger budget buys more; and the run ends within its budget.
    axes = Axes(chunks=(16, 32, 64, 128), starts=(0, 64), batches=(1, 2, 4, 8), contexts=(64, 256),
                layer_counts=(1, 2))
    small, again, large = (measure(TINY, "fp32", budget_s=b, clock=_ticks(0.01), axes=axes) for b in (1, 1, 2))
    shape_columns = [c for c in MEASUREMENT_SCHEMA.names if c not in ("seconds", "p10_s", "p90_s")]
    assert small.table.select(shape_columns).equals(again.table.select(shape_columns))
    for m, budget in ((small, 1), (large, 2)):
        assert m.meta["clock"] == "ticks" and m.meta["elapsed_s"] <= budget, (budget, m.meta["elapsed_s"])
        assert m.table.column("seconds").to_numpy() == pytest.approx(0.01)
    assert 4 <= small.table.num_rows < large.table.num_rows


def _slowing(tick: float, after: int, factor: float) -> StepClock:
    """A clock like :func:`_ticks` whose tick grows ``factor``-fold after ``after`` reads: a
    machine that turns slower once the probe has fixed the cost model (another process starts)."""
    reads = iter(range(1 << 62))
    now = [0.0]

    def read() -> float:
        now[0] += tick * (factor if next(reads) > after else 1.0)
        return now[0]

    return StepClock("slowing", read)


def test_measure_keeps_the_points_a_fit_needs_when_the_machine_slows_down():
    # Found by CI: a calibration whose machine ran slower than its probe measured skipped shapes
    # until 18 steps were left, and the fit (20 at least) refused them. With min_points the first
    # units in priority order run whatever the clock says; without it the same run keeps fewer.
    axes = Axes(chunks=(16, 32, 64, 128), starts=(0, 64), batches=(1, 2, 4, 8), contexts=(64, 256),
                layer_counts=(1, 2))
    bare = measure(TINY, "fp32", budget_s=1, clock=_slowing(0.01, 60, 4.0), axes=axes)
    kept = measure(TINY, "fp32", budget_s=1, clock=_slowing(0.01, 60, 4.0), axes=axes, min_points=MIN_STEPS)
    assert bare.table.num_rows < MIN_STEPS <= kept.table.num_rows
    assert set(kept.table.column("phase").to_pylist()) == {"prefill", "decode"}
    assert sorted(set(kept.table.column("layers").to_pylist())) == [1, 2]
    fit = fit_step_model(kept.table)
    assert fit.train_rows + fit.heldout_rows == kept.table.num_rows


# -- CUDA -----------------------------------------------------------------------------------------------

@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize(("quant", "rel"), [("bf16", 0.03), ("fp16", 0.03), ("int8", 0.10), ("fp8", 0.15),
                                            ("int4-awq", 0.20)])
def test_cuda_schemes_stay_within_quantization_error_of_cpu_fp32(quant, rel):
    try:
        model = build_model(TINY, quant, "cuda", layers=2, seed=7)
    except HarnessError as e:  # e.g. fp8 on a GPU below compute capability 8.9
        pytest.skip(str(e))
    tokens = _tokens(2, 24, TINY.vocab, seed=8)
    ref = _logits(build_model(TINY, "fp32", "cpu", layers=2, seed=7), tokens)
    got = _logits(model, tokens.cuda()).cpu()
    assert float((got - ref).norm() / ref.norm()) < rel


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_chunked_prefill_and_decode_agree_with_one_shot_bf16():
    model = build_model(TINY, "bf16", "cuda", layers=2, seed=9)
    tokens = _tokens(2, 64, TINY.vocab, seed=9).cuda()
    one = _logits(model, tokens)
    chunked = _logits(model, tokens, chunks=[16, 31, 16, 1])
    assert float((one - chunked).norm() / one.norm()) < 0.02


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_step_timings_are_sane():
    model = build_model("llama-3.2-1b", "bf16", "cuda", layers=2, seed=0)
    cache = model.new_cache(64 * 4097)
    d1, d64 = time_decode(model, cache, 1, 4096, repeats=5), time_decode(model, cache, 64, 4096, repeats=5)
    p32, p2048 = time_prefill(model, cache, 32, repeats=5), time_prefill(model, cache, 2048, repeats=5)
    for t in (d1, d64, p32, p2048):
        assert 0 < t.p10_s <= t.median_s <= t.p90_s
    assert d64.median_s > d1.median_s and p2048.median_s > p32.median_s
