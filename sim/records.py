"""Records of a run as columnar tables, the summary, and writing them to disk.

Tables are pyarrow (``.to_pandas()`` is there for those who want it). ``SimResult.write`` puts
``requests.parquet``, ``iterations.parquet``, ``timeline.parquet``, ``summary.json`` and the
resolved ``scenario.yaml`` in one directory; same scenario and seed give byte-identical Parquet.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from calibration.profile import Profile
from sim.config import Scenario
from sim.iteration_log import ITERATION_COLUMNS
from sim.metrics import busy_seconds, itl_stats, latency_stats
from sim.state import COMPLETED, PENDING, REJECTED, RUNNING, WAITING, RequestState

if TYPE_CHECKING:
    from sim.replica import ReplicaEngine

__all__ = ["SimResult", "build_result"]

_STATUS = {PENDING: "not_arrived", WAITING: "in_flight", RUNNING: "in_flight", COMPLETED: "completed",
           REJECTED: "rejected"}


@dataclass(frozen=True)
class SimResult:
    """What one simulation produced."""

    scenario: Scenario
    requests: pa.Table
    iterations: pa.Table
    timeline: pa.Table
    summary: dict[str, Any]
    wall_s: float = field(compare=False)

    def write(self, out_dir: str | os.PathLike) -> Path:
        """Write tables, summary and scenario into ``out_dir`` (created if needed); each file goes
        through a temporary name and ``os.replace`` so a crash never leaves half a file."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, table in (("requests", self.requests), ("iterations", self.iterations),
                            ("timeline", self.timeline)):
            tmp = out / f".{name}.parquet.tmp"
            pq.write_table(table, tmp)
            os.replace(tmp, out / f"{name}.parquet")
        for name, text in (("summary.json", json.dumps(self.summary, indent=2) + "\n"),
                           ("scenario.yaml", yaml.safe_dump(self.scenario.to_dict(), sort_keys=False))):
            tmp = out / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, out / name)
        return out


