"""Time-varying arrival rates: a diurnal curve, steps, a ramp, or a table of rates.

Every profile is reduced to knots of a piecewise-linear (or piecewise-constant) rate λ(t), so its
integral Λ(t) and the inverse Λ⁻¹ are exact. Arrivals follow by *time rescaling*: a unit-rate
process in "operational time" s is mapped to t = Λ⁻¹(s). For a Poisson base this gives exactly
the non-homogeneous Poisson process that Lewis–Shedler thinning gives (without discarded draws);
for a bursty renewal base it keeps the burstiness locally while following the rate curve.
After the last knot the rate holds its last value, except the diurnal curve, which repeats.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, model_validator

from workloads.limits import MAX_RATE_PER_S

__all__ = ["DiurnalRate", "RampRate", "RateProfile", "StepRate", "TableRate", "Knots"]

_Strict = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
# A rate in requests/s: a number (never a bool or a string), at most one request per nanosecond.
_Rate = Annotated[StrictFloat, Field(le=MAX_RATE_PER_S)]
# Shortest piece of a profile: a rate that changes within less than a microsecond is below any
# step the engine takes, and a linear piece's slope (rate change / length) would overflow.
_MIN_PIECE_S = 1e-6


class Knots:
    """λ at increasing times ``t`` (t[0] = 0), linear or constant between knots, with its exact
    cumulative integral and inverse. ``period`` repeats the curve; otherwise the last rate holds."""

    def __init__(self, t: np.ndarray, rate: np.ndarray, step: bool, period: float | None = None):
        self.t, self.rate, self.step, self.period = t, rate, step, period
        dt = np.diff(t)
        seg = rate[:-1] * dt if step else (rate[:-1] + rate[1:]) / 2 * dt
        self.cum = np.concatenate([[0.0], np.cumsum(seg)])

    @property
    def span(self) -> float:
        return float(self.t[-1])

    def rate_at(self, t: np.ndarray) -> np.ndarray:
        """λ(t), vectorised."""
        t = np.asarray(t, np.float64)
        if self.period is not None:
            t = np.mod(t, self.period)
        if self.step:
            k = np.clip(np.searchsorted(self.t, t, side="right") - 1, 0, self.t.size - 1)
            return self.rate[k]
        return np.interp(t, self.t, self.rate)

    def cumulative(self, t: np.ndarray) -> np.ndarray:
        """Λ(t) = ∫₀ᵗ λ, vectorised."""
        t = np.asarray(t, np.float64)
        base = np.zeros_like(t)
        if self.period is not None:
            m = np.floor(t / self.period)
            base, t = m * self.cum[-1], t - m * self.period
        k = np.clip(np.searchsorted(self.t, t, side="right") - 1, 0, self.t.size - 1)
        tau = t - self.t[k]
        last = k == self.t.size - 1
        slope = np.zeros_like(tau)
        if not self.step:
            dt = np.diff(self.t)
            slope[~last] = (np.diff(self.rate) / dt)[k[~last]]
        return base + self.cum[k] + self.rate[k] * tau + slope * tau * tau / 2

    def inverse(self, s: np.ndarray) -> np.ndarray:
        """Λ⁻¹(s): the time by which ``s`` expected arrivals have occurred, vectorised and exact."""
        s = np.asarray(s, np.float64)
        base = np.zeros_like(s)
        if self.period is not None:
            total = self.cum[-1]
            m = np.floor(s / total)
            base, s = m * self.period, s - m * total
        elif self.rate[-1] <= 0 and s.size and s.max() > self.cum[-1]:
            raise ValueError(f"the rate profile ends at 0 requests/s after {self.cum[-1]:.0f} expected arrivals: "
                             "ask for fewer requests, or give duration_s")
        # Segment k holds s in [cum[k], cum[k+1]); zero-mass segments are skipped by side="right".
        k = np.clip(np.searchsorted(self.cum, s, side="right") - 1, 0, self.t.size - 1)
        d = s - self.cum[k]
        lam = self.rate[k]
        if self.step:
            tau = np.divide(d, lam, out=np.zeros_like(d), where=lam > 0)
        else:
            last = k == self.t.size - 1
            a = np.zeros_like(d)
            a[~last] = (np.diff(self.rate) / np.diff(self.t))[k[~last]]
            # a/2 τ² + λ τ = d, in the form that stays accurate when a -> 0.
            den = lam + np.sqrt(np.maximum(lam * lam + 2 * a * d, 0.0))
            tau = np.divide(2 * d, den, out=np.zeros_like(d), where=den > 0)
        return base + self.t[k] + tau


class DiurnalRate(BaseModel):
    """A daily cycle: λ(t) = mean·(1 + A·cos(2π(t − peak_at_s)/period_s)) with A set by the ratio of
    peak to trough, repeated every period (drawn as 1,440 linear pieces per period)."""

    model_config = _Strict
    shape: Literal["diurnal"] = Field(description="a daily cosine cycle, repeating")
    mean_rate_per_s: _Rate = Field(gt=0, description="mean requests per second over a period")
    peak_to_trough: StrictFloat = Field(ge=1, description="peak rate ÷ trough rate")
    period_s: StrictFloat = Field(86_400.0, ge=0.01, description="seconds per cycle: one day by default; at least "
                                  "0.01 s, so that each of its 1,440 pieces lasts over a microsecond")
    peak_at_s: StrictFloat = Field(14 * 3600.0, ge=0, description="seconds into the period of the peak (14:00 by "
                                   "default)")

    def knots(self) -> Knots:
        amp = (self.peak_to_trough - 1) / (self.peak_to_trough + 1)
        t = np.linspace(0.0, self.period_s, 1441)
        rate = self.mean_rate_per_s * (1 + amp * np.cos(2 * math.pi * (t - self.peak_at_s) / self.period_s))
        return Knots(t, rate, step=False, period=self.period_s)


class _Table(BaseModel):
    model_config = _Strict
    times_s: tuple[StrictFloat, ...] = Field(min_length=1, description="seconds, from 0 and strictly increasing; "
                                             "each piece at least 1 µs")
    rates_per_s: tuple[_Rate, ...] = Field(min_length=1, description="requests per second, one per time (>= 0, "
                                           "not all 0); after the last time the last rate holds")

    @model_validator(mode="after")
    def _valid(self):  # type: ignore[no-untyped-def]
        if len(self.times_s) != len(self.rates_per_s):
            raise ValueError(f"times_s has {len(self.times_s)} entries but rates_per_s has {len(self.rates_per_s)}: "
                             "give one rate per time")
        if self.times_s[0] != 0 or any(b <= a for a, b in zip(self.times_s, self.times_s[1:])):
            raise ValueError("times_s must start at 0 and increase strictly")
        gaps = [b - a for a, b in zip(self.times_s, self.times_s[1:])]
        short = next((i for i, g in enumerate(gaps, 1) if g < _MIN_PIECE_S), None)
        if short is not None:
            raise ValueError(f"times_s[{short}] = {self.times_s[short]:g} is {gaps[short - 1]:g} s after the time "
                             f"before it: pieces must last at least {_MIN_PIECE_S:g} s")
        if min(self.rates_per_s) < 0 or max(self.rates_per_s) <= 0:
            raise ValueError("rates_per_s must be >= 0 with at least one above 0")
        return self


class StepRate(_Table):
    """Piecewise-constant rate: ``rates_per_s[i]`` from ``times_s[i]`` until the next time."""

    shape: Literal["steps"] = Field(description="a rate that changes in steps")

    def knots(self) -> Knots:
        return Knots(np.asarray(self.times_s, np.float64), np.asarray(self.rates_per_s, np.float64), step=True)


class TableRate(_Table):
    """A rate table, linear between its points (``interpolate: step`` holds each value instead)."""

    shape: Literal["table"] = Field(description="a rate table")
    interpolate: Literal["linear", "step"] = Field("linear", description="linear: straight lines between the "
                                                   "points; step: each rate held until the next time")

    def knots(self) -> Knots:
        return Knots(np.asarray(self.times_s, np.float64), np.asarray(self.rates_per_s, np.float64),
                     step=self.interpolate == "step")


class RampRate(BaseModel):
    """A linear ramp from one rate to another, flat before ``start_s`` and after ``start_s + over_s``."""

    model_config = _Strict
    shape: Literal["ramp"] = Field(description="a linear ramp between two rates")
    from_rate_per_s: _Rate = Field(ge=0, description="requests per second before and at start_s")
    to_rate_per_s: _Rate = Field(ge=0, description="requests per second from start_s + over_s on (must be above 0)")
    start_s: StrictFloat = Field(0.0, ge=0, description="seconds: when the ramp begins")
    over_s: StrictFloat = Field(ge=_MIN_PIECE_S, description="length of the ramp (at least a microsecond)")

    @model_validator(mode="after")
    def _some_traffic(self) -> RampRate:
        if self.to_rate_per_s <= 0:
            raise ValueError("to_rate_per_s must be above 0")
        return self

    def knots(self) -> Knots:
        t = [0.0, self.start_s, self.start_s + self.over_s] if self.start_s > 0 else [0.0, self.over_s]
        r = [self.from_rate_per_s] * (len(t) - 1) + [self.to_rate_per_s]
        return Knots(np.asarray(t), np.asarray(r, np.float64), step=False)


RateProfile = Annotated[Union[DiurnalRate, StepRate, RampRate, TableRate], Field(discriminator="shape")]
