"""What a run produced: the request, iteration and timeline tables (:mod:`sim.results.records`),
the summary and its typed shape (:mod:`sim.results.metrics`, :mod:`sim.results.summary`), and the
blocks the summary carries: per-window sums (:mod:`sim.results.windows`), cost and power
(:mod:`sim.results.cost`), idle-capacity waste (:mod:`sim.results.waste`), and the run as a
benchmark client reports it (:mod:`sim.results.benchmark`, whose definitions fitting uses too).

Reads the core's state and logs; never drives the engine."""
