"""Step-time profiles built from operator-level GPU timings (:mod:`calibration.operator_fit`).

For a catalog configuration (model, quantization, GPU, TP) the profile's terms come from:

- **Linear layers and the elementwise work around them**: where the GPU's tables hold the same
  layer shapes at that TP shard (hidden, intermediate, heads, KV heads; the vocabulary may
  differ), the measured per-layer table itself, interpolated (kind ``measured`` for fp16, the
  tables' precision; ``derived-from-measured`` for bf16, which runs the same tensor-core rate on
  the same bytes). Elsewhere each GEMM is priced at the efficiency (weight-read bandwidth,
  compute rate, knee) of the GPU's measured GEMM of the same role closest in size, and
  quantized schemes scale that: weight bytes by the scheme's bits, compute by the matmul rate
  the scheme resolves to (``derived-from-measured``).
- **Attention**: the measured attention fit when the shape matches, else scaled from it: decode
  per KV token by KV bytes per GPU and by the GPUs' measured bandwidth ratio, prefill per pair
  by query heads per GPU and the measured compute-rate ratio. The tables' kernels read an fp16
  KV cache, and the record says so (``meta["kv_cache_dtype"]``): a scenario's ``kv_cache_dtype``
  rescales the KV reads when the profile prices (:class:`calibration.measured.MeasuredProfile`),
  so one file serves every KV precision.
- **All-reduce**: two per layer, α_p + message/β_p fitted to the GPU's NCCL timings at that TP.
- **LM head**: a vocab × hidden/TP GEMM at the nearest measured GEMM's efficiency. **Embedding**:
  its measured line. **Per-iteration overhead** (scheduling, launch gaps; not in kernel timings):
  the roofline default.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from calibration.catalog import GPUS, MODELS, QUANTIZATIONS, ModelArch, resolve_precision
from calibration.measured import ProfileRecord, write_profile
from calibration.operator_fit import (AttentionFit, CollectiveFit, Error, LayerFit, SoftRoof, error_of,
                                      fit_attention, fit_collectives, fit_layer, fit_soft_roof)
from calibration.operators import ELEMENTWISE_OPS, GEMM_OPS, OperatorTables
from calibration.profile import ReplicaSpec
from calibration.spec import RooflineProfileSpec, build_profile

__all__ = ["GpuFits", "SHIPPED", "build_record", "fit_gpus", "gemm_shapes", "collectives_toml", "leave_one_model_out", "write_shipped"]

_TOKEN_GRID = np.unique(np.geomspace(1, 32768, 200).round())
# What the package ships (see calibration/profiles/README.md): (model, quantizations, GPU, TPs).
SHIPPED = (
    ("llama-3.1-8b", ("fp16", "bf16"), "a100-80gb", (1, 2, 4, 8)),
    ("llama-3.1-70b", ("fp16", "bf16"), "a100-80gb", (2, 4, 8)),
    ("llama-2-7b", ("fp16", "bf16"), "h100-sxm", (1, 2, 4, 8)),
    ("llama-2-70b", ("fp16", "bf16"), "h100-sxm", (2, 4, 8)),
    ("llama-3.1-70b", ("fp16", "bf16", "fp8"), "h100-sxm", (2, 4, 8)),
    ("llama-3.1-8b", ("fp16", "bf16", "fp8", "int4-awq"), "h100-sxm", (1, 2, 4, 8)),
    ("llama-3.1-70b", ("int4-awq",), "h100-sxm", (1, 2, 4)),
)


def gemm_shapes(hidden: int, heads: int, kv_heads: int, intermediate: int, tp: int) -> dict[str, tuple[int, int]]:
    """(K, M) of each GEMM of one layer's TP shard (tokens × K times K × M); head_dim = hidden / heads."""
    hd = hidden // heads
    return {"qkv_proj": (hidden, (heads + 2 * kv_heads) * hd // tp),
            "o_proj": (heads * hd // tp, hidden),
            "gate_up_proj": (hidden, 2 * intermediate // tp),
            "down_proj": (intermediate // tp, hidden)}


def _layer_shape(arch: ModelArch) -> dict[str, int]:
    return {"hidden": arch.hidden, "heads": arch.heads, "kv_heads": arch.kv_heads, "intermediate": arch.intermediate}


@dataclass(frozen=True)
class GpuFits:
    """Every fit of one GPU's tables."""

    gpu: str
    layers: dict[tuple[str, int], LayerFit]
    attention: list[AttentionFit]
    collectives: dict[int, CollectiveFit]
    bandwidth: float      # median weight-read bandwidth of the measured GEMMs >= 32 MiB, B/s
    rate: float           # median compute rate of those GEMMs, FLOP/s
    source: str

    def gemm_efficiencies(self, exclude: str | None = None) -> list[tuple[str, float, float, float, float]]:
        """(op, weight bytes, bandwidth, rate, knee) of every measured 16-bit GEMM."""
        out = []
        for (model, tp), fit in self.layers.items():
            if model == exclude:
                continue
            shapes = _shapes_of(fit)
            for op, g in fit.gemms.items():
                k, m = shapes[op]
                out.append((op, 2.0 * k * m, 2.0 * k * m / g.roof.w, 2.0 * k * m / g.roof.c, g.roof.k))
        return out


def _shapes_of(fit: LayerFit) -> dict[str, tuple[int, int]]:
    s = fit.shape
    return gemm_shapes(s["hidden"], s["heads"], s["kv_heads"], s["intermediate"], fit.tp)


def fit_gpus(tables: OperatorTables) -> dict[str, GpuFits]:
    """Fit every gated (Llama-style) model table, the attention tables and the collectives, per GPU."""
    ops = tables.ops.filter(pc.equal(tables.ops["gated_mlp"], True))
    keys = {(r["gpu"], r["source_model"], r["tp"]) for r in ops.select(["gpu", "source_model", "tp"]).to_pylist()}
    attention = fit_attention(tables.attention) if tables.attention.num_rows else []
    collectives = fit_collectives(tables.collectives) if tables.collectives.num_rows else []
    out = {}
    for gpu in sorted({k[0] for k in keys}):
        layers = {(m, tp): fit_layer(ops, gpu, m, tp) for g, m, tp in sorted(keys) if g == gpu}
        fits = GpuFits(gpu=gpu, layers=layers, attention=[a for a in attention if a.gpu == gpu],
                       collectives={c.workers: c for c in collectives if c.gpu == gpu}, bandwidth=0.0, rate=0.0,
                       source=tables.source)
        big = [(bw, r) for _, nbytes, bw, r, _ in fits.gemm_efficiencies() if nbytes >= 32 * 2**20]
        out[gpu] = replace(fits, bandwidth=float(np.median([b for b, _ in big])),
                           rate=float(np.median([r for _, r in big])))
    return out


def _match(fits: GpuFits, arch: ModelArch, tp: int) -> LayerFit | None:
    """The measured table with ``arch``'s layer shapes at ``tp``, if any."""
    same = [fit for (_, t), fit in sorted(fits.layers.items())
            if t == tp and (fit.shape["hidden"], fit.shape["intermediate"], fit.shape["heads"], fit.shape["kv_heads"])
            == (arch.hidden, arch.intermediate, arch.heads, arch.kv_heads) and arch.head_dim * arch.heads == arch.hidden]
    # Of equal layer shapes, prefer the one with the model's vocabulary (the same model family).
    return min(same, key=lambda f: f.shape["vocab"] != arch.vocab) if same else None


def _nearest_layer(fits: GpuFits, arch: ModelArch, tp: int) -> LayerFit:
    """The measured table closest in per-GPU width (for elementwise work and the embedding)."""
    def dist(item: tuple[tuple[str, int], LayerFit]) -> float:
        (_, t), f = item
        return (abs(np.log(f.shape["hidden"] / arch.hidden)) + abs(np.log(f.shape["intermediate"] / t
                                                                           / (arch.intermediate / tp))))
    return min(sorted(fits.layers.items()), key=dist)[1]


def _derived_gemms(fits: GpuFits, shape: dict[str, int], tp: int, weight_scale: float, rate_scale: float,
                   exclude: str | None = None) -> SoftRoof:
    """The per-layer GEMM sum priced at the efficiencies of the nearest measured GEMM of each role,
    weight reads × ``weight_scale`` and compute ÷ ``rate_scale``; a rounded roof fitted to it."""
    eff = fits.gemm_efficiencies(exclude)
    total = np.zeros_like(_TOKEN_GRID)
    for op, (k, m) in gemm_shapes(tp=tp, **shape).items():
        nbytes = 2.0 * k * m
        cand = [e for e in eff if e[0] == op] or eff
        _, _, bw, rate, knee = min(cand, key=lambda e: abs(np.log(e[1] / nbytes)))
        total = total + SoftRoof(nbytes * weight_scale / bw, nbytes / (rate * rate_scale), knee)(_TOKEN_GRID)
    return fit_soft_roof(_TOKEN_GRID, total)


def _head(fits: GpuFits, arch: ModelArch, tp: int) -> SoftRoof:
    """The LM head (vocab × hidden / tp, 16-bit) at the nearest measured GEMM's efficiency."""
    nbytes = 2.0 * arch.vocab * arch.hidden / tp
    _, _, bw, rate, knee = min(fits.gemm_efficiencies(), key=lambda e: abs(np.log(e[1] / nbytes)))
    return SoftRoof(nbytes / bw, nbytes / rate, knee)


def leave_one_model_out(fits: GpuFits) -> Error:
    """How well the nearest-GEMM pricing predicts each measured table when its own model is left
    out: the error of derived (unmeasured-shape) profiles' linear layers, over all token counts."""
    pred, meas = [], []
    for (model, tp), fit in fits.layers.items():
        shape = {k: fit.shape[k] for k in ("hidden", "heads", "kv_heads", "intermediate")}
        pred.append(_derived_gemms(fits, shape, tp, 1.0, 1.0, exclude=model)(fit.rows["tokens"].to_numpy()))
        meas.append(fit.rows["gemm_s"].to_numpy())
    return error_of(np.concatenate(pred), np.concatenate(meas)) if pred else error_of(np.zeros(0), np.zeros(0))


def _attention(fits: dict[str, GpuFits], gpu: str, arch: ModelArch, tp: int) -> tuple[AttentionFit, str]:
    """The attention fit for the shape, measured or scaled from the nearest measured one."""
    every = [a for f in fits.values() for a in f.attention]
    if not every:
        raise ValueError("the operator tables hold no attention timings")
    for a in every:
        if a.gpu == gpu and (a.shape["hidden"], a.shape["heads"], a.shape["kv_heads"], a.shape["tp"]) == (
                arch.hidden, arch.heads, arch.kv_heads, tp):
            return a, "measured"
    a = min(every, key=lambda a: (a.gpu != gpu, abs(np.log(a.shape["heads"] / a.shape["tp"] / (arch.heads / tp)))))
    src, dst = fits[a.gpu], fits[gpu]
    kv = (arch.kv_heads / tp * arch.head_dim) / (a.shape["kv_heads"] / a.shape["tp"] * a.shape["hidden"] / a.shape["heads"])
    q = (arch.heads / tp * arch.head_dim) / (a.shape["heads"] / a.shape["tp"] * a.shape["hidden"] / a.shape["heads"])
    bw, rate = src.bandwidth / dst.bandwidth, src.rate / dst.rate
    scaled = AttentionFit(gpu=gpu, shape={"hidden": arch.hidden, "heads": arch.heads, "kv_heads": arch.kv_heads, "tp": tp},
                          a_dc=a.a_dc, c_seq=a.c_seq, c_dc=a.c_dc * kv * bw, a_pf=a.a_pf, c_pf=a.c_pf * q * rate,
                          c_pf_self=a.c_pf_self * q * rate, heldout=a.heldout)
    how = (f"scaled from the {a.gpu} measurement at hidden {a.shape['hidden']}, {a.shape['heads']}/{a.shape['kv_heads']} "
           f"heads, tp {a.shape['tp']} (KV bytes x{kv:.3g}, query heads x{q:.3g}, measured GEMM bandwidth ratio "
           f"{bw:.3g}, compute ratio {rate:.3g})")
    return scaled, how


def _sig(x: float) -> float:
    return float(f"{x:.5g}")


def build_record(fits: dict[str, GpuFits], model: str, quantization: str, gpu: str, tp: int,
                 fitted_on: str | None = None) -> tuple[ProfileRecord, pa.Table]:
    """The profile of one configuration, and the per-token-count table stored beside it."""
    if gpu not in fits:
        raise ValueError(f"gpu = {gpu!r}: the operator tables measure {', '.join(fits)}")
    g, arch = fits[gpu], MODELS[model]
    if arch.is_moe:
        raise ValueError(f"model = {model!r}: a mixture of experts; the operator tables measure dense layers")
    quant = QUANTIZATIONS[quantization]
    precision = resolve_precision(quant, GPUS[gpu])
    base = build_profile(RooflineProfileSpec(), model=model, hardware=gpu, quantization=quantization, tp=tp)
    L = arch.layers
    sixteen = quant.weight_bits >= 16
    match = _match(g, arch, tp)
    near = match or _nearest_layer(g, arch, tp)
    width = arch.hidden / near.shape["hidden"]
    notes: list[str] = []
    heldout: dict[str, Error] = {}
    coef = {"t0": RooflineProfileSpec().overhead_s, "c_head": 0.0, "c_tok": 0.0, "c_seq": 0.0}
    table = None
    if match is not None and sixteen:
        lin = match.linear
        table = {"tokens": [float(t) for t in lin.tokens], "seconds": [_sig(s) for s in lin.layer_seconds]}
        coef.update(w=lin.layer_roof.w, c_lin=lin.layer_roof.c, knee=lin.layer_roof.k)
        kind = "measured" if quantization == "fp16" else "derived-from-measured"
        heldout["linear layers"] = lin.heldout
        heldout["linear layers, rounded roof alone"] = lin.heldout_roof
        heldout.update(match.phases)
        layers_how = (f"linear layers and elementwise ops measured on {match.source_model} at tp {tp}, whose layer "
                      f"shapes equal {arch.name}'s"
                      + ("" if match.shape["vocab"] == arch.vocab else " (its vocabulary differs: only the LM head)"))
        if quantization != "fp16":
            layers_how += f"; {quantization} on the fp16 timings: same tensor-core rate and 2-byte weights"
    else:
        rate_scale = GPUS[gpu].tflops.get(precision.compute, GPUS[gpu].bf16_tflops) / GPUS[gpu].bf16_tflops
        weight_scale = precision.weight_bytes / 2.0
        if match is not None:
            roof = _scaled_sum(match, weight_scale, rate_scale)
            heldout["linear layers (the fp16 measurement scaled)"] = match.linear.heldout_roof
            layers_how = (f"linear layers: the fp16 GEMMs measured on {match.source_model} at tp {tp}, weights x"
                          f"{weight_scale:.3g} ({precision.weight_bytes:g} bytes/weight) and compute at {precision.compute} "
                          f"(x{rate_scale:.3g} the fp16 rate)")
        else:
            roof = _derived_gemms(g, _layer_shape(arch), tp, weight_scale, rate_scale)
            heldout["linear layers (nearest measured GEMMs, leave-one-model-out)"] = leave_one_model_out(g)
            layers_how = (f"linear layers: no {gpu} table has {arch.name}'s layer shapes at tp {tp}; each GEMM priced "
                          f"at the efficiency of the {gpu}'s nearest measured GEMM of its role"
                          + (f", weights x{weight_scale:.3g}, compute at {precision.compute}" if not sixteen else ""))
        coef.update(w=roof.w, c_lin=roof.c, knee=roof.k)
        a_ew, b_ew = near.elementwise_per_layer()
        coef["t0"] += L * a_ew
        coef["c_tok"] += b_ew * width
        kind = "derived-from-measured"
        layers_how += f"; elementwise ops from {near.source_model} at tp {near.tp}, scaled by hidden size x{width:.3g}"
    if precision.note:
        notes.append(precision.note)

    att, att_how = _attention(fits, gpu, arch, tp)
    coef.update(c_seq=coef["c_seq"] + att.c_seq, c_dc=att.c_dc, c_pf=att.c_pf, c_pf_self=att.c_pf_self)
    coef["t0"] += L * att.a_dc
    for k, v in att.heldout.items():
        heldout[k if att_how == "measured" else f"{k} (at the measured shape)"] = v

    ar_how = "none (tp 1)"
    if tp > 1:
        if tp not in g.collectives:
            raise ValueError(f"tp = {tp}: the {gpu} tables have no all-reduce timings over {tp} GPUs")
        ar = g.collectives[tp]
        coef["t0"] += 2.0 * L * ar.latency_s
        coef["c_tok"] += 2.0 * arch.hidden * 2.0 / ar.algbw_bytes_per_s
        heldout["all-reduce"] = ar.heldout
        ar_how = (f"two per layer, {ar.latency_s * 1e6:.1f} us + message / {ar.algbw_bytes_per_s / 1e9:.0f} GB/s "
                  f"(NCCL on {ar.topology}, {tp} GPUs)")
    if near.embedding is not None:
        coef["t0"] += near.embedding[0]
        coef["c_tok"] += near.embedding[1] * width / L
    head = _head(g, arch, tp)
    coef["t0"] += head.w
    coef["c_head"] += head.c

    date = fitted_on or _dt.date.today().isoformat()
    source = (f"{g.source}; {gpu}, {kind}; {layers_how}; attention {att_how}; all-reduce {ar_how}; LM head at the "
              f"nearest measured GEMM's efficiency; per-iteration overhead {RooflineProfileSpec().overhead_s * 1e3:g} ms "
              f"(not in kernel timings); fitted {date}")
    validity = {"tokens_min": float(near.token_range[0]), "tokens_max": float(near.token_range[1]),
                "context_max": 4096.0, "tp": float(tp)}
    meta = {"source_tables": g.source, "gpu": gpu, "precision_measured": "fp16", "kv_cache_dtype": "fp16",
            "quantization": quantization, "fitted": date, "layers_from": near.source_model,
            "layer_shapes_match": match is not None,
            "gemm_heldout": {op: gf.heldout for op, gf in near.gemms.items()},
            "elementwise_heldout": {op: v[2] for op, v in near.elementwise.items()}, "notes": notes,
            "weights_fit": base.memory_shortfall_bytes(ReplicaSpec(tp=tp, gpu_memory_fraction=0.9, max_num_batched_tokens=8192)) <= 0}
    record = ProfileRecord(model=model, quantization=quantization, hardware=gpu, tp=tp, kind=kind,
                           coefficients={k: _sig(v) for k, v in coef.items()}, layers=L, validity=validity,
                           heldout_error=heldout, source=source, meta=meta, linear_table=table)
    rows = near.rows if table is not None else pa.table({"tokens": _TOKEN_GRID,
                                                          "gemm_roof_s": np.asarray(SoftRoof(coef["w"], coef["c_lin"], coef["knee"])(_TOKEN_GRID))})
    return record, rows


def _scaled_sum(fit: LayerFit, weight_scale: float, rate_scale: float) -> SoftRoof:
    """The measured GEMMs' roofs, weight reads and compute rescaled, summed, refitted."""
    total = sum(g.roof.scaled(w=weight_scale, c=1.0 / rate_scale)(_TOKEN_GRID) for g in fit.gemms.values())
    return fit_soft_roof(_TOKEN_GRID, total)


def write_shipped(tables: OperatorTables, out_dir: str | Path, fitted_on: str | None = None,
                  shipped: tuple = SHIPPED) -> list[Path]:
    """Write every profile in ``shipped`` that fits in the GPUs' memory; return the JSON paths."""
    fits = fit_gpus(tables)
    paths = []
    for model, quants, gpu, tps in shipped:
        for q in quants:
            for tp in tps:
                record, rows = build_record(fits, model, q, gpu, tp, fitted_on)
                if record.meta["weights_fit"]:
                    paths.append(write_profile(out_dir, record, rows))
    return paths


def collectives_toml(tables: OperatorTables) -> str:
    """``calibration/data/collectives.toml``: the all-reduce fits the roofline uses."""
    head = """# All-reduce inside one node (NVLink/NVSwitch), fitted to measured NCCL timings:
#   seconds = latency_us * 1e-6 + bytes / (algbw_gb_s * 1e9)
# over 64 KiB - 64 MiB messages. Source: Vidur's network tables (microsoft/vidur data/profiling,
# network/<gpu>_dgx/all_reduce.csv, MIT licence), fitted by calibration.operator_fit.fit_collectives
# (log-space soft-L1, a quarter of message sizes held out). Regenerate with
#   capsim calibrate --from-operators ../shared/gpu-measurements/vidur-profiling --collectives FILE
# tests/test_operator_fit.py refits the tables and checks these figures.
# The roofline uses them in place of the datasheet link speed and a guessed latency.
"""
    parts = [head]
    for c in fit_collectives(tables.collectives):
        parts.append(f'''
["{c.gpu}".{c.workers}]
latency_us = {c.latency_s * 1e6:.4g}
algbw_gb_s = {c.algbw_bytes_per_s / 1e9:.4g}
heldout_median = {c.heldout["median"]:.3f}
heldout_p90 = {c.heldout["p90"]:.3f}
''')
    return "".join(parts)
