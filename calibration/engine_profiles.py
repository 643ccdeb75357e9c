"""Serving-engine profiles: the datasheet roofline at an engine's fitted efficiencies.

``data/engine_profiles.toml`` holds, per engine (named as its preset in ``sim/data/engines.toml``),
the compute efficiency, memory efficiency and per-iteration overhead fitted to that engine's
published benchmark rows on each GPU, and an engine-wide fallback for GPUs it has no rows for
(written by ``python -m sim.fitting.engine_fit``, which says how). Because they are shares of the
GPU's datasheet figures, they apply to any (model, quantization, GPU, TP) the catalog can
express: ``profile: {kind: auto, engine: NAME}`` selects them for every configuration alike, so a
comparison across GPUs or models never mixes profile families.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from calibration.profile import Provenance
from calibration.roofline import RooflineProfile

__all__ = ["EngineRoofline", "engine_efficiencies", "engine_profiles"]

_DATA = "data/engine_profiles.toml"
_KEYS = ("compute_efficiency", "memory_efficiency", "overhead_s")


@cache
def engine_profiles() -> dict[str, dict[str, Any]]:
    """The engine profiles by engine name, read from the package data once."""
    return tomllib.loads(resources.files("calibration").joinpath(_DATA).read_text())


def engine_efficiencies(engine: str, gpu: str) -> tuple[dict[str, float], str]:
    """(efficiencies, where they come from) of ``engine`` on catalog GPU ``gpu``: its own fit, or the
    engine-wide fallback when the engine has no rows on that GPU. Raises ValueError for an unknown engine."""
    data = engine_profiles()
    if engine not in data:
        raise ValueError(f"engine = {engine!r}: no engine profile; known: {', '.join(sorted(data))} "
                         f"(calibration/{_DATA})")
    e = data[engine]
    own = e.get("gpus", {}).get(gpu)
    if own is not None:
        where = f"fitted on {own['rows']} {gpu} rows"
    else:
        own, where = e["fallback"], f"no {gpu} rows: the engine-wide fallback over {', '.join(sorted(e['gpus']))}"
    return {k: float(own[k]) for k in _KEYS}, where


@dataclass(frozen=True)
class EngineRoofline(RooflineProfile):
    """The roofline at a serving engine's fitted efficiencies: provenance ``derived-from-measured``,
    family ``engine``, its source naming the engine, the data file and the held-out errors."""

    engine: str = ""
    where: str = ""

    @property
    def provenance(self) -> Provenance:
        p = super().provenance
        e = engine_profiles()[self.engine]
        folds = "; ".join(f for f in e.get("folds", []) if "pooled" in f)
        return Provenance(kind="derived-from-measured", family="engine", engine=self.engine,
                          source=f"engine profile {self.engine} ({self.where}; {e['source']}; fitted {e['fitted']}; "
                                 f"calibration/{_DATA}; held-out throughput error {folds}); {p.source}",
                          assumptions={**p.assumptions, "engine": self.engine})
