"""Arrival processes: when requests (or conversations) start.

Open-loop processes (Poisson, Gamma, Weibull, Markov-modulated, trace replay) fix every arrival
time in advance; the closed loop fixes only each user's first request and lets the engine
release the rest as responses finish. ``process`` selects one; it defaults to ``poisson``.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Discriminator, Tag

from workloads.arrivals.closed_loop import ClosedLoopArrivals, ThinkTime
from workloads.arrivals.mmpp import MMPPArrivals, MMPPState
from workloads.arrivals.rate_profile import DiurnalRate, RampRate, RateProfile, StepRate, TableRate
from workloads.arrivals.renewal import GammaArrivals, PoissonArrivals, WeibullArrivals
from workloads.arrivals.replay import TraceArrivals

__all__ = ["ARRIVAL_PROCESSES", "ArrivalSpec", "ClosedLoopArrivals", "DiurnalRate", "GammaArrivals", "MMPPArrivals",
           "MMPPState", "PoissonArrivals", "RampRate", "RateProfile", "StepRate", "TableRate", "ThinkTime",
           "TraceArrivals", "WeibullArrivals"]

ARRIVAL_PROCESSES = ("poisson", "gamma", "weibull", "mmpp", "closed_loop", "trace")


def _process_of(v: Any) -> str:
    """The tag of an arrival spec; a mapping without ``process`` is Poisson."""
    if isinstance(v, dict):
        p = v.get("process", "poisson")
        return p if isinstance(p, str) else repr(p)
    return getattr(v, "process", "poisson")


ArrivalSpec = Annotated[
    Union[Annotated[PoissonArrivals, Tag("poisson")], Annotated[GammaArrivals, Tag("gamma")],
          Annotated[WeibullArrivals, Tag("weibull")], Annotated[MMPPArrivals, Tag("mmpp")],
          Annotated[ClosedLoopArrivals, Tag("closed_loop")], Annotated[TraceArrivals, Tag("trace")]],
    Discriminator(_process_of),
]
