"""Fitting a profile to measured serving benchmarks by inverse simulation.

A serving benchmark (vLLM's ``vllm bench serve``, or any tool like it) reports throughput and
latency of a whole server at a given prompt length, output length and load. Those numbers are
not step times: a TTFT at concurrency 32 mixes queueing, batched prefill and the decodes that
share its iterations. So the step-time model is fitted *through the simulator*: each measured
run is re-enacted in the engine, with the same lengths, load and number of requests, and the
step-time coefficients are adjusted until the simulated metrics match the measured ones.

The input is a tidy CSV (see :func:`read_benchmarks`), one row per measured run. Rows may cover
several (model, quantization, hardware, tp) configurations; each gets its own fit.

What is fitted, and why only that:
- A handful of benchmark rows cannot pin seven coefficients. The fit starts from the roofline
  profile of the same configuration in the step formula's own terms
  (:func:`calibration.measured.coefficients_from_roofline`) and fits three multiplicative factors
  on groups of coefficients that benchmarks do separate (:data:`FACTOR_GROUPS`): **compute** on
  the per-token linear work, prefill attention and the LM head (what TTFT and large batches
  see), **memory** on the weight read and the decode KV read (what TPOT at small batches sees),
  and **overhead** on the fixed per-iteration time ``t0``. The factors live in log space, so they
  stay positive and a factor of 2 weighs like a factor of 1/2.
- Residuals are relative, log(simulated / measured), so a 20 ms TPOT and a 5,000 tokens/s
  throughput count alike; the loss is robust (soft L1, scale 5%) so one odd run does not bend
  the fit. A weak prior (:data:`PRIOR_WEIGHT`) holds a factor that the rows cannot see at its
  roofline value instead of letting it wander; where rows do see it, its pull is negligible.
- Every evaluation simulates every row with the *same* random draws (a fixed seed per row:
  common random numbers), so the objective is a deterministic function of the factors. An
  open-loop run still jumps a little when a changed step time moves an iteration's end across an
  arrival; several arrival streams are averaged for such rows (:func:`simulation_plan`) and the
  Jacobian is taken by finite differences over a wide step (10% in each factor), over which the
  metrics are nearly linear, so that it measures the trend and not the jumps.
- How well the rows pin each factor is reported (``BenchmarkFit.uncertainty``): rows that are all
  decode-bound, for instance, cannot tell the fixed overhead from the weight read.

How a run is re-enacted (the semantics of vLLM's benchmark client):
- ``concurrency`` C: a closed loop of C users with no think time; the first C requests are sent
  at once, and each later one when an earlier one ends (``--max-concurrency C`` with
  ``--request-rate inf``). ``request_rate`` λ: Poisson arrivals whose gaps are rescaled so that
  the n-th request is sent at exactly n/λ, as vLLM's client does.
- Fixed ``input_tokens`` and ``output_tokens`` per request (the row's means for a dataset whose
  lengths vary).
- Metrics as the client computes them: TTFT per request; TPOT per request as
  (latency − TTFT)/(output − 1); mean ITL as the mean of all gaps between tokens; percentiles by
  linear interpolation; throughput as output tokens (or requests) over the benchmark's duration,
  from the start to the last response.
- Simulation cost is bounded (:func:`simulation_plan`): a row simulates n = min(num_requests,
  max_requests) requests (400 by default), fewer where the run would take more than about
  ``iteration_budget`` engine iterations (long runs at low load), but at least three rounds of
  every user. When n is below ``num_requests`` the simulated run stands for the longer one: its
  warm-up and drain (the first and last 10% of requests, and at least the first and last round of
  users) count once, its steady middle is weighted up to make ``num_requests`` requests, and the
  duration grows by the steady time per request. When n equals ``num_requests`` nothing is
  dropped or extrapolated, exactly as the benchmark client counts.
- A candidate profile reaches the engine the way every profile does, through the scenario: its
  record is written to a temporary profile file that ``profile: {kind: measured, path: ...}``
  names (a few milliseconds per run; worker processes of an executor write their own).

Limits, said where they apply: one replica per benchmark (the server the client talked to); no
prefix caching between requests (the benchmark tools' random prompts share none); and an open-loop
row near saturation, where the batch keeps growing over a long run, is only approximated by a
capped run (a note says when the simulated run is plainly overloaded; simulate it whole then).

What is refused, so that a profile never rests on numbers no server produced:
- before any fitting (:func:`check_benchmarks`), a row faster than the hardware's peak allows
  (:class:`HardwareLimits`), a row whose columns cannot all hold (a p50 above its p99, Little's
  law against the concurrency, ...), and latencies that look like milliseconds;
- after fitting, a fit whose median error is above :data:`POOR_FIT_MEDIAN`, with its figures
  and worst row, unless ``keep_poor_fit``: then its record says ``meta["quality"] == "poor"``,
  its provenance carries a warning, and ``kind: auto`` skips it (saying so).

The result per configuration is a :class:`BenchmarkFit`: the coefficients, the factors, measured
versus fitted values per row and metric, and a ready :class:`~calibration.measured.ProfileRecord`
(kind ``derived-from-measured``) whose held-out error comes from k-fold cross-validation over
the rows. ``write_profile(out, fit.record, fit.table)`` files it where ``profile: {kind: measured}``
and ``kind: auto`` find it.
"""

