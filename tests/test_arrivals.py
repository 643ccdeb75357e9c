"""Arrival processes (`workloads.arrivals`) against the distributions they claim to draw from.

What is checked, and how strict:

- Renewal processes (Poisson, Gamma, Weibull at CV 0.5, 1, 2, 4): the mean rate and the gaps' CV
  within four standard errors (the CV's from the delta method on the implied distribution's first
  four moments, so a heavy tail widens its own tolerance and nothing else does), and a KS test of
  the gaps against ``scipy.stats`` with the implied parameters. Gaps are differences of float
  arrival times, which cannot resolve gaps far below a millionth of the mean (at CV 4 about a
  fifth of all Gamma gaps are under 1e-11 s, over a third under a millionth of the mean gap), so
  gaps below that floor are counted against the CDF (binomial z-score) and the KS test runs on
  the rest, against the distribution conditioned on exceeding the floor.
- MMPP: the long-run count against the CTMC's asymptotic count variance, and the index of
  dispersion of counts against its closed form for two states; equal rates give Poisson counts;
  the first state is drawn from the stationary law (checked over 2,000 seeds).
- Rate profiles (steps, ramp, linear and step tables, diurnal), Poisson base: counts per window
  against ∫λ computed here by quadrature (or, for the diurnal curve, its cosine in closed form),
  chi-square with one degree of freedom per window; a bursty Gamma base keeps the mean profile.
  `Knots` is checked by a hypothesis property: Λ and Λ⁻¹ invert each other and Λ matches
  quadrature of ``rate_at``.
- Trace replay of a small Azure-2023 CSV written here; determinism of ``generate``.

Every statistical check uses a fixed seed, so each passes or fails the same way on every run.
Thresholds: z-scores within 4 (a correct generator fails one with probability 6e-5) and
p-values above 1e-3 (probability 1e-3 per test). The sample sizes are chosen so that small
errors fail: on the diurnal check, moving the peak by 10 s of a 600 s period gives p ≈ 1e-25 and
raising the peak-to-trough ratio by 10% gives p ≈ 3e-4; an MMPP with fixed instead of exponential
sojourns is 600 standard errors off the dispersion formula.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from scipy import integrate, optimize, stats

from workloads import WorkloadSpec, generate
from workloads.arrivals import ArrivalSpec, DiurnalRate, MMPPArrivals
from workloads.arrivals.rate_profile import Knots

Z = 4.0  # z-score bound: two-sided tail probability 6e-5 under a correct implementation
P_MIN = 1e-3  # p-value floor for KS and chi-square tests

_ARRIVAL = TypeAdapter(ArrivalSpec)
_FIXED = {"dist": "fixed", "value": 8}


def arrival(**data: Any) -> Any:
    """An arrival spec from keyword data (a mapping without ``process`` is Poisson)."""
    return _ARRIVAL.validate_python(data)


def workload(arrival_data: dict[str, Any], **stop: Any) -> WorkloadSpec:
    """One class of fixed 8-token requests with the given arrival process and stop rule."""
    return WorkloadSpec.model_validate({
        "arrival": arrival_data, **stop,
        "classes": [{"name": "x", "prompt_tokens": _FIXED, "output_tokens": _FIXED}]})


def arrivals_of(table: pa.Table) -> np.ndarray:
    return table.column("arrival_s").to_numpy()


def chi2_p(observed: np.ndarray, expected: np.ndarray, df: int) -> float:
    """p-value of Σ(O−E)²/E against chi-square with ``df`` degrees of freedom."""
    stat = float(((observed - expected) ** 2 / expected).sum())
    return float(stats.chi2.sf(stat, df))


# ----------------------------------------------------------------------------------------------
# Poisson


def test_poisson_gaps_are_exponential_at_the_set_rate():
    rate, n = 7.5, 50_000
    t = arrival(rate_per_s=rate).times(np.random.default_rng(1), n, None)
    assert t.size == n and np.all(np.diff(t) >= 0) and t[0] >= 0
    gaps = np.diff(t, prepend=0.0)  # the first arrival is one gap after 0
    assert stats.kstest(gaps, stats.expon(scale=1 / rate).cdf).pvalue > P_MIN
    # The same through a workload spec: generate's arrival column is Poisson too.
    table = generate(workload({"process": "poisson", "rate_per_s": rate}, num_requests=n), seed=2)
    gaps = np.diff(arrivals_of(table), prepend=0.0)
    assert stats.kstest(gaps, stats.expon(scale=1 / rate).cdf).pvalue > P_MIN


@pytest.mark.parametrize("seed", range(5))
def test_poisson_count_in_a_duration_is_rate_times_duration(seed):
    rate, duration = 12.0, 5_000.0
    table = generate(workload({"rate_per_s": rate}, duration_s=duration), seed=seed)
    t = arrivals_of(table)
    assert t.max() < duration and t.min() >= 0
    mean = rate * duration  # Poisson count: variance = mean
    assert abs(t.size - mean) < Z * math.sqrt(mean), f"{t.size} arrivals, expected {mean:.0f} ± {math.sqrt(mean):.0f}"


# ----------------------------------------------------------------------------------------------
# Gamma and Weibull renewal processes


def _weibull_shape(cv: float) -> float:
    """The Weibull shape with this CV, solved here with scipy's own moments (independently of
    ``workloads.arrivals.renewal.weibull_shape_for_cv``)."""
    return optimize.brentq(lambda k: stats.weibull_min(k).std() / stats.weibull_min(k).mean() - cv, 0.05, 50)


def _implied(process: str, cv: float, rate: float) -> Any:
    """The frozen scipy distribution of gaps with mean 1/rate and the given CV."""
    if process == "gamma":
        a = 1 / cv**2
        return stats.gamma(a, scale=1 / (a * rate))
    k = _weibull_shape(cv)
    return stats.weibull_min(k, scale=1 / (rate * math.gamma(1 + 1 / k)))


def _cv_standard_error(dist: Any, n: int) -> float:
    """Delta-method standard error of the sample CV sqrt(m2 - m1²)/m1 from n draws of ``dist``."""
    mu = [float(dist.moment(r)) for r in (1, 2, 3, 4)]
    cov = np.array([[mu[1] - mu[0] ** 2, mu[2] - mu[0] * mu[1]],
                    [mu[2] - mu[0] * mu[1], mu[3] - mu[1] ** 2]])
    v = mu[1] - mu[0] ** 2
    grad = np.array([-1 / math.sqrt(v) - math.sqrt(v) / mu[0] ** 2, 1 / (2 * math.sqrt(v) * mu[0])])
    return math.sqrt(grad @ cov @ grad / n)


@pytest.mark.parametrize("process", ["gamma", "weibull"])
@pytest.mark.parametrize("cv", [0.5, 1.0, 2.0, 4.0])
def test_renewal_rate_cv_and_gap_distribution(process, cv):
    rate, n = 2.5, 400_000
    spec = arrival(process=process, cv=cv, rate_per_s=rate)
    t = spec.times(np.random.default_rng(int(cv * 10) + len(process)), n, None)
    gaps = np.diff(t, prepend=0.0)
    dist = _implied(process, cv, rate)
    # Mean rate: the mean gap has standard error CV/(rate·sqrt(n)).
    rel = t[-1] * rate / n - 1
    assert abs(rel) < Z * cv / math.sqrt(n), f"mean gap off by {rel:+.2%}"
    # Gap CV, within four delta-method standard errors.
    se = _cv_standard_error(dist, n)
    got = gaps.std() / gaps.mean()
    assert abs(got - cv) < Z * se, f"CV {got:.4f} vs {cv} (SE {se:.4f})"
    # Shape: gaps under the float resolution floor are counted, the rest KS-tested.
    floor = 1e-6 / rate
    p_low = float(dist.cdf(floor))
    low = int((gaps <= floor).sum())
    assert abs(low - n * p_low) <= Z * math.sqrt(n * p_low * (1 - p_low)) + 1
    above = gaps[gaps > floor]
    cond_cdf = lambda x: (dist.cdf(x) - p_low) / (1 - p_low)  # noqa: E731
    assert stats.kstest(above, cond_cdf).pvalue > P_MIN


def test_renewal_through_generate_matches_the_implied_gamma():
    table = generate(workload({"process": "gamma", "cv": 2.0, "rate_per_s": 4.0}, num_requests=100_000), seed=3)
    gaps = np.diff(arrivals_of(table), prepend=0.0)
    dist = _implied("gamma", 2.0, 4.0)
    p_low = float(dist.cdf(1e-6 / 4.0))
    assert stats.kstest(gaps[gaps > 1e-6 / 4.0], lambda x: (dist.cdf(x) - p_low) / (1 - p_low)).pvalue > P_MIN


def test_weibull_shape_solver_matches_scipy():
    from workloads.arrivals.renewal import weibull_shape_for_cv

    for cv in (0.05, 0.5, 1.0, 2.0, 4.0, 10.0):
        assert weibull_shape_for_cv(cv) == pytest.approx(_weibull_shape(cv), rel=1e-6)


# ----------------------------------------------------------------------------------------------
# Markov-modulated Poisson


def _mmpp(rates: list[float], durations: list[float]) -> MMPPArrivals:
    return arrival(process="mmpp", states=[{"rate_per_s": r, "mean_duration_s": d} for r, d in zip(rates, durations)])


def _mmpp_asymptotic_variance_rate(rates: list[float], durations: list[float]) -> float:
    """lim Var N(T) / T for the cyclic MMPP: λ̄ + 2 (πΛ) D λ, with D = (1π − Q)⁻¹ − 1π the CTMC's
    deviation matrix (Q: leave state i at rate 1/dᵢ for state i+1 mod k)."""
    lam, d = np.asarray(rates, float), np.asarray(durations, float)
    k = lam.size
    q = np.zeros((k, k))
    for i in range(k):
        q[i, i], q[i, (i + 1) % k] = -1 / d[i], 1 / d[i]
    pi = d / d.sum()
    one_pi = np.outer(np.ones(k), pi)
    dev = np.linalg.inv(one_pi - q) - one_pi
    return float(pi @ lam + 2 * (pi * lam) @ dev @ lam)


def _idc_with_se(counts: np.ndarray) -> tuple[float, float]:
    """Index of dispersion Var/mean of window counts, and its standard error (the sample
    variance's, from the counts' own fourth central moment)."""
    m, v = counts.mean(), counts.var(ddof=1)
    m4 = ((counts - m) ** 4).mean()
    return float(v / m), float(math.sqrt(max(m4 - v * v, 0.0) / counts.size) / m)


def test_mmpp_two_states_rate_and_dispersion_match_theory():
    l1, l2, d1, d2 = 20.0, 2.0, 1.0, 4.0
    spec = _mmpp([l1, l2], [d1, d2])
    mean = (l1 * d1 + l2 * d2) / (d1 + d2)
    assert spec.mean_rate_per_s == pytest.approx(mean, rel=1e-12)
    duration = 200_000.0
    t = spec.times(np.random.default_rng(11), None, duration)
    assert t.max() < duration and np.all(np.diff(t) >= 0)
    # Long-run count: variance from the asymptotic variance rate (duration·γ = 250,000 ≫ 1).
    sd = math.sqrt(_mmpp_asymptotic_variance_rate([l1, l2], [d1, d2]) * duration)
    assert abs(t.size - mean * duration) < Z * sd
    # Index of dispersion of counts in windows of T s (Heffes & Lucantoni's two-state form):
    # 1 + 2 p1 p2 (λ1−λ2)² / (λ̄ γ) · [1 − (1 − e^{−γT}) / (γT)], γ = 1/d1 + 1/d2. Windows of
    # 50 s are 62 mean sojourn cycles long, so adjacent window counts are nearly uncorrelated.
    window = 50.0
    g, p1 = 1 / d1 + 1 / d2, d1 / (d1 + d2)
    theory = 1 + 2 * p1 * (1 - p1) * (l1 - l2) ** 2 / (mean * g) * (1 - (1 - math.exp(-g * window)) / (g * window))
    counts = np.bincount((t // window).astype(np.int64), minlength=int(duration / window))
    idc, se = _idc_with_se(counts)
    assert idc > 10, "two rates 10x apart must give strongly over-dispersed counts"
    assert abs(idc - theory) < Z * se, f"IDC {idc:.3f} vs {theory:.3f} (SE {se:.3f})"
    # The asymptotic variance rate agrees with the closed form's limit (checks the helper).
    assert _mmpp_asymptotic_variance_rate([l1, l2], [d1, d2]) == pytest.approx(
        mean + 2 * p1 * (1 - p1) * (l1 - l2) ** 2 / g, rel=1e-9)


def test_mmpp_three_states_long_run_rate():
    rates, durations = [0.0, 10.0, 3.0], [2.0, 1.0, 3.0]
    spec = _mmpp(rates, durations)
    mean = 19 / 6  # (0·2 + 10·1 + 3·3) / 6
    assert spec.mean_rate_per_s == pytest.approx(mean, rel=1e-12)
    duration = 100_000.0
    for seed in range(3):
        n = spec.times(np.random.default_rng(seed), None, duration).size
        sd = math.sqrt(_mmpp_asymptotic_variance_rate(rates, durations) * duration)
        assert abs(n - mean * duration) < Z * sd, f"seed {seed}: {n} arrivals vs {mean * duration:.0f} ± {sd:.0f}"
    # n-based: exactly n times, sorted, at the same long-run rate.
    t = spec.times(np.random.default_rng(7), 200_000, None)
    assert t.size == 200_000 and np.all(np.diff(t) >= 0)
    sd_t = math.sqrt(_mmpp_asymptotic_variance_rate(rates, durations) * t[-1])
    assert abs(t.size - mean * t[-1]) < Z * sd_t


def test_mmpp_equal_rates_is_poisson():
    spec = _mmpp([5.0, 5.0], [1.0, 3.0])
    t = spec.times(np.random.default_rng(4), None, 100_000.0)
    counts = np.bincount((t // 10.0).astype(np.int64), minlength=10_000)
    idc, se = _idc_with_se(counts)
    assert abs(idc - 1) < Z * se, f"IDC {idc:.3f}, expected 1 (SE {se:.3f})"
    assert stats.kstest(np.diff(t), stats.expon(scale=0.2).cdf).pvalue > P_MIN


def test_mmpp_starts_in_the_stationary_state():
    # On (1000/s for 1 s on average) and off (3 s): it must start "on" a quarter of the time, so
    # a quarter of runs see their first arrival within 10 ms (plus the 0.25% that start off and
    # leave it within those 10 ms, bounded by P(off sojourn < 10 ms) = 1 − e^(−1/300)).
    spec = _mmpp([1000.0, 0.0], [1.0, 3.0])
    seeds = 2000
    early = sum(spec.times(np.random.default_rng(s), 1, None)[0] < 0.01 for s in range(seeds))
    p = 0.25 + 0.75 * (1 - math.exp(-0.01 / 3.0))
    assert abs(early - seeds * p) < Z * math.sqrt(seeds * p * (1 - p)), f"{early} of {seeds} started on"


# ----------------------------------------------------------------------------------------------
# Rate profiles


def _quad_cum(rate: Callable[[float], float], breaks: list[float]) -> Callable[[float, float], float]:
    """Λ(a, b) = ∫ₐᵇ rate by adaptive quadrature, split at the rate's breakpoints."""
    def cum(a: float, b: float) -> float:
        pts = [a] + [x for x in breaks if a < x < b] + [b]
        return sum(integrate.quad(rate, lo, hi, limit=200)[0] for lo, hi in zip(pts[:-1], pts[1:]))
    return cum


