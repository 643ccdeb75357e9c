"""One simulation's SimPy run: a source releases requests, a router places them, replicas run.

:class:`Run` wires the request state, one :class:`~sim.core.replica.ReplicaEngine` per replica,
the router and the central queue, and releases follow-up requests when the ones they follow end;
:func:`sim.engine.simulate` builds it and hands what it leaves to :mod:`sim.results`.
"""

from __future__ import annotations

import heapq
from typing import Any, Callable, Generator

import numpy as np
import pyarrow as pa
import simpy

from sim.config import Scenario
from sim.core.iteration_log import IterationLog
from sim.core.replica import ReplicaEngine
from sim.core.routing import make_router
from sim.core.scheduling import make_scheduler
from sim.core.simpy_compat import event_id
from sim.core.state import REJECTED, WAITING, ReplicaState, RequestState
from sim.core.view import ReplicaViews

__all__ = ["ProgressFn", "Run", "followers", "pred_rows", "reject_codes"]

ProgressFn = Callable[[int, int], None]


def pred_rows(table: pa.Table) -> np.ndarray:
    """Row of each request's predecessor (``after_id`` mapped from request ids to rows); -1 for none."""
    after = table.column("after_id").to_numpy()
    ids = table.column("request_id").to_numpy()
    if not (after >= 0).any():
        return np.full(after.size, -1, np.int64)
    if np.array_equal(ids, np.arange(ids.size)):
        return np.where(after >= 0, after, -1)
    order = np.argsort(ids, kind="stable")
    pos = np.clip(np.searchsorted(ids, after, sorter=order), 0, ids.size - 1)
    return np.where(after >= 0, order[pos], -1)


def followers(table: pa.Table) -> tuple[np.ndarray, np.ndarray] | None:
    """For each row i, the rows released when i ends: ``order[starts[i]:starts[i+1]]`` (CSR)."""
    pred = pred_rows(table)
    fol = np.flatnonzero(pred >= 0)
    if not fol.size:
        return None
    order = fol[np.argsort(pred[fol], kind="stable")]
    starts = np.searchsorted(pred[order], np.arange(pred.size + 1))
    return starts, order



