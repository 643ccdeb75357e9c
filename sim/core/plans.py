"""Plans: one replica's iterations stepped many at a time, with the results of stepping one by one.

Stepping every iteration through SimPy costs more than the iteration's arithmetic, and most
iterations of a loaded replica change nothing but token counts. So, where the scheduler says how
its batches repeat (:func:`sim.core.scheduling.plan_claim`), the replica loop
(:mod:`sim.core.replica`) lets a :class:`Planner` plan ahead:

- iteration 0 is whatever the scheduler forms (admissions, prefill chunks, decodes), priced by
  the profile's ``step`` and committed at once: nothing outside the replica reads a request's
  token counts, so committing them early changes nothing but when the work is done;
- if after it every running request decodes (one token short of its next) and nothing waits to be
  admitted, the following iterations are decodes of every running request, which leave the batch
  as they complete: the *continuation*, priced at once by the profile's ``decode_steps``
  (:class:`calibration.profile.DecodeStepsProfile`, equal bit for bit to ``step`` of each
  iteration's batch), up to the last completion, the last iteration whose new KV blocks fit
  (counted as if nothing freed any: never too far; with blocks reserved at admission decodes take
  none), or a look-ahead limit. While a request waits (blocked for blocks or slots), a completion
  could admit it, so then the continuation ends at the first completion (unless nothing joins a
  batch in flight: static batching).

The loop then waits for the plan's end with one timeout. A request routed to this replica
meanwhile cuts the plan at the iteration boundary where stepping one by one would have scheduled
it (the wait is moved there; nothing is thrown into the process). Completions inside a plan reach
the router (its load array, follow-up requests, the central queue) when they happen (a timeout at
their iteration's end, or an entry in a heap the router drains before it routes by load), so
everything outside sees them when stepping would. Iteration ends are the running float sums SimPy
forms stepping one by one, so results are those of stepping one by one
(``tests/test_decode_runs.py``). With one replica, an arrival already scheduled during iteration 0
means no continuation is planned (it would be cut at once), and a plan ends where the next arrival
lands. With several, where the next arrival goes is not known ahead, so a continuation with
nothing waiting is planned at iteration 0's end, if nothing arrived meanwhile. A plan never
commits iteration 0 past a horizon: an iteration that would end at or after it is stepped on its
own, and :meth:`Planner.settle` closes a continuation the horizon falls in.

**The interface to the loop.** Each iteration the loop asks :meth:`Planner.how` whether to step it
(``STEP``), step it and plan a continuation at its end (``LATER``: then :meth:`Planner.later`), or
commit it at its start as a plan's iteration 0 (``AHEAD``: then :meth:`Planner.ahead`). A plan
found is started with :meth:`Planner.start`, which returns the event to wait on, and
:meth:`Planner.close` commits it up to where it ends (its last iteration, or a cut). Between them,
:meth:`Planner.cut` moves the plan's end for work that arrived, and :meth:`Planner.view` says what
policies see of the replica (:mod:`sim.core.view`).

**Ties.** An event at *exactly* an iteration boundary is ordered by SimPy's event ids when
stepping: the one scheduled first goes first. Plans do the same for a request arriving at a
boundary (it is seen there if the event that brings it was created before stepping would have
scheduled the iteration ending there; a completion routing it here counts as before) and for a
completion at the time of an arrival routed by load. Two ties remain approximate: a request
released exactly at the boundary before the one it lands on (created at the same instant as that
iteration would have been: taken as after), and, among several replicas, a plan's end or a
completion's timeout against another replica's event at the same time. With continuous arrival
times none of these occur; the tests check exact ties on one replica.
"""

from __future__ import annotations

import heapq
import itertools
from functools import partial
from typing import Callable, NamedTuple

import numpy as np
import simpy

from calibration.profile import BatchShape, DecodeSteps, Profile
from sim.core.fast import ONE, constant, running_sum, total
from sim.core.iteration_log import IterationLog, KVSpan
from sim.core.scheduling import PlanClaim
from sim.core.scheduling.blocks import blocks_for
from sim.core.simpy_compat import event_id, redirect, schedule_at
from sim.core.state import ReplicaState

