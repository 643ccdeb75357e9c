"""Closed-loop load: N users, each sending a request, waiting for the whole response, thinking,
then sending the next. This is how serving benchmarks usually drive an engine (a fixed
``concurrency``); the offered rate is set by the engine's own latency, not by a clock.

Only the first request of each user has an arrival time in the RequestTable; every later one
names the request it follows (``after_id``) and the think time to wait after that request
ends (``think_s``). The engine releases it then.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from workloads.limits import MAX_USERS

__all__ = ["ClosedLoopArrivals", "ThinkTime"]

_Strict = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ThinkTime(BaseModel):
    """Time a user waits between a response and their next request."""

    model_config = _Strict
    mean_s: StrictFloat = Field(0.0, ge=0, description="mean think time in seconds (0: send at once)")
    dist: Literal["exponential", "fixed"] = Field("exponential", description="exponential: drawn with mean mean_s; "
                                                  "fixed: always mean_s")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.mean_s == 0 or self.dist == "fixed":
            return np.full(n, self.mean_s)
        return rng.exponential(self.mean_s, size=n)


class ClosedLoopArrivals(BaseModel):
    """``users`` concurrent users with think time; their first requests start within ``ramp_up_s``.
    Each user sends a request, waits for the whole response, thinks, then sends the next: how
    serving benchmarks drive an engine (``--concurrency``). Needs ``num_requests``."""

    model_config = _Strict
    process: Literal["closed_loop"] = Field(description="N users, each with one request in flight at a time")
    users: StrictInt = Field(ge=1, le=MAX_USERS, description="concurrent users (a benchmark's concurrency; at most "
                                                           "10^7, beyond any serving fleet's)")
    think_time: ThinkTime = Field(ThinkTime(), description="what a user waits between a response and their next "
                                  "request (default: none)")
    ramp_up_s: StrictFloat = Field(0.0, ge=0,
                                   description="first requests spread evenly over this time (0: all at once)")

    def first_times(self, user: np.ndarray) -> np.ndarray:
        """When each of the users numbered ``user`` sends their first request: evenly over the
        ramp-up. Only the users asked about are computed (a run may use fewer than ``users``)."""
        return np.asarray(user, np.float64) * (self.ramp_up_s / self.users)
