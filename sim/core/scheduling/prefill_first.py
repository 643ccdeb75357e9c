"""Prefill-first batching (vLLM V0 without chunked prefill; Orca-like).

When whole prompts can be admitted, the iteration runs only those prefills and the running
decodes wait; otherwise it runs one decode step for every running sequence, preempting by
recompute when KV blocks run out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from sim.core.scheduling.blocks import blocks_for, grow_or_preempt
from sim.core.state import ReplicaState

__all__ = ["PrefillFirstScheduler"]


def _one_each(rep: ReplicaState) -> tuple[np.ndarray, np.ndarray, int]:
    """One decode step for every running request (what :func:`grow_or_preempt` wants)."""
    run = rep.run
    return np.ones(run.size, np.int64), rep.reqs.computed[run] + 1, run.size


@dataclass(frozen=True)
class PrefillFirstScheduler:
    # Plans (sim.core.plans): when no prompt could be admitted, none can until an arrival or a
    # completion (free blocks only shrink), so decodes of every running request repeat.
    decode_run: ClassVar[str] = "grow"
    max_num_seqs: int
    budget: int  # max_num_batched_tokens
    block_size: int
    max_decodes: ClassVar[None] = None  # decodes are not counted against the token budget

    def schedule(self, rep: ReplicaState, now: float) -> tuple[np.ndarray, np.ndarray]:
        r = rep.reqs
        start = rep.run.size
        left, new_n = self.budget, []
        while rep.waiting and rep.run.size < self.max_num_seqs:
            i = rep.waiting[0][2]
            rem = int(r.num_tokens[i] - r.computed[i])
            nb = int(blocks_for(rem, self.block_size))
            if rem > left or nb > rep.free_blocks:
                break
            rep.admit(i, nb, now)
            new_n.append(rem)
            left -= rem
        if new_n:
            return rep.run[start:], np.asarray(new_n, np.int64)
        if not rep.run.size:
            return rep.run, np.empty(0, np.int64)
        n, _, _ = grow_or_preempt(rep, _one_each, self.block_size)
        return rep.run, n
