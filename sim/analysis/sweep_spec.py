"""The sweep spec: a base scenario, the axes varied over it, and how points are drawn from them.

A spec is a YAML/TOML file or a Python mapping (docs/sweeps.md has the format)::

    base: my-scenario.yaml            # relative to the spec file; or a mapping; default: the embedded default
    axes:
      hardware: [h100-sxm, l40s]
      workload.arrival.rate_per_s: [4, 8, 16]
      engine.max_num_seqs: {low: 32, high: 512}     # a range: random and latin_hypercube designs only
    design: grid                      # grid (default) | random | latin_hypercube
    samples: 20                       # random and latin_hypercube: how many points
    zip: [[tp, replicas]]             # axes varied together, value i with value i
    exclude: [{tp: 8, hardware: l40s}]
    repeats: 2                        # seeds per point
    seed: 0                           # the sweep seed

It is checked here, at the edge, and every refusal is one line naming the key
(:class:`SweepSpecError`). An axis on a field the scenario does not have is refused with the
scenario validator's own words (its first value is applied to the base and validated).

A *point* is one assignment of a value to every axis plus a repeat index. Its id is a short
stable hash of exactly those (:func:`point_id`), and its seed derives from the sweep seed and the
id (``SeedSequence([seed, id])``), so a point's result never depends on where, with what, or in
what order it runs. Points whose scenario does not validate are found up front
(:meth:`SweepSpec.check`) with the validator's one-line reason; the sweep records them as
invalid and does not run them.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sim.config import Scenario, parse_yaml, scenario_data
from sim.errors import ScenarioError, format_validation_error

__all__ = ["DESIGNS", "Point", "Range", "SweepSpec", "SweepSpecError", "load_sweep_spec", "point_id", "set_path"]

DESIGNS = ("grid", "random", "latin_hypercube")
"""How points are drawn from the axes: every combination, or ``samples`` drawn at random or by Latin hypercube."""
_KEYS = ("base", "axes", "design", "samples", "zip", "exclude", "repeats", "seed")


class SweepSpecError(ValueError):
    """A sweep spec that cannot be run as written. ``str(err)`` is one line naming the key."""


@dataclass(frozen=True)
class Range:
    """A numeric range ``{low, high}`` sampled by the random and Latin-hypercube designs: whole
    numbers in [low, high] when both ends are whole, else reals in [low, high)."""

    low: float
    high: float

    @property
    def whole(self) -> bool:
        """Both ends whole numbers: the axis draws integers."""
        return isinstance(self.low, int) and isinstance(self.high, int)

    def at(self, u: float) -> int | float:
        """The value at quantile ``u`` in [0, 1)."""
        if self.whole:
            return int(min(self.low + math.floor(u * (self.high - self.low + 1)), self.high))
        return float(self.low + u * (self.high - self.low))


@dataclass(frozen=True)
class Point:
    """One simulation of the sweep: its id, the axis values (by dotted path, in axis order), the
    repeat index and the seed its scenario runs with."""

    id: str
    params: dict[str, Any]
    repeat: int
    seed: int


def point_id(params: Mapping[str, Any], repeat: int) -> str:
    """A short stable hash of a point's parameters and repeat index: ``p`` and 12 hex digits (the
    letter keeps a partition value from ever reading as a number)."""
    text = json.dumps({"params": dict(params), "repeat": int(repeat)}, sort_keys=True, separators=(",", ":"))
    return "p" + hashlib.sha256(text.encode()).hexdigest()[:12]


def point_seed(sweep_seed: int, pid: str) -> int:
    """The scenario seed of point ``pid``: from ``SeedSequence([sweep_seed, id])``, 63 bits."""
    state = np.random.SeedSequence([int(sweep_seed), int(pid[1:], 16)]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at the dotted ``path`` of nested scenario data, as ``capsim run --set`` does
    (``classes.0`` indexes a list; ``None`` removes the key so that its default applies). The
    value is copied, so points never share mutable state. ValueError naming the path otherwise."""
    node: Any = data
    parts = path.split(".")
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[:depth]) or "the scenario"
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ValueError(f"{where} is a list of {len(node)}; {part!r} is not an index in it")
            if last:
                node[int(part)] = copy.deepcopy(value)
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last and value is None:
                node.pop(part, None)
            elif last:
                node[part] = copy.deepcopy(value)
            else:
                node = node.setdefault(part, {})
        else:
            raise ValueError(f"{where} holds a value, not keys")


