"""Round-robin routing: replicas take turns, whatever their load."""

from __future__ import annotations

import numpy as np

__all__ = ["RoundRobin"]


class RoundRobin:
    def __init__(self) -> None:
        self._next = 0

    def choose(self, load: np.ndarray, eligible: np.ndarray | None, views: object = None) -> int:
        # Take the first eligible replica at or after the cursor, so turns stay fair when the
        # central queue limits which replicas may take work.
        n = load.size
        if eligible is None:
            k = self._next
        else:
            later = eligible[eligible >= self._next]
            k = int(later[0] if later.size else eligible[0])
        self._next = (k + 1) % n
        return k
