"""What every trace loader shares: the `Trace` result, the one-line `TraceError`, reading files,
and vectorised conversion and validation of columns.

Loaders turn a file into plain numpy arrays (times, lengths, ids) and hand them to the checks
here, so that every format reports the same problems in the same words. Every check is a numpy or
pyarrow expression over whole columns; Python loops over rows run only on the error path, to
find which row to name, never on a file that loads.

Row numbers in messages are what a user counts in the file: for CSV the n-th data record (header
excluded, blank lines skipped, as pyarrow skips them), for JSON lines the physical line number.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from workloads.limits import MAX_TOKENS

__all__ = [
    "TRACE_SCHEMA", "Peek", "Times", "Trace", "TraceError", "Where", "check_duplicates", "check_file",
    "check_lengths", "check_nonnegative", "check_order", "csv_header", "make_trace", "peek", "read_bytes",
    "read_csv_strings", "to_ids", "to_int64", "to_times",
]

TRACE_SCHEMA = pa.schema([
    ("arrival_s", pa.float64()),
    ("prompt_tokens", pa.int64()),
    ("output_tokens", pa.int64()),
    ("session_id", pa.int64()),
    ("prefix_id", pa.int64()),
    ("prefix_tokens", pa.int64()),
])
"""Columns of `Trace.table`, in order; a generic mapping with a ``class`` column appends it."""

_GZIP_MAGIC = b"\x1f\x8b"
_PEEK_BYTES = 1 << 16


class TraceError(ValueError):
    """A trace file that cannot be loaded faithfully.

    ``str(err)`` is one line, ``"<file>: row <n>: <problem>"``, or ``"<file>: <problem>"`` when
    the problem concerns the whole file; ``path``, ``row`` and ``problem`` hold the parts so a
    caller can re-word them.
    """

    def __init__(self, path: str, problem: str, row: int | None = None, *, unit: str = "row") -> None:
        self.path = str(path)
        self.row = row
        # Wrapped library messages can span lines; the contract is one line.
        self.problem = " ".join(problem.split())
        where = f"{self.path}: " if row is None else f"{self.path}: {unit} {row}: "
        super().__init__(where + self.problem)


@dataclass(frozen=True)
class Trace:
    """A real trace as a request table, with where it came from and what was left out.

    ``table`` has the columns of `TRACE_SCHEMA` (plus ``class`` when a generic mapping named one):
    ``arrival_s`` in seconds since the first request (first 0.0, non-decreasing),
    ``prompt_tokens`` and ``output_tokens`` (both >= 1), ``session_id`` (-1 unknown),
    ``prefix_id`` (-1 none) and ``prefix_tokens`` (0 none). ``start`` keeps the first request's
    timestamp as the file wrote it, since ``arrival_s`` is relative. ``dropped`` counts rows left
    out on purpose, by reason, so that a replay states what it did not replay.
    """

    path: str
    format: str
    table: pa.Table
    start: str
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def num_requests(self) -> int:
        """Rows in ``table``."""
        return self.table.num_rows

    @property
    def duration_s(self) -> float:
        """Seconds from the first arrival to the last (0.0 for fewer than two requests)."""
        n = self.table.num_rows
        return float(self.table.column("arrival_s")[n - 1].as_py()) if n else 0.0

    @property
    def mean_rate_per_s(self) -> float:
        """(n - 1) / duration: arrivals per second between the first and the last request.

        n - 1 because n arrivals span n - 1 gaps; nan for fewer than two requests, inf when they
        all arrive at once (both undefined rates, stated rather than guessed).
        """
        n = self.table.num_rows
        if n < 2:
            return float("nan")
        d = self.duration_s
        return (n - 1) / d if d > 0 else float("inf")

    def require_rate(self) -> None:
        """Refuse a trace whose rate is undefined (`mean_rate_per_s` nan or inf): fewer than two
        requests, or all at one instant. What describing or replaying it at a rate needs."""
        n = self.table.num_rows
        if n < 2:
            raise TraceError(self.path, f"the trace holds {n} request{'s' if n != 1 else ''}: a rate needs at least 2 "
                                        "requests at distinct times")
        if self.duration_s <= 0:
            raise TraceError(self.path, f"all {n} requests arrive at the same instant ({self.start}): a rate needs "
                                        "at least 2 requests at distinct times")


@dataclass(frozen=True)
class Where:
    """Names rows in messages: maps an index into the loader's arrays to the row (or line) a user
    finds in the file, which differs once rows were filtered or blank lines skipped."""

    path: str
    rows: np.ndarray | None = None
    unit: str = "row"

    def row(self, i: int) -> int:
        """The 1-based row (or line) in the file of array index ``i``."""
        return int(self.rows[i]) if self.rows is not None else i + 1

    def error(self, problem: str, i: int | None = None) -> TraceError:
        """A `TraceError` for array index ``i``, or for the whole file when ``i`` is None."""
        return TraceError(self.path, problem, None if i is None else self.row(i), unit=self.unit)

    def subset(self, index: np.ndarray) -> Where:
        """The same file seen through a selection of its rows (``index`` into the arrays)."""
        return Where(self.path, index + 1 if self.rows is None else self.rows[index], self.unit)


# ----------------------------------------------------------------------------------------------
# Files


def check_file(path: str) -> Path:
    """``path`` as a `Path` once it is known to be a non-empty regular file."""
    p = Path(path)
    if not p.exists():
        raise TraceError(path, "file not found")
    if not p.is_file():
        raise TraceError(path, "not a regular file (a directory?)")
    if p.stat().st_size == 0:
        raise TraceError(path, "empty file (no header, no rows)")
    return p


def _is_gz(path: str) -> bool:
    return path.lower().endswith(".gz")


def _open_gz_checked(path: str, p: Path) -> None:
    with p.open("rb") as f:
        magic = f.read(2)
    if magic != _GZIP_MAGIC:
        raise TraceError(path, "not a gzip file (the name ends in .gz but the content does not "
                               "start with the gzip magic bytes); rename it or compress it")


def read_bytes(path: str) -> bytes:
    """The whole file, decompressed when its name ends in ``.gz``.

    Held in memory on purpose: traces are tens of MB at most, and one buffer lets the parsers
    and the error-path row locators read the same bytes.
    """
    p = check_file(path)
    if not _is_gz(path):
        return p.read_bytes()
    _open_gz_checked(path, p)
    try:
        data = gzip.decompress(p.read_bytes())
    except (OSError, EOFError, zlib.error) as e:
        raise TraceError(path, f"corrupt gzip data ({e})") from None
    if not data.strip():
        raise TraceError(path, "empty file (no header, no rows)")
    return data


@dataclass(frozen=True)
class Peek:
    """What format detection looks at: the name's suffix (``.gz`` removed, lower case), the
    column names (CSV header, Parquet schema, or the keys of the first JSON object) and the first
    CSV data row."""

    path: str
    suffix: str
    header: tuple[str, ...]
    first: tuple[str, ...] | None


def peek(path: str) -> Peek:
    """Read just enough of ``path`` to guess its format (64 KiB at most, never the whole file)."""
    p = check_file(path)
    name = p.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = Path(name).suffix
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq  # only Parquet files need it

        try:
            return Peek(path, suffix, tuple(pq.read_schema(p).names), None)
        except (pa.ArrowException, OSError) as e:
            raise TraceError(path, f"not a Parquet file ({e})") from None
    if _is_gz(path):
        _open_gz_checked(path, p)
        try:
            with gzip.open(p, "rb") as f:
                head = f.read(_PEEK_BYTES)
        except (OSError, EOFError, zlib.error) as e:
            raise TraceError(path, f"corrupt gzip data ({e})") from None
    else:
        with p.open("rb") as f:
            head = f.read(_PEEK_BYTES)
    text = head.decode("utf-8-sig", errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise TraceError(path, "empty file (no header, no rows)")
    if suffix in (".jsonl", ".json", ".ndjson"):
        import json

        try:
            obj = json.loads(lines[0])
        except ValueError:
            obj = None
        return Peek(path, suffix, tuple(obj) if isinstance(obj, dict) else (), None)
    rows = list(csv.reader(lines[:2]))
    return Peek(path, suffix, tuple(rows[0]), tuple(rows[1]) if len(rows) > 1 else None)


def _find_ragged_row(data: bytes, width: int) -> tuple[int, int] | None:
    """(data row, field count) of the first CSV record whose width differs from the header's.

    Error path only: pyarrow reports the bad record's text but not reliably its number.
    """
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig", errors="replace")))
    next(reader, None)
    n = 0
    for fields in reader:
        if not fields:
            continue  # blank line: pyarrow skips it, so it does not count
        n += 1
        if len(fields) != width:
            return n, len(fields)
    return None


def _check_utf8(where: Where, data: bytes) -> None:
    """Name the first CSV row (or the header) that is not UTF-8 text, if any. Error path only."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        lines = data[: e.start].split(b"\n")
        byte = data[e.start: e.start + 1].hex()
        if len(lines) == 1:
            raise where.error(f"the header is not valid UTF-8 text (byte 0x{byte}); save the file as UTF-8") from None
        # Data rows before the bad line (blank lines do not count, as pyarrow skips them), then it.
        row = sum(1 for ln in lines[1:-1] if ln.strip()) + 1
        raise where.error(f"not valid UTF-8 text (byte 0x{byte}); save the file as UTF-8", row - 1) from None


