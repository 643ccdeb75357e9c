"""The scenario: one frozen, typed, validated tree that says everything a run needs.

It composes the workload spec (``workloads``) and the profile spec (``calibration``) with the
serving configuration owned here (engine, router, measurement). Validation happens once, when
the scenario is built; everything downstream trusts it. Building a scenario has no side effects.
"""

from __future__ import annotations


import copy
import tomllib
from importlib import resources
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError,
                      field_validator, model_validator)

from calibration import GPUS, MODELS, QUANTIZATIONS, ProfileSpec, ReplicaSpec, RooflineProfileSpec, build_profile
from calibration.catalog import CatalogError, close_matches
from calibration.spec import model_arch, roofline_of
from calibration.profile import Profile
from sim.engine_presets import MEMORY_KEYS, engine_presets, preset_names, resolve_preset
from sim.errors import ScenarioError, format_validation_error
from workloads import WorkloadSpec

__all__ = ["EngineSpec", "MeasurementSpec", "RouterSpec", "Scenario", "default_scenario", "load_scenario",
           "parse_yaml", "scenario_data"]

_Strict = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


_OWNED_ONLY = ("purchase_usd_per_gpu", "server_usd_per_gpu", "amortisation_years", "usd_per_kwh",
               "hosting_usd_per_gpu_month")


class CostSpec(BaseModel):
    """How the hardware is paid for, and the power model's figures (the rules behind every figure
    are in :mod:`sim.results.cost`, and in docs/cost-and-curves.md). Every key is optional; the
    default is the catalog's on-demand cloud price of ``hardware``. Owned-only keys under
    ``model: cloud``, or cloud-only keys under ``model: owned``, are refused with the key named."""

    model_config = _Strict
    model: Literal["cloud", "owned"] = Field("cloud", description="cloud: rented per GPU-hour; owned: bought, "
                                             "amortised, powered and hosted")
    pricing: Literal["on-demand", "committed", "spot"] = Field(
        "on-demand", description="cloud pricing label; committed and spot need discount or usd_per_gpu_hour (the "
        "catalog holds on-demand prices only)")
    discount: StrictFloat | None = Field(None, ge=0, lt=1, description="cloud: share off the catalog's on-demand "
                                         "price, e.g. 0.4 for 40% off")
    usd_per_gpu_hour: StrictFloat | None = Field(None, gt=0, le=1000, description="cloud: price per GPU-hour in "
                                                 "USD; overrides the catalog and the discount. Unset: the catalog's")
    purchase_usd_per_gpu: StrictFloat | None = Field(None, gt=0, description="owned (required): purchase price of "
                                                     "one GPU, USD")
    server_usd_per_gpu: StrictFloat | None = Field(None, ge=0, description="owned: the GPU's share of its server "
                                                   "(CPUs, memory, network, chassis), USD; unset: 0")
    amortisation_years: StrictFloat | None = Field(None, gt=0, le=20, description="owned: years the purchase is "
                                                   "spread over (8,760 h each); unset: 4")
    usd_per_kwh: StrictFloat | None = Field(None, ge=0, le=10, description="owned (required): electricity price, "
                                            "USD per kWh")
    pue: StrictFloat = Field(1.3, ge=1, le=5, description="power usage effectiveness: facility energy per GPU "
                             "energy (an assumption: set your data centre's)")
    hosting_usd_per_gpu_month: StrictFloat | None = Field(None, ge=0, description="owned: colocation or hosting "
                                                          "per GPU per month, USD; unset: 0")
    idle_w: StrictFloat | None = Field(None, gt=0, le=5000, description="override: watts per GPU with nothing "
                                       "running (unset: the catalog's); below tdp_w")
    tdp_w: StrictFloat | None = Field(None, gt=0, le=5000, description="override: watts per GPU at full load "
                                      "(unset: the catalog's)")
    window_s: StrictFloat = Field(300.0, gt=0, description="seconds: time window of the per-window records, cost "
                                  "and waste (summary windows)")

    @model_validator(mode="after")
    def _consistent(self) -> CostSpec:
        if self.model == "cloud":
            given = [k for k in _OWNED_ONLY if getattr(self, k) is not None]
            if given:
                raise ValueError(f"{given[0]} = {getattr(self, given[0])!r} is for model 'owned'; this cost "
                                 "section has model 'cloud': set model: owned, or remove it")
            if self.pricing != "on-demand" and self.discount is None and self.usd_per_gpu_hour is None:
                raise ValueError(f"pricing = {self.pricing!r}: the catalog holds on-demand prices only; give "
                                 "discount (e.g. 0.4 for 40% off on-demand) or usd_per_gpu_hour")
        else:
            for k, unset in (("pricing", "on-demand"), ("discount", None), ("usd_per_gpu_hour", None)):
                if getattr(self, k) != unset:
                    raise ValueError(f"{k} = {getattr(self, k)!r} is for model 'cloud'; this cost section has "
                                     "model 'owned': remove it")
            for k in ("purchase_usd_per_gpu", "usd_per_kwh"):
                if getattr(self, k) is None:
                    raise ValueError(f"{k} is required for model 'owned' (the catalog holds no purchase or "
                                     "electricity prices)")
        if self.idle_w is not None and self.tdp_w is not None and self.idle_w >= self.tdp_w:
            raise ValueError(f"idle_w = {self.idle_w:g} is not below tdp_w = {self.tdp_w:g}: a GPU idles below its "
                             "full-load power")
        return self


