"""The capacity-planning document (issue 20, item 4): a saved plan, a comparison or a load curve
turned into ``report.html`` and ``report.md`` with their charts as PNG and SVG files beside them.

:func:`report` reads a source directory, which is one of

- a **saved plan** (``plan.json``, ``options.parquet``, ``curves.parquet``, and ``hourly.parquet``
  for time-varying traffic; written by ``capsim plan``);
- a **comparison** (``compare.json``, ``compare.parquet``; :meth:`sim.analysis.compare.Comparison.write`);
- a **load curve** (``curve.json``, ``curve.parquet``; :meth:`sim.analysis.curve.LoadCurve.write`);
- a **sweep**'s output (``sweep.json``, ``manifest.parquet``, ``points/``; :mod:`sim.analysis.sweep`),
  whose document :mod:`sim.analysis.sweep_report` describes (the best configuration by goodput per
  dollar, a heatmap over two axes, the metrics against each axis, every configuration),

known by the JSON file it holds (the first of those four found), and writes one document with
the sections that apply, in this order: the question; the recommendation and its runner-up with
the margin between them; the workload (arrival rate over time and length histograms, drawn afresh
from the scenario's workload spec with the scenario's seed); the options compared (load curves,
$ per 1M output tokens against load, waste, the fleet per hour for time-varying traffic, and a
table of every option with the reason of those that cannot meet the SLOs); deployment patterns and
break-even; the assumptions (prices with their sources, SLOs, engine settings); and every profile's
provenance. What the source does not hold is said ("not computed"), never left blank.

A comparison's recommendation is its cheapest option that meets the SLOs ($ per 1M output tokens,
the order :func:`sim.analysis.compare.compare` ranks by), the runner-up the next; its rows are
read into the plan's option columns (``replicas_needed`` as ``replicas``, ``usd_per_hour_fleet``
as ``usd_per_hour``, headroom as the fleet's highest sustainable rate over the target, waste share
as the GPU-hours not useful). A curve's document has no recommendation: its "answer" is the
configuration's highest rate under the SLOs.

The documents are rendered with Jinja2 from ``sim/analysis/templates`` (HTML autoescaped). Every
link and image in them is relative, and the HTML loads nothing from elsewhere (no script, font or
style sheet from a server), so the folder reads anywhere. The recommendation's numbers carry
their exact values in ``data-value`` attributes (``<td data-role="recommendation"
data-field="usd_per_hour" data-value="12.34">``), so that a reader or a test can take them from
the page without parsing formatted text.

A source that cannot be read (missing, unknown, corrupt JSON, a plan of another format version)
is a :class:`ReportError` of one line naming the file and what was expected.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pyarrow as pa

from sim.analysis.report_sources import ReportError, finite as _finite, read_json_object, read_parquet

__all__ = ["FORMATS", "REC_FIELDS", "SOURCE_FILES", "SWEEP_FIELDS", "ReportError", "report"]

FORMATS = ("html", "md")
"""Document formats :func:`report` writes: ``report.html`` and ``report.md``."""

SOURCE_FILES = {"plan": "plan.json", "compare": "compare.json", "curve": "curve.json", "sweep": "sweep.json"}
"""The JSON file that marks each kind of source directory, in the order they are looked for."""

REC_FIELDS: tuple[tuple[str, str], ...] = (
    ("hardware", "hardware"), ("quantization", "quantization"), ("tp", "tensor parallel (TP)"),
    ("max_num_seqs", "max_num_seqs"), ("max_num_batched_tokens", "max_num_batched_tokens"),
    ("replicas", "replicas"), ("gpus", "GPUs"), ("usd_per_hour", "$ per hour"),
    ("usd_per_million_output_tokens", "$ per 1M output tokens"), ("headroom", "headroom (sustainable / target rate)"),
    ("utilisation", "utilisation (busy share of GPU time)"), ("waste_share", "idle-capacity waste share"),
    ("max_rate_per_replica_per_s", "highest rate per replica under the SLOs (requests/s)"),
    ("ttft_p99_s", "p99 TTFT of the fleet"), ("tpot_p99_s", "p99 TPOT of the fleet"),
    ("confirmed", "confirmed by a fleet simulation with fresh seeds"),
)
"""The recommendation's figures, as the document lists them: (option column, label). Each is
in the HTML with ``data-field`` set to the column and ``data-value`` to its exact value."""

_PLAN_VERSION = 1
_PLAN_REQUIRED = ("question", "inputs", "recommendation")
_PLAN_TYPES: tuple[tuple[str, tuple[type, ...], str], ...] = (
    ("question", (str,), "a sentence"), ("inputs", (dict,), "an object"),
    ("recommendation", (dict, type(None)), "an option row or null"), ("runner_up", (dict, type(None)), "an option row or null"),
    ("margin", (dict, type(None)), "an object or null"), ("per_hardware", (list, type(None)), "a list of option rows"),
    ("infeasible", (dict, type(None)), "an object or null"), ("time_varying", (dict, type(None)), "an object or null"),
    ("deployments", (list, type(None)), "a list"), ("breakeven", (dict, type(None)), "an object or null"),
    ("provenance", (list, type(None)), "a list"), ("notes", (list, type(None)), "a list of sentences"),
)
SWEEP_FIELDS: tuple[tuple[str, str], ...] = (
    ("good_output_tokens_per_usd", "good output tokens per $"),
    ("cost.usd_per_million_good_output_tokens", "$ per 1M good output tokens"),
    ("cost.usd_per_million_output_tokens", "$ per 1M output tokens"), ("cost.usd_per_hour", "$ per hour"),
    ("latency_s.ttft.p99", "p99 TTFT"), ("latency_s.tpot.p99", "p99 TPOT"),
    ("throughput.output_tokens_per_s", "output tokens/s"), ("slo_attainment", "SLO attainment"),
    ("busy_fraction.mean", "busy share of GPU time"), ("repeats", "repeats averaged"),
)
"""A sweep's best configuration and runner-up, as the document lists them (after the
configuration's label and its varying axes): (column, label), each with ``data-field`` and
``data-value`` in the HTML."""
_SWEEP_ROWS = 500  # configurations listed in a sweep's document; the dataset holds every one
_WORKLOAD_SAMPLE = 1_500_000  # requests drawn at most for the workload's charts (a day at 12/s: ~1M, 1.2 s of CPU)
_FORMAT_NAMES = {"html": "report.html", "md": "report.md"}


# ---------------------------------------------------------------------------------------- reading


@dataclass
class _Source:
    """A source directory as read: its kind, its JSON, and its tables (None when absent)."""

    kind: str
    path: Path
    data: dict[str, Any]
    options: pa.Table | None = None
    curves: pa.Table | None = None
    hourly: pa.Table | None = None
    sweep: Any = None  # a sweep's directory as read (sim.analysis.sweep_report.SweepSource)
    notes: list[str] = field(default_factory=list)


def _read(source_dir: str | os.PathLike) -> _Source:
    """Which kind of directory ``source_dir`` is, and its contents (see the module docstring)."""
    path = Path(source_dir)
    expected = ", ".join(SOURCE_FILES.values())
    if not path.exists():
        raise ReportError(f"{path}: no such directory (give a plan, comparison, load-curve or sweep directory, "
                          f"holding one of {expected})")
    if not path.is_dir():
        raise ReportError(f"{path}: is a file, not a directory (give the directory holding one of {expected})")
    kind = next((k for k, name in SOURCE_FILES.items() if (path / name).is_file()), None)
    if kind is None:
        raise ReportError(f"{path}: holds none of {expected}: not a saved plan (capsim plan -o), a comparison "
                          "(capsim compare -o), a load curve (capsim curve -o) or a sweep (capsim sweep -o)")
    if kind == "sweep":
        from sim.analysis.sweep_report import read_sweep

        sweep = read_sweep(path)
        return _Source(kind, path, sweep.spec, sweep=sweep)
    data = read_json_object(path / SOURCE_FILES[kind])
    src = _Source(kind, path, data)
    if kind == "plan":
        if data.get("kind") != "capsim-plan":
            raise ReportError(f"{path / 'plan.json'}: kind {data.get('kind')!r}, expected 'capsim-plan'")
        if data.get("version") != _PLAN_VERSION:
            raise ReportError(f"{path / 'plan.json'}: format version {data.get('version')!r}; this capsim reads "
                              f"version {_PLAN_VERSION}")
        for key in _PLAN_REQUIRED:
            if key not in data:
                raise ReportError(f"{path / 'plan.json'}: key {key!r} is missing")
        for key, types, what in _PLAN_TYPES:
            value = data.get(key)
            if not isinstance(value, types):
                raise ReportError(f"{path / 'plan.json'}: {key} is {type(value).__name__}, not {what}")
        src.options = read_parquet(path / "options.parquet", "the directory has plan.json but not this table")
        src.curves = read_parquet(path / "curves.parquet", None)
        src.hourly = read_parquet(path / "hourly.parquet", None)
    elif kind == "compare":
        src.options = read_parquet(path / "compare.parquet", None)
        if src.options is None:
            src.options = pa.Table.from_pylist(_rows(data, "options", path / "compare.json"))
    else:
        src.curves = read_parquet(path / "curve.parquet", None)
        if src.curves is None:
            src.curves = pa.Table.from_pylist(_rows(data, "points", path / "curve.json"))
    return src


def _rows(data: dict[str, Any], key: str, path: Path) -> list[dict[str, Any]]:
    rows = data.get(key)
    if not isinstance(rows, list):
        raise ReportError(f"{path}: key {key!r} is missing or not a list, and the Parquet table beside it is absent")
    return rows


# ---------------------------------------------------------------------------------- normalising


def _comparison_row(row: dict[str, Any], target: float | None) -> dict[str, Any]:
    """A comparison's option row in the plan's option columns (see the module docstring)."""
    parts = [row.get(f"{p}_gpu_h") for p in ("useful", "under_filled", "recompute", "idle", "over_provisioned")]
    total = sum(_finite(p) or 0.0 for p in parts)
    useful = _finite(row.get("useful_gpu_h"))
    per_replica, replicas = _finite(row.get("max_rate_per_replica_per_s")), row.get("replicas_needed")
    headroom = (per_replica * replicas / target if per_replica is not None and replicas and target else None)
    return {**row, "replicas": replicas, "gpus": row.get("gpus_needed"), "usd_per_hour": row.get("usd_per_hour_fleet"),
            "headroom": headroom, "utilisation": row.get("utilisation"),
            "waste_share": (1 - useful / total) if useful is not None and total > 0 else None,
            "confirmed": row.get("fleet_meets_slo"), "ttft_p99_s": row.get("fleet_ttft_p99_s"),
            "tpot_p99_s": row.get("fleet_tpot_p99_s"),
            "max_num_seqs": row.get("max_num_seqs"), "max_num_batched_tokens": row.get("max_num_batched_tokens")}


def _margin(rec: dict[str, Any] | None, runner: dict[str, Any] | None,
            key: str = "usd_per_hour") -> dict[str, Any] | None:
    """Runner-up minus recommendation in ``key`` ($ per hour, or $ per 1M output tokens, which a
    comparison ranks by), and that as a share of the recommendation's."""
    a = _finite(rec.get(key)) if rec else None
    b = _finite(runner.get(key)) if runner else None
    if a is None or b is None:
        return None
    return {key: b - a, "share": (b - a) / a if a > 0 else None}


