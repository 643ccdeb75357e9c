"""Token-length distributions for prompts and outputs.

Every distribution is a small frozen spec with one method that matters, ``quantile(u)``: the
integer length (>= 1) at each probability in ``u``. Sampling is ``quantile`` of uniforms, which
makes three things simple and exact: determinism (one uniform per request), correlation between
prompt and output length (a Gaussian copula feeds correlated uniforms, see
:func:`workloads.table.generate`), and fitting (a fitted distribution is checked by its quantiles).

``upper_bound`` is the largest value a distribution can produce (None when unbounded); the
scenario uses it to refuse prompts that could never fit in the KV cache.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, model_validator

from workloads.limits import MAX_TOKENS

__all__ = ["EmpiricalLength", "ExponentialLength", "FixedLength", "HistogramLength", "LengthSpec",
           "LognormalLength", "NormalLength", "QuantileLength", "TraceLength", "UniformLength"]

_Strict = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
# z-score of the 99th percentile of a standard normal.
_Z99 = 2.3263478740408408
# mean = exp(mu + s²/2) and p99 = exp(mu + z s) give p99/mean = exp(z s - s²/2), at most exp(z²/2).
_MAX_P99_RATIO = math.exp(_Z99**2 / 2)
# Longest length any distribution returns: far above any context, far below int64 overflow.
_LONGEST = 2**40
# A lognormal's median exp(mu) is at most MAX_TOKENS.
_MAX_MU = math.log(MAX_TOKENS)


class _Length(BaseModel):
    """Shared behaviour: ``sample`` draws one uniform per request and maps it through ``quantile``."""

    model_config = _Strict

    def quantile(self, u: np.ndarray) -> np.ndarray:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    @property
    def upper_bound(self) -> int | None:
        return None

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` lengths drawn with ``rng``."""
        return self.quantile(rng.random(n))

    def mean_estimate(self) -> float:
        """The distribution's mean, estimated by the midpoint rule over 1,024 quantiles (within a
        percent or so: what a size estimate needs, not an exact moment)."""
        return float(self.quantile((np.arange(1024) + 0.5) / 1024).mean())


class _Clipped(_Length):
    max: StrictInt | None = Field(None, ge=1, le=MAX_TOKENS, description="tokens: values above are clipped to this "
                                  "(unset: no clip, but generated lengths are still cut to the model's context)")

    def _clip(self, x: np.ndarray) -> np.ndarray:
        # Clip as floats before the cast: a float at or above 2**63 (a heavy tail) would wrap negative.
        return np.clip(np.rint(x), 1, _LONGEST if self.max is None else self.max).astype(np.int64)

    @property
    def upper_bound(self) -> int | None:
        return self.max


class FixedLength(_Length):
    """Every request has the same length."""

    dist: Literal["fixed"] = Field(description="always the same length")
    value: StrictInt = Field(ge=1, le=MAX_TOKENS, description="the length, tokens")

    @property
    def upper_bound(self) -> int:
        return self.value

    def quantile(self, u: np.ndarray) -> np.ndarray:
        return np.full(np.shape(u), self.value, dtype=np.int64)


class UniformLength(_Length):
    """Integers uniform on [low, high], both ends included."""

    dist: Literal["uniform"] = Field(description="integers uniform on [low, high]")
    low: StrictInt = Field(ge=1, le=MAX_TOKENS, description="shortest length, tokens")
    high: StrictInt = Field(ge=1, le=MAX_TOKENS, description="longest length, tokens; must be >= low")

    @model_validator(mode="after")
    def _ordered(self) -> UniformLength:
        if self.high < self.low:
            raise ValueError(f"high = {self.high} is below low = {self.low}: high must be >= low")
        return self

    @property
    def upper_bound(self) -> int:
        return self.high

    def quantile(self, u: np.ndarray) -> np.ndarray:
        x = self.low + np.floor(np.asarray(u) * (self.high - self.low + 1)).astype(np.int64)
        return np.minimum(x, self.high)


