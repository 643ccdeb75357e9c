"""Reading the files of a report's source directory (a plan, comparison, curve or sweep), each
failure a :class:`ReportError` of one line naming the file and what was wrong: shared by
:mod:`sim.analysis.report` and :mod:`sim.analysis.sweep_report`, so that every kind of source
refuses a missing, corrupt or misshapen file in the same words."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa

__all__ = ["ReportError", "finite", "read_json_object", "read_parquet"]


class ReportError(ValueError):
    """A source directory that cannot be made into a document; ``str(err)`` is one line."""


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: cannot be read ({e.__class__.__name__}: {e})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: holds a JSON {type(data).__name__}, not an object of keys")
    return data


def read_parquet(path: Path, missing: str | None) -> pa.Table | None:
    """The table in ``path``; where there is no such file, None if ``missing`` is None, else a
    :class:`ReportError` saying ``"{path}: missing ({missing})"``."""
    if not path.exists():
        if missing is not None:
            raise ReportError(f"{path}: missing ({missing})")
        return None
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise ReportError(f"{path}: not a readable Parquet file ({' '.join(str(e).split())})") from None


def finite(x: Any) -> float | None:
    """``x`` as a float when it is a finite number (not a bool), else None: how a document reads
    a figure that may be missing."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None
