"""Fitting a profile to measured serving benchmarks by inverse simulation: the orchestration.

A serving benchmark (vLLM's ``vllm bench serve``, or any tool like it) reports throughput and
latency of a whole server at a given prompt length, output length and load. Those numbers are
not step times: a TTFT at concurrency 32 mixes queueing, batched prefill and the decodes that
share its iterations. So the step-time model is fitted *through the simulator*: each measured
run is re-enacted in the engine, with the same lengths, load and number of requests, and the
step-time coefficients are adjusted until the simulated metrics match the measured ones.

The input is a tidy CSV, one row per measured run; rows may cover several (model, quantization,
hardware, tp) configurations, and each gets its own fit (:func:`fit_from_benchmarks`). The steps,
each in its own module:
- reading the rows (:mod:`sim.fitting.benchmark_csv`) and checking what they claim
  (:mod:`sim.fitting.benchmark_checks`);
- re-enacting one row with given coefficients, as the benchmark client ran it and measuring it as
  the client measures (:mod:`sim.fitting.reenact`);
- optimising the coefficients against the rows: which factors are fitted, the loss, the prior,
  how firmly the rows pin them and the cross-validated error (:mod:`sim.fitting.optimise`);
- the results (:mod:`sim.fitting.fit_result`) and how they are shown (:mod:`sim.fitting.fit_report`).
This module runs them in order per configuration and decides what is refused.

What is refused, so that a profile never rests on numbers no server produced:
- before any fitting, a configuration the simulator cannot re-enact (weights that do not fit,
  requests larger than the KV cache); then (:func:`~sim.fitting.benchmark_checks.check_benchmarks`)
  a row faster than the hardware's peak allows
  (:class:`~sim.fitting.benchmark_checks.HardwareLimits`), a row whose columns cannot all hold (a
  p50 above its p99, Little's law against the concurrency, ...), and latencies that look like
  milliseconds;
- after fitting, a fit whose median error is above
  :data:`~sim.fitting.fit_result.POOR_FIT_MEDIAN`, with its figures and worst row, unless
  ``keep_poor_fit``: then its record says ``meta["quality"] == "poor"``, its provenance carries a
  warning, and ``kind: auto`` skips it (saying so).

The result per configuration is a :class:`~sim.fitting.fit_result.BenchmarkFit`: the
coefficients, the factors, measured versus fitted values per row and metric, and a ready
:class:`~calibration.measured.ProfileRecord` (kind ``derived-from-measured``) whose held-out error
comes from k-fold cross-validation over the rows. ``write_profile(out, fit.record, fit.table)``
files it where ``profile: {kind: measured}`` and ``kind: auto`` find it.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sim.fitting.benchmark_checks import check_benchmarks
from sim.fitting.benchmark_csv import BenchmarkRow, read_benchmarks, row_error
from sim.fitting.fit_report import format_metric, measurements_table, row_ranges
from sim.fitting.fit_result import POOR_FIT_MEDIAN, BenchmarkFit, RowFit
from sim.fitting.optimise import FACTOR_GROUPS, FitProblem, Progress, cross_validate, error_stats, factor_uncertainty
from sim.fitting.reenact import (engine_settings, kv_shortfall, profile_record, roofline_coefficients, row_scenario,
                                 simulation_plan)

__all__ = ["fit_from_benchmarks"]


def _check_configuration(path: Path, rows: Sequence[BenchmarkRow], engine: dict[str, Any], seed: int) -> None:
    """Refuse what the simulator cannot re-enact (weights that do not fit, requests larger than the
    KV cache), naming the first row concerned."""
    from sim.errors import ScenarioError

    first = rows[0]
    # The configuration alone (a one-token workload): each row's lengths are checked below.
    tiny = BenchmarkRow(first.row, *first.configuration, input_tokens=1, output_tokens=1, concurrency=1,
                        request_rate=None, num_requests=1, metrics={})
    try:
        s = row_scenario(tiny, 1, {"kind": "roofline"}, seed, engine)
    except ScenarioError as e:
        raise row_error(path, f"row {first.row}, column 'tp'", str(e)) from None
    for r in rows:
        short = kv_shortfall(r, s)
        if short is not None:
            raise row_error(path, f"row {r.row}, column 'input_tokens'", short)


def _validity(rows: Sequence[BenchmarkRow]) -> dict[str, float]:
    """The lengths and loads the rows span (``<name>_min``/``<name>_max``): where the profile was fitted.
    A row at rate inf counts as the closed loop that re-enacts it (``num_requests`` users at once), so
    that every figure is finite (the profile is JSON)."""
    v: dict[str, float] = {}
    for name, vals in (("input_tokens", [r.input_tokens for r in rows]),
                       ("output_tokens", [r.output_tokens for r in rows]),
                       ("concurrency", [r.users for r in rows if r.users is not None]),
                       ("request_rate", [r.request_rate for r in rows
                                         if r.request_rate is not None and math.isfinite(r.request_rate)])):
        if vals:
            v[f"{name}_min"], v[f"{name}_max"] = float(min(vals)), float(max(vals))  # type: ignore[type-var]
    return v


def _fit_configuration(path: Path, rows: list[BenchmarkRow], *, seed: int, engine: dict[str, Any],
                       max_requests: int, iteration_budget: int, cv_folds: int, max_evaluations: int,
                       executor: Executor | None, progress: Progress | None,
                       keep_poor_fit: bool = False) -> BenchmarkFit:
    """Fit the rows of one configuration (see :func:`fit_from_benchmarks`): plan their simulations,
    optimise the factors, refuse a poor fit, and describe the rest in notes, the record and its table."""
    model, quant, hardware, tp = rows[0].configuration
    label = f"{model}/{quant}/{hardware}/tp{tp}"
    start = roofline_coefficients(rows[0])
    mnbt = int(engine.get("max_num_batched_tokens", 8192))
    plans = {r.row: simulation_plan(r, start, max_requests=max_requests, iteration_budget=iteration_budget,
                                     max_num_batched_tokens=mnbt) for r in rows}
    problem = FitProblem(rows, start, plans, seed, engine, executor, progress, label)
    every = list(range(len(rows)))
    try:
        sol = problem.solve(every, np.zeros(len(FACTOR_GROUPS)), max_evaluations)
    except ValueError as e:  # a simulated run that cannot finish
        raise row_error(path, label, str(e)) from None
    x = sol.x
    sims = problem.simulate(x, every)
    coef = problem.coefficients(x)
    factors = {k: math.exp(float(v)) for k, v in zip(FACTOR_GROUPS, x)}

    fits = []
    for r, sim in zip(rows, sims):
        fitted = {m: float(sim[m]) for m in r.metrics}
        fits.append(RowFit(row=r.row, load=r.load, input_tokens=r.input_tokens, output_tokens=r.output_tokens,
                           num_requests=r.num_requests, simulated_requests=plans[r.row][0], streams=plans[r.row][1],
                           measured=dict(r.metrics),
                           fitted=fitted, error={m: fitted[m] / v - 1.0 for m, v in r.metrics.items()},
                           note=sim.get("note")))
    errs = np.abs([e for f in fits for e in f.error.values()])
    median = float(np.median(errs))
    worst_row, worst_metric = max(((f, k) for f in fits for k in f.error), key=lambda fk: abs(fk[0].error[fk[1]]))
    figures = (f"median error {median:.1%} over {errs.size} measured value{'s' if errs.size > 1 else ''}, max "
               f"{float(errs.max()):.1%} (row {worst_row.row}, {worst_metric}: measured "
               f"{format_metric(worst_metric, worst_row.measured[worst_metric])}, fitted "
               f"{format_metric(worst_metric, worst_row.fitted[worst_metric])})")
    poor = median > POOR_FIT_MEDIAN
    if poor and not keep_poor_fit:
        raise row_error(path, label, f"poor fit, refused: {figures}, above the {POOR_FIT_MEDIAN:.0%} a profile may "
                        "have; the simulator cannot re-enact these rows with one step-time model (check their units, "
                        "configuration and engine settings), or pass --keep-poor-fit to write the profile labelled "
                        "poor")

    # How well the rows separate the factors (after the refusal: it costs a simulation per factor).
    uncertainty = factor_uncertainty(problem, x, every)
    notes = []
    hints = {"compute": "TTFT at two or more prompt lengths", "memory": "TPOT at low and high concurrency",
             "overhead": "TTFT and TPOT at concurrency 1 with short and long prompts"}
    for name, u in uncertainty.items():
        if u > 0.05:
            notes.append(f"the rows hardly determine the {name} factor (±{u:.0%} for each 1% of noise in the "
                         f"measurements); add rows with {hints[name]}")
    if poor:
        notes.append(f"poor fit, kept: {figures}, above {POOR_FIT_MEDIAN:.0%}; the profile is labelled poor, and "
                     "kind: auto skips it")
    if not sol.success:
        notes.append(f"the optimiser stopped before converging ({sol.message}); raise max_evaluations")
    capped = [r.row for r in rows if plans[r.row][0] < r.num_requests]
    if capped:
        notes.append(f"{'rows' if len(capped) > 1 else 'row'} {row_ranges(capped)} simulate"
                     f"{'' if len(capped) > 1 else 's'} fewer requests than measured (warm-up and drain once, "
                     "steady state weighted up)")

    heldout: dict[str, dict[str, float]] = {}
    folds = min(cv_folds, len(rows))
    if folds >= 2 and len(rows) >= 4:
        try:
            heldout = cross_validate(problem, x, folds, seed, max_evaluations)
        except ValueError as e:
            raise row_error(path, label, str(e)) from None
    elif cv_folds:
        notes.append(f"{len(rows)} row(s): too few to cross-validate (needs 4), so no held-out error is reported")

    used = row_ranges([r.row for r in rows])
    source = (f"fitted by inverse simulation to serving benchmarks {path} (rows {used}): compute "
              f"×{factors['compute']:.3g}, memory ×{factors['memory']:.3g}, overhead ×{factors['overhead']:.3g} "
              f"against the roofline of {label}; in-sample error median {float(np.median(errs)):.1%}, "
              f"max {float(errs.max()):.1%}")
    meta = {"method": "inverse simulation", "benchmarks": str(path), "rows": used, "seed": seed,
            "factors": factors, "factor_uncertainty_per_1pct_noise": uncertainty, "roofline_coefficients": start,
            "fit_error": error_stats(errs), "simulations": problem.evaluations, "cv_folds": folds if heldout else 0,
            "engine": engine, "notes": notes, "quality": "poor" if poor else "good"}
    if poor:
        meta["quality_note"] = f"{figures}, above {POOR_FIT_MEDIAN:.0%}"
    record = profile_record(rows[0], coef, validity=_validity(rows), heldout_error=heldout, source=source, meta=meta)
    return BenchmarkFit(configuration=(model, quant, hardware, tp), coefficients=coef, roofline_coefficients=start,
                        factors=factors, uncertainty=uncertainty, rows=tuple(fits), median_error=median,
                        max_error=float(errs.max()), heldout_error=heldout, evaluations=problem.evaluations,
                        record=record, table=measurements_table(fits, {r.row: r for r in rows}),
                        notes=tuple(notes), quality="poor" if poor else "good")


def fit_from_benchmarks(path: str | Path, *, seed: int = 0, progress: Progress | None = None, engine: Any = None,
                        max_requests: int = 400, iteration_budget: int = 4000, cv_folds: int = 5,
                        max_evaluations: int = 60, executor: Executor | None = None,
                        keep_poor_fit: bool = False) -> list[BenchmarkFit]:
    """Fit one profile per (model, quantization, hardware, tp) configuration in the benchmark CSV
    at ``path`` (see :func:`~sim.fitting.benchmark_csv.read_benchmarks`), in the order
    configurations first appear.

    ``seed``: the Poisson arrivals of rate rows and the cross-validation folds (the same seed gives
    the same fit). ``progress``: called with a one-line status after each simulation of the rows.
    ``engine``: the server's batching settings during the benchmark (:class:`~sim.config.EngineSpec`
    or a mapping; vLLM's defaults when None). ``max_requests``/``iteration_budget``: the bound on
    simulated requests per row (:func:`~sim.fitting.reenact.simulation_plan`). ``cv_folds``: k of
    the k-fold cross-validation that scores the held-out error (0: skip; needs 4 rows).
    ``max_evaluations``: per fit, the optimiser's budget of simulations of all rows. ``executor``:
    simulate a candidate's rows in parallel (e.g. a ``ProcessPoolExecutor``). ``keep_poor_fit``:
    return a fit whose median error is above :data:`~sim.fitting.fit_result.POOR_FIT_MEDIAN`
    labelled poor (``quality``, and ``meta["quality"]`` of its record) instead of refusing it.

    Raises ValueError with one line (file, row, column) for a CSV or configuration it cannot use,
    for a row :func:`~sim.fitting.benchmark_checks.check_benchmarks` refuses (before any fitting),
    and for a poor fit (with its median and max error and the worst row) unless ``keep_poor_fit``.
    """
    p = Path(path)
    eng = engine_settings(engine)
    rows = read_benchmarks(p)
    groups: dict[tuple[str, str, str, int], list[BenchmarkRow]] = {}
    for r in rows:
        groups.setdefault(r.configuration, []).append(r)
    # Everything that can be refused is refused before the first simulation: what the simulator
    # cannot re-enact, then what no server could have measured.
    for g in groups.values():
        _check_configuration(p, g, eng, seed)
    check_benchmarks(p, rows, max_num_batched_tokens=int(eng.get("max_num_batched_tokens", 8192)))
    return [_fit_configuration(p, g, seed=seed, engine=eng, max_requests=max_requests,
                               iteration_budget=iteration_budget, cv_folds=cv_folds,
                               max_evaluations=max_evaluations, executor=executor, progress=progress,
                               keep_poor_fit=keep_poor_fit)
            for g in groups.values()]
