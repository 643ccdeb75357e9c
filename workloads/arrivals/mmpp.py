"""Markov-modulated Poisson arrivals: traffic that switches between calm and bursty regimes.

The process sits in one state at a time for an exponentially distributed time (mean
``mean_duration_s``), emitting Poisson arrivals at that state's rate, then moves to the next state
in the list (cyclically: with two states, an on/off or calm/burst alternation). It starts in a state
drawn from the stationary distribution, so the long-run mean rate is
Σ rateᵢ·durationᵢ / Σ durationᵢ from the first second.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, model_validator

from workloads.limits import MAX_RATE_PER_S

__all__ = ["MMPPArrivals", "MMPPState"]

_Strict = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class MMPPState(BaseModel):
    """One regime: its arrival rate and how long it lasts on average."""

    model_config = _Strict
    rate_per_s: StrictFloat = Field(ge=0, le=MAX_RATE_PER_S, description="Poisson arrivals per second while in "
                                    "this regime (0: an off regime; not every state may be 0)")
    mean_duration_s: StrictFloat = Field(gt=0, description="mean seconds the regime lasts (exponentially "
                                         "distributed)")


class MMPPArrivals(BaseModel):
    """Markov-modulated Poisson process over two or more states, visited in list order: traffic
    switches between regimes (e.g. calm and burst), each lasting an exponential time, cyclically.
    It starts in a state drawn from the stationary distribution, so the long-run mean rate
    Σ rateᵢ·durationᵢ / Σ durationᵢ holds from the first second."""

    model_config = _Strict
    process: Literal["mmpp"] = Field(description="Markov-modulated Poisson: regimes of different rates in turn")
    states: tuple[MMPPState, ...] = Field(min_length=2, description="the regimes, at least two, visited in list "
                                          "order (after the last, the first again)")

    @model_validator(mode="after")
    def _some_traffic(self) -> MMPPArrivals:
        if all(s.rate_per_s <= 0 for s in self.states):
            raise ValueError("every MMPP state has rate_per_s 0: no request would ever arrive")
        return self

    def expected_count(self, duration: float) -> float:
        """Expected arrivals before ``duration``: the long-run mean rate x duration."""
        return self.mean_rate_per_s * duration

    @property
    def rate_text(self) -> str:
        """The rate, for messages."""
        return f"at a mean {self.mean_rate_per_s:g} requests/s"

    @property
    def mean_rate_per_s(self) -> float:
        r = np.array([s.rate_per_s for s in self.states])
        d = np.array([s.mean_duration_s for s in self.states])
        return float((r * d).sum() / d.sum())

    def first_block(self, n: int | None, duration: float | None) -> tuple[float, float]:
        """(regime visits, expected arrivals) of the first block :meth:`times` draws at once: enough
        cycles to cover the wanted count or time with room to spare. What the draw costs in memory
        besides the requests kept (short regimes mean many visits; long busy ones many arrivals)."""
        dur = np.array([s.mean_duration_s for s in self.states])
        k, cycle_s = len(self.states), float(dur.sum())
        want_s = duration if duration is not None else n / self.mean_rate_per_s  # type: ignore[operator]
        block = max(math.floor(min(4 * k * want_s / cycle_s, 1e300)) + 4 * k, 16)
        return float(block), block / k * self.mean_rate_per_s * cycle_s

    def times(self, rng: np.random.Generator, n: int | None, duration: float | None) -> np.ndarray:
        """Sorted arrival times: the first ``n``, or all before ``duration``."""
        if self.mean_rate_per_s <= 0:
            raise ValueError("every MMPP state has rate_per_s 0: no request would ever arrive")
        rate = np.array([s.rate_per_s for s in self.states])
        dur = np.array([s.mean_duration_s for s in self.states])
        k = len(self.states)
        state = int(rng.choice(k, p=dur / dur.sum()))
        block = int(self.first_block(n, duration)[0])
        out, t0, got = [], 0.0, 0
        while True:
            seq = (state + np.arange(block)) % k
            d = rng.exponential(dur[seq])
            start = t0 + np.concatenate([[0.0], np.cumsum(d)[:-1]])
            cnt = rng.poisson(rate[seq] * d)
            t = np.repeat(start, cnt) + rng.random(int(cnt.sum())) * np.repeat(d, cnt)
            t.sort()  # sojourns are disjoint, so one sort orders everything
            out.append(t)
            got += t.size
            t0, state = float(start[-1] + d[-1]), int((seq[-1] + 1) % k)
            if (n is not None and got >= n) or (duration is not None and t0 >= duration):
                break
        times = np.concatenate(out)
        return times[:n] if n is not None else times[times < duration]
