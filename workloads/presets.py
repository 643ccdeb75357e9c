"""Named workloads fitted to real traces, as numbers in code (they work offline, on a fresh machine).

Each preset is the plain-data form of a :class:`workloads.WorkloadSpec` (without a stop rule),
fitted by ``capsim workload fit`` to the trace it is named after; its docstring-like ``source``
says which trace and what the fit reproduced. Use one as ``workload: {preset: NAME, num_requests: N}``
and override any key (e.g. ``arrival: {process: poisson, rate_per_s: 5.5}`` keeps the preset's lengths).
"""

from __future__ import annotations

import copy
import difflib
from typing import Any

__all__ = ["PRESETS", "preset_data"]

# name -> {"source": provenance text, "workload": WorkloadSpec data without num_requests/duration_s}
PRESETS: dict[str, dict[str, Any]] = {}


def preset_data(name: str) -> dict[str, Any]:
    """A fresh copy of the named preset's workload data; ValueError naming close matches if unknown."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=3)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise ValueError(f"unknown preset {name!r}{hint}; known: {', '.join(sorted(PRESETS)) or 'none'}")
    return copy.deepcopy(PRESETS[name]["workload"])
