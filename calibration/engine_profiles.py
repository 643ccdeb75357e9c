"""Serving-engine profiles: the datasheet roofline at an engine's fitted efficiencies.

``data/engine_profiles.toml`` holds, per engine (named as its preset in ``sim/data/engines.toml``),
the compute efficiency, memory efficiency and per-iteration overhead fitted to that engine's
published benchmark rows on each GPU, and an engine-wide fallback for GPUs it has no rows for
(written by ``python -m sim.fitting.engine_fit``, which says how). Because they are shares of the
GPU's datasheet figures, they apply to any (model, quantization, GPU, TP) the catalog can
express: ``profile: {kind: auto, engine: NAME}`` selects them for every configuration alike, so a
comparison across GPUs or models never mixes profile families.

A file of the same layout fitted by a user (``capsim calibrate --engine-fit CSV -o FILE``) is
named by ``profile: {kind: auto, engine: NAME, engine_profiles: FILE}``; :func:`engine_profiles`
reads it (once per version of the file) and refuses one it cannot use in one line.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from calibration.profile import Provenance
from calibration.roofline import RooflineProfile

__all__ = ["FILE_NAME", "EngineRoofline", "engine_efficiencies", "engine_profiles", "engine_roofline", "where_from"]

_DATA = "data/engine_profiles.toml"
FILE_NAME = "engine_profiles.toml"  # what `-o DIR` writes, and what a directory given as the file stands for
_KEYS = ("compute_efficiency", "memory_efficiency", "overhead_s")
# Fitted where the file has them; absent, the roofline's defaults (calibration.roofline.RooflineProfile).
_OPTIONAL = ("overlap", "moe_compute_efficiency", "allreduce_efficiency")


def engine_profiles(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The engine profiles by engine name: those shipped with capsim (``path`` None, read once), or
    those of the user's file at ``path`` (as ``capsim calibrate --engine-fit`` writes it, relative
    to the current directory; a directory stands for its :data:`FILE_NAME`), read again only when
    the file changes. Raises ValueError with one
    line naming the file for one that is missing, unreadable, not TOML, or without the fitted
    numbers (per engine a ``fallback`` table, and per GPU under ``gpus``, of compute_efficiency and
    memory_efficiency in (0, 1] and overhead_s >= 0)."""
    if path is None:
        return _shipped()
    p = Path(path)
    if p.is_dir():  # the directory `capsim calibrate --engine-fit CSV -o DIR` wrote into
        p = p / FILE_NAME
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ValueError(f"{p}: no such engine profiles file (write one with `capsim calibrate --engine-fit CSV "
                         f"-o {p}`)") from None
    except OSError as e:
        raise ValueError(f"{p}: cannot read ({e.strerror or e})") from None
    return _user_file(str(p.resolve()), st.st_mtime_ns, st.st_size, str(p))


def where_from(path: str | Path | None) -> str:
    """How provenance and errors name a profiles file: the shipped data's place in the package, or
    the user's path as given."""
    return f"calibration/{_DATA}" if path is None else str(path)


@cache
def _shipped() -> dict[str, dict[str, Any]]:
    return tomllib.loads(resources.files("calibration").joinpath(_DATA).read_text())


@cache
def _user_file(resolved: str, mtime_ns: int, size: int, label: str) -> dict[str, dict[str, Any]]:
    """A user's profiles file, keyed by its version (mtime, size): a file rewritten between runs in
    one process is read again."""
    try:
        data = tomllib.loads(Path(resolved).read_text(encoding="utf-8"))
    except IsADirectoryError:
        raise ValueError(f"{label}: is a directory; expected an engine profiles .toml file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{label}: not a UTF-8 text file; an engine profiles file is TOML") from None
    except OSError as e:
        raise ValueError(f"{label}: cannot read ({e.strerror or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{label}: not a valid TOML file ({e})") from None
    if not data:
        raise ValueError(f"{label}: holds no engine profile (one table per engine, as `capsim calibrate "
                         "--engine-fit` writes)")
    for engine, e in data.items():
        if not isinstance(e, dict):
            raise ValueError(f'{label}: "{engine}" = {e!r}: expected a table of an engine\'s profile')
        _check_numbers(label, f'["{engine}".fallback]', e.get("fallback"))
        gpus = e.get("gpus", {})
        if not isinstance(gpus, dict):
            raise ValueError(f'{label}: ["{engine}"].gpus: expected a table of GPUs')
        for gpu, eff in gpus.items():
            _check_numbers(label, f'["{engine}".gpus.{gpu}]', eff)
    return data


