"""Checking capsim against your own serving benchmarks: every row of a benchmark CSV re-enacted
with a chosen profile and engine, and its predicted metrics set against the measured ones.

This is the benchmark fit (:mod:`sim.fitting.benchmark_fit`) without the fitting: the same CSV
(:func:`~sim.fitting.benchmark_csv.read_benchmarks`), the same re-enactment of each run as the
benchmark client made it (:func:`~sim.fitting.reenact.run_scenario`), the same bound on simulated
requests (:func:`~sim.fitting.reenact.simulation_plan`, sized by the configuration's roofline so
that every profile simulates the same requests a fit would), but one profile a scenario could
name (``{kind: auto}``, ``{kind: roofline}``, ``{kind: measured, path: ...}``) priced as it is.
What comes out is what a capacity planner relying on that profile would have been told.

A row the simulator cannot take (weights that do not fit, a request larger than the KV cache, no
measured profile for its configuration, a measurement faster than the hardware allows, a run that
does not finish) is listed with the reason and left out of the errors; the others still run. A
CSV that cannot be read at all is refused whole, in one line, as the fit refuses it.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from sim.fitting.benchmark_checks import check_benchmarks
from sim.fitting.benchmark_csv import BENCHMARK_METRICS, BenchmarkRow, read_benchmarks
from sim.fitting.fit_report import format_metric, text_table
from sim.fitting.optimise import Progress, error_stats
from sim.fitting.reenact import (engine_settings, kv_shortfall, roofline_coefficients, row_scenario, run_scenario,
                                 simulation_plan)

__all__ = ["BenchmarkValidation", "RowCheck", "RowTask", "SkippedRow", "check_row", "format_validation",
           "validate_benchmarks"]


@dataclass(frozen=True)
class RowTask:
    """One row to simulate with one profile: everything a worker process needs (picklable)."""

    row: BenchmarkRow
    profile: dict[str, Any]
    engine: dict[str, Any]
    requests: int
    streams: int
    seed: int


@dataclass(frozen=True)
class RowCheck:
    """Measured against predicted values of one row: only the metrics it measured. ``error`` is
    relative, (predicted − measured) / measured; ``profile`` is the provenance kind and source of
    the profile that priced it (what ``kind: auto`` chose)."""

    row: int
    configuration: tuple[str, str, str, int]
    load: str
    input_tokens: int
    output_tokens: int
    num_requests: int
    simulated_requests: int
    streams: int
    measured: dict[str, float]
    predicted: dict[str, float]
    error: dict[str, float]
    profile_kind: str
    profile_source: str
    note: str | None = None


@dataclass(frozen=True)
class SkippedRow:
    """A row that was not simulated, and why (one line)."""

    row: int
    configuration: tuple[str, str, str, int]
    reason: str


def _label(configuration: tuple[str, str, str, int]) -> str:
    model, quant, hardware, tp = configuration
    return f"{model}/{quant}/{hardware}/tp{tp}"


def check_row(task: RowTask) -> RowCheck | SkippedRow:
    """Simulate ``task``'s row with its profile and compare with what was measured, or say why it
    cannot be simulated: a module-level function, so that an executor can send it to its workers."""
    from calibration.catalog import CatalogError

    row, n = task.row, task.requests
    try:
        scenario = row_scenario(row, n, task.profile, task.seed, task.engine)
        short = kv_shortfall(row, scenario)
        if short is not None:
            return SkippedRow(row.row, row.configuration, short)
        provenance = scenario.build_profile().provenance
        sim = run_scenario(row, scenario, n, seed=task.seed, streams=task.streams)
    except (CatalogError, ValueError) as e:  # ScenarioError is a ValueError; so is a run that cannot finish
        return SkippedRow(row.row, row.configuration, str(e).splitlines()[0] if str(e) else type(e).__name__)
    predicted = {m: float(sim[m]) for m in row.metrics}
    return RowCheck(row=row.row, configuration=row.configuration, load=row.load, input_tokens=row.input_tokens,
                    output_tokens=row.output_tokens, num_requests=row.num_requests, simulated_requests=n,
                    streams=task.streams, measured=dict(row.metrics), predicted=predicted,
                    error={m: (predicted[m] - v) / v for m, v in row.metrics.items()},
                    profile_kind=str(provenance.kind), profile_source=provenance.source, note=sim.get("note"))


@dataclass(frozen=True)
class BenchmarkValidation:
    """Every row of a benchmark CSV predicted by one profile and engine (:func:`validate_benchmarks`)."""

    path: str
    profile: dict[str, Any]
    engine: dict[str, Any]
    rows: tuple[RowCheck, ...]
    skipped: tuple[SkippedRow, ...]

    def summary(self) -> dict[str, dict[str, float]]:
        """|error| per metric measured (in :data:`BENCHMARK_METRICS` order) and ``"overall"``:
        median, p90, max and ``points`` (how many values), as a profile's held-out error reads."""
        out = {}
        for m in BENCHMARK_METRICS:
            errs = [r.error[m] for r in self.rows if m in r.error]
            if errs:
                out[m] = error_stats(errs)
        every = [e for r in self.rows for e in r.error.values()]
        if every:
            out["overall"] = error_stats(every)
        return out

    def table(self) -> pa.Table:
        """One line per (row, metric measured): the row's configuration and load, measured,
        predicted and relative error, how many requests were simulated, and the profile."""
        lines = [(r, m) for r in self.rows for m in r.measured]
        return pa.table({
            "row": pa.array([r.row for r, _ in lines], pa.int64()),
            "model": [r.configuration[0] for r, _ in lines],
            "quantization": [r.configuration[1] for r, _ in lines],
            "hardware": [r.configuration[2] for r, _ in lines],
            "tp": pa.array([r.configuration[3] for r, _ in lines], pa.int64()),
            "load": [r.load for r, _ in lines],
            "input_tokens": pa.array([r.input_tokens for r, _ in lines], pa.int64()),
            "output_tokens": pa.array([r.output_tokens for r, _ in lines], pa.int64()),
            "num_requests": pa.array([r.num_requests for r, _ in lines], pa.int64()),
            "simulated_requests": pa.array([r.simulated_requests for r, _ in lines], pa.int64()),
            "streams": pa.array([r.streams for r, _ in lines], pa.int64()),
            "metric": [m for _, m in lines],
            "measured": pa.array([r.measured[m] for r, m in lines], pa.float64()),
            "predicted": pa.array([r.predicted[m] for r, m in lines], pa.float64()),
            "error": pa.array([r.error[m] for r, m in lines], pa.float64()),
            "profile_kind": [r.profile_kind for r, _ in lines],
            "profile_source": [r.profile_source for r, _ in lines],
        })

    def summary_table(self) -> pa.Table:
        """:meth:`summary` as a table: metric, values, median, p90 and max |error|."""
        s = self.summary()
        return pa.table({"metric": list(s), "values": pa.array([int(e["points"]) for e in s.values()], pa.int64()),
                         "median_abs_error": [e["median"] for e in s.values()],
                         "p90_abs_error": [e["p90"] for e in s.values()],
                         "max_abs_error": [e["max"] for e in s.values()]})

    def as_dict(self) -> dict[str, Any]:
        """Everything as plain data (strict JSON): settings, summary, rows and skipped rows."""
        return {"benchmarks": self.path, "profile": self.profile, "engine": self.engine, "summary": self.summary(),
                "rows": [asdict(r) for r in self.rows], "skipped": [asdict(s) for s in self.skipped]}


