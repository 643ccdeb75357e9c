"""Batch schedulers: each decides, once per iteration, which requests compute how many tokens.

A scheduler admits from the replica's waiting queue, allocates KV blocks and preempts through
:class:`~sim.core.state.ReplicaState`; the engine then prices the batch and commits its tokens.
Each batching policy (``engine.scheduler``) comes under one of two admission policies
(``engine.admission``), whose rules the scheduler modules state: ``recompute`` (blocks taken as
requests grow, preemption by recompute when they run out) and ``reserve`` (a request's whole
sequence's blocks taken at admission, no preemption). Each pair is its own class, so that each
states its own plan claim.
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
    each taking KV blocks as it grows, until an arrival or a block shortage; ``"reserved"`` when
    they would decode every running request, its blocks reserved (decodes take none), until an
    arrival or its last request completes. In both, while requests wait that such an iteration
    could not admit, they stay blocked until the first completion, so the run ends there; unless
    the class also states ``closed_batch = True``: nothing joins a batch in flight, whatever waits
    (static batching). ``max_decodes``: the most sequences one iteration decodes (None: all).

    The claim is off by default and never inherited: only a class that states ``decode_run`` (and
    ``closed_batch``) in its own body claims it (:func:`plan_claim`), so a scheduler derived from
    another that forms batches differently is stepped one iteration at a time until it says
    otherwise. A wrong claim changes results; ``tests/test_decode_runs.py`` checks every scheduler
    and admission policy in the config's lists.
    """

    block_size: int

    def schedule(self, rep: ReplicaState, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Return (request indices, tokens to compute for each) for the next iteration."""
        ...


@dataclass(frozen=True)
class PlanClaim:
    """How a scheduler's batches repeat (see :class:`BatchScheduler`). ``closed``: nothing joins a
    batch in flight, so a waiting request does not end a run at the first completion."""

    mode: Literal["grow", "reserved"]
    max_decodes: int | None
    closed: bool = False


def plan_claim(scheduler: BatchScheduler) -> PlanClaim | None:
    """The claim ``scheduler``'s own class states (None: it states none; a parent's does not count)."""
    own = type(scheduler).__dict__
    mode = own.get("decode_run")
    if mode is None:
        return None
    if mode not in ("grow", "reserved"):
        raise ValueError(f"{type(scheduler).__name__}.decode_run = {mode!r}: must be 'grow' or 'reserved'")
    return PlanClaim(mode, getattr(scheduler, "max_decodes", None), bool(own.get("closed_batch", False)))


def make_scheduler(policy: str, *, max_num_seqs: int, max_num_batched_tokens: int, block_size: int,
                   chunked: bool, admission: str = "recompute") -> BatchScheduler:
    """The scheduler named by ``engine.scheduler`` under ``engine.admission`` (static batching
    reserves whole sequences under either)."""
    if admission not in ("recompute", "reserve"):
        raise ValueError(f"unknown admission {admission!r}")
    reserve = admission == "reserve"
    if policy == "continuous":
        from sim.core.scheduling.continuous import ContinuousScheduler, ReservingContinuousScheduler
        return (ReservingContinuousScheduler if reserve else ContinuousScheduler)(
            max_num_seqs, max_num_batched_tokens, block_size, chunked)
    if policy == "prefill_first":
        from sim.core.scheduling.prefill_first import PrefillFirstScheduler, ReservingPrefillFirstScheduler
        return (ReservingPrefillFirstScheduler if reserve else PrefillFirstScheduler)(
            max_num_seqs, max_num_batched_tokens, block_size)
    if policy == "static":
        from sim.core.scheduling.static import StaticScheduler
        return StaticScheduler(max_num_seqs, max_num_batched_tokens, block_size)
    raise ValueError(f"unknown scheduler {policy!r}")
