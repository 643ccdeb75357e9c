"""What the replicas did in each time window of the measured span: the records that cost,
energy and idle-capacity waste are computed from (:mod:`sim.results.cost`, :mod:`sim.results.waste`).

The measured window ``[lo, hi)`` is cut into windows of ``window_s`` seconds from ``lo`` (the last
one shorter where the span is not a multiple). For each window, summed over replicas:

- ``busy_s``: replica-seconds an iteration was running (an iteration across a boundary counts
  on each side for the part it spent there);
- ``recompute_s``: of those, the share of each iteration's time its recomputed tokens took
  (``recompute_tokens / tokens computed`` of its duration: a preempted request's prefill again);
- ``active_s``: replica-seconds weighted by how hard each iteration drove the hardware, the
  larger of its MFU and MBU (the step model's FLOPs and bytes per GPU over its duration against
  the datasheet peaks), at most 1: the power model's input (None without peaks, e.g. an
  ``explicit`` profile);
- ``output_tokens``: tokens emitted by iterations that ended in the window;
- ``arrivals``: requests that arrived in it.

They are computed slice by slice over the iteration rows (a long run's millions of rows need no
full-length temporaries) and are the same in every records mode.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["WINDOW_FIELDS", "window_edges", "window_sums"]

WINDOW_FIELDS = ("busy_s", "recompute_s", "active_s", "output_tokens", "arrivals")
_SLICE = 1 << 16


def window_edges(lo: float, hi: float, window_s: float) -> np.ndarray:
    """Edges ``lo, lo + w, ...`` up to ``hi`` (the last window ends at ``hi``)."""
    n = max(1, math.ceil((hi - lo) / window_s - 1e-9))
    edges = lo + window_s * np.arange(n + 1, dtype=np.float64)
    edges[-1] = hi
    return edges


def _spread(acc: np.ndarray, edges: np.ndarray, start: np.ndarray, end: np.ndarray, weight: np.ndarray) -> None:
    """Add ``weight × seconds inside`` of each interval [start, end) to the window it falls in;
    an interval across edges is split (few: at most one per edge per replica)."""
    last = edges.size - 2
    k0 = np.clip(np.searchsorted(edges, start, side="right") - 1, 0, last)
    k1 = np.clip(np.searchsorted(edges, end, side="right") - 1, 0, last)
    lo, hi = edges[0], edges[-1]
    inside = np.clip(np.minimum(end, hi) - np.maximum(start, lo), 0, None)
    one = k0 == k1
    acc += np.bincount(k0[one], weights=inside[one] * weight[one], minlength=acc.size)
    for i in np.flatnonzero(~one):  # an iteration across a window's edge: each part where it ran
        for k in range(int(k0[i]), int(k1[i]) + 1):
            part = min(end[i], edges[k + 1]) - max(start[i], edges[k])
            if part > 0:
                acc[k] += part * weight[i]


def window_sums(per_replica: list[dict[str, np.ndarray]], arrival: np.ndarray, lo: float, hi: float,
                window_s: float, peaks: tuple[float, float] | None) -> dict[str, Any]:
    """Per-window sums over replicas (see the module docstring) of the iteration essentials
    ``per_replica`` (``start_s``, ``duration_s``, ``tokens_out``, ``recompute_s``, ``flops``,
    ``bytes``) and the requests' ``arrival`` times (NaN: never arrived), as plain lists."""
    edges = window_edges(lo, hi, window_s)
    n = edges.size - 1
    busy, redo, active, out = (np.zeros(n) for _ in range(4))
    for it in per_replica:
        for at in range(0, it["start_s"].size, _SLICE):
            part = slice(at, at + _SLICE)
            start = it["start_s"][part]
            dur = it["duration_s"][part].astype(np.float64)
            end = start + dur
            _spread(busy, edges, start, end, np.ones_like(dur))
            with np.errstate(invalid="ignore", divide="ignore"):
                share = np.where(dur > 0, it["recompute_s"][part] / dur, 0.0)
            _spread(redo, edges, start, end, share)
            if peaks is not None:
                with np.errstate(invalid="ignore", divide="ignore"):
                    mfu = np.where(dur > 0, it["flops"][part] / (dur * peaks[0]), 0.0)
                    mbu = np.where(dur > 0, it["bytes"][part] / (dur * peaks[1]), 0.0)
                _spread(active, edges, start, end, np.minimum(np.maximum(mfu, mbu), 1.0))
            emitted = (end >= lo) & (end < hi)
            k = np.clip(np.searchsorted(edges, end[emitted], side="right") - 1, 0, n - 1)
            out += np.bincount(k, weights=it["tokens_out"][part][emitted].astype(np.float64), minlength=n)
    seen = arrival[(arrival >= lo) & (arrival < hi)]
    arrivals = np.bincount(np.clip(np.searchsorted(edges, seen, side="right") - 1, 0, n - 1), minlength=n)
    return {
        "window_s": window_s,
        "start_s": edges[:-1].tolist(),
        "length_s": np.diff(edges).tolist(),
        "busy_s": busy.tolist(),
        "recompute_s": redo.tolist(),
        "active_s": active.tolist() if peaks is not None else None,
        "output_tokens": [int(round(x)) for x in out],
        "arrivals": arrivals.astype(int).tolist(),
    }
