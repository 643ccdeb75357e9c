"""Writing result files whole: each through a temporary name beside it and ``os.replace``, so
that a crash or a kill never leaves half a file that a reader would take for a result (curves,
comparisons, and the sweeps to come)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["write_table_and_json"]


def write_table_and_json(out_dir: str | os.PathLike, stem: str, table: pa.Table, data: dict[str, Any]) -> list[Path]:
    """``STEM.parquet`` (``table``) and ``STEM.json`` (``data``, strict JSON: no NaN) into
    ``out_dir`` (created if needed), each written whole. Returns the two paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parquet, text = out / f"{stem}.parquet", out / f"{stem}.json"
    tmp = out / f".{stem}.parquet.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, parquet)
    tmp = out / f".{stem}.json.tmp"
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, text)
    return [parquet, text]
