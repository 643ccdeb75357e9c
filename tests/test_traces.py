"""Real-trace loaders (`workloads.traces`): real files against independent parsers, small
hand-written files with known answers, and one bad file per kind of malformed input.

The real files are read in place from the shared folder (skipped, naming the path, when it is
absent). Summary statistics are computed here with the standard library's ``csv`` and ``json``
and plain integer arithmetic, never with the loaders' code, and must agree exactly; the
published figures from the shared README are checked to their printed precision.
"""

from __future__ import annotations

import calendar
import collections
import csv
import gzip
import json
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.shared_data import AZURE_CODE, AZURE_CONV, MOONCAKE_CONV, MOONCAKE_SYNTH, need
from workloads.traces import TRACE_FORMATS, TRACE_SCHEMA, Trace, TraceError, detect_format, load_trace
from workloads.traces.mooncake import derive_prefixes

AZ_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
BG_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"


def _write(path: Path, text: str) -> Path:
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def _col(trace: Trace, name: str) -> np.ndarray:
    return trace.table.column(name).to_numpy()


def _summary(prompt: np.ndarray, output: np.ndarray, arrival: np.ndarray) -> dict[str, float]:
    q = [50, 90, 99]
    return {"n": prompt.size, "in_mean": prompt.mean(), "out_mean": output.mean(),
            **{f"in_p{p}": v for p, v in zip(q, np.percentile(prompt, q), strict=True)},
            **{f"out_p{p}": v for p, v in zip(q, np.percentile(output, q), strict=True)},
            "duration": arrival[-1] - arrival[0]}


# ----------------------------------------------------------------------------------------------
# Real files


