"""Mooncake traces (kvcache-ai/Mooncake, FAST'25), format ``mooncake``: JSON lines, optionally
gzipped, one request per line::

    {"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1, 2, ...]}

``timestamp`` is in milliseconds from the start of the trace; ``hash_ids`` are remapped hashes of
the prompt's 512-token blocks. They are chain hashes: an id stands for the whole prefix up to
and including its block, so it always sits at the same position and equal ids mean equal prefix
content. That is what turns them into prefix identity here (see `derive_prefixes`).

Timestamps are coarse by design: the conversation trace steps in about 3 s increments with about
ten requests per step, so equal consecutive timestamps, even with equal lengths, are legitimate
and are *not* rejected as duplicates (unlike the Azure, BurstGPT and generic loaders). A step
backwards in time still is an error.

Messages name the physical line of the file (``line <n>``), blank lines included.
"""

from __future__ import annotations

import json
import math
from itertools import chain

import numpy as np

from workloads.traces.common import (
    Peek, Times, Trace, TraceError, Where, check_lengths, check_order, make_trace, read_bytes,
)

__all__ = ["BLOCK_TOKENS", "FIELDS", "derive_prefixes", "load", "sniff"]

FIELDS = ("timestamp", "input_length", "output_length", "hash_ids")
BLOCK_TOKENS = 512


def sniff(peek: Peek) -> str | None:
    """``mooncake`` for JSON lines whose first object has Mooncake's fields."""
    if peek.suffix in (".jsonl", ".json", ".ndjson") and set(FIELDS[:3]) <= set(peek.header):
        return "mooncake"
    return None


def _kind(obj: object) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(obj), "a number")


def _whole(v: object) -> bool:
    """Whether ``v`` is a JSON integer (or a float with no fraction) that fits int64."""
    if type(v) is float and v.is_integer():
        v = int(v)
    return type(v) is int and -(2**63) <= v < 2**63


def _check_line(obj: object) -> str | None:
    """What is wrong with one parsed line, or None."""
    if type(obj) is not dict:
        return f"expected a JSON object, found {_kind(obj)}"
    missing = [f for f in FIELDS if f not in obj]
    if missing:
        return f"missing field(s) {', '.join(missing)}; mooncake lines have {', '.join(FIELDS)}"
    t = obj["timestamp"]
    if type(t) not in (int, float) or not math.isfinite(t):
        return f"timestamp is {t!r}, not a number of milliseconds"
    for name in ("input_length", "output_length"):
        if not _whole(obj[name]):
            return f"{name} is {obj[name]!r}, not an integer"
    if type(obj["hash_ids"]) is not list:
        return f"hash_ids is {_kind(obj['hash_ids'])}, not an array of integers"
    return None