class NormalLength(_Clipped):
    """Normal with the given mean and standard deviation, rounded, raised to ``min`` and clipped to
    ``max``."""

    dist: Literal["normal"] = Field(description="normal, rounded")
    mean: StrictFloat = Field(gt=0, le=MAX_TOKENS, description="mean, tokens")
    std: StrictFloat = Field(ge=0, description="standard deviation, tokens (0: always the mean)")
    min: StrictInt = Field(1, ge=1, le=MAX_TOKENS, description="tokens: values below are raised to this; at most "
                           "max")

    @model_validator(mode="after")
    def _ordered(self) -> NormalLength:
        if self.max is not None and self.min > self.max:
            raise ValueError(f"min = {self.min} is above max = {self.max}: min must be <= max")
        return self

    def quantile(self, u: np.ndarray) -> np.ndarray:
        from scipy.special import ndtri  # lazy: scipy is heavy to import

        # With std 0 every draw is the mean (0 * ndtri(0) would be 0 * -inf = NaN).
        z = ndtri(u) if self.std > 0 else np.zeros(np.shape(u))
        return np.maximum(self._clip(self.mean + self.std * z), self.min)


class LognormalLength(_Clipped):
    """Lognormal set either by its mean and 99th percentile, or by its parameters ``mu`` and
    ``sigma`` (of the underlying normal, as in ``scipy.stats.lognorm(s=sigma, scale=exp(mu))``)."""

    dist: Literal["lognormal"] = Field(description="lognormal, rounded (at least 1)")
    mean: StrictFloat | None = Field(None, gt=0, le=MAX_TOKENS, description="mean, tokens; with p99 (instead of mu "
                                     "and sigma)")
    p99: StrictFloat | None = Field(None, gt=0, le=MAX_TOKENS, description="99th percentile, tokens; above mean, and "
                                    "at most about 14.97 × mean (no lognormal has a larger p99/mean)")
    mu: StrictFloat | None = Field(None, le=_MAX_MU, description="mean of the underlying normal (of ln tokens), with "
                                   "sigma (instead of mean and p99): the median is exp(mu), at most 10^7 tokens")
    sigma: StrictFloat | None = Field(None, gt=0, description="standard deviation of the underlying normal, with mu")

    @model_validator(mode="after")
    def _one_parametrisation(self) -> LognormalLength:
        by_moments = self.mean is not None or self.p99 is not None
        by_params = self.mu is not None or self.sigma is not None
        if by_moments == by_params or (by_moments and (self.mean is None or self.p99 is None)) or (
                by_params and (self.mu is None or self.sigma is None)):
            raise ValueError("give either mean and p99, or mu and sigma")
        if by_moments:
            assert self.mean is not None and self.p99 is not None
            if self.p99 <= self.mean:
                raise ValueError(f"p99 = {self.p99:g} is not above mean = {self.mean:g}: a lognormal's p99 must "
                                 "exceed its mean")
            if math.log(self.p99 / self.mean) > _Z99**2 / 2:
                raise ValueError(f"p99 = {self.p99:g} is {self.p99 / self.mean:.1f}x mean = {self.mean:g}: no lognormal "
                                 f"has p99/mean above {_MAX_P99_RATIO:.2f}; lower p99 or give mu and sigma")
        return self

    @property
    def params(self) -> tuple[float, float]:
        """(mu, sigma) of the underlying normal."""
        if self.mu is not None and self.sigma is not None:
            return self.mu, self.sigma
        assert self.mean is not None and self.p99 is not None
        # mean = exp(mu + s²/2), p99 = exp(mu + z s)  =>  s²/2 - z s + ln(p99/mean) = 0. The smaller
        # root is the one with a sensible (< z) sigma; the validator keeps the discriminant >= 0.
        s = _Z99 - math.sqrt(_Z99**2 - 2 * math.log(self.p99 / self.mean))
        return math.log(self.mean) - s * s / 2, s

    def quantile(self, u: np.ndarray) -> np.ndarray:
        from scipy.special import ndtri  # lazy: scipy is heavy to import

        mu, s = self.params
        return self._clip(np.exp(mu + s * ndtri(u)))


