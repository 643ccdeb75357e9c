"""Batch schedulers: each decides, once per iteration, which requests compute how many tokens.

A scheduler admits from the replica's waiting queue, allocates KV blocks and preempts through
:class:`~sim.state.ReplicaState`; the engine then prices the batch and commits its tokens.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from sim.state import ReplicaState

__all__ = ["BatchScheduler", "make_scheduler"]


class BatchScheduler(Protocol):
    """``decode_run`` (optional): ``"grow"`` or ``"reserved"`` when a decode-only batch of every
    running request would repeat unchanged until an arrival, a completion or a preemption, its
    sequences taking KV blocks as they grow or holding reserved ones; absent, the engine steps one
    iteration at a time."""

    block_size: int

    def schedule(self, rep: ReplicaState, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Return (request indices, tokens to compute for each) for the next iteration."""
        ...


def make_scheduler(policy: str, *, max_num_seqs: int, max_num_batched_tokens: int, block_size: int,
                   chunked: bool) -> BatchScheduler:
    """The scheduler named by ``engine.scheduler``."""
    if policy == "continuous":
        from sim.scheduling.continuous import ContinuousScheduler
        return ContinuousScheduler(max_num_seqs, max_num_batched_tokens, block_size, chunked)
    if policy == "prefill_first":
        from sim.scheduling.prefill_first import PrefillFirstScheduler
        return PrefillFirstScheduler(max_num_seqs, max_num_batched_tokens, block_size)
    if policy == "static":
        from sim.scheduling.static import StaticScheduler
        return StaticScheduler(max_num_seqs, max_num_batched_tokens, block_size)
    raise ValueError(f"unknown scheduler {policy!r}")