def _azure_ns(stamp: str) -> int:
    """Nanoseconds since the epoch of ``2023-11-16 18:17:03.9799600``, by hand (datetime stops
    at microseconds, and the files have 100 ns digits)."""
    whole, _, frac = stamp.partition(".")
    secs = calendar.timegm(datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").timetuple())
    return secs * 10**9 + int(frac.ljust(9, "0")[:9] or 0)


@pytest.mark.parametrize(("path", "rows", "rate", "in_mean", "out_mean"), [
    (AZURE_CODE, 8_819, 2.57, 2048, 27.9),
    (AZURE_CONV, 19_366, 5.53, 1155, 211),
], ids=["code", "conv"])
def test_azure_2023_real_file_matches_an_independent_parse(path: Path, rows: int, rate: float,
                                                            in_mean: float, out_mean: float) -> None:
    with need(path).open(newline="") as f:
        recs = list(csv.DictReader(f))
    ns = np.array([_azure_ns(r["TIMESTAMP"]) for r in recs])
    prompt = np.array([int(r["ContextTokens"]) for r in recs])
    output = np.array([int(r["GeneratedTokens"]) for r in recs])
    arrival = (ns - ns[0]) / 1e9

    trace = load_trace(path)
    assert trace.format == "azure-2023" == detect_format(path)
    assert trace.table.schema == TRACE_SCHEMA
    assert trace.num_requests == rows == len(recs)
    assert trace.start == recs[0]["TIMESTAMP"]
    assert trace.dropped == {}
    assert np.array_equal(_col(trace, "prompt_tokens"), prompt)
    assert np.array_equal(_col(trace, "output_tokens"), output)
    assert np.array_equal(_col(trace, "arrival_s"), arrival)
    assert _summary(_col(trace, "prompt_tokens"), _col(trace, "output_tokens"), _col(trace, "arrival_s")) \
        == _summary(prompt, output, arrival)
    assert trace.duration_s == arrival[-1]
    assert trace.mean_rate_per_s == (rows - 1) / arrival[-1]
    # The published figures, to the precision they are printed with.
    assert round(trace.mean_rate_per_s, 2) == rate
    assert _col(trace, "prompt_tokens").mean() == pytest.approx(in_mean, abs=0.5)
    assert _col(trace, "output_tokens").mean() == pytest.approx(out_mean, abs=0.5)
    assert (_col(trace, "session_id") == -1).all() and (_col(trace, "prefix_id") == -1).all()
    assert (_col(trace, "prefix_tokens") == 0).all()


def _reference_prefixes(hash_lists: list[list[int]], inputs: list[int],
                        block: int = 512) -> tuple[list[int], list[int]]:
    """The definition, one block at a time: the leading run of blocks that some other request
    also holds; its last id and its tokens (capped at the input)."""
    owners: dict[int, set[int]] = collections.defaultdict(set)
    for r, ids in enumerate(hash_lists):
        for h in ids:
            owners[h].add(r)
    pid, ptok = [], []
    for ids, n in zip(hash_lists, inputs, strict=True):
        k = 0
        while k < len(ids) and len(owners[ids[k]]) >= 2:
            k += 1
        pid.append(ids[k - 1] if k else -1)
        ptok.append(min(k * block, n) if k else 0)
    return pid, ptok


@pytest.mark.parametrize(("path", "rows", "rate", "in_mean", "out_mean"), [
    (MOONCAKE_CONV, 12_031, 3.40, 12035, 343),
    (MOONCAKE_SYNTH, 3_993, 3.91, 15325, 149),
], ids=["conversation", "synthetic"])
def test_mooncake_real_file_matches_an_independent_parse(path: Path, rows: int, rate: float,
                                                          in_mean: float, out_mean: float) -> None:
    with gzip.open(need(path), "rt") as f:
        recs = [json.loads(line) for line in f]
    ms = np.array([r["timestamp"] for r in recs])
    prompt = np.array([r["input_length"] for r in recs])
    output = np.array([r["output_length"] for r in recs])
    arrival = (ms - ms[0]) / 1000

    trace = load_trace(path)
    assert trace.format == "mooncake" == detect_format(path)
    assert trace.num_requests == rows == len(recs)
    assert trace.start == f"{recs[0]['timestamp']} ms"
    assert np.array_equal(_col(trace, "prompt_tokens"), prompt)
    assert np.array_equal(_col(trace, "output_tokens"), output)
    assert np.array_equal(_col(trace, "arrival_s"), arrival)
    assert _summary(_col(trace, "prompt_tokens"), _col(trace, "output_tokens"), _col(trace, "arrival_s")) \
        == _summary(prompt, output, arrival)
    assert round(trace.mean_rate_per_s, 2) == rate
    assert _col(trace, "prompt_tokens").mean() == pytest.approx(in_mean, abs=0.5)
    assert _col(trace, "output_tokens").mean() == pytest.approx(out_mean, abs=0.5)

    pid, ptok = _reference_prefixes([r["hash_ids"] for r in recs], prompt.tolist())
    assert _col(trace, "prefix_id").tolist() == pid
    assert _col(trace, "prefix_tokens").tolist() == ptok
    assert (_col(trace, "prefix_tokens") <= prompt).all()


def test_mooncake_conversation_timestamps_repeat_and_load() -> None:
    """The ~3 s steps make most timestamps repeat; that is the format, not a doubled file."""
    trace = load_trace(need(MOONCAKE_CONV))
    arrival = _col(trace, "arrival_s")
    assert np.unique(arrival).size == 1_180
    assert (np.diff(arrival) == 0).mean() > 0.8


def test_real_azure_files_have_no_equal_consecutive_timestamps() -> None:
    """Why the duplicate check is safe on Azure: its timestamps never repeat in the shared files."""
    for path in (AZURE_CODE, AZURE_CONV):
        assert (np.diff(_col(load_trace(need(path)), "arrival_s")) > 0).all()


# ----------------------------------------------------------------------------------------------
# Mooncake prefixes on a hand-made file

TINY_MOONCAKE = [
    # timestamp, input_length, output_length, hash_ids, expected (prefix_id, prefix_tokens)
    (0, 1500, 10, [1, 2, 3], (3, 1500)),     # all three blocks also in line 5: capped at the input
    (0, 1100, 5, [1, 2, 4], (2, 1024)),      # shares 1, 2 with lines 1 and 5
    (3000, 700, 1, [1, 5], (1, 512)),        # shares only the first block
    (3000, 300, 2, [9], (-1, 0)),            # nothing shared
    (6000, 1500, 3, [1, 2, 3], (3, 1500)),   # the same prompt as line 1
    (6000, 1000, 4, [7, 7], (-1, 0)),        # an id repeated within one request is not shared
    (6000, 10, 4, [], (-1, 0)),              # no blocks at all
    (9000, 900, 4, [10, 2], (-1, 0)),        # block 2 is shared, but not leading
]


def test_mooncake_prefixes_on_a_tiny_file(tmp_path: Path) -> None:
    lines = [json.dumps({"timestamp": t, "input_length": i, "output_length": o, "hash_ids": h})
             for t, i, o, h, _ in TINY_MOONCAKE]
    trace = load_trace(_write(tmp_path / "tiny.jsonl", "\n".join(lines) + "\n"))
    assert _col(trace, "prefix_id").tolist() == [e[0] for *_, e in TINY_MOONCAKE]
    assert _col(trace, "prefix_tokens").tolist() == [e[1] for *_, e in TINY_MOONCAKE]
    assert _col(trace, "arrival_s").tolist() == [0, 0, 3, 3, 6, 6, 6, 9]
    ids = [row[3] for row in TINY_MOONCAKE]
    ref = _reference_prefixes(ids, [row[1] for row in TINY_MOONCAKE])
    assert ref == ([e[0] for *_, e in TINY_MOONCAKE], [e[1] for *_, e in TINY_MOONCAKE])


def test_derive_prefixes_with_other_block_size() -> None:
    flat = np.array([1, 2, 1, 2, 3], dtype=np.int64)
    pid, ptok = derive_prefixes(flat, np.array([0, 2, 5]), np.array([100, 300]), block_tokens=64)
    assert pid.tolist() == [2, 2] and ptok.tolist() == [100, 128]


def test_mooncake_identical_consecutive_lines_are_not_duplicates(tmp_path: Path) -> None:
    line = json.dumps({"timestamp": 5, "input_length": 600, "output_length": 7, "hash_ids": [0, 1]})
    trace = load_trace(_write(tmp_path / "t.jsonl.gz", f"{line}\n\n{line}\n"))
    assert trace.num_requests == 2 and trace.duration_s == 0.0
    assert trace.mean_rate_per_s == float("inf")
    assert _col(trace, "prefix_tokens").tolist() == [600, 600]


# ----------------------------------------------------------------------------------------------
# Azure 2024, BurstGPT and the generic formats on written files


def test_azure_2024_with_utc_offsets_and_mixed_digits(tmp_path: Path) -> None:
    p = _write(tmp_path / "AzureLLMInferenceTrace_conv_1week.csv", AZ_HEADER +
               "2024-05-10 00:00:00.009930+00:00,100,10\n"
               "2024-05-10 00:00:01+00:00,200,20\n"
               "2024-05-10 02:00:01.5+02:00,300,30\n")   # the same instant as 00:00:01.5 UTC
    assert detect_format(p) == "azure-2024"
    trace = load_trace(p)
    assert trace.format == "azure-2024"
    assert trace.start == "2024-05-10 00:00:00.009930+00:00"
    assert _col(trace, "arrival_s").tolist() == [0.0, 0.99007, 1.49007]
    assert _col(trace, "prompt_tokens").tolist() == [100, 200, 300]


def test_azure_2023_format_written_by_the_test(tmp_path: Path) -> None:
    stamps = ["2023-11-16 18:17:03.9799600", "2023-11-16 18:17:04.0319600", "2023-11-16 18:17:04.0319601"]
    p = _write(tmp_path / "a.csv", AZ_HEADER + "".join(f"{s},{10 + k},{k + 1}\n" for k, s in enumerate(stamps)))
    trace = load_trace(p, "azure-2023")
    ns = np.array([_azure_ns(s) for s in stamps])
    assert np.array_equal(_col(trace, "arrival_s"), (ns - ns[0]) / 1e9)
    assert _col(trace, "arrival_s")[2] > _col(trace, "arrival_s")[1]  # 100 ns apart, still ordered


BURSTGPT = BG_HEADER + (
    "5,ChatGPT,472,18,490,Conversation log\n"
    "45,ChatGPT,1087,0,1087,Conversation log\n"      # failed
    "45,GPT-4,100,0,100,API log\n"                   # failed
    "110.5,GPT-4,417,505,922,API log\n"
    "120,ChatGPT,20,30,50,API log\n"
    "120,ChatGPT,20,30,50,Conversation log\n"        # same second and lengths, other log: not a duplicate
)


def test_burstgpt_drops_failed_requests_and_counts_them(tmp_path: Path) -> None:
    p = _write(tmp_path / "BurstGPT_1.csv", BURSTGPT)
    assert detect_format(p) == "burstgpt"
    trace = load_trace(p)
    assert trace.dropped == {"zero output tokens (failed requests)": 2}
    assert _col(trace, "arrival_s").tolist() == [0.0, 105.5, 115.0, 115.0]
    assert _col(trace, "prompt_tokens").tolist() == [472, 417, 20, 20]
    assert trace.start == "5 s"


def test_burstgpt_filters(tmp_path: Path) -> None:
    p = _write(tmp_path / "b.csv", BURSTGPT)
    gpt4 = load_trace(p, model="GPT-4")
    assert _col(gpt4, "prompt_tokens").tolist() == [417]
    assert gpt4.dropped == {"Model is not 'GPT-4'": 4, "zero output tokens (failed requests)": 1}
    conv = load_trace(p, "burstgpt", model="ChatGPT", log_type="Conversation log")
    assert _col(conv, "prompt_tokens").tolist() == [472, 20]
    assert conv.dropped == {"Model is not 'ChatGPT'": 2, "Log Type is not 'Conversation log'": 1,
                            "zero output tokens (failed requests)": 1}
    with pytest.raises(TraceError, match=r"b\.csv: no rows with Model 'GPT-5'; the file has ChatGPT, GPT-4$"):
        load_trace(p, model="GPT-5")


def test_burstgpt_error_rows_are_file_rows_after_filtering(tmp_path: Path) -> None:
    p = _write(tmp_path / "b.csv", BURSTGPT + "130,GPT-4,0,5,5,API log\n")
    with pytest.raises(TraceError, match=r"row 7: Request tokens is 0; a request needs at least one prompt token"):
        load_trace(p, model="GPT-4")


GENERIC_TIMES = {  # origin 1000 s, arrivals 0, 0.5, 1.25, 3 s
    "s": ["1000", "1000.5", "1001.25", "1003"],
    "ms": ["1000000", "1000500", "1001250", "1003000"],
    "us": ["1000000000", "1000500000", "1001250000", "1003000000"],
    "ns": ["1000000000000", "1000500000000", "1001250000000", "1003000000000"],
}
MAPPING = {"arrival_s": "t", "prompt_tokens": "in", "output_tokens": "out"}


@pytest.mark.parametrize("unit", list(GENERIC_TIMES))
def test_generic_csv_each_time_unit(tmp_path: Path, unit: str) -> None:
    rows = "".join(f"{t},{10 * (k + 1)},{k + 1}\n" for k, t in enumerate(GENERIC_TIMES[unit]))
    p = _write(tmp_path / "g.csv", "t,in,out\n" + rows)
    trace = load_trace(p, columns=MAPPING, time_unit=unit)
    assert trace.format == "csv"
    assert _col(trace, "arrival_s").tolist() == [0.0, 0.5, 1.25, 3.0]
    assert _col(trace, "prompt_tokens").tolist() == [10, 20, 30, 40]
    assert trace.start == f"{GENERIC_TIMES[unit][0]} {unit}"


def test_generic_csv_with_dates_identities_and_class(tmp_path: Path) -> None:
    p = _write(tmp_path / "g.csv.gz",
               "when,in,out,conv,pfx,pfx_len,tier\n"
               "2024-01-01T00:00:00,100,5,a1b2,,,gold\n"
               "2024-01-01T00:00:00.25,120,6,c3d4,h9,64,silver\n"
               "2024-01-01T00:00:02,130,7,a1b2,h9,64,gold\n")
    trace = load_trace(p, "csv", columns={**MAPPING, "arrival_s": "when", "session_id": "conv",
                                          "prefix_id": "pfx", "prefix_tokens": "pfx_len", "class": "tier"})
    assert trace.table.column_names == [*TRACE_SCHEMA.names, "class"]
    assert _col(trace, "arrival_s").tolist() == [0.0, 0.25, 2.0]
    assert _col(trace, "session_id").tolist() == [0, 1, 0]
    assert _col(trace, "prefix_id").tolist() == [-1, 0, 0]
    assert _col(trace, "prefix_tokens").tolist() == [0, 64, 64]
    assert trace.table.column("class").to_pylist() == ["gold", "silver", "gold"]


@pytest.mark.parametrize(("unit", "values"), [
    ("ns", pa.array([5_000_000_000, 5_500_000_000, 8_000_000_000], pa.int64())),
    ("s", pa.array([5.0, 5.5, 8.0], pa.float64())),
    ("ms", pa.array([5000, 5500, 8000], pa.int32())),
    ("us", pa.array(np.array(["2024-01-01T00:00:05", "2024-01-01T00:00:05.5", "2024-01-01T00:00:08"],
                             dtype="datetime64[us]"))),  # a timestamp column ignores time_unit
])
def test_generic_parquet(tmp_path: Path, unit: str, values: pa.Array) -> None:
    p = tmp_path / "r.parquet"
    pq.write_table(pa.table({"t": values, "in": pa.array([3, 4, 5], pa.int32()), "out": [1.0, 2.0, 3.0],
                             "sess": [7, 7, 9], "junk": ["x", "y", "z"]}), p)
    assert detect_format(p) == "parquet"
    trace = load_trace(p, columns={**MAPPING, "session_id": "sess"}, time_unit=unit)
    assert trace.format == "parquet"
    assert _col(trace, "arrival_s").tolist() == [0.0, 0.5, 3.0]
    assert _col(trace, "output_tokens").tolist() == [1, 2, 3]
    assert _col(trace, "session_id").tolist() == [7, 7, 9]


def test_detect_format(tmp_path: Path) -> None:
    assert detect_format(need(AZURE_CODE)) == "azure-2023"
    assert detect_format(_write(tmp_path / "x.csv.gz", AZ_HEADER + "2023-11-16 18:17:03.9799600,1,1\n")) == "azure-2023"
    assert detect_format(_write(tmp_path / "m.jsonl",
                                '{"timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": []}\n')) \
        == "mooncake"
    known = "azure-2023, azure-2024, burstgpt, mooncake, csv, parquet"
    with pytest.raises(TraceError, match=rf"g\.csv: cannot tell the trace format from its columns t, in, out; "
                                         rf"name it \(--format / format=\) as one of {known}"):
        detect_format(_write(tmp_path / "g.csv", "t,in,out\n1,2,3\n"))
    with pytest.raises(TraceError, match=r"cannot tell the trace format from its columns a, b"):
        detect_format(_write(tmp_path / "o.jsonl", '{"a": 1, "b": 2}\n'))
    with pytest.raises(TraceError, match=r"cannot tell the trace format from its first line, which is not a JSON"):
        detect_format(_write(tmp_path / "n.jsonl", "[1, 2]\n"))
    with pytest.raises(TraceError, match=r"cannot tell the trace format from its extension \.txt"):
        detect_format(_write(tmp_path / "t.txt", "hello\n"))


def test_trace_formats_and_public_api() -> None:
    import workloads.traces as traces

    assert TRACE_FORMATS == ("azure-2023", "azure-2024", "burstgpt", "mooncake", "csv", "parquet")
    assert set(traces.__all__) == {"TRACE_FORMATS", "TRACE_SCHEMA", "Trace", "TraceError", "detect_format",
                                   "load_trace"}
    assert issubclass(TraceError, ValueError)


# ----------------------------------------------------------------------------------------------
# Malformed input: one line naming the file, the row and the problem

AZ = "2023-11-16 18:17:0{}.5000000"
BAD_FILES = [
    # (id, file name, content, format, options, expected message after "<file>: ")
    ("empty", "a.csv", "", "azure-2023", {}, r"empty file \(no header, no rows\)"),
    ("header-only", "a.csv", AZ_HEADER, "azure-2023", {}, r"no requests: the file has a header but no rows"),
    ("missing-column", "a.csv", "TIMESTAMP,GeneratedTokens\n" + AZ.format(1) + ",3\n", "azure-2023", {},
     r"missing column\(s\) ContextTokens; azure-2023 traces have TIMESTAMP, ContextTokens, GeneratedTokens"),
    ("bg-missing-column", "b.csv", "Timestamp,Model,Request tokens\n5,ChatGPT,10\n", "burstgpt", {},
     r"missing column\(s\) Response tokens; burstgpt traces have Timestamp, Model, Request tokens, Response tokens, "
     r"Total tokens, Log Type"),
    ("negative", "a.csv", AZ_HEADER + f"{AZ.format(1)},5,1\n{AZ.format(2)},-5,1\n", "azure-2023", {},
     r"row 2: ContextTokens is -5; token counts cannot be negative"),
    ("zero-prompt", "a.csv", AZ_HEADER + f"{AZ.format(1)},0,1\n", "azure-2023", {},
     r"row 1: ContextTokens is 0; a request needs at least one prompt token"),
    ("fraction", "a.csv", AZ_HEADER + f"{AZ.format(1)},5,1\n{AZ.format(2)},5,12.5\n", "azure-2023", {},
     r"row 2: GeneratedTokens is '12.5', not an integer"),
    ("text", "a.csv", AZ_HEADER + f"{AZ.format(1)},5,1\n{AZ.format(2)},5,1\n{AZ.format(3)},abc,1\n", "azure-2023",
     {}, r"row 3: ContextTokens is 'abc', not an integer"),
    ("missing-value", "a.csv", AZ_HEADER + f"{AZ.format(1)},5,1\n{AZ.format(2)},,1\n", "azure-2023", {},
     r"row 2: missing ContextTokens"),
    ("bad-time", "a.csv", AZ_HEADER + f"{AZ.format(1)},5,1\n2023-11-16 18:17:0x,5,1\n", "azure-2023", {},
     r"row 2: TIMESTAMP is '2023-11-16 18:17:0x', not a date-time like 2023-11-16 18:17:03.9799600"),
    ("mixed-offsets", "a.csv", AZ_HEADER + f"{AZ.format(1)},5,1\n2023-11-16 18:17:02+00:00,5,1\n", "azure-2024",
     {}, r"row 2: TIMESTAMP is '2023-11-16 18:17:02\+00:00', .*rows mix date-times with and without a UTC offset"),
    ("unsorted", "a.csv", AZ_HEADER + f"{AZ.format(1)},5,1\n{AZ.format(5)},5,1\n{AZ.format(3)},5,1\n",
     "azure-2023", {}, r"row 3: timestamp 2023-11-16 18:17:03.5000000 is earlier than the previous row's "
                       r"2023-11-16 18:17:05.5000000; the trace must be sorted by time"),
    ("duplicate", "a.csv", AZ_HEADER + f"{AZ.format(1)},5,1\n{AZ.format(2)},7,2\n{AZ.format(2)},7,2\n",
     "azure-2023", {}, r"row 3: repeats row 2 exactly \(timestamp 2023-11-16 18:17:02.5000000, 7 prompt and 2 "
                       r"output tokens\): a doubled or concatenated file\? If such repeats are real traffic, pass "
                       r"--allow-duplicates \(allow_duplicates: true in a scenario's trace arrival, "
                       r"allow_duplicates=True in Python\)"),
    ("zero-output", "a.csv", AZ_HEADER + f"{AZ.format(1)},5,1\n{AZ.format(2)},5,0\n", "azure-2023", {},
     r"row 2: GeneratedTokens is 0; a request must generate at least one token"),
    ("ragged", "a.csv", AZ_HEADER + f"{AZ.format(1)},5,1\n\n{AZ.format(2)},5\n", "azure-2023", {},
     r"row 2: 2 fields where the header has 3"),
    ("numeric-azure-time", "a.csv", AZ_HEADER + "12.5,5,1\n", "azure-2023", {},
     r"row 1: TIMESTAMP is '12.5', not a date-time like"),
    ("bg-negative", "b.csv", BG_HEADER + "5,ChatGPT,10,-1,9,API log\n", "burstgpt", {},
     r"row 1: Response tokens is -1; token counts cannot be negative"),
    ("bg-unsorted", "b.csv", BG_HEADER + "5,ChatGPT,10,1,11,API log\n4.5,ChatGPT,10,1,11,API log\n", "burstgpt",
     {}, r"row 2: timestamp 4.5 s is earlier than the previous row's 5 s"),
    ("bg-duplicate", "b.csv", BG_HEADER + "5,ChatGPT,10,1,11,API log\n5,ChatGPT,10,1,11,API log\n", "burstgpt",
     {}, r"row 2: repeats row 1 exactly"),
    ("bg-all-failed", "b.csv", BG_HEADER + "5,ChatGPT,10,0,10,API log\n", "burstgpt", {},
     r"no requests left: all 1 rows were dropped \(zero output tokens \(failed requests\): 1\)"),
    ("bg-bad-time", "b.csv", BG_HEADER + "5,ChatGPT,10,1,11,API log\nsoon,ChatGPT,10,1,11,API log\n", "burstgpt",
     {}, r"row 2: Timestamp is 'soon', not a number"),
    ("not-gzip", "m.jsonl.gz", None, "mooncake", {}, r"not a gzip file"),
    ("corrupt-gzip", "m.jsonl.gz", b"\x1f\x8b\x08\x00garbage", "mooncake", {}, r"corrupt gzip data"),
    ("json-array", "m.jsonl", '{"timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": []}\n[1, 2]\n',
     "mooncake", {}, r"line 2: expected a JSON object, found an array"),
    ("json-field", "m.jsonl", '{"timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": []}\n\n'
     '{"timestamp": 1, "input_length": 1, "output_length": 1}\n', "mooncake", {},
     r"line 3: missing field\(s\) hash_ids; mooncake lines have timestamp, input_length, output_length, hash_ids"),
    ("json-syntax", "m.jsonl", '{"timestamp": 0,\n', "mooncake", {}, r"line 1: not valid JSON \("),
    ("json-fraction", "m.jsonl", '{"timestamp": 0, "input_length": 12.5, "output_length": 1, "hash_ids": []}\n',
     "mooncake", {}, r"line 1: input_length is 12.5, not an integer"),
    ("json-text-length", "m.jsonl", '{"timestamp": 0, "input_length": "12", "output_length": 1, "hash_ids": []}\n',
     "mooncake", {}, r"line 1: input_length is '12', not an integer"),
    ("json-zero-output", "m.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [1]}\n'
     '{"timestamp": 0, "input_length": 5, "output_length": 0, "hash_ids": [1]}\n', "mooncake", {},
     r"line 2: output_length is 0; a request must generate at least one token"),
    ("json-unsorted", "m.jsonl", "".join(f'{{"timestamp": {t}, "input_length": 5, "output_length": 1, '
                                         f'"hash_ids": [{k}]}}\n' for k, t in enumerate([0, 3000, 1000])),
     "mooncake", {}, r"line 3: timestamp 1000 ms is earlier than the previous row's 3000 ms"),
    ("json-hash", "m.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [1]}\n'
     '{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [1.5]}\n', "mooncake", {},
     r"line 2: hash_ids holds 1.5, not a 64-bit integer"),
    ("json-hash-type", "m.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": "1,2"}\n',
     "mooncake", {}, r"line 1: hash_ids is a string, not an array of integers"),
    ("json-blocks", "m.jsonl", '{"timestamp": 0, "input_length": 600, "output_length": 1, "hash_ids": [1, 2, 3]}\n',
     "mooncake", {}, r"line 1: 3 hash_ids of 512 tokens for input_length 600: more blocks than the input fills"),
    ("json-empty", "m.jsonl", "\n\n", "mooncake", {}, r"no requests: the file has no JSON lines"),
    ("generic-no-mapping", "g.csv", "t,in,out\n1,2,3\n", "csv", {},
     r"the csv format needs a column mapping naming the file's columns \(t, in, out\): --columns "
     r"arrival_s=COL,prompt_tokens=COL,output_tokens=COL on the command line, columns: \{arrival_s: COL, ...\} in "
     r"a scenario, columns=\{...\} in Python"),
    ("generic-bad-key", "g.csv", "t,in,out\n1,2,3\n", "csv", {"columns": {**MAPPING, "sesion_id": "x"}},
     r"columns \(--columns\) has an unknown role 'sesion_id' \(did you mean 'session_id'\?\)"),
    ("generic-absent-column", "g.csv", "t,in,out\n1,2,3\n", "csv", {"columns": {**MAPPING, "output_tokens": "o"}},
     r"missing column\(s\) o named in columns \(--columns\); the file has t, in, out"),
    ("generic-unit", "g.csv", "t,in,out\n1,2,3\n", "csv", {"columns": MAPPING, "time_unit": "min"},
     r"time_unit \(--time-unit\) 'min' is not one of s, ms, us, ns"),
    ("generic-bad-time", "g.csv", "t,in,out\n1,2,3\nlater,2,3\n", "csv", {"columns": MAPPING},
     r"row 2: t \(arrival_s\) is 'later', not a number \(as row 1 is\)"),
    ("generic-first-time", "g.csv", "t,in,out\nsoon,2,3\n", "csv", {"columns": MAPPING},
     r"row 1: t \(arrival_s\) is 'soon', not a number or a date-time like 2023-11-16 18:17:03.9799600"),
    ("generic-zero-output", "g.csv", "t,in,out\n1,2,3\n2,2,0\n", "csv", {"columns": MAPPING},
     r"row 2: out \(output_tokens\) is 0; a request must generate at least one token"),
    ("generic-duplicate", "g.csv", "t,in,out\n1,2,3\n1,2,3\n", "csv", {"columns": MAPPING}, r"row 2: repeats row 1"),
    ("generic-prefix", "g.csv", "t,in,out,p,pl\n1,2,3,9,5\n", "csv",
     {"columns": {**MAPPING, "prefix_id": "p", "prefix_tokens": "pl"}},
     r"row 1: pl \(prefix_tokens\) is 5 with in \(prompt_tokens\) 2 and p \(prefix_id\) 9; it must lie between"),
    ("not-parquet", "g.parquet", "t,in,out\n1,2,3\n", "parquet", {"columns": MAPPING}, r"not a readable Parquet file"),
    ("unknown-format", "a.csv", AZ_HEADER + f"{AZ.format(1)},5,1\n", "azur-2023", {},
     r"unknown trace format 'azur-2023' \(did you mean 'azure-2023'\?\) \(--format\); known formats: azure-2023, "
     r"azure-2024, burstgpt, mooncake, csv, parquet"),
    ("unknown-option", "a.csv", AZ_HEADER + f"{AZ.format(1)},5,1\n", "azure-2023", {"model": "GPT-4"},
     r"format 'azure-2023' takes no model; its options: allow_duplicates \(--allow-duplicates\)"),
    # Issue 16: absurd token counts, non-UTF-8 text, NaN cells, options named by their CLI flags.
    ("huge-prompt", "a.csv", AZ_HEADER + f"{AZ.format(1)},5,1\n{AZ.format(2)},1000000000000000,1\n", "azure-2023", {},
     r"row 2: ContextTokens is 1000000000000000; more than 10,000,000 tokens, longer than any model's context"),
    ("huge-output", "a.csv", AZ_HEADER + f"{AZ.format(1)},5,10000001\n", "azure-2023", {},
     r"row 1: GeneratedTokens is 10000001; more than 10,000,000 tokens"),
    ("json-huge", "m.jsonl", '{"timestamp": 0, "input_length": 20000000, "output_length": 1, "hash_ids": []}\n',
     "mooncake", {}, r"line 1: input_length is 20000000; more than 10,000,000 tokens"),
    ("bg-huge-failed", "b.csv", BG_HEADER + "5,ChatGPT,99999999999,0,0,API log\n", "burstgpt", {},
     r"row 1: Request tokens is 99999999999; more than 10,000,000 tokens"),
    ("generic-huge", "g.csv", "t,in,out\n1,2,30000000\n", "csv", {"columns": MAPPING},
     r"row 1: out \(output_tokens\) is 30000000; more than 10,000,000 tokens"),
    ("non-utf8-row", "a.csv", (AZ_HEADER + f"{AZ.format(1)},5,1\n\n{AZ.format(2)},").encode() + b"\xff,1\n",
     "azure-2023", {}, r"row 2: not valid UTF-8 text \(byte 0xff\); save the file as UTF-8"),
    ("non-utf8-header", "g.csv", "t,in,out\xe9\n1,2,3\n".encode("latin-1"), "csv", {"columns": MAPPING},
     r"the header is not valid UTF-8 text \(byte 0xe9\); save the file as UTF-8"),
    ("nan-text-tokens", "g.csv", "t,in,out\n1,2,3\n2,NaN,3\n", "csv", {"columns": MAPPING},
     r"row 2: in \(prompt_tokens\) is 'NaN', not an integer"),
    ("null-text-tokens", "g.csv", "t,in,out\n1,2,3\n2,3,NULL\n", "csv", {"columns": MAPPING},
     r"row 2: out \(output_tokens\) is 'NULL', not an integer"),
    ("nan-text-time", "g.csv", "t,in,out\n1.5,2,3\nnan,2,3\n", "csv", {"columns": MAPPING},
     r"row 2: t \(arrival_s\) is 'nan', not a finite time"),
    ("columns-lacks", "g.csv", "t,in,out\n1,2,3\n", "csv", {"columns": {"arrival_s": "t", "prompt_tokens": "in"}},
     r"columns \(--columns\) lacks output_tokens; arrival_s, prompt_tokens, output_tokens are required"),
    ("time-unit-not-taken", "a.csv", AZ_HEADER + f"{AZ.format(1)},5,1\n", "azure-2023", {"time_unit": "ms"},
     r"format 'azure-2023' takes no time_unit \(--time-unit\); its options: allow_duplicates \(--allow-duplicates\)"),
    ("columns-to-specific", "m.jsonl", '{"timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": []}\n',
     "mooncake", {"columns": MAPPING}, r"format 'mooncake' takes no columns \(--columns\); its options: block_tokens"),
]


