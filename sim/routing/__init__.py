"""Routers: which replica an arriving request goes to."""

from __future__ import annotations

from typing import Protocol, Sequence

from sim.state import ReplicaState

__all__ = ["Router", "make_router"]


class Router(Protocol):
    def choose(self, replicas: Sequence[ReplicaState], eligible: Sequence[int]) -> int:
        """Pick one replica index out of ``eligible`` (never empty)."""
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
