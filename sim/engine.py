"""The discrete-event kernel: a source releases requests, a router places them, replicas run.

``simulate`` is the whole run: draw the request table, refuse requests that can never be
served (counted, never dropped), run SimPy until every request is done or the horizon is
reached, and hand the state to :mod:`sim.records` and :mod:`sim.metrics`.
"""

from __future__ import annotations

import heapq
import time
from typing import Callable, Generator

import numpy as np
import pyarrow as pa
import simpy

from sim.config import Scenario
from sim.records import SimResult, build_result
from sim.replica import ReplicaEngine
from sim.routing import make_router
from sim.scheduling import make_scheduler
from sim.state import REJECTED, WAITING, ReplicaState, RequestState
from workloads import REQUEST_SCHEMA, generate

__all__ = ["REJECT_REASONS", "simulate"]

# Codes stored per rejected request, and what they mean.
REJECT_REASONS = {
    1: "longer than the model's context",
    2: "needs more KV blocks than a replica has",
    3: "prompt + output exceed max_num_batched_tokens without chunked prefill",
}

ProgressFn = Callable[[int, int], None]


def _reject_codes(s: Scenario, prompt: np.ndarray, output: np.ndarray, total_blocks: int) -> np.ndarray:
    """Why each request can never be served (0: it can). A request must fit whole in the KV cache
    of one replica; without chunked prefill, a recompute re-prefills prompt and output together,
    so the two must fit one iteration's budget (as vLLM requires of max_model_len)."""
    codes = np.zeros(prompt.size, np.int8)
    kv_len = prompt + output - 1
    if not s.engine.chunked:
        codes[kv_len > s.engine.max_num_batched_tokens] = 3
    codes[-(-kv_len // s.engine.block_size) > total_blocks] = 2
    codes[prompt + output > s.max_context] = 1
    return codes


class _Run:
    """Wiring of one simulation: the source process and the router's central queue."""

    def __init__(self, s: Scenario, table: pa.Table):
        self.s = s
        self.env = simpy.Environment()
        arrival = table.column("arrival_s").to_numpy()
        prompt = table.column("prompt_tokens").to_numpy()
        output = table.column("output_tokens").to_numpy()
        self.reqs = RequestState(arrival, prompt, output, table.column("priority").to_numpy())
        self.profile = s.build_profile()
        self.total_blocks = s.kv_capacity_tokens // s.engine.block_size
        self.reject = _reject_codes(s, prompt, output, self.total_blocks)
        e = s.engine
        self.states = [ReplicaState(k, self.total_blocks, self.reqs) for k in range(s.replicas)]
        self.engines = [
            ReplicaEngine(self.env, st, make_scheduler(e.scheduler, max_num_seqs=e.max_num_seqs,
                                                       max_num_batched_tokens=e.max_num_batched_tokens,
                                                       block_size=e.block_size, chunked=e.chunked),
                          self.profile, self._on_finish)
            for k, st in enumerate(self.states)
        ]
        self.router = make_router(s.router.policy)
        self.max_out = s.router.max_outstanding_per_replica
        self.central: list[tuple[int, int]] = []
        self.all_replicas = list(range(s.replicas))
        self.finished = 0
        self.env.process(self._source())

    def _eligible(self) -> list[int]:
        if self.max_out is None:
            return self.all_replicas
        return [k for k, st in enumerate(self.states) if st.outstanding < self.max_out]

    def _send(self, i: int, k: int) -> None:
        self.reqs.replica[i] = k
        self.states[k].enqueue(i)
        self.engines[k].wake()

    def _source(self) -> Generator[simpy.Event, None, None]:
        env, arrival, reject, r = self.env, self.reqs.arrival, self.reject, self.reqs
        for i in range(arrival.size):
            dt = arrival[i] - env.now
            if dt > 0:
                yield env.timeout(dt)
            if reject[i]:
                r.status[i] = REJECTED
                self.finished += 1
                continue
            eligible = self._eligible()
            if eligible:
                self._send(i, self.router.choose(self.states, eligible))
            else:
                r.status[i] = WAITING  # arrived, held in the router's central queue
                heapq.heappush(self.central, (int(r.priority[i]), i))

    def _on_finish(self, replica: int, count: int) -> None:
        self.finished += count
        while self.central:
            eligible = self._eligible()
            if not eligible:
                break
            _, i = heapq.heappop(self.central)
            self._send(i, self.router.choose(self.states, eligible))

    def run(self, progress: ProgressFn | None) -> float:
        """Run to the horizon or until every request has ended; return the end time."""
        env, n = self.env, self.reqs.arrival.size
        horizon = self.s.measurement.horizon_s
        if progress is None:
            env.run(until=horizon)
            return self._end_time()
        # In slices, to report progress. (SimPy leaves a stale event behind each run(until=t),
        # so "no events left" is no test of the end: every request ending is.)
        span = horizon or (float(self.reqs.arrival[-1]) if n else 1.0)
        step = max(span / 200.0, 1e-6)
        stalled, last = 0, -1
        while self.finished < n and (horizon is None or env.now < horizon):
            env.run(until=env.now + step if horizon is None else min(env.now + step, horizon))
            progress(self.finished, n)
            moved = self.finished + sum(len(e.log.start) for e in self.engines)
            stalled = stalled + 1 if moved == last else 0
            last = moved
            if stalled > 10_000:
                raise RuntimeError(f"simulation stalled at t={env.now:.3f} s with {n - self.finished} requests unfinished")
        progress(self.finished, n)
        return self._end_time()

    def _end_time(self) -> float:
        """The horizon while work was left, or else the last thing that happened: an iteration's end or an arrival
        (never a progress slice's boundary, so results do not depend on progress reporting)."""
        horizon = self.s.measurement.horizon_s
        if horizon is not None and self.finished < self.reqs.arrival.size:
            return float(horizon)
        ends = [e.log.start[-1] + e.log.duration[-1] for e in self.engines if e.log.start]
        last_arrival = float(self.reqs.arrival[-1]) if self.reqs.arrival.size else 0.0
        return float(max(ends + [last_arrival]))


def _checked(table: pa.Table) -> pa.Table:
    """A user-supplied RequestTable, cast to the schema and checked, or a one-line ValueError."""
    missing = [f.name for f in REQUEST_SCHEMA if f.name not in table.column_names]
    if missing:
        raise ValueError(f"request table lacks column(s) {', '.join(missing)}; needs {', '.join(REQUEST_SCHEMA.names)}")
    table = table.select(REQUEST_SCHEMA.names).cast(REQUEST_SCHEMA)
    for name in REQUEST_SCHEMA.names:
        if table.column(name).null_count:
            raise ValueError(f"request table column {name!r} has {table.column(name).null_count} null value(s)")
    arrival = table.column("arrival_s").to_numpy()
    if arrival.size and (not np.isfinite(arrival).all() or arrival.min() < 0 or (np.diff(arrival) < 0).any()):
        raise ValueError("request table column 'arrival_s' must be finite, >= 0 and sorted ascending")
    for name in ("prompt_tokens", "output_tokens"):
        low = table.column(name).to_numpy().min() if table.num_rows else 1
        if low < 1:
            raise ValueError(f"request table column {name!r} has value {low}: token counts must be >= 1")
    return table


def simulate(scenario: Scenario, *, requests: pa.Table | None = None,
             progress: ProgressFn | None = None) -> SimResult:
    """Simulate ``scenario`` and return its records and summary.

    ``requests`` replaces the scenario's generated workload with a RequestTable of your own
    (columns as in :data:`workloads.REQUEST_SCHEMA`, sorted by ``arrival_s``). ``progress`` is
    called now and then with (requests finished, requests in all).
    """
    wall = time.perf_counter()
    if requests is None:
        table = generate(scenario.workload, scenario.seed, scenario.max_context)
    else:
        table = _checked(requests)
    run = _Run(scenario, table)
    end = run.run(progress)
    return build_result(scenario, table, run.reqs, run.reject, run.engines, run.profile, end,
                        time.perf_counter() - wall)
