"""Validation of a measured profile: the real serving loop against the simulator, on one workload.

:func:`validate` draws one Poisson workload (:func:`workloads.generate`), serves it ``repeats``
times on the harness's kernels (:func:`calibration.harness.serving.serve`: the same
decoder, scheme and layers the profile was calibrated with) and simulates it once with the
profile (``profile: {kind: measured, path: ...}``), under the same engine settings: continuous
batching with chunked prefill, the same ``max_num_seqs`` and ``max_num_batched_tokens``, one
replica of ``tp`` 1 on the catalog hardware the profile is filed under (``cpu-server`` for CPU
profiles). It reports side by side the p50/p90/p99 of ``ttft_s``, ``tpot_s`` and ``e2e_s`` and the
output-token throughput, with the simulation's relative error against the mean of the real runs
and the real runs' own spread.

Three details make the comparison like for like:

- **Clock.** The real loop times its iterations on the clock the calibration timed its steps on
  (:mod:`calibration.harness.clock`: on the CPU the thread's CPU time with torch on one intra-op
  thread) and runs on a timeline of those measured seconds, idle gaps jumped to the next arrival
  (:func:`~calibration.harness.serving.serve`): what it reports is what one dedicated core gives,
  whatever else the machine runs, as the simulation assumes. (On wall time, a busy neighbour
  made two real runs of one workload differ by 57%.) A profile timed on another clock is noted.
- **Depth.** A profile prices the model's full depth (its record's ``layers``) while the real
  loop runs the ``layers`` built on this machine; the simulator is given the same record priced
  at ``layers`` (a copy in a temporary directory, its source saying so). The calibration measured
  ``layers`` and ``2·layers``, so this is inside its measured range.
- **Definitions.** Both sides' metrics come from one function (:func:`serving_metrics`) over their
  per-request and per-iteration tables: latency percentiles (linear interpolation) over the
  requests that arrived in the window, output tokens/s emitted by the iterations that ended in
  it. The window runs from ``warmup_s`` to the last arrival (the drain after it is excluded).

Where the profile should come from: a calibration on the shapes this workload runs
(:func:`calibration_axes`; ``capsim validate`` without ``--profile`` does so).

And one diagnostic sharper than the percentiles (:func:`iteration_error`): every iteration the
real loop ran is priced by the profile from its recorded batch shape and compared with its
measured duration, so an error can be told apart into the step-time model's (decode-only or
mixed iterations), and the loop's own overhead (its iteration time outside the forward pass,
which the harness never times).

Choosing the load (:func:`service_capacity`, :func:`rate_for_utilisation`): see
:func:`service_capacity`'s docstring.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from calibration.measured import ProfileRecord, find_profile, list_profiles, profile_name, read_profile, seconds_of
from calibration.spec import model_arch
from workloads import WorkloadSpec, generate

if TYPE_CHECKING:
    from calibration.harness.grid import Axes
    from calibration.harness.serving import ServingRun
    from sim.results.records import SimResult

__all__ = ["ALONGSIDE_REPEATS", "DEFAULT_OUTPUT_TOKENS", "DEFAULT_PROMPT_TOKENS", "METRICS", "Capacity",
           "MetricComparison", "Remeasured", "ValidationResult", "calibration_axes", "iteration_error",
           "rate_for_utilisation", "service_capacity", "serving_metrics", "validate"]

# Default lengths: short prompts, decode-heavy (a CPU decodes a 1B model's few layers at tens of tokens/s).
DEFAULT_PROMPT_TOKENS: dict[str, Any] = {"dist": "uniform", "low": 16, "high": 128}
DEFAULT_OUTPUT_TOKENS: dict[str, Any] = {"dist": "uniform", "low": 8, "high": 64}

# The compared metrics, in report order: (name, unit).
METRICS: tuple[tuple[str, str], ...] = (
    ("ttft_p50", "s"), ("ttft_p90", "s"), ("ttft_p99", "s"),
    ("tpot_p50", "s"), ("tpot_p90", "s"), ("tpot_p99", "s"),
    ("e2e_p50", "s"), ("e2e_p90", "s"), ("e2e_p99", "s"),
    ("output_tokens_per_s", "tokens/s"),
)

ProgressFn = Callable[[str], None]

# Timed runs of each point when a profile's points are re-measured alongside the real runs.
ALONGSIDE_REPEATS = 40


# -- the load -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Capacity:
    """The throughput a configuration sustains when saturated, and what it was derived from."""

    requests_per_s: float
    demand_s: float          # mean service demand per request: 1 / requests_per_s
    iteration_s: float       # the mean saturated iteration
    batch_sequences: float   # sequences per saturated iteration
    batch_tokens: float      # tokens per saturated iteration


def service_capacity(coefficients: dict[str, float], layers: int, prompt: np.ndarray, output: np.ndarray, *,
                     max_num_seqs: int, max_num_batched_tokens: int) -> Capacity:
    """Requests/s the engine sustains, saturated, on requests like ``prompt``/``output`` (a sample
    of lengths), priced by the step-time formula with ``coefficients`` at ``layers`` (L) layers.

    How: in the saturated steady state the queue never empties, so every iteration runs a full
    batch of B = ``max_num_seqs`` sequences. Request i occupies ``O_i`` sequence-iterations (one
    that finishes its prompt, then ``O_i − 1`` decodes) and computes ``P_i + O_i − 1`` tokens, so
    n requests need ``I = max(ΣO_i / B, Σ(P_i + O_i − 1) / max_num_batched_tokens)`` iterations
    (the token budget binds when prompts are long). Their total time is the formula summed over
    those iterations, term by term:

    - ``I·t0`` and ``(c_head + L·c_seq)·ΣO_i`` (per iteration, per sequence-iteration);
    - ``L·c_pf·ΣP_i²/2`` (a prompt's chunks sum ``Σ c(p + c/2)`` to ``P²/2`` however it is
      chunked) and ``L·c_dc·Σ[(O_i − 1)·P_i + O_i(O_i − 1)/2]`` (the k-th decode attends to
      ``P_i + k`` tokens);
    - ``L·c_tok·Σ(P_i + O_i − 1)`` (per-token work outside the weight read);
    - the linear layers, ``L·Σ max(w, c_lin·N)`` over iterations: decode-heavy (n <= I), each
      prompt rides in an iteration of its own beside B − 1 decodes, ``max(w, c_lin·(P_i + B − 1))``,
      and the other I − n iterations decode B tokens, ``max(w, c_lin·B)``; with more prompts than
      iterations, every iteration is taken at the mean token count.

    The mean service demand is that total over n, the capacity its inverse. Left out: the extra
    sequence-iterations of prompts split over several chunks, and partial batches. A saturated
    simulation agrees within a few percent (``tests/test_validate.py``)."""
    p = np.asarray(prompt, np.float64)
    o = np.asarray(output, np.float64)
    if p.size == 0 or p.shape != o.shape or p.min() < 1 or o.min() < 1:
        raise ValueError(f"prompt and output lengths: need equal, non-empty samples of lengths >= 1 (got {p.size} and "
                         f"{o.size} values)")
    if max_num_seqs < 1 or max_num_batched_tokens < 1:
        raise ValueError(f"max_num_seqs = {max_num_seqs}, max_num_batched_tokens = {max_num_batched_tokens}: both "
                         f"must be >= 1")
    c, L, B, n = coefficients, float(layers), float(max_num_seqs), float(p.size)
    tokens = float((p + o - 1).sum())
    seq_iters = float(o.sum())
    iters = max(seq_iters / B, tokens / max_num_batched_tokens)
    if n <= iters:
        linear = (float(np.maximum(c["w"], c["c_lin"] * (p + B - 1)).sum())
                  + (iters - n) * max(c["w"], c["c_lin"] * B))
    else:
        linear = iters * max(c["w"], c["c_lin"] * tokens / iters)
    total = (iters * c["t0"] + (c["c_head"] + L * c["c_seq"]) * seq_iters
             + L * linear + L * c.get("c_tok", 0.0) * tokens
             + L * c["c_pf"] * float((p * p / 2.0).sum())
             + L * c["c_dc"] * float(((o - 1) * p + o * (o - 1) / 2.0).sum()))
    demand = total / n
    return Capacity(requests_per_s=1.0 / demand, demand_s=demand, iteration_s=total / iters,
                    batch_sequences=seq_iters / iters, batch_tokens=tokens / iters)


def rate_for_utilisation(utilisation: float, coefficients: dict[str, float], layers: int, prompt: np.ndarray,
                         output: np.ndarray, *, max_num_seqs: int, max_num_batched_tokens: int) -> float:
    """The Poisson rate (requests/s) that loads the engine to ``utilisation`` of its saturated
    capacity (:func:`service_capacity`)."""
    if not 0 < utilisation < 1:
        raise ValueError(f"utilisation = {utilisation}: must be between 0 and 1 (a share of the saturated capacity)")
    cap = service_capacity(coefficients, layers, prompt, output, max_num_seqs=max_num_seqs,
                           max_num_batched_tokens=max_num_batched_tokens)
    return utilisation * cap.requests_per_s


# -- metrics --------------------------------------------------------------------------------------------

def serving_metrics(requests: pa.Table, iterations: pa.Table, window: tuple[float, float]) -> dict[str, float]:
    """The compared metrics (:data:`METRICS`) of one run, real or simulated: percentiles (linear
    interpolation) of ``ttft_s``, ``tpot_s`` and ``e2e_s`` over the requests that arrived in
    ``window`` = [lo, hi], and output tokens/s emitted by the iterations that ended in [lo, hi).

    ``requests`` needs ``arrival_s``, ``ttft_s``, ``tpot_s``, ``e2e_s``; ``iterations`` needs
    ``start_s``, ``duration_s``, ``tokens_out`` (the simulator's tables and the real loop's both
    have them)."""
    lo, hi = window
    arrival = requests.column("arrival_s").to_numpy(zero_copy_only=False)
    inside = (arrival >= lo) & (arrival <= hi)
    out: dict[str, float] = {}
    for name in ("ttft", "tpot", "e2e"):
        x = requests.column(f"{name}_s").to_numpy(zero_copy_only=False)[inside]
        x = x[np.isfinite(x)]
        for q in (50, 90, 99):
            out[f"{name}_p{q}"] = float(np.percentile(x, q)) if x.size else float("nan")
    end = iterations.column("start_s").to_numpy() + iterations.column("duration_s").to_numpy()
    emitted = iterations.column("tokens_out").to_numpy()[(end >= lo) & (end < hi)]
    out["output_tokens_per_s"] = float(emitted.sum()) / max(hi - lo, 1e-12)
    return out


@dataclass(frozen=True)
class MetricComparison:
    """One metric: each real run's value, their mean and spread, the simulated value and its error.

    ``spread`` is the real runs' largest relative deviation from each other, ``(max − min) / mean``;
    ``error`` is ``simulated / real_mean − 1``."""

    name: str
    unit: str
    real: tuple[float, ...]
    simulated: float

    @property
    def real_mean(self) -> float:
        return float(np.mean(self.real))

    @property
    def spread(self) -> float:
        m = self.real_mean
        return float((max(self.real) - min(self.real)) / m) if m else float("nan")

    @property
    def error(self) -> float:
        m = self.real_mean
        return float(self.simulated / m - 1.0) if m else float("nan")


def iteration_error(runs: list[ServingRun] | tuple[ServingRun, ...],
                    coefficients: dict[str, float] | list[dict[str, float]], layers: int) -> dict[str, float]:
    """The profile's price of every iteration the real loop ran (from its recorded batch shape)
    against the measured iteration: the median relative error of decode-only and of iterations
    with a prefill chunk (predicted / measured − 1, measured = ``duration_s``), the error of the
    total busy time, and the share of measured busy time the loop spent outside the forward pass
    (its overhead, which the harness's step timings do not contain), and the ``jitter`` of
    decode-only iterations (:func:`_jitter`). ``coefficients``: one set for every run, or a list
    with each run's own."""
    per_run = coefficients if isinstance(coefficients, list) else [coefficients] * len(runs)
    names = ("duration_s", "forward_s", "tokens", "sequences", "prefill_pairs", "decode_context", "prefill_context",
             "prefill_own_pairs", "prefill_seqs")
    cols = [{c: r.iterations.column(c).to_numpy().astype(np.float64) for c in names} for r in runs]
    col = {c: np.concatenate([t[c] for t in cols]) for c in names}
    pred = np.concatenate([seconds_of(k, layers, t["tokens"], t["sequences"], t["prefill_pairs"],
                                      t["decode_context"] + t["prefill_context"], own_pairs=t["prefill_own_pairs"])
                           for k, t in zip(per_run, cols, strict=True)])
    dur = col["duration_s"]
    rel = pred / dur - 1.0
    dec = col["prefill_seqs"] == 0

    def med(m: np.ndarray) -> float:
        return float(np.median(rel[m])) if m.any() else float("nan")

    return {
        "iterations": float(dur.size),
        "decode_only_median": med(dec),
        "with_prefill_median": med(~dec),
        "busy_time": float(pred.sum() / dur.sum() - 1.0),
        "forward_busy_time": float(pred.sum() / col["forward_s"].sum() - 1.0),
        "loop_overhead_share": float((dur - col["forward_s"]).sum() / dur.sum()),
        "jitter": _jitter(dur[dec] / pred[dec]),
    }


def _jitter(ratio: np.ndarray) -> float:
    """How far apart iterations the profile prices alike ran: the p10-p90 spread of measured over
    priced time, relative to its median (NaN without iterations). A shared VM's cores ran one
    decode step 55-88 ms in thread CPU time within seconds (what the host's other tenants do to
    the core), a variation of service time a simulation at constant step prices does not have."""
    if ratio.size == 0:
        return float("nan")
    p10, p50, p90 = np.percentile(ratio, [10.0, 50.0, 90.0])
    return float((p90 - p10) / p50)


# -- the result -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Remeasured:
    """What :func:`validate` with ``alongside`` adds. The profile's points were re-measured in
    bursts between the real runs' iterations; each real run's own bursts were fitted
    (``coefficients``, with held-out error ``heldout_error``; ``measurements``: their timings) and
    priced a simulation of that run (``simulations``), so that a run during which the machine ran
    slower is compared with a simulation of that slower machine; the compared value is the mean
    over the runs. ``given``: :func:`serving_metrics` of the simulation priced by the profile
    given, and ``given_iterations`` its :func:`iteration_error`; ``account``: the bursts
    (:class:`~calibration.harness.alongside.Alongside`); ``speed``: the median over the points of
    their time in a burst of each just before the first run over the profile's, by which the
    profile's steps were scaled to set the load."""

    coefficients: tuple[dict[str, float], ...]
    heldout_error: tuple[dict[str, dict[str, float]], ...]
    measurements: tuple[pa.Table, ...]
    simulations: tuple[SimResult, ...]
    given: dict[str, float]
    given_iterations: dict[str, float]
    account: dict[str, Any]
    speed: float = 1.0   # the points' time just before the runs over the profile's: the load was set for it

    def before(self, result: ValidationResult, name: str) -> MetricComparison:
        """The comparison of metric ``name`` had the profile given priced the simulation."""
        m = result.metric(name)
        return MetricComparison(m.name, m.unit, m.real, self.given[name])


@dataclass(frozen=True)
class ValidationResult:
    """Real runs and one simulation of the same workload, and their comparison."""

    model: str
    quant: str
    layers: int
    hardware: str
    profile_path: Path
    coefficients: dict[str, float]           # the profile given's
    rate_per_s: float
    capacity: Capacity
    window: tuple[float, float]
    requests: pa.Table                       # the workload (a RequestTable)
    real: tuple[ServingRun, ...]
    simulated: SimResult                     # priced by the profile given
    metrics: tuple[MetricComparison, ...]
    iterations: dict[str, float]             # :func:`iteration_error` over the real runs
    notes: tuple[str, ...] = field(default=())
    remeasured: Remeasured | None = None     # with ``alongside``: the profile given, and what it predicted

    @property
    def utilisation(self) -> float:
        """The offered load as a share of the saturated capacity."""
        return self.rate_per_s / self.capacity.requests_per_s

    def metric(self, name: str) -> MetricComparison:
        """The comparison of one metric of :data:`METRICS` by name."""
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(f"metric {name!r}: not compared; compared: {', '.join(m.name for m in self.metrics)}")

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {
            "model": self.model, "quant": self.quant, "layers": self.layers, "hardware": self.hardware,
            "profile": str(self.profile_path), "rate_per_s": self.rate_per_s,
            "capacity_requests_per_s": self.capacity.requests_per_s, "utilisation": self.utilisation,
            "requests": self.requests.num_rows, "repeats": len(self.real),
            "window": {"start_s": self.window[0], "end_s": self.window[1]},
            "metrics": {m.name: {"unit": m.unit, "real": list(m.real), "real_mean": m.real_mean, "spread": m.spread,
                                 "simulated": m.simulated, "error": m.error} for m in self.metrics},
            "iterations": dict(self.iterations),
            "real_runs": [dict(r.meta) for r in self.real],
            "notes": list(self.notes),
            **({} if self.remeasured is None else {"remeasured_alongside": {
                "account": self.remeasured.account, "coefficients": list(self.remeasured.coefficients),
                "heldout_error": list(self.remeasured.heldout_error),
                "profile_given": {"coefficients": self.coefficients, "iterations": self.remeasured.given_iterations,
                                  "metrics": {m.name: {"simulated": self.remeasured.given[m.name],
                                                       "error": self.remeasured.before(self, m.name).error}
                                              for m in self.metrics}}}}),
        }

    def describe(self) -> str:
        """A plain-text table (for logs and assertion messages)."""
        lines = [f"{self.model} {self.quant}, {self.layers} layers, {self.requests.num_rows} requests at "
                 f"{self.rate_per_s:.3f}/s ({self.utilisation:.0%} of a saturated capacity of "
                 f"{self.capacity.requests_per_s:.3f}/s), {len(self.real)} real runs vs 1 simulation; window "
                 f"[{self.window[0]:g}, {self.window[1]:.1f}] s",
                 f"{'metric':<22}{'real mean':>12}{'spread':>9}{'simulated':>12}{'error':>9}"]
        for m in self.metrics:
            lines.append(f"{m.name:<22}{m.real_mean:>12.4g}{m.spread:>9.1%}{m.simulated:>12.4g}{m.error:>+9.1%}")
        it = self.iterations
        lines.append(f"per iteration (profile vs measured, {it['iterations']:.0f} iterations): decode-only median "
                     f"{it['decode_only_median']:+.1%}, with prefill median {it['with_prefill_median']:+.1%}, "
                     f"busy time "
                     f"{it['busy_time']:+.1%} (vs forward passes alone {it['forward_busy_time']:+.1%}); loop overhead "
                     f"{it['loop_overhead_share']:.2%} of busy time; decode-only iterations ran p10-p90 "
                     f"{it['jitter']:.0%} apart of their price (the machine's jitter)")
        if self.remeasured is not None:
            lines.append(self.remeasured_line())
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def remeasured_line(self) -> str:
        """One line on the re-measured profile against the profile given (empty without it)."""
        r = self.remeasured
        if r is None:
            return ""
        a = r.account
        errs = ", ".join(f"{n} {r.before(self, n).error:+.1%}" for n in ("ttft_p50", "tpot_p50", "output_tokens_per_s"))
        return (f"each real run compared with a simulation priced by the profile's points re-measured during that "
                f"run ({a['bursts']} bursts of {a['burst_repeats']} timed runs between iterations, the load set for "
                f"their speed just before the runs, {r.speed - 1:+.1%} against the profile's, "
                f"{a['bursts_after_the_host']} after a run's last iteration); the profile given, measured before them, "
                f"would have "
                f"read {errs} (busy time {r.given_iterations['busy_time']:+.1%}, against "
                f"{self.iterations['busy_time']:+.1%} re-measured)")


# -- validate -------------------------------------------------------------------------------------------

def _resolve_profile(path: str | Path, model: str, quant: str, hardware: str) -> tuple[Path, ProfileRecord]:
    """The profile JSON at ``path`` (a file, or a directory searched by configuration)."""
    p = Path(path)
    if p.is_file():
        record = read_profile(p)
        if (record.model, record.quantization, record.hardware, record.tp) != (model, quant, hardware, 1):
            raise ValueError(f"profile {p}: it is for {record.model}/{record.quantization}/{record.hardware}/"
                             f"tp{record.tp}, not {model}/{quant}/{hardware}/tp1")
        return p, record
    if not p.exists():
        raise ValueError(f"profile {p}: no such file or directory")
    hit = find_profile(model, quant, hardware, 1, [p])
    if hit is None:
        have = ", ".join(f"{r.model}/{r.quantization}/{r.hardware}/tp{r.tp}" for _, r in list_profiles([p])) or "none"
        raise ValueError(f"profile {p}: no profile for {model}/{quant}/{hardware}/tp1 there (there: {have}); "
                         f"measure one with `capsim calibrate`")
    return hit


def _workload(rate: float, num_requests: int, prompt: Any, output: Any) -> WorkloadSpec:
    return WorkloadSpec.model_validate({
        "arrival": {"process": "poisson", "rate_per_s": rate}, "num_requests": num_requests,
        "classes": [{"name": "validate", "prompt_tokens": _plain(prompt), "output_tokens": _plain(output)}]})


def _plain(spec: Any) -> Any:
    """A length spec as plain data (a pydantic model is dumped; a mapping passes)."""
    return spec.model_dump(exclude_none=True) if hasattr(spec, "model_dump") else spec


def calibration_axes(model: str, *, layers: int = 2, num_requests: int = 200, prompt_tokens: Any = None,
                     output_tokens: Any = None, seed: int = 0, max_num_seqs: int = 8,
                     max_num_batched_tokens: int = 512) -> Axes:
    """The calibration grid for validating on this workload (the arguments mean what they mean
    to :func:`validate`): the step shapes its real runs will run
    (:func:`~calibration.harness.grid.serving_axes` over the range of the lengths
    :func:`validate` draws), at ``layers`` and twice as many.

    Why: a profile is a fit, and a fit is good where it was measured. The default grid reaches
    2048-token chunks and 64-sequence batches; a validation of short requests in batches of
    eight runs none of them, and a fit over them all priced its iterations 20-50% off on the CPU
    (see :meth:`calibration.harness.model.LlamaDecoder.lm_head` for the other half of that)."""
    from calibration.harness.grid import serving_axes

    arch = model_arch(model)
    unit = generate(_workload(1.0, num_requests, DEFAULT_PROMPT_TOKENS if prompt_tokens is None else prompt_tokens,
                              DEFAULT_OUTPUT_TOKENS if output_tokens is None else output_tokens),
                    seed, arch.max_context)
    p, o = (unit.column(c).to_numpy() for c in ("prompt_tokens", "output_tokens"))
    return serving_axes(prompt_tokens=(int(p.min()), int(p.max())), output_tokens=(int(o.min()), int(o.max())),
                        max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens, layers=layers,
                        full_layers=arch.layers)


def _scaled(coefficients: dict[str, float], factor: float) -> dict[str, float]:
    """The step-time coefficients with every step ``factor`` times as long: each is seconds (or
    seconds per unit of work) but ``knee``, the exponent that rounds the roofline's corner."""
    return {k: v if k == "knee" else v * factor for k, v in coefficients.items()}


def _measured_points(path: Path) -> pa.Table:
    """The measurements a profile was fitted on (``NAME.parquet`` beside ``NAME.json``): the points
    :func:`validate` re-measures alongside the real runs."""
    import pyarrow.parquet as pq

    raw = path.with_suffix(".parquet")
    if not raw.is_file():
        raise ValueError(f"profile {path}: no measurements beside it ({raw.name}); re-measuring alongside needs a "
                         f"profile from `capsim calibrate`")
    return pq.read_table(raw)


def _remeasure(bursts: Any, ends: list[int], coef: dict[str, float], runs: list[ServingRun], sim: SimResult,
               window: tuple[float, float], layers: int, seed: int, record: ProfileRecord, speed: float,
               simulate_with: Callable[[ProfileRecord, str], tuple[SimResult, Any]]) -> Remeasured:
    """Finish the bursts, fit each real run's own (those after the previous run's last iteration,
    through its own last), and simulate each fit."""
    from calibration.fit import fit_step_model

    account = bursts.finish().meta["alongside"]
    fits, tables, sims = [], [], []
    for k, (after, through) in enumerate(zip([-1, *ends[:-1]], ends, strict=True)):
        table = bursts.measurements(after, through)
        try:
            fit = fit_step_model(table, seed=seed)
        except ValueError as e:
            raise ValueError(f"real run {k + 1}'s bursts alongside: {e}; raise alongside_repeats") from None
        again = dataclasses.replace(
            record, coefficients=fit.coefficients, heldout_error=fit.heldout_error,
            source=f"{record.source}; its {table.num_rows} points re-measured in bursts between real run {k + 1}'s "
                   f"iterations and fitted again")
        fits.append(fit)
        tables.append(table)
        sims.append(simulate_with(again, f"priced at the {layers} layers the real loop runs")[0])
    return Remeasured(coefficients=tuple(f.coefficients for f in fits),
                      heldout_error=tuple(f.heldout_error for f in fits), measurements=tuple(tables),
                      simulations=tuple(sims), given=serving_metrics(sim.requests, sim.iterations, window),
                      given_iterations=iteration_error(runs, coef, layers), account=account, speed=speed)


def validate(model: str, quant: str, *, layers: int = 2, profile_path: str | Path, rate_per_s: float | None = None,
             utilisation: float = 0.7, num_requests: int = 200, prompt_tokens: Any = None, output_tokens: Any = None,
             repeats: int = 2, seed: int = 0, max_num_seqs: int = 8, max_num_batched_tokens: int = 512,
             warmup_s: float = 0.0, device: str = "cpu", hardware: str | None = None,
             progress: ProgressFn | None = None, alongside: bool = False,
             alongside_repeats: int = ALONGSIDE_REPEATS) -> ValidationResult:
    """Serve one Poisson workload for real ``repeats`` times and simulate it once with the
    profile at ``profile_path``; compare (see the module docstring).

    The rate is ``rate_per_s`` if given, else ``utilisation`` of the saturated capacity the
    profile predicts for the workload's lengths (:func:`rate_for_utilisation`). Lengths are
    length specs of :mod:`workloads.lengths` (objects or mappings; defaults
    :data:`DEFAULT_PROMPT_TOKENS`, :data:`DEFAULT_OUTPUT_TOKENS`). ``layers`` layers of ``model``
    are built (as ``capsim calibrate --layers`` measured them). ``hardware`` defaults to the catalog
    entry profiles measured on ``device`` are filed under. ``progress(message)`` hears each stage.

    ``alongside``: re-measure the profile's points (its Parquet of measurements) in bursts between
    the real runs' iterations, ``alongside_repeats`` timed runs each in all
    (:class:`~calibration.harness.alongside.Alongside`), fit each run's own bursts, simulate each
    fit, and compare the mean of the real runs with the mean of their simulations (see
    :class:`Remeasured`); the rate is set by the profile given scaled to the speed a burst of each
    point reads just before the runs, and the profile's own prediction is kept in the result's
    ``remeasured``. On a machine whose speed drifts from one minute to the next,
    both sides then see the same machine.

    Raises ValueError (one line) for a bad argument or a missing profile; the simulator's
    ScenarioError (a ValueError) for an impossible configuration."""
    from calibration.calibrate import default_hardware

    say = progress or (lambda _msg: None)
    if repeats < 2:
        raise ValueError(f"repeats = {repeats}: at least 2 real runs are needed to measure their spread")
    if num_requests < 1:
        raise ValueError(f"num_requests = {num_requests}: must be >= 1")
    if rate_per_s is not None and not rate_per_s > 0:
        raise ValueError(f"rate_per_s = {rate_per_s}: must be > 0")
    if warmup_s < 0:
        raise ValueError(f"warmup_s = {warmup_s}: must be >= 0")
    if device != "cpu" and hardware is None:
        raise ValueError(f"device = {device!r}: give hardware (the catalog entry the profile is filed under)")
    hw = hardware or default_hardware(device)
    path, record = _resolve_profile(profile_path, model, quant, hw)
    coef = {k: float(v) for k, v in record.coefficients.items()}
    prompt = DEFAULT_PROMPT_TOKENS if prompt_tokens is None else prompt_tokens
    output = DEFAULT_OUTPUT_TOKENS if output_tokens is None else output_tokens

    arch = model_arch(model)
    if not 1 <= layers <= arch.layers:
        raise ValueError(f"layers = {layers}: must be between 1 and the {arch.layers} layers of {model}")
    if alongside and alongside_repeats < 1:
        raise ValueError(f"alongside_repeats = {alongside_repeats}: must be >= 1")
    points = _measured_points(path) if alongside else None
    # One draw of lengths: arrivals and lengths come from separate seed streams, so the table drawn
    # at rate 1 has the lengths of the one drawn at the chosen rate (checked below).
    max_context = arch.max_context
    unit = generate(_workload(1.0, num_requests, prompt, output), seed, max_context)
    p_len, o_len = unit.column("prompt_tokens").to_numpy(), unit.column("output_tokens").to_numpy()

    from calibration.harness.model import build_model
    from calibration.harness.serving import serve

    def build() -> Any:
        deepest = layers if points is None else max(layers, int(max(points.column("layers").to_pylist())))
        say(f"building {model} ({quant}, {deepest} layers) on {device}")
        return build_model(model, quant, device, layers=deepest, seed=int(record.meta.get("seed", seed)))

    # Alongside, the speed reading needs the decoder before the load is chosen; otherwise it is
    # built once the cheap checks below (the window, the simulation) have passed.
    decoder = build() if points is not None else None
    bursts, speed = None, 1.0
    if points is not None:
        from calibration.harness.alongside import Alongside

        bursts = Alongside(decoder, points, expected_iterations=1, repeats=alongside_repeats, seed=seed)
        say(f"reading the machine's speed: a burst of each of the profile's {points.num_rows} points")
        now = bursts.round()
        speed = float(np.median(now.column("seconds").to_numpy() / points.column("seconds").to_numpy()))
    # The load is set for the machine's speed now (with ``alongside``: the profile's steps scaled
    # by how much slower or faster they run this minute than when it was calibrated).
    pricing = _scaled(coef, speed)
    capacity = service_capacity(pricing, layers, p_len, o_len, max_num_seqs=max_num_seqs,
                                max_num_batched_tokens=max_num_batched_tokens)
    rate = rate_per_s if rate_per_s is not None else rate_for_utilisation(
        utilisation, pricing, layers, p_len, o_len, max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens)
    spec = _workload(rate, num_requests, prompt, output)
    table = generate(spec, seed, max_context)
    assert np.array_equal(table.column("prompt_tokens").to_numpy(), p_len), "lengths changed with the rate"
    arrival = table.column("arrival_s").to_numpy()
    window = (float(warmup_s), float(arrival.max()))
    if window[1] <= window[0]:
        raise ValueError(f"warmup_s = {warmup_s}: the last request arrives at {window[1]:.1f} s; nothing is measured")

    def simulate_with(rec: ProfileRecord, why: str) -> tuple[SimResult, Any]:
        """The workload simulated with ``rec`` priced at ``layers``; refused where the real loop
        could not follow (it never preempts)."""
        from sim.config import load_scenario
        from sim.engine import simulate

        with tempfile.TemporaryDirectory(prefix="capsim-validate-") as tmp:
            priced = dataclasses.replace(rec, layers=layers, source=f"{rec.source}; {why}")
            stem = profile_name(priced.model, priced.quantization, priced.hardware, priced.tp)
            (Path(tmp) / f"{stem}.json").write_text(priced.to_json() + "\n")
            scenario = load_scenario({
                "name": "validate", "seed": seed, "model": model, "quantization": quant, "hardware": hw, "tp": 1,
                "profile": {"kind": "measured", "path": tmp},
                "engine": {"scheduler": "continuous", "chunked_prefill": True, "max_num_seqs": max_num_seqs,
                           "max_num_batched_tokens": max_num_batched_tokens},
                "workload": spec.model_dump(mode="json", exclude_none=True),
                "measurement": {"warmup_s": warmup_s},
            })
            sim = simulate(scenario, requests=table)
            # The scenario reads its profile file again for this, so inside the block; past it the
            # result's scenario names a directory that is gone (its summary keeps the provenance).
            kv = (scenario.kv_capacity_tokens, scenario.engine.block_size)
        req = sim.summary["requests"]
        if req["completed"] != num_requests or req["preemptions"]:
            raise ValueError(f"the simulation completed {req['completed']} of {num_requests} requests with "
                             f"{req['preemptions']} preemptions: the real loop never preempts, so the two cannot be "
                             f"compared; lower the load or the lengths")
        return sim, kv

    # The simulation first: cheap, and it refuses an impossible configuration before the long real runs.
    say(f"simulating {num_requests} requests at {rate:.3f}/s with {path.name} priced at {layers} layers")
    depth = f"priced at the {layers} layers the real loop runs"
    sim, (kv_capacity, block_size) = simulate_with(record, depth)

    notes: list[str] = []
    if decoder is None:
        decoder = build()
    if bursts is not None:
        expected, _ = simulate_with(dataclasses.replace(record, coefficients=pricing), depth)
        iterations = expected.iterations.num_rows
        say(f"re-measuring the profile's {points.num_rows} points alongside: {bursts.bursts} bursts between the "
            f"real runs' iterations (its steps run {speed - 1:+.1%} against the profile this minute)")
    runs, ends = [], []
    for k in range(repeats):
        say(f"real run {k + 1} of {repeats} (about {arrival.max():.0f} s of arrivals)")
        if bursts is not None:  # an equal share of the bursts (the round's in the first), over as many
            # iterations as the simulation, then the run before, says a run takes
            bursts.expect(iterations, bursts.bursts * (k + 1) // repeats - bursts.bursts_done)
        runs.append(serve(decoder, table, max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
                          layers=layers, kv_capacity_tokens=kv_capacity, block_size=block_size, seed=seed + k,
                          between=bursts))
        if bursts is not None:
            bursts.settle()
            ends.append(bursts.calls)
            iterations = runs[-1].iterations.num_rows
    remeasured = None
    if bursts is not None:
        remeasured = _remeasure(bursts, ends, coef, runs, sim, window, layers, seed, record, speed, simulate_with)
    del decoder
    timed = record.meta.get("clock")
    if timed != runs[0].meta["clock"]:
        # A profile from before the harness timed on the step clock (or from another device) prices
        # steps as another clock saw them: on a shared CPU, wall time with the other processes in it.
        notes.append(f"the profile's steps were timed on {timed or 'the wall clock (no clock recorded)'}, the real "
                     f"loop's on {runs[0].meta['clock']}")

    real = [serving_metrics(r.requests, r.iterations, window) for r in runs]
    if remeasured is None:
        simulated = serving_metrics(sim.requests, sim.iterations, window)
        prices: dict[str, float] | list[dict[str, float]] = coef
    else:
        each = [serving_metrics(s.requests, s.iterations, window) for s in remeasured.simulations]
        simulated = {name: float(np.mean([m[name] for m in each])) for name, _ in METRICS}
        prices = list(remeasured.coefficients)
    metrics = tuple(MetricComparison(name, unit_of, tuple(m[name] for m in real), simulated[name])
                    for name, unit_of in METRICS)
    return ValidationResult(model=model, quant=quant, layers=layers, hardware=hw, profile_path=path, coefficients=coef,
                            rate_per_s=float(rate), capacity=capacity, window=window, requests=table,
                            real=tuple(runs), simulated=sim, metrics=metrics,
                            iterations=iteration_error(runs, prices, layers), notes=tuple(notes),
                            remeasured=remeasured)