def reject_codes(s: Scenario, prompt: np.ndarray, output: np.ndarray, total_blocks: int) -> np.ndarray:
    """Why each request can never be served (0: it can). A request must fit whole in the KV cache
    of one replica (code 2), which is also what reserving admission needs: a request that passes
    is admitted at the latest when its replica is empty. Without chunked prefill, a recompute
    re-prefills prompt and output together, so the two must fit one iteration's budget (code 3, as
    vLLM requires of max_model_len); under reserving admission nothing is re-prefilled, so only the
    prompt must (code 4). Static batching keeps code 3 (its rule predates reserving admission)."""
    codes = np.zeros(prompt.size, np.int8)
    kv_len = prompt + output - 1
    if not s.engine.chunked:
        if s.engine.admission == "reserve" and s.engine.scheduler != "static":
            codes[prompt > s.engine.max_num_batched_tokens] = 4
        else:
            codes[kv_len > s.engine.max_num_batched_tokens] = 3
    codes[-(-kv_len // s.engine.block_size) > total_blocks] = 2
    codes[prompt + output > s.max_context] = 1
    return codes


class Run:
    """Wiring of one simulation: the source process, releases of follow-up requests, and the
    router's central queue."""

    def __init__(self, s: Scenario, table: pa.Table, decode_runs: bool = True, rows_to: Callable[[int], Any] | None = None):
        self.s = s
        self.env = simpy.Environment()
        arrival = table.column("arrival_s").to_numpy()
        prompt = table.column("prompt_tokens").to_numpy()
        output = table.column("output_tokens").to_numpy()
        self.reqs = RequestState(arrival, prompt, output, table.column("priority").to_numpy())
        self.think = table.column("think_s").to_numpy()
        self.followers = followers(table)
        self.next_seq = 0
        self.profile = s.build_profile()
        self.total_blocks = s.kv_capacity_tokens // s.engine.block_size
        self.reject = reject_codes(s, prompt, output, self.total_blocks)
        e = s.engine
        self.states = [ReplicaState(k, self.total_blocks, self.reqs) for k in range(s.replicas)]
        self.max_out = s.router.max_outstanding_per_replica
        # Completions inside a replica's plan (sim.core.plans) must reach what acts on them when they
        # happen: follow-up requests and the central queue need an event at that time; routing by
        # load among several replicas needs them only when it routes, so they wait in a heap it
        # drains first; one replica has no one to tell before the plan's iterations are committed.
        self.pending: list = []
        # The next arrival the source will release (a hint for one replica's plans, see sim.core.plans.Planner).
        self.next_arrival = [float("inf")]
        tell = ("events" if self.followers is not None or self.max_out is not None
                else "pending" if s.replicas > 1 else "commit")
        self.engines = [
            ReplicaEngine(self.env, st, make_scheduler(e.scheduler, max_num_seqs=e.max_num_seqs,
                                                       max_num_batched_tokens=e.max_num_batched_tokens,
                                                       block_size=e.block_size, chunked=e.chunked,
                                                       admission=e.admission),
                          self.profile, self._on_finish, decode_runs=decode_runs, horizon=s.measurement.horizon_s,
                          tell=tell, pending=self.pending, next_arrival=self.next_arrival if s.replicas == 1 else None,
                          log=IterationLog(rows_to(k) if rows_to is not None else None))
            for k, st in enumerate(self.states)
        ]
        self.router = make_router(s.router.policy)
        self.central: list[tuple[int, int, int]] = []
        self.load = np.zeros(s.replicas, np.int64)  # outstanding (waiting + running) requests per replica
        self.finished = 0
        self._milestone: simpy.Event | None = None  # progress reporting only
        self._target = 0
        self.env.process(self._source())

    def _eligible(self) -> np.ndarray | None:
        """Replicas that may take a request now (None: all of them; empty: none)."""
        if self.max_out is None:
            return None
        return np.flatnonzero(self.load < self.max_out)

    def _send(self, i: int, k: int, created: tuple[float, int]) -> None:
        self.reqs.replica[i] = k
        self.load[k] += 1
        self.states[k].enqueue(i)
        self.engines[k].wake(created)

    def _stamp(self) -> tuple[float, int]:
        """When the event being created now was created: the time, and an id from SimPy's own
        counter, which orders it against every other event as SimPy does (ids skipped are harmless)."""
        return self.env.now, event_id(self.env)

    def _source(self) -> Generator[simpy.Event, None, None]:
        """Release every request that has an arrival time, at that time."""
        env, arrival, upcoming = self.env, self.reqs.arrival, self.next_arrival
        timed = np.flatnonzero(~np.isnan(arrival))
        timed = timed[np.argsort(arrival[timed], kind="stable")]
        created = self._stamp()
        for block in range(0, timed.size, 1 << 16):  # Python values a block at a time, not a million at once
            rows = timed[block:block + (1 << 16)]
            for i, t in zip(rows.tolist(), arrival[rows].tolist()):
                dt = t - env.now
                if dt > 0:
                    created = self._stamp()
                    upcoming[0] = t
                    yield env.timeout(dt)
                self._arrive(i, created)
        upcoming[0] = float("inf")

    def _arrive(self, i: int, created: tuple[float, int]) -> None:
        """Request ``i`` arrives now: refused if it can never be served, else routed or held centrally.
        ``created``: when the event that brings it was created (see ReplicaEngine.wake)."""
        r = self.reqs
        r.arrival[i] = self.env.now
        r.seq[i] = self.next_seq
        self.next_seq += 1
        if self.reject[i]:
            r.status[i] = REJECTED
            self._ended(1)
            self._release_followers(np.array([i]))
            return
        # Completions inside plans up to now: those at this very time only if stepping would have
        # handled them first (their iteration's end scheduled before this arrival's event).
        pending, now = self.pending, self.env.now
        while pending and (pending[0][0] < now or (pending[0][0] == now and pending[0][1] < created[0])):
            _, _, _, planner, plan, pos = heapq.heappop(pending)
            planner.tell(plan, pos)
        if self.max_out is None and self.load.size == 1:  # one replica and no limit: nothing to choose
            self._send(i, 0, created)
            return
        eligible = self._eligible()
        if eligible is None or eligible.size:
            self._send(i, self.router.choose(self.load, eligible, ReplicaViews(self.engines, self.load, created)), created)
        else:
            r.status[i] = WAITING  # arrived, held in the router's central queue
            heapq.heappush(self.central, (int(r.priority[i]), int(r.seq[i]), i))

    def _release_followers(self, done: np.ndarray) -> None:
        """Schedule the requests that follow ``done`` (next turns, a closed-loop user's next
        request): each arrives its think time after its predecessor ended (or was refused)."""
        if self.followers is None:
            return
        starts, order = self.followers
        for i in done.tolist():
            for j in order[starts[i]:starts[i + 1]].tolist():
                created = self._stamp()
                ev = self.env.timeout(float(self.think[j]))
                ev.callbacks.append(lambda _ev, j=j, c=created: self._arrive(j, c))

    def _on_finish(self, replica: int, done: np.ndarray) -> None:
        self._ended(done.size)
        self._release_followers(done)
        self.load[replica] -= done.size
        while self.central:
            eligible = self._eligible()
            if eligible is not None and not eligible.size:
                break
            _, _, i = heapq.heappop(self.central)
            created = self._stamp()
            self._send(i, self.router.choose(self.load, eligible, ReplicaViews(self.engines, self.load, created)), created)

    def run(self, progress: ProgressFn | None) -> float:
        """Run to the horizon or until every request has ended; return the end time."""
        self._advance(progress)
        horizon = self.s.measurement.horizon_s
        for e in self.engines:
            if horizon is not None:
                e.settle(horizon)
            e.log.seal()
        return self._end_time()

    def _advance(self, progress: ProgressFn | None) -> None:
        env, n = self.env, self.reqs.arrival.size
        horizon = self.s.measurement.horizon_s
        if progress is None:
            env.run(until=horizon)
            return
        if horizon is not None:
            # In 200 time slices up to the horizon (run(until=t) cuts exactly as a single run does).
            step = horizon / 200.0
            while self.finished < n and env.now < horizon:
                env.run(until=min(env.now + step, horizon))
                progress(self.finished, n)
        else:
            # Stop every n/200 requests ended: a milestone event succeeded by the request that
            # reaches it, so arrival times (unknown ahead for follow-up requests) do not matter.
            every = max(n // 200, 1)
            while self.finished < n:
                self._target = min(n, self.finished + every)
                self._milestone = env.event()
                try:
                    env.run(until=self._milestone)
                except RuntimeError:  # no events left: whatever has not ended never will
                    break
                finally:
                    self._milestone = None
                progress(self.finished, n)
        progress(self.finished, n)

    def _ended(self, count: int) -> None:
        """Count ``count`` requests as ended (completed or refused); reach a progress milestone."""
        self.finished += count
        m = self._milestone
        if m is not None and self.finished >= self._target and not m.triggered:
            m.succeed()

    def _end_time(self) -> float:
        """The horizon while work was left, or else the last thing that happened: an iteration's end or an arrival
        (never a progress slice's boundary, so results do not depend on progress reporting)."""
        horizon = self.s.measurement.horizon_s
        if horizon is not None and self.finished < self.reqs.arrival.size:
            return float(horizon)
        ends = [e.log.last_end for e in self.engines if e.log.rows]
        arrived = self.reqs.arrival[~np.isnan(self.reqs.arrival)]
        last_arrival = float(arrived.max()) if arrived.size else 0.0
        return float(max(ends + [last_arrival]))
