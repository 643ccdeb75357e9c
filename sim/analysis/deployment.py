"""Deployment patterns side by side, and the break-even points between them: pure arithmetic on
figures the planner measured by simulation (no simulation here).

A *fleet* (:class:`Fleet`) is ``gpus`` devices of one ``hardware``, busy a share ``utilisation``
of the time, serving a month's input and output tokens. :func:`deployments` prices that fleet
every way it can be paid for, one :class:`Deployment` per pattern:

- **cloud-on-demand / cloud-committed / cloud-spot**: a price per GPU-hour as
  :func:`sim.results.cost.cloud_usd_per_gpu_hour` sets it from a cloud
  :class:`sim.config.CostSpec` (the catalog's on-demand price, less ``discount``, or
  ``usd_per_gpu_hour``). Committed and spot need a discount or a price (the catalog holds
  on-demand prices only); without one the pattern is listed, unpriced, with the reason. Every GPU
  is paid for every hour of the month, busy or not (an always-on fleet, as in
  :mod:`sim.results.cost`). Spot interruptions are not modelled.
- **owned**: amortisation and hosting per GPU-hour as :func:`sim.results.cost.owned_usd_per_gpu_hour`
  sets them from an owned :class:`~sim.config.CostSpec`, paid every hour, plus electricity:
  :func:`sim.results.cost.gpu_energy_kwh` of the power model (idle draw all month, ``tdp_w −
  idle_w`` more for the busy share ``utilisation × activity``) × ``pue`` × ``usd_per_kwh``.
- **managed-api**: a price per 1M input and 1M output tokens that the user gives
  (:class:`ManagedAPI`): the bill is :func:`managed_api_cost`.
- **cpu**: the catalog's CPU device (``cpu-server``) at its cloud on-demand price, where the
  model fits in its memory (the planner says so, and gives one server's throughput:
  :class:`CpuServing`).

**A month is 730 hours** (:data:`HOURS_PER_MONTH` = 8,760 / 12). Each pattern's $ per 1M output
tokens charges its whole monthly bill to the month's output tokens (the rule of
:mod:`sim.results.cost`), so patterns compare on the bill.

**Break-even.** Every self-hosted pattern costs a fixed amount per month plus, for owned hardware,
energy that grows with the tokens served: ``C(V) = F + m·V/10⁶`` for V output tokens a month
(:attr:`Deployment.fixed_usd_per_month`, :attr:`Deployment.marginal_usd_per_million_output`).
:func:`breakeven_tokens_per_month` solves ``C(V)`` = the managed API's bill;
:func:`breakeven_utilisation` solves owned = cloud per GPU-hour with a cloud fleet that scales to
zero. Both are closed forms (their docstrings give them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from sim.config import CostSpec
from sim.results.cost import (HOURS_PER_YEAR, cloud_usd_per_gpu_hour, gpu_energy_kwh, owned_usd_per_gpu_hour,
                              power_watts)

__all__ = ["CPU_HARDWARE", "HOURS_PER_MONTH", "CpuServing", "Deployment", "Fleet", "ManagedAPI", "PatternKind",
           "breakeven_tokens_per_month", "breakeven_utilisation", "deployments", "managed_api_cost"]

HOURS_PER_MONTH = HOURS_PER_YEAR / 12.0  # 730 h: the 8,760-hour year of the amortisation, in twelve
CPU_HARDWARE = "cpu-server"  # the catalog's CPU device (calibration/data/gpus.toml)

PatternKind = Literal["cloud-on-demand", "cloud-committed", "cloud-spot", "owned", "managed-api", "cpu"]

_SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600.0


def _finite_at_least(name: str, value: float, low: float = 0.0) -> None:
    """One line naming the argument when ``value`` is not a finite number >= ``low``."""
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and value >= low):
        raise ValueError(f"{name} = {value!r}: must be a finite number >= {low:g}")


def _share(name: str, value: float) -> None:
    """One line naming the argument when ``value`` is not in (0, 1]."""
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 < value <= 1.0):
        raise ValueError(f"{name} = {value!r}: must be in (0, 1]")


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class ManagedAPI:
    """A managed API's prices, USD per million input and per million output tokens (the user
    gives them: capsim holds no API prices), and where they come from."""

    usd_per_million_input: float
    usd_per_million_output: float
    name: str = "managed API"
    source: str = "user-given"

    def __post_init__(self) -> None:
        _finite_at_least("usd_per_million_input", self.usd_per_million_input)
        _finite_at_least("usd_per_million_output", self.usd_per_million_output)

    def usd_per_million_output_at(self, input_per_output: float) -> float:
        """The bill per million output tokens when each output token comes with
        ``input_per_output`` input tokens: ``r × p_in + p_out``."""
        _finite_at_least("input_per_output", input_per_output)
        return input_per_output * self.usd_per_million_input + self.usd_per_million_output


def managed_api_cost(input_tokens: float, output_tokens: float, api: ManagedAPI) -> float:
    """The API's bill, USD: exactly ``input_tokens × p_in / 10⁶ + output_tokens × p_out / 10⁶``."""
    _finite_at_least("input_tokens", input_tokens)
    _finite_at_least("output_tokens", output_tokens)
    return input_tokens * api.usd_per_million_input / 1e6 + output_tokens * api.usd_per_million_output / 1e6


