"""The typed summary (sim/results/summary.py) says exactly what a run's summary holds: the summaries of
varied runs (explicit, roofline and shipped measured profiles, one and several classes, a horizon that leaves work
unfinished, owned hardware, rejections, an engine preset, a waste with a reference) have exactly the keys the
TypedDicts declare, recursively, and values of the declared types; summary.json is that dict."""

from __future__ import annotations

import json
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

import pytest

from sim import simulate
from sim.results.summary import Summary, Waste
from sim.results.waste import WasteReference, waste_of
from sim import load_scenario
from tests.helpers import _merge

_CLASSES = [
    {"name": "chat", "share": 3, "prompt_tokens": {"dist": "uniform", "low": 50, "high": 400},
     "output_tokens": {"dist": "exponential", "mean": 40, "max": 200}, "slo": {"ttft_s": 0.5, "tpot_s": 0.05}},
    {"name": "batch", "priority": 1, "prompt_tokens": {"dist": "fixed", "value": 1000},
     "output_tokens": {"dist": "fixed", "value": 1}, "slo": {"e2e_s": 30.0}},
    {"name": "silent", "share": 0.01, "prompt_tokens": {"dist": "fixed", "value": 10},
     "output_tokens": {"dist": "fixed", "value": 10}},
]
_ROOFLINE = {"kind": "roofline"}
_FAST = {"kind": "explicit", "fixed_s": 0.01, "per_token_s": 1e-5, "kv_capacity_tokens": 20_000}

# A constant 1 s step (explicit profile) and ten 1-token requests, for the runs to vary.
_BASE: dict[str, Any] = {
    "profile": {"kind": "explicit", "fixed_s": 1.0, "kv_capacity_tokens": 1 << 20},
    "workload": {"arrival": {"rate_per_s": 1.0}, "num_requests": 10,
                 "classes": [{"name": "x", "prompt_tokens": {"dist": "fixed", "value": 1},
                              "output_tokens": {"dist": "fixed", "value": 1}}]},
}
# name -> overrides of _BASE (mappings merge key by key; a profile replaces the base's whole).
RUNS: dict[str, dict[str, Any]] = {
    "explicit-one-class": {},
    "roofline-several-classes": {
        "profile": _ROOFLINE, "replicas": 2,
        "workload": {"arrival": {"rate_per_s": 6.0}, "num_requests": 150, "classes": _CLASSES},
        "measurement": {"warmup_s": 2.0}, "cost": {"window_s": 5.0}},
    "shipped-measured-profile": {
        "profile": {"kind": "auto"},
        "workload": {"arrival": {"process": "gamma", "cv": 2.0, "rate_per_s": 5.0}, "num_requests": 60,
                     "classes": _CLASSES[:1]}},
    "horizon-leaves-work": {
        "profile": _FAST,
        "workload": {"arrival": {"rate_per_s": 200.0}, "num_requests": 400, "classes": _CLASSES},
        "measurement": {"horizon_s": 1.0}},
    "owned-with-rejections": {
        "profile": _ROOFLINE, "engine": {"scheduler": "prefill_first", "max_num_batched_tokens": 512},
        "cost": {"model": "owned", "purchase_usd_per_gpu": 25_000.0, "usd_per_kwh": 0.1},
        "workload": {"arrival": {"rate_per_s": 2.0}, "num_requests": 30,
                     "classes": [{"name": "x", "prompt_tokens": {"dist": "uniform", "low": 100, "high": 900},
                                  "output_tokens": {"dist": "fixed", "value": 20}}]}},
    "engine-preset-reserving": {"engine": {"preset": "tensorrt-llm-0.17"}},
    "nothing-arrives-before-horizon": {
        "workload": {"arrival": {"rate_per_s": 0.01}}, "measurement": {"horizon_s": 1e-3}},
}


def scenario(**overrides: Any):
    """_BASE with ``overrides``."""
    data = _merge(_BASE, {k: v for k, v in overrides.items() if k != "profile"})
    return load_scenario({**data, "profile": overrides.get("profile", _BASE["profile"])})