def _scenario(data: dict[str, Any] | None, notes: list[str]) -> Any:
    """The source's scenario, validated again (None with a note when it no longer loads)."""
    if not isinstance(data, dict):
        notes.append("the source holds no scenario: the workload is not drawn")
        return None
    from sim.config import load_scenario
    from sim.errors import ScenarioError

    try:
        return load_scenario(data)
    except ScenarioError as e:
        notes.append(f"the source's scenario no longer loads, so the workload is not drawn: {' '.join(str(e).split())}")
        return None


# ------------------------------------------------------------------------------------ the model


def _plan_model(src: _Source) -> dict[str, Any]:
    d = src.data
    inputs = d["inputs"]
    options = src.options.to_pylist() if src.options is not None else []
    ranked = sorted(options, key=lambda r: (r.get("rank") is None, r.get("rank") or 0))
    engine = inputs.get("search", {}).get("engine", {}) if isinstance(inputs.get("search"), dict) else {}
    return {
        "question": d["question"], "recommendation": d.get("recommendation"), "runner_up": d.get("runner_up"),
        "margin": d.get("margin"), "infeasible": d.get("infeasible"), "options": ranked,
        "per_hardware": d.get("per_hardware") or [], "time_varying": d.get("time_varying"),
        "deployments": d.get("deployments") or [], "breakeven": d.get("breakeven"),
        "deployments_why_missing": "the plan did not price deployment patterns",
        "slos": list(inputs.get("slos") or []), "target_rate_per_s": inputs.get("target_rate_per_s"),
        "search": inputs.get("search"), "search_engine": engine, "seeds": inputs.get("seeds"),
        "confirm_seeds": inputs.get("confirm_seeds"),
        "prices": [{"hardware": hw, "usd_per_gpu_hour": p.get("usd_per_gpu_hour"), "source": p.get("source")}
                   for hw, p in (inputs.get("prices") or {}).items() if isinstance(p, dict)],
        "deployment_inputs": inputs.get("deployment"),
        "provenance": d.get("provenance") or _provenance_of(ranked),
        "simulations": d.get("simulations"), "wall_s": d.get("wall_s"), "notes": list(d.get("notes") or []),
        "created": d.get("created"), "capsim_version": d.get("capsim_version"),
        "scenario_data": inputs.get("scenario"),
    }


