"""Metrics as a serving benchmark's client reports them: the summary's ``benchmark`` block, and the
one definition of those metrics that benchmark fitting (:mod:`sim.fitting.reenact`) uses too.

The definitions are those of vLLM's benchmark client (``calculate_metrics`` in
``benchmarks/benchmark_serving.py``, now ``vllm bench serve``), which SGLang's ``bench_serving``
and TensorRT-LLM's serving benchmark follow:

- the duration runs from the start of the benchmark to its last response; throughputs are the
  completed requests, their prompt tokens and their output tokens over it;
- TTFT per completed request;
- TPOT per completed request with more than one output token, (latency − TTFT) / (output − 1);
- ITL pools every gap between consecutive tokens of every completed request;
- mean and percentiles of each: ``numpy.percentile``'s linear interpolation.

A client sees only what it sent and what came back, so none of these has a warm-up or a window:
the measurement window of the rest of the summary ends at the last arrival, which for a finite
benchmark cuts off the drain, where the batch empties and the gaps between tokens shorten (the
window's mean ITL of a saturated run can be several times the requests' own TPOT).

The mean ITL is exact from per-request sums: a request's gaps add up to its latency − TTFT, and
it has output − 1 of them. Its percentiles need every gap; the iteration log keeps all of them
exactly (as values with multiplicities, see :mod:`sim.core.iteration_log`), but not which request
each belongs to, so where requests are still in flight at the horizon the pool also holds their
gaps up to the last completed token (the block's ``note`` says so).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["CLIENT_PERCENTILES", "benchmark_block", "client_metrics", "repeated_percentiles",
           "weighted_linear_percentiles"]

CLIENT_PERCENTILES = (50, 90, 99)


def repeated_percentiles(values: np.ndarray, counts: np.ndarray, qs: Sequence[float] = CLIENT_PERCENTILES, *,
                         overwrite: bool = False) -> list[float]:
    """``numpy.percentile(np.repeat(values, counts), qs)``, exactly (linear interpolation, the same
    rounding), without repeating: a long run's gaps are millions of (gap, count) rows standing for
    hundreds of millions of gaps. ``counts`` are positive integers. ``overwrite``: ``values`` may be
    sorted in place (an array the caller made for this call)."""
    # Sorted in place, and the permutation dropped as soon as it has ordered the counts: a long
    # run's gaps are the summary's largest arrays, and this is its memory peak.
    order = np.argsort(values, kind="stable")
    c = counts[order]
    del order
    v = values if overwrite else values.copy()
    v.sort()
    ends = np.cumsum(c, dtype=np.int64)  # where each value's run ends in the repeated sample
    del c
    n = int(ends[-1])
    h = (n - 1) * np.true_divide(qs, 100)  # numpy's virtual index for "linear"
    below = np.minimum(np.floor(h), n - 1)
    t = h - below
    a = v[np.searchsorted(ends, below, side="right")]
    b = v[np.searchsorted(ends, np.minimum(below + 1, n - 1), side="right")]
    # numpy's _lerp: from the nearer end, so that t = 1 gives b exactly.
    diff = b - a
    out = np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)
    return [float(x) for x in out]


def weighted_linear_percentiles(x: np.ndarray, w: np.ndarray, qs: Sequence[float] = CLIENT_PERCENTILES) -> list[float]:
    """Percentiles ``qs`` of ``x`` whose points stand for ``w`` requests each (a capped run standing
    for a longer one), interpolating linearly between the points placed at their cumulative weight:
    with equal weights, ``numpy.percentile``'s interpolation (up to rounding)."""
    o = np.argsort(x, kind="stable")
    xs, ws = x[o], w[o]
    cw = np.cumsum(ws)
    span = cw[-1] - ws[-1]
    if span <= 0:
        return [float(xs[-1])] * len(qs)
    return [float(v) for v in np.interp(np.true_divide(qs, 100), (cw - ws) / span, xs)]


def _stats(x: np.ndarray, w: np.ndarray | None, qs: Sequence[float]) -> dict[str, float | None]:
    """Mean and percentiles of ``x`` (weighted by ``w`` when given); None for an empty sample."""
    names = ("mean", *(f"p{q}" for q in qs))
    if not x.size:
        return dict.fromkeys(names)
    if w is None:
        return dict(zip(names, [float(x.mean()), *(float(v) for v in np.percentile(x, qs))]))
    return dict(zip(names, [float(np.dot(w, x) / w.sum()), *weighted_linear_percentiles(x, w, qs)]))


