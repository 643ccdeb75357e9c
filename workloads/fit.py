"""Fitting a synthetic workload to a real trace: a :class:`workloads.WorkloadSpec` that reproduces
the trace's rate over time, its burstiness and its length distributions, as numbers a reader can
see, edit and scale (a preset, a scenario's ``workload:``), where replaying the trace could only
be sped up.

What is fitted, and why this way:

- **Rate over time**: the trace's arrivals per window (1 minute by default) become a step rate
  table (``rate_profile: {shape: table, interpolate: step}``). Steps rather than a smoothed curve
  because a serving system's queue responds to the minute-scale surges of a real trace (the Azure
  code trace has silent minutes between surges of 600 requests). Every step integrates to its
  window's count, so one generated span expects exactly the trace's number of requests and the
  profile's mean rate is the trace's by construction (to the table's four significant digits, and
  the 1/n between n / duration and the (n - 1) / duration convention). The arrivals after the
  last full window are merged into the last step. After the table's last time the rate holds the
  trace's mean rate.
- **Burstiness within windows**: a renewal process run through that profile (time rescaling, see
  :mod:`workloads.arrivals.rate_profile`). The profile already carries part of the trace's
  inter-arrival variability (silent minutes make long gaps), so the base's CV is not the trace's
  CV: it is found by a short 1-D search, with a fixed seed, so that the CV of the gaps of the
  *generated* arrivals matches the trace's. Both gamma and Weibull bases are searched and the one
  whose generated gaps are closer to the trace's in distribution (Kolmogorov-Smirnov distance) is
  kept: at a CV of 7 a gamma puts most arrivals into simultaneous clumps (its shape 1/CV² = 0.02
  makes most gaps smaller than a float can add to a time), while the Azure code trace's median
  gap is 64 ms; a Weibull of the same CV keeps a realistic body. A CV within 3% of 1 is written as
  Poisson. (An MMPP was considered and not used: at minute scale it adds over-dispersion the
  same way a bursty renewal base does, and its states would duplicate what the rate table says.)
- **Lengths**: the families a length spec can express (lognormal, normal, exponential) are fitted
  with :mod:`scipy.stats`; one is kept only if its p50, p90 and p99 and its mean are within
  ``tol`` (3%) of the trace's. Real traces are rarely that tidy (mixtures of tasks, hard caps on
  output), so the usual result is a ``quantiles`` distribution: the trace's quantile function at
  :data:`QUANTILE_KNOTS` (28 knots, p50/p90/p99 among them, dense in the tail up to 0.999 and the
  maximum), plus a few knots where a straight line would misstate a band's mean (at most 40).
- **Correlation of prompt and output length**: the trace's Spearman rank correlation rho_s is
  turned into the Gaussian copula's normal-score correlation rho = 2 sin(pi rho_s / 6), the exact
  relation for a bivariate normal.

Shared prefixes and sessions are not fitted: a trace's prefix structure (Mooncake's block hashes)
is reported by :func:`workloads.describe.describe` but has no single-class equivalent here.

The fit is checked the way it is used: a long sample of the fitted workload (the rate table
repeated end to end, about a million requests) is generated with :func:`workloads.generate` and
described like the trace (:class:`FitResult` holds both, printable side by side).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from workloads.arrivals import GammaArrivals, WeibullArrivals
from workloads.describe import WorkloadStats, describe, interarrival_cv
from workloads.lengths import ExponentialLength, LognormalLength, NormalLength, QuantileLength
from workloads.spec import WorkloadSpec
from workloads.table import generate

__all__ = ["FitError", "FitResult", "MIN_ARRIVALS", "Progress", "QUANTILE_KNOTS", "copula_rho", "fit", "fit_length",
           "rate_table", "repeat_profile"]

QUANTILE_KNOTS: tuple[float, ...] = (
    0.0, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8,
    0.85, 0.9, 0.925, 0.95, 0.975, 0.99, 0.995, 0.999, 1.0)
"""Probabilities of a fitted ``quantiles`` distribution: every 5% in the body, denser in both
tails, and the extremes, so that p50/p90/p99 are knots and the top 1% keeps its shape."""

# The CV search stays inside what each arrival spec accepts (gamma up to 100, Weibull 0.01..20).
_CV_RANGE = {"gamma": (0.05, 100.0), "weibull": (0.05, 20.0)}
_KS_TIE = 0.01  # KS distances closer than this are a tie, settled in favour of gamma (the usual choice)
_POISSON_TOL = 0.03  # a fitted base CV within 3% of 1 (|log CV| < 0.03) is written as Poisson


MIN_ARRIVALS = 100
"""Fewest arrivals (at distinct times) a trace must hold to be fitted: the fit reproduces the 99th
percentile of the lengths, which fewer than 100 requests do not determine (it would be their
maximum), and the inter-arrival CV, whose standard error is about CV / sqrt(n) (10% at 100)."""

Progress = Callable[[str, int, int], None]
"""``progress(step, done, total)``: what the fit is doing and how far it is, in units of about one
arrival draw (a quarter of a second on a trace of a few thousand requests). ``total`` is an
estimate until the burstiness searches end (each takes 2 to 12 draws), and may grow by a few."""

# Expected draws of one CV search, and the cost of the final check sample in draws (it generates
# lengths as well as arrivals: measured at about ten draws on the Azure code trace).
_EXPECTED_DRAWS = 5
_CHECK_STEPS = 10


class _Steps:
    """Counts the fit's steps and reports them to a :data:`Progress` callback."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress, self.done = progress, 0
        self.draws = {"gamma": 0, "weibull": 0}
        self.finished: set[str] = set()

    @property
    def total(self) -> int:
        searches = sum(d if p in self.finished else max(d + 1, _EXPECTED_DRAWS) for p, d in self.draws.items())
        return 2 + searches + _CHECK_STEPS  # describing and the lengths are one step each

    def say(self, step: str, advance: int = 0, draw: str | None = None) -> None:
        """Report ``step`` after ``advance`` steps more (``draw``: a draw of that CV search)."""
        self.done += advance
        if draw is not None:
            self.draws[draw] += 1
        if self.progress is not None:
            self.progress(step, self.done, max(self.total, self.done))


