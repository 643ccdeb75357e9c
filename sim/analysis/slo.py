"""Latency targets (SLOs) on a run's summary: parse them, derive them from a scenario, check them.

A target bounds one statistic of one latency metric, overall or for one request class::

    ttft_p99=1s           the 99th percentile of time to first token is at most 1 s
    chat:tpot_p99=60ms    the same for the tpot of class "chat" only
    queue_mean=20ms       the mean queueing delay is at most 20 ms

A run meets a set of targets when it is not overloaded (see ``load.overloaded`` in the summary:
the statistics of a queue that grows without bound describe only how long the run was) and
every target's statistic exists (some completed request was measured) and is at or below its
limit. Targets are checked against the summary alone, so they work on any finished run.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

__all__ = ["METRICS", "STATS", "SLOTarget", "check_classes", "default_slos", "meets", "parse_slo"]

METRICS = ("ttft", "tpot", "itl", "e2e", "queue")
"""Latency metrics a target may bound (DESIGN.md's names, without the ``_s``)."""
STATS = ("mean", "p50", "p90", "p95", "p99")
"""Statistics of a metric a target may bound: the summary's mean and percentiles."""
_PER_CLASS_METRICS = ("ttft", "tpot", "e2e")  # what the summary's per_class blocks carry
_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}
_SYNTAX = ("expected [CLASS:]METRIC_STAT=LIMIT with METRIC one of " + ", ".join(METRICS) + ", STAT one of "
           + ", ".join(STATS) + " and LIMIT a positive number of seconds, optionally with unit s, ms or us "
           "(e.g. ttft_p99=1s, tpot_p99=60ms, chat:e2e_p90=20)")
_PATTERN = re.compile(r"(?:(?P<cls>.*):)?(?P<metric>[A-Za-z0-9]+)_(?P<stat>[A-Za-z0-9]+)")
_LIMIT = re.compile(r"(?P<num>[0-9.eE+-]+)\s*(?P<unit>s|ms|us|µs)?")


@dataclass(frozen=True)
class SLOTarget:
    """An upper limit on one statistic of one latency metric, overall (``cls`` None) or for
    the requests of one class. ``str()`` gives it back in :func:`parse_slo`'s syntax."""

    metric: str
    stat: str
    limit_s: float
    cls: str | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"SLO metric {self.metric!r}: must be one of {', '.join(METRICS)}")
        if self.stat not in STATS:
            raise ValueError(f"SLO statistic {self.stat!r}: must be one of {', '.join(STATS)}")
        if not (isinstance(self.limit_s, (int, float)) and math.isfinite(self.limit_s) and self.limit_s > 0):
            raise ValueError(f"SLO limit {self.limit_s!r}: must be a finite number of seconds > 0")
        if self.cls is not None and self.metric not in _PER_CLASS_METRICS:
            raise ValueError(f"SLO {self.cls}:{self.metric}_{self.stat}: per-class targets are on "
                             f"{', '.join(_PER_CLASS_METRICS)} (the summary has no per-class {self.metric})")

    @property
    def name(self) -> str:
        """The bounded statistic, e.g. ``chat:ttft_p99``."""
        return f"{self.cls + ':' if self.cls is not None else ''}{self.metric}_{self.stat}"

    def value(self, summary: dict[str, Any]) -> float | None:
        """The bounded statistic in ``summary`` (None: no completed request measured, or no such class)."""
        if self.cls is None:
            block = summary["latency_s"][self.metric]
        else:
            block = summary.get("per_class", {}).get(self.cls, {}).get(self.metric)
            if block is None:
                return None
        return block.get(self.stat)

    def __str__(self) -> str:
        return f"{self.name}={_seconds(self.limit_s)}"


def _seconds(x: float) -> str:
    """A limit in the unit that reads best, exactly enough to parse back to the same number."""
    if x >= 1:
        return f"{x:g}s"
    if x >= 1e-3:
        return f"{x * 1e3:g}ms"
    return f"{x * 1e6:g}us"


