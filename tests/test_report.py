"""The capacity-planning document (sim.analysis.report, ``capsim report``): a saved plan built by
hand from its contract (plan.json, options.parquet, curves.parquet, hourly.parquet: small,
realistic synthetic values) is rendered; the Markdown has every section in order, the HTML's
recommendation figures equal plan.json's (read from the data attributes the template puts there
for this), nothing in the HTML points outside its folder, and headless Chromium shows a page that
is not blank with every image loaded. A load curve and a comparison directory give the document
with the sections that apply; bad input is one line and exit code 2."""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from sim import default_scenario, load_scenario
from sim.analysis.curve import POINT_SCHEMA
from sim.analysis.report import REC_FIELDS, ReportError, report
from sim.cli.app import app

CHROMIUM = Path("/usr/bin/chromium")
SECTIONS = ("## 1. The question", "## 2. The recommendation", "## 3. The workload", "## 4. The options compared",
            "## 5. Deployment patterns and break-even", "## 6. Assumptions", "## 7. Profile provenance")


# ------------------------------------------------------------------------------- the plan fixture


def _scenario(time_varying: bool) -> dict[str, Any]:
    data = default_scenario().to_dict()
    if time_varying:  # a day of diurnal chat: the report draws a sample of it, and the rate from its profile
        data["workload"] = {**data["workload"], "duration_s": 86_400.0, "num_requests": None,
                            "arrival": {"process": "poisson", "rate_profile": {"shape": "diurnal", "mean_rate_per_s": 12.0,
                                                                               "peak_to_trough": 3.0}}}
        data["measurement"] = {**data["measurement"], "warmup_s": 300.0}
    return load_scenario(data).to_dict()


def _curve_points(option: str, knee: float, usd_per_hour: float, seeds: int = 2) -> list[dict[str, Any]]:
    """Load-curve points shaped like a real curve's: latencies climbing towards the knee, null
    percentiles where saturated, throughput flat past it."""
    rng = np.random.default_rng(sum(option.encode()))
    rows = []
    for f in (0.1, 0.25, 0.4, 0.55, 0.7, 0.8, 0.87, 0.93, 1.0, 1.07, 1.15, 1.3):
        rate = knee * f
        for seed in range(seeds):
            row = {c: None for c in POINT_SCHEMA.names}
            saturated = f > 1.0
            rho = min(f, 0.97)
            tok = min(rate, knee) * 210 * (1 + 0.02 * rng.standard_normal())
            row.update(rate_per_s=rate, seed=seed, saturated=saturated, meets_slo=f <= 0.87,
                       slo_failures=None if f <= 0.87 else "ttft_p99 over 1 s", arrival_rate_per_s=rate,
                       departure_rate_per_s=min(rate, knee), output_tokens_per_s=tok, total_tokens_per_s=tok * 6.5,
                       requests_per_s=min(rate, knee), goodput_requests_per_s=min(rate, knee) * (1 - rho / 10),
                       slo_attainment=1 - rho / 10, busy_fraction=rho, completed=1000, measured=900,
                       usd_per_hour=usd_per_hour, usd_per_million_output_tokens=usd_per_hour / (tok * 3600) * 1e6,
                       usd_per_million_good_output_tokens=usd_per_hour / (tok * 0.95 * 3600) * 1e6)
            if not saturated:
                for m, base in (("ttft", 0.12), ("tpot", 0.018), ("itl", 0.018), ("e2e", 4.0)):
                    for q, k in (("p50", 1.0), ("p90", 1.6), ("p95", 1.8), ("p99", 2.4), ("mean", 1.1)):
                        row[f"{m}_{q}_s"] = base * k / (1 - rho) * (1 + 0.03 * rng.random())
            rows.append(row)
    return rows


