"""Engine profiles fitted jointly: one serving engine's efficiencies against the GPUs' datasheets,
from all its benchmark rows at once, so that any (model, quantization, GPU, TP) gets a prediction.

The model. An engine prices an iteration as the datasheet roofline does
(:class:`calibration.roofline.RooflineProfile`: linear layers, LM head, prefill and decode
attention, each max(FLOPs / (peak FLOP/s · e_c), bytes / (peak HBM bytes/s · e_m)), plus the
tensor-parallel all-reduce and a fixed overhead t_0 per iteration), with three numbers fitted per
(engine, GPU) and shared by every model, quantization and TP degree on that GPU: the compute
efficiency e_c, the memory efficiency e_m and the overhead t_0. The all-reduce stays as the
roofline prices it (measured NCCL timings where the catalog has them, the datasheet link
elsewhere). A GPU with no rows takes the engine-wide fallback: the geometric mean of the fitted
GPUs' efficiencies and the mean of their overheads.

Why the fit is cheap. When every request of a run is queued at time 0 (``trtllm-bench`` max
throughput, ``--request-rate inf``), the batches the scheduler forms depend on the queue, the KV
cache and the batch limits, never on how long an iteration takes: the schedule is a function of
state alone, and the KV capacity depends on the memory model, not the efficiencies. So each row is
simulated once (:func:`row_schedule`, under its engine's preset and the row's settings), the work
of each of its iterations kept (:class:`calibration.roofline.IterationWork`), and the row's
metrics under any efficiencies are the same iterations priced again (:func:`replay`): a few numpy
operations instead of a simulation. :func:`row_schedule` checks the claim on the run it keeps:
the iterations priced again at the simulated efficiencies give the simulated durations and
request times, to rounding (a preemption, a chunked prompt or a timed arrival would break it, and
is refused). The tests also check it against fresh simulations at other efficiencies.

A run of tens of thousands of requests is simulated capped (``max_requests``): after the batch
fills, the engine repeats the same cycle of admissions and completions, so the capped run's
steady middle (its 10th to 90th percentile of completions) gives the time per request of the
rest, and the throughput is the whole run's output over the capped run's time plus the rest's.

Rows whose arrivals are timed (a finite request rate) cannot be replayed: they are predicted by
simulating them with the fitted efficiencies (:func:`predict_timed`), never fitted here.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from calibration.roofline import IterationWork, RooflineProfile
from sim.fitting.benchmark_csv import BenchmarkRow, read_benchmarks
from sim.fitting.optimise import error_stats
from sim.fitting.reenact import benchmark_metrics, benchmark_requests
from sim.results.benchmark import client_metrics

__all__ = ["EFFICIENCIES", "EngineFit", "Fold", "Schedule", "cross_validate", "fit_engine", "predict",
           "predict_timed", "replay", "row_schedule", "write_profiles"]

# What is fitted per (engine, GPU), and the bounds each is held in: an efficiency is a share of a
# datasheet peak (so never above 1: no engine beats the datasheet); the overhead is seconds; the
# overlap a share of a part's shorter side hidden under its longer (1: the roofline's max), the
# all-reduce's efficiency a share of its measured (or datasheet) bandwidth (calibration.roofline).
EFFICIENCIES = ("compute_efficiency", "memory_efficiency", "overhead_s", "overlap", "moe_compute_efficiency",
                "allreduce_efficiency")
_LOWER = np.array([0.02, 0.02, 0.0, 0.0, 0.02, 0.02])
_UPPER = np.array([1.0, 1.0, 0.05, 1.0, 1.0, 1.0])
# The roofline's defaults (calibration.spec.RooflineProfileSpec), but the overlap's mid-range (from
# its bound, 1, the fit finds no way in); an all-reduce efficiency with no TP rows stays at 1.
_START = np.array([0.6, 0.8, 0.0015, 0.5, 0.6, 1.0])
# Requests simulated per row at most (see the module docstring); the steady middle of a capped run.
MAX_REQUESTS = 30000
_STEADY = (0.1, 0.9)
# Metrics fitted, when a row has them: the client's throughput and latencies of an all-at-once run.
_FITTED = ("output_tokens_per_s", "ttft_mean_s", "itl_mean_s")

Efficiencies = dict[str, float]


@dataclass(frozen=True)
class Schedule:
    """An all-at-once row's simulated run, kept as what prices it: the work of each iteration, and
    the iteration that ends each simulated request's first and last token."""

    row: BenchmarkRow
    base: RooflineProfile      # the row's roofline (its efficiencies are those simulated)
    work: IterationWork
    first: np.ndarray          # per simulated request: the iteration its first token ends
    last: np.ndarray           # and its last
    requests: int              # simulated (<= row.num_requests)

    @property
    def gpu(self) -> str:
        return self.row.hardware


