"""Load curves: one configuration under offered load from light to past saturation.

:func:`load_curve` simulates a scenario at a range of arrival rates, several seeds each, and
finds two things on the way:

*Saturation.* A run is saturated when its summary says it is overloaded (``load.overloaded``,
the rule in :mod:`sim.results.records`: over the measured window, departures fall more than 5% short of
arrivals and the backlog grows by 10 requests or more, i.e. a queue that grows without bound,
and so does the admission queue), or that its load is undetermined (``load.verdict``: the backlog
grew so but all in service, as a batch filling from empty does; too short a run to tell, so
counted as saturated: a curve never rests on it).
A saturated point keeps its throughput, goodput, cost and waste (what the configuration delivers
when it cannot keep up), but its latency statistics are reported as missing (null), never as the
numbers of an unfinished run, which only say how long the run was. The curve reports
``saturation_rate_per_s``, the *knee*: the highest grid rate at which neither it nor any lower
grid rate saturated in any seed; and ``capacity_per_s``, the mean departure rate of the
saturated grid runs (what the configuration serves flat out). The rule tolerates a 5% shortfall,
so a load up to about 5% above the capacity may not read as saturated over a finite run.

*The highest rate that meets the SLOs.* A run meets the targets when :func:`sim.analysis.slo.meets` says
so (not saturated, every targeted statistic at or below its limit). For each seed separately,
the lowest grid rate that fails brackets the answer with the grid rate below it (which passes,
or 0 when the lowest grid rate fails); the bracket is then bisected, a simulation at its
midpoint per step, until its width is at most ``rel_tol`` of its upper end. The seed's answer is
the bracket's lower end: the highest rate simulated and seen to meet the targets (at most
``rel_tol`` below the crossing). A bracket from 0 is halved at most four times, down to 1/16 of
the lowest grid rate; if nothing passes there, the seed's answer is 0 and a note says so. A
seed that meets the targets at every rate tried (possible with ``rates`` given) answers with the
highest rate, flagged as a lower bound (:attr:`MaxRate.at_least`). The curve reports the mean
over seeds, with the minimum and maximum as its spread. With no targets at all, meeting means
not saturating, so the answer is the saturation knee refined by the same bisection.

The automatic range: a *probe* releases a burst of requests at once (every one queued at the
start; no SLO, no warm-up) and divides the requests completed by the time the last finished,
an estimate ``c`` of the saturated capacity in requests/s (a little low: the burst's drain, when
the batch empties, counts too). The grid is ``c`` times :data:`GRID_FRACTIONS` (10% to 130%,
denser from 70% to 115% where the knee lies). If its highest rate does not saturate in every
seed, rates 1.4 times higher are added, at most :data:`MAX_EXTENSIONS` times.

Every point is one :func:`sim.engine.simulate` call with ``records="summary"`` on a scenario
built here (:func:`with_rate`, the seed replaced) and handed to the worker as plain data, so
points run on any ``concurrent.futures.Executor`` (:mod:`sim.analysis.executor`). Seed ``k`` of
``seeds`` is the scenario's seed plus ``k``; under a renewal process the same seed at two rates
draws the same requests with the arrival gaps scaled (common random numbers), so that a seed's
curve is smooth in rate and its bisection well posed.

*Waste at each point.* Under-filled and over-provisioned GPU-seconds (:mod:`sim.results.waste`) need a
reference, what one replica delivers at the highest rate under the SLOs (:class:`Reference`);
once the curve has found it, every point's waste is priced against it, from the per-window sums
its run's summary carried.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pyarrow as pa

from sim.config import Scenario, load_scenario
from sim.errors import ScenarioError
from sim.analysis.executor import ProgressFn, local_executor, map_points
from sim.analysis.slo import METRICS, SLOTarget, check_classes, default_slos, meets, parse_slo

__all__ = ["COST_COLUMNS", "CurveError", "GRID_FRACTIONS", "LoadCurve", "MAX_EXTENSIONS", "MaxRate", "POINT_SCHEMA",
           "Reference", "WASTE_PARTS", "load_curve", "point_row", "probe_scenario", "with_rate"]

GRID_FRACTIONS = (0.1, 0.25, 0.4, 0.55, 0.7, 0.8, 0.87, 0.93, 1.0, 1.07, 1.15, 1.3)
"""The automatic grid as fractions of the probe's capacity estimate (see the module docstring)."""
MAX_EXTENSIONS = 4
"""Most times the automatic grid is extended upward (by a factor 1.4) to reach saturation."""
_EXTEND = 1.4
_MAX_BISECTION_STEPS = 30  # a guard: brackets close long before (rel_tol > 0, and the floor below)
_ZERO_HALVINGS = 4  # when even the lowest grid rate fails: halve it down to 1/16 of it before giving up
_PROBE_RATE = 1e9  # requests/s: the probe's requests all arrive within a few nanoseconds of 0
_PROBE_MIN, _PROBE_MAX, _PROBE_PER_SLOT = 200, 5000, 8  # probe requests: 8 per batch slot, clamped

