"""A picture of a workload, or of a trace next to the workload fitted to it: four panels that show
what the summary statistics compress.

- arrivals per minute over time: the rate profile and its surges (for a fit, one generated span
  over the trace's);
- the inter-arrival CCDF, log-log: burstiness is its tail, which one CV number cannot show;
- prompt and output length CDFs (log length axis): the percentiles the fit is judged by.

matplotlib is imported only when a figure is drawn, and through its object API (``Figure``), never
``pyplot``: nothing global changes (no backend switch in a notebook, no figure registry), and the
file type follows the suffix (PNG, SVG or PDF).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["FIGURE_SUFFIXES", "plot_workload"]

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
_POINTS = 400  # points per curve: enough for a smooth line, small files even for 10M-request samples


def _arrivals(table: pa.Table) -> np.ndarray:
    a = table.column("arrival_s").to_numpy(zero_copy_only=False).astype(np.float64)
    a = np.sort(a[np.isfinite(a)])
    return a - a[0] if a.size else a


def _per_minute(t: np.ndarray, span: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(minute starts in minutes, counts) over full minutes of ``t`` (up to ``span`` if given)."""
    end = t[-1] if span is None else span
    m = max(int(end // 60), 1)
    t = t[t < 60 * m]
    return np.arange(m + 1), np.bincount((t // 60).astype(np.int64), minlength=m)[:m]


def _ccdf(gaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gap, P(gap > x)) at log-spaced tail probabilities, from the largest gap down to the median
    and below: cheap for any sample size, and even on a log axis."""
    g = np.sort(gaps)
    n = g.size
    p = np.unique(np.concatenate([np.geomspace(1.0 / n, 1.0, _POINTS), [1.0]]))
    x = g[np.clip(np.ceil((1 - p) * n).astype(np.int64), 0, n - 1)]
    return x, p


def _cdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.linspace(0, 1, _POINTS)
    return np.quantile(values, probs), probs


def plot_workload(trace: Any, path: str | Path, *, fit: pa.Table | None = None, period_s: float | None = None,
                  title: str | None = None) -> Path:
    """Draw ``trace`` (a Trace or a table with arrival_s, prompt_tokens, output_tokens), and the
    sample ``fit`` of a fitted workload when given, to ``path`` (.png, .svg or .pdf).

    ``period_s``: ``fit`` repeats a span of this length (:meth:`workloads.fit.FitResult.sample`);
    the rate panel then shows its first span only, over the trace's, while the distributions use
    the whole sample. Zero gaps (coarse timestamps) cannot sit on a log axis: the CCDF starts at
    the smallest positive gap and the legend says what share of gaps are zero.
    """
    path = Path(path)
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise ValueError(f"{path}: figure files end in {', '.join(FIGURE_SUFFIXES)}, not {path.suffix or '(none)'!r}")
    from matplotlib.figure import Figure  # lazy: matplotlib takes ~0.3 s to import

    table = getattr(trace, "table", trace)
    series: list[tuple[str, pa.Table, str]] = [("trace", table, "C0")]
    if fit is not None:
        series.append(("fit", fit, "C1"))
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    ax_rate, ax_gap, ax_prompt, ax_output = fig.subplots(2, 2).ravel()
    trace_t = _arrivals(table)
    for label, tab, color in series:
        t = _arrivals(tab)
        if t.size < 2:
            continue
        if label == "fit" and period_s is not None:
            edges, counts = _per_minute(t[t < period_s], period_s)
            rate_label = "fit (first span)"
        else:
            edges, counts = _per_minute(t)
            rate_label = label
        ax_rate.stairs(counts, edges, baseline=None, color=color, label=rate_label)
        gaps = np.diff(t)
        zero = float(np.mean(gaps <= 0))
        pos = gaps[gaps > 0]
        if pos.size:
            x, p = _ccdf(pos)
            p = p * (1 - zero)
            extra = f" ({zero:.0%} of gaps are 0)" if zero >= 0.005 else ""
            ax_gap.loglog(x, p, color=color, label=f"{label}, CV {gaps.std() / gaps.mean():.2f}{extra}")
        for ax, col in ((ax_prompt, "prompt_tokens"), (ax_output, "output_tokens")):
            v = tab.column(col).to_numpy(zero_copy_only=False)
            x, p = _cdf(v)
            p50, p99 = np.percentile(v, [50, 99])
            ax.plot(x, p, color=color, label=f"{label}, p50 {p50:,.0f}, p99 {p99:,.0f}")
    ax_rate.set(xlabel="minute", ylabel="arrivals per minute", title="arrivals per minute")
    if trace_t.size:
        ax_rate.set_xlim(0, max(trace_t[-1] / 60, 1))
    ax_gap.set(xlabel="inter-arrival gap (s)", ylabel="P(gap > x)", title="inter-arrival CCDF")
    for ax, what in ((ax_prompt, "prompt"), (ax_output, "output")):
        ax.set_xscale("log")
        ax.set(xlabel=f"{what} tokens", ylabel="P(length ≤ x)", title=f"{what} length CDF", ylim=(0, 1))
    for ax in (ax_rate, ax_gap, ax_prompt, ax_output):
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return path
