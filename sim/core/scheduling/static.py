"""Static (request-level) batching: the baseline continuous batching is measured against.

When the replica is empty, it admits up to ``max_num_seqs`` waiting requests whose prompts fit
the token budget together, reserving KV blocks for each one's whole sequence (so nothing is
ever preempted), prefills them in one iteration and decodes until the last of them finishes.
Nothing new joins a batch in flight. It reserves under either ``admission`` policy: static
batching is reserving admission by construction, so the policy changes nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from sim.core.scheduling.blocks import BatchLimits, sequence_blocks
from sim.core.state import ReplicaState

__all__ = ["StaticScheduler"]


@dataclass(frozen=True)
class StaticScheduler(BatchLimits):
    # Plans (sim.core.plans): a batch in flight decodes, its blocks reserved, until its last request
    # completes, whatever waits (a closed batch: nothing joins it in flight).
    decode_run: ClassVar[str] = "reserved"
    closed_batch: ClassVar[bool] = True
    max_decodes: ClassVar[None] = None  # decodes are not counted against the token budget

    def schedule(self, rep: ReplicaState, now: float) -> tuple[np.ndarray, np.ndarray]:
        r = rep.reqs
        if rep.run.size:
            return rep.run, np.ones(rep.run.size, np.int64)
        left, new_n = self.budget, []
        while rep.waiting and rep.run.size < self.max_num_seqs:
            i = rep.waiting[0][2]
            rem = int(r.num_tokens[i])
            nb = sequence_blocks(r, i, self.block_size)
            if rem > left or nb > rep.free_blocks:
                break
            rep.admit(i, nb, now)
            new_n.append(rem)
            left -= rem
        return rep.run, np.asarray(new_n, np.int64)
