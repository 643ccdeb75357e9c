"""Sweeps (sim/analysis/sweep_spec.py, sim/analysis/sweep.py, capsim sweep): designs expand as
specified and deterministically; a point's seed and result do not depend on order or worker
count; impossible points are reported up front or fail alone; a sweep killed with SIGKILL at
random moments resumes to the same dataset without running a finished point twice; bad specs
are one line and exit 2; the output reads as one pyarrow dataset. Points are tiny (60 requests,
roofline profile) so that the file stays near a minute on a busy 2-core machine."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import yaml

from sim.analysis.executor import InlineExecutor, local_executor
from sim.analysis.sweep import read_summaries, run_sweep, sweep
from sim.analysis.sweep_spec import Range, SweepSpecError, load_sweep_spec
from tests.helpers import run_app

ROOT = Path(__file__).resolve().parents[1]
BASE = {
    "profile": {"kind": "roofline"},
    "workload": {"arrival": {"process": "poisson", "rate_per_s": 8.0}, "num_requests": 60,
                 "classes": [{"name": "chat", "prompt_tokens": {"dist": "lognormal", "mean": 300, "p99": 1200, "max": 2000},
                              "output_tokens": {"dist": "lognormal", "mean": 40, "p99": 150, "max": 300}}]},
}
SIX = {"base": BASE, "axes": {"hardware": ["h100-sxm", "l40s"], "workload.arrival.rate_per_s": [4.0, 8.0, 16.0]},
       "seed": 7}


def _by_id(table: pa.Table) -> dict[str, dict]:
    return {r["point_id"]: r for r in table.to_pylist()}


def _finish_times(out: Path) -> dict[str, str]:
    """Each finished point's finish time, from its summary's own metadata (what the manifest is rebuilt from)."""
    times = {}
    for f in (out / "points").glob("point_id=*/summary.parquet"):
        meta = json.loads(pq.read_schema(f).metadata[b"capsim.sweep.point"])
        times[meta["point_id"]] = meta["finished_at"]
    return times


# -- the spec ------------------------------------------------------------------------------------


def test_grid_zip_exclude_and_repeats_expand_as_specified():
    spec = load_sweep_spec({"base": BASE, "axes": {"hardware": ["h100-sxm", "l40s"], "tp": [1, 2],
                                                   "replicas": [1, 2], "workload.arrival.rate_per_s": [4, 8]},
                            "zip": [["tp", "replicas"]], "exclude": [{"tp": 2, "hardware": "l40s"}], "repeats": 2})
    points, excluded = spec.points()
    combos = [tuple(p.params.values()) for p in points if p.repeat == 0]
    # tp and replicas move together: 2 hardware x 2 (tp, replicas) x 2 rates = 8, less the 2 with tp 2 on l40s
    assert combos == [("h100-sxm", 1, 1, 4), ("h100-sxm", 1, 1, 8), ("h100-sxm", 2, 2, 4), ("h100-sxm", 2, 2, 8),
                      ("l40s", 1, 1, 4), ("l40s", 1, 1, 8)]
    assert excluded == 2 and len(points) == 12 and {p.repeat for p in points} == {0, 1}
    assert len({p.id for p in points}) == 12 and len({p.seed for p in points}) == 12


@pytest.mark.parametrize("design", ["random", "latin_hypercube"])
def test_random_designs_are_deterministic_for_a_seed_and_stay_in_range(design):
    raw = {"base": BASE, "design": design, "samples": 8, "seed": 3,
           "axes": {"engine.max_num_seqs": {"low": 16, "high": 64}, "workload.arrival.rate_per_s": {"low": 2.0, "high": 9.0},
                    "hardware": ["h100-sxm", "l40s"]}}
    a, b = load_sweep_spec(raw).points()[0], load_sweep_spec(raw).points()[0]
    assert [(p.id, p.params, p.seed) for p in a] == [(p.id, p.params, p.seed) for p in b]
    other = load_sweep_spec({**raw, "seed": 4}).points()[0]
    assert [p.params for p in other] != [p.params for p in a]
    assert len(a) == 8 and isinstance(load_sweep_spec(raw).axes["engine.max_num_seqs"], Range)
    for p in a:
        seqs, rate = p.params["engine.max_num_seqs"], p.params["workload.arrival.rate_per_s"]
        assert isinstance(seqs, int) and 16 <= seqs <= 64 and 2.0 <= rate < 9.0
    if design == "latin_hypercube":  # one sample in each eighth of every range
        rates = sorted(p.params["workload.arrival.rate_per_s"] for p in a)
        assert [int((r - 2.0) / 7.0 * 8) for r in rates] == list(range(8))


def test_a_points_id_and_seed_do_not_depend_on_the_order_of_the_axes_values():
    spec = load_sweep_spec(SIX)
    flipped = load_sweep_spec({**SIX, "axes": {k: list(reversed(v)) for k, v in SIX["axes"].items()}})
    seeds = {p.id: p.seed for p in spec.points()[0]}
    assert {p.id: p.seed for p in flipped.points()[0]} == seeds
    assert [p.id for p in flipped.points()[0]] != list(seeds)  # the same points, in another order


# -- running -------------------------------------------------------------------------------------


def test_one_and_two_workers_give_identical_summaries_point_for_point(tmp_path):
    one = sweep(SIX, tmp_path / "one", executor=InlineExecutor())
    with local_executor(2) as ex:
        two = sweep(SIX, tmp_path / "two", executor=ex)
    assert one.num_rows == 6 and one.equals(two)
    # the dataset reads as one table, with the partition's point_id, and agrees with what sweep returned
    table = ds.dataset(tmp_path / "two" / "points", partitioning="hive").to_table()
    assert table.num_rows == 6 and table.schema.field("point_id").type == pa.string()
    assert _by_id(table) == _by_id(two)
    row = _by_id(two)[next(iter(_by_id(two)))]
    assert {"hardware", "workload.arrival.rate_per_s", "seed", "repeat", "latency_s.ttft.p99",
            "throughput.output_tokens_per_s", "requests.completed"} <= set(row)
    manifest = pq.read_table(tmp_path / "two" / "manifest.parquet").to_pylist()
    assert [m["status"] for m in manifest] == ["ok"] * 6 and all(m["wall_s"] > 0 for m in manifest)


def test_points_with_different_columns_read_as_one_dataset_losing_none(tmp_path):
    """A class named differently per point, and two profile kinds whose assumptions differ: each
    point's file has columns the others lack. pyarrow.dataset takes its schema from one file, so
    before the summaries were given one schema the other class's columns were dropped."""
    spec = {"base": BASE, "axes": {"workload.classes.0.name": ["chat", "code"],
                                   "profile": [{"kind": "roofline"}, {"kind": "auto"}]}}
    returned = sweep(spec, tmp_path / "out", executor=InlineExecutor())
    table = ds.dataset(tmp_path / "out" / "points", partitioning="hive").to_table()
    assert table.num_rows == 4 and set(returned.column_names) == set(table.column_names)
    rows = _by_id(table)
    for pid, row in _by_id(returned).items():
        assert rows[pid] == row
        mine = row["workload.classes.0.name"]
        other = {"chat": "code", "code": "chat"}[mine]
        assert row[f"per_class.{mine}.completed"] == 60 and row[f"per_class.{other}.completed"] is None
        assert row["profile.kind"] in ("derived", "derived-from-measured") and row["profile.source"]
    assert {r["profile.kind"] for r in rows.values()} == {"derived", "derived-from-measured"}
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_parquet(tmp_path / "out" / "points")
    assert len(frame) == 4 and {"per_class.chat.completed", "per_class.code.completed"} <= set(frame.columns)
    # the metadata that proves each point finished survives the rewrite: a re-run runs nothing
    assert run_sweep(spec, tmp_path / "out", executor=InlineExecutor()).ran == 0