@dataclass(frozen=True)
class Fleet:
    """What the planner sized: ``gpus`` devices of ``hardware`` (a catalog key), busy a share
    ``utilisation`` in (0, 1] of the time, serving ``input_tokens_per_month`` and
    ``output_tokens_per_month``. ``activity`` is the mean of max(MFU, MBU) while busy (the power
    model's load factor, in [0, 1]; a run's ``Σ active_s / Σ busy_s``): unset, 1, i.e. full TDP
    while busy, an upper bound on the energy."""

    gpus: int
    hardware: str
    utilisation: float
    input_tokens_per_month: float
    output_tokens_per_month: float
    activity: float = 1.0

    def __post_init__(self) -> None:
        from calibration import GPUS

        if isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or self.gpus < 1:
            raise ValueError(f"gpus = {self.gpus!r}: must be a whole number >= 1")
        if self.hardware not in GPUS:
            raise ValueError(f"hardware = {self.hardware!r}: not in the hardware catalog (capsim catalog list)")
        _share("utilisation", self.utilisation)
        _finite_at_least("input_tokens_per_month", self.input_tokens_per_month)
        _finite_at_least("output_tokens_per_month", self.output_tokens_per_month)
        _finite_at_least("activity", self.activity)
        if self.activity > 1.0:
            raise ValueError(f"activity = {self.activity!r}: must be in [0, 1]")

    @property
    def input_per_output(self) -> float | None:
        """Input tokens per output token (the workload's ratio); None with no output tokens."""
        return self.input_tokens_per_month / self.output_tokens_per_month if self.output_tokens_per_month > 0 else None


@dataclass(frozen=True)
class CpuServing:
    """CPU-only serving on the catalog's CPU device, as the planner found it: whether the model
    fits in one server's memory (``fits``; ``reason`` says why not), one server's highest
    sustainable output tokens/s (under the SLOs), and optionally the number of ``servers`` it
    sized (unset: enough for the month's mean output rate, no headroom for peaks). Priced as
    ``cost`` prices ``hardware`` (default: the catalog's cloud on-demand price)."""

    fits: bool
    output_tokens_per_s: float | None = None
    servers: int | None = None
    reason: str = ""
    hardware: str = CPU_HARDWARE
    cost: CostSpec = field(default_factory=CostSpec)

    def __post_init__(self) -> None:
        if self.output_tokens_per_s is not None:
            _finite_at_least("output_tokens_per_s", self.output_tokens_per_s)
        if self.servers is not None and (isinstance(self.servers, bool) or not isinstance(self.servers, int)
                                         or self.servers < 1):
            raise ValueError(f"servers = {self.servers!r}: must be a whole number >= 1")
        if self.cost.model != "cloud":
            raise ValueError(f"cost.model = {self.cost.model!r}: CPU serving is priced as a cloud server")


