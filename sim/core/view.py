"""What routing policies see of the replicas: one read-only view, true at the current simulated
time.

A replica's own state runs ahead of time while a plan is in flight (:mod:`sim.core.plans` commits
a run of decode iterations at once), so policies never read it directly: :class:`ReplicaViews`
asks each replica for what stepping one iteration at a time would show now
(:meth:`~sim.core.replica.ReplicaEngine.view`), lazily, only for the replicas and fields a policy
reads. ``tests/test_decode_runs.py`` checks that every router gives the same results with plans
on and off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from sim.core.replica import ReplicaEngine

__all__ = ["ReplicaViews"]


class ReplicaViews:
    """The replicas as a router sees them when the request it routes arrives: ``created`` is
    when the event that brought the request was created (time and SimPy id; it decides ties at an
    iteration boundary as stepping's event order would)."""

    __slots__ = ("_engines", "_load", "_created")

    def __init__(self, engines: Sequence[ReplicaEngine], load: np.ndarray, created: tuple[float, int] | None):
        self._engines, self._load, self._created = engines, load, created

    def __len__(self) -> int:
        return len(self._engines)

    def outstanding(self, k: int) -> int:
        """Requests routed to replica ``k`` and not yet completed (waiting or running)."""
        return int(self._load[k])

    def waiting(self, k: int) -> int:
        """Requests in replica ``k``'s queue, not yet admitted (preempted ones included)."""
        return len(self._engines[k].state.waiting)

    def running(self, k: int) -> int:
        """Sequences in replica ``k``'s iteration in flight (0 when it is idle)."""
        return self._engines[k].view(self._created)[1]

    def kv_blocks_used(self, k: int) -> int:
        """KV-cache blocks replica ``k`` holds now."""
        return self._engines[k].view(self._created)[0]

    def kv_blocks_free(self, k: int) -> int:
        """KV-cache blocks replica ``k`` has free now."""
        return self._engines[k].state.total_blocks - self.kv_blocks_used(k)
