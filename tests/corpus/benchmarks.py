"""Bad benchmark CSVs and bad ``capsim calibrate --from-benchmarks`` invocations.

Every case is refused before the first simulation of a fit starts: unreadable or malformed files,
rows the catalog or the simulator cannot take, rows faster than the hardware allows or whose
columns contradict each other, latencies in milliseconds, and flags that do not go together; and
the same files and the flags of the real-loop mode given to ``capsim validate --benchmarks``.
"""

from __future__ import annotations

from tests.corpus import BadInput

__all__ = ["CASES"]

_ARGV = ("calibrate", "--from-benchmarks", "b.csv", "-o", "out")
_HEADER = ("model,quantization,hardware,tp,input_tokens,output_tokens,concurrency,request_rate,num_requests,"
           "output_tokens_per_s,ttft_mean_s,tpot_mean_s")
# The README's example rows (seconds): each passes every check.
_GOOD = "llama-3.1-8b,bf16,h100-sxm,1,1024,128,1,,100,118.5,0.0231,0.00795"
_RATE = "llama-3.1-8b,bf16,h100-sxm,1,2048,32,,4,200,124,0.0416,0.00862"


def _csv(*rows: str, header: str = _HEADER) -> str:
    return "\n".join((header, *rows)) + "\n"


def _case(id: str, expect: str, *rows: str, header: str = _HEADER, argv: tuple[str, ...] = _ARGV) -> BadInput:
    return BadInput(id=f"benchmarks-{id}", argv=argv, expect=expect, files={"b.csv": _csv(*rows, header=header)})


def _row(**cells: str) -> str:
    """The good row with some cells replaced."""
    names = _HEADER.split(",")
    values = _GOOD.split(",")
    for k, v in cells.items():
        values[names.index(k)] = v
    return ",".join(values)


