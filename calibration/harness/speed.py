"""The machine's speed now against its speed at calibration: one fixed step timed again and again.

A profile's step times hold for the machine as it ran while it was calibrated. On a shared CPU
the same kernels run slower or faster minutes later even on the thread's own CPU time (another
process contends for memory bandwidth and caches, the clock frequency moves with the other
cores' load): on the 2-core CI machine a real serving run beside a test suite ran its
iterations 13% slower than one a minute before, and at 70% utilisation that moved p50 TTFT by
a third. A comparison of the simulator with the real serving loop would then measure the
neighbour, not the simulator.

So the calibration times one fixed step — the :data:`PROBE`: a decode step of one sequence at
:data:`PROBE_CONTEXT` cached tokens through one layer and the LM head, the shape that dominates
a small model's serving iterations — at its start and every :data:`PROBE_EVERY_S` of its clock
between the points it measures, and records the median as the profile's ``speed_probe_s``: the
speed its step times were measured at. The real serving loop times the same step before it
starts and again every ``probe_every_s`` of its clock, and runs on a timeline in the
calibration's seconds: each iteration's measured time times ``speed_probe_s`` over the median of
the last few probes (:class:`SpeedProbe`). The probes run outside the timeline, and every factor applied
is recorded, so a report says how far the machine drifted and what was corrected.

``torch`` is imported with this module: import it only where torch is installed.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from calibration.harness.clock import StepClock
from calibration.harness.model import LlamaDecoder
from calibration.harness.timing import time_step

__all__ = ["PROBE", "PROBE_CONTEXT", "PROBE_EVERY_S", "SpeedProbe"]

PROBE_CONTEXT = 64
# Seconds of the clock between two probes, in a calibration and in a real serving run: the
# machine's speed jitters by ±8% from one probe to the next even on a quiet 2-core VM, and
# drifts by 10-15% over tens of seconds beside a test suite; a probe every 2 s (about 0.25 s each
# for Llama-3.2-1B, some 11% of the clock) and the median of the last nine (18 s) follow the
# drift and not the jitter.
PROBE_EVERY_S = 2.0
PROBE = (f"a decode step of 1 sequence at {PROBE_CONTEXT} cached tokens through 1 layer and the LM head "
         "(median of 3 timed runs after 1 warm-up)")


class SpeedProbe:
    """Times :data:`PROBE` on ``model`` with ``clock``, on a KV cache of its own (the loop's is
    left untouched). :meth:`measure` returns one probe's seconds; :meth:`factor` the reference's
    seconds over the median of the last ``window`` probes (1 without a reference)."""

    def __init__(self, model: LlamaDecoder, clock: StepClock, *, reference_s: float | None = None,
                 window: int = 9, seed: int = 0) -> None:
        self._model, self._clock, self._seed = model, clock, seed
        self._cache = model.new_cache(PROBE_CONTEXT + 1, seed=seed)
        self.reference_s = reference_s
        self._recent: deque[float] = deque(maxlen=window)
        self.samples: list[float] = []

    def measure(self) -> float:
        """Time the probe once (three runs after a warm-up; their median)."""
        t = time_step(self._model, self._cache, sequences=1, tokens_per_sequence=1, start=PROBE_CONTEXT, layers=1,
                      warmup=1, repeats=3, seed=self._seed, clock=self._clock)
        self._recent.append(t.median_s)
        self.samples.append(t.median_s)
        return t.median_s

    def factor(self) -> float:
        """How many calibration seconds one second measured now is worth: the reference over the
        median of the recent probes (1.0 where there is no reference or no probe yet)."""
        if self.reference_s is None or not self._recent:
            return 1.0
        return float(self.reference_s / np.median(self._recent))
