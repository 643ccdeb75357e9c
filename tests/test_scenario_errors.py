"""Bad scenarios through the real command line: exit code 2, one line on stderr, no traceback.

Each row of the table is a scenario file (YAML or TOML, written to ``tmp_path``) or a bad
command line, run as ``python -m sim.cli run FILE --no-write -q`` in a subprocess: the ground
truth for what a user sees (``typer.testing.CliRunner`` reports exit codes and stderr too, but
swallows tracebacks of unhandled exceptions into ``result.exception``). The line must name the
offending key, the value where there is one, and what is allowed (STYLE rule 7).

Rows marked ``xfail(strict=True)`` are simulator bugs: each must fail until the bug is fixed,
and then the mark must go.
"""

from __future__ import annotations

import copy
import json
import math
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

import sim

_DROP = object()  # sentinel: remove the key


def _base() -> dict[str, Any]:
    """A valid scenario (explicit profile so that validation needs no catalog arithmetic)."""
    return {
        "seed": 1,
        "profile": {"kind": "explicit", "fixed_s": 0.01, "per_token_s": 1e-5, "kv_capacity_tokens": 4096},
        "workload": {
            "arrival": {"rate_per_s": 10.0},
            "num_requests": 20,
            "classes": [{"name": "chat",
                         "prompt_tokens": {"dist": "fixed", "value": 100},
                         "output_tokens": {"dist": "fixed", "value": 10}}],
        },
    }


def _edit(data: dict[str, Any], **edits: Any) -> dict[str, Any]:
    """Apply ``a__b__0__c=value`` edits (``__`` separates keys, digits index lists)."""
    for dotted, value in edits.items():
        parts = [int(p) if p.isdigit() else p for p in dotted.split("__")]
        node = data
        for p in parts[:-1]:
            node = node[p] if isinstance(p, int) else node.setdefault(p, {})
        if value is _DROP:
            del node[parts[-1]]
        else:
            node[parts[-1]] = value
    return data


def bad(**edits: Any) -> dict[str, Any]:
    """The base scenario with ``edits`` applied."""
    return _edit(_base(), **edits)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return ("inf" if v > 0 else "-inf") if math.isinf(v) else ("nan" if math.isnan(v) else repr(v))
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")


def to_toml(data: dict[str, Any]) -> str:
    """A minimal TOML writer (no tomli_w here): one ``key = value`` line per top-level key,
    nested tables inline."""
    text = "".join(f"{json.dumps(k)} = {_toml_value(v)}\n" for k, v in data.items())
    assert tomllib.loads(text) == data, "TOML writer lost something"
    return text


@dataclass(frozen=True)
class Case:
    """One bad input. ``data`` is written as ``fmt``; ``raw`` is written verbatim instead."""

    fmt: str  # "yaml" | "toml" | file suffix for raw files
    data: dict[str, Any] | None = None
    raw: str | None = None
    args: tuple[str, ...] = ()
    key: str | None = None  # regex: the offending key
    value: str | None = None  # regex: the value given
    allowed: str | None = None  # regex: what is allowed
    missing_file: bool = False
    names_file: bool = True  # the line starts with the file's name (not when --set itself is wrong)
    extra: tuple[str, ...] = field(default_factory=tuple)  # further regexes the line must match


def case(id: str, c: Case, bug: str | None = None) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
    return pytest.param(c, id=id, marks=marks)