class ExponentialLength(_Clipped):
    """Exponential with the given mean, rounded up: a geometric distribution on 1, 2, ..."""

    dist: Literal["exponential"] = Field(description="exponential, rounded up (at least 1)")
    mean: StrictFloat = Field(gt=0, le=MAX_TOKENS, description="mean, tokens")

    def quantile(self, u: np.ndarray) -> np.ndarray:
        x = np.ceil(-self.mean * np.log1p(-np.asarray(u)))
        return np.clip(x, 1, _LONGEST if self.max is None else self.max).astype(np.int64)


def _check_weights(name: str, w: tuple[float, ...]) -> None:
    if any(x < 0 for x in w):
        raise ValueError(f"{name} has a negative entry: {name} must be >= 0")
    if sum(w) <= 0:
        raise ValueError(f"{name} sums to 0: at least one must be positive")


class EmpiricalLength(_Length):
    """A discrete distribution: each of ``values`` with probability proportional to ``weights``
    (equal when omitted), e.g. lengths resampled from a measured sample."""

    dist: Literal["empirical"] = Field(description="a discrete distribution over given lengths")
    values: tuple[StrictInt, ...] = Field(min_length=1, description="the lengths, tokens (each 1 to 10^7)")
    weights: tuple[StrictFloat, ...] | None = Field(None, description="one per value, >= 0 and not all 0: each "
                                                    "value's probability is proportional to its weight (unset: "
                                                    "equal)")

    @model_validator(mode="after")
    def _valid(self) -> EmpiricalLength:
        if min(self.values) < 1:
            raise ValueError(f"values has {min(self.values)}: lengths must be >= 1")
        if max(self.values) > MAX_TOKENS:
            raise ValueError(f"values has {max(self.values)}: lengths must be <= {MAX_TOKENS} (no model's context "
                             "is longer)")
        if self.weights is not None:
            if len(self.weights) != len(self.values):
                raise ValueError(f"weights has {len(self.weights)} entries but values has {len(self.values)}: "
                                 "give one weight per value")
            _check_weights("weights", self.weights)
        return self

    @property
    def upper_bound(self) -> int:
        return max(self.values)

    def quantile(self, u: np.ndarray) -> np.ndarray:
        v = np.asarray(self.values, np.int64)
        w = np.ones(v.size) if self.weights is None else np.asarray(self.weights, np.float64)
        cum = np.cumsum(w)
        idx = np.searchsorted(cum, np.asarray(u) * cum[-1], side="right")
        return v[np.minimum(idx, v.size - 1)]


class HistogramLength(_Length):
    """A histogram: bin ``i`` covers lengths in [edges[i], edges[i+1]) and holds ``counts[i]``;
    lengths are uniform within a bin."""

    dist: Literal["histogram"] = Field(description="a histogram, uniform within each bin")
    edges: tuple[StrictInt, ...] = Field(min_length=2, description="bin edges, tokens: from >= 1, strictly "
                                         "increasing; bin i covers [edges[i], edges[i+1])")
    counts: tuple[StrictFloat, ...] = Field(min_length=1, description="one per bin (one fewer than edges), >= 0 and "
                                            "not all 0")

    @model_validator(mode="after")
    def _valid(self) -> HistogramLength:
        if len(self.counts) != len(self.edges) - 1:
            raise ValueError(f"counts has {len(self.counts)} entries for {len(self.edges) - 1} bins: give one count per "
                             "bin (one fewer than edges)")
        if self.edges[0] < 1 or any(b <= a for a, b in zip(self.edges, self.edges[1:])):
            raise ValueError("edges must start at >= 1 and increase strictly")
        if self.edges[-1] > MAX_TOKENS + 1:
            raise ValueError(f"edges end at {self.edges[-1]}: lengths must be <= {MAX_TOKENS} (no model's context "
                             f"is longer), so the last edge <= {MAX_TOKENS + 1}")
        _check_weights("counts", self.counts)
        return self

    @property
    def upper_bound(self) -> int:
        return self.edges[-1] - 1

    def quantile(self, u: np.ndarray) -> np.ndarray:
        cum = np.concatenate([[0.0], np.cumsum(self.counts)])
        x = np.interp(np.asarray(u) * cum[-1], cum, np.asarray(self.edges, np.float64))
        return np.clip(np.floor(x), self.edges[0], self.edges[-1] - 1).astype(np.int64)


