"""Idle-capacity waste: where the provisioned GPU-seconds went, window by window.

Every GPU of every replica is provisioned for the whole measured window. In each time window
(:mod:`sim.results.windows`; ``cost.window_s``, 5 minutes by default) of length ``T``, with ``N`` replicas
of ``tp`` GPUs, ``B`` the replica-seconds an iteration ran, ``Rc`` the part of them spent
recomputing preempted work and ``O`` the output tokens emitted, the ``N·tp·T`` provisioned
GPU-seconds split into five parts that add up to it exactly:

- **recompute** = ``tp·Rc``: busy redoing work a preemption threw away;
- **useful** = ``tp·min(B − Rc, O / r)``, where ``r`` is the reference: the output tokens per second
  one replica turns out at the highest rate that meets the SLOs (from the configuration's load
  curve, :func:`sim.analysis.curve.load_curve`): the time the window's tokens would take at that pace;
- **under-filled** = ``tp·(B − Rc) −`` useful: running, but below the reference pace;
- **idle** = ``tp·(N·T − B)``: no iteration running;
- **over-provisioned**: capacity beyond the smallest fleet that meets the SLOs at the window's
  load, ``n = max(1, ⌈λ / λ*⌉)`` replicas for the window's arrival rate ``λ`` and the highest rate
  one replica sustains under the SLOs ``λ*`` (one replica at least: a service stays up). The
  ``(N − n)·tp·T`` GPU-seconds of the spare replicas are moved out of idle first, then out of
  under-filled (never out of useful or recompute work, which had to be done somewhere).

Without a reference (a single ``capsim run``: the reference needs a load curve), useful is every
busy second not recomputing, and under-filled and over-provisioned are None: the note says so.
Dollars per part are the run's total dollars in proportion to GPU-seconds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.config import Scenario

__all__ = ["PARTS", "WasteReference", "waste_of"]

PARTS = ("useful", "under_filled", "recompute", "idle", "over_provisioned")


@dataclass(frozen=True)
class WasteReference:
    """What one replica of the configuration sustains under its SLOs (from its load curve):
    the highest arrival rate and the output tokens per second at that rate."""

    rate_per_s: float
    output_tokens_per_s: float
    source: str

    def __post_init__(self) -> None:
        if not (self.rate_per_s > 0 and self.output_tokens_per_s > 0):
            raise ValueError(f"reference rate_per_s = {self.rate_per_s}, output_tokens_per_s = "
                             f"{self.output_tokens_per_s}: both must be > 0")


def waste_of(summary: dict[str, Any], scenario: Scenario, reference: WasteReference | None = None) -> dict[str, Any]:
    """The summary's ``waste`` block (see the module docstring), overall and per window, in
    GPU-seconds, GPU-hours and dollars. Reads the summary's ``windows`` and ``cost`` only."""
    w = summary["windows"]
    tp, n_rep = scenario.tp, scenario.replicas
    rows = {p: [] for p in PARTS}
    needed: list[int | None] = []
    for length, busy, redo, out, arrivals in zip(w["length_s"], w["busy_s"], w["recompute_s"], w["output_tokens"],
                                                 w["arrivals"]):
        busy = min(busy, n_rep * length)
        redo = min(redo, busy)
        work = busy - redo
        idle = tp * (n_rep * length - busy)
        if reference is None:
            useful, under, over, need = tp * work, None, None, None
        else:
            useful = tp * min(work, out / reference.output_tokens_per_s)
            under = tp * work - useful
            rate = arrivals / length if length > 0 else 0.0
            need = max(1, math.ceil(rate / reference.rate_per_s - 1e-9))
            spare = max(0, n_rep - need) * tp * length
            from_idle = min(spare, idle)
            from_under = min(spare - from_idle, under)
            idle, under, over = idle - from_idle, under - from_under, from_idle + from_under
        needed.append(need)
        for p, v in zip(PARTS, (useful, under, tp * redo, idle, over)):
            rows[p].append(v)
    provisioned = tp * n_rep * sum(w["length_s"])
    total_usd = summary.get("cost", {}).get("total_usd")
    overall = {p: None if any(v is None for v in rows[p]) else float(sum(rows[p])) for p in PARTS}
    usd = {p: None if v is None or total_usd is None or provisioned <= 0 else total_usd * v / provisioned
           for p, v in overall.items()}
    return {
        "gpu_s": {**overall, "provisioned": provisioned},
        "gpu_hours": {p: None if v is None else v / 3600.0 for p, v in {**overall, "provisioned": provisioned}.items()},
        "usd": usd,
        "share": {p: None if v is None or provisioned <= 0 else v / provisioned for p, v in overall.items()},
        "reference": None if reference is None else asdict(reference),
        "windows": {"start_s": w["start_s"], "length_s": w["length_s"], **{f"{p}_gpu_s": rows[p] for p in PARTS},
                    "replicas_needed": needed},
        "note": ("provisioned GPU-seconds = useful + under_filled + recompute + idle + over_provisioned, per window "
                 "and overall; dollars in proportion" if reference is not None else
                 "no reference: useful counts every busy second not recomputing; under_filled and over_provisioned "
                 "need the configuration's load curve (capsim curve / capsim compare compute them)"),
    }
