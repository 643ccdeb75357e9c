"""The hardware, model and quantization catalog: every entry validates, the analytic figures derived
from it match hand computation and the published model sizes, bad entries fail with one line that
names the file, the entry and the rule, and precisions resolve per device as real engines run them.

Bad entries are written into a temporary copy of ``calibration/data`` and loaded through the same
lazy loader the catalog uses (its package-data lookup pointed at the copy).
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError

import calibration.catalog as catalog
from calibration.catalog import (GPU, GPUS, KV_CACHE_DTYPES, MODELS, QUANTIZATIONS, CatalogError, ModelArch,
                                 Quantization, model_from_hf_config, resolve_precision, same_architecture)
from calibration.measured import find_profile, shipped_profile_dir
from calibration.profile import BatchShape, ReplicaSpec
from calibration.spec import AutoProfileSpec, build_profile

DATA = Path(str(resources.files("calibration").joinpath("data")))

REQUIRED_HARDWARE = ("a10g", "l4", "l40s", "a100-40gb", "a100-80gb", "h100-sxm", "h100-pcie", "h200", "gh200", "b200",
                     "mi300x", "cpu-server")
# Model-card parameter counts (Meta, Qwen and Mistral model cards).
PUBLISHED_PARAMS = {
    "llama-2-7b": 6.74e9, "llama-2-70b": 68.98e9, "llama-3.1-8b": 8.03e9, "llama-3.1-70b": 70.6e9, "llama-3.1-405b": 405.9e9, "llama-3.2-1b": 1.24e9,
    "llama-3.2-3b": 3.21e9, "qwen2.5-7b": 7.62e9, "qwen2.5-72b": 72.7e9, "mistral-7b": 7.25e9,
    "mixtral-8x7b": 46.7e9, "mixtral-8x22b": 141e9, "llama-3.3-70b": 70.6e9,
}
REQUIRED_QUANTIZATIONS = ("bf16", "fp16", "fp8", "fp8-weight-only", "int8", "int4-awq")


# -- every entry validates -------------------------------------------------------------------------

def test_every_entry_of_every_kind_loads_and_validates():
    assert set(REQUIRED_HARDWARE) <= set(GPUS)
    assert set(PUBLISHED_PARAMS) <= set(MODELS)
    assert set(REQUIRED_QUANTIZATIONS) <= set(QUANTIZATIONS)
    for key, g in GPUS.items():
        assert g.key == key and isinstance(g, GPU)
        for figure in ("memory_gib", "hbm_tb_s", "tflops", "interconnect_gb_s", "tdp_w", "idle_w", "price_usd_per_hour"):
            assert g.source_of(figure).strip(), (key, figure)
    for key, m in MODELS.items():
        assert m.key == key and isinstance(m, ModelArch) and "config.json" in m.source
    for key, q in QUANTIZATIONS.items():
        assert q.key == key and isinstance(q, Quantization)
    names = [*GPUS, *MODELS, *QUANTIZATIONS]
    assert len(names) == len(set(names)), "a name must mean one entry across the three catalogs"


def test_hardware_figures_are_dense_and_consistent():
    for key, g in GPUS.items():
        # 8-bit at most twice the 16-bit rate (int8 up to 4x on parts whose 16-bit rate is halved):
        # the loader enforces it; restated here so that a loosened rule shows up in review.
        assert g.tflops.get("fp8", 0) <= 2.04 * g.bf16_tflops, key
        assert g.tflops.get("int8", 0) <= 4 * g.bf16_tflops, key
        assert (g.kind == "cpu") == (g.interconnect_gb_s == 0), key
    # Spot checks of the datasheets' dense columns (sparse figures halved).
    assert GPUS["h100-sxm"].tflops["bf16"] == 989.4 and GPUS["h100-sxm"].tflops["fp8"] == 1978.9
    assert GPUS["b200"].tflops["fp4"] == 9000.0 and GPUS["b200"].tflops["bf16"] == 2250.0
    assert GPUS["mi300x"].tflops["fp8"] == 2614.9
    assert GPUS["a100-80gb"].memory_bytes == 81920 * 2**20   # nvidia-smi's 81920 MiB
    assert "fp8" not in GPUS["a100-40gb"].tflops and "fp4" not in GPUS["h200"].tflops
    # GH200 as TensorRT-LLM measured it: the 96 GB HBM3 GPU (nvidia-smi 97871 MiB) at 4 TB/s, GH100 compute.
    gh = GPUS["gh200"]
    assert gh.memory_bytes == pytest.approx(97871 * 2**20, rel=1e-4) and gh.hbm_tb_s == 4.0
    assert gh.tflops == GPUS["h100-sxm"].tflops
    cpu = GPUS["cpu-server"]
    assert cpu.kind == "cpu"
    assert cpu.tflops["fp32"] == pytest.approx(32 * 3.25e9 * 32 / 1e12)       # cores x clock x FLOP/clk
    assert cpu.hbm_tb_s == pytest.approx(12 * 4800e6 * 8 / 1e12)              # channels x MT/s x 8 B


# -- analytic values ---------------------------------------------------------------------------------

def test_llama_3_1_8b_parameters_weights_and_kv_by_hand():
    m = MODELS["llama-3.1-8b"]
    attention = 4096 * 4096 + 2 * 4096 * 8 * 128 + 4096 * 4096          # q, k and v, o
    mlp = 3 * 4096 * 14336                                               # gate, up, down
    per_layer = attention + mlp + 2 * 4096                               # + two RMSNorms
    total = 32 * per_layer + 2 * 128256 * 4096 + 4096                    # + embeddings, LM head, final norm
    assert m.params == total == 8_030_261_248
    assert m.params == pytest.approx(8.03e9, rel=0.005)
    assert m.params * 2 / 1e9 == pytest.approx(16.06, abs=0.005)        # bf16 weights, GB
    assert m.kv_bytes_per_token(KV_CACHE_DTYPES["bf16"]) == 2 * 32 * 8 * 128 * 2 == 131_072
    assert m.kv_bytes_per_token(KV_CACHE_DTYPES["fp8"]) == 65_536
    assert MODELS["llama-3.1-70b"].kv_bytes_per_token(2) == 2 * 80 * 8 * 128 * 2 == 327_680


@pytest.mark.parametrize("key", sorted(PUBLISHED_PARAMS))
def test_parameter_count_matches_the_published_size(key: str):
    assert MODELS[key].params == pytest.approx(PUBLISHED_PARAMS[key], rel=0.015)


def test_mixtral_total_and_active_parameters():
    m = MODELS["mixtral-8x7b"]
    assert m.is_moe and (m.experts, m.experts_per_token) == (8, 2)
    assert m.params == pytest.approx(46.7e9, rel=0.015)
    assert m.active_params == pytest.approx(12.9e9, rel=0.015)
    # Total minus active is exactly the six idle experts of every layer.
    assert m.params - m.active_params == 32 * 6 * 3 * 4096 * 14336
    dense = MODELS["mistral-7b"]
    assert dense.params == dense.active_params and not dense.is_moe
    big = MODELS["mixtral-8x22b"]  # model card: 141B in total, 39B active
    assert (big.experts, big.experts_per_token, big.layers, big.head_dim * big.heads) == (8, 2, 56, big.hidden)
    assert big.active_params == pytest.approx(39e9, rel=0.015)
    assert big.params - big.active_params == 56 * 6 * 3 * 6144 * 16384


def test_an_alias_is_its_targets_architecture_under_its_own_name():
    """llama-3.3-70b is Llama-3.1-70B's architecture with other weights: every figure the same, its
    own name and source, and the profiles of the model it names found for it."""
    alias, target = MODELS["llama-3.3-70b"], MODELS["llama-3.1-70b"]
    shapes = {"key", "name", "source", "alias_of"}
    assert alias.model_dump(exclude=shapes) == target.model_dump(exclude=shapes)
    assert (alias.key, alias.alias_of, target.alias_of) == ("llama-3.3-70b", "llama-3.1-70b", None)
    assert alias.name == "Llama-3.3-70B-Instruct" and "Llama-3.3" in alias.source
    assert same_architecture("llama-3.3-70b") == ("llama-3.3-70b", "llama-3.1-70b")
    assert same_architecture("llama-3.1-70b") == ("llama-3.1-70b",)
    assert same_architecture("./config.json") == ("./config.json",)
    hit = find_profile("llama-3.3-70b", "fp16", "h100-sxm", 4, [shipped_profile_dir()])
    assert hit is not None and hit[1].model == "llama-3.1-70b"
    # Priced as its target is, by the same (measured) profile.
    new, old = (build_profile(AutoProfileSpec(kind="auto"), model=m, hardware="h100-sxm", quantization="fp16", tp=4)
                for m in ("llama-3.3-70b", "llama-3.1-70b"))
    batch = BatchShape(np.array([300]), np.array([1000]), np.full(24, 2500, np.int64))
    assert new.provenance == old.provenance and new.step(batch) == old.step(batch)
    assert new.kv_capacity_tokens(ReplicaSpec(4, 0.9, 8192)) == old.kv_capacity_tokens(ReplicaSpec(4, 0.9, 8192))


def test_tied_embeddings_and_attention_biases():
    assert MODELS["llama-3.2-1b"].tied_embeddings and MODELS["llama-3.2-3b"].tied_embeddings
    assert not MODELS["qwen2.5-7b"].tied_embeddings and not MODELS["llama-3.1-8b"].tied_embeddings
    assert MODELS["qwen2.5-7b"].attention_bias and MODELS["qwen2.5-72b"].attention_bias
    q = MODELS["qwen2.5-7b"]
    assert q.attention_params_per_layer - ModelArch.model_validate(
        {**q.model_dump(), "attention_bias": False}).attention_params_per_layer == (28 + 2 * 4) * 128


def test_quantization_weight_bits_arithmetic():
    assert QUANTIZATIONS["int4-awq"].weight_bits == 4 + 16 / 128 + 4 / 128      # int4 + fp16 scale + int4 zero
    assert QUANTIZATIONS["nvfp4"].weight_bits == 4 + 8 / 16                     # fp4 + fp8 scale per 16
    assert QUANTIZATIONS["fp8"].weight_bytes == QUANTIZATIONS["int8"].weight_bytes == 1.0
    for key, q in QUANTIZATIONS.items():
        if q.fallback is not None:  # names a scheme that stores the weights at the same width
            assert q.fallback in QUANTIZATIONS, key
            assert QUANTIZATIONS[q.fallback].weight_bits == q.weight_bits, key


# -- bad entries: one clear line -------------------------------------------------------------------

GOOD_GPU = """
[bad-gpu]
name = "Bad GPU"
vendor = "Nobody"
memory_gib = 80.0
hbm_tb_s = 3.0
tflops = { bf16 = 1000.0, fp8 = 2000.0 }
interconnect_gb_s = 400.0
tdp_w = 700
idle_w = 70
price_usd_per_hour = 5.0
sources.default = "test entry"
"""
GOOD_MODEL = """
[bad-model]
name = "Bad"
layers = 4
hidden = 512
heads = 8
kv_heads = 2
head_dim = 64
intermediate = 1024
vocab = 1000
max_context = 4096
experts = 1
experts_per_token = 1
source = "test entry"
"""
GOOD_ALIAS = """
[bad-alias]
alias_of = "llama-3.1-70b"
name = "Bad alias"
source = "test alias"
"""
GOOD_QUANT = """
[bad-quant]
name = "Bad"
weight_bits = 4
compute = "bf16"
weight_only = true
activation_bytes = 2
description = "test entry"
source = "test entry"
"""
_LOADERS = {"gpus.toml": ("hardware", GPU), "models.toml": ("model", ModelArch),
            "quantizations.toml": ("quantization", Quantization)}


def _load_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: str, extra: str,
               first: str = "") -> catalog._Lazy:
    """A loader over a copy of the data folder with ``extra`` appended to ``file`` (and ``first``
    put before its first table, where a bare ``key = value`` is a top-level entry)."""
    shutil.copytree(DATA, tmp_path / "data")
    target = tmp_path / "data" / file
    target.write_text(first + target.read_text() + extra)
    monkeypatch.setattr(catalog, "resources", SimpleNamespace(files=lambda package: tmp_path))
    kind, model = _LOADERS[file]
    return catalog._Lazy(kind, file, model)


def _one_line_error(lazy: catalog._Lazy, pattern: str) -> str:
    with pytest.raises(CatalogError, match=pattern) as e:
        len(lazy)
    text = str(e.value)
    assert "\n" not in text
    return text


def test_the_copied_data_loads_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    lazy = _load_with(tmp_path, monkeypatch, "gpus.toml", GOOD_GPU)
    assert lazy["bad-gpu"].tflops["fp8"] == 2000.0 and len(lazy) == len(GPUS) + 1


@pytest.mark.parametrize(("file", "entry", "old", "new", "pattern"), [
    ("gpus.toml", GOOD_GPU, 'sources.default = "test entry"', 'sources.tflops = "datasheet"',
     r"gpus\.toml: \[bad-gpu\]: no source for memory_gib, hbm_tb_s, interconnect_gb_s, tdp_w, "
     r"idle_w, price_usd_per_hour: give sources\.<figure> or sources\.default"),
    ("gpus.toml", GOOD_GPU, 'sources.default = "test entry"', "",
     r"gpus\.toml: \[bad-gpu\]: sources: required key is missing"),
    ("gpus.toml", GOOD_GPU, 'sources.default = "test entry"', 'sources.default = " "',
     r"\[bad-gpu\]: sources\.default is empty"),
    ("gpus.toml", GOOD_GPU, "idle_w = 70", "idle_w = 700",
     r"\[bad-gpu\]: idle_w = 700 is not below tdp_w = 700: a device idles below its thermal design power"),
    ("gpus.toml", GOOD_GPU, "hbm_tb_s = 3.0", "hbm_tb_s = -3.0",
     r"\[bad-gpu\]: hbm_tb_s = -3\.0: Input should be greater than 0"),
    ("gpus.toml", GOOD_GPU, "fp8 = 2000.0", "fp8 = 4000.0",
     r"\[bad-gpu\]: tflops\.fp8 = 4000 is 4\.0x the 16-bit rate \(1000\).*looks like a 2:4-sparse datasheet figure"),
    ("gpus.toml", GOOD_GPU, "bf16 = 1000.0, fp8 = 2000.0", "bf16 = 90000.0",
     r"\[bad-gpu\]: tflops\.bf16 = 90000\.0: must be in \(0, 40000\]"),
    ("gpus.toml", GOOD_GPU, "fp8 = 2000.0", "fp6 = 2000.0",
     r"\[bad-gpu\]: tflops: unknown key 'fp6': Input should be 'fp32', 'bf16'"),
    ("gpus.toml", GOOD_GPU, 'sources.default = "test entry"', 'sources.default = "x"\nsources.hbm = "y"',
     r"\[bad-gpu\]: sources names hbm, which are not figures of this entry"),
    ("gpus.toml", GOOD_GPU, "tflops = { bf16 = 1000.0, fp8 = 2000.0 }", "tflops = { fp8 = 2000.0 }",
     r"tflops needs bf16 or fp16"),
    ("models.toml", GOOD_MODEL, "kv_heads = 2", "kv_heads = 3",
     r"models\.toml: \[bad-model\]: heads = 8 is not a multiple of kv_heads = 3"),
    ("models.toml", GOOD_MODEL, "experts = 1\nexperts_per_token = 1", "experts = 8\nexperts_per_token = 9",
     r"\[bad-model\]: experts_per_token = 9 exceeds experts = 8"),
    ("models.toml", GOOD_MODEL, "vocab = 1000\n", "",
     r"\[bad-model\]: vocab: required key is missing"),
    ("models.toml", GOOD_MODEL, 'source = "test entry"', 'source = "test entry"\nhidden_size = 512',
     r"\[bad-model\]: hidden_size = 512: Extra inputs are not permitted"),
    ("models.toml", GOOD_ALIAS, 'alias_of = "llama-3.1-70b"', 'alias_of = "llama-3.1-7b"',
     r"models\.toml: \[bad-alias\]: alias_of = 'llama-3\.1-7b': no such model in this file \(did you mean "),
    ("models.toml", GOOD_ALIAS, 'alias_of = "llama-3.1-70b"', 'alias_of = "llama-3.3-70b"',
     r"\[bad-alias\]: alias_of = 'llama-3\.3-70b' is itself an alias; name the entry it stands for "
     r"\('llama-3\.1-70b'\)"),
    ("models.toml", GOOD_ALIAS, 'source = "test alias"', 'source = "test alias"\nlayers = 81',
     r"\[bad-alias\]: layers: an alias takes every figure from \[llama-3\.1-70b\]; give only alias_of, name and "
     r"source"),
    ("models.toml", GOOD_ALIAS, 'source = "test alias"', "",
     r"\[bad-alias\]: source: required key is missing; an alias names its own release"),
    ("quantizations.toml", GOOD_QUANT, 'compute = "bf16"', 'compute = "fp6"',
     r"quantizations\.toml: \[bad-quant\]: compute = 'fp6': Input should be 'fp32'"),
    ("quantizations.toml", GOOD_QUANT, "weight_bits = 4", "weight_bits = 0",
     r"\[bad-quant\]: weight_bits = 0: Input should be greater than 0"),
])
def test_a_bad_entry_is_one_line_naming_file_entry_and_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             file: str, entry: str, old: str, new: str, pattern: str):
    assert old in entry
    _one_line_error(_load_with(tmp_path, monkeypatch, file, entry.replace(old, new)), pattern)


def test_broken_toml_and_a_bare_value_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _one_line_error(_load_with(tmp_path, monkeypatch, "gpus.toml", "\n[oops\n"), r"gpus\.toml: not valid TOML")
    shutil.rmtree(tmp_path / "data")
    _one_line_error(_load_with(tmp_path, monkeypatch, "models.toml", "", first="stray = 3\n"),
                    r"models\.toml: stray = 3: every entry is a table")


def test_the_sparse_rule_also_guards_direct_construction():
    good = GPUS["h100-sxm"].model_dump()
    with pytest.raises(ValidationError, match=r"tflops\.fp8 = 3957\.8 is 4\.0x the 16-bit rate"):
        GPU.model_validate({**good, "tflops": {"bf16": 989.4, "fp8": 3957.8}})
    # int8 may be 4x a halved 16-bit rate (GeForce-class parts), not more.
    GPU.model_validate({**good, "tflops": {"bf16": 70.0, "int8": 280.0}})
    with pytest.raises(ValidationError, match=r"tflops\.int8 = 560 is 8\.0x"):
        GPU.model_validate({**good, "tflops": {"bf16": 70.0, "int8": 560.0}})


def test_unknown_names_list_close_matches():
    with pytest.raises(CatalogError, match=r"unknown hardware 'h100' \(did you mean .*'h100-sxm'.*\); known: a100-40gb, "):
        GPUS["h100"]
    with pytest.raises(CatalogError, match=r"unknown model 'llama-3.1-7b' \(did you mean 'llama-3.1-70b'"):
        MODELS["llama-3.1-7b"]
    with pytest.raises(CatalogError, match=r"unknown quantization 'int4' \(did you mean .*'int4-awq'"):
        QUANTIZATIONS["int4"]
    assert "h100" not in GPUS and "h100-sxm" in GPUS


# -- precision per device ------------------------------------------------------------------------

def test_fp8_is_native_on_hopper_and_falls_back_to_weight_only_on_ampere():
    fp8 = QUANTIZATIONS["fp8"]
    on_h100 = resolve_precision(fp8, GPUS["h100-sxm"])
    assert (on_h100.compute, on_h100.weight_bytes, on_h100.activation_bytes, on_h100.note) == ("fp8", 1.0, 1.0, None)
    on_a100 = resolve_precision(fp8, GPUS["a100-80gb"])
    assert (on_a100.compute, on_a100.weight_bytes, on_a100.activation_bytes) == ("bf16", 1.0, 2.0)
    assert on_a100.note is not None and "A100 SXM4 80GB" in on_a100.note and "weight-only" in on_a100.note
    for key in ("l4", "l40s", "h100-pcie", "h200", "b200", "mi300x"):
        assert resolve_precision(fp8, GPUS[key]).compute == "fp8", key


def test_int4_weight_only_always_computes_in_16_bit():
    int4 = QUANTIZATIONS["int4-awq"]
    for key, g in GPUS.items():
        r = resolve_precision(int4, g)
        assert r.note is None and r.weight_bytes == pytest.approx(4.15625 / 8) and r.activation_bytes == 2.0
        assert r.compute == ("bf16" if "bf16" in g.tflops else "fp16"), key
    assert resolve_precision(int4, GPUS["t4"]).compute == "fp16"          # Turing: no bf16
    volta = GPU.model_validate({**GPUS["t4"].model_dump(), "key": "v100", "name": "V100",
                                "tflops": {"fp16": 125.0}})
    assert resolve_precision(int4, volta).compute == "fp16"


def test_int8_runs_natively_where_the_device_has_int8_matmuls():
    int8 = QUANTIZATIONS["int8"]
    for key in ("h100-sxm", "a100-40gb", "a10g", "t4", "cpu-server"):
        r = resolve_precision(int8, GPUS[key])
        assert (r.compute, r.weight_bytes, r.activation_bytes, r.note) == ("int8", 1.0, 1.0, None), key
    no_int8 = GPU.model_validate({**GPUS["a100-80gb"].model_dump(), "tflops": {"bf16": 312.0}})
    r = resolve_precision(int8, no_int8)
    assert r.compute == "bf16" and r.activation_bytes == 2.0 and "no int8 matmul" in (r.note or "")


def test_sixteen_bit_and_fp4_fallbacks():
    bf16_on_t4 = resolve_precision(QUANTIZATIONS["bf16"], GPUS["t4"])
    assert bf16_on_t4.compute == "fp16" and bf16_on_t4.weight_bytes == 2.0
    assert bf16_on_t4.note == "NVIDIA T4 16GB has no bf16 matmul: bf16 runs in fp16 (same 2-byte weights)"
    nvfp4 = QUANTIZATIONS["nvfp4"]
    assert resolve_precision(nvfp4, GPUS["b200"]).compute == "fp4"
    on_h200 = resolve_precision(nvfp4, GPUS["h200"])
    assert on_h200.compute == "bf16" and on_h200.weight_bytes == 4.5 / 8 and "4.5-bit weights" in (on_h200.note or "")


# -- models from a Hugging Face config.json --------------------------------------------------------

LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "_name_or_path": "meta-llama/Llama-3.1-8B",
    "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072,
    "tie_word_embeddings": False, "rope_theta": 500000.0, "torch_dtype": "bfloat16",
}
MIXTRAL_CONFIG = {
    "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 4096,
    "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "vocab_size": 32000, "max_position_embeddings": 32768, "num_local_experts": 8, "num_experts_per_tok": 2,
    "tie_word_embeddings": False,
}


def _write_config(folder: Path, cfg: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps(cfg))
    return path


def test_llama_style_config(tmp_path: Path):
    m = model_from_hf_config(_write_config(tmp_path / "Llama-3.1-8B", LLAMA_CONFIG))
    assert (m.key, m.name) == ("Llama-3.1-8B", "meta-llama/Llama-3.1-8B")
    assert (m.layers, m.hidden, m.heads, m.kv_heads, m.head_dim, m.intermediate, m.vocab, m.max_context) == (
        32, 4096, 32, 8, 128, 14336, 128256, 131072)
    assert not m.tied_embeddings and not m.attention_bias and not m.is_moe
    assert m.params == MODELS["llama-3.1-8b"].params
    assert "config.json" in m.source


def test_mixtral_style_config(tmp_path: Path):
    m = model_from_hf_config(_write_config(tmp_path / "mixtral", MIXTRAL_CONFIG))
    assert (m.experts, m.experts_per_token, m.head_dim) == (8, 2, 128)
    assert m.params == MODELS["mixtral-8x7b"].params and m.active_params == MODELS["mixtral-8x7b"].active_params


def test_qwen2_config_has_biases_and_an_explicit_head_dim_wins(tmp_path: Path):
    qwen = {**LLAMA_CONFIG, "model_type": "qwen2", "head_dim": 64}
    m = model_from_hf_config(_write_config(tmp_path / "qwen", qwen))
    assert m.attention_bias and m.head_dim == 64


def test_a_config_missing_a_key_is_one_line_naming_key_and_file(tmp_path: Path):
    cfg = {k: v for k, v in LLAMA_CONFIG.items() if k != "num_hidden_layers"}
    path = _write_config(tmp_path / "broken", cfg)
    with pytest.raises(CatalogError, match=r"missing key 'num_hidden_layers'") as e:
        model_from_hf_config(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    bad_heads = _write_config(tmp_path / "heads", {**LLAMA_CONFIG, "num_key_value_heads": 5})
    with pytest.raises(CatalogError, match=r"heads = 32 is not a multiple of kv_heads = 5"):
        model_from_hf_config(bad_heads)
    with pytest.raises(CatalogError, match=r"no such file"):
        model_from_hf_config(tmp_path / "absent" / "config.json")
    not_json = tmp_path / "x.json"
    not_json.write_text("{")
    with pytest.raises(CatalogError, match=r"not a readable JSON config"):
        model_from_hf_config(not_json)