def csv_header(where: Where, data: bytes) -> list[str]:
    """The column names on the first line of CSV ``data``."""
    end = data.find(b"\n")
    try:
        first = data[: end if end >= 0 else len(data)].decode("utf-8-sig")
    except UnicodeDecodeError as e:
        byte = data[e.start: e.start + 1].hex()
        raise where.error(f"the header is not valid UTF-8 text (byte 0x{byte}); save the file as UTF-8") from None
    header = next(csv.reader([first.rstrip("\r")]), [])
    if not any(h.strip() for h in header):
        raise where.error("no header line (the first line is blank)")
    return header


def read_csv_strings(where: Where, data: bytes, required: Sequence[str], needs: str,
                     optional: Sequence[str] = ()) -> pa.Table:
    """The ``required`` columns (and those of ``optional`` present) of a CSV, as strings.

    Read as strings, not inferred, because pyarrow infers a column's type from the first block
    and then fails on a bad value deep in the file with no row number; converting afterwards (see
    `to_int64`, `to_times`) lets us name the row. Empty fields become nulls. ``needs`` completes
    the message for missing columns, e.g. "azure-2023 traces have TIMESTAMP, ...".
    """
    header = csv_header(where, data)
    missing = [c for c in required if c not in header]
    if missing:
        raise where.error(f"missing column(s) {', '.join(missing)}; {needs}")
    wanted = list(required) + [c for c in optional if c in header and c not in required]
    # Only an empty field is missing: "nan", "NULL" or "N/A" in a number column is named as the
    # text it is (pyarrow's default would silently make them nulls, reported as "missing").
    opts = pacsv.ConvertOptions(include_columns=wanted, column_types={c: pa.string() for c in wanted},
                                strings_can_be_null=True, null_values=[""])
    try:
        table = pacsv.read_csv(pa.BufferReader(data), convert_options=opts)
    except pa.ArrowInvalid as e:
        bad = _find_ragged_row(data, len(header))
        if bad is not None:
            raise where.error(f"{bad[1]} fields where the header has {len(header)}", bad[0] - 1) from None
        _check_utf8(where, data)
        raise where.error(f"cannot parse CSV ({e})") from None
    if table.num_rows == 0:
        raise where.error("no requests: the file has a header but no rows")
    return table


