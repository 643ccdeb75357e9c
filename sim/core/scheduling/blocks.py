"""KV-block arithmetic shared by the schedulers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from sim.core.fast import constant, total
from sim.core.state import ReplicaState, RequestState

__all__ = ["BatchLimits", "Want", "blocks_for", "grow_or_preempt", "sequence_blocks"]

@dataclass(frozen=True)
class BatchLimits:
    """What every scheduler is given, under vLLM's names: at most ``max_num_seqs`` sequences and
    ``budget`` tokens (max_num_batched_tokens) per iteration, KV blocks of ``block_size`` tokens.
    A base of fields only: a scheduler's plan claim (``decode_run``) is its own class's, never
    inherited from here."""

    max_num_seqs: int
    budget: int  # max_num_batched_tokens
    block_size: int


# ``want(rep) -> (n, end, total)``: the tokens each request of ``rep.run`` would compute this
# iteration, the tokens each would then hold (``computed + n``) and ``n``'s sum as a Python int.
Want = Callable[[ReplicaState], tuple[np.ndarray, np.ndarray, int]]


# (block size - 1, block size) as 0-d constants (sim.core.fast.constant), made once per block size.
_CONSTANTS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def blocks_for(tokens: np.ndarray | int, block_size: int) -> np.ndarray | int:
    """Blocks needed to hold ``tokens`` tokens: the ceiling of ``tokens / block_size``, exact in
    integers (two integer operations where ``-(-tokens // block_size)`` takes three). On arrays
    (the engine's hot path) the block size's constants are 0-d arrays, made once per size."""
    if not isinstance(tokens, np.ndarray):
        return (tokens + (block_size - 1)) // block_size
    c = _CONSTANTS.get(block_size)
    if c is None:
        c = _CONSTANTS[block_size] = (constant(block_size - 1), constant(block_size))
    return (tokens + c[0]) // c[1]


def sequence_blocks(r: RequestState, i: int, block_size: int) -> int:
    """Blocks for request ``i``'s whole sequence, what reserving admission (and static batching)
    takes at once: its prompt and output but the last token, whose KV is never stored (so a
    request never needs a block more than this, and never grows past it)."""
    return int(blocks_for(int(r.prompt[i] + r.output[i] - 1), block_size))


def grow_or_preempt(rep: ReplicaState, want: Want, block_size: int) -> tuple[np.ndarray, int, bool]:
    """Give the running requests the blocks their next tokens need, preempting when short.

    ``want(rep)`` returns ``(n, end, total)`` (see :data:`Want`). While the blocks needed exceed
    the free ones, the victim (lowest priority, most recently admitted) is preempted by recompute
    and the wants are recomputed, as vLLM does. Returns the tokens per running request, their sum
    and whether anything was preempted. Requests that hold their whole sequence's blocks
    (:func:`sequence_blocks`, reserving admission) need none: then it takes none and never preempts.
    """
    # On the engine's hot path (once per iteration, ~40 requests): each numpy call costs about a
    # microsecond whatever the size, so the blocks each request holds after the iteration are one
    # np.maximum of what it needs and what it has, and integer sums are sim.core.fast.total.
    r = rep.reqs
    preempted = False
    while True:
        run = rep.run
        n, end, tokens = want(rep)
        have = r.blocks[run]
        hold = np.maximum(blocks_for(end, block_size), have)
        need = total(hold - have)
        if need <= rep.free_blocks:
            if need:
                r.blocks[run] = hold
                rep.free_blocks -= need
            return n, tokens, preempted
        rep.preempt(rep.victim())
        preempted = True
