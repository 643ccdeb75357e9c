"""Time-varying traffic (sim.analysis.hourly): a step profile's hourly fleet computed by hand, the
scale-up delay's lead charged where it falls, a diurnal day's over-provisioned share between 0
and 1, properties under hypothesis, and bad input refused in one line naming the argument."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.analysis.hourly import HOURLY_SCHEMA, hourly_fleet, hours_of, peak_rate_per_hour
from workloads.arrivals.rate_profile import DiurnalRate, RampRate, StepRate, TableRate

# 2 requests/s for the first hour, 10 for the second, 4 for half an hour, then 1 from 2.5 h on.
STEPS = StepRate(shape="steps", times_s=(0.0, 3600.0, 7200.0, 9000.0), rates_per_s=(2.0, 10.0, 4.0, 1.0))


def test_a_step_profiles_hourly_fleet_by_hand():
    # Knots span 9,000 s: 3 hours. Peaks: hour 0: 2; hour 1: 10; hour 2: max(4, 1) = 4 (the step to 1 at 2.5 h
    # is inside hour 2). One replica sustains 3 requests/s, costs $5 an hour.
    # Needed: ceil(2/3) = 1, ceil(10/3) = 4, ceil(4/3) = 2. Static: 4 every hour.
    f = hourly_fleet(STEPS, 3.0, 5.0)
    t = f.table.to_pydict()
    assert f.table.schema == HOURLY_SCHEMA
    assert t["hour"] == [0, 1, 2] and t["rate_per_s"] == [2.0, 10.0, 4.0]
    assert t["replicas_needed"] == [1, 4, 2] and t["replicas_static"] == [4, 4, 4]
    assert t["replicas_resized"] == [1, 4, 2]
    # Static: 4 × $5 × 3 h = $60; resized, no delay: (1 + 4 + 2) × $5 = $35.
    assert t["usd_static"] == [20.0, 20.0, 20.0] and t["usd_resized"] == [5.0, 20.0, 10.0]
    assert (f.usd_static, f.usd_resized) == (60.0, 35.0)
    # Per day: 60 × 24 / 3 = $480 and 35 × 8 = $280.
    assert (f.usd_static_per_day, f.usd_resized_per_day) == (480.0, 280.0)
    # Over-provisioned: (12 − 7) / 12 replica-hours of the static fleet.
    assert f.over_provisioned_share == pytest.approx(5 / 12, rel=1e-12)
    assert (f.needed_replica_hours, f.static_replica_hours) == (7.0, 12.0)


def test_the_scale_up_delay_is_paid_ahead_of_the_hour_that_needs_it():
    # Delay 30 min: hour 1's 4 replicas are asked for at 0.5 h, so hour 0 holds 1 replica for half an hour
    # and 4 for the other half: 0.5 + 2 = 2.5 replica-hours = $12.50. Hour 2's 2 replicas are already
    # held (hour 1 has 4); scale-down at 2 h. Resized: 12.5 + 20 + 10 = $42.50.
    f = hourly_fleet(STEPS, 3.0, 5.0, 1800.0)
    t = f.table.to_pydict()
    assert t["replicas_resized"] == [4, 4, 2]
    assert t["usd_resized"] == [12.5, 20.0, 10.0] and f.usd_resized == 42.5
    assert f.resized_replica_hours == 8.5
    # Delay 90 min: hour 1's lead starts at −0.5 h, so hour 0 holds 4 throughout: 4 + 4 + 2 = 10 replica-hours.
    assert hourly_fleet(STEPS, 3.0, 5.0, 5400.0).table.column("usd_resized").to_pylist() == [20.0, 20.0, 10.0]


def test_a_periodic_profile_wraps_its_lead_into_the_last_hour():
    # A 3-hour cycle of 3, 1, 1 requests/s (knots with a period, as a diurnal curve has): hour 0 needs 3
    # replicas at 1 request/s each, asked for 15 min before the cycle restarts, so the last hour pays
    # 1 × 0.75 + 3 × 0.25 = 1.5 replica-hours at $1.
    from workloads.arrivals.rate_profile import Knots
    k = Knots(np.array([0.0, 3600.0, 7200.0, 10_800.0]), np.array([3.0, 1.0, 1.0, 1.0]), step=True, period=10_800.0)
    f = hourly_fleet(k, 1.0, 1.0, 900.0)
    assert f.table.column("replicas_needed").to_pylist() == [3, 1, 1]
    assert f.table.column("usd_resized").to_pylist() == [3.0, 1.0, 1.5]


def test_a_diurnal_day_is_24_hours_and_its_static_fleet_is_partly_over_provisioned():
    d = DiurnalRate(shape="diurnal", mean_rate_per_s=10.0, peak_to_trough=3.0)
    # Peak 10 × (1 + 0.5) = 15 at 14:00, trough 5 at 02:00.
    f = hourly_fleet(d, 4.0, 10.0, 600.0)
    rates = np.array(f.table.column("rate_per_s").to_pylist())
    assert f.hours == 24 and rates.max() == pytest.approx(15.0, rel=1e-12)
    # The quietest hours, 01:00-02:00 and 02:00-03:00, peak at their end away from 02:00:
    # 10 × (1 + 0.5 cos(2π·(1 − 14)/24)) = 5.17.
    assert rates.min() == pytest.approx(10 * (1 + 0.5 * np.cos(2 * np.pi * (1 - 14) / 24)), rel=1e-9)
    assert f.replicas_static == 4  # ceil(15 / 4)
    assert 0.0 < f.over_provisioned_share < 1.0
    assert f.usd_resized < f.usd_static and f.usd_static_per_day == f.usd_static == 4 * 10.0 * 24
    # A cycle shorter than an hour: every hour holds a whole cycle, so every hour peaks at 15.
    short = DiurnalRate(shape="diurnal", mean_rate_per_s=10.0, peak_to_trough=3.0, period_s=600.0)
    assert hours_of(short) == 1 and peak_rate_per_hour(short).tolist() == [pytest.approx(15.0, rel=1e-12)]


def test_peaks_are_exact_for_linear_pieces():
    # A ramp from 0 to 7.2 requests/s over 2 h: hour 0 ends at 3.6, hour 1 at 7.2, then 7.2 holds.
    ramp = RampRate(shape="ramp", from_rate_per_s=0.0, to_rate_per_s=7.2, over_s=7200.0)
    assert hours_of(ramp) == 2
    assert peak_rate_per_hour(ramp).tolist() == [3.6, 7.2]
    # A table with a spike of 9 at 1.5 h, 0 at both ends: hour 0 peaks at its end, 9 × 3,600 / 5,400 = 6;
    # the spike itself is inside hour 1, above both its ends (6 and 0).
    spike = TableRate(shape="table", times_s=(0.0, 5400.0, 7200.0), rates_per_s=(0.0, 9.0, 0.0))
    assert peak_rate_per_hour(spike).tolist() == [6.0, 9.0]


@settings(max_examples=60, deadline=None)
@given(rates=st.lists(st.floats(0.0, 100.0), min_size=1, max_size=12), per=st.floats(0.1, 50.0),
       price=st.floats(0.0, 100.0), delay=st.floats(0.0, 20_000.0), lo=st.integers(0, 3))
def test_resized_never_costs_more_than_static(rates, per, price, delay, lo):
    rates[0] = max(rates[0], 0.5)  # some traffic
    p = StepRate(shape="steps", times_s=tuple(3600.0 * i for i in range(len(rates))), rates_per_s=tuple(rates))
    f = hourly_fleet(p, per, price, delay, min_replicas=lo)
    t = f.table.to_pydict()
    assert f.usd_resized <= f.usd_static * (1 + 1e-12) + 1e-9
    assert all(n <= r <= f.replicas_static for n, r in zip(t["replicas_needed"], t["replicas_resized"]))
    assert 0.0 <= f.over_provisioned_share < 1.0
    if delay == 0:
        assert f.resized_replica_hours == f.needed_replica_hours


@pytest.mark.parametrize("kwargs, match", [
    ({"max_rate_per_replica": 0.0}, r"^max_rate_per_replica = 0.0: must be a finite number > 0$"),
    ({"max_rate_per_replica": -1.0}, r"^max_rate_per_replica = -1.0: must be"),
    ({"usd_per_replica_hour": -3.0}, r"^usd_per_replica_hour = -3.0: must be a finite number >= 0$"),
    ({"scale_up_delay_s": -1.0}, r"^scale_up_delay_s = -1.0: must be"),
    ({"min_replicas": -1}, r"^min_replicas = -1: must be a whole number >= 0$"),
])
def test_bad_input_is_refused_in_one_line_naming_the_argument(kwargs, match):
    args = {"max_rate_per_replica": 3.0, "usd_per_replica_hour": 5.0} | kwargs
    with pytest.raises(ValueError, match=match) as e:
        hourly_fleet(STEPS, **args)
    assert "\n" not in str(e.value)
