"""How long ``capsim plan`` takes on the embedded default workload (sim/scenarios/default.yaml:
Llama-3.1-8B, chat-like Poisson traffic at 12 requests/s, ttft_p99 <= 1 s and tpot_p99 <= 50 ms)
over four hardware options × two quantizations × TP 1 and 2, and how many simulations its search ran.

    python benchmarks/bench_plan.py                    # every core
    python benchmarks/bench_plan.py --workers 1 --keep out/plan

The aim of the planner's issue on the 2-core CI machine: plan and report together in under
3 minutes. The wall time is that of the command as a user runs it (``python -m sim.cli plan``
in a fresh process: interpreter start-up and imports included); the simulations are the plan's
own count (plan.json's ``simulations``: capacity probes, load-curve points, fleet confirmations).
A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["bench_plan"]

HARDWARE = ("h100-sxm", "h200", "a100-80gb", "l40s")
QUANTIZATIONS = ("bf16", "fp8")
TP = (1, 2)


def bench_plan(workers: int | None, out: Path) -> dict:
    """``capsim plan`` of the default scenario over :data:`HARDWARE` × :data:`QUANTIZATIONS` × :data:`TP`,
    then ``capsim report`` of the plan (each timed as a fresh process)."""
    cmd = [sys.executable, "-m", "sim.cli", "plan", "--hardware", ",".join(HARDWARE), "--quant", ",".join(QUANTIZATIONS),
           "--tp", ",".join(map(str, TP)), "--slo", "ttft_p99=1s", "--slo", "tpot_p99=50ms", "-o", str(out), "-q"]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    data = json.loads((out / "plan.json").read_text())
    t1 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sim.cli", "report", str(out), "-o", str(out.parent / "report"), "-q"],
                   check=True)
    report_wall = time.perf_counter() - t1
    rec = data["recommendation"]
    rows = {r["stage"] for r in data["per_hardware"]}
    return {"what": f"plan ({len(HARDWARE)} hardware x {len(QUANTIZATIONS)} quantizations x tp {TP})",
            "wall_s": wall, "search_wall_s": data["wall_s"], "report_wall_s": report_wall,
            "plan_and_report_wall_s": wall + report_wall, "simulations": data["simulations"],
            "options": len(HARDWARE) * len(QUANTIZATIONS) * len(TP),
            "recommendation": None if rec is None else f"{rec['option']} x{rec['replicas']} ${rec['usd_per_hour']:.2f}/h",
            "per_hardware_stages": ",".join(sorted(s or "-" for s in rows))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
    ap.add_argument("--keep", type=Path, default=None, help="write the plan here (default: a temporary directory)")
    args = ap.parse_args()
    env_root = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = env_root + os.pathsep + os.environ.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as tmp:
        r = bench_plan(args.workers, args.keep or Path(tmp) / "plan")
    print(", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()), flush=True)


if __name__ == "__main__":
    main()
