"""Cost: the issue's worked example, prices against hand computations (cloud and owned), the power
model against its physical bounds, and bad cost sections refused in one line."""

from __future__ import annotations

import math

import pytest

from calibration import GPUS
from sim import simulate
from sim.results.cost import HOURS_PER_YEAR, usd_per_million
from sim.errors import ScenarioError
from sim import load_scenario
from tests.helpers import _merge, scenario

# Llama-3.1-8B bf16 on one H100 (the datasheet roofline: FLOPs and bytes for the power model),
# a minute of Poisson chat-like traffic: small enough to run in a second.
ROOFLINE = {
    "workload": {"arrival": {"rate_per_s": 4.0}, "duration_s": 60.0, "num_requests": None,
                 "classes": [{"name": "x", "prompt_tokens": {"dist": "uniform", "low": 100, "high": 900},
                              "output_tokens": {"dist": "uniform", "low": 20, "high": 200},
                              "slo": {"ttft_s": 1.0}}]},
}


def roofline(**overrides):
    """The ROOFLINE scenario with ``overrides`` merged over it."""
    return load_scenario(_merge(ROOFLINE, overrides))


def test_the_worked_example_comes_out_exactly():
    # A GPU at $3/hour producing 2,000 output tokens/s: $0.4167 per 1M output tokens, and a
    # 500-token response about $0.0002.
    per_million = usd_per_million(3.0, 2000.0)
    assert round(per_million, 4) == 0.4167
    assert round(per_million * 500 / 1e6, 4) == 0.0002
    with pytest.raises(ValueError, match=r"tokens_per_s = 0.0: must be > 0"):
        usd_per_million(3.0, 0.0)


def test_a_run_charges_the_price_for_every_gpu_over_the_window():
    s = scenario(replicas=2, cost={"usd_per_gpu_hour": 3.0},
                 workload={"arrival": {"rate_per_s": 0.5}, "num_requests": 40,
                           "classes": [{"name": "x", "prompt_tokens": {"dist": "fixed", "value": 8},
                                        "output_tokens": {"dist": "fixed", "value": 5}}]})
    sm = simulate(s).summary
    c, th, dur = sm["cost"], sm["throughput"], sm["window"]["duration_s"]
    assert c["usd_per_gpu_hour"] == 3.0 and c["gpus"] == 2
    assert c["gpu_hours"] == pytest.approx(2 * dur / 3600, rel=1e-12)
    assert c["total_usd"] == pytest.approx(3.0 * 2 * dur / 3600, rel=1e-12)
    assert c["usd_per_hour"] == pytest.approx(6.0, rel=1e-12)
    # The per-token figures are the bill over the window's counts, i.e. the worked example's formula.
    assert c["usd_per_million_output_tokens"] == pytest.approx(usd_per_million(6.0, th["output_tokens_per_s"]), rel=1e-9)
    assert c["usd_per_million_input_tokens"] == pytest.approx(usd_per_million(6.0, th["input_tokens_per_s"]), rel=1e-9)
    assert c["usd_per_request"] == pytest.approx(c["total_usd"] / (th["requests_per_s"] * dur), rel=1e-9)
    total = th["input_tokens_per_s"] * dur + sum(sm["windows"]["output_tokens"])
    assert c["usd_per_million_total_tokens"] == pytest.approx(c["total_usd"] / total * 1e6, rel=1e-9)
    assert c["energy_kwh"] is None  # an explicit profile has no FLOPs or bytes to model power from


def test_cloud_discount_comes_off_the_catalog_price_and_says_so():
    s = roofline(cost={"pricing": "spot", "discount": 0.6})
    c = simulate(s).summary["cost"]
    assert c["usd_per_gpu_hour"] == pytest.approx(GPUS["h100-sxm"].price_usd_per_hour * 0.4, rel=1e-12)
    assert "less 60% (spot)" in c["source"] and "p5.48xlarge" in c["source"]


def test_owned_hardware_cost_by_hand():
    s = roofline(cost={"model": "owned", "purchase_usd_per_gpu": 30_000.0, "server_usd_per_gpu": 10_000.0,
                                   "amortisation_years": 4.0, "hosting_usd_per_gpu_month": 100.0,
                                   "usd_per_kwh": 0.1, "pue": 1.5})
    sm = simulate(s).summary
    c = sm["cost"]
    hours = sm["window"]["duration_s"] / 3600
    capex = 40_000 / (4 * 8760)  # $/GPU-hour: 1.1416
    hosting = 100 * 12 / 8760
    assert HOURS_PER_YEAR == 8760
    assert c["amortisation_usd_per_gpu_hour"] == pytest.approx(capex, rel=1e-12)
    assert c["hosting_usd_per_gpu_hour"] == pytest.approx(hosting, rel=1e-12)
    assert c["facility_energy_kwh"] == pytest.approx(1.5 * c["energy_kwh"], rel=1e-12)
    assert c["total_usd"] == pytest.approx((capex + hosting) * hours + c["energy_kwh"] * 1.5 * 0.1, rel=1e-12)
    assert c["usd_per_gpu_hour"] == pytest.approx(c["total_usd"] / hours, rel=1e-12)


