"""The hardware, model and quantization catalog: the figures capsim's derived profiles start from.

The figures live as data in ``calibration/data/*.toml`` (one table per entry), every figure with
its source and date, and are validated into the frozen types below the first time anything asks
for them (no work at import). A user adds a model from a Hugging Face ``config.json``
(:func:`model_from_hf_config`) and overrides any GPU figure in a scenario's ``profile``.

A model entry may be an **alias**: ``alias_of = "other"`` with its own ``name`` and ``source`` and
no figures. It loads as ``other``'s architecture under its own key (``alias_of`` set), so the name
is accepted wherever a model name is, and the figures live in one place: a release that reuses an
architecture (Llama-3.3-70B is Llama-3.1-70B's) cannot drift from it.

Precision names used throughout: ``bf16``, ``fp16``, ``fp8``, ``int8``, ``int4``, ``fp4``.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, model_validator

__all__ = ["GPU", "GPUS", "KV_CACHE_DTYPES", "MODELS", "QUANTIZATIONS", "CatalogError", "ModelArch",
           "Quantization", "ResolvedPrecision", "close_matches", "model_from_hf_config", "resolve_precision",
           "same_architecture"]

_Strict = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

Precision = Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4", "fp4"]

# Bytes per element of each KV-cache precision a scenario may pick (``kv_cache_dtype``).
KV_CACHE_DTYPES: dict[str, float] = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0}

# Largest dense peak of each narrow precision relative to the device's 16-bit peak (see GPU._valid).
_MAX_DENSE_RATIO: dict[str, float] = {"fp8": 2.0, "int8": 4.0, "int4": 8.0, "fp4": 8.0}


class CatalogError(ValueError):
    """A catalog entry that does not validate, or a name the catalog does not hold; one line."""


def _check_sources(entry: BaseModel, figures: tuple[str, ...]) -> None:
    """Every figure needs a source: its own key in ``sources`` or the entry's ``default``."""
    sources: dict[str, str] = getattr(entry, "sources")
    missing = [f for f in figures if f not in sources and "default" not in sources]
    if missing:
        raise ValueError(f"no source for {', '.join(missing)}: give sources.<figure> or sources.default")
    unknown = sorted(set(sources) - set(figures) - {"default"})
    if unknown:
        raise ValueError(f"sources names {', '.join(unknown)}, which are not figures of this entry")
    empty = [k for k, v in sources.items() if not v.strip()]
    if empty:
        raise ValueError(f"sources.{empty[0]} is empty: a source says where the figure comes from and when")


class GPU(BaseModel):
    """Datasheet figures of one accelerator (or a CPU socket), per device."""

    model_config = _Strict
    key: str
    name: str
    vendor: str
    kind: Literal["gpu", "cpu"] = "gpu"
    memory_gib: float = Field(gt=0, le=4096, description="memory an engine can address, GiB")
    hbm_tb_s: float = Field(gt=0, le=50, description="peak memory bandwidth, TB/s")
    tflops: dict[Precision, float] = Field(description="dense peak TFLOP/s (TOPS for integers) per precision")
    interconnect_gb_s: float = Field(ge=0, le=10_000, description="intra-node link per direction, GB/s (0: none)")
    tdp_w: float = Field(gt=0, le=5_000, description="thermal design power, W")
    idle_w: float = Field(gt=0, le=5_000, description="power drawn with a model loaded and no work, W")
    price_usd_per_hour: float = Field(gt=0, le=1_000, description="typical cloud on-demand price per device-hour")
    sources: dict[str, str]

    @model_validator(mode="after")
    def _valid(self) -> GPU:
        if "bf16" not in self.tflops and "fp16" not in self.tflops:
            raise ValueError("tflops needs bf16 or fp16: every device runs 16-bit matmuls")
        bad = {p: v for p, v in self.tflops.items() if not 0 < v <= 40_000}
        if bad:
            p, v = next(iter(bad.items()))
            raise ValueError(f"tflops.{p} = {v}: must be in (0, 40000]")
        # Datasheets print 2:4-sparse peaks beside (or instead of) dense ones. Dense, a narrower
        # type runs at most this many times the 16-bit rate (fp8 2x; int8 up to 4x on GeForce-class
        # parts whose 16-bit rate is halved; 4-bit types with room above B200's 4x): a sparse 8-bit
        # figure next to a dense 16-bit one breaks the bound. 2% slack for datasheet rounding.
        sixteen = self.bf16_tflops
        for p, most in _MAX_DENSE_RATIO.items():
            if p in self.tflops and self.tflops[p] > most * sixteen * 1.02:
                raise ValueError(
                    f"tflops.{p} = {self.tflops[p]:g} is {self.tflops[p] / sixteen:.1f}x the 16-bit rate "
                    f"({sixteen:g}); dense {p} runs at most {most:g}x it: this looks like a 2:4-sparse "
                    f"datasheet figure; give the dense one (half)")
        if self.idle_w >= self.tdp_w:
            raise ValueError(f"idle_w = {self.idle_w:g} is not below tdp_w = {self.tdp_w:g}: a device idles below its "
                             "thermal design power")
        _check_sources(self, ("memory_gib", "hbm_tb_s", "tflops", "interconnect_gb_s", "tdp_w", "idle_w",
                              "price_usd_per_hour"))
        return self

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * 2**30)

    @property
    def bf16_tflops(self) -> float:
        """Dense 16-bit peak (bf16, or fp16 where the device has no bf16)."""
        return self.tflops.get("bf16", self.tflops.get("fp16", 0.0))

    def source_of(self, figure: str) -> str:
        return self.sources.get(figure, self.sources.get("default", ""))


