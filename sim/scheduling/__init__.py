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
    """``decode_run`` (optional) says how the engine may plan ahead (:mod:`sim.replica`) once
    every running request decodes: ``"grow"`` when the following iterations would decode every
    running request, each taking KV blocks as it grows, until an arrival or a block shortage (or,
    while requests wait that such an iteration could not admit, until the first completion);
    ``"reserved"`` when they would decode the batch, its blocks reserved, until its last request
    completes, whatever waits. Absent, the engine steps one iteration at a time.
    ``max_decodes`` (with ``decode_run``): the most sequences one iteration decodes (None: all).
    """

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
