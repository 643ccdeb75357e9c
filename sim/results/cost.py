"""What a run costs: the rules behind the scenario's ``cost:`` section (declared in
:class:`sim.config.CostSpec`), the power model, and the ``cost`` block of the summary.

**Prices.** Cloud (the default): dollars per GPU-hour from the hardware catalog
(``calibration/data/gpus.toml``, its source carried into the result) or ``usd_per_gpu_hour``; a
pricing label (``on-demand``, ``committed``, ``spot``) with a ``discount`` off the catalog's
on-demand price (committed and spot need a discount or a price: the catalog holds on-demand
prices only). Owned: the purchase price per GPU plus its share of the server, spread evenly over
``amortisation_years`` of 8,760 hours each, plus ``hosting_usd_per_gpu_month`` (12 months a year),
plus the electricity the run drew (GPU energy × ``pue`` × ``usd_per_kwh``). Every GPU is paid for
for the whole measured window, busy or not: ``gpu_hours = replicas × tp × window``.

**Power.** A GPU draws ``idle_w`` with nothing to do and, while an iteration runs, ``idle_w +
(tdp_w − idle_w) × a``, where ``a`` is the larger of the iteration's MFU and MBU (the step model's
FLOPs and bytes per GPU over its duration, against the datasheet peaks), at most 1. Both figures
come from the catalog (``capsim catalog show HARDWARE``) unless the cost section overrides them. The
energy is then ``gpus × (idle_w × window + (tdp_w − idle_w) × Σ a·t) / 3.6e6`` kWh, Σ a·t being
the windows' ``active_s`` (:mod:`sim.results.windows`). A profile with no hardware behind it (``explicit``)
has no FLOPs or bytes to go on: its energy is not modelled (None).

**Per token.** Each per-token figure charges the whole bill to that count, over the measured
window: $ per 1M output tokens = total $ / output tokens produced in the window × 1e6; per 1M
input tokens = total $ / prompt tokens of the requests completed in the window; per 1M total
tokens = total $ / (those prompt tokens + the output tokens); per 1M good output tokens = total $
/ output tokens of the requests completed in the window that met every SLO of their class. The
same rule makes them comparable with a managed API's prices (which charge input and output
separately: compare the bill, not one figure).
"""

from __future__ import annotations

from typing import Any

from sim.config import CostSpec, Scenario

__all__ = ["HOURS_PER_YEAR", "DEFAULT_AMORTISATION_YEARS", "cloud_usd_per_gpu_hour", "cost_of", "gpu_energy_kwh",
           "owned_usd_per_gpu_hour", "power_watts", "usd_per_million"]

HOURS_PER_YEAR = 8760.0  # a 365-day year, the amortisation's unit
DEFAULT_AMORTISATION_YEARS = 4.0  # owned hardware, when cost.amortisation_years is unset


def usd_per_million(usd_per_hour: float, tokens_per_s: float) -> float:
    """Dollars per million tokens of hardware costing ``usd_per_hour`` that turns out
    ``tokens_per_s``: ``usd_per_hour / (tokens_per_s × 3600) × 1e6``."""
    if not tokens_per_s > 0:
        raise ValueError(f"tokens_per_s = {tokens_per_s}: must be > 0")
    return usd_per_hour / (tokens_per_s * 3600.0) * 1e6


def power_watts(cost: CostSpec, hardware: str) -> tuple[float, float]:
    """``(idle_w, tdp_w)`` per device of ``hardware``: the cost section's overrides, else the
    catalog's figures. Refuses an idle draw at or above the TDP (the power model needs room
    between them)."""
    from calibration import GPUS

    gpu = GPUS[hardware]
    idle_w = cost.idle_w if cost.idle_w is not None else gpu.idle_w
    tdp_w = cost.tdp_w if cost.tdp_w is not None else gpu.tdp_w
    if idle_w >= tdp_w:
        raise ValueError(f"cost.idle_w = {idle_w:g} is not below the TDP {tdp_w:g} W of {hardware}")
    return idle_w, tdp_w


def gpu_energy_kwh(idle_w: float, tdp_w: float, *, tp: int, replicas: int, seconds: float,
                   active_s: float) -> float:
    """Energy drawn at the GPUs, kWh, by the power model (module docstring): ``replicas`` groups of
    ``tp`` GPUs each idle at ``idle_w`` for ``seconds``, plus ``tdp_w − idle_w`` for ``active_s``
    activity-weighted seconds per GPU of a replica, summed over replicas (Σ a·t):
    ``tp × (idle_w × seconds × replicas + (tdp_w − idle_w) × active_s) / 3.6e6``."""
    # Idle floor all window long, plus the load-dependent part while active.
    return tp * (idle_w * seconds * replicas + (tdp_w - idle_w) * active_s) / 3.6e6


def cloud_usd_per_gpu_hour(cost: CostSpec, hardware: str) -> tuple[float, str]:
    """A cloud price per GPU-hour of ``hardware`` and its source: ``cost.usd_per_gpu_hour`` when
    given, else the catalog's on-demand price less ``cost.discount`` (none: 0)."""
    from calibration import GPUS

    if cost.usd_per_gpu_hour is not None:
        return cost.usd_per_gpu_hour, f"cost.usd_per_gpu_hour ({cost.pricing})"
    gpu = GPUS[hardware]
    rate = gpu.price_usd_per_hour * (1.0 - (cost.discount or 0.0))
    src = gpu.sources.get("price_usd_per_hour", gpu.sources.get("default", ""))
    source = (f"catalog on-demand ${gpu.price_usd_per_hour:g}/GPU-hour" +
              (f" less {cost.discount:.0%} ({cost.pricing})" if cost.discount else "") + f": {src}")
    return rate, source


