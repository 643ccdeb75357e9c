"""Charts of load curves and hardware comparisons (issue 17, item 5): latency percentiles against
throughput, cost per 1M output tokens against offered load, and idle-capacity waste per hardware
option and per time window. For the capacity-planning document (issue 20, :mod:`sim.analysis.report`)
besides: the workload's arrival rate over time and its length histograms, several options' load
curves overlaid, busy and wasted shares per option, and the fleet per hour of time-varying traffic.

Each chart is written twice from one figure: ``<out_stem>.png`` for a glance and
``<out_stem>.svg`` for reports. The SVG keeps its text as text (``svg.fonttype: none``), so a
report can be searched, a screen reader can read it and a test can find the axis labels; it is
also byte-for-byte reproducible (no date, fixed id salt).

The inputs are the tables the curve and comparison write (pyarrow Tables; a RecordBatch, a dict of
columns or a list of row dicts is turned into one). Their columns:

- curve points, one row per (rate, seed): ``rate_per_s``, ``saturated``, ``output_tokens_per_s``,
  ``{ttft,tpot,itl,e2e}_{p50,p90,p99}_s``, ``queue_mean_s``, ``usd_per_million_output_tokens``
  and ``usd_per_million_good_output_tokens`` (saturated rows have null percentiles);
- comparison options, one row per hardware option: ``option``, ``fits``, ``meets_slo``, ``reason``,
  ``usd_per_million_output_tokens``, ``replicas_needed`` and the waste parts ``<part>_gpu_h``;
- waste windows, one row per time window: ``window_start_s``, ``window_s`` and ``<part>_gpu_s``.

Nulls are expected (a saturated point, an option that does not fit) and never fail a chart: what
cannot be drawn is left out, and a panel with nothing to draw says so. An input with
no rows, a missing column or a non-numeric one is a ``ValueError`` of one line.

matplotlib is imported only when a chart is drawn, and only through its object API (``Figure``),
never ``pyplot``: rendering is Agg's (the canvas that ``savefig`` picks for PNG; SVG has its own
writer), but no backend is switched and no figure registry is filled, so nothing global changes
in the caller's process (a notebook keeps its backend) and there is no figure to close: one is
garbage like any object once saved. This follows :mod:`workloads.plot`.
"""

from __future__ import annotations

import math
import numbers
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "WASTE_PARTS",
    "WastePart",
    "arrival_rate_chart",
    "cost_load_chart",
    "fleet_by_hour_chart",
    "latency_throughput_chart",
    "length_histogram_chart",
    "option_curves_chart",
    "sweep_heatmap_chart",
    "sweep_metrics_chart",
    "waste_by_option_chart",
    "waste_by_window_chart",
    "waste_share_chart",
]


class WastePart(NamedTuple):
    """One part of the provisioned GPU time, as every waste chart draws it."""

    key: str  # column stem: ``<key>_gpu_h`` in a comparison, ``<key>_gpu_s`` in a window table
    label: str  # legend text
    color: str  # the same in every chart, so that a part is recognised across them


# Okabe-Ito colours (told apart with the common colour-vision deficiencies), stacked in this
# order: useful work first, then the ways capacity goes unused, from busiest to emptiest.
WASTE_PARTS: tuple[WastePart, ...] = (
    WastePart("useful", "useful", "#009E73"),
    WastePart("under_filled", "under-filled", "#E69F00"),
    WastePart("recompute", "recompute", "#D55E00"),
    WastePart("idle", "idle", "#999999"),
    WastePart("over_provisioned", "over-provisioned", "#56B4E9"),
)


class _Panel(NamedTuple):
    """A latency metric with a panel of its own: its axis name and the statistics drawn."""

    axis: str
    title: str
    stats: tuple[str, ...]


# Columns are ``<metric>_<stat>_s``. TTFT and TPOT always have a panel; the others get one when an
# SLO names them (the queueing delay only has a mean: the M/D/1 check puts its SLO there).
_PANELS: dict[str, _Panel] = {
    "ttft": _Panel("TTFT", "time to first token", ("p50", "p90", "p99")),
    "tpot": _Panel("TPOT", "time per output token", ("p50", "p90", "p99")),
    "itl": _Panel("ITL", "inter-token latency", ("p50", "p90", "p99")),
    "e2e": _Panel("E2E latency", "end-to-end latency", ("p50", "p90", "p99")),
    "queue": _Panel("queueing delay", "queueing delay", ("mean",)),
}
_STAT_COLORS = {"p50": "#0072B2", "p90": "#CC79A7", "p99": "#D55E00", "mean": "#0072B2"}
_SATURATED_COLOR = "#777777"
_FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
_CAPTION_FONTSIZE = 8
_LOG_SPAN = 20.0  # an axis goes logarithmic when its positive values span more than this factor
_PNG_DPI = 120


class _SloLine(NamedTuple):
    """An SLO as a chart draws it."""

    metric: str
    limit_s: float
    label: str


class _OverSeeds(NamedTuple):
    """Per offered rate (``rates``, ascending), the mean, min and max over seeds of each value."""

    rates: np.ndarray
    mean: dict[str, np.ndarray]
    lo: dict[str, np.ndarray]
    hi: dict[str, np.ndarray]


# ---------------------------------------------------------------------------------------- charts


