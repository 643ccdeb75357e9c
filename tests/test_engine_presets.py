"""Engine presets (``engine: {preset: NAME}``, sim/data/engines.toml): each is complete, cited and
valid; keys beside it override it one by one; no preset leaves today's defaults; the KV memory
fraction of TensorRT-LLM sizes the cache from what weights and activations leave; the summary says
which preset ran; and docs/engine.md's table shows the data's values."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import sim
from calibration import ReplicaSpec
from calibration.spec import roofline_of
from sim.config import EngineSpec
from sim.engine_presets import MEMORY_KEYS, PRESET_KEYS, EnginePreset, engine_presets

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted(engine_presets())
_WORKLOAD = {"arrival": {"rate_per_s": 4.0}, "num_requests": 40,
             "classes": [{"name": "chat", "prompt_tokens": {"dist": "uniform", "low": 100, "high": 3000},
                          "output_tokens": {"dist": "uniform", "low": 10, "high": 300}}]}


def _scenario(**engine: Any) -> sim.Scenario:
    return sim.load_scenario({"engine": engine, "workload": _WORKLOAD})


def test_the_three_engines_are_there_with_versions():
    assert {"vllm-0.8", "sglang-0.4", "tensorrt-llm-0.17"} <= set(PRESETS)
    assert {engine_presets()[p].engine for p in PRESETS} >= {"vLLM", "SGLang", "TensorRT-LLM"}


@pytest.mark.parametrize("name", PRESETS)
def test_a_preset_sets_every_engine_key_cites_each_and_runs(name: str):
    p = engine_presets()[name]
    assert set(PRESET_KEYS) <= set(p.settings) and len(set(MEMORY_KEYS) & set(p.settings)) == 1
    assert set(p.sources) == set(p.settings) and all(len(v) > 40 for v in p.sources.values())
    s = _scenario(preset=name)
    for key, value in p.settings.items():
        assert getattr(s.engine, key) == value, key
    assert s.engine.preset == name
    res = sim.simulate(s)
    assert res.summary["engine"] == {"preset": name, "scheduler": s.engine.scheduler, "admission": s.engine.admission}
    assert res.summary["requests"]["completed"] == 40
    # The written scenario repeats the run: the preset and every value it set, nothing contradictory.
    assert sim.load_scenario(s.to_dict()) == s


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("key, value", [("scheduler", "prefill_first"), ("chunked_prefill", False),
                                        ("max_num_seqs", 96), ("max_num_batched_tokens", 4096), ("block_size", 8),
                                        ("admission", "reserve"), ("admission", "recompute")])
def test_every_key_beside_a_preset_overrides_it(name: str, key: str, value: Any):
    s = _scenario(preset=name, **{key: value})
    assert getattr(s.engine, key) == value
    for other, preset_value in engine_presets()[name].settings.items():
        if other != key and not (key == "scheduler" and other == "chunked_prefill"):
            assert getattr(s.engine, other) == preset_value, other
    if key == "scheduler":  # a preset's chunked prefill applies under continuous only
        assert s.engine.chunked_prefill is None and not s.engine.chunked


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("memory", [{"gpu_memory_fraction": 0.8}, {"kv_memory_fraction": 0.8}])
def test_a_memory_key_beside_a_preset_replaces_the_presets(name: str, memory: dict[str, float]):
    e = _scenario(preset=name, **memory).engine
    (given, value), = memory.items()
    assert getattr(e, given) == value
    assert [getattr(e, k) for k in MEMORY_KEYS if k != given] == [None]


def test_no_preset_keeps_todays_engine():
    e = EngineSpec()
    assert (e.preset, e.scheduler, e.chunked, e.max_num_seqs, e.max_num_batched_tokens, e.block_size,
            e.memory_fraction, e.kv_memory_fraction, e.admission) == (
        None, "continuous", True, 256, 8192, 16, 0.9, None, "recompute")
    s = sim.default_scenario()
    assert s.replica_spec == ReplicaSpec(tp=1, gpu_memory_fraction=0.9, max_num_batched_tokens=8192)
    summary = sim.simulate(sim.load_scenario({"workload": {**_WORKLOAD, "num_requests": 5}})).summary
    assert summary["engine"] == {"preset": "none", "scheduler": "continuous", "admission": "recompute"}


def test_kv_memory_fraction_is_a_share_of_what_weights_and_activations_leave():
    # TensorRT-LLM's free_gpu_memory_fraction: the KV cache takes f of the memory free once the engine
    # is loaded; vLLM's gpu_memory_utilization caps everything at f of the whole GPU.
    trt, vllm = _scenario(kv_memory_fraction=0.9), _scenario(gpu_memory_fraction=0.9)
    profile = roofline_of(trt.build_profile())
    mb = trt.engine.max_num_batched_tokens
    free = profile.gpu.memory_bytes - profile.weight_bytes_per_gpu - profile.activation_reserve_bytes(mb)
    assert trt.replica_spec == ReplicaSpec(tp=1, gpu_memory_fraction=1.0, max_num_batched_tokens=mb,
                                           kv_memory_fraction=0.9)
    assert trt.kv_capacity_tokens == int(0.9 * free // profile.kv_bytes_per_token_per_gpu) // 16 * 16
    assert vllm.kv_capacity_tokens == int((free - 0.1 * profile.gpu.memory_bytes)
                                          // profile.kv_bytes_per_token_per_gpu) // 16 * 16
    assert trt.kv_capacity_tokens > vllm.kv_capacity_tokens  # 10% of the rest, not of the whole GPU
    # An explicit profile states its capacity: neither fraction changes it.
    explicit = {"kind": "explicit", "fixed_s": 0.01, "kv_capacity_tokens": 4096}
    assert sim.load_scenario({"profile": explicit, "engine": {"kv_memory_fraction": 0.5},
                              "workload": _WORKLOAD}).kv_capacity_tokens == 4096


def test_a_model_that_does_not_fit_names_the_memory_key_in_use():
    big = {"model": "llama-3.1-70b", "quantization": "bf16", "workload": _WORKLOAD}
    with pytest.raises(sim.ScenarioError, match=r"does not fit.*but the GPU holds 79\.6 GiB.*int4-awq\)$"):
        sim.load_scenario({**big, "engine": {"kv_memory_fraction": 0.9}})
    with pytest.raises(sim.ScenarioError,
                       match=r"engine\.gpu_memory_fraction = 0\.9 of 79\.6 GiB.*or raise gpu_memory_fraction$"):
        sim.load_scenario(big)


def test_a_malformed_preset_is_refused_with_what_is_missing():
    good = engine_presets()["vllm-0.8"].model_dump()
    uncited = {**good, "sources": {k: v for k, v in good["sources"].items() if k != "block_size"}}
    with pytest.raises(ValueError, match=r"uncited \['block_size'\]"):
        EnginePreset.model_validate(uncited)
    both = {**good, "settings": {**good["settings"], "kv_memory_fraction": 0.9},
            "sources": {**good["sources"], "kv_memory_fraction": "x"}}
    with pytest.raises(ValueError, match=r"one of gpu_memory_fraction or kv_memory_fraction.*memory keys \["):
        EnginePreset.model_validate(both)


def test_an_alias_names_its_preset():
    from sim.engine_presets import resolve_preset

    assert resolve_preset("tensorrt-llm-0.14-triton") == "tensorrt-llm-0.14" and resolve_preset("nope") is None
    aliased, named = _scenario(preset="tensorrt-llm-0.14-triton"), _scenario(preset="tensorrt-llm-0.14")
    assert aliased.engine.model_dump(exclude={"preset"}) == named.engine.model_dump(exclude={"preset"})
    assert named.engine.block_size == 64 and named.engine.admission == "reserve"


def test_the_docs_table_shows_each_presets_values():
    text = (ROOT / "docs" / "engine.md").read_text()
    for name in PRESETS:
        row = re.search(rf"^\| `{re.escape(name)}` \|(.*)$", text, re.M)
        assert row, f"docs/engine.md: no table row for {name}"
        cells = [c.strip().strip("`") for c in row.group(1).split("|")]
        for value in engine_presets()[name].settings.values():
            shown = str(value).lower() if isinstance(value, bool) else str(value)
            assert shown in cells, f"{name}: {value!r} not in {cells}"
