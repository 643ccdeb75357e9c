"""What the capacity-planning document says about a sweep (issue 21, item 4): the reading, the
grouping and the charts behind ``capsim report SWEEP_DIR`` (:func:`sim.analysis.report.report`
renders them with its templates).

A sweep's directory (:mod:`sim.analysis.sweep`) holds ``sweep.json`` (the spec as run),
``manifest.parquet`` (every point's status) and one summary per finished point. The document
groups the finished points by their parameters (one **configuration** per combination of axis
values; its repeats over seeds are averaged) and gives:

- the spec: base scenario, axes and their values, design, repeats, seed; and how many points
  finished, failed (with their errors) or were invalid (with the validator's reason);
- the **best configuration** by goodput per dollar: good output tokens (those of requests that
  met their SLOs) per dollar of provisioned GPU time, ``throughput.good_output_tokens_per_s x
  3600 / cost.usd_per_hour``, and the runner-up, among the configurations that no repeat found
  overloaded (``load.verdict``: the admission queue grew without bound, so the run's figures say
  how long it ran). Configurations whose load a repeat found *undetermined* (the backlog grew,
  all in service: a batch still filling, too short a run to tell) are ranked and flagged;
- a heatmap of goodput per dollar over the first two axes that vary (the best over the other
  axes in each cell), and per varying axis the p99 TTFT, p99 TPOT, output throughput and goodput
  per dollar against it, one line per combination of the others;
- a table of every configuration, and every profile's provenance with the points it priced.

Goodput per dollar is the one figure that ranks configurations of any workload, load or hardware
on one scale, and it is what the sweep notebook plots; a reader who wants another ranking has the
table and the Parquet dataset.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from sim.analysis.report_sources import ReportError, finite as _finite, read_json_object, read_parquet

__all__ = ["GOODPUT_PER_USD", "METRICS", "SWEEP_FILE", "SweepSource", "configurations",
           "read_sweep", "sweep_charts", "sweep_model"]

SWEEP_FILE = "sweep.json"
"""The file that marks a sweep's output directory."""
GOODPUT_PER_USD = "good_output_tokens_per_usd"
"""The derived column the document ranks by: good output tokens per dollar of GPU time."""
METRICS: tuple[tuple[str, str], ...] = (
    ("latency_s.ttft.p99", "p99 TTFT (s)"), ("latency_s.tpot.p99", "p99 TPOT (s)"),
    ("throughput.output_tokens_per_s", "output tokens/s"), (GOODPUT_PER_USD, "good output tokens per $"),
)
"""The metrics charted against each axis: (summary column, label)."""
_AVERAGED = ("latency_s.ttft.p50", "latency_s.ttft.p99", "latency_s.tpot.p50", "latency_s.tpot.p99",
             "throughput.output_tokens_per_s", "throughput.requests_per_s", "slo_attainment", "busy_fraction.mean",
             "cost.usd_per_hour", "cost.usd_per_million_output_tokens", "cost.usd_per_million_good_output_tokens",
             GOODPUT_PER_USD)
_MAX_METRIC_CHARTS = 4  # axes charted one by one; the table holds the rest
_MAX_LISTED = 50  # failed and invalid points listed by name; the manifest holds every one


@dataclass
class SweepSource:
    """A sweep's directory as read: its spec (``sweep.json``), manifest rows and summaries."""

    path: Path
    spec: dict[str, Any]
    manifest: list[dict[str, Any]]
    summaries: pa.Table


def read_sweep(path: Path) -> SweepSource:
    """Read a sweep's output directory; :class:`~sim.analysis.report_sources.ReportError` (one
    line) where a file is missing, corrupt or of the wrong shape."""
    from sim.analysis.sweep import read_summaries

    marker = path / SWEEP_FILE
    spec = read_json_object(marker)
    if not isinstance(spec.get("axes"), dict) or not isinstance(spec.get("base"), dict):
        raise ReportError(f"{marker}: not a sweep's spec (an object with 'base' and 'axes'; written by capsim sweep)")
    mf = path / "manifest.parquet"
    table = read_parquet(mf, "the directory has sweep.json but no manifest: run the sweep again to finish it")
    manifest = table.to_pylist()  # type: ignore[union-attr]
    ok = [r["point_id"] for r in manifest if r.get("status") == "ok"]
    try:
        summaries = read_summaries(path, ok)
    except (OSError, pa.ArrowException) as e:
        raise ReportError(f"{path / 'points'}: a summary cannot be read ({' '.join(str(e).split())}); run the "
                               "sweep again to redo it") from None
    return SweepSource(path, spec, manifest, summaries)


