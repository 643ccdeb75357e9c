"""How long the analysis layer takes on the embedded default scenario: a load curve, and a
hardware comparison of four GPUs × two quantizations.

    python benchmarks/bench_analysis.py                     # both, every core
    python benchmarks/bench_analysis.py --only curve --workers 1

The aims of the cost/curves issue on the 2-core CI machine: a curve in under 30 s, the comparison
in under 2 minutes. Wall time covers the whole call (the capacity probe, the grid, the bisection,
and for the comparison each option's curve and its fleet run), after imports; the number of
simulations is printed beside it.
"""

from __future__ import annotations

import argparse
import time

__all__ = ["bench_compare", "bench_curve"]

HARDWARE = ("h100-sxm", "h200", "a100-80gb", "l40s")
QUANTIZATIONS = ("bf16", "fp8")


def bench_curve(workers: int | None) -> dict:
    """``load_curve`` of the default scenario under its own SLOs."""
    from sim.config import default_scenario
    from sim.analysis.curve import load_curve

    t0 = time.perf_counter()
    curve = load_curve(default_scenario(), workers=workers)
    wall = time.perf_counter() - t0
    runs = curve.points.num_rows + curve.bisection.num_rows + 1  # + the capacity probe
    return {"what": "curve (default scenario)", "wall_s": wall, "simulations": runs,
            "max_rate_per_s": curve.max_rate.mean}


def bench_compare(workers: int | None) -> dict:
    """``compare`` of the default scenario's workload over :data:`HARDWARE` × :data:`QUANTIZATIONS`."""
    from sim.analysis.compare import compare
    from sim.config import default_scenario

    t0 = time.perf_counter()
    res = compare(default_scenario(), hardware=HARDWARE, quantization=QUANTIZATIONS, workers=workers)
    wall = time.perf_counter() - t0
    rows = res.options.to_pylist()
    return {"what": f"compare ({len(HARDWARE)} hardware x {len(QUANTIZATIONS)} quantizations)", "wall_s": wall,
            "options": len(rows), "meeting_slos": sum(r["meets_slo"] for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("curve", "compare"), help="run one of the two")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
    args = ap.parse_args()
    import sim.engine  # noqa: F401 - imports outside the timed region

    for name, fn in (("curve", bench_curve), ("compare", bench_compare)):
        if args.only in (None, name):
            r = fn(args.workers)
            print(", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()), flush=True)


if __name__ == "__main__":
    main()
