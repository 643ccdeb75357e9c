"""A profile whose coefficients the user writes into the scenario.

It lets a user ask "what if a decode step cost half as much" without any catalog, and lets
tests pin service times exactly (``fixed_s`` alone gives a constant step time).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calibration.profile import BatchShape, Provenance, ReplicaSpec, StepCost, prefill_sums

__all__ = ["ExplicitProfile"]


@dataclass(frozen=True)
class ExplicitProfile:
    """T = fixed_s + per_token_s·tokens + prefill_attention_s·Σ c(p + c/2) + decode_attention_s·Σ l.

    ``tokens`` counts prefill chunk tokens plus one per decode sequence; ``c`` and ``p`` are a
    prefill chunk's length and start position, ``l`` a decode sequence's context length.
    """

    fixed_s: float
    per_token_s: float
    prefill_attention_s: float
    decode_attention_s: float
    kv_tokens: int

    @property
    def provenance(self) -> Provenance:
        return Provenance(
            kind="explicit",
            source="coefficients given in the scenario",
            assumptions={
                "fixed_s": self.fixed_s,
                "per_token_s": self.per_token_s,
                "prefill_attention_s": self.prefill_attention_s,
                "decode_attention_s": self.decode_attention_s,
                "kv_capacity_tokens": self.kv_tokens,
            },
        )

    def kv_capacity_tokens(self, replica: ReplicaSpec) -> int:
        """The capacity given in the scenario, whatever the replica's memory settings."""
        return self.kv_tokens

    def step(self, batch: BatchShape) -> StepCost:
        seconds = self.fixed_s
        chunk, dctx = batch.prefill_chunk, batch.decode_context
        chunk_tokens, _, pairs = prefill_sums(chunk, batch.prefill_start)
        if self.per_token_s:
            seconds += self.per_token_s * (chunk_tokens + dctx.size)
        if self.prefill_attention_s and chunk.size:
            seconds += self.prefill_attention_s * pairs
        if self.decode_attention_s and dctx.size:
            seconds += self.decode_attention_s * float(sum(dctx.tolist()))
        return StepCost(seconds=seconds)

    def decode_steps(self, seqs: np.ndarray | int, context: np.ndarray,
                     work: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Seconds of decode-only iterations: iteration k has ``seqs[k]`` >= 1 sequences (an int:
        the same number in each) whose KV contexts sum to ``context[k]``; FLOPs and bytes are not
        modelled (NaN).
        ``work=False`` leaves FLOPs and bytes out (None): the engine needs only the seconds as it
        runs, and the iteration log asks for the rest in bulk when it seals a chunk.

        Each element equals what :meth:`step` gives for that batch, bit for bit: the batch size
        varies as sequences complete inside a run, and the same + and * run on arrays in
        :meth:`step`'s order (an int64 batch size becomes a float64 exactly, as in Python's
        ``float * int``; no ``**`` here, so no per-size table is needed)."""
        if isinstance(seqs, (int, np.integer)):
            seqs = np.full(context.size, seqs)
        if self.per_token_s:
            seconds = self.fixed_s + self.per_token_s * seqs
        else:
            seconds = np.full(context.size, self.fixed_s)
        if self.decode_attention_s:
            seconds = seconds + self.decode_attention_s * context
        if not work:
            return seconds, None, None
        nan = np.full(context.size, np.nan)
        return seconds, nan, nan.copy()