def _scenario(row: BenchmarkRow, n: int, seed: int) -> dict[str, Any]:
    """The scenario (as data) of ``n`` requests of ``row`` under its engine, priced by the datasheet
    roofline (the efficiencies do not change the schedule); the requests come from
    :func:`sim.fitting.reenact.benchmark_requests`."""
    return {
        "name": f"engine fit row {row.row}", "seed": seed, "model": row.model, "quantization": row.quantization,
        "hardware": row.hardware, "tp": row.tp, "kv_cache_dtype": row.kv_cache_dtype or "auto",
        "engine": dict(row.engine_settings), "profile": {"kind": "roofline"},
        "workload": {"arrival": {"process": "closed_loop", "users": n}, "num_requests": n,
                     "classes": [{"name": "bench", "prompt_tokens": {"dist": "fixed", "value": row.input_tokens},
                                  "output_tokens": {"dist": "fixed", "value": row.output_tokens}}]},
    }


def _cohort_sums(admitted: np.ndarray, out: int, prompt: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode sequences and their context sum in each iteration, when ``admitted[k]`` requests of
    ``prompt`` tokens are prefilled whole in iteration k and then decode once per iteration until
    their ``out`` tokens are out: in iteration k + d (d = 1 .. out − 1) each holds prompt + d KV tokens."""
    t = admitted.size
    d = np.arange(1, out, dtype=np.int64)
    seqs = np.convolve(admitted, np.concatenate([[0], np.ones(out - 1, np.int64)]))[:t]
    ctx = np.convolve(admitted, np.concatenate([[0], prompt + d]))[:t]
    return seqs, ctx


def row_schedule(row: BenchmarkRow, *, max_requests: int = MAX_REQUESTS, seed: int = 0) -> Schedule:
    """Simulate ``row`` (all requests at time 0) once and keep what prices it (see the module
    docstring). Raises ValueError when the run is not a function of state alone (the row is not
    all at once, or a request was preempted or its prompt chunked), naming the row."""
    from sim.config import load_scenario
    from sim.engine import simulate

    if not row.all_at_once:
        raise ValueError(f"row {row.row} ({row.load}): its requests are not all sent at time 0, so its batches depend "
                         "on step times; predict it by simulation (predict_timed)")
    n = min(row.num_requests, max_requests)
    scenario = load_scenario(_scenario(row, n, seed))
    result = simulate(scenario, requests=benchmark_requests(row, n, seed))
    it = result.iterations
    base = scenario.build_profile()
    assert isinstance(base, RooflineProfile)
    pre_seqs = it.column("prefill_seqs").to_numpy()
    pre_tokens = it.column("prefill_tokens").to_numpy()
    dec_seqs = it.column("decode_seqs").to_numpy()
    i, o = row.input_tokens, row.output_tokens
    seqs, ctx = _cohort_sums(pre_seqs, o, i)
    if (int(it.column("recompute_tokens").to_numpy().sum()) or not np.array_equal(pre_tokens, pre_seqs * i)
            or not np.array_equal(seqs, dec_seqs)):
        raise ValueError(f"row {row.row}: the simulated run preempted or chunked prompts, so its schedule is not "
                         "whole prompts then one decode per iteration; it cannot be replayed")
    half = float(i) * (float(i) / 2.0)  # Σ c(p + c/2) of one whole prompt (p = 0)
    work = base.iteration_work(pre_seqs, pre_tokens, pre_seqs * half, pre_tokens, dec_seqs, ctx)
    first = np.repeat(np.arange(pre_seqs.size), pre_seqs)
    sched = Schedule(row=row, base=base, work=work, first=first, last=first + (o - 1), requests=n)
    # The claim this module rests on, checked on the run itself: priced again, the same run.
    seconds = base.price_work(work)
    ends = np.cumsum(seconds)
    req = result.requests
    if not (np.allclose(seconds, it.column("duration_s").to_numpy(), rtol=1e-9, atol=0)
            and np.allclose(np.sort(req.column("e2e_s").to_numpy()), ends[sched.last], rtol=1e-9, atol=0)):
        raise ValueError(f"row {row.row}: its iterations priced again differ from the simulated run")
    return sched


def _profile(base: RooflineProfile, eff: Mapping[str, float]) -> RooflineProfile:
    # A number ``eff`` leaves out keeps the base's (the roofline's default: 1 for the overlap and the
    # all-reduce's efficiency, the dense layers' for the experts').
    return dataclasses.replace(base, **{k: float(eff[k]) for k in EFFICIENCIES if k in eff})


def replay(schedule: Schedule, eff: Mapping[str, float]) -> dict[str, float]:
    """The row's client metrics (:func:`sim.results.benchmark.client_metrics`) with every iteration
    priced at efficiencies ``eff``. A capped run's throughput stands for the whole run (its steady
    time per request for the rest); its latencies are the capped run's, so they are given only when
    nothing was capped."""
    seconds = _profile(schedule.base, eff).price_work(schedule.work)
    ends = np.cumsum(seconds)
    ttft, e2e = ends[schedule.first], ends[schedule.last]
    row, n = schedule.row, schedule.requests
    out = np.full(n, float(row.output_tokens))
    duration = float(ends[-1])
    if n < row.num_requests:
        done = np.sort(e2e)
        lo, hi = (int(q * (n - 1)) for q in _STEADY)
        duration += (row.num_requests - n) * (done[hi] - done[lo]) / (hi - lo)
        return {"output_tokens_per_s": row.num_requests * row.output_tokens / duration}
    m = client_metrics(ttft, e2e, out, duration, qs=(50,))
    return {"output_tokens_per_s": m["output_tokens_per_s"], "ttft_mean_s": m["ttft"]["mean"],
            "tpot_mean_s": m["tpot"]["mean"], "itl_mean_s": m["itl"]["mean"]}


def _residuals(schedules: Sequence[Schedule], eff: Mapping[str, float]) -> np.ndarray:
    """log(predicted / measured) of every fitted metric a row has, each metric family weighed alike."""
    res = []
    for s in schedules:
        got = replay(s, eff)
        res.extend(math.log(got[m] / s.row.metrics[m]) for m in _FITTED if m in s.row.metrics and m in got)
    return np.asarray(res)


def _free(schedules: Sequence[Schedule]) -> list[str]:
    """The numbers one GPU's rows can pin down: the all-reduce's efficiency only with a row at TP
    above 1, the experts' compute efficiency only with a mixture-of-experts model; the others take
    the engine-wide fallback (:meth:`EngineFit.for_gpu`)."""
    keys = list(EFFICIENCIES)
    if not any(s.row.tp > 1 for s in schedules):
        keys.remove("allreduce_efficiency")
    if not any(s.base.model.experts > 1 for s in schedules):
        keys.remove("moe_compute_efficiency")
    return keys


def _fit_gpu(schedules: Sequence[Schedule]) -> Efficiencies:
    """Least squares (scipy, soft-L1 at 5%) of one GPU's numbers (:func:`_free`) over its rows."""
    from scipy.optimize import least_squares

    free = _free(schedules)
    at = [EFFICIENCIES.index(k) for k in free]

    def f(x: np.ndarray) -> np.ndarray:
        return _residuals(schedules, dict(zip(free, x)))

    sol = least_squares(f, _START[at], bounds=(_LOWER[at], _UPPER[at]), loss="soft_l1", f_scale=0.05,
                        x_scale=_START[at], diff_step=1e-3)
    return {k: float(v) for k, v in zip(free, sol.x)}