def latency_throughput_chart(points: Any, out_stem: str | Path, caption: str, slos: Sequence[Any] = ()) -> list[Path]:
    """Latency percentiles against achieved output throughput, one panel per metric.

    ``points`` is a load curve, one row per (rate, seed). TTFT and TPOT always have a panel, with
    p50, p90 and p99 as lines; each point is one offered rate, at the mean over its unsaturated
    seeds of the throughput (x) and of the percentile (y), with the min–max over those seeds as a
    shaded band. Saturated rows have no percentiles: their throughputs are marked with crosses on
    the x axis and the region from the lowest of them onwards is shaded, labelled with the lowest
    offered rate that saturated. A y axis is logarithmic when its values span more than a factor of
    20 (latencies grow without bound towards the knee).

    ``slos``: objects with ``metric`` (``ttft``, ``tpot``, ``itl``, ``e2e`` or ``queue``), ``stat``
    (``p99``, ``mean``, ...) and ``limit_s``, such as :class:`sim.analysis.slo.SLOTarget`; each is a dashed
    horizontal line on its metric's panel, labelled like ``SLO ttft_p99 ≤ 1 s`` (``SLO
    chat:ttft_p99 ≤ 1 s`` for a target on one class, whose ``cls`` is set). An SLO on ITL, E2E or the queueing delay adds that
    panel. ``caption`` (the configuration and profile provenance) is wrapped under the figure.
    Returns the PNG and SVG paths written.
    """
    paths = _out_paths(out_stem)
    table = _table(points, "points")
    lines = [_slo_line(slo, i) for i, slo in enumerate(slos)]
    metrics = list(dict.fromkeys(["ttft", "tpot", *(line.metric for line in lines)]))
    rate = _floats(table, "rate_per_s", "points")
    thr = _floats(table, "output_tokens_per_s", "points")
    sat = _flags(table, "saturated", "points")
    columns = {(m, s): _floats(table, f"{m}_{s}_s", "points") for m in metrics for s in _PANELS[m].stats}

    from matplotlib.patches import Patch  # lazy, like all of matplotlib (see the module's notes)

    ncols = min(len(metrics), 2)
    nrows = math.ceil(len(metrics) / ncols)
    fig, area = _figure(11, 4.3 * nrows, caption)
    axes = area.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(metrics):]:
        ax.set_visible(False)  # an odd panel count leaves one cell empty
    sat_thr = thr[sat & np.isfinite(thr)]
    sat_rates = rate[sat & np.isfinite(rate)]
    for ax, metric in zip(axes, metrics):
        panel = _PANELS[metric]
        drawn: list[np.ndarray] = []
        for stat in panel.stats:
            y = columns[(metric, stat)]
            ok = ~sat & np.isfinite(thr) & np.isfinite(y)
            g = _over_seeds(rate, {"x": thr, "y": y}, ok)
            if not g.rates.size:
                continue
            color = _STAT_COLORS[stat]
            ax.plot(g.mean["x"], g.mean["y"], marker="o", markersize=4, color=color, label=stat)
            ax.fill_between(g.mean["x"], g.lo["y"], g.hi["y"], color=color, alpha=0.2, linewidth=0)
            drawn += [g.lo["y"], g.hi["y"]]
        banded = bool(drawn)
        if not banded:
            _say_empty(ax, f"no unsaturated point with a finite {panel.axis}")
        for line in (ln for ln in lines if ln.metric == metric):
            ax.axhline(line.limit_s, linestyle="--", color="black", linewidth=1.2, label=_plain(line.label))
            drawn.append(np.array([line.limit_s]))
        _mark_saturated(ax, sat_thr, sat_rates)
        if drawn:
            _auto_log(ax, "y", np.concatenate(drawn))
        ax.set_xlabel("achieved output throughput (tokens/s)")
        ax.set_ylabel(f"{panel.axis} (s)")
        ax.set_title(panel.title)
        ax.grid(True, alpha=0.3, which="both")
        handles, _ = ax.get_legend_handles_labels()
        if banded:
            handles.append(Patch(color="grey", alpha=0.3, label="min–max over seeds"))
        if handles:
            ax.legend(handles=handles, fontsize=8, loc="best")
    area.suptitle("Latency percentiles against achieved output throughput (mean over seeds per offered rate)")
    return _save(fig, paths)