from __future__ import annotations

import math
import tempfile
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from calibration.catalog import MODELS
from calibration.measured import COEFFICIENTS, ProfileRecord, coefficients_from_roofline, profile_name, seconds_of
from calibration.spec import RooflineProfileSpec, build_profile
# The reader and the checks, re-exported: the fit's public surface is where callers found it.
from sim.fitting.benchmark_checks import LITTLE_RANGE, PEAK_SLACK, HardwareLimits, check_benchmarks, hardware_limits
from sim.fitting.benchmark_csv import BENCHMARK_METRICS, METRIC_FAMILY, BenchmarkRow, row_error, read_benchmarks

__all__ = ["BENCHMARK_METRICS", "FACTOR_GROUPS", "LITTLE_RANGE", "PEAK_SLACK", "POOR_FIT_MEDIAN", "PRIOR_WEIGHT",
           "BenchmarkFit", "BenchmarkRow", "HardwareLimits", "RowFit", "benchmark_metrics", "benchmark_requests",
           "check_benchmarks", "fit_from_benchmarks", "format_fit", "hardware_limits", "read_benchmarks",
           "simulate_benchmark", "simulation_plan"]


# Which coefficients each fitted factor scales (c_seq stays as the roofline has it: 0).
FACTOR_GROUPS: dict[str, tuple[str, ...]] = {"compute": ("c_lin", "c_pf", "c_head"), "memory": ("w", "c_dc"),
                                             "overhead": ("t0",)}
# Residual weight of each log-factor's distance from the roofline (1 = the roofline value). A
# 1% relative error costs as much as a factor 2.7 away from the roofline would cost at this
# weight; only a direction the rows do not constrain is held by it.
PRIOR_WEIGHT = 0.01
_BOUNDS = {"compute": (1 / 50, 50.0), "memory": (1 / 50, 50.0), "overhead": (1e-3, 1e3)}
_LOSS_SCALE = 0.05          # soft-L1: residuals beyond ~5% count linearly, not quadratically
# Finite-difference step in log-factor (about 10%): the metrics are nearly linear in the factors
# over such a step, and it is wide enough that the Jacobian measures their trend, not the small
# jumps that re-composed batches make in open-loop runs (a 2% step measured mostly jumps).
_DIFF_STEP = 0.1
_WARMUP_SHARE = 0.1

Progress = Callable[[str], None]


# A fit whose median |relative error| over the rows' measured values is above this is refused
# (unless kept, labelled poor). A step-time model the simulator re-enacts reproduces a real
# server's runs to about 10% (run-to-run noise of serving benchmarks is a few percent; the fit has
# three factors for what varies between runs): the ten finite-rate rows of the published
# TensorRT-LLM 0.14 table for Llama-3.1-8B on an H100 SXM fit with a median error of 6.2% (max
# 28.6%) over their 40 values. With half the values off by more than a quarter,
# the rows describe something the simulator does not re-enact (units, the configuration, engine
# settings, another load), and a profile fitted to them would mislead every scenario that uses it.
POOR_FIT_MEDIAN = 0.25

# -- simulating one benchmark run ----------------------------------------------------------------

def _engine_dict(engine: Any) -> dict[str, Any]:
    if engine is None:
        return {}
    if hasattr(engine, "model_dump"):
        return engine.model_dump(mode="json", exclude_none=True)
    return dict(engine)


def _record(row: BenchmarkRow, coefficients: Mapping[str, float], **kw: Any) -> ProfileRecord:
    return ProfileRecord(model=row.model, quantization=row.quantization, hardware=row.hardware, tp=row.tp,
                         kind=kw.pop("kind", "derived-from-measured"),
                         coefficients={k: float(coefficients[k]) for k in COEFFICIENTS},
                         layers=MODELS[row.model].layers, validity=kw.pop("validity", {}),
                         heldout_error=kw.pop("heldout_error", {}), source=kw.pop("source", "candidate of a benchmark fit"),
                         meta=kw.pop("meta", {}))


