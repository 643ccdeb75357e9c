"""Workload descriptions turned into RequestTables: arrival processes, lengths, request classes,
sessions and shared prefixes, real traces, and fitting a synthetic workload to a trace.

Deterministic for a given seed; no simulation logic lives here.
"""

from workloads.arrivals import (ARRIVAL_PROCESSES, ArrivalSpec, ClosedLoopArrivals, DiurnalRate, GammaArrivals,
                                MMPPArrivals, MMPPState, PoissonArrivals, RampRate, StepRate, TableRate, ThinkTime,
                                TraceArrivals, WeibullArrivals)
from workloads.lengths import (EmpiricalLength, ExponentialLength, FixedLength, HistogramLength, LengthSpec,
                               LognormalLength, NormalLength, QuantileLength, TraceLength, UniformLength)
from workloads.spec import ClassSpec, SessionSpec, SLOSpec, SystemPromptSpec, WorkloadSpec
from workloads.table import OPTIONAL_COLUMNS, REQUEST_SCHEMA, TRUNCATED_KEY, generate, request_table

__all__ = [
    "ARRIVAL_PROCESSES", "OPTIONAL_COLUMNS", "REQUEST_SCHEMA", "TRUNCATED_KEY", "ArrivalSpec", "ClassSpec", "ClosedLoopArrivals",
    "DiurnalRate", "EmpiricalLength", "ExponentialLength", "FixedLength", "GammaArrivals", "HistogramLength",
    "LengthSpec", "LognormalLength", "MMPPArrivals", "MMPPState", "NormalLength", "PoissonArrivals",
    "QuantileLength", "RampRate", "SLOSpec", "SessionSpec", "StepRate", "SystemPromptSpec", "TableRate",
    "ThinkTime", "TraceArrivals", "TraceLength", "UniformLength", "WeibullArrivals", "WorkloadSpec", "generate",
    "request_table",
]
