"""Any CSV or Parquet table of requests, formats ``csv`` and ``parquet``, read through a column
mapping from our names to the file's::

    load_trace("reqs.parquet", columns={"arrival_s": "t", "prompt_tokens": "in",
                                        "output_tokens": "out", "session_id": "conv"},
               time_unit="ms")

Required: ``arrival_s``, ``prompt_tokens``, ``output_tokens``; optional: ``session_id``,
``prefix_id`` with ``prefix_tokens`` (both or neither), ``class``. The time column holds numbers
in ``time_unit`` (``s``, ``ms``, ``us``, ``ns``; any origin: times are made relative to the first
row) or date-times (typed, or ISO-8601 text, with ``time_unit`` ignored). Identity columns may
hold integers, kept as they are, or any text (UUIDs, hashes), numbered in order of first
appearance; empty means unknown (-1).

Rows with zero output tokens are errors, and a row that repeats the previous row's timestamp,
lengths (and session and class, when mapped) exactly is taken for a doubled file
(``allow_duplicates=True`` accepts it): a generic table is assumed to carry fine-grained times.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from workloads.traces.common import (
    Peek, Trace, TraceError, Where, check_duplicates, check_file, check_lengths, check_order, csv_header,
    make_trace, read_bytes, read_csv_strings, to_ids, to_int64, to_times,
)

__all__ = ["REQUIRED", "ROLES", "TIME_UNITS", "load_csv", "load_parquet", "sniff"]

ROLES = ("arrival_s", "prompt_tokens", "output_tokens", "session_id", "prefix_id", "prefix_tokens", "class")
REQUIRED = ROLES[:3]
TIME_UNITS = ("s", "ms", "us", "ns")
_EXAMPLE = "2023-11-16 18:17:03.9799600"


def sniff(peek: Peek) -> str | None:
    """``parquet`` for any Parquet file (its columns are named by the mapping); CSV files are
    claimed by the specific formats or left undetected, since a generic CSV needs a mapping."""
    return "parquet" if peek.suffix in (".parquet", ".pq") else None


def _mapping(path: str, fmt: str, columns: Mapping[str, str] | None, time_unit: str,
             available: Sequence[str]) -> dict[str, str]:
    """The validated mapping, or a one-line error naming what is wrong with it."""
    have = ", ".join(available)
    # The same words reach a Python caller (columns=, time_unit=), a scenario (its trace arrival's
    # columns: and time_unit: keys) and the command line (--columns, --time-unit): name both.
    if columns is None:
        raise TraceError(path, f"the {fmt} format needs a column mapping naming the file's columns ({have}): "
                               "--columns arrival_s=COL,prompt_tokens=COL,output_tokens=COL on the command line, "
                               "columns: {arrival_s: COL, ...} in a scenario, columns={...} in Python")
    if not isinstance(columns, Mapping):
        raise TraceError(path, f"columns (--columns) must be a mapping from {', '.join(ROLES)} to column names, "
                               f"not {type(columns).__name__}")
    for role, col in columns.items():
        if role not in ROLES:
            close = difflib.get_close_matches(str(role), ROLES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TraceError(path, f"columns (--columns) has an unknown role {role!r}{hint}; roles are "
                                   f"{', '.join(ROLES)}")
        if not isinstance(col, str):
            raise TraceError(path, f"columns[{role!r}] (--columns) must be a column name, not {col!r}")
    absent = [r for r in REQUIRED if r not in columns]
    if absent:
        raise TraceError(path, f"columns (--columns) lacks {', '.join(absent)}; {', '.join(REQUIRED)} are required")
    if ("prefix_id" in columns) != ("prefix_tokens" in columns):
        raise TraceError(path, "columns (--columns) must map prefix_id and prefix_tokens together (a prefix needs "
                               "both its identity and its length)")
    if time_unit not in TIME_UNITS:
        raise TraceError(path, f"time_unit (--time-unit) {time_unit!r} is not one of {', '.join(TIME_UNITS)}")
    missing = [c for c in dict.fromkeys(columns.values()) if c not in available]
    if missing:
        raise TraceError(path, f"missing column(s) {', '.join(missing)} named in columns (--columns); the file has "
                               f"{have}")
    return dict(columns)


def _load(where: Where, fmt: str, table: pa.Table, mapping: dict[str, str], time_unit: str,
          allow_duplicates: bool) -> Trace:
    """Convert and check the mapped columns of ``table`` (the file's rows, in order)."""

    def name(role: str) -> str:
        col = mapping[role]
        return col if col == role else f"{col} ({role})"

    def column(role: str) -> pa.ChunkedArray:
        return table.column(mapping[role])

    times = to_times(where, column("arrival_s"), name("arrival_s"), unit=time_unit, example=_EXAMPLE)
    prompt = to_int64(where, column("prompt_tokens"), name("prompt_tokens"))
    output = to_int64(where, column("output_tokens"), name("output_tokens"))
    check_lengths(where, prompt, output, name("prompt_tokens"), name("output_tokens"))
    session = to_ids(where, column("session_id"), name("session_id")) if "session_id" in mapping else None
    prefix_id = prefix_tokens = None
    if "prefix_id" in mapping:
        prefix_id = to_ids(where, column("prefix_id"), name("prefix_id"))
        prefix_tokens = to_int64(where, column("prefix_tokens"), name("prefix_tokens"), missing=0)
        bad = (prefix_tokens < 0) | (prefix_tokens > prompt) | ((prefix_tokens > 0) != (prefix_id != -1))
        if bad.any():
            i = int(np.argmax(bad))
            rule = ("must lie between 0 and the prompt's length" if not 0 <= prefix_tokens[i] <= prompt[i]
                    else "must be 0 exactly when the prefix id is missing")
            raise where.error(f"{name('prefix_tokens')} is {prefix_tokens[i]} with {name('prompt_tokens')} "
                              f"{prompt[i]} and {name('prefix_id')} {prefix_id[i]}; it {rule}", i)
    cls = None
    if "class" in mapping:
        cls = column("class").combine_chunks().cast(pa.string())
        if cls.null_count:
            first = int(np.argmax(pc.is_null(cls).to_numpy(zero_copy_only=False)))
            raise where.error(f"missing {name('class')}", first)
    check_order(where, times)
    if not allow_duplicates:
        extra = [a for a in (session,) if a is not None]
        if cls is not None:
            extra.append(pc.dictionary_encode(cls).indices.to_numpy())
        check_duplicates(where, times, prompt, output, extra)
    return make_trace(where, fmt, times, prompt, output, session_id=session, prefix_id=prefix_id,
                      prefix_tokens=prefix_tokens, cls=cls)


def load_csv(path: str, *, columns: Mapping[str, str] | None = None, time_unit: str = "s",
             allow_duplicates: bool = False) -> Trace:
    """Load a CSV (optionally ``.gz``) through the ``columns`` mapping."""
    where = Where(path)
    data = read_bytes(path)
    mapping = _mapping(path, "csv", columns, time_unit, csv_header(where, data))
    wanted = list(dict.fromkeys(mapping.values()))
    table = read_csv_strings(where, data, wanted, "")
    return _load(where, "csv", table, mapping, time_unit, allow_duplicates)


def load_parquet(path: str, *, columns: Mapping[str, str] | None = None, time_unit: str = "s",
                 allow_duplicates: bool = False) -> Trace:
    """Load a Parquet file through the ``columns`` mapping (only the mapped columns are read)."""
    import pyarrow.parquet as pq  # only Parquet files need it

    where = Where(path)
    check_file(path)
    try:
        names = pq.read_schema(path).names
        mapping = _mapping(path, "parquet", columns, time_unit, names)
        table = pq.read_table(path, columns=list(dict.fromkeys(mapping.values())))
    except (pa.ArrowException, OSError) as e:
        raise TraceError(path, f"not a readable Parquet file ({e})") from None
    if table.num_rows == 0:
        raise TraceError(path, "no requests: the file has no rows")
    return _load(where, "parquet", table, mapping, time_unit, allow_duplicates)