# ---------------------------------------------------------------------------------------------
# The record


@dataclass(frozen=True)
class Deployment:
    """One way of paying for the fleet's month.

    ``usd_per_month`` and ``usd_per_million_output_tokens`` are None when the pattern is not
    priced, and ``reason`` says why. The month's bill splits as ``fixed_usd_per_month`` (paid
    whatever the traffic) plus ``marginal_usd_per_million_output`` per million output tokens
    (owned: energy above the idle floor; managed API: its prices at the workload's input:output
    ratio; cloud and CPU: 0). ``assumptions`` maps every figure used to ``{"value", "source"}``.
    """

    name: str
    kind: PatternKind
    usd_per_month: float | None
    usd_per_million_output_tokens: float | None
    reason: str | None = None
    assumptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    fixed_usd_per_month: float | None = None
    marginal_usd_per_million_output: float | None = None

    @property
    def priced(self) -> bool:
        return self.usd_per_month is not None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {"name": self.name, "kind": self.kind, "usd_per_month": self.usd_per_month,
                "usd_per_million_output_tokens": self.usd_per_million_output_tokens, "reason": self.reason,
                "fixed_usd_per_month": self.fixed_usd_per_month,
                "marginal_usd_per_million_output": self.marginal_usd_per_million_output,
                "assumptions": {k: dict(v) for k, v in self.assumptions.items()}}


def _fig(value: Any, source: str) -> dict[str, Any]:
    return {"value": value, "source": source}


_MONTH = _fig(HOURS_PER_MONTH, "8,760 h a year / 12")


def _per_million(usd: float, fleet: Fleet) -> float | None:
    out = fleet.output_tokens_per_month
    return usd / out * 1e6 if out > 0 else None


def _unpriced(name: str, kind: PatternKind, reason: str) -> Deployment:
    return Deployment(name, kind, None, None, reason)


# ---------------------------------------------------------------------------------------------
# The patterns


def _cloud(fleet: Fleet, spec: CostSpec, kind: PatternKind) -> Deployment:
    name = "cloud " + spec.pricing
    rate, source = cloud_usd_per_gpu_hour(spec, fleet.hardware)
    usd = fleet.gpus * rate * HOURS_PER_MONTH
    assumptions = {
        "usd_per_gpu_hour": _fig(rate, source),
        "gpus": _fig(fleet.gpus, "the fleet"),
        "hours_per_month": _MONTH,
        "billing": _fig("every GPU, every hour of the month, busy or not", "always-on fleet (sim.results.cost)"),
    }
    if kind == "cloud-spot":
        assumptions["interruptions"] = _fig("not modelled", "spot capacity can be reclaimed; the fleet is assumed "
                                            "to stay whole")
    return Deployment(name, kind, usd, _per_million(usd, fleet), None, assumptions, usd, 0.0)


