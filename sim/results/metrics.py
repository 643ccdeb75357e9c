"""The summary of a run in DESIGN.md's vocabulary: latency percentiles, throughput, goodput,
busy fraction, and the measurement window they describe.

The window runs from ``measurement.warmup_s`` to the last arrival (or the horizon): warm-up and
drain are excluded, and the summary says so. Latencies are over completed requests that
arrived in the window; throughputs count what the replicas produced inside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["PERCENTILES", "latency_stats", "weighted_percentiles"]

PERCENTILES = (50, 90, 95, 99)


def weighted_percentiles(values: np.ndarray, weights: np.ndarray, qs=PERCENTILES) -> list[float]:
    """Percentiles of a sample given as (value, multiplicity) pairs, by the inverted CDF
    (the smallest value whose cumulative weight reaches q% of the total)."""
    if not values.size:
        return [float("nan")] * len(qs)
    order = np.argsort(values)  # equal values give the same percentile in any order: no stable sort needed
    cw = weights[order]
    # Running totals in place where they fit the weights' type (a long run's gaps are millions of
    # rows: no second array at the summary's peak); add.accumulate keeps the type, cumsum widens.
    if cw.dtype.kind in "iu" and int(weights.sum(dtype=np.int64)) <= np.iinfo(cw.dtype).max:
        np.add.accumulate(cw, out=cw)
    else:
        cw = np.cumsum(cw)
    targets = np.asarray(qs, dtype=np.float64) / 100.0 * cw[-1]
    pos = np.minimum(np.searchsorted(cw, targets, side="left"), values.size - 1)
    return [float(x) for x in values[order[pos]]]


def latency_stats(x: np.ndarray) -> dict[str, Any]:
    """Mean and percentiles (linear interpolation) of the finite values of ``x``."""
    x = x[np.isfinite(x)]
    if not x.size:
        return {"count": 0, "mean": None, **{f"p{q}": None for q in PERCENTILES}}
    pct = np.percentile(x, PERCENTILES)
    return {"count": int(x.size), "mean": float(x.mean()), **{f"p{q}": float(v) for q, v in zip(PERCENTILES, pct)}}


def itl_stats(values: np.ndarray, weights: np.ndarray) -> dict[str, Any]:
    """Mean and inverted-CDF percentiles of inter-token gaps given with multiplicities."""
    total = int(weights.sum())
    if not total:
        return {"count": 0, "mean": None, **{f"p{q}": None for q in PERCENTILES}}
    pct = weighted_percentiles(values, weights)
    return {"count": total, "mean": float(np.dot(values, weights) / total),
            **{f"p{q}": v for q, v in zip(PERCENTILES, pct)}}


def busy_seconds(start: np.ndarray, duration: np.ndarray, lo: float, hi: float) -> float:
    """Seconds of the iterations [start, start + duration) that fall inside [lo, hi)."""
    if not start.size:
        return 0.0
    # In place: two temporaries of a long run's millions of iterations, not five.
    inside = start + duration
    np.minimum(inside, hi, out=inside)
    np.subtract(inside, np.maximum(start, lo), out=inside)
    return float(np.clip(inside, 0, None, out=inside).sum())
