"""The document of a sweep (``capsim report SWEEP_DIR``; sim/analysis/sweep_report.py): a small real
sweep (two hardware options x two loads x two TPs, two repeats; TP 3 is invalid for the model) is
rendered; its best configuration is the one with the most good output tokens per dollar, checked
against a computation of our own from the Parquet dataset; the counts of finished, failed and
invalid points and their reasons are in it; the heatmap's SVG carries the best value; bad sweep
directories are one line and exit 2. Points are tiny (60 requests, roofline profile)."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from sim.analysis.executor import InlineExecutor
from sim.analysis.report import SWEEP_FIELDS, ReportError, report
from sim.analysis.sweep import run_sweep
from sim.cli.app import app

BASE = {  # at most 8 sequences in a batch, so that the L40S at 16 requests/s is overloaded (its admission queue grows)
    "profile": {"kind": "roofline"}, "engine": {"max_num_seqs": 8},
    "workload": {"arrival": {"process": "poisson", "rate_per_s": 8.0}, "num_requests": 60,
                 "classes": [{"name": "chat", "prompt_tokens": {"dist": "lognormal", "mean": 300, "p99": 1200, "max": 2000},
                              "output_tokens": {"dist": "lognormal", "mean": 40, "p99": 150, "max": 300},
                              "slo": {"ttft_s": 0.5, "tpot_s": 0.05}}]},
}
SPEC = {"base": BASE, "axes": {"hardware": ["h100-sxm", "l40s"], "workload.arrival.rate_per_s": [4.0, 16.0],
                               "tp": [1, 3]}, "repeats": 2, "seed": 5}
SECTIONS = ("## 1. The question", "## 2. The best configuration by goodput per dollar", "## 3. The sweep",
            "## 4. The base scenario's workload", "## 5. The results", "## 6. Assumptions", "## 7. Profile provenance")


class _Cells(HTMLParser):
    """The data-value of every (data-role, data-field) cell of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], object] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("data-role") and a.get("data-field"):
            self.cells[(a["data-role"], a["data-field"])] = json.loads(a["data-value"] or "null")


@pytest.fixture(scope="module")
def sweep_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    run = run_sweep(SPEC, root / "sweep", executor=InlineExecutor())
    written = report(root / "sweep", root / "report")
    return root / "sweep", root / "report", written, run


def _goodput_per_usd_by_configuration(sweep_dir: Path) -> tuple[dict[tuple[str, float], float], set]:
    """Our own reading of the dataset: per (hardware, rate), the mean over repeats of good output
    tokens per second x 3600 / dollars per hour; and the configurations a repeat found overloaded."""
    rows = ds.dataset(sweep_dir / "points", partitioning="hive").to_table().to_pylist()
    per: dict[tuple[str, float], list[float]] = defaultdict(list)
    overloaded = set()
    for r in rows:
        key = (r["hardware"], r["workload.arrival.rate_per_s"])
        per[key].append(r["throughput.good_output_tokens_per_s"] * 3600 / r["cost.usd_per_hour"])
        if r["load.overloaded"]:
            assert r["load.verdict"] == "overloaded"
            overloaded.add(key)
    return {k: sum(v) / len(v) for k, v in per.items()}, overloaded


def test_the_best_configuration_has_the_most_good_output_tokens_per_dollar(sweep_report):
    sweep_dir, out, _, _ = sweep_report
    ours, overloaded = _goodput_per_usd_by_configuration(sweep_dir)
    assert len(ours) == 4  # the TP-3 points never ran
    assert overloaded == {("l40s", 16.0)}  # not ranked: its figures say how long the run was
    ranked = sorted((k for k in ours if k not in overloaded), key=ours.get, reverse=True)
    page = _Cells()
    page.feed((out / "report.html").read_text())
    cells = page.cells
    for role, key in (("recommendation", ranked[0]), ("runner-up", ranked[1])):
        assert (cells[(role, "hardware")], cells[(role, "workload.arrival.rate_per_s")]) == key
        assert cells[(role, "good_output_tokens_per_usd")] == pytest.approx(ours[key], rel=1e-12)
        assert cells[(role, "repeats")] == 2
    for key, _ in SWEEP_FIELDS:
        assert ("recommendation", key) in cells, key
    assert ours[ranked[0]] > ours[ranked[1]] > 0
    # the heatmap over hardware and rate writes the best value in its cell (the SVG keeps text as text)
    svg = (out / "sweep_heatmap.svg").read_text()
    best = ours[ranked[0]]
    assert (f"{best / 1e6:.3g}M" if best >= 1e6 else f"{best / 1e3:.3g}k") in svg