class FitError(ValueError):
    """A trace that cannot be fitted (too few arrivals, or all at one instant); one line."""


def _sig(x: float, digits: int = 4) -> float:
    """``x`` rounded to ``digits`` significant digits, as a plain float (YAML- and JSON-friendly)."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(round(x, digits - 1 - int(math.floor(math.log10(abs(x))))))


def _knot_value(v: float) -> float:
    """A length knot rounded for reading: one decimal below 100 tokens, whole tokens above."""
    return float(round(v, 1)) if v < 100 else float(round(v))


# ------------------------------------------------------------------------------------------------
# Arrivals


def rate_table(arrival_s: np.ndarray, window_s: float = 60.0) -> tuple[list[float], list[float]]:
    """(times_s, rates_per_s) of the step rate profile of sorted arrival times (first at 0).

    One step per full window of ``window_s`` from 0; the arrivals after the last full window
    join the last step, which is then longer. Each step's rate is its count over its length, so
    the profile integrates to the trace's n requests over its span: a generated span expects
    as many requests as the trace holds (its mean n / span differs from the (n - 1) / span of
    :func:`workloads.describe.describe` by 1/n, below any sampling noise). A last knot at the
    span's end holds the mean rate afterwards. Fewer than two full windows give the constant
    profile ``([0, span], [mean, mean])``.
    """
    t = np.asarray(arrival_s, np.float64)
    n, span = t.size, float(t[-1] - t[0])
    if n < 2 or span <= 0:
        raise ValueError(f"a rate needs at least two distinct arrival times, got {n} arrival(s) spanning {span:g} s")
    mean = n / span
    m = int(span // window_s)
    if m < 2:
        return [0.0, _sig(span, 6)], [_sig(mean), _sig(mean)]
    k = np.minimum(((t - t[0]) // window_s).astype(np.int64), m - 1)
    counts = np.bincount(k, minlength=m).astype(np.float64)
    lengths = np.full(m, window_s)
    lengths[-1] = span - window_s * (m - 1)
    rates = counts / lengths
    times = [float(window_s * i) for i in range(m)] + [_sig(span, 6)]
    return times, [_sig(r) for r in rates] + [_sig(mean)]


def repeat_profile(workload: dict[str, Any], periods: int) -> dict[str, Any]:
    """``workload`` (plain data) with its table or steps rate profile repeated ``periods`` times
    end to end, one period being the table's last time; unchanged without such a profile.

    A fitted profile covers one trace span and then holds the mean rate; a long statistical
    sample of the fitted workload (to measure its CV or its rate to 1%) needs the span repeated,
    as if the trace's hour recurred. Exact for step tables (what :func:`fit` writes); a linear
    table's last piece would ramp to the next period's first rate instead of its held last one.
    """
    if periods < 1:
        raise ValueError(f"periods = {periods}: must be >= 1")
    arrival = workload.get("arrival", {})
    prof = arrival.get("rate_profile") if isinstance(arrival, dict) else None
    if not isinstance(prof, dict) or prof.get("shape") not in ("table", "steps") or periods == 1:
        return workload
    t = np.asarray(prof["times_s"], np.float64)
    r = np.asarray(prof["rates_per_s"], np.float64)
    span = float(t[-1])
    times = (t[:-1][None, :] + span * np.arange(periods)[:, None]).ravel().tolist() + [span * periods]
    rates = np.tile(r[:-1], periods).tolist() + [float(r[-1])]
    return {**workload, "arrival": {**arrival, "rate_profile": {**prof, "times_s": times, "rates_per_s": rates}}}


def _arrival_data(process: str, cv: float, times: list[float], rates: list[float]) -> dict[str, Any]:
    profile = {"shape": "table", "interpolate": "step", "times_s": times, "rates_per_s": rates}
    if abs(math.log(cv)) < _POISSON_TOL:
        return {"process": "poisson", "rate_profile": profile}
    return {"process": process, "cv": _sig(cv, 3), "rate_profile": profile}


@dataclass(frozen=True)
class _Base:
    """The outcome of the CV search for one renewal family."""

    process: str
    cv: float
    generated_cv: float
    ks: float  # Kolmogorov-Smirnov distance between the trace's gaps and the generated ones
    draws: int


def _search_cv(process: str, target: float, gaps: np.ndarray, times: list[float], rates: list[float], periods: int,
               seed: int, steps: _Steps) -> _Base:
    """The CV of a ``process`` (gamma or weibull) renewal base whose generated inter-arrival CV,
    through the repeated profile, matches ``target``: bracketing by doubling, then the Illinois
    variant of regula falsi on log(generated CV / target) against log(CV), to 1% or twelve draws.

    Every draw uses the same seed, so the search is deterministic; the noise of one draw (about
    1-2% at a million arrivals for the burstiest trace) bounds its precision. The best draw's
    gaps are compared with the trace's ``gaps`` by the two-sample Kolmogorov-Smirnov distance.
    """
    from scipy.stats import ks_2samp  # lazy: scipy.stats takes a second to import

    model = {"gamma": GammaArrivals, "weibull": WeibullArrivals}[process]
    lo_lim, hi_lim = math.log(_CV_RANGE[process][0]), math.log(_CV_RANGE[process][1])
    span = times[-1]
    data = repeat_profile({"arrival": _arrival_data(process, 2.0, times, rates)}, periods)["arrival"]
    draws: dict[float, tuple[float, np.ndarray]] = {}

    def f(log_cv: float) -> float:
        cv = math.exp(log_cv)
        t = model.model_validate({**data, "cv": cv}).times(np.random.default_rng(seed), None, span * periods)
        got = interarrival_cv(t)
        draws[log_cv] = (got, t)
        steps.say(f"{process} base CV {cv:.3g}: gaps CV {got:.3g} (trace {target:.3g})", 1, draw=process)
        return math.log(got / target)

    a = min(max(math.log(target), lo_lim), hi_lim)
    fa = f(a)
    step = math.log(2.0) * (-1 if fa > 0 else 1)
    b, fb = a, fa
    while fb * fa > 0 and abs(fb) > 0.01:
        nb = min(max(b + step, lo_lim), hi_lim)
        if nb == b:  # the limit itself cannot reach the target: keep the closest
            break
        a, fa = b, fb
        b, fb = nb, f(nb)
    best = min(((a, fa), (b, fb)), key=lambda p: abs(p[1]))
    if fa * fb < 0:
        for _ in range(10):
            if abs(best[1]) <= 0.01:
                break
            c = b - fb * (b - a) / (fb - fa)
            fc = f(c)
            if abs(fc) < abs(best[1]):
                best = (c, fc)
            if fc * fb < 0:
                a, fa = b, fb
            else:
                fa /= 2  # Illinois: halve the retained end's value so that it, too, moves
            b, fb = c, fc
    steps.finished.add(process)
    got, t = draws[best[0]]
    sample = np.diff(t)[:: max(1, (t.size - 1) // 200_000)]  # gaps are identically distributed: thin for speed
    return _Base(process, math.exp(best[0]), got, float(ks_2samp(gaps, sample).statistic), len(draws))


# ------------------------------------------------------------------------------------------------
# Lengths


def _percentile_errors(spec: Any, values: np.ndarray) -> float:
    """Largest relative error of the spec's mean, p50, p90 and p99 against ``values``'."""
    want = np.percentile(values, [50, 90, 99])
    got = spec.quantile(np.array([0.5, 0.9, 0.99])).astype(np.float64)
    u = (np.arange(200_000) + 0.5) / 200_000  # midpoint rule: the spec's mean, deterministic
    mean_err = abs(float(spec.quantile(u).mean()) / float(values.mean()) - 1)
    return max(float(np.max(np.abs(got / want - 1))), mean_err)


def _quantile_knots(v: np.ndarray, *, mean_tol: float = 0.002, max_knots: int = 40,
                    min_band: int = 8) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Knots of a piecewise-linear quantile function for the sorted-or-not sample ``v``.

    Starts from :data:`QUANTILE_KNOTS` (so p50, p90, p99 are knots and reproduced exactly), then
    splits, at its middle probability, the band between two knots whose straight line misstates
    the mean of the data in it the most, while that misstatement exceeds ``mean_tol`` of the
    overall mean, the band holds at least ``min_band`` values and there are fewer than
    ``max_knots`` knots. A straight line over a convex tail overstates its mean; for a heavy tail
    (the Azure code trace's outputs: p99 251, max 1,899) the base knots alone would overstate the
    mean length by 3-4%, which a capacity estimate inherits.
    """
    x = np.sort(v)
    n = x.size
    cum = np.concatenate([[0.0], np.cumsum(x)])
    total = float(cum[-1])
    probs = list(QUANTILE_KNOTS)
    while len(probs) < max_knots:
        p = np.asarray(probs)
        q = np.array([_knot_value(y) for y in np.quantile(x, p)])
        # Band i holds the values of ranks [p_i n, p_{i+1} n), fractional ends by linear share.
        pos = p * n
        data_sum = np.interp(pos, np.arange(n + 1), cum)
        line_sum = (q[:-1] + q[1:]) / 2 * np.diff(pos)
        err = np.abs(line_sum - np.diff(data_sum)) / total
        err[np.diff(pos) < min_band] = 0.0
        i = int(np.argmax(err))
        if err[i] <= mean_tol:
            break
        probs.insert(i + 1, float(f"{(p[i] + p[i + 1]) / 2:.6g}"))
    q = np.quantile(x, probs)
    return tuple(probs), tuple(_knot_value(y) for y in q)


