"""Workload descriptions turned into RequestTables: arrivals, lengths and request classes.

Deterministic for a given seed; no simulation logic lives here.
"""

from workloads.lengths import ExponentialLength, FixedLength, LengthSpec, LognormalLength, UniformLength
from workloads.spec import ArrivalSpec, ClassSpec, SLOSpec, WorkloadSpec
from workloads.table import REQUEST_SCHEMA, generate

__all__ = [
    "REQUEST_SCHEMA", "ArrivalSpec", "ClassSpec", "ExponentialLength", "FixedLength", "LengthSpec",
    "LognormalLength", "SLOSpec", "UniformLength", "WorkloadSpec", "generate",
]