_LATENCY_STATS = ("p50", "p90", "p95", "p99", "mean")
COST_COLUMNS = ("usd_per_hour", "usd_per_request", "usd_per_million_output_tokens", "usd_per_million_total_tokens",
                "usd_per_million_good_output_tokens", "wh_per_1000_output_tokens")
"""Columns taken from the summary's ``cost`` block (null when the summary has none)."""
WASTE_PARTS = ("useful", "idle", "under_filled", "recompute", "over_provisioned")
"""Parts of provisioned GPU-seconds (``waste.gpu_s`` in a summary; :mod:`sim.results.waste`), as columns
``waste_<part>_gpu_s``, beside ``waste_provisioned_gpu_s``, their sum."""

POINT_SCHEMA = pa.schema(
    [("rate_per_s", pa.float64()), ("seed", pa.int64()), ("saturated", pa.bool_()), ("meets_slo", pa.bool_()),
     ("slo_failures", pa.string()), ("arrival_rate_per_s", pa.float64()), ("departure_rate_per_s", pa.float64()),
     ("output_tokens_per_s", pa.float64()), ("total_tokens_per_s", pa.float64()), ("requests_per_s", pa.float64()),
     ("goodput_requests_per_s", pa.float64()), ("slo_attainment", pa.float64()), ("busy_fraction", pa.float64()),
     ("completed", pa.int64()), ("measured", pa.int64())]
    + [(f"{m}_{st}_s", pa.float64()) for m in METRICS for st in _LATENCY_STATS]
    + [(c, pa.float64()) for c in COST_COLUMNS]
    + [(f"waste_{p}_gpu_s", pa.float64()) for p in (*WASTE_PARTS, "provisioned")])
"""One row per simulated (rate, seed): the columns of :attr:`LoadCurve.points` and ``curve.parquet``.
Latency columns are null for a saturated point; cost and waste columns are null when the
summary has no ``cost`` or ``waste`` block."""


class CurveError(ValueError):
    """A load curve that cannot be made as asked (one line, naming what and why)."""


# ---------------------------------------------------------------------------------------------
# The offered load


def with_rate(scenario: Scenario, rate_per_s: float) -> Scenario:
    """``scenario`` with its arrival process set to a mean of ``rate_per_s`` requests/s
    (conversation starts, for classes with sessions), everything else unchanged.

    A renewal process (Poisson, Gamma, Weibull) gets that constant rate, any ``rate_profile``
    dropped (its burstiness, the CV, is kept). A Markov-modulated process keeps its regimes and
    their durations, every state's rate scaled by the same factor so that the long-run mean is
    ``rate_per_s``. A trace replay or a closed loop has no rate to set: CurveError.
    """
    if not (isinstance(rate_per_s, (int, float)) and math.isfinite(rate_per_s) and rate_per_s > 0):
        raise CurveError(f"rate {rate_per_s!r}: must be a finite number of requests/s > 0")
    arrival = scenario.workload.arrival
    process = arrival.process
    data = scenario.to_dict()
    spec = data["workload"]["arrival"]
    if process in ("poisson", "gamma", "weibull"):
        # None, not absent: a preset's rate_profile would otherwise come back when merged.
        spec.update(rate_per_s=float(rate_per_s), rate_profile=None)
    elif process == "mmpp":
        scale = rate_per_s / arrival.mean_rate_per_s
        spec["states"] = [{**st, "rate_per_s": st["rate_per_s"] * scale} for st in spec["states"]]
    else:
        what = "a closed loop (users in flight set the load)" if process == "closed_loop" else "a trace replay"
        raise CurveError(f"workload.arrival.process = {process!r} is {what}: a load curve needs an arrival "
                         "process with a rate (poisson, gamma, weibull or mmpp)")
    try:
        return load_scenario(data)
    except ScenarioError as e:
        raise CurveError(f"at {rate_per_s:.4g} requests/s: {e}") from None


