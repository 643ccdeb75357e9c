"""Charts of load curves and comparisons (sim.analysis.charts): every chart writes a PNG and an SVG that are
not blank, name their axes with units and carry the caption; SLOs and saturation are marked;
saturated-only and null-heavy tables still draw; an empty table is a one-line ValueError.

The SVGs keep their text as text, so the tests read labels straight out of them. Each chart of the
main set is drawn once per module (matplotlib's saving is what costs time here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest

from sim.analysis.charts import (WASTE_PARTS, cost_load_chart, latency_throughput_chart, waste_by_option_chart,
                        waste_by_window_chart)

# Long enough to wrap over several lines; its first and last words and its dollars are checked.
CAPTION = ("scenario chat.yaml, llama-3.1-8b on h100-sxm fp8 tp1, 2 replicas; profile: roofline from "
           "calibration/data/gpus.toml (H100 SXM datasheet), priced on-demand at $3.00/GPU-hour, owned "
           "alternative $2.10/GPU-hour; workload: chat preset fitted to the Azure 2023 conversation trace; "
           "2 seeds per rate, 600 s measured after 60 s of warm-up; capsim 0.1.0 endofcaption")
SLOS = (SimpleNamespace(metric="ttft", stat="p99", limit_s=1.0),
        SimpleNamespace(metric="tpot", stat="p99", limit_s=0.06),
        SimpleNamespace(metric="tpot", stat="p90", limit_s=0.045, cls="chat"))
KNEE = 20.0  # requests/s where the synthetic curve saturates
_LATENCY_COLUMNS = [f"{m}_{q}_s" for m in ("ttft", "tpot", "itl", "e2e") for q in ("p50", "p90", "p99")]


def curve(rates=(1.0, 2.0, 5.0, 10.0, 15.0, 18.0, 25.0, 40.0), seeds: int = 2) -> pa.Table:
    """A load curve shaped like a real one: latencies that climb towards the knee, throughput that
    stops growing past it, and null percentiles on saturated rows."""
    rng = np.random.default_rng(7)
    rows = []
    for rate in rates:
        for seed in range(seeds):
            saturated = rate > KNEE
            rho = min(rate / KNEE, 0.95)
            tokens_per_s = min(rate, KNEE) * 200 * (1 + 0.02 * rng.standard_normal())
            row = {"rate_per_s": rate, "seed": seed, "saturated": saturated, "meets_slo": rho < 0.8,
                   "output_tokens_per_s": tokens_per_s, "requests_per_s": min(rate, KNEE),
                   "goodput_requests_per_s": min(rate, KNEE), "queue_mean_s": None if saturated else rho / (1 - rho),
                   "usd_per_hour": 6.0, "usd_per_million_output_tokens": 6.0 / (tokens_per_s * 3600) * 1e6,
                   "usd_per_million_good_output_tokens": 6.0 / (tokens_per_s * 0.9 * 3600) * 1e6}
            for col in _LATENCY_COLUMNS:
                base = 0.02 if col.startswith(("tpot", "itl")) else 0.1
                row[col] = None if saturated else base / (1 - rho) * (1 + 0.05 * rng.random())
            rows.append(row)
    return pa.Table.from_pylist(rows)


def options() -> pa.Table:
    def row(option, fits=True, meets=True, reason=None, parts=(40.0, 12.0, 1.0, 5.0, 14.0), usd=0.42, replicas=3):
        keys = [f"{p.key}_gpu_h" for p in WASTE_PARTS]
        return {"option": option, "fits": fits, "meets_slo": meets, "reason": reason,
                "max_rate_per_replica_per_s": 20.0 if fits else None, "usd_per_million_output_tokens": usd,
                "replicas_needed": replicas, **dict(zip(keys, parts))}

    return pa.Table.from_pylist([
        row("h100-sxm fp8 tp1"),
        row("h200 bf16 tp1", parts=(38.0, 10.0, None, 6.0, 18.0), usd=0.55),
        row("l40s int4-awq tp2", meets=False, reason="ttft_p99 above 1 s at every rate",
            parts=(None,) * 5, usd=None, replicas=None),
        row("a100-40gb bf16 tp1", fits=False, meets=False, reason="weights and one sequence's KV exceed 40 GB",
            parts=(None,) * 5, usd=None, replicas=None),
    ])


def windows(span_s: float, window_s: float) -> dict[str, np.ndarray]:
    """Waste per window over ``span_s`` with a daily swing, as a dict of columns (GPU-seconds)."""
    start = np.arange(0.0, span_s, window_s)
    load = 0.5 + 0.4 * np.sin(2 * np.pi * start / 86400)
    provisioned = 4 * window_s
    cols = {"useful_gpu_s": 0.6 * load, "under_filled_gpu_s": 0.2 * load, "recompute_gpu_s": np.full(start.size, 0.01),
            "idle_gpu_s": 0.3 * (1 - load)}
    cols["over_provisioned_gpu_s"] = 1 - sum(cols.values())
    return {"window_start_s": start, "window_s": np.full(start.size, window_s),
            **{k: provisioned * v for k, v in cols.items()}}


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """The four charts, each drawn once from ordinary tables."""
    out = tmp_path_factory.mktemp("charts")
    points = curve()
    return {
        "latency": latency_throughput_chart(points, out / "latency", CAPTION, SLOS),
        "cost": cost_load_chart(points, out / "cost", CAPTION, max_rate=15.5),
        "options": waste_by_option_chart(options(), out / "nested" / "options", CAPTION),
        "windows": waste_by_window_chart(pa.table(windows(12 * 3600, 1800)), out / "windows", CAPTION),
    }


def svg_text(paths: list[Path]) -> str:
    return paths[1].read_text(encoding="utf-8")


def assert_not_blank(png: Path) -> None:
    from matplotlib.image import imread

    pixels = imread(png)[..., :3]
    assert pixels.std() > 0.05, f"{png.name}: pixel spread {pixels.std():.4f}, looks blank"


CHARTS = ("latency", "cost", "options", "windows")


@pytest.mark.parametrize("chart", CHARTS)
def test_each_chart_writes_a_png_and_an_svg_that_are_not_blank(drawn: dict[str, list[Path]], chart: str) -> None:
    png, svg = drawn[chart]
    assert (png.suffix, svg.suffix) == (".png", ".svg") and png.stem == svg.stem == chart
    assert png.stat().st_size > 5000 and svg.stat().st_size > 5000
    assert_not_blank(png)
    assert svg.read_text(encoding="utf-8").lstrip().startswith("<?xml")


@pytest.mark.parametrize(("chart", "labels"), [
    ("latency", ["achieved output throughput (tokens/s)", "TTFT (s)", "TPOT (s)", "p50", "p90", "p99",
                 "min–max over seeds"]),
    ("cost", ["offered load (requests/s)", "$ per 1M output tokens", "all output tokens"]),
    ("options", ["(GPU-hours)", "hardware option", "h100-sxm fp8 tp1", "useful", "over-provisioned"]),
    ("windows", ["time since the start of the run (hours)", "GPU-hours per window, 30 min windows", "idle"]),
])
def test_axes_name_their_units_and_the_legend_its_series(drawn: dict[str, list[Path]], chart: str,
                                                         labels: list[str]) -> None:
    text = svg_text(drawn[chart])
    for label in labels:
        assert label in text, f"{chart}: {label!r} not in the SVG"


@pytest.mark.parametrize("chart", CHARTS)
def test_every_chart_carries_its_caption_wrapped_and_as_written(drawn: dict[str, list[Path]], chart: str) -> None:
    text = svg_text(drawn[chart])
    for word in ("chat.yaml,", "calibration/data/gpus.toml", "$3.00/GPU-hour,", "$2.10/GPU-hour;", "endofcaption"):
        assert word in text, f"{chart}: caption word {word!r} not in the SVG"
    assert "scenario chat.yaml" in text and CAPTION not in text  # starts as given, but wrapped over lines


def test_slo_lines_and_the_slo_limit_are_labelled(drawn: dict[str, list[Path]]) -> None:
    latency = svg_text(drawn["latency"])
    assert "SLO ttft_p99 ≤ 1 s" in latency and "SLO tpot_p99 ≤ 60 ms" in latency
    assert "SLO chat:tpot_p90 ≤ 45 ms" in latency
    assert "SLO limit (15.5 requests/s)" in svg_text(drawn["cost"])


def test_saturation_is_marked_from_the_lowest_rate_that_saturated(drawn: dict[str, list[Path]]) -> None:
    for chart in ("latency", "cost"):
        assert "saturated (offered ≥ 25 requests/s)" in svg_text(drawn[chart]), chart


def test_options_not_drawn_give_their_reason_and_missing_parts_are_named(drawn: dict[str, list[Path]]) -> None:
    text = svg_text(drawn["options"])
    assert "does not fit: weights and one sequence's KV exceed 40 GB" in text
    assert "misses the SLOs: ttft_p99 above 1 s at every rate" in text
    assert "72 GPU-h · $0.42/1M output tokens · 3 replicas" in text
    assert "72 GPU-h · $0.55/1M output tokens · 3 replicas · recompute n/a" in text  # null: drawn as 0


def test_the_waste_parts_have_the_same_colours_in_both_waste_charts(drawn: dict[str, list[Path]]) -> None:
    for chart in ("options", "windows"):
        text = svg_text(drawn[chart]).lower()
        for part in WASTE_PARTS:
            assert part.color.lower() in text, f"{chart}: {part.label} is not drawn in {part.color}"


def test_a_short_run_is_in_minutes_and_rows_or_columns_are_accepted(tmp_path: Path) -> None:
    cols = windows(3600, 300)
    rows = pa.table(cols).to_pylist()
    rows[3]["window_start_s"] = None  # left out, not a crash
    rows[4]["idle_gpu_s"] = None  # counts as 0
    paths = waste_by_window_chart(rows, tmp_path / "w", "short run")
    text = svg_text(paths)
    assert "time since the start of the run (minutes)" in text and "5 min windows" in text
    assert_not_blank(paths[0])


def test_the_same_chart_gives_the_same_svg_bytes(drawn: dict[str, list[Path]], tmp_path: Path) -> None:
    again = waste_by_window_chart(pa.table(windows(12 * 3600, 1800)), tmp_path / "windows", CAPTION)
    assert again[1].read_bytes() == drawn["windows"][1].read_bytes()


def test_a_curve_that_saturated_everywhere_still_draws(tmp_path: Path) -> None:
    points = curve(rates=(25.0, 30.0, 40.0))
    assert all(points.column("saturated").to_pylist())
    lat = latency_throughput_chart(points, tmp_path / "lat", CAPTION, SLOS)
    cost = cost_load_chart(points, tmp_path / "cost", CAPTION, max_rate=None)
    text = svg_text(lat)
    assert "no unsaturated point with a finite TTFT" in text and "saturated (offered ≥ 25 requests/s)" in text
    assert "SLO ttft_p99 ≤ 1 s" in text and "SLO limit" not in svg_text(cost)
    for paths in (lat, cost):
        assert_not_blank(paths[0])


def test_null_heavy_tables_still_draw(tmp_path: Path) -> None:
    points = curve(rates=(1.0, 5.0, 30.0), seeds=1).to_pylist()
    for row in points:  # throughput and cost never recorded, latencies only at one rate
        row.update(output_tokens_per_s=None, usd_per_million_output_tokens=None,
                   usd_per_million_good_output_tokens=None)
    points[1]["output_tokens_per_s"] = 800.0
    nulls = pa.Table.from_pylist([{**r, "saturated": None if i == 0 else r["saturated"]} for i, r in enumerate(points)])
    lat = latency_throughput_chart(nulls, tmp_path / "lat", CAPTION, SLOS)
    assert "saturated (offered ≥ 30 requests/s): no throughput recorded" in svg_text(lat)
    cost = cost_load_chart(nulls, tmp_path / "cost", CAPTION, max_rate=3.0)
    assert "no point with a finite cost per 1M output tokens" in svg_text(cost)
    none_fit = options().filter(pa.compute.invert(pa.compute.field("fits")))
    none_fit = none_fit.drop_columns(["usd_per_million_output_tokens", "replicas_needed", "meets_slo"])
    opts = waste_by_option_chart(none_fit, tmp_path / "opts", "")
    win = waste_by_window_chart({"window_start_s": [None, None], "window_s": [300.0, None],
                                 **{f"{p.key}_gpu_s": [None, None] for p in WASTE_PARTS}}, tmp_path / "win", "")
    assert "no window with a start and a positive length" in svg_text(win)
    for paths in (lat, cost, opts, win):
        assert_not_blank(paths[0])


EMPTY = {
    "latency": lambda out: latency_throughput_chart(curve().slice(0, 0), out, CAPTION, SLOS),
    "cost": lambda out: cost_load_chart(curve().slice(0, 0), out, CAPTION),
    "options": lambda out: waste_by_option_chart(options().slice(0, 0), out, CAPTION),
    "windows": lambda out: waste_by_window_chart([], out, CAPTION),
}


@pytest.mark.parametrize("chart", CHARTS)
def test_an_empty_table_is_a_one_line_error_and_writes_nothing(tmp_path: Path, chart: str) -> None:
    with pytest.raises(ValueError, match=r"^(points|options|windows): no rows to chart$"):
        EMPTY[chart](tmp_path / "x")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("call", "match"), [
    (lambda out: latency_throughput_chart(curve().drop_columns(["tpot_p99_s"]), out, ""),
     r"points: column 'tpot_p99_s' is missing \(columns: rate_per_s, "),
    (lambda out: latency_throughput_chart(curve(), out, "", [SimpleNamespace(metric="ttfb", stat="p99", limit_s=1.0)]),
     r"slos\[0\]\.metric: 'ttfb' is not one of ttft, tpot, itl, e2e, queue"),
    (lambda out: latency_throughput_chart(curve(), out, "", [SimpleNamespace(metric="ttft", stat="p99", limit_s=-1)]),
     r"slos\[0\]\.limit_s: -1 is not a latency"),
    (lambda out: cost_load_chart(curve(), out, "", max_rate=float("nan")), r"max_rate: nan is not a rate"),
    (lambda out: cost_load_chart(curve().set_column(0, "rate_per_s", pa.array(["x"] * 16)), out, ""),
     r"points: column 'rate_per_s' is string, not a number"),
    (lambda out: waste_by_window_chart(pa.table(windows(3600, 300)), out.with_suffix(".png"), ""),
     r"out_stem: '.*x\.png' is not a path without a suffix"),
])
def test_bad_input_is_a_one_line_error_that_names_it(tmp_path: Path, call, match: str) -> None:
    with pytest.raises(ValueError, match=match) as err:
        call(tmp_path / "x")
    assert "\n" not in str(err.value)
    assert not list(tmp_path.iterdir())


def test_importing_and_drawing_change_nothing_global() -> None:
    """matplotlib is not imported with the module, and drawing neither loads pyplot (no backend
    switch, no figure registry) nor leaves an rc setting changed. ('backend' is not read: reading
    it is what would load pyplot to resolve the automatic backend.)"""
    code = (
        "import sys\n"
        "import sim.analysis.charts\n"
        "assert 'matplotlib' not in sys.modules\n"
        "import matplotlib\n"
        "before = {k: matplotlib.rcParams[k] for k in matplotlib.rcParams if k != 'backend'}\n"
        "from tests.test_charts import windows\n"
        "import tempfile, pathlib\n"
        "sim.analysis.charts.waste_by_window_chart(windows(3600, 600), pathlib.Path(tempfile.mkdtemp()) / 'w', 'c')\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "after = {k: matplotlib.rcParams[k] for k in matplotlib.rcParams if k != 'backend'}\n"
        "assert before == after, [k for k in before if before[k] != after[k]]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
