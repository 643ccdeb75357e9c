"""``capsim catalog``: the tables, one entry with its sources, a model from a config.json, and the
one-line errors (exit 2). In-process through typer's ``CliRunner`` (stdout and stderr apart), plus
one real subprocess for what a shell user sees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


from calibration.catalog import GPUS, MODELS, QUANTIZATIONS
from tests.helpers import assert_one_line_error, run_app


_run = run_app
_one_line_error = assert_one_line_error


def test_catalog_lists_all_three_kinds():
    r = _run("catalog")
    assert r.exit_code == 0, r.output
    for name in (*GPUS, *MODELS, *QUANTIZATIONS):
        assert name in r.stdout, name
    for needle in ("hardware, per device", "models:", "quantizations:", "989", "6.88", "8.03", "12.88",
                   "131,072", "4.15625", "capsim catalog show NAME"):
        assert needle in r.stdout, needle


def test_kind_lists_one_catalog():
    hw = _run("catalog", "--kind", "hardware")
    assert hw.exit_code == 0 and "h100-sxm" in hw.stdout and "llama-3.1-8b" not in hw.stdout
    models = _run("catalog", "-k", "models")
    assert models.exit_code == 0 and "mixtral-8x7b" in models.stdout and "b200" not in models.stdout
    quant = _run("catalog", "--kind", "quantizations")
    assert quant.exit_code == 0 and "int4-awq" in quant.stdout and "qwen2.5-7b" not in quant.stdout
    # fp8: the five devices without fp8 matmuls are the ones named as falling back.
    fp8_row = next(line for line in quant.stdout.splitlines() if line.lstrip("│ ").startswith("fp8 "))
    assert "t4, a10g, a100-40gb, a100-80gb, cpu-server" in fp8_row
    assert _run("catalog", "--kind", "gpus").exit_code == 2


def test_show_hardware_prints_every_figure_with_its_source():
    r = _run("catalog", "show", "h100-sxm")
    assert r.exit_code == 0, r.output
    flat = " ".join(r.stdout.split())
    for needle in ("memory_gib", "79.65 GiB", "81559 MiB", "tflops.fp8", "1,978.9 TFLOPS dense",
                   "450 GB/s per direction", "700 W", "$6.88 per device-hour", "p5.48xlarge",
                   "default source: NVIDIA H100 Tensor Core GPU datasheet", "roofline ridge) = 295",
                   "nvfp4: NVIDIA H100 SXM5 80GB has no fp4 matmul"):
        assert needle in flat, needle


def test_show_model_prints_derived_figures():
    r = _run("catalog", "show", "llama-3.1-8b")
    assert r.exit_code == 0, r.output
    flat = " ".join(r.stdout.split())
    for needle in ("8,030,261,248 (8.03 B)", "16.06 GB", "KV bytes/token (bf16) │ 131,072",
                   "KV bytes/token (fp8) │ 65,536", "source: meta-llama/Llama-3.1-8B config.json"):
        assert needle in flat, needle
    moe = " ".join(_run("catalog", "show", "mixtral-8x7b").stdout.split())
    assert "46,702,792,704" in moe and "active params" in moe and "12,879,925,248" in moe


def test_the_new_entries_list_and_show_with_their_sources():
    """GH200 (the GPU TensorRT-LLM measured), Mixtral-8x22B, and Llama-3.3-70B listed as an alias of
    Llama-3.1-70B's architecture, whose shipped profiles it uses."""
    listing = _run("catalog")
    assert listing.exit_code == 0, listing.output
    flat = " ".join(listing.stdout.split())
    for needle in ("gh200 │ 95.6 │ 4 │ 989 │ 1,979", "mixtral-8x22b │ 140.63 │ 39.16 │ 56",
                   "llama-3.3-70b = llama-3.1-70b │ 70.55", "'name = other': an alias"):
        assert needle in flat, needle
    gh = " ".join(_run("catalog", "show", "gh200").stdout.split())
    for needle in ("95.58 GiB", "97871 MiB", "4 TB/s", "GH200 96GB HBM3 (480GB LPDDR5X)", "$2.29 per device-hour",
                   "gpu_1x_gh200"):
        assert needle in gh, needle
    alias = _run("catalog", "show", "llama-3.3-70b")
    assert alias.exit_code == 0, alias.output
    flat = " ".join(alias.stdout.split())
    assert "an alias of llama-3.1-70b" in flat and "70,553,706,496" in flat and "Llama-3.3-70B-Instruct" in flat
    profiles = _run("catalog", "profiles", "--model", "llama-3.3-70b", "--hardware", "h100-sxm")
    assert profiles.exit_code == 0, profiles.output
    assert "llama-3.1-70b" in profiles.stdout and "fp16" in profiles.stdout


def test_show_quantization_says_where_it_falls_back():
    r = _run("catalog", "show", "fp8")
    assert r.exit_code == 0, r.output
    flat = " ".join(r.stdout.split())
    assert "NVIDIA A100 SXM4 80GB has no fp8 matmul" in flat and "fallback │ fp8-weight-only" in flat
    assert "h100-sxm │ fp8 │ 1 │ 1 │ native" in flat


def test_show_a_hugging_face_config(tmp_path: Path):
    folder = tmp_path / "Mixtral-8x7B-v0.1"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
        "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 32000, "max_position_embeddings": 32768,
        "num_local_experts": 8, "num_experts_per_tok": 2}))
    for target in (folder / "config.json", folder):  # the file, or the folder holding it
        r = _run("catalog", "show", target)
        assert r.exit_code == 0, r.output
        flat = " ".join(r.stdout.split())
        assert "Mixtral-8x7B-v0.1" in flat and "46,702,792,704" in flat and "12,879,925,248" in flat


def test_unknown_name_and_bad_config_are_one_line_exit_2(tmp_path: Path):
    _one_line_error(_run("catalog", "show", "h100"), "unknown hardware, model or quantization 'h100'",
                    "did you mean", "'h100-sxm'")
    _one_line_error(_run("catalog", "show", "zzzz"), "'zzzz'; 'capsim catalog' lists them")
    broken = tmp_path / "config.json"
    broken.write_text(json.dumps({"hidden_size": 4096, "num_attention_heads": 32}))
    _one_line_error(_run("catalog", "show", broken), str(broken), "missing key 'num_hidden_layers'")
    _one_line_error(_run("catalog", "show", tmp_path / "nowhere.json"), "no such file")


def test_help_teaches_with_examples():
    top = _run("--help")
    assert top.exit_code == 0 and "catalog" in top.output
    for args in (("catalog", "--help"), ("catalog", "show", "--help")):
        h = _run(*args)
        assert h.exit_code == 0 and "Examples:" in h.output and "capsim catalog show" in h.output


def test_subprocess_error_is_one_line_on_stderr():
    p = subprocess.run([sys.executable, "-m", "sim.cli.app", "catalog", "show", "llama-3-8b"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert p.stdout == "" and len(p.stderr.strip().splitlines()) == 1
    assert p.stderr.startswith("capsim: error: unknown hardware, model or quantization 'llama-3-8b' (did you mean")
