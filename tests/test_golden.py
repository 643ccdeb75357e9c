"""Results stay what they were: fingerprints of the requests, iterations and timeline tables and
of the summary of 14 varied scenarios, committed in ``tests/golden/engine.json``, recomputed and
compared value for value (relative 1e-9: a last-bit difference of a vectorised libm between
machines is not a change of results; anything a refactoring could do is).

A change that is meant to change results regenerates the file and says why in its commit:

    CAPSIM_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py

A fingerprint of a column is its count, null count, sum, index-weighted sum (so order counts),
minimum and maximum; of the summary, every number in it by its path.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import sim
from tests.test_decode_runs import ALL, _CHAT

GOLDEN = Path(__file__).parent / "golden" / "engine.json"

# Beyond the decode-runs scenarios: bursty and time-varying arrivals, static and prefill-first
# baselines without chunking, a trace preset's lengths, fp8 KV, and the default scenario itself.
MORE: dict[str, dict[str, Any]] = {
    "mmpp_gamma_lengths": {
        "seed": 11, "profile": {"kind": "roofline"}, "replicas": 2,
        "workload": {"arrival": {"process": "mmpp", "states": [{"rate_per_s": 2.0, "mean_duration_s": 5.0},
                                                               {"rate_per_s": 15.0, "mean_duration_s": 2.0}]},
                     "num_requests": 250, "classes": [_CHAT]},
    },
    "diurnal_unchunked_kv_fp8": {
        "seed": 12, "kv_cache_dtype": "fp8", "engine": {"chunked_prefill": False, "max_num_batched_tokens": 16384},
        "cost": {"window_s": 20.0},
        "workload": {"arrival": {"rate_profile": {"shape": "diurnal", "mean_rate_per_s": 8.0, "peak_to_trough": 5.0,
                                                  "period_s": 120.0}},
                     "duration_s": 120.0, "classes": [_CHAT]},
    },
    "preset_trace_lengths": {
        "seed": 13, "hardware": "a100-80gb", "profile": {"kind": "auto"},
        "workload": {"preset": "azure-conv-2023", "arrival": {"process": "poisson", "rate_per_s": 5.0},
                     "num_requests": 400},
    },
    "default": None,  # the embedded default scenario, as it is
}


def _scenario(name: str) -> sim.Scenario:
    if name == "default":
        return sim.default_scenario()
    data = MORE.get(name) or ALL[name]
    return sim.load_scenario(copy.deepcopy(data))


NAMES = [*ALL, *MORE]


def _column(col: pa.ChunkedArray) -> list[Any]:
    """count, nulls, sum, index-weighted sum, min, max of a column (strings: of their lengths)."""
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_dictionary(col.type):
        col = pa.chunked_array([pa.compute.utf8_length(c.cast(pa.string())) for c in col.chunks], pa.int32())
    x = col.to_numpy(zero_copy_only=False).astype(np.float64)
    valid = ~np.isnan(x)
    v = x[valid]
    idx = np.flatnonzero(valid).astype(np.float64)
    return [int(x.size), int((~valid).sum()), float(v.sum()) if v.size else 0.0,
            float(np.dot(v, idx)) if v.size else 0.0, float(v.min()) if v.size else None,
            float(v.max()) if v.size else None]


def _numbers(node: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _numbers(v, f"{path}.{k}" if path else str(k), out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _numbers(v, f"{path}[{i}]", out)
    elif isinstance(node, (bool, int, float)) or node is None:
        out[path] = node
    # strings (notes, sources, rules) are text, not results


def fingerprint(result: sim.SimResult) -> dict[str, Any]:
    """What the golden file holds for one run."""
    out: dict[str, Any] = {}
    for name in ("requests", "iterations", "timeline"):
        table = getattr(result, name)
        out[name] = {c: _column(table.column(c)) for c in table.column_names}
    summary: dict[str, Any] = {}
    _numbers(result.summary, "", summary)
    out["summary"] = summary
    return out


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a == b
    return bool(np.isclose(a, b, rtol=1e-9, atol=1e-12))


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    if os.environ.get("CAPSIM_UPDATE_GOLDEN"):
        data = {n: fingerprint(sim.simulate(_scenario(n))) for n in NAMES}
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("name", NAMES)
def test_results_are_unchanged(name: str, golden: dict[str, Any]) -> None:
    assert name in golden, f"{name}: no fingerprint in {GOLDEN.name}: regenerate it (see the module docstring)"
    now = fingerprint(sim.simulate(_scenario(name)))
    was = golden[name]
    for part in ("requests", "iterations", "timeline"):
        assert set(now[part]) == set(was[part]), f"{name} {part}: columns {sorted(now[part])} vs {sorted(was[part])}"
        for col, fp in was[part].items():
            assert _close(now[part][col], fp), f"{name} {part}.{col}: {now[part][col]} vs golden {fp}"
    assert set(now["summary"]) == set(was["summary"]), (
        f"{name} summary keys: added {sorted(set(now['summary']) - set(was['summary']))[:5]}, "
        f"gone {sorted(set(was['summary']) - set(now['summary']))[:5]}")
    bad = [k for k, v in was["summary"].items() if not _close(now["summary"][k], v)]
    assert not bad, f"{name} summary: {[(k, now['summary'][k], was['summary'][k]) for k in bad[:5]]}"
