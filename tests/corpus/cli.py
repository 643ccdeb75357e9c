"""Bad command lines: options of ``capsim run`` (--set, --out, --records, --existing, --seed),
click's own usage errors, and the catalog, calibrate and validate flags that are refused before
any measuring starts."""

from __future__ import annotations

from tests.corpus import Accepted, BadInput
from tests.corpus.scenarios import _GOOD

_S = {"s.yaml": _GOOD}


def _run(id: str, expect: str, *args: str, files: dict | None = None) -> BadInput:
    return BadInput(f"cli-{id}", ("run", "s.yaml", *args), expect, {**_S, **(files or {})})


CASES: list[BadInput] = [
    # -- --set ----------------------------------------------------------------------------------
    _run("set-no-equals", r"--set 'foo': expected KEY=VALUE", "--set", "foo", "--no-write"),
    _run("set-empty-key", r"--set '=3': expected KEY=VALUE", "--set", "=3", "--no-write"),
    _run("set-empty-key-part", r"--set 'engine\.\.max_num_seqs=3': the key .* has an empty part",
         "--set", "engine..max_num_seqs=3", "--no-write"),
    _run("set-mapping-to-list", r"workload = \[1, 2\]: must be a mapping of keys$", "--set", "workload=[1, 2]",
         "--no-write"),
    _run("set-list-index-out", r"--set workload\.classes\.3\.name: workload\.classes is a list of 1; '3' is not an index",
         "--set", "workload.classes.3.name=x", "--no-write"),
    _run("set-list-not-index", r"'first' is not an index", "--set", "workload.classes.first.name=x", "--no-write"),
    _run("set-into-value", r"--set seed\.x: seed holds a value, not keys", "--set", "seed.x=1", "--no-write"),
    _run("set-bad-value", r"engine\.max_num_seqs = 'many': must be a valid integer", "--set", "engine.max_num_seqs=many",
         "--no-write"),
    _run("set-unknown-key", r"engine\.nope: unknown key", "--set", "engine.nope=1", "--no-write"),
    _run("set-bool-rate", r"engine\.gpu_memory_fraction = True: must be a valid number",
         "--set", "engine.gpu_memory_fraction=true", "--no-write"),
    _run("set-null-required", r"classes\[0\] \('trace'\) needs prompt_tokens and output_tokens",
         "--set", "workload.classes=null", "--no-write"),
    _run("set-yaml-list-for-int", r"engine\.max_num_seqs = \[1, 2\]: must be a valid integer",
         "--set", "engine.max_num_seqs=[1, 2]", "--no-write"),
    # -- --out and --existing -------------------------------------------------------------------
    _run("out-empty", r"--out '': empty directory name", "-o", "", "-q"),
    _run("out-is-a-file", r"--out taken: is a file, not a directory", "-o", "taken", "-q", files={"taken": "x"}),
    _run("out-under-a-file", r"--out taken/sub: cannot be created: .*taken is a file", "-o", "taken/sub", "-q",
         files={"taken": "x"}),
    _run("out-refuse-existing", r"--out old: holds an earlier run's results \(summary\.json\) and --existing is refuse",
         "-o", "old", "--existing", "refuse", "-q", files={"old/summary.json": "{}"}),
    _run("existing-unknown", r"--existing 'keep': must be one of replace, refuse", "--existing", "keep", "-q"),
    _run("records-unknown", r"--records 'some': must be one of full, stream, summary", "--records", "some", "-q"),
    _run("records-stream-no-write", r"--records stream writes iterations\.parquet as the run goes: it cannot go with --no-write",
         "--records", "stream", "--no-write", "-q"),
    _run("seed-not-int", r"Invalid value for '--seed'", "--seed", "x", "--no-write"),
    _run("seed-negative", r"seed = -1: must be greater than or equal to 0", "--seed", "-1", "--no-write"),
    _run("unknown-option", r"capsim run: No such option: --bogus", "--bogus"),
    _run("extra-argument", r"capsim run: Got unexpected extra argument", "other.yaml"),
    BadInput("cli-records-missing-value", ("run", "--records"), r"Option '--records' requires an argument"),
    BadInput("cli-unknown-command", ("simulate",), r"capsim: No such command 'simulate'"),
    # -- catalog ----------------------------------------------------------------------------------
    BadInput("cli-catalog-kind", ("catalog", "--kind", "gpus"), r"Invalid value for '--kind'.*'gpus'"),
    BadInput("cli-catalog-show-missing", ("catalog", "show"), r"Missing argument 'NAME'"),
    BadInput("cli-catalog-show-unknown", ("catalog", "show", "tpu-v9"), r"unknown hardware, model or quantization 'tpu-v9'"),
    BadInput("cli-catalog-profiles-dir", ("catalog", "profiles", "--dir", "nowhere"), r"--dir nowhere: no such directory"),
    # -- calibrate and validate, refused before any timing ---------------------------------------
    BadInput("cli-calibrate-no-model", ("calibrate",), r"--model is required"),
    BadInput("cli-calibrate-unknown-model", ("calibrate", "--model", "nope"), r"unknown model 'nope'"),
    BadInput("cli-calibrate-unknown-quant", ("calibrate", "--model", "llama-3.2-1b", "--quant", "fp3"),
             r"unknown quantization 'fp3'"),
    BadInput("cli-calibrate-layers-zero", ("calibrate", "--model", "llama-3.2-1b", "--layers", "0"),
             r"Invalid value for '--layers'"),
    BadInput("cli-calibrate-operators-missing", ("calibrate", "--from-operators", "nowhere"),
             r"nowhere: no such directory of operator timing tables"),
    BadInput("cli-validate-unknown-model", ("validate", "--model", "nope"), r"--model 'nope': unknown"),
    BadInput("cli-validate-lengths", ("validate", "--model", "llama-3.2-1b", "--prompt-tokens", "5-2"),
             r"--prompt-tokens '5-2': .*low <= high"),
    BadInput("cli-validate-lengths-text", ("validate", "--model", "llama-3.2-1b", "--output-tokens", "abc"),
             r"--output-tokens 'abc': expected a token count"),
    BadInput("cli-validate-repeats", ("validate", "--model", "llama-3.2-1b", "--repeats", "1"),
             r"--repeats 1: at least 2 real runs"),
    BadInput("cli-validate-utilisation", ("validate", "--model", "llama-3.2-1b", "--utilisation", "2"),
             r"--utilisation 2\.0: must be between 0 and 1"),
    BadInput("cli-validate-rate", ("validate", "--model", "llama-3.2-1b", "--rate", "-1"), r"--rate -1\.0: must be > 0"),
    BadInput("cli-validate-profile-missing", ("validate", "--model", "llama-3.2-1b", "--profile", "nowhere.json"),
             r"--profile nowhere\.json: no such file"),
    # -- curve and compare: refused before anything is simulated ---------------------------------
    BadInput("cli-curve-slo-malformed", ("curve", "s.yaml", "--slo", "ttft<1s", "-o", "c"), r"--slo", _S),
    BadInput("cli-curve-slo-unit", ("curve", "s.yaml", "--slo", "ttft_p99=1h", "-o", "c"), r"--slo", _S),
    BadInput("cli-curve-seeds", ("curve", "s.yaml", "--seeds", "0", "-o", "c"), r"--seeds", _S),
    BadInput("cli-curve-rates", ("curve", "s.yaml", "--rates", "1,-2", "-o", "c"), r"--rates", _S),
    BadInput("cli-curve-negative-price", ("curve", "s.yaml", "--set", "cost.usd_per_gpu_hour=-1", "-o", "c"),
             r"cost\.usd_per_gpu_hour = -1: must be greater than 0", _S),
    BadInput("cli-compare-unknown-hardware", ("compare", "s.yaml", "--hardware", "h100-sxm,h1000", "-o", "c"),
             r"--hardware: hardware 'h1000' is not in the catalog", _S),
    BadInput("cli-compare-unknown-quant", ("compare", "s.yaml", "--hardware", "h100-sxm", "--quant", "fp6", "-o", "c"),
             r"--quant: quantization 'fp6' is not in the catalog", _S),
    BadInput("cli-compare-empty-hardware", ("compare", "s.yaml", "--hardware", ",", "-o", "c"),
             r"--hardware ',': give a comma-separated list", _S),
    BadInput("cli-compare-tp-text", ("compare", "s.yaml", "--hardware", "h100-sxm", "--tp", "1,two", "-o", "c"),
             r"--tp '1,two': give whole numbers", _S),
    BadInput("cli-compare-family", ("compare", "s.yaml", "--hardware", "h100-sxm", "--family", "best", "-o", "c"),
             r"--family: family 'best': must be one of auto, roofline, measured", _S),
    BadInput("cli-compare-rate", ("compare", "s.yaml", "--hardware", "h100-sxm", "--rate", "0", "-o", "c"),
             r"--rate 0: must be a number of requests/s > 0", _S),
    BadInput("cli-compare-slo", ("compare", "s.yaml", "--hardware", "h100-sxm", "--slo", "speed=fast", "-o", "c"),
             r"--slo", _S),
    BadInput("cli-compare-one-price-many-gpus", ("compare", "s.yaml", "--hardware", "h100-sxm,h200", "--set",
                                                  "cost.usd_per_gpu_hour=2", "-o", "c"),
             r"cost\.usd_per_gpu_hour = 2 is one hardware's price", _S),
]

ACCEPTED: list[Accepted] = [
    Accepted("cli-set-null-removes-key", ("run", "s.yaml", "--set", "replicas=null", "--no-write", "-q"), r"^$", _S),
    Accepted("cli-out-dot", ("run", "s.yaml", "-o", ".", "-q"), r"^$", _S),
]
