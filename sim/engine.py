"""The engine's entry point: ``simulate`` is the whole run.

Draw the request table (or check one given), refuse requests that can never be served (counted,
never dropped), run the SimPy run of :mod:`sim.core.run` until every request is done or the horizon
is reached, and hand what it leaves to :mod:`sim.results.records` and :mod:`sim.results.metrics`.
Above the core and the results, which never import each other's way back (``pyproject.toml``).
"""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from sim.config import Scenario
from sim.core.run import ProgressFn, Run, pred_rows
from sim.core.state import REJECT_REASONS
from sim.errors import ScenarioError
from sim.results.records import RecordSink, SimResult, build_result
from workloads import OPTIONAL_COLUMNS, REQUEST_SCHEMA, generate

__all__ = ["REJECT_REASONS", "simulate"]


def _without_gc(fn: Callable[..., float], *args: object) -> float:
    """``fn(*args)`` with Python's cyclic garbage collector paused. The engine allocates millions
    of small containers (event tuples, iteration rows) that form no reference cycles, and the
    collector's passes over them cost about 5% of a run's wall time; it resumes afterwards."""
    was = gc.isenabled()
    gc.disable()
    try:
        return fn(*args)
    finally:
        if was:
            gc.enable()


def _checked(table: pa.Table) -> pa.Table:
    """A user-supplied RequestTable, completed with default optional columns, cast to the schema
    and checked, or a one-line ValueError."""
    required = [f.name for f in REQUEST_SCHEMA if f.name not in OPTIONAL_COLUMNS]
    missing = [name for name in required if name not in table.column_names]
    if missing:
        raise ValueError(f"request table lacks column(s) {', '.join(missing)}; needs {', '.join(required)} "
                         f"(optional: {', '.join(OPTIONAL_COLUMNS)})")
    for name, default in OPTIONAL_COLUMNS.items():
        if name not in table.column_names:
            table = table.append_column(name, pa.array(np.full(table.num_rows, default)))
    table = table.select(REQUEST_SCHEMA.names).cast(REQUEST_SCHEMA)
    for name in REQUEST_SCHEMA.names:
        if name != "arrival_s" and table.column(name).null_count:
            raise ValueError(f"request table column {name!r} has {table.column(name).null_count} null value(s)")
    ids = table.column("request_id").to_numpy()
    if np.unique(ids).size != ids.size:
        raise ValueError("request table column 'request_id' has duplicate ids: ids must be unique")
    after = table.column("after_id").to_numpy()
    arrival = table.column("arrival_s").to_numpy(zero_copy_only=False)
    follows = after >= 0
    unknown = follows & ~np.isin(after, ids)
    if unknown.any():
        k = int(np.argmax(unknown))
        raise ValueError(f"request table row {k}: after_id = {after[k]} names no request_id in the table")
    if follows.any() and not np.isnan(arrival[follows]).all():
        k = int(np.argmax(follows & ~np.isnan(arrival)))
        raise ValueError(f"request table row {k}: arrival_s = {arrival[k]:g} with after_id = {after[k]}: a request that "
                         "follows another is released by the engine, so its arrival_s must be empty (NaN)")
    timed = arrival[~follows]
    if timed.size and (not np.isfinite(timed).all() or timed.min() < 0):
        raise ValueError("request table column 'arrival_s' must be finite and >= 0 (empty only where after_id is set)")
    think = table.column("think_s").to_numpy()
    if think.size and (not np.isfinite(think).all() or think.min() < 0):
        raise ValueError("request table column 'think_s' must be finite and >= 0")
    if follows.any():
        # Every chain of after_ids must end at a request with an arrival time, or part of the
        # table would never arrive: follow pointers by doubling (log n vectorised steps).
        pred = pred_rows(table)
        nxt = np.where(pred >= 0, pred, np.arange(pred.size))
        for _ in range(int(np.ceil(np.log2(max(pred.size, 2)))) + 1):
            nxt = nxt[nxt]
        stuck = pred[nxt] >= 0
        if stuck.any():
            raise ValueError(f"request table row {int(np.argmax(stuck))}: its chain of after_id never reaches a request "
                             "with an arrival time (a cycle): it would never arrive")
    for name in ("prompt_tokens", "output_tokens"):
        low = table.column(name).to_numpy().min() if table.num_rows else 1
        if low < 1:
            raise ValueError(f"request table column {name!r} has value {low}: token counts must be >= 1")
    return table


def simulate(scenario: Scenario, *, requests: pa.Table | None = None,
             progress: ProgressFn | None = None, decode_runs: bool = True, records: str = "full",
             stream_to: str | os.PathLike | None = None) -> SimResult:
    """Simulate ``scenario`` and return its records and summary.

    ``requests`` replaces the scenario's generated workload with a RequestTable of your own
    (columns as in :data:`workloads.REQUEST_SCHEMA`; the optional ones may be left out). ``progress`` is
    called now and then with (requests finished, requests in all). ``records`` says what the run
    keeps (:mod:`sim.results.records`): ``"full"`` tables in memory, ``"stream"`` iteration rows written to
    ``stream_to``/iterations.parquet as the run goes, ``"summary"`` the summary alone (exact, the
    same numbers). ``decode_runs=False`` steps every iteration on its own instead of advancing runs
    of decode-only iterations at once: the same results, slower (the reference the fast path is
    tested against).
    """
    wall = time.perf_counter()
    sink = RecordSink(records, scenario.replicas, Path(stream_to) if stream_to is not None else None)
    try:
        if requests is None:
            try:
                table = generate(scenario.workload, scenario.seed, scenario.max_context)
            except ValueError as e:  # a trace file that cannot be read, a rate profile that runs dry
                raise ScenarioError(f"workload: {e}") from None
        else:
            table = _checked(requests)
        run = Run(scenario, table, decode_runs, sink.for_replica)
        end = _without_gc(run.run, progress)
        return build_result(scenario, table, run.reqs, run.reject, run.engines, run.profile, end,
                            time.perf_counter() - wall, sink)
    except BaseException:
        sink.abort()
        raise