# The share of GPU memory an engine fills when neither memory key is given: vLLM's gpu_memory_utilization.
_GPU_MEMORY_FRACTION = 0.9


class EngineSpec(BaseModel):
    """How each replica batches and admits: vLLM's settings under vLLM's names, or a serving engine's
    defaults by name (``preset``), each overridable (see docs/engine.md)."""

    model_config = _Strict
    preset: StrictStr | None = Field(
        None, description="a serving engine's defaults by name: vllm-0.8, sglang-0.4 or tensorrt-llm-0.17 (docs/"
        "engine.md lists each value and its source). It sets every key of this section that is not given beside "
        "it; a memory key given replaces the preset's. Unset: capsim's own defaults below (vLLM-like)")
    scheduler: Literal["continuous", "prefill_first", "static"] = Field(
        "continuous", description="batching policy. continuous: iteration-level batching with chunked prefill "
        "(vLLM V1); prefill_first: whole new prompts run alone before decodes resume (vLLM V0 without chunked "
        "prefill, Orca-like); static: request-level batching, a batch runs to completion before the next")
    chunked_prefill: StrictBool | None = Field(
        None, description="split long prompts across iterations; unset means on under continuous. true only with "
        "scheduler continuous; false admits a prompt only whole")
    max_num_seqs: StrictInt = Field(256, ge=1, description="most sequences in one iteration")
    max_num_batched_tokens: StrictInt = Field(8192, ge=1, description="most tokens computed in one iteration (the "
                                              "token budget); must be >= max_num_seqs")
    block_size: StrictInt = Field(16, ge=1, description="tokens per KV-cache block")
    gpu_memory_fraction: StrictFloat | None = Field(
        None, gt=0, le=1, description="share of all GPU memory the engine may fill with weights, activations and KV "
        "cache (vLLM's gpu_memory_utilization, SGLang's mem_fraction_static); unset: 0.9, unless kv_memory_fraction "
        "is given. Roofline memory model; an explicit profile ignores it")
    kv_memory_fraction: StrictFloat | None = Field(
        None, gt=0, lt=1, description="share of the GPU memory left after weights and activations that the KV "
        "cache takes (TensorRT-LLM's free_gpu_memory_fraction): the other way to size the KV cache, not with "
        "gpu_memory_fraction. Roofline memory model; an explicit profile ignores it")
    admission: Literal["recompute", "reserve"] = Field(
        "recompute", description="when a request may start, and whether it can be evicted. recompute (vLLM, "
        "SGLang): admitted when the KV blocks of its first chunk are free, it takes blocks as it grows and is "
        "preempted by recompute when they run out; reserve (TensorRT-LLM's GUARANTEED_NO_EVICT): admitted only "
        "when blocks for its whole sequence (prompt + output - 1 tokens) are free, it takes them all at once and "
        "is never preempted. Admission stops at the first waiting request that cannot start. static batching "
        "reserves under either")
    preemption: Literal["recompute"] = Field("recompute", description="what happens to a preempted sequence: its "
                                             "blocks are freed and its prompt and output so far prefilled again")

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data: Any) -> Any:
        """``preset``'s settings under the keys given beside it. The memory keys are one setting
        (a scenario's replaces the preset's), and a preset's chunked_prefill applies only under
        scheduler continuous unless given."""
        if not isinstance(data, Mapping) or not isinstance(data.get("preset"), str):
            return data  # no preset (or not a string: the field's own check says so)
        name = resolve_preset(data["preset"])  # a preset's alias names the same settings
        if name is None:
            known = preset_names()
            given = data["preset"]
            raise ValueError(f"preset = {given!r}: unknown engine preset{close_matches(given, known)}; "
                             f"known: {', '.join(known)}")
        settings = dict(engine_presets()[name].settings)
        if any(k in data for k in MEMORY_KEYS):
            settings = {k: v for k, v in settings.items() if k not in MEMORY_KEYS}
        merged = {**settings, **data}
        if merged.get("scheduler") != "continuous" and "chunked_prefill" not in data:
            merged.pop("chunked_prefill", None)
        return merged

    @model_validator(mode="after")
    def _consistent(self) -> EngineSpec:
        if self.gpu_memory_fraction is not None and self.kv_memory_fraction is not None:
            raise ValueError(f"gpu_memory_fraction = {self.gpu_memory_fraction} and kv_memory_fraction = "
                             f"{self.kv_memory_fraction} are both given: give one (gpu_memory_fraction: a share of all "
                             "GPU memory, vLLM/SGLang; kv_memory_fraction: a share of what weights and activations "
                             "leave, TensorRT-LLM)")
        if self.chunked_prefill and self.scheduler != "continuous":
            raise ValueError(f"chunked_prefill = True with scheduler {self.scheduler!r}: chunked prefill "
                             "needs scheduler 'continuous'")
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError(f"max_num_batched_tokens = {self.max_num_batched_tokens} is below "
                             f"max_num_seqs = {self.max_num_seqs}: it must be >= max_num_seqs")
        return self

    @property
    def chunked(self) -> bool:
        """Whether prompts are split across iterations (the default under ``continuous``)."""
        return self.scheduler == "continuous" and self.chunked_prefill is not False

    @property
    def memory_fraction(self) -> float:
        """Share of GPU memory the memory model may fill: ``gpu_memory_fraction``; all of it when
        ``kv_memory_fraction`` sizes the KV cache instead (from what the rest leaves); else 0.9."""
        if self.gpu_memory_fraction is not None:
            return self.gpu_memory_fraction
        return 1.0 if self.kv_memory_fraction is not None else _GPU_MEMORY_FRACTION


