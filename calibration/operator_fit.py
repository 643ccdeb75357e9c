"""Fitting the step-time model's terms to operator-level GPU timings, with held-out error.

Input: :class:`~calibration.operators.OperatorTables` (per-layer operators by token count, an
attention table, collectives). Each operator maps to a term of the step-time model
(:mod:`calibration.measured`):

- the four GEMMs of a layer (fused QKV, output, fused gate/up, down) are the linear-layer term,
  fitted per operator and as their per-layer sum by a rounded roofline
  t(N) = (w^k + (c·N)^k)^(1/k): the weight read w, the compute slope c per token, the knee k;
- norms, rotary, activation and residual additions are bandwidth-bound elementwise work,
  t(N) = a + b·N (a per-layer constant and a per-token slope);
- attention: decode a + b·S + c_dc·Σl over S sequences with Σl cached tokens; prefill
  a + c_pf·Σ c·p + c_pf_self·Σ c²/2 (pairs against cached tokens, and the chunk's own causal
  pairs, which FlashAttention prices differently);
- an all-reduce of m bytes over p GPUs: α_p + m/β_p.

Every fit holds out a quarter of its distinct x values (token counts, message sizes, attention
shapes; fixed seed) and reports its error only on those: median, p90 and max of |pred/meas − 1|.
Fits are in log space with a soft-L1 loss, so a 10 µs and a 10 ms operator count alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from calibration.operators import ELEMENTWISE_OPS, GEMM_OPS

__all__ = ["CollectiveFit", "Error", "GemmFit", "LayerFit", "LinearFit", "SoftRoof", "error_of", "fit_collectives",
           "fit_attention", "fit_layer", "heldout_mask", "fit_soft_roof"]

HOLDOUT = 0.25
SEED = 0
# all-reduce messages the acceptance scores (a decode step of a 70B model sends 16 KiB per
# sequence per all-reduce; a 4096-token prefill, 64 MiB)
MESSAGE_RANGE = (64 * 2**10, 64 * 2**20)

Error = dict[str, float]


def error_of(pred: np.ndarray, meas: np.ndarray) -> Error:
    """Median, p90 and max of |pred/meas − 1|, and how many points."""
    rel = np.abs(np.asarray(pred, dtype=np.float64) / np.asarray(meas, dtype=np.float64) - 1.0)
    if rel.size == 0:
        return {"median": float("nan"), "p90": float("nan"), "max": float("nan"), "points": 0}
    return {"median": float(np.median(rel)), "p90": float(np.quantile(rel, 0.9)), "max": float(rel.max()),
            "points": int(rel.size)}


def heldout_mask(x: np.ndarray, share: float = HOLDOUT, seed: int = SEED) -> np.ndarray:
    """True for rows whose x value is among a ``share`` of the distinct values (never the smallest
    or the largest, so that what is held out is interpolation, as the grid's gaps are)."""
    values = np.unique(x)
    inner = values[1:-1]
    k = int(round(share * values.size))
    chosen = np.random.default_rng(seed).choice(inner, size=min(k, inner.size), replace=False)
    return np.isin(x, chosen)


# -- the rounded roof ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SoftRoof:
    """t(N) = (w^k + (c·N)^k)^(1/k): weight-read floor w (s), compute slope c (s/token), knee k."""

    w: float
    c: float
    k: float

    def __call__(self, tokens: np.ndarray | float) -> np.ndarray:
        n = np.asarray(tokens, dtype=np.float64)
        lin = self.c * n
        top = np.maximum(self.w, lin)
        return top * ((self.w / top) ** self.k + (lin / top) ** self.k) ** (1.0 / self.k)

    def scaled(self, w: float = 1.0, c: float = 1.0) -> SoftRoof:
        return SoftRoof(self.w * w, self.c * c, self.k)


def fit_soft_roof(tokens: np.ndarray, seconds: np.ndarray) -> SoftRoof:
    """Least squares on log time (soft L1) for w, c, k, from a start at the grid's ends."""
    from scipy.optimize import least_squares

    n = np.asarray(tokens, dtype=np.float64)
    y = np.log(np.asarray(seconds, dtype=np.float64))
    w0 = float(np.exp(y[n <= n.min() * 4].min())) if n.size else 1e-5
    c0 = float(np.exp(y[np.argmax(n)]) / n.max())

    def model(th: np.ndarray) -> np.ndarray:
        return np.log(SoftRoof(*np.exp(th))(n))

    res = least_squares(lambda th: model(th) - y, np.log([w0, c0, 2.0]), loss="soft_l1", f_scale=0.05,
                        bounds=(np.log([1e-9, 1e-15, 0.5]), np.log([10.0, 1.0, 50.0])))
    return SoftRoof(*np.exp(res.x))


def _line(y: np.ndarray, columns: list[np.ndarray]) -> np.ndarray:
    """Non-negative coefficients of y ≈ Σ coef_i·columns_i, fitted on log y (soft L1)."""
    from scipy.optimize import least_squares, nnls

    a = np.column_stack(columns)
    scale = a.max(axis=0)
    scale[scale == 0] = 1.0
    start, _ = nnls(a / scale / y[:, None], np.ones_like(y))
    start = np.maximum(start / scale, 1e-15)
    ly = np.log(y)
    res = least_squares(lambda th: np.log(a @ np.exp(th)) - ly, np.log(start), loss="soft_l1", f_scale=0.05,
                        bounds=(np.full(a.shape[1], np.log(1e-16)), np.full(a.shape[1], 0.0)))
    return np.exp(res.x)


# -- one model shape at one TP degree ------------------------------------------------------------

@dataclass(frozen=True)
class GemmFit:
    op: str
    roof: SoftRoof
    heldout: Error


@dataclass(frozen=True)
class LinearFit:
    """One layer's token-level time: the four GEMMs (the linear-layer term) and, with them, the
    elementwise work around them, as measured tables at the fitted token counts and as rounded
    roofs (the roofs extrapolate past the tables and carry the physics)."""

    roof: SoftRoof            # the GEMM sum
    layer_roof: SoftRoof      # GEMMs + elementwise
    tokens: np.ndarray        # the fitted token counts (held-out ones excluded)
    gemm_seconds: np.ndarray  # per-layer GEMM time measured at them
    layer_seconds: np.ndarray  # per-layer GEMM + elementwise time measured at them
    heldout: Error            # the GEMM table's interpolation on held-out counts (what profiles price)
    heldout_roof: Error       # the GEMM roof alone on the same counts

    def __call__(self, tokens: np.ndarray | float) -> np.ndarray:
        """Per-layer token-level time as a profile prices it (table, then the roof's slope)."""
        n = np.asarray(tokens, dtype=np.float64)
        return np.where(n <= self.tokens[-1], np.interp(n, self.tokens, self.layer_seconds),
                        self.layer_seconds[-1] + self.layer_roof.c * (n - self.tokens[-1]))


@dataclass(frozen=True)
class LayerFit:
    """Everything token-level for one (GPU, layer shape, TP) measured table."""

    gpu: str
    source_model: str
    shape: dict[str, int]
    tp: int
    gemms: dict[str, GemmFit]
    linear: LinearFit
    elementwise: dict[str, tuple[float, float, Error]]     # op -> (a s, b s/token, held-out error), per run
    embedding: tuple[float, float, Error] | None
    phases: dict[str, Error]                              # held-out per-layer token-level time, by phase
    token_range: tuple[int, int]
    rows: pa.Table          # per token count: measured GEMM and layer seconds, priced seconds, held out
    notes: list[str] = field(default_factory=list)

    def elementwise_per_layer(self) -> tuple[float, float]:
        """(constant, per-token) seconds of one layer's elementwise work, with each op's repeats."""
        a = sum(ELEMENTWISE_OPS[op] * v[0] for op, v in self.elementwise.items())
        b = sum(ELEMENTWISE_OPS[op] * v[1] for op, v in self.elementwise.items())
        return a, b


def _per_token_medians(ops: pa.Table, op: str) -> tuple[np.ndarray, np.ndarray]:
    t = ops.filter(pc.equal(ops["op"], op))
    g = t.group_by("tokens").aggregate([("seconds", "approximate_median")]).sort_by("tokens")
    return g["tokens"].to_numpy().astype(np.float64), g["seconds_approximate_median"].to_numpy()


def fit_layer(ops: pa.Table, gpu: str, source_model: str, tp: int) -> LayerFit:
    """Fit one measured (GPU, model, TP) table: its rows of ``ops`` (see
    :mod:`calibration.operators`), held-out token counts shared by every operator."""
    sel = ops.filter(pc.and_(pc.and_(pc.equal(ops["gpu"], gpu), pc.equal(ops["source_model"], source_model)),
                             pc.equal(ops["tp"], tp)))
    if sel.num_rows == 0:
        raise ValueError(f"no operator timings for {source_model} on {gpu} at tp {tp}")
    shape = {k: int(sel[k][0].as_py()) for k in ("hidden", "intermediate", "heads", "kv_heads", "vocab")}
    series = {op: _per_token_medians(sel, op) for op in (*GEMM_OPS, *ELEMENTWISE_OPS, "embedding")}
    tokens = series[GEMM_OPS[0]][0]
    for op in GEMM_OPS:
        if not np.array_equal(series[op][0], tokens):
            raise ValueError(f"{source_model} on {gpu} tp {tp}: GEMM {op} was measured at other token counts")
    held = heldout_mask(tokens)
    fit = ~held

    gemms = {}
    for op in GEMM_OPS:
        n, s = series[op]
        roof = fit_soft_roof(n[fit], s[fit])
        gemms[op] = GemmFit(op, roof, error_of(roof(n[held]), s[held]))

    elementwise: dict[str, tuple[float, float, Error]] = {}
    notes = []
    for op in ELEMENTWISE_OPS:
        n, s = series[op]
        if n.size < 4:
            notes.append(f"no {op} timings: priced at 0")
            continue
        h = np.isin(n, tokens[held])
        a, b = _line(s[~h], [np.ones_like(n[~h]), n[~h]])
        elementwise[op] = (float(a), float(b), error_of(a + b * n[h], s[h]))
    embedding = None
    n, s = series["embedding"]
    if n.size >= 4:
        h = np.isin(n, tokens[held])
        a, b = _line(s[~h], [np.ones_like(n[~h]), n[~h]])
        embedding = (float(a), float(b), error_of(a + b * n[h], s[h]))

    gemm_total = sum(series[op][1] for op in GEMM_OPS)
    layer_total = gemm_total + sum(ELEMENTWISE_OPS[op] * np.interp(tokens, *series[op]) for op in elementwise)
    roof = fit_soft_roof(tokens[fit], gemm_total[fit])
    linear = LinearFit(roof=roof, layer_roof=fit_soft_roof(tokens[fit], layer_total[fit]), tokens=tokens[fit],
                       gemm_seconds=gemm_total[fit], layer_seconds=layer_total[fit],
                       heldout=error_of(np.interp(tokens[held], tokens[fit], gemm_total[fit]), gemm_total[held]),
                       heldout_roof=error_of(roof(tokens[held]), gemm_total[held]))
    # Held-out per-layer token-level time (GEMMs + elementwise), split where decode batches end.
    pred = linear(tokens)
    small = tokens <= 256
    phases = {"decode (N <= 256)": error_of(pred[held & small], layer_total[held & small]),
              "prefill (N > 256)": error_of(pred[held & ~small], layer_total[held & ~small])}
    return LayerFit(gpu=gpu, source_model=source_model, shape=shape, tp=tp, gemms=gemms, linear=linear,
                    elementwise=elementwise, embedding=embedding, phases=phases,
                    token_range=(int(tokens.min()), int(tokens.max())),
                    rows=pa.table({"tokens": tokens, "gemm_s": gemm_total, "layer_s": layer_total, "priced_s": pred,
                                   "gemm_roof_s": roof(tokens), "heldout": held}), notes=notes)


# -- attention -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AttentionFit:
    """Per-layer attention of one measured shape: decode a_dc + c_seq·S + c_dc·Σl; prefill
    a_pf + c_pf·Σc·p + c_pf_self·Σc²/2."""

    gpu: str
    shape: dict[str, int]   # hidden, heads, kv_heads, tp
    a_dc: float
    c_seq: float
    c_dc: float
    a_pf: float
    c_pf: float
    c_pf_self: float
    heldout: dict[str, Error]


def fit_attention(att: pa.Table) -> list[AttentionFit]:
    """One fit per measured (GPU, shape, TP) in the attention table."""
    out = []
    keys = att.select(["gpu", "hidden", "heads", "kv_heads", "tp"]).to_pylist()
    for key in {tuple(k.values()) for k in keys}:
        gpu, hidden, heads, kv_heads, tp = key
        m = np.ones(att.num_rows, bool)
        for name, v in zip(("gpu", "hidden", "heads", "kv_heads", "tp"), key):
            m &= np.asarray(att[name].to_pylist()) == v
        t = att.filter(pa.array(m))
        phase = np.asarray(t["phase"].to_pylist())
        b = t["batch"].to_numpy().astype(np.float64)
        ch = t["chunk"].to_numpy().astype(np.float64)
        ctx = t["context"].to_numpy().astype(np.float64)
        s = t["seconds"].to_numpy()
        heldout = {}
        dec = phase == "decode"
        # Decode: hold out a quarter of the (batch, context) shapes.
        sid = b[dec] * 1e6 + ctx[dec]
        h = heldout_mask(sid)
        cols = [np.ones(dec.sum()), b[dec], b[dec] * (ctx[dec] + 1.0)]
        a_dc, c_seq, c_dc = _line(s[dec][~h], [c[~h] for c in cols])
        heldout["attention decode"] = error_of(a_dc + c_seq * cols[1][h] + c_dc * cols[2][h], s[dec][h])
        pre = ~dec
        sid = ch[pre] * 1e6 + ctx[pre]
        h = heldout_mask(sid)
        cols = [np.ones(pre.sum()), b[pre] * ch[pre] * ctx[pre], b[pre] * ch[pre] ** 2 / 2.0]
        # The profile prices a chunk's read of its cached prefix at c_dc (as a decode's context):
        # the pair terms are fitted to what is left.
        read = c_dc * b[pre] * ctx[pre]
        rest = np.maximum(s[pre] - read, 0.05 * s[pre])
        a_pf, c_pf, c_self = _line(rest[~h], [c[~h] for c in cols])
        heldout["attention prefill"] = error_of(read[h] + a_pf + c_pf * cols[1][h] + c_self * cols[2][h], s[pre][h])
        out.append(AttentionFit(gpu=gpu, shape={"hidden": hidden, "heads": heads, "kv_heads": kv_heads, "tp": tp},
                                a_dc=float(a_dc), c_seq=float(c_seq), c_dc=float(c_dc), a_pf=float(a_pf),
                                c_pf=float(c_pf), c_pf_self=float(c_self), heldout=heldout))
    return out


# -- collectives -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CollectiveFit:
    """An all-reduce of m bytes over ``workers`` GPUs in one node: latency + m / bandwidth."""

    gpu: str
    topology: str
    workers: int
    latency_s: float
    algbw_bytes_per_s: float
    heldout: Error
    points: int

    def seconds(self, nbytes: np.ndarray | float) -> np.ndarray | float:
        return self.latency_s + np.asarray(nbytes, dtype=np.float64) / self.algbw_bytes_per_s

    @property
    def busbw_gb_s(self) -> float:
        """NCCL's bus bandwidth (algorithm bandwidth × 2(p−1)/p), comparable to the link's speed."""
        return self.algbw_bytes_per_s * 2.0 * (self.workers - 1) / self.workers / 1e9


def fit_collectives(coll: pa.Table, topology: str = "dgx") -> list[CollectiveFit]:
    """All-reduce fits per (GPU, workers) inside one node of ``topology``, over
    :data:`MESSAGE_RANGE`."""
    t = coll.filter(pc.and_(pc.equal(coll["collective"], "all_reduce"), pc.equal(coll["topology"], topology)))
    t = t.filter(pc.equal(t["workers"], t["devices_per_node"]))
    t = t.filter(pc.and_(pc.greater_equal(t["bytes"], MESSAGE_RANGE[0]), pc.less_equal(t["bytes"], MESSAGE_RANGE[1])))
    out = []
    for gpu in sorted(set(t["gpu"].to_pylist())):
        for p in sorted(set(t.filter(pc.equal(t["gpu"], gpu))["workers"].to_pylist())):
            r = t.filter(pc.and_(pc.equal(t["gpu"], gpu), pc.equal(t["workers"], p)))
            x = r["bytes"].to_numpy().astype(np.float64)
            y = r["seconds"].to_numpy()
            h = heldout_mask(x)
            lat, inv_bw = _line(y[~h], [np.ones((~h).sum()), x[~h]])
            out.append(CollectiveFit(gpu=gpu, topology=topology, workers=int(p), latency_s=float(lat),
                                     algbw_bytes_per_s=float(1.0 / inv_bw), heldout=error_of(lat + inv_bw * x[h], y[h]),
                                     points=int(x.size)))
    return out
