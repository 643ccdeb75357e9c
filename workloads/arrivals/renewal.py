"""Renewal arrival processes: Poisson, and Gamma or Weibull inter-arrival gaps with a chosen burstiness.

Each is set by its mean rate and, for Gamma and Weibull, the coefficient of variation (CV) of the
gaps: CV 1 is Poisson-like, above 1 is bursty (arrivals bunch, then pause), below 1 is more regular.
Either a constant ``rate_per_s`` or a ``rate_profile`` (diurnal, steps, ramp, table) sets the rate;
with a profile, gaps are drawn in operational time and mapped through the profile (see
:mod:`workloads.arrivals.rate_profile`).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, model_validator

from workloads.arrivals.rate_profile import Knots, RateProfile
from workloads.limits import MAX_RATE_PER_S

__all__ = ["GammaArrivals", "PoissonArrivals", "WeibullArrivals", "weibull_shape_for_cv"]

_Strict = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _Renewal(BaseModel):
    model_config = _Strict
    rate_per_s: StrictFloat | None = Field(None, gt=0, le=MAX_RATE_PER_S,
                                           description="mean arrivals per second, constant (at most 10^9; with "
                                           "sessions it counts conversations, not requests); give exactly one of "
                                           "rate_per_s and rate_profile")
    rate_profile: RateProfile | None = Field(None, description="a rate that varies over time, instead of "
                                             "rate_per_s; its shape picks one")

    @model_validator(mode="after")
    def _one_rate(self):  # type: ignore[no-untyped-def]
        if (self.rate_per_s is None) == (self.rate_profile is None):
            raise ValueError("give exactly one of rate_per_s or rate_profile")
        return self

    def _unit_gaps(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Gaps of the base process at rate 1 (mean 1)."""
        raise NotImplementedError

    def _knots(self) -> Knots | None:
        return None if self.rate_profile is None else self.rate_profile.knots()

    @property
    def mean_rate_per_s(self) -> float:
        """The constant rate, or a profile's mean over its first period or span."""
        if self.rate_per_s is not None:
            return self.rate_per_s
        k = self._knots()
        assert k is not None
        span = k.period or k.span
        return float(k.cum[-1] / span) if span > 0 else float(k.rate[-1])

    def expected_count(self, duration: float) -> float:
        """Expected arrivals before ``duration``: rate x duration, or the profile's integral."""
        knots = self._knots()
        if knots is None:
            return self.rate_per_s * duration  # type: ignore[operator]
        return float(knots.cumulative(np.array([duration]))[0])

    @property
    def rate_text(self) -> str:
        """The rate, for messages: "at 5 requests/s" or "under its rate profile"."""
        return f"at {self.rate_per_s:g} requests/s" if self.rate_per_s is not None else "under its rate_profile"

    def times(self, rng: np.random.Generator, n: int | None, duration: float | None) -> np.ndarray:
        """Sorted arrival times: the first ``n``, or all before ``duration``."""
        knots = self._knots()

        def to_time(s: np.ndarray) -> np.ndarray:
            return s / self.rate_per_s if knots is None else knots.inverse(s)

        if n is not None:
            return to_time(np.cumsum(self._unit_gaps(rng, n)))
        assert duration is not None
        horizon = duration * self.rate_per_s if knots is None else float(knots.cumulative(np.array([duration]))[0])
        # Draw in blocks until operational time passes the horizon: the expected count plus a
        # margin of ten standard deviations (a renewal count's variance is about CV² times its mean).
        block = int(horizon + 10 * getattr(self, "cv", 1.0) * math.sqrt(horizon) + 16)
        out, s0 = [], 0.0
        while True:
            s = s0 + np.cumsum(self._unit_gaps(rng, block))
            out.append(s[s < horizon])
            if s[-1] >= horizon:
                return to_time(np.concatenate(out))
            s0 = float(s[-1])


class PoissonArrivals(_Renewal):
    """Poisson arrivals (exponential gaps, CV 1): independent users, the classic open-loop load."""

    process: Literal["poisson"] = Field("poisson", description="independent users: exponential gaps (the "
                                        "default when process is left out)")

    def _unit_gaps(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.exponential(1.0, size=size)


class GammaArrivals(_Renewal):
    """Gamma-distributed gaps with the given CV (shape 1/CV²): bursty traffic above CV 1."""

    process: Literal["gamma"] = Field(description="renewal arrivals with Gamma-distributed gaps")
    cv: StrictFloat = Field(gt=0, le=100, description="coefficient of variation of inter-arrival gaps: 1 is "
                            "Poisson-like, above 1 bursty, below 1 more regular")

    def _unit_gaps(self, rng: np.random.Generator, size: int) -> np.ndarray:
        k = 1.0 / (self.cv * self.cv)
        return rng.gamma(k, 1.0 / k, size=size)


@lru_cache(maxsize=256)
def weibull_shape_for_cv(cv: float) -> float:
    """The Weibull shape k whose CV is ``cv``: CV² = Γ(1+2/k)/Γ(1+1/k)² − 1, decreasing in k."""
    from scipy.optimize import brentq  # lazy: scipy is heavy to import
    from scipy.special import gammaln

    def f(log_k: float) -> float:
        k = math.exp(log_k)
        return math.expm1(gammaln(1 + 2 / k) - 2 * gammaln(1 + 1 / k)) - cv * cv
    return math.exp(brentq(f, math.log(0.02), math.log(500.0), xtol=1e-12))


class WeibullArrivals(_Renewal):
    """Weibull-distributed gaps with the given CV: heavy bunching (shape < 1) or regularity (> 1)."""

    process: Literal["weibull"] = Field(description="renewal arrivals with Weibull-distributed gaps")
    cv: StrictFloat = Field(ge=0.01, le=20, description="coefficient of variation of inter-arrival gaps: 1 is "
                            "Poisson-like, above 1 bursty, below 1 more regular")

    def _unit_gaps(self, rng: np.random.Generator, size: int) -> np.ndarray:
        k = weibull_shape_for_cv(self.cv)
        return rng.weibull(k, size=size) / math.gamma(1 + 1 / k)
