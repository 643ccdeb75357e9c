"""Sweeps: every point of a sweep spec simulated on an executor, each into its own Parquet
partition, resumable after a kill at any moment.

The output directory (docs/sweeps.md)::

    DIR/sweep.json                                   the spec as run (base scenario, axes, design, seed)
    DIR/manifest.parquet                             one row per point: id, parameters (JSON), seed,
                                                     status ok|failed|invalid, wall_s, error, finished_at
    DIR/points/point_id=<id>/summary.parquet         one row: the point's parameters and summary numbers
    DIR/requests/point_id=<id>/part.parquet          records="full": the point's per-request table
    DIR/iterations/point_id=<id>/part.parquet        records="full": its per-iteration table

``pyarrow.dataset.dataset(DIR / "points", partitioning="hive")`` reads every summary as one table
(and the same for ``requests`` and ``iterations``): at the end of a run every summary is given
the same columns (:func:`_unify_partitions`; a class or a profile kind that exists in some points
only leaves nulls in the others), because a dataset takes its schema from one file.
:func:`read_summaries` reads them in a given order, unifying as it goes (for a sweep still running).

*Why this survives SIGKILL at any moment.* Every file is written whole (:func:`write_whole`: a
temporary name starting with a dot, which dataset readers skip, then ``os.replace``). A point's
``summary.parquet`` is written last, after its records, and it is the proof that the point
finished: it carries the point's manifest row (parameters, seed, wall time, finish time) in its
schema metadata. ``manifest.parquet`` is an index, rewritten after each finished point and
rebuilt at the start of every run from the summaries present, so a kill between a summary and
the manifest loses nothing. A re-run skips every point whose summary exists and runs the rest
(failed points included). A finished point is never run twice, and its manifest row keeps the
wall time and finish time of the run that made it.

*Workers.* Each point is :func:`run_point` on plain data (it pickles for a process pool or a
cluster). What a worker loads once: the catalogs (module constants of ``calibration``, read at
import) and measured profiles (``calibration.measured``'s read cache, by path, mtime and size);
:func:`run_point` warms both on its first call in a process (``_WARM``), so a point pays only for
its own simulation.
"""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from sim.analysis.atomic import write_json, write_whole
from sim.analysis.executor import InlineExecutor, ProgressFn, local_executor
from sim.analysis.sweep_spec import Point, SweepSpec, SweepSpecError, load_sweep_spec

__all__ = ["MANIFEST_SCHEMA", "RECORDS", "SweepError", "SweepRun", "points_per_minute", "read_summaries", "run_point", "run_sweep", "sweep"]

RECORDS = ("summary", "full")
"""What each point keeps: its summary row, or also its per-request and per-iteration tables."""
MANIFEST_SCHEMA = pa.schema([
    ("point_id", pa.string()), ("repeat", pa.int64()), ("params", pa.string()), ("seed", pa.int64()),
    ("status", pa.string()), ("wall_s", pa.float64()), ("error", pa.string()),
    ("finished_at", pa.timestamp("us", tz="UTC"))])
"""``manifest.parquet``: one row per point of the spec. ``status`` is ok (its summary exists),
failed (it raised: ``error`` says what) or invalid (its scenario does not validate: ``error`` is
the validator's line; never run). ``wall_s`` and ``finished_at`` are those of the run that made
the point's summary (or recorded its failure)."""
_META_KEY = b"capsim.sweep.point"


class SweepError(ValueError):
    """A sweep that cannot start as asked (one line)."""


@dataclass(frozen=True)
class SweepRun:
    """What :func:`run_sweep` did: the summaries of every finished point of the spec (one row
    each), the manifest, and counts for this run (``skipped``: finished before, not rerun)."""

    table: pa.Table
    manifest: pa.Table
    ok: int
    failed: int
    invalid: int
    skipped: int
    excluded: int
    ran: int
    wall_s: float


# ---------------------------------------------------------------------------------------------
# One point, in a worker


_WARM: dict[str, bool] = {}  # per process: the catalogs and profiles are loaded (see the module docstring)