# ----------------------------------------------------------------------------------------------
# Column conversion


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def _check_nulls(where: Where, values: pa.Array, name: str) -> None:
    if values.null_count:
        raise where.error(f"missing {name}", _first(pc.is_null(values).to_numpy(zero_copy_only=False)))


def _first_failure(values: pa.Array, convert: Callable[[pa.Array], object]) -> int:
    """Index of the first element ``convert`` rejects, by bisection over zero-copy slices:
    a handful of vectorised casts instead of one Python call per row."""
    lo, hi = 0, len(values)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            convert(values.slice(lo, mid - lo))
            lo = mid
        except (pa.ArrowInvalid, ValueError):
            hi = mid
    return lo


def _show(v: object) -> str:
    return f"'{v}'" if isinstance(v, str) else repr(v)


_INT_TEXT = r"^[+-]?[0-9]+(\.0*)?$"


def to_int64(where: Where, values: pa.Array | pa.ChunkedArray, name: str, *,
             missing: int | None = None) -> np.ndarray:
    """A column of whole numbers as int64; ``name`` is how messages call it.

    Accepts integer columns, floats that are whole (12.0, as pandas writes an int column that had
    a gap) and strings of either; names the first row that is missing, fractional (12.5) or not a
    number ("abc"). Sign is not checked here: each loader says which values are allowed.
    Empty values are errors unless ``missing`` gives the value they stand for.
    """
    values = _array(values)
    if missing is not None and values.null_count:
        text = pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
        values = pc.fill_null(values, str(missing) if text else missing)
    _check_nulls(where, values, name)
    t = values.type
    if pa.types.is_integer(t):
        try:
            return values.cast(pa.int64()).to_numpy()
        except pa.ArrowInvalid:
            i = _first_failure(values, lambda a: a.cast(pa.int64()))
            raise where.error(f"{name} is {values[i].as_py()}, too large for int64", i) from None
    if pa.types.is_floating(t):
        x = values.to_numpy(zero_copy_only=False).astype(np.float64)
        bad = ~np.isfinite(x) | (x != np.round(x)) | (np.abs(x) > 2.0**62)
        if bad.any():
            i = _first(bad)
            raise where.error(f"{name} is {x[i]!r}, not an integer", i)
        return x.astype(np.int64)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        s = pc.utf8_trim_whitespace(values)
        try:
            return s.cast(pa.int64()).to_numpy()
        except pa.ArrowInvalid:
            pass
        ok = pc.match_substring_regex(s, _INT_TEXT).to_numpy(zero_copy_only=False)
        if not ok.all():
            i = _first(~ok)
            raise where.error(f"{name} is {_show(values[i].as_py())}, not an integer", i)
        digits = pc.replace_substring_regex(pc.replace_substring_regex(s, r"\.0*$", ""), r"^\+", "")
        try:
            return digits.cast(pa.int64()).to_numpy()
        except pa.ArrowInvalid:
            i = _first_failure(digits, lambda a: a.cast(pa.int64()))
            raise where.error(f"{name} is {_show(values[i].as_py())}, too large for int64", i) from None
    raise where.error(f"column {name} holds {t}, not integers")