__all__ = ["AHEAD", "LATER", "LOOKAHEAD", "STEP", "Early", "Plan", "Planner", "timeout_at"]

_ORDER = itertools.count()  # tie-break of equal times in the shared heap of pending completions

# How many iterations a continuation looks ahead at most. A plan that reaches it uncut costs a
# new plan; looking further costs numpy work over iterations an arrival mostly cuts off, and
# completions to tell that never come. 32 was fastest for the benchmark suite (16 to 128 tried).
LOOKAHEAD = 32
# Without decode_steps each iteration of a continuation is priced through step(): look less far.
STEP_PRICED_LOOKAHEAD = 8

# What the loop does with an iteration (Planner.how).
STEP = 0   # step it on its own
LATER = 1  # step it, then plan a continuation at its end if nothing arrived meanwhile
AHEAD = 2  # commit it at its start as a plan's iteration 0


def timeout_at(env: simpy.Environment, t: float) -> simpy.Event:
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
    return schedule_at(env, t)


class Plan:
    """A plan in flight: iteration 0 (committed) and its continuation of ``k`` decode iterations.

    The requests, after iteration 0:

    - ``run``: the running requests, in admission order;
    - ``comp``, ``blocks``: their computed tokens and KV blocks;
    - ``rem``: the continuation iteration each completes in (past ``k``: not in this plan), and
      ``first``, the earliest of them;
    - ``slack``: the free token slots in each one's last block (grow mode; None: blocks reserved).
      A request takes a block at iterations slack + 1, slack + 1 + block size, ...;
    - ``used0``: the KV blocks in use;
    - ``uniform``: every one emitted its last token at iteration 0's end, so all the inter-token
      gaps of a continuation iteration are one.

    Per continuation iteration: ``seqs``, ``ctx`` (their contexts' sum), ``seconds``, ``flops`` and
    ``nbytes`` (None: left to the iteration log). ``ends``: end times, ``ends[0]`` iteration 0's and
    ``ends[m]`` continuation iteration m's. ``start``, ``stamp``: when the plan began, and a SimPy
    id taken then (where stepping would have scheduled iteration 0's end; it orders ties).
    ``kv0``, ``seqs0``: iteration 0's KV blocks in use and sequences (what the view shows during it).

    Completions: ``done0``, iteration 0's; ``marks``, the plan iterations before ``k`` with
    completions, which are told to the router at their own time; ``told``, the last of them told
    so far (-1: none)."""

    __slots__ = ("run", "comp", "blocks", "rem", "first", "slack", "seqs", "seconds", "flops", "nbytes", "ends",
                 "used0", "k", "done0", "marks", "told", "uniform", "stamp", "ctx", "start", "kv0", "seqs0")

    def __init__(self, run: np.ndarray, comp: np.ndarray, blocks: np.ndarray, rem: np.ndarray, first: int,
                 slack: np.ndarray | None, used0: int, k: int):
        self.run, self.comp, self.blocks, self.rem, self.first, self.slack = run, comp, blocks, rem, first, slack
        self.used0, self.k = used0, k
        self.told = -1


class Early(NamedTuple):
    """An iteration committed at its start and stepped alone (a plan that found no continuation):
    what :meth:`Planner.view` shows until it ends. ``stamp``: the SimPy id taken just before its end
    was scheduled, which orders an event at that very time against it."""

    end: float
    kv: int
    seqs: int
    stamp: int