class RouterSpec(BaseModel):
    """How arriving requests are spread over replicas."""

    model_config = _Strict
    policy: Literal["round_robin", "least_outstanding", "least_kv_load"] = Field(
        "least_outstanding", description="which replica an arriving request goes to. least_outstanding: the one "
        "with the fewest outstanding requests (waiting + running), ties to the lowest index; round_robin: each in "
        "turn, whatever their load; least_kv_load: the one whose KV cache holds the fewest blocks at that moment, "
        "ties to the fewest outstanding, then the lowest index")
    max_outstanding_per_replica: StrictInt | None = Field(
        None, ge=1, description="if set, requests wait in a central queue (by priority, then arrival) while every "
        "replica has this many outstanding (waiting + running), like Ray Serve's max_ongoing_requests; if unset, "
        "every request is dispatched on arrival")


class MeasurementSpec(BaseModel):
    """Which part of the run the statistics describe."""

    model_config = _Strict
    warmup_s: StrictFloat = Field(0.0, ge=0, description="seconds; arrivals before this are simulated but not "
                                  "measured. Must be below workload.duration_s when that is set")
    horizon_s: StrictFloat | None = Field(None, gt=0, description="seconds; stop the simulation at this time "
                                          "(after warmup_s): requests that arrived but did not finish are reported "
                                          "in_flight, those due after it not_arrived. If unset, the run continues "
                                          "until every request has ended")

    @model_validator(mode="after")
    def _ordered(self) -> MeasurementSpec:
        if self.horizon_s is not None and self.horizon_s <= self.warmup_s:
            raise ValueError(f"horizon_s = {self.horizon_s:g} is not after warmup_s = {self.warmup_s:g}: "
                             "nothing would be measured; horizon_s must exceed warmup_s")
        return self


