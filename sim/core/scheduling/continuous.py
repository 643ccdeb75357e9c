"""Iteration-level continuous batching in the style of vLLM's V1 scheduler, under either admission
policy.

Each iteration: running requests first, in admission order, each given the tokens it still
needs (one for a decode, the rest of its prompt for a prefill) until the token budget runs out;
then, if nothing was preempted, waiting requests in priority order while there is budget, a
sequence slot and KV blocks. With chunked prefill a prompt may take only part of the budget and
continue next iteration; without it a prompt is admitted only whole. Admission stops at the first
waiting request that cannot be admitted (first come, first served within a priority).

The admission policy decides what KV blocks are:

- **recompute** (:class:`ContinuousScheduler`, vLLM's): a request admitted with a chunk of ``c``
  tokens takes ⌈c / block size⌉ blocks; each iteration a running request takes the blocks its new
  tokens need; when the running requests need more than are free, the lowest-priority, most
  recently admitted one is preempted (its blocks freed, prompt and output so far prefilled again
  when readmitted) until the rest fit, and nothing is admitted in that iteration.
- **reserve** (:class:`ReservingContinuousScheduler`, TensorRT-LLM's ``GUARANTEED_NO_EVICT``): a
  request is admitted only if the blocks of its whole sequence, ⌈(prompt + output − 1) / block
  size⌉, are free, and takes them all at once; a running request never needs another, so nothing
  is ever preempted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from sim.core.fast import total
from sim.core.scheduling.blocks import BatchLimits, blocks_for, grow_or_preempt, sequence_blocks
from sim.core.state import ReplicaState

__all__ = ["ContinuousScheduler", "ReservingContinuousScheduler"]


@dataclass(frozen=True)
class ContinuousScheduler(BatchLimits):
    """Continuous batching with recompute preemption (the module docstring states the rule)."""

    # Plans (sim.core.plans): once every running request decodes, each iteration decodes them all (at
    # most ``budget`` of them) until an arrival or a preemption; with nothing waiting, a completion
    # changes only who is running; a waiting request that a decode-only batch could not admit stays
    # blocked until a completion (the budget and slots left are the same, free blocks only fewer).
    decode_run: ClassVar[str] = "grow"
    # Whether admission takes the whole sequence's blocks (ReservingContinuousScheduler). Read once
    # per pass, so the recompute path pays one attribute load and one branch per admission tried.
    reserve: ClassVar[bool] = False
    chunked: bool

    @property
    def max_decodes(self) -> int:
        """The most sequences one iteration decodes: one token each from the budget."""
        return self.budget

    def _running_tokens(self, rep: ReplicaState) -> tuple[np.ndarray, np.ndarray, int]:
        """What :func:`grow_or_preempt` wants: each running request's tokens this iteration, the
        tokens it then holds, and their sum."""
        r, run = rep.reqs, rep.run
        num = r.num_tokens[run]
        comp = r.computed[run]
        rem = num - comp
        wanted = total(rem)
        if wanted <= self.budget:  # the common case: every request gets all it still needs
            return rem, num, wanted
        # Sequential budget in admission order, vectorised: each takes what is left after those before it.
        before = np.cumsum(rem) - rem
        n = np.minimum(rem, np.maximum(self.budget - before, 0))
        return n, comp + n, total(n)

    def schedule(self, rep: ReplicaState, now: float) -> tuple[np.ndarray, np.ndarray]:
        r = rep.reqs
        preempted = False
        if rep.run.size:
            # Reserved blocks cover every token a request will hold: then this takes none and preempts none.
            n, total, preempted = grow_or_preempt(rep, self._running_tokens, self.block_size)
            left = self.budget - total
        else:
            n, left = np.empty(0, np.int64), self.budget
        if left <= 0:
            # The budget may have run out part way through the running requests: those after
            # get no tokens and sit this iteration out. Nothing new is admitted.
            run = rep.run
            mask = n > 0
            return run[mask], n[mask]
        # Every running request got all it needs (a running request always needs >= 1 token:
        # when its computed tokens reach num_tokens it emits one), and an admitted one gets
        # min(rem, left) >= 1: no request has n = 0, so no mask is needed.
        new_n: list[int] = []
        if not preempted:
            bs, waiting, reserve = self.block_size, rep.waiting, self.reserve
            while waiting and left > 0 and rep.run.size < self.max_num_seqs:
                i = waiting[0][2]
                rem = int(r.num_tokens[i] - r.computed[i])
                if rem > left and not self.chunked:
                    break
                c = min(rem, left)
                nb = sequence_blocks(r, i, bs) if reserve else int(blocks_for(c, bs))
                if nb > rep.free_blocks:
                    break
                rep.admit(i, nb, now)
                new_n.append(c)
                left -= c
        if new_n:  # the admitted requests' tokens after the running ones' (filled in: cheaper than concatenating)
            out = np.empty(n.size + len(new_n), np.int64)
            out[:n.size] = n
            out[n.size:] = new_n
            n = out
        return rep.run, n


@dataclass(frozen=True)
class ReservingContinuousScheduler(ContinuousScheduler):
    """Continuous batching with reserving admission (``admission: reserve``): the same batches,
    but a request takes its whole sequence's KV blocks when admitted and nothing is preempted."""

    # Plans (sim.core.plans): blocks are reserved, so decodes take none; a waiting request that a
    # decode-only batch could not admit stays blocked until a completion frees blocks and a slot
    # (the budget and slots left are the same, free blocks too), so plans stop there while one waits.
    decode_run: ClassVar[str] = "reserved"
    reserve: ClassVar[bool] = True
