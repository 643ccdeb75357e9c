"""Where many simulations run: the ``concurrent.futures.Executor`` seam.

Analysis (load curves, comparisons, sweeps) hands independent points to :func:`map_points`,
which submits them to any ``Executor`` and yields their results in order. Locally that is a
process pool (:func:`local_executor`), or, for one worker, :class:`InlineExecutor`, which runs
each point in the calling process (no pool, no pickling: what tests and ``--workers 1`` use).
A cluster backend plugs in by passing its own executor (Ray's or Dask's fits): the functions
given to :func:`map_points` are top-level and their arguments plain data, so they pickle.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from typing import Any, Callable, Iterable, Iterator, TypeVar

__all__ = ["InlineExecutor", "ProgressFn", "local_executor", "map_points"]

T = TypeVar("T")
R = TypeVar("R")
ProgressFn = Callable[[int, int], None]


class InlineExecutor(Executor):
    """An executor that runs each submitted call at once, in the calling process, and returns a
    finished future: the one-worker case without a pool (nothing is pickled, and a failure keeps
    its traceback in the same process). ``KeyboardInterrupt`` and other non-``Exception`` errors
    are not caught: they stop the caller as they would any loop."""

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:  # type: ignore[override]
        future: Future[R] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - handed to the caller through the future, as a pool would
            future.set_exception(e)
        return future


def _noop() -> None:
    """Submitted once per worker to start a pool's processes (see :func:`local_executor`)."""


def local_executor(workers: int | None = None) -> Executor:
    """An executor on this machine: ``workers`` processes (None: ``os.cpu_count()``), or an
    :class:`InlineExecutor` for one.

    On Linux the pool forks its workers, so they start with every module the caller has imported
    (no re-import per worker). The workers are started here, before the caller goes on: forking
    later, while another thread of the caller (a progress bar's refresh) holds a lock, could leave
    a worker with that lock held forever. Shut the pool down when done (``with`` or ``shutdown``).
    """
    n = (os.cpu_count() or 1) if workers is None else workers
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"workers = {workers!r}: must be a whole number >= 1 (or None: every core)")
    if n == 1:
        return InlineExecutor()
    context = multiprocessing.get_context("fork") if sys.platform == "linux" else None
    pool = ProcessPoolExecutor(max_workers=n, mp_context=context)
    # A forking pool starts all its processes at the first submit and never again (unless one
    # dies and the pool breaks): one no-op starts them now.
    pool.submit(_noop).result()
    return pool


def map_points(fn: Callable[[T], R], items: Iterable[T], executor: Executor | None = None,
               workers: int | None = None, progress: ProgressFn | None = None) -> Iterator[R]:
    """``fn(item)`` for every item, run on ``executor`` (None: a :func:`local_executor` of
    ``workers`` made here and shut down at the end), yielded in the order of ``items``.

    ``fn`` must be a top-level function and the items plain data when the executor is a process
    pool or a cluster. ``progress(done, total)`` is called after each point finishes (in the
    order they finish). The first point that fails raises its exception here, and the points not
    started yet are cancelled. Everything is submitted at once, so the executor decides the
    parallelism; an :class:`InlineExecutor` instead runs each point when its turn comes.
    """
    items = list(items)
    total = len(items)
    owned = executor is None
    ex = local_executor(workers) if executor is None else executor
    try:
        if isinstance(ex, InlineExecutor):
            for done, item in enumerate(items, 1):
                result = fn(item)
                if progress is not None:
                    progress(done, total)
                yield result
            return
        futures = [ex.submit(fn, item) for item in items]
        where = {f: i for i, f in enumerate(futures)}
        finished: dict[int, R] = {}
        following = 0
        try:
            for done, f in enumerate(as_completed(futures), 1):
                finished[where[f]] = f.result()
                if progress is not None:
                    progress(done, total)
                while following in finished:  # in item order, as soon as the next one is there
                    yield finished.pop(following)
                    following += 1
        finally:
            for f in futures:
                f.cancel()
    finally:
        if owned:
            ex.shutdown(wait=True, cancel_futures=True)
