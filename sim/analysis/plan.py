"""The planner: the cheapest fleet that meets the SLOs, found by a search that is smart, not exhaustive.

:func:`plan` searches hardware × quantization × TP × engine settings (``max_num_seqs``,
``max_num_batched_tokens``) × replicas for a workload, SLOs and a target load, and answers with
the configurations that meet the SLOs ranked by the fleet's $/hour, and per hardware option its
best configuration (including those that cannot meet the SLOs, and why). The search, in order:

1. **Build** every hardware × quantization × TP option with one replica at the scenario's own
   engine settings (:func:`sim.analysis.compare.option_scenario`). An option that does not fit is
   listed with the validator's reason and its *binding constraint* (``memory``, ``tp_heads``,
   ``interconnect``, ...), and never simulated.
2. **Screen** each option that fits with one capacity probe (a burst, as the load curve's probe):
   ``c`` requests/s flat out. No replica sustains more than about ``c`` under any SLO, so
   ``⌈peak / (1.25·c)⌉ × tp × $/GPU-hour`` is a *lower bound* on the cost of that option's fleet
   (the 1.25 covers the probe's low reading and the saturation rule's 5% tolerance).
3. **Load curves, cheapest bound first.** An option's curve (:func:`sim.analysis.curve.load_curve`,
   under the SLOs, ``seeds`` seeds) gives its highest rate per replica ``r``, and the fleet is
   sized ``n = ⌈peak / r⌉``. A curve runs for each hardware's most promising option (so that
   every hardware gets a real answer), and for any other option whose bound is at most the cost
   of the current runner-up (:data:`KEEP` cheapest sized fleets); the rest are *pruned*, listed
   with their bound. An option that meets the SLOs at no rate is classified: ``latency`` when its
   lightest load already misses a latency target (the latency floor at zero load is above the
   SLO), ``slo_unreachable_at_any_rate`` otherwise.
4. **Engine variants where they can change the ranking.** A different batch limit or token budget
   changes an option's cost only by letting it drop a replica, so the engine grid is tried only on
   options of two replicas or more whose fleet with one replica fewer would be cheaper than the
   current runner-up (at most :data:`ENGINE_TOP` options, cheapest first); when no option meets
   the SLOs, on the :data:`ENGINE_TOP` most promising options that fail them (a smaller token
   budget can lower a latency floor). A variant's curve runs on a few rates around the base
   option's answer and the rate that would drop a replica (``peak / (n − 1)``), bisected as usual.
5. **Confirm and correct.** The cheapest sized fleet is simulated whole, all ``n`` replicas behind
   the scenario's router at the target load (its burstiness, or its own time-varying rate,
   included) with ``confirm_seeds`` fresh seeds that the search never used (``seed + 1000 + k``).
   If some seed misses the SLOs, the count goes up by one and the fleet is simulated again; if all
   meet, one replica fewer is tried and kept while it meets on every seed. The confirmed count
   meets the SLOs on every confirmation seed and one replica fewer does not (or it is 1). A
   correction changes the fleet's cost, so the ranking is redone, and the loop goes on (curves
   that a higher threshold now admits included) until the recommendation and the runner-up are
   both confirmed.

The ranking: configurations that meet the SLOs (a confirmed fleet, or a sized one when not
confirmed), by the fleet's $/hour, then $ per 1M output tokens. Each row states $/hour, $ per 1M
output tokens (the fleet's dollars over its output tokens at the target load), headroom (``n·r``
over the rate it is sized for), utilisation (busy share of the fleet's GPU time) and the
idle-capacity waste share (everything but *useful* in :mod:`sim.results.waste`): from the
confirmation runs where confirmed, else estimated from the curve at ``target / n`` per replica.
A workload no configuration can serve gets :attr:`Plan.infeasible`, naming the binding
constraint, never an empty table.

Time-varying traffic (the scenario's arrival has a ``rate_profile`` and no rate is given): the
static fleet is sized for the peak and confirmed on the scenario's own arrivals; the fleet needed
per hour, a fleet resized hourly (started a scale-up delay ahead) against the static one, and the
static fleet's over-provisioned share come from :mod:`sim.analysis.hourly`, on the recommended
configuration's highest rate per replica.

Deployment patterns (:mod:`sim.analysis.deployment`): the recommended fleet's month priced as
cloud on-demand, committed and spot, owned hardware, the managed API at the user's prices, and CPU
serving where a CPU device was searched; the month's tokens are the mean target rate × the
confirmed fleet's tokens per request × 730 hours. Break-even: the monthly volume at which the
fleet (on demand) costs what the API bills, up to what the fleet serves flat out, and the
utilisation at which owned hardware beats a cloud that scales to zero. What the user gives for
these is :class:`DeploymentInputs`.

A plan is saved as a directory (:meth:`Plan.write`, read back by :func:`load_plan`): plan.json,
options.parquet, curves.parquet and fleet.yaml, the recommended fleet as a runnable scenario
(docs/planning.md).
"""

from __future__ import annotations

import math
import os
import re
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import pyarrow as pa

from sim.analysis.compare import (CompareError, check_search, fleet_scenario, grid_options, one_family, option_scenario,
                                  target_load)
from sim.config import Scenario, load_scenario
from sim.errors import ScenarioError

__all__ = ["CONFIRM_SEED_OFFSET", "DEFAULT_SCALE_UP_DELAY_S", "ENGINE_TOP", "KEEP", "OPTION_SCHEMA", "PLAN_FILES",
           "DeploymentInputs", "Plan", "PlanError", "load_plan", "plan"]

KEEP = 2
"""How many of the cheapest configurations the search makes sure of: the recommendation and its runner-up."""
ENGINE_TOP = 2
"""Most options whose engine settings are varied (see the module docstring, step 4)."""
CONFIRM_SEED_OFFSET = 1000
"""Confirmation seed ``k`` is the scenario's seed + this + k: never a seed of the search's curves."""
_BOUND_SLACK = 1.25  # the probe reads capacity a little low; the saturation rule tolerates 5% over it
_REL_TOL = 0.03  # the curves' bisection: the confirmation corrects what a 3% bracket leaves
_MAX_CORRECTIONS = 6  # replicas added at most while confirming before the fleet is declared failing
_VARIANT_FACTORS = (0.8, 1.0, 1.25)  # a variant's rates, as multiples of its base option's highest rate
DEFAULT_SCALE_UP_DELAY_S = 600.0
"""An assumption, stated in every time-varying plan: a cloud GPU instance takes about ten minutes
from the request to serving (instance start, container pull, weights loaded, warm-up)."""


