"""capsim's simulator: scenarios, the SimPy engine, records and the command line.

    from sim import Scenario, simulate, load_scenario, default_scenario
    result = simulate(default_scenario())
    result.summary["latency_s"]["ttft"]["p99"], result.summary["cost"]["usd_per_million_output_tokens"]
    curve = load_curve(default_scenario(), slos=["ttft_p99=1s"])   # curve.max_rate, curve.points
    options = compare(default_scenario(), hardware=["h100-sxm", "l40s"], quantization=["bf16", "fp8"])
    p = plan(default_scenario(), slos=["ttft_p99=1s"], hardware=["h100-sxm", "l40s"], quantization=["bf16", "fp8"])
    p.write("my-plan"); report("my-plan", "my-report")                  # report.html, report.md, charts
    table = sweep("sweep.yaml", "out/sweep", workers=2)               # resumable; one Parquet partition per point

Heavy modules load on first use so that ``import sim`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Comparison", "DeploymentInputs", "LoadCurve", "Plan", "SLOTarget", "Scenario", "ScenarioError", "SimResult",
           "WasteReference", "compare", "default_scenario", "load_curve", "load_plan", "load_scenario", "parse_slo", "plan",
           "report", "simulate", "sweep", "waste_of"]

if TYPE_CHECKING:
    from sim.config import Scenario, default_scenario, load_scenario
    from sim.engine import simulate
    from sim.errors import ScenarioError
    from sim.analysis.compare import Comparison, compare
    from sim.analysis.curve import LoadCurve, load_curve
    from sim.analysis.plan import DeploymentInputs, Plan, load_plan, plan
    from sim.analysis.report import report
    from sim.analysis.sweep import sweep
    from sim.results.records import SimResult
    from sim.analysis.slo import SLOTarget, parse_slo
    from sim.results.waste import WasteReference, waste_of

_WHERE = {"Scenario": "sim.config", "default_scenario": "sim.config", "load_scenario": "sim.config",
          "simulate": "sim.engine", "ScenarioError": "sim.errors", "SimResult": "sim.results.records",
          "load_curve": "sim.analysis.curve", "LoadCurve": "sim.analysis.curve", "compare": "sim.analysis.compare", "Comparison": "sim.analysis.compare",
          "SLOTarget": "sim.analysis.slo", "parse_slo": "sim.analysis.slo", "WasteReference": "sim.results.waste", "waste_of": "sim.results.waste",
          "plan": "sim.analysis.plan", "Plan": "sim.analysis.plan", "load_plan": "sim.analysis.plan",
          "DeploymentInputs": "sim.analysis.plan", "report": "sim.analysis.report", "sweep": "sim.analysis.sweep"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'sim' has no attribute {name!r}")