def _owned(fleet: Fleet, spec: CostSpec) -> Deployment:
    capex, hosting, years = owned_usd_per_gpu_hour(spec)
    idle_w, tdp_w = power_watts(spec, fleet.hardware)
    kwh_usd = spec.usd_per_kwh or 0.0
    active_s = fleet.utilisation * fleet.activity * _SECONDS_PER_MONTH
    gpu_kwh = gpu_energy_kwh(idle_w, tdp_w, tp=fleet.gpus, replicas=1, seconds=_SECONDS_PER_MONTH, active_s=active_s)
    idle_kwh = gpu_energy_kwh(idle_w, tdp_w, tp=fleet.gpus, replicas=1, seconds=_SECONDS_PER_MONTH, active_s=0.0)
    hourly = fleet.gpus * (capex + hosting) * HOURS_PER_MONTH
    energy_usd = gpu_kwh * spec.pue * kwh_usd
    usd = hourly + energy_usd
    fixed = hourly + idle_kwh * spec.pue * kwh_usd
    out = fleet.output_tokens_per_month
    marginal = (usd - fixed) / out * 1e6 if out > 0 else 0.0
    src = "cost.{} (owned)"
    assumptions = {
        "purchase_usd_per_gpu": _fig(spec.purchase_usd_per_gpu, src.format("purchase_usd_per_gpu")),
        "server_usd_per_gpu": _fig(spec.server_usd_per_gpu or 0.0, src.format("server_usd_per_gpu")),
        "amortisation_years": _fig(years, src.format("amortisation_years") if spec.amortisation_years is not None
                                   else "default (sim.results.cost.DEFAULT_AMORTISATION_YEARS)"),
        "amortisation_usd_per_gpu_hour": _fig(capex, "(purchase + server) / (years x 8,760 h)"),
        "hosting_usd_per_gpu_hour": _fig(hosting, "cost.hosting_usd_per_gpu_month x 12 / 8,760 h"),
        "idle_w": _fig(idle_w, "cost.idle_w" if spec.idle_w is not None else f"catalog {fleet.hardware}"),
        "tdp_w": _fig(tdp_w, "cost.tdp_w" if spec.tdp_w is not None else f"catalog {fleet.hardware}"),
        "utilisation": _fig(fleet.utilisation, "the fleet (busy share)"),
        "activity": _fig(fleet.activity, "the fleet: mean max(MFU, MBU) while busy"),
        "energy_kwh": _fig(gpu_kwh, "gpus x (idle_w x month + (tdp_w - idle_w) x utilisation x activity x month) "
                           "/ 3.6e6 (sim.results.cost power model)"),
        "pue": _fig(spec.pue, "cost.pue"),
        "usd_per_kwh": _fig(kwh_usd, "cost.usd_per_kwh"),
        "gpus": _fig(fleet.gpus, "the fleet"),
        "hours_per_month": _MONTH,
        "billing": _fig("amortisation and hosting every hour; energy as drawn", "owned hardware"),
    }
    return Deployment("owned", "owned", usd, _per_million(usd, fleet), None, assumptions, fixed, marginal)


def _api(fleet: Fleet, api: ManagedAPI) -> Deployment:
    usd = managed_api_cost(fleet.input_tokens_per_month, fleet.output_tokens_per_month, api)
    ratio = fleet.input_per_output
    assumptions = {
        "usd_per_million_input": _fig(api.usd_per_million_input, api.source),
        "usd_per_million_output": _fig(api.usd_per_million_output, api.source),
        "input_tokens_per_month": _fig(fleet.input_tokens_per_month, "the fleet"),
        "output_tokens_per_month": _fig(fleet.output_tokens_per_month, "the fleet"),
    }
    marginal = api.usd_per_million_output_at(ratio) if ratio is not None else None
    return Deployment(api.name, "managed-api", usd, _per_million(usd, fleet), None, assumptions, 0.0, marginal)


def _cpu(fleet: Fleet, cpu: CpuServing) -> Deployment:
    name = f"CPU ({cpu.hardware})"
    if not cpu.fits:
        return _unpriced(name, "cpu", cpu.reason or f"the model does not fit in one {cpu.hardware}'s memory")
    if cpu.servers is not None:
        servers, how = cpu.servers, "the planner"
    elif cpu.output_tokens_per_s:
        mean = fleet.output_tokens_per_month / _SECONDS_PER_MONTH
        # The same whole-number rule as the GPU fleets (sim.results.waste): a ratio 1e-9 over a whole
        # number is that number, not the next.
        servers = max(1, math.ceil(mean / cpu.output_tokens_per_s - 1e-9))
        how = (f"ceil(month's mean {mean:g} output tokens/s / {cpu.output_tokens_per_s:g} per server), at least 1: "
               "no headroom for peaks")
    else:
        return _unpriced(name, "cpu", "no CPU throughput given (the planner found none under the SLOs)")
    rate, source = cloud_usd_per_gpu_hour(cpu.cost, cpu.hardware)
    usd = servers * rate * HOURS_PER_MONTH
    assumptions = {
        "usd_per_server_hour": _fig(rate, source),
        "servers": _fig(servers, how),
        "output_tokens_per_s_per_server": _fig(cpu.output_tokens_per_s, "the planner"),
        "hours_per_month": _MONTH,
        "billing": _fig("every server, every hour of the month", "always-on fleet"),
    }
    return Deployment(name, "cpu", usd, _per_million(usd, fleet), None, assumptions, usd, 0.0)


