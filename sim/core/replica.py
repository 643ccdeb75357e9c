"""One replica's engine loop: schedule a batch, price it, wait that long, commit its tokens.

One SimPy timeout per iteration stepped on its own, or per plan of many, and one event to wake an
idle replica (STYLE rule 2); all per-request work is numpy over the batch. Plans
(:mod:`sim.core.plans`) step many decode iterations at once with the results of stepping one by
one; the loop asks its :class:`~sim.core.plans.Planner` what to do with each iteration it forms and
otherwise knows nothing of them.
"""
from __future__ import annotations

from typing import Callable, Generator

import numpy as np
import simpy

from calibration.profile import BatchShape, Profile, decode_steps_of
from sim.core.fast import ONE, total
from sim.core.iteration_log import KV_USED, TOKENS_OUT, IterationLog
from sim.core.plans import AHEAD, STEP, Early, Planner
from sim.core.scheduling import BatchScheduler, plan_claim
from sim.core.simpy_compat import event_id
from sim.core.state import ReplicaState

__all__ = ["ReplicaEngine"]

_EMPTY = np.empty(0, np.int64)


class ReplicaEngine:
    """Drives one :class:`ReplicaState` through iterations on the shared SimPy environment.

    ``decode_runs``: plan ahead where the scheduler claims its batches repeat (False: step every
    iteration on its own, the reference plans are tested against); ``horizon``, ``tell``,
    ``pending`` and ``next_arrival`` are the planner's (:class:`~sim.core.plans.Planner`)."""

    def __init__(self, env: simpy.Environment, state: ReplicaState, scheduler: BatchScheduler,
                 profile: Profile, on_finish: Callable[[int, np.ndarray], None], *, decode_runs: bool = True,
                 log: IterationLog | None = None, horizon: float | None = None, tell: str = "events",
                 pending: list | None = None, next_arrival: list[float] | None = None):
        self.env = env
        self.state = state
        self.scheduler = scheduler
        self.profile = profile
        self.on_finish = on_finish
        self.log = log or IterationLog()
        self.horizon = horizon
        self.log.block_size = scheduler.block_size
        decode_steps = self.log.work = decode_steps_of(profile)
        claim = plan_claim(scheduler) if decode_runs else None
        self.planner = None if claim is None else Planner(env, state, profile, self.log, on_finish, claim,
                                                          decode_steps, horizon, tell, pending, next_arrival)
        self._wake: simpy.Event | None = None
        self.process = env.process(self.loop())
        if self.planner is not None:
            self.planner.process = self.process

    # -- what policies see ------------------------------------------------------------------------
    def view(self, created: tuple[float, int] | None = None) -> tuple[int, int]:
        """(KV blocks in use, sequences running) as stepping one by one would show them now, to an
        event created at ``created`` (its time and SimPy id; None: created now), even while a plan
        has committed work ahead of time (:meth:`sim.core.plans.Planner.view`; :mod:`sim.core.view`
        is the policies' side of it)."""
        seen = self.planner.view(created) if self.planner is not None else None
        if seen is not None:
            return seen
        st = self.state
        return st.total_blocks - st.free_blocks, int(st.run.size)

    def wake(self, created: tuple[float, int] | None = None) -> None:
        """Called when work arrives (``created``: when the event that brought it was created, its
        time and SimPy id): resumes the loop if it sleeps, or cuts the plan in flight where stepping
        one by one would have scheduled the work (:meth:`sim.core.plans.Planner.cut`)."""
        planner = self.planner
        if planner is not None and planner.plan is not None:
            planner.cut(created)
        elif self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def settle(self, horizon: float) -> None:
        """At the end of a run cut at ``horizon``: close the plan in flight as stepping would have."""
        if self.planner is not None:
            self.planner.settle(horizon)

    # -- the loop ---------------------------------------------------------------------------------
    def loop(self) -> Generator[simpy.Event, None, None]:
        env, st, r, log, planner = self.env, self.state, self.state.reqs, self.log, self.planner
        while True:
            if not st.run.size and not st.waiting:
                self._wake = env.event()
                yield self._wake
                self._wake = None
                continue
            # Schedule.
            now = env.now
            preempted = st.preemptions
            idx, n = self.scheduler.schedule(st, now)
            if not idx.size:
                raise RuntimeError(f"replica {st.index}: scheduler formed an empty batch with work pending")
            # Price.
            comp = r.computed[idx]
            shape, pre, prefills = self._shape(idx, n, comp)
            cost = self.profile.step(shape)
            # Recomputed tokens: prefill positions below what a preemption threw away (only once
            # this replica has preempted, so a run without preemption pays one integer test).
            redo = int(np.clip(np.minimum(comp + n, r.lost[idx]) - comp, 0, None)[pre].sum()) \
                if prefills and st.preemptions else 0
            row = log.begin(now, cost.seconds, total(shape.prefill_chunk) if prefills else 0, shape.prefill_chunk.size,
                            shape.decode_context.size, st.total_blocks - st.free_blocks, cost.flops, cost.bytes, redo)
            end = now + cost.seconds  # where env.timeout(cost.seconds) fires
            every = idx.size == st.run.size
            how = STEP if planner is None else planner.how(every, end)
            if how != AHEAD:
                # Wait, then commit.
                yield env.timeout(cost.seconds)
                row[TOKENS_OUT], done = self._commit(idx, comp + n, env.now)
                if done.size:
                    self.on_finish(st.index, done)
                if how == STEP or st.waiting or row[TOKENS_OUT] != idx.size:
                    continue
                plan = planner.later(env.now)  # LATER: plan the continuation now, if one can be
                if plan is None:
                    continue
            else:
                # Commit now, as a plan's iteration 0.
                whole = not prefills and every and st.preemptions == preempted
                row[TOKENS_OUT], done0 = self._commit(idx, comp + n, end)
                plan = planner.ahead(end, done0, whole, every, row[TOKENS_OUT] == idx.size)
                if plan is None:
                    # No continuation: wait for iteration 0 alone, showing policies its row meanwhile.
                    planner.early = Early(end, row[KV_USED], idx.size, event_id(env))
                    yield env.timeout(cost.seconds)
                    planner.early = None
                    if done0.size:
                        self.on_finish(st.index, done0)
                    continue
            # Wait for the plan, then commit it.
            yield planner.start(plan, row[KV_USED], idx.size)
            planner.close()

    def _shape(self, idx: np.ndarray, n: np.ndarray, comp: np.ndarray) -> tuple[BatchShape, np.ndarray, int]:
        """The batch's shape for pricing (``n`` new tokens each over ``comp`` computed), which of
        its requests prefill, and how many."""
        pre = comp < self.state.reqs.prefill_target[idx]
        prefills = np.count_nonzero(pre)
        if prefills == idx.size:
            return BatchShape(n, comp, _EMPTY), pre, prefills
        if not prefills:
            return BatchShape(_EMPTY, _EMPTY, comp + ONE), pre, prefills
        if prefills == 1 and pre[-1]:  # one prefill, admitted last (the common case): slices
            return BatchShape(n[-1:], comp[-1:], comp[:-1] + ONE), pre, prefills
        return BatchShape(n[pre], comp[pre], comp[~pre] + ONE), pre, prefills

    def _commit(self, idx: np.ndarray, comp: np.ndarray, t: float) -> tuple[int, np.ndarray]:
        """Record the iteration's computed tokens at its end time ``t``; return the tokens emitted
        and the requests completed (the caller tells the router)."""
        r = self.state.reqs
        r.computed[idx] = comp
        emit = idx[comp == r.num_tokens[idx]]
        if not emit.size:
            return 0, emit
        g = r.generated[emit] + ONE
        r.generated[emit] = g
        if emit.size == idx.size:  # all emitted (the common case): each now holds one token more than it computed
            r.num_tokens[idx] = comp + ONE
        else:
            r.num_tokens[emit] += ONE
        counts = g.tolist()
        firsts = counts.count(1)  # emitted their first token: no gap before it
        if not firsts:
            gaps = t - r.last_token[emit]
        elif counts[-firsts:].count(1) == firsts:  # all at the end (the common case: admitted last)
            r.first_token[emit[-firsts:]] = t
            gaps = t - r.last_token[emit[:-firsts]]
        else:
            later = g > ONE
            r.first_token[emit[~later]] = t
            gaps = t - r.last_token[emit[later]]
        if gaps.size:
            self.log.gaps(t, gaps)
        r.last_token[emit] = t
        done = emit[g == r.output[emit]]
        if done.size:
            self.state.complete(done, t)
        return emit.size, done
