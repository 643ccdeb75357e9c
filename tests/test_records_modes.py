"""The ``records`` modes keep less, never compute differently: ``summary`` gives the very summary
of ``full``; ``stream`` writes the same iteration rows to Parquet chunk by chunk as the run goes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sim
from sim.core import iteration_log
from tests.helpers import assert_one_line_error, run_app
from tests.test_decode_runs import ALL


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 64 rows, so that every scenario seals and streams many of them."""
    monkeypatch.setattr(iteration_log, "CHUNK_ROWS", 64)


def _sorted(t: pa.Table) -> pa.Table:
    return t.sort_by([("start_s", "ascending"), ("replica", "ascending")])


def _same(a: pa.Table, b: pa.Table) -> None:
    """Equal schemas and values, NaN equal to NaN (Table.equals says NaN != NaN)."""
    assert a.schema == b.schema
    for name in a.column_names:
        np.testing.assert_array_equal(a.column(name).to_numpy(), b.column(name).to_numpy(), err_msg=name)


@pytest.mark.parametrize("name", ["explicit_three_replicas_preempting", "static_with_horizon",
                                  "roofline_tp2_sessions_priorities_horizon", "measured_a100_chunked_preempting"])
def test_summary_and_stream_modes_agree_with_full(name: str, tmp_path: Path, small_chunks: None) -> None:
    s = sim.load_scenario(copy.deepcopy(ALL[name]))
    full = sim.simulate(s)
    summary = sim.simulate(s, records="summary")
    assert summary.summary == full.summary
    assert summary.requests is None and summary.iterations is None and summary.timeline is None

    streamed = sim.simulate(s, records="stream", stream_to=tmp_path / "run")
    assert streamed.summary == full.summary
    assert streamed.iterations is None and streamed.streamed == tmp_path / "run" / "iterations.parquet"
    on_disk = pq.read_table(streamed.streamed)
    assert pq.ParquetFile(streamed.streamed).metadata.num_row_groups > 1  # written in chunks
    _same(_sorted(on_disk), full.iterations)
    _same(streamed.requests, full.requests)
    _same(streamed.timeline, full.timeline)
    # Each replica's rows are in time order within the streamed file.
    rep, start = on_disk.column("replica").to_numpy(), on_disk.column("start_s").to_numpy()
    for k in np.unique(rep):
        assert (np.diff(start[rep == k]) > 0).all()

    # write() puts the streamed file beside the others, or copies it to another directory.
    for out in (tmp_path / "run", tmp_path / "elsewhere"):
        streamed.write(out)
        assert sorted(p.name for p in out.iterdir()) == sorted(
            ["requests.parquet", "iterations.parquet", "timeline.parquet", "summary.json", "scenario.yaml"])
        _same(pq.read_table(out / "iterations.parquet"), on_disk)
    summary.write(tmp_path / "only")
    assert sorted(p.name for p in (tmp_path / "only").iterdir()) == ["scenario.yaml", "summary.json"]


def test_a_failed_streaming_run_leaves_no_half_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sim.core.plans import Planner

    def boom(self: Planner, *a: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Planner, "_commit_run", boom)
    with pytest.raises(RuntimeError, match="boom"):
        sim.simulate(sim.load_scenario(copy.deepcopy(ALL["explicit_one_replica"])), records="stream",
                     stream_to=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_bad_records_mode_is_one_line() -> None:
    s = sim.load_scenario(copy.deepcopy(ALL["explicit_one_replica"]))
    with pytest.raises(ValueError, match="records = 'all': must be one of full, stream, summary"):
        sim.simulate(s, records="all")
    with pytest.raises(ValueError, match="needs a directory"):
        sim.simulate(s, records="stream")


def test_cli_records_option(tmp_path: Path) -> None:
    args = ("run", "-q", "--set", "workload.duration_s=40", "--set", "measurement.warmup_s=5")
    r = run_app(*args, "--records", "summary", "-o", tmp_path / "s")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["scenario.yaml", "summary.json"]
    r = run_app(*args, "--records", "stream", "-o", tmp_path / "t")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "t" / "iterations.parquet").exists()
    full = run_app(*args, "-o", tmp_path / "f")
    assert full.exit_code == 0, full.output
    a, b = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("s", "f"))
    assert a == b
    assert_one_line_error(run_app("run", "--records", "nope"), "--records 'nope': must be one of full, stream, summary")
    assert_one_line_error(run_app("run", "--records", "stream", "--no-write"), "cannot go with --no-write")