@dataclass(frozen=True)
class DeploymentInputs:
    """What the user gives for the deployment patterns (every one optional; a pattern without its
    inputs is listed unpriced, with the reason): the managed API's prices, committed and spot
    cloud cost sections (``CostSpec(pricing="committed", discount=0.4)``), an owned cost section
    (``CostSpec(model="owned", purchase_usd_per_gpu=..., usd_per_kwh=...)``), and the scale-up
    delay of an hourly-resized fleet."""

    api: Any = None            # sim.analysis.deployment.ManagedAPI
    committed: Any = None      # sim.config.CostSpec, pricing committed
    spot: Any = None           # sim.config.CostSpec, pricing spot
    owned: Any = None          # sim.config.CostSpec, model owned
    scale_up_delay_s: float = DEFAULT_SCALE_UP_DELAY_S

    def as_dict(self) -> dict[str, Any]:
        def spec(c: Any) -> Any:
            return None if c is None else c.model_dump(exclude_none=True)
        api = None if self.api is None else {"name": self.api.name, "source": self.api.source,
                                             "usd_per_million_input": self.api.usd_per_million_input,
                                             "usd_per_million_output": self.api.usd_per_million_output}
        return {"api": api, "committed": spec(self.committed), "spot": spec(self.spot), "owned": spec(self.owned),
                "scale_up_delay_s": self.scale_up_delay_s}


PLAN_FILES = ("plan.json", "options.parquet", "curves.parquet", "fleet.yaml", "hourly.parquet")
"""The files of a saved plan (hourly.parquet only for time-varying traffic, fleet.yaml only with a recommendation)."""

OPTION_SCHEMA = pa.schema([
    ("option", pa.string()), ("hardware", pa.string()), ("quantization", pa.string()), ("tp", pa.int64()),
    ("max_num_seqs", pa.int64()), ("max_num_batched_tokens", pa.int64()), ("fits", pa.bool_()),
    ("meets_slo", pa.bool_()), ("reason", pa.string()), ("profile_kind", pa.string()), ("profile_source", pa.string()),
    ("max_rate_per_replica_per_s", pa.float64()), ("replicas", pa.int64()), ("gpus", pa.int64()),
    ("usd_per_hour", pa.float64()), ("usd_per_million_output_tokens", pa.float64()), ("headroom", pa.float64()),
    ("utilisation", pa.float64()), ("waste_share", pa.float64()), ("confirmed", pa.bool_()),
    ("ttft_p99_s", pa.float64()), ("tpot_p99_s", pa.float64()), ("rank", pa.int64()),
    # beyond the contract's columns: how the row came to be
    ("binding", pa.string()), ("stage", pa.string()), ("usd_per_gpu_hour", pa.float64()),
    ("bound_usd_per_hour", pa.float64()), ("search_replicas", pa.int64()), ("sized_for_rate_per_s", pa.float64()),
    ("max_rate_at_least", pa.bool_()),
])
"""One row per configuration considered (options.parquet; the plan's option rows). ``stage``: how far
the search took it (``does-not-fit``, ``pruned``, ``curve``, ``confirmed``); ``binding``: why it
cannot meet the SLOs (null when it can); ``search_replicas``: the count the curve sized, before the
confirmation corrected it; ``bound_usd_per_hour``: the screening's lower bound."""


class PlanError(CompareError):
    """A plan that cannot be set up (bad input); ``str(err)`` is one line."""


# ---------------------------------------------------------------------------------------------
# The result


@dataclass(frozen=True)
class Plan:
    """A plan: ``data`` is plan.json (every key of docs/planning.md), ``options`` every
    configuration considered (:data:`OPTION_SCHEMA`, ranked), ``curves`` the load-curve points of
    every curve run (column ``option`` and :data:`sim.analysis.curve.POINT_SCHEMA`), ``fleet`` the
    recommended fleet as a scenario (None when nothing meets the SLOs), ``hourly`` the fleet per
    hour for time-varying traffic (None until ``sim.analysis.hourly`` fills it)."""

    data: dict[str, Any]
    options: pa.Table
    curves: pa.Table
    fleet: Scenario | None
    hourly: pa.Table | None = None

    @property
    def recommendation(self) -> dict[str, Any] | None:
        """The cheapest confirmed configuration (an option row), or None."""
        return self.data["recommendation"]

    @property
    def runner_up(self) -> dict[str, Any] | None:
        """The second in the ranking, or None."""
        return self.data["runner_up"]

    @property
    def per_hardware(self) -> list[dict[str, Any]]:
        """Each hardware option's best configuration (with ``reason`` when it cannot meet the SLOs)."""
        return self.data["per_hardware"]

    @property
    def infeasible(self) -> dict[str, str] | None:
        """None, or ``{"binding_constraint": ..., "detail": one line}`` when nothing meets the SLOs."""
        return self.data["infeasible"]

    @property
    def simulations(self) -> int:
        """How many simulations the search ran (probes, curve points, fleets)."""
        return self.data["simulations"]

    @property
    def scenario(self) -> Scenario:
        """The scenario planned for (as given, before any option's changes)."""
        return load_scenario(self.data["inputs"]["scenario"])

    @property
    def ranked(self) -> list[dict[str, Any]]:
        """The configurations that meet the SLOs, rank 1 first."""
        return [r for r in self.options.to_pylist() if r["rank"] is not None]

    def write(self, out_dir: str | os.PathLike) -> list[Path]:
        """The plan directory (docs/planning.md): plan.json, options.parquet, curves.parquet, and
        fleet.yaml (with a recommendation) and hourly.parquet (time-varying traffic), each written
        whole through a temporary name and ``os.replace``. A plan file of an earlier plan that this
        one does not write is removed, so the directory holds exactly this plan. Returns the paths."""
        import pyarrow.parquet as pq
        import yaml

        from sim.analysis.atomic import write_json, write_whole

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = [write_whole(out / "options.parquet", lambda tmp: pq.write_table(self.options, tmp)),
                   write_whole(out / "curves.parquet", lambda tmp: pq.write_table(self.curves, tmp))]
        if self.fleet is not None:
            text = yaml.safe_dump(self.fleet.to_dict(), sort_keys=False)
            written.append(write_whole(out / "fleet.yaml", lambda tmp: tmp.write_text(text)))
        if self.hourly is not None:
            written.append(write_whole(out / "hourly.parquet", lambda tmp: pq.write_table(self.hourly, tmp)))
        written.append(write_json(out / "plan.json", self.data))  # last: a plan.json means the rest is there
        for name in PLAN_FILES:
            if (out / name) not in written and (out / name).exists():
                (out / name).unlink()
        return written


