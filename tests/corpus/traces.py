"""Bad trace files and trace flags, through ``capsim workload describe``, ``capsim workload fit``
and a scenario whose workload replays the trace (``arrival: {process: trace, path: ...}``).

Each expected pattern names the file, the row (or line) and value where there is one, and the
rule; a message about an option names the command-line flag a user of the CLI can change.
"""

from __future__ import annotations

import gzip

from tests.corpus import Accepted, BadInput

__all__ = ["ACCEPTED", "CASES"]

_AZ = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
_BG = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
_COLS = "arrival_s=t,prompt_tokens=in,output_tokens=out"


def _az(*rows: tuple[int, object, object]) -> str:
    """An Azure 2023 CSV with rows (second, prompt, output)."""
    return _AZ + "".join(f"2023-11-16 18:17:{s:02d}.5000000,{p},{o}\n" for s, p, o in rows)


def _mc(*rows: tuple[object, object, object]) -> str:
    """Mooncake JSON lines with rows (timestamp ms, input_length, output_length)."""
    return "".join(f'{{"timestamp": {t}, "input_length": {i}, "output_length": {o}, "hash_ids": []}}\n'
                   for t, i, o in rows)


_GOOD = _az(*((s, 100 + s, 10) for s in range(1, 30)))


def _describe(id: str, expect: str, files: dict[str, str | bytes], *flags: str, name: str = "t.csv") -> BadInput:
    return BadInput(f"traces-describe-{id}", ("workload", "describe", name, *flags), expect, files)


def _fit(id: str, expect: str, files: dict[str, str | bytes], *flags: str, name: str = "t.csv") -> BadInput:
    return BadInput(f"traces-fit-{id}", ("workload", "fit", name, *flags), expect, files)


# A KV cache above the model's context: a replayed trace's prompts are bounded only by it.
_PROFILE = "profile: {kind: explicit, fixed_s: 0.01, per_token_s: 1.0e-5, kv_capacity_tokens: 200000}\n"


def _replay(id: str, expect: str, trace: str | bytes, arrival: str = "", stop: str = "num_requests: 5",
            name: str = "t.csv") -> BadInput:
    """A scenario replaying ``trace`` (saved as ``name``) with the given extra arrival keys."""
    extra = f", {arrival}" if arrival else ""
    scenario = _PROFILE + f"workload: {{arrival: {{process: trace, path: {name}{extra}}}, {stop}}}\n"
    return BadInput(f"traces-replay-{id}", ("run", "s.yaml", "--no-write", "-q"), expect,
                    {"s.yaml": scenario, name: trace})


