"""Fitting and checking profiles by simulation: published serving benchmarks read and checked
(:mod:`sim.fitting.benchmark_csv`, :mod:`sim.fitting.benchmark_checks`), re-enacted and fitted
(:mod:`sim.fitting.benchmark_fit`), and the calibrated profile checked against a real serving loop
(:mod:`sim.fitting.validate`)."""
