"""Calibration timed alongside another loop: step timings taken in short bursts between its
iterations, so that a profile and the real serving loop it is checked against see the same machine.

Why: on a shared VM the same kernels run up to 16% faster or slower minutes apart, even on the
thread's own CPU time (what the host's other tenants do to caches, memory bandwidth and clocks:
see :mod:`~calibration.harness.clock`). A profile calibrated before the real runs prices their
iterations at the speed the machine had then, and a Poisson load at 70% of capacity turns an
error in that price into about 3-4 times as much in p50 TTFT. Timed in bursts spread evenly
through the real runs, every point's samples come from the same minutes as the loop's iterations,
and a slow stretch of the machine lands on both alike.

What is measured: the points of an earlier calibration (rows of a
:data:`~calibration.harness.run.MEASUREMENT_SCHEMA` table: the phase, layer count and shape of
each), each ``repeats`` times, in bursts of ``burst`` timed runs after one untimed warm-up run
(the harness's own way of timing a shape: :func:`~calibration.harness.timing.time_step`), the
points taken round-robin so that each point's bursts span the whole of the host loop. The host
calls the object after each of its iterations; bursts fall due in proportion to the iterations
it said to expect (:meth:`Alongside.expect` plans again, for a share of the bursts;
:meth:`Alongside.settle` runs what a plan still owes when the host stopped short);
:meth:`Alongside.round` times one burst of every point at once (a reading of the machine's speed
before the host starts); :meth:`Alongside.measurements` gives the timings of the bursts run in a
span of host iterations (one run's own), and :meth:`Alongside.finish` runs any still owed and
returns the :class:`~calibration.harness.run.Measurements` of them all, which are fitted like any
other calibration's.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from calibration.harness.model import HarnessError, LlamaDecoder
from calibration.harness.run import MEASUREMENT_SCHEMA, Measurements
from calibration.harness.timing import Timing, time_step

__all__ = ["Alongside"]

# The columns that name a point (its shape and depth), in the measurement schema.
_POINT = ("phase", "layers", "sequences", "chunk", "start", "context", "tokens")


class Alongside:
    """Bursts of step timings owed to a host loop: call the object after each host iteration,
    then :meth:`finish`.

    ``points``: the points to time (a measurement table; its timing columns are ignored), at
    depths ``model`` has built. ``expected_iterations``: how many times the host will call (its
    iterations over all its runs; a simulation of them says); more calls than that time nothing
    more, fewer leave the rest to :meth:`finish`. ``repeats`` timed runs of each point in all,
    ``burst`` per burst (``repeats`` is rounded up to a whole number of bursts)."""

    def __init__(self, model: LlamaDecoder, points: pa.Table, *, expected_iterations: int, repeats: int = 40,
                 burst: int = 5, seed: int = 0):
        if points.num_rows == 0:
            raise HarnessError("points: the table has no rows; nothing to time alongside")
        missing = [c for c in _POINT if c not in points.column_names]
        if missing:
            raise HarnessError(f"points: the table lacks column(s) {', '.join(missing)}")
        if repeats < 1 or burst < 1 or expected_iterations < 1:
            raise HarnessError(f"repeats = {repeats}, burst = {burst}, expected_iterations = {expected_iterations}: "
                               f"each must be >= 1")
        self._points = [dict(zip(_POINT, row, strict=True))
                        for row in zip(*(points.column(c).to_pylist() for c in _POINT), strict=True)]
        deepest = max(int(p["layers"]) for p in self._points)
        if deepest > len(model.layers):
            raise HarnessError(f"points: a point runs {deepest} layers; the model has {len(model.layers)} built")
        self._model = model
        self._burst = burst
        self._seed = seed
        per_point = -(-repeats // burst)
        # Round-robin: burst k times point k mod P, so each point's bursts span the whole host loop.
        self._order = [i for _ in range(per_point) for i in range(len(self._points))]
        # Each burst run: (point index, host calls before it ran, its timed runs).
        self._log: list[tuple[int, int, tuple[float, ...]]] = []
        self._calls = 0
        # The plan: bursts done and host calls when it was made, the calls it expects, bursts done by then.
        self._plan = (0, 0, expected_iterations, len(self._order))
        self._settled = 0  # bursts run after the host's iterations fell short of a plan
        longest = max(int(p["sequences"]) * (int(p["start"]) + int(p["context"]) + self._tokens(p))
                      for p in self._points)
        self._cache = model.new_cache(longest, seed=seed)

    @staticmethod
    def _tokens(point: dict[str, Any]) -> int:
        """Tokens each sequence computes in the step: the chunk of a prefill, one in a decode."""
        return int(point["chunk"]) if point["phase"] == "prefill" else 1

    @property
    def bursts(self) -> int:
        """Bursts in all."""
        return len(self._order)

    @property
    def bursts_done(self) -> int:
        return len(self._log)

    @property
    def calls(self) -> int:
        """Host iterations so far (the stamp that :meth:`measurements` selects bursts by)."""
        return self._calls

    def expect(self, iterations: int, bursts: int | None = None) -> None:
        """Spread ``bursts`` more (default: all still owed) over the host's next ``iterations``
        iterations: a host that runs several times gives each run its share, and plans again
        once it knows how many iterations a run takes."""
        if iterations < 1:
            raise HarnessError(f"iterations = {iterations}: must be >= 1")
        done = len(self._log)
        more = self.bursts - done if bursts is None else min(max(bursts, 0), self.bursts - done)
        self._plan = (done, self._calls, iterations, done + more)

    def settle(self) -> int:
        """Run now what the plan still owes (a host that ran fewer iterations than it said);
        return how many bursts that was."""
        owed = max(0, self._plan[3] - len(self._log))
        for _ in range(owed):
            self._run_burst()
        self._settled += owed
        return owed

    def round(self) -> pa.Table:
        """Time the next burst of every point now, before the host's next iteration, and return
        their timings (a reading of the machine's speed that moment; they count towards the
        host's next run, as bursts during it)."""
        for _ in range(min(len(self._points), self.bursts - len(self._log))):
            self._run_burst()
        return self.measurements(self._calls - 1, self._calls)

    def __call__(self) -> None:
        """One host iteration has ended: run the bursts that have fallen due."""
        self._calls += 1
        done, calls, expected, target = self._plan
        due = min(target, done + (self._calls - calls) * (target - done) // expected)
        while len(self._log) < due:
            self._run_burst()

    def _run_burst(self) -> None:
        i = self._order[len(self._log)]
        p = self._points[i]
        offset = int(p["start"]) if p["phase"] == "prefill" else int(p["context"])
        t: Timing = time_step(self._model, self._cache, sequences=int(p["sequences"]),
                              tokens_per_sequence=self._tokens(p), start=offset, layers=int(p["layers"]), warmup=1,
                              repeats=self._burst, seed=self._seed)
        self._log.append((i, self._calls, t.samples_s))

    def measurements(self, after: int = -1, through: int | None = None) -> pa.Table:
        """The timings (:data:`~calibration.harness.run.MEASUREMENT_SCHEMA`) of the bursts run
        after host iteration ``after`` and up to ``through`` (default: all), where a burst run
        after the host's i-th iteration is at i (before its first, at 0), one row per point timed
        in them, in the points' order: a host's run's own share of the bursts."""
        last = self._calls if through is None else through
        samples: list[list[float]] = [[] for _ in self._points]
        for i, at, timed in self._log:
            if after < at <= last:
                samples[i].extend(timed)
        rows: dict[str, list[Any]] = {f.name: [] for f in MEASUREMENT_SCHEMA}
        for p, got in zip(self._points, samples, strict=True):
            if not got:
                continue
            t = Timing.from_samples(got)
            for name in _POINT:
                rows[name].append(p[name])
            for name, value in (("seconds", t.median_s), ("p10_s", t.p10_s), ("p90_s", t.p90_s),
                                ("repeats", t.repeats)):
                rows[name].append(value)
        return pa.table(rows, schema=MEASUREMENT_SCHEMA)

    def finish(self, meta: dict[str, Any] | None = None) -> Measurements:
        """Run the bursts still owed (stamped with the host's last iteration) and return every
        point's timing over all bursts, with ``meta`` (provenance to carry) and the bursts' own
        account added to it (``bursts_after_the_host`` counts those run by :meth:`settle` and here)."""
        self.expect(1)
        self.settle()
        out = dict(meta or {})
        out["alongside"] = {"bursts": self.bursts, "burst_repeats": self._burst, "host_iterations": self._calls,
                            "bursts_after_the_host": self._settled,
                            "timed_s": float(sum(sum(timed) for _, _, timed in self._log))}
        return Measurements(table=self.measurements(), meta=out)
