"""Time-varying traffic: the fleet each hour needs, a static fleet sized for the peak against one
resized every hour, and the share of the static fleet that sits over-provisioned. Pure arithmetic
on a rate profile and one replica's figures (no simulation here).

Inputs: the scenario's arrival ``rate_profile`` (:mod:`workloads.arrivals.rate_profile`: a
diurnal curve, steps, a ramp or a table; anything with ``knots()``, or the :class:`Knots`
themselves), the highest rate one replica sustains under the SLOs (a load curve's
``reference.rate_per_s``, :mod:`sim.analysis.curve`), one replica's $/hour, and the delay from
asking for a replica to its serving (the scale-up delay).

**Hours.** A periodic profile (the diurnal curve) covers its period, others the span of their
knots, rounded up to whole hours (at least one); hour ``h`` is ``[3600·h, 3600·(h+1))`` s.

**Rate per hour.** The peak rate within the hour, exact: the profile is linear or constant between
its knots, so its highest value on an hour is at a knot inside it or at an end (a step profile's
value at the hour's end belongs to the next hour).

**Replicas needed.** ``n_h = max(min_replicas, ⌈peak_h / max_rate_per_replica⌉)`` (a ratio within
1e-9 of a whole number counts as that number, as in :mod:`sim.results.waste`).

**Static fleet.** ``N = max_h n_h`` replicas every hour.

**Resized fleet.** Each hour's ``n_h`` replicas are asked for ``delay`` seconds before the hour
starts, so they serve from its first second, and are paid from that moment; they are let go at
the hour's end unless a later hour already holds them (scale-down at the hour boundary, no
delay). At time t the fleet is ``N(t) = max(n_j, max{n_h : h > j, 3600·h − delay <= t})``, t in
hour j, and each hour pays ``∫ N(t) dt / 3600`` replica-hours. A periodic profile repeats:
the lead before hour 0 falls in the last hours of the period (a period that is not a whole number
of hours is taken as its hours rounded up). Other profiles start with hour 0's fleet in place.
``replicas_resized`` is the most replicas held during the hour. With no delay the resized fleet
pays exactly ``n_h`` each hour; with any delay it never holds more than the static fleet.

**Over-provisioned share** of the static fleet: ``(N·H − Σ n_h) / (N·H)``, the GPU-hours beyond
those needed over the static GPU-hours (every replica has the same GPUs, so the ratio of
replica-hours is that of GPU-hours).

**Per day.** The horizon's totals scaled to 24 hours (``total × 24 / H``): exactly the totals for
a diurnal profile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, Union

import numpy as np
import pyarrow as pa

from workloads.arrivals.rate_profile import Knots

__all__ = ["HOURLY_SCHEMA", "HourlyFleet", "hourly_fleet", "hours_of", "peak_rate_per_hour"]

_HOUR_S = 3600.0

HOURLY_SCHEMA = pa.schema([
    ("hour", pa.int64()), ("rate_per_s", pa.float64()), ("replicas_needed", pa.int64()),
    ("replicas_resized", pa.int64()), ("replicas_static", pa.int64()), ("usd_static", pa.float64()),
    ("usd_resized", pa.float64()),
])


class _HasKnots(Protocol):
    def knots(self) -> Knots: ...


RateSource = Union[_HasKnots, Knots]  # a rate profile (its knots() gives them) or the knots


def _knots(profile: RateSource) -> Knots:
    return profile if isinstance(profile, Knots) else profile.knots()


def hours_of(profile: RateSource) -> int:
    """Whole hours the analysis covers: the period (periodic profiles) or the knots' span,
    rounded up, at least 1."""
    k = _knots(profile)
    length = k.period if k.period is not None else k.span
    # 1e-9 h of slack: a period of 86,400 s computed in floating point is 24 hours, not 25.
    return max(1, math.ceil(length / _HOUR_S - 1e-9))


def peak_rate_per_hour(profile: RateSource, hours: int | None = None) -> np.ndarray:
    """The highest rate (requests/s) within each hour ``[3600·h, 3600·(h+1))``, exactly (see the
    module docstring), for ``hours`` hours (unset: :func:`hours_of`)."""
    k = _knots(profile)
    h_count = hours_of(k) if hours is None else hours
    end = h_count * _HOUR_S
    if k.period is not None and k.period <= _HOUR_S:
        # Every hour holds a whole period, so every knot's rate is reached within it.
        return np.full(h_count, float(k.rate.max()))
    if k.period is not None:
        shifts = np.arange(math.ceil(end / k.period) + 1) * k.period
        times = (k.t[None, :] + shifts[:, None]).ravel()
    else:
        times = k.t
    edges = np.arange(h_count + 1) * _HOUR_S
    cand = np.concatenate([edges[:-1], times[(times >= 0) & (times < end)]])
    peaks = np.full(h_count, -np.inf)
    np.maximum.at(peaks, np.minimum((cand // _HOUR_S).astype(np.int64), h_count - 1), k.rate_at(cand))
    if not k.step:
        # A linear piece climbing to the hour's end: its value there is the hour's supremum.
        np.maximum(peaks, k.rate_at(edges[1:]), out=peaks)
    return peaks


@dataclass(frozen=True)
class HourlyFleet:
    """The per-hour fleet of a time-varying rate (every rule in the module docstring).

    ``table``: one row per hour, columns :data:`HOURLY_SCHEMA` (rate = the hour's peak; dollars
    per hour). ``usd_static`` / ``usd_resized``: totals over the ``hours``; ``*_per_day``: scaled
    to 24 hours. Replica-hours: ``needed`` = Σ n_h, ``static`` = N·H, ``resized`` = what the
    resized fleet pays for; GPU-hours are these times ``gpus_per_replica``.
    """

    table: pa.Table
    hours: int
    max_rate_per_replica: float
    usd_per_replica_hour: float
    scale_up_delay_s: float
    min_replicas: int
    gpus_per_replica: int
    replicas_static: int
    needed_replica_hours: float
    static_replica_hours: float
    resized_replica_hours: float
    usd_static: float
    usd_resized: float
    usd_static_per_day: float
    usd_resized_per_day: float
    over_provisioned_share: float

    @property
    def saving_share(self) -> float:
        """Share of the static fleet's cost that resizing saves: 1 − resized / static (0 when free)."""
        return 1.0 - self.usd_resized / self.usd_static if self.usd_static > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Everything as plain JSON data (the table as a list of rows)."""
        return {"hours": self.hours, "max_rate_per_replica": self.max_rate_per_replica,
                "usd_per_replica_hour": self.usd_per_replica_hour, "scale_up_delay_s": self.scale_up_delay_s,
                "min_replicas": self.min_replicas, "gpus_per_replica": self.gpus_per_replica,
                "replicas_static": self.replicas_static, "needed_replica_hours": self.needed_replica_hours,
                "static_replica_hours": self.static_replica_hours,
                "resized_replica_hours": self.resized_replica_hours, "usd_static": self.usd_static,
                "usd_resized": self.usd_resized, "usd_static_per_day": self.usd_static_per_day,
                "usd_resized_per_day": self.usd_resized_per_day,
                "over_provisioned_share": self.over_provisioned_share, "table": self.table.to_pylist()}


def _resized(needed: list[int], delay: float, cyclic: bool) -> tuple[list[int], list[float]]:
    """Per hour: the most replicas held, and the replica-hours paid (``N(t)`` of the module
    docstring, integrated exactly: it is a step function, rising at the lead times
    ``3600·h − delay`` of later hours within the hour)."""
    n_h = len(needed)
    ahead = math.ceil(delay / _HOUR_S) + 1  # later hours whose lead can reach into this one
    most, paid = [], []
    for j in range(n_h):
        start, stop = j * _HOUR_S, (j + 1) * _HOUR_S
        # (time the replicas are asked for, how many): later hours whose lead begins before this hour ends.
        rises = []
        later = range(j + 1, j + 1 + min(ahead, n_h)) if cyclic else range(j + 1, min(j + 1 + ahead, n_h))
        for h in later:
            lead = h * _HOUR_S - delay
            if lead < stop:
                rises.append((max(lead, start), needed[h % n_h]))
        rises.sort()
        level, t, area = needed[j], start, 0.0
        for at, n in rises:
            area += level * (at - t)
            level, t = max(level, n), at
        area += level * (stop - t)
        most.append(level)
        paid.append(area / _HOUR_S)
    return most, paid


def hourly_fleet(profile: RateSource, max_rate_per_replica: float, usd_per_replica_hour: float,
                 scale_up_delay_s: float = 0.0, *, min_replicas: int = 1, gpus_per_replica: int = 1) -> HourlyFleet:
    """The fleet needed each hour of ``profile``, a static fleet for its peak and one resized every
    hour with replicas asked for ``scale_up_delay_s`` seconds ahead, their cost, and the static
    fleet's over-provisioned share (every rule in the module docstring).

    ``max_rate_per_replica``: the highest rate (requests/s) one replica sustains under the SLOs
    (> 0); ``usd_per_replica_hour``: one replica's price (``tp`` GPUs × $/GPU-hour), >= 0;
    ``min_replicas``: the fewest replicas kept in any hour (>= 0); ``gpus_per_replica``: for the
    GPU-hours (the shares do not depend on it).
    """
    if not (isinstance(max_rate_per_replica, (int, float)) and math.isfinite(max_rate_per_replica)
            and max_rate_per_replica > 0):
        raise ValueError(f"max_rate_per_replica = {max_rate_per_replica!r}: must be a finite number > 0")
    if not (isinstance(usd_per_replica_hour, (int, float)) and math.isfinite(usd_per_replica_hour)
            and usd_per_replica_hour >= 0):
        raise ValueError(f"usd_per_replica_hour = {usd_per_replica_hour!r}: must be a finite number >= 0")
    if not (isinstance(scale_up_delay_s, (int, float)) and math.isfinite(scale_up_delay_s) and scale_up_delay_s >= 0):
        raise ValueError(f"scale_up_delay_s = {scale_up_delay_s!r}: must be a finite number >= 0")
    for name, value, low in (("min_replicas", min_replicas, 0), ("gpus_per_replica", gpus_per_replica, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} = {value!r}: must be a whole number >= {low}")
    k = _knots(profile)
    hours = hours_of(k)
    peaks = peak_rate_per_hour(k, hours)
    # The whole-number rule of sim.results.waste: a ratio 1e-9 over a whole number is that number.
    needed = [max(min_replicas, math.ceil(float(p) / max_rate_per_replica - 1e-9)) for p in peaks]
    static = max(needed)
    most, paid = _resized(needed, float(scale_up_delay_s), cyclic=k.period is not None)
    usd_static_h = [static * usd_per_replica_hour] * hours
    usd_resized_h = [p * usd_per_replica_hour for p in paid]
    table = pa.table({"hour": list(range(hours)), "rate_per_s": [float(p) for p in peaks],
                      "replicas_needed": needed, "replicas_resized": most, "replicas_static": [static] * hours,
                      "usd_static": usd_static_h, "usd_resized": usd_resized_h}, schema=HOURLY_SCHEMA)
    need_h, static_h = float(sum(needed)), float(static * hours)
    usd_static, usd_resized = float(sum(usd_static_h)), float(sum(usd_resized_h))
    return HourlyFleet(
        table=table, hours=hours, max_rate_per_replica=float(max_rate_per_replica),
        usd_per_replica_hour=float(usd_per_replica_hour), scale_up_delay_s=float(scale_up_delay_s),
        min_replicas=min_replicas, gpus_per_replica=gpus_per_replica, replicas_static=static,
        needed_replica_hours=need_h, static_replica_hours=static_h, resized_replica_hours=float(sum(paid)),
        usd_static=usd_static, usd_resized=usd_resized, usd_static_per_day=usd_static * 24.0 / hours,
        usd_resized_per_day=usd_resized * 24.0 / hours,
        over_provisioned_share=(static_h - need_h) / static_h if static_h > 0 else 0.0)