def validate_benchmarks(path: str | Path, *, profile: Mapping[str, Any] | None = None, engine: Any = None,
                        seed: int = 0, max_requests: int = 400, iteration_budget: int = 4000,
                        executor: Executor | None = None, progress: Progress | None = None) -> BenchmarkValidation:
    """Predict every row of the benchmark CSV at ``path`` with one profile, without fitting.

    ``profile``: a scenario's profile section (default ``{"kind": "auto"}``). ``engine``: the
    engine section every row runs under (a mapping or :class:`~sim.config.EngineSpec`, e.g.
    ``{"preset": "tensorrt-llm-0.17"}``; capsim's defaults when None). ``seed``,
    ``max_requests``, ``iteration_budget``: as in :func:`~sim.fitting.benchmark_fit.fit_from_benchmarks`
    (the same seed and bound simulate the same requests a fit would). ``executor``: simulate rows
    in parallel (e.g. a ``ProcessPoolExecutor``). ``progress``: called with one line per row, in
    row order, as each is done.

    Raises ValueError with one line for a CSV that cannot be read or an engine section that is not
    valid; a row that cannot be simulated is returned in ``skipped`` with the reason instead.
    """
    p = Path(path)
    eng = engine_settings(engine)
    spec = dict(profile) if profile is not None else {"kind": "auto"}
    rows = read_benchmarks(p)
    mnbt = int(eng.get("max_num_batched_tokens", 8192))
    plan: list[RowTask | SkippedRow] = []  # per row, in order: what to simulate, or why not
    starts: dict[tuple[str, str, str, int], dict[str, float]] = {}
    for r in rows:
        try:
            # A measurement no server could have made is not one to judge a profile by.
            check_benchmarks(p, [r], max_num_batched_tokens=mnbt)
            if r.configuration not in starts:
                starts[r.configuration] = roofline_coefficients(r)
        except ValueError as e:
            plan.append(SkippedRow(r.row, r.configuration, str(e).removeprefix(f"{p}: ")))
            continue
        n, streams = simulation_plan(r, starts[r.configuration], max_requests=max_requests,
                                     iteration_budget=iteration_budget, max_num_batched_tokens=mnbt)
        plan.append(RowTask(r, spec, eng, n, streams, seed))
    mapper = executor.map if executor is not None else map
    done = iter(mapper(check_row, [t for t in plan if isinstance(t, RowTask)]))
    checked: list[RowCheck] = []
    skipped: list[SkippedRow] = []
    for r, item in zip(rows, plan):
        out = item if isinstance(item, SkippedRow) else next(done)
        if isinstance(out, SkippedRow):
            skipped.append(out)
        else:
            checked.append(out)
        if progress is not None:
            progress(_progress_line(r, out, len(rows)))
    return BenchmarkValidation(path=str(p), profile=spec, engine=eng, rows=tuple(checked), skipped=tuple(skipped))