def _option(hw: str, quant: str, tp: int, *, price: float, knee: float | None, rank: int | None, replicas: int | None,
            reason: str | None = None, fits: bool = True, kind: str = "derived") -> dict[str, Any]:
    meets = knee is not None
    usd_h = price * tp * replicas if replicas else None
    return {"option": f"{hw} {quant} tp{tp} seqs256 tok8192", "hardware": hw, "quantization": quant, "tp": tp,
            "max_num_seqs": 256, "max_num_batched_tokens": 8192, "fits": fits, "meets_slo": meets, "reason": reason,
            "profile_kind": kind if fits else None,
            "profile_source": (f"{hw} GEMM efficiencies measured on real kernels" if kind == "measured" else
                               f"roofline from calibration/data/gpus.toml ({hw} datasheet)") if fits else None,
            "max_rate_per_replica_per_s": knee * 0.87 if meets else None, "replicas": replicas,
            "gpus": replicas * tp if replicas else None, "usd_per_hour": usd_h,
            "usd_per_million_output_tokens": price * tp / (knee * 0.87 * 210 * 3600) * 1e6 if meets else None,
            "headroom": knee * 0.87 * replicas / 12.0 if meets else None,
            "utilisation": 0.61 if meets else None, "waste_share": 0.27 if meets else None,
            "confirmed": True if meets else None, "ttft_p99_s": 0.48 if meets else None,
            "tpot_p99_s": 0.031 if meets else None, "rank": rank}


def make_plan(path: Path, *, time_varying: bool = True) -> dict[str, Any]:
    """A saved plan directory at ``path``, after /tmp/s26/plan-contract.md; returns plan.json's data."""
    opts = [
        _option("h100-sxm", "fp8", 1, price=3.93, knee=9.5, rank=1, replicas=2, kind="measured"),
        _option("h200", "fp8", 1, price=4.52, knee=11.0, rank=2, replicas=2),
        _option("a100-80gb", "bf16", 1, price=2.74, knee=3.1, rank=3, replicas=5),
        _option("l40s", "fp8", 1, price=1.89, knee=None, rank=None, replicas=None,
                reason="cannot meet the SLOs at any rate tried (tpot_p99 0.071 s over 0.05 s)"),
        _option("l4", "bf16", 2, price=0.8, knee=None, rank=None, replicas=None, fits=False,
                reason="does not fit: weights need 16.1 GB per GPU of 21.6 GB usable and leave no KV cache"),
    ]
    rec, runner = opts[0], opts[1]
    plan = {
        "kind": "capsim-plan", "version": 1, "created": "2025-01-01T12:00:00+00:00", "capsim_version": "0.1.0",
        "question": "Cheapest fleet for llama-3.1-8b serving 12 req/s of chat with ttft_p99<=1s, tpot_p99<=50ms",
        "inputs": {"scenario": _scenario(time_varying), "slos": ["ttft_p99=1s", "tpot_p99=50ms"],
                   "target_rate_per_s": None if time_varying else 12.0, "time_varying": time_varying,
                   "search": {"hardware": ["h100-sxm", "h200", "a100-80gb", "l40s", "l4"], "quantization": ["bf16", "fp8"],
                              "tp": [1, 2], "engine": {"max_num_seqs": [256], "max_num_batched_tokens": [8192]}},
                   "seeds": 2, "confirm_seeds": [1000, 1001],
                   "prices": {o["hardware"]: {"usd_per_gpu_hour": p, "source": f"catalog on-demand price of {o['hardware']} (example)"}
                              for o, p in zip(opts, (3.93, 4.52, 2.74, 1.89, 0.8))},
                   "deployment": {"managed_api_usd_per_million_input": 0.2, "managed_api_usd_per_million_output": 0.6}},
        "recommendation": rec, "runner_up": runner,
        "margin": {"usd_per_hour": runner["usd_per_hour"] - rec["usd_per_hour"],
                   "share": (runner["usd_per_hour"] - rec["usd_per_hour"]) / rec["usd_per_hour"]},
        "per_hardware": opts, "infeasible": None,
        "time_varying": ({"scale_up_delay_s": 120.0, "static_replicas": 3, "usd_per_day_static": 283.0,
                          "usd_per_day_resized": 201.4, "overprovisioned_share": 0.29} if time_varying else None),
        "deployments": [], "breakeven": None,
        "provenance": [{"option": o["option"], "profile_kind": o["profile_kind"], "profile_source": o["profile_source"],
                        "held_out_error": "p50 6.1%, p90 11% (n=40)" if o["profile_kind"] == "measured" else None}
                       for o in opts if o["fits"]],
        "simulations": 187, "wall_s": 141.5, "notes": ["a note from the planner"],
    }
    path.mkdir(parents=True)
    (path / "plan.json").write_text(json.dumps(plan, indent=2))
    pq.write_table(pa.Table.from_pylist(opts), path / "options.parquet")
    points = []
    for o, knee in zip(opts[:3], (9.5, 11.0, 3.1)):
        points += [{"option": o["option"], **p} for p in _curve_points(o["option"], knee, o["usd_per_hour"] / o["replicas"])]
    schema = pa.schema([("option", pa.string()), *POINT_SCHEMA])
    pq.write_table(pa.Table.from_pylist(points, schema=schema), path / "curves.parquet")
    (path / "fleet.yaml").write_text("# the recommended fleet (not read by the report)\n")
    if time_varying:
        hours = np.arange(24)
        rate = 12 * (1 + 0.5 * np.cos((hours - 14) / 24 * 2 * np.pi))
        needed = np.ceil(rate / (9.5 * 0.87)).astype(int)
        pq.write_table(pa.table({"hour": hours, "rate_per_s": rate, "replicas_needed": needed,
                                 "replicas_resized": np.maximum(needed, np.roll(needed, 1)),
                                 "replicas_static": np.full(24, 3), "usd_static": np.full(24, 3 * 3.93),
                                 "usd_resized": np.maximum(needed, np.roll(needed, 1)) * 3.93}), path / "hourly.parquet")
    return plan


