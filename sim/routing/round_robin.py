"""Round-robin routing: replicas take turns, whatever their load."""

from __future__ import annotations

from typing import Sequence

from sim.state import ReplicaState

__all__ = ["RoundRobin"]


class RoundRobin:
    def __init__(self) -> None:
        self._next = 0

    def choose(self, replicas: Sequence[ReplicaState], eligible: Sequence[int]) -> int:
        # Take the first eligible replica at or after the cursor, so turns stay fair when the
        # central queue limits which replicas may take work.
        n = len(replicas)
        ok = set(eligible)
        for step in range(n):
            k = (self._next + step) % n
            if k in ok:
                self._next = (k + 1) % n
                return k
        raise ValueError("no eligible replica")
