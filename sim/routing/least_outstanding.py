"""Least-outstanding-requests routing (join the shortest queue); ties go to the lowest index."""

from __future__ import annotations

from typing import Sequence

from sim.state import ReplicaState

__all__ = ["LeastOutstanding"]


class LeastOutstanding:
    def choose(self, replicas: Sequence[ReplicaState], eligible: Sequence[int]) -> int:
        return min(eligible, key=lambda k: replicas[k].outstanding)