def load_plan(plan_dir: str | os.PathLike) -> Plan:
    """A plan directory written by :meth:`Plan.write`, read back. Raises PlanError (one line) when
    ``plan_dir`` holds no plan (no plan.json of kind ``capsim-plan``) or a file is missing."""
    import json

    import pyarrow.parquet as pq

    d = Path(plan_dir)
    try:
        data = json.loads((d / "plan.json").read_text())
    except FileNotFoundError:
        raise PlanError(f"{d}: no plan.json here: not a plan directory (capsim plan -o DIR writes one)") from None
    except (OSError, ValueError) as e:
        raise PlanError(f"{d}/plan.json: cannot read it ({e})") from None
    if not isinstance(data, dict) or data.get("kind") != "capsim-plan":
        raise PlanError(f"{d}/plan.json: not a capsim plan (its kind is {data.get('kind') if isinstance(data, dict) else None!r})")
    try:
        options = pq.read_table(d / "options.parquet")
        curves = pq.read_table(d / "curves.parquet")
    except FileNotFoundError as e:
        raise PlanError(f"{d}: {Path(e.filename).name} is missing: the plan directory is incomplete") from None
    fleet = load_scenario(d / "fleet.yaml") if (d / "fleet.yaml").exists() else None
    hourly = pq.read_table(d / "hourly.parquet") if (d / "hourly.parquet").exists() else None
    return Plan(data, options, curves, fleet, hourly)


# ---------------------------------------------------------------------------------------------
# Workers (top level, plain data in and out: they pickle for a process pool or a cluster)


def _probe_point(data: dict[str, Any]) -> dict[str, Any]:
    """A capacity probe in a worker: requests completed, simulated seconds, and the price block."""
    from sim.engine import simulate

    s = simulate(Scenario.model_validate(data), records="summary").summary
    c = s["cost"]
    floor = c["usd_per_gpu_hour"] if c["model"] == "cloud" else \
        (c.get("amortisation_usd_per_gpu_hour") or 0.0) + (c.get("hosting_usd_per_gpu_hour") or 0.0)
    return {"completed": s["requests"]["completed"], "simulated_s": s["simulated_s"], "usd_per_gpu_hour": floor,
            "price_source": c["source"]}


def _fleet_point(data: dict[str, Any]) -> dict[str, Any]:
    """A whole fleet in a worker: its summary."""
    from sim.engine import simulate

    return simulate(Scenario.model_validate(data), records="summary").summary


# ---------------------------------------------------------------------------------------------
# One configuration under search


@dataclass
class _Option:
    """A configuration: its one-replica scenario, its row, and what the search learnt of it."""

    row: dict[str, Any]
    scenario: Scenario | None = None
    base: _Option | None = None  # for an engine variant: the option at the scenario's engine settings
    probe_capacity: float | None = None
    curve: Any = None  # LoadCurve
    must_run: bool = False
    variants_tried: bool = False
    dominated: bool = False  # an engine variant that sizes no fewer replicas than its base: not ranked
    fleet: dict[str, Any] | None = None  # the confirmation's figures

    @property
    def label(self) -> str:
        return self.row["option"]

    @property
    def meets(self) -> bool:
        """Meets the SLOs and takes part in the ranking."""
        return bool(self.row["meets_slo"]) and not self.dominated

    def cost_key(self) -> tuple[float, float, str]:
        r = self.row
        return (r["usd_per_hour"], r["usd_per_million_output_tokens"] or math.inf, r["option"])


def _label(hw: str, quant: str, tp: int, seqs: int, tokens: int) -> str:
    return f"{hw} {quant} tp{tp} seqs{seqs} tok{tokens}"


def _row(hw: str, quant: str, tp: int, seqs: int, tokens: int) -> dict[str, Any]:
    row: dict[str, Any] = {name: None for name in OPTION_SCHEMA.names}
    row.update(option=_label(hw, quant, tp, seqs, tokens), hardware=hw, quantization=quant, tp=tp, max_num_seqs=seqs,
               max_num_batched_tokens=tokens, fits=False, meets_slo=False, confirmed=False)
    return row


def _fit_binding(message: str) -> str:
    """The binding constraint of an option the validator refused, from its words."""
    if "does not fit" in message or "KV cache holds" in message or "GiB" in message:
        return "memory"
    if "must divide" in message:
        return "tp_heads"
    if "interconnect" in message:
        return "interconnect"
    return "does_not_fit"


def _held_out(source: str) -> str | None:
    m = re.search(r"held-out[^;()]*", source)
    return m.group(0).strip() if m else None


# ---------------------------------------------------------------------------------------------
# The search