def _goodput_per_usd(row: dict[str, Any]) -> float | None:
    good, usd = _finite(row.get("throughput.good_output_tokens_per_s")), _finite(row.get("cost.usd_per_hour"))
    return good * 3600.0 / usd if good is not None and usd else None


def configurations(summaries: pa.Table, axes: list[str]) -> list[dict[str, Any]]:
    """One row per combination of axis values, in the order the points come: the axis values,
    ``repeats`` (points averaged), the mean over them of each averaged metric (None where no
    repeat has it), ``load`` (the worst verdict of its repeats: overloaded, undetermined,
    stable), ``overloaded`` (any repeat was), ``profile_kind`` (the kinds, joined) and
    ``point_ids``."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in summaries.to_pylist():
        row[GOODPUT_PER_USD] = _goodput_per_usd(row)
        key = json.dumps([row.get(a) for a in axes], sort_keys=True, default=str)
        groups.setdefault(key, []).append(row)
    out = []
    for rows in groups.values():
        conf: dict[str, Any] = {a: rows[0].get(a) for a in axes}
        conf["repeats"] = len(rows)
        for col in _AVERAGED:
            vals = [v for v in (_finite(r.get(col)) for r in rows) if v is not None]
            conf[col] = sum(vals) / len(vals) if vals else None
        verdicts = {r.get("load.verdict") or ("overloaded" if r.get("load.overloaded") else "stable") for r in rows}
        conf["load"] = next((v for v in ("overloaded", "undetermined") if v in verdicts), "stable")
        conf["overloaded"] = conf["load"] == "overloaded"
        conf["steady"] = conf["load"] == "stable"
        conf["profile_kind"] = ", ".join(sorted({str(r.get("profile.kind")) for r in rows if r.get("profile.kind")})) or None
        conf["point_ids"] = [r["point_id"] for r in rows]
        out.append(conf)
    return out


def _label(conf: dict[str, Any], axes: list[str]) -> str:
    return ", ".join(f"{a}={_text(conf.get(a))}" for a in axes)


def _text(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _axis_values(spec_axis: Any) -> str:
    if isinstance(spec_axis, list):
        return ", ".join(json.dumps(v) if isinstance(v, (dict, list)) else _text(v) for v in spec_axis)
    if isinstance(spec_axis, dict) and "low" in spec_axis:
        return f"from {_text(spec_axis['low'])} to {_text(spec_axis['high'])}"
    return json.dumps(spec_axis)


def sweep_model(src: SweepSource) -> dict[str, Any]:
    """Everything the document says about the sweep, as plain data (see the module docstring)."""
    spec = src.spec
    axes = list(spec["axes"])
    confs = configurations(src.summaries, axes)
    varying = [a for a in axes if len({json.dumps(c.get(a), sort_keys=True) for c in confs}) > 1]
    ranked = sorted((c for c in confs if not c["overloaded"] and (c.get(GOODPUT_PER_USD) or 0) > 0),
                    key=lambda c: -c[GOODPUT_PER_USD])
    for rank, c in enumerate(ranked, start=1):
        c["rank"] = rank
    for c in confs:
        c["label"] = _label(c, axes)
    best = ranked[0] if ranked else None
    runner = ranked[1] if len(ranked) > 1 else None
    margin = None
    if best and runner:
        margin = {"share": (best[GOODPUT_PER_USD] - runner[GOODPUT_PER_USD]) / runner[GOODPUT_PER_USD]}
    status = Counter(r.get("status") for r in src.manifest)
    problems = [{"point_id": r["point_id"], "status": r["status"], "params": r.get("params"), "error": r.get("error")}
                for r in src.manifest if r.get("status") in ("failed", "invalid")]
    provenance = Counter((r.get("profile.kind"), r.get("profile.source")) for r in src.summaries.to_pylist())
    base = spec["base"]
    what = ", ".join(varying or axes) or "its axes"
    model = "each model" if "model" in axes else _base_model(base)
    return {
        "question": f"How do latency, throughput and goodput per dollar of {model} vary with {what}?",
        "model": model,
        "axes": [{"path": a, "values": _axis_values(spec["axes"][a]), "varies": a in varying} for a in axes],
        "varying": varying, "design": spec.get("design"), "samples": spec.get("samples"), "zip": spec.get("zip") or [],
        "exclude": spec.get("exclude") or [], "repeats": spec.get("repeats"), "seed": spec.get("seed"),
        "records": spec.get("records"),
        "points": len(src.manifest), "ok": status.get("ok", 0), "failed": status.get("failed", 0),
        "invalid": status.get("invalid", 0), "problems": problems[:_MAX_LISTED],
        "problems_left_out": max(len(problems) - _MAX_LISTED, 0),
        "configurations": confs, "best": best, "runner_up": runner, "margin": margin,
        "overloaded": sum(c["overloaded"] for c in confs),
        "undetermined": sum(c["load"] == "undetermined" for c in confs),
        "provenance": [{"option": f"{n} point{'s' if n != 1 else ''}", "profile_kind": k, "profile_source": s,
                        "held_out_error": None} for (k, s), n in provenance.most_common()],
        "scenario_data": base,
        "hardware": sorted({str(c.get("hardware")) for c in confs if c.get("hardware")} or {base.get("hardware")}),
    }


def _base_model(base: dict[str, Any]) -> str:
    """The base scenario's model (a base given in part takes the default scenario's)."""
    from sim.config import load_scenario
    from sim.errors import ScenarioError

    try:
        return load_scenario(base).model
    except ScenarioError:
        return str(base.get("model", "the model"))


def sweep_charts(m: dict[str, Any], out: Path) -> list[dict[str, Any]]:
    """The sweep's charts, as (key, title, PNG and SVG paths, alt text, note) dicts: the goodput
    per dollar heatmap over the first two varying axes, and the metrics against each varying
    axis (at most four)."""
    from sim.analysis.charts import sweep_heatmap_chart, sweep_metrics_chart

    confs = m["configurations"]
    if not confs:
        return []
    varying = m["varying"]
    cols = varying + [col for col, _ in METRICS] + ["steady"]
    table = pa.Table.from_pylist([{k: c.get(k) for k in cols} for c in confs])
    cap = (f"sweep of {m['model']} from {m['points']} points ({m['ok']} finished); "
           f"mean over {m['repeats']} repeat(s) per configuration")
    charts = []
    if len(varying) >= 2:
        x, y = varying[0], varying[1]
        others = varying[2:]
        note = (f"each cell the best over {', '.join(others)}" if others else "")
        paths = sweep_heatmap_chart(table, x, y, GOODPUT_PER_USD, out / "sweep_heatmap",
                                    cap + (f"; {note}" if note else "") + "; n/a: no configuration there finished "
                                    "with good output", label="good output tokens per $")
        charts.append({"key": "heatmap", "title": f"Goodput per dollar by {x} and {y}", "paths": paths,
                       "alt": f"heatmap of good output tokens per dollar over {x} and {y}", "note": note})
    for i, a in enumerate(varying[:_MAX_METRIC_CHARTS]):
        series = [b for b in varying if b != a]
        paths = sweep_metrics_chart(table, a, series, METRICS, out / f"sweep_metrics_{i}", cap)
        charts.append({"key": f"metrics-{i}", "title": f"Metrics against {a}", "paths": paths,
                       "alt": f"p99 TTFT, p99 TPOT, output throughput and goodput per dollar against {a}", "note": ""})
    return charts
