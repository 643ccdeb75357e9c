"""The workload spec's own rules: presets merged under user keys, a workload read from a file,
and the combinations a workload refuses (each with one line naming the key and the rule)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

import sim
from sim import load_scenario
from workloads import GammaArrivals, PoissonArrivals, WorkloadSpec, generate
from workloads import presets

LENGTHS = {"prompt_tokens": {"dist": "fixed", "value": 100}, "output_tokens": {"dist": "fixed", "value": 10}}


@pytest.fixture
def toy_preset(monkeypatch):
    """A preset registered for the test only, so these rules do not depend on the fitted numbers."""
    monkeypatch.setitem(presets.PRESETS, "toy-2026", {
        "source": "test",
        "workload": {"arrival": {"process": "gamma", "rate_per_s": 4.0, "cv": 3.0},
                     "classes": [{"name": "chat", **LENGTHS, "slo": {"ttft_s": 1.0}}]},
    })
    return "toy-2026"


def test_preset_fills_what_the_user_leaves_out(toy_preset):
    w = WorkloadSpec.model_validate({"preset": toy_preset, "num_requests": 50})
    assert isinstance(w.arrival, GammaArrivals) and w.arrival.cv == 3.0
    assert w.classes[0].name == "chat" and w.classes[0].slo.ttft_s == 1.0
    assert w.preset == toy_preset


def test_user_keys_override_a_preset_key_by_key(toy_preset):
    w = WorkloadSpec.model_validate({"preset": toy_preset, "num_requests": 50, "arrival": {"rate_per_s": 9.0}})
    assert isinstance(w.arrival, GammaArrivals) and (w.arrival.rate_per_s, w.arrival.cv) == (9.0, 3.0)


def test_another_process_replaces_the_preset_arrival_whole(toy_preset):
    # The preset's gamma 'cv' must not leak into a Poisson arrival (it would be an unknown key).
    w = WorkloadSpec.model_validate({"preset": toy_preset, "num_requests": 50,
                                     "arrival": {"process": "poisson", "rate_per_s": 5.5}})
    assert isinstance(w.arrival, PoissonArrivals) and w.arrival.rate_per_s == 5.5
    assert w.classes[0].name == "chat"  # lengths kept


def test_preset_round_trips_through_to_dict(toy_preset):
    s = load_scenario({"workload": {"preset": toy_preset, "num_requests": 50}})
    assert load_scenario(s.to_dict()) == s


def test_unknown_preset_is_one_line_with_a_close_match(toy_preset):
    with pytest.raises(sim.ScenarioError, match=r"unknown preset 'toy-2025'.*did you mean 'toy-2026'"):
        load_scenario({"workload": {"preset": "toy-2025", "num_requests": 5}})


def test_workload_file_is_read_relative_to_the_scenario(tmp_path):
    (tmp_path / "wl").mkdir()
    (tmp_path / "wl" / "chat.yaml").write_text(yaml.safe_dump(
        {"arrival": {"rate_per_s": 2.0}, "num_requests": 20, "classes": [{"name": "a", **LENGTHS}]}))
    (tmp_path / "sc.yaml").write_text("workload: wl/chat.yaml\n")
    s = load_scenario(tmp_path / "sc.yaml")
    assert s.workload.num_requests == 20 and s.workload.classes[0].name == "a"
    # What is written next to results holds the workload itself, not the file name.
    assert isinstance(s.to_dict()["workload"], dict)


def test_missing_workload_file_is_one_line(tmp_path):
    (tmp_path / "sc.yaml").write_text("workload: nope.yaml\n")
    with pytest.raises(sim.ScenarioError, match=r"workload = 'nope.yaml': .*nope.yaml: no such workload file"):
        load_scenario(tmp_path / "sc.yaml")


@pytest.mark.parametrize("workload, match", [
    ({"arrival": {"process": "closed_loop", "users": 4}, "duration_s": 60.0, "classes": [{"name": "a", **LENGTHS}]},
     r"closed loop needs num_requests"),
    ({"arrival": {"rate_per_s": 1.0}, "num_requests": 5, "classes": [{"name": "a"}]},
     r"classes\[0\] \('a'\) needs prompt_tokens and output_tokens"),
    ({"arrival": {"process": "gamma", "rate_per_s": 1.0}, "num_requests": 5, "classes": [{"name": "a", **LENGTHS}]},
     r"workload\.arrival\.cv: required key is missing"),
    ({"arrival": {"process": "gama", "rate_per_s": 1.0}, "num_requests": 5, "classes": [{"name": "a", **LENGTHS}]},
     r"workload\.arrival\.process = 'gama': must be one of .*did you mean 'gamma'"),
    ({"arrival": {"rate_per_s": 1.0, "rate_profile": {"shape": "ramp", "from_rate_per_s": 0, "to_rate_per_s": 2,
                                                       "over_s": 10}},
      "num_requests": 5, "classes": [{"name": "a", **LENGTHS}]},
     r"give exactly one of rate_per_s or rate_profile"),
    ({"arrival": {"process": "trace", "path": "x.csv", "speedup": 2, "rate_per_s": 3}, "num_requests": 5},
     r"give at most one of speedup or rate_per_s"),
    ({"arrival": {"process": "trace", "path": "x.csv"}, "num_requests": 5,
      "classes": [{"name": "a", **LENGTHS, "sessions": {"turns": {"dist": "fixed", "value": 2}}}]},
     r"sessions or a system prompt.*lengths = 'classes'"),
])
def test_refused_combinations(workload, match):
    with pytest.raises(sim.ScenarioError, match=match):
        load_scenario({"workload": workload})


def test_trace_replay_needs_no_classes(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00.0000000,10,5\n"
                 "2023-11-16 18:00:02.0000000,20,6\n2023-11-16 18:00:03.0000000,30,7\n")
    s = load_scenario({"workload": {"arrival": {"process": "trace", "path": str(f), "speedup": 2.0},
                                    "num_requests": 3}})
    t = generate(s.workload, 0, s.max_context)
    assert t.column("arrival_s").to_pylist() == [0.0, 1.0, 1.5]
    assert t.column("prompt_tokens").to_pylist() == [10, 20, 30] and t.column("class").to_pylist() == ["trace"] * 3
    r = sim.simulate(s)
    assert r.summary["requests"]["completed"] == 3


# Every kind of workload the library makes, run through the engine: each request ends exactly once.
_KINDS = {
    "weibull_diurnal": {"arrival": {"process": "weibull", "cv": 2.0, "rate_profile": {
        "shape": "diurnal", "mean_rate_per_s": 20.0, "peak_to_trough": 3.0, "period_s": 20.0}}},
    "mmpp": {"arrival": {"process": "mmpp", "states": [{"rate_per_s": 5.0, "mean_duration_s": 3.0},
                                                       {"rate_per_s": 60.0, "mean_duration_s": 0.5}]}},
    "gamma_steps": {"arrival": {"process": "gamma", "cv": 4.0, "rate_profile": {
        "shape": "steps", "times_s": [0, 5, 10], "rates_per_s": [5.0, 40.0, 10.0]}}},
    "closed_loop_sessions": {"arrival": {"process": "closed_loop", "users": 8, "think_time": {"mean_s": 0.2}},
                             "classes": [{"name": "chat", **LENGTHS, "sessions": {
                                 "turns": {"dist": "uniform", "low": 1, "high": 4}, "think_time": {"mean_s": 0.5}},
                                 "system_prompt": {"tokens": {"dist": "fixed", "value": 64}, "variants": 3,
                                                   "popularity": "zipf"}}]},
    "open_loop_sessions_mixture": {"arrival": {"rate_per_s": 10.0}, "classes": [
        {"name": "chat", **LENGTHS, "share": 3, "sessions": {"turns": {"dist": "exponential", "mean": 2.0, "max": 6}}},
        {"name": "batch", "priority": 1, "prompt_tokens": {"dist": "normal", "mean": 300, "std": 50},
         "output_tokens": {"dist": "empirical", "values": [5, 50, 500], "weights": [1, 2, 1]},
         "length_correlation": 0.5}]},
}


@pytest.mark.parametrize("kind", [*_KINDS, *sorted(presets.PRESETS)])
def test_engine_serves_every_kind_of_workload(kind):
    workload = {"preset": kind} if kind in presets.PRESETS else {"classes": [{"name": "a", **LENGTHS}], **_KINDS[kind]}
    s = load_scenario({"profile": {"kind": "explicit", "fixed_s": 0.01, "per_token_s": 1e-5,
                                   "kv_capacity_tokens": 1 << 20},
                       "workload": {**workload, "num_requests": 300}})
    r = sim.simulate(s)
    req = r.summary["requests"]
    assert req["arrived"] == 300 and req["completed"] + req["rejected"] == 300, req
    arrival = r.requests.column("arrival_s").to_numpy()
    assert not np.isnan(arrival).any()
