"""Token-length distributions (`workloads.lengths`) against the distributions they claim to be.

Every distribution maps uniforms to integers by rounding (or flooring, or ceiling) a continuous
quantile function, then clipping. The exact probability of each integer therefore follows from
the continuous CDF at half-integers (or integers), and each test computes it here independently
(``scipy.stats`` for the parametric families, plain arithmetic for the rest) and runs a
chi-square test over bins holding at least ~100 expected draws each. No discretisation error is
tolerated: the expected counts are the discrete law's, not a continuous approximation.

Sample moments and percentiles are checked within four standard errors (the mean's from the
distribution's variance, a percentile's through the binomial count of draws below it).
Chi-square p-values must exceed 1e-3; with fixed seeds a test passes or fails the same way on
every run, and the 1e-3 floor is the probability that a correct implementation fails a given
seed. At 200,000 draws a lognormal sigma off by 2% gives p < 1e-9, and flooring instead of
rounding (half a token) p ≈ 1e-163. The copula check uses Spearman's rank correlation, whose standard error is at most
1/sqrt(n - 1) for a bivariate normal, and lengths with a median around 10⁶ so that ties (which
shrink rank correlations) are negligible.

Validation: each malformed spec raises pydantic's ValidationError naming the rule broken.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from scipy import optimize, stats

from workloads import ClassSpec, WorkloadSpec, generate
from workloads.lengths import LengthSpec

Z = 4.0
P_MIN = 1e-3
N = 200_000

_LENGTH = TypeAdapter(LengthSpec)


def length(**data: Any) -> Any:
    return _LENGTH.validate_python(data)


def draw(spec: Any, n: int = N, seed: int = 0) -> np.ndarray:
    x = spec.sample(np.random.default_rng(seed), n)
    assert x.dtype == np.int64 and x.shape == (n,)
    return x


def chi2_discrete(x: np.ndarray, cdf: Callable[[np.ndarray], np.ndarray], lo: int, hi: int,
                  bins: int = 200, min_expected: float = 50.0) -> float:
    """p-value of a chi-square test of integer draws ``x`` against the discrete law on [lo, hi]
    with ``cdf(k) = P(X <= k)`` (vectorised over an integer array). For an unbounded law pass the
    largest draw as ``hi``: the top run then holds the whole tail above it.

    The support is cut at the law's quantiles into about ``bins`` runs of integers, and runs
    expecting fewer than ``min_expected`` draws are merged into the next; draws where the law
    puts no mass, or outside [lo, hi], fail at once."""
    n = x.size
    assert x.min() >= lo and x.max() <= hi, f"draws outside [{lo}, {hi}]: {x.min()}..{x.max()}"
    ks = np.arange(lo, hi + 1)
    f = np.asarray(cdf(ks), np.float64)
    assert float(cdf(np.array([lo - 1]))[0]) == 0.0 and np.all(np.diff(f) >= 0)
    f[-1] = 1.0  # the tail beyond hi (none for a bounded law) belongs to the top run
    cut = np.unique(np.searchsorted(f, np.arange(1, bins) / bins))  # last integer of each run
    cut = np.union1d(cut, [ks.size - 1])
    upper = f[cut]
    expected = n * np.diff(np.concatenate([[0.0], upper]))
    observed = np.histogram(x, np.concatenate([[lo - 0.5], ks[cut] + 0.5]))[0]
    assert observed.sum() == n
    # Merge runs left to right until each expects enough draws; a short tail joins the last run.
    e_out, o_out, e_acc, o_acc = [], [], 0.0, 0
    for e, o in zip(expected, observed):
        e_acc, o_acc = e_acc + e, o_acc + o
        if e_acc >= min_expected:
            e_out.append(e_acc)
            o_out.append(o_acc)
            e_acc, o_acc = 0.0, 0
    if e_acc > 0 or o_acc > 0:
        assert e_out, "too few draws for a chi-square test"
        e_out[-1] += e_acc
        o_out[-1] += o_acc
    exp_, obs_ = np.asarray(e_out), np.asarray(o_out)
    stat = float(((obs_ - exp_) ** 2 / exp_).sum())
    return float(stats.chi2.sf(stat, exp_.size - 1))


def fraction_z(hits: int, n: int, p: float) -> float:
    """z-score of a binomial count against probability p."""
    return (hits - n * p) / math.sqrt(max(n * p * (1 - p), 1e-300))


# ----------------------------------------------------------------------------------------------
# Parametric families

_Z99 = stats.norm.ppf(0.99)


def _lognormal_params(mean: float, p99: float) -> tuple[float, float]:
    """(mu, sigma) with the given mean and 99th percentile, solved numerically here: the root of
    mean = exp(mu + sigma²/2) and p99 = exp(mu + z sigma) with sigma below z."""
    sigma = optimize.brentq(lambda s: s * _Z99 - s * s / 2 - math.log(p99 / mean), 1e-9, _Z99)
    return math.log(mean) - sigma * sigma / 2, sigma


def _rounded_cdf(dist: Any, max_: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """P(X <= k) for X = max(rint(Y), 1) clipped to max_, Y ~ dist: Y < k + 1/2 (ties have
    probability 0)."""
    def cdf(k: np.ndarray) -> np.ndarray:
        f = np.where(k < 1, 0.0, dist.cdf(k + 0.5))
        return f if max_ is None else np.where(k >= max_, 1.0, f)
    return cdf


@pytest.mark.parametrize("data", [
    {"mean": 1000.0, "p99": 8000.0}, {"mean": 40.0, "p99": 300.0}, {"mu": 5.0, "sigma": 0.8},
    {"mu": 2.0, "sigma": 1.5, "max": 60},
], ids=["mean_p99", "mean_p99_short", "mu_sigma", "mu_sigma_max"])
def test_lognormal_matches_scipy(data):
    spec = length(dist="lognormal", **data)
    mu, sigma = (data["mu"], data["sigma"]) if "mu" in data else _lognormal_params(data["mean"], data["p99"])
    assert spec.params == pytest.approx((mu, sigma), rel=1e-9)
    dist = stats.lognorm(s=sigma, scale=math.exp(mu))
    x = draw(spec, seed=1)
    hi = data.get("max", int(x.max()))
    assert chi2_discrete(x, _rounded_cdf(dist, data.get("max")), 1, hi) > P_MIN
    if "mean" in data:
        # The sample mean and p99 reproduce the parametrisation. Rounding moves the mean by far
        # less than its standard error; the p99 is checked as the share of draws at or below it.
        assert abs(x.mean() - data["mean"]) < Z * dist.std() / math.sqrt(x.size)
        below = int((x <= math.floor(data["p99"] - 0.5)).sum())
        p = float(dist.cdf(math.floor(data["p99"] - 0.5) + 0.5))  # P(X <= k) = P(Y < k + 1/2)
        assert abs(p - 0.99) < 1e-3
        assert abs(fraction_z(below, x.size, p)) < Z


def test_exponential_is_geometric():
    # ceil of an exponential with mean m: P(X <= k) = 1 − exp(−k/m), k >= 1 (a geometric law).
    for mean, max_ in ((250.0, None), (3.0, None), (250.0, 400)):
        spec = length(dist="exponential", mean=mean, max=max_)
        x = draw(spec, seed=2)
        def cdf(k: np.ndarray, m: float = mean, mx: int | None = max_) -> np.ndarray:
            f = np.where(k < 1, 0.0, -np.expm1(-np.maximum(k, 0) / m))
            return f if mx is None else np.where(k >= mx, 1.0, f)
        assert chi2_discrete(x, cdf, 1, max_ or int(x.max())) > P_MIN
        if max_ is None:
            p = 1 - math.exp(-1 / mean)
            assert abs(x.mean() - 1 / p) < Z * math.sqrt((1 - p) / p**2 / x.size)


def test_uniform_is_uniform_on_low_to_high():
    spec = length(dist="uniform", low=3, high=40)
    x = draw(spec, seed=3)
    assert x.min() == 3 and x.max() == 40
    counts = np.bincount(x - 3, minlength=38)
    assert stats.chisquare(counts).pvalue > P_MIN
    assert np.all(length(dist="uniform", low=7, high=7).quantile(np.array([0.0, 0.5, 1 - 2**-53])) == 7)


def test_normal_with_clipping_at_min_and_max():
    mean, std, lo, hi = 100.0, 80.0, 20, 250
    spec = length(dist="normal", mean=mean, std=std, min=lo, max=hi)
    x = draw(spec, seed=4)
    assert x.min() == lo and x.max() == hi
    dist = stats.norm(mean, std)

    def cdf(k: np.ndarray) -> np.ndarray:
        return np.where(k < lo, 0.0, np.where(k >= hi, 1.0, dist.cdf(k + 0.5)))
    assert chi2_discrete(x, cdf, lo, hi) > P_MIN
    # The clipped mass sits exactly at the bounds.
    assert abs(fraction_z(int((x == lo).sum()), x.size, float(dist.cdf(lo + 0.5)))) < Z
    assert abs(fraction_z(int((x == hi).sum()), x.size, float(dist.sf(hi - 0.5)))) < Z
    # Default min 1: a normal far below 1 is raised to 1, never 0 or negative.
    assert np.all(length(dist="normal", mean=2.0, std=50.0).sample(np.random.default_rng(0), 10_000) >= 1)


@pytest.mark.parametrize("dist, max_", [("lognormal", 300), ("exponential", 50), ("normal", 120)])
def test_max_clips_and_piles_the_tail_at_max(dist, max_):
    params = {"lognormal": {"mean": 100.0, "p99": 900.0}, "exponential": {"mean": 40.0},
              "normal": {"mean": 100.0, "std": 30.0}}[dist]
    unclipped = draw(length(dist=dist, **params), seed=5)
    clipped = draw(length(dist=dist, max=max_, **params), seed=5)
    assert clipped.max() == max_
    np.testing.assert_array_equal(clipped, np.minimum(unclipped, max_))  # same uniforms, clipped
    assert length(dist=dist, max=max_, **params).upper_bound == max_


# ----------------------------------------------------------------------------------------------
# Tabulated distributions


def test_empirical_frequencies_follow_weights():
    values, weights = (5, 17, 300, 9, 4096), (1.0, 0.0, 3.0, 6.0, 0.5)
    x = draw(length(dist="empirical", values=values, weights=weights), seed=6)
    counts = np.array([(x == v).sum() for v in values])
    assert counts.sum() == x.size and counts[1] == 0
    w = np.asarray(weights)[[0, 2, 3, 4]]
    assert stats.chisquare(counts[[0, 2, 3, 4]], x.size * w / w.sum()).pvalue > P_MIN
    # Without weights: equally likely, repeated values counting twice.
    x = draw(length(dist="empirical", values=(8, 3, 8)), seed=7)
    assert stats.chisquare([(x == 3).sum(), (x == 8).sum()], [x.size / 3, 2 * x.size / 3]).pvalue > P_MIN


def test_histogram_bins_follow_counts_and_are_uniform_within():
    edges, counts = (1, 11, 51, 201, 1001), (3.0, 1.0, 0.0, 4.0)
    spec = length(dist="histogram", edges=edges, counts=counts)
    assert spec.upper_bound == 1000
    x = draw(spec, seed=8)
    per_bin = np.histogram(x, np.asarray(edges) - 0.5)[0]  # bin i: edges[i] <= X < edges[i+1]
    assert per_bin.sum() == x.size and per_bin[2] == 0
    c = np.asarray(counts)[[0, 1, 3]]
    assert stats.chisquare(per_bin[[0, 1, 3]], x.size * c / c.sum()).pvalue > P_MIN
    for lo, hi in ((1, 11), (11, 51), (201, 1001)):
        inside = x[(x >= lo) & (x < hi)]
        assert stats.chisquare(np.bincount(inside - lo, minlength=hi - lo)).pvalue > P_MIN


def test_quantiles_reproduce_their_knots():
    probs, values = (0.0, 0.5, 0.9, 0.99, 1.0), (1.0, 100.0, 1000.0, 5000.0, 20000.0)
    spec = length(dist="quantiles", probs=probs, values=values)
    assert spec.upper_bound == 20000
    x = draw(spec, seed=9)
    assert x.min() >= 1 and x.max() <= 20000
    # X = rint(Q(U)) with Q linear between knots: P(X <= k) = Q⁻¹(k + 1/2), piecewise linear.
    def cdf(k: np.ndarray) -> np.ndarray:
        return np.where(k < 1, 0.0, np.interp(k + 0.5, values, probs))
    assert chi2_discrete(x, cdf, 1, 20000) > P_MIN
    # Each knot's percentile: the share of draws at or below the knot value is its probability
    # (plus the half token's worth of probability that rounding adds).
    for p, v in zip(probs[1:-1], values[1:-1]):
        p_v = float(cdf(np.array([int(v)]))[0])
        assert abs(fraction_z(int((x <= v).sum()), x.size, p_v)) < Z
        assert 0 <= p_v - p < 1e-3
    assert np.percentile(x, [50, 90, 99]) == pytest.approx(values[1:4], rel=0.03)


def test_fixed_is_fixed():
    spec = length(dist="fixed", value=123)
    assert np.all(draw(spec, 1000) == 123) and spec.upper_bound == 123


# ----------------------------------------------------------------------------------------------
# Invariants over parameters (hypothesis)

_lengths = st.one_of(
    st.builds(lambda v: {"dist": "fixed", "value": v}, st.integers(1, 10**6)),
    st.builds(lambda lo, w: {"dist": "uniform", "low": lo, "high": lo + w},
              st.integers(1, 10**5), st.integers(0, 10**5)),
    st.builds(lambda m, s, lo, mx: {"dist": "normal", "mean": m, "std": s, "min": lo, "max": mx},
              st.floats(0.5, 1e5), st.floats(0, 1e5), st.integers(1, 50), st.one_of(st.none(), st.integers(50, 10**6))),
    st.builds(lambda m, r, mx: {"dist": "lognormal", "mean": m, "p99": m * r, "max": mx},
              st.floats(1.0, 1e5), st.floats(1.01, 14.9), st.one_of(st.none(), st.integers(1, 10**6))),
    st.builds(lambda mu, s, mx: {"dist": "lognormal", "mu": mu, "sigma": s, "max": mx},
              st.floats(-5, 12), st.floats(0.01, 3.0), st.one_of(st.none(), st.integers(1, 10**6))),
    st.builds(lambda m, mx: {"dist": "exponential", "mean": m, "max": mx},
              st.floats(0.01, 1e6), st.one_of(st.none(), st.integers(1, 10**6))),
    st.builds(lambda vw: {"dist": "empirical", "values": [v for v, _ in vw], "weights": [w for _, w in vw]},
              st.lists(st.tuples(st.integers(1, 10**6), st.floats(0.0, 10.0)), min_size=1, max_size=8)
              .filter(lambda vw: sum(w for _, w in vw) > 0)),
    st.builds(lambda gaps, c: {"dist": "histogram", "edges": list(np.cumsum([1] + gaps).tolist()),
                               "counts": c[: len(gaps)]},
              st.lists(st.integers(1, 10**4), min_size=1, max_size=6),
              st.lists(st.floats(0.0, 10.0), min_size=6, max_size=6).filter(lambda c: sum(c) > 0))
    .filter(lambda d: sum(d["counts"]) > 0),
    st.builds(lambda inc: {"dist": "quantiles", "probs": list(np.linspace(0, 1, len(inc) + 1)),
                           "values": list(np.cumsum([1.0] + inc))},
              st.lists(st.floats(0.0, 1e4), min_size=1, max_size=6)),
)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(_lengths, st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=1, max_size=50))
def test_every_length_is_an_int_at_least_one_within_its_bound_and_monotone_in_u(data, us):
    spec = length(**data)
    # rng.random() draws from [0, 1); u = 0 itself has its own test below.
    u = np.sort(np.concatenate([np.asarray(us), [2**-53, 0.5, 1 - 2**-53]]))
    u = u[u > 0]
    x = spec.quantile(u)
    assert x.dtype == np.int64
    assert x.min() >= 1
    if spec.upper_bound is not None:
        assert x.max() <= spec.upper_bound
    if data["dist"] != "empirical":  # empirical values keep the order they are given in
        assert np.all(np.diff(x) >= 0), "quantile must be non-decreasing in u"


def test_heavy_lognormal_never_yields_negative_lengths():
    spec = length(dist="lognormal", mu=10.0, sigma=10.0)
    x = spec.sample(np.random.default_rng(0), 100_000)  # P(exp(mu + sigma z) > 2**63) = P(z > 3.4) ≈ 4e-4
    assert x.min() >= 1


def test_normal_min_above_max_is_refused_or_respected():
    try:
        spec = length(dist="normal", mean=100.0, std=10.0, min=50, max=20)
    except ValidationError:
        return
    assert spec.sample(np.random.default_rng(0), 100).max() <= spec.upper_bound


def test_normal_with_zero_std_at_u_zero_is_its_mean():
    # u = 0 is a possible draw of Generator.random() (probability 2**-53 each) and in quantile's domain.
    spec = length(dist="normal", mean=100.0, std=0.0)
    assert spec.quantile(np.array([0.0, 0.5]))[0] == 100


# ----------------------------------------------------------------------------------------------
# Prompt–output correlation (Gaussian copula)

_WIDE = {"dist": "lognormal", "mu": math.log(1e6), "sigma": 1.0}  # median 10⁶: ties are rare


def _pair(rho: float, n: int = N, seed: int = 10) -> tuple[np.ndarray, np.ndarray]:
    spec = WorkloadSpec.model_validate({
        "arrival": {"rate_per_s": 1.0}, "num_requests": n,
        "classes": [{"name": "x", "prompt_tokens": _WIDE, "output_tokens": {**_WIDE, "mu": math.log(2e6)},
                     "length_correlation": rho}]})
    t = generate(spec, seed)
    return t.column("prompt_tokens").to_numpy(), t.column("output_tokens").to_numpy()


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.6, -0.6, 0.95])
def test_length_correlation_gives_the_copula_spearman(rho):
    # For a Gaussian copula with correlation ρ, Spearman's ρ_S = (6/π)·asin(ρ/2): 0.2876 for 0.3,
    # 0.5824 for 0.6, 0.9481 for 0.95 — distinct from ρ itself by more than 4/sqrt(n) = 0.009
    # for ρ = 0.6, so a copula that put ρ on the ranks instead would fail.
    prompt, output = _pair(rho)
    expected = 6 / math.pi * math.asin(rho / 2)
    got = stats.spearmanr(prompt, output).statistic
    assert abs(got - expected) < Z / math.sqrt(prompt.size - 1), f"Spearman {got:.4f} vs {expected:.4f}"


def test_correlated_lengths_keep_their_marginals():
    prompt, output = _pair(0.6, n=100_000, seed=11)
    for x, mu in ((prompt, math.log(1e6)), (output, math.log(2e6))):
        dist = stats.lognorm(s=1.0, scale=math.exp(mu))
        # KS against the continuous law: rounding moves the CDF by at most pdf·0.5 ≈ 1e-7 here.
        assert stats.kstest(x, dist.cdf).pvalue > P_MIN


# ----------------------------------------------------------------------------------------------
# Validation: one ValidationError naming the rule


@pytest.mark.parametrize("data, message", [
    ({"dist": "lognormal", "mean": 100.0, "p99": 900.0, "mu": 4.0, "sigma": 1.0},
     "give either mean and p99, or mu and sigma"),
    ({"dist": "lognormal", "mean": 100.0}, "give either mean and p99, or mu and sigma"),
    ({"dist": "lognormal", "mu": 4.0}, "give either mean and p99, or mu and sigma"),
    ({"dist": "lognormal", "mean": 100.0, "p99": 90.0}, r"p99 = 90 is not above mean = 100"),
    ({"dist": "lognormal", "mean": 100.0, "p99": 2000.0}, r"no lognormal has p99/mean above 14\.9"),
    ({"dist": "quantiles", "probs": [0.1, 0.5, 1.0], "values": [1, 2, 3]}, "probs must increase strictly from 0 to 1"),
    ({"dist": "quantiles", "probs": [0.0, 0.5, 0.9], "values": [1, 2, 3]}, "probs must increase strictly from 0 to 1"),
    ({"dist": "quantiles", "probs": [0.0, 0.5, 0.5, 1.0], "values": [1, 2, 3, 4]}, "probs must increase strictly"),
    ({"dist": "quantiles", "probs": [0.0, 1.0], "values": [1, 2, 3]}, "probs has 2 entries but values has 3"),
    ({"dist": "quantiles", "probs": [0.0, 1.0], "values": [5, 2]}, "values must start at >= 1 and never decrease"),
    ({"dist": "histogram", "edges": [1, 10, 100, 1000], "counts": [1.0, 2.0]}, "counts has 2 entries for 3 bins"),
    ({"dist": "histogram", "edges": [1, 10, 10], "counts": [1.0, 2.0]},
     "edges must start at >= 1 and increase strictly"),
    ({"dist": "histogram", "edges": [0, 10], "counts": [1.0]}, "edges must start at >= 1"),
    ({"dist": "histogram", "edges": [1, 10], "counts": [0.0]}, "counts sums to 0"),
    ({"dist": "histogram", "edges": [1, 10, 20], "counts": [1.0, -1.0]}, "counts has a negative entry"),
    ({"dist": "uniform", "low": 10, "high": 5}, "high = 5 is below low = 10"),
    ({"dist": "empirical", "values": [1, 2], "weights": [1.0]}, "weights has 1 entries but values has 2"),
    ({"dist": "empirical", "values": [0, 2]}, "values has 0: lengths must be >= 1"),
    ({"dist": "empirical", "values": [1, 2], "weights": [0.0, 0.0]}, "weights sums to 0"),
    ({"dist": "fixed", "value": 0}, "greater than or equal to 1"),
    ({"dist": "exponential", "mean": -3.0}, "greater than 0"),
    ({"dist": "gamma", "mean": 3.0}, "dist"),
], ids=lambda v: v["dist"] if isinstance(v, dict) else "")
def test_malformed_lengths_raise_validation_error(data, message):
    with pytest.raises(ValidationError, match=message):
        length(**data)


def test_length_correlation_outside_minus_one_to_one_is_refused():
    base = {"name": "x", "prompt_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}}
    for rho in (-1.5, 1.01):
        with pytest.raises(ValidationError, match="length_correlation"):
            ClassSpec.model_validate({**base, "length_correlation": rho})
    for rho in (-1.0, 1.0):
        ClassSpec.model_validate({**base, "length_correlation": rho})


# ----------------------------------------------------------------------------------------------
# Bad input: no type coercion, no lengths beyond any model's context (issue 16)


@pytest.mark.parametrize("data", [
    {"dist": "fixed", "value": 12.5},
    {"dist": "fixed", "value": "12"},
    {"dist": "fixed", "value": True},
    {"dist": "uniform", "low": 1, "high": 10.0},
    {"dist": "normal", "mean": "100", "std": 1},
    {"dist": "normal", "mean": 100, "std": True},
    {"dist": "lognormal", "mean": "100", "p99": 400},
    {"dist": "lognormal", "mu": 3, "sigma": "1"},
    {"dist": "exponential", "mean": True},
    {"dist": "exponential", "mean": 10, "max": 20.0},
    {"dist": "empirical", "values": [1, "2"]},
    {"dist": "empirical", "values": [1, 2], "weights": [1, "2"]},
    {"dist": "histogram", "edges": [1, 10], "counts": ["3"]},
    {"dist": "quantiles", "probs": [0, "1"], "values": [1, 10]},
    {"dist": "quantiles", "probs": [0, 1], "values": [1, False]},
], ids=lambda v: v["dist"])
def test_length_numbers_refuse_coercion(data):
    with pytest.raises(ValidationError, match=r"valid (number|integer)"):
        length(**data)


def test_length_floats_still_take_ints():
    assert length(dist="normal", mean=100, std=0).quantile(np.array([0.5])).tolist() == [100]
    assert length(dist="quantiles", probs=[0, 1], values=[1, 10]).values == (1.0, 10.0)


@pytest.mark.parametrize("data, message", [
    ({"dist": "fixed", "value": 10**15}, "less than or equal to 10000000"),
    ({"dist": "uniform", "low": 1, "high": 10**7 + 1}, "less than or equal to 10000000"),
    ({"dist": "exponential", "mean": 10, "max": 10**15}, "less than or equal to 10000000"),
    ({"dist": "exponential", "mean": 1e8}, "less than or equal to 10000000"),
    ({"dist": "normal", "mean": 1e12, "std": 1}, "less than or equal to 10000000"),
    ({"dist": "normal", "mean": 10, "std": 1, "min": 10**8}, "less than or equal to 10000000"),
    ({"dist": "lognormal", "mean": 1e9, "p99": 2e9}, "less than or equal to 10000000"),
    ({"dist": "lognormal", "mu": 40.0, "sigma": 1}, r"less than or equal to 16\.11"),
    ({"dist": "empirical", "values": [1, 10**15]}, r"values has 1000000000000000: lengths must be <= 10000000 \(no "
                                                   r"model's context is longer\)"),
    ({"dist": "histogram", "edges": [1, 10, 10**9], "counts": [1, 1]}, r"edges end at 1000000000: lengths must be "
                                                                       r"<= 10000000"),
    ({"dist": "quantiles", "probs": [0, 1], "values": [1, 1e12]}, r"values end at 1e\+12: lengths must be <= 10000000"),
], ids=lambda v: v["dist"] if isinstance(v, dict) else "")
def test_lengths_beyond_any_models_context_are_refused(data, message):
    with pytest.raises(ValidationError, match=message):
        length(**data)


def test_the_longest_allowed_length_is_ten_million_tokens():
    assert length(dist="fixed", value=10**7).upper_bound == 10**7
    assert length(dist="histogram", edges=[1, 10**7 + 1], counts=[1]).upper_bound == 10**7


@pytest.mark.parametrize("data, mean, rel", [
    ({"dist": "fixed", "value": 7}, 7.0, 0.0),
    ({"dist": "uniform", "low": 1, "high": 12}, 6.5, 1e-3),
    ({"dist": "exponential", "mean": 30.0}, 30.5, 0.02),  # ceil of an exponential: mean + about 1/2
    ({"dist": "empirical", "values": [1, 3], "weights": [1, 3]}, 2.5, 1e-3),
], ids=lambda v: v["dist"] if isinstance(v, dict) else "")
def test_mean_estimate_is_the_distributions_mean(data, mean, rel):
    assert length(**data).mean_estimate() == pytest.approx(mean, rel=rel, abs=1e-12)
