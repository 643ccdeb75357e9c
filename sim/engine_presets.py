"""Serving-engine presets: what vLLM, SGLang and TensorRT-LLM do by default, by name and version.

The values, and where each was read in the engine's own sources, are data
(``sim/data/engines.toml``), loaded and checked once: every preset sets every engine key a preset
must set, exactly one of the two memory keys, and cites a source for each.
:class:`sim.config.EngineSpec` expands ``engine: {preset: NAME}`` with them, under the keys given
beside it, and validates the result as any engine section.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError, \
    model_validator

from sim.errors import format_validation_error

__all__ = ["MEMORY_KEYS", "PRESET_KEYS", "EnginePreset", "engine_presets", "preset_names", "resolve_preset"]

# The engine keys every preset sets, and the two memory keys of which it sets exactly one (they are
# two ways of sizing the KV cache: a share of all GPU memory, or of what the weights leave free).
PRESET_KEYS = ("scheduler", "chunked_prefill", "max_num_seqs", "max_num_batched_tokens", "block_size", "admission")
MEMORY_KEYS = ("gpu_memory_fraction", "kv_memory_fraction")

_DATA = "data/engines.toml"


class EnginePreset(BaseModel):
    """One engine's defaults at one version, with the source of each."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    engine: StrictStr  # the engine's name as its makers write it
    version: StrictStr  # the release the values were read at
    aliases: tuple[StrictStr, ...] = ()  # other names the preset answers to (a benchmark CSV's engine cell)
    note: StrictStr  # what the values assume (the hardware some depend on) and where capsim approximates
    settings: dict[str, StrictBool | StrictInt | StrictFloat | StrictStr]  # engine keys under capsim's names
    sources: dict[str, StrictStr]  # engine key -> where its value was read

    @model_validator(mode="after")
    def _complete(self) -> EnginePreset:
        missing = [k for k in PRESET_KEYS if k not in self.settings]
        memory = [k for k in MEMORY_KEYS if k in self.settings]
        unknown = [k for k in self.settings if k not in PRESET_KEYS + MEMORY_KEYS]
        if missing or unknown or len(memory) != 1:
            raise ValueError(f"settings must give {', '.join(PRESET_KEYS)} and one of {' or '.join(MEMORY_KEYS)}: "
                             f"missing {missing}, unknown {unknown}, memory keys {memory}")
        unsourced = sorted(k for k in self.settings if not self.sources.get(k, "").strip())
        stray = sorted(set(self.sources) - set(self.settings))
        if unsourced or stray:
            raise ValueError(f"sources must cite every setting and nothing else: uncited {unsourced}, stray {stray}")
        return self


@cache
def engine_presets() -> dict[str, EnginePreset]:
    """The presets by name, read from the package data once (a malformed file is a packaging error,
    reported with the preset and the rule it breaks)."""
    raw: dict[str, Any] = tomllib.loads(resources.files("sim").joinpath(_DATA).read_text())
    out = {}
    for name, entry in raw.items():
        try:
            out[name] = EnginePreset.model_validate(entry)
        except ValidationError as e:
            raise ValueError(f"sim/{_DATA}: preset {name!r}: {format_validation_error(e, EnginePreset)}") from None
    return out


@cache
def _aliases() -> dict[str, str]:
    """Alias -> preset name; an alias that is a preset's name, or another preset's alias too, is a
    packaging error (a name must mean one preset)."""
    presets = engine_presets()
    out: dict[str, str] = {}
    for name, p in presets.items():
        for alias in p.aliases:
            if alias in presets or alias in out:
                raise ValueError(f"sim/{_DATA}: preset {name!r}: alias {alias!r} already names a preset")
            out[alias] = name
    return out


def resolve_preset(name: str) -> str | None:
    """The preset ``name`` means (itself, or the preset it is an alias of), or None if none."""
    if name in engine_presets():
        return name
    return _aliases().get(name)


def preset_names() -> list[str]:
    """Every name a preset answers to (names and aliases), sorted: for "known: ..." in errors."""
    return sorted([*engine_presets(), *_aliases()])
