"""Physics of the roofline step-time and memory model (``calibration/roofline.py``).

Three kinds of checks, each stated against figures taken from the catalog, not from the profile
under test:

- *physical limits*: no step is faster than the datasheet peaks allow (bandwidth for the weights
  a decode must read, FLOP/s for the matmuls a prefill must do), and a step's reported FLOPs and
  bytes are consistent with its time;
- *scaling*: how time, FLOPs and memory move with batch, context, chunk length, precision, TP
  degree, mixture of experts and KV-cache precision;
- *memory*: what fits, what does not, and how the scenario loader refuses what does not.

The tests at the end of the file pinned two bugs found while writing them (all-reduce bandwidth
dropped at zero latency; attention priced at the quantized matmul peak), fixed since.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from calibration import GPUS, MODELS, QUANTIZATIONS, BatchShape, ReplicaSpec, RooflineProfileSpec, build_profile
from calibration.catalog import ModelArch, resolve_precision
from calibration.roofline import RooflineProfile
from sim import ScenarioError, default_scenario, load_scenario

DENSE = ["llama-3.1-8b", "llama-3.1-70b", "llama-3.2-1b", "llama-3.2-3b", "qwen2.5-7b", "mistral-7b"]
MOE = "mixtral-8x7b"
# Efficiencies of 1 and no fixed overhead: the profile at its most optimistic, so that a bound
# that holds here holds for every efficiency a scenario may choose.
IDEAL = (("compute_efficiency", 1.0), ("memory_efficiency", 1.0), ("overhead_s", 0.0))
_NONE = np.empty(0, np.int64)


@lru_cache(maxsize=None)
def _int4() -> str:
    """The catalog's 4-bit weight-only scheme, whatever its key (``int4-awq`` today)."""
    keys = [k for k, q in QUANTIZATIONS.items() if k.startswith("int4") and q.weight_only]
    assert keys, f"no int4 weight-only scheme in {list(QUANTIZATIONS)}"
    return keys[0]


def _quant(name: str) -> str:
    return _int4() if name == "int4" else name


@lru_cache(maxsize=None)
def _profile(model: str = "llama-3.1-8b", hardware: str = "h100-sxm", quantization: str = "bf16", tp: int = 1,
             kv_cache_dtype: str = "auto", spec: tuple[tuple[str, float], ...] = ()) -> RooflineProfile:
    """A roofline profile built the way scenarios build it (cached: hypothesis asks many times)."""
    prof = build_profile(RooflineProfileSpec(**dict(spec)), model=model, hardware=hardware,
                         quantization=_quant(quantization), tp=tp, kv_cache_dtype=kv_cache_dtype)
    assert isinstance(prof, RooflineProfile)
    return prof


def _allowed_tp(arch: ModelArch) -> list[int]:
    """TP degrees a scenario accepts for this model: those dividing its heads and KV heads."""
    return [t for t in (1, 2, 4, 8) if arch.heads % t == 0 and arch.kv_heads % t == 0]


def _decode(batch: int, ctx: int) -> BatchShape:
    return BatchShape(_NONE, _NONE, np.full(batch, ctx, np.int64))


def _prefill(chunk: int, start: int = 0) -> BatchShape:
    return BatchShape(np.array([chunk], np.int64), np.array([start], np.int64), _NONE)


def _matmul_peak(hardware: str, quantization: str) -> float:
    """Dense peak FLOP/s of the precision the scheme's matmuls run in on this GPU (catalog)."""
    gpu = GPUS[hardware]
    return gpu.tflops[resolve_precision(QUANTIZATIONS[_quant(quantization)], gpu).compute] * 1e12


def _replica(tp: int, fraction: float = 0.9, batched: int = 8192) -> ReplicaSpec:
    return ReplicaSpec(tp=tp, gpu_memory_fraction=fraction, max_num_batched_tokens=batched)