class Scenario(BaseModel):
    """Everything one simulation needs. Build it in Python or load it with :func:`load_scenario`."""

    model_config = _Strict
    name: StrictStr = Field("scenario", description="label copied into the summary")
    seed: StrictInt = Field(0, ge=0, description="seeds every random stream (arrivals, class choice, lengths); the "
                            "same scenario and seed give identical results")
    model: str = Field("llama-3.1-8b", description="model architecture: a catalog model (`capsim catalog --kind "
                       "models`), or a path to a Hugging Face config.json (Llama, Mistral, Qwen2 and Mixtral "
                       "style keys)")
    quantization: str = Field("bf16", description="how weights are stored and what precision the matmuls run in: "
                              "a catalog scheme (`capsim catalog --kind quantizations`: bf16, fp16, fp8, int8, "
                              "int4-awq, ...). Where the GPU lacks that matmul the scheme falls back the way engines "
                              "do (fp8 on an A100 runs weight-only) and the profile's provenance says so")
    kv_cache_dtype: Literal["auto", "bf16", "fp16", "fp8"] = Field(
        "auto", description="KV-cache precision; auto keeps the activations' 16 bits. It sets both the KV capacity "
        "and the cost of reading the cache (fp8 holds twice the tokens and reads half the bytes per token) in every "
        "profile kind but explicit, which takes both as written and refuses fp8")
    hardware: str = Field("h100-sxm", description="GPU type: a catalog GPU (`capsim catalog --kind hardware`)")
    tp: StrictInt = Field(1, ge=1, description="tensor-parallel degree: GPUs per replica. Must divide the model's "
                          "attention heads and KV heads (1, 2, 4, 8 for Llama-3.1-8B)")
    replicas: StrictInt = Field(1, ge=1, description="engine replicas; the run uses replicas × tp GPUs")
    profile: ProfileSpec = Field(RooflineProfileSpec(), description="the step-time and memory model; its kind "
                                 "picks one")
    engine: EngineSpec = Field(EngineSpec(), description="how each replica batches and admits requests: capsim's "
                               "vLLM-like defaults, or a serving engine's by preset")
    router: RouterSpec = Field(RouterSpec(), description="how requests are spread over replicas")
    workload: WorkloadSpec = Field(description="the traffic. In a file, a file name instead of the mapping "
                                   "(relative to the scenario file) reads the mapping from that YAML/TOML file, "
                                   "e.g. one written by `capsim workload fit`")
    measurement: MeasurementSpec = Field(MeasurementSpec(), description="which part of the run the statistics "
                                         "describe")
    cost: CostSpec = Field(CostSpec(), description="how the hardware is paid for, and the power model's figures; "
                           "by default the catalog's on-demand cloud price of hardware")

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        if not v.endswith(".json"):
            return _known(v, MODELS, "model")
        try:
            model_arch(v)
        except CatalogError as e:
            raise ValueError(str(e)) from None
        return v

    @field_validator("hardware")
    @classmethod
    def _known_hardware(cls, v: str) -> str:
        return _known(v, GPUS, "hardware")

    @field_validator("quantization")
    @classmethod
    def _known_quantization(cls, v: str) -> str:
        return _known(v, QUANTIZATIONS, "quantization")

    @model_validator(mode="after")
    def _feasible(self) -> Scenario:
        arch = model_arch(self.model)
        if arch.heads % self.tp or arch.kv_heads % self.tp:
            raise ValueError(f"tp = {self.tp}: must divide {arch.name}'s {arch.heads} attention heads and "
                             f"{arch.kv_heads} KV heads")
        spec = self.replica_spec
        profile = roofline_of(self.build_profile())  # a measured profile's memory model is the roofline's
        if profile is not None:
            if self.tp > 1 and profile.gpu.interconnect_gb_s <= 0:
                raise ValueError(f"tp = {self.tp}: hardware = {self.hardware!r} has no interconnect between devices in "
                                 "the catalog; use tp = 1, or give profile.interconnect_gb_s")
            short = profile.memory_shortfall_bytes(spec)
            if short > 0:
                gib = profile.gpu.memory_bytes / 2**30
                usable = gib * spec.gpu_memory_fraction
                share = f"engine.gpu_memory_fraction = {spec.gpu_memory_fraction} of {gib:.1f} GiB"
                room = (f"the GPU holds {gib:.1f} GiB" if self.engine.kv_memory_fraction is not None
                        else f"{share} leaves {usable:.1f} GiB")
                raise ValueError(
                    f"model = {self.model!r} ({self.quantization}) does not fit: at tp = {self.tp} each GPU needs "
                    f"{short / 2**30 + usable:.1f} GiB for weights and activations but {room} (short by "
                    f"{short / 2**30:.1f} GiB); raise tp, quantize the weights (e.g. fp8, int4-awq)"
                    + (" or raise gpu_memory_fraction" if self.engine.kv_memory_fraction is None else ""))
        if self.workload.duration_s is not None and self.measurement.warmup_s >= self.workload.duration_s:
            raise ValueError(f"measurement.warmup_s = {self.measurement.warmup_s:g}: must be below "
                             f"workload.duration_s = {self.workload.duration_s:g}, or nothing is measured")
        kv = self.kv_capacity_tokens
        if kv < self.engine.block_size:
            if self.profile.kind == "explicit":
                raise ValueError(f"profile.kv_capacity_tokens = {self.profile.kv_capacity_tokens}: must hold at least "
                                 f"one block of engine.block_size = {self.engine.block_size} tokens")
            key = "kv_memory_fraction" if self.engine.kv_memory_fraction is not None else "gpu_memory_fraction"
            raise ValueError(f"the KV cache holds {self.build_profile().kv_capacity_tokens(self.replica_spec)} tokens "
                             f"per replica, less than one block of engine.block_size = {self.engine.block_size}: "
                             f"raise engine.{key} or tp")
        for i, c in enumerate(self.workload.classes):
            bound = c.prompt_upper_bound
            longest = arch.max_context - 1 if bound is None else min(bound, arch.max_context - 1)
            if longest > kv:
                what = "can reach" if bound is not None else "is unbounded and truncated only at the model's context,"
                raise ValueError(
                    f"workload.classes[{i}].prompt_tokens {what} {longest} tokens but the KV cache holds at most "
                    f"{kv} tokens per replica: set prompt_tokens.max <= {kv} or give the engine more memory")
        return self

    # -- derived, never stored -----------------------------------------------------------------
    @property
    def replica_spec(self) -> ReplicaSpec:
        return ReplicaSpec(tp=self.tp, gpu_memory_fraction=self.engine.memory_fraction,
                           max_num_batched_tokens=self.engine.max_num_batched_tokens,
                           kv_memory_fraction=self.engine.kv_memory_fraction)

    def build_profile(self) -> Profile:
        """The step-time and memory model this scenario's iterations are priced with."""
        return build_profile(self.profile, model=self.model, hardware=self.hardware,
                             quantization=self.quantization, tp=self.tp, kv_cache_dtype=self.kv_cache_dtype)

    @property
    def kv_capacity_tokens(self) -> int:
        """KV tokens per replica, rounded down to whole blocks."""
        tokens = self.build_profile().kv_capacity_tokens(self.replica_spec)
        return tokens // self.engine.block_size * self.engine.block_size

    @property
    def max_context(self) -> int:
        return model_arch(self.model).max_context

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as written next to results so a run can be repeated."""
        return self.model_dump(mode="json", exclude_none=True)


def _known(value: str, table: Mapping[str, Any], key: str) -> str:
    if value not in table:
        raise ValueError(f"unknown {key}{close_matches(value, table)}; known: {', '.join(sorted(table))}")
    return value


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a mapping naming one key twice is an error: plain YAML keeps
    the last value silently, so a scenario with two ``rate_per_s`` lines would run one of them."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (first at line {seen[key].start_mark.line + 1}): "
                    "each key may appear once", key_node.start_mark)
            if isinstance(key, (str, int, float, bool)):
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    """YAML text as plain data, refusing duplicate keys (see :class:`_UniqueKeyLoader`)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def _read_file(path: Path, what: str = "scenario") -> Any:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise ScenarioError(f"{path}: is a directory, not a {what} file") from None
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read ({e.strerror})") from None
    except ValueError:  # a NUL in the name
        raise ScenarioError(f"{str(path)!r}: not a valid file name (it holds a NUL character)") from None
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ScenarioError(f"{path}: scenario and workload files must end in .yaml, .yml or .toml, not "
                            f"{suffix or '(none)'!r}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScenarioError(f"{path}: not a text file in UTF-8 (byte {e.start} is 0x{raw[e.start]:02x}): "
                            f"a {what} file is YAML or TOML text") from None
    if "\x00" in text:
        raise ScenarioError(f"{path}: holds NUL bytes: a {what} file is YAML or TOML text, not binary data")
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        return parse_yaml(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: not valid TOML: {_one_line(e)}") from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (a control character)
        raise ScenarioError(f"{path}: not valid YAML: character {e.character!r} at byte {e.position}: "
                            f"{e.reason}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ScenarioError(f"{path}: not valid YAML{where}: {_one_line(getattr(e, 'problem', None) or e)}") from None


def _one_line(error: object) -> str:
    """A parser's message on one line (some span several, with the offending text quoted)."""
    return " ".join(str(error).split())


def scenario_data(path: str | Path | None = None) -> dict[str, Any]:
    """The raw mapping of a scenario file, or of the embedded default when ``path`` is None,
    before validation: for callers that edit keys first (the CLI's ``--set``). Files the scenario
    names (``workload: FILE``, trace paths) are resolved against the scenario file's folder."""
    if path is None:
        data = parse_yaml(resources.files("sim").joinpath("scenarios/default.yaml").read_text())
        label = "default scenario"
    else:
        data, label = _read_file(Path(path)), str(path)
    if not isinstance(data, dict):
        raise ScenarioError(f"{label}: a scenario must be a mapping of keys, not {type(data).__name__}")
    if path is not None:  # files named in the scenario are read beside it, wherever capsim runs
        data = _trace_paths_beside(_inline_workload(data, Path(path).parent, f"{label}: "), Path(path).parent)
    return data


def _inline_workload(data: dict[str, Any], base: Path, label: str) -> dict[str, Any]:
    """``workload: FILE`` (e.g. what ``capsim workload fit -o`` writes) read in place, relative to
    the scenario file; the file holds the workload mapping, or a scenario-like mapping with one."""
    wl = data.get("workload")
    if not isinstance(wl, str):
        return data
    path = Path(wl) if Path(wl).is_absolute() else base / wl
    try:
        inner = _read_file(path, "workload")
    except ScenarioError as e:
        raise ScenarioError(f"{label}workload = {wl!r}: {e}") from None
    if isinstance(inner, dict) and isinstance(inner.get("workload"), dict):
        inner = inner["workload"]
    if not isinstance(inner, dict):
        raise ScenarioError(f"{label}workload = {wl!r}: the file must hold a mapping of workload keys")
    return {**data, "workload": inner}


def _trace_paths_beside(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative trace paths in a scenario file's workload (a ``trace`` arrival, ``dist: trace``
    lengths) read beside the scenario file when the file is there, as ``workload: FILE`` is; else
    as given (relative to the current directory)."""
    wl = data.get("workload")
    if not isinstance(wl, dict):
        return data
    wl = copy.deepcopy(wl)
    holders = [wl.get("arrival")]
    for c in wl.get("classes") or []:
        if isinstance(c, dict):
            holders += [c.get("prompt_tokens"), c.get("output_tokens")]
    for h in holders:
        if isinstance(h, dict) and isinstance(h.get("path"), str) and h.get("path"):
            path = Path(h["path"])
            if not path.is_absolute() and (base / path).exists():
                h["path"] = str(base / path)
    return {**data, "workload": wl}


def load_scenario(source: str | Path | dict[str, Any]) -> Scenario:
    """Load and validate a scenario from a YAML/TOML file or a dict.

    Raises :class:`ScenarioError` with one line naming every bad key, its value and the rule.
    """
    if isinstance(source, dict):
        data, label = _inline_workload(source, Path.cwd(), ""), ""
    else:
        data, label = scenario_data(source), f"{source}: "
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        raise ScenarioError(label + format_validation_error(e, Scenario)) from None


def default_scenario() -> Scenario:
    """The embedded default: Llama-3.1-8B on one H100, chat-like Poisson traffic."""
    return load_scenario(scenario_data())
