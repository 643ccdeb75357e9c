"""Optimising the step-time model against benchmark rows: the least-squares problem of one
configuration, its solution, how firmly the rows pin it, and its error on rows held out.

The rows are simulated by :mod:`sim.fitting.reenact`; what is optimised here is only which
coefficients those simulations use. What is fitted, and why only that:
- A handful of benchmark rows cannot pin seven coefficients. The fit starts from the roofline
  profile of the same configuration in the step formula's own terms
  (:func:`calibration.measured.coefficients_from_roofline`) and fits three multiplicative factors
  on groups of coefficients that benchmarks do separate (:data:`FACTOR_GROUPS`): **compute** on
  the per-token linear work, prefill attention and the LM head (what TTFT and large batches
  see), **memory** on the weight read and the decode KV read (what TPOT at small batches sees),
  and **overhead** on the fixed per-iteration time ``t0``. The factors live in log space, so they
  stay positive and a factor of 2 weighs like a factor of 1/2.
- Residuals are relative, log(simulated / measured), so a 20 ms TPOT and a 5,000 tokens/s
  throughput count alike; the loss is robust (soft L1, scale 5%) so one odd run does not bend
  the fit. A weak prior (:data:`PRIOR_WEIGHT`) holds a factor that the rows cannot see at its
  roofline value instead of letting it wander; where rows do see it, its pull is negligible.
- Every evaluation simulates every row with the *same* random draws (common random numbers, see
  :mod:`sim.fitting.reenact`), so the objective is a deterministic function of the factors. It
  still jumps a little in open-loop rows, so the Jacobian is taken by finite differences over a
  wide step (10% in each factor), over which the metrics are nearly linear, so that it measures
  the trend and not the jumps.
- How well the rows pin each factor is reported (:func:`factor_uncertainty`): rows that are all
  decode-bound, for instance, cannot tell the fixed overhead from the weight read.
- The held-out error comes from k-fold cross-validation over the rows (:func:`cross_validate`).
"""

from __future__ import annotations

import math
from concurrent.futures import Executor
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from sim.fitting.benchmark_csv import METRIC_FAMILY, BenchmarkRow
from sim.fitting.reenact import SimulationTask, run_simulation_task

__all__ = ["FACTOR_GROUPS", "PRIOR_WEIGHT", "FitProblem", "Progress", "cross_validate", "error_stats",
           "factor_uncertainty"]

# Which coefficients each fitted factor scales (c_seq stays as the roofline has it: 0).
FACTOR_GROUPS: dict[str, tuple[str, ...]] = {"compute": ("c_lin", "c_pf", "c_head"), "memory": ("w", "c_dc"),
                                             "overhead": ("t0",)}
# Residual weight of each log-factor's distance from the roofline (1 = the roofline value). A
# 1% relative error costs as much as a factor 2.7 away from the roofline would cost at this
# weight; only a direction the rows do not constrain is held by it.
PRIOR_WEIGHT = 0.01
_BOUNDS = {"compute": (1 / 50, 50.0), "memory": (1 / 50, 50.0), "overhead": (1e-3, 1e3)}
_LOSS_SCALE = 0.05          # soft-L1: residuals beyond ~5% count linearly, not quadratically
# Finite-difference step in log-factor (about 10%): the metrics are nearly linear in the factors
# over such a step, and it is wide enough that the Jacobian measures their trend, not the small
# jumps that re-composed batches make in open-loop runs (a 2% step measured mostly jumps).
_DIFF_STEP = 0.1

# Called with a one-line status after each simulation of a candidate's rows.
Progress = Callable[[str], None]