CASES = [
    case("unknown_top_level_key", Case(
        "yaml", bad(seeed=3), key=r"\bseeed: unknown key", allowed=r"did you mean 'seed'\?.*allowed keys: .*\bworkload\b")),
    case("unknown_nested_key", Case(
        "toml", bad(engine={"max_num_seq": 64}), key=r"\bengine\.max_num_seq: unknown key", allowed=r"allowed keys")),
    case("unknown_nested_key_lists_the_right_keys", Case(
        "yaml", bad(workload__classes__0__slo={"ttft": 0.5}),
        key=r"workload\.classes\[0\]\.slo\.ttft: unknown key",
        allowed=r"did you mean 'ttft_s'\?.*allowed keys in workload\.classes\[0\]\.slo: e2e_s, tpot_s, ttft_s$")),
    case("wrong_type_string_for_int", Case(
        "toml", bad(engine={"max_num_seqs": "lots"}), key=r"\bengine\.max_num_seqs\b", value=r"'lots'",
        allowed=r"valid integer")),
    case("negative_arrival_rate", Case(
        "yaml", bad(workload__arrival__rate_per_s=-5.0), key=r"\bworkload\.arrival\.rate_per_s\b", value=r"= -5\.0\b",
        allowed=r"greater than 0")),
    case("zero_max_num_seqs", Case(
        "toml", bad(engine={"max_num_seqs": 0}), key=r"\bengine\.max_num_seqs\b", value=r"= 0\b",
        allowed=r"greater than or equal to 1")),
    case("gpu_memory_fraction_above_1", Case(
        "yaml", bad(engine={"gpu_memory_fraction": 1.5}), key=r"\bengine\.gpu_memory_fraction\b", value=r"= 1\.5\b",
        allowed=r"less than or equal to 1")),
    case("unknown_engine_preset", Case(
        "yaml", bad(engine={"preset": "tensorrt-llm-0.71"}), key=r"\bengine\.preset\b", value=r"'tensorrt-llm-0\.71'",
        allowed=r"unknown engine preset \(did you mean 'tensorrt-llm-0\.17', 'tensorrt-llm-0\.14', "
                r"'tensorrt-llm-0\.14-triton'\?\); known: sglang-0\.4, tensorrt-llm-0\.14, tensorrt-llm-0\.14-triton, "
                r"tensorrt-llm-0\.17, vllm-0\.8$")),
    case("unknown_admission", Case(
        "toml", bad(engine={"admission": "no_evict"}), key=r"\bengine\.admission\b", value=r"'no_evict'",
        allowed=r"'recompute' or 'reserve'")),
    case("both_memory_fractions", Case(
        "yaml", bad(engine={"gpu_memory_fraction": 0.85, "kv_memory_fraction": 0.9}),
        key=r"\bengine\.gpu_memory_fraction\b.*\bkv_memory_fraction\b", value=r"= 0\.85\b.*= 0\.9\b",
        allowed=r"both given: give one")),
    case("both_memory_fractions_beside_a_preset", Case(
        "toml", bad(engine={"preset": "sglang-0.4", "gpu_memory_fraction": 0.85, "kv_memory_fraction": 0.9}),
        key=r"\bengine\.gpu_memory_fraction\b.*\bkv_memory_fraction\b", value=r"= 0\.85\b",
        allowed=r"both given: give one")),
    case("kv_memory_fraction_of_one", Case(
        "yaml", bad(engine={"kv_memory_fraction": 1.0}), key=r"\bengine\.kv_memory_fraction\b", value=r"= 1\.0\b",
        allowed=r"less than 1")),
    case("unknown_scheduler", Case(
        "toml", bad(engine={"scheduler": "fifo"}), key=r"\bengine\.scheduler\b", value=r"'fifo'",
        allowed=r"'continuous', 'prefill_first' or 'static'")),
    case("unknown_router_policy", Case(
        "yaml", bad(router={"policy": "random"}), key=r"\brouter\.policy\b", value=r"'random'",
        allowed=r"'round_robin', 'least_outstanding' or 'least_kv_load'")),
    case("unknown_model", Case(
        "yaml", bad(model="llama-9000"), key=r"\bmodel\b", value=r"'llama-9000'", allowed=r"known: .*\bllama-3\.1-8b\b")),
    case("unknown_hardware", Case(
        "toml", bad(hardware="tpu-v9"), key=r"\bhardware\b", value=r"'tpu-v9'", allowed=r"known: .*\bh100-sxm\b")),
    case("unknown_quantization", Case(
        "yaml", bad(quantization="int3"), key=r"\bquantization\b", value=r"'int3'", allowed=r"known: .*\bbf16\b")),
    case("unknown_profile_kind", Case(
        "toml", bad(profile={"kind": "measurd"}), key=r"\bprofile\.kind\b", value=r"'measurd'",
        allowed=r"'roofline', 'explicit', 'measured', 'auto'")),
    case("unknown_length_dist", Case(
        "toml", bad(workload__classes__0__prompt_tokens={"dist": "zipf", "value": 3}),
        key=r"\bworkload\.classes\[0\]\.prompt_tokens\.dist\b", value=r"'zipf'",
        allowed=r"'fixed', 'uniform', 'normal', 'lognormal', 'exponential', 'empirical', 'histogram', 'quantiles', 'trace'")),
    case("lognormal_p99_below_mean", Case(
        "yaml", bad(workload__classes__0__output_tokens={"dist": "lognormal", "mean": 200, "p99": 150}),
        key=r"\bworkload\.classes\[0\]\.output_tokens\b", value=r"p99 = 150(\.0)?\b.*mean = 200(\.0)?\b",
        allowed=r"p99 must exceed its mean")),
    case("lognormal_p99_equal_to_mean", Case(
        "toml", bad(workload__classes__0__output_tokens={"dist": "lognormal", "mean": 200.0, "p99": 200.0}),
        key=r"\bworkload\.classes\[0\]\.output_tokens\b", value=r"p99 = 200(\.0)?\b", allowed=r"p99 must exceed its mean")),
    case("lognormal_p99_too_far_above_mean", Case(
        "yaml", bad(workload__classes__0__output_tokens={"dist": "lognormal", "mean": 100, "p99": 2000}),
        key=r"\bworkload\.classes\[0\]\.output_tokens\b", value=r"\b2000\b", allowed=r"\bp99\b")),
    case("uniform_high_below_low", Case(
        "toml", bad(workload__classes__0__prompt_tokens={"dist": "uniform", "low": 100, "high": 50}),
        key=r"\bworkload\.classes\[0\]\.prompt_tokens\b", value=r"high = 50\b.*low = 100\b", allowed=r"high must be >= low")),
    case("both_num_requests_and_duration", Case(
        "yaml", bad(workload__duration_s=60.0), key=r"\bworkload\b",
        allowed=r"exactly one of num_requests or duration_s")),
    case("neither_num_requests_nor_duration", Case(
        "toml", bad(workload__num_requests=_DROP), key=r"\bworkload\b",
        allowed=r"exactly one of num_requests or duration_s")),
    case("model_does_not_fit", Case(
        "yaml", bad(profile={"kind": "roofline"}, engine={"gpu_memory_fraction": 0.15}),
        key=r"\bengine\.gpu_memory_fraction\b", value=r"= 0\.15\b", allowed=r"does not fit.*raise tp, quantize the weights.*gpu_memory_fraction",
        extra=(r"'llama-3\.1-8b'",))),
    case("prompt_longer_than_kv_cache", Case(
        "toml", bad(profile={"kind": "explicit", "fixed_s": 0.01, "kv_capacity_tokens": 256},
                    workload__classes__0__prompt_tokens={"dist": "fixed", "value": 1000}),
        key=r"\bworkload\.classes\[0\]\.prompt_tokens\b", value=r"\b1000 tokens\b",
        allowed=r"KV cache holds at most 256 tokens.*prompt_tokens\.max <= 256")),
    case("unbounded_prompt_longer_than_kv_cache", Case(
        "yaml", bad(profile={"kind": "explicit", "fixed_s": 0.01, "kv_capacity_tokens": 256},
                    workload__classes__0__prompt_tokens={"dist": "exponential", "mean": 50}),
        key=r"\bworkload\.classes\[0\]\.prompt_tokens\b", value=r"unbounded",
        allowed=r"prompt_tokens\.max <= 256")),
    case("batched_tokens_below_max_num_seqs", Case(
        "yaml", bad(engine={"max_num_seqs": 128, "max_num_batched_tokens": 64}),
        key=r"\bengine\.max_num_batched_tokens\b", value=r"= 64\b", allowed=r"must be >= max_num_seqs")),
    case("chunked_prefill_with_static", Case(
        "toml", bad(engine={"scheduler": "static", "chunked_prefill": True}),
        key=r"\bengine\.chunked_prefill\b", value=r"(?i)= true\b", allowed=r"needs scheduler 'continuous'",
        extra=(r"'static'",))),
    case("tp_does_not_divide_heads", Case(
        "yaml", bad(tp=3), key=r"\btp\b", value=r"= 3\b", allowed=r"must divide .*32 attention heads")),
    case("duplicate_class_names", Case(
        "toml", bad(workload__classes=[_base()["workload"]["classes"][0]] * 2),
        key=r"\bworkload\.classes\b", value=r"class name 'chat'", allowed=r"must be unique")),
    case("explicit_profile_takes_no_time", Case(
        "yaml", bad(profile={"kind": "explicit", "kv_capacity_tokens": 4096}),
        key=r"\bprofile\b.*\bfixed_s\b.*\bper_token_s\b", value=r"both 0", allowed=r"at least one must be > 0")),
    case("missing_workload", Case(
        "toml", bad(workload=_DROP), key=r"\bworkload\b", allowed=r"required key is missing")),
    case("empty_file", Case(
        "yaml", raw="", allowed=r"must be a mapping of keys, not NoneType")),
    case("top_level_list", Case(
        "yaml", raw="- seed: 1\n- model: llama-3.1-8b\n", allowed=r"must be a mapping of keys, not list")),
    case("invalid_yaml_syntax", Case(
        "yaml", raw="seed: 1\nworkload:\n  arrival: {rate_per_s: 10\n  num_requests: 3\n",
        allowed=r"not valid YAML at line 4\b")),
    case("invalid_toml_syntax", Case(
        "toml", raw='seed = 1\nmodel = "llama-3.1-8b\n', allowed=r"not valid TOML.*\bline 2\b")),
    case("nonexistent_file", Case("yaml", missing_file=True, allowed=r"no such scenario file")),
    case("wrong_suffix_json", Case(
        "json", raw="{}", allowed=r"must end in \.yaml, \.yml or \.toml, not '\.json'")),
    case("bad_set_syntax", Case(
        "yaml", bad(), args=("--set", "foo"), key=r"--set 'foo'", allowed=r"expected KEY=VALUE", names_file=False)),
    case("set_index_outside_list", Case(
        "toml", bad(), args=("--set", "workload.classes.3.name=x"), key=r"--set workload\.classes\.3\.name",
        value=r"'3' is not an index", allowed=r"a list of 1\b", names_file=False)),
    case("set_value_fails_validation", Case(
        "yaml", bad(), args=("--set", "engine.max_num_seqs=many"), key=r"\bengine\.max_num_seqs\b", value=r"'many'",
        allowed=r"valid integer")),
    # Non-finite numbers: a float field bounded only below lets infinity through.
    case("infinite_duration", Case(
        "yaml", bad(workload__num_requests=_DROP, workload__duration_s=math.inf),
        key=r"\bworkload\.duration_s\b", value=r"\binf\b", allowed=r"finite")),
    case("infinite_class_share", Case(
        "yaml", bad(workload__classes__0__share=math.inf),
        key=r"\bworkload\.classes\[0\]\.share\b", value=r"\binf\b", allowed=r"finite")),
    case("infinite_memory_override", Case(
        "toml", bad(profile={"kind": "roofline", "memory_gib": math.inf}),
        key=r"\bprofile\.memory_gib\b", value=r"\binf\b", allowed=r"finite")),
    case("unknown_key_with_newline", Case(
        "yaml", raw='"bad\\nkey": 1\n' + yaml.safe_dump(_base()), key=r"bad\\nkey", allowed=r"allowed keys")),
]


