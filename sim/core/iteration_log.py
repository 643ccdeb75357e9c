"""Per-iteration records of one replica, kept compactly and sealed into columnar numpy chunks.

An iteration stepped on its own adds one row of Python scalars; a plan's run of decode
iterations (``sim.core.plans``) adds one *segment*: a few scalars and the arrays it was planned with,
expanded into rows only when the chunk is sealed, with a handful of vectorised operations for all
segments at once (their KV block counts, and their FLOPs and bytes from the profile, included).
That keeps the per-iteration bookkeeping of a run out of the engine's hot path. A chunk is sealed
once it holds :data:`CHUNK_ROWS` rows (and at the end of the run) and handed to the log's sink:
by default kept in memory; :mod:`sim.results.records` may pass one that streams chunks to Parquet.

Inter-token gaps are kept compactly alongside: an iteration whose emitting sequences all waited
the same time adds one (gap, count, time) row; any other adds its array of gaps (with its time).
Rows and gap rows are sealed in the order the iterations happened, however they were recorded.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from sim.core.scheduling.blocks import blocks_for

__all__ = ["CHUNK_ROWS", "ITERATION_COLUMNS", "KV_USED", "TOKENS_OUT", "IterationLog", "KVSpan"]

CHUNK_ROWS = 1 << 15

# Column name -> dtype, in table order (the table adds ``replica`` in front).
ITERATION_COLUMNS: dict[str, type] = {
    "start_s": np.float64, "duration_s": np.float64, "prefill_tokens": np.int64, "prefill_seqs": np.int64,
    "decode_seqs": np.int64, "tokens_out": np.int64, "kv_blocks_used": np.int64, "flops": np.float64,
    "bytes": np.float64, "recompute_tokens": np.int64,
}
ITL_COLUMNS: dict[str, type] = {"value": np.float64, "count": np.int32, "time": np.float64}
_ROW = tuple(ITERATION_COLUMNS)
# Position of ``tokens_out`` in a row :meth:`IterationLog.begin` returns: the engine sets it when
# the iteration ends (a row is a list, mutable in place; a named field would cost an object per row).
TOKENS_OUT = _ROW.index("tokens_out")
KV_USED = _ROW.index("kv_blocks_used")  # and of the KV blocks in use, which the replica view reads


class KVSpan(NamedTuple):
    """What KV blocks a run of decode iterations holds (see :meth:`IterationLog.run`)."""

    used: int                      # blocks in use on the replica before the run
    blocks: np.ndarray             # of which each running request holds these
    slack: np.ndarray | None       # free slots in each one's last block (None: blocks reserved)
    done: np.ndarray               # the run iteration (1-based) each completes in


class _RunRecord(NamedTuple):
    """A run of decode iterations as :meth:`IterationLog.run` records it, expanded at sealing."""

    start: float
    seconds: np.ndarray
    ends: np.ndarray
    seqs: np.ndarray
    kv: KVSpan
    rows: int
    emitted: int
    context: np.ndarray
    flops: np.ndarray | None
    nbytes: np.ndarray | None

Chunk = dict[str, np.ndarray]


def _layout(order: list[int], run_lengths: list[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where entries recorded in ``order`` (0: one row, 1: a run of ``run_lengths[i]`` rows) land in
    a chunk: the rows of the single-row entries; the rows of every run's rows; and for each run row,
    its run and its position within the run."""
    kinds = np.asarray(order, np.int8)
    lens = np.ones(kinds.size, np.int64)
    lens[kinds == 1] = run_lengths
    first = np.cumsum(lens) - lens
    run_lens = np.asarray(run_lengths, np.int64)
    seg = np.repeat(np.arange(run_lens.size), run_lens)
    within = np.arange(seg.size) - (np.cumsum(run_lens) - run_lens)[seg]
    return first[kinds == 0], np.repeat(first[kinds == 1], run_lens) + within, seg, within


