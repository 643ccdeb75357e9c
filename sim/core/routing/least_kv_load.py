"""Least-KV-load routing: the replica whose KV cache holds the fewest blocks now (every replica
has the same cache), ties to the fewest outstanding requests, then the lowest index. It reads the
replicas' KV state through :class:`~sim.core.view.ReplicaViews`, which is true at the current time
even while plans run ahead."""

from __future__ import annotations

import numpy as np

from sim.core.view import ReplicaViews

__all__ = ["LeastKVLoad"]


class LeastKVLoad:
    def choose(self, load: np.ndarray, eligible: np.ndarray | None, views: ReplicaViews) -> int:
        candidates = range(load.size) if eligible is None else eligible.tolist()
        return min(candidates, key=lambda k: (views.kv_blocks_used(k), int(load[k]), k))