@dataclass(frozen=True)
class EngineFit:
    """One engine's fitted numbers: per GPU, and the engine-wide fallback for a GPU without rows."""

    engine: str
    per_gpu: dict[str, Efficiencies]
    rows: dict[str, list[int]]   # GPU -> the CSV rows its numbers were fitted to

    @property
    def fallback(self) -> Efficiencies:
        """Geometric mean of the GPUs' efficiencies (a share of a peak: they multiply) and the
        arithmetic mean of their overheads (which may be 0)."""
        out = {}
        for k in EFFICIENCIES:
            # Over the GPUs whose rows fitted it (:func:`_free`); overhead and overlap may be 0:
            # arithmetic means; the shares of a peak: geometric.
            vals = [e[k] for e in self.per_gpu.values() if k in e]
            if vals:
                out[k] = float(np.mean(vals) if k in ("overhead_s", "overlap") else np.exp(np.mean(np.log(vals))))
        return out

    def for_gpu(self, gpu: str) -> Efficiencies:
        """The GPU's fitted numbers, the fallback's for those its rows could not fit (or for all,
        without rows)."""
        return {**self.fallback, **self.per_gpu.get(gpu, {})}


def fit_engine(schedules: Sequence[Schedule], engine: str = "") -> EngineFit:
    """Fit ``schedules`` (one engine's rows) per GPU; every GPU's rows are one independent problem."""
    by_gpu: dict[str, list[Schedule]] = defaultdict(list)
    for s in schedules:
        by_gpu[s.gpu].append(s)
    return EngineFit(engine=engine, per_gpu={g: _fit_gpu(ss) for g, ss in sorted(by_gpu.items())},
                     rows={g: sorted(s.row.row for s in ss) for g, ss in sorted(by_gpu.items())})