class ModelArch(BaseModel):
    """Shapes of a Llama-family decoder (grouped-query attention, gated MLP), dense or mixture of
    experts (each layer's MLP replaced by ``experts`` expert MLPs of which ``experts_per_token``
    run per token)."""

    model_config = _Strict
    key: str
    name: str
    layers: StrictInt = Field(ge=1, le=1000)
    hidden: StrictInt = Field(ge=1)
    heads: StrictInt = Field(ge=1)
    kv_heads: StrictInt = Field(ge=1)
    head_dim: StrictInt = Field(ge=1)
    intermediate: StrictInt = Field(ge=1, description="MLP width (per expert for MoE)")
    vocab: StrictInt = Field(ge=1)
    max_context: StrictInt = Field(ge=1)
    tied_embeddings: StrictBool = False
    attention_bias: StrictBool = Field(False, description="q/k/v projections carry biases (Qwen2)")
    experts: StrictInt = Field(1, ge=1, description="expert MLPs per layer (1: dense)")
    experts_per_token: StrictInt = Field(1, ge=1)
    source: str = Field(min_length=1)
    alias_of: str | None = Field(None, description="the catalog model whose architecture this name shares")

    @model_validator(mode="after")
    def _valid(self) -> ModelArch:
        if self.heads % self.kv_heads:
            raise ValueError(f"heads = {self.heads} is not a multiple of kv_heads = {self.kv_heads}")
        if self.experts_per_token > self.experts:
            raise ValueError(f"experts_per_token = {self.experts_per_token} exceeds experts = {self.experts}")
        return self

    @property
    def is_moe(self) -> bool:
        return self.experts > 1

    @property
    def attention_params_per_layer(self) -> int:
        """q, k, v and o projections (with q/k/v biases where the model has them)."""
        q = self.hidden * self.heads * self.head_dim
        kv = 2 * self.hidden * self.kv_heads * self.head_dim
        o = self.heads * self.head_dim * self.hidden
        bias = (self.heads + 2 * self.kv_heads) * self.head_dim if self.attention_bias else 0
        return q + kv + o + bias

    @property
    def expert_params(self) -> int:
        """One gated MLP (gate, up, down)."""
        return 3 * self.hidden * self.intermediate

    @property
    def router_params_per_layer(self) -> int:
        return self.hidden * self.experts if self.is_moe else 0

    @property
    def layer_linear_params(self) -> int:
        """Weights of one layer's linear layers: attention, every expert MLP and the router."""
        return self.attention_params_per_layer + self.experts * self.expert_params + self.router_params_per_layer

    @property
    def active_layer_linear_params(self) -> int:
        """Weights one token multiplies by in one layer: attention, its experts and the router."""
        return (self.attention_params_per_layer + self.experts_per_token * self.expert_params
                + self.router_params_per_layer)

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def params(self) -> int:
        """All parameters: layers (with their two RMSNorms), embeddings, final norm, LM head."""
        per_layer = self.layer_linear_params + 2 * self.hidden
        head = 0 if self.tied_embeddings else self.embedding_params
        return self.layers * per_layer + self.embedding_params + head + self.hidden

    @property
    def active_params(self) -> int:
        """Parameters one token uses (the MoE figure vendors quote as 'active')."""
        per_layer = self.active_layer_linear_params + 2 * self.hidden
        head = 0 if self.tied_embeddings else self.embedding_params
        return self.layers * per_layer + self.embedding_params + head + self.hidden

    def kv_bytes_per_token(self, kv_bytes_per_element: float) -> float:
        """Bytes of K and V cached per token across all layers."""
        return 2 * self.layers * self.kv_heads * self.head_dim * kv_bytes_per_element


