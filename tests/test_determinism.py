"""Same scenario and seed, same bytes: results never depend on the wall clock, on hashing, on
progress reporting or on what ran before in the same process."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

import sim

FILES = ("requests.parquet", "iterations.parquet", "timeline.parquet", "summary.json", "scenario.yaml")


def _explicit(kv_tokens: int) -> dict[str, Any]:
    return {"kind": "explicit", "fixed_s": 0.004, "per_token_s": 2e-5, "decode_attention_s": 1e-8,
            "kv_capacity_tokens": kv_tokens}


def _classes(*priorities: int) -> list[dict[str, Any]]:
    return [{"name": f"c{p}", "priority": p, "share": 1.0 + p,
             "prompt_tokens": {"dist": "uniform", "low": 16, "high": 600},
             "output_tokens": {"dist": "lognormal", "mean": 60, "p99": 300, "max": 400},
             "slo": {"ttft_s": 0.5, "tpot_s": 0.05}} for p in priorities]


# name -> (scenario dict, expect preemptions)
SCENARIOS: dict[str, tuple[dict[str, Any], bool]] = {
    "explicit_one_replica": ({
        "seed": 7, "profile": _explicit(1 << 16),
        "workload": {"arrival": {"rate_per_s": 30.0}, "num_requests": 300, "classes": _classes(0)},
    }, False),
    "explicit_three_replicas_preempting": ({
        "seed": 7, "replicas": 3, "profile": _explicit(1024),
        "engine": {"max_num_seqs": 32, "max_num_batched_tokens": 512, "block_size": 16},
        "router": {"policy": "round_robin"},
        "workload": {"arrival": {"rate_per_s": 60.0}, "num_requests": 400, "classes": _classes(0, 1)},
    }, True),
    "prefill_first_central_queue_preempting": ({
        "seed": 11, "replicas": 2, "profile": _explicit(1024),
        "engine": {"scheduler": "prefill_first", "max_num_seqs": 16, "max_num_batched_tokens": 1024, "block_size": 8},
        "router": {"max_outstanding_per_replica": 12},
        "workload": {"arrival": {"rate_per_s": 40.0}, "num_requests": 300, "classes": _classes(0, 2)},
        "measurement": {"warmup_s": 1.0},
    }, True),
    "static_with_horizon": ({
        "seed": 3, "replicas": 2, "profile": _explicit(4096),
        "engine": {"scheduler": "static", "max_num_seqs": 8, "max_num_batched_tokens": 2048},
        "workload": {"arrival": {"rate_per_s": 40.0}, "num_requests": 300, "classes": _classes(0)},
        "measurement": {"horizon_s": 4.0},
    }, False),
    "roofline_default_profile": ({
        "seed": 5, "replicas": 2,
        "workload": {"arrival": {"rate_per_s": 25.0}, "num_requests": 250,
                     "classes": [{"name": "chat", "prompt_tokens": {"dist": "lognormal", "mean": 800, "p99": 4000, "max": 8192},
                                  "output_tokens": {"dist": "lognormal", "mean": 150, "p99": 600, "max": 1024}}]},
    }, False),
}


def _scenario(name: str, **top: Any) -> sim.Scenario:
    data = copy.deepcopy(SCENARIOS[name][0])
    data.update(top)
    return sim.load_scenario(data)


def _bytes(out: Path) -> dict[str, bytes]:
    return {f: (out / f).read_bytes() for f in FILES}


def _ipc(table: pa.Table) -> bytes:
    """A table's exact bytes (Table.equals treats NaN as unequal to itself, so it will not do)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def _same_result(a: sim.SimResult, b: sim.SimResult) -> None:
    for name in ("requests", "iterations", "timeline"):
        assert _ipc(getattr(a, name)) == _ipc(getattr(b, name)), name
    assert a.summary == b.summary


@pytest.mark.parametrize("name", SCENARIOS)
def test_same_seed_writes_byte_identical_files(name: str, tmp_path: Path) -> None:
    s = _scenario(name)
    first = sim.simulate(s)
    second = sim.simulate(s)
    a, b = _bytes(first.write(tmp_path / "a")), _bytes(second.write(tmp_path / "b"))
    for f in FILES:
        assert a[f] == b[f], f"{f} differs between two runs of {name}"
    req = first.summary["requests"]
    # The scenario exercises what it claims to.
    assert req["completed"] > 0
    if SCENARIOS[name][1]:
        assert req["preemptions"] > 0, req
    if s.replicas > 1:
        assert len(set(first.requests.column("replica").drop_null().to_pylist())) == s.replicas
    if s.measurement.horizon_s is not None:
        assert req["in_flight"] > 0, req


@pytest.mark.parametrize("name", ["explicit_three_replicas_preempting", "roofline_default_profile"])
def test_different_seed_gives_different_requests(name: str, tmp_path: Path) -> None:
    a = sim.simulate(_scenario(name, seed=1)).write(tmp_path / "a")
    b = sim.simulate(_scenario(name, seed=2)).write(tmp_path / "b")
    assert (a / "requests.parquet").read_bytes() != (b / "requests.parquet").read_bytes()
    assert (a / "iterations.parquet").read_bytes() != (b / "iterations.parquet").read_bytes()


@pytest.mark.parametrize("name", SCENARIOS)
def test_progress_callback_changes_nothing(name: str) -> None:
    s = _scenario(name)
    calls: list[tuple[int, int]] = []
    quiet = sim.simulate(s)
    loud = sim.simulate(s, progress=lambda done, total: calls.append((done, total)))
    _same_result(quiet, loud)
    assert calls, "progress was never reported"
    n = quiet.summary["requests"]["arrived"] + quiet.summary["requests"]["not_arrived"]
    assert all(total == n for _, total in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls), "finished count went backwards"
    if s.measurement.horizon_s is None:
        assert calls[-1] == (n, n)


def test_runs_do_not_leak_state_into_each_other() -> None:
    # Routers, RNG streams and ids are per run: A, then B, then A again gives the first A.
    a1 = sim.simulate(_scenario("explicit_three_replicas_preempting"))
    sim.simulate(_scenario("prefill_first_central_queue_preempting"))
    a2 = sim.simulate(_scenario("explicit_three_replicas_preempting"))
    _same_result(a1, a2)


def test_given_request_table_matches_generated_one() -> None:
    from workloads import generate

    s = _scenario("explicit_three_replicas_preempting")
    table = generate(s.workload, s.seed, s.max_context)
    _same_result(sim.simulate(s), sim.simulate(s, requests=table))


def test_cli_in_another_process_writes_the_same_bytes(tmp_path: Path) -> None:
    # A fresh interpreter with a different hash seed: nothing may depend on set or dict-of-str order.
    name = "explicit_three_replicas_preempting"
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(SCENARIOS[name][0]))
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    proc = subprocess.run([sys.executable, "-m", "sim.cli.app", "run", str(path), "-o", str(tmp_path / "cli"), "-q"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    here = _bytes(sim.simulate(sim.load_scenario(path)).write(tmp_path / "here"))
    there = _bytes(tmp_path / "cli")
    for f in FILES:
        assert here[f] == there[f], f