def _table_rate(times: list[float], rates: list[float], step: bool) -> Callable[[float], float]:
    def rate(t: float) -> float:
        if step:
            return rates[max(i for i, x in enumerate(times) if x <= t)]
        return float(np.interp(t, times, rates))
    return rate


def _diurnal_cum(mean: float, ratio: float, period: float, peak: float) -> Callable[[float, float], float]:
    """Closed-form ∫ of mean·(1 + A cos(2π(t − peak)/period)), A = (ratio − 1)/(ratio + 1)."""
    a = (ratio - 1) / (ratio + 1)
    w = 2 * math.pi / period

    def cum(lo: float, hi: float) -> float:
        return mean * ((hi - lo) + a / w * (math.sin(w * (hi - peak)) - math.sin(w * (lo - peak))))
    return cum


_STEPS = ([0.0, 100.0, 250.0, 400.0], [20.0, 60.0, 5.0, 40.0])
_TABLE = ([0.0, 120.0, 300.0, 420.0], [30.0, 90.0, 0.0, 50.0])
# name -> (rate_profile data, duration s, window s, Λ(a, b) computed independently)
PROFILES = {
    "steps": ({"shape": "steps", "times_s": _STEPS[0], "rates_per_s": _STEPS[1]}, 600.0, 25.0,
              _quad_cum(_table_rate(*_STEPS, step=True), _STEPS[0])),
    "ramp": ({"shape": "ramp", "from_rate_per_s": 10.0, "to_rate_per_s": 80.0, "start_s": 100.0, "over_s": 300.0},
             600.0, 25.0, _quad_cum(_table_rate([0.0, 100.0, 400.0], [10.0, 10.0, 80.0], step=False), [100.0, 400.0])),
    "table_linear": ({"shape": "table", "times_s": _TABLE[0], "rates_per_s": _TABLE[1]}, 600.0, 25.0,
                     _quad_cum(_table_rate(*_TABLE, step=False), _TABLE[0])),
    "table_step": ({"shape": "table", "times_s": _TABLE[0], "rates_per_s": _TABLE[1], "interpolate": "step"},
                   600.0, 25.0, _quad_cum(_table_rate(*_TABLE, step=True), _TABLE[0])),
    # The curve is drawn as 1,440 linear pieces per period: relative error ~ (2π/1440)²/12 ≈ 2e-6,
    # far below the Poisson noise of ~800 arrivals per window (3.5%).
    "diurnal": ({"shape": "diurnal", "mean_rate_per_s": 40.0, "peak_to_trough": 5.0, "period_s": 600.0,
                 "peak_at_s": 150.0}, 1800.0, 20.0, _diurnal_cum(40.0, 5.0, 600.0, 150.0)),
}