@pytest.mark.parametrize(("name", "content", "fmt", "options", "message"),
                         [pytest.param(*row[1:], id=row[0]) for row in BAD_FILES])
def test_malformed_input_is_one_line_naming_file_row_and_problem(
        tmp_path: Path, name: str, content: str | bytes | None, fmt: str, options: dict, message: str) -> None:
    p = tmp_path / name
    if content is None:
        p.write_text("this is not gzip\n")
    elif isinstance(content, bytes):
        p.write_bytes(content)
    else:
        _write(p, content)
    with pytest.raises(TraceError, match=f"^{re.escape(str(p))}: {message}") as err:
        load_trace(p, fmt, **options)
    assert "\n" not in str(err.value)
    assert err.value.path == str(p)


def test_file_not_found_and_directory(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"nope\.csv: file not found$"):
        load_trace(tmp_path / "nope.csv")
    with pytest.raises(TraceError, match=r"nope\.csv: file not found$"):
        detect_format(tmp_path / "nope.csv")
    with pytest.raises(TraceError, match=r": not a regular file"):
        load_trace(tmp_path, "csv")


def test_allow_duplicates_accepts_a_repeated_row(tmp_path: Path) -> None:
    p = _write(tmp_path / "a.csv", AZ_HEADER + f"{AZ.format(1)},5,1\n{AZ.format(1)},5,1\n")
    assert load_trace(p, allow_duplicates=True).num_requests == 2


