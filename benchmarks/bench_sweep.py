"""Points per minute of a sweep on local processes: the embedded default scenario at about 2,000
requests per point (``workload.num_requests: 2000`` in place of its duration), summaries only,
with 1 and 2 workers.

    python benchmarks/bench_sweep.py                   # 1,000 points, 1 and 2 workers (minutes)
    python benchmarks/bench_sweep.py --points 50       # a quick look

The aim of the sweeps' issue on the 2-core CI machine: 1,000 points in under 5 minutes locally.
The points are a grid of arrival rate (4 to 12 requests/s) × ``engine.max_num_seqs`` (64 to 512)
with repeats making up the count; each worker count writes into a fresh directory, so nothing is
skipped. The wall time is that of :func:`sim.analysis.sweep.run_sweep` in this process (spec
checks, up-front validation of every point, the simulations, the files and the manifest; not the
interpreter's start-up). A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

__all__ = ["bench_sweep", "spec_of"]

RATES = (4.0, 6.0, 8.0, 10.0, 12.0)
MAX_NUM_SEQS = (64, 128, 256, 512)


def spec_of(points: int) -> dict:
    """A grid of :data:`RATES` × :data:`MAX_NUM_SEQS` with enough repeats for at least ``points``
    points, trimmed by dropping rates when fewer are asked for than one repeat makes."""
    from sim.config import scenario_data

    base = scenario_data()
    base["workload"].pop("duration_s", None)
    base["workload"]["num_requests"] = 2000
    per_repeat = len(RATES) * len(MAX_NUM_SEQS)
    if points < per_repeat:
        rates = RATES[:max(1, math.ceil(points / len(MAX_NUM_SEQS)))]
        return {"base": base, "axes": {"workload.arrival.rate_per_s": list(rates), "engine.max_num_seqs": list(MAX_NUM_SEQS)}}
    return {"base": base, "axes": {"workload.arrival.rate_per_s": list(RATES), "engine.max_num_seqs": list(MAX_NUM_SEQS)},
            "repeats": math.ceil(points / per_repeat)}


def bench_sweep(points: int, workers: int, out: Path, ray: bool = False) -> dict:
    """Run the sweep of :func:`spec_of` with ``workers`` local processes into ``out``, or on a local
    Ray instance of ``workers`` CPUs (started before the clock, as a cluster would be running)."""
    from sim.analysis.sweep import points_per_minute, run_sweep

    executor = None
    if ray:
        from sim.analysis.ray_executor import RayExecutor

        executor = RayExecutor(None, num_cpus=workers)
    try:
        t0 = time.perf_counter()
        run = run_sweep(spec_of(points), out, executor=executor, workers=workers)
        wall = time.perf_counter() - t0
    finally:
        if executor is not None:
            executor.shutdown()
    return {"workers": workers, "points": run.ok, "failed": run.failed, "wall_s": wall,
            "points_per_minute": points_per_minute(run.ok, wall)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--ray", action="store_true", help="also on a local Ray instance of as many CPUs (the ray extra)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for ray in ([False, True] if args.ray else [False]):
            for w in args.workers:
                r = bench_sweep(args.points, w, Path(tmp) / f"{'ray' if ray else 'local'}{w}", ray=ray)
                where = f"Ray, {w} CPU{'s' if w > 1 else ''}" if ray else f"{w} worker{'s' if w > 1 else ''}"
                print(f"{r['points']} points ({r['failed']} failed), {where}: {r['wall_s']:.1f} s, "
                      f"{r['points_per_minute']:.0f} points/min", flush=True)


if __name__ == "__main__":
    main()