CASES: list[BadInput] = [
    # --- the file itself -------------------------------------------------------------------------
    _describe("missing", r"nope\.csv: file not found", {}, name="nope.csv"),
    _describe("directory", r"d: not a regular file", {"d/x.csv": _GOOD}, name="d"),
    _describe("empty", r"t\.csv: empty file \(no header, no rows\)", {"t.csv": ""}),
    _describe("blank-lines", r"t\.csv: empty file \(no header, no rows\)", {"t.csv": "\n\n  \n"}),
    _describe("header-only", r"t\.csv: no requests: the file has a header but no rows", {"t.csv": _AZ},
              "--format", "azure-2023"),
    _describe("non-utf8-cell", r"t\.csv: row 2: not valid UTF-8 text \(byte 0xff\); save the file as UTF-8",
              {"t.csv": _az((1, 5, 1)).encode() + b"2023-11-16 18:17:02.5000000,\xff\xfe,1\n"}),
    _describe("non-utf8-binary", r"t\.bin: cannot tell the trace format from its extension \.bin; name it "
                                 r"\(--format / format=\)", {"t.bin": bytes(range(256)) * 4}, name="t.bin"),
    _describe("non-utf8-latin1-class", r"t\.csv: row 2: not valid UTF-8 text \(byte 0xe9\)",
              {"t.csv": "t,in,out,c\n1,2,3,cafe\n2,2,3,caf\xe9\n".encode("latin-1")}, "--columns",
              _COLS + ",class=c"),
    _describe("non-utf8-header", r"t\.csv: the header is not valid UTF-8 text \(byte 0xe9\)",
              {"t.csv": "t,in,out,caf\xe9\n1,2,3,x\n2,2,3,y\n".encode("latin-1")}, "--columns", _COLS),
    _describe("non-utf8-jsonl", r"t\.jsonl: line 2: not valid JSON \('utf-8' codec can't decode byte 0xff",
              {"t.jsonl": _mc((0, 5, 1)).encode() + b'{"timestamp": 1\xff}\n'}, name="t.jsonl"),
    _describe("not-gzip", r"t\.jsonl\.gz: not a gzip file", {"t.jsonl.gz": "plain text\n"}, name="t.jsonl.gz"),
    _describe("corrupt-gzip", r"t\.jsonl\.gz: corrupt gzip data",
              {"t.jsonl.gz": gzip.compress(_mc((0, 5, 1)).encode())[:20]}, name="t.jsonl.gz"),
    _describe("gzip-of-nothing", r"t\.csv\.gz: empty file", {"t.csv.gz": gzip.compress(b"")}, "--format", "azure-2023",
              name="t.csv.gz"),
    _describe("not-parquet", r"t\.parquet: not a Parquet file", {"t.parquet": "t,in,out\n1,2,3\n"},
              name="t.parquet"),
    _describe("undetectable-csv", r"t\.csv: cannot tell the trace format from its columns t, in, out; name it "
                                  r"\(--format / format=\).*\(--columns / columns=\)",
              {"t.csv": "t,in,out\n1,2,3\n"}),
    # --- flags ----------------------------------------------------------------------------------
    _describe("unknown-format", r"unknown trace format 'azure-2025' \(did you mean 'azure-2024'\?\) \(--format\); "
                                r"known formats: azure-2023, azure-2024, burstgpt, mooncake, csv, parquet",
              {"t.csv": _GOOD}, "--format", "azure-2025"),
    _describe("columns-no-equals", r"--columns 'arrival_s': expected ROLE=COLUMN pairs", {"t.csv": _GOOD},
              "--columns", "arrival_s"),
    _describe("columns-twice", r"--columns .*: arrival_s is given twice", {"t.csv": "t,in,out\n1,2,3\n"},
              "--columns", _COLS + ",arrival_s=t"),
    _describe("columns-unknown-role", r"t\.csv: columns \(--columns\) has an unknown role 'sesion_id' \(did "
                                      r"you mean 'session_id'\?\); roles are arrival_s", {"t.csv": "t,in,out\n1,2,3\n"},
              "--columns", _COLS + ",sesion_id=t"),
    _describe("columns-lacks-role", r"t\.csv: columns \(--columns\) lacks output_tokens; arrival_s, prompt_tokens, "
                                    r"output_tokens are required", {"t.csv": "t,in,out\n1,2,3\n"},
              "--columns", "arrival_s=t,prompt_tokens=in"),
    _describe("columns-absent", r"t\.csv: missing column\(s\) o named in columns \(--columns\); the file has "
                                r"t, in, out",
              {"t.csv": "t,in,out\n1,2,3\n"}, "--columns", "arrival_s=t,prompt_tokens=in,output_tokens=o"),
    _describe("csv-without-columns", r"t\.csv: the csv format needs a column mapping naming the file's columns "
                                     r"\(t, in, out\): --columns arrival_s=COL,prompt_tokens=COL,output_tokens=COL on "
                                     r"the command line", {"t.csv": "t,in,out\n1,2,3\n"},
              "--format", "csv"),
    _describe("columns-on-mooncake", r"t\.jsonl: format 'mooncake' takes no columns \(--columns\); its options: "
                                     r"block_tokens", {"t.jsonl": _mc((0, 5, 1))},
              "--columns", _COLS, "--format", "mooncake", name="t.jsonl"),
    _describe("bad-time-unit", r"t\.csv: time_unit \(--time-unit\) 'min' is not one of s, ms, us, ns",
              {"t.csv": "t,in,out\n1,2,3\n2,2,3\n"}, "--columns", _COLS, "--time-unit", "min"),
    _describe("time-unit-on-azure", r"t\.csv: format 'azure-2023' takes no time_unit \(--time-unit\); its "
                                    r"options: allow_duplicates \(--allow-duplicates\)", {"t.csv": _GOOD},
              "--time-unit", "ms"),
    # --- rows -----------------------------------------------------------------------------------
    _describe("missing-column", r"t\.csv: missing column\(s\) ContextTokens; azure-2023 traces have TIMESTAMP",
              {"t.csv": "TIMESTAMP,GeneratedTokens\n2023-11-16 18:17:01.5,3\n"}, "--format", "azure-2023"),
    _describe("ragged", r"t\.csv: row 2: 2 fields where the header has 3",
              {"t.csv": _az((1, 5, 1)) + "2023-11-16 18:17:02.5000000,5\n"}),
    _describe("unsorted", r"t\.csv: row 3: timestamp 2023-11-16 18:17:03\.5000000 is earlier than the previous row's "
                          r"2023-11-16 18:17:05\.5000000; the trace must be sorted by time",
              {"t.csv": _az((1, 5, 1), (5, 5, 1), (3, 5, 1))}),
    _describe("negative-gap-mooncake", r"t\.jsonl: line 2: timestamp 500 ms is earlier than the previous row's 1000 ms",
              {"t.jsonl": _mc((1000, 5, 1), (500, 5, 1))}, name="t.jsonl"),
    _describe("nan-token", r"t\.csv: row 2: in \(prompt_tokens\) is 'nan', not an integer",
              {"t.csv": "t,in,out\n1,2,3\n2,nan,3\n"}, "--columns", _COLS),
    _describe("nan-time", r"t\.csv: row 2: t \(arrival_s\) is 'nan', not a finite time",
              {"t.csv": "t,in,out\n1.5,2,3\nnan,2,3\n"}, "--columns", _COLS),
    _describe("inf-time", r"t\.csv: row 1: t \(arrival_s\) is 'inf', not a finite time",
              {"t.csv": "t,in,out\ninf,2,3\n2.5,2,3\n"}, "--columns", _COLS),
    _describe("json-nan-length", r"t\.jsonl: line 1: input_length is nan, not an integer",
              {"t.jsonl": _mc((0, "NaN", 1))}, name="t.jsonl"),
    _describe("huge-tokens", r"t\.csv: row 2: ContextTokens is 1000000000000000; more than 10,000,000 tokens, longer "
                             r"than any model's context", {"t.csv": _az((1, 5, 1), (2, 10**15, 1))}),
    _describe("huge-output", r"t\.jsonl: line 1: output_length is 20000000; more than 10,000,000 tokens",
              {"t.jsonl": _mc((0, 5, 20_000_000))}, name="t.jsonl"),
    _describe("huge-burstgpt", r"t\.csv: row 1: Request tokens is 99999999999; more than 10,000,000 tokens",
              {"t.csv": _BG + "5,ChatGPT,99999999999,0,0,API log\n6,ChatGPT,10,1,11,API log\n"}),
    _describe("int64-overflow", r"t\.csv: row 1: in \(prompt_tokens\) is '99999999999999999999', too large for int64",
              {"t.csv": "t,in,out\n1,99999999999999999999,3\n"}, "--columns", _COLS),
    _describe("negative-tokens", r"t\.csv: row 2: ContextTokens is -5; token counts cannot be negative",
              {"t.csv": _az((1, 5, 1), (2, -5, 1))}),
    _describe("fractional-tokens", r"t\.csv: row 1: GeneratedTokens is '2\.5', not an integer",
              {"t.csv": _az((1, 5, "2.5"))}),
    _describe("zero-output", r"t\.csv: row 1: GeneratedTokens is 0; a request must generate at least one token",
              {"t.csv": _az((1, 5, 0))}),
    _describe("duplicate", r"t\.csv: row 2: repeats row 1 exactly .*: a doubled or concatenated file\? "
                           r"If such repeats are real traffic, pass --allow-duplicates \(allow_duplicates: true "
                           r"in a scenario",
              {"t.csv": _az((1, 5, 1), (1, 5, 1))}),
    _describe("too-many-blocks", r"t\.jsonl: line 1: 3 hash_ids of 512 tokens for input_length 600",
              {"t.jsonl": '{"timestamp": 0, "input_length": 600, "output_length": 1, "hash_ids": [1, 2, 3]}\n'},
              name="t.jsonl"),
    _describe("json-syntax", r"t\.jsonl: line 2: not valid JSON", {"t.jsonl": _mc((0, 5, 1)) + "{oops\n"},
              name="t.jsonl"),
    # --- too few requests for what is asked --------------------------------------------------------
    _describe("one-row", r"t\.csv: the trace holds 1 request: a rate needs at least 2 requests at distinct times",
              {"t.csv": _az((1, 5, 1))}),
    _describe("one-instant", r"t\.csv: all 3 requests arrive at the same instant .*: a rate needs at least 2 requests "
                             r"at distinct times", {"t.csv": "t,in,out\n7,2,3\n7,3,3\n7,4,3\n"}, "--columns", _COLS),
    _fit("three-rows", r"t\.csv: cannot fit a workload to 3 arrival\(s\) spanning 2 s: need at least 100 arrivals "
                       r"at distinct times", {"t.csv": _az((1, 5, 1), (2, 6, 1), (3, 7, 1))}),
    _fit("one-row", r"t\.csv: cannot fit a workload to 1 arrival\(s\) spanning 0 s: need at least 100",
         {"t.csv": _az((1, 5, 1))}),
    _fit("bad-out", r"--out w\.json: the file name must end in \.yaml, \.yml", {"t.csv": _GOOD}, "-o", "w.json"),
    _fit("huge-tokens", r"t\.csv: row 1: ContextTokens is 123456789012; more than 10,000,000 tokens",
         {"t.csv": _az((1, 123456789012, 1))}),
    # --- a scenario replaying a trace ---------------------------------------------------------------
    BadInput("traces-replay-missing", ("run", "s.yaml", "--no-write", "-q"),
             r"s\.yaml: workload: nope\.csv: file not found",
             {"s.yaml": _PROFILE + "workload: {arrival: {process: trace, path: nope.csv}, num_requests: 5}\n"}),
    BadInput("traces-length-dist-missing", ("run", "s.yaml", "--no-write", "-q"),
             r"s\.yaml: workload: nope\.csv: file not found",
             {"s.yaml": _PROFILE + "workload: {arrival: {rate_per_s: 5}, num_requests: 5, classes: [{name: a, "
                                   "prompt_tokens: {dist: trace, path: nope.csv, column: prompt_tokens}, "
                                   "output_tokens: {dist: fixed, value: 5}}]}\n"}),
    BadInput("traces-length-dist-huge", ("run", "s.yaml", "--no-write", "-q"),
             r"s\.yaml: workload: t\.csv: row 2: ContextTokens is 1000000000000000; more than 10,000,000 tokens",
             {"s.yaml": _PROFILE + "workload: {arrival: {rate_per_s: 5}, num_requests: 5, classes: [{name: a, "
                                   "prompt_tokens: {dist: trace, path: t.csv, column: prompt_tokens}, "
                                   "output_tokens: {dist: fixed, value: 5}}]}\n",
              "t.csv": _az((1, 5, 1), (2, 10**15, 1))}),
    _replay("huge-tokens", r"workload: t\.csv: row 2: ContextTokens is 1000000000000000; more than 10,000,000",
            _az((1, 5, 1), (2, 10**15, 1))),
    _replay("more-than-rows", r"workload: t\.csv: num_requests = 50 but the trace holds 29 requests: ask for at most "
                              r"that many, or set loop: true", _GOOD, stop="num_requests: 50"),
    _replay("rate-one-row", r"workload: t\.csv: rate_per_s needs a trace with at least two distinct arrival times",
            _az((1, 5, 1)), arrival="rate_per_s: 3", stop="num_requests: 1"),
    _replay("loop-absurd", r"workload: duration_s = 1e\+15 loops the trace of 29 requests ~3\.45e\+13 times: ~1e\+15 "
                           r"requests, which would need ~909 PiB of memory", _GOOD, arrival="loop: true",
            stop="duration_s: 1.0e+15"),
    _replay("speedup-string", r"workload\.arrival\.speedup = '2': must be a valid number", _GOOD,
            arrival="speedup: '2'"),
    _replay("speedup-absurd", r"workload\.arrival\.speedup = 1e\+300: must be less than or equal to 1000000000", _GOOD,
            arrival="speedup: 1.0e+300"),
    _replay("time-unit", r"workload\.arrival\.time_unit = 'min': must be 's', 'ms', 'us' or 'ns'", _GOOD,
            arrival="time_unit: min"),
    _replay("columns-role", r"workload: t\.csv: columns \(--columns\) has an unknown role 'prompt' \(did you mean "
                             r"'prompt_tokens'\?\)", "t,in,out\n1,2,3\n2,3,4\n",
            arrival="columns: {arrival_s: t, prompt: in, output_tokens: out}"),
    _replay("format-unknown", r"workload: t\.csv: unknown trace format 'azure' \(did you mean", _GOOD,
            arrival="format: azure"),
    _replay("duplicate", r"workload: t\.csv: row 2: repeats row 1 exactly .*allow_duplicates: true in a scenario",
            _az((1, 5, 1), (1, 5, 1), (2, 5, 1)), stop="num_requests: 2"),
    _replay("too-long", r"workload: t\.csv: duration_s = 600 but the trace \(at this speed\) lasts 28\.0 s", _GOOD,
            stop="duration_s: 600"),
]

ACCEPTED: list[Accepted] = [
    Accepted("traces-replay-duplicates-allowed", ("run", "s.yaml", "--no-write", "-q"), r"^$",
             {"s.yaml": _PROFILE + "workload: {arrival: {process: trace, path: t.csv, allow_duplicates: true}, "
                                   "num_requests: 3}\n", "t.csv": _az((1, 5, 1), (1, 5, 1), (2, 5, 1))}),
]
