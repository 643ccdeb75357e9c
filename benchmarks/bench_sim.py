"""How fast capsim simulates, and how much memory it takes, as the request count grows.

    python benchmarks/bench_sim.py                    # 10k and 100k requests
    python benchmarks/bench_sim.py --sizes 2000,50000
    python benchmarks/bench_sim.py --case a100-conv --case a100-conv-x64 --sizes 10000,100000

Each case is the embedded default scenario (``sim.config.default_scenario()``) with its workload
stopped after ``N`` requests instead of after ``duration_s``. Every case runs in a fresh Python
process so that its peak resident memory (``ru_maxrss`` of that process) is its own and not the
high-water mark of an earlier, larger case. The wall time covers ``simulate()`` (drawing the
workload included) plus ``result.write()`` to a temporary directory; it excludes interpreter
start-up, imports and loading the scenario.
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


def run_case(num_requests: int, case: str = "default") -> dict[str, Any]:
    """Simulate and write one case in this process; return its figures.

    Peak RSS is this process's, so call it in a fresh process (as :func:`measure` does) when
    the memory figure matters.
    """
    from sim import simulate

    scenario = _scenario(num_requests, case)
    with tempfile.TemporaryDirectory(prefix="capsim-bench-") as out:
        t0 = time.perf_counter()
        result = simulate(scenario)
        t1 = time.perf_counter()
        result.write(out)
        t2 = time.perf_counter()
    req = result.summary["requests"]
    return {
        "case": case,
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


def measure(num_requests: int, case: str = "default") -> dict[str, Any]:
    """Run :func:`run_case` in a fresh interpreter and return what it reported."""
    proc = subprocess.run([sys.executable, __file__, "--child", str(num_requests), "--case", case],
                          capture_output=True, text=True)
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
    parser = argparse.ArgumentParser(description="Time capsim on the default scenario at several request counts.")
    parser.add_argument("--sizes", type=_sizes, default=[10_000, 100_000],
                        help="comma-separated request counts (default: 10000,100000)")
    parser.add_argument("--case", action="append", choices=sorted(CASES),
                        help="scenario to time, repeatable (default: default). "
                             + "; ".join(f"{k}: {v}" for k, v in CASES.items()))
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cases = args.case or ["default"]
    if args.child is not None:
        print(json.dumps(run_case(args.child, cases[0])))
        return 0

    header = ("case", "profile", "requests", "simulated s", "wall s", "sim requests / wall s", "peak RSS MB")
    print(" | ".join(header))
    print(" | ".join("-" * len(h) for h in header))
    for case in cases:
        for n in args.sizes:
            r = measure(n, case)
            print(f"{case} | {r['profile']} | {r['requests']:,} | {r['simulated_s']:,.0f} | {r['wall_s']:.2f} | "
                  f"{r['requests_per_wall_s']:,.0f} | {r['peak_rss_mb']:,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
