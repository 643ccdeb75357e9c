"""One replica's engine loop: schedule a batch, price it, wait that long, commit its tokens.

One SimPy timeout per iteration and one event to wake an idle replica (STYLE rule 2); all
per-request work inside an iteration is numpy over the batch.

**Decode runs.** Most iterations of a loaded replica are decode-only and change nothing but
token counts. When an iteration is decode-only and holds every running sequence, and the
scheduler says its next iterations would be the same batch until something changes it
(:attr:`~sim.scheduling.BatchScheduler.decode_run`), the engine prices the whole run at once:
up to the first completion, or the last iteration whose KV blocks fit (the next would preempt).
It waits for the run's end with one timeout; a request routed to this replica meanwhile cuts the
run at the first iteration boundary after its arrival, where stepping one by one would have seen
it. Iteration start times are the same running float sums SimPy forms, and each iteration's
price is the profile's :meth:`decode_steps`, equal bit for bit to its ``step`` of that batch, so
results are those of stepping one by one (``tests/test_decode_runs.py``). An external event at
*exactly* an iteration boundary is taken as just after it, where one-by-one stepping orders such
ties by SimPy's event ids; with continuous arrival times they do not occur.
"""

from __future__ import annotations

import heapq
from typing import Callable, Generator

import numpy as np
import simpy
from simpy.core import NORMAL

from calibration.profile import BatchShape, Profile
from sim.iteration_log import IterationLog
from sim.scheduling import BatchScheduler
from sim.state import COMPLETED, RUNNING, ReplicaState

__all__ = ["ReplicaEngine"]


def _timeout_at(env: simpy.Environment, t: float) -> simpy.Event:
    """A timeout that fires at time ``t`` exactly.

    SimPy schedules at ``now + delay``; a delay that lands exactly on ``t`` exists unless now's
    offset is half an ulp of ``t`` (the sum then rounds to even). Then the event goes straight into
    the environment's queue at ``t``, with the priority and id order a timeout would get."""
    now = env.now
    d = t - now
    for _ in range(8):
        got = now + d
        if got == t:
            return env.timeout(d)
        d = d + (t - got)  # the residual is exact: got is within an ulp or two of t
    ev = simpy.Event(env)
    ev._ok, ev._value = True, None
    heapq.heappush(env._queue, (t, NORMAL, next(env._eid), ev))  # type: ignore[attr-defined]
    return ev