class Planner:
    """Plans ahead for one replica's loop (the interface is in the module docstring).

    ``claim``: how the scheduler's batches repeat; ``decode_steps``: the profile's vectorised decode
    pricing (None: each iteration priced through ``step``); ``tell``: how completions inside a plan
    reach the router (see :class:`sim.core.run.Run`): ``"events"``, a timeout at each (follow-up
    requests and the central queue act on them at once); ``"pending"``, an entry in the shared heap
    ``pending`` it drains before routing by load; ``"commit"``, when the plan's iterations are
    committed (nothing reads them sooner). ``next_arrival``: with one replica, ``[when the source
    releases its next request]``, which says whether an arrival will cut a plan during its
    iteration 0 anyway (then planning the continuation would be work thrown away); only a hint, it
    never changes results."""

    def __init__(self, env: simpy.Environment, state: ReplicaState, profile: Profile, log: IterationLog,
                 on_finish: Callable[[int, np.ndarray], None], claim: PlanClaim, decode_steps: DecodeSteps | None,
                 horizon: float | None, tell: str, pending: list | None, next_arrival: list[float] | None):
        self.env, self.state, self.profile, self.log, self.on_finish = env, state, profile, log, on_finish
        self.horizon = horizon
        self._grow = claim.mode == "grow"  # plans allocate blocks as requests grow ("reserved": they do not)
        self._open = not claim.closed  # a completion may admit a waiting request (static: not until the batch ends)
        self._max_decodes = claim.max_decodes
        self._decode_steps = decode_steps
        self._tell_mode = tell
        self._pending = pending
        self._next_arrival = next_arrival
        self._lookahead = LOOKAHEAD if decode_steps is not None else STEP_PRICED_LOOKAHEAD
        bs = self._bs = log.block_size
        self._bs0 = constant(bs)
        self._phase = np.arange(LOOKAHEAD) % bs  # (m - 1) mod block size, for m = 1, 2, ...
        self._m = np.arange(1, LOOKAHEAD + 1)
        self._empty = np.empty(0, np.int64)
        self.process: simpy.Process | None = None  # the loop's process, whose wait a cut moves
        self.plan: Plan | None = None  # the plan in flight
        self.cut_at = 0  # the last iteration it will do
        self._telling = False  # inside a completion's timeout: a request it routes here is seen next iteration
        self.early: Early | None = None  # see view()

    # -- deciding ---------------------------------------------------------------------------------
    def how(self, every: bool, end: float) -> int:
        """What the loop does with the iteration it formed (ending at ``end``; ``every``: it holds
        every running request): STEP, LATER or AHEAD. Several replicas: an arrival cuts about a
        quarter of plans in iteration 0, and which replica it goes to is not known ahead: with
        nothing waiting, step iteration 0 and plan the continuation at its end (LATER)."""
        if every and self._next_arrival is None and not self.state.waiting:
            return LATER
        if self.horizon is not None and not end < self.horizon:
            return STEP
        return AHEAD

    def later(self, end: float) -> Plan | None:
        """The continuation after an iteration stepped on its own and committed at its end ``end``
        (LATER), or None."""
        plan = self._continuation(end, False)
        if plan is not None:
            plan.uniform = True
            plan.done0 = self._empty
            plan.stamp = -1  # stepping has scheduled the iteration after this one now: ties come after
        return plan

    def ahead(self, end: float, done0: np.ndarray, whole: bool, every: bool, all_emitted: bool) -> Plan | None:
        """The plan whose iteration 0, ending at ``end``, was just committed (AHEAD), or None (the
        loop then steps it alone). ``done0``: its completions; ``whole``: it decoded every running
        request and preempted none; ``all_emitted``: each of its requests emitted a token."""
        plan = None
        soon = self._next_arrival is not None and self._next_arrival[0] <= end
        if not soon and all_emitted and (every or self._all_decode()):
            plan = self._continuation(end, whole and not done0.size)
        if plan is None:
            return None
        plan.uniform = every
        plan.done0 = done0
        if done0.size:
            plan.marks.insert(0, 0)
        plan.stamp = event_id(self.env)  # where stepping schedules iteration 0's end
        return plan

    def start(self, plan: Plan, kv0: int, seqs0: int) -> simpy.Event:
        """Put ``plan`` in flight (its iteration 0 held ``kv0`` blocks and ``seqs0`` sequences) and
        return the event the loop waits on: the plan's end, which a cut may move."""
        self.plan, self.cut_at = plan, plan.k
        plan.start = self.env.now
        plan.kv0, plan.seqs0 = kv0, seqs0
        if plan.marks:
            if self._tell_mode == "events":
                self._tell_next(plan, 0)
            elif self._tell_mode == "pending":
                self._push_pending(plan, 0)
        return timeout_at(self.env, float(plan.ends[plan.k]))

    def close(self) -> None:
        """The plan's wait is over: commit its iterations up to where it ends now."""
        self._commit_run(self.cut_at, self.cut_at)

    def _all_decode(self) -> bool:
        """Whether every running request is one token short of emitting, past its prefill (for
        batches that left some running requests out: prefill-first's admissions)."""
        r, run = self.state.reqs, self.state.run
        num = r.num_tokens[run]
        return bool((num - r.computed[run] == 1).all() and (r.prefill_target[run] < num).all())

    def _continuation(self, end: float, whole: bool) -> Plan | None:
        """Plan the decode iterations after an iteration 0 ending at ``end`` (its tokens committed,
        every running request decoding next); None when not one can be planned. ``whole``:
        iteration 0 decoded every running request, preempted and completed none, so a request still
        waiting could not be admitted and cannot be until a completion."""
        st, r = self.state, self.state.reqs
        run = st.run
        b = run.size
        if not b or (self._max_decodes is not None and b > self._max_decodes):
            return None
        grow = self._grow
        rem = r.output[run] - r.generated[run]
        left = rem.tolist()  # Python's min and max on a list beat numpy's reductions on ~40 elements
        first = min(left)
        if st.waiting and self._open:
            if not whole:
                return None
            k = first  # the first completion could admit it
        else:
            k = max(left)
        k = min(k, self._lookahead)
        comp = r.computed[run]
        blocks = r.blocks[run]
        used0 = st.total_blocks - st.free_blocks
        slack = None
        if grow:
            bs = self._bs
            slack = blocks * self._bs0 - comp
            if max(slack.tolist()) >= bs:
                return None
            if b * ((k - 1) // bs + 1) > st.free_blocks:  # the blocks may run out within k iterations
                # Blocks taken by iteration m's end if nothing completed (periodic in m): stop at the
                # last iteration whose blocks fit, as if nothing completed (never too far).
                need = running_sum(np.bincount(slack, minlength=bs)[self._phase[:k]])
                k = int(need.searchsorted(st.free_blocks, side="right"))
                if not k:
                    return None
        p = Plan(run, comp, blocks, rem, first, slack, used0, k)
        # Sequences and Σ context per iteration m = 1..k: request i decodes at context comp_i + m
        # while m <= rem_i.
        m = self._m[:k]
        c0 = float(total(comp))
        ends_at = None
        if first > k:
            seqs = np.full(k, b)
            ctx = m * b + c0
        else:
            rc = np.minimum(rem, k + 1)
            ends_at = np.bincount(rc, minlength=k + 2)
            seqs = b - running_sum(ends_at[:k])
            ctx = (c0 - running_sum(np.bincount(rc, weights=comp, minlength=k + 2)[:k])) + m * seqs
        p.seqs = seqs
        p.ctx = ctx
        if self._decode_steps is not None:  # FLOPs and bytes later, in bulk (IterationLog.work)
            p.seconds, p.flops, p.nbytes = self._decode_steps(seqs, ctx, False)
        else:  # a profile without decode_steps: price each iteration through step()
            empty = self._empty
            costs = [self.profile.step(BatchShape(empty, empty, comp[rem >= j] + j)) for j in range(1, k + 1)]
            p.seconds, p.flops, p.nbytes = (np.array([getattr(c, a) for c in costs], np.float64)
                                            for a in ("seconds", "flops", "bytes"))
        # End times: the running sums SimPy forms stepping one by one, in the same order.
        ends = np.empty(k + 1)
        ends[0] = end
        ends[1:] = p.seconds
        running_sum(ends, out=ends)
        p.ends = ends
        if self._next_arrival is not None:
            hint = self._next_arrival[0]
            # One replica: end at the boundary where the next arrival would cut the plan (ending
            # a plan early is always exact: the loop steps on from there as it would anyway).
            p.k = k = min(k, int(ends.searchsorted(hint, side="left")))
        # Iterations 1..k-1 with completions (none complete in "iteration 0" of rc: every rem >= 1).
        p.marks = [] if ends_at is None or self._tell_mode == "commit" else np.flatnonzero(ends_at[:k]).tolist()
        return p

    # -- while a plan runs ------------------------------------------------------------------------
    def boundary(self, p: Plan, created: tuple[float, int] | None) -> int:
        """The boundary of plan ``p`` at which stepping one by one would handle an event that
        happens now and was created at ``created`` (None: now): the first boundary at or after now;
        at a boundary exactly, that one if stepping would have handled the event before the
        iteration ending there (the rule :meth:`cut` states), else the next."""
        now = self.env.now
        ends = p.ends
        j = int(ends.searchsorted(now, side="left"))
        if j <= p.k and ends[j] == now and not self._telling:
            if created is None:
                j += 1
            elif j == 0:
                j += created[1] > p.stamp
            else:
                j += created[0] >= ends[j - 1]
        return j

    def view(self, created: tuple[float, int] | None) -> tuple[int, int] | None:
        """(KV blocks in use, sequences running) as stepping one by one would show them now, to an
        event created at ``created`` (its time and SimPy id; None: created now), while a plan or an
        early-committed iteration is in flight; None when neither is (the replica's state is then
        what stepping shows).

        Stepping allocates an iteration's blocks when it is scheduled and frees a completed
        request's at the iteration's end, so in the middle of an iteration the view is that
        iteration's row of the log (its ``kv_blocks_used``). At a boundary exactly, it is the
        iteration before it when stepping would have handled the event first (the rule of
        :meth:`cut`), else the one after it."""
        p = self.plan
        if p is None:
            e = self.early  # an iteration committed at its start and stepped alone
            now = self.env.now
            if e is not None and (now < e.end or (now == e.end and created is not None and created[1] < e.stamp)):
                return e.kv, e.seqs
            return None
        m = min(self.boundary(p, created), p.k)  # the iteration in flight, as stepping would see it
        if m == 0:
            return p.kv0, p.seqs0
        gone = p.rem < m  # completed in an earlier iteration of the plan: blocks freed
        used = p.used0 - int(p.blocks[gone].sum())
        if p.slack is not None:  # grow: request i takes a block at iterations slack_i + 1, + block size, ...
            slack = p.slack[~gone]
            used += int(np.maximum((m - 1 - slack) // self._bs + 1, 0).sum())
        return used, int(p.seqs[m - 1])

    def cut(self, created: tuple[float, int] | None) -> None:
        """Work arrived while the plan runs: cut it at the iteration boundary where stepping one by
        one would have scheduled that work.

        That is the first boundary after now; at a boundary exactly (a tie), the one where the work
        arrived if stepping would have seen it first: if a completion here routed it, or if the
        event that brought it (``created``: its creation time and SimPy id) was created before the
        iteration ending now would have been scheduled, at the previous boundary (a creation at
        that very boundary counts as after, which only stepping's event ids could tell apart)."""
        p = self.plan
        assert p is not None and self.process is not None
        j = self.boundary(p, created)
        if j < self.cut_at:
            self.cut_at = j
            redirect(self.process, timeout_at(self.env, float(p.ends[j])))  # the wait moves to the new end

    # -- completions inside a plan ------------------------------------------------------------------
    def _tell_next(self, plan: Plan, pos: int) -> None:
        """Schedule the timeout that tells the router of the completions at plan iteration ``marks[pos]``."""
        ev = timeout_at(self.env, float(plan.ends[plan.marks[pos]]))
        ev.callbacks.append(partial(self.tell, plan, pos))

    def _push_pending(self, plan: Plan, pos: int) -> None:
        """Put the completions at plan iteration ``marks[pos]`` in the shared heap the router drains:
        keyed by their time and, for ties, by when stepping would have scheduled that iteration's
        end (its start), which orders it against an arrival at the same time."""
        m = plan.marks[pos]
        start = float(plan.ends[m - 1]) if m else plan.start
        heapq.heappush(self._pending, (float(plan.ends[m]), start, next(_ORDER), self, plan, pos))

    def tell(self, plan: Plan, pos: int, _ev: simpy.Event | None = None) -> None:
        """Tell the router of the completions at plan iteration ``marks[pos]``, now its end time
        has come (unless the plan was cut before it)."""
        m = plan.marks[pos]
        if self.plan is not plan or m > self.cut_at:
            return  # the plan was cut before this iteration
        if pos + 1 < len(plan.marks):  # one at a time: a cut plan leaves no stale ones behind
            if self._tell_mode == "events":
                self._tell_next(plan, pos + 1)
            else:
                self._push_pending(plan, pos + 1)
        plan.told = m
        self._telling = True
        try:
            self.on_finish(self.state.index, plan.done0 if m == 0 else plan.run[plan.rem == m])
        finally:
            self._telling = False

    # -- committing -------------------------------------------------------------------------------
    def _commit_run(self, j: int, started: int) -> None:
        """Commit the first ``j`` iterations of the continuation in flight, log the first
        ``started`` of them (``j``, or one more when the horizon falls inside an iteration) and
        tell the router of completions in them not yet told."""
        p, self.plan = self.plan, None
        assert p is not None
        st, r, log = self.state, self.state.reqs, self.log
        run, ends = p.run, p.ends
        if started:
            log.run(float(ends[0]), p.seconds, ends[1:], p.seqs, KVSpan(p.used0, p.blocks, p.slack, p.rem), started, j, p.ctx,
                    p.flops, p.nbytes)
        late = []  # completions the router has not been told of yet, in the order they happened
        if p.told < 0 and p.done0.size:
            late.append(p.done0)
        if j:
            if p.uniform:  # every gap of iteration m is ends[m] - ends[m - 1]
                log.run_gaps(ends[:j + 1], p.seqs[:j])
            else:
                log.gaps(float(ends[1]), ends[1] - r.last_token[run])
                if j > 1:
                    log.run_gaps(ends[1:j + 1], p.seqs[1:j])
            rem, done = p.rem, None
            if j < p.first:  # none completed: every request did all j
                taken = self._advance(p, j, p.comp + j, float(ends[j]))
            else:
                jj = np.minimum(rem, j)  # iterations each request did
                taken = self._advance(p, jj, p.comp + jj, ends[jj])
                done = rem <= j
            if taken is not None:
                st.free_blocks -= total(taken)
            if done is not None:
                d = run[done]
                st.complete(d, ends[rem[done]], run[~done])
                if p.told >= 0:  # some were told at their own time
                    d = d[rem[done] > p.told]
                if d.size:
                    late.append(d)
        for d in late:
            self.on_finish(st.index, d)

    def _advance(self, p: Plan, did: np.ndarray | int, comp: np.ndarray, last: np.ndarray | float) -> np.ndarray | None:
        """Advance the plan's requests by ``did`` decode iterations each, to ``comp`` computed
        tokens and their last token at ``last``; return the KV blocks each took (grow mode)."""
        r, run = self.state.reqs, p.run
        r.computed[run] = comp
        r.generated[run] += did
        r.num_tokens[run] = comp + ONE  # decoding: one token more than computed
        r.last_token[run] = last
        if p.slack is None:
            return None
        # Each running request holds ceil(computed / block size) blocks (what slack < block size says).
        held = blocks_for(comp, self._bs)
        r.blocks[run] = held
        return held - p.blocks

    def settle(self, horizon: float) -> None:
        """At the end of a run cut at ``horizon``: commit the continuation iterations in flight
        that ended before it and log the one running at it, as stepping one by one would have."""
        if self.plan is None:
            return
        j = int(self.plan.ends.searchsorted(horizon, side="left")) - 1  # iteration 0 ended before it
        self._commit_run(j, min(j + 1, self.cut_at))
