"""KV-block arithmetic shared by the schedulers."""

from __future__ import annotations

import numpy as np

from sim.state import ReplicaState

__all__ = ["blocks_for", "grow_or_preempt"]


def blocks_for(tokens: np.ndarray | int, block_size: int) -> np.ndarray | int:
    """Blocks needed to hold ``tokens`` tokens (ceiling division, exact in integers)."""
    return -(-tokens // block_size)


def grow_or_preempt(rep: ReplicaState, want, block_size: int) -> tuple[np.ndarray, bool]:
    """Give the running requests the blocks their next tokens need, preempting when short.

    ``want(rep)`` returns the tokens each request of ``rep.run`` would compute this iteration.
    While the blocks needed exceed the free ones, the victim (lowest priority, most recently
    admitted) is preempted by recompute and the wants are recomputed, as vLLM does. Returns the
    tokens per running request and whether anything was preempted.
    """
    r = rep.reqs
    preempted = False
    while True:
        run = rep.run
        n = want(rep)
        new = np.maximum(blocks_for(r.computed[run] + n, block_size) - r.blocks[run], 0)
        need = int(new.sum())
        if need <= rep.free_blocks:
            r.blocks[run] += new
            rep.free_blocks -= need
            return n, preempted
        rep.preempt(rep.victim())
        preempted = True