def type_errors(value: Any, tp: Any, path: str = "summary") -> list[str]:
    """Where ``value`` is not of type ``tp``: a TypedDict must have exactly its declared keys
    (every one is required here), each of its type; unions, literals, lists and dicts are looked
    into. Strict: a bool is not an int, and an int is not a float (``summary.json`` would write
    ``1`` where the type promises ``1.0``)."""
    if tp is Any:
        return []
    if tp is None or tp is type(None):
        return [] if value is None else [f"{path}: {value!r} is not None"]
    if is_typeddict(tp):
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__} is not a dict ({tp.__name__})"]
        hints = get_type_hints(tp)
        errors = []
        if set(tp.__required_keys__) != set(hints):
            errors.append(f"{path}: {tp.__name__} declares optional keys; the summary's keys always exist")
        if set(value) != set(hints):
            errors.append(f"{path}: keys {sorted(set(value) - set(hints))} not in {tp.__name__}, "
                          f"{sorted(set(hints) - set(value))} missing")
        for key in hints.keys() & value.keys():
            errors += type_errors(value[key], hints[key], f"{path}.{key}")
        return errors
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        tried = [type_errors(value, a, path) for a in args]
        return [] if any(not e for e in tried) else [f"{path}: {value!r} matches none of {tp}: {tried}"]
    if origin is Literal:
        return [] if value in args and not isinstance(value, bool) else [f"{path}: {value!r} not one of {args}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__} is not a list"]
        return [e for i, v in enumerate(value) for e in type_errors(v, args[0], f"{path}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__} is not a dict"]
        return [e for k, v in value.items()
                for e in type_errors(k, args[0], f"{path} key {k!r}") + type_errors(v, args[1], f"{path}[{k!r}]")]
    if tp in (int, float, str, bool):
        ok = type(value) is tp  # exact: bool is an int subclass, and int is no float here
        return [] if ok else [f"{path}: {value!r} ({type(value).__name__}) is not {tp.__name__}"]
    raise TypeError(f"{path}: the checker does not know type {tp!r}")


@pytest.fixture(scope="module", params=sorted(RUNS))
def run(request):
    return request.param, simulate(scenario(**RUNS[request.param]))


def test_the_summary_has_exactly_the_declared_keys_and_types(run):
    name, result = run
    assert type_errors(result.summary, Summary) == [], name


def test_the_runs_cover_both_shapes_of_optional_blocks(run):
    # The varied runs are varied where the types have alternatives: a None in one run, a value in another.
    name, result = run
    sm = result.summary
    seen = {
        "explicit-one-class": lambda: sm["utilisation"]["mfu"] is None and sm["cost"]["model"] == "cloud"
        and sm["engine"]["preset"] == "none",
        "engine-preset-reserving": lambda: sm["engine"] == {"preset": "tensorrt-llm-0.17", "scheduler": "continuous",
                                                            "admission": "reserve"},
        "roofline-several-classes": lambda: sm["utilisation"]["mfu"] is not None and len(sm["per_class"]) == 3
        and len(sm["windows"]["start_s"]) > 1,
        "shipped-measured-profile": lambda: sm["profile"]["kind"] == "derived-from-measured",
        "horizon-leaves-work": lambda: sm["requests"]["in_flight"] > 0 and sm["requests"]["not_arrived"] > 0,
        "owned-with-rejections": lambda: sm["cost"]["model"] == "owned" and sm["requests"]["rejected"] > 0,
        "nothing-arrives-before-horizon": lambda: sm["latency_s"]["ttft"]["mean"] is None
        and sm["slo_attainment"] is None,
    }
    assert seen[name](), name


def test_summary_json_is_the_summary_unchanged(run, tmp_path):
    _, result = run
    result.write(tmp_path)
    text = (tmp_path / "summary.json").read_text()
    assert text == json.dumps(result.summary, indent=2) + "\n"
    assert json.loads(text) == result.summary


def test_a_waste_with_a_reference_has_the_declared_type():
    result = simulate(scenario(**RUNS["roofline-several-classes"]))
    waste = waste_of(result.summary, result.scenario, WasteReference(rate_per_s=2.0, output_tokens_per_s=300.0,
                                                                      source="a test"))
    assert waste["reference"] is not None and waste["gpu_s"]["over_provisioned"] is not None
    assert type_errors(waste, Waste, "waste") == []


def test_the_checker_catches_a_missing_key_a_stray_key_and_a_wrong_type():
    sm = simulate(scenario()).summary
    bad = {**sm, "latency_s": {**sm["latency_s"], "ttft": {**sm["latency_s"]["ttft"], "p50": "fast"}},
           "extra": 1}
    del bad["seed"]
    errors = type_errors(bad, Summary)
    assert any("'extra'" in e and "'seed'" in e for e in errors), errors
    assert any(e.startswith("summary.latency_s.ttft.p50:") for e in errors), errors
    assert type_errors({**sm, "iterations": float(sm["iterations"])}, Summary)
    assert type_errors({**sm, "load": {**sm["load"], "overloaded": 0}}, Summary)