def _check_spec(argument: str, spec: CostSpec, model: str, pricing: str | None) -> None:
    if spec.model != model or (pricing is not None and spec.pricing != pricing):
        got = f"model {spec.model!r}" if spec.model != model else f"pricing {spec.pricing!r}"
        want = f"model {model!r}" + ("" if pricing is None else f", pricing {pricing!r}")
        raise ValueError(f"{argument}: a cost section with {want} is needed, got {got}")


def deployments(fleet: Fleet, *, on_demand: CostSpec | None = None, committed: CostSpec | None = None,
                spot: CostSpec | None = None, owned: CostSpec | None = None, api: ManagedAPI | None = None,
                cpu: CpuServing | None = None) -> tuple[Deployment, ...]:
    """The fleet's month priced every way, one :class:`Deployment` per pattern, in the order
    cloud on-demand, committed, spot, owned, managed API, CPU (see the module docstring for each
    rule; a month is :data:`HOURS_PER_MONTH` = 730 hours).

    ``on_demand`` (unset: the catalog's on-demand price), ``committed`` and ``spot`` are cloud
    cost sections with that ``pricing``; ``owned`` an owned one (its ``pue``, ``idle_w`` and
    ``tdp_w`` set the energy). A pattern whose input is missing (no committed discount, no
    purchase price, no API price, no CPU throughput, a model that does not fit on the CPU) is
    still listed, with ``usd_per_month`` None and the ``reason``.

    - cloud: ``gpus × usd_per_gpu_hour × 730``
    - owned: ``gpus × (amortisation + hosting) × 730 + kWh × pue × usd_per_kwh``, kWh = ``gpus ×
      (idle_w + (tdp_w − idle_w) × utilisation × activity) × 730 / 1000``
    - managed API: ``input × p_in / 10⁶ + output × p_out / 10⁶``
    - CPU: ``servers × usd_per_server_hour × 730``
    """
    if on_demand is None:
        on_demand = CostSpec()
    _check_spec("on_demand", on_demand, "cloud", "on-demand")
    out: list[Deployment] = [_cloud(fleet, on_demand, "cloud-on-demand")]
    for argument, spec, kind in (("committed", committed, "cloud-committed"), ("spot", spot, "cloud-spot")):
        if spec is None:
            out.append(_unpriced(f"cloud {argument}", kind, f"no {argument} discount or price given (the catalog "
                                 "holds on-demand prices only)"))
        else:
            _check_spec(argument, spec, "cloud", argument)
            out.append(_cloud(fleet, spec, kind))  # type: ignore[arg-type]
    if owned is None:
        out.append(_unpriced("owned", "owned", "no owned-hardware costs given (purchase price and electricity "
                             "price are needed)"))
    else:
        _check_spec("owned", owned, "owned", None)
        out.append(_owned(fleet, owned))
    out.append(_unpriced("managed API", "managed-api", "no managed API price given") if api is None
               else _api(fleet, api))
    out.append(_unpriced(f"CPU ({CPU_HARDWARE})", "cpu", "the planner gave no CPU serving figures") if cpu is None
               else _cpu(fleet, cpu))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Break-even


