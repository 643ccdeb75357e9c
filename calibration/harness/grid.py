"""Which step shapes to measure, in what order, with how many repeats, within a time budget.

The measurements feed a step-time model of the form

    T = t0 + c_head·S + L·[max(w, c_lin·N) + c_seq·S + c_pf·Σ c·(p + c/2) + c_dc·Σ l]

(S sequences, N tokens, prefill chunks of c tokens at offset p, decode contexts l, L layers).
To pin each term down the grid spans

- **prefill**: chunk sizes log-spaced 16 … 2048 (the knee between weight-bound and
  compute-bound linears, and the quadratic attention term) × context offsets 0 … 4096 (the
  attention term separately from the linear one);
- **decode**: batch sizes 1 … 64 (128 on CUDA: the per-sequence terms) × contexts 64 … 4096
  (the KV-read term);
- every shape at **two layer counts**, L and 2L: the difference is L layers' worth of time, the
  rest is the fixed part (embeddings, LM head, Python), so the fit separates per-layer from
  fixed costs and :func:`layer_differences` checks the per-layer part against a measurement.

Nothing here imports torch: the plan is made from a :class:`CostModel` fitted to a few probe
steps, which the runner measures.

**Order.** The plan starts with the smallest and the largest affordable shape of each phase
(both layer counts each), then the other two corners of each phase's grid, then fills in by
farthest-point order in the grid's index space, alternating phases, so that stopping at any
point leaves a spread over both phases, both ends of every axis and both layer counts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pyarrow as pa

__all__ = ["DEFAULT_MAX_REPEATS", "Axes", "CostModel", "Phase", "Plan", "Point", "Shape", "default_axes", "layer_counts",
           "layer_differences", "plan", "priority_order", "probe_shapes", "serving_axes"]

Phase = Literal["prefill", "decode"]

# Harness bookkeeping per measured point outside the timed steps (cache re-view, token ids,
# Python): seconds, added to every estimate.
POINT_OVERHEAD_S = 0.01


@dataclass(frozen=True, order=True)
class Shape:
    """One step shape. Prefill: one chunk of ``chunk`` tokens of each of ``sequences``
    sequences at offset ``start``. Decode: ``sequences`` sequences, one token each, with
    ``context`` tokens already cached."""

    phase: Phase
    sequences: int
    chunk: int = 0
    start: int = 0
    context: int = 0

    @classmethod
    def prefill(cls, chunk: int, start: int = 0, sequences: int = 1) -> Shape:
        return cls("prefill", sequences, chunk=chunk, start=start)

    @classmethod
    def decode(cls, batch: int, context: int) -> Shape:
        return cls("decode", batch, context=context)

    @property
    def tokens(self) -> int:
        """Tokens computed in the step."""
        return self.sequences * self.chunk if self.phase == "prefill" else self.sequences

    @property
    def tokens_per_sequence(self) -> int:
        return self.chunk if self.phase == "prefill" else 1

    @property
    def offset(self) -> int:
        """Tokens of each sequence already cached before the step."""
        return self.start if self.phase == "prefill" else self.context

    @property
    def kv_tokens(self) -> int:
        """KV-cache positions the step needs (all sequences, after the step)."""
        return self.sequences * (self.offset + self.tokens_per_sequence)

    @property
    def attention(self) -> float:
        """The attention feature of the step-time model: Σ c·(p + c/2) (prefill) or Σ l (decode)."""
        if self.phase == "prefill":
            return self.sequences * self.chunk * (self.start + self.chunk / 2.0)
        return float(self.sequences * self.context)


@dataclass(frozen=True)
class Point:
    """A shape at a layer count, with its warm-up and timed runs and the estimated seconds of one step."""

    shape: Shape
    layers: int
    warmup: int
    repeats: int
    est_step_s: float

    @property
    def est_s(self) -> float:
        """Estimated seconds to measure the point: every run plus bookkeeping."""
        return (self.warmup + self.repeats) * self.est_step_s + POINT_OVERHEAD_S


@dataclass(frozen=True)
class Axes:
    """The candidate values of each grid axis and the layer counts every shape is measured at."""

    chunks: tuple[int, ...]
    starts: tuple[int, ...]
    batches: tuple[int, ...]
    contexts: tuple[int, ...]
    layer_counts: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("chunks", "batches", "contexts", "layer_counts"):
            vals = getattr(self, name)
            if not vals or any(int(v) < 1 for v in vals):
                raise ValueError(f"{name} = {vals!r}: needs at least one value, all >= 1")
        if not self.starts or any(int(v) < 0 for v in self.starts):
            raise ValueError(f"starts = {self.starts!r}: needs at least one value, all >= 0")
        for name in ("chunks", "starts", "batches", "contexts", "layer_counts"):
            object.__setattr__(self, name, tuple(sorted({int(v) for v in getattr(self, name)})))

    def shapes(self, phase: Phase, *, max_positions: int | None = None,
               max_kv_tokens: int | None = None) -> list[Shape]:
        """The feasible shapes of ``phase``: every combination of its two axes whose positions
        fit ``max_positions`` (the model's context) and whose KV fits ``max_kv_tokens``."""
        if phase == "prefill":
            cands = [Shape.prefill(c, s) for s in self.starts for c in self.chunks]
        else:
            cands = [Shape.decode(b, l) for l in self.contexts for b in self.batches]
        return [s for s in cands
                if (max_positions is None or s.offset + s.tokens_per_sequence <= max_positions)
                and (max_kv_tokens is None or s.kv_tokens <= max_kv_tokens)]

    def index(self, shape: Shape) -> tuple[float, float]:
        """The shape's position in its phase's grid, each axis scaled to 0 … 1 by index."""
        if shape.phase == "prefill":
            a, b, x, y = self.chunks, self.starts, shape.chunk, shape.start
        else:
            a, b, x, y = self.batches, self.contexts, shape.sequences, shape.context
        return (a.index(x) / max(len(a) - 1, 1), b.index(y) / max(len(b) - 1, 1))


def layer_counts(layers: int, full_layers: int) -> tuple[int, ...]:
    """The two layer counts measured for ``layers`` requested of a model with ``full_layers``:
    (L, 2L) where the model has 2L layers, else (L // 2, L), else (L,) alone for a one-layer model."""
    if layers < 1:
        raise ValueError(f"layers = {layers}: must be >= 1")
    if 2 * layers <= full_layers:
        return (layers, 2 * layers)
    if layers >= 2:
        return (layers // 2, layers)
    return (layers,)


def default_axes(*, layers: int, full_layers: int, device_type: str = "cpu") -> Axes:
    """The default grid (see the module docstring); CUDA adds decode batch 128 and context 8192."""
    gpu = device_type == "cuda"
    return Axes(
        chunks=(16, 32, 64, 128, 256, 512, 1024, 2048),
        starts=(0, 512, 1536, 4096),
        batches=(1, 2, 4, 8, 16, 32, 64) + ((128,) if gpu else ()),
        contexts=(64, 256, 1024, 4096) + ((8192,) if gpu else ()),
        layer_counts=layer_counts(layers, full_layers),
    )


def serving_axes(*, prompt_tokens: tuple[int, int], output_tokens: tuple[int, int], max_num_seqs: int,
                 max_num_batched_tokens: int, layers: int, full_layers: int) -> Axes:
    """The grid of the steps a serving run of requests with prompts and outputs in these
    (low, high) ranges runs under these engine limits: prefill chunks from the shortest prompt
    (at least 16 tokens) to the longest chunk the token budget lets through, at offset 0 and,
    where prompts can be cut (``max_num_seqs`` of the longest do not fit the token budget),
    halfway into the longest prompt; decode batches 1 to
    ``max_num_seqs``; contexts from the shortest prompt to the longest request. Each axis has its
    two ends and the power of two nearest their geometric mean between them: every term of the
    step-time formula is linear in its feature or a roof, so three values an axis pin it down, and
    a small budget buys every shape at both layer counts.

    A profile for a given workload is best measured where that workload runs: the default grid
    spreads a budget over shapes up to 2048-token chunks at 4096 offsets and 64-sequence
    batches, which a run of short requests in batches of eight never reaches, and a robust fit
    over all of them can trade accuracy at the run's shapes for accuracy at those."""
    (p_lo, p_hi), (o_lo, o_hi) = prompt_tokens, output_tokens
    if not (1 <= p_lo <= p_hi and 1 <= o_lo <= o_hi and 1 <= max_num_seqs <= max_num_batched_tokens):
        raise ValueError(f"prompt_tokens = {prompt_tokens}, output_tokens = {output_tokens}, max_num_seqs = "
                         f"{max_num_seqs}, max_num_batched_tokens = {max_num_batched_tokens}: need ranges of lengths "
                         f">= 1 (low <= high) and 1 <= max_num_seqs <= max_num_batched_tokens")

    def spaced(lo: int, hi: int) -> tuple[int, ...]:
        """``lo``, ``hi`` and the power of two nearest to their geometric mean, where one lies
        strictly between them."""
        inside = [1 << k for k in range(hi.bit_length()) if lo < 1 << k < hi]
        return (lo, min(inside, key=lambda v: abs(math.log(v * v / (lo * hi)))), hi) if inside else (lo, hi)

    longest_chunk = min(p_hi, max_num_batched_tokens)
    cut = max_num_seqs * p_hi > max_num_batched_tokens
    return Axes(chunks=spaced(min(max(p_lo, 16), longest_chunk), longest_chunk),
                starts=(0, p_hi // 2) if cut else (0,), batches=spaced(1, max_num_seqs),
                contexts=spaced(p_lo, p_hi + o_hi - 1), layer_counts=layer_counts(layers, full_layers))


def probe_shapes(axes: Axes) -> list[Shape]:
    """A few cheap shapes whose times fix a :class:`CostModel`: per phase a fixed cost, a
    per-token (per-sequence) cost and an attention cost, each probed where it shows without
    running the expensive end of the grid."""
    def at_most(vals: tuple[int, ...], cap: int, above: int = -1) -> int:
        """The largest value in (above, cap]; else the smallest above ``above``; else the smallest."""
        inside = [v for v in vals if above < v <= cap]
        if inside:
            return max(inside)
        bigger = [v for v in vals if v > above]
        return min(bigger) if bigger else vals[0]

    c0, cmid = axes.chunks[0], at_most(axes.chunks, 128)
    s_mid = at_most(axes.starts, 1536, above=0)
    b0, bmid = axes.batches[0], at_most(axes.batches, 16)
    l0 = axes.contexts[0]
    l_mid = at_most(axes.contexts, 1024, above=l0)
    shapes = [Shape.prefill(c0, axes.starts[0]), Shape.prefill(cmid, axes.starts[0]),
              Shape.prefill(at_most(axes.chunks, 64), s_mid),
              Shape.decode(b0, l0), Shape.decode(bmid, l0), Shape.decode(at_most(axes.batches, 4), l_mid)]
    return list(dict.fromkeys(shapes))  # drop repeats on tiny axes, keep order


@dataclass(frozen=True)
class CostModel:
    """Seconds of one step, linear in each phase's features, fitted to probe timings at
    ``layers`` layers: prefill ``a + b·tokens + c·Σ c(p + c/2)``, decode
    ``a + b·sequences + c·Σ l``. Another layer count scales it by ``layers'/layers`` (an
    overestimate above ``layers``: the fixed part does not grow)."""

    layers: int
    prefill: tuple[float, float, float]
    decode: tuple[float, float, float]

    @staticmethod
    def features(shape: Shape) -> tuple[float, float, float]:
        if shape.phase == "prefill":
            return (1.0, float(shape.tokens), shape.attention)
        return (1.0, float(shape.sequences), shape.attention)

    def step_s(self, shape: Shape, layers: int | None = None) -> float:
        """Estimated seconds of one step of ``shape`` at ``layers`` layers."""
        coef = self.prefill if shape.phase == "prefill" else self.decode
        base = float(np.dot(coef, self.features(shape)))
        return base * (1.0 if layers is None else layers / self.layers)

    @classmethod
    def fit(cls, layers: int, probes: Sequence[tuple[Shape, float]]) -> CostModel:
        """Non-negative least squares on relative error over the probes of each phase (a phase
        without probes gets the other's coefficients)."""
        coefs: dict[str, tuple[float, float, float]] = {}
        for phase in ("prefill", "decode"):
            rows = [(cls.features(s), t) for s, t in probes if s.phase == phase]
            if rows:
                x = np.array([r[0] for r in rows])
                y = np.array([r[1] for r in rows])
                coefs[phase] = _nnls_relative(x, y)
        if not coefs:
            raise ValueError("probes = []: a cost model needs at least one probe timing")
        other = next(iter(coefs.values()))
        return cls(layers=layers, prefill=coefs.get("prefill", other), decode=coefs.get("decode", other))


def _nnls_relative(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Non-negative least squares of ``x @ c ≈ y`` weighted by 1/y, by trying every subset of
    the (three) features: small, exact, and no scipy import for three unknowns."""
    w = 1.0 / np.maximum(y, 1e-9)
    xw, yw = x * w[:, None], y * w
    best: tuple[float, np.ndarray] | None = None
    k = x.shape[1]
    for r in range(1, k + 1):
        for cols in itertools.combinations(range(k), r):
            sol, *_ = np.linalg.lstsq(xw[:, cols], yw, rcond=None)
            if np.any(sol < 0):
                continue
            full = np.zeros(k)
            full[list(cols)] = sol
            err = float(np.sum((xw @ full - yw) ** 2))
            if best is None or err < best[0] - 1e-15:
                best = (err, full)
    assert best is not None  # the single-column fits of positive y are never negative
    return tuple(float(v) for v in best[1])  # type: ignore[return-value]


def priority_order(axes: Axes, shapes: Sequence[Shape]) -> list[Shape]:
    """``shapes`` in measuring order: per phase the smallest, the largest, the two remaining
    corners, then farthest-point fill in index space; phases interleaved (prefill first)."""
    per_phase: list[list[Shape]] = []
    for phase in ("prefill", "decode"):
        todo = [s for s in shapes if s.phase == phase]
        if not todo:
            continue
        pos = {s: np.array(axes.index(s)) for s in todo}
        order: list[Shape] = []

        def take(target: tuple[float, float]) -> None:
            rest = [s for s in todo if s not in order]
            if rest:
                t = np.array(target)
                # Nearest to the target corner; ties to the costlier shape (more attention, tokens).
                order.append(min(rest, key=lambda s: (float(np.sum((pos[s] - t) ** 2)), -s.attention, -s.tokens)))

        take((0.0, 0.0))
        take((1.0, 1.0))
        take((1.0, 0.0))
        take((0.0, 1.0))
        while len(order) < len(todo):
            rest = [s for s in todo if s not in order]
            chosen = np.array([pos[s] for s in order])
            far = max(rest, key=lambda s: (float(np.min(np.sum((chosen - pos[s]) ** 2, axis=1))), s.attention,
                                           s.tokens))
            order.append(far)
        per_phase.append(order)
    merged: list[Shape] = []
    for group in itertools.zip_longest(*per_phase):
        merged.extend(s for s in group if s is not None)
    return merged


@dataclass(frozen=True)
class Plan:
    """The points to measure, in order, with the estimated seconds they take (KV allocation
    included) and the KV-cache positions the largest of them needs."""

    points: tuple[Point, ...]
    est_s: float
    kv_tokens: int
    candidates: int
    budget_s: float
    kept: frozenset[Shape] = frozenset()  # shapes measured whatever the clock says (see :func:`plan`)

    def __len__(self) -> int:
        return len(self.points)

    @property
    def phases(self) -> set[str]:
        return {p.shape.phase for p in self.points}

    @property
    def layer_counts(self) -> set[int]:
        return {p.layers for p in self.points}


# Timed runs of one point at most, unless a caller asks for more (a small grid on a noisy machine).
DEFAULT_MAX_REPEATS = 15


def plan(axes: Axes, cost: CostModel, budget_s: float, *, max_positions: int | None = None,
         max_kv_tokens: int | None = None, kv_alloc_s_per_token: float = 0.0, min_repeats: int = 3,
         max_repeats: int = DEFAULT_MAX_REPEATS, max_share: float = 0.25, min_points: int = 0) -> Plan:
    """Choose the points to measure in ``budget_s`` seconds.

    Every shape is measured at each of ``axes.layer_counts`` (together, as one unit). A shape
    whose unit would take more than ``max_share`` of the budget is left out, so the largest
    shape kept is the largest affordable one. Repeats per point aim at about
    ``budget_s / (2·candidates)`` seconds of timed runs, between ``min_repeats`` and
    ``max_repeats``. Units are then taken in :func:`priority_order` while the running total
    (plus allocating the KV cache the largest point needs, at ``kv_alloc_s_per_token``) fits
    the budget; the first two units of each phase (its smallest and largest shapes) always, and
    so are the first units in that order that hold ``min_points`` points (the fewest a fit needs:
    a budget too small for them is overrun rather than leaving too little to fit). Those are the
    plan's ``kept``: the runner measures them even when the machine proves slower than the
    probe said."""
    if budget_s <= 0 or not math.isfinite(budget_s):
        raise ValueError(f"budget_s = {budget_s}: must be a positive number of seconds")
    if not 1 <= min_repeats <= max_repeats:
        raise ValueError(f"min_repeats = {min_repeats}, max_repeats = {max_repeats}: need 1 <= min <= max")
    phases: tuple[Phase, ...] = ("prefill", "decode")
    shapes = [s for ph in phases for s in axes.shapes(ph, max_positions=max_positions, max_kv_tokens=max_kv_tokens)]
    n_cand = len(shapes) * len(axes.layer_counts)
    # Seconds of timed runs a point aims at: a share of the budget, at most 1 s a point unless
    # more repeats are allowed than the default's.
    target = min(max(1.0, max_repeats / DEFAULT_MAX_REPEATS), max(0.02, budget_s / (2.0 * max(n_cand, 1))))

    def unit(shape: Shape) -> list[Point]:
        pts = []
        for n in axes.layer_counts:
            est = max(cost.step_s(shape, n), 1e-6)
            reps = int(min(max_repeats, max(min_repeats, math.ceil(target / est))))
            pts.append(Point(shape, n, warmup=2 if est < 0.05 else 1, repeats=reps, est_step_s=est))
        return pts

    def unit_cost(pts: list[Point], kv_now: int) -> float:
        kv = pts[0].shape.kv_tokens
        return sum(p.est_s for p in pts) + max(0, kv - kv_now) * kv_alloc_s_per_token

    affordable = [s for s in shapes if unit_cost([replace(p, repeats=min_repeats) for p in unit(s)], 0)
                  <= max_share * budget_s]
    # The smallest shape of each phase stays even if it alone is "unaffordable": a plan always
    # covers both phases.
    for ph in ("prefill", "decode"):
        mine = [s for s in shapes if s.phase == ph]
        if mine and not any(s.phase == ph for s in affordable):
            affordable.append(min(mine, key=lambda s: (s.kv_tokens, s.tokens, s.attention)))
    # Enough shapes for ``min_points``, the cheapest of the rest if the affordable ones are too few.
    need = math.ceil(min_points / len(axes.layer_counts))
    if len(affordable) < need:
        rest = sorted((s for s in shapes if s not in affordable),
                      key=lambda s: unit_cost([replace(p, repeats=min_repeats) for p in unit(s)], 0))
        affordable.extend(rest[:need - len(affordable)])
    order = priority_order(axes, affordable)
    firsts = set()
    for ph in ("prefill", "decode"):
        firsts.update([s for s in order if s.phase == ph][:2])
    # The first units in order that together hold ``min_points`` points.
    kept = frozenset(order[:need])
    firsts |= kept

    chosen: list[Point] = []
    total, kv_now = 0.0, 0
    for shape in order:
        pts = unit(shape)
        c = unit_cost(pts, kv_now)
        if shape not in firsts and total + c > budget_s:
            pts = [replace(p, repeats=min_repeats) for p in pts]  # fewer repeats before leaving it out
            c = unit_cost(pts, kv_now)
            if total + c > budget_s:
                continue
        chosen.extend(pts)
        total += c
        kv_now = max(kv_now, shape.kv_tokens)
    return Plan(points=tuple(chosen), est_s=total, kv_tokens=kv_now, candidates=n_cand, budget_s=budget_s,
                kept=kept)


_SHAPE_COLUMNS = ("phase", "sequences", "chunk", "start", "context")


def layer_differences(table: pa.Table) -> pa.Table:
    """For every shape measured at two layer counts L1 < L2 (the lowest and highest), the
    per-layer seconds ``(T(L2) − T(L1)) / (L2 − L1)`` and the fixed seconds
    ``T(L1) − L1·per_layer``: the measured per-layer part a fitted model's is compared with.

    ``table`` has the columns of :class:`~calibration.harness.run.Measurements`; the result
    has the shape columns, ``layers_low``, ``layers_high``, ``seconds_low``, ``seconds_high``,
    ``per_layer_s`` and ``fixed_s``."""
    cols = {c: table.column(c).to_pylist() for c in (*_SHAPE_COLUMNS, "layers", "seconds")}
    by_shape: dict[tuple, dict[int, float]] = {}
    for i in range(table.num_rows):
        key = tuple(cols[c][i] for c in _SHAPE_COLUMNS)
        by_shape.setdefault(key, {})[int(cols["layers"][i])] = float(cols["seconds"][i])
    out: dict[str, list] = {c: [] for c in (*_SHAPE_COLUMNS, "layers_low", "layers_high", "seconds_low",
                                            "seconds_high", "per_layer_s", "fixed_s")}
    for key, times in by_shape.items():
        if len(times) < 2:
            continue
        lo, hi = min(times), max(times)
        per_layer = (times[hi] - times[lo]) / (hi - lo)
        for c, v in zip(_SHAPE_COLUMNS, key):
            out[c].append(v)
        out["layers_low"].append(lo)
        out["layers_high"].append(hi)
        out["seconds_low"].append(times[lo])
        out["seconds_high"].append(times[hi])
        out["per_layer_s"].append(per_layer)
        out["fixed_s"].append(times[lo] - lo * per_layer)
    types = {"phase": pa.string(), "seconds_low": pa.float64(), "seconds_high": pa.float64(),
             "per_layer_s": pa.float64(), "fixed_s": pa.float64()}
    return pa.table({c: pa.array(v, type=types.get(c, pa.int64())) for c, v in out.items()})