# -- physical limits -------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(model=st.sampled_from(DENSE), hardware=st.sampled_from(["h100-sxm", "a100-80gb"]),
       quant=st.sampled_from(["bf16", "fp8", "int4"]), tp_pick=st.integers(0, 3),
       batch=st.integers(1, 512), ctx=st.integers(1, 131072))
def test_decode_never_faster_than_reading_its_weights_once_at_peak_bandwidth(model, hardware, quant, tp_pick,
                                                                              batch, ctx):
    """Why this is a bound: every decode step multiplies each token by every linear layer's
    weights and by the LM head, so each of those weights crosses the HBM bus at least once per
    step, at its stored width (fp8 on an A100 is still read at 8 bits; int4 at 4 bits plus group
    scales; the LM head, like the embeddings and norms, stays 16-bit in quantized checkpoints), and
    nothing crosses that bus faster than the datasheet peak. The embedding table is a lookup of a
    few rows and need not be read whole, so it is left out -- except for a model with tied
    embeddings, whose LM head *is* that table. Holds with both efficiencies at 1 and no overhead,
    at every TP degree the model allows (each GPU reads its 1/tp shard)."""
    arch = MODELS[model]
    tps = _allowed_tp(arch)
    tp = tps[tp_pick % len(tps)]
    ctx = min(ctx, arch.max_context)
    prof = _profile(model, hardware, quant, tp, spec=IDEAL)
    stored = QUANTIZATIONS[_quant(quant)].weight_bits / 8
    linear = arch.layers * arch.layer_linear_params
    weights_per_gpu = (linear * stored + (arch.params - linear) * 2) / tp
    assert prof.weight_bytes_per_gpu == pytest.approx(weights_per_gpu, rel=1e-12)
    must_read = (linear * stored + arch.embedding_params * 2) / tp  # the LM head: vocab x hidden, tied or not
    floor = must_read / (GPUS[hardware].hbm_tb_s * 1e12)
    cost = prof.step(_decode(batch, ctx))
    assert cost.seconds >= floor, (cost.seconds, floor)
    assert cost.bytes >= must_read


@settings(max_examples=300, deadline=None)
@given(model=st.sampled_from(DENSE + [MOE]), hardware=st.sampled_from(["h100-sxm", "a100-80gb"]),
       quant=st.sampled_from(["bf16", "fp8", "int8", "int4"]), tp_pick=st.integers(0, 3),
       chunk=st.integers(1, 16384), start=st.integers(0, 65536))
def test_prefill_never_faster_than_its_matmul_flops_at_peak(model, hardware, quant, tp_pick, chunk, start):
    """Why this is a bound: each of the n prompt tokens is multiplied by every weight of the
    linear layers it passes through -- 2 FLOPs (multiply, add) per weight -- and no GPU does
    those FLOPs faster than its dense peak at the precision the matmuls run in (fp8/int8 where
    the device has them, 16-bit otherwise: int4 weight-only, fp8 on an A100). The count is
    ModelArch.active_params minus the embedding table (a lookup, not a matmul), minus the norm
    weights (elementwise scales, not matmuls), and with the LM head counted once per sequence,
    not once per token: an engine computes logits for the chunk's last position only. For a
    mixture of experts, active_params counts the k experts each token goes through. Holds with
    efficiencies at 1 and no overhead; attention FLOPs come on top and only make the bound
    looser."""
    arch = MODELS[model]
    tps = _allowed_tp(arch)
    tp = tps[tp_pick % len(tps)]
    start = min(start, arch.max_context - chunk) if chunk < arch.max_context else 0
    head = arch.vocab * arch.hidden
    norms = (2 * arch.layers + 1) * arch.hidden
    per_token = arch.active_params - arch.embedding_params - norms - (0 if arch.tied_embeddings else head)
    assert per_token == arch.layers * arch.active_layer_linear_params  # the layers' linear weights
    floor_flops = (2.0 * per_token * chunk + 2.0 * head) / tp
    prof = _profile(model, hardware, quant, tp, spec=IDEAL)
    cost = prof.step(_prefill(chunk, start))
    assert cost.flops >= floor_flops * (1 - 1e-12)
    assert cost.seconds >= floor_flops / _matmul_peak(hardware, quant), (cost.seconds, floor_flops)