def breakeven_tokens_per_month(fixed_usd_per_month: float, api: ManagedAPI, *, input_per_output: float,
                               capacity_output_tokens_per_month: float,
                               marginal_usd_per_million_output: float = 0.0) -> float | None:
    """The monthly output-token volume V* at which a self-hosted fleet costs the same as the
    managed API, the input tokens following at ``input_per_output`` per output token.

    The fleet costs ``C(V) = F + m·V/10⁶`` a month (F = ``fixed_usd_per_month``, paid whatever the
    traffic; m = ``marginal_usd_per_million_output``, e.g. owned energy above idle: a
    :class:`Deployment`'s ``fixed_usd_per_month`` and ``marginal_usd_per_million_output``); the
    API bills ``A(V) = a·V/10⁶`` with ``a = r·p_in + p_out`` (r = ``input_per_output``). They are
    equal at::

        V* = F × 10⁶ / (a − m)

    Above V* self-hosting is the cheaper. None when there is no such volume the fleet can serve:
    ``a <= m`` (the API is cheaper per token, so always cheaper) or ``V*`` above
    ``capacity_output_tokens_per_month`` (what the fleet serves flat out in a month: beyond it the
    fleet would have to grow, and the API is the cheaper up to the fleet's capacity).
    """
    _finite_at_least("fixed_usd_per_month", fixed_usd_per_month)
    _finite_at_least("marginal_usd_per_million_output", marginal_usd_per_million_output)
    _finite_at_least("capacity_output_tokens_per_month", capacity_output_tokens_per_month)
    a = api.usd_per_million_output_at(input_per_output)
    if a <= marginal_usd_per_million_output:
        return None
    v = fixed_usd_per_month * 1e6 / (a - marginal_usd_per_million_output)
    return v if v <= capacity_output_tokens_per_month else None


def breakeven_utilisation(owned: CostSpec, hardware: str, cloud_usd_per_gpu_hour: float, *,
                          activity: float = 1.0) -> float | None:
    """The utilisation (busy share) u* above which owned hardware costs less per GPU than cloud.

    Owned pays every hour, busy or not: per GPU and wall-clock hour, ``K + E(u)`` with K =
    amortisation + hosting (:func:`sim.results.cost.owned_usd_per_gpu_hour`) and energy
    ``E(u) = (idle_w + (tdp_w − idle_w)·u·activity) × pue × usd_per_kwh / 1000`` (the power model
    of :mod:`sim.results.cost`: the load share ``u × activity`` draws above idle). Cloud is
    assumed to **scale to zero**: it pays ``P`` = ``cloud_usd_per_gpu_hour`` only for the busy
    hours, ``P·u`` per wall-clock hour (an ideal autoscaler; an always-on cloud fleet pays ``P``
    at any utilisation). They are equal at::

        u* = (K + idle_w·pue·k/1000) / (P − (tdp_w − idle_w)·activity·pue·k/1000)

    with k = ``usd_per_kwh``. None when owned never wins up to u = 1: a denominator <= 0 (cloud
    is cheaper per busy hour than owned's energy alone) or ``u* > 1``.
    """
    _check_spec("owned", owned, "owned", None)
    _finite_at_least("cloud_usd_per_gpu_hour", cloud_usd_per_gpu_hour)
    _finite_at_least("activity", activity)
    if activity > 1.0:
        raise ValueError(f"activity = {activity!r}: must be in [0, 1]")
    capex, hosting, _ = owned_usd_per_gpu_hour(owned)
    idle_w, tdp_w = power_watts(owned, hardware)
    per_w = owned.pue * (owned.usd_per_kwh or 0.0) / 1000.0  # $ per watt-hour of GPU draw, facility included
    den = cloud_usd_per_gpu_hour - (tdp_w - idle_w) * activity * per_w
    if den <= 0:
        return None
    u = (capex + hosting + idle_w * per_w) / den
    return u if u <= 1.0 else None
