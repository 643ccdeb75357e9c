"""Typed spec of the workload part of a scenario: arrivals, request classes and their lengths."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from workloads.lengths import LengthSpec

__all__ = ["ArrivalSpec", "ClassSpec", "SLOSpec", "WorkloadSpec"]

_Strict = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SLOSpec(BaseModel):
    """Latency targets a request of the class must meet to count towards goodput (all optional)."""

    model_config = _Strict
    ttft_s: float | None = Field(None, gt=0, description="max time to first token")
    tpot_s: float | None = Field(None, gt=0, description="max time per output token after the first")
    e2e_s: float | None = Field(None, gt=0, description="max end-to-end latency")


class ClassSpec(BaseModel):
    """One kind of request in the mixture: its share, lengths, priority and SLOs."""

    model_config = _Strict
    name: str = Field(min_length=1)
    share: float = Field(1.0, gt=0, description="relative weight in the mixture")
    priority: StrictInt = Field(0, description="lower is served first")
    prompt_tokens: LengthSpec
    output_tokens: LengthSpec
    slo: SLOSpec = SLOSpec()


class ArrivalSpec(BaseModel):
    """Open-loop arrivals. This issue ships Poisson; the workloads issue widens it."""

    model_config = _Strict
    process: Literal["poisson"] = "poisson"
    rate_per_s: float = Field(gt=0, description="mean arrivals per second")


class WorkloadSpec(BaseModel):
    """How much traffic of which kinds arrives, and when."""

    model_config = _Strict
    arrival: ArrivalSpec
    classes: tuple[ClassSpec, ...] = Field(min_length=1)
    num_requests: StrictInt | None = Field(None, gt=0, description="stop generating after this many requests")
    duration_s: float | None = Field(None, gt=0, description="stop generating after this many seconds")

    @field_validator("classes")
    @classmethod
    def _unique_names(cls, v: tuple[ClassSpec, ...]) -> tuple[ClassSpec, ...]:
        names = [c.name for c in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"class name {dup[0]!r} is used twice: class names must be unique")
        return v

    @model_validator(mode="after")
    def _one_stop_rule(self) -> WorkloadSpec:
        if (self.num_requests is None) == (self.duration_s is None):
            raise ValueError("give exactly one of num_requests or duration_s")
        return self
