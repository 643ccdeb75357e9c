"""Ray as a ``concurrent.futures.Executor``: sweeps, load curves, comparisons and plans on a Ray
cluster through the same seam as the local pool (:mod:`sim.analysis.executor`).

Ray is an optional extra (``pip install 'capsim[ray]'``), imported only when a
:class:`RayExecutor` is made: ``import sim`` and every command without ``--ray`` never load it.
Each submitted call becomes one Ray task (``ray.remote(fn).remote(*args)``) and its
``ObjectRef.future()`` is the future handed back, so :func:`sim.analysis.executor.map_points` and
:func:`sim.analysis.sweep.run_sweep` use it unchanged. Ray keeps its worker processes between
tasks, so what :func:`sim.analysis.sweep.run_point` loads on its first call in a process (the
catalogs and profiles) is loaded once per worker, as in the local pool.

The workers import capsim by name: on a cluster, every node needs the same capsim installed (or
a ``runtime_env`` that provides it); a local instance's workers inherit this process's
environment (``PYTHONPATH`` included).
"""

from __future__ import annotations

import os
import socket
import threading
from concurrent.futures import Executor, Future
from typing import Any, Callable, TypeVar

__all__ = ["RayExecutor", "RayUnavailable"]

R = TypeVar("R")
CONNECT_TIMEOUT_S = 5.0
"""How long the reachability check of a given address waits: Ray itself retries an address that
does not answer for minutes, so a wrong address is refused after this instead."""


class RayUnavailable(ValueError):
    """Ray cannot be used as asked (one line): it is not installed, or the cluster cannot be
    reached. The command line turns it into one line and exit code 2."""


def _import_ray() -> Any:
    """The ``ray`` module, or :class:`RayUnavailable` saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise RayUnavailable(f"Ray is not installed ({e}): pip install 'capsim[ray]'") from None
    return ray


def _one_line(e: BaseException) -> str:
    """An exception as one line: its first non-empty line, whitespace folded."""
    text = next((line for line in str(e).splitlines() if line.strip()), "") or type(e).__name__
    return " ".join(text.split())


def _check_reachable(address: str, timeout_s: float) -> None:
    """Refuse ``HOST:PORT`` (or ``ray://HOST:PORT``) at once when nothing answers there within
    ``timeout_s``: Ray would retry it for minutes."""
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RayUnavailable(f"cannot connect to Ray at {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or _one_line(e))
        raise RayUnavailable(f"cannot connect to Ray at {address}: {reason}") from None


class RayExecutor(Executor):
    """Run submitted calls as Ray tasks.

    ``address``: ``"auto"`` joins the cluster this machine belongs to (a ``ray start`` here, or
    ``RAY_ADDRESS``); ``HOST:PORT`` or ``ray://HOST:PORT`` joins that cluster; None (or
    ``"local"``) starts a local Ray instance of ``num_cpus`` CPUs (None: every core), without
    dashboard, whose workers inherit this process's environment. When Ray is already initialised
    in this process (a notebook that called ``ray.init``), that connection is used (Ray keeps one
    per process), though a given ``HOST:PORT`` must still answer.

    :meth:`shutdown` disconnects (and stops a local instance) when this executor connected; a
    connection it found is left alone. A future cancelled before its task ran cancels the task.
    Raises :class:`RayUnavailable` (a ValueError, one line) when Ray is not installed or the
    address cannot be reached within ``connect_timeout_s``.
    """

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None,
                 runtime_env: dict[str, Any] | None = None, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        ray = _import_ray()
        self._ray = ray
        self._lock = threading.Lock()
        self._pending: dict[Future[Any], Any] = {}  # future -> its task's ObjectRef, until the future is done
        self._closed = False
        if address not in (None, "local", "auto"):  # a wrong address is refused even when Ray is connected
            _check_reachable(address, connect_timeout_s)
        self.owned = not ray.is_initialized()
        """Whether this executor connected (and so disconnects on :meth:`shutdown`)."""
        if not self.owned:
            return
        options: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
        if runtime_env is not None:
            options["runtime_env"] = runtime_env
        if address is None or address == "local":
            # "local" starts a new instance even when RAY_ADDRESS names a cluster.
            options.update(address="local", num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False)
        else:
            options["address"] = address
        try:
            ray.init(**options)
        except Exception as e:  # noqa: BLE001 - Ray's many connection errors, each as one line
            where = {"local": "a local Ray instance", "auto": "the Ray cluster of this machine (auto)"}.get(
                options["address"], f"Ray at {address}")
            raise RayUnavailable(f"cannot connect to {where}: {_one_line(e)}") from None

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:  # type: ignore[override]
        """``fn(*args, **kwargs)`` as a Ray task; its ``ObjectRef.future()``. ``fn`` must be
        importable by name on the workers (a top-level capsim function) and the arguments plain
        data."""
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a RayExecutor after shutdown")
        ref = self._ray.remote(fn).remote(*args, **kwargs)
        future: Future[R] = ref.future()
        with self._lock:
            self._pending[future] = ref
        future.add_done_callback(self._settled)
        return future

    def _settled(self, future: Future[Any]) -> None:
        """A future is done: forget its task, and cancel the task when the future was cancelled
        (``Future.cancel`` alone would leave it running on the cluster)."""
        with self._lock:
            ref = self._pending.pop(future, None)
        if ref is not None and future.cancelled():
            try:
                self._ray.cancel(ref)
            except Exception:  # noqa: BLE001 - the task finished meanwhile, or Ray is gone: nothing to stop
                pass

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking calls; with ``cancel_futures``, cancel the tasks not finished; with
        ``wait``, wait for the rest; then disconnect when this executor connected."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._pending)
        if cancel_futures:
            for f in pending:
                f.cancel()
        if wait:
            for f in pending:
                if not f.cancelled():
                    try:
                        f.exception()
                    except Exception:  # noqa: BLE001 - only waiting here; the caller read or dropped the result
                        pass
        if self.owned and self._ray.is_initialized():
            self._ray.shutdown()