def predict(schedule: Schedule, fit: EngineFit) -> dict[str, float]:
    """The row's metrics under ``fit`` (its GPU's numbers, or the fallback)."""
    return replay(schedule, fit.for_gpu(schedule.gpu))


def _errors(schedules: Iterable[Schedule], fit: EngineFit, metric: str = "output_tokens_per_s") -> list[float]:
    """Relative errors (predicted / measured − 1) of ``metric`` on the rows that have it."""
    return [predict(s, fit)[metric] / s.row.metrics[metric] - 1.0 for s in schedules if metric in s.row.metrics]


@dataclass(frozen=True)
class Fold:
    """One held-out group of a cross-validation: what was left out, and its rows' relative errors."""

    split: str            # "isl/osl", "gpu", "model"
    held_out: str
    errors: list[float]

    @property
    def median(self) -> float:
        return float(np.median(np.abs(self.errors)))


# How rows are grouped for each leave-one-group-out split.
SPLITS: dict[str, Callable[[BenchmarkRow], str]] = {
    "isl/osl": lambda r: f"{r.input_tokens}/{r.output_tokens}",
    "gpu": lambda r: r.hardware,
    "model": lambda r: r.model,
}


def cross_validate(schedules: Sequence[Schedule], split: str, metric: str = "output_tokens_per_s",
                   progress: Callable[[str], None] | None = None) -> list[Fold]:
    """Leave one group of ``split`` out at a time: fit on the rest, predict the group's rows (a
    held-out GPU takes the fallback of the others)."""
    key = SPLITS[split]
    folds = []
    for group in sorted({key(s.row) for s in schedules}):
        train = [s for s in schedules if key(s.row) != group]
        test = [s for s in schedules if key(s.row) == group]
        folds.append(Fold(split, group, _errors(test, fit_engine(train), metric)))
        if progress is not None:
            progress(f"cross-validation by {split}: {group} held out, median error {folds[-1].median:.1%}")
    return folds


