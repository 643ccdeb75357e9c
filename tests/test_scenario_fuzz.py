"""Fuzz: no scenario a user could write makes capsim raise anything but its one-line
:class:`sim.ScenarioError` (which the CLI prints as ``capsim: error: ...`` with exit code 2).

Hypothesis edits valid scenarios at random (a value replaced by one of another type or an
extreme, a key dropped, an unknown key added) and feeds random bytes as a scenario file.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim
from sim.config import scenario_data

_BASES: list[dict[str, Any]] = [
    {"profile": {"kind": "explicit", "fixed_s": 0.01, "per_token_s": 1e-5, "kv_capacity_tokens": 4096},
     "engine": {"max_num_seqs": 16, "max_num_batched_tokens": 512, "block_size": 16},
     "router": {"policy": "round_robin"},
     "measurement": {"warmup_s": 1.0, "horizon_s": 100.0},
     "workload": {"arrival": {"process": "poisson", "rate_per_s": 10.0}, "num_requests": 20,
                  "classes": [{"name": "chat", "share": 1.0, "slo": {"ttft_s": 1.0},
                               "prompt_tokens": {"dist": "lognormal", "mean": 100, "p99": 400, "max": 1000},
                               "output_tokens": {"dist": "uniform", "low": 1, "high": 50}}]}},
    {"model": "llama-3.1-8b", "hardware": "a100-80gb", "quantization": "fp8", "tp": 2, "replicas": 2,
     "profile": {"kind": "roofline", "compute_efficiency": 0.5, "hbm_tb_s": 2.0},
     "workload": {"arrival": {"process": "gamma", "rate_per_s": 5.0, "cv": 2.0}, "duration_s": 30.0,
                  "classes": [{"name": "a", "prompt_tokens": {"dist": "fixed", "value": 64},
                               "output_tokens": {"dist": "exponential", "mean": 20, "max": 200}}]}},
]

_ODD = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 10**12, 10**15]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, 1e308, -1e308, math.inf, math.nan, 0.5]),
    st.text(max_size=12), st.sampled_from(["", "20", "true", "null", "1e9", "\x00", "ü"]),
    st.lists(st.integers(min_value=-3, max_value=3), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(min_value=-3, max_value=3), max_size=2),
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value in nested dicts and lists."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    data = copy.deepcopy(draw(st.sampled_from(_BASES)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        parent = data
        for p in path[:-1]:
            parent = parent[p]
        action = draw(st.sampled_from(["replace", "replace", "drop", "add"]))
        if action == "replace" or isinstance(parent, list):
            parent[path[-1]] = draw(_ODD)
        elif action == "drop":
            del parent[path[-1]]
        else:
            parent[draw(st.text(min_size=1, max_size=8))] = draw(_ODD)
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_any_edited_scenario_validates_or_gives_a_scenario_error(data: dict[str, Any]) -> None:
    try:
        scenario = sim.load_scenario(data)
    except sim.ScenarioError as e:
        text = str(e)
        assert text and "\n" not in text, repr(text)
        assert "Traceback" not in text
        return
    assert isinstance(scenario, sim.Scenario)
    # What validated is what runs: the profile builds and the KV cache holds a block.
    assert scenario.kv_capacity_tokens >= scenario.engine.block_size


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200), st.sampled_from([".yaml", ".toml", ".yml"]))
def test_any_bytes_as_a_scenario_file_read_or_give_a_scenario_error(tmp_path: Path, raw: bytes, suffix: str) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(raw)
    try:
        data = scenario_data(path)
    except sim.ScenarioError as e:
        assert "\n" not in str(e), repr(str(e))
        return
    assert isinstance(data, dict)
    with pytest.raises(sim.ScenarioError):  # a random mapping is never a whole scenario with a workload
        if "workload" in data:
            raise sim.ScenarioError("has a workload key: validated elsewhere")
        sim.load_scenario(path)