class Quantization(BaseModel):
    """A precision scheme: how weights are stored and what precision the matmuls run in."""

    model_config = _Strict
    key: str
    name: str
    weight_bits: float = Field(gt=0, le=32, description="stored bits per weight, scales included")
    compute: Precision = Field(description="precision the matmuls run in where the hardware has it")
    weight_only: StrictBool = Field(description="activations stay 16-bit; weights are dequantized in the kernel")
    activation_bytes: float = Field(gt=0, le=4, description="bytes per activation element in HBM traffic")
    fallback: str | None = Field(None, description="scheme used where the device lacks `compute`")
    description: str
    source: str = Field(min_length=1)

    @property
    def weight_bytes(self) -> float:
        return self.weight_bits / 8


class ResolvedPrecision(BaseModel):
    """What a scheme becomes on a given device: the matmul precision it runs in, stored weight
    bytes, activation bytes, and a note when the device forced a fallback."""

    model_config = _Strict
    scheme: str
    compute: Precision
    weight_bytes: float
    activation_bytes: float
    note: str | None = None


def resolve_precision(quant: Quantization, gpu: GPU) -> ResolvedPrecision:
    """Run ``quant`` on ``gpu`` the way real engines do: natively where the device has a matmul
    at ``quant.compute``; a weight-only scheme always dequantizes to 16-bit; otherwise fall back
    (e.g. fp8 on an A100 runs as fp8 weight-only with bf16 matmuls, as vLLM's Marlin kernels do)."""
    sixteen: Precision = "bf16" if "bf16" in gpu.tflops else "fp16"
    if quant.weight_only:
        return ResolvedPrecision(scheme=quant.key, compute=sixteen, weight_bytes=quant.weight_bytes,
                                 activation_bytes=quant.activation_bytes)
    if quant.compute in gpu.tflops:
        return ResolvedPrecision(scheme=quant.key, compute=quant.compute, weight_bytes=quant.weight_bytes,
                                 activation_bytes=quant.activation_bytes)
    if quant.weight_bits >= 16:  # a 16-bit scheme on a device with the other 16-bit type
        note = f"{gpu.name} has no {quant.compute} matmul: {quant.key} runs in {sixteen} (same 2-byte weights)"
    else:
        note = (f"{gpu.name} has no {quant.compute} matmul: {quant.key} runs as {quant.compute} weight-only "
                f"({quant.weight_bits:g}-bit weights, {sixteen} matmuls)")
    return ResolvedPrecision(scheme=quant.key, compute=sixteen, weight_bytes=quant.weight_bytes,
                             activation_bytes=2.0, note=note)


# -- loading ---------------------------------------------------------------------------------------

T = TypeVar("T", bound=BaseModel)


def close_matches(name: str, known: Iterator[str] | list[str] | Mapping[str, Any], n: int = 3) -> str:
    """', did you mean ...' text for ``name`` against ``known`` (empty when nothing is close)."""
    close = difflib.get_close_matches(name.lower(), [k for k in known], n=n, cutoff=0.5)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


class _Lazy(Mapping[str, T], Generic[T]):
    """A read-only name -> entry mapping loaded and validated on first use."""

    def __init__(self, kind: str, file: str, model: type[T]):
        self._kind, self._file, self._model = kind, file, model
        self._data: dict[str, T] | None = None

    def _load(self) -> dict[str, T]:
        if self._data is None:
            text = resources.files("calibration").joinpath("data", self._file).read_text()
            try:
                raw = tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                raise CatalogError(f"calibration/data/{self._file}: not valid TOML ({e})") from None
            out: dict[str, T] = {}
            for key, body in raw.items():
                if not isinstance(body, dict):
                    raise CatalogError(f"calibration/data/{self._file}: {key} = {body!r}: every entry is a "
                                       f"table, e.g. [{key}] followed by its figures")
                if "alias_of" in body and "alias_of" in self._model.model_fields:
                    body = self._aliased(key, body, raw)
                try:
                    out[key] = self._model.model_validate({"key": key, **body})
                except ValidationError as e:
                    raise CatalogError(f"calibration/data/{self._file}: [{key}]: {_one_line(e)}") from None
            self._data = out
        return self._data

    def _aliased(self, key: str, body: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
        """An alias entry's figures: those of the entry it names, with its own name and source."""
        where = f"calibration/data/{self._file}: [{key}]"
        target = body["alias_of"]
        if not isinstance(raw.get(target), dict):
            raise CatalogError(f"{where}: alias_of = {target!r}: no such {self._kind} in this file"
                               f"{close_matches(str(target), raw)}")
        if "alias_of" in raw[target]:
            raise CatalogError(f"{where}: alias_of = {target!r} is itself an alias; name the entry it stands for "
                               f"({raw[target]['alias_of']!r})")
        extra = sorted(set(body) - {"alias_of", "name", "source"})
        if extra:
            raise CatalogError(f"{where}: {', '.join(extra)}: an alias takes every figure from [{target}]; give only "
                               "alias_of, name and source")
        missing = sorted({"name", "source"} - set(body))
        if missing:  # the target's would say the wrong release
            raise CatalogError(f"{where}: {', '.join(missing)}: required key is missing; an alias names its own "
                               "release and where it says it shares the architecture")
        return {**raw[target], **body}

    def __getitem__(self, name: str) -> T:
        data = self._load()
        if name not in data:
            raise CatalogError(f"unknown {self._kind} {name!r}{close_matches(name, data)}; known: "
                               f"{', '.join(sorted(data))}")
        return data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, name: object) -> bool:
        return name in self._load()


