"""Typed specs of the calibration part of a scenario: which profile prices the iterations."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from calibration.catalog import GPUS, MODELS, QUANTIZATIONS
from calibration.explicit import ExplicitProfile
from calibration.profile import Profile
from calibration.roofline import RooflineProfile

__all__ = ["ExplicitProfileSpec", "ProfileSpec", "RooflineProfileSpec", "build_profile"]

_Strict = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ExplicitProfileSpec(BaseModel):
    """Step-time coefficients written into the scenario (see :class:`ExplicitProfile`)."""

    model_config = _Strict
    kind: Literal["explicit"]
    fixed_s: float = Field(0.0, ge=0, description="seconds every iteration costs")
    per_token_s: float = Field(0.0, ge=0, description="seconds per token computed (prefill or decode)")
    prefill_attention_s: float = Field(0.0, ge=0, description="seconds per prefill attention pair, Σ c·(p + c/2)")
    decode_attention_s: float = Field(0.0, ge=0, description="seconds per KV token read by a decode")
    kv_capacity_tokens: StrictInt = Field(gt=0, description="KV-cache tokens one replica holds")

    @model_validator(mode="after")
    def _positive_time(self) -> ExplicitProfileSpec:
        if self.fixed_s == 0 and self.per_token_s == 0:
            raise ValueError("fixed_s and per_token_s are both 0: at least one must be > 0 so that every iteration takes time")
        return self


class RooflineProfileSpec(BaseModel):
    """Roofline from the catalog's datasheet figures; any figure can be overridden here."""

    model_config = _Strict
    kind: Literal["roofline"] = "roofline"
    bf16_tflops: float | None = Field(None, gt=0, description="override: dense bf16 TFLOP/s per GPU")
    hbm_tb_s: float | None = Field(None, gt=0, description="override: HBM bandwidth, TB/s per GPU")
    memory_gib: float | None = Field(None, gt=0, description="override: HBM capacity, GiB per GPU")
    interconnect_gb_s: float | None = Field(None, gt=0, description="override: intra-node link, GB/s per direction")
    compute_efficiency: float = Field(0.6, gt=0, le=1, description="share of peak FLOP/s achieved")
    memory_efficiency: float = Field(0.8, gt=0, le=1, description="share of peak HBM bandwidth achieved")
    overhead_s: float = Field(0.0015, ge=0, description="fixed seconds per iteration")
    allreduce_latency_s: float = Field(10e-6, ge=0, description="latency of one all-reduce")


ProfileSpec = Annotated[Union[RooflineProfileSpec, ExplicitProfileSpec], Field(discriminator="kind")]


def build_profile(spec: ExplicitProfileSpec | RooflineProfileSpec, *, model: str, hardware: str,
                  quantization: str, tp: int) -> Profile:
    """Turn a validated profile spec into the profile the engine calls."""
    if isinstance(spec, ExplicitProfileSpec):
        return ExplicitProfile(spec.fixed_s, spec.per_token_s, spec.prefill_attention_s,
                               spec.decode_attention_s, spec.kv_capacity_tokens)
    gpu = GPUS[hardware]
    overrides = {
        "bf16_tflops": spec.bf16_tflops,
        "hbm_tb_s": spec.hbm_tb_s,
        "memory_bytes": None if spec.memory_gib is None else int(spec.memory_gib * 2**30),
        "interconnect_gb_s": spec.interconnect_gb_s,
    }
    changed = {k: v for k, v in overrides.items() if v is not None}
    if changed:
        gpu = gpu.__class__(**{**gpu.__dict__, **changed,
                               "source": gpu.source + " with scenario overrides " + ", ".join(sorted(changed))})
    q = QUANTIZATIONS[quantization]
    return RooflineProfile(
        model=MODELS[model], gpu=gpu, tp=tp, weight_bytes_per_element=q["weight"],
        activation_bytes_per_element=q["activation"], kv_bytes_per_element=q["kv"],
        compute_efficiency=spec.compute_efficiency, memory_efficiency=spec.memory_efficiency,
        overhead_s=spec.overhead_s, allreduce_latency_s=spec.allreduce_latency_s, quantization=quantization,
    )