@pytest.mark.parametrize("name", list(PROFILES))
def test_poisson_counts_per_window_follow_the_profile(name):
    profile, duration, window, cum = PROFILES[name]
    table = generate(workload({"rate_profile": profile}, duration_s=duration), seed=21)
    t = arrivals_of(table)
    assert t.max() < duration and np.all(np.diff(t) >= 0)
    edges = np.arange(0.0, duration + window / 2, window)
    observed = np.histogram(t, edges)[0]
    expected = np.array([cum(a, b) for a, b in zip(edges[:-1], edges[1:])])
    zero = expected == 0
    assert observed[zero].sum() == 0, "arrivals in a window where the rate is 0"
    # A non-homogeneous Poisson process: window counts are independent Poisson(∫λ).
    assert chi2_p(observed[~zero], expected[~zero], int((~zero).sum())) > P_MIN
    assert abs(t.size - expected.sum()) < Z * math.sqrt(expected.sum())


def test_bursty_base_follows_the_profile_mean():
    # Gamma gaps with CV 2 in operational time: a window's count is a renewal count in operational
    # time, variance ≈ CV²·E (windows hold 100s to 1000s of arrivals, so the asymptotic form holds).
    profile, duration, window, cum = PROFILES["steps"]
    t = arrivals_of(generate(workload({"process": "gamma", "cv": 2.0, "rate_profile": profile},
                                      duration_s=duration), seed=5))
    edges = np.arange(0.0, duration + window / 2, window)
    observed = np.histogram(t, edges)[0]
    expected = np.array([cum(a, b) for a, b in zip(edges[:-1], edges[1:])])
    zsq = (observed - expected) ** 2 / (4.0 * expected)
    assert stats.chi2.sf(zsq.sum(), expected.size) > P_MIN