def _with_seed(scenario: Scenario, seed: int) -> dict[str, Any]:
    """The scenario as plain data, with its seed replaced (what a worker is given)."""
    return {**scenario.to_dict(), "seed": int(seed)}


def probe_scenario(scenario: Scenario) -> Scenario:
    """The capacity probe: the scenario's classes, engine and fleet, with a burst of requests
    (8 per batch slot of the fleet, 200 to 5000) all arriving at once."""
    n = min(max(_PROBE_PER_SLOT * scenario.engine.max_num_seqs * scenario.replicas, _PROBE_MIN), _PROBE_MAX)
    data = scenario.to_dict()
    data["workload"]["arrival"] = {"process": "poisson", "rate_per_s": _PROBE_RATE}
    data["workload"].update(num_requests=n, duration_s=None)  # None: a preset's duration does not come back
    data["measurement"] = {k: v for k, v in data.get("measurement", {}).items() if k == "horizon_s"}
    return load_scenario(data)


# ---------------------------------------------------------------------------------------------
# One point


def _waste_columns(row: dict[str, Any], waste: dict[str, Any]) -> None:
    """Set the row's ``waste_<part>_gpu_s`` columns from a waste block (:func:`sim.results.waste.waste_of`;
    a part without a reference is None)."""
    for p in (*WASTE_PARTS, "provisioned"):
        v = waste["gpu_s"][p]
        row[f"waste_{p}_gpu_s"] = None if v is None else float(v)


def point_row(summary: dict[str, Any], rate_per_s: float, seed: int, targets: Sequence[SLOTarget]) -> dict[str, Any]:
    """One row of :data:`POINT_SCHEMA` from a run's summary. Latency statistics of a saturated
    run are null (see the module docstring); cost and waste come from its cost and waste blocks."""
    ok, reasons = meets(summary, targets)
    load, thr = summary["load"], summary["throughput"]
    saturated = bool(load["overloaded"]) or load.get("verdict") == "undetermined"
    row: dict[str, Any] = {
        "rate_per_s": float(rate_per_s), "seed": int(seed), "saturated": saturated, "meets_slo": ok,
        "slo_failures": "; ".join(reasons) or None,
        "arrival_rate_per_s": load["arrival_rate_per_s"], "departure_rate_per_s": load["departure_rate_per_s"],
        "output_tokens_per_s": thr["output_tokens_per_s"], "total_tokens_per_s": thr["total_tokens_per_s"],
        "requests_per_s": thr["requests_per_s"], "goodput_requests_per_s": summary["goodput_requests_per_s"],
        "slo_attainment": summary["slo_attainment"], "busy_fraction": summary["busy_fraction"]["mean"],
        "completed": summary["requests"]["completed"], "measured": summary["requests"]["measured"],
    }
    for m in METRICS:
        block = summary["latency_s"][m]
        for st in _LATENCY_STATS:
            row[f"{m}_{st}_s"] = None if saturated else block.get(st)
    cost = summary["cost"]
    for c in COST_COLUMNS:
        row[c] = None if cost[c] is None else float(cost[c])  # None: nothing to divide by (no tokens, say)
    _waste_columns(row, summary["waste"])
    return row


def _simulate_point(task: tuple[dict[str, Any], float, int, tuple[SLOTarget, ...]]) -> dict[str, Any]:
    """Run one point in a worker: (scenario data, rate, seed, targets) -> its row, with what the
    waste needs besides (the summary's ``windows`` and total dollars) under ``_waste_inputs``,
    so that the parent can price the waste against the curve's own reference once it is known.
    Top-level so that it pickles for a process pool or a cluster."""
    from sim.engine import simulate

    data, rate, seed, targets = task
    summary = simulate(Scenario.model_validate(data), records="summary").summary
    row = point_row(summary, rate, seed, targets)
    row["_waste_inputs"] = {"windows": summary["windows"], "cost": {"total_usd": summary["cost"]["total_usd"]}}
    return row


