"""Hardware comparison: the same workload on several hardware × quantization × TP options.

For each option, :func:`compare`:

1. builds the scenario on that hardware, quantization and TP with **one** replica (the scenario's
   engine, workload and cost section otherwise unchanged); an option that does not fit (memory,
   heads not divisible by TP, no interconnect, a precision the hardware does not run) is listed
   with the validator's reason and not simulated;
2. runs its load curve (:func:`sim.analysis.curve.load_curve`) under the SLOs: its highest rate per
   replica with the spread over seeds, and the output tokens/s one replica turns out there;
3. prices it there: ``$ per 1M output tokens = $/hour of one replica / (its output tokens/s at the
   highest rate under the SLOs × 3600) × 1e6``, the cost of a replica kept exactly as busy as the
   SLOs allow;
4. sizes the fleet for the target rate, ``⌈target / highest rate per replica⌉`` replicas, and
   simulates that fleet whole at the target rate (routing included, a fresh seed, as many requests
   per replica as a curve point when the workload is counted in requests): whether it meets
   the SLOs, its $/hour, and its idle-capacity waste against the option's own reference
   (:mod:`sim.results.waste`). Without a target rate the scenario's own arrivals are kept: a time-varying
   rate (diurnal, steps, ...) is simulated as it is, the static fleet sized for its peak, so that
   the waste per time window shows where the fleet sits idle.

**Profile families.** ``family`` picks the step-time model of every row, one family for the whole
comparison: a measured profile and a roofline model different engines, and their ratio is not the
hardware's. ``auto`` (the default), with the scenario's profile at ``kind: auto``: measured where
every option has a measured (or derived-from-measured) profile, else the datasheet roofline for
all (the notes say which and why); with any other profile setting, that setting for every row.
``roofline`` prices every row with the datasheet roofline; ``measured`` only rows with a measured
profile, listing the others as not comparable. Every row states its profile kind and source.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pyarrow as pa

from sim.config import Scenario, load_scenario
from sim.errors import ScenarioError
from sim.results.waste import PARTS, WasteReference, waste_of

__all__ = ["FAMILIES", "Comparison", "CompareError", "Option", "check_search", "chosen_options", "compare", "fleet_scenario", "grid_options", "one_family",
           "option_scenario", "target_load"]

FAMILIES = ("auto", "roofline", "measured")
_MEASURED = ("measured", "derived-from-measured")


class CompareError(ValueError):
    """A comparison that cannot be set up; ``str(err)`` is one line."""


@dataclass(frozen=True)
class Comparison:
    """The options compared (:attr:`options`, one row each, cheapest first among those that meet
    the SLOs) and what they were compared on."""

    scenario: Scenario
    target_rate_per_s: float
    slos: tuple[str, ...]
    family: str
    options: pa.Table
    notes: tuple[str, ...] = field(default=())
    windows: dict[str, pa.Table] = field(default_factory=dict)  # per option simulated: its fleet's waste per window

    def waste_windows(self, option: str) -> pa.Table:
        """The waste of ``option``'s fleet per time window (columns ``window_start_s``, ``window_s``
        and ``<part>_gpu_s``, as :func:`sim.analysis.charts.waste_by_window_chart` reads them)."""
        if option not in self.windows:
            raise KeyError(f"option {option!r} was not simulated; simulated: {', '.join(self.windows) or 'none'}")
        return self.windows[option]

    def as_dict(self) -> dict[str, Any]:
        return {"target_rate_per_s": self.target_rate_per_s, "slos": list(self.slos), "family": self.family,
                "notes": list(self.notes), "method": __doc__, "scenario": self.scenario.to_dict(),
                "options": self.options.to_pylist(),
                "waste_windows": {k: v.to_pydict() for k, v in self.windows.items()}}

    def write(self, out_dir: str | os.PathLike) -> list[Path]:
        """``compare.parquet`` (the options) and ``compare.json`` into ``out_dir``, each through a
        temporary name and ``os.replace``."""
        from sim.analysis.atomic import write_table_and_json

        return write_table_and_json(out_dir, "compare", self.options, self.as_dict())


def _label(hw: str, quant: str, tp: int) -> str:
    return f"{hw} {quant} tp{tp}"


def option_scenario(base: dict[str, Any], hw: str, quant: str, tp: int, family: str,
                    engine: dict[str, Any] | None = None) -> Scenario:
    """``base`` (a scenario as plain data) on hardware ``hw`` with ``quant`` at ``tp``, one replica;
    ``engine`` keys (e.g. ``max_num_seqs``) replace the scenario's; ``family`` ``roofline`` prices
    it with the datasheet roofline. Raises ScenarioError when it does not fit (the validator's words)."""
    data = {**base, "hardware": hw, "quantization": quant, "tp": tp, "replicas": 1}
    if engine:
        data["engine"] = {**data.get("engine", {}), **engine}
    if family == "roofline":
        data["profile"] = {"kind": "roofline"}
    return load_scenario(data)


Option = tuple[str, str, int]
"""One configuration compared: (hardware, quantization, tp)."""


def grid_options(hardware: Sequence[str], quantization: Sequence[str], tp: Sequence[int]) -> list[Option]:
    """Every combination of ``hardware × quantization × tp``, hardware slowest."""
    return [(hw, q, t) for hw in hardware for q in quantization for t in tp]


def one_family(base: dict[str, Any], options: Sequence[Option]) -> tuple[str, str]:
    """The one profile family ``kind: auto`` prices a whole comparison of ``options`` with, and
    why: measured where every option that fits has a measured (or derived-from-measured) profile,
    else the datasheet roofline for all. A ratio between two options is then the hardware's, not
    two engines'."""
    missing, fits = [], 0
    for hw, q, t in options:
        try:
            kind = option_scenario(base, hw, q, t, "auto").build_profile().provenance.kind
        except ScenarioError:
            continue  # does not fit: listed as such, whatever the family
        fits += 1
        if kind not in _MEASURED:
            missing.append(_label(hw, q, t))
    if missing:
        return "roofline", (f"profile kind auto: every option priced on the datasheet roofline, as {', '.join(missing)} "
                            "has no measured profile (a comparison never mixes families; --family measured compares "
                            "only the options that have one)")
    if not fits:
        return "roofline", "profile kind auto: no option fits its hardware"
    return "measured", "profile kind auto: every option has a measured profile, and each is priced with its own"


def chosen_options(scenario: Scenario, hardware: Sequence[str], quantization: Sequence[str], tp: Sequence[int],
                   options: Sequence[Any] | None) -> list[Option]:
    """The options a comparison runs, checked: the grid ``hardware × quantization × tp`` when
    ``options`` is None (:func:`check_search`), else ``options`` as (hardware, quantization, tp)
    triples checked the same way; :class:`CompareError` (one line) for options given beside a
    grid, none, a malformed or a repeated one. Cheap: a command line calls it before it starts
    any worker."""
    if options is None:
        check_search(scenario, hardware, quantization, tp)
        return grid_options(hardware, quantization, tp)
    if hardware or quantization:
        raise CompareError("options: give the options, or hardware and quantization to combine, not both")
    out: list[Option] = []
    for i, o in enumerate(options):
        if not (isinstance(o, (tuple, list)) and len(o) in (2, 3) and all(isinstance(x, str) for x in o[:2])):
            raise CompareError(f"options[{i}] = {o!r}: give (hardware, quantization) or (hardware, quantization, tp)")
        out.append((o[0], o[1], o[2] if len(o) == 3 else 1))
    if not out:
        raise CompareError("options: give at least one")
    if len(set(out)) < len(out):
        dup = next(o for o in out if out.count(o) > 1)
        raise CompareError(f"options: {_label(*dup)} is given twice")
    check_search(scenario, list(dict.fromkeys(o[0] for o in out)), list(dict.fromkeys(o[1] for o in out)),
                 [o[2] for o in out])
    return out


def check_search(scenario: Scenario, hardware: Sequence[str], quantization: Sequence[str], tp: Sequence[int]) -> None:
    """Refuse, in one line (:class:`CompareError`), a search over ``hardware × quantization × tp``
    that cannot be made: an unknown hardware or quantization (with close matches), an empty list, a
    TP that is not a whole number >= 1, or a cost section that names one hardware's price while
    the search spans several."""
    from calibration import GPUS, QUANTIZATIONS
    from calibration.catalog import close_matches

    for what, values, table in (("hardware", hardware, GPUS), ("quantization", quantization, QUANTIZATIONS)):
        if not values:
            raise CompareError(f"{what}: give at least one")
        for v in values:
            if v not in table:  # the scenario validator's words (sim.config._known), with the list it came from
                raise CompareError(f"{what} {v!r} is not in the catalog{close_matches(v, table)}; known: "
                                   f"{', '.join(sorted(table))}")
    if not tp or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in tp):
        raise CompareError(f"tp {list(tp)!r}: give whole numbers >= 1")
    if scenario.cost.usd_per_gpu_hour is not None and len(set(hardware)) > 1:
        raise CompareError(f"cost.usd_per_gpu_hour = {scenario.cost.usd_per_gpu_hour:g} is one hardware's price and "
                           "this comparison spans several: remove it (catalog prices apply, with cost.discount if given)")