def parse_slo(text: str) -> SLOTarget:
    """One target from ``[CLASS:]METRIC_STAT=LIMIT`` (see the module docstring). LIMIT is in
    seconds, or in the unit written after it (``s``, ``ms``, ``us``). Raises ValueError with one
    line that names the text and what is allowed."""
    key, sep, raw = text.partition("=")
    m = _PATTERN.fullmatch(key.strip()) if sep else None
    lim = _LIMIT.fullmatch(raw.strip()) if sep else None
    if m is None or lim is None:
        raise ValueError(f"SLO {text!r}: {_SYNTAX}")
    cls, metric, stat = m.group("cls"), m.group("metric").lower(), m.group("stat").lower()
    if cls is not None and not cls.strip():
        raise ValueError(f"SLO {text!r}: the class name before ':' is empty; {_SYNTAX}")
    if metric not in METRICS:
        raise ValueError(f"SLO {text!r}: unknown metric {metric!r}; METRIC is one of {', '.join(METRICS)}")
    if stat not in STATS:
        raise ValueError(f"SLO {text!r}: unknown statistic {stat!r}; STAT is one of {', '.join(STATS)}")
    try:
        number = float(lim.group("num"))
    except ValueError:
        raise ValueError(f"SLO {text!r}: {lim.group('num')!r} is not a number; {_SYNTAX}") from None
    limit = number * _UNITS[lim.group("unit") or "s"]
    if not (math.isfinite(limit) and limit > 0):
        raise ValueError(f"SLO {text!r}: the limit must be a finite number of seconds > 0")
    try:
        return SLOTarget(metric, stat, limit, cls.strip() if cls is not None else None)
    except ValueError as e:
        raise ValueError(f"SLO {text!r}: {e}") from None


def default_slos(scenario: Any) -> list[SLOTarget]:
    """The targets a scenario states itself: for each workload class's per-request SLO field
    (``slo.ttft_s``, ``slo.tpot_s``, ``slo.e2e_s``), a p99 target of that limit on the same
    metric. With one class the targets are overall (``ttft_p99=...``); with several, each is for
    its own class (``chat:ttft_p99=...``). A scenario whose classes state no SLO gives none (and
    a load curve then finds the saturation knee instead)."""
    classes = scenario.workload.classes
    out = []
    for c in classes:
        for metric in _PER_CLASS_METRICS:
            limit = getattr(c.slo, f"{metric}_s")
            if limit is not None:
                out.append(SLOTarget(metric, "p99", float(limit), c.name if len(classes) > 1 else None))
    return out


def check_classes(targets: Iterable[SLOTarget], scenario: Any) -> None:
    """Raise ValueError (one line) for a target naming a class the scenario does not have."""
    names = [c.name for c in scenario.workload.classes]
    for t in targets:
        if t.cls is not None and t.cls not in names:
            raise ValueError(f"SLO {t}: no class named {t.cls!r} in the scenario; its classes: {', '.join(names)}")


def meets(summary: dict[str, Any], targets: Sequence[SLOTarget]) -> tuple[bool, list[str]]:
    """Whether a run's summary meets every target, and why not (one short reason per failure).

    An overloaded run (``summary["load"]["overloaded"]``) never meets, whatever its numbers, and
    neither does one whose load is undetermined (``load.verdict``: its backlog grew but its
    admission queue did not, too short a run to tell; counted against it, so that a plan never
    rests on it); a statistic that is None (no completed request was measured) does not meet;
    otherwise a target is met when its statistic is at or below its limit. With no targets, a
    run meets when its load is stable."""
    reasons = []
    load = summary["load"]
    if load["overloaded"]:
        reasons.append(f"saturated: {load['arrival_rate_per_s']:.4g} requests/s arrived, "
                       f"{load['departure_rate_per_s']:.4g}/s left")
    elif load.get("verdict") == "undetermined":
        reasons.append(f"undetermined load (too short a run to tell whether it saturates): "
                       f"{load['arrival_rate_per_s']:.4g} requests/s arrived, {load['departure_rate_per_s']:.4g}/s left")
    for t in targets:
        v = t.value(summary)
        if v is None:
            unknown = t.cls is not None and t.cls not in summary.get("per_class", {})
            why = f"no class {t.cls!r} in the summary" if unknown else "no completed request measured"
            reasons.append(f"{t.name}: {why}")
        elif v > t.limit_s:
            reasons.append(f"{t.name} {_seconds(v)} > {_seconds(t.limit_s)}")
    return not reasons, reasons
