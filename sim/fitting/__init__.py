"""Fitting and checking profiles by simulation: published serving benchmarks read and checked
(:mod:`sim.fitting.benchmark_csv`, :mod:`sim.fitting.benchmark_checks`), re-enacted in the engine
(:mod:`sim.fitting.reenact`), fitted (:mod:`sim.fitting.optimise`, run per configuration by
:mod:`sim.fitting.benchmark_fit`), the fits held and shown (:mod:`sim.fitting.fit_result`,
:mod:`sim.fitting.fit_report`), and the calibrated profile checked against a real serving loop
(:mod:`sim.fitting.validate`)."""