class ReplicaEngine:
    """Drives one :class:`ReplicaState` through iterations on the shared SimPy environment."""

    def __init__(self, env: simpy.Environment, state: ReplicaState, scheduler: BatchScheduler,
                 profile: Profile, on_finish: Callable[[int, np.ndarray], None], *, decode_runs: bool = True,
                 log: IterationLog | None = None):
        self.env = env
        self.state = state
        self.scheduler = scheduler
        self.profile = profile
        self.on_finish = on_finish
        self.log = log or IterationLog()
        mode = getattr(scheduler, "decode_run", None) if decode_runs else None
        self._run_mode = mode  # None: step one by one; "grow": runs allocate blocks; "reserved": they do not
        self._decode_steps = getattr(profile, "decode_steps", None)
        self._wake: simpy.Event | None = None
        # The decode run in flight (None: none) and the index of the last iteration it will do.
        self._run: tuple | None = None
        self._run_cut = 0
        self.process = env.process(self.loop())

    def wake(self) -> None:
        """Called when work arrives: resumes the loop if it sleeps, or cuts a decode run in flight
        at its first iteration boundary after now."""
        if self._run is not None:
            j = int(np.searchsorted(self._run[7], self.env.now, side="right"))  # its iteration end times
            if j < self._run_cut:
                self._run_cut = j
                self.process.interrupt()
        elif self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def loop(self) -> Generator[simpy.Event, None, None]:
        env, st, r, log = self.env, self.state, self.state.reqs, self.log
        empty = np.empty(0, np.int64)
        run_mode = self._run_mode
        while True:
            if not st.run.size and not st.waiting:
                self._wake = env.event()
                yield self._wake
                self._wake = None
                continue
            now = env.now
            preempted = st.preemptions
            idx, n = self.scheduler.schedule(st, now)
            if not idx.size:
                raise RuntimeError(f"replica {st.index}: scheduler formed an empty batch with work pending")
            comp = r.computed[idx]
            pre = comp < r.prefill_target[idx]
            prefills = np.count_nonzero(pre)
            if prefills == idx.size:
                shape = BatchShape(n, comp, empty)
            elif not prefills:
                if run_mode is not None and idx.size == st.run.size and st.preemptions == preempted:
                    yield from self._decode_run(idx, comp, now)
                    continue
                shape = BatchShape(empty, empty, comp + 1)
            else:
                dec = ~pre
                shape = BatchShape(n[pre], comp[pre], comp[dec] + 1)
            cost = self.profile.step(shape)
            row = log.begin(now, cost.seconds, int(shape.prefill_chunk.sum()) if prefills else 0, shape.prefill_chunk.size,
                            shape.decode_context.size, st.total_blocks - st.free_blocks, cost.flops, cost.bytes)
            yield env.timeout(cost.seconds)
            row[5] = self._commit(idx, comp + n, env.now)  # tokens_out

    def _decode_run(self, idx: np.ndarray, comp: np.ndarray, now: float) -> Generator[simpy.Event, None, None]:
        """Run the decode-only batch ``idx`` (already scheduled for one iteration) for as many
        iterations as nothing can change it, in one timeout; see the module docstring."""
        env, st, r = self.env, self.state, self.state.reqs
        b = idx.size
        left = r.output[idx] - r.generated[idx]
        k = int(left.min())  # the run ends with the first completion at the latest
        need = slack = None
        if k > 1 and self._run_mode == "grow":
            # Iteration 1's blocks are allocated. Sequence i has ``slack`` free slots after it, so it
            # takes a new block at iterations 2 + slack, 2 + slack + bs, ...
            bs = self.scheduler.block_size
            slack = r.blocks[idx] * bs - comp - 1
            if int(slack.max()) < bs:
                need = np.bincount(slack, minlength=bs)[np.arange(k - 1) % bs].cumsum()
                k = 1 + int(need.searchsorted(st.free_blocks, side="right"))  # iteration k + 1 would preempt
            else:
                k = 1
        s0 = int(comp.sum())
        context = np.arange(s0 + b, s0 + b * k + 1, b, dtype=np.float64)  # Σ context after each iteration
        if self._decode_steps is not None:
            seconds, flops, nbytes = self._decode_steps(b, context)
        else:  # a profile without decode_steps: price each iteration through step()
            empty = np.empty(0, np.int64)
            costs = [self.profile.step(BatchShape(empty, empty, comp + 1 + j)) for j in range(k)]
            seconds, flops, nbytes = (np.array([getattr(c, a) for c in costs], np.float64)
                                      for a in ("seconds", "flops", "bytes"))
        # Iteration end times: the running sums SimPy forms stepping one by one, in the same order.
        ends = seconds.copy()
        ends[0] += now
        ends.cumsum(out=ends)
        self._run = (idx, comp, left, now, seconds, flops, nbytes, ends, need, slack, k)
        self._run_cut = k - 1
        while True:
            try:
                yield _timeout_at(env, float(ends[self._run_cut]))
                break
            except simpy.Interrupt:  # wake() moved the cut earlier
                continue
        self._commit_run(self._run_cut + 1, self._run_cut + 1)

    def _commit_run(self, j: int, started: int) -> None:
        """Commit the first ``j`` iterations of the decode run in flight and log the first
        ``started`` of them (``j``, or one more when the horizon falls inside an iteration)."""
        assert self._run is not None
        (idx, comp, left, now, seconds, flops, nbytes, ends, need, slack, k), self._run = self._run, None
        st, r, log = self.state, self.state.reqs, self.log
        b = idx.size
        log.run(now, seconds, flops, nbytes, ends, b, st.total_blocks - st.free_blocks, need, started, j)
        if not j:
            return
        if need is not None and j > 1:
            r.blocks[idx] += np.maximum((j - 2 - slack) // self.scheduler.block_size + 1, 0)
            st.free_blocks -= int(need[j - 2])
        r.computed[idx] = comp + j
        r.generated[idx] += j
        r.num_tokens[idx] += j
        log.gaps(float(ends[0]), ends[0] - r.last_token[idx])
        if j > 1:
            log.run_gaps(ends[:j], b)
        t = float(ends[j - 1])
        r.last_token[idx] = t
        if j == k:
            done = idx[left == k]
            if done.size:
                self._complete(done, t)

    def _complete(self, done: np.ndarray, t: float) -> None:
        r, st = self.state.reqs, self.state
        r.status[done] = COMPLETED
        r.finish[done] = t
        st.free_blocks += int(r.blocks[done].sum())
        r.blocks[done] = 0
        st.run = st.run[r.status[st.run] == RUNNING]
        self.on_finish(st.index, done)

    def _commit(self, idx: np.ndarray, comp: np.ndarray, t: float) -> int:
        """Record the iteration's computed tokens at its end time ``t``; return tokens emitted."""
        r = self.state.reqs
        r.computed[idx] = comp
        emit = idx[comp == r.num_tokens[idx]]
        if not emit.size:
            return 0
        g = r.generated[emit] + 1
        r.generated[emit] = g
        r.num_tokens[emit] += 1
        later = g > 1
        if later.all():
            gaps = t - r.last_token[emit]
        else:
            r.first_token[emit[~later]] = t
            gaps = t - r.last_token[emit[later]]
        if gaps.size:
            self.log.gaps(t, gaps)
        r.last_token[emit] = t
        done = emit[g == r.output[emit]]
        if done.size:
            self._complete(done, t)
        return emit.size

    def settle(self, horizon: float) -> None:
        """At the end of a run cut at ``horizon``: commit the iterations of a decode run in flight
        that ended before it and log the one running at it, as stepping one by one would have."""
        if self._run is None:
            return
        j = int(np.searchsorted(self._run[7], horizon, side="left"))  # iterations that ended before it
        self._commit_run(j, min(j + 1, self._run_cut + 1))