def cost_load_chart(points: Any, out_stem: str | Path, caption: str, max_rate: float | None = None) -> list[Path]:
    """Dollars per 1M output tokens against offered load (requests/s).

    ``points`` is a load curve, one row per (rate, seed): the line is the mean over seeds per
    offered rate with the min–max as a band, for all output tokens and, when the curve has the
    column, for the output tokens of requests that met their SLOs only (goodput's price). The
    region from the lowest offered rate that saturated in any seed onwards is shaded.
    ``max_rate``: the highest rate under the SLOs (None when no rate meets them), drawn as a
    vertical line labelled "SLO limit". Axes are logarithmic where values span more than a factor
    of 20 (an idle GPU's tokens are dear). Returns the PNG and SVG paths written.
    """
    paths = _out_paths(out_stem)
    table = _table(points, "points")
    if max_rate is not None and not (math.isfinite(max_rate) and max_rate >= 0):
        raise ValueError(f"max_rate: {max_rate!r} is not a rate "
                         "(a finite number >= 0, or None when no rate meets the SLOs)")
    rate = _floats(table, "rate_per_s", "points")
    sat = _flags(table, "saturated", "points")
    series = [("all output tokens", _floats(table, "usd_per_million_output_tokens", "points"), "#0072B2")]
    if "usd_per_million_good_output_tokens" in table.column_names:
        series.append(("output tokens of requests meeting their SLOs",
                       _floats(table, "usd_per_million_good_output_tokens", "points"), "#009E73"))

    fig, area = _figure(9, 5, caption)
    ax = area.subplots()
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for label, cost, color in series:
        g = _over_seeds(rate, {"y": cost}, np.isfinite(rate) & np.isfinite(cost))
        if not g.rates.size:
            continue
        ax.plot(g.rates, g.mean["y"], marker="o", markersize=4, color=color, label=f"{label} (min–max over seeds)")
        ax.fill_between(g.rates, g.lo["y"], g.hi["y"], color=color, alpha=0.2, linewidth=0)
        xs.append(g.rates)
        ys += [g.lo["y"], g.hi["y"]]
    if not ys:
        _say_empty(ax, "no point with a finite cost per 1M output tokens")
    if max_rate is not None:
        ax.axvline(max_rate, linestyle="--", color="black", linewidth=1.2,
                   label=f"SLO limit ({max_rate:.3g} requests/s)")
        xs.append(np.array([max_rate]))
    sat_rates = rate[sat & np.isfinite(rate)]
    if sat_rates.size:
        # Crosses on the axis give the autoscale the saturated rates even where their cost is null.
        ax.plot(sat_rates, np.full(sat_rates.size, 0.02), linestyle="", marker="x", color=_SATURATED_COLOR,
                transform=ax.get_xaxis_transform())
        xs.append(sat_rates)
    if xs:
        _auto_log(ax, "x", np.concatenate(xs))
    if ys:
        _auto_log(ax, "y", np.concatenate(ys))
    if sat_rates.size:
        _shade_right(ax, float(sat_rates.min()), f"saturated (offered ≥ {sat_rates.min():.3g} requests/s)")
    ax.set_xlabel("offered load (requests/s)")
    ax.set_ylabel("\\$ per 1M output tokens")
    ax.grid(True, alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    area.suptitle("Cost per 1M output tokens against offered load")
    return _save(fig, paths)


def waste_by_option_chart(options: Any, out_stem: str | Path, caption: str) -> list[Path]:
    """Provisioned GPU-hours per hardware option, as a stacked horizontal bar of its waste parts.

    ``options`` is a comparison, one row per option, in the order drawn (top to bottom). Each bar
    stacks the ``<part>_gpu_h`` columns of :data:`WASTE_PARTS` (a null part counts as 0 and the
    bar's note calls it n/a); the note at its end gives the total, and the $ per 1M output tokens and
    replicas needed where the table has them. An option that does not fit (``fits`` false), or
    has no waste figures at all, gets its ``reason`` as text in place of a bar; one that fits but
    misses its SLOs is labelled so. Returns the PNG and SVG paths written.
    """
    paths = _out_paths(out_stem)
    table = _table(options, "options")
    # Everything but the name and the parts is optional: a missing column reads as all null.
    table = _or_nulls(table, {"fits": pa.bool_(), "meets_slo": pa.bool_(), "reason": pa.string(),
                              "usd_per_million_output_tokens": pa.float64(), "replicas_needed": pa.float64()})
    names = [str(v) for v in _strings(table, "option", "options")]
    parts = {p.key: _floats(table, f"{p.key}_gpu_h", "options") for p in WASTE_PARTS}
    n = table.num_rows
    fits = _flags(table, "fits", "options", null=True)  # unknown: drawn if it has figures
    meets = _flags(table, "meets_slo", "options", null=True)
    reasons = _strings(table, "reason", "options")
    usd = _floats(table, "usd_per_million_output_tokens", "options")
    replicas = _floats(table, "replicas_needed", "options")

    stack = np.column_stack([parts[p.key] for p in WASTE_PARTS])
    drawable = fits & np.isfinite(stack).any(axis=1)
    widths = np.nan_to_num(stack, nan=0.0)
    totals = widths.sum(axis=1)
    fig, area = _figure(11, 1.6 + 0.5 * n, caption)
    ax = area.subplots()
    y = np.arange(n)
    left = np.zeros(n)
    for j, part in enumerate(WASTE_PARTS):
        # Every part is drawn (zero-width where absent) so that the legend always lists all five.
        ax.barh(y[drawable], widths[drawable, j], left=left[drawable], height=0.6, color=part.color,
                label=part.label, linewidth=0)
        left += widths[:, j]
    for i in range(n):
        if drawable[i]:
            note = [f"{totals[i]:.3g} GPU-h"]
            if np.isfinite(usd[i]):
                note.append(f"${usd[i]:.3g}/1M output tokens")
            if np.isfinite(replicas[i]):
                note.append(f"{replicas[i]:g} replicas")
            missing = [p.label for j, p in enumerate(WASTE_PARTS) if not np.isfinite(stack[i, j])]
            if missing:
                note.append(f"{', '.join(missing)} n/a")
            ax.annotate(_plain("  " + " · ".join(note)), (totals[i], y[i]), va="center", fontsize=8)
        else:
            what = "does not fit" if not fits[i] else ("misses the SLOs" if not meets[i] else "no waste figures")
            text = f"{what}: {reasons[i]}" if reasons[i] else what
            ax.text(0.01, y[i], _plain(text), transform=ax.get_yaxis_transform(), va="center",
                    fontsize=9, style="italic", color="#444444")
    labels = [f"{name} (misses SLOs)" if drawable[i] and not meets[i] else name for i, name in enumerate(names)]
    ax.set_yticks(y, labels=[_plain(s) for s in labels])
    ax.set_ylim(n - 0.5, -0.5)  # first option on top
    top = float(totals[drawable].max()) if drawable.any() else 0.0
    ax.set_xlim(0, top * 2.0 if top > 0 else 1.0)  # room for the notes at the bars' ends
    ax.set_xlabel("provisioned GPU-hours, by use (GPU-hours)")
    ax.set_ylabel("hardware option")
    ax.grid(True, axis="x", alpha=0.3)
    area.legend(loc="outside lower center", ncols=len(WASTE_PARTS), fontsize=9)
    area.suptitle("Where provisioned GPU time goes, per hardware option")
    return _save(fig, paths)


def waste_by_window_chart(windows: Any, out_stem: str | Path, caption: str) -> list[Path]:
    """Provisioned GPU-hours per time window, stacked by waste part, over the run.

    ``windows`` has one row per window: ``window_start_s``, ``window_s`` and the
    ``<part>_gpu_s`` columns of :data:`WASTE_PARTS` (drawn in GPU-hours; a null part counts as 0).
    Each window is a bar as wide as the window. Time is in hours when the windows span more than
    2 h, else in minutes, and the axis label says which. Rows without a start or a positive width
    are left out. Returns the PNG and SVG paths written.
    """
    paths = _out_paths(out_stem)
    table = _table(windows, "windows")
    start = _floats(table, "window_start_s", "windows")
    width = _floats(table, "window_s", "windows")
    parts = {p.key: _floats(table, f"{p.key}_gpu_s", "windows") for p in WASTE_PARTS}

    ok = np.isfinite(start) & np.isfinite(width) & (width > 0)
    span_s = float((start[ok] + width[ok]).max() - start[ok].min()) if ok.any() else 0.0
    scale, unit = (3600.0, "hours") if span_s > 2 * 3600 else (60.0, "minutes")
    fig, area = _figure(11, 5, caption)
    ax = area.subplots()
    x0, x1 = start[ok] / scale, (start[ok] + width[ok]) / scale
    bottom = np.zeros(x0.size)
    for part in WASTE_PARTS:
        h = np.nan_to_num(parts[part.key][ok], nan=0.0) / 3600.0
        _rectangles(ax, x0, x1, bottom, bottom + h, part)
        bottom += h
    if ok.any():
        ax.autoscale_view()
    else:
        _say_empty(ax, "no window with a start and a positive length")
    widths = np.unique(width[ok])
    each = f", {_duration(float(widths[0]))} windows" if widths.size == 1 else ""
    ax.set_xlabel(f"time since the start of the run ({unit})")
    ax.set_ylabel(f"GPU-hours per window{each}")
    ax.grid(True, axis="y", alpha=0.3)
    area.legend(loc="outside lower center", ncols=len(WASTE_PARTS), fontsize=9)
    area.suptitle("Where provisioned GPU time goes, per time window")
    return _save(fig, paths)


# --------------------------------------------------------------------------------------- helpers


def _table(data: Any, what: str) -> pa.Table:
    """``data`` as a pyarrow Table with at least one row."""
    if isinstance(data, pa.Table):
        table = data
    elif isinstance(data, pa.RecordBatch):
        table = pa.Table.from_batches([data])
    elif isinstance(data, Mapping):
        table = pa.table(dict(data))
    elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        table = pa.Table.from_pylist(list(data))
    else:
        raise TypeError(f"{what}: expected a pyarrow Table (or a dict of columns, or a list of rows), "
                        f"not {type(data).__name__}")
    if table.num_rows == 0:
        raise ValueError(f"{what}: no rows to chart")
    return table


def _or_nulls(table: pa.Table, optional: dict[str, pa.DataType]) -> pa.Table:
    """``table`` with each ``optional`` column it lacks added, all null."""
    for name, type_ in optional.items():
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, type_))
    return table


