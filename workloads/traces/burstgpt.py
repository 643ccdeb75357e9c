"""BurstGPT (HPMLL/BurstGPT): ChatGPT and GPT-4 requests served on Azure, format ``burstgpt``.

CSV columns: ``Timestamp`` (seconds since the start of collection), ``Model`` (``ChatGPT``,
``GPT-4``), ``Request tokens``, ``Response tokens``, ``Total tokens``, ``Log Type``
(``Conversation log``, ``API log``); newer files may add columns, which are ignored.

The files keep failed requests, recorded with ``Response tokens`` 0. A simulator cannot replay a
request that generates nothing, so they are dropped and counted in `Trace.dropped` rather than
rejected; rows left out by the ``model=`` / ``log_type=`` filters are counted there too.

Duplicates: a row repeating the previous row's timestamp, lengths, model and log type is taken
for a doubled file and rejected (``allow_duplicates=True`` accepts it). The published files are
reported to hold whole-second timestamps, which makes an honest repeat less unlikely than in the
Azure traces; failed requests (retries) are left out of the comparison for that reason.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from workloads.traces.common import (
    Peek, Trace, Where, check_duplicates, check_lengths, check_nonnegative, check_order, make_trace, read_bytes,
    read_csv_strings, to_int64, to_times,
)

__all__ = ["COLUMNS", "load", "sniff"]

COLUMNS = ("Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type")
_NEEDED = ("Timestamp", "Request tokens", "Response tokens")
_FAILED = "zero output tokens (failed requests)"


def sniff(peek: Peek) -> str | None:
    """``burstgpt`` for a CSV whose header has BurstGPT's time and token columns."""
    return "burstgpt" if peek.suffix == ".csv" and set(_NEEDED) <= set(peek.header) else None


def _codes(values: pa.ChunkedArray) -> np.ndarray:
    """Equal strings get equal codes (nulls one code of their own), for row comparisons."""
    return pc.fill_null(pc.dictionary_encode(values.combine_chunks()).indices.cast(pa.int64()), -1).to_numpy()


def _keep(where: Where, table: pa.Table, column: str, value: str | None,
          keep: np.ndarray, dropped: dict[str, int]) -> None:
    """Narrow ``keep`` to rows whose ``column`` equals ``value`` (no-op when None)."""
    if value is None:
        return
    col = table.column(column)
    match = pc.fill_null(pc.equal(col, value), False).to_numpy(zero_copy_only=False)
    if not match.any():
        present = sorted(str(v) for v in pc.unique(col).to_pylist() if v is not None)
        raise where.error(f"no rows with {column} {value!r}; the file has {', '.join(present) or 'none'}")
    n = int((keep & ~match).sum())
    if n:
        dropped[f"{column} is not {value!r}"] = n
    keep &= match


def load(path: str, *, model: str | None = None, log_type: str | None = None,
         allow_duplicates: bool = False) -> Trace:
    """Load a BurstGPT CSV, optionally only one ``model`` and/or ``log_type``.

    Rows are checked in file order (sortedness over the whole file, so a filter cannot hide a
    step backwards); row numbers in messages are the file's, filters or not.
    """
    where = Where(path)
    needed = list(_NEEDED) + (["Model"] if model is not None else []) + (["Log Type"] if log_type is not None else [])
    table = read_csv_strings(where, read_bytes(path), needed,
                             f"burstgpt traces have {', '.join(COLUMNS)}", optional=("Model", "Log Type"))
    times = to_times(where, table.column("Timestamp"), "Timestamp", unit="s", example=None)
    prompt = to_int64(where, table.column("Request tokens"), "Request tokens")
    output = to_int64(where, table.column("Response tokens"), "Response tokens")
    check_nonnegative(where, prompt, "Request tokens")
    check_nonnegative(where, output, "Response tokens")
    check_order(where, times)
    failed = output == 0
    if not allow_duplicates:
        extra = [_codes(table.column(c)) for c in ("Model", "Log Type") if c in table.column_names]
        check_duplicates(where, times, prompt, output, extra, skip=failed)

    dropped: dict[str, int] = {}
    keep = np.ones(table.num_rows, dtype=bool)
    _keep(where, table, "Model", model, keep, dropped)
    _keep(where, table, "Log Type", log_type, keep, dropped)
    n_failed = int((keep & failed).sum())
    if n_failed:
        dropped[_FAILED] = n_failed
    keep &= ~failed
    index = np.flatnonzero(keep)
    if index.size == 0:
        reasons = "; ".join(f"{k}: {v}" for k, v in dropped.items())
        raise where.error(f"no requests left: all {table.num_rows} rows were dropped ({reasons})")
    sub = where.subset(index)
    prompt, output = prompt[index], output[index]
    check_lengths(sub, prompt, output, "Request tokens", "Response tokens")
    return make_trace(sub, "burstgpt", times.take(index), prompt, output, dropped=dropped)