def _scenario_data(row: BenchmarkRow, n: int, profile_path: str, seed: int, engine: dict[str, Any]) -> dict[str, Any]:
    arrival: dict[str, Any] = ({"process": "closed_loop", "users": row.concurrency} if row.concurrency is not None
                               else {"process": "poisson", "rate_per_s": row.request_rate})
    return {
        "name": f"benchmark row {row.row}", "seed": seed, "model": row.model, "quantization": row.quantization,
        "hardware": row.hardware, "tp": row.tp, "profile": {"kind": "measured", "path": profile_path},
        "engine": engine,
        "workload": {"arrival": arrival, "num_requests": n,
                     "classes": [{"name": "bench", "prompt_tokens": {"dist": "fixed", "value": row.input_tokens},
                                  "output_tokens": {"dist": "fixed", "value": row.output_tokens}}]},
    }


def benchmark_requests(row: BenchmarkRow, n: int, seed: int, replicate: int = 0) -> pa.Table:
    """The RequestTable that re-enacts ``n`` requests of ``row`` the way vLLM's client sends them:
    a closed loop (request k sent when request k − C ends; the first C at time 0), or Poisson gaps
    rescaled so that request n is sent at exactly n/λ (drawn from (seed, row, replicate))."""
    k = np.arange(n, dtype=np.int64)
    if row.concurrency is not None:
        c = row.concurrency
        arrival = np.where(k < c, 0.0, np.nan)
        after = np.where(k < c, -1, k - c)
    else:
        assert row.request_rate is not None
        gaps = np.random.default_rng(np.random.SeedSequence([seed, row.row, replicate])).exponential(1.0, n)
        arrival = np.cumsum(gaps) * (n / row.request_rate / gaps.sum())
        after = np.full(n, -1, np.int64)
    return pa.table({
        "request_id": k, "arrival_s": arrival,
        "prompt_tokens": np.full(n, row.input_tokens, np.int64), "output_tokens": np.full(n, row.output_tokens, np.int64),
        "class": pa.array(["bench"] * n, pa.string()), "after_id": after, "think_s": np.zeros(n),
    })


def _weighted_quantile(x: np.ndarray, w: np.ndarray, q: float) -> float:
    """Quantile ``q`` (0..1) of ``x`` with weights ``w``, interpolating linearly: with equal weights
    exactly ``numpy.percentile``'s default (the benchmark client's)."""
    o = np.argsort(x, kind="stable")
    xs, ws = x[o], w[o]
    cw = np.cumsum(ws)
    span = cw[-1] - ws[-1]
    if span <= 0:
        return float(xs[-1])
    return float(np.interp(q, (cw - ws) / span, xs))


def benchmark_metrics(requests: pa.Table, row: BenchmarkRow) -> dict[str, Any]:
    """The benchmark client's metrics of a simulated run (``SimResult.requests``) of ``row``.

    With as many simulated requests as ``row.num_requests``, everything counts once, as the client
    counts. With fewer, the run stands for the longer one (see the module docstring): warm-up and
    drain count once, the steady middle is weighted up, and the duration is extended by the steady
    time per request. Also returns ``"note"`` (str or None) when that extension is doubtful."""
    status = np.asarray(requests.column("status").to_pylist(), dtype=object)
    if (status != "completed").any():
        bad = int((status != "completed").sum())
        raise ValueError(f"{bad} of {status.size} simulated requests did not complete")
    arrival = requests.column("arrival_s").to_numpy()
    o = np.argsort(arrival, kind="stable")
    ttft = requests.column("ttft_s").to_numpy()[o]
    e2e = requests.column("e2e_s").to_numpy()[o]
    out = requests.column("output_tokens").to_numpy()[o].astype(np.float64)
    finish = arrival[o] + e2e
    n, total = o.size, row.num_requests
    w = np.ones(n)
    makespan = float(finish.max())   # time 0 is the benchmark's start
    note = None
    if n < total:
        edge = math.ceil(_WARMUP_SHARE * n)
        if row.concurrency is not None:
            # The first round of users starts together (warm-up) and the last ends alone (drain).
            edge = max(edge, row.concurrency)
        lo, hi = edge, n - edge
        if hi - lo < 2:
            lo, hi = 0, n
        w[lo:hi] += (total - n) / (hi - lo)
        if row.concurrency is not None:
            # Closed loop without think time: C requests always in flight, so by Little's law the
            # steady time per request is the mean latency over C.
            per_request = float(e2e[lo:hi].mean()) / row.concurrency
        else:
            assert row.request_rate is not None
            # Arrivals come at exactly the rate over the whole run (the client spaces them so);
            # completions keep pace unless the server is overloaded, when they spread out more
            # than the arrivals of the same requests did, and the queue grows.
            gap = 1.0 / row.request_rate
            spread = float(np.ptp(finish[lo:hi])) / max(float(np.ptp(arrival[o][lo:hi])), 1e-12)
            per_request = gap * max(1.0, spread)
            if spread > 1.1:
                note = (f"overloaded: requests finish {spread:.2g}× as far apart as they arrive, so the queue grows "
                        f"over the run and {n} simulated requests understate the latency of {total}; simulate all "
                        "of them (raise max_requests and iteration_budget)")
        makespan += (total - n) * per_request
    res: dict[str, Any] = {
        "output_tokens_per_s": float(np.dot(w, out)) / makespan,
        "requests_per_s": float(w.sum()) / makespan,
        "ttft_mean_s": float(np.dot(w, ttft) / w.sum()),
        "ttft_p50_s": _weighted_quantile(ttft, w, 0.5),
        "ttft_p99_s": _weighted_quantile(ttft, w, 0.99),
    }
    many = out > 1
    if many.any():
        tpot = (e2e[many] - ttft[many]) / (out[many] - 1)
        wm = w[many]
        res["tpot_mean_s"] = float(np.dot(wm, tpot) / wm.sum())
        res["tpot_p50_s"] = _weighted_quantile(tpot, wm, 0.5)
        res["tpot_p99_s"] = _weighted_quantile(tpot, wm, 0.99)
        res["itl_mean_s"] = float(np.dot(wm, e2e[many] - ttft[many]) / np.dot(wm, out[many] - 1))
    res["note"] = note
    return res


