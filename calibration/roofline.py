"""A step-time and memory model derived from datasheet figures (provenance ``derived``).

Each part of an iteration costs max(FLOPs / achievable FLOP/s, bytes / achievable HBM bytes/s):
linear layers over every token in the batch (weights read once per iteration), prefill
attention, decode attention over the KV cache, the LM head over the sequences that sample,
and two tensor-parallel all-reduces per layer. The parts are summed, not overlapped, plus a
fixed per-iteration overhead (scheduling, kernel launches, sampling). Efficiencies below 1
turn peak figures into achievable ones; they are assumptions until calibration fits them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from calibration.catalog import GPU, ModelArch
from calibration.profile import BatchShape, Provenance, ReplicaSpec, StepCost

__all__ = ["RooflineProfile"]

# Memory vLLM-like engines hold outside weights and KV cache: CUDA context, graphs, workspace.
_FIXED_RESERVE_BYTES = 1.0 * 2**30


@dataclass(frozen=True)
class RooflineProfile:
    """Roofline pricing of one Llama-architecture model on one GPU type at a TP degree."""

    model: ModelArch
    gpu: GPU
    tp: int
    weight_bytes_per_element: float
    activation_bytes_per_element: float
    kv_bytes_per_element: float
    compute_efficiency: float
    memory_efficiency: float
    overhead_s: float
    allreduce_latency_s: float
    quantization: str

    @property
    def provenance(self) -> Provenance:
        return Provenance(
            kind="derived",
            source=f"roofline of {self.model.name} on {self.gpu.name} ({self.quantization}, tp={self.tp}) "
            f"from {self.gpu.source}; shapes from {self.model.source}",
            assumptions={
                "bf16_tflops": self.gpu.bf16_tflops,
                "hbm_tb_s": self.gpu.hbm_tb_s,
                "memory_bytes": float(self.gpu.memory_bytes),
                "interconnect_gb_s": self.gpu.interconnect_gb_s,
                "compute_efficiency": self.compute_efficiency,
                "memory_efficiency": self.memory_efficiency,
                "overhead_s": self.overhead_s,
                "allreduce_latency_s": self.allreduce_latency_s,
            },
        )

    # -- memory model -------------------------------------------------------------------------
    @property
    def weight_bytes_per_gpu(self) -> float:
        """Stored weights per GPU: everything is sharded over the TP group."""
        return self.model.params * self.weight_bytes_per_element / self.tp

    @property
    def kv_bytes_per_token_per_gpu(self) -> float:
        return self.model.kv_bytes_per_token(self.kv_bytes_per_element) / self.tp

    def activation_reserve_bytes(self, max_num_batched_tokens: int) -> float:
        """Peak activation memory of the largest batch, as engines reserve it after profiling."""
        m = self.model
        per_token = (4 * m.hidden + 2 * m.intermediate // self.tp) * self.activation_bytes_per_element
        return _FIXED_RESERVE_BYTES + max_num_batched_tokens * per_token

    def kv_capacity_tokens(self, replica: ReplicaSpec) -> int:
        """KV tokens that fit in the memory left after weights and activations (0 if none)."""
        usable = self.gpu.memory_bytes * replica.gpu_memory_fraction
        free = usable - self.weight_bytes_per_gpu - self.activation_reserve_bytes(replica.max_num_batched_tokens)
        return max(0, int(free // self.kv_bytes_per_token_per_gpu))

    def memory_shortfall_bytes(self, replica: ReplicaSpec) -> float:
        """Bytes per GPU missing for weights plus activations (<= 0 when they fit)."""
        usable = self.gpu.memory_bytes * replica.gpu_memory_fraction
        need = self.weight_bytes_per_gpu + self.activation_reserve_bytes(replica.max_num_batched_tokens)
        return need - usable

    # -- step time ----------------------------------------------------------------------------
    @cached_property
    def _constants(self) -> tuple[float, ...]:
        """Per-iteration constants, computed once (step() is on the engine's hot path)."""
        m, tp = self.model, self.tp
        lin_params = m.layers * m.layer_linear_params / tp
        head_params = m.vocab * m.hidden / tp
        io_per_token = m.layers * (2 * m.hidden + 2 * m.heads * m.head_dim + 2 * m.hidden + 3 * m.intermediate) / tp
        return (
            self.gpu.bf16_tflops * 1e12 * self.compute_efficiency,   # achievable FLOP/s
            self.gpu.hbm_tb_s * 1e12 * self.memory_efficiency,      # achievable bytes/s
            lin_params, lin_params * self.weight_bytes_per_element, io_per_token * self.activation_bytes_per_element,
            head_params, head_params * self.weight_bytes_per_element, m.vocab / tp * self.activation_bytes_per_element,
            4.0 * m.layers * m.heads * m.head_dim / tp,             # attention FLOPs per (query, key) pair
            self.kv_bytes_per_token_per_gpu,
        )

    def step(self, batch: BatchShape) -> StepCost:
        flop_rate, byte_rate, lin_params, lin_wbytes, io_bytes, head_params, head_wbytes, logit_bytes, \
            attn_flops, kv_tok = self._constants
        n_dec = batch.decode_context.size
        n_pre = batch.prefill_chunk.size
        n_tok = (int(batch.prefill_chunk.sum()) if n_pre else 0) + n_dec
        # Sequences that sample a token: every decode, and (at most) every prefill chunk.
        n_logits = n_dec + n_pre

        # Linear layers: 2 FLOPs per weight per token; weights read once; activations in and out.
        lin_flops = 2.0 * n_tok * lin_params
        lin_bytes = lin_wbytes + n_tok * io_bytes
        head_flops = 2.0 * n_logits * head_params
        head_bytes = head_wbytes + n_logits * logit_bytes
        t = max(lin_flops / flop_rate, lin_bytes / byte_rate) + max(head_flops / flop_rate, head_bytes / byte_rate)
        flops, nbytes = lin_flops + head_flops, lin_bytes + head_bytes

        if n_pre:
            c = batch.prefill_chunk.astype(np.float64)
            pairs = float(np.dot(c, batch.prefill_start + c / 2.0))
            pf_flops = attn_flops * pairs
            pf_bytes = kv_tok * float((batch.prefill_start + c).sum())
            t += max(pf_flops / flop_rate, pf_bytes / byte_rate)
            flops, nbytes = flops + pf_flops, nbytes + pf_bytes
        if n_dec:
            ctx = float(batch.decode_context.sum())
            dc_flops = attn_flops * ctx
            dc_bytes = kv_tok * ctx
            t += max(dc_flops / flop_rate, dc_bytes / byte_rate)
            flops, nbytes = flops + dc_flops, nbytes + dc_bytes
        if self.tp > 1 and n_tok:
            # Ring all-reduce after attention and after the MLP of every layer.
            msg = n_tok * self.model.hidden * self.activation_bytes_per_element
            link = self.gpu.interconnect_gb_s * 1e9
            t += 2 * self.model.layers * (self.allreduce_latency_s + 2 * (self.tp - 1) / self.tp * msg / link)
        return StepCost(seconds=t + self.overhead_s, flops=flops, bytes=nbytes)