def test_impossible_points_are_reported_up_front_or_fail_alone(tmp_path):
    spec = {"base": BASE, "axes": {"model": ["llama-3.1-8b", "llama-3.1-70b"],
                                   "workload.arrival": [{"process": "poisson", "rate_per_s": 8.0},
                                                        {"process": "trace", "path": str(tmp_path / "missing.csv")}]}}
    lines: list[str] = []
    run = run_sweep(spec, tmp_path / "out", executor=InlineExecutor(), notify=lines.append)
    manifest = {(json.loads(m["params"])["model"], json.loads(m["params"])["workload.arrival"]["process"]): m
                for m in run.manifest.to_pylist()}
    assert run.ok == 1 and run.failed == 1 and run.invalid == 2 and run.table.num_rows == 1
    assert manifest[("llama-3.1-8b", "poisson")]["status"] == "ok"
    failed = manifest[("llama-3.1-8b", "trace")]
    assert failed["status"] == "failed" and "missing.csv" in failed["error"] and "\n" not in failed["error"]
    for process in ("poisson", "trace"):  # 70B in bf16 does not fit one H100: never run, the validator's words
        m = manifest[("llama-3.1-70b", process)]
        assert m["status"] == "invalid" and "does not fit" in m["error"] and m["wall_s"] is None
    assert sum(line.startswith("invalid ") for line in lines) == 2


def test_resume_runs_only_the_missing_points_and_ends_with_the_same_dataset(tmp_path):
    out = tmp_path / "out"
    first = sweep(SIX, out, executor=InlineExecutor())
    times = _finish_times(out)
    gone = sorted(times)[:2]
    for pid in gone:
        for f in (out / "points" / f"point_id={pid}").iterdir():
            f.unlink()
    again = run_sweep(SIX, out, executor=InlineExecutor())
    assert (again.ran, again.skipped) == (2, 4)
    assert again.table.equals(first)
    after = _finish_times(out)
    assert all(after[p] == times[p] for p in times if p not in gone)  # the others were not run again
    assert all(after[p] > times[p] for p in gone)
    manifest = {m["point_id"]: m for m in again.manifest.to_pylist()}
    assert all(manifest[p]["finished_at"].isoformat() == after[p] for p in after)


