"""Fitting the step-time model to measured step times, with held-out error.

Input: a measurement table (one row per measured step shape: ``phase`` prefill|decode,
``layers``, ``sequences``, ``chunk``, ``start``, ``context``, ``seconds``), as the harness
(:mod:`calibration.harness`) writes it. Output: the coefficients of
:func:`calibration.measured.seconds_of` and the error on rows never used in the fit.

How, and why this way:
- Residuals are relative, log(predicted / measured), so a 2 ms decode and a 2 s prefill count
  alike, and the loss is robust (soft L1) so one step disturbed by a noisy neighbour on a shared
  machine does not bend the fit.
- A quarter of the rows of each phase (chosen with a fixed seed) are held out and only scored.
  The reported errors are on those rows, and the shipped coefficients are the ones that were
  scored (not a refit on everything, whose error would be unmeasured).
- Measurements at two layer counts separate the per-layer part from the per-iteration part.
  As a check of that scaling, the model is also fitted on the shallower rows alone and asked to
  predict the deeper ones ("depth extrapolation error").
- Coefficients are fitted in log space (they are positive and span nine orders of magnitude),
  starting from a non-negative linear least-squares solution of the same features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from calibration.measured import COEFFICIENTS, seconds_of

# What the harness fit estimates: the formula's coefficients; c_pf_self, the price of a chunk's
# own causal pairs, which the CPU computes in a causal kernel apart from the pairs against its
# cached prefix (see calibration.harness.model.chunk_attention); and head_w, the LM head's weight
# read, which small batches pay whatever their size (its time is max(head_w, c_head·S)).
FITTED = (*COEFFICIENTS, "c_pf_self", "head_w")
# The fewest measured steps :func:`fit_step_model` takes: two per coefficient, so that a quarter
# can be held out and the rest still over-determine the fit.
MIN_STEPS = 2 * len(FITTED)

__all__ = ["MIN_STEPS", "FitResult", "features", "fit_step_model"]

_FLOOR = 1e-15  # smallest coefficient the log-space fit represents (far below anything measurable)


@dataclass(frozen=True)
class FitResult:
    """Fitted coefficients and how well they predict rows they never saw."""

    coefficients: dict[str, float]
    heldout_error: dict[str, dict[str, float]]    # phase -> median, p90, max (relative), points
    depth_error: dict[str, float] | None          # fitted on the fewest layers, scored on the most
    train_rows: int
    heldout_rows: int


def features(table: pa.Table) -> dict[str, np.ndarray]:
    """The formula's inputs for each measured row: layers, tokens N, sequences S, prefill pairs P,
    KV tokens read Σ l (a decode sequence with ``context`` resident tokens attends to context + 1;
    a prefill chunk at ``start`` reads the ``start`` cached tokens before it)."""
    col = {name: table.column(name).to_numpy().astype(np.float64)
           for name in ("layers", "sequences", "chunk", "start", "context", "seconds")}
    pre = np.asarray(table.column("phase").to_pylist()) == "prefill"
    tokens = np.where(pre, col["chunk"] * col["sequences"], col["sequences"])
    pairs = np.where(pre, col["sequences"] * col["chunk"] * (col["start"] + col["chunk"] / 2.0), 0.0)
    # KV tokens read: a decode's context + 1, and a prefill chunk's cached prefix (its start).
    ctx = np.where(pre, col["sequences"] * col["start"], col["sequences"] * (col["context"] + 1.0))
    own = np.where(pre, col["sequences"] * col["chunk"] ** 2 / 2.0, 0.0)
    return {"layers": col["layers"], "tokens": tokens, "seqs": col["sequences"], "pairs": pairs, "ctx": ctx, "own": own,
            "seconds": col["seconds"], "prefill": pre}


def _predict(x: np.ndarray, f: dict[str, np.ndarray]) -> np.ndarray:
    c = dict(zip(FITTED, np.exp(x)))
    return seconds_of(c, f["layers"], f["tokens"], f["seqs"], f["pairs"], f["ctx"], own_pairs=f["own"])


def _initial(f: dict[str, np.ndarray]) -> np.ndarray:
    """A start from non-negative least squares on relative errors, with max(w, c_lin·N) taken as
    w + c_lin·N (the sum bounds the max from above, so the start is close and on the safe side)."""
    from scipy.optimize import nnls

    L = f["layers"]
    a = np.column_stack([np.ones_like(L), f["seqs"], L, L * f["tokens"], L * f["tokens"], L * f["seqs"],
                         L * (f["pairs"] - f["own"]), L * f["ctx"], L * f["own"]])
    y = f["seconds"]
    scale = a.max(axis=0)
    scale[scale == 0] = 1.0
    sol, _ = nnls(a / scale[None, :] / y[:, None], np.ones_like(y))
    coef = sol / scale
    return np.log(np.maximum(coef, _FLOOR * 1e3))  # every coefficient but head_w


def _fit(f: dict[str, np.ndarray]) -> np.ndarray:
    """Log-coefficients (in FITTED's order) of the robust relative fit. The LM head is fitted two
    ways, linear in sequences (head_w at the floor) and as max(head_w, c_head·S), and the better
    fit by the robust loss is kept: the roof only where the data show a flat head."""
    from scipy.optimize import least_squares

    x0 = _initial(f)
    y = np.log(f["seconds"])
    floor = np.log(_FLOOR)

    def solve(start: np.ndarray, free_head: bool) -> tuple[np.ndarray, float]:
        def full(x: np.ndarray) -> np.ndarray:
            return x if free_head else np.append(x, floor)

        def resid(x: np.ndarray) -> np.ndarray:
            return np.log(_predict(full(x), f)) - y

        lo = np.full(start.size, floor)
        res = least_squares(resid, np.clip(start, lo + 1e-9, 5.0), bounds=(lo, np.full_like(lo, 5.0)),
                            loss="soft_l1", f_scale=0.05, x_scale=1.0, max_nfev=4000)
        return full(res.x), float(res.cost)

    linear, linear_cost = solve(x0, False)
    # The head's weight read hides in the fixed part of the linear fit: start the roof from half
    # of it, plus one sequence's head, so that max(head_w, c_head·S) binds for small batches.
    t0, c_head = np.exp(linear[0]), np.exp(linear[1])
    start = linear.copy()
    start[0], start[-1] = np.log(max(t0 / 2.0, _FLOOR * 1e3)), np.log(max(t0 / 2.0 + c_head, _FLOOR * 1e3))
    roof, roof_cost = solve(start, True)
    return roof if roof_cost < linear_cost else linear


def _errors(x: np.ndarray, f: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, float]:
    rel = np.abs(_predict(x, _take(f, rows)) / f["seconds"][rows] - 1.0)
    if not rel.size:
        return {"median": float("nan"), "p90": float("nan"), "max": float("nan"), "points": 0}
    return {"median": float(np.median(rel)), "p90": float(np.quantile(rel, 0.9)), "max": float(rel.max()),
            "points": int(rel.size)}


def _take(f: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[rows] for k, v in f.items()}


def fit_step_model(table: pa.Table, *, holdout: float = 0.25, seed: int = 0) -> FitResult:
    """Fit the coefficients on (1 − holdout) of each phase's rows and score the rest."""
    f = features(table)
    n = f["seconds"].size
    if n < MIN_STEPS:
        raise ValueError(f"{n} measured steps are too few to fit {len(FITTED)} coefficients with a held-out "
                         f"share: measure at least {MIN_STEPS} (a longer budget)")
    if (f["seconds"] <= 0).any() or not np.isfinite(f["seconds"]).all():
        raise ValueError("measured seconds must be finite and > 0")
    rng = np.random.default_rng(seed)
    test = np.zeros(n, bool)
    for phase in (True, False):
        idx = np.flatnonzero(f["prefill"] == phase)
        k = int(round(holdout * idx.size))
        if k:
            test[rng.choice(idx, size=k, replace=False)] = True
    train = np.flatnonzero(~test)
    x = _fit(_take(f, train))
    held = {}
    for name, phase in (("prefill", True), ("decode", False)):
        rows = np.flatnonzero(test & (f["prefill"] == phase))
        held[name] = _errors(x, f, rows)
    depth = None
    layers = np.unique(f["layers"])
    if layers.size >= 2:
        shallow = np.flatnonzero(f["layers"] == layers[0])
        deep = np.flatnonzero(f["layers"] == layers[-1])
        # The shallow fit cannot tell per-layer from fixed work; pin the fixed part at the full fit's.
        xs = _fit_shallow(_take(f, shallow), x)
        depth = _errors(xs, f, deep)
        depth["fitted_layers"], depth["scored_layers"] = float(layers[0]), float(layers[-1])
    coef = {k: float(v) for k, v in zip(FITTED, np.exp(x))}
    if coef["head_w"] <= _FLOOR * 1.5:  # the linear head fitted better: leave the roof out
        del coef["head_w"]
    return FitResult(coefficients=coef, heldout_error=held, depth_error=depth, train_rows=int(train.size),
                     heldout_rows=int(test.sum()))


def _fit_shallow(f: dict[str, np.ndarray], x_full: np.ndarray) -> np.ndarray:
    """Refit the per-layer coefficients on one layer count, with t0 and c_head held at the full fit's."""
    from scipy.optimize import least_squares

    y = np.log(f["seconds"])
    fixed = x_full[:2]

    def resid(xl: np.ndarray) -> np.ndarray:
        return np.log(_predict(np.concatenate([fixed, xl]), f)) - y

    lo = np.full(len(FITTED) - 2, np.log(_FLOOR))
    res = least_squares(resid, np.clip(x_full[2:], lo + 1e-9, 5.0), bounds=(lo, np.full_like(lo, 5.0)),
                        loss="soft_l1", f_scale=0.05, max_nfev=4000)
    return np.concatenate([fixed, res.x])
