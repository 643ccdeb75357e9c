"""The seam between the engine and the step-time model.

The engine asks one question per iteration -- "how long does this batch take?" -- and never
knows whether the answer was measured, fitted or derived from a datasheet. Everything a
profile knows about its own origin travels in its :class:`Provenance`, so that every result
can say which numbers it rests on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np

__all__ = ["BatchShape", "DecodeSteps", "DecodeStepsProfile", "Profile", "Provenance", "ReplicaSpec", "StepCost", "decode_steps_of",
           "grow_size_table", "prefill_sums", "size_rows"]

ProvenanceKind = Literal["measured", "derived-from-measured", "derived", "explicit"]


@dataclass(frozen=True)
class Provenance:
    """Where a profile's numbers come from.

    ``kind`` is ``measured`` (fitted to timings on real hardware), ``derived-from-measured``,
    ``derived`` (roofline from datasheet figures and assumed efficiencies) or ``explicit``
    (coefficients the user wrote into the scenario).

    ``family`` names the kind of profile that priced the run, so that a comparison can see whether
    two runs were priced alike: ``roofline`` (datasheet), ``measured`` (fitted to kernel timings or to
    one configuration's benchmarks), ``engine`` (a serving engine's efficiencies fitted over its
    benchmarks, ``engine`` naming it) or ``explicit``; unset, it follows from ``kind``.
    """

    kind: ProvenanceKind
    source: str
    assumptions: dict[str, float | str] = field(default_factory=dict)
    family: str | None = None
    engine: str | None = None

    def as_dict(self) -> dict[str, object]:
        """Plain-JSON form, as written into ``summary.json``."""
        family = self.family or _FAMILY_OF_KIND[self.kind]
        return {"kind": self.kind, "family": family, "engine": self.engine or "", "source": self.source,
                "assumptions": dict(self.assumptions)}


_FAMILY_OF_KIND = {"measured": "measured", "derived-from-measured": "measured", "derived": "roofline",
                   "explicit": "explicit"}


@dataclass(frozen=True)
class ReplicaSpec:
    """What the memory model needs to know about one replica (a group of ``tp`` GPUs).

    ``gpu_memory_fraction``: the share of each GPU's memory the engine may fill (weights,
    activations, KV cache). ``kv_memory_fraction``: when set, the KV cache takes only this share of
    what weights and activations leave of it (TensorRT-LLM sizes its cache so), not all of it."""

    tp: int
    gpu_memory_fraction: float
    max_num_batched_tokens: int
    kv_memory_fraction: float | None = None


class BatchShape(NamedTuple):
    """The composition of one engine iteration.

    ``prefill_chunk[i]`` tokens of a prompt are computed starting at position
    ``prefill_start[i]`` (the tokens already in the KV cache); each decode sequence computes one
    token with ``decode_context[j]`` tokens in its KV cache after the step. (A named tuple, not a
    dataclass: the engine makes one per iteration, and a tuple is made in a third of the time.)
    """

    prefill_chunk: np.ndarray
    prefill_start: np.ndarray
    decode_context: np.ndarray

    @property
    def num_tokens(self) -> int:
        """Tokens computed in this iteration (prefill chunk tokens plus one per decode)."""
        return int(self.prefill_chunk.sum()) + int(self.decode_context.size)


class StepCost(NamedTuple):
    """Price of one iteration: wall seconds, and the FLOPs and HBM bytes behind them (NaN when
    the profile does not model them). A named tuple, made once per iteration."""

    seconds: float
    flops: float = float("nan")
    bytes: float = float("nan")


@runtime_checkable
class Profile(Protocol):
    """A step-time model plus a memory model for one (model, quantization, hardware) triple."""

    provenance: Provenance

    def kv_capacity_tokens(self, replica: ReplicaSpec) -> int:
        """How many tokens of KV cache fit on one replica."""
        ...

    def step(self, batch: BatchShape) -> StepCost:
        """Price one iteration."""
        ...


# A profile's vectorised decode pricing, ``decode_steps(seqs, context, work)``: (seconds, FLOPs,
# bytes) per iteration (FLOPs and bytes None when ``work`` is False).
DecodeSteps = Callable[..., tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]


@runtime_checkable
class DecodeStepsProfile(Profile, Protocol):
    """A profile that also prices many decode-only iterations at once: the engine's plans
    (``sim.core.plans``) price a run of decode iterations with one call instead of one ``step`` per
    iteration. Optional: a profile without it is priced iteration by iteration through ``step``
    (the engine's fallback, which looks fewer iterations ahead). Every shipped profile has it."""

    def decode_steps(self, seqs: np.ndarray | int, context: np.ndarray,
                     work: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Seconds, FLOPs and bytes of decode-only iterations: iteration k has ``seqs[k]`` >= 1
        sequences (an int: the same number in each) whose KV contexts sum to ``context[k]``.
        ``work=False`` leaves FLOPs and bytes out (None). Each element must equal what ``step``
        gives for that batch, bit for bit (the equivalence tests check every shipped profile)."""
        ...


def decode_steps_of(profile: Profile) -> DecodeSteps | None:
    """``profile.decode_steps`` when the profile declares it (:class:`DecodeStepsProfile`), else None."""
    return profile.decode_steps if isinstance(profile, DecodeStepsProfile) else None


def grow_size_table(table: np.ndarray, top: int, row: Callable[[int], Sequence[float]]) -> np.ndarray:
    """``table`` grown to hold batch size ``top``: column ``s`` holds ``row(s)``.

    Profiles' ``decode_steps`` price many decode iterations at once, and their batch sizes vary
    (sequences complete inside a run). The parts of the price that depend on the batch size
    alone are tabulated by calling the scalar code ``step`` runs, once per size, rather than
    computed on arrays: numpy's vectorised ``**`` may differ from Python's in the last bit, and
    ``decode_steps`` must equal ``step`` bit for bit. The length doubles (from 64) until it
    exceeds ``top`` and every new size is filled at once, so a table is grown a few times in
    all. The result is a new array (``table`` is never written), so a copy of a profile never
    sees another's table change."""
    n = table.shape[1]
    size = max(n, 64)
    while size <= top:
        size *= 2
    out = np.empty((table.shape[0], size))
    out[:, :n] = table
    for s in range(n, size):
        out[:, s] = row(s)
    return out


def size_rows(owner: Any, seqs: np.ndarray | int, n: int, rows: Sequence[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """``seqs`` as an array of ``n`` batch sizes (an int: the same in each, else non-increasing,
    as sequences only leave a run) and rows ``rows`` of ``owner``'s per-size table at those sizes
    (its ``_decode_sizes``, grown with its ``_decode_size_row`` as :func:`grow_size_table` says).
    Only the rows asked for are gathered: a row is contiguous, and indexing it costs a quarter of
    ``take`` over the whole table on a plan's ~30 sizes."""
    if isinstance(seqs, (int, np.integer)):
        seqs = np.full(n, seqs)
    sizes = owner._decode_sizes
    top = int(seqs[0]) if seqs.size else 0  # the largest
    if top >= sizes.shape[1]:
        sizes = grow_size_table(sizes, top, owner._decode_size_row)
        object.__setattr__(owner, "_decode_sizes", sizes)
    return seqs, [sizes[i][seqs] for i in rows]


def prefill_sums(chunk: np.ndarray, start: np.ndarray) -> tuple[int, int, float]:
    """A batch's prefill chunks as the profiles price them: their tokens, their cached prefixes'
    tokens, and their attention pairs Σ c(p + c/2). Token sums go through Python lists (exact, and
    cheaper than numpy's reductions on small arrays); one chunk, the common case, is priced in
    Python floats, the same product np.dot forms."""
    if chunk.size == 1:
        c, p = int(chunk[0]), int(start[0])
        cf = float(c)
        return c, p, cf * (float(p) + cf / 2.0)
    if chunk.size:
        cf = chunk.astype(np.float64)
        return sum(chunk.tolist()), sum(start.tolist()), float(np.dot(cf, start + cf / 2.0))
    return 0, 0, 0.0