def simulation_plan(row: BenchmarkRow, coefficients: Mapping[str, float], *, max_requests: int = 400,
                    iteration_budget: int = 4000, open_loop_requests: int = 200,
                    max_num_batched_tokens: int = 8192) -> tuple[int, int]:
    """How to simulate ``row`` cheaply enough to repeat many times: (requests per run, runs).

    Requests: ``num_requests``, at most ``max_requests``, fewer where a run would take more than
    about ``iteration_budget`` engine iterations (a decode iteration emits one token per request
    in flight, so a run at low load costs one iteration per token), but never fewer than three
    rounds of every user (closed loop) or 20 requests. Runs: one for a closed loop (it has no
    randomness); for a rate, independent arrival streams until ``open_loop_requests`` requests in
    all (at most 8, and within the iteration budget), whose metrics are averaged. One short
    open-loop run jumps whenever a small change of step time moves an iteration's end across an
    arrival (that request then waits a whole extra iteration); averaging streams makes the
    metrics, and so the fit, nearly smooth in the factors."""
    total, out = row.num_requests, row.output_tokens
    if row.concurrency is not None:
        in_flight, floor = float(row.concurrency), max(3 * row.concurrency, 10)
    else:
        assert row.request_rate is not None
        # Requests in flight at this rate if each ran alone (Little's law): a lower bound.
        layers = MODELS[row.model].layers
        starts = np.arange(0, row.input_tokens, max_num_batched_tokens, dtype=np.float64)
        chunks = np.diff(np.append(starts, row.input_tokens))
        c = dict(coefficients)
        alone = float(np.sum(seconds_of(c, layers, chunks, 1.0, chunks * (starts + chunks / 2.0), starts)))
        ctx = np.arange(row.input_tokens + 1, row.input_tokens + out, dtype=np.float64)
        alone += float(np.sum(seconds_of(c, layers, 1.0, 1.0, 0.0, ctx)))
        in_flight, floor = max(1.0, row.request_rate * alone), 20
    per_request = out / in_flight  # iterations each request adds to a run
    n = int(min(total, max(min(max_requests, math.ceil(iteration_budget / per_request)), floor)))
    if row.concurrency is not None:
        if n < total:  # whole rounds of users, so that the last round is not a partial one
            n = max(floor, n // row.concurrency * row.concurrency)
        return n, 1
    runs = min(8, math.ceil(open_loop_requests / n), int(iteration_budget // (n * per_request)))
    return n, max(1, runs)


def simulate_benchmark(row: BenchmarkRow, coefficients: Mapping[str, float], *, seed: int = 0,
                       engine: Any = None, requests: int | None = None, streams: int = 1) -> dict[str, Any]:
    """Simulate the run ``row`` describes with a profile of step-time ``coefficients`` (per
    :data:`calibration.measured.COEFFICIENTS`) and return its benchmark metrics (all of
    :data:`BENCHMARK_METRICS`, plus ``"note"``).

    ``requests``: how many to simulate (default ``row.num_requests``; see :func:`benchmark_metrics`
    for fewer). ``streams``: for a rate, the metrics are the mean over this many independent
    arrival streams (see :func:`simulation_plan`). ``engine``: the server's batching settings (an
    :class:`~sim.config.EngineSpec` or a mapping; vLLM's defaults when None). The same
    (row, seed, requests, streams) always sends the same requests.
    """
    from sim.config import load_scenario
    from sim.engine import simulate

    n = row.num_requests if requests is None else int(requests)
    runs = []
    with tempfile.TemporaryDirectory(prefix="capsim-bench-") as tmp:
        # The engine takes its profile from the scenario: a candidate profile goes through a file.
        js = Path(tmp) / f"{profile_name(row.model, row.quantization, row.hardware, row.tp)}.json"
        js.write_text(_record(row, coefficients).to_json())
        scenario = load_scenario(_scenario_data(row, n, str(js), seed, _engine_dict(engine)))
        for k in range(streams if row.request_rate is not None else 1):
            result = simulate(scenario, requests=benchmark_requests(row, n, seed, k))
            runs.append(benchmark_metrics(result.requests, row))
    if len(runs) == 1:
        return runs[0]
    out: dict[str, Any] = {m: float(np.mean([r[m] for r in runs])) for m in runs[0] if m != "note"}
    out["note"] = next((r["note"] for r in runs if r["note"]), None)
    return out


@dataclass(frozen=True)
class _Task:
    """One row at one candidate: everything a worker process needs (picklable)."""

    row: BenchmarkRow
    coefficients: dict[str, float]
    requests: int
    streams: int
    seed: int
    engine: dict[str, Any]


def _run_task(task: _Task) -> dict[str, Any]:
    return simulate_benchmark(task.row, task.coefficients, seed=task.seed, engine=task.engine, requests=task.requests,
                              streams=task.streams)


# -- fitting -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RowFit:
    """Measured versus fitted values of one benchmark row: only the metrics it measured.
    ``error`` is relative, (fitted − measured) / measured."""

    row: int
    load: str
    input_tokens: int
    output_tokens: int
    num_requests: int
    simulated_requests: int
    streams: int
    measured: dict[str, float]
    fitted: dict[str, float]
    error: dict[str, float]
    note: str | None = None


@dataclass(frozen=True)
class BenchmarkFit:
    """The fit of one configuration to its benchmark rows.

    ``factors``: multiplicative factors against the roofline coefficients per :data:`FACTOR_GROUPS`
    (``overhead`` scales ``t0``). ``uncertainty``: how loosely the rows pin each factor, as its
    relative spread per 1% of independent noise in every measured value (above about 5%, the rows
    hardly separate it from the others). ``median_error``/``max_error``: of |relative error| over every
    measured value (in-sample); ``quality`` is ``"poor"`` where the median is above
    :data:`POOR_FIT_MEDIAN` (kept only with ``keep_poor_fit``), else ``"good"``. ``heldout_error``:
    the same scored on rows left out of the fit (k-fold cross-validation), per metric family, empty
    when there were too few rows.
    ``record`` and ``table`` go to :func:`calibration.measured.write_profile`."""

    configuration: tuple[str, str, str, int]
    coefficients: dict[str, float]
    roofline_coefficients: dict[str, float]
    factors: dict[str, float]
    uncertainty: dict[str, float]
    rows: tuple[RowFit, ...]
    median_error: float
    max_error: float
    heldout_error: dict[str, dict[str, float]]
    evaluations: int
    record: ProfileRecord
    table: pa.Table
    notes: tuple[str, ...] = field(default=())
    quality: str = "good"


class _Problem:
    """The objective of one configuration: log-factors → residuals, simulating rows (through an
    executor when given) and caching each (factors, rows) evaluation."""

    def __init__(self, rows: Sequence[BenchmarkRow], start: dict[str, float], plans: dict[int, tuple[int, int]],
                 seed: int, engine: dict[str, Any], executor: Executor | None, progress: Progress | None, label: str):
        self.rows, self.start, self.plans, self.seed, self.engine = rows, start, plans, seed, engine
        self.executor, self.progress, self.label = executor, progress, label
        self.cache: dict[tuple[tuple[float, ...], int], dict[str, Any]] = {}
        self.evaluations = 0

    def coefficients(self, x: np.ndarray) -> dict[str, float]:
        """The step formula's coefficients at log-factors ``x`` (in :data:`FACTOR_GROUPS` order)."""
        c = dict(self.start)
        for group, v in zip(FACTOR_GROUPS.values(), x):
            for k in group:
                c[k] = self.start[k] * math.exp(float(v))
        return c

    def simulate_many(self, xs: Sequence[np.ndarray], idx: Sequence[int]) -> list[list[dict[str, Any]]]:
        """The rows ``idx`` simulated at each candidate of ``xs``. Each (candidate, row) is simulated
        once (a cross-validation fold reuses the full fit's runs); what is missing goes to the
        executor in one batch, so that a Jacobian's candidates run in parallel."""
        keys = [tuple(float(v) for v in x) for x in xs]
        todo = list(dict.fromkeys((k, i) for k in keys for i in idx if (k, i) not in self.cache))
        if todo:
            coef = {k: self.coefficients(np.asarray(k)) for k, _ in todo}
            tasks = [_Task(self.rows[i], coef[k], *self.plans[self.rows[i].row], self.seed, self.engine)
                     for k, i in todo]
            mapper = self.executor.map if self.executor is not None else map
            for key, sim in zip(todo, mapper(_run_task, tasks)):
                self.cache[key] = sim
            for k in dict.fromkeys(k for k, _ in todo):
                self.evaluations += 1
                self._report(np.asarray(k), idx, [self.cache[(k, i)] for i in idx])
        return [[self.cache[(k, i)] for i in idx] for k in keys]

    def simulate(self, x: np.ndarray, idx: Sequence[int]) -> list[dict[str, Any]]:
        return self.simulate_many([x], idx)[0]

    def _logs(self, idx: Sequence[int], sims: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return np.asarray([math.log(sim[m] / v) for i, sim in zip(idx, sims) for m, v in self.rows[i].metrics.items()])

    def _report(self, x: np.ndarray, idx: Sequence[int], sims: Sequence[Mapping[str, Any]]) -> None:
        if self.progress is not None:
            err = np.abs(np.expm1(self._logs(idx, sims)))
            self.progress(f"{self.label}: simulation {self.evaluations}, factors "
                          + ", ".join(f"{k} ×{math.exp(v):.3f}" for k, v in zip(FACTOR_GROUPS, x))
                          + f", median error {np.median(err):.1%}")

    def residuals(self, x: np.ndarray, idx: Sequence[int]) -> np.ndarray:
        """log(simulated / measured) per measured value, then the prior's pull per factor."""
        return np.concatenate([self._logs(idx, self.simulate(x, idx)), PRIOR_WEIGHT * np.asarray(x, np.float64)])

    def jacobian(self, x: np.ndarray, idx: Sequence[int]) -> np.ndarray:
        """d residuals / d log-factors by forward differences with a fixed step (scipy's own steps
        are relative to x, so they shrink to nothing near a factor of 1 and measure only the jumps
        of re-composed batches); the prior's rows are exact."""
        steps = [_DIFF_STEP if x[j] + _DIFF_STEP <= self.hi[j] else -_DIFF_STEP for j in range(x.size)]
        moved = []
        for j, h in enumerate(steps):
            xj = np.array(x, dtype=np.float64)
            xj[j] += h
            moved.append(xj)
        sims = self.simulate_many([np.asarray(x, np.float64), *moved], idx)
        base = self._logs(idx, sims[0])
        jac = np.zeros((base.size + x.size, x.size))
        for j, (h, s) in enumerate(zip(steps, sims[1:])):
            jac[:base.size, j] = (self._logs(idx, s) - base) / h
            jac[base.size + j, j] = PRIOR_WEIGHT
        return jac

    @property
    def lo(self) -> np.ndarray:
        return np.log([_BOUNDS[k][0] for k in FACTOR_GROUPS])

    @property
    def hi(self) -> np.ndarray:
        return np.log([_BOUNDS[k][1] for k in FACTOR_GROUPS])

    def solve(self, idx: Sequence[int], x0: np.ndarray, max_evaluations: int) -> Any:
        """Least squares over the log-factors from ``x0``, fitting the rows ``idx``."""
        from scipy.optimize import least_squares

        lo, hi = self.lo, self.hi
        # max_nfev counts residual evaluations; each Jacobian costs one more per factor.
        return least_squares(self.residuals, np.clip(x0, lo + 1e-9, hi - 1e-9), jac=self.jacobian,
                             args=(list(idx),), bounds=(lo, hi), method="trf", loss="soft_l1", f_scale=_LOSS_SCALE,
                             xtol=1e-3, ftol=1e-4, gtol=1e-8,
                             max_nfev=max(1, max_evaluations // (1 + len(FACTOR_GROUPS))))


def _rel_errors(rows: Sequence[BenchmarkRow], sims: Sequence[Mapping[str, Any]]) -> list[tuple[str, float]]:
    return [(m, sim[m] / v - 1.0) for row, sim in zip(rows, sims) for m, v in row.metrics.items()]


def _stats(errors: Iterable[float]) -> dict[str, float]:
    e = np.abs(np.asarray(list(errors), dtype=np.float64))
    return {"median": float(np.median(e)), "p90": float(np.percentile(e, 90)), "max": float(e.max()),
            "points": float(e.size)}


def _cross_validate(problem: _Problem, x_full: np.ndarray, folds: int, seed: int,
                    max_evaluations: int) -> dict[str, dict[str, float]]:
    """Refit without each fold of rows (starting from the full fit) and score the rows left out,
    per metric family."""
    n = len(problem.rows)
    fold = np.empty(n, np.int64)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % folds
    by_family: dict[str, list[float]] = {}
    for k in range(folds):
        train = [i for i in range(n) if fold[i] != k]
        test = [i for i in range(n) if fold[i] == k]
        fit = problem.solve(train, x_full, max(8, max_evaluations // 2))
        sims = problem.simulate(fit.x, test)
        for m, e in _rel_errors([problem.rows[i] for i in test], sims):
            by_family.setdefault(METRIC_FAMILY[m], []).append(e)
    return {fam: _stats(errs) for fam, errs in sorted(by_family.items())}


def _row_ranges(numbers: Sequence[int]) -> str:
    """1, 2, 3, 5 → '1-3, 5'."""
    out, s = [], sorted(numbers)
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[j] + 1:
            j += 1
        out.append(f"{s[i]}" if i == j else f"{s[i]}-{s[j]}")
        i = j + 1
    return ", ".join(out)


def _validity(rows: Sequence[BenchmarkRow]) -> dict[str, float]:
    v: dict[str, float] = {}
    for name, vals in (("input_tokens", [r.input_tokens for r in rows]), ("output_tokens", [r.output_tokens for r in rows]),
                       ("concurrency", [r.concurrency for r in rows if r.concurrency is not None]),
                       ("request_rate", [r.request_rate for r in rows if r.request_rate is not None])):
        if vals:
            v[f"{name}_min"], v[f"{name}_max"] = float(min(vals)), float(max(vals))  # type: ignore[type-var]
    return v


def _table(rows: Sequence[RowFit], by_row: Mapping[int, BenchmarkRow]) -> pa.Table:
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


def _check_configuration(path: Path, rows: Sequence[BenchmarkRow], engine: dict[str, Any], seed: int) -> None:
    """Refuse what the simulator cannot re-enact (weights that do not fit, requests larger than the
    KV cache), naming the first row concerned."""
    from sim.config import load_scenario
    from sim.errors import ScenarioError

    first = rows[0]
    # The configuration alone (a one-token workload): each row's lengths are checked below.
    tiny = BenchmarkRow(first.row, *first.configuration, input_tokens=1, output_tokens=1, concurrency=1,
                        request_rate=None, num_requests=1, metrics={})
    try:
        s = load_scenario({**_scenario_data(tiny, 1, "", seed, engine), "profile": {"kind": "roofline"}})
    except ScenarioError as e:
        raise row_error(path, f"row {first.row}, column 'tp'", str(e)) from None
    block = s.engine.block_size
    for r in rows:
        need = -(-(r.input_tokens + r.output_tokens - 1) // block) * block
        if need > s.kv_capacity_tokens:
            raise row_error(path, f"row {r.row}, column 'input_tokens'",
                            f"a request of {r.input_tokens} + {r.output_tokens} tokens needs {need} KV tokens but "
                            f"{r.model} ({r.quantization}) on {r.hardware} at tp = {r.tp} holds {s.kv_capacity_tokens}")


def _fit_configuration(path: Path, rows: list[BenchmarkRow], *, seed: int, engine: dict[str, Any],
                       max_requests: int, iteration_budget: int, cv_folds: int, max_evaluations: int,
                       executor: Executor | None, progress: Progress | None,
                       keep_poor_fit: bool = False) -> BenchmarkFit:
    model, quant, hardware, tp = rows[0].configuration
    label = f"{model}/{quant}/{hardware}/tp{tp}"
    base = build_profile(RooflineProfileSpec(), model=model, hardware=hardware, quantization=quant, tp=tp)
    start = coefficients_from_roofline(base)  # type: ignore[arg-type]
    mnbt = int(engine.get("max_num_batched_tokens", 8192))
    plans = {r.row: simulation_plan(r, start, max_requests=max_requests, iteration_budget=iteration_budget,
                                     max_num_batched_tokens=mnbt) for r in rows}
    problem = _Problem(rows, start, plans, seed, engine, executor, progress, label)
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
               f"{_show(worst_metric, worst_row.measured[worst_metric])}, fitted "
               f"{_show(worst_metric, worst_row.fitted[worst_metric])})")
    poor = median > POOR_FIT_MEDIAN
    if poor and not keep_poor_fit:
        raise row_error(path, label, f"poor fit, refused: {figures}, above the {POOR_FIT_MEDIAN:.0%} a profile may have; "
                        "the simulator cannot re-enact these rows with one step-time model (check their units, "
                        "configuration and engine settings), or pass --keep-poor-fit to write the profile labelled poor")

    # How well the rows separate the factors: the spread of each log-factor if every measured
    # value carried 1% of independent noise, from the Jacobian at the fit (collinear columns,
    # e.g. overhead against memory when every row is decode-bound, make it large).
    jac = problem.jacobian(x, every)[:-len(FACTOR_GROUPS)]
    info = jac.T @ jac + PRIOR_WEIGHT ** 2 * np.eye(len(FACTOR_GROUPS))
    spread = 0.01 * np.sqrt(np.clip(np.diag(np.linalg.inv(info)), 0, None))
    uncertainty = {k: float(math.expm1(v)) for k, v in zip(FACTOR_GROUPS, spread)}
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
        notes.append(f"{'rows' if len(capped) > 1 else 'row'} {_row_ranges(capped)} simulate"
                     f"{'' if len(capped) > 1 else 's'} fewer requests than measured (warm-up and drain once, "
                     "steady state weighted up)")

    heldout: dict[str, dict[str, float]] = {}
    folds = min(cv_folds, len(rows))
    if folds >= 2 and len(rows) >= 4:
        try:
            heldout = _cross_validate(problem, x, folds, seed, max_evaluations)
        except ValueError as e:
            raise row_error(path, label, str(e)) from None
    elif cv_folds:
        notes.append(f"{len(rows)} row(s): too few to cross-validate (needs 4), so no held-out error is reported")

    used = _row_ranges([r.row for r in rows])
    source = (f"fitted by inverse simulation to serving benchmarks {path} (rows {used}): compute "
              f"×{factors['compute']:.3g}, memory ×{factors['memory']:.3g}, overhead ×{factors['overhead']:.3g} "
              f"against the roofline of {label}; in-sample error median {float(np.median(errs)):.1%}, "
              f"max {float(errs.max()):.1%}")
    meta = {"method": "inverse simulation", "benchmarks": str(path), "rows": used, "seed": seed,
            "factors": factors, "factor_uncertainty_per_1pct_noise": uncertainty, "roofline_coefficients": start,
            "fit_error": _stats(errs), "simulations": problem.evaluations, "cv_folds": folds if heldout else 0,
            "engine": engine, "notes": notes, "quality": "poor" if poor else "good"}
    if poor:
        meta["quality_note"] = f"{figures}, above {POOR_FIT_MEDIAN:.0%}"
    record = _record(rows[0], coef, validity=_validity(rows), heldout_error=heldout, source=source, meta=meta)
    return BenchmarkFit(configuration=(model, quant, hardware, tp), coefficients=coef, roofline_coefficients=start,
                        factors=factors, uncertainty=uncertainty, rows=tuple(fits), median_error=median,
                        max_error=float(errs.max()), heldout_error=heldout, evaluations=problem.evaluations,
                        record=record, table=_table(fits, {r.row: r for r in rows}), notes=tuple(notes),
                        quality="poor" if poor else "good")


def fit_from_benchmarks(path: str | Path, *, seed: int = 0, progress: Progress | None = None, engine: Any = None,
                        max_requests: int = 400, iteration_budget: int = 4000, cv_folds: int = 5,
                        max_evaluations: int = 60, executor: Executor | None = None,
                        keep_poor_fit: bool = False) -> list[BenchmarkFit]:
    """Fit one profile per (model, quantization, hardware, tp) configuration in the benchmark CSV
    at ``path`` (see :func:`read_benchmarks`), in the order configurations first appear.

    ``seed``: the Poisson arrivals of rate rows and the cross-validation folds (the same seed gives
    the same fit). ``progress``: called with a one-line status after each simulation of the rows.
    ``engine``: the server's batching settings during the benchmark (:class:`~sim.config.EngineSpec`
    or a mapping; vLLM's defaults when None). ``max_requests``/``iteration_budget``: the bound on
    simulated requests per row (:func:`simulation_plan`). ``cv_folds``: k of the k-fold
    cross-validation that scores the held-out error (0: skip; needs 4 rows). ``max_evaluations``:
    per fit, the optimiser's budget of simulations of all rows. ``executor``: simulate a
    candidate's rows in parallel (e.g. a ``ProcessPoolExecutor``). ``keep_poor_fit``: return a fit
    whose median error is above :data:`POOR_FIT_MEDIAN` labelled poor (``quality``, and
    ``meta["quality"]`` of its record) instead of refusing it.

    Raises ValueError with one line (file, row, column) for a CSV or configuration it cannot use,
    for a row :func:`check_benchmarks` refuses (before any fitting), and for a poor fit (with its
    median and max error and the worst row) unless ``keep_poor_fit``.
    """
    p = Path(path)
    eng = _engine_dict(engine)
    if eng:
        from pydantic import ValidationError

        from sim.config import EngineSpec
        from sim.errors import format_validation_error

        try:
            eng = EngineSpec.model_validate(eng).model_dump(mode="json", exclude_none=True)
        except ValidationError as e:
            raise ValueError("engine: " + format_validation_error(e, EngineSpec)) from None
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


# -- showing -------------------------------------------------------------------------------------

def _show(metric: str, v: float) -> str:
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
                          m, _show(m, v), _show(m, r.fitted[m]), f"{r.error[m]:+.1%}"))
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    right = {0, 3, 5, 6, 7}
    for row in table:
        lines.append("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     .rstrip())
    lines.append("simulated: requests per simulated run / requests measured (×k: k arrival streams averaged)")
    for r in fit.rows:
        if r.note:
            lines.append(f"row {r.row}: {r.note}")
    lines.extend(f"note: {n}" for n in fit.notes)
    return "\n".join(lines)