@dataclass(frozen=True)
class SweepSpec:
    """A checked sweep spec (build it with :func:`load_sweep_spec`). ``axes`` maps each dotted
    path to its list of values or a :class:`Range`; ``zip`` holds groups of axis paths."""

    base: dict[str, Any]
    base_label: str
    axes: dict[str, list[Any] | Range]
    design: str = "grid"
    samples: int | None = None
    zip: tuple[tuple[str, ...], ...] = ()
    exclude: tuple[dict[str, Any], ...] = ()
    repeats: int = 1
    seed: int = 0
    _checked: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)

    # -- the points ------------------------------------------------------------------------------
    def _units(self) -> list[tuple[str, ...]]:
        """The independent dimensions, in axis order: each zip group once, every other axis alone."""
        grouped = {a: g for g in self.zip for a in g}
        units: list[tuple[str, ...]] = []
        for a in self.axes:
            unit = grouped.get(a, (a,))
            if unit not in units:
                units.append(unit)
        return units

    def assignments(self) -> list[dict[str, Any]]:
        """Every assignment of values to the axes that the design draws, before repeats and
        exclusions, in a deterministic order (for random designs: for this spec's seed)."""
        units = self._units()
        if self.design == "grid":  # every combination of list positions, the first axis slowest
            positions = itertools.product(*(range(len(self.axes[u[0]])) for u in units))  # type: ignore[arg-type]
            picks = [[lambda axis, i=i: axis[i] for i in combo] for combo in positions]
        else:
            n = int(self.samples or 0)
            rng = np.random.default_rng(np.random.SeedSequence([int(self.seed), 0x5EED, DESIGNS.index(self.design)]))
            if self.design == "random":
                u = rng.random((n, len(units)))
            else:
                from scipy.stats import qmc  # lazily: scipy is heavy

                u = qmc.LatinHypercube(d=len(units), seed=rng).random(n)
            picks = [[lambda axis, q=q: _value(axis, q) for q in row] for row in u.tolist()]
        out = []
        for pick in picks:
            params: dict[str, Any] = {}
            for unit, value_of in zip(units, pick):
                for a in unit:  # a zip group's axes take the same position (lists of equal length)
                    params[a] = value_of(self.axes[a])
            out.append({a: params[a] for a in self.axes})
        return out

    def excluded(self, params: Mapping[str, Any]) -> bool:
        """Whether an ``exclude`` entry matches every one of its keys in ``params``."""
        return any(all(_same(params.get(k), v) for k, v in rule.items()) for rule in self.exclude)

    def points(self) -> tuple[list[Point], int]:
        """The points to simulate (each assignment times ``repeats``, exclusions left out, a
        duplicate assignment kept once) and how many assignments the exclusions removed."""
        points, seen, dropped = [], set(), 0
        for params in self.assignments():
            if self.excluded(params):
                dropped += 1
                continue
            for r in range(self.repeats):
                pid = point_id(params, r)
                if pid not in seen:
                    seen.add(pid)
                    points.append(Point(pid, params, r, point_seed(self.seed, pid)))
        return points, dropped

    def scenario_data(self, point: Point) -> dict[str, Any]:
        """The point's scenario as plain data: the base, each axis value set, the point's seed."""
        data = copy.deepcopy(self.base)
        for path, value in point.params.items():
            set_path(data, path, value)
        data["seed"] = point.seed
        return data

    def check(self, point: Point) -> str | None:
        """None if the point's scenario validates, else the validator's one-line reason. The
        answer is kept per assignment: repeats differ only in their seed."""
        key = json.dumps(point.params, sort_keys=True)
        if key not in self._checked:
            try:
                Scenario.model_validate(self.scenario_data(point))
                self._checked[key] = None
            except Exception as e:  # noqa: BLE001 - pydantic's ValidationError, or a ValueError inside a validator
                self._checked[key] = _reason(e)
        return self._checked[key]

    def identity(self) -> dict[str, Any]:
        """What a sweep's output directory must share with this spec to be resumed with it: the
        base scenario and the sweep seed (axes may grow; a point's id says its values)."""
        return {"base": self.base, "seed": self.seed}

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (written beside the results as ``sweep.json``)."""
        axes = {a: {"low": v.low, "high": v.high} if isinstance(v, Range) else v for a, v in self.axes.items()}
        return {"base": self.base, "axes": axes, "design": self.design, "samples": self.samples,
                "zip": [list(g) for g in self.zip], "exclude": list(self.exclude), "repeats": self.repeats,
                "seed": self.seed}


def _value(axis: list[Any] | Range, q: float) -> Any:
    """The axis value at quantile ``q`` in [0, 1): a range's, or a list's item at that share of its length."""
    if isinstance(axis, Range):
        return axis.at(q)
    return axis[min(int(math.floor(q * len(axis))), len(axis) - 1)]


def _same(a: Any, b: Any) -> bool:
    """Equal as a spec means it (8 == 8.0, but True is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _reason(e: Exception) -> str:
    """A validation failure as one line, in the scenario validator's words."""
    from pydantic import ValidationError

    if isinstance(e, ValidationError):
        return format_validation_error(e, Scenario)
    return " ".join(str(e).split()) or type(e).__name__


# ---------------------------------------------------------------------------------------------
# Reading and checking


def _read(path: Path) -> Any:
    """A spec file's data; SweepSpecError naming the file when it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SweepSpecError(f"{path}: no such sweep spec file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SweepSpecError(f"{path}: cannot read the sweep spec ({e})") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix in (".yaml", ".yml"):
            return parse_yaml(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise SweepSpecError(f"{path}: not valid {'TOML' if suffix == '.toml' else 'YAML'}: "
                             f"{' '.join(str(e).split())}") from None
    raise SweepSpecError(f"{path}: a sweep spec file must end in .yaml, .yml or .toml, not {suffix or '(none)'!r}")


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _axis(path: str, values: Any, design: str) -> list[Any] | Range:
    """One axis checked: a non-empty list, or (random designs) a range ``{low, high}``."""
    where = f"axes.{path}"
    if not path or any(not part for part in path.split(".")):
        raise SweepSpecError(f"{where}: an axis is a dotted path of scenario keys, e.g. workload.arrival.rate_per_s")
    if path == "seed":
        raise SweepSpecError(f"{where}: a point's seed derives from the sweep seed and its id; vary seeds with "
                             "repeats: N (and the sweep's seed: S)")
    if isinstance(values, Mapping):
        if set(values) != {"low", "high"}:
            raise SweepSpecError(f"{where} = {dict(values)!r}: a range has exactly the keys low and high, e.g. "
                                 "{low: 4, high: 16}; otherwise give a list of values")
        low, high = values["low"], values["high"]
        if not (_number(low) and _number(high)) or not low < high:
            raise SweepSpecError(f"{where} = {dict(values)!r}: low and high must be finite numbers with low < high")
        if design == "grid":
            raise SweepSpecError(f"{where}: a range {{low, high}} needs design random or latin_hypercube (with "
                                 "samples: N); under design grid give a list of values")
        return Range(low, high)
    if not isinstance(values, list):
        raise SweepSpecError(f"{where} = {values!r}: must be a list of values, e.g. [4, 8, 16], or a range "
                             "{low, high}")
    if not values:
        raise SweepSpecError(f"{where} = []: an axis needs at least one value")
    return list(values)


def _unknown_field(base: dict[str, Any], path: str, value: Any) -> str | None:
    """The validator's words when setting ``path`` on the base scenario names a key the scenario
    does not have (an ``extra_forbidden`` error at that key); None otherwise (a value that is
    merely bad for some points is the points' business, reported up front)."""
    from pydantic import ValidationError

    data = copy.deepcopy(base)
    try:
        set_path(data, path, value)
    except ValueError as e:
        return str(e)
    try:
        Scenario.model_validate(data)
    except ValidationError as e:
        last = path.split(".")[-1]
        if any(err["type"] == "extra_forbidden" and str(err["loc"][-1]) == last for err in e.errors()):
            return format_validation_error(e, Scenario)
    except Exception:  # noqa: BLE001 - any other failure is about a value, not the field
        return None
    return None


def load_sweep_spec(source: str | Path | Mapping[str, Any]) -> SweepSpec:
    """Read and check a sweep spec from a YAML/TOML file or a mapping; :class:`SweepSpecError`
    (one line, naming the key) when it is malformed."""
    if isinstance(source, Mapping):
        raw, here, label = dict(source), Path.cwd(), "sweep spec"
    else:
        path = Path(source)
        raw, here, label = _read(path), path.parent, str(path)
    try:
        return _checked(raw, here)
    except SweepSpecError as e:
        raise SweepSpecError(f"{label}: {e}") from None


def _checked(raw: Any, here: Path) -> SweepSpec:
    """The spec from its raw data (``here``: the folder a relative ``base`` path is read from)."""
    if not isinstance(raw, Mapping):
        raise SweepSpecError(f"must be a mapping with the keys {', '.join(_KEYS)}, not {type(raw).__name__}")
    unknown = [k for k in raw if k not in _KEYS]
    if unknown:
        raise SweepSpecError(f"{unknown[0]}: unknown key; allowed keys: {', '.join(_KEYS)}")
    # design first: the axes are read according to it
    design = raw.get("design", "grid")
    if design not in DESIGNS:
        raise SweepSpecError(f"design = {design!r}: must be one of {', '.join(DESIGNS)}")
    samples = raw.get("samples")
    if design == "grid":
        if samples is not None:
            raise SweepSpecError(f"samples = {samples!r}: only for design random or latin_hypercube; design grid "
                                 "runs every combination")
    elif isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise SweepSpecError(f"samples = {samples!r}: design {design} needs samples, a whole number >= 1")
    for key in ("repeats", "seed"):
        v = raw.get(key, 1 if key == "repeats" else 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if key == "repeats" else 0):
            raise SweepSpecError(f"{key} = {v!r}: must be a whole number >= {1 if key == 'repeats' else 0}")
    base, base_label = _base(raw.get("base"), here)

    axes_raw = raw.get("axes")
    if not isinstance(axes_raw, Mapping) or not axes_raw:
        raise SweepSpecError(f"axes = {axes_raw!r}: give a mapping of dotted scenario paths to lists of values, "
                             "e.g. axes: {hardware: [h100-sxm, l40s]}")
    axes = {str(k): _axis(str(k), v, design) for k, v in axes_raw.items()}
    for a, v in axes.items():
        probe = v.at(0.0) if isinstance(v, Range) else v[0]
        why = _unknown_field(base, a, probe)
        if why is not None:
            raise SweepSpecError(f"axes.{a}: not a field of the scenario: {why}")

    groups = _zip(raw.get("zip", []), axes)
    exclude = _exclude(raw.get("exclude", []), axes)
    return SweepSpec(base=base, base_label=base_label, axes=axes, design=design, samples=samples, zip=groups,
                     exclude=exclude, repeats=int(raw.get("repeats", 1)), seed=int(raw.get("seed", 0)))


def _base(given: Any, here: Path) -> tuple[dict[str, Any], str]:
    """The base scenario's data and a label: a file beside the spec, a mapping, or the default."""
    try:
        if given is None:
            return scenario_data(), "default scenario"
        if isinstance(given, str):
            p = Path(given) if Path(given).is_absolute() else here / given
            return scenario_data(p), str(p)
        if isinstance(given, Mapping):
            return copy.deepcopy(dict(given)), "inline base"
    except ScenarioError as e:
        raise SweepSpecError(f"base = {given!r}: {e}") from None
    raise SweepSpecError(f"base = {given!r}: must be a scenario file path (relative to the spec) or a mapping")


def _zip(raw: Any, axes: Mapping[str, list[Any] | Range]) -> tuple[tuple[str, ...], ...]:
    """Zip groups checked: lists of two or more axes, each in one group, lists of equal length."""
    if not isinstance(raw, list) or not all(isinstance(g, list) for g in raw):
        raise SweepSpecError(f"zip = {raw!r}: must be a list of groups of axes, e.g. [[tp, replicas]]")
    seen: set[str] = set()
    groups = []
    for i, g in enumerate(raw):
        if len(g) < 2:
            raise SweepSpecError(f"zip[{i}] = {g!r}: a group zips two or more axes")
        for a in g:
            if a not in axes:
                raise SweepSpecError(f"zip[{i}]: {a!r} is not an axis; axes: {', '.join(axes)}")
            if a in seen:
                raise SweepSpecError(f"zip[{i}]: axis {a!r} is in two groups")
            if isinstance(axes[a], Range):
                raise SweepSpecError(f"zip[{i}]: axis {a!r} is a range; zipped axes are lists of equal length")
            seen.add(a)
        lengths = {a: len(axes[a]) for a in g}  # type: ignore[arg-type]
        if len(set(lengths.values())) > 1:
            raise SweepSpecError(f"zip[{i}]: zipped axes need lists of equal length, not "
                                 + ", ".join(f"{a} ({n})" for a, n in lengths.items()))
        groups.append(tuple(g))
    return tuple(groups)


def _exclude(raw: Any, axes: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """Exclusions checked: each a non-empty mapping of axes to one value each."""
    if not isinstance(raw, list):
        raise SweepSpecError(f"exclude = {raw!r}: must be a list of partial assignments, e.g. "
                             "[{tp: 8, hardware: l40s}]")
    for i, rule in enumerate(raw):
        if not isinstance(rule, Mapping) or not rule:
            raise SweepSpecError(f"exclude[{i}] = {rule!r}: must be a mapping of axes to values, e.g. "
                                 "{tp: 8, hardware: l40s}")
        for k in rule:
            if k not in axes:
                raise SweepSpecError(f"exclude[{i}].{k}: not an axis; axes: {', '.join(axes)}")
    return tuple(dict(r) for r in raw)