CASES: list[BadInput] = [
    # -- the file itself --------------------------------------------------------------------------
    BadInput("benchmarks-missing-file", _ARGV, r"b\.csv: no such benchmark file"),
    BadInput("benchmarks-a-directory", ("calibrate", "--from-benchmarks", "d", "-o", "out"),
             r"d: cannot read \(Is a directory\)", files={"d/x.csv": _csv(_GOOD)}),
    BadInput("benchmarks-empty-file", _ARGV, r"b\.csv: empty file; expected a header row", files={"b.csv": ""}),
    BadInput("benchmarks-blank-lines-only", _ARGV, r"b\.csv: empty file", files={"b.csv": "\n  \n,,\n"}),
    BadInput("benchmarks-header-only", _ARGV, r"b\.csv: no data rows after the header", files={"b.csv": _HEADER + "\n"}),
    BadInput("benchmarks-not-utf8", _ARGV, r"b\.csv: not a UTF-8 text file",
             files={"b.csv": (_HEADER + "\n").encode() + b"llama-3.1-8b,bf16,h100\xff\xfe-sxm,1\n"}),
    BadInput("benchmarks-a-parquet-file", _ARGV, r"b\.csv: not a UTF-8 text file",
             files={"b.csv": b"PAR1\x15\x04\x15\x80\x80\x80\x80\x08\x00\x00\x00\xde\xad\xbe\xef"}),
    # -- the header ---------------------------------------------------------------------------------
    _case("missing-num-requests", r"header: missing column\(s\) 'num_requests'",
          "llama-3.1-8b,bf16,h100-sxm,1,1024,128,1,,118.5,0.0231,0.00795",
          header=_HEADER.replace("num_requests,", "")),
    _case("missing-model-and-hardware", r"header: missing column\(s\) 'model', 'hardware'",
          "bf16,1,1024,128,1,,100,118.5,0.0231,0.00795",
          header=_HEADER.replace("model,", "").replace("hardware,", "")),
    _case("no-load-column", r"header: needs a column 'concurrency' or 'request_rate'",
          "llama-3.1-8b,bf16,h100-sxm,1,1024,128,100,118.5,0.0231,0.00795",
          header=_HEADER.replace("concurrency,request_rate,", "")),
    _case("no-metric-column", r"header: no metric column; give at least one of output_tokens_per_s",
          "llama-3.1-8b,bf16,h100-sxm,1,1024,128,1,,100",
          header=_HEADER.replace(",output_tokens_per_s,ttft_mean_s,tpot_mean_s", "")),
    _case("duplicate-column", r"header: column 'ttft_mean_s' appears twice", _GOOD + ",0.02",
          header=_HEADER + ",ttft_mean_s"),
    _case("vllm-field-in-ms", r"column 'mean_ttft_ms': is vLLM's result field; name it 'ttft_mean_s' in seconds",
          _GOOD + ",23.1", header=_HEADER + ",mean_ttft_ms"),
    _case("vllm-throughput-field", r"column 'output_throughput': is vLLM's result field; name it 'output_tokens_per_s'",
          _GOOD + ",118.5", header=_HEADER + ",output_throughput"),
    _case("ms-column-name", r"column 'ttft_ms': is not a known column \(did you mean 'ttft_mean_s'\?\); latencies are in "
          r"seconds", _GOOD + ",23.1", header=_HEADER + ",ttft_ms"),
    # -- names the catalog does not know ------------------------------------------------------------
    _case("unknown-model", r"row 1, column 'model': unknown model 'llama-3-8b'", _row(model="llama-3-8b")),
    _case("unknown-hardware", r"row 1, column 'hardware': unknown hardware 'h300' \(did you mean 'h200'",
          _row(hardware="h300")),
    _case("unknown-quantization", r"row 1, column 'quantization': unknown quantization 'FP8'", _row(quantization="FP8")),
    _case("empty-model-cell", r"row 2, column 'model': empty; every row names its model", _GOOD, _row(model="")),
    # -- numbers ------------------------------------------------------------------------------------
    _case("negative-ttft", r"row 1, column 'ttft_mean_s': '-0\.0231' must be > 0", _row(ttft_mean_s="-0.0231")),
    _case("zero-tp", r"row 1, column 'tp': '0' must be > 0", _row(tp="0")),
    _case("zero-throughput", r"row 1, column 'output_tokens_per_s': '0' must be > 0", _row(output_tokens_per_s="0")),
    _case("nan-tpot", r"row 1, column 'tpot_mean_s': 'nan' must be a finite number", _row(tpot_mean_s="nan")),
    # Concurrency-1 numbers labelled rate inf: Little's law against every request at once refuses them.
    _case("infinite-rate-with-concurrency-1-latencies",
          r"row 1, columns .*: by Little's law .* requests in flight, but request_rate inf \(all \d+ requests at once\) keeps",
          _row(concurrency="", request_rate="inf")),
    _case("text-in-number", r"row 3, column 'input_tokens': '1k' is not a number", _GOOD, _GOOD, _row(input_tokens="1k")),
    _case("ms-suffix-in-cell", r"row 1, column 'ttft_mean_s': '23\.1ms' is not a number", _row(ttft_mean_s="23.1ms")),
    _case("fractional-tp", r"row 1, column 'tp': '1\.5' must be a whole number", _row(tp="1.5")),
    _case("empty-num-requests", r"row 1, column 'num_requests': empty; a positive whole number", _row(num_requests="")),
    _case("both-loads", r"row 1, columns 'concurrency' and 'request_rate': both are set \('1', '4'\)",
          _row(request_rate="4")),
    _case("neither-load", r"row 1, columns 'concurrency' and 'request_rate': neither is set", _row(concurrency="")),
    _case("no-metrics-in-row", r"row 2, metric columns: all empty",
          _GOOD, _row(output_tokens_per_s="", ttft_mean_s="", tpot_mean_s="")),
    _case("too-many-cells", r"row 1: 13 cells but the header names 12 columns", _GOOD + ",extra"),
    # -- what the model and the simulator can take --------------------------------------------------
    _case("tp-does-not-divide-heads", r"row 1, column 'tp': 3 must divide llama-3.1-8b's 32 attention heads",
          _row(tp="3")),
    _case("longer-than-context", r"row 1, column 'input_tokens': input_tokens \+ output_tokens = 131200 exceeds",
          _row(input_tokens="131072")),
    _case("tpot-of-one-token-responses", r"row 1, column 'tpot_mean_s': needs output_tokens >= 2",
          _row(output_tokens="1")),
    _case("weights-do-not-fit", r"row 1, column 'tp': model = 'llama-3.1-70b' \(bf16\) does not fit",
          _row(model="llama-3.1-70b")),
    _case("request-larger-than-kv-cache", r"row 1, column 'input_tokens': a request of 100000 \+ 128 tokens needs \d+ "
          r"KV tokens but .* holds \d+", _row(hardware="a10g", input_tokens="100000", output_tokens_per_s="",
                                              ttft_mean_s="")),
    # -- faster than the hardware allows ------------------------------------------------------------
    _case("a-billion-tokens-per-second", r"row 1, column 'output_tokens_per_s': 1e\+09 output tokens/s is faster than "
          r"the hardware allows: at concurrency 1 at most 1 sequence gains one token per decode step",
          _row(output_tokens_per_s="1e9")),
    _case("ttft-100s-tpot-1ns", r"row 1, column 'tpot_mean_s': 1e-09 s per token is faster than the hardware allows: "
          r"every decode step of llama-3.1-8b \(bf16\) on h100-sxm at tp 1 reads at least",
          _row(ttft_mean_s="100", tpot_mean_s="1e-9", output_tokens_per_s="")),
    _case("tpot-below-weight-read", r"row 2, column 'tpot_mean_s': 0\.001 s per token is faster than the hardware",
          _GOOD, _row(tpot_mean_s="0.001", output_tokens_per_s="")),
    _case("prefill-faster-than-peak-flops", r"row 1, column 'ttft_mean_s': 0\.005 s to the first token is faster than "
          r"the hardware allows: a prompt of 8192 tokens", _row(input_tokens="8192", ttft_mean_s="0.005",
                                                                 output_tokens_per_s="")),
    _case("throughput-beyond-peak-flops", r"row 1, column 'output_tokens_per_s': 1e\+06 output tokens/s is faster than "
          r"the hardware allows: a request of 2048 \+ 32 tokens", _RATE.replace(",124,", ",1e6,").replace(",4,", ",9e4,")),
    _case("requests-per-second-beyond-bandwidth", r"row 1, column 'requests_per_s': 50 requests/s is faster than",
          _GOOD.replace(",118.5,", ",50,"), header=_HEADER.replace("output_tokens_per_s", "requests_per_s")),
    # -- columns that cannot all hold ---------------------------------------------------------------
    _case("p50-above-p99", r"row 1, columns 'ttft_p50_s', 'ttft_p99_s': the median 0\.05 exceeds the 99th percentile "
          r"0\.03", _GOOD + ",0.05,0.03", header=_HEADER + ",ttft_p50_s,ttft_p99_s"),
    _case("itl-in-ms-tpot-in-s", r"row 1, columns 'itl_mean_s', 'tpot_mean_s': 7\.95 and 0\.00795 are 1e\+03× apart.*"
          r"7\.95 looks like milliseconds", _GOOD + ",7.95", header=_HEADER + ",itl_mean_s"),
    _case("throughputs-disagree", r"row 1, columns 'output_tokens_per_s', 'requests_per_s': 118\.5 output tokens/s but "
          r"0\.3 requests/s × 128 output_tokens = 38\.4", _GOOD + ",0.3", header=_HEADER + ",requests_per_s"),
    _case("completes-faster-than-sent", r"row 1, columns 'request_rate', 'output_tokens_per_s': requests complete at "
          r"3\.875/s but are sent at 1/s", _RATE.replace(",4,200,", ",1,200,")),
    _case("littles-law-too-many-in-flight", r"row 1, columns 'ttft_mean_s', 'tpot_mean_s', 'output_tokens_per_s': by "
          r"Little's law .* requests in flight, but a closed loop of concurrency 1 keeps 1",
          _row(ttft_mean_s="0.2", tpot_mean_s="0.05")),
    _case("littles-law-too-few-in-flight", r"row 1, columns 'ttft_mean_s', 'tpot_mean_s', 'output_tokens_per_s': by "
          r"Little's law .* concurrency 64 keeps 64", _row(concurrency="64", output_tokens_per_s="200")),
    # -- milliseconds -------------------------------------------------------------------------------
    _case("readme-rows-in-ms", r"row 1, columns 'ttft_mean_s', 'tpot_mean_s', 'output_tokens_per_s': 23\.1 and 7\.95 "
          r"look like milliseconds: .*give seconds \(0\.0231 and 0\.00795\)",
          "llama-3.1-8b,bf16,h100-sxm,1,1024,128,1,,100,118.5,23.1,7.95",
          "llama-3.1-8b,bf16,h100-sxm,1,1024,128,32,,400,1850,181,13.1",
          "llama-3.1-8b,bf16,h100-sxm,1,2048,32,,4,200,124,41.6,8.62"),
    _case("tpot-in-ms-at-a-rate", r"row 2, column 'tpot_mean_s': 8\.62 looks like milliseconds: a token every 8\.62 s "
          r"is slower than the slowest iteration", _GOOD, _RATE.replace("0.0416,0.00862", "0.0416,8.62")),
    _case("ttft-in-ms-alone", r"row 1, column 'ttft_mean_s': 23\.1 looks like milliseconds: alone on the server",
          _row(ttft_mean_s="23.1", tpot_mean_s="", output_tokens_per_s="")),
    # -- flags --------------------------------------------------------------------------------------
    _case("out-is-a-file", r"--out b\.csv: exists and is not a directory", _GOOD,
          argv=("calibrate", "--from-benchmarks", "b.csv", "-o", "b.csv")),
    _case("model-flag-with-benchmarks", r"--model does not apply with --from-benchmarks: the CSV names", _GOOD,
          argv=(*_ARGV, "--model", "llama-3.1-8b")),
    _case("from-operators-too", r"--from-operators does not apply with --from-benchmarks", _GOOD,
          argv=(*_ARGV, "--from-operators", "vidur")),
    BadInput("benchmarks-keep-poor-fit-alone", ("calibrate", "--keep-poor-fit", "--model", "llama-3.2-1b"),
             r"--keep-poor-fit applies only with --from-benchmarks"),
    # -- capsim validate --benchmarks: the same file, and the flags of the other mode -------------
    BadInput("benchmarks-validate-missing-file", ("validate", "--benchmarks", "b.csv"),
             r"b\.csv: no such benchmark file"),
    _case("validate-bad-row", r"row 1, column 'tp': '1\.5' must be a whole number", _row(tp="1.5"),
          argv=("validate", "--benchmarks", "b.csv")),
    _case("validate-unknown-engine", r"--engine 'trt-llm': unknown engine preset.*; known: ", _GOOD,
          argv=("validate", "--benchmarks", "b.csv", "--engine", "trt-llm")),
    _case("validate-with-real-loop-flags", r"--model does not apply with --benchmarks", _GOOD,
          argv=("validate", "--benchmarks", "b.csv", "--model", "llama-3.1-8b")),
    _case("validate-profile-missing", r"--profile nowhere: no such file or directory; give auto, roofline", _GOOD,
          argv=("validate", "--benchmarks", "b.csv", "--profile", "nowhere")),
    BadInput("benchmarks-validate-engine-alone", ("validate", "--model", "llama-3.2-1b", "--engine", "vllm-0.8"),
             r"--engine applies only with --benchmarks"),
    # -- engine columns ----------------------------------------------------------------------------
    _case("unknown-engine",
          r"row 1, column 'engine': unknown engine preset 'tensorrt-llm-9'.*known: .*tensorrt-llm-0\.17",
          _GOOD + ",tensorrt-llm-9", header=_HEADER + ",engine"),
    _case("unknown-kv-dtype", r"row 1, column 'kv_cache_dtype': unknown KV cache precision 'int4'",
          _GOOD + ",int4", header=_HEADER + ",kv_cache_dtype"),
    _case("kv-fraction-above-one", r"row 1, column 'kv_memory_fraction': '1\.5' must be <= 1",
          _GOOD + ",1.5", header=_HEADER + ",kv_memory_fraction"),
    _case("max-num-seqs-not-whole", r"row 1, column 'max_num_seqs': '2\.5' must be a whole number",
          _GOOD + ",2.5", header=_HEADER + ",max_num_seqs"),
    _case("unknown-admission", r"row 1, column 'admission': unknown admission 'swap'; known: recompute, reserve",
          _GOOD + ",swap", header=_HEADER + ",admission"),
    _case("engine-settings-contradict", r"row 1, columns 'max_num_seqs', 'max_num_batched_tokens': not a valid engine",
          _GOOD + ",512,256", header=_HEADER + ",max_num_seqs,max_num_batched_tokens"),
]