def target_load(scenario: Scenario, rate_per_s: float | None) -> tuple[float, float, Any]:
    """The target load of a search: ``(rate, sizing rate, rate profile)``. With ``rate_per_s``
    given, it is both the rate and the sizing rate, and the profile is None (the fleet runs at that
    constant rate). Without it, the scenario's own arrivals are kept: the rate is their mean, and a
    time-varying rate (``rate_profile``) is returned with its peak as the sizing rate (a static
    fleet is sized for the peak). Raises :class:`CompareError` for an arrival process without a
    rate, or a rate that is not a number > 0."""
    own = rate_per_s is None
    if own:
        rate_per_s = getattr(scenario.workload.arrival, "mean_rate_per_s", None)
        if rate_per_s is None:
            raise CompareError("the scenario's arrival process has no rate: give the target rate (--rate)")
    if isinstance(rate_per_s, bool) or not (isinstance(rate_per_s, (int, float)) and math.isfinite(rate_per_s)
                                            and rate_per_s > 0):
        raise CompareError(f"rate {rate_per_s!r}: must be a number of requests/s > 0")
    profile = getattr(scenario.workload.arrival, "rate_profile", None) if own else None
    sizing = max(float(profile.knots().rate.max()), rate_per_s) if profile is not None else rate_per_s
    return float(rate_per_s), float(sizing), profile