class _Search:
    """The state of one :func:`plan` call: the options, the executor, the simulations counted."""

    def __init__(self, scenario: Scenario, targets: tuple[Any, ...], rate: float, sizing: float, profile: Any,
                 seeds: int, confirm_seeds: tuple[int, ...], executor: Executor, say: Callable[[str], None],
                 base_data: dict[str, Any], family: str):
        self.base_data, self.family = base_data, family  # every option is built from these
        self.scenario, self.targets, self.rate, self.sizing, self.profile = scenario, targets, rate, sizing, profile
        self.seeds, self.confirm_seeds, self.executor, self.say = seeds, confirm_seeds, executor, say
        self.options: list[_Option] = []
        self.simulations = 0
        self.prices: dict[str, dict[str, Any]] = {}
        self.notes: list[str] = []
        self.deployment = DeploymentInputs()

    # -- thresholds ---------------------------------------------------------------------------
    def threshold(self) -> float:
        """The $/hour a configuration must beat to enter the :data:`KEEP` cheapest: the KEEP-th
        cheapest fleet among those meeting the SLOs (infinite until there are KEEP)."""
        costs = sorted(o.row["usd_per_hour"] for o in self.options if o.meets)
        return costs[KEEP - 1] if len(costs) >= KEEP else math.inf

    # -- step 2: screening ----------------------------------------------------------------------
    def screen(self, options: list[_Option]) -> None:
        from sim.analysis.curve import probe_scenario  # the load curve's own burst, so that the bound and the curve agree
        from sim.analysis.executor import map_points

        if not options:
            return
        self.say(f"screening {len(options)} options with a capacity probe each")
        results = list(map_points(_probe_point, [probe_scenario(o.scenario).to_dict() for o in options],
                                  executor=self.executor))
        self.simulations += len(results)
        for o, res in zip(options, results):
            hw, tp = o.row["hardware"], o.row["tp"]
            self.prices.setdefault(hw, {"usd_per_gpu_hour": res["usd_per_gpu_hour"], "source": res["price_source"]})
            o.row["usd_per_gpu_hour"] = res["usd_per_gpu_hour"]
            if res["completed"] == 0 or not res["simulated_s"] > 0:
                o.row.update(reason="the capacity probe completed no request: the requests do not fit this "
                                    "configuration's KV cache", binding="memory", stage="curve")
                continue
            o.probe_capacity = res["completed"] / res["simulated_s"]
            need = max(1, math.ceil(self.sizing / (o.probe_capacity * _BOUND_SLACK) - 1e-9))
            o.row["bound_usd_per_hour"] = need * tp * res["usd_per_gpu_hour"]

    # -- step 3: curves -------------------------------------------------------------------------
    def run_curve(self, o: _Option, rates: Sequence[float] | None = None) -> None:
        from sim.analysis.curve import CurveError, load_curve

        self.say(f"{o.label}: load curve" + (f" at {len(rates)} rates" if rates else ""))
        try:
            curve = load_curve(o.scenario, slos=self.targets, rates=rates, seeds=self.seeds, rel_tol=_REL_TOL,
                               executor=self.executor)
        except CurveError as e:  # the probe completed nothing: the requests do not fit
            self.simulations += 1
            o.row.update(reason=str(e), binding="memory", stage="curve")
            return
        o.curve = curve
        self.simulations += curve.points.num_rows + curve.bisection.num_rows + (rates is None)
        o.row["stage"] = "curve"
        best = curve.max_rate
        if curve.reference is None or best.mean <= 0:
            o.row.update(meets_slo=False, **self._why_never(curve))
            return
        self._size(o, best.mean, best.at_least)

    def _why_never(self, curve: Any) -> dict[str, Any]:
        """Reason and binding constraint of an option whose curve met the SLOs at no rate."""
        pts = curve.points.to_pylist() + curve.bisection.to_pylist()
        lightest = min(pts, key=lambda p: p["rate_per_s"])
        fails = lightest["slo_failures"] or "no rate tried met them"
        if lightest["saturated"]:
            return {"reason": f"cannot meet the SLOs at any rate tried: at {lightest['rate_per_s']:.3g} requests/s "
                              f"({fails})", "binding": "slo_unreachable_at_any_rate"}
        return {"reason": f"latency floor above the SLO: at near-zero load ({lightest['rate_per_s']:.3g} requests/s) "
                          f"{fails}", "binding": "latency"}

    def _size(self, o: _Option, r: float, at_least: bool) -> None:
        """Size the fleet from the highest rate per replica ``r``, with the estimates from the curve."""
        n = max(1, math.ceil(self.sizing / r - 1e-9))
        o.row.update(max_rate_per_replica_per_s=r, max_rate_at_least=at_least, search_replicas=n,
                     sized_for_rate_per_s=self.sizing, meets_slo=True, reason=None, binding=None)
        self._set_replicas_from_curve(o, n)

    def _set_replicas_from_curve(self, o: _Option, n: int) -> None:
        """The row's figures for a fleet of ``n``, estimated from the one-replica curve at ``rate / n``."""
        per = self.rate / n
        usd_h = _interp(o.curve, per, "usd_per_hour")
        out_tps = _interp(o.curve, per, "output_tokens_per_s")
        useful = _interp(o.curve, per, "waste_useful_gpu_s")
        prov = _interp(o.curve, per, "waste_provisioned_gpu_s")
        usd = None if usd_h is None else usd_h * n
        o.row.update(replicas=n, gpus=n * o.row["tp"], usd_per_hour=usd,
                     usd_per_million_output_tokens=None if not (usd and out_tps) else usd / (out_tps * n * 3600) * 1e6,
                     headroom=n * o.row["max_rate_per_replica_per_s"] / self.sizing,
                     utilisation=_interp(o.curve, per, "busy_fraction"),
                     waste_share=None if not (useful is not None and prov) else 1 - useful / prov,
                     ttft_p99_s=_interp(o.curve, per, "ttft_p99_s"), tpot_p99_s=_interp(o.curve, per, "tpot_p99_s"),
                     confirmed=False)
        if usd is None:  # no priced point: cannot rank it
            o.row.update(meets_slo=False, reason="no priced curve point near its load", binding="cost")

    # -- step 4: engine variants ----------------------------------------------------------------
    def variant_candidates(self) -> list[_Option]:
        """The base options whose engine settings may change the ranking (module docstring, step 4)."""
        bases = [o for o in self.options if o.base is None and o.curve is not None and not o.variants_tried]
        if any(o.meets for o in self.options):
            limit = self.threshold()
            picks = [o for o in bases if o.meets and o.row["replicas"] >= 2
                     and o.row["usd_per_hour"] * (o.row["replicas"] - 1) / o.row["replicas"] < limit]
            picks.sort(key=_Option.cost_key)
        else:
            picks = [o for o in bases if o.row["binding"] in ("latency", "slo_unreachable_at_any_rate")]
            picks.sort(key=lambda o: (o.row["bound_usd_per_hour"] or math.inf, o.label))
        tried = sum(o.variants_tried for o in self.options if o.base is None)
        return picks[:max(0, ENGINE_TOP - tried)]

    def run_variants(self, base: _Option, grid: list[tuple[int, int]]) -> None:
        base.variants_tried = True
        r = base.row["max_rate_per_replica_per_s"]
        if base.meets and r:
            rates = {r * f for f in _VARIANT_FACTORS}
            n = base.row["replicas"]
            if n >= 2:
                rates.add(self.sizing / (n - 1))  # the rate that would drop a replica
        else:
            c = base.probe_capacity or 1.0
            rates = {c * f for f in (0.02, 0.1, 0.4, 0.8)}
        rates_list = sorted(float(f"{x:.4g}") for x in rates)
        hw, q, tp = base.row["hardware"], base.row["quantization"], base.row["tp"]
        for seqs, tokens in grid:
            if (seqs, tokens) == (base.row["max_num_seqs"], base.row["max_num_batched_tokens"]):
                continue
            v = _Option(_row(hw, q, tp, seqs, tokens), base=base)
            v.row.update(usd_per_gpu_hour=base.row["usd_per_gpu_hour"], bound_usd_per_hour=base.row["bound_usd_per_hour"])
            self.options.append(v)
            try:
                v.scenario = option_scenario(self.base_data, hw, q, tp, self.family,
                                             {"max_num_seqs": seqs, "max_num_batched_tokens": tokens})
            except ScenarioError as e:
                v.row.update(reason=f"does not fit: {e}", binding=_fit_binding(str(e)), stage="does-not-fit")
                continue
            prov = v.scenario.build_profile().provenance
            v.row.update(fits=True, profile_kind=prov.kind, profile_source=prov.source)
            v.probe_capacity = base.probe_capacity
            self.run_curve(v, rates_list)
            if v.row["meets_slo"] and base.row["search_replicas"] is not None \
                    and v.row["search_replicas"] >= base.row["search_replicas"]:
                v.dominated = True
                v.row.update({k: None for k in ("replicas", "gpus", "usd_per_hour", "usd_per_million_output_tokens",
                                                "headroom", "utilisation", "waste_share", "ttft_p99_s", "tpot_p99_s")})
                v.row.update(stage="variant", reason=f"engine variant: meets the SLOs but sizes no fewer replicas "
                                                     f"({v.row['search_replicas']}) than {base.label}, so it cannot "
                                                     "make the fleet cheaper; not ranked")

    # -- step 5: confirmation -------------------------------------------------------------------
    def _fleet_runs(self, o: _Option, n: int) -> list[dict[str, Any]]:
        from sim.analysis.curve import with_rate
        from sim.analysis.executor import map_points

        one = o.scenario if self.profile is not None else with_rate(o.scenario, self.rate)
        tasks = [fleet_scenario(one, n, s, scale=self.profile is None).to_dict() for s in self.confirm_seeds]
        self.say(f"{o.label}: confirming a fleet of {n} with seeds {', '.join(map(str, self.confirm_seeds))}")
        out = list(map_points(_fleet_point, tasks, executor=self.executor))
        self.simulations += len(out)
        return out

    def _passes(self, summaries: list[dict[str, Any]]) -> tuple[bool, str]:
        from sim.analysis.slo import meets

        fails = []
        for seed, s in zip(self.confirm_seeds, summaries):
            ok, why = meets(s, self.targets)
            if not ok:
                fails.append(f"seed {seed}: {'; '.join(why)}")
        return not fails, " | ".join(fails)

    def confirm(self, o: _Option) -> None:
        """Simulate ``o``'s fleet whole with the confirmation seeds and correct its count (module
        docstring, step 5); the row gets the confirmed fleet's figures, or fails."""
        n0 = n = o.row["replicas"]
        runs = self._fleet_runs(o, n)
        ok, why = self._passes(runs)
        if ok:
            while n > 1:
                fewer = self._fleet_runs(o, n - 1)
                if not self._passes(fewer)[0]:
                    break
                n, runs = n - 1, fewer
        else:
            for _ in range(_MAX_CORRECTIONS):
                n += 1
                runs = self._fleet_runs(o, n)
                ok, why = self._passes(runs)
                if ok:
                    break
            else:
                o.row.update(meets_slo=False, confirmed=False, stage="confirmed", binding="fleet",
                             reason=f"the fleet missed the SLOs when simulated whole, from {n0} up to {n} replicas "
                                    f"({why})")
                return
        if n != n0:
            self.notes.append(f"{o.label}: the load curve sized {n0} replica(s); the fleet simulated whole with "
                              f"fresh seeds corrected it to {n}")
        self._set_confirmed(o, n, runs)

    def _set_confirmed(self, o: _Option, n: int, runs: list[dict[str, Any]]) -> None:
        from sim.results.waste import WasteReference, waste_of

        ref = o.curve.reference
        wref = WasteReference(rate_per_s=ref.rate_per_s, output_tokens_per_s=ref.output_tokens_per_s,
                              source=f"load curve of {o.label}")
        fleet = fleet_scenario(o.scenario, n, self.scenario.seed, scale=False)
        shares = []
        for s in runs:
            w = waste_of(s, fleet, wref)
            shares.append(1 - w["share"]["useful"] if w["share"]["useful"] is not None else None)
        mean = (lambda xs: sum(xs) / len(xs))
        usd_h = mean([s["cost"]["usd_per_hour"] for s in runs])
        per_m = [s["cost"]["usd_per_million_output_tokens"] for s in runs]
        o.row.update(replicas=n, gpus=n * o.row["tp"], usd_per_hour=usd_h,
                     usd_per_million_output_tokens=None if None in per_m else mean(per_m),
                     headroom=n * o.row["max_rate_per_replica_per_s"] / self.sizing,
                     utilisation=mean([s["busy_fraction"]["mean"] for s in runs]),
                     waste_share=None if None in shares else mean(shares),
                     ttft_p99_s=max(s["latency_s"]["ttft"]["p99"] for s in runs),
                     tpot_p99_s=max(s["latency_s"]["tpot"]["p99"] or 0.0 for s in runs),
                     confirmed=True, meets_slo=True, stage="confirmed")
        done = [s["throughput"] for s in runs if s["throughput"]["requests_per_s"]]
        per_request = {k: sum(t[f"{k}_tokens_per_s"] for t in done) / sum(t["requests_per_s"] for t in done)
                       for k in ("input", "output")} if done else None
        o.fleet = {"tokens_per_request": per_request}


