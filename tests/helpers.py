"""Small builders shared by the tests: scenarios from a few keys, and hand-made request tables."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from sim import Scenario, load_scenario



def scenario(**overrides: Any) -> Scenario:
    """A scenario with a constant 1 s step (explicit profile) and one class of 1-token requests,
    with nested keys in ``overrides`` merged over it (dicts merge, everything else replaces)."""
    base: dict[str, Any] = {
        "profile": {"kind": "explicit", "fixed_s": 1.0, "kv_capacity_tokens": 1 << 20},
        "workload": {"arrival": {"rate_per_s": 1.0}, "num_requests": 10,
                     "classes": [{"name": "x", "prompt_tokens": {"dist": "fixed", "value": 1},
                                  "output_tokens": {"dist": "fixed", "value": 1}}]},
    }
    return load_scenario(_merge(base, overrides))


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """``b`` over ``a``; an ``arrival`` of another ``process`` replaces the base arrival whole."""
    out = dict(a)
    for k, v in b.items():
        other_process = k == "arrival" and isinstance(v, dict) and v.get("process", "poisson") != "poisson"
        out[k] = _merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) and not other_process else v
    return out


def requests(arrival, prompt, output, cls="x", priority=0) -> pa.Table:
    """A RequestTable from parallel lists (scalars broadcast); the optional columns left out."""
    n = len(arrival)
    def col(v, dtype):
        return np.broadcast_to(np.asarray(v, dtype), (n,)).copy()
    return pa.table({
        "request_id": np.arange(n, dtype=np.int64),
        "arrival_s": col(arrival, np.float64),
        "prompt_tokens": col(prompt, np.int64),
        "output_tokens": col(output, np.int64),
        "class": pa.array(list(np.broadcast_to(np.asarray(cls, object), (n,))), pa.string()),
        "priority": col(priority, np.int64),
    })


def iteration_log(result, *cols: str) -> list[tuple]:
    """The iteration table as a list of row tuples (for exact comparison)."""
    t = result.iterations
    return list(zip(*(t.column(c).to_pylist() for c in cols)))


def run_app(*args: object):
    """``capsim ARGS`` in-process through typer's CliRunner (stdout and stderr kept apart)."""
    from typer.testing import CliRunner

    from sim.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *needles: str) -> None:
    """The CLI failed the way user errors must: exit 2, one ``capsim: error:`` line with ``needles``."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("capsim: error: "), result.stderr
    for n in needles:
        assert n in lines[0], lines[0]


# Llama-3.1-8B on one H100, priced by the roofline, short chat-like requests at 10/s: a few hundred
# requests per run, the workload of the comparison and planner tests (tests/test_compare.py,
# tests/test_plan.py).
SMALL_CHAT: dict[str, Any] = {
    "model": "llama-3.1-8b",
    "quantization": "bf16",
    "hardware": "h100-sxm",
    "profile": {"kind": "roofline"},
    "engine": {"max_num_seqs": 64, "max_num_batched_tokens": 2048},
    "workload": {"arrival": {"rate_per_s": 10.0}, "num_requests": 300,
                 "classes": [{"name": "chat", "prompt_tokens": {"dist": "uniform", "low": 100, "high": 600},
                              "output_tokens": {"dist": "uniform", "low": 20, "high": 120},
                              "slo": {"ttft_s": 0.5}}]},
}