def _column(table: pa.Table, name: str, what: str) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise ValueError(f"{what}: column {name!r} is missing (columns: {', '.join(table.column_names)})")
    return table.column(name)


def _floats(table: pa.Table, name: str, what: str) -> np.ndarray:
    """A numeric column as float64, nulls as NaN."""
    col = _column(table, name, what)
    t = col.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_null(t)):
        raise ValueError(f"{what}: column {name!r} is {t}, not a number")
    return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)


def _flags(table: pa.Table, name: str, what: str, null: bool = False) -> np.ndarray:
    """A boolean column as a numpy bool array, nulls read as ``null``."""
    col = _column(table, name, what)
    if not (pa.types.is_boolean(col.type) or pa.types.is_null(col.type)):
        raise ValueError(f"{what}: column {name!r} is {col.type}, not a boolean")
    return pc.fill_null(pc.cast(col, pa.bool_()), null).to_numpy(zero_copy_only=False).astype(bool)


def _strings(table: pa.Table, name: str, what: str) -> list[str | None]:
    return _column(table, name, what).to_pylist()


def _over_seeds(rates: np.ndarray, values: dict[str, np.ndarray], keep: np.ndarray) -> _OverSeeds:
    """Mean, min and max over the rows in ``keep`` of each of ``values``, per distinct rate."""
    keep = keep & np.isfinite(rates)
    keys = np.unique(rates[keep])
    mean = {k: np.empty(keys.size) for k in values}
    lo = {k: np.empty(keys.size) for k in values}
    hi = {k: np.empty(keys.size) for k in values}
    for i, r in enumerate(keys):  # a curve has tens of rates: a loop reads plainer than a group-by
        rows = keep & (rates == r)
        for k, v in values.items():
            mean[k][i], lo[k][i], hi[k][i] = v[rows].mean(), v[rows].min(), v[rows].max()
    return _OverSeeds(keys, mean, lo, hi)


def _slo_line(slo: Any, i: int) -> _SloLine:
    """Check one SLO object (``metric``, ``stat``, ``limit_s``) and name it for the chart."""
    metric, stat, limit = slo.metric, slo.stat, slo.limit_s
    if metric not in _PANELS:
        raise ValueError(f"slos[{i}].metric: {metric!r} is not one of {', '.join(_PANELS)}")
    if not (isinstance(limit, numbers.Real) and math.isfinite(limit) and limit > 0):
        raise ValueError(f"slos[{i}].limit_s: {limit!r} is not a latency (a finite number of seconds > 0)")
    name = f"{metric}_{stat}" if stat else metric
    cls = getattr(slo, "cls", None)  # sim.analysis.slo.SLOTarget's class name; the brief's plain objects have none
    if cls is not None:
        name = f"{cls}:{name}"  # a class's target, drawn over all requests' statistics: the label says whose
    return _SloLine(metric, float(limit), f"SLO {name} ≤ {_duration(float(limit))}")


def _duration(s: float) -> str:
    """Seconds as a short text: ``60 ms``, ``1 s``, ``5 min``, ``2 h``."""
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    if s < 60:
        return f"{s:.3g} s"
    if s < 3600:
        return f"{s / 60:.3g} min"
    return f"{s / 3600:.3g} h"


def _plain(text: str) -> str:
    """``text`` shown as written: a pair of dollar signs would otherwise start matplotlib's maths."""
    return text.replace("$", "\\$")


def _auto_log(ax: Any, axis: str, values: np.ndarray) -> None:
    """Make ``axis`` logarithmic when the finite ``values`` are all positive and span > _LOG_SPAN."""
    v = values[np.isfinite(values)]
    if v.size and v.min() > 0 and v.max() / v.min() > _LOG_SPAN:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def _shade_right(ax: Any, x0: float, label: str) -> None:
    """Shade from ``x0`` to the right edge of the axes (as autoscaled by what is drawn so far)."""
    lo, hi = ax.get_xlim()
    ax.axvspan(x0, max(hi, x0), color=_SATURATED_COLOR, alpha=0.15, hatch="//", linewidth=0, label=label)
    ax.set_xlim(lo, max(hi, x0))


def _mark_saturated(ax: Any, sat_thr: np.ndarray, sat_rates: np.ndarray) -> None:
    """Crosses on the x axis at saturated rows' throughputs and the region beyond them shaded; a
    note instead when saturated rows have no throughput to place."""
    if not sat_rates.size:
        return
    label = f"saturated (offered ≥ {sat_rates.min():.3g} requests/s)"
    if sat_thr.size:
        ax.plot(sat_thr, np.full(sat_thr.size, 0.02), linestyle="", marker="x", color=_SATURATED_COLOR,
                transform=ax.get_xaxis_transform())
        _shade_right(ax, float(sat_thr.min()), label)
    else:
        ax.text(0.99, 0.02, f"{label}: no throughput recorded", transform=ax.transAxes, ha="right",
                va="bottom", fontsize=8, color=_SATURATED_COLOR)