def derive_prefixes(hash_ids: np.ndarray, offsets: np.ndarray, input_length: np.ndarray,
                    block_tokens: int = BLOCK_TOKENS) -> tuple[np.ndarray, np.ndarray]:
    """(prefix_id, prefix_tokens) per request from flattened block hashes.

    Request ``r`` owns ``hash_ids[offsets[r]:offsets[r + 1]]``. Its reusable prefix is the
    longest leading run of its blocks that also occur in at least one *other* request: those are
    the blocks a prefix cache can have seen. ``prefix_tokens`` is that many blocks times
    ``block_tokens``, capped at the input length (the last block may be partial);
    ``prefix_id`` is the hash of the run's last block, which with chain hashes identifies the
    prefix content, or -1 (and 0 tokens) when no leading block is shared.

    Vectorised: an id's request count comes from ``np.unique`` over distinct (id, request) pairs
    (so an id repeated within one request does not count as shared), and the leading run from a
    per-request ``np.minimum.reduceat`` over the positions of unshared blocks.
    """
    n = offsets.size - 1
    counts = np.diff(offsets)
    prefix_id = np.full(n, -1, dtype=np.int64)
    prefix_tokens = np.zeros(n, dtype=np.int64)
    if hash_ids.size == 0:
        return prefix_id, prefix_tokens
    request = np.repeat(np.arange(n, dtype=np.int64), counts)
    uniq, inv = np.unique(hash_ids, return_inverse=True)
    pairs = np.unique(inv.astype(np.int64) * n + request)
    owners = np.bincount(pairs // n, minlength=uniq.size)
    shared = owners[inv] >= 2
    position = np.arange(hash_ids.size, dtype=np.int64) - np.repeat(offsets[:-1], counts)
    # Unshared blocks keep their position, shared ones a sentinel past any run, so the minimum
    # over a request's blocks is the length of its leading shared run.
    first_unshared = np.where(shared, np.iinfo(np.int64).max, position)
    has = counts > 0
    run = np.zeros(n, dtype=np.int64)
    run[has] = np.minimum(np.minimum.reduceat(first_unshared, offsets[:-1][has]), counts[has])
    hit = run > 0
    prefix_id[hit] = hash_ids[offsets[:-1][hit] + run[hit] - 1]
    prefix_tokens[hit] = np.minimum(run[hit] * block_tokens, input_length[hit])
    return prefix_id, prefix_tokens


def load(path: str, *, block_tokens: int = BLOCK_TOKENS) -> Trace:
    """Load a Mooncake JSONL trace (``.jsonl`` or ``.jsonl.gz``).

    ``block_tokens`` is the tokens per hash block (512 in the published traces). A line with
    more blocks than its ``input_length`` can fill is rejected, which also catches a wrong
    ``block_tokens``.
    """
    if type(block_tokens) is not int or block_tokens < 1:
        raise TraceError(path, f"block_tokens must be a positive integer, not {block_tokens!r}")
    data = read_bytes(path)
    stamps: list[int | float] = []
    inputs: list[int | float] = []
    outputs: list[int | float] = []
    blocks: list[list[object]] = []
    lines: list[int] = []
    # One Python step per line is the parse itself (json.loads); everything after is vectorised.
    for lineno, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError as e:
            msg = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else str(e)
            raise TraceError(path, f"not valid JSON ({msg})", lineno, unit="line") from None
        problem = _check_line(obj)
        if problem:
            raise TraceError(path, problem, lineno, unit="line")
        stamps.append(obj["timestamp"])
        inputs.append(obj["input_length"])  # whole numbers (checked): numpy makes them int64
        outputs.append(obj["output_length"])
        blocks.append(obj["hash_ids"])
        lines.append(lineno)
    if not lines:
        raise TraceError(path, "no requests: the file has no JSON lines")
    where = Where(path, np.asarray(lines, dtype=np.int64), "line")

    counts = np.fromiter(map(len, blocks), dtype=np.int64, count=len(blocks))
    flat = np.array(list(chain.from_iterable(blocks)))
    if flat.size == 0:
        flat = np.zeros(0, dtype=np.int64)
    if flat.dtype.kind not in "iu" or flat.dtype == np.uint64:
        # Error path: find the line (np.array turned a float, string or huge int into another dtype).
        for r, h in enumerate(blocks):
            bad = [v for v in h if type(v) is not int or not -(2**63) <= v < 2**63]
            if bad:
                raise where.error(f"hash_ids holds {bad[0]!r}, not a 64-bit integer", r)
    flat = flat.astype(np.int64, copy=False)
    offsets = np.concatenate(([0], np.cumsum(counts)))

    prompt = np.asarray(inputs, dtype=np.int64)
    output = np.asarray(outputs, dtype=np.int64)
    check_lengths(where, prompt, output, "input_length", "output_length")
    key = np.asarray(stamps)
    times = Times(key, 1000, lambda r: f"{stamps[r]!r} ms")
    check_order(where, times)
    too_many = counts > -(-prompt // block_tokens)
    if too_many.any():
        r = int(np.argmax(too_many))
        raise where.error(f"{counts[r]} hash_ids of {block_tokens} tokens for input_length {prompt[r]}: more blocks "
                          f"than the input fills (a corrupt line? a trace with blocks of another size needs "
                          f"load_trace(..., block_tokens=N) in Python)", r)
    prefix_id, prefix_tokens = derive_prefixes(flat, offsets, prompt, block_tokens)
    return make_trace(where, "mooncake", times, prompt, output, prefix_id=prefix_id,
                      prefix_tokens=prefix_tokens)