def _knots_strategy() -> st.SearchStrategy[tuple[list[float], list[float], bool, bool]]:
    rate = st.one_of(st.just(0.0), st.floats(0.1, 100.0))
    return st.tuples(
        st.lists(st.floats(0.05, 50.0), min_size=0, max_size=6),  # gaps between knots
        st.lists(rate, min_size=7, max_size=7),
        st.booleans(),  # step
        st.booleans(),  # periodic
    )


def _knots(draw: tuple[list[float], list[float], bool, bool]) -> Knots | None:
    gaps, rates, step, periodic = draw
    t = np.concatenate([[0.0], np.cumsum(gaps)])
    r = np.asarray(rates[: t.size])
    periodic = periodic and t.size > 1
    if not periodic and r[-1] == 0:
        r[-1] = 1.0  # a non-periodic profile must end above 0 for Λ⁻¹ to cover [0, ∞)
    k = Knots(t, r, step=step, period=float(t[-1]) if periodic else None)
    if periodic and k.cum[-1] <= 0:
        return None
    return k


def _rate_breaks(k: Knots, upto: float) -> list[float]:
    if k.period is None:
        return [float(x) for x in k.t]
    reps = int(upto // k.period) + 2
    return [float(x + j * k.period) for j in range(reps) for x in k.t]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_knots_strategy(), st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8))
