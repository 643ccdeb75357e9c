"""Records of a run as columnar tables, the summary, and writing them to disk.

Tables are pyarrow (``.to_pandas()`` is there for those who want it). ``SimResult.write`` puts
``requests.parquet``, ``iterations.parquet``, ``timeline.parquet``, ``summary.json`` and the
resolved ``scenario.yaml`` in one directory; same scenario and seed give byte-identical Parquet.

How much a run keeps is its ``records`` mode (:data:`RECORDS`):

- ``full``: every table in memory (the default; what notebooks want);
- ``stream``: iteration rows go to ``iterations.parquet`` in the output directory chunk by chunk
  as the run goes (each replica's rows in time order, chunks as they fill), so a long run never
  holds them; the other files are written at the end;
- ``summary``: no per-request or per-iteration tables at all, only ``summary.json`` (and the
  scenario), for sweeps of many scenarios. The summary is the same, exactly: percentiles are
  computed from every request's and every token's value, not from a sketch.

In every mode the summary needs only three columns of the iteration rows (start, duration,
tokens out), which are kept compactly.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from calibration.profile import Profile
from calibration.spec import roofline_of
from sim.config import Scenario
from sim.results.cost import cost_of
from sim.core.iteration_log import ITERATION_COLUMNS
from sim.results.benchmark import benchmark_block
from sim.results.metrics import busy_seconds, itl_stats, latency_stats
from sim.results.waste import waste_of
from sim.results.windows import window_sums
from sim.core.state import COMPLETED, PENDING, REJECT_REASONS, REJECTED, RUNNING, WAITING, RequestState
from sim.results.summary import Summary

if TYPE_CHECKING:
    from sim.core.replica import ReplicaEngine

__all__ = ["EXISTING", "OUTPUT_FILES", "RECORDS", "OutputError", "RecordSink", "SimResult", "build_result",
           "check_output_dir", "first_clause", "truncated_requests"]

_STATUS = {PENDING: "not_arrived", WAITING: "in_flight", RUNNING: "in_flight", COMPLETED: "completed",
           REJECTED: "rejected"}


RECORDS = ("full", "stream", "summary")
# What the summary needs of every iteration row, and the compact type a stream/summary run keeps
# it in (the summary's sums are taken in float64/int64 whatever the stored type).
_ESSENTIAL: dict[str, type] = {"start_s": np.float64, "duration_s": np.float64, "tokens_out": np.int32,
                               "flops": np.float32, "bytes": np.float32, "kv_blocks_used": np.int32,
                               "seqs": np.int32, "recompute_s": np.float32}
# Of _ESSENTIAL: read by the windows and _utilisation alone, let go after them.
_UTILISATION_COLUMNS = ("flops", "bytes", "kv_blocks_used", "seqs", "recompute_s")
# The files a run writes (SimResult.write), in the order it writes them.
OUTPUT_FILES = ("requests.parquet", "iterations.parquet", "timeline.parquet", "summary.json", "scenario.yaml")
ITERATION_SCHEMA = pa.schema([("replica", pa.int64())] + [
    (k, pa.float64() if dt is np.float64 else pa.int64()) for k, dt in ITERATION_COLUMNS.items()])


@dataclass(frozen=True)
class SimResult:
    """What one simulation produced. A table the run's ``records`` mode did not keep is None:
    ``iterations`` with ``stream`` (it is in :attr:`streamed`), all three with ``summary``."""

    scenario: Scenario
    requests: pa.Table | None
    iterations: pa.Table | None
    timeline: pa.Table | None
    summary: Summary  # a plain dict at run time, written as summary.json
    wall_s: float = field(compare=False)
    streamed: Path | None = field(default=None, compare=False)  # iterations.parquet written as the run went

    @property
    def files(self) -> tuple[str, ...]:
        """The names :meth:`write` writes: the tables the run kept (or streamed), summary, scenario."""
        kept = {"requests": self.requests, "iterations": self.iterations if self.streamed is None else self.streamed,
                "timeline": self.timeline}
        return tuple(name for name in OUTPUT_FILES if name.endswith((".json", ".yaml"))
                     or kept[name.removesuffix(".parquet")] is not None)

    def write(self, out_dir: str | os.PathLike) -> Path:
        """Write tables, summary and scenario into ``out_dir`` (created if needed); each file goes
        through a temporary name and ``os.replace`` so a crash never leaves half a file. Files of
        an earlier run that this one does not write (a full run's ``requests.parquet`` under a
        summary-only run) are removed, so the directory holds exactly this run's results; files
        that are not capsim's are left alone."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name in set(OUTPUT_FILES) - set(self.files):
            (out / name).unlink(missing_ok=True)
        if self.streamed is not None and self.streamed.resolve() != (out / "iterations.parquet").resolve():
            shutil.copyfile(self.streamed, out / ".iterations.parquet.tmp")
            os.replace(out / ".iterations.parquet.tmp", out / "iterations.parquet")
        for name, table in (("requests", self.requests), ("iterations", self.iterations),
                            ("timeline", self.timeline)):
            if table is None:
                continue
            tmp = out / f".{name}.parquet.tmp"
            pq.write_table(table, tmp, use_dictionary=_dictionary_columns(table))
            os.replace(tmp, out / f"{name}.parquet")
        for name, text in (("summary.json", json.dumps(self.summary, indent=2) + "\n"),
                           ("scenario.yaml", yaml.safe_dump(self.scenario.to_dict(), sort_keys=False))):
            tmp = out / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, out / name)
        return out