class IterationLog:
    """One replica's iteration rows and inter-token gaps.

    ``sink(chunk)`` receives each sealed chunk of iteration rows; without one they are kept in
    :attr:`chunks` for :meth:`columns`. Gap rows are always kept (the summary needs them).
    """

    def __init__(self, sink: Callable[[Chunk], None] | None = None):
        # ``work(seqs, context) -> (_, flops, bytes)``: a profile's decode_steps, for runs recorded
        # without their FLOPs and bytes (the engine sets it).
        self.work: Callable[..., tuple] | None = None
        self.block_size = 1  # the KV block size, for runs' block counts (the engine sets it)
        self.chunks: list[Chunk] = []
        self.itl_chunks: list[Chunk] = []
        self.sink = sink or self.chunks.append
        self.itl_extra: list[np.ndarray] = []
        self.itl_extra_time: list[float] = []
        self.last_end = float("nan")
        self.rows = 0  # iterations recorded so far
        self._open()

    def _open(self) -> None:
        # One iteration per entry, in order; an entry is a list of the row's values, or a run:
        # (first start, durations, ends, decode seqs, kv (see run()), rows, rows that emitted,
        # Σ context, flops or None, bytes or None), the arrays per iteration of the run.
        self._rows: list[tuple] = []
        self._runs: list[tuple] = []
        self._order: list[int] = []  # 0: a row, 1: a run, in the order recorded
        self._n = 0
        # Gap rows likewise: (value, count, time) or a run's end times and batch sizes.
        self._gap_rows: list[tuple[float, int, float]] = []
        self._gap_runs: list[tuple[np.ndarray, np.ndarray]] = []
        self._gap_order: list[int] = []

    # -- recording ----------------------------------------------------------------------------
    def begin(self, start: float, duration: float, prefill_tokens: int, prefill_seqs: int, decode_seqs: int,
              kv_blocks_used: int, flops: float, nbytes: float, recompute_tokens: int = 0) -> list:
        """Record an iteration as it starts; returns its row, whose ``tokens_out`` (at
        :data:`TOKENS_OUT`) the engine sets when it ends. ``recompute_tokens``: of its prefill tokens, those that redo work a
        preemption threw away."""
        if self._n >= CHUNK_ROWS:
            self.seal()
        row = [start, duration, prefill_tokens, prefill_seqs, decode_seqs, 0, kv_blocks_used, flops, nbytes,
               recompute_tokens]
        self._rows.append(row)  # type: ignore[arg-type]
        self._order.append(0)
        self._n += 1
        self.rows += 1
        self.last_end = start + duration
        return row

    def run(self, start: float, seconds: np.ndarray, ends: np.ndarray, seqs: np.ndarray,
            kv: KVSpan, rows: int, emitted: int, context: np.ndarray,
            flops: np.ndarray | None = None, nbytes: np.ndarray | None = None) -> None:
        """Record the first ``rows`` iterations of a run of decode iterations that began at
        ``start``: iteration i took ``seconds[i]``, ended at ``ends[i]`` and decoded ``seqs[i]``
        sequences whose KV contexts sum to ``context[i]``; the first ``emitted`` of them produced a
        token for every sequence (the one after, cut by the horizon, none). FLOPs and bytes not
        given come from :attr:`work` at sealing.

        ``kv = (used, blocks, slack, done)`` says what KV blocks are in use: ``used`` before the
        run, of which request j holds ``blocks[j]``, with ``slack[j]`` free slots in its last block
        (it takes another at iterations slack + 1, slack + 1 + block size, ...; None: blocks
        reserved, none taken) until it completes in iteration ``done[j]`` (1-based) and frees all
        it holds. Sealing turns that into each row's count, for all runs at once."""
        if self._n >= CHUNK_ROWS:
            self.seal()
        self._runs.append(_RunRecord(start, seconds, ends, seqs, kv, rows, emitted, context, flops, nbytes))
        self._order.append(1)
        self._n += rows
        self.rows += rows
        self.last_end = float(ends[rows - 1])

    def gaps(self, t: float, gaps: np.ndarray) -> None:
        """Inter-token gaps of the tokens emitted at time ``t``."""
        values = gaps.tolist()  # a list's count beats numpy's reductions on small arrays
        if values.count(values[0]) == len(values):  # all equal (gaps are > 0: no signed zeros)
            self._gap_rows.append((values[0], gaps.size, t))
            self._gap_order.append(0)
        else:
            self.itl_extra.append(gaps)
            self.itl_extra_time.append(t)

    def run_gaps(self, ends: np.ndarray, seqs: np.ndarray) -> None:
        """The gaps of a run of decode iterations: ``seqs[i]`` tokens at ``ends[i + 1]``, each
        ``ends[i + 1] - ends[i]`` after the one before."""
        self._gap_runs.append((ends, seqs))
        self._gap_order.append(1)

    # -- sealing ------------------------------------------------------------------------------
    def seal(self) -> None:
        """Expand what the open chunk holds into columns and hand them on."""
        if self._n:
            self.sink(self._iteration_chunk())
        if self._gap_order:
            self.itl_chunks.append(self._gap_chunk())
        self._open()

    def _iteration_chunk(self) -> Chunk:
        runs = self._runs
        lengths = [r.rows for r in runs]
        at_rows, at, seg, within = _layout(self._order, lengths)
        out = {k: np.empty(self._n, dt) for k, dt in ITERATION_COLUMNS.items()}
        if self._rows:
            for k, values in zip(_ROW, zip(*self._rows)):
                out[k][at_rows] = values
        if runs:
            def joined(field: str) -> np.ndarray:
                return np.concatenate([getattr(r, field)[:r.rows] for r in runs])

            out["duration_s"][at] = joined("seconds")
            # An iteration starts where the one before it in its run ended; the first at the run's start.
            starts = joined("ends")
            starts[1:] = starts[:-1].copy()
            starts[within == 0] = [r.start for r in runs]
            out["start_s"][at] = starts
            out["prefill_tokens"][at] = 0
            out["prefill_seqs"][at] = 0
            out["recompute_tokens"][at] = 0  # a run is decode-only: nothing recomputed
            seqs = joined("seqs")
            out["decode_seqs"][at] = seqs
            out["tokens_out"][at] = np.where(within < np.asarray([r.emitted for r in runs])[seg], seqs, 0)
            out["kv_blocks_used"][at] = self._run_kv(np.asarray(lengths, np.int64))
            if runs[0].flops is None:  # priced without FLOPs and bytes: all of the chunk's runs at once
                _, out["flops"][at], out["bytes"][at] = self.work(seqs, joined("context"))
            else:
                out["flops"][at], out["bytes"][at] = joined("flops"), joined("nbytes")
        return out

    def _run_kv(self, rows: np.ndarray) -> np.ndarray:
        """KV blocks in use in each row of the open chunk's runs (see :meth:`run`), for all runs at
        once: a run's count starts at its ``used`` and steps by +1 where a request takes a block
        and by minus what it holds in the iteration after it completes."""
        runs, bs = self._runs, self.block_size
        total = int(rows.sum())
        first = np.cumsum(rows) - rows  # each run's first row among the runs' rows
        sizes = np.asarray([r.kv.blocks.size for r in runs], np.int64)
        which = np.repeat(np.arange(len(runs)), sizes)  # each request's run
        held = np.concatenate([r.kv.blocks for r in runs])
        done = np.concatenate([r.kv.done for r in runs])
        start, last = first[which], rows[which]
        step = np.zeros(total + 1, np.int64)
        if runs[0].kv.slack is not None:  # blocks taken as sequences grow
            slack = np.concatenate([r.kv.slack for r in runs])
            taken = np.maximum(blocks_for(np.minimum(done, last) - slack, bs), 0)  # in the rows logged
            n = int(taken.sum())
            if n:
                at = np.repeat(start + slack, taken) + bs * (np.arange(n) - np.repeat(np.cumsum(taken) - taken, taken))
                step += np.bincount(at, minlength=total + 1)
            held = held + np.maximum(blocks_for(done - slack, bs), 0)  # what each holds when it completes
        gone = done < last
        if gone.any():
            step -= np.bincount((start + done)[gone], weights=held[gone], minlength=total + 1).astype(np.int64)
        count = np.cumsum(step[:total])
        before = count[first] - step[first]  # the running count before each run's first row
        return np.repeat(np.asarray([r.kv.used for r in runs], np.int64) - before, rows) + count

    def _gap_chunk(self) -> Chunk:
        runs = self._gap_runs
        ends_per_run = np.asarray([e.size for e, _ in runs], np.int64)
        at_rows, at, _, _ = _layout(self._gap_order, ends_per_run - 1)
        out = {k: np.empty(at_rows.size + at.size, dt) for k, dt in ITL_COLUMNS.items()}
        if self._gap_rows:
            v, c, t = zip(*self._gap_rows)
            out["value"][at_rows], out["count"][at_rows], out["time"][at_rows] = v, c, t
        if runs:
            # Each end minus the one before, for all runs at once, dropping each run's first end.
            ends = np.concatenate([e for e, _ in runs])
            keep = np.ones(ends.size, bool)
            keep[np.cumsum(ends_per_run) - ends_per_run] = False
            diff = np.empty(ends.size)
            diff[1:] = ends[1:] - ends[:-1]
            out["value"][at] = diff[keep]
            out["time"][at] = ends[keep]
            out["count"][at] = np.concatenate([c for _, c in runs])
        return out

    @staticmethod
    def _concat(chunks: list[Chunk], dtypes: dict[str, type]) -> dict[str, np.ndarray]:
        return {k: np.concatenate([c[k] for c in chunks]) if chunks else np.empty(0, dt) for k, dt in dtypes.items()}

    def columns(self) -> dict[str, np.ndarray]:
        """All iteration rows kept in memory (after :meth:`seal`), as whole columns."""
        return self._concat(self.chunks, ITERATION_COLUMNS)

    def gaps_between(self, lo: float, hi: float) -> list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]:
        """The gaps of tokens emitted in [lo, hi) (after :meth:`seal`), as pieces ``(values,
        multiplicities, keep)``: a chunk's columns and which of their rows are in the window
        (equal-gap rows first, chunk by chunk), then each iteration of unequal gaps (multiplicities
        and keep None: each gap once, all of them). The caller copies out what it keeps, so a long
        run's gaps are never held twice over."""
        pieces: list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = []
        for c in self.itl_chunks:
            t = c["time"]
            pieces.append((c["value"], c["count"], (t >= lo) & (t < hi)))
        for x, tx in zip(self.itl_extra, self.itl_extra_time):
            if lo <= tx < hi:
                pieces.append((x, None, None))
        return pieces
