"""How fast capsim simulates, and how much memory it takes, as the request count grows.

    python benchmarks/bench_sim.py                    # the suite: issue 8's reference workload
    python benchmarks/bench_sim.py --sizes 2000,50000 --case default
    python benchmarks/bench_sim.py --case a100-conv --case a100-conv-x64 --sizes 10000,100000

The suite (no ``--case``/``--sizes``) runs ``a100-conv`` at 10k, 100k and 1M requests and
``a100-conv-x64`` (64 replicas at 64x the rate) at 10k and 100k, 1M with ``--records stream``
(iteration rows to Parquet as the run goes) and the rest with every table in memory, and prints
each case's cost per simulated request relative to one replica at the same size.

Each case is the embedded default scenario (``sim.config.default_scenario()``) with its workload
stopped after ``N`` requests instead of after ``duration_s``. Every case runs in a fresh Python
process so that its peak resident memory (``ru_maxrss`` of that process) is its own and not the
high-water mark of an earlier, larger case. The wall time covers ``simulate()`` (drawing the
workload included) plus ``result.write()`` to a temporary directory; it excludes interpreter
start-up, imports and loading the scenario, and the process's one-off costs (lazy imports, first
calls), which a small untimed run of the same case pays first.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

__all__ = ["measure", "run_case"]


# The reference workload of the speed issue: the best-known Python simulator takes ~230 s and
# 2.9 GB for 100k requests of it. Llama-3.1-8B bf16 on one A100-80GB, Poisson 5.5 req/s with
# azure-conv-2023 lengths, at most 128 sequences and 4096 batched tokens per iteration.
_A100_CONV = {
    "name": "bench-a100-conv", "model": "llama-3.1-8b", "quantization": "bf16", "hardware": "a100-80gb", "tp": 1,
    "replicas": 1, "profile": {"kind": "auto"},
    "engine": {"max_num_seqs": 128, "max_num_batched_tokens": 4096},
    "workload": {"preset": "azure-conv-2023", "arrival": {"process": "poisson", "rate_per_s": 5.5}},
}
CASES = {
    "default": "the embedded default scenario (Llama-3.1-8B bf16, one H100, 12 req/s chat)",
    "a100-conv": "Llama-3.1-8B bf16 on one A100-80GB, Poisson 5.5 req/s, azure-conv-2023 lengths, 128 seqs / 4096 tokens",
    "a100-conv-x64": "the same on 64 replicas behind the router at 64 x 5.5 = 352 req/s",
}


# The suite: (case, requests, records mode).
SUITE = [("a100-conv", 10_000, "full"), ("a100-conv", 100_000, "full"), ("a100-conv", 1_000_000, "stream"),
         ("a100-conv-x64", 10_000, "full"), ("a100-conv-x64", 100_000, "full")]


def _scenario(num_requests: int, case: str = "default"):
    """Scenario ``case`` stopped after ``num_requests`` arrivals instead of a duration."""
    from sim import default_scenario, load_scenario

    if case == "default":
        data = default_scenario().to_dict()
    else:
        data = json.loads(json.dumps(_A100_CONV))
        if case == "a100-conv-x64":
            data["replicas"] = 64
            data["workload"]["arrival"]["rate_per_s"] = 64 * 5.5
    data["workload"].pop("duration_s", None)
    data["workload"]["num_requests"] = num_requests
    return load_scenario(data)


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kibibytes, macOS bytes.
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def run_case(num_requests: int, case: str = "default", records: str = "full") -> dict[str, Any]:
    """Simulate and write one case in this process; return its figures.

    Peak RSS is this process's, so call it in a fresh process (as :func:`measure` does) when
    the memory figure matters.
    """
    from sim import simulate

    scenario = _scenario(num_requests, case)
    # One small run of the same case first, untimed: one-off costs of a process (lazy imports such
    # as scipy.special for lognormal lengths, first calls) are paid once per process by a sweep,
    # not per scenario, and the wall time below is what each scenario costs.
    simulate(_scenario(min(num_requests, 200), case), records="summary")
    with tempfile.TemporaryDirectory(prefix="capsim-bench-") as out:
        t0 = time.perf_counter()
        result = simulate(scenario, records=records, stream_to=out if records == "stream" else None)
        t1 = time.perf_counter()
        result.write(out)
        t2 = time.perf_counter()
    req = result.summary["requests"]
    return {
        "case": case,
        "records": records,
        "requests": num_requests,
        "profile": result.summary["profile"]["kind"],
        "arrived": req["arrived"],
        "completed": req["completed"],
        "rejected": req["rejected"],
        "in_flight": req["in_flight"],
        "iterations": result.summary["iterations"],
        "simulated_s": result.summary["simulated_s"],
        "simulate_wall_s": t1 - t0,
        "write_wall_s": t2 - t1,
        "wall_s": t2 - t0,
        "requests_per_wall_s": num_requests / (t2 - t0),
        "peak_rss_mb": _peak_rss_mb(),
    }


def measure(num_requests: int, case: str = "default", records: str = "full") -> dict[str, Any]:
    """Run :func:`run_case` in a fresh interpreter and return what it reported."""
    proc = subprocess.run([sys.executable, __file__, "--child", str(num_requests), "--case", case,
                           "--records", records], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark case {num_requests} failed (exit {proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes {text!r}: expected comma-separated integers, e.g. 10000,100000")
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--sizes {text!r}: every size must be >= 1")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time capsim: simulated requests per wall second, wall time and peak memory, writing the results. "
                    "Without --case and --sizes it runs the suite (issue 8's reference workload at 10k, 100k and 1M "
                    "requests on one replica; 10k and 100k on 64 replicas).")
    parser.add_argument("--sizes", type=_sizes, help="comma-separated request counts (default with --case: 10000,100000)")
    parser.add_argument("--case", action="append", choices=sorted(CASES),
                        help="scenario to time, repeatable. " + "; ".join(f"{k}: {v}" for k, v in CASES.items()))
    parser.add_argument("--records", choices=("full", "stream", "summary"),
                        help="what each run keeps (sim.results.records): full tables in memory, iteration rows streamed to "
                             "Parquet, or the summary alone (default: full; the suite streams its 1M case)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(run_case(args.child, (args.case or ["default"])[0], args.records or "full")))
        return 0
    if args.case is None and args.sizes is None:
        plan = [(c, n, args.records or mode) for c, n, mode in SUITE]
    else:
        plan = [(c, n, args.records or "full") for c in args.case or ["default"] for n in args.sizes or [10_000, 100_000]]

    header = ("case", "records", "requests", "iterations", "simulated s", "wall s", "sim requests / wall s",
              "peak RSS MB", "cost / request vs one replica")
    print(" | ".join(header))
    print(" | ".join("-" * len(h) for h in header))
    one_replica: dict[int, float] = {}
    for case, n, records in plan:
        r = measure(n, case, records)
        per_request = r["wall_s"] / n
        if case == "a100-conv":
            one_replica[n] = per_request
        ratio = f"{per_request / one_replica[n]:.2f}x" if case == "a100-conv-x64" and n in one_replica else ""
        print(f"{case} | {records} | {n:,} | {r['iterations']:,} | {r['simulated_s']:,.0f} | {r['wall_s']:.2f} | "
              f"{r['requests_per_wall_s']:,.0f} | {r['peak_rss_mb']:,.0f} | {ratio}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