class FitProblem:
    """The objective of one configuration: log-factors → residuals, simulating rows (through an
    executor when given) and caching each (factors, rows) evaluation."""

    def __init__(self, rows: Sequence[BenchmarkRow], start: dict[str, float], plans: dict[int, tuple[int, int]],
                 seed: int, engine: dict[str, Any], executor: Executor | None, progress: Progress | None, label: str):
        self.rows, self.start, self.plans, self.seed, self.engine = rows, start, plans, seed, engine
        self.executor, self.progress, self.label = executor, progress, label
        self.cache: dict[tuple[tuple[float, ...], int], dict[str, Any]] = {}
        self.evaluations = 0

    def coefficients(self, x: np.ndarray) -> dict[str, float]:
        """The step formula's coefficients at log-factors ``x`` (in :data:`FACTOR_GROUPS` order)."""
        c = dict(self.start)
        for group, v in zip(FACTOR_GROUPS.values(), x):
            for k in group:
                c[k] = self.start[k] * math.exp(float(v))
        return c

    def simulate_many(self, xs: Sequence[np.ndarray], idx: Sequence[int]) -> list[list[dict[str, Any]]]:
        """The rows ``idx`` simulated at each candidate of ``xs``. Each (candidate, row) is simulated
        once (a cross-validation fold reuses the full fit's runs); what is missing goes to the
        executor in one batch, so that a Jacobian's candidates run in parallel."""
        keys = [tuple(float(v) for v in x) for x in xs]
        todo = list(dict.fromkeys((k, i) for k in keys for i in idx if (k, i) not in self.cache))
        if todo:
            coef = {k: self.coefficients(np.asarray(k)) for k, _ in todo}
            tasks = [SimulationTask(self.rows[i], coef[k], *self.plans[self.rows[i].row], self.seed, self.engine)
                     for k, i in todo]
            mapper = self.executor.map if self.executor is not None else map
            for key, sim in zip(todo, mapper(run_simulation_task, tasks)):
                self.cache[key] = sim
            for k in dict.fromkeys(k for k, _ in todo):
                self.evaluations += 1
                self._report(np.asarray(k), idx, [self.cache[(k, i)] for i in idx])
        return [[self.cache[(k, i)] for i in idx] for k in keys]

    def simulate(self, x: np.ndarray, idx: Sequence[int]) -> list[dict[str, Any]]:
        """The rows ``idx`` simulated at the one candidate ``x`` (see :meth:`simulate_many`)."""
        return self.simulate_many([x], idx)[0]

    def _logs(self, idx: Sequence[int], sims: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return np.asarray([math.log(sim[m] / v) for i, sim in zip(idx, sims) for m, v in self.rows[i].metrics.items()])

    def _report(self, x: np.ndarray, idx: Sequence[int], sims: Sequence[Mapping[str, Any]]) -> None:
        if self.progress is not None:
            err = np.abs(np.expm1(self._logs(idx, sims)))
            self.progress(f"{self.label}: simulation {self.evaluations}, factors "
                          + ", ".join(f"{k} ×{math.exp(v):.3f}" for k, v in zip(FACTOR_GROUPS, x))
                          + f", median error {np.median(err):.1%}")

    def residuals(self, x: np.ndarray, idx: Sequence[int]) -> np.ndarray:
        """log(simulated / measured) per measured value, then the prior's pull per factor."""
        return np.concatenate([self._logs(idx, self.simulate(x, idx)), PRIOR_WEIGHT * np.asarray(x, np.float64)])

    def jacobian(self, x: np.ndarray, idx: Sequence[int]) -> np.ndarray:
        """d residuals / d log-factors by forward differences with a fixed step (scipy's own steps
        are relative to x, so they shrink to nothing near a factor of 1 and measure only the jumps
        of re-composed batches); the prior's rows are exact."""
        steps = [_DIFF_STEP if x[j] + _DIFF_STEP <= self.hi[j] else -_DIFF_STEP for j in range(x.size)]
        moved = []
        for j, h in enumerate(steps):
            xj = np.array(x, dtype=np.float64)
            xj[j] += h
            moved.append(xj)
        sims = self.simulate_many([np.asarray(x, np.float64), *moved], idx)
        base = self._logs(idx, sims[0])
        jac = np.zeros((base.size + x.size, x.size))
        for j, (h, s) in enumerate(zip(steps, sims[1:])):
            jac[:base.size, j] = (self._logs(idx, s) - base) / h
            jac[base.size + j, j] = PRIOR_WEIGHT
        return jac

    @property
    def lo(self) -> np.ndarray:
        """The lower bounds of the log-factors, in :data:`FACTOR_GROUPS` order."""
        return np.log([_BOUNDS[k][0] for k in FACTOR_GROUPS])

    @property
    def hi(self) -> np.ndarray:
        """The upper bounds of the log-factors, in :data:`FACTOR_GROUPS` order."""
        return np.log([_BOUNDS[k][1] for k in FACTOR_GROUPS])

    def solve(self, idx: Sequence[int], x0: np.ndarray, max_evaluations: int) -> Any:
        """Least squares over the log-factors from ``x0``, fitting the rows ``idx``."""
        from scipy.optimize import least_squares

        lo, hi = self.lo, self.hi
        # max_nfev counts residual evaluations; each Jacobian costs one more per factor.
        return least_squares(self.residuals, np.clip(x0, lo + 1e-9, hi - 1e-9), jac=self.jacobian,
                             args=(list(idx),), bounds=(lo, hi), method="trf", loss="soft_l1", f_scale=_LOSS_SCALE,
                             xtol=1e-3, ftol=1e-4, gtol=1e-8,
                             max_nfev=max(1, max_evaluations // (1 + len(FACTOR_GROUPS))))


def _rel_errors(rows: Sequence[BenchmarkRow], sims: Sequence[Mapping[str, Any]]) -> list[tuple[str, float]]:
    return [(m, sim[m] / v - 1.0) for row, sim in zip(rows, sims) for m, v in row.metrics.items()]


def error_stats(errors: Iterable[float]) -> dict[str, float]:
    """Summary of relative ``errors`` as a profile records them: median, p90 and max of their
    magnitudes, and how many there were."""
    e = np.abs(np.asarray(list(errors), dtype=np.float64))
    return {"median": float(np.median(e)), "p90": float(np.percentile(e, 90)), "max": float(e.max()),
            "points": float(e.size)}


def cross_validate(problem: FitProblem, x_full: np.ndarray, folds: int, seed: int,
                   max_evaluations: int) -> dict[str, dict[str, float]]:
    """Refit without each fold of rows (starting from the full fit) and score the rows left out,
    per metric family."""
    n = len(problem.rows)
    fold = np.empty(n, np.int64)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % folds
    by_family: dict[str, list[float]] = {}
    for k in range(folds):
        train = [i for i in range(n) if fold[i] != k]
        test = [i for i in range(n) if fold[i] == k]
        fit = problem.solve(train, x_full, max(8, max_evaluations // 2))
        sims = problem.simulate(fit.x, test)
        for m, e in _rel_errors([problem.rows[i] for i in test], sims):
            by_family.setdefault(METRIC_FAMILY[m], []).append(e)
    return {fam: error_stats(errs) for fam, errs in sorted(by_family.items())}


def factor_uncertainty(problem: FitProblem, x: np.ndarray, idx: Sequence[int]) -> dict[str, float]:
    """How loosely the rows ``idx`` pin each factor at the fit ``x``: the relative spread of each
    factor if every measured value carried 1% of independent noise."""
    # From the Jacobian at the fit (collinear columns, e.g. overhead against memory when every row
    # is decode-bound, make it large); the prior's rows enter exactly, as PRIOR_WEIGHT² on the diagonal.
    jac = problem.jacobian(x, idx)[:-len(FACTOR_GROUPS)]
    info = jac.T @ jac + PRIOR_WEIGHT ** 2 * np.eye(len(FACTOR_GROUPS))
    spread = 0.01 * np.sqrt(np.clip(np.diag(np.linalg.inv(info)), 0, None))
    return {k: float(math.expm1(v)) for k, v in zip(FACTOR_GROUPS, spread)}