def _empty_row(label: str, hw: str, quant: str, tp: int) -> dict[str, Any]:
    row: dict[str, Any] = {"option": label, "hardware": hw, "quantization": quant, "tp": tp, "fits": False,
                           "meets_slo": False, "reason": None, "profile_kind": None, "profile_source": None,
                           "max_rate_per_replica_per_s": None, "max_rate_min_per_s": None, "max_rate_max_per_s": None,
                           "output_tokens_per_s_per_replica": None, "usd_per_gpu_hour": None,
                           "usd_per_hour_per_replica": None, "usd_per_million_output_tokens": None,
                           "replicas_needed": None, "sized_for_rate_per_s": None, "gpus_needed": None, "usd_per_hour_fleet": None,
                           "fleet_meets_slo": None, "fleet_slo_failures": None, "fleet_ttft_p99_s": None,
                           "fleet_tpot_p99_s": None}
    for p in PARTS:
        row[f"{p}_gpu_h"] = None
    return row


def compare(scenario: Scenario, *, hardware: Sequence[str] = (), quantization: Sequence[str] = (),
            tp: Sequence[int] = (1,), options: Sequence[Option] | None = None, rate_per_s: float | None = None,
            slos: Iterable[Any] | None = None, family: str = "auto", seeds: int = 2,
            executor: Executor | None = None, workers: int | None = None,
            progress: Callable[[str], None] | None = None) -> Comparison:
    """Compare the options ``hardware × quantization × tp`` on ``scenario``'s workload (see the
    module docstring), or exactly the ``options`` given as (hardware, quantization, tp) triples
    ("3 x H100 in fp8 against 8 x L40S in int4" compares two options, not the four of a grid).
    ``rate_per_s``: the target load in requests/s (None: the scenario's own mean arrival rate).
    ``slos``: as :func:`sim.analysis.curve.load_curve` takes them (None: the scenario's own).
    ``seeds``: per curve point. ``progress(message)`` hears each option start.

    Raises :class:`CompareError` (one line) for an unknown hardware or quantization, an empty
    list, options given with a grid or not as triples, a bad family or rate, or a cost section
    that names one hardware's price."""
    from sim.analysis.curve import load_curve, with_rate
    from sim.engine import simulate
    from sim.analysis.executor import local_executor
    from sim.analysis.slo import meets

    say = progress or (lambda _m: None)
    if family not in FAMILIES:
        raise CompareError(f"family {family!r}: must be one of {', '.join(FAMILIES)}")
    chosen = chosen_options(scenario, hardware, quantization, tp, options)
    rate_per_s, sizing, profile = target_load(scenario, rate_per_s)
    slo_list = list(slos) if slos is not None else None

    base = scenario.to_dict()
    notes = []
    if family == "auto" and scenario.profile.kind == "auto":
        family, why = one_family(base, chosen)
        notes.append(why)
    rows: list[dict[str, Any]] = []
    windows: dict[str, pa.Table] = {}
    ex = local_executor(workers) if executor is None else executor
    try:
        for hw, q, t in chosen:
            label = _label(hw, q, t)
            row = _empty_row(label, hw, q, t)
            rows.append(row)
            try:
                opt = option_scenario(base, hw, q, t, family)
            except ScenarioError as e:
                row["reason"] = f"does not fit: {e}"
                continue
            prov = opt.build_profile().provenance
            row.update(fits=True, profile_kind=prov.kind, profile_source=prov.source)
            if family == "measured" and prov.kind not in _MEASURED:
                row.update(fits=False, reason=f"no measured profile (kind {prov.kind}); --family roofline "
                                              "compares every option on the datasheet roofline")
                continue
            say(f"{label}: load curve")
            curve = load_curve(opt, slos=slo_list, seeds=seeds, executor=ex)
            best, ref = curve.max_rate, curve.reference
            if ref is None or best.mean <= 0:
                fails = curve.points.column("slo_failures").to_pylist()
                why = next((f for f in fails if f), "no rate tried met them")
                row["reason"] = f"cannot meet the SLOs at any rate tried ({why})"
                continue
            row.update(max_rate_per_replica_per_s=best.mean, max_rate_min_per_s=best.min,
                       max_rate_max_per_s=best.max, output_tokens_per_s_per_replica=ref.output_tokens_per_s)
            needed = max(1, math.ceil(sizing / best.mean - 1e-9))
            say(f"{label}: fleet of {needed} at {rate_per_s:g} requests/s")
            fleet = fleet_scenario(opt if profile is not None else with_rate(opt, rate_per_s), needed,
                                   scenario.seed + 1000, scale=profile is None)
            sm = simulate(fleet, records="summary").summary
            ok, reasons = meets(sm, curve.slos)
            cost = sm["cost"]
            per_replica_hour = cost["usd_per_gpu_hour"] * t
            waste = waste_of(sm, fleet, WasteReference(rate_per_s=ref.rate_per_s,
                                                       output_tokens_per_s=ref.output_tokens_per_s,
                                                       source=f"load curve of {label}"))
            row.update(meets_slo=True, usd_per_gpu_hour=cost["usd_per_gpu_hour"],
                       usd_per_hour_per_replica=per_replica_hour,
                       usd_per_million_output_tokens=per_replica_hour / (ref.output_tokens_per_s * 3600) * 1e6,
                       replicas_needed=needed, sized_for_rate_per_s=sizing, gpus_needed=needed * t, usd_per_hour_fleet=cost["usd_per_hour"],
                       fleet_meets_slo=ok, fleet_slo_failures="; ".join(reasons) or None,
                       fleet_ttft_p99_s=sm["latency_s"]["ttft"]["p99"],
                       fleet_tpot_p99_s=sm["latency_s"]["tpot"]["p99"])
            for p in PARTS:
                row[f"{p}_gpu_h"] = waste["gpu_hours"][p]
            win = waste["windows"]
            windows[label] = pa.table({"window_start_s": win["start_s"], "window_s": win["length_s"],
                                       **{f"{p}_gpu_s": win[f"{p}_gpu_s"] for p in PARTS}})
    finally:
        if executor is None:
            ex.shutdown(wait=True, cancel_futures=True)

    order = sorted(range(len(rows)), key=lambda i: (not rows[i]["meets_slo"],
                                                    rows[i]["usd_per_million_output_tokens"] or math.inf, i))
    options = pa.Table.from_pylist([rows[i] for i in order], schema=_SCHEMA)
    slo_text = tuple(str(s) for s in (slo_list if slo_list is not None else _default_slos(scenario)))
    return Comparison(scenario, float(rate_per_s), slo_text, family, options, tuple(notes), windows)