def client_metrics(ttft: np.ndarray, e2e: np.ndarray, output: np.ndarray, duration: float | None,
                   weights: np.ndarray | None = None, gaps: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None,
                   qs: Sequence[float] = CLIENT_PERCENTILES) -> dict[str, Any]:
    """What the benchmark client reports of completed requests with these TTFTs, latencies and
    output tokens, over a benchmark of ``duration`` seconds (see the module docstring).

    ``weights``: how many requests each one stands for (benchmark fitting's capped runs); None,
    once each. ``gaps() -> (values, multiplicities)``: every inter-token gap of those requests, for
    the ITL percentiles, asked for only when there are gaps (without it, only the mean, from
    per-request sums). Returns
    ``requests_per_s`` and ``output_tokens_per_s`` (None without a positive duration), and
    ``ttft``, ``tpot``, ``itl`` as ``{"mean", "p50", ...}`` (None where the sample is empty: no
    request, or none with more than one output token)."""
    out = np.asarray(output, np.float64)
    w = np.ones(out.size) if weights is None else weights
    rate = duration is not None and duration > 0
    many = out > 1
    decode = e2e[many] - ttft[many]  # each request's gaps, added up
    wm = None if weights is None else weights[many]
    itl = dict.fromkeys(("mean", *(f"p{q}" for q in qs)))
    if many.any():
        itl["mean"] = float(np.dot(w[many], decode) / np.dot(w[many], out[many] - 1))
        if gaps is not None:
            itl.update(zip([f"p{q}" for q in qs], repeated_percentiles(*gaps(), qs, overwrite=True)))
    return {
        "requests_per_s": float(w.sum()) / duration if rate else None,
        "output_tokens_per_s": float(np.dot(w, out)) / duration if rate else None,
        "ttft": _stats(ttft, weights, qs),
        "tpot": _stats(decode / (out[many] - 1), wm, qs),
        "itl": itl,
    }


def benchmark_block(arrival: np.ndarray, done: np.ndarray, ttft: np.ndarray, e2e: np.ndarray, output: np.ndarray,
                    prompt: np.ndarray, finish: np.ndarray,
                    gaps_between: Callable[[float, float], tuple[np.ndarray, np.ndarray]],
                    in_flight: int) -> dict[str, Any]:
    """The summary's ``benchmark`` block (:class:`sim.results.summary.Benchmark`): the run as its
    benchmark client would report it, from the first arrival to the last token of a completed
    request. Per-request columns over every request (``arrival`` NaN: never sent; ``done``: which
    completed); ``gaps_between(lo, hi)``: every inter-token gap of tokens emitted in [lo, hi), as
    (values, multiplicities); ``in_flight``: requests still running at the horizon (for the note)."""
    completed = int(np.count_nonzero(done))
    out, inp = output[done], prompt[done]
    duration = gaps = None
    if completed:
        start, end = float(np.nanmin(arrival)), float(finish[done].max())
        duration = end - start
        # Tokens emitted up to the last completed one (gaps_between is half-open).
        gaps = partial(gaps_between, start, float(np.nextafter(end, np.inf)))
    m = client_metrics(ttft[done], e2e[done], out, duration, gaps=gaps)
    note = ("as a benchmark client reports it (vLLM's benchmark_serving definitions): over the whole run from the "
            "first arrival to the last token of a completed request, warm-up and drain included; completed "
            "requests only; ttft per request, tpot per request with more than one output token, itl every gap "
            "between tokens pooled (mean from per-request sums, percentiles from every gap); numpy's linear "
            "percentiles")
    if in_flight and m["itl"]["p50"] is not None:
        note += (f"; left out: {in_flight:,} in flight at the horizon, whose gaps up to the last completed token are "
                 "in the itl percentiles nonetheless (the log pools gaps without their request)")
    return {
        "duration_s": duration,
        "completed": completed,
        "input_tokens": int(inp.sum()),
        "output_tokens": int(out.sum()),
        "requests_per_s": m["requests_per_s"],
        "input_tokens_per_s": None if m["output_tokens_per_s"] is None else float(inp.sum()) / duration,
        "output_tokens_per_s": m["output_tokens_per_s"],
        "ttft_s": m["ttft"],
        "tpot_s": m["tpot"],
        "itl_s": m["itl"],
        "note": note,
    }