def test_records_full_writes_request_and_iteration_datasets_beside_the_summaries(tmp_path):
    spec = {**SIX, "axes": {"hardware": ["h100-sxm", "l40s"]}}
    table = sweep(spec, tmp_path / "out", executor=InlineExecutor(), records="full")
    reqs = ds.dataset(tmp_path / "out" / "requests", partitioning="hive").to_table()
    iters = ds.dataset(tmp_path / "out" / "iterations", partitioning="hive").to_table()
    assert table.num_rows == 2 and reqs.num_rows == 120
    assert set(reqs.column("point_id").to_pylist()) == set(table.column("point_id").to_pylist())
    assert iters.num_rows == sum(table.column("iterations").to_pylist())
    # the summaries' dataset holds summaries only
    assert ds.dataset(tmp_path / "out" / "points", partitioning="hive").to_table().num_rows == 2


def test_a_directory_of_another_sweep_is_refused(tmp_path):
    sweep({**SIX, "axes": {"hardware": ["h100-sxm"]}}, tmp_path / "out", executor=InlineExecutor())
    from sim.analysis.sweep import SweepError

    with pytest.raises(SweepError, match=r"another seed"):
        sweep({**SIX, "axes": {"hardware": ["h100-sxm"]}, "seed": 8}, tmp_path / "out", executor=InlineExecutor())


# -- killed and resumed ----------------------------------------------------------------------------


def test_a_sweep_killed_at_random_moments_resumes_to_the_same_dataset_without_rerunning_a_point(tmp_path):
    spec = {**SIX, "axes": {**SIX["axes"], "engine.max_num_seqs": [32, 128]}}  # 12 points
    spec["base"] = {**BASE, "workload": {**BASE["workload"], "num_requests": 400}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))  # the axes in their order: the columns follow it
    reference = sweep(spec, tmp_path / "reference", executor=InlineExecutor())
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "sim.cli", "sweep", str(path), "-o", str(out), "--workers", "2", "-q"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(21)
    seen: dict[str, str] = {}
    kills = partial = 0
    while kills < 5:
        # A random moment: once a random number of further points has finished (0 for the first kill:
        # during start-up or the first points), then a random few milliseconds more.
        target = 0 if kills == 0 else min(len(seen) + rng.randint(1, 4), 11)
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and len(_finish_times(out) if (out / "points").is_dir() else {}) < target \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.05) if target else rng.uniform(0.3, 1.5))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        # every file a reader would take as a result is whole; a finished point keeps its first finish time
        if (out / "points").is_dir():
            assert ds.dataset(out / "points", partitioning="hive").to_table().num_rows == len(_finish_times(out))
        now = _finish_times(out)
        assert all(now[p] == t for p, t in seen.items()), "a finished point ran again"
        seen = now
        partial += 0 < len(seen) < 12
        if len(seen) == 12:  # it finished before the kill: start over, so that every kill lands mid-sweep
            for d in (out / "points").iterdir():
                for f in d.iterdir():
                    f.unlink()
            seen = {}
    assert partial >= 3, partial  # most kills landed between finished points
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    final = _finish_times(out)
    assert all(final[p] == t for p, t in seen.items())
    assert read_summaries(out, list(_by_id(reference))).equals(reference)
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    assert [m["status"] for m in manifest] == ["ok"] * 12
    assert {m["point_id"]: m["finished_at"].isoformat() for m in manifest} == final


# -- bad specs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, pattern", [
    ({"axes": {"engine.max_num_seq": [8, 16]}}, r"axes\.engine\.max_num_seq: not a field.*did you mean 'max_num_seqs'"),
    ({"axes": {"tp": []}}, r"axes\.tp = \[\]: an axis needs at least one value"),
    ({"axes": {"tp": [1]}, "design": "sobol"}, r"design = 'sobol': must be one of grid"),
    ({"axes": {"tp": [1]}, "design": "random"}, r"samples = None: design random needs samples"),
    ({"axes": {"tp": {"low": 1, "high": 8}}}, r"axes\.tp: a range \{low, high\} needs design random"),
    ({"axes": {"tp": [1, 2], "replicas": [1]}, "zip": [["tp", "replicas"]]}, r"zip\[0\]: zipped axes need lists"),
    ({"axes": {"tp": [1]}, "exclude": [{"hardware": "l40s"}]}, r"exclude\[0\]\.hardware: not an axis"),
    ({"axes": {"tp": [1]}, "repeat": 2}, r"repeat: unknown key"),
])
def test_bad_specs_are_one_line_and_exit_2(tmp_path, spec, pattern):
    with pytest.raises(SweepSpecError, match=pattern):
        load_sweep_spec(spec)
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(spec))
    res = run_app("sweep", str(f), "-o", str(tmp_path / "out"), "-q")
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("capsim: error: "), res.stderr
    assert not (tmp_path / "out").exists()


def test_cli_runs_a_sweep_and_prints_its_table(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({**SIX, "axes": {"hardware": ["h100-sxm", "l40s"]}}))
    res = run_app("sweep", str(f), "-o", str(tmp_path / "out"), "--workers", "1")
    assert res.exit_code == 0, res.output
    assert "ran ok" in res.stdout and "points/min" in res.stdout
    assert pq.read_table(tmp_path / "out" / "manifest.parquet").num_rows == 2