def _compare_model(src: _Source) -> dict[str, Any]:
    d = src.data
    target = _finite(d.get("target_rate_per_s"))
    options = [_comparison_row(r, target) for r in src.options.to_pylist()]  # type: ignore[union-attr]
    meeting = [r for r in options if r.get("meets_slo")]  # compare ranks them cheapest first
    for rank, r in enumerate(meeting, start=1):
        r["rank"] = rank
    rec = meeting[0] if meeting else None
    runner = meeting[1] if len(meeting) > 1 else None
    scen = d.get("scenario") or {}
    model = scen.get("model", "the model")
    slos = list(d.get("slos") or [])
    infeasible = None
    if rec is None:
        infeasible = {"binding_constraint": "no option meets the SLOs",
                      "detail": "; ".join(f"{r['option']}: {r.get('reason') or 'misses the SLOs'}" for r in options)}
    return {
        "question": (f"Which hardware option serves {model} at {target:g} requests/s most cheaply"
                     f"{' with ' + ', '.join(slos) if slos else ''}?" if target is not None else
                     f"Which hardware option serves {model} most cheaply?"),
        "recommendation": rec, "runner_up": runner, "margin": _margin(rec, runner), "infeasible": infeasible,
        "options": options, "per_hardware": [], "time_varying": None, "deployments": [], "breakeven": None,
        "deployments_why_missing": "a comparison does not price deployment patterns; capsim plan does",
        "slos": slos, "target_rate_per_s": target, "search": None, "search_engine": {},
        "seeds": None, "confirm_seeds": None, "prices": _catalog_prices(options, scen), "deployment_inputs": None,
        "provenance": _provenance_of(options), "simulations": None, "wall_s": None,
        "notes": [f"profile family: {d.get('family')}"] + list(d.get("notes") or []),
        "created": None, "capsim_version": None, "scenario_data": scen,
    }