def _rewaste(rows: list[dict[str, Any]], scenario: Scenario, reference: Reference | None) -> bool:
    """Replace the waste columns of ``rows`` by the waste against ``reference`` (per replica);
    drop the rows' inputs. True if it did (there is a reference)."""
    from sim.results.waste import WasteReference, waste_of

    inputs = [row.pop("_waste_inputs", None) for row in rows]
    if reference is None or not (reference.rate_per_s > 0 and reference.output_tokens_per_s > 0):
        return False
    ref = WasteReference(rate_per_s=reference.rate_per_s, output_tokens_per_s=reference.output_tokens_per_s,
                         source="the configuration's load curve: the highest rate meeting the SLOs per replica, and "
                                "the output tokens/s there (mean over seeds)")
    done = False
    for row, given in zip(rows, inputs):
        if given is not None:
            _waste_columns(row, waste_of(given, scenario, ref))
            done = True
    return done


# ---------------------------------------------------------------------------------------------
# The result


@dataclass(frozen=True)
class MaxRate:
    """The highest arrival rate meeting the SLOs, over seeds (see the module docstring).

    ``per_seed`` maps each seed to its answer (0.0 when not even the lowest rate tried met the
    targets). ``at_least`` is True when some seed met them at every rate tried: its answer is
    then only a lower bound (possible with ``rates`` given; the automatic grid reaches saturation).
    """

    mean: float
    min: float
    max: float
    per_seed: dict[int, float]
    rel_tol: float
    at_least: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "min": self.min, "max": self.max,
                "per_seed": {str(k): v for k, v in self.per_seed.items()}, "rel_tol": self.rel_tol,
                "at_least": self.at_least}


@dataclass(frozen=True)
class Reference:
    """What one replica delivers at the highest rate under the SLOs: the reference of
    idle-capacity waste (*under-filled* is throughput below this). ``rate_per_s`` is
    :attr:`MaxRate.mean` divided by the scenario's replicas; ``output_tokens_per_s`` the mean,
    over seeds, of the output tokens/s of each seed's run at its own highest passing rate,
    divided by the replicas."""

    rate_per_s: float
    output_tokens_per_s: float
    replicas: int

    def as_dict(self) -> dict[str, Any]:
        return {"rate_per_s_per_replica": self.rate_per_s,
                "output_tokens_per_s_per_replica": self.output_tokens_per_s, "replicas": self.replicas}


@dataclass(frozen=True)
class LoadCurve:
    """A configuration's load curve (see the module docstring for every definition).

    ``points``: the grid runs, one row per (rate, seed), columns :data:`POINT_SCHEMA`, sorted by
    rate then seed. ``bisection``: the runs of the bisection, same columns, in the order run.
    ``provenance``: the profile's kind, the headline of its source, and its whole source.
    """

    scenario: Scenario
    slos: tuple[SLOTarget, ...]
    points: pa.Table
    bisection: pa.Table
    max_rate: MaxRate
    saturation_rate_per_s: float | None
    capacity_per_s: float | None
    probe_capacity_per_s: float | None
    reference: Reference | None
    provenance: dict[str, Any]
    seeds: tuple[int, ...]
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """Everything as plain JSON data (points and bisection runs as lists of rows)."""
        return {
            "scenario": self.scenario.to_dict(),
            "slos": [str(t) for t in self.slos],
            "seeds": list(self.seeds),
            "provenance": self.provenance,
            "max_rate_per_s": self.max_rate.as_dict(),
            "saturation_rate_per_s": self.saturation_rate_per_s,
            "capacity_per_s": self.capacity_per_s,
            "probe_capacity_per_s": self.probe_capacity_per_s,
            "reference": None if self.reference is None else self.reference.as_dict(),
            "notes": list(self.notes),
            "method": _METHOD,
            "points": self.points.to_pylist(),
            "bisection": self.bisection.to_pylist(),
        }

    def write(self, out_dir: str | os.PathLike) -> list[Path]:
        """Write ``curve.parquet`` (the points) and ``curve.json`` (:meth:`as_dict`) into
        ``out_dir`` (created if needed), each through a temporary name and ``os.replace``, so a
        crash never leaves half a file. Returns the paths written."""
        from sim.analysis.atomic import write_table_and_json

        return write_table_and_json(out_dir, "curve", self.points, self.as_dict())


