"""Typed specs of the calibration part of a scenario: which profile prices the iterations."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, model_validator

from calibration.catalog import (GPUS, KV_CACHE_DTYPES, MODELS, QUANTIZATIONS, ModelArch, Precision,
                                 model_from_hf_config, resolve_precision)
from calibration.explicit import ExplicitProfile
from calibration.profile import Profile, Provenance
from calibration.roofline import RooflineProfile, measured_allreduce

__all__ = ["AutoProfileSpec", "ExplicitProfileSpec", "MeasuredProfileSpec", "ProfileSpec", "RooflineProfileSpec",
           "build_profile", "model_arch", "roofline_of"]

_Strict = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ExplicitProfileSpec(BaseModel):
    """Step-time coefficients written into the scenario (priced by :class:`ExplicitProfile`), to
    pin service times exactly: an iteration takes T = ``fixed_s`` + ``per_token_s``·tokens +
    ``prefill_attention_s``·Σ c·(p + c/2) + ``decode_attention_s``·Σ l, where tokens are the
    prefill chunk tokens plus one per decode sequence, c and p a prefill chunk's length and start
    position, and l a decode sequence's context length. ``fixed_s`` and ``per_token_s`` must not
    both be 0. Provenance ``explicit``: no FLOPs or bytes, so no MFU, MBU or energy. The KV
    capacity and read cost are the figures given, so ``kv_cache_dtype`` must stay 16-bit (auto)."""

    model_config = _Strict
    kind: Literal["explicit"] = Field(description="coefficients given inline")
    fixed_s: StrictFloat = Field(0.0, ge=0, description="seconds every iteration costs")
    per_token_s: StrictFloat = Field(0.0, ge=0, description="seconds per token computed (prefill or decode)")
    prefill_attention_s: StrictFloat = Field(0.0, ge=0, description="seconds per prefill attention pair, Σ c·(p + c/2)")
    decode_attention_s: StrictFloat = Field(0.0, ge=0, description="seconds per KV token read by a decode")
    kv_capacity_tokens: StrictInt = Field(gt=0, description="KV-cache tokens one replica holds (rounded down to "
                                          "whole blocks); engine.gpu_memory_fraction and kv_memory_fraction are "
                                          "ignored")

    @model_validator(mode="after")
    def _positive_time(self) -> ExplicitProfileSpec:
        if self.fixed_s == 0 and self.per_token_s == 0:
            raise ValueError("fixed_s and per_token_s are both 0: at least one must be > 0 so that every iteration takes time")
        return self


class RooflineProfileSpec(BaseModel):
    """Roofline from the catalog's datasheet figures (provenance ``derived``); any figure can be
    overridden here. On a100-80gb and h100-sxm at TP 2/4/8 the all-reduce is priced from measured
    NCCL timings (``calibration/data/collectives.toml``: 25–51 µs latency, 90–320 GB/s algorithm
    bandwidth) unless the scenario sets ``interconnect_gb_s`` or ``allreduce_latency_s``."""

    model_config = _Strict
    kind: Literal["roofline"] = Field("roofline", description="derived from the catalog's datasheet figures")
    tflops: dict[Precision, Annotated[StrictFloat, Field(gt=0)]] | None = Field(
        None, description="override: dense peak TFLOP/s per GPU by precision, merged over the catalog's (which "
        "for h100-sxm are {bf16: 989.4, fp8: 1978.9, int8: 1978.9}); unset: the catalog's")
    hbm_tb_s: StrictFloat | None = Field(None, gt=0, description="override: HBM bandwidth, TB/s per GPU (unset: the "
                                         "catalog's, 3.35 for h100-sxm)")
    memory_gib: StrictFloat | None = Field(None, gt=0, description="override: HBM capacity, GiB per GPU (unset: the "
                                           "catalog's, 81559 MiB ≈ 79.6 GiB for h100-sxm)")
    interconnect_gb_s: StrictFloat | None = Field(None, gt=0, description="override: intra-node link, GB/s per "
                                                  "direction, used when tp > 1 (unset: the catalog's, 450 for "
                                                  "h100-sxm)")
    compute_efficiency: StrictFloat = Field(0.6, gt=0, le=1, description="share of peak FLOP/s achieved")
    memory_efficiency: StrictFloat = Field(0.8, gt=0, le=1, description="share of peak HBM bandwidth achieved")
    overhead_s: StrictFloat = Field(0.0015, ge=0, description="fixed seconds added to every iteration (scheduling, "
                                    "launches, sampling)")
    allreduce_latency_s: StrictFloat = Field(10e-6, ge=0, description="seconds of latency of one tensor-parallel "
                                             "all-reduce")
    overlap: StrictFloat = Field(1.0, ge=0, le=1, description="share of the shorter of a part's compute and memory "
                                 "time hidden under the longer (1: the roofline's max; below: max + (1 - overlap) * min)")
    moe_compute_efficiency: StrictFloat | None = Field(None, gt=0, le=1, description="share of peak FLOP/s achieved by "
                                                       "a mixture of experts' expert GEMMs (unset: compute_efficiency)")
    allreduce_efficiency: StrictFloat = Field(1.0, gt=0, le=1, description="share of the all-reduce's bandwidth "
                                              "(measured NCCL or the link) achieved in the engine, latency alike")


class MeasuredProfileSpec(BaseModel):
    """A profile fitted to measurements (``capsim calibrate`` writes them): ``path`` is a profile
    JSON file, or a directory searched for the scenario's (model, quantization, hardware, tp)."""

    model_config = _Strict
    kind: Literal["measured"] = Field(description="a profile fitted to measurements, named by path")
    path: str = Field(min_length=1, description="a profile .json file, or a directory searched for the scenario's "
                      "(model, quantization, hardware, tp); the scenario is refused in one line when there is none")