def _curve_model(src: _Source) -> dict[str, Any]:
    d = src.data
    scen = d.get("scenario") or {}
    slos = list(d.get("slos") or [])
    label = f"{scen.get('model', '?')} on {scen.get('hardware', '?')} {scen.get('quantization', '?')} tp{scen.get('tp', '?')}"
    prov = d.get("provenance") or {}
    max_rate = d.get("max_rate_per_s") or {}
    return {
        "question": f"How much load can {label} serve{' with ' + ', '.join(slos) if slos else ''}?",
        "recommendation": None, "runner_up": None, "margin": None, "infeasible": None, "options": [],
        "per_hardware": [], "time_varying": None, "deployments": [], "breakeven": None,
        "deployments_why_missing": "a load curve does not price deployment patterns; capsim plan does",
        "slos": slos, "target_rate_per_s": None, "search": None, "search_engine": {},
        "seeds": d.get("seeds"), "confirm_seeds": None,
        "prices": _catalog_prices([{"hardware": scen.get("hardware")}], scen), "deployment_inputs": None,
        "provenance": [{"option": label, "profile_kind": prov.get("kind"), "profile_source": prov.get("source"),
                        "held_out_error": None}],
        "simulations": None, "wall_s": None, "notes": list(d.get("notes") or []), "created": None,
        "capsim_version": None, "scenario_data": scen,
        "curve": {"label": label, "max_rate": max_rate, "saturation_rate_per_s": d.get("saturation_rate_per_s"),
                  "capacity_per_s": d.get("capacity_per_s"), "reference": d.get("reference")},
    }


def _sweep_model(src: _Source) -> dict[str, Any]:
    """A sweep's document model (:func:`sim.analysis.sweep_report.sweep_model`), with the fields
    every document shares and the base scenario's prices."""
    from sim.analysis.sweep_report import sweep_model

    m = sweep_model(src.sweep)
    base = m["scenario_data"]
    m.update(recommendation=None, prices=_catalog_prices([{"hardware": h} for h in m["hardware"]], base),
             notes=[], slos=[], axis_paths=[a["path"] for a in m["axes"]], shown=m["configurations"][:_SWEEP_ROWS],
             best_fields=[("label", "configuration")] + [(a["path"], a["path"]) for a in m["axes"] if a["varies"]]
             + list(SWEEP_FIELDS))
    return m


