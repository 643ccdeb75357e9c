"""How fast ``workloads.generate`` draws a RequestTable, for three workloads of 1M requests.

    python benchmarks/bench_workload.py                  # 1M requests, best of 3, every case
    python benchmarks/bench_workload.py --n 200000 --repeats 5 --cases poisson,sessions

Cases:

- ``poisson``: Poisson arrivals, one class, lognormal prompt and output lengths;
- ``mixture``: three classes (lognormal with a prompt–output copula, histogram + clipped
  exponential, quantile table + empirical) under Gamma arrivals with CV 4 on a diurnal profile;
- ``sessions``: multi-turn conversations (1 to 8 turns, exponential think times) with 20 system
  prompt variants picked by a Zipf law, truncated at a 131,072-token context.

The wall time covers ``generate(spec, seed, max_context)`` only: the spec is validated first, and
one small warm-up draw per case runs before timing so that lazy imports (scipy) are not counted.
The acceptance target is 1M requests in under 2 s per case; ``test_generate_1m_requests_under_target``
checks it (benchmark marker, off by default):

    python -m pytest -m benchmark benchmarks/bench_workload.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import pytest

__all__ = ["CASES", "TARGET_S", "run_case"]

TARGET_S = 2.0  # acceptance target: 1M requests generated in under this many seconds
MAX_CONTEXT = 131_072

_CHAT_LENGTHS = {"prompt_tokens": {"dist": "lognormal", "mean": 1000, "p99": 8000},
                 "output_tokens": {"dist": "lognormal", "mean": 250, "p99": 1500}}

# name -> WorkloadSpec data without the stop rule
CASES: dict[str, dict[str, Any]] = {
    "poisson": {
        "arrival": {"process": "poisson", "rate_per_s": 10.0},
        "classes": [{"name": "chat", **_CHAT_LENGTHS}],
    },
    "mixture": {
        "arrival": {"process": "gamma", "cv": 4.0,
                    "rate_profile": {"shape": "diurnal", "mean_rate_per_s": 10.0, "peak_to_trough": 3.0}},
        "classes": [
            {"name": "chat", "share": 5.0, **_CHAT_LENGTHS, "length_correlation": 0.3},
            {"name": "rag", "share": 3.0,
             "prompt_tokens": {"dist": "histogram", "edges": [1, 1000, 4000, 16000], "counts": [1, 5, 2]},
             "output_tokens": {"dist": "exponential", "mean": 200, "max": 2000}},
            {"name": "code", "share": 2.0,
             "prompt_tokens": {"dist": "quantiles", "probs": [0, 0.5, 0.9, 1], "values": [10, 500, 3000, 20000]},
             "output_tokens": {"dist": "empirical", "values": [10, 50, 200, 800], "weights": [1, 2, 3, 1]}},
        ],
    },
    "sessions": {
        "arrival": {"process": "poisson", "rate_per_s": 2.0},
        "classes": [{
            "name": "chat",
            "prompt_tokens": {"dist": "lognormal", "mean": 200, "p99": 2000},
            "output_tokens": {"dist": "lognormal", "mean": 250, "p99": 1500},
            "sessions": {"turns": {"dist": "uniform", "low": 1, "high": 8}, "think_time": {"mean_s": 20.0}},
            "system_prompt": {"tokens": {"dist": "uniform", "low": 200, "high": 2000}, "variants": 20,
                              "popularity": "zipf"},
        }],
    },
}


def run_case(name: str, n: int = 1_000_000, repeats: int = 3, seed: int = 0) -> dict[str, Any]:
    """Time ``repeats`` draws of case ``name`` with ``n`` requests (seeds seed, seed+1, ...)."""
    from workloads import WorkloadSpec, generate

    spec = WorkloadSpec.model_validate({**CASES[name], "num_requests": n})
    generate(WorkloadSpec.model_validate({**CASES[name], "num_requests": 1000}), seed, MAX_CONTEXT)  # warm-up
    walls, rows = [], 0
    for k in range(repeats):
        t0 = time.perf_counter()
        table = generate(spec, seed + k, MAX_CONTEXT)
        walls.append(time.perf_counter() - t0)
        rows = table.num_rows
    best = min(walls)
    return {"case": name, "requests": rows, "best_s": best, "median_s": statistics.median(walls),
            "worst_s": max(walls), "requests_per_s": rows / best}


@pytest.mark.benchmark
def test_generate_1m_requests_under_target() -> None:
    for name in CASES:
        r = run_case(name)
        assert r["requests"] == 1_000_000, r
        assert r["best_s"] < TARGET_S, (f"{name}: best of 3 took {r['best_s']:.2f} s for 1M requests "
                                        f"(target {TARGET_S} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time workloads.generate on three 1M-request workloads.")
    parser.add_argument("--n", type=int, default=1_000_000, help="requests per case (default 1000000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed draws per case; the best is reported")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    args = parser.parse_args(argv)
    names = [c for c in args.cases.split(",") if c]
    unknown = [c for c in names if c not in CASES]
    if unknown or args.n < 1 or args.repeats < 1:
        parser.error(f"unknown case(s) {', '.join(unknown)}" if unknown else "--n and --repeats must be >= 1")
    header = ("case", "requests", "best s", "median s", "requests / s (best)")
    print(" | ".join(header))
    print(" | ".join("-" * len(h) for h in header))
    for name in names:
        r = run_case(name, args.n, args.repeats)
        print(f"{name} | {r['requests']:,} | {r['best_s']:.3f} | {r['median_s']:.3f} | {r['requests_per_s']:,.0f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