_batches = st.tuples(
    st.lists(st.tuples(st.integers(1, 8192), st.integers(0, 32768)), max_size=4),
    st.lists(st.integers(1, 65536), max_size=300),
).filter(lambda b: b[0] or b[1])


@settings(max_examples=300, deadline=None)
@given(batch=_batches, model=st.sampled_from(["llama-3.1-8b", "llama-3.1-70b", MOE]),
       hardware=st.sampled_from(["h100-sxm", "a100-80gb", "l4", "mi300x"]),
       quant=st.sampled_from(["bf16", "fp8", "int8", "int4"]),
       ce=st.floats(0.05, 1.0), me=st.floats(0.05, 1.0), overhead=st.floats(0.0, 0.01))
def test_reported_flops_and_bytes_are_consistent_with_the_time(batch, model, hardware, quant, ce, me, overhead):
    """Each part of a step is priced at max(FLOPs / (peak·ce), bytes / (bw·me)) and the parts
    are summed. A sum of maxima is at least the maximum of the sums, so the whole step satisfies
    seconds ≥ FLOPs / (peak·ce) and seconds ≥ bytes / (bw·me): the MFU and MBU derived from
    ``StepCost`` never exceed the efficiencies assumed, let alone 1. And max(a, b) ≤ a + b, so
    at TP=1 (no all-reduce) seconds − overhead ≤ FLOPs / (peak·ce) + bytes / (bw·me): the time
    is not padded by anything the reported FLOPs and bytes do not account for (FLOPs taken at
    the 16-bit peak there, the slowest rate any part of a step may run at)."""
    chunks, contexts = batch
    shape = BatchShape(np.array([c for c, _ in chunks], np.int64), np.array([p for _, p in chunks], np.int64),
                       np.array(contexts, np.int64))
    prof = _profile(model, hardware, quant, 1, spec=(("compute_efficiency", ce), ("memory_efficiency", me),
                                                      ("overhead_s", overhead)))
    flop_rate = _matmul_peak(hardware, quant) * ce
    byte_rate = GPUS[hardware].hbm_tb_s * 1e12 * me
    cost = prof.step(shape)
    assert cost.flops > 0 and cost.bytes > 0
    assert cost.seconds >= cost.flops / flop_rate * (1 - 1e-12)
    assert cost.seconds >= cost.bytes / byte_rate * (1 - 1e-12)
    assert cost.seconds >= overhead + max(cost.flops / flop_rate, cost.bytes / byte_rate) * (1 - 1e-12)
    slowest = GPUS[hardware].bf16_tflops * 1e12 * ce
    assert cost.seconds - overhead <= (cost.flops / slowest + cost.bytes / byte_rate) * (1 + 1e-12)


# -- scaling ---------------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(model=st.sampled_from(["llama-3.1-8b", "llama-3.1-70b", "qwen2.5-7b", MOE]),
       quant=st.sampled_from(["bf16", "fp8", "int4"]), tp=st.sampled_from([1, 2, 4]),
       batch=st.integers(1, 1024), ctx=st.integers(1, 32767))
def test_decode_time_grows_strictly_with_batch_and_with_context(model, quant, tp, batch, ctx):
    """One more sequence adds a token's activations, its logits and its KV reads; one more token
    of context adds KV bytes to read: neither can be free, whatever bound the step is under."""
    prof = _profile(model, "h100-sxm", quant, tp)
    t = prof.step(_decode(batch, ctx)).seconds
    assert prof.step(_decode(batch + 1, ctx)).seconds > t
    assert prof.step(_decode(batch, ctx + 1)).seconds > t