def _write(c: Case, tmp_path: Path) -> Path:
    path = tmp_path / f"scenario.{c.fmt}"
    if c.missing_file:
        return path
    if c.raw is not None:
        path.write_text(c.raw)
    elif c.fmt == "toml":
        path.write_text(to_toml(c.data))
    else:
        path.write_text(yaml.safe_dump(c.data, sort_keys=False))
    return path


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sim.cli.app", "run", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.mark.parametrize("c", CASES)
def test_bad_scenario_is_one_line_and_exit_2(c: Case, tmp_path: Path) -> None:
    path = _write(c, tmp_path)
    proc = run_cli(str(path), *c.args, "--no-write", "-q", cwd=tmp_path)
    everything = proc.stdout + proc.stderr
    assert "Traceback" not in everything, everything
    assert proc.returncode == 2, everything
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and proc.stderr.endswith("\n"), proc.stderr
    line = lines[0]
    assert line.startswith("capsim: error: "), line
    if c.names_file:
        assert line.startswith(f"capsim: error: {path}: "), line
    for pattern in (c.key, c.value, c.allowed, *c.extra):
        if pattern is not None:
            assert re.search(pattern, line), f"{pattern!r} not in {line!r}"


# -- the same messages from Python ------------------------------------------------------------

PY_CASES = [
    pytest.param(bad(engine={"max_num_seqs": 0}),
                 r"^engine\.max_num_seqs = 0: must be greater than or equal to 1$", id="zero_max_num_seqs"),
    pytest.param(bad(model="llama-9000"), r"^model = 'llama-9000': unknown model \(did you mean 'llama-[^)]*'\?\); known: .*llama-3\.1-8b",
                 id="unknown_model"),
    pytest.param(bad(tp=3), r"^tp = 3: must divide .* 32 attention heads and 8 KV heads$", id="tp_3"),
    pytest.param(bad(workload__classes__0__prompt_tokens={"dist": "uniform", "low": 100, "high": 50}),
                 r"^workload\.classes\[0\]\.prompt_tokens\.high = 50 is below low = 100: high must be >= low$",
                 id="uniform_high_below_low"),
    pytest.param(bad(seeed=3), r"^seeed: unknown key \(did you mean 'seed'\?\); allowed keys: ", id="unknown_key"),
]


