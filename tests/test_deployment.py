"""Deployment patterns and break-even (sim.analysis.deployment): every pattern priced against a
hand computation written out here, the managed API costing exactly tokens × price, break-even
points where the two costs cross (within 1e-9 relative, cheaper on the right side), properties
under hypothesis, and bad input refused in one line naming the argument."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibration import GPUS
from sim.analysis.deployment import (HOURS_PER_MONTH, CpuServing, Fleet, ManagedAPI, breakeven_tokens_per_month,
                                     breakeven_utilisation, deployments, managed_api_cost)
from sim.config import CostSpec

# Two H100 SXM busy half the time, 3 billion input and 1 billion output tokens a month.
FLEET = Fleet(gpus=2, hardware="h100-sxm", utilisation=0.5, input_tokens_per_month=3e9,
              output_tokens_per_month=1e9)
OWNED = CostSpec(model="owned", purchase_usd_per_gpu=30_000.0, server_usd_per_gpu=10_000.0, amortisation_years=4.0,
                 hosting_usd_per_gpu_month=100.0, usd_per_kwh=0.1, pue=1.5)
API = ManagedAPI(usd_per_million_input=0.5, usd_per_million_output=1.5, name="some API", source="its price page")


def by_kind(ds):
    return {d.kind: d for d in ds}


def test_a_month_is_730_hours():
    assert HOURS_PER_MONTH == 8760 / 12 == 730.0


def test_the_managed_api_costs_exactly_tokens_times_price():
    # 3e9 × 0.5 / 1e6 = 1,500 plus 1e9 × 1.5 / 1e6 = 1,500: $3,000.
    assert managed_api_cost(3e9, 1e9, API) == 3e9 * 0.5 / 1e6 + 1e9 * 1.5 / 1e6 == 3000.0
    assert managed_api_cost(0, 0, API) == 0.0
    d = by_kind(deployments(FLEET, api=API))["managed-api"]
    assert d.usd_per_month == 3000.0 and d.name == "some API"
    assert d.usd_per_million_output_tokens == pytest.approx(3.0, rel=1e-12)  # $3,000 / 1,000 M output tokens
    assert d.assumptions["usd_per_million_input"] == {"value": 0.5, "source": "its price page"}
    # At 3 input tokens per output token the API bills 3 × 0.5 + 1.5 = $3 per 1M output tokens.
    assert d.marginal_usd_per_million_output == 3.0 and d.fixed_usd_per_month == 0.0


def test_cloud_patterns_by_hand():
    price = GPUS["h100-sxm"].price_usd_per_hour
    assert price == 6.88
    ds = by_kind(deployments(FLEET, committed=CostSpec(pricing="committed", discount=0.4),
                             spot=CostSpec(pricing="spot", usd_per_gpu_hour=2.0)))
    # On demand: 2 GPUs × $6.88 × 730 h = $10,044.80 a month; over 1,000 M output tokens $10.0448 each million.
    od = ds["cloud-on-demand"]
    assert od.usd_per_month == pytest.approx(2 * 6.88 * 730, rel=1e-12) and od.usd_per_month == pytest.approx(10_044.8)
    assert od.usd_per_million_output_tokens == pytest.approx(10.0448, rel=1e-12)
    assert "p5.48xlarge" in od.assumptions["usd_per_gpu_hour"]["source"]
    # Committed, 40% off: 6.88 × 0.6 = $4.128 per GPU-hour × 2 × 730 = $6,026.88.
    assert ds["cloud-committed"].usd_per_month == pytest.approx(6026.88, rel=1e-12)
    assert "less 40% (committed)" in ds["cloud-committed"].assumptions["usd_per_gpu_hour"]["source"]
    # Spot at a given $2: 2 × 2 × 730 = $2,920; interruptions stated as not modelled.
    assert ds["cloud-spot"].usd_per_month == pytest.approx(2920.0, rel=1e-12)
    assert ds["cloud-spot"].assumptions["interruptions"]["value"] == "not modelled"


def test_owned_hardware_by_hand():
    d = by_kind(deployments(FLEET, owned=OWNED))["owned"]
    # Amortisation: (30,000 + 10,000) / (4 × 8,760) $/GPU-hour × 730 h = 40,000 / 48 = $833.33 per GPU-month;
    # hosting $100 per GPU-month: 2 GPUs × 933.33 = $1,866.67.
    hourly = 2 * (40_000 / 48 + 100)
    # Energy: 70 W idle + (700 − 70) × 0.5 busy × 1 activity = 385 W per GPU; 2 × 385 × 730 / 1000 = 562.1 kWh;
    # × PUE 1.5 × $0.1 = $84.315.
    energy = 2 * (70 + 630 * 0.5) * 730 / 1000 * 1.5 * 0.1
    assert energy == pytest.approx(84.315, rel=1e-12)
    assert d.usd_per_month == pytest.approx(hourly + energy, rel=1e-12)
    assert d.usd_per_million_output_tokens == pytest.approx((hourly + energy) / 1000, rel=1e-12)
    # Fixed: the hourly charges plus the idle floor, 2 × 70 × 730 / 1000 × 0.15 = $15.33; the rest
    # (84.315 − 15.33 = $68.985) over 1,000 M output tokens is the marginal $0.068985 per 1M.
    assert d.fixed_usd_per_month == pytest.approx(hourly + 15.33, rel=1e-12)
    assert d.marginal_usd_per_million_output == pytest.approx(0.068985, rel=1e-9)
    assert d.assumptions["energy_kwh"]["value"] == pytest.approx(562.1, rel=1e-12)
    # A lower activity draws less: 70 + 630 × 0.5 × 0.5 = 227.5 W per GPU.
    calm = by_kind(deployments(Fleet(2, "h100-sxm", 0.5, 3e9, 1e9, activity=0.5), owned=OWNED))["owned"]
    assert calm.usd_per_month == pytest.approx(hourly + 2 * 227.5 * 730 / 1000 * 0.15, rel=1e-12)


def test_cpu_serving_by_hand_and_when_it_does_not_fit():
    price = GPUS["cpu-server"].price_usd_per_hour  # $1.855 per server-hour (catalog)
    # 1e9 output tokens / (730 × 3,600 s) = 380.5 tokens/s on average; 150 per server: ceil(2.54) = 3 servers.
    d = by_kind(deployments(FLEET, cpu=CpuServing(fits=True, output_tokens_per_s=150.0)))["cpu"]
    assert d.assumptions["servers"]["value"] == 3
    assert d.usd_per_month == pytest.approx(3 * price * 730, rel=1e-12)
    given_servers = by_kind(deployments(FLEET, cpu=CpuServing(fits=True, output_tokens_per_s=150.0, servers=5)))
    assert given_servers["cpu"].usd_per_month == pytest.approx(5 * price * 730, rel=1e-12)
    nofit = by_kind(deployments(FLEET, cpu=CpuServing(fits=False, reason="405B in bf16 needs 810 GB")))["cpu"]
    assert nofit.usd_per_month is None and nofit.reason == "405B in bf16 needs 810 GB"


def test_every_pattern_is_listed_and_the_unpriced_say_why():
    ds = deployments(FLEET)
    assert [d.kind for d in ds] == ["cloud-on-demand", "cloud-committed", "cloud-spot", "owned", "managed-api", "cpu"]
    unpriced = {d.kind: d.reason for d in ds if not d.priced}
    assert set(unpriced) == {"cloud-committed", "cloud-spot", "owned", "managed-api", "cpu"}
    assert "no committed discount" in unpriced["cloud-committed"]
    assert all(d.usd_per_million_output_tokens is None for d in ds if not d.priced)
    assert ds[0].as_dict()["assumptions"]["hours_per_month"]["value"] == 730.0


def test_breakeven_volume_by_hand_and_where_the_costs_cross():
    # Owned: F = 1,866.67 + 15.33 = $1,882.00 a month, m = $0.068985 per 1M; the API bills
    # a = 3 × 0.5 + 1.5 = $3 per 1M output tokens. V* = 1,882.00 × 1e6 / (3 − 0.068985) = 642.1 M.
    d = by_kind(deployments(FLEET, owned=OWNED))["owned"]
    f, m = d.fixed_usd_per_month, d.marginal_usd_per_million_output
    v = breakeven_tokens_per_month(f, API, input_per_output=3.0, capacity_output_tokens_per_month=2e9,
                                   marginal_usd_per_million_output=m)
    assert v == pytest.approx((2 * (40_000 / 48 + 100) + 15.33) * 1e6 / (3 - 0.068985), rel=1e-9)
    assert v == pytest.approx(6.4209e8, rel=1e-4)

    def own(x):
        return f + m * x / 1e6

    def api(x):
        return managed_api_cost(3 * x, x, API)

    assert own(v) == pytest.approx(api(v), rel=1e-9)
    assert api(v * 0.99) < own(v * 0.99) and own(v * 1.01) < api(v * 1.01)
    # On demand: F = $10,044.80 → V* = 3,348.3 M output tokens, above the 2,000 M the fleet serves: None.
    od = by_kind(deployments(FLEET))["cloud-on-demand"]
    assert breakeven_tokens_per_month(od.fixed_usd_per_month, API, input_per_output=3.0,
                                      capacity_output_tokens_per_month=2e9) is None
    assert breakeven_tokens_per_month(od.fixed_usd_per_month, API, input_per_output=3.0,
                                      capacity_output_tokens_per_month=4e9) == pytest.approx(10_044.8e6 / 3, rel=1e-12)
    # An API cheaper per token than the fleet's marginal cost is always cheaper.
    assert breakeven_tokens_per_month(100.0, ManagedAPI(0.0, 0.05), input_per_output=1.0,
                                      capacity_output_tokens_per_month=1e12,
                                      marginal_usd_per_million_output=0.05) is None


def test_breakeven_utilisation_by_hand_and_where_the_costs_cross():
    # K = 40,000 / 35,040 + 1,200 / 8,760 = $1.278539 per GPU-hour; idle energy 70 W × 1.5 × 0.1 / 1000 =
    # $0.0105 per hour; energy above idle at full load 630 × 1.5 × 0.1 / 1000 = $0.0945 per busy hour.
    # u* = (1.278539 + 0.0105) / (6.88 − 0.0945) = 0.189970.
    u = breakeven_utilisation(OWNED, "h100-sxm", 6.88)
    k = 40_000 / 35_040 + 1_200 / 8_760
    assert u == pytest.approx((k + 0.0105) / (6.88 - 0.0945), rel=1e-12)
    assert u == pytest.approx(0.18997, abs=1e-5)

    def owned(x):
        return k + (70 + 630 * x) * 1.5 * 0.1 / 1000

    assert owned(u) == pytest.approx(6.88 * u, rel=1e-9)
    assert owned(u * 1.01) < 6.88 * u * 1.01 and owned(u * 0.99) > 6.88 * u * 0.99
    # A cloud price that owned hardware never beats, even fully busy: None.
    assert breakeven_utilisation(OWNED, "h100-sxm", 1.0) is None
    assert breakeven_utilisation(OWNED, "h100-sxm", 0.05) is None  # cheaper than the energy alone


@settings(max_examples=60, deadline=None)
@given(p1=st.floats(0.1, 50.0), p2=st.floats(0.1, 50.0), purchase=st.floats(1_000.0, 60_000.0),
       kwh=st.floats(0.0, 0.5), activity=st.floats(0.0, 1.0))
def test_breakeven_utilisation_falls_as_the_cloud_price_rises(p1, p2, purchase, kwh, activity):
    owned = CostSpec(model="owned", purchase_usd_per_gpu=purchase, usd_per_kwh=kwh)
    lo, hi = sorted((p1, p2))
    u_lo = breakeven_utilisation(owned, "h100-sxm", lo, activity=activity)
    u_hi = breakeven_utilisation(owned, "h100-sxm", hi, activity=activity)
    if u_lo is not None:  # owned wins at the cheaper cloud price: it wins at the dearer one too, sooner
        assert u_hi is not None and u_hi <= u_lo * (1 + 1e-12)


@settings(max_examples=60, deadline=None)
@given(fixed=st.floats(0.0, 1e6), p_in=st.floats(0.0, 20.0), p_out=st.floats(0.01, 60.0), ratio=st.floats(0.0, 50.0),
       marginal=st.floats(0.0, 5.0))
def test_at_the_breakeven_volume_both_bills_are_equal(fixed, p_in, p_out, ratio, marginal):
    api = ManagedAPI(p_in, p_out)
    v = breakeven_tokens_per_month(fixed, api, input_per_output=ratio, capacity_output_tokens_per_month=1e30,
                                   marginal_usd_per_million_output=marginal)
    if v is None:
        assert ratio * p_in + p_out <= marginal
    else:
        assert fixed + marginal * v / 1e6 == pytest.approx(managed_api_cost(ratio * v, v, api), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("make, match", [
    (lambda: ManagedAPI(-1.0, 2.0), r"^usd_per_million_input = -1.0: must be a finite number >= 0$"),
    (lambda: ManagedAPI(1.0, float("nan")), r"^usd_per_million_output = nan: must be a finite number >= 0$"),
    (lambda: Fleet(2, "h100-sxm", 0.0, 1.0, 1.0), r"^utilisation = 0.0: must be in \(0, 1\]$"),
    (lambda: Fleet(2, "h100-sxm", 1.5, 1.0, 1.0), r"^utilisation = 1.5: must be in \(0, 1\]$"),
    (lambda: Fleet(0, "h100-sxm", 0.5, 1.0, 1.0), r"^gpus = 0: must be a whole number >= 1$"),
    (lambda: Fleet(1, "h999", 0.5, 1.0, 1.0), r"^hardware = 'h999': not in the hardware catalog"),
    (lambda: Fleet(1, "h100-sxm", 0.5, -1.0, 1.0), r"^input_tokens_per_month = -1.0: must be"),
    (lambda: managed_api_cost(-5, 1, API), r"^input_tokens = -5: must be"),
    (lambda: breakeven_tokens_per_month(-1.0, API, input_per_output=1.0, capacity_output_tokens_per_month=1.0),
     r"^fixed_usd_per_month = -1.0: must be"),
    (lambda: breakeven_utilisation(OWNED, "h100-sxm", -2.0), r"^cloud_usd_per_gpu_hour = -2.0: must be"),
    (lambda: breakeven_utilisation(CostSpec(), "h100-sxm", 2.0),
     r"^owned: a cost section with model 'owned' is needed, got model 'cloud'$"),
    (lambda: deployments(FLEET, committed=CostSpec(pricing="spot", discount=0.5)),
     r"^committed: a cost section with model 'cloud', pricing 'committed' is needed, got pricing 'spot'$"),
])
def test_bad_input_is_refused_in_one_line_naming_the_argument(make, match):
    with pytest.raises(ValueError, match=match) as e:
        make()
    assert "\n" not in str(e.value)