def test_knots_cumulative_and_inverse_are_inverses_and_integrate_rate_at(draw, fractions):
    k = _knots(draw)
    if k is None:
        return
    # Three and a half periods of a periodic profile; past the last knot for one that holds its rate.
    horizon = 3.5 * k.span if k.period is not None else 2 * k.span + 10.0
    t = np.asarray(fractions) * horizon
    lam = k.cumulative(t)
    # Λ is ∫₀ᵗ rate_at, by quadrature between breakpoints.
    rate = lambda x: float(k.rate_at(np.array([x]))[0])  # noqa: E731
    ref = np.array([_quad_cum(rate, _rate_breaks(k, x))(0.0, float(x)) for x in t])
    np.testing.assert_allclose(lam, ref, rtol=1e-9, atol=1e-9)
    # Λ is non-decreasing, and Λ(Λ⁻¹(s)) = s everywhere on [0, Λ(horizon)].
    order = np.argsort(t)
    assert np.all(np.diff(lam[order]) >= -1e-9)
    s = np.asarray(fractions) * float(k.cumulative(np.array([horizon]))[0])
    np.testing.assert_allclose(k.cumulative(k.inverse(s)), s, rtol=1e-9, atol=1e-9)
    # Where the rate is positive Λ is strictly increasing, so Λ⁻¹(Λ(t)) = t there, to within the
    # rounding of Λ (a few ulps of its value) divided by the rate.
    rate_t = k.rate_at(t)
    back = k.inverse(lam)
    live = rate_t >= 0.05
    tol = 1e-12 * (1 + lam[live]) / rate_t[live] + 1e-12 * (1 + t[live])
    assert np.all(np.abs(back[live] - t[live]) <= tol), (back[live], t[live])
    # Inside an idle stretch (rate 0 between knots) Λ⁻¹(Λ(t)) may be any point of that stretch
    # (which end is a matter of rounding): Λ takes the same value there.
    np.testing.assert_allclose(k.cumulative(back), lam, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("mean, ratio, period, peak", [
    (40.0, 5.0, 600.0, 150.0), (3.0, 1.0, 86_400.0, 50_400.0), (0.5, 12.0, 86_400.0, 3_600.0),
    (7.0, 2.0, 1_000.0, 1_700.0),  # peak given past the period: the cosine is periodic
])
def test_diurnal_mean_and_peak_to_trough(mean, ratio, period, peak):
    spec = DiurnalRate(shape="diurnal", mean_rate_per_s=mean, peak_to_trough=ratio, period_s=period, peak_at_s=peak)
    k = spec.knots()
    for m in (1, 3):
        assert float(k.cumulative(np.array([m * period]))[0]) == pytest.approx(m * mean * period, rel=1e-9)
    # A period starting anywhere holds mean·period arrivals.
    for start in (0.1 * period, 0.77 * period):
        span = k.cumulative(np.array([start, start + period]))
        assert float(span[1] - span[0]) == pytest.approx(mean * period, rel=1e-9)
    # Peak over trough: sampled densely, to within the 1,440-piece drawing's error (≤ 3e-6 relative).
    grid = np.linspace(0, period, 20_001)
    r = k.rate_at(grid)
    assert r.max() / r.min() == pytest.approx(ratio, rel=1e-5)
    assert float(k.rate_at(np.array([peak]))[0]) == pytest.approx(r.max(), rel=1e-5)
    assert float(k.rate_at(np.array([peak + period / 2]))[0]) == pytest.approx(r.min(), rel=1e-5)
    assert arrival(rate_profile=spec.model_dump()).mean_rate_per_s == pytest.approx(mean, rel=1e-9)


@pytest.mark.parametrize("data", [
    {"rate_per_s": 3.0},
    {"process": "gamma", "cv": 2.0, "rate_per_s": 3.0},
    {"process": "weibull", "cv": 0.5, "rate_profile": {"shape": "steps", "times_s": [0, 50], "rates_per_s": [1, 6]}},
    {"rate_profile": {"shape": "diurnal", "mean_rate_per_s": 3.0, "peak_to_trough": 4.0, "period_s": 100.0}},
], ids=["poisson", "gamma", "weibull_steps", "poisson_diurnal"])
def test_duration_and_count_generation_agree_on_the_prefix(data):
    duration = 500.0
    by_time = arrivals_of(generate(workload(data, duration_s=duration), seed=9))
    by_count = arrivals_of(generate(workload(data, num_requests=by_time.size + 1), seed=9))
    np.testing.assert_allclose(by_count[:-1], by_time, rtol=1e-12)
    assert by_count[-1] >= duration


@pytest.mark.parametrize("profile", [
    {"shape": "steps", "times_s": [0, 10], "rates_per_s": [5, 0]},
    {"shape": "table", "times_s": [0, 10], "rates_per_s": [10, 0]},
])
def test_profile_ending_at_zero_with_num_requests_is_a_one_line_error(profile):
    spec = workload({"rate_profile": profile}, num_requests=500)
    with pytest.raises(ValueError, match=r"ends at 0 requests/s after 50 expected arrivals.*give duration_s") as e:
        generate(spec, seed=0)
    assert "\n" not in str(e.value)
    # With a duration instead, the arrivals stop where the rate does.
    t = arrivals_of(generate(workload({"rate_profile": profile}, duration_s=100.0), seed=0))
    assert t.size > 0 and t.max() < 10.0


# ----------------------------------------------------------------------------------------------
# Trace replay (Azure 2023 format)

_BASE = datetime(2023, 11, 16, 18, 17, 3)
_BASE_TICKS = 9_799_600  # the 7-digit fraction of the first timestamp, in 100 ns ticks


def _azure_csv(path: Path, rows: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Write an Azure-2023-style CSV; return (arrival_s relative to the first, prompt, output)."""
    rng = np.random.default_rng(seed)
    ticks = np.concatenate([[0], np.cumsum(rng.integers(1_000_000, 30_000_000, rows - 1))])  # 0.1 to 3 s
    prompt, output = rng.integers(1, 5000, rows), rng.integers(1, 800, rows)
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for tk, p, o in zip(ticks.tolist(), prompt.tolist(), output.tolist()):
        whole, frac = divmod(_BASE_TICKS + tk, 10_000_000)
        stamp = (_BASE + timedelta(seconds=whole)).strftime("%Y-%m-%d %H:%M:%S") + f".{frac:07d}"
        lines.append(f"{stamp},{p},{o}")
    path.write_text("\n".join(lines) + "\n")
    return ticks * 1e-7, prompt, output


def _trace_workload(path: Path, classes: list[dict[str, Any]] | None = None, **arrival_kw: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"arrival": {"process": "trace", "path": str(path), **arrival_kw}}
    if classes is not None:
        data["classes"] = classes
    return data


def _gen(data: dict[str, Any], seed: int = 0, **stop: Any) -> pa.Table:
    return generate(WorkloadSpec.model_validate({**data, **stop}), seed)


def test_trace_replay_keeps_times_and_lengths(tmp_path):
    t, prompt, output = _azure_csv(tmp_path / "code.csv")
    table = _gen(_trace_workload(tmp_path / "code.csv"), num_requests=t.size)
    np.testing.assert_allclose(arrivals_of(table), t, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(table.column("prompt_tokens").to_numpy(), prompt)
    np.testing.assert_array_equal(table.column("output_tokens").to_numpy(), output)


def test_trace_speedup_halves_every_gap(tmp_path):
    t, _, _ = _azure_csv(tmp_path / "code.csv")
    base = arrivals_of(_gen(_trace_workload(tmp_path / "code.csv"), num_requests=t.size))
    fast = arrivals_of(_gen(_trace_workload(tmp_path / "code.csv", speedup=2.0), num_requests=t.size))
    np.testing.assert_allclose(np.diff(fast), np.diff(base) / 2, rtol=1e-12, atol=1e-12)
    assert fast[0] == base[0] == 0.0


def test_trace_rate_per_s_rescales_to_the_target_mean_rate(tmp_path):
    t, _, _ = _azure_csv(tmp_path / "code.csv")
    got = arrivals_of(_gen(_trace_workload(tmp_path / "code.csv", rate_per_s=3.0), num_requests=t.size))
    assert (got.size - 1) / (got[-1] - got[0]) == pytest.approx(3.0, rel=1e-9)
    np.testing.assert_allclose(got / got[-1], t / t[-1], rtol=1e-9, atol=1e-12)  # same shape, new scale


def test_trace_loop_repeats_one_mean_gap_apart(tmp_path):
    t, prompt, _ = _azure_csv(tmp_path / "code.csv")
    rows, mean_gap = t.size, t[-1] / (t.size - 1)
    n = rows * 5 // 2
    table = _gen(_trace_workload(tmp_path / "code.csv", loop=True), num_requests=n)
    got = arrivals_of(table)
    assert got.size == n and np.all(np.diff(got) > 0)
    period = t[-1] + mean_gap
    np.testing.assert_allclose(got[rows:2 * rows], got[:rows] + period, rtol=1e-12)
    assert got[rows] - got[rows - 1] == pytest.approx(mean_gap, rel=1e-9)
    np.testing.assert_array_equal(table.column("prompt_tokens").to_numpy(), np.tile(prompt, 3)[:n])
    # By duration: every copy that starts before it, cut at it.
    duration = 2.3 * period
    by_time = arrivals_of(_gen(_trace_workload(tmp_path / "code.csv", loop=True), duration_s=duration))
    expected = np.concatenate([t + k * period for k in range(3)])
    np.testing.assert_allclose(by_time, expected[expected < duration], rtol=1e-12, atol=1e-9)


def test_trace_lengths_from_classes(tmp_path):
    t, _, _ = _azure_csv(tmp_path / "code.csv")
    classes = [{"name": "a", "prompt_tokens": {"dist": "fixed", "value": 7},
                "output_tokens": {"dist": "fixed", "value": 9}},
               {"name": "b", "share": 3.0, "prompt_tokens": {"dist": "fixed", "value": 70},
                "output_tokens": {"dist": "fixed", "value": 90}}]
    table = _gen(_trace_workload(tmp_path / "code.csv", classes, lengths="classes"), num_requests=t.size)
    np.testing.assert_allclose(arrivals_of(table), t, rtol=0, atol=1e-6)
    cls = np.asarray(table.column("class").to_pylist())
    prompt, output = table.column("prompt_tokens").to_numpy(), table.column("output_tokens").to_numpy()
    assert set(cls) == {"a", "b"}
    np.testing.assert_array_equal(prompt, np.where(cls == "a", 7, 70))
    np.testing.assert_array_equal(output, np.where(cls == "a", 9, 90))


# ----------------------------------------------------------------------------------------------
# Determinism

_MIX = {
    "arrival": {"process": "gamma", "cv": 3.0, "rate_per_s": 5.0}, "num_requests": 5_000,
    "classes": [
        {"name": "chat", "share": 2.0, "prompt_tokens": {"dist": "lognormal", "mean": 800, "p99": 6000},
         "output_tokens": {"dist": "exponential", "mean": 200}, "length_correlation": 0.4},
        {"name": "rag", "prompt_tokens": {"dist": "uniform", "low": 1000, "high": 4000},
         "output_tokens": {"dist": "normal", "mean": 150, "std": 50},
         "sessions": {"turns": {"dist": "uniform", "low": 1, "high": 4}},
         "system_prompt": {"tokens": {"dist": "fixed", "value": 300}, "variants": 3}},
    ],
}


def ipc_bytes(table: pa.Table) -> bytes:
    """The table serialised as Arrow IPC: equal bytes mean equal schema and values, NaN included
    (``Table.equals`` calls two tables with NaN in the same place different)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def test_same_spec_and_seed_give_an_identical_table_and_another_seed_does_not():
    # Without sessions every column is NaN-free and ``Table.equals`` applies directly.
    single = dict(_MIX, classes=[_MIX["classes"][0]])
    a = generate(WorkloadSpec.model_validate(single), 17, max_context=8192)
    assert a.equals(generate(WorkloadSpec.model_validate(single), 17, max_context=8192))
    assert not a.equals(generate(WorkloadSpec.model_validate(single), 18, max_context=8192))
    # With sessions (NaN arrival_s for later turns): byte-identical Arrow IPC.
    spec = WorkloadSpec.model_validate(_MIX)
    b = generate(spec, 17, max_context=8192)
    assert ipc_bytes(b) == ipc_bytes(generate(WorkloadSpec.model_validate(_MIX), 17, max_context=8192))
    c = generate(spec, 18, max_context=8192)
    assert not np.array_equal(b.column("arrival_s").to_numpy()[:100], c.column("arrival_s").to_numpy()[:100],
                              equal_nan=True)


def test_changing_one_class_lengths_leaves_arrivals_and_other_classes_alone():
    base = generate(WorkloadSpec.model_validate(_MIX), 17)
    changed = dict(_MIX, classes=[_MIX["classes"][0], {**_MIX["classes"][1],
                                                       "prompt_tokens": {"dist": "fixed", "value": 50}}])
    other = generate(WorkloadSpec.model_validate(changed), 17)
    np.testing.assert_array_equal(base.column("arrival_s").to_numpy(), other.column("arrival_s").to_numpy())
    for name in ("class", "session_id", "after_id", "think_s"):
        assert base.column(name).equals(other.column(name)), name
    chat = np.asarray(base.column("class").to_pylist()) == "chat"
    for name in ("prompt_tokens", "output_tokens"):
        np.testing.assert_array_equal(base.column(name).to_numpy()[chat], other.column(name).to_numpy()[chat])
    rag = ~chat
    assert not np.array_equal(base.column("prompt_tokens").to_numpy()[rag],
                              other.column("prompt_tokens").to_numpy()[rag])


# ----------------------------------------------------------------------------------------------
# Bad input: no type coercion, no absurd sizes, no empty workloads (issue 16)


@pytest.mark.parametrize("data, key", [
    ({"rate_per_s": True}, "rate_per_s"),
    ({"rate_per_s": "20"}, "rate_per_s"),
    ({"process": "gamma", "cv": "2", "rate_per_s": 1.0}, "cv"),
    ({"process": "weibull", "cv": True, "rate_per_s": 1.0}, "cv"),
    ({"rate_profile": {"shape": "steps", "times_s": [0, "10"], "rates_per_s": [1, 2]}}, "times_s.1"),
    ({"rate_profile": {"shape": "ramp", "from_rate_per_s": 0, "to_rate_per_s": "3", "over_s": 5}}, "to_rate_per_s"),
    ({"rate_profile": {"shape": "diurnal", "mean_rate_per_s": 1, "peak_to_trough": True}}, "peak_to_trough"),
    ({"process": "mmpp", "states": [{"rate_per_s": "1", "mean_duration_s": 1}, {"rate_per_s": 2, "mean_duration_s": 1}]},
     "rate_per_s"),
    ({"process": "closed_loop", "users": 2, "think_time": {"mean_s": "1"}}, "mean_s"),
    ({"process": "closed_loop", "users": 2.0}, "users"),
    ({"process": "closed_loop", "users": True}, "users"),
    ({"process": "trace", "path": "t.csv", "speedup": "2"}, "speedup"),
    ({"process": "trace", "path": "t.csv", "loop": "yes"}, "loop"),
    ({"process": "trace", "path": "t.csv", "loop": 1}, "loop"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_arrival_numbers_refuse_bools_and_strings(data, key):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"valid (number|integer|boolean)") as err:
        arrival(**data)
    assert key in ".".join(str(p) for p in err.value.errors()[0]["loc"])


def test_arrival_floats_still_take_ints():
    assert arrival(rate_per_s=5).rate_per_s == 5.0
    assert arrival(process="gamma", cv=2, rate_per_s=1).cv == 2.0
    steps = arrival(rate_profile={"shape": "steps", "times_s": [0, 10], "rates_per_s": [1, 2]}).rate_profile
    assert steps.rates_per_s == (1.0, 2.0) and all(type(r) is float for r in steps.rates_per_s)


@pytest.mark.parametrize("data", [
    {"rate_per_s": 1e308},
    {"rate_per_s": 1.0000001e9},
    {"rate_profile": {"shape": "steps", "times_s": [0, 10], "rates_per_s": [1, 1e308]}},
    {"rate_profile": {"shape": "diurnal", "mean_rate_per_s": 1e10, "peak_to_trough": 2}},
    {"rate_profile": {"shape": "ramp", "from_rate_per_s": 0, "to_rate_per_s": 1e300, "over_s": 5}},
    {"process": "mmpp", "states": [{"rate_per_s": 1e308, "mean_duration_s": 1}, {"rate_per_s": 1, "mean_duration_s": 1}]},
    {"process": "trace", "path": "t.csv", "rate_per_s": 1e308},
    {"process": "trace", "path": "t.csv", "speedup": 1e300},
    {"process": "trace", "path": "t.csv", "speedup": 1e-300},
], ids=lambda v: str(v)[:40])
def test_rates_above_one_request_per_nanosecond_are_refused(data):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"less than or equal to 1000000000|greater than or equal to 0\.000000001"):
        arrival(**data)
    assert arrival(rate_per_s=1e9).rate_per_s == 1e9  # the bound itself is allowed


def test_an_mmpp_without_traffic_is_refused_when_validated():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="every MMPP state has rate_per_s 0: no request would ever arrive"):
        arrival(process="mmpp", states=[{"rate_per_s": 0, "mean_duration_s": 1}, {"rate_per_s": 0, "mean_duration_s": 3}])


def test_expected_count_is_rate_times_duration_or_the_profile_integral():
    assert arrival(rate_per_s=4).expected_count(10.0) == 40.0
    steps = arrival(rate_profile={"shape": "steps", "times_s": [0, 10], "rates_per_s": [1, 3]})
    assert steps.expected_count(20.0) == pytest.approx(10 * 1 + 10 * 3)
    mmpp = arrival(process="mmpp", states=[{"rate_per_s": 1, "mean_duration_s": 1}, {"rate_per_s": 3, "mean_duration_s": 3}])
    assert mmpp.expected_count(10.0) == pytest.approx(10 * (1 * 1 + 3 * 3) / 4)


def test_a_workload_expecting_less_than_one_request_is_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"duration_s = 5 at 1e-09 requests/s expects 5e-09 requests: a workload "
                                              r"needs at least one; raise the rate or duration_s"):
        workload({"rate_per_s": 1e-9}, duration_s=5)
    with pytest.raises(ValidationError, match=r"duration_s = 4\.94066e-324 at 5 requests/s expects"):
        workload({"rate_per_s": 5}, duration_s=5e-324)
    with pytest.raises(ValidationError, match=r"under its rate_profile expects 0\.01 requests"):
        workload({"rate_profile": {"shape": "steps", "times_s": [0, 10], "rates_per_s": [0.001, 1]}}, duration_s=10)
    workload({"rate_per_s": 0.1}, duration_s=10)  # one expected: allowed


def test_a_draw_without_any_request_is_refused_not_returned_empty():
    spec = workload({"rate_per_s": 0.1}, duration_s=11)  # 1.1 expected: a third of the seeds draw none
    with pytest.raises(ValueError, match=r"no request arrives before duration_s = 11 with seed 0 \(~1\.1 expected\): "
                                         r"raise the rate or duration_s"):
        generate(spec, 0)
    assert generate(spec, 3).num_rows >= 1


def test_absurd_sizes_are_refused_with_the_memory_they_would_need():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"duration_s = 1e\+12 at 1 requests/s means ~1e\+12 requests, which would "
                                              r"need ~931 TiB of memory to simulate \(about 1024 bytes per request\)"):
        workload({"rate_per_s": 1}, duration_s=1e12)
    with pytest.raises(ValidationError, match=r"num_requests = 1000000000000, which would need ~931 TiB"):
        workload({"rate_per_s": 1}, num_requests=10**12)
    with pytest.raises(ValidationError, match=r"duration_s = 1e\+300 under its rate_profile means ~2e\+300 requests"):
        workload({"rate_profile": {"shape": "steps", "times_s": [0, 10], "rates_per_s": [1, 2]}}, duration_s=1e300)
    with pytest.raises(ValidationError, match=r"duration_s = 1e\+306 at 1e\+09 requests/s means ~inf requests, which "
                                              r"would need beyond any machine of memory"):
        workload({"rate_per_s": 1e9}, duration_s=1e306)


