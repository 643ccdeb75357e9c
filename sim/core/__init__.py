"""The engine core: the SimPy run of arrivals, routing and replicas (:mod:`sim.core.run`), one
replica's stepping loop (:mod:`sim.core.replica`) and the plans that step many iterations at once
(:mod:`sim.core.plans`), the request and replica state they move, the policies that read it
(:mod:`sim.core.scheduling`, :mod:`sim.core.routing`, through :mod:`sim.core.view`), the iteration
log, and the one module that reaches SimPy's internals (:mod:`sim.core.simpy_compat`).

Below results, analysis, fitting and the command line: nothing here imports them
(``pyproject.toml``'s ``rooms`` contract)."""