@pytest.mark.parametrize("model,tp", [("llama-3.1-8b", 1), ("llama-3.1-70b", 4), (MOE, 2)])
def test_prefill_attention_grows_quadratically_with_chunk_length(model, tp):
    """Causal attention over a chunk of c tokens from position 0 pairs each query with every
    earlier key: c(c+1)/2 pairs, 4·heads·head_dim FLOPs each per layer (QKᵀ and PV). Doubling the
    chunk therefore adds (2c)(2c+1)/2 − 2·c(c+1)/2 = c² pairs beyond twice the work -- minus one
    LM head, since one chunk of 2c samples once where two chunks of c sample twice. In time, the
    increment t(2c) − t(c) more than doubles when c doubles (linear layers alone would exactly
    double it) once c is past a few thousand tokens."""
    arch = MODELS[model]
    prof = _profile(model, "h100-sxm", "bf16", tp)
    per_pair = 4.0 * arch.layers * arch.heads * arch.head_dim / tp
    head = 2.0 * arch.vocab * arch.hidden / tp
    for c in (2048, 4096, 8192):
        extra = prof.step(_prefill(2 * c)).flops - 2 * prof.step(_prefill(c)).flops
        assert extra == pytest.approx(per_pair * c * c - head, rel=1e-3), c
    t = {c: prof.step(_prefill(c)).seconds for c in (2048, 4096, 8192, 16384, 32768)}
    for c in (2048, 4096, 8192):
        assert t[4 * c] - t[2 * c] > 2 * (t[2 * c] - t[c]), c


@pytest.mark.parametrize("batch", [1, 2, 4, 8])
@pytest.mark.parametrize("ctx", [128, 4096])
def test_narrow_weights_shorten_small_batch_decode(batch, ctx):
    """A decode of 1-8 sequences is bound by reading the weights: fp8 (1 byte) and int4 weight-
    only (~0.52 byte) read a half and about a quarter of bf16's bytes. On an A100, which has no fp8
    matmul, fp8 still stores and reads 8-bit weights (dequantized in the kernel), so it still
    helps."""
    t = {(hw, q): _profile("llama-3.1-8b", hw, q).step(_decode(batch, ctx)).seconds
         for hw in ("h100-sxm", "a100-80gb") for q in ("bf16", "fp8", "int4")}
    for hw in ("h100-sxm", "a100-80gb"):
        assert t[hw, "fp8"] < 0.75 * t[hw, "bf16"], hw
        assert t[hw, "int4"] < t[hw, "fp8"], hw


def test_fp8_on_a100_falls_back_to_16_bit_matmuls_and_says_so():
    """An A100 has no fp8 tensor cores: an fp8 checkpoint runs weight-only with bf16 matmuls, so
    a large, compute-bound prefill is no faster than bf16 (only the memory-bound LM head, read
    at 8 bits, gains a little), while on an H100 the same prefill runs at the fp8 peak, twice
    the bf16 one. The profile's provenance says it fell back."""
    big = _prefill(8192)
    a100 = {q: _profile("llama-3.1-8b", "a100-80gb", q) for q in ("bf16", "fp8")}
    h100 = {q: _profile("llama-3.1-8b", "h100-sxm", q) for q in ("bf16", "fp8")}
    assert a100["fp8"].step(big).seconds / a100["bf16"].step(big).seconds > 0.99
    assert h100["fp8"].step(big).seconds / h100["bf16"].step(big).seconds < 0.65
    assert a100["fp8"].precision.compute == "bf16" and a100["fp8"].precision.weight_bytes == 1.0
    prov = a100["fp8"].provenance
    assert prov.kind == "derived"
    assert "has no fp8 matmul" in prov.source and "bf16 matmuls" in prov.source
    assert "bf16_tflops" in prov.assumptions and "fp8_tflops" not in prov.assumptions
    assert "has no" not in h100["fp8"].provenance.source
    assert "fp8_tflops" in h100["fp8"].provenance.assumptions