def test_the_request_cap_is_this_machines_memory_at_a_kibibyte_each(monkeypatch):
    from pydantic import ValidationError

    import workloads.limits as limits

    monkeypatch.setattr(limits, "machine_memory_bytes", lambda: 2**30)  # 1 GiB: 1,048,576 requests
    workload({"rate_per_s": 1}, num_requests=2**20)
    with pytest.raises(ValidationError, match=r"num_requests = 1048577, which would need ~1 GiB of memory .* but this "
                                              r"machine has 1 GiB: ask for at most ~1e\+06 requests"):
        workload({"rate_per_s": 1}, num_requests=2**20 + 1)
    with pytest.raises(ValidationError, match=r"duration_s = 2e\+06 at 1 requests/s means ~2e\+06 requests"):
        workload({"rate_per_s": 1}, duration_s=2e6)
    assert limits.machine_memory_bytes() == 2**30


def test_machine_memory_is_read_from_the_system():
    import os

    from workloads.limits import machine_memory_bytes

    if hasattr(os, "sysconf"):
        assert machine_memory_bytes() == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert machine_memory_bytes() >= 2**28


def test_a_looped_trace_replay_is_refused_before_it_is_tiled(tmp_path: Path, monkeypatch):
    p = tmp_path / "t.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
        f"2023-11-16 18:17:0{s}.5000000,10,2\n" for s in range(1, 4)))
    spec = workload({"process": "trace", "path": str(p), "loop": True}, duration_s=1e15)
    with pytest.raises(ValueError, match=r"duration_s = 1e\+15 loops the trace of 3 requests ~3\.33e\+14 times: ~1e\+15 "
                                         r"requests, which would need ~909 PiB"):
        generate(spec, 0)