def test_whole_number_floats_are_accepted(tmp_path: Path) -> None:
    """pandas writes an integer column with a gap as floats (12.0): whole values are kept."""
    p = _write(tmp_path / "a.csv", AZ_HEADER + f"{AZ.format(1)},12.0,+3\n")
    assert _col(load_trace(p), "prompt_tokens").tolist() == [12]


@pytest.mark.benchmark
def test_million_row_azure_csv_loads_every_row(tmp_path: Path) -> None:
    # No time limit (tests never time the wall clock): how fast it loads is a benchmark's figure.
    n = 1_000_000
    rng = np.random.default_rng(0)
    ns = np.datetime64("2023-11-16T18:17:03", "ns") + np.cumsum(rng.integers(1, 10**7, n)).astype("timedelta64[ns]")
    stamps = np.char.replace(np.datetime_as_string(ns, unit="ns"), "T", " ")
    prompt, output = rng.integers(1, 8000, n), rng.integers(1, 500, n)
    body = "\n".join(f"{s[:-2]},{a},{b}" for s, a, b in zip(stamps, prompt, output, strict=True))
    p = _write(tmp_path / "big.csv", AZ_HEADER + body + "\n")
    trace = load_trace(p)
    assert trace.num_requests == n
    assert np.array_equal(_col(trace, "prompt_tokens"), prompt)