class AutoProfileSpec(BaseModel):
    """The best profile there is for the configuration: a measured one (then derived-from-measured)
    from ``dirs`` in order, then those shipped with capsim; else the datasheet roofline. A profile
    labelled a poor fit is skipped, and the profile chosen instead says so in its provenance."""

    model_config = _Strict
    kind: Literal["auto"] = Field(description="the best profile there is for the configuration")
    dirs: tuple[str, ...] = Field((), description="directories (or files) of user profiles, searched in order "
                                  "before the profiles shipped in the package (calibration/profiles/)")
    engine: str | None = Field(None, min_length=1, description="a serving engine's profile for every configuration "
                               "alike: the datasheet roofline at the efficiencies fitted to that engine's benchmarks "
                               "(calibration/data/engine_profiles.toml, e.g. tensorrt-llm-0.17), on a GPU without rows "
                               "the engine-wide fallback; measured profiles are not searched, so a comparison never "
                               "mixes families. Unset: a measured profile where there is one, else the roofline")
    engine_profiles: str | None = Field(None, min_length=1, description="with engine: a file of engine profiles you "
                                        "fitted (`capsim calibrate --engine-fit CSV -o FILE.toml`), or a directory "
                                        "holding engine_profiles.toml, relative to the current directory as dirs are, "
                                        "read instead of the shipped calibration/data/engine_profiles.toml; the "
                                        "scenario is refused in one line when the file is missing, does not hold the "
                                        "engine or holds numbers a roofline cannot take")

    @model_validator(mode="after")
    def _known_engine(self) -> AutoProfileSpec:
        if self.engine_profiles is not None and self.engine is None:
            raise ValueError(f"engine_profiles = {self.engine_profiles!r} without engine: name the engine whose "
                             "profile to read from it (engine: NAME)")
        if self.engine is not None:
            from calibration.engine_profiles import engine_profiles, where_from

            known = engine_profiles(self.engine_profiles)  # a missing or unusable file: one line naming it
            if self.engine not in known:
                raise ValueError(f"engine = {self.engine!r}: no engine profile; known: {', '.join(sorted(known))} "
                                 f"({where_from(self.engine_profiles)})")
            if self.dirs:
                raise ValueError("engine and dirs are both given: an engine profile prices every configuration "
                                 "alike and searches no measured profiles; give one of them")
        return self


@dataclass(frozen=True)
class _NotedRoofline(RooflineProfile):
    """The datasheet roofline with a warning in its provenance: what ``kind: auto`` falls back to
    when it skipped a profile labelled a poor fit."""

    note: str = ""

    @property
    def provenance(self) -> Provenance:
        p = super().provenance
        return Provenance(kind=p.kind, source=f"{self.note}; {p.source}", assumptions=p.assumptions)


ProfileSpec = Annotated[Union[RooflineProfileSpec, ExplicitProfileSpec, MeasuredProfileSpec, AutoProfileSpec],
                        Field(discriminator="kind")]


def model_arch(model: str) -> ModelArch:
    """A catalog model by name, or a model read from a Hugging Face ``config.json`` path."""
    if model.endswith(".json"):
        return model_from_hf_config(Path(model))
    return MODELS[model]


