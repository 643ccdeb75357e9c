"""Least-outstanding-requests routing (join the shortest queue); ties go to the lowest index."""

from __future__ import annotations

import numpy as np

__all__ = ["LeastOutstanding"]


class LeastOutstanding:
    def choose(self, load: np.ndarray, eligible: np.ndarray | None, views: object = None) -> int:
        if eligible is None:
            return int(load.argmin())  # the first minimum: the lowest index
        return int(eligible[load[eligible].argmin()])
