"""Batch schedulers: each decides, once per iteration, which requests compute how many tokens.

A scheduler admits from the replica's waiting queue, allocates KV blocks and preempts through
:class:`~sim.core.state.ReplicaState`; the engine then prices the batch and commits its tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from sim.core.state import ReplicaState

__all__ = ["BatchScheduler", "PlanClaim", "make_scheduler", "plan_claim"]


class BatchScheduler(Protocol):
    """Forms each iteration's batch. Optionally claims how its batches repeat, so that the engine
    may plan ahead (:mod:`sim.core.plans`): a class attribute ``decode_run``, ``"grow"`` when, once
    every running request decodes, the following iterations would decode every running request,
    each taking KV blocks as it grows, until an arrival or a block shortage (or, while requests
    wait that such an iteration could not admit, until the first completion); ``"reserved"`` when
    they would decode the batch, its blocks reserved, until its last request completes, whatever
    waits; and ``max_decodes``, the most sequences one iteration decodes (None: all).

    The claim is off by default and never inherited: only a class that states ``decode_run`` in
    its own body claims it (:func:`plan_claim`), so a scheduler derived from another that forms
    batches differently is stepped one iteration at a time until it says otherwise. A wrong claim
    changes results; ``tests/test_decode_runs.py`` checks every scheduler in the config's list.
    """

    block_size: int

    def schedule(self, rep: ReplicaState, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Return (request indices, tokens to compute for each) for the next iteration."""
        ...


@dataclass(frozen=True)
class PlanClaim:
    """How a scheduler's batches repeat (see :class:`BatchScheduler`)."""

    mode: Literal["grow", "reserved"]
    max_decodes: int | None


def plan_claim(scheduler: BatchScheduler) -> PlanClaim | None:
    """The claim ``scheduler``'s own class states (None: it states none; a parent's does not count)."""
    mode = type(scheduler).__dict__.get("decode_run")
    if mode is None:
        return None
    if mode not in ("grow", "reserved"):
        raise ValueError(f"{type(scheduler).__name__}.decode_run = {mode!r}: must be 'grow' or 'reserved'")
    return PlanClaim(mode, getattr(scheduler, "max_decodes", None))


def make_scheduler(policy: str, *, max_num_seqs: int, max_num_batched_tokens: int, block_size: int,
                   chunked: bool) -> BatchScheduler:
    """The scheduler named by ``engine.scheduler``."""
    if policy == "continuous":
        from sim.core.scheduling.continuous import ContinuousScheduler
        return ContinuousScheduler(max_num_seqs, max_num_batched_tokens, block_size, chunked)
    if policy == "prefill_first":
        from sim.core.scheduling.prefill_first import PrefillFirstScheduler
        return PrefillFirstScheduler(max_num_seqs, max_num_batched_tokens, block_size)
    if policy == "static":
        from sim.core.scheduling.static import StaticScheduler
        return StaticScheduler(max_num_seqs, max_num_batched_tokens, block_size)
    raise ValueError(f"unknown scheduler {policy!r}")
