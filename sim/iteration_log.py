"""Per-iteration records of one replica, kept as columnar numpy chunks.

An engine iteration appends one row (or a decode run appends many at once); rows fill a
preallocated chunk of :data:`CHUNK_ROWS` rows, and a full chunk is sealed and handed to the
log's sink. The default sink keeps sealed chunks in memory; :mod:`sim.records` can pass one that
streams them to Parquet, so a long run holds only one open chunk per replica.

Inter-token gaps are kept compactly alongside: an iteration whose emitting sequences all waited
the same time adds one (gap, count, time) row; any other adds its array of gaps (with its time).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["CHUNK_ROWS", "ITERATION_COLUMNS", "IterationLog"]

CHUNK_ROWS = 1 << 14

# Column name -> dtype, in table order (the table adds ``replica`` in front).
ITERATION_COLUMNS: dict[str, type] = {
    "start_s": np.float64, "duration_s": np.float64, "prefill_tokens": np.int64, "prefill_seqs": np.int64,
    "decode_seqs": np.int64, "tokens_out": np.int64, "kv_blocks_used": np.int64, "flops": np.float64,
    "bytes": np.float64,
}
_ITL_COLUMNS: dict[str, type] = {"value": np.float64, "count": np.int64, "time": np.float64}

Chunk = dict[str, np.ndarray]


class _Columns:
    """Rows appended into preallocated numpy columns; full chunks go to ``sink``."""

    __slots__ = ("dtypes", "cols", "n", "sink", "sealed_rows")

    def __init__(self, dtypes: dict[str, type], sink: Callable[[Chunk], None]):
        self.dtypes = dtypes
        self.sink = sink
        self.sealed_rows = 0
        self._fresh()

    def _fresh(self) -> None:
        self.cols = {k: np.zeros(CHUNK_ROWS, dt) for k, dt in self.dtypes.items()}
        self.n = 0

    def seal(self) -> None:
        """Hand the filled part of the open chunk to the sink and open a new one."""
        if self.n:
            self.sink({k: v[:self.n].copy() if self.n < CHUNK_ROWS else v for k, v in self.cols.items()})
            self.sealed_rows += self.n
        self._fresh()

    def row(self) -> int:
        """Position of a new row in the open chunk (sealing it first when full)."""
        if self.n == CHUNK_ROWS:
            self.seal()
        self.n += 1
        return self.n - 1

    def extend(self, values: dict[str, np.ndarray | float | int], count: int) -> None:
        """Append ``count`` rows; each value is an array of ``count`` or a scalar for all of them."""
        done = 0
        while done < count:
            if self.n == CHUNK_ROWS:
                self.seal()
            take = min(count - done, CHUNK_ROWS - self.n)
            for k, v in values.items():
                self.cols[k][self.n:self.n + take] = v if np.ndim(v) == 0 else v[done:done + take]
            self.n += take
            done += take

    @property
    def rows(self) -> int:
        return self.sealed_rows + self.n


class IterationLog:
    """One replica's iteration rows and inter-token gaps.

    ``sink(chunk)`` receives each sealed chunk of iteration rows; without one, they are kept in
    :attr:`chunks` for :meth:`columns`. Gap rows are always kept (the summary needs them).
    """

    def __init__(self, sink: Callable[[Chunk], None] | None = None):
        self.chunks: dict[str, list[Chunk]] = {"iterations": [], "itl": []}
        self.iters = _Columns(ITERATION_COLUMNS, sink or self.chunks["iterations"].append)
        self.itl = _Columns(_ITL_COLUMNS, self.chunks["itl"].append)
        self.itl_extra: list[np.ndarray] = []
        self.itl_extra_time: list[float] = []
        self.last_end = float("nan")

    def begin(self, start: float, duration: float, prefill_tokens: int, prefill_seqs: int, decode_seqs: int,
              kv_blocks_used: int, flops: float, nbytes: float) -> int:
        """Record an iteration as it starts; return its row for :meth:`tokens_out`."""
        c = self.iters
        i = c.row()
        cols = c.cols
        cols["start_s"][i] = start
        cols["duration_s"][i] = duration
        cols["prefill_tokens"][i] = prefill_tokens
        cols["prefill_seqs"][i] = prefill_seqs
        cols["decode_seqs"][i] = decode_seqs
        cols["kv_blocks_used"][i] = kv_blocks_used
        cols["flops"][i] = flops
        cols["bytes"][i] = nbytes
        self.last_end = start + duration
        return i

    def tokens_out(self, row: int, tokens: int) -> None:
        """Set the tokens emitted by the iteration at ``row`` of the open chunk (called at its end,
        before any other iteration of this replica is recorded)."""
        self.iters.cols["tokens_out"][row] = tokens

    def gaps(self, t: float, gaps: np.ndarray) -> None:
        """Inter-token gaps of the tokens emitted at time ``t``."""
        lo = gaps.min()
        if lo == gaps.max():
            c = self.itl
            i = c.row()
            c.cols["value"][i] = lo
            c.cols["count"][i] = gaps.size
            c.cols["time"][i] = t
        else:
            self.itl_extra.append(gaps)
            self.itl_extra_time.append(t)

    def seal(self) -> None:
        """Flush the open chunks (at the end of a run)."""
        self.iters.seal()
        self.itl.seal()

    @staticmethod
    def _concat(chunks: list[Chunk], dtypes: dict[str, type]) -> dict[str, np.ndarray]:
        return {k: np.concatenate([c[k] for c in chunks]) if chunks else np.empty(0, dt) for k, dt in dtypes.items()}

    def columns(self) -> dict[str, np.ndarray]:
        """All iteration rows kept in memory, as whole columns."""
        return self._concat(self.chunks["iterations"], ITERATION_COLUMNS)

    def itl_columns(self) -> dict[str, np.ndarray]:
        """All equal-gap rows kept in memory (value, count, time), as whole columns."""
        return self._concat(self.chunks["itl"], _ITL_COLUMNS)