def pooled(folds: Sequence[Fold]) -> dict[str, float]:
    """Median and p90 absolute error over every held-out row of ``folds``, and the median of the
    folds' medians (:func:`sim.fitting.optimise.error_stats` for the pooled ones)."""
    stats = error_stats(e for f in folds for e in f.errors)
    return {**stats, "median_of_folds": float(np.median([f.median for f in folds]))}


def predict_timed(row: BenchmarkRow, eff: Mapping[str, float], *, seed: int = 0, requests: int | None = None
                  ) -> dict[str, Any]:
    """The client metrics of a row with timed arrivals (a finite rate, or a closed loop), simulated
    with the engine's efficiencies (arrivals as :func:`sim.fitting.reenact.benchmark_requests` sends
    them, metrics as :func:`~sim.fitting.reenact.benchmark_metrics` counts them)."""
    from sim.config import load_scenario
    from sim.engine import simulate

    n = row.num_requests if requests is None else requests
    data = _scenario(row, n, seed)
    data["profile"] = {"kind": "roofline", **{k: float(eff[k]) for k in EFFICIENCIES if k in eff}}
    if row.request_rate is not None and math.isfinite(row.request_rate):
        data["workload"]["arrival"] = {"process": "poisson", "rate_per_s": row.request_rate}
    result = simulate(load_scenario(data), requests=benchmark_requests(row, n, seed))
    return benchmark_metrics(result.requests, row)


# -- the shipped data ----------------------------------------------------------------------------

def _toml_value(v: Any) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(round(v, 6)) if abs(v) >= 1e-3 else f"{v:.6e}"
    return str(v)


def write_profiles(path: str | Path, entries: Sequence[Mapping[str, Any]]) -> None:
    """Write engine profiles as ``calibration/data/engine_profiles.toml`` holds them: one table per
    engine (its source, date, fallback and fold errors), one sub-table per GPU."""
    lines = ["# Engine profiles: per serving engine, the roofline's numbers fitted to its published benchmark",
             "# rows, per GPU (compute_efficiency, memory_efficiency, moe_compute_efficiency, allreduce_efficiency:",
             "# shares of the datasheet peaks; overlap: share of a part's shorter side hidden under its longer;",
             "# overhead_s: seconds per iteration), and an engine-wide fallback for GPUs without rows and for",
             "# the numbers a GPU's rows cannot fit (no TP above 1, no mixture of experts).",
             "# Written by `python -m sim.fitting.engine_fit`; read by calibration/engine_profiles.py.",
             "# Labelled derived-from-measured: fitted to serving benchmarks by replaying simulated runs.", ""]
    for e in entries:
        lines.append(f'["{e["engine"]}"]')
        for k in ("kind", "source", "data", "fitted", "model", "folds"):
            lines.append(f"{k} = {_toml_value(e[k])}")
        lines.append(f'["{e["engine"]}".fallback]')
        lines += [f"{k} = {_toml_value(v)}" for k, v in e["fallback"].items()]
        for gpu, eff in e["gpus"].items():
            lines.append(f'["{e["engine"]}".gpus.{gpu}]')
            lines += [f"{k} = {_toml_value(v)}" for k, v in eff.items()]
        lines.append("")
    Path(path).write_text("\n".join(lines))


def _schedules(rows: Sequence[BenchmarkRow], progress: Callable[[str], None], max_requests: int) -> list[Schedule]:
    out = []
    t0 = time.perf_counter()
    for k, r in enumerate(rows, 1):
        out.append(row_schedule(r, max_requests=max_requests))
        progress(f"simulated row {r.row} ({r.model} {r.quantization} {r.hardware} tp{r.tp} "
                 f"{r.input_tokens}/{r.output_tokens}): {k}/{len(rows)}, {time.perf_counter() - t0:.0f} s")
    return out


