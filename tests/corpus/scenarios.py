"""Bad scenario files and keys outside ``workload:`` (that section's cases are in ``workloads``):
file formats, the top level, engine, router, measurement and profile. Each runs as
``capsim run s.yaml --no-write -q``."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from tests.corpus import Accepted, BadInput

_BASE: dict[str, Any] = {
    "seed": 1,
    "profile": {"kind": "explicit", "fixed_s": 0.01, "per_token_s": 1e-5, "kv_capacity_tokens": 4096},
    "workload": {"arrival": {"rate_per_s": 10.0}, "num_requests": 20,
                 "classes": [{"name": "chat", "prompt_tokens": {"dist": "fixed", "value": 100},
                              "output_tokens": {"dist": "fixed", "value": 10}}]},
}
_DROP = object()


def _yaml(**edits: Any) -> str:
    """The base scenario with ``a__b=value`` edits (``__`` separates keys) as YAML text."""
    data = copy.deepcopy(_BASE)
    for dotted, value in edits.items():
        *path, last = dotted.split("__")
        node = data
        for p in path:
            node = node.setdefault(p, {})
        if value is _DROP:
            node.pop(last, None)
        else:
            node[last] = value
    return yaml.safe_dump(data, sort_keys=False)


def _run(id: str, expect: str, text: str | bytes, name: str = "s.yaml", *args: str) -> BadInput:
    return BadInput(f"scenario-{id}", ("run", name, "--no-write", "-q", *args), expect, {name: text})


def _key(id: str, expect: str, **edits: Any) -> BadInput:
    return _run(id, expect, _yaml(**edits))


_GOOD = _yaml()

CASES: list[BadInput] = [
    # -- the file itself ------------------------------------------------------------------------
    _run("binary-file", r"s\.yaml: not a text file in UTF-8 \(byte 0 is 0x89\)", b"\x89PNG\r\n\x1a\n\x00\x00"),
    _run("latin1-file", r"not a text file in UTF-8 \(byte \d+ is 0xe9\)", "name: caf\xe9\n".encode("latin-1") + _GOOD.encode()),
    _run("nul-bytes", r"holds NUL bytes", _GOOD + "\x00\n"),
    _run("empty-file", r"must be a mapping of keys, not NoneType", ""),
    _run("top-level-list", r"must be a mapping of keys, not list", "- seed: 1\n"),
    _run("top-level-string", r"must be a mapping of keys, not str", "just words\n"),
    _run("yaml-syntax", r"not valid YAML at line \d+", "seed: 1\nworkload: {num_requests: 3\n"),
    _run("yaml-tab-indent", r"not valid YAML", "seed: 1\nworkload:\n\tnum_requests: 3\n"),
    _run("duplicate-top-key", r"key 'seed' is given twice \(first at line 1\)", "seed: 1\n" + _GOOD),
    _run("duplicate-nested-key", r"key 'rate_per_s' is given twice",
         _GOOD.replace("rate_per_s: 10.0", "rate_per_s: 10.0\n    rate_per_s: 20.0")),
    _run("toml-syntax", r"not valid TOML", 'seed = 1\nmodel = "llama\n', "s.toml"),
    _run("toml-duplicate-key", r"not valid TOML", "seed = 1\nseed = 2\n", "s.toml"),
    _run("json-suffix", r"must end in \.yaml, \.yml or \.toml, not '\.json'", "{}", "s.json"),
    _run("no-suffix", r"must end in \.yaml, \.yml or \.toml, not '\(none\)'", _GOOD, "scenario"),
    BadInput("scenario-missing-file", ("run", "absent.yaml", "--no-write", "-q"), r"absent\.yaml: no such scenario file"),
    BadInput("scenario-directory", ("run", "d.yaml", "--no-write", "-q"), r"d\.yaml: is a directory, not a scenario file",
             {"d.yaml/x": "seed: 1\n"}),
    _run("python-object-tag", r"not valid YAML", "seed: !!python/object:os.system ls\n" + _GOOD.replace("seed: 1\n", "")),
    # -- top level -------------------------------------------------------------------------------
    _key("unknown-key", r"seeed: unknown key \(did you mean 'seed'\?\)", seeed=3),
    _key("seed-negative", r"seed = -1: must be greater than or equal to 0", seed=-1),
    _key("seed-float", r"seed = 1\.5: must be a valid integer", seed=1.5),
    _key("seed-string", r"seed = '7': must be a valid integer", seed="7"),
    _key("name-number", r"name = 12: must be a valid string", name=12),
    _key("model-unknown", r"model = 'llama-9000': unknown model", model="llama-9000"),
    _key("model-json-missing", r"model = 'nope\.json'", model="nope.json"),
    _key("hardware-unknown", r"hardware = 'h100'.*unknown hardware", hardware="h100"),
    _key("quantization-unknown", r"quantization = 'int3': unknown quantization", quantization="int3"),
    _key("kv-dtype-unknown", r"kv_cache_dtype = 'int8': must be 'auto', 'bf16', 'fp16' or 'fp8'", kv_cache_dtype="int8"),
    _key("kv-dtype-fp8-explicit", r"kv_cache_dtype = 'fp8': an explicit profile takes its KV capacity",
         kv_cache_dtype="fp8"),
    _key("tp-zero", r"tp = 0: must be greater than or equal to 1", tp=0),
    _key("tp-three", r"tp = 3: must divide .*32 attention heads", tp=3),
    _key("tp-bool", r"tp = True: must be a valid integer", tp=True),
    _key("replicas-zero", r"replicas = 0: must be greater than or equal to 1", replicas=0),
    _key("replicas-string", r"replicas = 'two': must be a valid integer", replicas="two"),
    _key("replicas-null", r"replicas = None: must be a valid integer", replicas=None),
    # -- engine ----------------------------------------------------------------------------------
    _key("engine-unknown-key", r"engine\.max_num_seq: unknown key \(did you mean 'max_num_seqs'\?\)",
         engine={"max_num_seq": 64}),
    _key("engine-not-mapping", r"engine = 'fast'", engine="fast"),
    _key("scheduler-unknown", r"engine\.scheduler = 'fifo': must be 'continuous', 'prefill_first' or 'static'",
         engine={"scheduler": "fifo"}),
    _key("max-num-seqs-zero", r"engine\.max_num_seqs = 0: must be greater than or equal to 1", engine={"max_num_seqs": 0}),
    _key("max-num-seqs-float", r"engine\.max_num_seqs = 64\.5: must be a valid integer", engine={"max_num_seqs": 64.5}),
    _key("batched-tokens-below-seqs", r"engine\.max_num_batched_tokens = 64 is below max_num_seqs = 128",
         engine={"max_num_seqs": 128, "max_num_batched_tokens": 64}),
    _key("block-size-zero", r"engine\.block_size = 0: must be greater than or equal to 1", engine={"block_size": 0}),
    _key("memory-fraction-above-1", r"engine\.gpu_memory_fraction = 1\.5: must be less than or equal to 1",
         engine={"gpu_memory_fraction": 1.5}),
    _key("memory-fraction-bool", r"engine\.gpu_memory_fraction = True: must be a valid number",
         engine={"gpu_memory_fraction": True}),
    _key("memory-fraction-string", r"engine\.gpu_memory_fraction = '0\.9': must be a valid number",
         engine={"gpu_memory_fraction": "0.9"}),
    _key("chunked-with-static", r"engine\.chunked_prefill = True with scheduler 'static'",
         engine={"scheduler": "static", "chunked_prefill": True}),
    _key("chunked-string", r"engine\.chunked_prefill = 'yes': must be a valid boolean", engine={"chunked_prefill": "yes"}),
    _key("preemption-swap", r"engine\.preemption = 'swap': must be 'recompute'", engine={"preemption": "swap"}),
    _key("admission-unknown", r"engine\.admission = 'evict': must be 'recompute' or 'reserve'",
         engine={"admission": "evict"}),
    _key("preset-unknown", r"engine\.preset = 'vllm-0\.9': unknown engine preset \(did you mean 'vllm-0\.8'\?\); "
         r"known: sglang-0\.4, tensorrt-llm-0\.14, "
         r"tensorrt-llm-0\.14-triton, tensorrt-llm-0\.17, vllm-0\.8$", engine={"preset": "vllm-0.9"}),
    _key("preset-number", r"engine\.preset = 8: must be a valid string", engine={"preset": 8}),
    _key("kv-memory-fraction-one", r"engine\.kv_memory_fraction = 1\.0: must be less than 1",
         engine={"kv_memory_fraction": 1.0}),
    _key("both-memory-fractions", r"engine\.gpu_memory_fraction = 0\.8 and kv_memory_fraction = 0\.9 are both given: "
         r"give one", engine={"gpu_memory_fraction": 0.8, "kv_memory_fraction": 0.9}),
    _key("preset-override-breaks-a-rule", r"engine\.max_num_batched_tokens = 512 is below max_num_seqs = 1024",
         engine={"preset": "vllm-0.8", "max_num_batched_tokens": 512}),
    # -- router and measurement ----------------------------------------------------------------
    _key("router-policy-unknown", r"router\.policy = 'random': must be 'round_robin', 'least_outstanding' or 'least_kv_load'",
         router={"policy": "random"}),
    _key("router-max-outstanding-zero", r"router\.max_outstanding_per_replica = 0: must be greater than or equal to 1",
         router={"max_outstanding_per_replica": 0}),
    _key("warmup-negative", r"measurement\.warmup_s = -1\.0: must be greater than or equal to 0",
         measurement={"warmup_s": -1.0}),
    _key("warmup-string", r"measurement\.warmup_s = '30': must be a valid number", measurement={"warmup_s": "30"}),
    _key("horizon-zero", r"measurement\.horizon_s = 0\.0: must be greater than 0", measurement={"horizon_s": 0.0}),
    _key("horizon-before-warmup", r"measurement\.horizon_s = 5 is not after warmup_s = 10",
         measurement={"warmup_s": 10.0, "horizon_s": 5.0}),
    _key("horizon-infinite", r"measurement\.horizon_s = inf: .*finite", measurement={"horizon_s": float("inf")}),
    # -- profile ----------------------------------------------------------------------------------
    _key("profile-kind-unknown", r"profile\.kind = 'measurd': must be one of .*'measured'", profile={"kind": "measurd"}),
    _key("profile-kind-missing", r"profile: needs the key kind", profile={"fixed_s": 0.01}),
    _key("explicit-no-time", r"profile\.fixed_s and per_token_s are both 0",
         profile={"kind": "explicit", "kv_capacity_tokens": 4096}),
    _key("explicit-no-capacity", r"profile\.kv_capacity_tokens: required key is missing",
         profile={"kind": "explicit", "fixed_s": 0.01}),
    _key("explicit-capacity-below-block", r"profile\.kv_capacity_tokens = 8: must hold at least one block",
         profile={"kind": "explicit", "fixed_s": 0.01, "kv_capacity_tokens": 8}),
    _key("explicit-negative-time", r"profile\.fixed_s = -0\.01: must be greater than or equal to 0",
         profile={"kind": "explicit", "fixed_s": -0.01, "kv_capacity_tokens": 4096}),
    _key("explicit-string-time", r"profile\.fixed_s = '0\.01': must be a valid number",
         profile={"kind": "explicit", "fixed_s": "0.01", "kv_capacity_tokens": 4096}),
    _key("roofline-key-under-auto", r"profile\.hbm_tb_s: unknown key for kind 'auto': it belongs to kind 'roofline'",
         profile={"kind": "auto", "hbm_tb_s": 6.7}),
    _key("roofline-efficiency-zero", r"profile\.compute_efficiency = 0\.0: must be greater than 0",
         profile={"kind": "roofline", "compute_efficiency": 0.0}),
    _key("roofline-efficiency-above-1", r"profile\.memory_efficiency = 1\.2: must be less than or equal to 1",
         profile={"kind": "roofline", "memory_efficiency": 1.2}),
    _key("roofline-efficiency-bool", r"profile\.compute_efficiency = True: must be a valid number",
         profile={"kind": "roofline", "compute_efficiency": True}),
    _key("roofline-tflops-precision", r"profile\.tflops\.fp3",
         profile={"kind": "roofline", "tflops": {"fp3": 100.0}}),
    _key("roofline-memory-too-small", r"does not fit",
         profile={"kind": "roofline", "memory_gib": 4.0}),
    _key("measured-no-path", r"profile\.path: required key is missing", profile={"kind": "measured"}),
    _key("measured-missing-file", r"profile.*nope\.json", profile={"kind": "measured", "path": "nope.json"}),
    # -- cost ----------------------------------------------------------------------------------
    _key("cost-negative-price", r"cost\.usd_per_gpu_hour = -3\.0: must be greater than 0", cost={"usd_per_gpu_hour": -3.0}),
    _key("cost-spot-without-discount", r"cost\.pricing = 'spot': the catalog holds on-demand prices only",
         cost={"pricing": "spot"}),
    _key("cost-owned-without-purchase", r"purchase_usd_per_gpu is required for model 'owned'",
         cost={"model": "owned", "usd_per_kwh": 0.1}),
    _key("cost-owned-key-in-cloud", r"usd_per_kwh = 0\.1 is for model 'owned'", cost={"usd_per_kwh": 0.1}),
    _key("cost-idle-over-tdp", r"idle_w = 900 is not below tdp_w = 700", cost={"idle_w": 900.0, "tdp_w": 700.0}),
    _key("cost-window-zero", r"cost\.window_s = 0\.0: must be greater than 0", cost={"window_s": 0.0}),
    _key("cost-unknown-key", r"cost\.price: unknown key", cost={"price": 1.0}),
    _key("cost-price-string", r"cost\.usd_per_gpu_hour = '3\$': must be a valid number", cost={"usd_per_gpu_hour": "3$"}),
]

ACCEPTED: list[Accepted] = [
    # A horizon before the first arrival simulates nothing: legal (a sweep over horizons may reach
    # it), and said out loud.
    Accepted("scenario-horizon-before-first-arrival", ("run", "s.yaml", "--no-write", "-q"),
             r"capsim: warning: no request arrived before measurement\.horizon_s = 1e-06: nothing was simulated",
             {"s.yaml": _yaml(measurement={"horizon_s": 1e-6})}),
]
