"""One replica's engine loop: schedule a batch, price it, wait that long, commit its tokens.

One SimPy timeout per iteration and one event to wake an idle replica (STYLE rule 2); all
per-request work inside an iteration is numpy over the batch.
"""

from __future__ import annotations

from typing import Callable, Generator

import numpy as np
import simpy

from calibration.profile import BatchShape, Profile
from sim.scheduling import BatchScheduler
from sim.state import COMPLETED, RUNNING, ReplicaState, RequestState

__all__ = ["IterationLog", "ReplicaEngine"]


class IterationLog:
    """Columns of the per-iteration table for one replica, appended as plain Python scalars
    (cheaper than growing numpy arrays one element at a time).

    Inter-token gaps are kept compactly: an iteration whose emitting sequences all waited the same
    time adds one (gap, count, time) entry; any other adds its array of gaps (with its time)."""

    __slots__ = ("start", "duration", "prefill_tokens", "prefill_seqs", "decode_seqs", "tokens_out",
                 "kv_blocks_used", "flops", "bytes", "itl_value", "itl_count", "itl_time", "itl_extra",
                 "itl_extra_time")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, [])


class ReplicaEngine:
    """Drives one :class:`ReplicaState` through iterations on the shared SimPy environment."""

    def __init__(self, env: simpy.Environment, state: ReplicaState, scheduler: BatchScheduler,
                 profile: Profile, on_finish: Callable[[int, np.ndarray], None]):
        self.env = env
        self.state = state
        self.scheduler = scheduler
        self.profile = profile
        self.on_finish = on_finish
        self.log = IterationLog()
        self._wake: simpy.Event | None = None
        self.process = env.process(self.loop())

    def wake(self) -> None:
        """Called when work arrives; resumes the loop if it sleeps."""
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def loop(self) -> Generator[simpy.Event, None, None]:
        env, st, r, log = self.env, self.state, self.state.reqs, self.log
        empty = np.empty(0, np.int64)
        while True:
            if not st.run.size and not st.waiting:
                self._wake = env.event()
                yield self._wake
                self._wake = None
                continue
            now = env.now
            idx, n = self.scheduler.schedule(st, now)
            if not idx.size:
                raise RuntimeError(f"replica {st.index}: scheduler formed an empty batch with work pending")
            comp = r.computed[idx]
            pre = comp < r.prefill_target[idx]
            if pre.all():
                shape = BatchShape(n, comp, empty)
            elif not pre.any():
                shape = BatchShape(empty, empty, comp + 1)
            else:
                dec = ~pre
                shape = BatchShape(n[pre], comp[pre], comp[dec] + 1)
            cost = self.profile.step(shape)
            log.start.append(now)
            log.duration.append(cost.seconds)
            log.prefill_tokens.append(int(shape.prefill_chunk.sum()))
            log.prefill_seqs.append(shape.prefill_chunk.size)
            log.decode_seqs.append(shape.decode_context.size)
            log.kv_blocks_used.append(st.total_blocks - st.free_blocks)
            log.flops.append(cost.flops)
            log.bytes.append(cost.bytes)
            yield env.timeout(cost.seconds)
            log.tokens_out.append(self._commit(idx, comp + n, env.now))

    def _commit(self, idx: np.ndarray, comp: np.ndarray, t: float) -> int:
        """Record the iteration's computed tokens at its end time ``t``; return tokens emitted."""
        r, st, log = self.state.reqs, self.state, self.log
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
            lo = gaps.min()
            if lo == gaps.max():
                log.itl_value.append(float(lo))
                log.itl_count.append(gaps.size)
                log.itl_time.append(t)
            else:
                log.itl_extra.append(gaps)
                log.itl_extra_time.append(t)
        r.last_token[emit] = t
        done = emit[g == r.output[emit]]
        if done.size:
            r.status[done] = COMPLETED
            r.finish[done] = t
            st.free_blocks += int(r.blocks[done].sum())
            r.blocks[done] = 0
            st.run = st.run[r.status[st.run] == RUNNING]
            self.on_finish(st.index, done)
        return emit.size
