"""A step-time and memory model derived from datasheet figures (provenance ``derived``).

One engine iteration is priced part by part, each part at max(FLOPs / achievable FLOP/s,
bytes / achievable HBM bytes/s) on one GPU of the tensor-parallel group (everything below is
per GPU, i.e. per TP shard):

- **linear layers** over every token in the batch: attention projections and the MLP (for a
  mixture of experts, each token's ``experts_per_token`` experts plus the router). Compute runs
  at the precision the quantization scheme resolves to on this GPU (fp8/int8 matmuls where the
  hardware has them, 16-bit otherwise; attention and the LM head always run in 16 bits, as
  quantized checkpoints and attention kernels do); weights are read once per iteration at their *stored*
  precision (for MoE, only the experts the batch's tokens touch: in expectation
  E·(1 − (1 − k/E)^tokens) of the E experts); activations go in and out at activation precision.
- **prefill attention**: 4·heads·head_dim FLOPs per (query, key) pair, Σ c·(p + c/2) pairs over
  chunks of c tokens starting at position p, and the chunk's KV read and written;
- **decode attention**: the same FLOPs per pair over each sequence's context, and its whole KV
  cache read (the part that dominates long-context decode);
- **LM head and sampling** for each sequence that samples: the head's weights once, fp32 logits out;
- **tensor-parallel all-reduce**: two per layer (after attention and after the MLP), ring
  algorithm: latency + 2(tp−1)/tp · message / link bandwidth, 16-bit activations;
- a **fixed overhead** per iteration (scheduling, kernel launches, Python).

Parts are summed, not overlapped. ``compute_efficiency`` and ``memory_efficiency`` turn peak
figures into achievable ones: assumptions until calibration fits them, and recorded in the
provenance. Embedding lookups read only the rows they use and are left out.

Three further shares, each 1 (or unset) by default, where the pricing above is unchanged, are
fitted to serving engines (``sim.fitting.engine_fit``); none can make a part faster than the
datasheet at full efficiency:

- ``overlap``: the share of the shorter of a part's compute time and memory time that runs under
  the longer one. 1 is the roofline's max(compute, memory); below it a part costs
  max + (1 − overlap)·min, as a kernel near the ridge point does (a decode batch of a few hundred
  tokens, or an expert GEMM with a few hundred tokens per expert), where neither the tensor cores
  nor HBM are kept busy through the whole kernel;
- ``moe_compute_efficiency``: the share of peak FLOP/s of a mixture of experts' expert GEMMs
  (grouped GEMMs of a few tokens per expert, with routing, permutation and the weighted
  combine), apart from the dense layers' ``compute_efficiency``; unset: the same;
- ``allreduce_efficiency``: the share of the all-reduce's bandwidth (measured NCCL or the datasheet
  link) achieved inside the engine, its latency stretched alike: the collectives there share
  the GPU with compute and synchronise every rank twice per layer.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache, cached_property
from typing import NamedTuple
from importlib import resources

import numpy as np

from calibration.catalog import GPU, ModelArch, ResolvedPrecision
from calibration.profile import BatchShape, Provenance, ReplicaSpec, StepCost, prefill_sums, size_rows

__all__ = ["IterationWork", "RooflineProfile"]

# Memory vLLM-like engines hold outside weights and KV cache: CUDA context, graphs, workspace.
_FIXED_RESERVE_BYTES = 1.0 * 2**30
# All-reduce messages carry 16-bit activations whatever the matmul precision.
_ALLREDUCE_BYTES_PER_ELEMENT = 2.0
# Logits are produced in fp32 for sampling.
_LOGIT_BYTES = 4.0
# Embeddings, LM head and norms stay 16-bit in quantized checkpoints; attention runs in 16 bits.
_SIXTEEN_BIT = 2.0


@cache
def measured_allreduce(gpu: str, tp: int) -> tuple[float, float] | None:
    """(latency s, algorithm bandwidth B/s) of an all-reduce over ``tp`` GPUs of catalog device
    ``gpu`` fitted to measured NCCL timings (``data/collectives.toml``), or None where none was measured."""
    data = tomllib.loads(resources.files("calibration").joinpath("data/collectives.toml").read_text())
    fit = data.get(gpu, {}).get(str(tp))
    return None if fit is None else (fit["latency_us"] * 1e-6, fit["algbw_gb_s"] * 1e9)


class _StepConstants(NamedTuple):
    """Per-iteration constants of :meth:`RooflineProfile.step`, per GPU of the TP group."""

    flop_rate: float      # achievable FLOP/s of the linear layers' matmuls
    rate16: float         # achievable 16-bit FLOP/s (attention, LM head)
    byte_rate: float      # achievable HBM bytes/s
    tok_params: float     # matmul parameters per token
    shared_wbytes: float  # weight bytes always read
    expert_wbytes: float  # weight bytes per expert (the MLP if dense)
    n_exp: float
    k_exp: float
    io_bytes: float       # activation bytes in and out of the linear layers, per token
    head_params: float
    head_wbytes: float
    logit_bytes: float    # per sampling sequence
    attn_flops: float     # per (query, key) pair
    kv_tok: float         # KV bytes per token
    ar_latency: float     # all-reduce seconds per iteration
    ar_per_token: float   # all-reduce seconds per token
    serial: float         # 1 − overlap: the share of a part's shorter side added to its longer
    moe_rate: float       # achievable FLOP/s of the expert GEMMs (flop_rate unless set apart)
    expert_flops: float   # expert GEMM FLOPs per token (0 if dense)


class IterationWork(NamedTuple):
    """FLOPs and bytes of each part of many iterations (arrays, one element per iteration, per GPU):
    what :meth:`RooflineProfile.step` prices, apart from the efficiencies it prices them at. Work
    depends on the model, the GPU's precision and the batch shapes alone, so iterations whose
    shapes are known can be priced again at other efficiencies without simulating them again
    (:meth:`RooflineProfile.price_work`; engine profiles are fitted so)."""

    lin_flops: np.ndarray
    lin_bytes: np.ndarray
    head_flops: np.ndarray
    head_bytes: np.ndarray
    prefill_flops: np.ndarray
    prefill_bytes: np.ndarray
    decode_flops: np.ndarray
    decode_bytes: np.ndarray
    tokens: np.ndarray          # tokens computed (prefill chunk tokens plus one per decode)


@dataclass(frozen=True)
class RooflineProfile:
    """Roofline pricing of one Llama-family model on one GPU type at a TP degree."""

    model: ModelArch
    gpu: GPU
    tp: int
    precision: ResolvedPrecision
    kv_bytes_per_element: float
    compute_efficiency: float
    memory_efficiency: float
    overhead_s: float
    allreduce_latency_s: float
    overrides: tuple[str, ...] = ()
    # Measured all-reduce (latency s, algorithm bandwidth B/s) at this TP; None: the datasheet link.
    allreduce: tuple[float, float] | None = None
    # Shares fitted to serving engines (the module docstring); the defaults leave the roofline as is.
    overlap: float = 1.0
    moe_compute_efficiency: float | None = None   # None: compute_efficiency
    allreduce_efficiency: float = 1.0

    def __post_init__(self) -> None:
        # Decode iterations' parts that depend on the batch size alone, by size (decode_steps).
        object.__setattr__(self, "_decode_sizes", np.empty((4, 0)))

    @property
    def quantization(self) -> str:
        return self.precision.scheme

    @property
    def weight_bytes_per_element(self) -> float:
        return self.precision.weight_bytes

    @property
    def activation_bytes_per_element(self) -> float:
        return self.precision.activation_bytes

    @property
    def peak_flops(self) -> float:
        """Dense peak FLOP/s per GPU at the precision the matmuls run in."""
        return self.gpu.tflops[self.precision.compute] * 1e12

    @property
    def peak_bytes_per_s(self) -> float:
        return self.gpu.hbm_tb_s * 1e12

    @property
    def provenance(self) -> Provenance:
        m, g = self.model, self.gpu
        notes = [] if self.precision.note is None else [self.precision.note]
        if self.overrides:
            notes.append("scenario overrides " + ", ".join(self.overrides))
        return Provenance(
            kind="derived",
            source=f"roofline of {m.name} on {g.name} ({self.quantization}: {self.precision.compute} matmuls, "
                   f"{self.weight_bytes_per_element * 8:g}-bit weights, {self.kv_bytes_per_element * 8:g}-bit KV; "
                   f"tp={self.tp}) from {g.source_of('tflops')}; shapes from {m.source}"
                   + (f"; {'; '.join(notes)}" if notes else "")
                   + (f"; all-reduce measured (NCCL, {self.tp} GPUs: data/collectives.toml)" if self.allreduce else ""),
            assumptions={
                f"{self.precision.compute}_tflops": self.gpu.tflops[self.precision.compute],
                "hbm_tb_s": g.hbm_tb_s,
                "memory_bytes": float(g.memory_bytes),
                "interconnect_gb_s": g.interconnect_gb_s,
                "compute_efficiency": self.compute_efficiency,
                "memory_efficiency": self.memory_efficiency,
                "overhead_s": self.overhead_s,
                **({"allreduce_latency_s": self.allreduce_latency_s} if self.allreduce is None else
                   {"allreduce_latency_s": self.allreduce[0], "allreduce_algbw_gb_s": self.allreduce[1] / 1e9}),
                **{k: v for k, v in (("overlap", self.overlap), ("moe_compute_efficiency", self.moe_compute_efficiency),
                                     ("allreduce_efficiency", self.allreduce_efficiency))
                   if v is not None and v != 1.0},
            },
        )

    # -- memory model -------------------------------------------------------------------------
    @property
    def weight_bytes_per_gpu(self) -> float:
        """Stored weights per GPU, sharded over the TP group (vocabulary-parallel embeddings, as
        vLLM does): the linear layers at the scheme's stored precision; embeddings, LM head and
        norms in 16 bits, as quantized checkpoints (fp8, int8, AWQ/GPTQ) keep them."""
        m = self.model
        linear = m.layers * m.layer_linear_params
        return (linear * self.weight_bytes_per_element + (m.params - linear) * _SIXTEEN_BIT) / self.tp

    @property
    def kv_bytes_per_token_per_gpu(self) -> float:
        """KV bytes per token per GPU: KV heads are split over the TP group (tp divides them)."""
        return self.model.kv_bytes_per_token(self.kv_bytes_per_element) / self.tp

    def activation_reserve_bytes(self, max_num_batched_tokens: int) -> float:
        """Peak activation memory of the largest batch, as engines reserve it after profiling."""
        m = self.model
        per_token = (4 * m.hidden + 2 * m.intermediate * m.experts_per_token // self.tp) * 2.0
        return _FIXED_RESERVE_BYTES + max_num_batched_tokens * per_token

    def kv_capacity_tokens(self, replica: ReplicaSpec) -> int:
        """KV tokens that fit in the memory left after weights and activations (0 if none), or in
        ``replica.kv_memory_fraction`` of it when that is set."""
        usable = self.gpu.memory_bytes * replica.gpu_memory_fraction
        free = usable - self.weight_bytes_per_gpu - self.activation_reserve_bytes(replica.max_num_batched_tokens)
        if replica.kv_memory_fraction is not None:
            free *= replica.kv_memory_fraction
        return max(0, int(free // self.kv_bytes_per_token_per_gpu))

    def memory_shortfall_bytes(self, replica: ReplicaSpec) -> float:
        """Bytes per GPU missing for weights plus activations (<= 0 when they fit)."""
        usable = self.gpu.memory_bytes * replica.gpu_memory_fraction
        need = self.weight_bytes_per_gpu + self.activation_reserve_bytes(replica.max_num_batched_tokens)
        return need - usable

    # -- step time ----------------------------------------------------------------------------
    @cached_property
    def _constants(self) -> _StepConstants:
        """Per-iteration constants, computed once (step() is on the engine's hot path)."""
        m, tp, wb = self.model, self.tp, self.weight_bytes_per_element
        L = m.layers
        # Parameters every token multiplies by (attention, router; a dense MLP), and one expert.
        shared = L * (m.attention_params_per_layer + m.router_params_per_layer) / tp
        expert = L * m.expert_params / tp
        active_expert = m.experts_per_token * expert  # a dense MLP is one expert that every token uses
        # Activations in and out of each linear layer, per token.
        io = L * (2 * m.hidden + 2 * m.heads * m.head_dim + 2 * m.hidden
                  + 3 * m.intermediate * m.experts_per_token) / tp * self.activation_bytes_per_element
        head = m.vocab * m.hidden / tp
        flop_rate = self.peak_flops * self.compute_efficiency
        moe = self.moe_compute_efficiency
        return _StepConstants(
            flop_rate,
            self.gpu.bf16_tflops * 1e12 * self.compute_efficiency,  # attention and LM head: 16-bit matmuls
            self.peak_bytes_per_s * self.memory_efficiency,
            shared + active_expert,      # matmul params per token
            shared * wb, expert * wb,    # weight bytes: always read; per expert (all of them if dense)
            float(m.experts), float(m.experts_per_token),
            io,
            head, head * _SIXTEEN_BIT, m.vocab / tp * _LOGIT_BYTES,
            4.0 * L * m.heads * m.head_dim / tp,        # attention FLOPs per (query, key) pair
            self.kv_bytes_per_token_per_gpu,
            *self._allreduce_terms,
            1.0 - self.overlap,
            flop_rate if moe is None or not m.is_moe else self.peak_flops * moe,
            2.0 * active_expert if m.is_moe else 0.0,
        )

    @property
    def _allreduce_terms(self) -> tuple[float, float]:
        """Seconds per iteration and per token of the two all-reduces per layer: measured NCCL
        latency and bandwidth where the catalog has them, else the datasheet link with a ring's
        2(p−1)/p traffic and the assumed latency."""
        m, tp, L, e = self.model, self.tp, self.model.layers, self.allreduce_efficiency
        if tp == 1:
            return 0.0, 0.0
        message = m.hidden * _ALLREDUCE_BYTES_PER_ELEMENT   # bytes per token
        if self.allreduce is not None:
            latency, algbw = self.allreduce
            return 2.0 * L * latency / e, 2.0 * L * message / algbw / e
        return (2.0 * L * self.allreduce_latency_s / e,
                2.0 * L * 2.0 * (tp - 1) / tp * message / max(self.gpu.interconnect_gb_s * 1e9, 1.0) / e)

    def experts_touched(self, tokens: float) -> float:
        """Expected distinct experts per layer that ``tokens`` tokens route to (uniform routing):
        E·(1 − (1 − k/E)^tokens); E for a dense model."""
        e, k = float(self.model.experts), float(self.model.experts_per_token)
        return e if e == 1 else e * (1.0 - (1.0 - k / e) ** tokens)

    def _dense_work(self, n_tok: int, n_logits: int) -> tuple[float, float, float, float]:
        """FLOPs and bytes of the linear layers over ``n_tok`` tokens, then of the LM head over
        ``n_logits`` sampling sequences."""
        (_, _, _, tok_params, shared_wbytes, expert_wbytes, n_exp, k_exp, io_bytes, head_params,
         head_wbytes, logit_bytes, *_) = self._constants
        touched = n_exp if n_exp == 1 else n_exp * (1.0 - (1.0 - k_exp / n_exp) ** n_tok)
        return (2.0 * n_tok * tok_params, shared_wbytes + touched * expert_wbytes + n_tok * io_bytes,
                2.0 * n_logits * head_params, head_wbytes + n_logits * logit_bytes)

    @staticmethod
    def _part(compute, memory, serial, top=max, bottom=min):
        """Seconds of one part: the longer of its compute and memory times, plus ``serial`` (1 −
        overlap) of the shorter (floats, or arrays with ``top=np.maximum, bottom=np.minimum``)."""
        if serial:
            return top(compute, memory) + serial * bottom(compute, memory)
        return top(compute, memory)  # the roofline's max: the common case, kept as cheap as it was

    def _linear_compute(self, lin_flops, n_tok):
        """Seconds of the linear layers' FLOPs over ``n_tok`` tokens (floats or arrays): the expert
        GEMMs' share at ``moe_rate`` when it is set apart (exactly lin_flops / flop_rate when not)."""
        c = self._array_constants if isinstance(n_tok, np.ndarray) else self._constants
        if c.moe_rate == c.flop_rate:
            return lin_flops / c.flop_rate
        expert = c.expert_flops * n_tok
        return (lin_flops - expert) / c.flop_rate + expert / c.moe_rate

    def _dense_part(self, n_tok: int, n_logits: int) -> tuple[float, float, float]:
        """Seconds, FLOPs and bytes of the linear layers over ``n_tok`` tokens and the LM head
        over ``n_logits`` sampling sequences."""
        lin_flops, lin_bytes, head_flops, head_bytes = self._dense_work(n_tok, n_logits)
        c = self._constants
        lin = lin_flops / c.flop_rate if c.moe_rate == c.flop_rate else self._linear_compute(lin_flops, n_tok)
        if c.serial:
            t = (self._part(lin, lin_bytes / c.byte_rate, c.serial)
                 + self._part(head_flops / c.rate16, head_bytes / c.byte_rate, c.serial))
        else:
            t = max(lin, lin_bytes / c.byte_rate) + max(head_flops / c.rate16, head_bytes / c.byte_rate)
        return t, lin_flops + head_flops, lin_bytes + head_bytes

    def _prefill_traffic(self, pairs: float, tokens: int) -> tuple[float, float]:
        """FLOPs and bytes of prefill attention: ``pairs`` (query, key) pairs, and the KV of
        ``tokens`` tokens (the chunks and their cached prefixes) read."""
        c = self._constants
        return c.attn_flops * pairs, c.kv_tok * float(tokens)

    @cached_property
    def _array_constants(self) -> _StepConstants:
        """:attr:`_constants` as 0-d float64 arrays, for the operations on arrays of iterations:
        the same results, without numpy resolving a Python float's type on every operation
        (which doubles its cost on a plan's ~30 elements)."""
        return _StepConstants(*(np.array(v, np.float64) for v in self._constants))

    def _decode_traffic(self, ctx):
        """FLOPs and bytes of decode attention over ``ctx`` KV tokens in all (a float or an array)."""
        c = self._constants if isinstance(ctx, float) else self._array_constants
        return c.attn_flops * ctx, c.kv_tok * ctx

    def _decode_attention(self, ctx):
        """Seconds, FLOPs and bytes of decode attention over ``ctx`` KV tokens in all (a float or
        an array of them: the same operations either way)."""
        scalar = isinstance(ctx, float)
        c = self._constants if scalar else self._array_constants
        dc_flops, dc_bytes = self._decode_traffic(ctx)
        top, bottom = (max, min) if scalar else (np.maximum, np.minimum)
        return self._part(dc_flops / c.rate16, dc_bytes / c.byte_rate, c.serial, top, bottom), dc_flops, dc_bytes

    def step(self, batch: BatchShape) -> StepCost:
        chunk, dctx = batch.prefill_chunk, batch.decode_context
        n_pre, n_dec = chunk.size, dctx.size
        chunk_tokens, start_tokens, pairs = prefill_sums(chunk, batch.prefill_start)
        t, flops, nbytes = self._priced(n_pre, n_dec, chunk_tokens, pairs, start_tokens,
                                        sum(dctx.tolist()) if n_dec else 0)
        return StepCost(seconds=t, flops=flops, bytes=nbytes)

    def _priced(self, n_pre: int, n_dec: int, chunk_tokens: int, pairs: float, start_tokens: int,
                context: int) -> tuple[float, float, float]:
        """Seconds, FLOPs and bytes of a batch of ``n_pre`` prefill chunks of ``chunk_tokens``
        tokens in all, starting at positions summing to ``start_tokens``, with Σ c(p + c/2) =
        ``pairs``, and ``n_dec`` decodes whose contexts sum to ``context``: :meth:`step`'s
        arithmetic from the batch's sums (:class:`calibration.measured.MeasuredProfile` shares them).

        Token sums are Python ints: a float64 sum of integer-valued floats is exact below 2**53,
        so ``float(Σ(p + c))`` equals ``float(Σp + Σc)`` whatever the order of summation."""
        c = self._constants
        n_tok = chunk_tokens + n_dec
        # Sequences that sample a token: every decode, and (at most) every prefill chunk.
        t, flops, nbytes = self._dense_part(n_tok, n_dec + n_pre)
        if n_pre:
            pf_flops, pf_bytes = self._prefill_traffic(pairs, start_tokens + chunk_tokens)
            t += self._part(pf_flops / c.rate16, pf_bytes / c.byte_rate, c.serial)
            flops, nbytes = flops + pf_flops, nbytes + pf_bytes
        if n_dec:
            dt, dc_flops, dc_bytes = self._decode_attention(float(context))
            t += dt
            flops, nbytes = flops + dc_flops, nbytes + dc_bytes
        if self.tp > 1 and n_tok:
            t += c.ar_latency + c.ar_per_token * n_tok
        return t + self.overhead_s, flops, nbytes

    def _work(self, n_pre: int, n_dec: int, chunk_tokens: int, pairs: float, start_tokens: int,
              context: int) -> tuple[float, float]:
        """The FLOPs and bytes of :meth:`_priced` alone, summed in its order (for a measured
        profile's ``step``, whose seconds come from its own fit)."""
        n_tok = chunk_tokens + n_dec
        lin_flops, lin_bytes, head_flops, head_bytes = self._dense_work(n_tok, n_dec + n_pre)
        flops, nbytes = lin_flops + head_flops, lin_bytes + head_bytes
        if n_pre:
            pf_flops, pf_bytes = self._prefill_traffic(pairs, start_tokens + chunk_tokens)
            flops, nbytes = flops + pf_flops, nbytes + pf_bytes
        if n_dec:
            dc_flops, dc_bytes = self._decode_traffic(float(context))
            flops, nbytes = flops + dc_flops, nbytes + dc_bytes
        return flops, nbytes

    def iteration_work(self, prefill_seqs: np.ndarray, prefill_tokens: np.ndarray, pairs: np.ndarray,
                       prefill_kv_tokens: np.ndarray, decode_seqs: np.ndarray,
                       decode_context: np.ndarray) -> IterationWork:
        """The work of many iterations, each given by its batch's sums as :meth:`_priced` takes them:
        ``prefill_seqs`` chunks of ``prefill_tokens`` tokens in all with Σ c(p + c/2) = ``pairs``,
        whose chunks and cached prefixes hold ``prefill_kv_tokens`` KV tokens, and ``decode_seqs``
        decodes whose contexts sum to ``decode_context``. The same terms as :meth:`step`, on arrays."""
        f = [np.asarray(a, np.float64) for a in (prefill_seqs, prefill_tokens, pairs, prefill_kv_tokens,
                                                 decode_seqs, decode_context)]
        n_pre, chunk_tokens, pair_sum, kv_tokens, n_dec, context = f
        n_tok = chunk_tokens + n_dec
        lin_flops, lin_bytes, head_flops, head_bytes = self._dense_work(n_tok, n_dec + n_pre)
        c = self._array_constants
        pf_flops, pf_bytes = c.attn_flops * pair_sum, c.kv_tok * kv_tokens  # _prefill_traffic's terms
        dc_flops, dc_bytes = self._decode_traffic(context)
        full = [np.broadcast_to(np.asarray(a, np.float64), n_tok.shape)
                for a in (lin_flops, lin_bytes, head_flops, head_bytes)]
        return IterationWork(*full, pf_flops * (n_pre > 0), pf_bytes * (n_pre > 0), dc_flops, dc_bytes, n_tok)

    def price_work(self, work: IterationWork) -> np.ndarray:
        """Seconds of each iteration of ``work`` at this profile's efficiencies, overhead and
        all-reduce: :meth:`step`'s sum of parts, each max(FLOPs / FLOP/s, bytes / bytes/s), on
        arrays (equal to :meth:`step` to rounding; the tests compare them)."""
        c = self._constants
        mx, mn = np.maximum, np.minimum
        t = (self._part(self._linear_compute(work.lin_flops, work.tokens), work.lin_bytes / c.byte_rate, c.serial,
                        mx, mn)
             + self._part(work.head_flops / c.rate16, work.head_bytes / c.byte_rate, c.serial, mx, mn))
        t = t + self._part(work.prefill_flops / c.rate16, work.prefill_bytes / c.byte_rate, c.serial, mx, mn)
        t = t + self._part(work.decode_flops / c.rate16, work.decode_bytes / c.byte_rate, c.serial, mx, mn)
        if self.tp > 1:
            t = t + np.where(work.tokens > 0, c.ar_latency + c.ar_per_token * work.tokens, 0.0)
        return t + self.overhead_s

    def _decode_size_row(self, seqs: int) -> tuple[float, float, float, float]:
        """Seconds, FLOPs and bytes of the linear layers and LM head of a decode-only iteration
        of ``seqs`` sequences, and its all-reduce seconds: :meth:`_priced`'s scalar code."""
        c = self._constants
        return (*self._dense_part(seqs, seqs), c.ar_latency + c.ar_per_token * seqs)

    def decode_steps(self, seqs: np.ndarray | int, context: np.ndarray,
                     work: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Seconds, FLOPs and bytes of decode-only iterations: iteration k has ``seqs[k]`` >= 1
        sequences, never more than the first iteration's (an int: the same number in each), whose
        KV contexts sum to ``context[k]``.
        ``work=False`` leaves FLOPs and bytes out (None): the engine needs only the seconds as it
        runs, and the iteration log asks for the rest in bulk when it seals a chunk.

        Each element equals what :meth:`step` gives for that batch, bit for bit: the batch size
        varies as sequences complete inside a run, and the parts that depend on it alone (the
        MoE experts touched take a ``**``, whose vectorised numpy form may differ from Python's
        in the last bit) come from a table filled by :meth:`step`'s own scalar code, once per
        size; the rest is :meth:`step`'s + , * , / and max on arrays, in the same order."""
        seqs, (t, allreduce, *dense) = size_rows(self, seqs, context.size, (0, 3, 1, 2) if work else (0, 3))
        dt, dc_flops, dc_bytes = self._decode_attention(context)
        t = t + dt
        if self.tp > 1:
            t = t + allreduce
        if not work:
            return t + self.overhead_s, None, None
        flops, nbytes = dense
        return t + self.overhead_s, flops + dc_flops, nbytes + dc_bytes