def _progress_line(r: BenchmarkRow, out: RowCheck | SkippedRow, total: int) -> str:
    head = f"row {r.row}/{total} {_label(r.configuration)}, {r.load}, {r.input_tokens}/{r.output_tokens} tokens"
    if isinstance(out, SkippedRow):
        return f"{head}: skipped: {out.reason}"
    errs = ", ".join(f"{m} {e:+.1%}" for m, e in out.error.items())
    return f"{head}: {out.simulated_requests}/{r.num_requests} requests simulated: {errs}"


def format_validation(v: BenchmarkValidation) -> str:
    """The comparison as text for a terminal: settings, measured against predicted per row and
    metric, which profile priced each configuration, skipped rows, and the error summary."""
    engine = f"preset {v.engine['preset']}" if "preset" in v.engine else ("capsim's defaults" if not v.engine
                                                                           else "as given")
    spec = ", ".join(f"{k}: {val}" for k, val in v.profile.items())
    lines = [f"{v.path}: {len(v.rows)} row(s) predicted with profile {{{spec}}}, engine: each row's own where its "
             f"columns name one, else {engine}; no fitting"
             + (f"; {len(v.skipped)} skipped" if v.skipped else "")]
    table = [("row", "configuration", "load", "in/out", "simulated", "metric", "measured", "predicted", "error")]
    for r in v.rows:
        sim = f"{r.simulated_requests}/{r.num_requests}" + (f" ×{r.streams}" if r.streams > 1 else "")
        for k, (m, val) in enumerate(r.measured.items()):
            first = k == 0
            table.append((str(r.row) if first else "", _label(r.configuration) if first else "",
                          r.load if first else "", f"{r.input_tokens}/{r.output_tokens}" if first else "",
                          sim if first else "", m, format_metric(m, val), format_metric(m, r.predicted[m]),
                          f"{r.error[m]:+.1%}"))
    if v.rows:
        lines.extend(text_table(table, right={0, 4, 6, 7, 8}))
        lines.append("simulated: requests per simulated run / requests measured (×k: k arrival streams averaged); "
                     "error: (predicted − measured) / measured")
    # A profile's source can run to a paragraph: its start here, the whole in the CSV and JSON.
    priced = {r.configuration: (r.profile_kind, r.profile_source) for r in v.rows}
    lines.extend(f"priced by: {_label(c)}: {kind}, {src if len(src) <= 90 else src[:89] + '…'}"
                 for c, (kind, src) in priced.items())
    lines.extend(f"row {r.row}: {r.note}" for r in v.rows if r.note)
    lines.extend(f"skipped row {s.row} ({_label(s.configuration)}): {s.reason}" for s in v.skipped)
    summary = v.summary()
    if summary:
        rows: list[Sequence[str]] = [("|error|", "values", "median", "p90", "max")]
        rows += [(m, f"{e['points']:.0f}", f"{e['median']:.1%}", f"{e['p90']:.1%}", f"{e['max']:.1%}")
                 for m, e in summary.items()]
        lines.extend(text_table(rows, right={1, 2, 3, 4}))
    return "\n".join(lines)