def owned_usd_per_gpu_hour(cost: CostSpec) -> tuple[float, float, float]:
    """Owned hardware's hourly charges per GPU, energy apart: ``(amortisation, hosting, years)``,
    amortisation = (purchase + server share) / (years × 8,760 h), hosting = per GPU-month × 12 /
    8,760; years = ``cost.amortisation_years``, unset: :data:`DEFAULT_AMORTISATION_YEARS`."""
    years = cost.amortisation_years if cost.amortisation_years is not None else DEFAULT_AMORTISATION_YEARS
    capex = ((cost.purchase_usd_per_gpu or 0.0) + (cost.server_usd_per_gpu or 0.0)) / (years * HOURS_PER_YEAR)
    hosting = (cost.hosting_usd_per_gpu_month or 0.0) * 12.0 / HOURS_PER_YEAR
    return capex, hosting, years


def _per(total: float, count: float, scale: float) -> float | None:
    return total / count * scale if count > 0 else None


def cost_of(summary: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
    """The summary's ``cost`` block: prices, GPU-hours, dollars, dollars per request and per
    million tokens, energy (see the module docstring for every rule). Reads the summary's
    window, throughput and ``windows`` only: it can be recomputed from a written summary."""
    c = scenario.cost
    gpus = scenario.replicas * scenario.tp
    seconds = float(summary["window"]["duration_s"])
    gpu_hours = gpus * seconds / 3600.0
    idle_w, tdp_w = power_watts(c, scenario.hardware)
    windows = summary["windows"]
    active = windows["active_s"]
    gpu_kwh = None if active is None else gpu_energy_kwh(idle_w, tdp_w, tp=scenario.tp, replicas=scenario.replicas,
                                                         seconds=seconds, active_s=sum(active))
    facility_kwh = None if gpu_kwh is None else gpu_kwh * c.pue

    price: dict[str, Any]
    if c.model == "cloud":
        rate, source = cloud_usd_per_gpu_hour(c, scenario.hardware)
        total = rate * gpu_hours
        price = {"model": "cloud", "pricing": c.pricing, "usd_per_gpu_hour": rate, "source": source}
    else:
        capex, hosting, years = owned_usd_per_gpu_hour(c)
        if facility_kwh is None:
            raise ValueError("cost.model = 'owned' needs the energy the run drew, and this profile has no FLOPs or "
                             "bytes to model power from (an explicit profile): use a roofline or measured profile, "
                             "or cost.model: cloud")
        energy_usd = facility_kwh * (c.usd_per_kwh or 0.0)
        total = (capex + hosting) * gpu_hours + energy_usd
        price = {"model": "owned", "usd_per_gpu_hour": total / gpu_hours if gpu_hours > 0 else None,
                 "amortisation_usd_per_gpu_hour": capex, "hosting_usd_per_gpu_hour": hosting,
                 "energy_usd": energy_usd, "amortisation_years": years, "usd_per_kwh": c.usd_per_kwh,
                 "source": f"owned: ${c.purchase_usd_per_gpu:g} per GPU + ${c.server_usd_per_gpu or 0:g} server share "
                           f"over {years:g} years of {HOURS_PER_YEAR:g} h, hosting ${c.hosting_usd_per_gpu_month or 0:g}"
                           f"/GPU-month, electricity ${c.usd_per_kwh:g}/kWh at PUE {c.pue:g}"}

    th = summary["throughput"]
    out_tokens = float(sum(windows["output_tokens"]))
    in_tokens = th["input_tokens_per_s"] * seconds
    requests = th["requests_per_s"] * seconds
    good = th["good_output_tokens_per_s"] * seconds
    return {
        **price,
        "gpus": gpus,
        "gpu_hours": gpu_hours,
        "usd_per_hour": total / (seconds / 3600.0) if seconds > 0 else None,
        "total_usd": total,
        "usd_per_request": _per(total, requests, 1.0),
        "usd_per_million_output_tokens": _per(total, out_tokens, 1e6),
        "usd_per_million_input_tokens": _per(total, in_tokens, 1e6),
        "usd_per_million_total_tokens": _per(total, in_tokens + out_tokens, 1e6),
        "usd_per_million_good_output_tokens": _per(total, good, 1e6),
        "energy_kwh": gpu_kwh,
        "facility_energy_kwh": facility_kwh,
        "wh_per_1000_output_tokens": None if gpu_kwh is None else _per(gpu_kwh * 1000.0, out_tokens, 1000.0),
        "power": {"idle_w": idle_w, "tdp_w": tdp_w, "pue": c.pue,
                  "model": "per GPU: idle_w with nothing running; idle_w + (tdp_w - idle_w) x max(MFU, MBU) (at most "
                           "1) while an iteration runs; energy_kwh at the GPUs, facility_energy_kwh x PUE"},
        "rule": ("every GPU paid for over the whole measured window; each per-token figure charges the whole bill "
                 "to that count: output tokens produced in the window; input tokens of the requests completed in "
                 "it; total = both; good = output tokens of completed requests that met every SLO of their class"),
    }
