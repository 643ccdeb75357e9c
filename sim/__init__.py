"""capsim's simulator: scenarios, the SimPy engine, records and the command line.

    from sim import Scenario, simulate, load_scenario, default_scenario
    result = simulate(default_scenario())
    result.summary["latency_s"]["ttft"]["p99"]

Heavy modules load on first use so that ``import sim`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Scenario", "ScenarioError", "SimResult", "default_scenario", "load_scenario", "simulate"]

if TYPE_CHECKING:
    from sim.config import Scenario, default_scenario, load_scenario
    from sim.engine import simulate
    from sim.errors import ScenarioError
    from sim.records import SimResult

_WHERE = {"Scenario": "sim.config", "default_scenario": "sim.config", "load_scenario": "sim.config",
          "simulate": "sim.engine", "ScenarioError": "sim.errors", "SimResult": "sim.records"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'sim' has no attribute {name!r}")