@pytest.fixture(scope="module")
def plan_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, list[Path]]:
    root = tmp_path_factory.mktemp("plan")
    plan = make_plan(root / "plan")
    written = report(root / "plan", root / "report")
    return plan, root / "report", written


# ------------------------------------------------------------------------------------ the HTML


class _Page(HTMLParser):
    """The attributes of every element of a page, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _page(path: Path) -> _Page:
    p = _Page()
    p.feed(path.read_text())
    return p


def test_the_markdown_has_every_section_in_order(plan_report):
    _, out, written = plan_report
    md = (out / "report.md").read_text()
    at = [md.find(s) for s in SECTIONS]
    assert all(i >= 0 for i in at), [s for s, i in zip(SECTIONS, at) if i < 0]
    assert at == sorted(at)
    assert "Cheapest fleet for llama-3.1-8b serving 12 req/s" in md
    assert "Deployment patterns: not computed" in md and "Break-even: not computed" in md
    assert "does not fit: weights need 16.1 GB" in md  # every option with its reason
    assert "p50 6.1%, p90 11% (n=40)" in md  # held-out error where known
    assert "catalog on-demand price of h100-sxm (example)" in md  # prices with their sources
    assert "engine.max_num_seqs" in md and "ttft_p99=1s" in md  # engine settings and SLOs
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):  # every image is a relative file beside it
        assert not re.match(r"[a-z]+:|/", image) and (out / image).is_file(), image
    names = {p.name for p in written}
    for stem in ("workload_arrivals", "workload_lengths", "option_curves", "latency_throughput", "cost_load",
                 "waste_share", "fleet_by_hour"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names, stem
    assert written[:2] == [out / "report.html", out / "report.md"]


def test_the_recommendation_in_the_html_equals_plan_json(plan_report):
    plan, out, _ = plan_report
    cells = {(a["data-role"], a["data-field"]): json.loads(a["data-value"])
             for _, a in _page(out / "report.html").elements if a.get("data-role") and a.get("data-field")}
    for role, row in (("recommendation", plan["recommendation"]), ("runner-up", plan["runner_up"])):
        for key in ("option", *(k for k, _ in REC_FIELDS)):
            assert cells[(role, key)] == row[key], (role, key)
    assert cells[("margin", "usd_per_hour")] == plan["margin"]["usd_per_hour"]
    for key in ("hardware", "quantization", "tp", "replicas", "usd_per_hour", "usd_per_million_output_tokens",
                "headroom", "utilisation", "waste_share"):  # the numbers the brief names, at least
        assert ("recommendation", key) in cells


def test_the_html_loads_nothing_from_elsewhere(plan_report):
    _, out, _ = plan_report
    page = _page(out / "report.html")
    refs = [a[k] for _, a in page.elements for k in ("src", "href") if a.get(k)]
    assert refs and all(not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:|//|/", r) for r in refs), refs
    assert all((out / r).is_file() for r in refs)
    assert not any(tag in ("script", "link", "iframe", "object") for tag, _ in page.elements)
    assert "@import" not in (out / "report.html").read_text() and "url(" not in (out / "report.html").read_text()


def test_a_plan_without_time_varying_traffic_or_a_runner_up_says_so(tmp_path):
    plan = make_plan(tmp_path / "plan", time_varying=False)
    plan["runner_up"], plan["margin"] = None, None
    (tmp_path / "plan" / "plan.json").write_text(json.dumps(plan))
    written = report(tmp_path / "plan", tmp_path / "out", formats=("md",))
    md = (tmp_path / "out" / "report.md").read_text()
    assert "No runner-up meets the SLOs" in md and "not computed (no runner-up)" in md
    assert "fleet_by_hour" not in md and not (tmp_path / "out" / "report.html").exists()
    assert all(p.exists() for p in written)


def test_an_infeasible_plan_names_the_binding_constraint(tmp_path):
    plan = make_plan(tmp_path / "plan", time_varying=False)
    plan.update(recommendation=None, runner_up=None, margin=None,
                infeasible={"binding_constraint": "memory", "detail": "no hardware holds the weights and a KV cache"})
    (tmp_path / "plan" / "plan.json").write_text(json.dumps(plan))
    report(tmp_path / "plan", tmp_path / "out", formats=("html",))
    text = "".join(_page(tmp_path / "out" / "report.html").text)
    assert "No configuration meets the SLOs" in text and "memory" in text and "no hardware holds the weights" in text


# ------------------------------------------------------------------- a curve and a comparison


def test_a_load_curve_directory_gives_its_limits(tmp_path):
    points = _curve_points("one", 9.5, 3.93)
    scen = load_scenario({**default_scenario().to_dict(), "workload": {
        **default_scenario().to_dict()["workload"], "duration_s": 60.0}, "measurement": {"warmup_s": 10.0}})
    d = tmp_path / "curve"
    d.mkdir()
    pq.write_table(pa.Table.from_pylist(points, schema=POINT_SCHEMA), d / "curve.parquet")
    (d / "curve.json").write_text(json.dumps({
        "scenario": scen.to_dict(), "slos": ["ttft_p99=1s"], "seeds": [0, 1],
        "provenance": {"kind": "measured", "headline": "H100", "source": "H100 GEMM efficiencies measured"},
        "max_rate_per_s": {"mean": 8.2, "min": 8.0, "max": 8.4, "per_seed": {"0": 8.0, "1": 8.4}, "rel_tol": 0.01,
                           "at_least": False},
        "saturation_rate_per_s": 9.5, "capacity_per_s": 9.6, "probe_capacity_per_s": 9.4,
        "reference": {"rate_per_s_per_replica": 8.2, "output_tokens_per_s_per_replica": 1722.0, "replicas": 1},
        "notes": [], "points": []}))
    report(d, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## 2. The answer: this configuration's limits" in md and "**8.2 requests/s**" in md
    assert "Deployment patterns: not computed (a load curve" in md
    assert "H100 GEMM efficiencies measured" in md
    html = _page(tmp_path / "out" / "report.html")
    assert [json.loads(a["data-value"]) for _, a in html.elements if a.get("data-field") == "max_rate_per_s"] == [8.2]
    assert {"latency_throughput.png", "cost_load.svg", "workload_lengths.png"} <= {p.name for p in (tmp_path / "out").iterdir()}


@pytest.fixture(scope="module")
def comparison_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real comparison of two options on a tiny workload (``capsim compare``, a few seconds)."""
    out = tmp_path_factory.mktemp("cmp") / "cmp"
    result = CliRunner().invoke(app, ["compare", "--hardware", "h100-sxm,h200", "--quant", "fp8", "--rate", "4",
                                      "--seeds", "1", "--workers", "1", "--slo", "ttft_p99=2s", "--quiet",
                                      "--set", "workload.duration_s=40", "--set", "measurement.warmup_s=5",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_a_comparison_recommends_its_cheapest_option_meeting_the_slos(comparison_dir, tmp_path):
    rows = pq.read_table(comparison_dir / "compare.parquet").to_pylist()
    meeting = [r for r in rows if r["meets_slo"]]
    result = CliRunner().invoke(app, ["report", str(comparison_dir), "-o", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert all(s in md for s in SECTIONS)
    cells = {(a["data-role"], a["data-field"]): json.loads(a["data-value"])
             for _, a in _page(tmp_path / "rep" / "report.html").elements if a.get("data-role")}
    assert meeting, "the tiny comparison should have an option that meets a 2 s TTFT"
    assert cells[("recommendation", "option")] == meeting[0]["option"]
    assert cells[("recommendation", "usd_per_hour")] == meeting[0]["usd_per_hour_fleet"]
    assert cells[("recommendation", "replicas")] == meeting[0]["replicas_needed"]
    assert "Deployment patterns: not computed (a comparison" in md


# ------------------------------------------------------------------------------ headless Chromium


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # no request log in the test output
        pass


# Added to a copy of the page (the report itself has no script): once everything has loaded, the
# images' state goes into an element that --dump-dom prints.
_CHECK = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                   .map(function (i) { return i.getAttribute("src"); });
  var out = document.createElement("pre");
  out.id = "image-check";
  out.textContent = JSON.stringify({images: imgs.length, broken: broken});
  document.body.appendChild(out);
});
</script>"""


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (Debian's chromium package: "
                                                  ".ci/run installs it when it runs as root or with sudo)")
def test_chromium_shows_the_page_with_every_image(plan_report, tmp_path):
    _, out, _ = plan_report
    site = tmp_path / "site"
    shutil.copytree(out, site)
    html = (site / "report.html").read_text()
    (site / "check.html").write_text(html.replace("</body>", _CHECK + "\n</body>"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        dom = _chromium(["--virtual-time-budget=10000", "--dump-dom", f"{base}/check.html"], tmp_path / "p1")
        shot = tmp_path / "shot.png"
        snap = _chromium([f"--screenshot={shot}", "--window-size=1280,2000", "--hide-scrollbars",
                          f"{base}/report.html"], tmp_path / "p2")
    finally:
        server.shutdown()
        server.server_close()
    m = re.search(r'<pre id="image-check">(.*?)</pre>', dom.stdout)
    assert m, f"no image check in the dumped page (chromium exit {dom.returncode}: {dom.stderr[-500:]})"
    check = json.loads(m.group(1).replace("&quot;", '"'))
    expected = len(re.findall(r"<img ", html))
    assert check == {"images": expected, "broken": []} and expected >= 7, check
    assert snap.returncode == 0 and shot.exists(), snap.stderr[-500:]
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    flat = pixels[..., :3].reshape(-1, 3)
    assert not np.all(flat == flat[0]), "the screenshot is one colour"
    assert (np.abs(flat - flat[0]).sum(axis=1) > 0.1).mean() > 0.02  # more than a speck on a white page


# -------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("case, match", [
    ("missing", "no such directory"),
    ("empty", "holds none of plan.json, compare.json, curve.json"),
    ("corrupt", r"plan.json: not valid JSON \(Expecting"),
    ("other-version", "format version 7; this capsim reads version 1"),
    ("no-options", "options.parquet: missing"),
    ("wrong-type", "plan.json: recommendation is list, not an option row or null"),
    ("bad-table", r"options: column 'waste_share' is string, not a number"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, case, match):
    d = tmp_path / "src"
    if case != "missing":
        d.mkdir()
    if case == "corrupt":
        (d / "plan.json").write_text('{"kind": "capsim-plan", "version": 1,')
    elif case == "other-version":
        (d / "plan.json").write_text(json.dumps({"kind": "capsim-plan", "version": 7}))
    elif case == "no-options":
        (d / "plan.json").write_text(json.dumps({"kind": "capsim-plan", "version": 1, "question": "q",
                                                 "inputs": {}, "recommendation": None}))
    elif case == "wrong-type":
        (d / "plan.json").write_text(json.dumps({"kind": "capsim-plan", "version": 1, "question": "q",
                                                 "inputs": {}, "recommendation": [1, 2]}))
    elif case == "bad-table":
        make_plan(d / "plan", time_varying=False)
        d = d / "plan"
        table = pq.read_table(d / "options.parquet")
        i = table.column_names.index("waste_share")
        pq.write_table(table.set_column(i, "waste_share", pa.array(["lots"] * table.num_rows)), d / "options.parquet")
    with pytest.raises(ReportError, match=match):
        report(d, tmp_path / "out")
    result = CliRunner().invoke(app, ["report", str(d), "-o", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("capsim: error: ") and re.search(match, lines[0]), result.output


def test_the_help_teaches():
    result = CliRunner().invoke(app, ["report", "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0
    for words in ("plan.json", "compare.json", "curve.json", "report.html", "capsim report"):
        assert words in result.output, words