def build_profile(spec: ExplicitProfileSpec | RooflineProfileSpec, *, model: str, hardware: str,
                  quantization: str, tp: int, kv_cache_dtype: str = "auto") -> Profile:
    """Turn a validated profile spec into the profile the engine calls.

    ``kv_cache_dtype`` sets the bytes of every cached K and V element ("auto": the activations'
    16 bits, vLLM's default), which every profile with a memory model applies twice: to the KV
    capacity and to the cost of reading the cache (the roofline's bytes; a measured profile's c_dc
    rescaled from the precision it was measured at, unless left at auto: then read as measured). An explicit profile has no memory model: its
    capacity and KV read cost are the scenario's own figures, so a precision other than 16 bits is
    refused there rather than silently ignored."""
    kv = 2.0 if kv_cache_dtype == "auto" else KV_CACHE_DTYPES[kv_cache_dtype]
    if isinstance(spec, ExplicitProfileSpec):
        if kv != 2.0:
            raise ValueError(f"kv_cache_dtype = {kv_cache_dtype!r}: an explicit profile takes its KV capacity "
                             "(kv_capacity_tokens) and KV read cost (decode_attention_s) as written, so a KV precision "
                             "would change nothing; write them for that precision and leave kv_cache_dtype at auto")
        return ExplicitProfile(spec.fixed_s, spec.per_token_s, spec.prefill_attention_s,
                               spec.decode_attention_s, spec.kv_capacity_tokens)
    if isinstance(spec, AutoProfileSpec) and spec.engine is not None:
        from calibration.engine_profiles import engine_efficiencies, engine_roofline

        eff, where = engine_efficiencies(spec.engine, hardware, spec.engine_profiles)
        base = build_profile(RooflineProfileSpec(**eff), model=model, hardware=hardware, quantization=quantization,
                             tp=tp, kv_cache_dtype=kv_cache_dtype)
        return engine_roofline(base, spec.engine, where, spec.engine_profiles)  # type: ignore[arg-type]
    if isinstance(spec, (MeasuredProfileSpec, AutoProfileSpec)):
        from calibration.measured import MeasuredProfile, find_profile, list_profiles, shipped_profile_dir

        auto = isinstance(spec, AutoProfileSpec)
        dirs = [*spec.dirs, shipped_profile_dir()] if auto else [spec.path]  # type: ignore[union-attr]
        hit = find_profile(model, quantization, hardware, tp, dirs, skip_poor=auto)
        note = ""
        if auto:
            # A profile labelled poor that auto would otherwise have chosen: skipped, and said so.
            first = find_profile(model, quantization, hardware, tp, dirs)
            if first is not None and first[1].poor:
                note = (f"warning: kind auto skipped {first[0]}, labelled a poor fit "
                        f"({first[1].meta.get('quality_note', 'fit error above the threshold')}); refit it, or name "
                        "it with kind: measured to use it anyway")
        base = build_profile(RooflineProfileSpec(), model=model, hardware=hardware, quantization=quantization, tp=tp,
                             kv_cache_dtype=kv_cache_dtype)
        if hit is not None:
            return MeasuredProfile(record=hit[1], base=base, note=note,  # type: ignore[arg-type]
                                   kv_as_measured=kv_cache_dtype == "auto")
        if auto:
            return _NotedRoofline(**{f.name: getattr(base, f.name) for f in fields(base)}, note=note) if note else base
        have = ", ".join(f"{r.model}/{r.quantization}/{r.hardware}/tp{r.tp}" for _, r in list_profiles(dirs)) or "none"
        raise ValueError(f"no profile for {model}/{quantization}/{hardware}/tp{tp} in {spec.path} (there: {have}); "
                         "measure one with `capsim calibrate`, or use kind: auto")
    gpu = GPUS[hardware]
    changed: dict[str, object] = {k: getattr(spec, k) for k in ("hbm_tb_s", "memory_gib", "interconnect_gb_s")
                                  if getattr(spec, k) is not None}
    if spec.tflops is not None:
        changed["tflops"] = {**gpu.tflops, **spec.tflops}
    if changed:
        gpu = gpu.model_copy(update=changed)
    precision = resolve_precision(QUANTIZATIONS[quantization], gpu)
    return RooflineProfile(
        model=model_arch(model), gpu=gpu, tp=tp, precision=precision, kv_bytes_per_element=kv,
        compute_efficiency=spec.compute_efficiency, memory_efficiency=spec.memory_efficiency,
        overhead_s=spec.overhead_s, allreduce_latency_s=spec.allreduce_latency_s,
        overlap=spec.overlap, moe_compute_efficiency=spec.moe_compute_efficiency,
        allreduce_efficiency=spec.allreduce_efficiency,
        overrides=tuple(sorted(changed)),
        # Measured NCCL all-reduce unless the scenario sets the link or the latency itself.
        allreduce=None if {"interconnect_gb_s", "allreduce_latency_s"} & spec.model_fields_set or tp == 1
        else measured_allreduce(hardware, tp),
    )


def roofline_of(profile: Profile) -> RooflineProfile | None:
    """The datasheet roofline behind ``profile``: itself, a measured profile's base (whose memory
    model, FLOPs and bytes it uses), or None for a profile with no hardware behind it (explicit)."""
    from calibration.measured import MeasuredProfile

    base = profile.base if isinstance(profile, MeasuredProfile) else profile
    return base if isinstance(base, RooflineProfile) else None