def _provenance_of(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"option": r.get("option"), "profile_kind": r.get("profile_kind"), "profile_source": r.get("profile_source"),
             "held_out_error": r.get("held_out_error")} for r in rows if r.get("profile_kind")]


def _catalog_prices(rows: Sequence[dict[str, Any]], scenario: dict[str, Any]) -> list[dict[str, Any]]:
    """Each hardware's $/GPU-hour and where it comes from: the scenario's cost section where it
    sets one, else the catalog's on-demand price with the catalog's source."""
    from calibration import GPUS

    cost = scenario.get("cost") or {}
    out = []
    for hw in dict.fromkeys(r.get("hardware") for r in rows if r.get("hardware")):
        used = next((_finite(r.get("usd_per_gpu_hour")) for r in rows
                     if r.get("hardware") == hw and _finite(r.get("usd_per_gpu_hour")) is not None), None)
        if cost.get("usd_per_gpu_hour") is not None:
            out.append({"hardware": hw, "usd_per_gpu_hour": cost["usd_per_gpu_hour"],
                        "source": "the scenario's cost.usd_per_gpu_hour"})
        elif hw in GPUS:
            gpu = GPUS[hw]
            discount = cost.get("discount")
            source = f"catalog on-demand price ({gpu.source_of('price_usd_per_hour')})"
            if discount:
                source += f", less the scenario's discount of {discount:.0%}"
            out.append({"hardware": hw, "usd_per_gpu_hour": used if used is not None else gpu.price_usd_per_hour,
                        "source": source})
        else:
            out.append({"hardware": hw, "usd_per_gpu_hour": used, "source": "not in this capsim's catalog"})
    return out


# ---------------------------------------------------------------------------------------- charts


_Chart = dict[str, str]
"""A chart as the templates show it: ``key``, ``title``, ``png``, ``svg`` (file names beside the
document), ``alt`` and ``note``."""


def _chart(key: str, title: str, paths: list[Path], alt: str, note: str = "") -> _Chart:
    png, svg = paths
    return {"key": key, "title": title, "png": png.name, "svg": svg.name, "alt": alt, "note": note}


def _slo_targets(texts: Sequence[str], notes: list[str]) -> list[Any]:
    from sim.analysis.slo import parse_slo

    out = []
    for t in texts:
        try:
            out.append(parse_slo(t))
        except ValueError:
            notes.append(f"SLO {t!r} is not drawn on the charts (not a target this capsim reads)")
    return out


def _workload_charts(scenario: Any, out: Path, notes: list[str]) -> tuple[list[_Chart], dict[str, Any] | None]:
    """The arrival-rate and length charts of the scenario's workload, drawn with its seed (at most
    :data:`_WORKLOAD_SAMPLE` requests), and a few figures about the sample."""
    import numpy as np

    from sim.analysis.charts import arrival_rate_chart, length_histogram_chart
    from workloads import generate

    wl = scenario.workload
    arrival = wl.arrival
    mean_rate = getattr(arrival, "mean_rate_per_s", None)
    expected_n = wl.num_requests if wl.num_requests is not None else (
        mean_rate * wl.duration_s if mean_rate is not None and wl.duration_s is not None else None)
    sample = wl
    if expected_n is not None and expected_n > _WORKLOAD_SAMPLE:
        # A long workload: the lengths from its first requests, the rate from its profile.
        from sim.config import load_scenario

        data = scenario.to_dict()
        data["workload"] = {**data["workload"], "num_requests": _WORKLOAD_SAMPLE, "duration_s": None}
        sample = load_scenario(data).workload
    table = generate(sample, scenario.seed, scenario.max_context)
    profile = getattr(arrival, "rate_profile", None)
    span = wl.duration_s
    if span is None:
        a = table.column("arrival_s").to_numpy(zero_copy_only=False)
        span = float(np.nanmax(a)) if a.size and np.isfinite(a).any() else None
    expected = None
    if profile is not None and span:
        t = np.linspace(0.0, span, 400)
        expected = (t, profile.knots().rate_at(t))
    elif getattr(arrival, "rate_per_s", None) is not None and span:
        expected = ([0.0, span], [arrival.rate_per_s, arrival.rate_per_s])
    drawn = table.num_rows
    whole = sample is wl
    what = (f"{drawn:,} requests drawn with seed {scenario.seed}" if whole else
            f"the first {drawn:,} requests drawn with seed {scenario.seed} (of about {expected_n:,.0f})"
            if expected_n is not None else f"{drawn:,} requests drawn with seed {scenario.seed}")
    caption = f"{scenario.name or 'workload'}: {what}; arrival process {arrival.process}"
    charts = []
    if whole or expected is not None:
        charts.append(_chart("arrivals", "Arrival rate over time",
                             arrival_rate_chart(table, out / "workload_arrivals", caption, expected=expected),
                             "arrival rate in requests per second over the workload's time"))
    charts.append(_chart("lengths", "Prompt and output lengths",
                         length_histogram_chart(table, out / "workload_lengths", caption),
                         "histograms of prompt and output lengths in tokens"))
    prompt = table.column("prompt_tokens").to_numpy(zero_copy_only=False).astype(float)
    output = table.column("output_tokens").to_numpy(zero_copy_only=False).astype(float)
    facts = {"drawn": drawn, "whole": whole, "expected_requests": expected_n, "mean_rate_per_s": mean_rate,
             "duration_s": wl.duration_s, "num_requests": wl.num_requests, "process": arrival.process,
             "time_varying": profile is not None, "classes": [c.name for c in wl.classes],
             "prompt_mean": float(prompt.mean()) if prompt.size else None,
             "prompt_p99": float(np.quantile(prompt, 0.99)) if prompt.size else None,
             "output_mean": float(output.mean()) if output.size else None,
             "output_p99": float(np.quantile(output, 0.99)) if output.size else None}
    return charts, facts