# Text an identity column uses for "none" (pyarrow's default null values, which CSV reading no
# longer applies, so that a number column shows them as the text they are).
_NULL_TEXT = pa.array(["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                       "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null", "None"])


def to_ids(where: Where, values: pa.Array | pa.ChunkedArray, name: str) -> np.ndarray:
    """Identity columns (session, prefix) as int64, -1 where missing.

    Integers are kept; any other values (UUIDs, hashes as text) are numbered in order of first
    appearance, since only equality matters to the simulator.
    """
    values = _array(values)
    t = values.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return to_int64(where, values, name, missing=-1)
    text = pc.utf8_trim_whitespace(values.cast(pa.string()))
    text = pc.if_else(pc.is_in(text, value_set=_NULL_TEXT), pa.scalar(None, pa.string()), text)
    try:
        codes = text.cast(pa.int64())
    except pa.ArrowInvalid:
        codes = pc.dictionary_encode(text).indices.cast(pa.int64())
    return pc.fill_null(codes, -1).to_numpy()


_UNIT_PER_S = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


@dataclass(frozen=True)
class Times:
    """A parsed time column: ``key`` orders rows exactly (int64 ns since the epoch for
    date-times, the raw numbers otherwise), ``per_s`` is key units per second, and ``text(i)``
    shows row ``i`` as the file wrote it, for messages and `Trace.start`."""

    key: np.ndarray
    per_s: int
    text: Callable[[int], str]

    def arrival_s(self) -> np.ndarray:
        """Seconds since the first row: differences taken in the key's own type (exact for
        integers), then one division, so the result is correctly rounded."""
        return (self.key - self.key[0]).astype(np.float64) / self.per_s

    def take(self, index: np.ndarray) -> Times:
        """The rows at ``index``, still shown as the file wrote them."""
        return Times(self.key[index], self.per_s, lambda i: self.text(int(index[i])))


def to_times(where: Where, values: pa.Array | pa.ChunkedArray, name: str, *, unit: str | None,
             example: str | None) -> Times:
    """Parse a time column: numbers in ``unit`` (None: numbers not allowed), or date-times,
    typed or as text like ``example`` (None: date-times not allowed).

    Text is parsed by pyarrow's ISO-8601 cast, vectorised, which takes up to 9 fractional digits
    (Python's ``strptime`` stops at 6) and a UTC offset (stored as UTC).
    """
    values = _array(values)
    _check_nulls(where, values, name)
    t = values.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        if example is None:
            raise where.error(f"column {name} holds date-times; it must hold numbers of {unit}")
        if pa.types.is_date(t):
            values = values.cast(pa.timestamp("ns"))
        ts = values.cast(pa.timestamp("ns", values.type.tz))
        key = ts.cast(pa.int64()).to_numpy()
        tz = f" {values.type.tz}" if values.type.tz else ""
        return Times(key, _UNIT_PER_S["ns"], lambda i: str(np.datetime64(int(key[i]), "ns")).replace("T", " ") + tz)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        if unit is None:
            raise where.error(f"{name} is {values[0].as_py()!r}, a number; expected a date-time like {example}", 0)
        key = values.to_numpy(zero_copy_only=False).astype(np.int64 if pa.types.is_integer(t) else np.float64)
        if key.dtype.kind == "f" and not np.isfinite(key).all():
            i = _first(~np.isfinite(key))
            raise where.error(f"{name} is {key[i]!r}, not a finite time", i)
        return Times(key, _UNIT_PER_S[unit], lambda i: f"{key[i].item()!r} {unit}")
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _text_times(where, values, name, unit, example)
    raise where.error(f"column {name} holds {t}, not times")


def _text_times(where: Where, values: pa.Array, name: str, unit: str | None, example: str | None) -> Times:
    """`to_times` for text. The first row decides what the column holds (numbers, naive
    date-times, or date-times with an offset) and the first row that disagrees is named."""
    s = pc.utf8_trim_whitespace(values)
    # (what a value should be, type to cast to, key units per second). Integers come first so
    # that nanosecond counts keep all their digits; a column with fractions falls back to floats.
    kinds: list[tuple[str, pa.DataType, int]] = []
    if unit is not None:
        kinds += [("an integer", pa.int64(), _UNIT_PER_S[unit]), ("a number", pa.float64(), _UNIT_PER_S[unit])]
    if example is not None:
        ns = _UNIT_PER_S["ns"]
        kinds += [(f"a date-time like {example}", pa.timestamp("ns"), ns),
                  ("a date-time with a UTC offset", pa.timestamp("ns", "UTC"), ns)]
    k = next((k for k, kind in enumerate(kinds) if _casts(s.slice(0, 1), kind[1])), None)
    if k is None:
        wants = " or ".join(w for w, *_ in kinds[1 if unit is not None else 0:])
        raise where.error(f"{name} is {_show(values[0].as_py())}, not {wants}", 0)
    if kinds[k][1] == pa.int64() and not _casts(s, pa.int64()):
        k += 1
    what, ty, per_s = kinds[k]
    try:
        parsed = s.cast(ty)
    except pa.ArrowInvalid:
        i = _first_failure(s, lambda a: a.cast(ty))
        hint = ""
        if pa.types.is_timestamp(ty) and _casts(s.slice(i, 1), pa.timestamp("ns", None if ty.tz else "UTC")):
            hint = "; rows mix date-times with and without a UTC offset"
        raise where.error(f"{name} is {_show(values[i].as_py())}, not {what} (as {where.unit} {where.row(0)} is)"
                          f"{hint}", i) from None
    key = parsed.cast(pa.int64()).to_numpy() if pa.types.is_timestamp(ty) else parsed.to_numpy()
    if key.dtype.kind == "f" and not np.isfinite(key).all():
        i = _first(~np.isfinite(key))
        raise where.error(f"{name} is {_show(values[i].as_py())}, not a finite time", i)
    shown = "" if pa.types.is_timestamp(ty) else f" {unit}"
    return Times(key, per_s, lambda i: f"{values[i].as_py().strip()}{shown}")


def _casts(values: pa.Array, ty: pa.DataType) -> bool:
    try:
        values.cast(ty)
    except pa.ArrowInvalid:
        return False
    return True


# ----------------------------------------------------------------------------------------------
# Checks


def _too_long(name: str, value: int) -> str:
    return f"{name} is {value}; more than {MAX_TOKENS:,} tokens, longer than any model's context (a corrupt row?)"


def check_nonnegative(where: Where, values: np.ndarray, name: str) -> None:
    """No negative counts and none above ``MAX_TOKENS`` (see :mod:`workloads.limits`), checked
    before rows are dropped so a dropped row is still a sane one."""
    if (values < 0).any():
        i = _first(values < 0)
        raise where.error(f"{name} is {values[i]}; token counts cannot be negative", i)
    if (values > MAX_TOKENS).any():
        i = _first(values > MAX_TOKENS)
        raise where.error(_too_long(name, values[i]), i)


def check_lengths(where: Where, prompt: np.ndarray, output: np.ndarray, prompt_name: str,
                  output_name: str) -> None:
    """Every request has at least one prompt token and generates at least one token.

    Neither may exceed ``MAX_TOKENS`` (10^7, the longest context of any model; see
    :mod:`workloads.limits`). The first offending row is named whatever its problem, so fixing
    errors in file order works.
    """
    bad = (prompt <= 0) | (output <= 0) | (prompt > MAX_TOKENS) | (output > MAX_TOKENS)
    if not bad.any():
        return
    i = _first(bad)
    if prompt[i] < 0:
        raise where.error(f"{prompt_name} is {prompt[i]}; token counts cannot be negative", i)
    if prompt[i] == 0:
        raise where.error(f"{prompt_name} is 0; a request needs at least one prompt token", i)
    if prompt[i] > MAX_TOKENS:
        raise where.error(_too_long(prompt_name, prompt[i]), i)
    if output[i] < 0:
        raise where.error(f"{output_name} is {output[i]}; token counts cannot be negative", i)
    if output[i] > MAX_TOKENS:
        raise where.error(_too_long(output_name, output[i]), i)
    raise where.error(f"{output_name} is 0; a request must generate at least one token", i)


def check_order(where: Where, times: Times) -> None:
    """Arrivals never go backwards: a replay of an unsorted file would silently reorder it."""
    back = np.diff(times.key) < 0
    if back.any():
        i = _first(back) + 1
        raise where.error(f"timestamp {times.text(i)} is earlier than the previous row's "
                          f"{times.text(i - 1)}; the trace must be sorted by time", i)


def check_duplicates(where: Where, times: Times, prompt: np.ndarray, output: np.ndarray,
                     extra: Sequence[np.ndarray] = (), skip: np.ndarray | None = None) -> None:
    """No row repeats the previous row's timestamp and lengths exactly.

    For formats with fine time resolution that is the signature of a doubled file (every row
    written twice), not of traffic. ``extra`` are further columns that must also match (as
    codes), ``skip`` marks rows left out of the comparison (e.g. failed requests).
    """
    same = (np.diff(times.key) == 0) & (prompt[1:] == prompt[:-1]) & (output[1:] == output[:-1])
    for col in extra:
        same &= col[1:] == col[:-1]
    if skip is not None:
        same &= ~skip[1:] & ~skip[:-1]
    if same.any():
        i = _first(same) + 1
        raise where.error(
            f"repeats row {where.row(i - 1)} exactly (timestamp {times.text(i)}, {prompt[i]} prompt "
            f"and {output[i]} output tokens): a doubled or concatenated file? "
            "If such repeats are real traffic, pass --allow-duplicates (allow_duplicates: true in a scenario's "
            "trace arrival, allow_duplicates=True in Python)", i)


def make_trace(where: Where, fmt: str, times: Times, prompt: np.ndarray, output: np.ndarray, *,
               session_id: np.ndarray | None = None, prefix_id: np.ndarray | None = None,
               prefix_tokens: np.ndarray | None = None, cls: pa.Array | None = None,
               dropped: Mapping[str, int] | None = None) -> Trace:
    """Assemble a `Trace` from checked columns (missing identity columns become -1 / 0)."""
    n = prompt.size
    cols: dict[str, pa.Array | np.ndarray] = {
        "arrival_s": times.arrival_s(),
        "prompt_tokens": prompt.astype(np.int64, copy=False),
        "output_tokens": output.astype(np.int64, copy=False),
        "session_id": np.full(n, -1, np.int64) if session_id is None else session_id,
        "prefix_id": np.full(n, -1, np.int64) if prefix_id is None else prefix_id,
        "prefix_tokens": np.zeros(n, np.int64) if prefix_tokens is None else prefix_tokens,
    }
    schema = TRACE_SCHEMA
    if cls is not None:
        cols["class"] = cls
        schema = schema.append(pa.field("class", pa.string()))
    table = pa.table(cols, schema=schema)
    return Trace(where.path, fmt, table, times.text(0), dict(dropped or {}))