@pytest.mark.parametrize("chunk", [4096, 8192, 16384])
def test_int8_w8a8_speeds_compute_bound_prefill_on_h100(chunk):
    """The H100's dense int8 peak is twice its bf16 peak, and W8A8 runs the linear layers -- most
    of a prefill's FLOPs at these lengths -- in int8. It cannot be more than twice as fast: every
    FLOP and byte at most halves."""
    bf16 = _profile("llama-3.1-8b", "h100-sxm", "bf16").step(_prefill(chunk)).seconds
    int8 = _profile("llama-3.1-8b", "h100-sxm", "int8").step(_prefill(chunk)).seconds
    assert 0.5 <= int8 / bf16 < 0.7


def test_tensor_parallel_halves_per_gpu_flops():
    """At TP=2 each GPU holds half of every weight matrix and half of the attention heads, so it
    does half the FLOPs of the same batch (the norms and sampling are not counted as FLOPs)."""
    shape = BatchShape(np.array([3000, 500]), np.array([0, 9000]), np.full(40, 2500))
    for model in ("llama-3.1-70b", MOE):
        one = _profile(model, "h100-sxm", "bf16", 1).step(shape)
        two = _profile(model, "h100-sxm", "bf16", 2).step(shape)
        assert two.flops == pytest.approx(one.flops / 2, rel=1e-12), model
        assert two.bytes < one.bytes, model


@pytest.mark.parametrize("batch", [1, 16, 256])
def test_all_reduce_costs_link_time_at_tp_2_and_nothing_at_tp_1(batch):
    """Tensor parallelism adds two all-reduces of the hidden state per layer. A ring all-reduce
    is bandwidth-optimal and still sends 2(tp−1)/tp of the message per GPU, so over a link of
    B bytes/s it takes at least 2·layers · 2(tp−1)/tp · tokens·hidden·2 bytes / B: a very slow
    link makes a TP=2 step slower by at least that, and the extra time grows with the tokens.
    At TP=1 there is nothing to reduce and the link cannot matter."""
    arch = MODELS["llama-3.1-70b"]
    slow_gb_s, fast_gb_s = 0.5, 10_000.0
    shape = _decode(batch, 2048)

    def seconds(tp: int, link: float) -> float:
        return _profile("llama-3.1-70b", "h100-sxm", "bf16", tp, spec=(("interconnect_gb_s", link),)).step(shape).seconds

    assert seconds(1, slow_gb_s) == seconds(1, fast_gb_s)
    extra = seconds(2, slow_gb_s) - seconds(2, fast_gb_s)
    ring_bytes = 2 * arch.layers * (2 * (2 - 1) / 2) * batch * arch.hidden * 2
    assert extra >= ring_bytes / (slow_gb_s * 1e9) - ring_bytes / (fast_gb_s * 1e9) * (1 + 1e-9)
    assert seconds(2, slow_gb_s) > seconds(1, slow_gb_s) / 2  # halved work, but not a free link


def test_all_reduce_time_grows_linearly_with_tokens():
    """The bandwidth term of the all-reduces is proportional to the tokens in the batch."""
    def extra(batch: int) -> float:
        slow = _profile("llama-3.1-70b", "h100-sxm", "bf16", 4, spec=(("interconnect_gb_s", 0.5),))
        fast = _profile("llama-3.1-70b", "h100-sxm", "bf16", 4, spec=(("interconnect_gb_s", 10_000.0),))
        return slow.step(_decode(batch, 1024)).seconds - fast.step(_decode(batch, 1024)).seconds
    e1, e16, e256 = extra(1), extra(16), extra(256)
    assert 0 < e1 < e16 < e256
    assert e256 / e16 == pytest.approx(16, rel=1e-6)


