"""Reader for the operator timing tables published with Microsoft's Vidur simulator.

Layout (as in ``vidur/data/profiling``, files optionally gzipped): ``compute/<gpu>/<org>/<model>/
mlp.csv`` (per-layer token-level operators, one row per (num_tokens, TP degree)),
``compute/<gpu>/attention*.csv`` (FlashAttention prefill and decode kernels) and
``network/<gpu>_<topology>/{all_reduce,send_recv}.csv`` (NCCL collectives). Times are
milliseconds; each operator has ``time_stats.<op>.{min,max,mean,median,std}``; capsim takes the
median. The measurements are fp16 (Vidur profiles in fp16).

Vidur names the GPU only by family; its GPUs are the 80 GB SXM parts (A100 80GB on Azure NDv4,
H100 80GB on DGX), filed here under the catalog's ``a100-80gb`` and ``h100-sxm``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from calibration.operators import (ATTENTION_SCHEMA, COLLECTIVES_SCHEMA, OPS_SCHEMA, OperatorTableError,
                                   OperatorTables)

__all__ = ["GPU_NAMES", "OP_NAMES", "read"]

GPU_NAMES = {"a100": "a100-80gb", "h100": "h100-sxm"}
OP_NAMES = {"attn_pre_proj": "qkv_proj", "attn_post_proj": "o_proj", "mlp_up_proj": "gate_up_proj",
            "mlp_down_proj": "down_proj", "input_layernorm": "input_norm", "attn_rope": "rope",
            "post_attention_layernorm": "post_norm", "mlp_act": "act", "add": "residual_add", "emb": "embedding"}
_SHAPE = {"n_embd": "hidden", "n_expanded_embd": "intermediate", "n_head": "heads", "n_kv_head": "kv_heads",
          "vocab_size": "vocab", "num_tensor_parallel_workers": "tp", "num_tokens": "tokens"}
_MS = 1e-3
_REQUIRED = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")


def _csv(path: Path) -> dict[str, np.ndarray]:
    try:
        table = pacsv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise OperatorTableError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from None
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _need(path: Path, cols: dict[str, np.ndarray], names: list[str]) -> None:
    missing = [n for n in names if n not in cols]
    if missing:
        raise OperatorTableError(f"{path}: lacks column(s) {', '.join(missing)}")


def _median_s(cols: dict[str, np.ndarray], op: str) -> np.ndarray:
    v = np.asarray(cols[f"time_stats.{op}.median"], dtype=object)
    return np.array([np.nan if x is None else float(x) for x in v]) * _MS


def _gpu(path: Path, family: str) -> str:
    if family not in GPU_NAMES:
        raise OperatorTableError(f"{path}: GPU family {family!r} is not one capsim maps to its catalog "
                                 f"(known: {', '.join(GPU_NAMES)})")
    return GPU_NAMES[family]


def _ops(root: Path) -> pa.Table:
    parts = []
    for f in sorted((root / "compute").glob("*/*/*/mlp.csv*")):
        family, model = f.parts[-4], f"{f.parts[-3]}/{f.parts[-2]}"
        cols = _csv(f)
        # The GEMMs are required; an architecture without some elementwise op (phi-2 has no
        # post-attention norm) simply has no rows for it.
        _need(f, cols, list(_SHAPE) + [f"time_stats.{op}.median" for op in _REQUIRED])
        shape = {ours: np.asarray(cols[theirs], dtype=np.int64) for theirs, ours in _SHAPE.items()}
        gated = np.array([str(x).lower() == "true" for x in cols.get("use_gated_mlp", ["true"] * len(shape["tokens"]))])
        n = shape["tokens"].size
        for theirs, ours in OP_NAMES.items():
            if f"time_stats.{theirs}.median" not in cols:
                continue
            sec = _median_s(cols, theirs)
            std = np.asarray(cols[f"time_stats.{theirs}.std"], dtype=np.float64) * _MS \
                if f"time_stats.{theirs}.std" in cols else np.full(n, np.nan)
            ok = np.isfinite(sec) & (sec > 0)
            parts.append(pa.table({
                "gpu": pa.array([_gpu(f, family)] * int(ok.sum()), pa.string()),
                "source_model": pa.array([model] * int(ok.sum()), pa.string()),
                **{k: pa.array(shape[k][ok]) for k in ("hidden", "intermediate", "heads", "kv_heads", "vocab", "tp")},
                "gated_mlp": pa.array(gated[ok]),
                "op": pa.array([ours] * int(ok.sum()), pa.string()),
                "tokens": pa.array(shape["tokens"][ok]),
                "seconds": pa.array(sec[ok]), "std_s": pa.array(std[ok]),
            }, schema=OPS_SCHEMA))
    return pa.concat_tables(parts) if parts else OPS_SCHEMA.empty_table()


def _attention(root: Path) -> pa.Table:
    parts = []
    for f in sorted((root / "compute").glob("*/attention*.csv*")):
        family = f.parts[-2]
        cols = _csv(f)
        _need(f, cols, ["n_embd", "n_q_head", "n_kv_head", "num_tensor_parallel_workers", "batch_size",
                        "prefill_chunk_size", "kv_cache_size", "is_prefill", "time_stats.attn_prefill.median",
                        "time_stats.attn_decode.median"])
        pre = np.array([str(x).lower() == "true" for x in cols["is_prefill"]])
        sec = np.where(pre, _median_s(cols, "attn_prefill"), _median_s(cols, "attn_decode"))
        ok = np.isfinite(sec) & (sec > 0)
        heads = np.asarray(cols["n_q_head"], dtype=np.int64)
        n = int(ok.sum())
        parts.append(pa.table({
            "gpu": pa.array([_gpu(f, family)] * n, pa.string()),
            "hidden": pa.array(np.asarray(cols["n_embd"], dtype=np.int64)[ok]),
            "heads": pa.array(heads[ok]),
            "kv_heads": pa.array(np.asarray(cols["n_kv_head"], dtype=np.int64)[ok]),
            "tp": pa.array(np.asarray(cols["num_tensor_parallel_workers"], dtype=np.int64)[ok]),
            "phase": pa.array(np.where(pre, "prefill", "decode")[ok].tolist(), pa.string()),
            "batch": pa.array(np.asarray(cols["batch_size"], dtype=np.int64)[ok]),
            "chunk": pa.array(np.where(pre, np.asarray(cols["prefill_chunk_size"], dtype=np.int64), 0)[ok]),
            "context": pa.array(np.asarray(cols["kv_cache_size"], dtype=np.int64)[ok]),
            "seconds": pa.array(sec[ok]),
        }, schema=ATTENTION_SCHEMA))
    return pa.concat_tables(parts) if parts else ATTENTION_SCHEMA.empty_table()


def _collectives(root: Path) -> pa.Table:
    parts = []
    for f in sorted((root / "network").glob("*/*.csv*")):
        family, _, topology = f.parts[-2].partition("_")
        cols = _csv(f)
        _need(f, cols, ["num_workers", "devices_per_node", "size", "collective"])
        kinds = {str(k) for k in cols["collective"]}
        if len(kinds) != 1:
            raise OperatorTableError(f"{f}: holds several collectives ({', '.join(sorted(kinds))}); expected one")
        kind = kinds.pop()
        _need(f, cols, [f"time_stats.{kind}.median"])
        sec = _median_s(cols, kind)
        ok = np.isfinite(sec) & (sec > 0)
        n = int(ok.sum())
        parts.append(pa.table({
            "gpu": pa.array([_gpu(f, family)] * n, pa.string()),
            "topology": pa.array([topology] * n, pa.string()),
            "collective": pa.array([kind] * n, pa.string()),
            "workers": pa.array(np.asarray(cols["num_workers"], dtype=np.int64)[ok]),
            "devices_per_node": pa.array(np.asarray(cols["devices_per_node"], dtype=np.int64)[ok]),
            "bytes": pa.array(np.asarray(cols["size"], dtype=np.int64)[ok]),
            "seconds": pa.array(sec[ok]),
        }, schema=COLLECTIVES_SCHEMA))
    return pa.concat_tables(parts) if parts else COLLECTIVES_SCHEMA.empty_table()


def read(root: Path) -> OperatorTables:
    """Every table under ``root`` (a copy of Vidur's ``data/profiling``)."""
    ops = _ops(root)
    if ops.num_rows == 0:
        raise OperatorTableError(f"{root}: no compute/<gpu>/<org>/<model>/mlp.csv[.gz] tables found")
    return OperatorTables(ops=ops, attention=_attention(root), collectives=_collectives(root),
                          source="Vidur operator profiles (microsoft/vidur data/profiling, MIT licence; fp16, "
                                 "PyTorch kernels, medians)", root=str(root))