def _option_charts(src: _Source, m: dict[str, Any], scenario: Any, out: Path, notes: list[str]) -> list[_Chart]:
    """The charts of the options compared (or of the one curve): what the source holds data for."""
    from sim.analysis.charts import (WASTE_PARTS, cost_load_chart, fleet_by_hour_chart, latency_throughput_chart,
                                     option_curves_chart, waste_by_option_chart, waste_by_window_chart,
                                     waste_share_chart)

    charts: list[_Chart] = []
    slos = _slo_targets(m["slos"], notes)
    rec, runner = m["recommendation"], m["runner_up"]
    base = (f"{scenario.model if scenario is not None else ''} "
            f"SLOs {', '.join(m['slos']) or 'none'}").strip()
    curves = src.curves
    if src.kind == "curve" and curves is not None and curves.num_rows:
        c = m["curve"]
        cap = f"{c['label']}; {base}; {_provenance_line(m)}"
        charts.append(_chart("latency", "Latency against throughput",
                             latency_throughput_chart(curves, out / "latency_throughput", cap, slos),
                             "latency percentiles against achieved output throughput"))
        charts.append(_chart("cost", "$ per 1M output tokens against load",
                             cost_load_chart(curves, out / "cost_load", cap, _finite((c["max_rate"] or {}).get("mean"))),
                             "dollars per million output tokens against offered load"))
    elif curves is not None and curves.num_rows and "option" in curves.column_names:
        highlight = [r["option"] for r in (rec, runner) if r]
        charts.append(_chart("curves", "Load curves of the options",
                             option_curves_chart(curves, out / "option_curves", f"{base}; one replica per curve",
                                                 slos, highlight),
                             "p99 TTFT and TPOT against throughput, and cost against load, per option"))
        if rec is not None:
            mine = curves.filter(_equal(curves.column("option"), rec["option"]))
            if mine.num_rows:
                cap = f"the recommendation, {rec['option']}, one replica; {base}"
                charts.append(_chart("latency", "The recommendation: latency against throughput",
                                     latency_throughput_chart(mine, out / "latency_throughput", cap, slos),
                                     "latency percentiles of the recommended option against its throughput"))
                charts.append(_chart("cost", "The recommendation: $ per 1M output tokens against load",
                                     cost_load_chart(mine, out / "cost_load", cap,
                                                     _finite(rec.get("max_rate_per_replica_per_s"))),
                                     "dollars per million output tokens of the recommended option against load"))
    elif src.kind == "plan":
        notes.append("the plan holds no load curves (curves.parquet): no latency or cost curves are drawn")
    elif src.kind == "compare":
        notes.append("a comparison keeps each option's highest rate, not its load curve: no latency or cost curves "
                     "are drawn (capsim curve, or capsim plan, keeps them)")
    if src.options is not None and src.options.num_rows:
        table = pa.Table.from_pylist(m["options"])
        parts = all(f"{p.key}_gpu_h" in table.column_names for p in WASTE_PARTS)
        cap = f"{base}; the fleet sized for the target, in the order of the table below"
        if parts:
            if "replicas_needed" not in table.column_names and "replicas" in table.column_names:
                table = table.append_column("replicas_needed", _as_float(table.column("replicas")))
            charts.append(_chart("waste", "Where the GPU time goes", waste_by_option_chart(table, out / "waste_by_option", cap),
                                 "provisioned GPU-hours per option split into useful, under-filled, recompute, idle "
                                 "and over-provisioned"))
        elif "waste_share" in table.column_names:
            charts.append(_chart("waste", "Busy and wasted GPU time", waste_share_chart(table, out / "waste_share", cap),
                                 "utilisation and idle-capacity waste share per option"))
    if src.kind == "compare" and rec is not None:
        windows = (src.data.get("waste_windows") or {}).get(rec["option"])
        if windows:
            charts.append(_chart("windows", "The recommendation's fleet, per time window",
                                 waste_by_window_chart(windows, out / "waste_by_window",
                                                       f"{rec['option']}: fleet of {rec.get('replicas')}; {base}"),
                                 "GPU-hours per time window split by use, for the recommended fleet"))
    if src.hourly is not None and src.hourly.num_rows:
        tv = m["time_varying"] or {}
        delay = _finite(tv.get("scale_up_delay_s"))
        cap = (f"{base}; resized hourly" + (f" with a scale-up delay of {delay:g} s" if delay is not None else "")
               + (f"; static fleet of {tv['static_replicas']}" if tv.get("static_replicas") is not None else ""))
        charts.append(_chart("hourly", "Fleet per hour", fleet_by_hour_chart(src.hourly, out / "fleet_by_hour", cap),
                             "replicas needed, resized and static per hour, with the offered rate"))
    return charts