def _write_hf_config(directory: Path, name: str, *, intermediate: int) -> str:
    """A Mixtral-shaped dense model (same attention, vocabulary, layers) as a config.json."""
    path = directory / name / "config.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({
        "model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8,
        "num_hidden_layers": 32, "head_dim": 128, "intermediate_size": intermediate, "vocab_size": 32000,
        "max_position_embeddings": 32768, "tie_word_embeddings": False}))
    return str(path)


def test_moe_flops_follow_active_parameters_and_memory_follows_total(tmp_path):
    """Mixtral-8x7B holds 8 expert MLPs per layer (46.7B parameters) but sends each token through
    2 of them (12.9B active). Against a dense model of the same total size (one MLP 8 times as
    wide, same attention and vocabulary): per-token FLOPs are in the ratio of active to total
    parameters (embedding lookups aside), while the weights to store -- and so the memory left
    for KV -- are the same (compared at a small max_num_batched_tokens, since the activation
    reserve follows the k experts a token computes, not all E). Against a dense model of Mixtral's *active* size, Mixtral holds far
    fewer KV tokens."""
    moe = MODELS[MOE]
    wide = _write_hf_config(tmp_path, "dense-equal-total", intermediate=moe.experts * moe.intermediate)
    narrow = _write_hf_config(tmp_path, "dense-equal-active", intermediate=moe.experts_per_token * moe.intermediate)
    p_moe = _profile(MOE, "h100-sxm", "bf16", 2)
    p_wide = _profile(wide, "h100-sxm", "bf16", 2)
    p_narrow = _profile(narrow, "h100-sxm", "bf16", 2)
    dense_total = p_wide.model
    assert dense_total.params == pytest.approx(moe.params, rel=1e-3)  # Mixtral adds only its routers

    shape = _decode(256, 1)  # context 1: the linear layers and the head, hardly any attention
    ratio = p_moe.step(shape).flops / p_wide.step(shape).flops
    expected = (moe.active_params - moe.embedding_params) / (dense_total.params - dense_total.embedding_params)
    assert ratio == pytest.approx(expected, rel=0.01)
    assert ratio < 0.3

    assert p_moe.weight_bytes_per_gpu == pytest.approx(moe.params * 2 / 2, rel=1e-12)
    assert p_moe.weight_bytes_per_gpu == pytest.approx(p_wide.weight_bytes_per_gpu, rel=1e-3)
    replica = _replica(2, batched=512)
    kv_moe, kv_wide = p_moe.kv_capacity_tokens(replica), p_wide.kv_capacity_tokens(replica)
    assert kv_moe == pytest.approx(kv_wide, rel=0.01)
    assert kv_moe < 0.6 * p_narrow.kv_capacity_tokens(replica)


def test_moe_decode_reads_only_the_experts_its_tokens_touch():
    """With uniform routing each token picks k of E experts, so t tokens leave a given expert
    unused with probability (1 − k/E)^t: one token reads k/E = 2/8 of the expert weights, a batch
    of hundreds reads nearly all of them."""
    arch = MODELS[MOE]
    prof = _profile(MOE, "h100-sxm", "bf16", 2)
    k, e = arch.experts_per_token, arch.experts
    assert prof.experts_touched(1) == pytest.approx(k)
    assert prof.experts_touched(2) == pytest.approx(e * (1 - (1 - k / e) ** 2))
    assert prof.experts_touched(512) > e - 1e-6
    wb, tp = 2.0, 2
    experts = arch.layers * arch.expert_params * wb / tp
    rest = (arch.layers * (arch.attention_params_per_layer + arch.router_params_per_layer)
            + arch.vocab * arch.hidden) * wb / tp
    one = prof.step(_decode(1, 1)).bytes
    assert rest + k * experts <= one < rest + k * experts + 0.01 * experts  # plus a token's activations
    assert one < 0.4 * prof.weight_bytes_per_gpu
    many = prof.step(_decode(512, 1)).bytes
    assert many >= rest + e * experts * (1 - 1e-9)