def fit_length(values: np.ndarray, *, tol: float = 0.03) -> tuple[dict[str, Any], str]:
    """(length spec data, note) for a column of token lengths.

    Candidates are the parametric families a length spec can express, fitted by maximum
    likelihood with :mod:`scipy.stats`: lognormal (its ``max`` set to the largest length seen,
    so that a fitted tail cannot send prompts longer than the trace ever did), normal and
    exponential. The best is kept if its mean, p50, p90 and p99 are all within ``tol`` of the
    data's; otherwise the data's quantile function at :data:`QUANTILE_KNOTS`.
    """
    from scipy import stats  # lazy: heavy, and only fitting needs it

    v = np.asarray(values, np.float64)
    if v.size == 0 or v.min() < 1:
        raise ValueError("token lengths must be >= 1 and there must be at least one")
    top = int(v.max())
    candidates: list[tuple[str, Any]] = []
    if v.size >= 2 and v.min() < top:
        s, _, scale = stats.lognorm.fit(v, floc=0)
        candidates.append(("lognormal", LognormalLength(dist="lognormal", mu=_sig(math.log(scale), 5),
                                                        sigma=_sig(s), max=top)))
        mu, sd = stats.norm.fit(v)
        candidates.append(("normal", NormalLength(dist="normal", mean=_sig(mu), std=_sig(sd), max=top)))
        _, mean = stats.expon.fit(v, floc=0)
        candidates.append(("exponential", ExponentialLength(dist="exponential", mean=_sig(mean), max=top)))
    scored = sorted(((_percentile_errors(spec, v), name, spec) for name, spec in candidates), key=lambda x: x[0])
    if scored and scored[0][0] <= tol:
        err, name, spec = scored[0]
        return spec.model_dump(mode="json", exclude_none=True), f"{name} (mean, p50, p90, p99 within {err:.1%})"
    probs, knots = _quantile_knots(v)
    spec = QuantileLength(dist="quantiles", probs=probs, values=knots)
    why = (f"best family {scored[0][1]} misses by {scored[0][0]:.0%}" if scored else "a single value")
    return spec.model_dump(mode="json", exclude_none=True), f"quantiles at {len(probs)} knots ({why})"


