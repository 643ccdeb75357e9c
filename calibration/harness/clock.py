"""The clock the harness and the real serving loop time their steps with.

A step's time must be what the step costs, not what the machine happened to give it. On a
shared machine the wall clock measures the other processes too: a tester's run with one busy
core next to the harness timed steps up to twice as long as on a quiet machine, and two real
serving runs of one workload 57% apart. So the clock depends on the device:

- **CPU: the calling thread's CPU time** (:func:`time.thread_time`) with torch limited to
  **one intra-op thread** for as long as the clock is in use (restored afterwards). With one
  thread every kernel runs on the calling thread, so its CPU time is the whole of the step's
  work, and time the scheduler gives to another process is not counted. What it measures is what
  the step costs on one dedicated core. Time-slicing, the large effect (up to 2x), does not
  show; what other processes do to the shared caches, memory bandwidth and clock frequency still
  does, as in any co-located deployment: a busy loop on the other core of a 2-core VM made the
  1 GB LM head's matrix-vector product 6% slower in thread CPU time, a memory-copying one 4%.
  The thread is also **pinned to one core** (the highest-numbered it may run on) for as long as
  the clock is in use: a thread the scheduler moves between a core it shares with another
  process and one it has alone runs the same steps 10-20% slower or faster in CPU time (the
  switches cool its caches), so a calibration and a real run a minute apart saw different
  machines. Pinned, both run on the same core, beside the same neighbours.
- **CUDA: wall time** (:func:`time.perf_counter`) around the step after
  ``torch.cuda.synchronize``: the GPU's time is what matters there, and the host thread's CPU
  time would miss it.

:func:`step_clock` yields a :class:`StepClock` for a device inside a ``with`` block (which is
where the thread limit holds); tests inject their own :class:`StepClock` wherever a clock is
taken, to make budgets and timelines deterministic.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["CPU_CLOCK", "CUDA_CLOCK", "StepClock", "step_clock"]

# How each device's steps are timed, in the words provenance records.
CPU_CLOCK = "thread CPU time, 1 intra-op thread, pinned to one core"
CUDA_CLOCK = "wall time, torch.cuda.synchronize after each step"


def _no_sync() -> None:
    """Nothing to wait for: CPU kernels have returned when the call does."""


@dataclass(frozen=True)
class StepClock:
    """Seconds on one clock: ``now()`` reads it, ``sync()`` waits until the device has finished
    what was queued (a step ends when its kernels have run, not when they were launched), and
    ``name`` says how it measures, for provenance."""

    name: str
    now: Callable[[], float]
    sync: Callable[[], None] = _no_sync

    def stamp(self) -> float:
        """``sync()`` then ``now()``: the time at which everything queued so far has run."""
        self.sync()
        return self.now()


@contextmanager
def step_clock(device: Any) -> Iterator[StepClock]:
    """The clock for steps on ``device`` (a ``torch.device``): on CUDA the wall clock with a
    synchronize; on the CPU the calling thread's CPU time, with ``torch.set_num_threads(1)`` and
    the thread pinned to its highest-numbered core for the duration of the block, the previous
    thread count and cores restored when it ends."""
    import torch

    if device.type == "cuda":
        yield StepClock(CUDA_CLOCK, time.perf_counter, lambda: torch.cuda.synchronize(device))
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cores = _affinity()
    if cores:
        os.sched_setaffinity(0, {max(cores)})  # 0: the calling thread
    try:
        yield StepClock(CPU_CLOCK, time.thread_time)
    finally:
        if cores:
            os.sched_setaffinity(0, cores)
        torch.set_num_threads(threads)


def _affinity() -> set[int] | None:
    """The cores the calling thread may run on, or None where the platform cannot pin (macOS)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