@pytest.mark.parametrize("model,hardware,tp", [("llama-3.1-8b", "h100-sxm", 1), ("llama-3.1-70b", "h100-sxm", 2),
                                               ("llama-3.1-8b", "l4", 1), (MOE, "a100-80gb", 4)])
def test_fp8_kv_cache_halves_kv_bytes_and_doubles_kv_capacity(model, hardware, tp):
    """An fp8 KV cache stores 1 byte per element instead of 2: half the bytes per token, so the
    same free memory holds twice the tokens (to within rounding down to a whole token)."""
    bf16 = _profile(model, hardware, "bf16", tp, kv_cache_dtype="auto")
    fp8 = _profile(model, hardware, "bf16", tp, kv_cache_dtype="fp8")
    assert fp8.kv_bytes_per_token_per_gpu == bf16.kv_bytes_per_token_per_gpu / 2
    a, b = bf16.kv_capacity_tokens(_replica(tp)), fp8.kv_capacity_tokens(_replica(tp))
    assert a > 0
    assert 2 * a <= b <= 2 * a + 1


def test_fp8_kv_cache_makes_long_context_decode_cheaper():
    """Decode attention reads every cached token: with 1-byte KV that read halves, so long contexts
    cost less, and (decode attention being memory-bound at ~4 FLOPs per byte) each extra token of
    context costs half as much."""
    bf16 = _profile("llama-3.1-8b", "h100-sxm", "bf16")
    fp8 = _profile("llama-3.1-8b", "h100-sxm", "bf16", kv_cache_dtype="fp8")
    assert fp8.step(_decode(32, 32768)).seconds < bf16.step(_decode(32, 32768)).seconds
    assert fp8.step(_decode(32, 128)).seconds == pytest.approx(bf16.step(_decode(32, 128)).seconds, rel=0.02)

    def slope(p: RooflineProfile) -> float:
        return p.step(_decode(32, 65536)).seconds - p.step(_decode(32, 16384)).seconds
    assert slope(fp8) == pytest.approx(slope(bf16) / 2, rel=1e-6)


# -- memory ----------------------------------------------------------------------------------------

def test_llama_70b_bf16_needs_two_80gb_gpus():
    """70.6e9 parameters at 2 bytes are 141 GB: more than an H100's usable 0.9 × 79.65 GiB ≈ 77 GB,
    short by about 141 − 77 = 64 GB plus the activation reserve (a few GB). At TP=2 each GPU holds
    70.6 GB of weights, which fits with room left for KV; at TP=4 there is more room still."""
    arch = MODELS["llama-3.1-70b"]
    gpu = GPUS["h100-sxm"]
    usable = 0.9 * gpu.memory_gib * 2**30
    one = _profile("llama-3.1-70b", "h100-sxm", "bf16", 1)
    short = one.memory_shortfall_bytes(_replica(1))
    weights_short = arch.params * 2 - usable
    assert 60e9 < weights_short < short < weights_short + 4e9
    assert one.kv_capacity_tokens(_replica(1)) == 0

    two = _profile("llama-3.1-70b", "h100-sxm", "bf16", 2)
    assert two.weight_bytes_per_gpu == pytest.approx(70.55e9, rel=1e-3)
    assert two.memory_shortfall_bytes(_replica(2)) < 0
    assert two.kv_capacity_tokens(_replica(2)) > 16384
    # An A100 80GB (80 GiB) fits it at TP=2 too.
    assert _profile("llama-3.1-70b", "a100-80gb", "bf16", 2).memory_shortfall_bytes(_replica(2)) < 0


def test_llama_8b_bf16_fits_one_l4():
    """16.1 GB of weights plus ~1.8 GB of activations in 0.9 × 22.49 GiB ≈ 21.7 GB: fits, with
    a few GB (tens of thousands of tokens at 128 KiB each) left for KV."""
    prof = _profile("llama-3.1-8b", "l4", "bf16", 1)
    assert prof.memory_shortfall_bytes(_replica(1)) < 0
    assert 10_000 < prof.kv_capacity_tokens(_replica(1)) < 50_000


