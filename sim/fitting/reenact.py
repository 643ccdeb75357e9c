"""Re-enacting a serving benchmark: one measured run of a real server as a simulated run, and the
metrics its benchmark client would have reported of it.

The fit (:mod:`sim.fitting.benchmark_fit`) compares simulated metrics with measured ones, so a
row must be simulated as the run the client made, and its metrics computed as the client computes
them; any difference in either would be fitted into the step-time coefficients. This module is
that re-enactment, for one row and one set of coefficients; it knows nothing of fitting.

How a run is re-enacted (the semantics of vLLM's benchmark client):
- ``concurrency`` C: a closed loop of C users with no think time; the first C requests are sent
  at once, and each later one when an earlier one ends (``--max-concurrency C`` with
  ``--request-rate inf``). ``request_rate`` λ: Poisson arrivals whose gaps are rescaled so that
  the n-th request is sent at exactly n/λ, as vLLM's client does; ``request_rate`` inf: every
  request at once, a closed loop of ``num_requests`` users (:attr:`BenchmarkRow.users`).
- The engine the row's columns name (``engine`` preset, batch limits, KV memory fraction,
  admission, ``kv_cache_dtype``); the caller's engine only for a row that names none.
- Fixed ``input_tokens`` and ``output_tokens`` per request (the row's means for a dataset whose
  lengths vary).
- Metrics as the client computes them, by :func:`sim.results.benchmark.client_metrics` (the
  definitions of the summary's ``benchmark`` block): TTFT per request; TPOT per request as
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
- Every simulation of a row draws the *same* requests (a fixed seed per row and arrival stream:
  common random numbers), so its metrics are a deterministic function of the coefficients. An
  open-loop run still jumps a little when a changed step time moves an iteration's end across an
  arrival; several arrival streams are averaged for such rows (:func:`simulation_plan`).
- A row is simulated with any profile a scenario accepts (:func:`simulate_row`: ``{kind: auto}``,
  ``{kind: roofline, ...}``, ``{kind: measured, path: ...}``) under any engine section; that is
  how ``capsim validate --benchmarks`` checks a profile against measurements. A fit's candidate
  coefficients (:func:`simulate_benchmark`) reach the engine the same way, through the scenario:
  their record is written to a temporary profile file that ``profile: {kind: measured, path: ...}``
  names (a few milliseconds per run; worker processes of an executor write their own).

Limits, said where they apply: one replica per benchmark (the server the client talked to); no
prefix caching between requests (the benchmark tools' random prompts share none); and an open-loop
row near saturation, where the batch keeps growing over a long run, is only approximated by a
capped run (a note says when the simulated run is plainly overloaded; simulate it whole then).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pyarrow as pa

from calibration.catalog import MODELS
from calibration.measured import COEFFICIENTS, ProfileRecord, coefficients_from_roofline, profile_name, seconds_of
from sim.fitting.benchmark_csv import BenchmarkRow
from sim.results.benchmark import client_metrics

if TYPE_CHECKING:
    from sim.config import Scenario

__all__ = ["SimulationTask", "benchmark_metrics", "benchmark_requests", "engine_dict", "engine_settings",
           "kv_shortfall", "profile_record", "roofline_coefficients", "row_scenario", "run_scenario",
           "run_simulation_task", "scenario_data", "simulate_benchmark", "simulate_row", "simulation_plan"]

# Share of a capped run's requests at each end (warm-up, drain) that count once, unweighted.
_WARMUP_SHARE = 0.1


def engine_dict(engine: Any) -> dict[str, Any]:
    """The server's batching settings as a scenario's ``engine`` mapping: an
    :class:`~sim.config.EngineSpec` dumped (without its unset fields), a mapping copied, None as
    empty (the engine's defaults)."""
    if engine is None:
        return {}
    if hasattr(engine, "model_dump"):
        return engine.model_dump(mode="json", exclude_none=True)
    return dict(engine)


def engine_settings(engine: Any) -> dict[str, Any]:
    """The engine section every row of a benchmark is simulated under, validated once and expanded
    (a ``preset`` into its settings), so that a bad one is refused before the first simulation:
    ValueError with one line (``engine: preset = 'x': unknown engine preset...``)."""
    eng = engine_dict(engine)
    if not eng:
        return eng
    from pydantic import ValidationError

    from sim.config import EngineSpec
    from sim.errors import format_validation_error

    try:
        return EngineSpec.model_validate(eng).model_dump(mode="json", exclude_none=True)
    except ValidationError as e:
        raise ValueError("engine: " + format_validation_error(e, EngineSpec)) from None


def roofline_coefficients(row: BenchmarkRow) -> dict[str, float]:
    """The datasheet roofline of ``row``'s configuration in the step formula's terms: where a fit
    starts, and what :func:`simulation_plan` sizes every simulation of the row by (so a fit and a
    validation simulate the same requests, whatever profile prices them)."""
    from calibration.spec import RooflineProfileSpec, build_profile

    base = build_profile(RooflineProfileSpec(), model=row.model, hardware=row.hardware, quantization=row.quantization,
                         tp=row.tp)
    return coefficients_from_roofline(base)  # type: ignore[arg-type]


def profile_record(row: BenchmarkRow, coefficients: Mapping[str, float], **kw: Any) -> ProfileRecord:
    """The profile record of ``row``'s configuration with step-time ``coefficients``: by default a
    candidate's, which the engine reads during a fit; ``kind``, ``validity``, ``heldout_error``,
    ``source`` and ``meta`` in ``kw`` make it the fit's own."""
    return ProfileRecord(model=row.model, quantization=row.quantization, hardware=row.hardware, tp=row.tp,
                         kind=kw.pop("kind", "derived-from-measured"),
                         coefficients={k: float(coefficients[k]) for k in COEFFICIENTS},
                         layers=MODELS[row.model].layers, validity=kw.pop("validity", {}),
                         heldout_error=kw.pop("heldout_error", {}),
                         source=kw.pop("source", "candidate of a benchmark fit"),
                         meta=kw.pop("meta", {}))


def scenario_data(row: BenchmarkRow, n: int, profile: Mapping[str, Any], seed: int,
                  engine: dict[str, Any]) -> dict[str, Any]:
    """The scenario (as data for :func:`sim.config.load_scenario`) of ``n`` requests of ``row`` on
    one replica priced by ``profile`` (a scenario's profile section); the requests themselves are
    sent by :func:`benchmark_requests`, the workload here only sizes and names them."""
    arrival: dict[str, Any] = ({"process": "closed_loop", "users": row.users} if row.users is not None
                               else {"process": "poisson", "rate_per_s": row.request_rate})
    # The engine that produced the row, where its columns say (preset and settings): the caller's
    # ``engine`` stands in only for a row that names none.
    engine = dict(row.engine_settings) if row.engine_settings else engine
    data = {
        "name": f"benchmark row {row.row}", "seed": seed, "model": row.model, "quantization": row.quantization,
        "hardware": row.hardware, "tp": row.tp, "profile": dict(profile),
        "engine": engine,
        "workload": {"arrival": arrival, "num_requests": n,
                     "classes": [{"name": "bench", "prompt_tokens": {"dist": "fixed", "value": row.input_tokens},
                                  "output_tokens": {"dist": "fixed", "value": row.output_tokens}}]},
    }
    if row.kv_cache_dtype is not None:
        data["kv_cache_dtype"] = row.kv_cache_dtype
    return data


def benchmark_requests(row: BenchmarkRow, n: int, seed: int, replicate: int = 0) -> pa.Table:
    """The RequestTable that re-enacts ``n`` requests of ``row`` the way vLLM's client sends them:
    a closed loop (request k sent when request k − C ends; the first C at time 0), or Poisson gaps
    rescaled so that request n is sent at exactly n/λ (drawn from (seed, row, replicate))."""
    k = np.arange(n, dtype=np.int64)
    if row.users is not None:
        c = row.users
        arrival = np.where(k < c, 0.0, np.nan)
        after = np.where(k < c, -1, k - c)
    else:
        assert row.request_rate is not None
        gaps = np.random.default_rng(np.random.SeedSequence([seed, row.row, replicate])).exponential(1.0, n)
        arrival = np.cumsum(gaps) * (n / row.request_rate / gaps.sum())
        after = np.full(n, -1, np.int64)
    return pa.table({
        "request_id": k, "arrival_s": arrival,
        "prompt_tokens": np.full(n, row.input_tokens, np.int64),
        "output_tokens": np.full(n, row.output_tokens, np.int64),
        "class": pa.array(["bench"] * n, pa.string()), "after_id": after, "think_s": np.zeros(n),
    })


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
        if row.users is not None:
            # The first round of users starts together (warm-up) and the last ends alone (drain).
            edge = max(edge, row.users)
        lo, hi = edge, n - edge
        if hi - lo < 2:
            lo, hi = 0, n
        w[lo:hi] += (total - n) / (hi - lo)
        if row.users is not None:
            # Closed loop without think time: C requests always in flight, so by Little's law the
            # steady time per request is the mean latency over C.
            per_request = float(e2e[lo:hi].mean()) / row.users
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
    m = client_metrics(ttft, e2e, out, makespan, weights=w, qs=(50, 99))
    res: dict[str, Any] = {"output_tokens_per_s": m["output_tokens_per_s"], "requests_per_s": m["requests_per_s"]}
    for name in ("ttft", "tpot", "itl"):
        res.update({f"{name}_{stat}_s": v for stat, v in m[name].items() if v is not None})
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
    if row.users is not None:
        in_flight, floor = float(row.users), max(3 * row.users, 10)
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
    if row.users is not None:
        if n < total:  # whole rounds of users, so that the last round is not a partial one
            n = max(floor, n // row.users * row.users)
        return n, 1
    runs = min(8, math.ceil(open_loop_requests / n), int(iteration_budget // (n * per_request)))
    return n, max(1, runs)


def row_scenario(row: BenchmarkRow, n: int, profile: Mapping[str, Any], seed: int, engine: Any = None) -> Scenario:
    """The validated scenario that re-enacts ``n`` requests of ``row`` priced by ``profile`` (a
    scenario's profile section) under ``engine``; a configuration it cannot take (weights that do
    not fit, no measured profile for it) raises :class:`sim.errors.ScenarioError` in one line."""
    from sim.config import load_scenario

    return load_scenario(scenario_data(row, n, profile, seed, engine_dict(engine)))


def kv_shortfall(row: BenchmarkRow, scenario: Scenario) -> str | None:
    """Why one request of ``row`` cannot run in ``scenario``'s KV cache (its whole sequence, in
    whole blocks, is more than the cache holds), or None when it fits."""
    block = scenario.engine.block_size
    need = -(-(row.input_tokens + row.output_tokens - 1) // block) * block
    if need <= scenario.kv_capacity_tokens:
        return None
    return (f"a request of {row.input_tokens} + {row.output_tokens} tokens needs {need} KV tokens but {row.model} "
            f"({row.quantization}) on {row.hardware} at tp = {row.tp} holds {scenario.kv_capacity_tokens}")


def run_scenario(row: BenchmarkRow, scenario: Scenario, n: int, *, seed: int = 0, streams: int = 1) -> dict[str, Any]:
    """The benchmark metrics of ``row`` re-enacted in ``scenario`` (made by :func:`row_scenario`
    with the same ``n``): one run for a closed loop, the mean over ``streams`` arrival streams for
    a rate (``"note"``: the first run's that has one)."""
    from sim.engine import simulate

    runs = []
    for k in range(streams if row.request_rate is not None else 1):
        result = simulate(scenario, requests=benchmark_requests(row, n, seed, k))
        runs.append(benchmark_metrics(result.requests, row))
    if len(runs) == 1:
        return runs[0]
    out: dict[str, Any] = {m: float(np.mean([r[m] for r in runs])) for m in runs[0] if m != "note"}
    out["note"] = next((r["note"] for r in runs if r["note"]), None)
    return out


def simulate_row(row: BenchmarkRow, profile: Mapping[str, Any], *, seed: int = 0, engine: Any = None,
                 requests: int | None = None, streams: int = 1) -> dict[str, Any]:
    """Simulate the run ``row`` describes priced by ``profile``, any profile section a scenario
    accepts (``{"kind": "auto"}``, ``{"kind": "roofline", ...}``, ``{"kind": "measured", "path":
    ...}``), and return its benchmark metrics (all of
    :data:`~sim.fitting.benchmark_csv.BENCHMARK_METRICS`, plus ``"note"``).

    ``requests``: how many to simulate (default ``row.num_requests``; see :func:`benchmark_metrics`
    for fewer). ``streams``: for a rate, the metrics are the mean over this many independent
    arrival streams (see :func:`simulation_plan`). ``engine``: the server's engine section (an
    :class:`~sim.config.EngineSpec` or a mapping, a ``preset`` among its keys; capsim's defaults,
    vLLM-like, when None). The same (row, seed, requests, streams) always sends the same requests.
    """
    n = row.num_requests if requests is None else int(requests)
    return run_scenario(row, row_scenario(row, n, profile, seed, engine), n, seed=seed, streams=streams)


def simulate_benchmark(row: BenchmarkRow, coefficients: Mapping[str, float], *, seed: int = 0,
                       engine: Any = None, requests: int | None = None, streams: int = 1) -> dict[str, Any]:
    """:func:`simulate_row` with a profile of step-time ``coefficients`` (per
    :data:`calibration.measured.COEFFICIENTS`): a fit's candidate, filed for the run in a
    temporary profile file, since the engine takes its profile only from the scenario."""
    with tempfile.TemporaryDirectory(prefix="capsim-bench-") as tmp:
        js = Path(tmp) / f"{profile_name(row.model, row.quantization, row.hardware, row.tp)}.json"
        js.write_text(profile_record(row, coefficients).to_json())
        return simulate_row(row, {"kind": "measured", "path": str(js)}, seed=seed, engine=engine, requests=requests,
                            streams=streams)


@dataclass(frozen=True)
class SimulationTask:
    """One row at one candidate: everything a worker process needs to simulate it (picklable, so
    that an executor's processes can be sent it)."""

    row: BenchmarkRow
    coefficients: dict[str, float]
    requests: int
    streams: int
    seed: int
    engine: dict[str, Any]


def run_simulation_task(task: SimulationTask) -> dict[str, Any]:
    """The benchmark metrics of ``task`` (:func:`simulate_benchmark`): a module-level function, so
    that an executor can send it to its worker processes."""
    return simulate_benchmark(task.row, task.coefficients, seed=task.seed, engine=task.engine, requests=task.requests,
                              streams=task.streams)