# ----------------------------------------------------------------------------------------------
# Issue 16: what a rate needs, identity columns' "none" texts, duplicates allowed from a scenario


def test_require_rate_needs_two_requests_at_distinct_times(tmp_path: Path) -> None:
    one = load_trace(_write(tmp_path / "a.csv", AZ_HEADER + f"{AZ.format(1)},5,1\n"))
    with pytest.raises(TraceError, match=r"a\.csv: the trace holds 1 request: a rate needs at least 2 requests at "
                                         r"distinct times$"):
        one.require_rate()
    same = load_trace(_write(tmp_path / "g.csv", "t,in,out\n7,2,3\n7,3,3\n"), columns=MAPPING)
    with pytest.raises(TraceError, match=r"g\.csv: all 2 requests arrive at the same instant \(7 s\): a rate needs"):
        same.require_rate()
    two = load_trace(_write(tmp_path / "b.csv", AZ_HEADER + f"{AZ.format(1)},5,1\n{AZ.format(2)},5,1\n"))
    two.require_rate()
    assert two.mean_rate_per_s == 1.0


def test_identity_columns_read_none_texts_as_unknown(tmp_path: Path) -> None:
    p = _write(tmp_path / "g.csv", "t,in,out,s\n1,2,3,NULL\n2,2,3,abc\n3,2,3,nan\n4,2,3,\n5,2,3,abc\n")
    sessions = _col(load_trace(p, columns={**MAPPING, "session_id": "s"}), "session_id")
    assert sessions.tolist() == [-1, 0, -1, -1, 0]


def test_a_replayed_trace_may_allow_duplicates(tmp_path: Path) -> None:
    from workloads.arrivals import TraceArrivals

    p = _write(tmp_path / "a.csv", AZ_HEADER + f"{AZ.format(1)},5,1\n{AZ.format(1)},5,1\n{AZ.format(2)},5,1\n")
    with pytest.raises(TraceError, match=r"row 2: repeats row 1 exactly .*allow_duplicates: true in a scenario"):
        TraceArrivals(process="trace", path=str(p)).load()
    assert TraceArrivals(process="trace", path=str(p), allow_duplicates=True).load().num_requests == 3
