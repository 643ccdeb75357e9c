"""The private SimPy attributes sim.core.simpy_compat relies on, one test each: if a SimPy release
changes one, the test that names it fails (and pyproject.toml's bound on simpy says which
versions these tests have covered)."""

from __future__ import annotations

import simpy

from sim.core.simpy_compat import event_id, redirect, schedule_at


def test_event_id_is_the_id_the_next_scheduled_event_gets():
    # Environment._eid: a counter; an event scheduled after taking an id orders after it.
    env = simpy.Environment()
    order: list[str] = []
    a = env.timeout(1.0)
    taken = event_id(env)
    b = env.timeout(1.0)
    later = event_id(env)
    assert taken < later  # increasing, consumed
    a.callbacks.append(lambda _e: order.append("a"))
    b.callbacks.append(lambda _e: order.append("b"))
    env.run()
    assert order == ["a", "b"]


def test_schedule_at_fires_at_exactly_t_in_id_order_with_timeouts():
    # Environment._queue entries (time, priority, id, event) and Event._ok/_value.
    env = simpy.Environment()
    t = 0.30000000000000004
    seen: list[tuple[str, float]] = []
    early = env.timeout(t)  # scheduled before it: first at the tie
    ev = schedule_at(env, t)
    late = env.timeout(t)  # scheduled after it: last
    for name, e in (("late", late), ("at", ev), ("early", early)):
        e.callbacks.append(lambda e, name=name: seen.append((name, env.now)))
    env.run()
    assert seen == [("early", t), ("at", t), ("late", t)]
    assert ev.ok and ev.value is None and ev.processed


def test_redirect_moves_a_process_wait_to_another_event():
    # Process._target and Process._resume.
    env = simpy.Environment()
    got: list[tuple[float, object]] = []

    def waiter():
        value = yield env.timeout(10.0, value="first")
        got.append((env.now, value))

    proc = env.process(waiter())
    env.run(until=1.0)
    redirect(proc, env.timeout(2.0, value="second"))
    env.run()
    assert got == [(3.0, "second")]
