"""Benchmark smoke test: off by default (pyproject's addopts deselect ``benchmark``).

Run it with ``python -m pytest -m benchmark benchmarks``.
"""

from __future__ import annotations

import pytest

from bench_sim import measure
from bench_workload import test_generate_1m_requests_under_target  # noqa: F401  (collected from here)


@pytest.mark.benchmark
def test_default_scenario_2000_requests_completes() -> None:
    r = measure(2000)
    assert r["arrived"] == 2000
    assert r["completed"] == 2000, r
    assert r["rejected"] == 0 and r["in_flight"] == 0, r
    assert r["wall_s"] > 0 and r["peak_rss_mb"] > 0, r