def fit_file(path: str | Path, *, max_requests: int = MAX_REQUESTS, progress: Callable[[str], None] = lambda s: None
             ) -> dict[str, Any]:
    """Fit every engine of a benchmark CSV on its all-at-once rows, cross-validate it, and predict its
    timed rows: the entries of :func:`write_profiles`, with the timed rows' errors under ``"timed"``."""
    rows = read_benchmarks(path)
    engines = sorted({r.engine for r in rows if r.engine is not None})
    if not engines:
        raise ValueError(f"{path}: no row names its engine (column 'engine'); engine profiles are per engine")
    entries = []
    for engine in engines:
        mine = [r for r in rows if r.engine == engine]
        closed = [r for r in mine if r.all_at_once]
        if not closed:
            raise ValueError(f"{path}: engine {engine!r} has no row with every request sent at once (concurrency >= "
                             "num_requests, or request_rate inf), which the fit needs")
        schedules = _schedules(closed, progress, max_requests)
        fit = fit_engine(schedules, engine)
        folds: dict[str, Any] = {}
        splits = [s for s in SPLITS if len({SPLITS[s](r) for r in closed}) > 1]
        for split in splits:
            fs = cross_validate(schedules, split, progress=progress)
            folds[split] = {"pooled": pooled(fs), **{f.held_out: f.median for f in fs}}
        timed = [r for r in mine if not r.all_at_once]
        timed_errors: dict[str, list[float]] = defaultdict(list)
        for k, r in enumerate(timed, 1):
            got = predict_timed(r, fit.for_gpu(r.hardware))
            for m, v in r.metrics.items():
                if m in got:
                    timed_errors[m].append(got[m] / v - 1.0)
            progress(f"predicted timed row {r.row} ({r.load}): {k}/{len(timed)}")
        if timed:
            folds["timed rows (fitted on all-at-once rows only)"] = {
                m: error_stats(es) for m, es in sorted(timed_errors.items())}
        entries.append({
            "engine": engine, "kind": "derived-from-measured",
            "source": (f"{len(closed)} all-at-once rows of {Path(path).name} ({engine}), replayed "
                       "(sim.fitting.engine_fit)"),
            "data": Path(path).name, "fitted": _dt.date.today().isoformat(),
            "model": (f"roofline with {', '.join(EFFICIENCIES)} per GPU (one its rows cannot fit, with no TP above 1 "
                      "or no mixture of experts: the fallback's)"),
            "folds": _flat_folds(folds), "fallback": fit.fallback,
            "gpus": {g: {**eff, "rows": len(fit.rows[g])} for g, eff in fit.per_gpu.items()},
            "fit": fit, "schedules": schedules, "timed_errors": dict(timed_errors),
        })
    return {"entries": entries}


def _flat_folds(folds: Mapping[str, Any]) -> list[str]:
    """Fold errors as one line each (the TOML keeps them as text: they are read by people)."""
    out = []
    for split, d in folds.items():
        for k, v in d.items():
            if isinstance(v, Mapping):
                out.append(f"{split}: {k}: " + ", ".join(f"{a} {b:.1%}" if a != "points" else f"rows {b:g}"
                                                        for a, b in v.items()))
            else:
                out.append(f"{split}: {k} held out: median |error| {v:.1%}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sim.fitting.engine_fit CSV... -o FILE``: fit, cross-validate, write, report."""
    ap = argparse.ArgumentParser(prog="python -m sim.fitting.engine_fit", description=__doc__.splitlines()[0])
    ap.add_argument("csv", nargs="+", help="benchmark CSVs with an engine column")
    ap.add_argument("-o", "--output", required=True, help="engine profiles TOML to write")
    ap.add_argument("--max-requests", type=int, default=MAX_REQUESTS, help="requests simulated per row at most")
    args = ap.parse_args(argv)
    entries = []
    try:
        for p in args.csv:
            entries += fit_file(p, max_requests=args.max_requests,
                                progress=lambda s: print(s, file=sys.stderr, flush=True))["entries"]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_profiles(args.output, entries)
    for e in entries:
        print(f"{e['engine']}: " + "; ".join(f"{g} e_c {v['compute_efficiency']:.3f} e_m {v['memory_efficiency']:.3f} "
                                             f"t0 {v['overhead_s'] * 1e3:.2f} ms" for g, v in e["gpus"].items()))
        print("\n".join("  " + line for line in e["folds"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
