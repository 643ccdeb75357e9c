"""Writing result files whole: each through a temporary name beside it and ``os.replace``, so
that a crash or a kill never leaves half a file that a reader would take for a result (curves,
comparisons, benchmark validations, and the sweeps to come)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

__all__ = ["write_csv", "write_json", "write_table_and_json", "write_whole"]


def write_whole(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` to a temporary name beside ``path``, then ``os.replace`` it there: the file
    appears whole or not at all. Returns ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> Path:
    """``data`` as strict JSON (no NaN), indented, written whole."""
    return write_whole(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n"))


def write_csv(path: str | os.PathLike, table: pa.Table) -> Path:
    """``table`` as CSV with a header row (nulls as empty cells), written whole."""
    return write_whole(path, lambda tmp: pacsv.write_csv(table, str(tmp)))


def write_table_and_json(out_dir: str | os.PathLike, stem: str, table: pa.Table, data: dict[str, Any]) -> list[Path]:
    """``STEM.parquet`` (``table``) and ``STEM.json`` (``data``, strict JSON: no NaN) into
    ``out_dir`` (created if needed), each written whole. Returns the two paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [write_whole(out / f"{stem}.parquet", lambda tmp: pq.write_table(table, tmp)),
            write_json(out / f"{stem}.json", data)]
