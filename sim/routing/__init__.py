"""Routers: which replica an arriving request goes to."""

from __future__ import annotations

from typing import Protocol

import numpy as np

__all__ = ["Router", "make_router"]


class Router(Protocol):
    def choose(self, load: np.ndarray, eligible: np.ndarray | None) -> int:
        """Pick a replica: ``load[k]`` is replica k's outstanding requests (waiting plus running);
        ``eligible`` the ascending indices it may pick from (never empty), or None for all."""
        ...


def make_router(policy: str) -> Router:
    """The router named by ``router.policy``."""
    if policy == "round_robin":
        from sim.routing.round_robin import RoundRobin
        return RoundRobin()
    if policy == "least_outstanding":
        from sim.routing.least_outstanding import LeastOutstanding
        return LeastOutstanding()
    raise ValueError(f"unknown router policy {policy!r}")