_METHOD = {
    "saturation": "a run is saturated when its summary's load.overloaded is true (over the measured window, "
                  "departures fall more than 5% short of arrivals and the backlog and the admission queue grow "
                  "by 10 or more) or its load.verdict is undetermined (the backlog grew so, the admission queue "
                  "did not: too short a run to tell); its "
                  "latency statistics are null. saturation_rate_per_s: the highest grid rate at which neither it "
                  "nor any lower grid rate saturated in any seed. capacity_per_s: mean departure rate of the "
                  "saturated grid runs",
    "max_rate": "per seed, the lowest failing grid rate and the grid rate below it (0 if none) bracket the highest "
                "rate meeting the SLOs (not saturated, every target's statistic at or below its limit); the bracket "
                "is bisected until its width is at most rel_tol of its upper end (a bracket from 0: halved at most "
                "4 times, else 0); the seed's answer is its lower end (simulated and passing); mean, min and max "
                "over seeds",
    "grid": "automatic: a burst probe estimates capacity c (requests completed / time to finish them all); rates "
            f"c x ({', '.join(f'{f:g}' for f in GRID_FRACTIONS)}), extended by x{_EXTEND:g} until the top rate "
            f"saturates in every seed (at most {MAX_EXTENSIONS} times); or the rates given",
    "waste": "the waste columns of every point are computed (sim.results.waste) against the curve's own reference: per "
             "replica, the highest rate meeting the SLOs and the output tokens/s there",
}


# ---------------------------------------------------------------------------------------------
# The curve


def _targets(scenario: Scenario, slos: Iterable[SLOTarget | str] | None) -> tuple[SLOTarget, ...]:
    if slos is None:
        return tuple(default_slos(scenario))
    try:
        out = tuple(parse_slo(t) if isinstance(t, str) else t for t in slos)
    except ValueError as e:
        raise CurveError(str(e)) from None
    for t in out:
        if not isinstance(t, SLOTarget):
            raise CurveError(f"SLO {t!r}: give SLOTarget objects or text such as 'ttft_p99=1s'")
    try:
        check_classes(out, scenario)
    except ValueError as e:
        raise CurveError(str(e)) from None
    return out


def _checked_rates(rates: Iterable[float]) -> list[float]:
    out = []
    for r in rates:
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r <= 0:
            raise CurveError(f"rates: {r!r} is not a rate; every rate must be a finite number of requests/s > 0")
        out.append(float(r))
    if not out:
        raise CurveError("rates: empty; give at least one rate, or none for the automatic range")
    return sorted(set(out))


class _Runner:
    """Runs batches of (rate, seed) points through the executor, counting progress."""

    def __init__(self, scenario: Scenario, targets: tuple[SLOTarget, ...], executor: Executor,
                 progress: ProgressFn | None):
        self.scenario, self.targets, self.executor, self.progress = scenario, targets, executor, progress
        self.done, self.total = 0, 0

    def expect(self, n: int) -> None:
        """``n`` more points are coming (for the progress total)."""
        self.total += n

    def run(self, pairs: Sequence[tuple[float, int]]) -> list[dict[str, Any]]:
        """The rows of ``pairs`` (rate, seed), in order; each point's scenario built here."""
        by_rate = {r: with_rate(self.scenario, r) for r in dict.fromkeys(r for r, _ in pairs)}
        tasks = [(_with_seed(by_rate[r], s), r, s, self.targets) for r, s in pairs]
        base = self.done

        def tick(done: int, _total: int) -> None:
            self.done = base + done
            if self.progress is not None:
                self.progress(self.done, max(self.total, self.done))

        return list(map_points(_simulate_point, tasks, executor=self.executor, progress=tick))