def copula_rho(spearman_rho: float) -> float:
    """The Gaussian copula's normal-score correlation giving Spearman's ``spearman_rho``:
    2 sin(pi rho_s / 6), the inverse of rho_s = (6 / pi) asin(rho / 2) for a bivariate normal."""
    if not math.isfinite(spearman_rho):
        return 0.0
    return float(np.clip(2 * math.sin(math.pi * spearman_rho / 6), -1.0, 1.0))


# ------------------------------------------------------------------------------------------------
# The result


_ROWS: tuple[tuple[str, str, bool], ...] = (
    # (label, attribute path in WorkloadStats, whether the error is relative)
    ("mean rate (req/s)", "mean_rate_per_s", True),
    ("inter-arrival CV", "interarrival_cv", True),
    ("peak/mean, 1-min windows", "peak_to_mean", True),
    ("prompt mean", "prompt.mean", True),
    ("prompt p50", "prompt.p50", True),
    ("prompt p90", "prompt.p90", True),
    ("prompt p99", "prompt.p99", True),
    ("output mean", "output.mean", True),
    ("output p50", "output.p50", True),
    ("output p90", "output.p90", True),
    ("output p99", "output.p99", True),
    ("Spearman(prompt, output)", "spearman", False),
)


def _get(stats: WorkloadStats, path: str) -> float:
    obj: Any = stats
    for part in path.split("."):
        obj = getattr(obj, part)
    return float(obj)