def _flatten(summary: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The summary's numbers by dotted path (lists and text are left out; a missing number, None,
    is kept as a null)."""
    out: dict[str, Any] = {}
    for k, v in summary.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        elif v is None or isinstance(v, (bool, int, float)):
            out[key] = v
    return out


def _column(values: list[Any]) -> pa.Array:
    """One column, typed by its values: bool, int64, float64, text; anything else as JSON text.
    A column of nulls only is typed null, so that it takes the type other points give it
    (:func:`_unify_partitions`)."""
    given = [v for v in values if v is not None]
    if not given:
        return pa.array(values, pa.null())
    if all(isinstance(v, bool) for v in given):
        return pa.array(values, pa.bool_())
    if all(isinstance(v, int) and not isinstance(v, bool) for v in given):
        return pa.array(values, pa.int64())
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in given):
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    if all(isinstance(v, str) for v in given):
        return pa.array(values, pa.string())
    return pa.array([None if v is None else json.dumps(v, sort_keys=True) for v in values], pa.string())


def _summary_row(task: Mapping[str, Any], summary: Mapping[str, Any]) -> pa.Table:
    """The point's row: ``repeat``, ``seed``, its parameters under their axis paths, the profile's
    provenance (``profile.kind``, ``profile.source``), the load's verdict (``load.verdict``), then
    the summary's numbers (one already
    given as a parameter, or the seed, is not repeated). The
    point id is not a column of the file: the partition gives it."""
    row: dict[str, Any] = {"repeat": task["repeat"], "seed": task["seed"]}
    axis_types = task["axis_types"]
    for path, value in task["params"].items():
        row[path] = json.dumps(value, sort_keys=True) if axis_types.get(path) == "json" else (
            float(value) if axis_types.get(path) == "float" else value)
    profile = summary.get("profile") if isinstance(summary.get("profile"), Mapping) else {}
    for key in ("kind", "source"):  # the provenance of every number in the row (text, so kept by name)
        row.setdefault(f"profile.{key}", profile.get(key))
    load = summary.get("load") if isinstance(summary.get("load"), Mapping) else {}
    row.setdefault("load.verdict", load.get("verdict"))  # stable, overloaded or undetermined (text)
    for k, v in _flatten(summary).items():
        row.setdefault(k, v)
    return pa.table({k: _column([v]) for k, v in row.items()})


def run_point(task: dict[str, Any]) -> dict[str, Any]:
    """Simulate one point and write its partition; return its manifest row (plain data). Never
    raises for a failing point: the error comes back in the row (status failed), so the sweep
    goes on. Top-level, on plain data: it pickles for a process pool or a cluster.

    ``task``: ``point_id``, ``params``, ``repeat``, ``seed``, ``scenario`` (data), ``out_dir``,
    ``records``, ``axis_types``, ``base`` (the base scenario's data, to warm the worker)."""
    from sim.config import Scenario
    from sim.engine import simulate

    if not _WARM:
        _warm(task.get("base"))
    row = {"point_id": task["point_id"], "repeat": task["repeat"], "params": json.dumps(task["params"], sort_keys=True),
           "seed": task["seed"], "status": "ok", "wall_s": None, "error": None, "finished_at": None}
    start = time.perf_counter()
    try:
        scenario = Scenario.model_validate(task["scenario"])
        full = task["records"] == "full"
        result = simulate(scenario, records="full" if full else "summary")
        out = Path(task["out_dir"])
        part = f"point_id={task['point_id']}"
        if full:  # the records first: the summary, written last, says the point finished
            for name, table in (("requests", result.requests), ("iterations", result.iterations)):
                d = out / name / part
                d.mkdir(parents=True, exist_ok=True)
                write_whole(d / "part.parquet", lambda tmp, t=table: pq.write_table(t, tmp))
        row["wall_s"] = time.perf_counter() - start
        row["finished_at"] = datetime.now(timezone.utc).isoformat()
        table = _summary_row(task, result.summary)
        table = table.replace_schema_metadata({_META_KEY: json.dumps(row).encode()})
        d = out / "points" / part
        d.mkdir(parents=True, exist_ok=True)
        write_whole(d / "summary.parquet", lambda tmp: pq.write_table(table, tmp))
    except Exception as e:  # noqa: BLE001 - a failing point is recorded, and the sweep goes on
        row.update(status="failed", error=f"{type(e).__name__}: {' '.join(str(e).split())}",
                   wall_s=time.perf_counter() - start, finished_at=datetime.now(timezone.utc).isoformat())
    return row


def _warm(base: Mapping[str, Any] | None) -> None:
    """Load what every point of this process shares, once: the engine's modules, the catalogs,
    and the base scenario's profile (measured profiles land in calibration's read cache)."""
    import sim.engine  # noqa: F401 - imported for its side of warming: the engine's modules
    from sim.config import Scenario

    if base is not None:
        try:
            Scenario.model_validate(base).build_profile()
        except Exception:  # noqa: BLE001 - an invalid base only means nothing to warm; points say why
            pass
    _WARM["done"] = True


# ---------------------------------------------------------------------------------------------
# The sweep, in the caller


def _axis_types(points: list[Point], axes: list[str]) -> dict[str, str]:
    """Each axis's column type over every point (so that all partitions agree): bool, int, float
    (ints and floats mixed), str, or json (anything else)."""
    types: dict[str, str] = {}
    for a in axes:
        vals = [p.params[a] for p in points if p.params.get(a) is not None]
        if vals and all(isinstance(v, bool) for v in vals):
            types[a] = "bool"
        elif vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            types[a] = "int"
        elif vals and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            types[a] = "float"
        elif all(isinstance(v, str) for v in vals):
            types[a] = "str"
        else:
            types[a] = "json"
    return types


def _finished(out: Path, ids: set[str]) -> dict[str, dict[str, Any]]:
    """The manifest rows of the points of ``ids`` whose summary exists, from the summaries' own
    metadata (the truth; the manifest file is only its index)."""
    rows = {}
    for pid in ids:
        f = out / "points" / f"point_id={pid}" / "summary.parquet"
        if f.is_file():
            try:
                meta = pq.read_schema(f).metadata or {}
                rows[pid] = json.loads(meta[_META_KEY])
            except Exception:  # noqa: BLE001 - not a summary this sweep wrote whole: run the point again
                continue
    return rows


def _manifest(rows: list[dict[str, Any]]) -> pa.Table:
    """The manifest table from rows (in point order)."""
    cols: dict[str, list[Any]] = {f.name: [] for f in MANIFEST_SCHEMA}
    for r in rows:
        for k in cols:
            v = r.get(k)
            cols[k].append(datetime.fromisoformat(v) if k == "finished_at" and v else v)
    return pa.table(cols, schema=MANIFEST_SCHEMA)


def _prepare(spec: SweepSpec, out: Path, records: str) -> None:
    """Create ``out`` or check it holds this sweep (same base scenario, seed and records), and
    write ``sweep.json``."""
    marker = out / "sweep.json"
    if out.exists() and not out.is_dir():
        raise SweepError(f"{out}: exists and is not a directory")
    if out.is_dir() and not marker.is_file() and any(p.name != ".sweep.json.tmp" for p in out.iterdir()):
        raise SweepError(f"{out}: not empty and not a sweep's output (no sweep.json): give a new or empty directory")
    if marker.is_file():
        try:
            before = json.loads(marker.read_text())
        except (OSError, ValueError):
            before = None
        now = json.loads(json.dumps({**spec.identity(), "records": records}))
        then = None if before is None else {k: before.get(k) for k in ("base", "seed", "records")}
        if then != now:
            what = next((k for k in ("base", "seed", "records") if then is None or then[k] != now[k]), "spec")
            raise SweepError(f"{out}: holds a sweep with another {what} (sweep.json); resume it with the same spec, "
                             "or give a new directory")
    out.mkdir(parents=True, exist_ok=True)
    write_json(marker, {**spec.to_dict(), "records": records})


def run_sweep(spec: SweepSpec | str | Path | Mapping[str, Any], out_dir: str | Path, *,
              executor: Executor | None = None, workers: int | None = None, records: str = "summary",
              progress: ProgressFn | None = None, notify: Callable[[str], None] | None = None) -> SweepRun:
    """Run every point of ``spec`` not finished yet into ``out_dir`` (see the module docstring)
    and return what the directory holds for the spec, with this run's counts.

    ``executor``: any ``concurrent.futures.Executor`` (None: a :func:`local_executor` of
    ``workers`` processes, made here and shut down at the end). ``progress(done, total)`` after
    each point of this run finishes; ``notify(line)`` for what is decided up front (points
    excluded, invalid with their reason, already finished). Raises :class:`SweepSpecError` for a
    bad spec and :class:`SweepError` for a directory that holds another sweep."""
    start = time.perf_counter()
    if records not in RECORDS:
        raise SweepError(f"records = {records!r}: must be one of {', '.join(RECORDS)}")
    spec = spec if isinstance(spec, SweepSpec) else load_sweep_spec(spec)
    say = notify or (lambda line: None)
    out = Path(out_dir).absolute()  # workers elsewhere (a Ray cluster) run in their own directory
    points, excluded = spec.points()
    if not points:
        raise SweepSpecError("the spec leaves no point to run (every assignment is excluded)")
    _prepare(spec, out, records)
    axis_types = _axis_types(points, list(spec.axes))

    invalid = {}
    for p in points:
        reason = spec.check(p)
        if reason is not None:
            invalid[p.id] = reason
    done = _finished(out, {p.id for p in points} - set(invalid))
    rows: dict[str, dict[str, Any]] = {}
    for p in points:
        if p.id in invalid:
            rows[p.id] = {"point_id": p.id, "repeat": p.repeat, "params": json.dumps(p.params, sort_keys=True),
                          "seed": p.seed, "status": "invalid", "error": invalid[p.id]}
        elif p.id in done:
            rows[p.id] = done[p.id]
    say(f"{len(points)} points ({spec.design}, {spec.repeats} repeat{'s' if spec.repeats > 1 else ''}): "
        f"{len(done)} finished before, {len(invalid)} invalid, {excluded} assignment"
        f"{'s' if excluded != 1 else ''} excluded")
    for p in points:
        if p.id in invalid:
            say(f"invalid {p.id} {json.dumps(p.params)}: {invalid[p.id]}")
    order = {p.id: i for i, p in enumerate(points)}

    def write_manifest() -> pa.Table:
        table = _manifest(sorted(rows.values(), key=lambda r: order[r["point_id"]]))
        write_whole(out / "manifest.parquet", lambda tmp: pq.write_table(table, tmp))
        return table

    write_manifest()
    todo = [p for p in points if p.id not in invalid and p.id not in done]
    base = spec.base
    tasks = [{"point_id": p.id, "params": p.params, "repeat": p.repeat, "seed": p.seed,
              "scenario": spec.scenario_data(p), "out_dir": str(out), "records": records, "axis_types": axis_types,
              "base": base} for p in todo]
    counts = {"ok": 0, "failed": 0}

    def finished(row: dict[str, Any], n: int) -> None:
        rows[row["point_id"]] = row
        counts["ok" if row["status"] == "ok" else "failed"] += 1
        write_manifest()
        if progress is not None:
            progress(n, len(tasks))

    if tasks:
        owned = executor is None
        ex = local_executor(workers) if owned else executor
        try:
            if isinstance(ex, InlineExecutor):  # one at a time, so that each is recorded as it ends
                for n, task in enumerate(tasks, 1):
                    finished(run_point(task), n)
            else:
                futures = {ex.submit(run_point, t): t for t in tasks}
                try:
                    for n, f in enumerate(as_completed(futures), 1):
                        try:
                            row = f.result()
                        except Exception as e:  # noqa: BLE001 - the worker died (a broken pool): recorded
                            t = futures[f]
                            row = {"point_id": t["point_id"], "repeat": t["repeat"],
                                   "params": json.dumps(t["params"], sort_keys=True), "seed": t["seed"],
                                   "status": "failed", "error": f"{type(e).__name__}: {e}",
                                   "finished_at": datetime.now(timezone.utc).isoformat()}
                        finished(row, n)
                finally:
                    for f in futures:
                        f.cancel()
        finally:
            if owned:
                ex.shutdown(wait=True, cancel_futures=True)  # type: ignore[union-attr]
    manifest = write_manifest()
    ok_ids = [p.id for p in points if rows.get(p.id, {}).get("status") == "ok"]
    _unify_partitions(out)
    return SweepRun(table=read_summaries(out, ok_ids), manifest=manifest, ok=counts["ok"], failed=counts["failed"],
                    invalid=len(invalid), skipped=len(done), excluded=excluded, ran=len(tasks),
                    wall_s=time.perf_counter() - start)


def sweep(spec: SweepSpec | str | Path | Mapping[str, Any], out_dir: str | Path, *, executor: Executor | None = None,
          workers: int | None = None, records: str = "summary", progress: ProgressFn | None = None) -> pa.Table:
    """Run a sweep (:func:`run_sweep`) and return its summaries: one row per finished point of
    the spec, ``point_id`` first, then ``repeat``, ``seed``, the parameters under their axis
    paths and the summary's numbers by dotted path (``latency_s.ttft.p99``,
    ``throughput.output_tokens_per_s``, ``cost.usd_per_million_output_tokens``, ...)."""
    return run_sweep(spec, out_dir, executor=executor, workers=workers, records=records, progress=progress).table


def _unify_partitions(out: Path) -> None:
    """Give every ``summary.parquet`` under ``out/points`` the same schema: every column any point
    has, in first-seen order (by point id), typed by :func:`pyarrow.unify_schemas` (an int and a
    float column become float; a column of nulls takes the others' type; one null in every point
    is float), so that ``pyarrow.dataset`` (which takes its schema from one file) and pandas read
    the directory as one table with no column lost. Only files that differ are rewritten, whole
    and with their metadata (the proof of a finished point); a kill part-way leaves each file
    either old or new, and the next run finishes the job."""
    files = sorted((out / "points").glob("point_id=*/summary.parquet"))
    schemas = []
    for f in files:
        try:
            schemas.append(pq.read_schema(f))
        except (OSError, pa.ArrowException):  # not written whole by this sweep: the next run redoes the point
            schemas.append(None)
    given = [s.remove_metadata() for s in schemas if s is not None]
    if not given or all(s.equals(given[0]) for s in given):
        return
    try:
        union = pa.unify_schemas(given, promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # two points typed one column incompatibly: read_summaries says so
        return
    union = pa.schema([pa.field(f.name, pa.float64()) if pa.types.is_null(f.type) else f for f in union])
    for f, schema in zip(files, schemas):
        if schema is None or schema.remove_metadata().equals(union):
            continue
        table = pq.read_table(f)
        cols = [table.column(fld.name).cast(fld.type) if fld.name in table.column_names
                else pa.nulls(table.num_rows, fld.type) for fld in union]
        conformed = pa.table(cols, schema=union).replace_schema_metadata(schema.metadata)
        write_whole(f, lambda tmp, t=conformed: pq.write_table(t, tmp))


def read_summaries(out_dir: str | Path, point_ids: list[str] | None = None) -> pa.Table:
    """The summaries under ``out_dir/points`` as one table (``point_id`` first), in the order of
    ``point_ids`` (None: every point, by id). Columns only some points have are null in the
    others; a column typed differently in two points takes the wider type."""
    root = Path(out_dir) / "points"
    if point_ids is None:
        point_ids = sorted(p.name.partition("=")[2] for p in root.glob("point_id=*")
                           if (p / "summary.parquet").is_file()) if root.is_dir() else []
    tables = []
    for pid in point_ids:
        t = pq.read_table(root / f"point_id={pid}" / "summary.parquet")
        tables.append(t.replace_schema_metadata(None).add_column(0, "point_id", pa.array([pid], pa.string())))
    if not tables:
        return pa.table({"point_id": pa.array([], pa.string())})
    return pa.concat_tables(tables, promote_options="permissive")


def points_per_minute(n: int, wall_s: float) -> float:
    """Points finished per minute of wall time (nan for no time)."""
    return n / wall_s * 60.0 if wall_s > 0 else math.nan