def _sweep_charts(m: dict[str, Any], out: Path) -> list[_Chart]:
    from sim.analysis.sweep_report import sweep_charts

    return [_chart(c["key"], c["title"], c["paths"], c["alt"], c["note"]) for c in sweep_charts(m, out)]


def _as_float(col: Any) -> Any:
    """A column as float64 (the waste chart's replica count)."""
    import pyarrow.compute as pc

    return pc.cast(col, pa.float64())


def _equal(col: Any, value: str) -> Any:
    import pyarrow.compute as pc

    return pc.equal(col, value)


def _provenance_line(m: dict[str, Any]) -> str:
    p = (m["provenance"] or [{}])[0]
    return f"profile {p.get('profile_kind') or '?'}"


# --------------------------------------------------------------------------------------- writing


def _fmt(x: Any, spec: str = ".3g", unit: str = "") -> str:
    """A number for the document: ``spec`` formatting, ``unit`` after it; ``n/a`` for a null."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        return f"{x:{spec}}{unit}"
    return str(x)


def _field(x: Any, key: str) -> str:
    """A recommendation's figure, formatted by what it is."""
    if x is None:
        return "n/a"
    if key.endswith("usd_per_hour"):
        return _fmt(x, ",.2f").join(("$", ""))
    if key == "delta_usd_per_hour":
        return ("+" if x >= 0 else "−") + "$" + _fmt(abs(x), ",.2f")
    if key == "delta_usd_per_million_output_tokens":
        return ("+" if x >= 0 else "−") + "$" + _fmt(abs(x), ".3f" if abs(x) >= 0.01 else ".2g")
    if key == "delta_share":
        return ("+" if x >= 0 else "−") + _fmt(abs(x), ".1%")
    if key.endswith(("usd_per_million_output_tokens", "usd_per_million_good_output_tokens")):
        return "$" + _fmt(x, ".3f" if abs(x) >= 0.01 else ".2g")
    if key in ("utilisation", "waste_share", "slo_attainment", "busy_fraction.mean"):
        return _fmt(x, ".1%")
    if key == "good_output_tokens_per_usd":
        return _fmt(x, ",.0f")
    if key.startswith("latency_s.") and isinstance(x, (int, float)):
        return f"{x * 1e3:.1f} ms" if x < 1 else f"{x:.3g} s"
    if key == "headroom":
        return _fmt(x, ".3g", "×")
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return _fmt(x)
    if isinstance(x, int):
        return str(x)
    if key.endswith("_per_s"):
        return f"{x:.3g}/s"
    if key.endswith("_s"):
        return f"{x * 1e3:.1f} ms" if x < 1 else f"{x:.3g} s"
    return _fmt(x)