def _interp(curve: Any, rate: float, column: str) -> float | None:
    """``column`` of the curve's points at ``rate`` (mean over seeds at each grid rate, linear
    between the two grid rates around it, the nearest end outside them); None where missing."""
    pts = curve.points.to_pylist() + curve.bisection.to_pylist()
    by_rate: dict[float, list[float]] = {}
    for p in pts:
        if p[column] is not None:
            by_rate.setdefault(p["rate_per_s"], []).append(p[column])
    if not by_rate:
        return None
    xs = sorted(by_rate)
    ys = [sum(by_rate[x]) / len(by_rate[x]) for x in xs]
    if rate <= xs[0]:
        return ys[0]
    if rate >= xs[-1]:
        return ys[-1]
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x0 <= rate <= x1:
            return y0 + (y1 - y0) * (rate - x0) / (x1 - x0)
    return ys[-1]


def _engine_grid(scenario: Scenario, engine_grid: Mapping[str, Iterable[int]] | None) -> list[tuple[int, int]]:
    """(max_num_seqs, max_num_batched_tokens) pairs to try, the scenario's own first. The default:
    the scenario's values, twice the batch limit and half the token budget (not below the limit)."""
    seqs0, tok0 = scenario.engine.max_num_seqs, scenario.engine.max_num_batched_tokens
    if engine_grid is None:
        grid = {"max_num_seqs": [seqs0, seqs0 * 2], "max_num_batched_tokens": [tok0, max(tok0 // 2, seqs0)]}
    else:
        unknown = set(engine_grid) - {"max_num_seqs", "max_num_batched_tokens"}
        if unknown:
            raise PlanError(f"engine_grid: unknown key {sorted(unknown)[0]!r}; the grid varies max_num_seqs and "
                            "max_num_batched_tokens")
        grid = {k: list(engine_grid.get(k) or [v]) for k, v in (("max_num_seqs", seqs0),
                                                                ("max_num_batched_tokens", tok0))}
        for k, vs in grid.items():
            for v in vs:
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise PlanError(f"engine_grid {k} {v!r}: give whole numbers >= 1")
    pairs = [(s, t) for s in dict.fromkeys(grid["max_num_seqs"]) for t in dict.fromkeys(grid["max_num_batched_tokens"])
             if t >= s]
    base = (seqs0, tok0)
    return [base] + [p for p in pairs if p != base]


# ---------------------------------------------------------------------------------------------
# The planner


def plan(scenario: Scenario, *, slos: Iterable[Any] | None, rate_per_s: float | None = None,
         hardware: Sequence[str], quantization: Sequence[str], tp: Sequence[int] = (1, 2),
         engine_grid: Mapping[str, Iterable[int]] | None = None, seeds: int = 2, confirm_seeds: int = 2,
         family: str = "auto", executor: Executor | None = None, workers: int | None = None,
         progress: Callable[[str], None] | None = None, deployment: DeploymentInputs | None = None) -> Plan:
    """The cheapest fleet for ``scenario``'s workload under ``slos`` at ``rate_per_s`` (the method:
    the module docstring).

    ``slos``: targets (:class:`sim.analysis.slo.SLOTarget` or text such as ``"ttft_p99=1s"``,
    ``"chat:tpot_p99=60ms"``); None takes the scenario's own. ``rate_per_s``: the target load in
    requests/s; None keeps the scenario's own arrivals (a time-varying rate is sized for its peak).
    ``hardware``, ``quantization``, ``tp``: the options searched. ``engine_grid``: values of
    ``max_num_seqs`` and ``max_num_batched_tokens`` to try (None: the scenario's own, twice the
    batch limit and half the token budget). ``seeds``: per load-curve point; ``confirm_seeds``:
    fresh seeds the chosen fleets are confirmed with. ``family``: the step-time model family, as
    :func:`sim.analysis.compare.compare` takes it. Simulations run on ``executor`` (None: a local
    pool of ``workers`` processes). ``progress(message)`` hears each stage. ``deployment``: the
    managed API's prices, committed/spot/owned cost sections and the scale-up delay for the
    deployment patterns and the hourly fleet (:class:`DeploymentInputs`; None: none given).

    Raises :class:`PlanError` (one line) for bad input: an unknown hardware or quantization (with
    close matches), a bad TP, rate, seed count, SLO or engine grid.
    """
    from sim.analysis.executor import local_executor
    from sim.analysis.slo import SLOTarget, check_classes, default_slos, parse_slo
    from sim.analysis.compare import FAMILIES

    t0 = time.perf_counter()
    say = progress or (lambda _m: None)
    if family not in FAMILIES:
        raise PlanError(f"family {family!r}: must be one of {', '.join(FAMILIES)}")
    delay = (deployment or DeploymentInputs()).scale_up_delay_s
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay < 3600 * 24:
        raise PlanError(f"scale_up_delay_s = {delay!r}: must be seconds in [0, 86400)")
    for name, v in (("seeds", seeds), ("confirm_seeds", confirm_seeds)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise PlanError(f"{name} = {v!r}: must be a whole number >= 1")
    try:
        check_search(scenario, hardware, quantization, tp)
        rate, sizing, profile = target_load(scenario, rate_per_s)
    except CompareError as e:
        raise PlanError(str(e)) from None
    try:
        targets = tuple(default_slos(scenario)) if slos is None else \
            tuple(parse_slo(t) if isinstance(t, str) else t for t in slos)
        if not all(isinstance(t, SLOTarget) for t in targets):
            raise ValueError(f"slos {list(slos or [])!r}: give SLOTarget objects or text such as 'ttft_p99=1s'")
        check_classes(targets, scenario)
    except ValueError as e:
        raise PlanError(str(e)) from None
    if profile is None and rate_per_s is not None:
        from sim.analysis.curve import CurveError, with_rate

        try:
            with_rate(scenario, rate)
        except CurveError as e:
            raise PlanError(str(e)) from None
    grid = _engine_grid(scenario, engine_grid)

    base = scenario.to_dict()
    notes: list[str] = []
    if family == "auto" and scenario.profile.kind == "auto":
        family, why = one_family(base, grid_options(hardware, quantization, tp))
        notes.append(why)
    confirm = tuple(scenario.seed + CONFIRM_SEED_OFFSET + k for k in range(confirm_seeds))
    ex = local_executor(workers) if executor is None else executor
    search = _Search(scenario, targets, rate, sizing, profile, seeds, confirm, ex, say, base, family)
    search.deployment = deployment or DeploymentInputs()
    try:
        _search(search, scenario, hardware, quantization, tp, grid, base, family)
    finally:
        if executor is None:
            ex.shutdown(wait=True, cancel_futures=True)
    notes += search.notes
    return _result(search, scenario, targets, rate, sizing, profile, hardware, quantization, tp, grid, seeds,
                   confirm, notes, time.perf_counter() - t0)


def _search(s: _Search, scenario: Scenario, hardware: Sequence[str], quantization: Sequence[str], tp: Sequence[int],
            grid: list[tuple[int, int]], base: dict[str, Any], family: str) -> None:
    """Steps 1 to 5 of the module docstring, on ``s``."""
    seqs0, tok0 = grid[0]
    fitting: list[_Option] = []
    for hw in hardware:
        for q in quantization:
            for t in tp:
                o = _Option(_row(hw, q, t, seqs0, tok0))
                s.options.append(o)
                try:
                    o.scenario = option_scenario(base, hw, q, t, family)
                except ScenarioError as e:
                    o.row.update(reason=f"does not fit: {e}", binding=_fit_binding(str(e)), stage="does-not-fit")
                    continue
                prov = o.scenario.build_profile().provenance
                o.row.update(fits=True, profile_kind=prov.kind, profile_source=prov.source)
                fitting.append(o)
    s.screen(fitting)
    bounded = sorted((o for o in fitting if o.probe_capacity is not None),
                     key=lambda o: (o.row["bound_usd_per_hour"], o.label))
    seen: set[str] = set()
    for o in bounded:  # each hardware's most promising option always gets its curve
        if o.row["hardware"] not in seen:
            o.must_run = True
            seen.add(o.row["hardware"])
    confirmations = 0
    while True:
        limit = s.threshold()
        pending = [o for o in bounded if o.curve is None and o.row["stage"] is None
                   and (o.must_run or o.row["bound_usd_per_hour"] <= limit)]
        if pending:
            s.run_curve(pending[0])
            continue
        variants = s.variant_candidates()
        if variants:
            for b in variants:
                s.run_variants(b, grid)
            continue
        ranked = sorted((o for o in s.options if o.meets), key=_Option.cost_key)
        todo = [o for o in ranked[:KEEP] if not o.row["confirmed"]]
        if todo and confirmations < 4 * KEEP:
            s.confirm(todo[0])
            confirmations += 1
            continue
        break
    for o in bounded:
        if o.curve is None and o.row["stage"] is None:
            o.row.update(stage="pruned", reason=f"not simulated: at least ${o.row['bound_usd_per_hour']:.2f}/h at its "
                                                f"capacity probe's rate, above the runner-up's ${s.threshold():.2f}/h")


def _result(s: _Search, scenario: Scenario, targets: tuple[Any, ...], rate: float, sizing: float, profile: Any,
            hardware: Sequence[str], quantization: Sequence[str], tp: Sequence[int], grid: list[tuple[int, int]],
            seeds: int, confirm: tuple[int, ...], notes: list[str], wall_s: float) -> Plan:
    """Rank, pick per hardware, name the binding constraint, and assemble the plan."""
    import datetime

    from sim.analysis.curve import POINT_SCHEMA, with_rate

    ranked = sorted((o for o in s.options if o.meets), key=_Option.cost_key)
    for i, o in enumerate(ranked, 1):
        o.row["rank"] = i
    order = ranked + [o for o in s.options if not o.meets]
    rows = [o.row for o in order]
    options = pa.Table.from_pylist(rows, schema=OPTION_SCHEMA)
    curve_rows = []
    for o in s.options:
        if o.curve is not None:
            curve_rows += [{"option": o.label, **p} for p in o.curve.points.to_pylist()]
    curves = pa.Table.from_pylist(curve_rows, schema=pa.schema([("option", pa.string()), *POINT_SCHEMA]))

    rec = ranked[0] if ranked else None
    runner = ranked[1] if len(ranked) > 1 else None
    if rec is not None and not rec.row["confirmed"]:
        notes.append(f"{rec.label}: the search stopped before confirming the recommendation (too many corrections); "
                     "its figures are the load curve's estimates")
    fleet = None
    if rec is not None:
        one = rec.scenario if profile is not None else with_rate(rec.scenario, rate)
        data = {**one.to_dict(), "replicas": rec.row["replicas"], "seed": scenario.seed,
                "name": f"plan-{rec.label.replace(' ', '-')}-x{rec.row['replicas']}"}
        fleet = load_scenario(data)
    per_hw = []
    for hw in hardware:
        mine = [o for o in order if o.row["hardware"] == hw]
        per_hw.append(dict(min(mine, key=_closeness).row))
    slo_text = [str(t) for t in targets]
    for hw in hardware:
        if hw not in s.prices:
            s.prices[hw] = _catalog_price(scenario, hw)
    tv, deployments, breakeven, hourly = _time_varying_and_deployments(s, rec, profile)
    data: dict[str, Any] = {
        "kind": "capsim-plan", "version": 1,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "capsim_version": _version(),
        "question": _question(scenario, rate, sizing, profile, slo_text),
        "inputs": {"scenario": scenario.to_dict(), "slos": slo_text, "target_rate_per_s": rate,
                   "time_varying": profile is not None,
                   "search": {"hardware": list(hardware), "quantization": list(quantization), "tp": list(tp),
                              "engine": {"max_num_seqs": sorted({g[0] for g in grid}),
                                         "max_num_batched_tokens": sorted({g[1] for g in grid})}},
                   "seeds": seeds, "confirm_seeds": list(confirm), "prices": s.prices,
                   "deployment": s.deployment.as_dict()},
        "recommendation": None if rec is None else dict(rec.row),
        "runner_up": None if runner is None else dict(runner.row),
        "margin": None if rec is None or runner is None else {
            "usd_per_hour": runner.row["usd_per_hour"] - rec.row["usd_per_hour"],
            "share": (runner.row["usd_per_hour"] - rec.row["usd_per_hour"]) / rec.row["usd_per_hour"]},
        "per_hardware": per_hw,
        "infeasible": None if rec is not None else _infeasible(s, slo_text),
        "time_varying": tv, "deployments": deployments, "breakeven": breakeven,
        "provenance": [{"option": o.label, "profile_kind": o.row["profile_kind"], "profile_source": o.row["profile_source"],
                        "held_out_error": _held_out(o.row["profile_source"] or "")}
                       for o in s.options if o.row["fits"]],
        "simulations": s.simulations, "wall_s": wall_s, "notes": notes, "method": __doc__,
    }
    return Plan(_plain(data), options, curves, fleet, hourly)


def _time_varying_and_deployments(s: _Search, rec: _Option | None, profile: Any
                                  ) -> tuple[Any, Any, Any, pa.Table | None]:
    """plan.json's ``time_varying``, ``deployments`` and ``breakeven``, and hourly.parquet's table,
    for the recommended configuration ``rec`` (all None without one; see the module docstring)."""
    from sim.analysis.deployment import (CpuServing, Fleet, breakeven_tokens_per_month, breakeven_utilisation,
                                         deployments, CPU_HARDWARE, HOURS_PER_MONTH)
    from sim.analysis.hourly import hourly_fleet
    from sim.config import CostSpec
    from sim.results.cost import cloud_usd_per_gpu_hour

    if rec is None:
        return None, None, None, None
    row, inputs = rec.row, s.deployment
    per_replica = row["max_rate_per_replica_per_s"]
    tv = hourly = None
    if profile is not None:
        hf = hourly_fleet(profile, per_replica, row["usd_per_hour"] / row["replicas"], inputs.scale_up_delay_s,
                          gpus_per_replica=row["tp"])
        tv = {"scale_up_delay_s": inputs.scale_up_delay_s, "static_replicas": hf.replicas_static,
              "usd_per_day_static": hf.usd_static_per_day, "usd_per_day_resized": hf.usd_resized_per_day,
              "overprovisioned_share": hf.over_provisioned_share,
              "assumption": f"a replica takes {inputs.scale_up_delay_s:g} s from the request to serving; the "
                            "resized fleet starts it that far ahead of the hour that needs it",
              **{k: v for k, v in hf.as_dict().items() if k != "table"}}
        hourly = hf.table
    per_request = (rec.fleet or {}).get("tokens_per_request")
    if not per_request or not per_request["output"] > 0:
        s.notes.append("deployment patterns not priced: the confirmed fleet completed no request")
        return tv, None, None, hourly
    month_s = HOURS_PER_MONTH * 3600.0
    requests = s.rate * month_s  # the mean target rate over a month
    fleet = Fleet(gpus=row["gpus"], hardware=row["hardware"], utilisation=min(max(row["utilisation"], 1e-9), 1.0),
                  input_tokens_per_month=requests * per_request["input"],
                  output_tokens_per_month=requests * per_request["output"])
    cpu = CpuServing(fits=False, reason=f"not searched: add {CPU_HARDWARE} to the hardware searched to price CPU "
                                        "serving")
    cpu_rows = [o for o in s.options if o.row["hardware"] == CPU_HARDWARE]
    if cpu_rows:
        best = min(cpu_rows, key=_closeness)
        if best.row["max_rate_per_replica_per_s"]:
            cpu = CpuServing(fits=True, output_tokens_per_s=best.row["max_rate_per_replica_per_s"] * per_request["output"],
                             servers=max(1, math.ceil(s.sizing / best.row["max_rate_per_replica_per_s"] - 1e-9)))
        else:
            cpu = CpuServing(fits=False, reason=best.row["reason"] or "cannot meet the SLOs")
    cloud = CostSpec() if s.scenario.cost.model != "cloud" or s.scenario.cost.pricing != "on-demand" \
        else s.scenario.cost
    owned = inputs.owned if inputs.owned is not None else (s.scenario.cost if s.scenario.cost.model == "owned" else None)
    pats = deployments(fleet, on_demand=cloud, committed=inputs.committed, spot=inputs.spot, owned=owned,
                       api=inputs.api, cpu=cpu)
    on_demand = pats[0]
    capacity = row["replicas"] * per_replica * per_request["output"] * month_s
    volume = None
    if inputs.api is not None:
        volume = breakeven_tokens_per_month(on_demand.fixed_usd_per_month or 0.0, inputs.api,
                                            input_per_output=fleet.input_per_output,
                                            capacity_output_tokens_per_month=capacity,
                                            marginal_usd_per_million_output=on_demand.marginal_usd_per_million_output
                                            or 0.0)
    cloud_rate = cloud_usd_per_gpu_hour(cloud, row["hardware"])[0]
    util = None
    if owned is not None:
        util = breakeven_utilisation(owned, row["hardware"], cloud_rate)
    detail = []
    detail.append("managed API: no price given" if inputs.api is None else
                  f"the {row['replicas']}-replica fleet on demand beats the managed API above {volume:.4g} output "
                  f"tokens a month" if volume is not None else
                  "the managed API is cheaper at every volume this fleet can serve "
                  f"(up to {capacity:.4g} output tokens a month)")
    detail.append("owned: no purchase or electricity price given" if owned is None else
                  f"owned {row['hardware']} beats cloud at ${cloud_rate:.2f}/GPU-hour (scaling to zero) "
                  f"above {util:.1%} utilisation" if util is not None else
                  "owned hardware never beats this cloud price, even fully busy")
    breakeven = {"managed_api_tokens_per_month": volume, "owned_vs_cloud_utilisation": util,
                 "capacity_output_tokens_per_month": capacity, "detail": "; ".join(detail)}
    return tv, [d.as_dict() for d in pats], breakeven, hourly


def _closeness(o: _Option) -> tuple[int, Any, Any]:
    """How far an option got, best first: ranked, then failing after a curve, then pruned, then not fitting."""
    if o.row["rank"] is not None:
        return (0, o.row["rank"], o.label)
    stage = {"confirmed": 1, "curve": 2, "pruned": 3}.get(o.row["stage"] or "", 4)
    return (stage, o.row["bound_usd_per_hour"] or math.inf, o.label)


def _infeasible(s: _Search, slo_text: list[str]) -> dict[str, str]:
    """The binding constraint when nothing meets the SLOs: that of the options that got furthest."""
    best = min(s.options, key=_closeness)
    binding = best.row["binding"] or "does_not_fit"
    if not any(o.row["fits"] for o in s.options):
        kinds = sorted({o.row["binding"] for o in s.options})
        binding = kinds[0] if len(kinds) == 1 else binding
        detail = (f"{s.scenario.model} fits none of the {len(s.options)} options searched; e.g. {best.label}: "
                  f"{best.row['reason']}")
    else:
        detail = (f"no configuration meets {', '.join(slo_text) or 'the load'} at {s.sizing:.3g} requests/s; the most "
                  f"promising, {best.label}: {best.row['reason']}")
    return {"binding_constraint": binding, "detail": detail}


def _catalog_price(scenario: Scenario, hw: str) -> dict[str, Any]:
    from calibration import GPUS

    gpu = GPUS[hw]
    disc = scenario.cost.discount or 0.0
    src = gpu.sources.get("price_usd_per_hour", gpu.sources.get("default", ""))
    return {"usd_per_gpu_hour": gpu.price_usd_per_hour * (1 - disc), "source": f"catalog on-demand: {src}"}


def _question(scenario: Scenario, rate: float, sizing: float, profile: Any, slo_text: list[str]) -> str:
    classes = ", ".join(c.name for c in scenario.workload.classes)
    load = (f"a time-varying {rate:.3g} req/s on average (peak {sizing:.3g})" if profile is not None
            else f"{rate:.3g} req/s")
    slos = ", ".join(t.replace("=", "<=", 1) for t in slo_text) or "no latency target (not saturating)"
    return f"Cheapest fleet for {scenario.model} serving {load} of {classes} with {slos}"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("capsim")
    except PackageNotFoundError:
        return "unknown"


def _plain(x: Any) -> Any:
    """JSON-safe: NaN and infinities as None (plan.json is strict JSON)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x