def _check_numbers(label: str, where: str, eff: Any) -> None:
    """Refuse a table of fitted numbers that a roofline cannot take, naming the key and the rule."""
    if not isinstance(eff, dict):
        raise ValueError(f"{label}: {where}: missing; expected a table of {', '.join(_KEYS)}")
    for k in _KEYS:
        v = eff.get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{label}: {where} {k} = {v!r}: expected a number")
        if k == "overhead_s" and v < 0:
            raise ValueError(f"{label}: {where} {k} = {v!r}: must be >= 0")
        if k != "overhead_s" and not 0 < v <= 1:
            raise ValueError(f"{label}: {where} {k} = {v!r}: must be in (0, 1], a share of the datasheet peak")
    for k in _OPTIONAL:  # absent: the roofline's default (see _OPTIONAL)
        v = eff.get(k)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{label}: {where} {k} = {v!r}: expected a number")
        if not (0 <= v <= 1 if k == "overlap" else 0 < v <= 1):
            raise ValueError(f"{label}: {where} {k} = {v!r}: must be in {'[0, 1]' if k == 'overlap' else '(0, 1]'}, "
                             "a share")


def engine_efficiencies(engine: str, gpu: str, path: str | Path | None = None) -> tuple[dict[str, float], str]:
    """(efficiencies, where they come from) of ``engine`` on catalog GPU ``gpu``: its own fit, or the
    engine-wide fallback when the engine has no rows on that GPU; from the shipped profiles, or the
    user's file at ``path``. Raises ValueError for an unknown engine or an unusable file."""
    data = engine_profiles(path)
    if engine not in data:
        raise ValueError(f"engine = {engine!r}: no engine profile; known: {', '.join(sorted(data))} "
                         f"({where_from(path)})")
    e = data[engine]
    own = e.get("gpus", {}).get(gpu)
    if own is not None:
        where = f"fitted on {own['rows']} {gpu} rows"
    else:
        own, where = e["fallback"], f"no {gpu} rows: the engine-wide fallback over {', '.join(sorted(e.get('gpus', {})))}"
    out = {k: float(own[k]) for k in _KEYS}
    for k in _OPTIONAL:  # one a GPU's rows could not fit (no MoE model, no TP > 1): the engine-wide fallback's
        v = own.get(k, e["fallback"].get(k))
        if v is not None:
            out[k] = float(v)
    return out, where


@dataclass(frozen=True)
class EngineRoofline(RooflineProfile):
    """The roofline at a serving engine's fitted efficiencies: provenance ``derived-from-measured``,
    family ``engine``, its source naming the engine, the data file and the held-out errors (``detail``,
    written when the profile is built by :func:`engine_roofline`, so the file is not read again)."""

    engine: str = ""
    detail: str = ""

    @property
    def provenance(self) -> Provenance:
        p = super().provenance
        return Provenance(kind="derived-from-measured", family="engine", engine=self.engine,
                          source=f"engine profile {self.engine} ({self.detail}); {p.source}",
                          assumptions={**p.assumptions, "engine": self.engine})


def engine_roofline(base: RooflineProfile, engine: str, where: str, path: str | Path | None = None) -> EngineRoofline:
    """``base`` (the datasheet roofline of a configuration at the efficiencies :func:`engine_efficiencies`
    gave, with its ``where``) labelled as ``engine``'s profile, from the shipped profiles or the user's
    file at ``path``."""
    e = engine_profiles(path)[engine]
    folds = "; ".join(f for f in e.get("folds", []) if "pooled" in f) or "not cross-validated"
    detail = (f"{where}; {e.get('source', 'source not stated')}; fitted {e.get('fitted', '(date not stated)')}; "
              f"{where_from(path)}; held-out throughput error {folds}")
    return EngineRoofline(**{f.name: getattr(base, f.name) for f in fields(base)}, engine=engine, detail=detail)