def test_energy_lies_between_idle_and_full_power_and_follows_the_model():
    s = roofline(replicas=2)
    sm = simulate(s).summary
    c, w = sm["cost"], sm["windows"]
    gpu = GPUS["h100-sxm"]
    seconds = sm["window"]["duration_s"]
    idle_kwh, full_kwh = 2 * gpu.idle_w * seconds / 3.6e6, 2 * gpu.tdp_w * seconds / 3.6e6
    assert idle_kwh < c["energy_kwh"] < full_kwh
    assert c["energy_kwh"] == pytest.approx(idle_kwh + (gpu.tdp_w - gpu.idle_w) * sum(w["active_s"]) / 3.6e6, rel=1e-12)
    # Activity never exceeds the time an iteration ran.
    assert all(0 <= a <= b + 1e-9 for a, b in zip(w["active_s"], w["busy_s"]))
    # More load draws more energy.
    busier = roofline(workload={"arrival": {"rate_per_s": 12.0}}, replicas=2)
    assert simulate(busier).summary["cost"]["energy_kwh"] > c["energy_kwh"]


def test_doubling_the_price_doubles_cost_per_token_and_leaves_latency_alone():
    a = simulate(roofline(cost={"usd_per_gpu_hour": 2.0})).summary
    b = simulate(roofline(cost={"usd_per_gpu_hour": 4.0})).summary
    for k in ("usd_per_million_output_tokens", "usd_per_million_input_tokens", "usd_per_request", "total_usd"):
        assert b["cost"][k] == pytest.approx(2 * a["cost"][k], rel=1e-12), k
    assert a["latency_s"] == b["latency_s"] and a["throughput"] == b["throughput"]


def test_good_output_tokens_are_those_of_requests_that_met_their_slo():
    sm = simulate(roofline()).summary
    th, c = sm["throughput"], sm["cost"]
    assert th["good_output_tokens_per_s"] <= th["output_tokens_per_s"] + 1e-9
    good = th["good_output_tokens_per_s"] * sm["window"]["duration_s"]
    assert c["usd_per_million_good_output_tokens"] == pytest.approx(c["total_usd"] / good * 1e6, rel=1e-12)
    assert math.isfinite(c["wh_per_1000_output_tokens"]) and c["wh_per_1000_output_tokens"] > 0


@pytest.mark.parametrize("cost, pattern", [
    ({"usd_per_gpu_hour": -1.0}, r"cost\.usd_per_gpu_hour = -1.0: must be greater than 0"),
    ({"pricing": "spot"}, r"pricing = 'spot': the catalog holds on-demand prices only; give discount"),
    ({"discount": 1.5}, r"cost\.discount = 1.5: must be less than 1"),
    ({"purchase_usd_per_gpu": 30000.0}, r"purchase_usd_per_gpu = 30000.0 is for model 'owned'"),
    ({"model": "owned", "usd_per_kwh": 0.1}, r"purchase_usd_per_gpu is required for model 'owned'"),
    ({"model": "owned", "purchase_usd_per_gpu": 1.0, "usd_per_kwh": 0.1, "discount": 0.2},
     r"discount = 0.2 is for model 'cloud'"),
    ({"idle_w": 800.0, "tdp_w": 700.0}, r"idle_w = 800 is not below tdp_w = 700"),
    ({"pue": 0.5}, r"cost\.pue = 0.5: must be greater than or equal to 1"),
    ({"model": "leased"}, r"cost\.model = 'leased': must be 'cloud' or 'owned'"),
    ({"price": 3.0}, r"cost\.price"),
])
def test_bad_cost_sections_are_refused_in_one_line(cost, pattern):
    with pytest.raises(ScenarioError, match=pattern) as e:
        scenario(cost=cost)
    assert "\n" not in str(e.value)


def test_owned_hardware_needs_a_profile_with_power():
    s = scenario(cost={"model": "owned", "purchase_usd_per_gpu": 1.0, "usd_per_kwh": 0.1})
    with pytest.raises(ValueError, match=r"an explicit profile"):
        simulate(s)