def _raw(x: Any) -> str:
    """The exact value for a ``data-value`` attribute: JSON (a float's shortest repr)."""
    if isinstance(x, float) and not math.isfinite(x):
        return "null"
    return json.dumps(x)


def _md_cell(x: Any) -> str:
    return " ".join(str(x).split()).replace("|", "\\|")


def _environment(fmt: str) -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                             autoescape=fmt == "html", trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters.update(num=_fmt, field=_field, raw=_raw, cell=_md_cell)
    return env


def report(source_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
           formats: Sequence[str] = FORMATS, progress: Callable[[str], None] | None = None) -> list[Path]:
    """Write the capacity-planning document of ``source_dir`` (a saved plan, a comparison or a
    load curve; see the module docstring) into ``out_dir`` (created if needed): ``report.html``
    and/or ``report.md`` as ``formats`` asks, and the charts beside them, each as PNG and SVG.
    Every file is written whole (a temporary name, then ``os.replace``). Returns the paths
    written, the documents first. ``progress(message)`` hears each stage begin.

    Raises :class:`ReportError` (one line) for a source that cannot be read or an unknown format.
    """
    fmts = list(dict.fromkeys(formats))
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise ReportError(f"formats {list(formats)!r}: give one or more of {', '.join(FORMATS)}")
    say = progress or (lambda _m: None)
    src = _read(source_dir)
    say(f"{SOURCE_FILES[src.kind]} read from {src.path}")
    m = {"plan": _plan_model, "compare": _compare_model, "curve": _curve_model, "sweep": _sweep_model}[src.kind](src)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ReportError(f"{out}: is a file, not a directory; give a directory for the report")
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    scenario = _scenario(m["scenario_data"], notes)
    workload_charts: list[_Chart] = []
    workload = None
    if scenario is not None:
        say("drawing the workload")
        try:
            workload_charts, workload = _workload_charts(scenario, out, notes)
        except (ValueError, OSError) as e:  # a trace file that is not beside the source, say
            notes.append(f"the workload could not be drawn: {' '.join(str(e).split())}")
    say("drawing the sweep's charts" if src.kind == "sweep" else "drawing the options' charts")
    try:
        option_charts = (_sweep_charts(m, out) if src.kind == "sweep" else _option_charts(src, m, scenario, out, notes))
    except ValueError as e:  # a table without a column the charts need, or with text where numbers belong
        raise ReportError(f"{src.path}: {' '.join(str(e).split())}") from None
    context = {
        **m, "kind": src.kind, "source": str(src.path), "source_name": src.path.name,
        "scenario": scenario, "workload": workload, "workload_charts": workload_charts,
        "option_charts": option_charts, "report_notes": notes, "rec_fields": REC_FIELDS,
        "generated": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "version": _version(), "engine": _engine_settings(scenario),
        "token_margin": _margin(m["recommendation"], m["runner_up"], "usd_per_million_output_tokens"),
    }
    template = "sweep" if src.kind == "sweep" else "report"
    from sim.analysis.atomic import write_whole

    written = []
    for f in fmts:
        text = _environment(f).get_template(f"{template}.{f}.j2").render(**context)
        written.append(write_whole(out / _FORMAT_NAMES[f], lambda tmp, t=text: tmp.write_text(t, encoding="utf-8")))
    for c in workload_charts + option_charts:
        written += [out / c["png"], out / c["svg"]]
    return written


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("capsim")
    except metadata.PackageNotFoundError:
        return "unknown"


def _engine_settings(scenario: Any) -> list[tuple[str, Any]]:
    """The engine, router and measurement settings the simulations ran with, as (name, value)."""
    if scenario is None:
        return []
    e = scenario.engine
    rows: list[tuple[str, Any]] = [("model", scenario.model), ("hardware (scenario)", scenario.hardware),
                                   ("quantization (scenario)", scenario.quantization), ("tp (scenario)", scenario.tp)]
    for key, value in e.model_dump().items():
        if value is not None and not isinstance(value, (dict, list)):
            rows.append((f"engine.{key}", value))
    rows.append(("router.policy", scenario.router.policy))
    rows += [(f"measurement.{k}", v) for k, v in scenario.measurement.model_dump().items() if v is not None]
    rows.append(("seed", scenario.seed))
    return rows
