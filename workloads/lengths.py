"""Token-length distributions for prompts and outputs.

Each is a small frozen spec with ``sample(rng, n)`` returning integers >= 1 and ``upper_bound``
(the largest value it can produce, or None when unbounded), which the scenario uses to refuse
prompts that could never fit.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

__all__ = ["ExponentialLength", "FixedLength", "LengthSpec", "LognormalLength", "UniformLength"]

_Strict = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
# z-score of the 99th percentile of a standard normal.
_Z99 = 2.3263478740408408
# mean = exp(mu + s²/2) and p99 = exp(mu + z s) give p99/mean = exp(z s - s²/2), at most exp(z²/2).
_MAX_P99_RATIO = math.exp(_Z99**2 / 2)


class _Clipped(BaseModel):
    model_config = _Strict
    max: StrictInt | None = Field(None, ge=1, description="values above are clipped to this")

    def _clip(self, x: np.ndarray) -> np.ndarray:
        x = np.maximum(np.rint(x), 1).astype(np.int64)
        return x if self.max is None else np.minimum(x, self.max)


class FixedLength(BaseModel):
    """Every request has the same length."""

    model_config = _Strict
    dist: Literal["fixed"]
    value: StrictInt = Field(ge=1)

    @property
    def upper_bound(self) -> int:
        return self.value

    @property
    def mean(self) -> float:
        return float(self.value)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.value, dtype=np.int64)


class UniformLength(BaseModel):
    """Integers uniform on [low, high]."""

    model_config = _Strict
    dist: Literal["uniform"]
    low: StrictInt = Field(ge=1)
    high: StrictInt = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> UniformLength:
        if self.high < self.low:
            raise ValueError(f"high = {self.high} is below low = {self.low}: high must be >= low")
        return self

    @property
    def upper_bound(self) -> int:
        return self.high

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(self.low, self.high + 1, size=n, dtype=np.int64)


class LognormalLength(_Clipped):
    """Lognormal set by its mean and 99th percentile (before rounding and clipping)."""

    dist: Literal["lognormal"]
    mean: float = Field(gt=0)
    p99: float = Field(gt=0)

    @model_validator(mode="after")
    def _p99_above_mean(self) -> LognormalLength:
        if self.p99 <= self.mean:
            raise ValueError(f"p99 = {self.p99:g} is not above mean = {self.mean:g}: a lognormal's p99 must exceed its mean")
        if math.log(self.p99 / self.mean) > _Z99**2 / 2:
            raise ValueError(f"p99 = {self.p99:g} is {self.p99 / self.mean:.1f}x mean = {self.mean:g}: no lognormal has "
                             f"p99/mean above {_MAX_P99_RATIO:.2f}; lower p99 or give mu and sigma via another dist")
        return self

    @property
    def sigma(self) -> float:
        # mean = exp(mu + s²/2), p99 = exp(mu + z s)  =>  s²/2 - z s + ln(p99/mean) = 0.
        # The smaller root is the one with a sensible (< z) sigma; p99 > mean guarantees it is real.
        # The validator guarantees the discriminant is >= 0.
        return _Z99 - math.sqrt(_Z99**2 - 2 * math.log(self.p99 / self.mean))

    @property
    def upper_bound(self) -> int | None:
        return self.max

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        s = self.sigma
        mu = math.log(self.mean) - s * s / 2
        return self._clip(rng.lognormal(mu, s, size=n))


class ExponentialLength(_Clipped):
    """Exponential with the given mean, rounded up: a geometric distribution on 1, 2, ..."""

    dist: Literal["exponential"]
    mean: float = Field(gt=0)

    @property
    def upper_bound(self) -> int | None:
        return self.max

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        x = np.ceil(rng.exponential(self.mean, size=n)).astype(np.int64)
        x = np.maximum(x, 1)
        return x if self.max is None else np.minimum(x, self.max)


LengthSpec = Annotated[
    Union[FixedLength, UniformLength, LognormalLength, ExponentialLength], Field(discriminator="dist")
]