def test_the_markdown_has_every_section_the_spec_and_each_point_status(sweep_report):
    sweep_dir, out, written, run = sweep_report
    md = (out / "report.md").read_text()
    at = [md.find(s) for s in SECTIONS]
    assert all(i >= 0 for i in at) and at == sorted(at), [s for s, i in zip(SECTIONS, at) if i < 0]
    assert run.ok == 8 and run.invalid == 8
    assert "16 points: **8** finished, **0** failed, **8** invalid" in md
    assert md.count("| invalid |") == 8 and "tp = 3" in md  # every invalid point with the validator's reason
    assert "| `tp` | 1, 3 | no |" in md and "| `hardware` | h100-sxm, l40s | yes |" in md  # tp did not vary where it ran
    assert "vary with hardware, workload.arrival.rate_per_s?" in md and "llama-3.1-8b" in md
    assert "1 of 4 configurations had a repeat overloaded" in md and md.count("| overloaded | derived |") == 1
    names = {p.name for p in written}
    for stem in ("sweep_heatmap", "sweep_metrics_0", "sweep_metrics_1", "workload_arrivals", "workload_lengths"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names, stem
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert not re.match(r"[a-z]+:|/", image) and (out / image).is_file(), image
    assert md.count("| 4 points | derived |") == 2  # each hardware's roofline, with the points it priced


def test_a_failed_point_is_listed_with_its_error(tmp_path):
    spec = {"base": BASE, "axes": {"workload.arrival": [{"process": "poisson", "rate_per_s": 8.0},
                                                        {"process": "trace", "path": str(tmp_path / "missing.csv")}]}}
    run_sweep(spec, tmp_path / "sweep", executor=InlineExecutor())
    report(tmp_path / "sweep", tmp_path / "out", formats=["md"])
    md = (tmp_path / "out" / "report.md").read_text()
    assert "**1** finished, **1** failed" in md and "| failed |" in md and "missing.csv" in md


@pytest.mark.parametrize("case, match", [
    ("corrupt", r"sweep.json: not valid JSON"),
    ("not-a-spec", r"sweep.json: holds a JSON list, not an object of keys"),
    ("no-axes", r"sweep.json: not a sweep.s spec"),
    ("no-manifest", r"manifest.parquet: missing"),
    ("bad-manifest", r"manifest.parquet: not a readable Parquet file"),
])
def test_a_bad_sweep_directory_is_one_line_and_exit_2(tmp_path, case, match):
    d = tmp_path / "src"
    d.mkdir()
    (d / "sweep.json").write_text({"corrupt": '{"base": {', "not-a-spec": "[1, 2]", "no-axes": '{"base": {}}'}.get(case, json.dumps(SPEC)))
    if case == "bad-manifest":
        (d / "manifest.parquet").write_text("not parquet")
    with pytest.raises(ReportError, match=match):
        report(d, tmp_path / "out")
    result = CliRunner().invoke(app, ["report", str(d), "-o", str(tmp_path / "out"), "--quiet"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and re.search(match, lines[0]), result.output


class _Refs(HTMLParser):
    """Every element's tag and its src or href."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]


def test_the_sweep_html_loads_nothing_from_elsewhere(sweep_report):
    _, out, _, _ = sweep_report
    page = _Refs()
    page.feed((out / "report.html").read_text())
    assert page.refs and all(not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:|//|/", r) for r in page.refs), page.refs
    assert all((out / r).is_file() for r in page.refs)
    assert not {"script", "link", "iframe", "object"} & set(page.tags)