EXISTING = ("replace", "refuse")  # what a run does with an output directory holding an earlier run's files


class OutputError(ValueError):
    """An output directory that cannot take a run's results; ``str(err)`` names it and why."""


def check_output_dir(out: str | os.PathLike, existing: str = "replace") -> None:
    """Refuse, before any simulating, an output directory that a run could not write into: an
    empty name, an existing file, a path under a file or unwritable directory, or (with
    ``existing="refuse"``) one that holds an earlier run's files. Creates nothing."""
    text = os.fspath(out)
    if not text.strip():
        raise OutputError(f"{text!r}: empty directory name; give one, or . for the current directory")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: is a file, not a directory; give a directory for the results")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputError(f"{path}: cannot write into this directory (permission denied)")
        earlier = [name for name in OUTPUT_FILES if (path / name).exists()]
        if earlier and existing == "refuse":
            raise OutputError(f"{path}: holds an earlier run's results ({', '.join(earlier)}) and --existing is "
                              "refuse; choose another directory, or --existing replace")
        return
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{path}: cannot be created: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: cannot be created in {parent} (permission denied)")


def _dictionary_columns(table: pa.Table) -> list[str]:
    """The columns worth Parquet's dictionary encoding: the text ones (class, status). Numeric
    columns take half as long to write without it: the request file comes out smaller (times and
    token counts rarely repeat), the iteration file about 5% larger."""
    return [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_dictionary(f.type)]


class RecordSink:
    """Where a run's iteration chunks go (see the module docstring): one per run, asked for one
    sink function per replica by the engine."""

    def __init__(self, mode: str, replicas: int, stream_dir: Path | None = None):
        if mode not in RECORDS:
            raise ValueError(f"records = {mode!r}: must be one of {', '.join(RECORDS)}")
        if mode == "stream" and stream_dir is None:
            raise ValueError("records = 'stream' needs a directory to write iterations.parquet into")
        self.mode = mode
        self.essentials: list[list[dict[str, np.ndarray]]] = [[] for _ in range(replicas)]
        self.path: Path | None = None
        self._writer: pq.ParquetWriter | None = None
        if mode == "stream":
            assert stream_dir is not None
            stream_dir.mkdir(parents=True, exist_ok=True)
            self.path = stream_dir / "iterations.parquet"
            self._tmp = stream_dir / ".iterations.parquet.tmp"
            self._writer = pq.ParquetWriter(self._tmp, ITERATION_SCHEMA, use_dictionary=False)

    def for_replica(self, k: int):  # type: ignore[no-untyped-def]
        """The sink for replica ``k``'s iteration log (None: the log keeps whole chunks itself)."""
        if self.mode == "full":
            return None
        keep = self.essentials[k]

        def sink(chunk: dict[str, np.ndarray]) -> None:
            keep.append(_essentials(chunk))
            if self._writer is not None:
                n = chunk["start_s"].size
                self._writer.write_table(pa.table({"replica": np.full(n, k, np.int64), **chunk}, schema=ITERATION_SCHEMA))

        return sink

    def close(self) -> None:
        """Finish the streamed file (after every log is sealed)."""
        if self._writer is not None:
            self._writer.close()
            os.replace(self._tmp, self.path)
            self._writer = None

    def abort(self) -> None:
        """Drop a half-written stream (the run failed)."""
        if self._writer is not None:
            self._writer.close()
            self._tmp.unlink(missing_ok=True)
            self._writer = None