def _rectangles(ax: Any, x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray, part: WastePart) -> None:
    """One bar per window as a single artist: ``ax.bar`` makes an artist per bar, which takes
    about 4 s to draw and save for a day of 5-minute windows (1,440 bars) against under 1 s for
    five of these (measured on the 2-core machine)."""
    from matplotlib.collections import PolyCollection

    verts = np.stack([np.column_stack([x0, y0]), np.column_stack([x1, y0]),
                      np.column_stack([x1, y1]), np.column_stack([x0, y1])], axis=1)
    ax.add_collection(PolyCollection(verts, facecolors=part.color, edgecolors="none", linewidths=0,
                                     label=part.label), autolim=True)


def _say_empty(ax: Any, text: str) -> None:
    # Above the middle, on white: an SLO line on an otherwise empty panel sits in the middle.
    ax.text(0.5, 0.65, text, transform=ax.transAxes, ha="center", va="center", fontsize=10, color="#444444",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.9})


def _wrap(caption: str, width_in: float) -> str:
    """``caption`` wrapped to the figure's width, its own line breaks kept."""
    chars = max(int(width_in * 72 / (_CAPTION_FONTSIZE * 0.6)), 40)  # ~0.6 em per character in DejaVu Sans
    return "\n".join(textwrap.fill(line, chars) if line else "" for line in caption.splitlines())


def _figure(width_in: float, height_in: float, caption: str) -> tuple[Any, Any]:
    """A figure with a plot area of ``width_in`` x ``height_in`` inches and ``caption`` wrapped
    under it. Returns (the figure, the area to draw in: the figure itself when there is no
    caption, else its upper subfigure). The caption has a subfigure of its own so that the
    constrained layout keeps the plot's legend and axis labels clear of it."""
    from matplotlib.figure import Figure  # lazy: matplotlib takes ~0.3 s to import

    if not caption.strip():
        fig = Figure(figsize=(width_in, height_in), layout="constrained")
        return fig, fig
    text = _plain(_wrap(caption, width_in))
    caption_in = ((text.count("\n") + 1) * _CAPTION_FONTSIZE * 1.3 + 8) / 72  # line height ~1.3 em, and a margin
    fig = Figure(figsize=(width_in, height_in + caption_in), layout="constrained")
    area, below = fig.subfigures(2, 1, height_ratios=[height_in, caption_in])
    below.text(0.01, 1.0, text, ha="left", va="top", fontsize=_CAPTION_FONTSIZE, color="#333333")
    return fig, area


def _out_paths(out_stem: str | Path) -> tuple[Path, Path]:
    """The PNG and SVG paths for ``out_stem``, checked before anything is drawn."""
    stem = Path(out_stem)
    if stem.suffix.lower() in _FIGURE_SUFFIXES or not stem.name:
        raise ValueError(f"out_stem: {str(stem)!r} is not a path without a suffix (.png and .svg are added to it)")
    return stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".svg")


def _save(fig: Any, paths: tuple[Path, Path]) -> list[Path]:
    """Write ``fig`` to ``paths`` (PNG, SVG), creating their directory."""
    png, svg = paths
    png.parent.mkdir(parents=True, exist_ok=True)
    import matplotlib

    fig.savefig(png, dpi=_PNG_DPI)
    # Text kept as <text> (searchable, readable, small) and no date or random ids: the same chart
    # gives the same bytes. rc_context restores the caller's settings afterwards.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "capsim"}):
        fig.savefig(svg, metadata={"Date": None})
    return [png, svg]


# ------------------------------------------------------------------- charts for the report (issue 20)

# One colour per option in the overlays, Okabe-Ito first, then tab10's for more options than that.
_OPTION_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000",
                  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
_NICE_BINS_S = (1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)
_TARGET_BINS = 120  # arrival bins over the span: enough to see a surge, few enough to read a count


