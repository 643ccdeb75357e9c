"""The three things the engine needs of SimPy that its public API does not offer, in one place.

Each reaches a private attribute of SimPy 4.1 (``pyproject.toml`` bounds the version to the
range ``tests/test_simpy_compat.py`` checks, one test per attribute):

- :func:`event_id`: the id SimPy gives the next event it schedules (``Environment._eid``), which
  orders events at equal times. Plans record where stepping one by one would have scheduled an
  event, so that ties come out as stepping orders them.
- :func:`schedule_at`: an event that fires at time ``t`` exactly, where no float delay from now
  lands on ``t`` (``Environment._queue``, ``Event._ok``/``Event._value``: what ``Timeout``
  sets, with the priority and id order a timeout would get).
- :func:`redirect`: move a waiting process's wait to another event (``Process._target``,
  ``Process._resume``): what ``Process.interrupt`` does, without the exception and the extra
  event, so that cutting a plan costs nothing but the new timeout.
"""

from __future__ import annotations

import heapq

import simpy
from simpy.core import NORMAL

__all__ = ["event_id", "redirect", "schedule_at"]


def event_id(env: simpy.Environment) -> int:
    """Take the id SimPy would give the next event scheduled now (consumes it, as scheduling does)."""
    return next(env._eid)  # type: ignore[attr-defined]


def schedule_at(env: simpy.Environment, t: float) -> simpy.Event:
    """A successful event with value None in ``env``'s queue at time ``t`` (>= now), ordered among
    equal times by the id it takes now, as a timeout scheduled now would be."""
    ev = simpy.Event(env)
    ev._ok, ev._value = True, None  # what a Timeout is born with
    heapq.heappush(env._queue, (t, NORMAL, next(env._eid), ev))  # type: ignore[attr-defined]
    return ev


def redirect(process: simpy.Process, event: simpy.Event) -> None:
    """Make ``process``, waiting on an event, wait on ``event`` instead."""
    process._target.callbacks.remove(process._resume)  # type: ignore[union-attr]
    event.callbacks.append(process._resume)  # type: ignore[union-attr]
    process._target = event