def load_curve(scenario: Scenario, *, slos: Iterable[SLOTarget | str] | None = None,
               rates: Iterable[float] | None = None, seeds: int = 3, rel_tol: float = 0.01,
               executor: Executor | None = None, workers: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> LoadCurve:
    """The load curve of ``scenario`` (every definition in the module docstring).

    ``slos``: targets (:class:`SLOTarget` or text for :func:`sim.analysis.slo.parse_slo`); None takes
    the scenario's own (:func:`sim.analysis.slo.default_slos`); an empty list means none, and the highest
    rate is then the saturation knee. ``rates``: the grid in requests/s (None: automatic, from a
    capacity probe). ``seeds``: runs per rate, seeds ``scenario.seed + k``. ``rel_tol``: the
    bisection's relative tolerance. Points run on ``executor`` (None: a local pool of
    ``workers`` processes, every core by default, made and shut down here; 1: in this process).
    ``progress(done, total)`` is called as points finish; ``total`` grows as stages are planned.
    (A progress bar that runs its own thread: make the pool first, :func:`sim.analysis.executor.local_executor`,
    and pass it as ``executor``, so that its workers are forked before that thread starts.)

    Raises :class:`CurveError` (a ValueError, one line) for an arrival process without a rate,
    a target on an unknown class, a bad rate, seed count or tolerance.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise CurveError(f"seeds = {seeds!r}: must be a whole number >= 1")
    if not (isinstance(rel_tol, (int, float)) and 0 < rel_tol < 0.5):
        raise CurveError(f"rel_tol = {rel_tol!r}: must be a number in (0, 0.5)")
    targets = _targets(scenario, slos)
    with_rate(scenario, 1.0)  # refuses a process without a rate before anything runs
    given = _checked_rates(rates) if rates is not None else None
    seed_list = tuple(scenario.seed + k for k in range(seeds))
    ex = local_executor(workers) if executor is None else executor
    try:
        return _curve(scenario, targets, given, seed_list, rel_tol, _Runner(scenario, targets, ex, progress))
    finally:
        if executor is None:
            ex.shutdown(wait=True, cancel_futures=True)


def _curve(scenario: Scenario, targets: tuple[SLOTarget, ...], given: list[float] | None, seeds: tuple[int, ...],
           rel_tol: float, runner: _Runner) -> LoadCurve:
    notes: list[str] = []
    probe_capacity = None
    if given is None:
        runner.expect(1 + len(GRID_FRACTIONS) * len(seeds))
        probe_capacity = _probe_capacity(scenario, runner)
        grid = sorted({float(f"{probe_capacity * f:.4g}") for f in GRID_FRACTIONS})
    else:
        grid = given
        runner.expect(len(grid) * len(seeds))
    rows = runner.run([(r, s) for r in grid for s in seeds])
    if given is None:
        for _ in range(MAX_EXTENSIONS):
            top = [row for row in rows if row["rate_per_s"] == grid[-1]]
            if all(row["saturated"] for row in top):
                break
            grid.append(float(f"{grid[-1] * _EXTEND:.4g}"))
            runner.expect(len(seeds))
            rows += runner.run([(grid[-1], s) for s in seeds])
        else:
            if not all(row["saturated"] for row in rows if row["rate_per_s"] == grid[-1]):
                notes.append(f"the automatic range did not saturate every seed up to {grid[-1]:.4g} requests/s")
    max_rate, reference, bisection = _max_rate(scenario, rows, grid, seeds, rel_tol, runner, notes)
    _rewaste(rows + bisection, scenario, reference)
    rows.sort(key=lambda r: (r["rate_per_s"], r["seed"]))
    saturated = [r for r in rows if r["saturated"]]
    from sim.results.records import first_clause

    prov = scenario.build_profile().provenance
    return LoadCurve(
        scenario=scenario, slos=targets,
        points=pa.Table.from_pylist(rows, schema=POINT_SCHEMA),
        bisection=pa.Table.from_pylist(bisection, schema=POINT_SCHEMA),
        max_rate=max_rate,
        saturation_rate_per_s=_knee(rows, grid),
        capacity_per_s=sum(r["departure_rate_per_s"] for r in saturated) / len(saturated) if saturated else None,
        probe_capacity_per_s=probe_capacity,
        reference=reference,
        provenance={"kind": prov.kind, "headline": first_clause(prov.source), "source": prov.source},
        seeds=seeds, notes=tuple(notes))


def _run_probe(data: dict[str, Any]) -> tuple[int, float]:
    """Run the probe in a worker: (requests completed, simulated seconds). Top-level, to pickle."""
    from sim.engine import simulate

    summary = simulate(Scenario.model_validate(data), records="summary").summary
    return summary["requests"]["completed"], summary["simulated_s"]


def _probe_capacity(scenario: Scenario, runner: _Runner) -> float:
    """Requests/s the configuration completes flat out, from a burst (see :func:`probe_scenario`)."""
    probe = probe_scenario(scenario)
    (done, end), = map_points(_run_probe, [probe.to_dict()], executor=runner.executor)
    runner.done += 1
    if runner.progress is not None:
        runner.progress(runner.done, runner.total)
    if done == 0 or not end > 0:
        raise CurveError(f"the capacity probe ({probe.workload.num_requests} requests at once) completed none: "
                         "check the scenario (requests too long for the KV cache?), or give rates")
    return done / end


def _knee(rows: list[dict[str, Any]], grid: list[float]) -> float | None:
    """The highest grid rate at which neither it nor any lower one saturated in any seed."""
    knee = None
    for r in grid:
        if any(row["saturated"] for row in rows if row["rate_per_s"] == r):
            break
        knee = r
    return knee


def _max_rate(scenario: Scenario, rows: list[dict[str, Any]], grid: list[float], seeds: tuple[int, ...],
              rel_tol: float, runner: _Runner, notes: list[str]
              ) -> tuple[MaxRate, Reference | None, list[dict[str, Any]]]:
    """Bisect each seed's bracket in lockstep (one point per seed per round, run in parallel)."""
    lo: dict[int, float] = {}
    hi: dict[int, float] = {}
    lo_row: dict[int, dict[str, Any] | None] = {}
    at_least = False
    for s in seeds:
        mine = {row["rate_per_s"]: row for row in rows if row["seed"] == s}
        failing = [r for r in grid if not mine[r]["meets_slo"]]
        if not failing:  # met everywhere tried: a lower bound
            lo[s], hi[s], lo_row[s] = grid[-1], grid[-1], mine[grid[-1]]
            at_least = True
            continue
        below = [r for r in grid if r < failing[0]]
        lo[s], hi[s] = (below[-1], failing[0]) if below else (0.0, failing[0])
        lo_row[s] = mine[below[-1]] if below else None

    floor = grid[0] / 2 ** _ZERO_HALVINGS

    def open_(s: int) -> bool:
        if lo[s] == 0:  # nothing passed yet: halve down to the floor, then give up
            return hi[s] > floor * (1 + 1e-9)
        return hi[s] - lo[s] > rel_tol * hi[s]

    runner.expect(sum(_steps(lo[s], hi[s], rel_tol) for s in seeds if open_(s)))
    bisection: list[dict[str, Any]] = []
    for _ in range(_MAX_BISECTION_STEPS):
        active = [s for s in seeds if open_(s)]
        if not active:
            break
        mids = {s: float((lo[s] + hi[s]) / 2) for s in active}
        for s, row in zip(active, runner.run([(mids[s], s) for s in active])):
            bisection.append(row)
            if row["meets_slo"]:
                lo[s], lo_row[s] = mids[s], row
            else:
                hi[s] = mids[s]
    if at_least:
        notes.append(f"some seed met the SLOs at every rate tried: the highest rate is at least {grid[-1]:.4g} "
                     "requests/s")
    if any(lo[s] == 0 for s in seeds):
        notes.append(f"some seed met the SLOs at no rate tried, down to {floor:.4g} requests/s (its highest rate "
                     "is reported as 0)")
    values = [lo[s] for s in seeds]
    mr = MaxRate(mean=sum(values) / len(values), min=min(values), max=max(values), per_seed=dict(lo),
                 rel_tol=rel_tol, at_least=at_least)
    passing = [r for r in lo_row.values() if r is not None]
    reference = None
    if passing:
        n = scenario.replicas
        reference = Reference(rate_per_s=mr.mean / n,
                              output_tokens_per_s=sum(r["output_tokens_per_s"] for r in passing) / len(passing) / n,
                              replicas=n)
    return mr, reference, bisection


def _steps(lo: float, hi: float, rel_tol: float) -> int:
    """Bisection steps until a bracket [lo, hi] is at most rel_tol of hi wide (a bracket from 0:
    its halvings down to the floor, the least it can take)."""
    if lo == 0:
        return _ZERO_HALVINGS
    return max(0, math.ceil(math.log2((hi - lo) / (rel_tol * hi))))