def test_profile_pieces_shorter_than_a_microsecond_are_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"times_s\[2\] = 10 is 1e-09 s after the time before it: pieces must "
                                              r"last at least 1e-06 s"):
        arrival(rate_profile={"shape": "table", "times_s": [0, 9.999999999, 10], "rates_per_s": [1, 5, 1]})
    with pytest.raises(ValidationError, match=r"over_s\n.*greater than or equal to 0\.000001"):
        arrival(rate_profile={"shape": "ramp", "from_rate_per_s": 0, "to_rate_per_s": 5, "over_s": 1e-320})
    with pytest.raises(ValidationError, match=r"period_s\n.*greater than or equal to 0\.01"):
        arrival(rate_profile={"shape": "diurnal", "mean_rate_per_s": 5, "peak_to_trough": 2, "period_s": 1e-300})
    arrival(rate_profile={"shape": "steps", "times_s": [0, 1e-6], "rates_per_s": [1, 5]})  # a microsecond is allowed


def test_an_mmpp_counts_the_regime_visits_it_draws_at_once(monkeypatch):
    from pydantic import ValidationError

    import workloads.limits as limits

    quick = {"process": "mmpp", "states": [{"rate_per_s": 5, "mean_duration_s": 1e-9},
                                           {"rate_per_s": 1, "mean_duration_s": 1e-9}]}
    a = arrival(**quick)
    visits, drawn = a.first_block(20, None)
    # 20 requests at a mean 3/s take 6.67 s: 4 x 2 x 6.67 / 2e-9 visits, each 1e-9 s at 3/s.
    assert visits == pytest.approx(4 * 2 * (20 / 3) / 2e-9, rel=1e-9)
    assert drawn == pytest.approx(visits / 2 * 3 * 2e-9, rel=1e-9)
    monkeypatch.setattr(limits, "machine_memory_bytes", lambda: 2**39)  # 512 GiB: the visits do not fit
    with pytest.raises(ValidationError, match=r"num_requests = 20, drawn as ~2\.67e\+10 regime visits with ~80 "
                                              r"arrivals at once, which would need ~993 GiB .*mean_duration_s"):
        workload(quick, num_requests=20)
    monkeypatch.setattr(limits, "machine_memory_bytes", lambda: 2**40)
    assert workload(quick, num_requests=20).num_requests == 20  # 1 TiB would hold them: not refused
