"""Describing traces and fitting synthetic workloads to them (`workloads.describe`, `workloads.fit`,
`workloads.presets`).

Three kinds of checks:

- micro-tables with hand-computed statistics (rate, CV, full-window peak/mean, ranks, prefixes);
- the fitting pieces on their own (rate table, length families, copula correlation);
- each real trace in the shared folder against the workload fitted to it, and against its preset:
  mean rate within 2%, inter-arrival CV within 10%, prompt and output p50/p90/p99 within 10%.

Sample sizes for the statistical checks. The fitted workload is measured on a sample of about two
million requests (its one-hour rate table repeated end to end), with fixed seeds:

- mean rate: over a repeated profile the count is set by the profile up to the base process's
  noise, relative std ~ CV_base / sqrt(n): for the Azure code trace's base (CV ~8) measured over
  ten seeds 0.7% at 1M requests and 0.4% at 4M, so at 2M 2% is about 4 standard deviations; for
  the others far more;
- inter-arrival CV: its estimate is dominated by the rare longest gaps. Measured over ten seeds,
  the Weibull base that fits the Azure code trace (CV ~8, shape ~0.22, a very heavy tail) gives a
  relative std of 3.7% at 1M requests and 1.5% at 4M; at 2M about 2.6%, and the fit's own search
  carries as much, so 10% is about 3 standard deviations of the difference. The other traces'
  bases are near-Poisson or gamma and a few times less noisy;
- percentiles: p99 of 2M draws from a quantile function is within ~1% even in the steep Mooncake
  prompt tail (slope ~3e6 tokens per unit probability: std ~ slope * sqrt(0.01/2e6) ~ 200 tokens).

``FitResult.fit_stats`` is such a sample: drawn by `workloads.generate` from the fitted spec with
streams spawned from the seed, independent of the arrival-only draws the CV search tuned on. The
presets are re-drawn here with another seed, from the numbers pasted in `workloads/fitted_presets.py`.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from tests.shared_data import AZURE_CODE, AZURE_CONV, MOONCAKE_CONV, MOONCAKE_SYNTH, need
from workloads import WorkloadSpec, generate
from workloads.describe import WorkloadStats, describe, peak_to_mean, spearman
from workloads.fit import FitError, QUANTILE_KNOTS, copula_rho, fit, fit_length, rate_table, repeat_profile
from workloads.lengths import LognormalLength, QuantileLength
from workloads.presets import PRESETS, preset_data, preset_summary
from workloads.traces import load_trace

TRACES = {
    "azure-code-2023": AZURE_CODE,
    "azure-conv-2023": AZURE_CONV,
    "mooncake-conversation": MOONCAKE_CONV,
    "mooncake-synthetic": MOONCAKE_SYNTH,
}
RATE_TOL, CV_TOL, PCT_TOL = 0.02, 0.10, 0.10


def _table(arrival, prompt=None, output=None, **extra) -> pa.Table:
    n = len(arrival)
    cols = {"arrival_s": np.asarray(arrival, np.float64),
            "prompt_tokens": np.asarray(prompt if prompt is not None else [10] * n, np.int64),
            "output_tokens": np.asarray(output if output is not None else [5] * n, np.int64)}
    cols.update({k: np.asarray(v) for k, v in extra.items()})
    return pa.table(cols)


def _assert_reproduces(got: WorkloadStats, want: WorkloadStats, what: str) -> None:
    """The tolerances of the brief, each failure naming the statistic and both values."""
    def close(name: str, a: float, b: float, tol: float) -> None:
        assert abs(a / b - 1) <= tol, f"{what}: {name} {a:.4g} vs trace {b:.4g} ({a / b - 1:+.1%}, tolerance {tol:.0%})"

    close("mean rate", got.mean_rate_per_s, want.mean_rate_per_s, RATE_TOL)
    close("inter-arrival CV", got.interarrival_cv, want.interarrival_cv, CV_TOL)
    for col in ("prompt", "output"):
        for q in ("p50", "p90", "p99"):
            close(f"{col} {q}", getattr(getattr(got, col), q), getattr(getattr(want, col), q), PCT_TOL)


# ------------------------------------------------------------------------------------------------
# describe: micro-tables


def test_describe_even_arrivals_exact():
    # 16 arrivals 10 s apart: rate 15/150, no gap variation, two full minutes of 6 each.
    s = describe(_table(np.arange(16) * 10.0, prompt=np.arange(1, 17), output=np.arange(16, 0, -1)))
    assert s.requests == 16 and s.duration_s == 150.0
    assert s.mean_rate_per_s == pytest.approx(0.1)
    assert s.interarrival_cv == pytest.approx(0.0, abs=1e-12)
    assert s.peak_to_mean == 1.0
    assert s.prompt.mean == 8.5 and s.prompt.p50 == 8.5
    assert s.prompt.p90 == pytest.approx(np.percentile(np.arange(1, 17), 90))
    assert s.spearman == pytest.approx(-1.0)
    assert s.prefix_share is None


def test_peak_to_mean_counts_full_windows_only():
    # Span 122 s: full windows [0, 60) with 3 and [60, 120) with 2; the 4 arrivals in the partial
    # window [120, 122] are left out (counted, they would make the peak 4).
    t = [0, 1, 2, 61, 62, 120.5, 121, 121.5, 122]
    assert peak_to_mean(np.array(t, float)) == pytest.approx(3 / 2.5)
    assert math.isnan(peak_to_mean(np.array([0.0, 10.0, 59.0])))  # no full window


def test_peak_to_mean_per_period_is_averaged():
    # Two periods of 120 s: 4 and 2 arrivals in the first's minutes (peak/mean 4/3), 1 and 1 in
    # the second's (1.0). The average is (4/3 + 1) / 2, not the pooled max 4 over mean 2.
    t = np.array([0, 1, 2, 3, 60, 61, 120, 180], float)
    assert peak_to_mean(t, 60.0, period_s=120.0) == pytest.approx((4 / 3 + 1) / 2)


def test_describe_skips_engine_released_rows_and_counts_prefixes():
    t = _table([0.0, 1.0, np.nan, 3.0], prompt=[100, 100, 300, 100], output=[1, 2, 3, 4],
               prefix_id=np.array([-1, 7, 7, -1]), prefix_tokens=np.array([0, 40, 60, 0]))
    s = describe(t)
    assert s.requests == 4
    assert s.mean_rate_per_s == pytest.approx(2 / 3)  # three timed arrivals over 3 s
    assert s.prefix_share == pytest.approx(100 / 600)


def test_spearman_matches_scipy_with_ties():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(3)
    x = rng.integers(1, 20, 5000)
    y = x + rng.integers(0, 15, 5000)
    assert spearman(x, y) == pytest.approx(spearmanr(x, y)[0], abs=1e-12)
    assert math.isnan(spearman(np.ones(5), np.arange(5)))


def test_describe_rejects_what_it_cannot_read():
    with pytest.raises(TypeError, match="Trace or a pyarrow Table"):
        describe([1, 2, 3])
    with pytest.raises(ValueError, match="no column.*output_tokens"):
        describe(pa.table({"arrival_s": [0.0], "prompt_tokens": [1]}))


@pytest.mark.parametrize("name, rate, pm, cv, prompt, output", [
    # The published figures (shared/traces/README.md), to their printed precision.
    ("azure-code-2023", 2.57, 4.18, 13.2, (2048, 1469, 5188, 7436), (27.9, 13, 55, 251)),
    ("azure-conv-2023", 5.53, 1.52, 1.09, (1155, 1020, 2734, 4142), (211, 129, 424, 601)),
    ("mooncake-conversation", 3.40, 1.21, 3.03, (12035, 6909, 27367, 85400), (343, 350, 597, 1119)),
    ("mooncake-synthetic", 3.91, 1.17, 1.01, (15325, 11587, 38611, 66456), (149, 69, 389, 768)),
])
def test_describe_reproduces_published_figures(name, rate, pm, cv, prompt, output):
    s = describe(load_trace(need(TRACES[name])))
    assert round(s.mean_rate_per_s, 2) == rate
    assert round(s.peak_to_mean, 2) == pm
    assert s.interarrival_cv == pytest.approx(cv, abs=0.051 if cv > 10 else 0.0051)
    for got, want in ((s.prompt, prompt), (s.output, output)):
        values = (got.mean, got.p50, got.p90, got.p99)
        for v, w in zip(values, want):
            assert v == pytest.approx(w, abs=0.51 if w >= 100 or isinstance(w, int) else 0.051)


# ------------------------------------------------------------------------------------------------
# fitting pieces


def test_rate_table_steps_integrate_to_counts():
    # 10 arrivals in minute 0, 0 in minute 1, 5 in minute 2 and 1 at 200 s (after the last full
    # window, merged into the last step, which then spans 120..200 s).
    t = np.concatenate([np.linspace(0, 59, 10), np.linspace(121, 179, 5), [200.0]])
    times, rates = rate_table(t)
    assert times == [0.0, 60.0, 120.0, 200.0]
    assert rates[:3] == pytest.approx([10 / 60, 0.0, 6 / 80], rel=1e-3)
    assert rates[-1] == pytest.approx(16 / 200)  # held after the span: the mean
    spec = WorkloadSpec.model_validate({
        "arrival": {"rate_profile": {"shape": "table", "interpolate": "step", "times_s": times, "rates_per_s": rates}},
        "classes": [{"name": "x", "prompt_tokens": {"dist": "fixed", "value": 1},
                     "output_tokens": {"dist": "fixed", "value": 1}}], "num_requests": 1})
    assert spec.mean_rate_per_s == pytest.approx(16 / 200, rel=1e-3)


def test_repeat_profile_tiles_the_span():
    w = {"arrival": {"process": "gamma", "cv": 2.0, "rate_profile": {
        "shape": "table", "interpolate": "step", "times_s": [0.0, 60.0, 100.0], "rates_per_s": [1.0, 3.0, 2.0]}}}
    r = repeat_profile(w, 3)["arrival"]["rate_profile"]
    assert r["times_s"] == [0.0, 60.0, 100.0, 160.0, 200.0, 260.0, 300.0]
    assert r["rates_per_s"] == [1.0, 3.0, 1.0, 3.0, 1.0, 3.0, 2.0]
    assert repeat_profile(w, 1) is w
    assert repeat_profile({"arrival": {"rate_per_s": 2.0}}, 5) == {"arrival": {"rate_per_s": 2.0}}


def test_fit_length_keeps_a_family_that_reproduces_the_data():
    v = LognormalLength(dist="lognormal", mu=6.0, sigma=0.7).sample(np.random.default_rng(0), 50_000)
    spec, note = fit_length(v)
    assert spec["dist"] == "lognormal", note
    assert spec["mu"] == pytest.approx(6.0, abs=0.02) and spec["sigma"] == pytest.approx(0.7, rel=0.02)
    assert spec["max"] == int(v.max())


def test_fit_length_falls_back_to_quantiles_with_tail_knots():
    rng = np.random.default_rng(1)
    v = np.concatenate([rng.integers(5, 15, 30_000), rng.integers(2000, 4000, 10_000), [20_000]])
    spec, note = fit_length(v)
    assert spec["dist"] == "quantiles", note
    assert set(QUANTILE_KNOTS) <= set(spec["probs"]) and len(spec["probs"]) <= 40
    q = QuantileLength(**spec)
    assert q.quantile(np.array([0.5, 0.9, 0.99])).tolist() == pytest.approx(np.percentile(v, [50, 90, 99]), rel=0.01)
    assert q.upper_bound == 20_000


@pytest.mark.parametrize("rho_s", [-0.8, -0.5, 0.0, 0.3, 0.9])
def test_copula_rho_gives_the_spearman_it_was_fitted_to(rho_s):
    # The Gaussian copula in `generate` with rho = copula_rho(rho_s) must show Spearman rho_s on
    # continuous-looking lengths; 200k pairs give a standard error of about 0.002.
    spec = WorkloadSpec.model_validate({
        "arrival": {"rate_per_s": 1.0}, "num_requests": 200_000,
        "classes": [{"name": "x", "length_correlation": copula_rho(rho_s),
                     "prompt_tokens": {"dist": "uniform", "low": 1, "high": 1_000_000},
                     "output_tokens": {"dist": "uniform", "low": 1, "high": 1_000_000}}]})
    t = generate(spec, seed=5)
    assert spearman(t.column("prompt_tokens").to_numpy(), t.column("output_tokens").to_numpy()) == pytest.approx(
        rho_s, abs=0.01)
    assert copula_rho(1.0) == pytest.approx(1.0) and copula_rho(float("nan")) == 0.0


def test_fit_refuses_too_few_arrivals():
    with pytest.raises(FitError, match="cannot fit a workload to 2 arrival"):
        fit(_table([0.0, 1.0]))
    with pytest.raises(FitError, match="distinct times"):
        fit(_table([5.0, 5.0, 5.0]))


def test_fit_of_a_table_without_a_file():
    # A short hand-made table: a constant profile (< 2 full minutes), a name from the caller.
    rng = np.random.default_rng(4)
    t = np.sort(rng.uniform(0, 100, 400))
    r = fit(_table(t - t[0], prompt=rng.integers(10, 1000, 400), output=rng.integers(1, 100, 400)),
            name="mine", sample_requests=50_000)
    assert r.workload["classes"][0]["name"] == "mine" and r.path is None
    assert r.workload["arrival"]["rate_profile"]["times_s"] == [0.0, pytest.approx(r.duration_s)]
    spec = r.spec(num_requests=10)
    assert spec.num_requests == 10 and spec.mean_rate_per_s == pytest.approx(400 / r.duration_s, rel=1e-3)
    assert "statistic" in str(r) and "mean rate (req/s)" in str(r)


# ------------------------------------------------------------------------------------------------
# real traces: fit and presets


@pytest.fixture(scope="module", params=list(TRACES))
def fitted(request):
    path = need(TRACES[request.param])
    return request.param, fit(load_trace(path))


def test_fit_reproduces_its_trace(fitted):
    name, r = fitted
    assert r.sample_periods * r.trace_stats.requests >= 2_000_000  # the sizes argued in the module text
    _assert_reproduces(r.fit_stats, r.trace_stats, f"fit of {name}")


def test_fit_mean_rate_is_exact_by_construction(fitted):
    # The rate table integrates to the trace's n requests over its span: n / span, which differs
    # from describe's (n - 1) / span by 1/n, plus four-significant-digit rounding.
    _, r = fitted
    spec = r.spec()
    n, span = r.trace_stats.requests, r.trace_stats.duration_s
    assert spec.mean_rate_per_s == pytest.approx(n / span, rel=2e-4)
    assert spec.duration_s == pytest.approx(span, rel=1e-5)


def test_fit_spearman_and_notes(fitted):
    name, r = fitted
    assert r.fit_stats.spearman == pytest.approx(r.trace_stats.spearman, abs=0.03)
    assert any(n.startswith("arrivals:") for n in r.notes)
    if r.trace_stats.prefix_share is not None:  # Mooncake: prefixes are reported, not fitted
        assert any("shared prefixes" in n for n in r.notes)


def test_presets_are_the_four_traces_with_provenance():
    assert set(TRACES) <= set(PRESETS)
    for name, entry in PRESETS.items():
        src = entry["source"]
        for needle in ("2026-11-23", "capsim workload fit", "github.com/"):
            assert needle in src, f"{name}: source lacks {needle!r}"
        assert "CC-BY-4.0" in src or "Apache-2.0" in src
        assert "num_requests" not in entry["workload"] and "duration_s" not in entry["workload"]
        s = preset_summary(name)
        assert s["mean_rate_per_s"] > 0 and s["classes"]


def test_unknown_preset_names_close_matches():
    with pytest.raises(ValueError, match="did you mean 'azure-conv-2023'"):
        preset_data("azure-conv-2024")


def test_preset_rate_override_replaces_the_rate_profile():
    spec = WorkloadSpec.model_validate({"preset": "azure-conv-2023", "num_requests": 10,
                                        "arrival": {"rate_per_s": 4.0}})
    assert spec.arrival.rate_per_s == 4.0 and spec.arrival.rate_profile is None


@pytest.mark.parametrize("name", list(TRACES))
def test_preset_reproduces_its_trace(name):
    want = describe(load_trace(need(TRACES[name])))
    # Validates and generates as a user writes it ...
    spec = WorkloadSpec.model_validate({"preset": name, "num_requests": 1000})
    assert generate(spec, seed=0, max_context=131_072).num_rows == 1000
    # ... and, repeated to ~2M requests (see the module text), matches its trace.
    data = preset_data(name)
    span = data["arrival"]["rate_profile"]["times_s"][-1]
    periods = math.ceil(2_000_000 / want.requests)
    sample = generate(WorkloadSpec.model_validate({**repeat_profile(data, periods), "duration_s": span * periods}),
                      seed=7)
    _assert_reproduces(describe(sample, period_s=span), want, f"preset {name}")