@pytest.mark.parametrize("data, message", PY_CASES)
def test_load_scenario_raises_scenario_error_with_the_cli_text(data: dict[str, Any], message: str,
                                                              tmp_path: Path) -> None:
    with pytest.raises(sim.ScenarioError, match=message) as err:
        sim.load_scenario(copy.deepcopy(data))
    assert isinstance(err.value, ValueError)  # ScenarioError is a ValueError, for callers that catch those
    # The command line prints exactly that text after the file's name.
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = run_cli(str(path), "--no-write", "-q", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == f"capsim: error: {path}: {err.value}\n"


def test_load_scenario_from_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(to_toml(bad(engine={"gpu_memory_fraction": 1.5})))
    with pytest.raises(sim.ScenarioError, match=rf"^{re.escape(str(path))}: engine\.gpu_memory_fraction = 1\.5: "):
        sim.load_scenario(path)
    with pytest.raises(sim.ScenarioError, match=r"no such scenario file"):
        sim.load_scenario(tmp_path / "absent.yaml")


@pytest.mark.parametrize("overrides, match", [
    ({"engine": {"max_num_seqs": True}}, r"^engine\.max_num_seqs = True: must be a valid integer$"),
    ({"engine": {"chunked_prefill": "yes"}}, r"^engine\.chunked_prefill = 'yes': must be a valid boolean$"),
    ({"seed": 2.5}, r"^seed = 2\.5: must be a valid integer$"),
])
def test_no_silent_coercion_of_integers_and_booleans(overrides: dict, match: str) -> None:
    # Lax validation would have read `true` as 1 sequence and 'yes' as True: silently wrong numbers.
    from tests.helpers import _merge, scenario
    with pytest.raises(sim.ScenarioError, match=match):
        sim.load_scenario(_merge(scenario().to_dict(), overrides))
