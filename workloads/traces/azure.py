"""Azure LLM inference traces (Azure/AzurePublicDataset): ``azure-2023`` and ``azure-2024``.

Both releases are CSV with the same three columns: ``TIMESTAMP`` (wall-clock date-time),
``ContextTokens`` (prompt) and ``GeneratedTokens`` (output). The 2023 one-hour files (Splitwise,
ISCA'24) write naive times with 7 fractional digits (``2023-11-16 18:17:03.9799600``), which
Python's ``strptime`` cannot take; the 2024 week-long files (DynamoLLM, HPCA'25) are reported to
carry a UTC offset and a varying number of digits. Both are parsed by pyarrow's ISO-8601 cast
(up to 9 digits, offsets converted to UTC), vectorised.

Time resolution is sub-millisecond, so a row that repeats the previous row's timestamp *and*
lengths is taken for a doubled file and rejected (``allow_duplicates=True`` accepts it); the
shared 2023 files contain no equal consecutive timestamps at all. Rows with zero generated
tokens are errors, not dropped: these traces record completed requests only.
"""

from __future__ import annotations

from workloads.traces.common import (
    Peek, Trace, Where, check_duplicates, check_lengths, check_order, make_trace, read_bytes,
    read_csv_strings, to_int64, to_times,
)

__all__ = ["COLUMNS", "load_2023", "load_2024", "sniff"]

COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def sniff(peek: Peek) -> str | None:
    """``azure-2023`` or ``azure-2024`` for a CSV with the three Azure columns.

    The year of the first timestamp tells the releases apart (2024 or later: the week-long
    release); a file with no rows falls back to the release's file naming (``*_1week.csv``).
    """
    if peek.suffix != ".csv" or not set(COLUMNS) <= set(peek.header):
        return None
    if peek.first is not None and len(peek.first) == len(peek.header):
        year = peek.first[peek.header.index("TIMESTAMP")].strip()[:4]
        if year.isdigit():
            return "azure-2023" if int(year) <= 2023 else "azure-2024"
    return "azure-2024" if "1week" in peek.path.lower() else "azure-2023"


def _load(path: str, fmt: str, allow_duplicates: bool) -> Trace:
    where = Where(path)
    table = read_csv_strings(where, read_bytes(path), COLUMNS, f"{fmt} traces have {', '.join(COLUMNS)}")
    times = to_times(where, table.column("TIMESTAMP"), "TIMESTAMP", unit=None,
                     example="2023-11-16 18:17:03.9799600")
    prompt = to_int64(where, table.column("ContextTokens"), "ContextTokens")
    output = to_int64(where, table.column("GeneratedTokens"), "GeneratedTokens")
    check_lengths(where, prompt, output, "ContextTokens", "GeneratedTokens")
    check_order(where, times)
    if not allow_duplicates:
        check_duplicates(where, times, prompt, output)
    return make_trace(where, fmt, times, prompt, output)


def load_2023(path: str, *, allow_duplicates: bool = False) -> Trace:
    """Load an Azure LLM inference trace 2023 CSV (one hour, code or conversation)."""
    return _load(path, "azure-2023", allow_duplicates)


def load_2024(path: str, *, allow_duplicates: bool = False) -> Trace:
    """Load an Azure LLM inference trace 2024 CSV (one week, code or conversation)."""
    return _load(path, "azure-2024", allow_duplicates)
