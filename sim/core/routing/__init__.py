"""Routers: which replica an arriving request goes to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from sim.core.view import ReplicaViews

__all__ = ["Router", "make_router"]


class Router(Protocol):
    def choose(self, load: np.ndarray, eligible: np.ndarray | None, views: ReplicaViews) -> int:
        """Pick a replica: ``load[k]`` is replica k's outstanding requests (waiting plus running);
        ``eligible`` the ascending indices it may pick from (never empty), or None for all;
        ``views`` the replicas' state now (KV blocks, queue, batch), read lazily."""
        ...


def make_router(policy: str) -> Router:
    """The router named by ``router.policy``."""
    if policy == "round_robin":
        from sim.core.routing.round_robin import RoundRobin
        return RoundRobin()
    if policy == "least_kv_load":
        from sim.core.routing.least_kv_load import LeastKVLoad
        return LeastKVLoad()
    if policy == "least_outstanding":
        from sim.core.routing.least_outstanding import LeastOutstanding
        return LeastOutstanding()
    raise ValueError(f"unknown router policy {policy!r}")