@settings(max_examples=100, deadline=None)
@given(low=st.floats(0.5, 0.95), step=st.floats(0.005, 0.05), model=st.sampled_from(["llama-3.1-8b", "llama-3.1-70b", MOE]))
def test_kv_capacity_grows_with_memory_fraction_and_tp(low, step, model):
    """More of the GPU for the engine, or the weights split over more GPUs (each GPU then also
    holds only its share of each token's KV heads), leaves room for more KV tokens."""
    high = min(low + step, 1.0)
    caps = []
    for tp in (1, 2, 4, 8):
        prof = _profile(model, "h100-sxm", "bf16", tp)
        lo, hi = prof.kv_capacity_tokens(_replica(tp, low)), prof.kv_capacity_tokens(_replica(tp, high))
        assert hi >= lo
        if lo > 0:
            assert hi > lo
        caps.append(hi)
    assert caps == sorted(caps) and caps[-1] > caps[0]


def test_load_scenario_refuses_a_model_that_does_not_fit_in_one_line():
    data = default_scenario().to_dict()
    data["model"] = "llama-3.1-70b"
    with pytest.raises(ScenarioError, match=r"short by \d+\.\d GiB") as err:
        load_scenario(data)
    msg = str(err.value)
    assert "\n" not in msg
    short = _profile("llama-3.1-70b", "h100-sxm", "bf16", 1).memory_shortfall_bytes(_replica(1))
    assert f"short by {short / 2**30:.1f} GiB" in msg
    assert load_scenario({**data, "tp": 2}).kv_capacity_tokens > 16384


# -- once bugs ------------------------------------------------------------------------------------------

def test_all_reduce_bandwidth_counts_even_with_zero_latency():
    """allreduce_latency_s = 0 (a legal setting: ge=0) must drop only the latency, not the time
    the messages take on the link: at TP=2 a 0.5 GB/s link must still cost time."""
    spec = (("allreduce_latency_s", 0.0),)
    slow = _profile("llama-3.1-70b", "h100-sxm", "bf16", 2, spec=spec + (("interconnect_gb_s", 0.5),))
    fast = _profile("llama-3.1-70b", "h100-sxm", "bf16", 2, spec=spec + (("interconnect_gb_s", 10_000.0),))
    shape = _decode(256, 2048)
    assert slow.step(shape).seconds > fast.step(shape).seconds


@pytest.mark.parametrize("quant", ["int8", "fp8"])
def test_attention_runs_at_16_bit_under_w8a8(quant):
    """W8A8 schemes quantize the linear layers' weights and inputs; attention's QKᵀ and PV run on
    16-bit tensors (FlashAttention over a bf16 KV cache; there is no int8 attention kernel in
    vLLM). So a prefill's attention FLOPs can go no faster than the 16-bit peak, and a step whose
    time is mostly attention (a 512-token chunk at position 120,000) cannot get much faster."""
    arch = MODELS["llama-3.1-8b"]
    chunk, start = 512, 120_000
    prof = _profile("llama-3.1-8b", "h100-sxm", quant, spec=IDEAL)
    attention_flops = 4.0 * arch.layers * arch.heads * arch.head_dim * chunk * (start + chunk / 2)
    assert prof.step(_prefill(chunk, start)).seconds >= attention_flops / (GPUS["h100-sxm"].bf16_tflops * 1e12)


def test_tensor_parallel_needs_an_interconnect():
    """A device the catalog gives no link between (the server CPU) cannot run tp > 1: the
    all-reduce would have no bandwidth to run on. One line, naming the key and the way out."""
    data = {**default_scenario().to_dict(), "hardware": "cpu-server", "tp": 2}
    with pytest.raises(ScenarioError, match=r"^tp = 2: hardware = 'cpu-server' has no interconnect.*use tp = 1"):
        load_scenario(data)
