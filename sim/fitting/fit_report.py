"""Showing a benchmark fit: the text a terminal prints of it (:func:`format_fit`), the table of
measured against fitted values that its profile files beside the record
(:func:`measurements_table`), and the formatters that the fit's messages share with them.

Apart from the fitting so that how a fit reads can change without touching how it is made; it
reads only the results (:mod:`sim.fitting.fit_result`) and the benchmark rows.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pyarrow as pa

from sim.fitting.benchmark_csv import BENCHMARK_METRICS, BenchmarkRow
from sim.fitting.fit_result import POOR_FIT_MEDIAN, BenchmarkFit, RowFit

__all__ = ["format_fit", "format_metric", "measurements_table", "row_ranges", "text_table"]


def format_metric(metric: str, v: float) -> str:
    """A value of ``metric`` in its unit: tokens/s, requests/s, or milliseconds for the latencies."""
    if metric == "output_tokens_per_s":
        return f"{v:,.1f} tok/s"
    if metric == "requests_per_s":
        return f"{v:.3g} req/s"
    return f"{v * 1e3:.4g} ms"


def format_fit(fit: BenchmarkFit) -> str:
    """The fit as text for a terminal: the factors and how firmly the rows pin them, the error
    (fitted and held out), and measured versus fitted per row and metric."""
    model, quant, hardware, tp = fit.configuration
    f = fit.factors
    lines = [
        f"{model} / {quant} / {hardware} / tp{tp}: {len(fit.rows)} benchmark row(s), "
        f"{sum(len(r.measured) for r in fit.rows)} measured values, {fit.evaluations} simulations",
        f"factors against the roofline: compute ×{f['compute']:.3f}, memory ×{f['memory']:.3f}, "
        f"overhead ×{f['overhead']:.3f} (t0 = {fit.coefficients['t0'] * 1e3:.3f} ms per iteration)",
        "how loosely the rows pin them, per 1% of noise in the measurements: "
        + ", ".join(f"{k} ±{u:.1%}" for k, u in fit.uncertainty.items()),
        f"fitted error: median {fit.median_error:.1%}, max {fit.max_error:.1%}"
        + (f" — POOR FIT (median above {POOR_FIT_MEDIAN:.0%}): kept and labelled poor"
           if fit.quality == "poor" else ""),
    ]
    if fit.heldout_error:
        lines.append("held-out error (cross-validated): " + "; ".join(
            f"{fam} median {e['median']:.1%}, max {e['max']:.1%} ({e['points']:.0f})"
            for fam, e in fit.heldout_error.items()))
    head = ("row", "load", "in/out", "simulated", "metric", "measured", "fitted", "error")
    table = [head]
    for r in fit.rows:
        sim = f"{r.simulated_requests}/{r.num_requests}" + (f" ×{r.streams}" if r.streams > 1 else "")
        for k, (m, v) in enumerate(r.measured.items()):
            table.append((str(r.row) if k == 0 else "", r.load if k == 0 else "",
                          f"{r.input_tokens}/{r.output_tokens}" if k == 0 else "", sim if k == 0 else "",
                          m, format_metric(m, v), format_metric(m, r.fitted[m]), f"{r.error[m]:+.1%}"))
    lines.extend(text_table(table, right={0, 3, 5, 6, 7}))
    lines.append("simulated: requests per simulated run / requests measured (×k: k arrival streams averaged)")
    for r in fit.rows:
        if r.note:
            lines.append(f"row {r.row}: {r.note}")
    lines.extend(f"note: {n}" for n in fit.notes)
    return "\n".join(lines)


def text_table(table: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    """Rows of cells (the first the header) as aligned lines of plain text, the columns ``right``
    right-aligned: plain, so the printout reads the same in a log file as on a terminal."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
            for row in table]


def row_ranges(numbers: Sequence[int]) -> str:
    """Row numbers as ranges, for messages: 1, 2, 3, 5 → '1-3, 5'."""
    out, s = [], sorted(numbers)
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[j] + 1:
            j += 1
        out.append(f"{s[i]}" if i == j else f"{s[i]}-{s[j]}")
        i = j + 1
    return ", ".join(out)


def measurements_table(rows: Sequence[RowFit], by_row: Mapping[int, BenchmarkRow]) -> pa.Table:
    """The benchmark rows as the profile's measurements: inputs, then measured and fitted metrics."""
    src = [by_row[r.row] for r in rows]
    cols: dict[str, Any] = {
        "row": pa.array([r.row for r in rows], pa.int64()),
        "input_tokens": pa.array([r.input_tokens for r in src], pa.int64()),
        "output_tokens": pa.array([r.output_tokens for r in src], pa.int64()),
        "concurrency": pa.array([r.concurrency for r in src], pa.int64()),
        "request_rate": pa.array([r.request_rate for r in src], pa.float64()),
        "num_requests": pa.array([r.num_requests for r in src], pa.int64()),
        "simulated_requests": pa.array([r.simulated_requests for r in rows], pa.int64()),
        "streams": pa.array([r.streams for r in rows], pa.int64()),
    }
    for m in BENCHMARK_METRICS:
        if any(m in r.measured for r in rows):
            cols[f"measured_{m}"] = pa.array([r.measured.get(m) for r in rows], pa.float64())
            cols[f"fitted_{m}"] = pa.array([r.fitted.get(m) for r in rows], pa.float64())
    return pa.table(cols)