@dataclass(frozen=True)
class FitResult:
    """A fitted workload and how well it reproduces its trace.

    ``workload`` is :class:`workloads.WorkloadSpec` data without a stop rule (add
    ``num_requests`` or ``duration_s``); ``duration_s`` is the trace's span, which the rate
    table covers. ``trace_stats`` describes the trace; ``fit_stats`` a sample of
    ``sample_periods`` repetitions of the fitted span (seeded by ``seed``), with peak/mean
    averaged per span. ``notes`` say what was chosen for each part and why.
    """

    name: str
    path: str | None
    format: str | None
    workload: dict[str, Any]
    duration_s: float
    trace_stats: WorkloadStats
    fit_stats: WorkloadStats
    sample_periods: int
    seed: int
    notes: tuple[str, ...] = field(default=())

    def spec(self, *, num_requests: int | None = None, duration_s: float | None = None) -> WorkloadSpec:
        """The fitted :class:`workloads.WorkloadSpec` with a stop rule (one span by default)."""
        if num_requests is None and duration_s is None:
            duration_s = self.duration_s
        stop = {"num_requests": num_requests} if num_requests is not None else {"duration_s": duration_s}
        return WorkloadSpec.model_validate({**self.workload, **stop})

    def sample(self, *, periods: int | None = None, seed: int | None = None) -> pa.Table:
        """A RequestTable of ``periods`` (default: ``sample_periods``) repetitions of the fitted
        span, drawn with ``seed`` (default: the fit's): what ``fit_stats`` describes."""
        p = self.sample_periods if periods is None else periods
        data = {**repeat_profile(self.workload, p), "duration_s": self.duration_s * p}
        return generate(WorkloadSpec.model_validate(data), self.seed if seed is None else seed)

    def comparison(self) -> list[tuple[str, float, float, float]]:
        """(statistic, trace, fit, error) rows: the error is fit / trace - 1, except for the
        Spearman correlation, where it is the difference."""
        out = []
        for label, path, relative in _ROWS:
            a, b = _get(self.trace_stats, path), _get(self.fit_stats, path)
            err = (b / a - 1 if a else math.nan) if relative else b - a
            out.append((label, a, b, err))
        return out

    def to_yaml(self, *, command: str | None = None) -> str:
        """The fitted workload as YAML, with ``duration_s`` set to the trace's span so that it
        loads as it is (as a scenario's ``workload:`` mapping, or a whole workload file), under
        a comment header saying where it came from."""
        import yaml

        head = [f"# workload fitted to {self.path or 'a request table'}"
                + (f" ({self.format})" if self.format else ""),
                f"# {command}" if command else "# by workloads.fit.fit",
                "# duration_s replays one trace span; replace it with num_requests or another duration.",
                "# fit vs trace: " + ", ".join(
                    f"{label} {b:.4g} vs {a:.4g}" for label, a, b, _ in self.comparison()[:3])]
        body = yaml.safe_dump({"duration_s": _sig(self.duration_s, 6), **self.workload}, sort_keys=False,
                              default_flow_style=None, width=110)
        return "\n".join(head) + "\n" + body

    def formatted(self) -> list[tuple[str, str, str, str]]:
        """:meth:`comparison` with every number formatted for display (tables, the CLI)."""
        rows = []
        for label, a, b, err in self.comparison():
            e = f"{err:+.3f}" if label.startswith("Spearman") else f"{err:+.1%}"
            rows.append((label, _num(a), _num(b), e))
        return rows

    def __str__(self) -> str:
        rows = [("statistic", "trace", "fit", "error"), *self.formatted()]
        lines = [f"{a:<26}{b:>12}{c:>12}{d:>9}" for a, b, c, d in rows]
        return "\n".join(lines + [f"- {n}" for n in self.notes])