def fleet_scenario(one: Scenario, replicas: int, seed: int, scale: bool) -> Scenario:
    """``one`` (a single replica) as a fleet of ``replicas`` with ``seed``. With ``scale``, a
    workload counted in requests gets ``replicas`` times as many, so that the fleet's run at the
    target rate spans as many requests per replica as each point of the curve (a short run of a
    large fleet is mostly its start-up transient)."""
    data = {**one.to_dict(), "replicas": replicas, "seed": seed}
    if scale and one.workload.num_requests is not None:
        data["workload"] = {**data["workload"], "num_requests": one.workload.num_requests * replicas}
    return load_scenario(data)


def _default_slos(scenario: Scenario) -> list[Any]:
    from sim.analysis.slo import default_slos

    return default_slos(scenario)


_SCHEMA = pa.schema([
    ("option", pa.string()), ("hardware", pa.string()), ("quantization", pa.string()), ("tp", pa.int64()),
    ("fits", pa.bool_()), ("meets_slo", pa.bool_()), ("reason", pa.string()), ("profile_kind", pa.string()),
    ("profile_source", pa.string()), ("max_rate_per_replica_per_s", pa.float64()), ("max_rate_min_per_s", pa.float64()),
    ("max_rate_max_per_s", pa.float64()), ("output_tokens_per_s_per_replica", pa.float64()),
    ("usd_per_gpu_hour", pa.float64()), ("usd_per_hour_per_replica", pa.float64()),
    ("usd_per_million_output_tokens", pa.float64()), ("replicas_needed", pa.int64()),
    ("sized_for_rate_per_s", pa.float64()), ("gpus_needed", pa.int64()),
    ("usd_per_hour_fleet", pa.float64()), ("fleet_meets_slo", pa.bool_()), ("fleet_slo_failures", pa.string()),
    ("fleet_ttft_p99_s", pa.float64()), ("fleet_tpot_p99_s", pa.float64()),
    *[(f"{p}_gpu_h", pa.float64()) for p in PARTS],
])