def arrival_rate_chart(requests: Any, out_stem: str | Path, caption: str,
                       expected: tuple[Sequence[float], Sequence[float]] | None = None) -> list[Path]:
    """Arrivals per second over time: the requests' ``arrival_s`` counted in windows and divided
    by the window's length, as steps.

    The window is the nicest of 1 s … 1 h that gives about 120 windows over the span; the last,
    partial window is left out (it would read as a drop). ``expected``: the rate the workload was
    drawn from, as (times in s, requests/s), drawn as a line over the counts (a rate profile's
    curve, or a constant rate as two points). Rows without an arrival time (a closed loop's,
    set by the engine) are left out, and a chart with none says so. Time is in hours when the span
    exceeds 2 h, else minutes. Returns the PNG and SVG paths written.
    """
    paths = _out_paths(out_stem)
    table = _table(requests, "requests")
    t = _floats(table, "arrival_s", "requests")
    t = np.sort(t[np.isfinite(t)])
    exp_t = exp_r = np.array([])
    if expected is not None:
        exp_t, exp_r = (np.asarray(v, dtype=np.float64) for v in expected)
        if exp_t.shape != exp_r.shape:
            raise ValueError(f"expected: {exp_t.size} times but {exp_r.size} rates; give one rate per time")
    span = max(float(t[-1]) if t.size else 0.0, float(exp_t.max()) if exp_t.size else 0.0)
    scale, unit = (3600.0, "hours") if span > 2 * 3600 else (60.0, "minutes")
    fig, area = _figure(11, 4.2, caption)
    ax = area.subplots()
    if t.size >= 2:
        width = next((w for w in _NICE_BINS_S if span / w <= _TARGET_BINS), _NICE_BINS_S[-1])
        full = max(int(t[-1] // width), 1)
        counts = np.bincount((t // width).astype(np.int64), minlength=full)[:full]
        edges = np.arange(full + 1) * width
        ax.stairs(counts / width, edges / scale, baseline=None, color="#0072B2", linewidth=1.2,
                  label=f"arrivals per {_duration(width)} window, as requests/s")
    else:
        _say_empty(ax, "no arrival times to count (a closed loop's are set by the engine)")
    if exp_t.size:
        ax.plot(exp_t / scale, exp_r, color="black", linestyle="--", linewidth=1.2, label="rate drawn from")
    ax.set_xlabel(f"time since the start of the workload ({unit})")
    ax.set_ylabel("arrival rate (requests/s)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    area.suptitle("Arrival rate over time")
    return _save(fig, paths)


def length_histogram_chart(requests: Any, out_stem: str | Path, caption: str) -> list[Path]:
    """Prompt and output lengths (tokens) as two histograms side by side.

    Bins are logarithmic where a panel's lengths span more than a factor of 20, else even; the
    p50 and p99 are dashed lines, labelled with their values, and the mean is in the legend.
    Returns the PNG and SVG paths written.
    """
    paths = _out_paths(out_stem)
    table = _table(requests, "requests")
    panels = [("prompt", _floats(table, "prompt_tokens", "requests"), "#0072B2"),
              ("output", _floats(table, "output_tokens", "requests"), "#D55E00")]
    fig, area = _figure(11, 4.2, caption)
    axes = area.subplots(1, 2, squeeze=False).ravel()
    for ax, (name, v, color) in zip(axes, panels):
        v = v[np.isfinite(v)]
        if not v.size:
            _say_empty(ax, f"no {name} lengths")
        else:
            lo, hi = max(float(v.min()), 1.0), max(float(v.max()), 1.0)
            log = hi / lo > _LOG_SPAN
            bins = np.geomspace(lo, hi * 1.0001, 50) if log else np.linspace(float(v.min()), float(v.max()) + 1, 50)
            ax.hist(v, bins=bins, color=color, alpha=0.75, label=f"{v.size:,} requests, mean {v.mean():,.0f}")
            for q, style in (("p50", "--"), ("p99", ":")):
                x = float(np.quantile(v, 0.5 if q == "p50" else 0.99))
                ax.axvline(x, color="black", linestyle=style, linewidth=1.1, label=f"{q} {x:,.0f}")
            if log:
                from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

                ax.set_xscale("log")
                # Plain token counts at 1, 2 and 5 per decade: "2×10²"-style minor labels collide.
                ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:,.0f}"))
                ax.xaxis.set_minor_formatter(NullFormatter())
            ax.legend(fontsize=8, loc="best")
        ax.set_xlabel(f"{name} length (tokens)")
        ax.set_ylabel("requests")
        ax.set_title(f"{name} tokens")
        ax.grid(True, alpha=0.3)
    area.suptitle("Request lengths")
    return _save(fig, paths)


def option_curves_chart(points: Any, out_stem: str | Path, caption: str, slos: Sequence[Any] = (),
                        highlight: Sequence[str] = ()) -> list[Path]:
    """Several configurations' load curves on one figure: p99 TTFT and p99 TPOT against achieved
    output throughput, and $ per 1M output tokens against offered load, one line per option.

    ``points``: load-curve points (:data:`sim.analysis.curve.POINT_SCHEMA`) with an ``option``
    column naming the configuration of each row. Each line is the mean over seeds per offered
    rate of the unsaturated rows; an option whose rows are all saturated is left out of the
    latency panels. ``highlight``: options drawn thicker and named first in the legend (the
    recommendation and its runner-up). ``slos``: as :func:`latency_throughput_chart` takes them; the
    p99 targets on TTFT and TPOT are dashed lines on their panels. Returns the PNG and SVG paths.
    """
    paths = _out_paths(out_stem)
    table = _table(points, "points")
    names = [str(v) for v in _strings(table, "option", "points")]
    rate = _floats(table, "rate_per_s", "points")
    thr = _floats(table, "output_tokens_per_s", "points")
    sat = _flags(table, "saturated", "points")
    ttft = _floats(table, "ttft_p99_s", "points")
    tpot = _floats(table, "tpot_p99_s", "points")
    usd = _floats(table, "usd_per_million_output_tokens", "points")
    lines = [_slo_line(slo, i) for i, slo in enumerate(slos)]
    order = list(dict.fromkeys([h for h in highlight if h in names] + names))
    option_of = np.array(names, dtype=object)

    fig, area = _figure(13, 4.6, caption)
    axes = area.subplots(1, 3, squeeze=False).ravel()
    panels = ((axes[0], "ttft", ttft, "p99 TTFT (s)"), (axes[1], "tpot", tpot, "p99 TPOT (s)"))
    for k, opt in enumerate(order):
        mine = option_of == opt
        color = _OPTION_COLORS[k % len(_OPTION_COLORS)]
        bold = opt in highlight
        style = {"color": color, "linewidth": 2.4 if bold else 1.0, "alpha": 1.0 if bold else 0.75,
                 "marker": "o", "markersize": 3}
        for ax, _, y, _label in panels:
            g = _over_seeds(rate, {"x": thr, "y": y}, mine & ~sat & np.isfinite(thr) & np.isfinite(y))
            if g.rates.size:
                ax.plot(g.mean["x"], g.mean["y"], **style)
        g = _over_seeds(rate, {"y": usd}, mine & np.isfinite(usd))
        if g.rates.size:
            axes[2].plot(g.rates, g.mean["y"], label=_plain(opt), **style)
    for ax, metric, y, label in panels:
        for line in (ln for ln in lines if ln.metric == metric and "p99" in ln.label):
            ax.axhline(line.limit_s, linestyle="--", color="black", linewidth=1.2, label=_plain(line.label))
        _auto_log(ax, "y", y[~sat])
        ax.set_xlabel("achieved output throughput (tokens/s)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper left")
    _auto_log(axes[2], "y", usd)
    axes[2].set_xlabel("offered load per replica (requests/s)")
    axes[2].set_ylabel("\\$ per 1M output tokens")
    axes[2].grid(True, alpha=0.3, which="both")
    if axes[2].get_legend_handles_labels()[0]:
        area.legend(*axes[2].get_legend_handles_labels(), loc="outside lower center",
                    ncols=min(len(order), 4), fontsize=8)
    area.suptitle("Load curves of the options compared (mean over seeds per offered rate; saturated points left out)")
    return _save(fig, paths)


def waste_share_chart(options: Any, out_stem: str | Path, caption: str) -> list[Path]:
    """Per option, the share of its fleet's GPU-hours that is idle-capacity waste and the share
    that is busy (``waste_share`` and ``utilisation`` columns, 0–1), as paired horizontal bars in
    the order given (top to bottom); what :func:`waste_by_option_chart` draws when the parts of
    the waste are not in the table. An option without figures (it does not fit, or misses the
    SLOs at any rate) gets its ``reason`` as text. Returns the PNG and SVG paths written."""
    paths = _out_paths(out_stem)
    table = _or_nulls(_table(options, "options"), {"reason": pa.string(), "utilisation": pa.float64(),
                                                   "waste_share": pa.float64()})
    names = [_plain(str(v)) for v in _strings(table, "option", "options")]
    waste = _floats(table, "waste_share", "options")
    util = _floats(table, "utilisation", "options")
    reasons = _strings(table, "reason", "options")
    n = table.num_rows
    fig, area = _figure(11, 1.6 + 0.5 * n, caption)
    ax = area.subplots()
    y = np.arange(n)
    ok = np.isfinite(waste) | np.isfinite(util)
    ax.barh(y[ok] - 0.18, np.nan_to_num(util[ok]), height=0.34, color="#009E73", label="utilisation (busy share)")
    ax.barh(y[ok] + 0.18, np.nan_to_num(waste[ok]), height=0.34, color="#999999", label="idle-capacity waste share")
    for i in range(n):
        if not ok[i]:
            ax.text(0.01, y[i], _plain(reasons[i] or "no figures"), transform=ax.get_yaxis_transform(),
                    va="center", fontsize=9, style="italic", color="#444444")
    ax.set_yticks(y, labels=names)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the fleet's GPU-hours")
    ax.grid(True, axis="x", alpha=0.3)
    area.legend(loc="outside lower center", ncols=2, fontsize=9)
    area.suptitle("Busy and wasted GPU time, per option")
    return _save(fig, paths)


def fleet_by_hour_chart(hourly: Any, out_stem: str | Path, caption: str) -> list[Path]:
    """Replicas per hour of a day of time-varying traffic: those needed, those of a fleet resized
    every hour, and the static fleet sized for the peak, as steps; the offered rate on a second
    axis. ``hourly`` has one row per hour: ``hour``, ``rate_per_s``, ``replicas_needed``,
    ``replicas_resized`` and ``replicas_static`` (as a saved plan's ``hourly.parquet``).
    Returns the PNG and SVG paths written."""
    paths = _out_paths(out_stem)
    table = _table(hourly, "hourly")
    hour = _floats(table, "hour", "hourly")
    order = np.argsort(hour)
    hour = hour[order]
    edges = np.append(hour, hour[-1] + 1 if hour.size else 1)
    series = (("replicas_static", "static fleet, sized for the peak", "#56B4E9", 2.0),
              ("replicas_resized", "fleet resized hourly", "#009E73", 2.0),
              ("replicas_needed", "replicas needed", "black", 1.0))
    fig, area = _figure(11, 4.5, caption)
    ax = area.subplots()
    for column, label, color, width in series:
        v = _floats(table, column, "hourly")[order]
        ax.stairs(np.nan_to_num(v), edges, baseline=None, color=color, linewidth=width, label=label,
                  linestyle=":" if column == "replicas_needed" else "-")
    rate = _floats(table, "rate_per_s", "hourly")[order]
    twin = ax.twinx()
    twin.stairs(np.nan_to_num(rate), edges, color="#E69F00", alpha=0.25, fill=True, label="offered rate")
    twin.set_ylabel("offered rate (requests/s)")
    twin.set_ylim(bottom=0)
    ax.set_zorder(twin.get_zorder() + 1)
    ax.patch.set_visible(False)  # the rate's area shows through, behind the fleet's lines
    ax.set_xlabel("hour of the day")
    ax.set_ylabel("replicas")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    area.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=9)
    area.suptitle("Fleet per hour: static against resized")
    return _save(fig, paths)


# ------------------------------------------------------------------- charts of a sweep (issue 21)

_HEATMAP_MAX_LEVELS = 12  # more distinct values on an axis than this (a random design): a scatter instead
_SWEEP_MAX_SERIES = 8  # more combinations of the other axes than this: one line of their median instead


def _levels(values: list[Any]) -> list[Any]:
    """The distinct values of an axis in the order a reader expects: numbers ascending, anything
    else in order of first appearance (the spec's order)."""
    distinct = list(dict.fromkeys(v for v in values if v is not None))
    if distinct and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in distinct):
        return sorted(distinct)
    return distinct


def _short(x: float) -> str:
    """A number in a heatmap's cell: three significant digits, thousands as k, millions as M."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def _level_label(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _is_numeric(levels: list[Any]) -> bool:
    return bool(levels) and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in levels)


def sweep_heatmap_chart(groups: Any, x: str, y: str, value: str, out_stem: str | Path, caption: str, *,
                        label: str, reduce: str = "max") -> list[Path]:
    """A value over two axes of a sweep: one cell per (``x`` value, ``y`` value), coloured by
    ``value`` and written in the cell; a cell with no finite value (every point there failed,
    was invalid or had no figure) is grey with "n/a". Rows that share a cell (points that differ
    in other axes) are reduced by ``reduce`` (``max``, ``min`` or ``mean``), which the title says.
    Where an axis has more than 12 distinct values (a random or Latin-hypercube design), the
    points are drawn as a scatter coloured by the value instead. ``groups``: a table with the
    columns ``x``, ``y`` (numbers or text) and ``value`` (numbers). Returns the PNG and SVG paths."""
    paths = _out_paths(out_stem)
    if reduce not in ("max", "min", "mean"):
        raise ValueError(f"reduce: {reduce!r} is not one of max, min, mean")
    table = _table(groups, "groups")
    xs, ys = _strings(table, x, "groups"), _strings(table, y, "groups")
    v = _floats(table, value, "groups")
    xl, yl = _levels(xs), _levels(ys)
    fig, area = _figure(9.5, max(3.2, 1.2 + 0.45 * min(len(yl), 14)), caption)
    ax = area.subplots()
    title = f"{label} by {x} and {y}" + (f" ({reduce} over the other axes)" if reduce != "mean" else " (mean over the other axes)")
    if len(xl) > _HEATMAP_MAX_LEVELS or len(yl) > _HEATMAP_MAX_LEVELS:
        keep = np.isfinite(v) & np.array([a is not None and b is not None for a, b in zip(xs, ys)])
        if not keep.any():
            _say_empty(ax, "no point has a value")
        else:
            px = [xs[i] for i in np.flatnonzero(keep)]
            py = [ys[i] for i in np.flatnonzero(keep)]
            cx = px if _is_numeric(xl) else [xl.index(a) for a in px]
            cy = py if _is_numeric(yl) else [yl.index(b) for b in py]
            sc = ax.scatter(cx, cy, c=v[keep], cmap="viridis", s=36, edgecolors="black", linewidths=0.3)
            fig.colorbar(sc, ax=ax, label=_plain(label))
            if not _is_numeric(xl):
                ax.set_xticks(range(len(xl)), labels=[_plain(_level_label(a)) for a in xl], rotation=30, ha="right")
            if not _is_numeric(yl):
                ax.set_yticks(range(len(yl)), labels=[_plain(_level_label(b)) for b in yl])
        title = f"{label} by {x} and {y} (each point of the design)"
    else:
        grid = np.full((len(yl), len(xl)), np.nan)
        for i, b in enumerate(yl):
            for j, a in enumerate(xl):
                rows = np.array([xs[k] == a and ys[k] == b for k in range(len(xs))]) & np.isfinite(v)
                if rows.any():
                    grid[i, j] = {"max": np.max, "min": np.min, "mean": np.mean}[reduce](v[rows])
        ax.set_facecolor("#dddddd")
        finite = grid[np.isfinite(grid)]
        im = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto", origin="lower",
                       vmin=finite.min() if finite.size else 0, vmax=finite.max() if finite.size else 1)
        mid = (finite.min() + finite.max()) / 2 if finite.size else 0
        for i in range(len(yl)):
            for j in range(len(xl)):
                val = grid[i, j]
                text = _short(val) if np.isfinite(val) else "n/a"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="#444444" if not np.isfinite(val) else ("black" if val > mid else "white"))
        fig.colorbar(im, ax=ax, label=_plain(label))
        ax.set_xticks(range(len(xl)), labels=[_plain(_level_label(a)) for a in xl],
                      rotation=30 if len(xl) > 5 else 0, ha="right" if len(xl) > 5 else "center")
        ax.set_yticks(range(len(yl)), labels=[_plain(_level_label(b)) for b in yl])
    ax.set_xlabel(_plain(x))
    ax.set_ylabel(_plain(y))
    area.suptitle(_plain(title))
    return _save(fig, paths)


def sweep_metrics_chart(groups: Any, x: str, series: Sequence[str], metrics: Sequence[tuple[str, str]],
                        out_stem: str | Path, caption: str) -> list[Path]:
    """Several metrics of a sweep against one axis: a panel per ``(column, label)`` of
    ``metrics``, ``x``'s values along the bottom (numbers to scale, text as categories in the
    spec's order), one line per combination of the ``series`` axes. With more than 8 such
    combinations, one line of the median over them with a band from their minimum to their
    maximum. Rows whose ``steady`` column is false (where the table has one: an overloaded run,
    or one too short to tell) are drawn as hollow markers: their figures may say how long the
    run was, not what the configuration sustains. Returns the PNG and SVG paths."""
    paths = _out_paths(out_stem)
    table = _or_nulls(_table(groups, "groups"), {"steady": pa.bool_()})
    xs = _strings(table, x, "groups")
    xl = _levels(xs)
    numeric = _is_numeric(xl)
    pos = np.array([(a if numeric else xl.index(a)) if a is not None else np.nan for a in xs], dtype=float)
    over = ~_flags(table, "steady", "groups", null=True)
    keys = [tuple(_level_label(r) for r in row) for row in zip(*(_strings(table, s, "groups") for s in series))] \
        if series else [()] * table.num_rows
    combos = list(dict.fromkeys(keys))
    banded = len(combos) > _SWEEP_MAX_SERIES
    n = len(metrics)
    cols = 2 if n > 1 else 1
    rows_n = math.ceil(n / cols)
    fig, area = _figure(11, 3.2 * rows_n, caption)
    axes = area.subplots(rows_n, cols, squeeze=False).ravel()
    for ax, (col, label) in zip(axes, metrics):
        y = _floats(table, col, "groups")
        if banded:
            at = np.array(sorted({p for p in pos if np.isfinite(p)}))
            med = np.array([np.nanmedian(y[pos == p]) if np.isfinite(y[pos == p]).any() else np.nan for p in at])
            lo = np.array([np.nanmin(y[pos == p]) if np.isfinite(y[pos == p]).any() else np.nan for p in at])
            hi = np.array([np.nanmax(y[pos == p]) if np.isfinite(y[pos == p]).any() else np.nan for p in at])
            ax.fill_between(at, lo, hi, color=_OPTION_COLORS[0], alpha=0.2, label="range over the other axes")
            ax.plot(at, med, color=_OPTION_COLORS[0], marker="o", markersize=3, label="median over the other axes")
        else:
            for k, combo in enumerate(combos):
                mine = np.array([kk == combo for kk in keys]) & np.isfinite(y) & np.isfinite(pos)
                order = np.argsort(pos[mine])
                px, py, po = pos[mine][order], y[mine][order], over[mine][order]
                color = _OPTION_COLORS[k % len(_OPTION_COLORS)]
                name = ", ".join(f"{s}={c}" for s, c in zip(series, combo)) or "every point"
                ax.plot(px, py, color=color, linewidth=1.2, label=_plain(name))
                ax.scatter(px[~po], py[~po], color=color, s=16, zorder=3)
                ax.scatter(px[po], py[po], facecolors="white", edgecolors=color, s=22, zorder=3)
        if not np.isfinite(y).any():
            _say_empty(ax, "no point has a value")
        _auto_log(ax, "y", y)
        if numeric:
            _auto_log(ax, "x", pos)
        else:
            ax.set_xticks(range(len(xl)), labels=[_plain(_level_label(a)) for a in xl],
                          rotation=30 if len(xl) > 4 else 0, ha="right" if len(xl) > 4 else "center")
        ax.set_xlabel(_plain(x))
        ax.set_ylabel(_plain(label))
        ax.grid(True, alpha=0.3, which="both")
    for ax in axes[n:]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles and (banded or series):
        area.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 3), fontsize=8)
    note = "; hollow markers: overloaded, or too short a run to tell" if over.any() else ""
    area.suptitle(_plain(f"Metrics against {x} (mean over repeats{note})"))
    return _save(fig, paths)