def _request_table(s: Scenario, table: pa.Table, r: RequestState, reject: np.ndarray) -> pa.Table:
    from sim.engine import REJECT_REASONS

    status = np.array([_STATUS[c] for c in range(5)], dtype=object)[r.status]
    reasons = np.array([None] + [REJECT_REASONS[k] for k in sorted(REJECT_REASONS)], dtype=object)[
        np.where(r.status == REJECTED, reject, 0)]
    done = r.status == COMPLETED
    ttft = r.first_token - r.arrival
    e2e = np.where(done, r.finish - r.arrival, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(done & (r.output > 1), (e2e - ttft) / (r.output - 1), np.nan)
    # SLOs per class, vectorised: a missing target is +inf.
    cls = table.column("class").to_numpy(zero_copy_only=False)
    ttft_max, tpot_max, e2e_max = (np.full(cls.size, np.inf) for _ in range(3))
    for c in s.workload.classes:
        m = cls == c.name
        ttft_max[m] = c.slo.ttft_s if c.slo.ttft_s is not None else np.inf
        tpot_max[m] = c.slo.tpot_s if c.slo.tpot_s is not None else np.inf
        e2e_max[m] = c.slo.e2e_s if c.slo.e2e_s is not None else np.inf
    met = done & (ttft <= ttft_max) & (e2e <= e2e_max) & ((r.output <= 1) | (tpot <= tpot_max))
    return pa.table({
        "request_id": table.column("request_id"),
        "class": table.column("class"),
        "priority": r.priority,
        "replica": pa.array(r.replica, mask=r.replica < 0),
        "status": pa.array(status.tolist(), type=pa.string()),
        "reject_reason": pa.array(reasons.tolist(), type=pa.string()),
        "arrival_s": r.arrival,
        "queue_s": r.first_scheduled - r.arrival,
        "ttft_s": ttft,
        "tpot_s": tpot,
        "e2e_s": e2e,
        "prompt_tokens": r.prompt,
        "output_tokens": r.output,
        "preemptions": r.preemptions,
        "slo_met": pa.array(met, mask=~done),
    })


def _iteration_table(engines: Sequence[ReplicaEngine]) -> pa.Table:
    """Every replica's iteration rows, ordered by start time (ties by replica)."""
    parts = []
    for k, e in enumerate(engines):
        cols = e.log.columns()
        parts.append({"replica": np.full(cols["start_s"].size, k, np.int64), **cols})
    names = ["replica", *ITERATION_COLUMNS]
    merged = {c: np.concatenate([p[c] for p in parts]) if parts else np.empty(0) for c in names}
    order = np.lexsort((merged["replica"], merged["start_s"]))
    return pa.table({c: merged[c][order] for c in names})


def _timeline(iters: pa.Table, replicas: int, end: float) -> pa.Table:
    """Busy and idle intervals per replica: consecutive iterations merge into one busy interval."""
    rep = iters.column("replica").to_numpy()
    start = iters.column("start_s").to_numpy()
    stop = np.minimum(start + iters.column("duration_s").to_numpy(), end)  # cut at the horizon
    out: dict[str, list] = {"replica": [], "state": [], "start_s": [], "end_s": []}
    for k in range(replicas):
        m = rep == k
        s, e = start[m], stop[m]
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
    """Inter-token gaps (values, multiplicities) of the tokens emitted in [lo, hi)."""
    vals, wts = [], []
    for e in engines:
        itl = e.log.itl_columns()
        keep = (itl["time"] >= lo) & (itl["time"] < hi)
        vals.append(itl["value"][keep])
        wts.append(itl["count"][keep])
        for x, tx in zip(e.log.itl_extra, e.log.itl_extra_time):
            if lo <= tx < hi:
                vals.append(x)
                wts.append(np.ones(x.size, np.int64))
    return (np.concatenate(vals), np.concatenate(wts)) if vals else (np.empty(0), np.empty(0, np.int64))


def build_result(s: Scenario, table: pa.Table, r: RequestState, reject: np.ndarray,
                 engines: Sequence[ReplicaEngine], profile: Profile, end: float, wall_s: float) -> SimResult:
    """Assemble tables and summary from the final state of a run."""
    requests = _request_table(s, table, r, reject)
    iters = _iteration_table(engines)
    timeline = _timeline(iters, s.replicas, end)
    summary = _summary(s, requests, iters, r, engines, profile, end)
    return SimResult(s, requests, iters, timeline, summary, wall_s)


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


def _summary(s: Scenario, req: pa.Table, iters: pa.Table, r: RequestState, engines: Sequence[ReplicaEngine],
             profile: Profile, end: float) -> dict[str, Any]:
    n = r.arrival.size
    lo, hi, note = _window(s, r, end)
    dur = max(hi - lo, 1e-12)
    status = req.column("status").to_numpy(zero_copy_only=False)
    done = r.status == COMPLETED
    in_win = (r.arrival >= lo) & (r.arrival <= hi)
    measured = done & in_win
    col = {c: req.column(c).to_numpy() for c in ("ttft_s", "tpot_s", "e2e_s", "queue_s")}

    # Production inside the window.
    it_end = iters.column("start_s").to_numpy() + iters.column("duration_s").to_numpy()
    w_it = (it_end >= lo) & (it_end < hi)
    out_tokens = int(iters.column("tokens_out").to_numpy()[w_it].sum())
    fin_in = done & (r.finish >= lo) & (r.finish < hi)
    itl_v, itl_w = _itl_samples(engines, lo, hi)
    # Time-average number of requests in the system over the window (for Little's law).
    admitted = (r.status != REJECTED) & (r.status != PENDING)
    leave = np.where(done, r.finish, end)
    overlap = np.clip(np.minimum(leave, hi) - np.maximum(r.arrival, lo), 0, None)
    met = req.column("slo_met").fill_null(False).to_numpy(zero_copy_only=False).astype(bool)

    rep_col = iters.column("replica").to_numpy()
    starts, durs = iters.column("start_s").to_numpy(), iters.column("duration_s").to_numpy()
    busy = [busy_seconds(starts[rep_col == k], durs[rep_col == k], lo, hi) / dur for k in range(s.replicas)]
    reasons = req.column("reject_reason").drop_null().value_counts().to_pylist()

    per_class = {}
    cls = req.column("class").to_numpy(zero_copy_only=False)
    for c in s.workload.classes:
        m = measured & (cls == c.name)
        per_class[c.name] = {
            "completed": int(m.sum()),
            "ttft": latency_stats(col["ttft_s"][m]),
            "tpot": latency_stats(col["tpot_s"][m]),
            "e2e": latency_stats(col["e2e_s"][m]),
            "slo_attainment": float(met[m].mean()) if m.any() else None,
            "goodput_requests_per_s": float((met & fin_in & (cls == c.name)).sum() / dur),
        }

    return {
        "scenario": s.name,
        "seed": s.seed,
        "profile": profile.provenance.as_dict(),
        "replicas": s.replicas,
        "gpus": s.replicas * s.tp,
        "kv_capacity_tokens_per_replica": s.kv_capacity_tokens,
        "window": {
            "start_s": lo, "end_s": hi, "duration_s": dur,
            "note": note,
        },
        "requests": {
            "arrived": int(n - (status == "not_arrived").sum()),
            "not_arrived": int((status == "not_arrived").sum()),
            "completed": int(done.sum()),
            "rejected": int((status == "rejected").sum()),
            "in_flight": int((status == "in_flight").sum()),
            "rejected_by_reason": {d["values"]: int(d["counts"]) for d in reasons},
            "measured": int(measured.sum()),
            "preemptions": int(r.preemptions.sum()),
        },
        "latency_s": {
            "ttft": latency_stats(col["ttft_s"][measured]),
            "tpot": latency_stats(col["tpot_s"][measured]),
            "itl": itl_stats(itl_v, itl_w),
            "e2e": latency_stats(col["e2e_s"][measured]),
            "queue": latency_stats(col["queue_s"][measured]),
        },
        "throughput": {
            "output_tokens_per_s": out_tokens / dur,
            "total_tokens_per_s": float((r.prompt[fin_in] + r.output[fin_in]).sum() / dur),
            "requests_per_s": float(fin_in.sum() / dur),
        },
        "goodput_requests_per_s": float((met & fin_in).sum() / dur),
        "slo_attainment": float(met[measured].mean()) if measured.any() else None,
        "busy_fraction": {"mean": float(np.mean(busy)) if busy else 0.0, "per_replica": busy},
        "mean_in_system": float(overlap[admitted].sum() / dur),
        "per_class": per_class,
        "simulated_s": end,
        "iterations": int(iters.num_rows),
    }