def _essentials(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The summary's columns of some iteration rows, in their compact types (:data:`_ESSENTIAL`;
    ``seqs``, the batch's sequences, is prefill plus decode; counts in 16 bits where the rows'
    fit, which a batch's usually do). Every records mode takes them the same way, so that the
    summary is the same, exactly, whatever the run kept."""
    out = {}
    for c, dt in _ESSENTIAL.items():
        if c == "seqs":
            x = cols["prefill_seqs"] + cols["decode_seqs"]
        elif c == "recompute_s":  # seconds of each iteration its recomputed tokens took (their share)
            x = cols["duration_s"] * cols["recompute_tokens"] / np.maximum(cols["prefill_tokens"] + cols["decode_seqs"], 1)
        else:
            x = cols[c]
        if dt is np.int32 and x.size and 0 <= x.min() and x.max() <= np.iinfo(np.uint16).max:
            dt = np.uint16  # the same integers: 1M requests' 5M iterations hold 30 MB less
        out[c] = np.asarray(x, dt)
    return out


def _streamed_essentials(sink: RecordSink) -> list[dict[str, np.ndarray]]:
    """The summary's columns of each replica's iterations, in time order (a log's order), joined
    from the chunks a ``stream`` or ``summary`` sink kept."""
    out = []
    for chunks in sink.essentials:
        # Join one column at a time, letting its pieces go, so a long run is never held twice over.
        out.append({c: np.concatenate([ch.pop(c) for ch in chunks]) if chunks else np.empty(0, dt)
                    for c, dt in _ESSENTIAL.items()})
        chunks.clear()
    return out


class _Requests:
    """Per-request results as numpy columns: what the request table shows and the summary uses."""

    def __init__(self, s: Scenario, table: pa.Table, r: RequestState):
        self.done = r.status == COMPLETED
        done = self.done
        self.ttft = r.first_token - r.arrival
        self.e2e = np.where(done, r.finish - r.arrival, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.tpot = np.where(done & (r.output > 1), (self.e2e - self.ttft) / (r.output - 1), np.nan)
        self.queue = r.first_scheduled - r.arrival
        # SLOs per class, vectorised: a missing target is +inf.
        self.classes = {c.name: pc.equal(table.column("class"), c.name).to_numpy(zero_copy_only=False)
                        for c in s.workload.classes}
        ttft_max, tpot_max, e2e_max = (np.full(done.size, np.inf) for _ in range(3))
        for c in s.workload.classes:
            m = self.classes[c.name]
            ttft_max[m] = c.slo.ttft_s if c.slo.ttft_s is not None else np.inf
            tpot_max[m] = c.slo.tpot_s if c.slo.tpot_s is not None else np.inf
            e2e_max[m] = c.slo.e2e_s if c.slo.e2e_s is not None else np.inf
        self.met = done & (self.ttft <= ttft_max) & (self.e2e <= e2e_max) & ((r.output <= 1) | (self.tpot <= tpot_max))


def _request_table(table: pa.Table, r: RequestState, reject: np.ndarray, q: _Requests) -> pa.Table:

    status = np.array([_STATUS[c] for c in range(5)], dtype=object)[r.status]
    reasons = np.array([None] + [REJECT_REASONS[k] for k in sorted(REJECT_REASONS)], dtype=object)[
        np.where(r.status == REJECTED, reject, 0)]
    return pa.table({
        "request_id": table.column("request_id"),
        "class": table.column("class"),
        "priority": r.priority,
        "replica": pa.array(r.replica, mask=r.replica < 0),
        "status": pa.array(status.tolist(), type=pa.string()),
        "reject_reason": pa.array(reasons.tolist(), type=pa.string()),
        "arrival_s": r.arrival,
        "queue_s": q.queue,
        "ttft_s": q.ttft,
        "tpot_s": q.tpot,
        "e2e_s": q.e2e,
        "prompt_tokens": r.prompt,
        "output_tokens": r.output,
        "preemptions": r.preemptions,
        "slo_met": pa.array(q.met, mask=~q.done),
    })


def _iteration_table(columns: Sequence[dict[str, np.ndarray]]) -> pa.Table:
    """Every replica's iteration rows (``columns[k]``: replica k's), ordered by start time (ties by replica)."""
    parts = [{"replica": np.full(cols["start_s"].size, k, np.int64), **cols} for k, cols in enumerate(columns)]
    names = ["replica", *ITERATION_COLUMNS]
    if len(parts) == 1:  # one replica's log is in time order already
        return pa.table({c: parts[0][c] for c in names})
    merged = {c: np.concatenate([p[c] for p in parts]) if parts else np.empty(0) for c in names}
    order = np.lexsort((merged["replica"], merged["start_s"]))
    return pa.table({c: merged[c][order] for c in names})


def _timeline(per_replica: list[dict[str, np.ndarray]], end: float) -> pa.Table:
    """Busy and idle intervals per replica: consecutive iterations merge into one busy interval."""
    out: dict[str, list] = {"replica": [], "state": [], "start_s": [], "end_s": []}
    for k, it in enumerate(per_replica):
        s = it["start_s"]
        e = np.minimum(s + it["duration_s"], end)  # cut at the horizon
        brk = np.flatnonzero(s[1:] > e[:-1]) + 1 if s.size else np.empty(0, np.int64)
        b_start = np.concatenate([s[:1], s[brk]]) if s.size else s
        b_end = np.concatenate([e[brk - 1], e[-1:]]) if s.size else e
        edges = np.concatenate([[0.0], np.column_stack([b_start, b_end]).ravel(), [max(end, b_end[-1] if b_end.size else 0.0)]])
        for j in range(edges.size - 1):
            if edges[j + 1] > edges[j]:
                out["replica"].append(k)
                out["state"].append("idle" if j % 2 == 0 else "busy")
                out["start_s"].append(float(edges[j]))
                out["end_s"].append(float(edges[j + 1]))
    return pa.table({"replica": pa.array(out["replica"], pa.int64()), "state": pa.array(out["state"], pa.string()),
                     "start_s": pa.array(out["start_s"], pa.float64()), "end_s": pa.array(out["end_s"], pa.float64())})


def _itl_samples(engines: Sequence[ReplicaEngine], lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Inter-token gaps (values, multiplicities) of the tokens emitted in [lo, hi), replica by
    replica. Filled piece by piece into arrays sized once: joining filtered copies would hold a
    long run's gaps twice over at the summary's peak (1M requests: ~60 MB more)."""
    pieces = [p for e in engines for p in e.log.gaps_between(lo, hi)]
    sizes = [int(np.count_nonzero(keep)) if keep is not None else v.size for v, _, keep in pieces]
    values, weights = np.empty(sum(sizes)), np.empty(sum(sizes), np.int32)
    at = 0
    for (v, w, keep), n in zip(pieces, sizes):
        if keep is None:
            values[at:at + n] = v
            weights[at:at + n] = 1
        else:
            np.compress(keep, v, out=values[at:at + n])
            np.compress(keep, w, out=weights[at:at + n])
        at += n
    return values, weights


def build_result(s: Scenario, table: pa.Table, r: RequestState, reject: np.ndarray,
                 engines: Sequence[ReplicaEngine], profile: Profile, end: float, wall_s: float,
                 sink: RecordSink | None = None) -> SimResult:
    """Assemble tables and summary from the final state of a run (its logs sealed)."""
    sink = sink or RecordSink("full", len(engines))
    sink.close()
    q = _Requests(s, table, r)
    if sink.mode == "full":
        columns = [e.log.columns() for e in engines]  # joined once, for the table and the summary
        per_replica = [_essentials(cols) for cols in columns]
        iters = _iteration_table(columns)
    else:
        per_replica, iters = _streamed_essentials(sink), None
    keep = sink.mode != "summary"
    # The summary first: its temporaries (every inter-token gap, sorted) are gone before the
    # request table is built, so a long run's peak memory holds one or the other.
    summary = _summary(s, q, per_replica, r, reject, engines, profile, end, truncated_requests(table))
    timeline = _timeline(per_replica, end) if keep else None
    requests = _request_table(table, r, reject, q) if keep else None
    return SimResult(s, requests, iters, timeline, summary, wall_s, sink.path)


def truncated_requests(table: pa.Table) -> int:
    """How many of the table's requests were cut to fit the model's context when it was drawn
    (:data:`workloads.TRUNCATED_KEY` in its schema's metadata; 0 for a table without it)."""
    from workloads import TRUNCATED_KEY

    meta = table.schema.metadata or {}
    return int(meta.get(TRUNCATED_KEY, b"0"))


def _window(s: Scenario, r: RequestState, end: float) -> tuple[float, float, str]:
    """The measurement window [lo, hi): from the warm-up to the last arrival (or the horizon)."""
    arrived = r.arrival[~np.isnan(r.arrival)]
    last_arrival = float(arrived.max()) if arrived.size else 0.0
    lo, hi = s.measurement.warmup_s, min(last_arrival, end)
    if hi > lo:
        return lo, hi, (f"latencies over completed requests that arrived in [{lo:g}, {hi:g}] s; throughput and "
                        f"inter-token gaps over what was produced in [{lo:g}, {hi:g}) s; warm-up before {lo:g} s and the drain after {hi:g} s are excluded")
    # Half-open windows elsewhere; here the run's last instant belongs in it too.
    return 0.0, float(np.nextafter(max(end, 0.0), np.inf)), (f"warm-up ({lo:g} s) reaches past the last arrival ({last_arrival:g} s): the whole "
                                  f"run [0, {end:g}) s is measured, warm-up and drain included")


def _summary(s: Scenario, q: _Requests, per_replica: list[dict[str, np.ndarray]], r: RequestState, reject: np.ndarray,
             engines: Sequence[ReplicaEngine], profile: Profile, end: float, truncated: int) -> Summary:
    n = r.arrival.size
    lo, hi, note = _window(s, r, end)
    dur = max(hi - lo, 1e-12)
    done = q.done
    in_win = (r.arrival >= lo) & (r.arrival <= hi)
    measured = done & in_win
    col = {"ttft_s": q.ttft, "tpot_s": q.tpot, "e2e_s": q.e2e, "queue_s": q.queue}

    # Production inside the window.
    out_tokens = 0
    for it in per_replica:
        it_end = it["start_s"] + it["duration_s"]
        out_tokens += int(it["tokens_out"][(it_end >= lo) & (it_end < hi)].sum())
    fin_in = done & (r.finish >= lo) & (r.finish < hi)
    # Windows and utilisation first, and their columns let go: they are not held beside the gaps below.
    windows = window_sums(per_replica, r.arrival, lo, hi, s.cost.window_s, _peaks(profile))
    utilisation = _utilisation(s, per_replica, profile, lo, hi, dur)
    for it in per_replica:
        for c in _UTILISATION_COLUMNS:
            del it[c]
    # Every gap in the window, summarised and let go at once: a long run's largest temporaries
    # (millions of gaps, sorted) are not held while the rest of the summary is computed.
    itl = itl_stats(*_itl_samples(engines, lo, hi))
    # The benchmark block sorts the whole run's gaps: at once after the window's are let go, and
    # before the arrays below are made, so that the summary's peak holds one set of gaps and little else.
    in_flight = int(((r.status == WAITING) | (r.status == RUNNING)).sum())
    benchmark = benchmark_block(r.arrival, done, q.ttft, q.e2e, r.output, r.prompt, r.finish,
                                partial(_itl_samples, engines), in_flight)
    # Time-average number of requests in the system over the window (for Little's law).
    admitted = (r.status != REJECTED) & (r.status != PENDING)
    leave = np.where(done, r.finish, end)
    overlap = np.clip(np.minimum(leave, hi) - np.maximum(r.arrival, lo), 0, None)
    met = q.met

    busy = [busy_seconds(it["start_s"], it["duration_s"], lo, hi) / dur for it in per_replica]
    load = _load(r, lo, hi, dur)
    # Refusals by reason, in the order reasons first occur.
    rejected = r.status == REJECTED
    codes, first, counts = np.unique(reject[rejected], return_index=True, return_counts=True)
    reasons = {REJECT_REASONS[int(codes[i])]: int(counts[i]) for i in np.argsort(first)}

    per_class = {}
    for c in s.workload.classes:
        m = measured & q.classes[c.name]
        per_class[c.name] = {
            "completed": int(m.sum()),
            "ttft": latency_stats(col["ttft_s"][m]),
            "tpot": latency_stats(col["tpot_s"][m]),
            "e2e": latency_stats(col["e2e_s"][m]),
            "slo_attainment": float(met[m].mean()) if m.any() else None,
            "goodput_requests_per_s": float((met & fin_in & q.classes[c.name]).sum() / dur),
        }

    summary = {
        "scenario": s.name,
        "seed": s.seed,
        "profile": profile.provenance.as_dict(),
        # Text only: which engine's defaults and admission rule the run used ("none": no preset).
        "engine": {"preset": s.engine.preset or "none", "scheduler": s.engine.scheduler,
                   "admission": s.engine.admission},
        "replicas": s.replicas,
        "gpus": s.replicas * s.tp,
        "kv_capacity_tokens_per_replica": s.kv_capacity_tokens,
        "window": {
            "start_s": lo, "end_s": hi, "duration_s": dur,
            "note": note,
        },
        "requests": {
            "arrived": int(n - (r.status == PENDING).sum()),
            "not_arrived": int((r.status == PENDING).sum()),
            "completed": int(done.sum()),
            "rejected": int(rejected.sum()),
            "in_flight": in_flight,
            "rejected_by_reason": reasons,
            "measured": int(measured.sum()),
            "preemptions": int(r.preemptions.sum()),
        },
        "latency_s": {
            "ttft": latency_stats(col["ttft_s"][measured]),
            "tpot": latency_stats(col["tpot_s"][measured]),
            "itl": itl,
            "e2e": latency_stats(col["e2e_s"][measured]),
            "queue": latency_stats(col["queue_s"][measured]),
        },
        "throughput": {
            "output_tokens_per_s": out_tokens / dur,
            "total_tokens_per_s": float((r.prompt[fin_in] + r.output[fin_in]).sum() / dur),
            "input_tokens_per_s": float(r.prompt[fin_in].sum() / dur),
            "good_output_tokens_per_s": float(r.output[fin_in & met].sum() / dur),
            "requests_per_s": float(fin_in.sum() / dur),
        },
        "goodput_requests_per_s": float((met & fin_in).sum() / dur),
        "slo_attainment": float(met[measured].mean()) if measured.any() else None,
        "busy_fraction": {"mean": float(np.mean(busy)) if busy else 0.0, "per_replica": busy},
        "utilisation": utilisation,
        "load": load,
        "truncated_requests": truncated,
        "mean_in_system": float(overlap[admitted].sum() / dur),
        "per_class": per_class,
        "benchmark": benchmark,
        "simulated_s": end,
        "iterations": sum(int(it["start_s"].size) for it in per_replica),
        "windows": windows,
    }
    summary["cost"] = cost_of(summary, s)
    summary["waste"] = waste_of(summary, s)
    summary["warnings"] = _warnings(s, summary)
    return summary


# Overload: over the measured window, arrivals outran what left the system (completed or refused)
# by more than this share, and the backlog grew by at least _MIN_BACKLOG requests. A stable queue
# ends the window holding about what it started with (its mean occupancy, a few requests at
# moderate load), so its shortfall is a vanishing share of a window's arrivals; a queue offered
# more than it can serve grows in proportion to the window, by (1 - capacity / load) of arrivals.
#
# The backlog counts requests in service too, and a continuous-batching server takes every
# arrival into its batch until the batch limit or the KV cache is full: a stable server that
# starts empty fills its batch to its mean occupancy (arrival rate x time in system: 70 requests
# for an L40S at 16 requests/s of chat) in the first seconds, which a short window reads as growth.
# The admission queue (requests arrived and not yet scheduled) tells the two apart: it stays near
# empty in a stable run and grows without bound in an overloaded one, once the batch is full.
# So: overloaded when the backlog rule holds and the admission queue grew by _MIN_BACKLOG or more;
# undetermined when the backlog rule holds but every request of the growth was admitted (the
# batch was still filling: too short a run to tell); stable otherwise. Runs of 240 s (30 s warm-
# up) of chat on one H100 (fp8) and one L40S: the admission queue ended at 0-3 requests at every
# load the run sustained and at 600-2,500 at every load it did not, while 300-request runs of
# the same loads all read as undetermined by the backlog alone (admission queue 0-1).
OVERLOAD_SHORTFALL = 0.05
_MIN_BACKLOG = 10
LOAD_VERDICTS = ("stable", "overloaded", "undetermined")
"""``load.verdict``: what the window says about the offered load (see the rule above)."""


def _load(r: RequestState, lo: float, hi: float, dur: float) -> dict[str, Any]:
    """Arrivals against departures over the window [lo, hi), the backlog and the admission queue
    at its ends, and the verdict (see :data:`OVERLOAD_SHORTFALL`)."""
    arrival = np.where(np.isnan(r.arrival), np.inf, r.arrival)
    # A refused request leaves when it arrives; one still in the system at the end, never.
    leave = np.where(r.status == COMPLETED, r.finish, np.where(r.status == REJECTED, arrival, np.inf))
    # A request leaves the admission queue when first scheduled (a refused one, when it arrives).
    admitted = np.where(r.status == REJECTED, arrival, np.where(np.isnan(r.first_scheduled), np.inf, r.first_scheduled))

    def backlog(t: float, out: np.ndarray) -> int:
        return int(np.count_nonzero(arrival < t) - np.count_nonzero(out < t))

    start, end_ = backlog(lo, leave), backlog(hi, leave)
    w_start, w_end = backlog(lo, admitted), backlog(hi, admitted)
    arrived = int(np.count_nonzero((arrival >= lo) & (arrival < hi)))
    left = arrived - (end_ - start)
    grew = end_ - start >= _MIN_BACKLOG and left < (1 - OVERLOAD_SHORTFALL) * arrived
    verdict = ("overloaded" if w_end - w_start >= _MIN_BACKLOG else "undetermined") if grew else "stable"
    return {
        "overloaded": verdict == "overloaded",
        "verdict": verdict,
        "arrival_rate_per_s": arrived / dur,
        "departure_rate_per_s": left / dur,
        "backlog_at_start": start,
        "backlog_at_end": end_,
        "backlog_growth_per_s": (end_ - start) / dur,
        "waiting_at_start": w_start,
        "waiting_at_end": w_end,
        "rule": (f"overloaded when, over the measured window, completed and refused requests fall more than "
                 f"{OVERLOAD_SHORTFALL:.0%} short of arrivals, the backlog (requests arrived, not yet done) grows "
                 f"by {_MIN_BACKLOG} or more, and so does the admission queue (arrived, not yet scheduled); "
                 f"undetermined when the backlog grows so but the admission queue does not (a batch still "
                 f"filling, as a stable server starting empty does: run longer to tell)"),
    }


_SLICE = 1 << 16  # iterations per slice of the utilisation sums


def _peaks(profile: Profile) -> tuple[float, float] | None:
    """Peak FLOP/s and HBM bytes/s of one GPU for the profile's precision (None for a profile
    with no hardware behind it, such as ``explicit``)."""
    roof = roofline_of(profile)  # a measured profile's FLOPs and bytes are its base roofline's
    return None if roof is None else (roof.peak_flops, roof.peak_bytes_per_s)


def _utilisation(s: Scenario, per_replica: list[dict[str, np.ndarray]], profile: Profile, lo: float, hi: float,
                 dur: float) -> dict[str, Any]:
    """How much of what is provisioned the window's iterations used, averaged over the window's
    wall time (idle time counts as zero) and over replicas: where the busy fraction reads 100%
    for any loaded continuous-batching replica, these show the headroom left."""
    blocks = s.kv_capacity_tokens // s.engine.block_size
    peaks = _peaks(profile)
    kv = seqs = flops = nbytes = 0.0
    for it in per_replica:
        # A slice at a time: a long run's millions of iterations need no full-length temporaries
        # at the summary's peak (each sum is taken slice by slice, in the same order in every mode).
        for at in range(0, it["start_s"].size, _SLICE):
            part = slice(at, at + _SLICE)
            start, length = it["start_s"][part], it["duration_s"][part]
            inside = np.minimum(start + length, hi)  # seconds of each iteration inside [lo, hi)
            np.subtract(inside, np.maximum(start, lo), out=inside)
            np.clip(inside, 0, None, out=inside)
            kv += float(np.dot(inside, it["kv_blocks_used"][part]))
            seqs += float(np.dot(inside, it["seqs"][part]))
            with np.errstate(invalid="ignore", divide="ignore"):
                np.divide(inside, length, out=inside, where=length > 0)  # share of each iteration's work
            inside[length <= 0] = 0.0
            flops += float(np.dot(inside, it["flops"][part]))
            nbytes += float(np.dot(inside, it["bytes"][part]))
    n = max(len(per_replica), 1)
    out: dict[str, Any] = {
        "kv_cache": kv / (n * dur * blocks),
        "batch_slots": seqs / (n * dur * s.engine.max_num_seqs),
        "mfu": None if peaks is None else flops / (n * dur * peaks[0]),
        "mbu": None if peaks is None else nbytes / (n * dur * peaks[1]),
        "note": ("time-averaged over the measured window, idle time included, mean over replicas: kv_cache is "
                 "the share of KV-cache blocks in use, batch_slots the share of engine.max_num_seqs running; "
                 "mfu and mbu are the step model's FLOPs and bytes per GPU against the datasheet peak "
                 "(FLOP/s at the matmul precision, HBM bandwidth); a decode step reads every weight, so mbu "
                 "stays high at low load while kv_cache, batch_slots and mfu grow with it"),
    }
    return out


def first_clause(text: str, width: int | None = None) -> str:
    """``text`` up to its first ';' outside parentheses (a provenance's headline), cut to at most
    ``width`` characters with an ellipsis."""
    depth = 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if ch == ";" and depth == 0:
            text = text[:i]
            break
    return text if width is None or len(text) <= width else text[:width - 1].rstrip() + "…"


def _warnings(s: Scenario, summary: dict[str, Any]) -> list[str]:
    """One line for each way the run's numbers may not mean what a reader assumes."""
    out = []
    load, req = summary["load"], summary["requests"]
    source = summary["profile"]["source"]
    if source.startswith("warning:"):  # a profile labelled a poor fit, used or skipped (calibration.measured)
        out.append("profile " + first_clause(source).removeprefix("warning:").strip())
    if load["overloaded"]:
        p99 = summary["latency_s"]["ttft"]["p99"]
        out.append(f"overloaded: {load['arrival_rate_per_s']:.2f} requests/s arrived but only "
                   f"{load['departure_rate_per_s']:.2f}/s completed over the measured window; the backlog grew "
                   f"from {load['backlog_at_start']:,} to {load['backlog_at_end']:,} requests, so queueing delay"
                   + ("" if p99 is None else f" (ttft p99 {p99:.3g} s)")
                   + " grows with the run's length: this configuration cannot sustain the load")
    elif load["verdict"] == "undetermined":
        out.append(f"undetermined load: {load['arrival_rate_per_s']:.2f} requests/s arrived and "
                   f"{load['departure_rate_per_s']:.2f}/s completed over the measured window; the backlog grew from "
                   f"{load['backlog_at_start']:,} to {load['backlog_at_end']:,} requests, but all in service (the "
                   f"admission queue held {load['waiting_at_end']:,}), as a stable server filling its batch from "
                   "empty also does: the run is too short to tell whether the configuration sustains this load "
                   "(run it longer: workload.duration_s or num_requests, with measurement.warmup_s)")
    if req["rejected"]:
        out.append(f"{req['rejected']:,} requests rejected: "
                   + "; ".join(f"{n:,} {why}" for why, n in req["rejected_by_reason"].items()))
    if summary["truncated_requests"]:
        out.append(f"{summary['truncated_requests']:,} requests were cut to fit the model's context of "
                   f"{s.max_context:,} tokens (prompt first, then output)")
    if req["in_flight"] and s.measurement.horizon_s is not None:
        out.append(f"{req['in_flight']:,} requests were still in flight at the horizon "
                   f"(measurement.horizon_s = {s.measurement.horizon_s:g}): they are not in the latency statistics")
    if req["arrived"] == 0 and req["not_arrived"]:
        out.append(f"no request arrived before measurement.horizon_s = {s.measurement.horizon_s:g}: nothing was "
                   "simulated; raise the horizon past the first arrival")
    elif req["measured"] == 0:
        out.append("no completed request arrived in the measured window: the latency statistics are empty")
    return out