def _num(x: float) -> str:
    """A statistic for display: thousands grouped, four significant digits below 1,000."""
    if not math.isfinite(x):
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}"


def _name(path: str | None) -> str:
    if not path:
        return "trace"
    stem = Path(path).name
    stem = re.sub(r"(\.gz)?$", "", stem)
    stem = re.sub(r"\.[A-Za-z0-9]+$", "", stem)
    return stem or "trace"


def fit(trace: Any, *, name: str | None = None, seed: int = 0, sample_requests: int = 2_000_000,
        window_s: float = 60.0, tol: float = 0.03,
        progress: Progress | None = None) -> FitResult:
    """Fit a one-class synthetic workload to ``trace`` (a :class:`workloads.traces.Trace` or a
    table with ``arrival_s``, ``prompt_tokens`` and ``output_tokens``); see the module text.

    ``name`` names the class (default: the trace file's name). ``sample_requests`` sets the size
    of the samples the burstiness search and the check draw: the gap CV of a renewal process with
    CV c over n gaps has a relative standard error of roughly c / sqrt(n) (more with a heavy
    tail), so a CV of 13 needs about a million gaps to be measured to 1-2%. ``seed`` makes the fit
    reproducible. ``progress`` is called before and after each step with what it does and how far
    the fit is (see :data:`Progress`), for a progress bar. Takes 2-10 s. A trace with fewer than
    :data:`MIN_ARRIVALS` arrivals at distinct times is a :class:`FitError`.
    """
    steps = _Steps(progress)
    say = steps.say
    table = getattr(trace, "table", trace)
    path = getattr(trace, "path", None)
    fmt = getattr(trace, "format", None)
    if not isinstance(table, pa.Table):
        raise TypeError(f"fit() takes a Trace or a pyarrow Table, not {type(trace).__name__}")
    say("describing the trace")
    stats = describe(table, window_s=window_s)
    arrival = table.column("arrival_s").to_numpy(zero_copy_only=False).astype(np.float64)
    arrival = np.sort(arrival[np.isfinite(arrival)])
    if arrival.size < MIN_ARRIVALS or not arrival[-1] > arrival[0]:
        raise FitError(f"{path or 'table'}: cannot fit a workload to {arrival.size} arrival(s) spanning "
                       f"{stats.duration_s:g} s: need at least {MIN_ARRIVALS} arrivals at distinct times (fewer do "
                       "not determine the p99 lengths and the burstiness that the fit reproduces)")
    arrival -= arrival[0]
    notes: list[str] = []

    times, rates = rate_table(arrival, window_s)
    span = times[-1]
    periods = max(1, math.ceil(sample_requests / arrival.size))
    target = stats.interarrival_cv
    low = min(lo for lo, _ in _CV_RANGE.values())
    if target < low:  # near-regular arrivals (a synthetic trace): no base goes below the search range
        notes.append(f"arrivals: the trace's inter-arrival CV {target:.3g} is below the lowest the bases reach; "
                     f"searched for {low:g}")
        target = low
    say(f"searching a base CV for the gaps' CV {target:.3g}", 1)
    bases = [_search_cv(proc, target, np.diff(arrival), times, rates, periods, seed, steps)
             for proc in ("gamma", "weibull")]
    chosen = bases[1] if bases[1].ks < bases[0].ks - _KS_TIE else bases[0]
    arr = _arrival_data(chosen.process, chosen.cv, times, rates)
    base = "Poisson" if arr["process"] == "poisson" else f"{chosen.process} CV {arr['cv']:g}"
    notes.append(f"arrivals: {base} base through a {len(times) - 1}-step rate table ({window_s:g} s steps); "
                 + ", ".join(f"{b.process} CV {b.cv:.3g} ({b.draws} draw{'s' if b.draws != 1 else ''} of {periods} "
                             f"spans) gives gap KS distance {b.ks:.2f}" for b in bases))
    if abs(chosen.generated_cv / target - 1) > 0.05:
        notes.append(f"arrivals: the closest {chosen.process} CV the search reached gives inter-arrival CV "
                     f"{chosen.generated_cv:.3g}, not the trace's {target:.3g}")

    say("fitting lengths")
    prompt = table.column("prompt_tokens").to_numpy(zero_copy_only=False)
    output = table.column("output_tokens").to_numpy(zero_copy_only=False)
    prompt_spec, prompt_note = fit_length(prompt, tol=tol)
    output_spec, output_note = fit_length(output, tol=tol)
    notes.append(f"prompt tokens: {prompt_note}")
    notes.append(f"output tokens: {output_note}")
    rho = round(copula_rho(stats.spearman), 3)
    notes.append(f"length correlation: Spearman {stats.spearman:+.3f} -> copula rho {rho:+.3f}")
    if stats.prefix_share is not None:
        notes.append(f"not fitted: {stats.prefix_share:.0%} of prompt tokens sit in shared prefixes in the trace; "
                     "the fitted class has none")

    cls: dict[str, Any] = {"name": name or _name(path), "prompt_tokens": prompt_spec, "output_tokens": output_spec}
    if rho != 0:
        cls["length_correlation"] = rho
    workload = {"arrival": arr, "classes": [cls]}
    WorkloadSpec.model_validate({**workload, "duration_s": span})  # fail here, not in a user's scenario

    say(f"checking on {periods * arrival.size:,} requests", 1)
    sample = generate(WorkloadSpec.model_validate({**repeat_profile(workload, periods), "duration_s": span * periods}),
                      seed)
    fit_stats = describe(sample, window_s=window_s, period_s=span)
    say("done", _CHECK_STEPS)
    return FitResult(name=cls["name"], path=path, format=fmt, workload=workload, duration_s=span,
                     trace_stats=stats, fit_stats=fit_stats, sample_periods=periods, seed=seed, notes=tuple(notes))
