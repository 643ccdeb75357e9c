"""Operator-level GPU timing tables, read into one normalized form.

A source format (one module each; :mod:`calibration.operators.vidur` for the tables published
with Microsoft's Vidur simulator) turns its files into :class:`OperatorTables`: three pyarrow
tables in capsim's own vocabulary, which :mod:`calibration.operator_fit` fits. Adding a format is
one module with a ``read(path) -> OperatorTables`` and one line in :data:`FORMATS`.

- ``ops``: per-layer token-level operators. Columns ``gpu`` (catalog name), ``source_model``,
  ``hidden``, ``intermediate``, ``heads``, ``kv_heads``, ``vocab``, ``tp``, ``gated_mlp`` (the up
  projection computes gate and up, as in Llama), ``op`` (one of
  :data:`GEMM_OPS` or :data:`ELEMENTWISE_OPS`), ``tokens``, ``seconds`` (median), ``std_s``.
- ``attention``: ``gpu``, ``hidden``, ``heads``, ``kv_heads``, ``tp``, ``phase``
  (prefill|decode), ``batch``, ``chunk`` (prefill tokens; 0 for decode), ``context`` (cached
  tokens before the step), ``seconds``.
- ``collectives``: ``gpu``, ``topology``, ``collective`` (all_reduce|send_recv), ``workers``,
  ``devices_per_node``, ``bytes``, ``seconds``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa

__all__ = ["ELEMENTWISE_OPS", "FORMATS", "GEMM_OPS", "OperatorTables", "OperatorTableError", "read_operator_tables"]

# The linear layers of a Llama layer, as the step-time model's max(w, c_lin·N) term sees them.
GEMM_OPS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
# Bandwidth-bound per-token work outside the GEMMs, with how many times a layer runs each
# (two residual additions per layer: after attention and after the MLP).
ELEMENTWISE_OPS = {"input_norm": 1, "rope": 1, "post_norm": 1, "act": 1, "residual_add": 2}
# Once per iteration, not per layer.
ITERATION_OPS = ("embedding",)

OPS_SCHEMA = pa.schema([("gpu", pa.string()), ("source_model", pa.string()), ("hidden", pa.int64()),
                        ("intermediate", pa.int64()), ("heads", pa.int64()), ("kv_heads", pa.int64()),
                        ("vocab", pa.int64()), ("tp", pa.int64()), ("gated_mlp", pa.bool_()), ("op", pa.string()), ("tokens", pa.int64()),
                        ("seconds", pa.float64()), ("std_s", pa.float64())])
ATTENTION_SCHEMA = pa.schema([("gpu", pa.string()), ("hidden", pa.int64()), ("heads", pa.int64()),
                              ("kv_heads", pa.int64()), ("tp", pa.int64()), ("phase", pa.string()),
                              ("batch", pa.int64()), ("chunk", pa.int64()), ("context", pa.int64()),
                              ("seconds", pa.float64())])
COLLECTIVES_SCHEMA = pa.schema([("gpu", pa.string()), ("topology", pa.string()), ("collective", pa.string()),
                                ("workers", pa.int64()), ("devices_per_node", pa.int64()), ("bytes", pa.int64()),
                                ("seconds", pa.float64())])


class OperatorTableError(ValueError):
    """A timing table that cannot be read; the message is one line naming the file and the problem."""


@dataclass(frozen=True)
class OperatorTables:
    """Normalized operator timings (see the module docstring for the columns) and where they came from."""

    ops: pa.Table
    attention: pa.Table
    collectives: pa.Table
    source: str        # one line: what the tables are, where from, under which licence
    root: str          # the directory read


def _vidur(path: Path) -> OperatorTables:
    from calibration.operators import vidur

    return vidur.read(path)


FORMATS: dict[str, Callable[[Path], OperatorTables]] = {"vidur": _vidur}


def read_operator_tables(path: str | Path, fmt: str = "vidur") -> OperatorTables:
    """Read a directory of operator timing tables in format ``fmt``."""
    if fmt not in FORMATS:
        raise OperatorTableError(f"format = {fmt!r}: unknown; known formats: {', '.join(FORMATS)}")
    p = Path(path)
    if not p.is_dir():
        raise OperatorTableError(f"{p}: no such directory of operator timing tables")
    return FORMATS[fmt](p)
