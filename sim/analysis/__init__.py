"""Questions answered by many simulations: load curves (:mod:`sim.analysis.curve`), hardware
comparisons (:mod:`sim.analysis.compare`), SLO targets (:mod:`sim.analysis.slo`), the charts
(:mod:`sim.analysis.charts`) and where the simulations run (:mod:`sim.analysis.executor`).
The planner and sweeps belong here too."""