def _one_line(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["loc"] and err["loc"][-1] == "[key]":  # a bad mapping key, e.g. tflops = { fp6 = ... }
            parent = ".".join(str(x) for x in err["loc"][:-2])
            parts.append(f"{parent}: unknown key {err.get('input')!r}: {msg}")
        elif err["type"] == "missing":
            parts.append(f"{loc}: required key is missing")
        elif loc:
            shown = repr(err.get("input"))
            parts.append(f"{loc} = {shown if len(shown) <= 60 else shown[:57] + '...'}: {msg}")
        else:
            parts.append(msg)
    return "; ".join(parts)


GPUS: Mapping[str, GPU] = _Lazy("hardware", "gpus.toml", GPU)
MODELS: Mapping[str, ModelArch] = _Lazy("model", "models.toml", ModelArch)
QUANTIZATIONS: Mapping[str, Quantization] = _Lazy("quantization", "quantizations.toml", Quantization)


def same_architecture(model: str) -> tuple[str, ...]:
    """The catalog names that describe ``model``'s architecture: itself, then the model it is an
    alias of (profiles filed under either price it). A name the catalog does not hold (a
    config.json path) is only itself."""
    target = MODELS[model].alias_of if model in MODELS else None
    return (model,) if target is None else (model, target)


def model_from_hf_config(path: str | Path) -> ModelArch:
    """A :class:`ModelArch` from a Hugging Face ``config.json`` (Llama, Mistral, Qwen2, Mixtral
    style keys); CatalogError naming the file and the missing or bad key otherwise."""
    p = Path(path)
    try:
        cfg = json.loads(p.read_text())
    except FileNotFoundError:
        raise CatalogError(f"{p}: no such file") from None
    except (OSError, json.JSONDecodeError) as e:
        raise CatalogError(f"{p}: not a readable JSON config ({e})") from None
    if not isinstance(cfg, dict):
        raise CatalogError(f"{p}: a config.json must hold a JSON object")

    def need(key: str, *alts: str) -> Any:
        for k in (key, *alts):
            if k in cfg and cfg[k] is not None:
                return cfg[k]
        raise CatalogError(f"{p}: missing key {key!r} (a Hugging Face config.json of a decoder model has it)")

    hidden = need("hidden_size")
    heads = need("num_attention_heads")
    data = {
        "key": p.parent.name or p.stem,
        "name": str(cfg.get("_name_or_path") or p.parent.name or p.stem),
        "layers": need("num_hidden_layers"),
        "hidden": hidden,
        "heads": heads,
        "kv_heads": cfg.get("num_key_value_heads") or heads,
        "head_dim": cfg.get("head_dim") or (hidden // heads if isinstance(hidden, int) and isinstance(heads, int)
                                            and heads else 0),
        "intermediate": need("intermediate_size", "moe_intermediate_size"),
        "vocab": need("vocab_size"),
        "max_context": need("max_position_embeddings"),
        "tied_embeddings": bool(cfg.get("tie_word_embeddings", False)),
        "attention_bias": bool(cfg.get("attention_bias", cfg.get("model_type") == "qwen2")),
        "experts": cfg.get("num_local_experts") or cfg.get("num_experts") or 1,
        "experts_per_token": cfg.get("num_experts_per_tok") or 1,
        "source": f"{p} (Hugging Face config.json)",
    }
    try:
        return ModelArch.model_validate(data)
    except ValidationError as e:
        raise CatalogError(f"{p}: {_one_line(e)}") from None

