"""Prefill-first batching (vLLM V0 without chunked prefill; Orca-like), under either admission
policy.

When whole prompts can be admitted (in priority order, while they fit the token budget together,
a sequence slot and KV blocks; admission stops at the first that does not), the iteration runs
only those prefills and the running decodes wait; otherwise it runs one decode step for every
running sequence.

- **recompute** (:class:`PrefillFirstScheduler`): an admitted prompt takes ⌈prompt / block size⌉
  blocks and a decode the blocks its new token needs; when the decodes need more than are free,
  the lowest-priority, most recently admitted request is preempted by recompute until the rest fit.
- **reserve** (:class:`ReservingPrefillFirstScheduler`): a prompt is admitted only if the blocks
  of its whole sequence, ⌈(prompt + output − 1) / block size⌉, are free, and takes them all;
  decodes need no more, so nothing is ever preempted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from sim.core.scheduling.blocks import BatchLimits, blocks_for, grow_or_preempt, sequence_blocks
from sim.core.state import ReplicaState

__all__ = ["PrefillFirstScheduler", "ReservingPrefillFirstScheduler"]


def _one_each(rep: ReplicaState) -> tuple[np.ndarray, np.ndarray, int]:
    """One decode step for every running request (what :func:`grow_or_preempt` wants)."""
    run = rep.run
    return np.ones(run.size, np.int64), rep.reqs.computed[run] + 1, run.size


@dataclass(frozen=True)
class PrefillFirstScheduler(BatchLimits):
    """Prefill-first batching with recompute preemption (the module docstring states the rule)."""

    # Plans (sim.core.plans): when no prompt could be admitted, none can until an arrival or a
    # completion (free blocks only shrink), so decodes of every running request repeat.
    decode_run: ClassVar[str] = "grow"
    reserve: ClassVar[bool] = False  # admission takes the whole sequence's blocks (the reserving subclass)
    max_decodes: ClassVar[None] = None  # decodes are not counted against the token budget

    def schedule(self, rep: ReplicaState, now: float) -> tuple[np.ndarray, np.ndarray]:
        r = rep.reqs
        start = rep.run.size
        left, new_n, bs, reserve = self.budget, [], self.block_size, self.reserve
        while rep.waiting and rep.run.size < self.max_num_seqs:
            i = rep.waiting[0][2]
            rem = int(r.num_tokens[i] - r.computed[i])
            nb = sequence_blocks(r, i, bs) if reserve else int(blocks_for(rem, bs))
            if rem > left or nb > rep.free_blocks:
                break
            rep.admit(i, nb, now)
            new_n.append(rem)
            left -= rem
        if new_n:
            return rep.run[start:], np.asarray(new_n, np.int64)
        if not rep.run.size:
            return rep.run, np.empty(0, np.int64)
        # Reserved blocks cover every token a request will hold: then this takes none and preempts none.
        n, _, _ = grow_or_preempt(rep, _one_each, bs)
        return rep.run, n


@dataclass(frozen=True)
class ReservingPrefillFirstScheduler(PrefillFirstScheduler):
    """Prefill-first batching with reserving admission (``admission: reserve``)."""

    # Plans (sim.core.plans): blocks are reserved, so decodes take none; a prompt that could not be
    # admitted cannot be until a completion frees blocks and a slot, so plans stop there while one waits.
    decode_run: ClassVar[str] = "reserved"
    reserve: ClassVar[bool] = True
