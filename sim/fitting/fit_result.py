"""What a benchmark fit returns: a :class:`BenchmarkFit` per configuration, a :class:`RowFit` per
benchmark row, and the median error above which a fit is poor (:data:`POOR_FIT_MEDIAN`).

Kept apart from the fit that makes them (:mod:`sim.fitting.benchmark_fit`) so that what shows
them (:mod:`sim.fitting.fit_report`) reads them without importing the fitting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from calibration.measured import ProfileRecord

__all__ = ["POOR_FIT_MEDIAN", "BenchmarkFit", "RowFit"]

# A fit whose median |relative error| over the rows' measured values is above this is refused
# (unless kept, labelled poor). A step-time model the simulator re-enacts reproduces a real
# server's runs to about 10% (run-to-run noise of serving benchmarks is a few percent; the fit has
# three factors for what varies between runs): the ten finite-rate rows of the published
# TensorRT-LLM 0.14 table for Llama-3.1-8B on an H100 SXM fit with a median error of 6.2% (max
# 28.6%) over their 40 values. With half the values off by more than a quarter,
# the rows describe something the simulator does not re-enact (units, the configuration, engine
# settings, another load), and a profile fitted to them would mislead every scenario that uses it.
POOR_FIT_MEDIAN = 0.25


@dataclass(frozen=True)
class RowFit:
    """Measured versus fitted values of one benchmark row: only the metrics it measured.
    ``error`` is relative, (fitted − measured) / measured."""

    row: int
    load: str
    input_tokens: int
    output_tokens: int
    num_requests: int
    simulated_requests: int
    streams: int
    measured: dict[str, float]
    fitted: dict[str, float]
    error: dict[str, float]
    note: str | None = None


@dataclass(frozen=True)
class BenchmarkFit:
    """The fit of one configuration to its benchmark rows.

    ``factors``: multiplicative factors against the roofline coefficients per
    :data:`~sim.fitting.optimise.FACTOR_GROUPS` (``overhead`` scales ``t0``). ``uncertainty``: how
    loosely the rows pin each factor, as its relative spread per 1% of independent noise in every
    measured value (above about 5%, the rows hardly separate it from the others).
    ``median_error``/``max_error``: of |relative error| over every measured value (in-sample);
    ``quality`` is ``"poor"`` where the median is above :data:`POOR_FIT_MEDIAN` (kept only with
    ``keep_poor_fit``), else ``"good"``. ``heldout_error``: the same scored on rows left out of the
    fit (k-fold cross-validation), per metric family, empty when there were too few rows.
    ``record`` and ``table`` go to :func:`calibration.measured.write_profile`."""

    configuration: tuple[str, str, str, int]
    coefficients: dict[str, float]
    roofline_coefficients: dict[str, float]
    factors: dict[str, float]
    uncertainty: dict[str, float]
    rows: tuple[RowFit, ...]
    median_error: float
    max_error: float
    heldout_error: dict[str, dict[str, float]]
    evaluations: int
    record: ProfileRecord
    table: pa.Table
    notes: tuple[str, ...] = field(default=())
    quality: str = "good"