class QuantileLength(_Length):
    """A distribution given by its quantile function at knots: ``values[i]`` at probability
    ``probs[i]``, linear in between (probs from 0 to 1). What :mod:`workloads.fit` writes when no
    parametric family reproduces a trace's percentiles."""

    dist: Literal["quantiles"] = Field(description="a quantile function through knots (what `capsim workload fit` "
                                       "writes)")
    probs: tuple[StrictFloat, ...] = Field(min_length=2, description="probabilities, strictly increasing from 0 to 1")
    values: tuple[StrictFloat, ...] = Field(min_length=2, description="the length at each probability, tokens: from "
                                            ">= 1, never decreasing; linear in between")

    @model_validator(mode="after")
    def _valid(self) -> QuantileLength:
        if len(self.probs) != len(self.values):
            raise ValueError(f"probs has {len(self.probs)} entries but values has {len(self.values)}: give one value "
                             "per probability")
        if self.probs[0] != 0 or self.probs[-1] != 1 or any(b <= a for a, b in zip(self.probs, self.probs[1:])):
            raise ValueError("probs must increase strictly from 0 to 1")
        if self.values[0] < 1 or any(b < a for a, b in zip(self.values, self.values[1:])):
            raise ValueError("values must start at >= 1 and never decrease")
        if self.values[-1] > MAX_TOKENS:
            raise ValueError(f"values end at {self.values[-1]:g}: lengths must be <= {MAX_TOKENS} (no model's "
                             "context is longer)")
        return self

    @property
    def upper_bound(self) -> int:
        return int(round(self.values[-1]))

    def quantile(self, u: np.ndarray) -> np.ndarray:
        x = np.interp(np.asarray(u), self.probs, self.values)
        return np.maximum(np.rint(x), 1).astype(np.int64)


@lru_cache(maxsize=16)
def _trace_column(path: str, fmt: str | None, column: str, mtime: float) -> np.ndarray:
    from workloads.traces import load_trace  # lazy: only this distribution reads files

    return np.sort(load_trace(path, fmt).table.column(column).to_numpy())


class TraceLength(_Length):
    """Lengths resampled (with replacement) from one column of a real trace file."""

    dist: Literal["trace"] = Field(description="resampled from one column of a trace file")
    path: str = Field(description="the trace file (as prompt_tokens or output_tokens in a scenario file: read "
                      "beside the scenario file when it is there, else from the current directory)")
    format: str | None = Field(None, description="trace format (as for a trace arrival); detected from the file "
                               "when omitted")
    column: Literal["prompt_tokens", "output_tokens"] = Field(description="which of the trace's lengths to resample")

    def _values(self) -> np.ndarray:
        from pathlib import Path

        p = Path(self.path)
        return _trace_column(str(p), self.format, self.column, p.stat().st_mtime if p.exists() else 0.0)

    @property
    def upper_bound(self) -> int | None:
        return None  # known only once the file is read; the engine still refuses what cannot fit

    def quantile(self, u: np.ndarray) -> np.ndarray:
        v = self._values()
        return v[np.minimum((np.asarray(u) * v.size).astype(np.int64), v.size - 1)]


LengthSpec = Annotated[
    Union[FixedLength, UniformLength, NormalLength, LognormalLength, ExponentialLength, EmpiricalLength,
          HistogramLength, QuantileLength, TraceLength],
    Field(discriminator="dist"),
]
