"""``capsim curve``: a configuration's load curve, from light load to past saturation.

Registered on the main app in :mod:`sim.cli.app`; thin over :func:`sim.analysis.curve.load_curve`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from sim.cli.common import executor_from_args, fail, fmt, ray_option, scenario_from_args

if TYPE_CHECKING:
    from sim.analysis.curve import LoadCurve

__all__ = ["curve", "parse_rates"]


def parse_rates(text: str) -> list[float]:
    """``1,2,4.5`` as rates in requests/s; ValueError (one line, naming the text) for anything
    that is not a comma-separated list of finite numbers > 0."""
    out = []
    for part in text.split(","):
        try:
            r = float(part)
        except ValueError:
            raise ValueError(f"--rates {text!r}: {part.strip()!r} is not a number; give rates in requests/s "
                             "separated by commas, e.g. 1,2,4") from None
        if not math.isfinite(r) or r <= 0:
            raise ValueError(f"--rates {text!r}: {part.strip()} is not a rate; every rate must be a finite "
                             "number of requests/s > 0")
        out.append(r)
    return out


def curve(
    scenario: Optional[Path] = typer.Argument(
        None, help="Scenario file (.yaml, .yml or .toml); omit it for the embedded default scenario."),
    set_: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE",
                                   help="Override one scenario key, as in 'capsim run'. Repeatable."),
    slo: list[str] = typer.Option(
        [], "--slo", metavar="[CLASS:]METRIC_STAT=LIMIT",
        help="A latency target: METRIC ttft, tpot, itl, e2e or queue; STAT mean, p50, p90, p95 or p99; LIMIT in "
             "seconds or with unit s, ms, us; CLASS limits it to one request class (ttft, tpot, e2e). Repeatable. "
             "None given: the p99 of each SLO the scenario's classes state. 'none': no target (the highest rate is "
             "then the saturation knee)."),
    rates: Optional[str] = typer.Option(
        None, "--rates", metavar="R1,R2,...",
        help="Offered loads in requests/s, comma-separated. Omitted: automatic, from a capacity probe: 10% to 130% "
             "of the estimated capacity, denser near the knee, extended until every seed saturates."),
    seeds: int = typer.Option(3, "--seeds", help="Runs per rate (seeds: the scenario's seed, +1, +2, ...); the "
                                                 "highest rate is bisected per seed and reported with its spread."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", metavar="N",
                                          help="Processes running points in parallel (default: every core; 1: in "
                                               "this process)."),
    ray: Optional[str] = ray_option(),
    tolerance: float = typer.Option(0.01, "--tolerance", help="Relative tolerance of the bisection for the highest "
                                                              "rate (0.01: within 1%)."),
    out_name: str = typer.Option("capsim-curve", "--out", "-o", metavar="DIR",
                                 help="Directory for curve.parquet (one row per rate and seed), curve.json and the "
                                      "charts (created if needed)."),
    no_charts: bool = typer.Option(False, "--no-charts", help="Write no charts (they take a few seconds)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no table; still writes files."),
) -> None:
    """Simulate a configuration from light load to past saturation: throughput, goodput, latency
    percentiles, cost and waste at each offered load, several seeds each, and the highest rate that
    meets the SLOs (found by bisection per seed, reported with its spread over seeds).

    A saturated run (its queue grows without bound) is reported as saturated: its latency percentiles are left empty, never quoted from an unfinished run. Every definition: python -c "import sim.analysis.curve; help(sim.analysis.curve)".

    \b
    Examples:
      capsim curve                                        # the default scenario and its own SLOs
      capsim curve my.yaml --slo ttft_p99=1s --slo tpot_p99=60ms -o out/curve
      capsim curve my.yaml --slo chat:ttft_p90=500ms --seeds 5 --workers 8
      capsim curve my.yaml --seeds 5 --ray auto             # the points on the Ray cluster this machine belongs to
      capsim curve my.yaml --rates 2,4,8,16,24 --slo none   # given loads; highest rate = saturation knee
      capsim curve my.yaml --set replicas=2 --set engine.max_num_seqs=128 -q
    """
    from sim.analysis.curve import CurveError, with_rate
    from sim.errors import ScenarioError
    from sim.results.records import OutputError, check_output_dir
    from sim.analysis.slo import check_classes, parse_slo

    sc = scenario_from_args(scenario, set_, None)
    targets: Optional[list[Any]] = None  # None: the scenario's own SLOs
    if slo:
        try:
            targets = [] if [s.strip().lower() for s in slo] == ["none"] else [parse_slo(s) for s in slo]
        except ValueError as e:  # "SLO 'text': why" -> "--slo 'text': why"
            fail(f"--slo {str(e).removeprefix('SLO ')}")
    try:
        given = parse_rates(rates) if rates is not None else None
    except ValueError as e:
        fail(str(e))
    if seeds < 1:
        fail(f"--seeds {seeds}: must be >= 1")
    if workers is not None and workers < 1:
        fail(f"--workers {workers}: must be >= 1")
    if not 0 < tolerance < 0.5:
        fail(f"--tolerance {tolerance:g}: must be in (0, 0.5)")
    try:
        check_output_dir(out_name)
    except OutputError as e:
        fail(f"--out {e}")
    try:  # refusals that need no simulation, before any worker is started
        check_classes(targets or [], sc)
        with_rate(sc, 1.0)
    except ValueError as e:
        fail(f"{scenario or 'default scenario'}: {e}")
    out = Path(out_name)
    ex = executor_from_args(workers, ray)  # before the progress bar's thread starts: a local pool forks its workers now
    try:
        result = _run(sc, targets, given, seeds, tolerance, ex, quiet)
    except (CurveError, ScenarioError) as e:
        fail(f"{scenario or 'default scenario'}: {e}")
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
    try:
        written = [p.name for p in result.write(out)] + ([] if no_charts else _charts(result, out))
    except OSError as e:
        fail(f"--out {out}: cannot write the results there ({e.strerror or e})")
    if not quiet:
        _print(result, out, written)


def _run(sc, targets, given, seeds, tolerance, ex, quiet):  # type: ignore[no-untyped-def]
    """:func:`load_curve` with a progress bar over points on stderr (on a terminal, unless quiet)."""
    from sim.analysis.curve import load_curve

    kwargs = dict(slos=targets, rates=given, seeds=seeds, rel_tol=tolerance, executor=ex)
    if quiet:
        return load_curve(sc, **kwargs)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    err = Console(stderr=True)
    with Progress(TextColumn("load curve"), BarColumn(), MofNCompleteColumn(), TextColumn("points"),
                  TimeElapsedColumn(), transient=True, console=err, disable=not err.is_terminal) as bar:
        task = bar.add_task("curve", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return load_curve(sc, progress=progress, **kwargs)


def _caption(result: LoadCurve) -> str:
    """The configuration and the profile's provenance, for chart captions."""
    from sim.results.records import first_clause

    s, p = result.scenario, result.provenance
    return (f"{s.name}: {s.model} {s.quantization} on {s.replicas} x {s.hardware} (tp={s.tp}); "
            f"profile {p['kind']}: {first_clause(p['source'], 100)}")


def _charts(result: LoadCurve, out: Path) -> list[str]:
    """The curve's charts (names of the files written)."""
    from sim.analysis import charts

    caption = _caption(result)
    paths = [*charts.latency_throughput_chart(result.points, out / "latency_throughput", caption, list(result.slos)),
             *charts.cost_load_chart(result.points, out / "cost_load", caption, result.max_rate.mean)]
    return [Path(p).name for p in paths]


def _mean(values: list[Any]) -> Optional[float]:
    xs = [v for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None


def _print(result: LoadCurve, out: Path, written: list[str]) -> None:
    """One row per rate (means over seeds), then the highest rate, saturation and notes."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    con = Console()
    rows = result.points.to_pylist()
    by_rate: dict[float, list[dict[str, Any]]] = {}
    for r in rows:
        by_rate.setdefault(r["rate_per_s"], []).append(r)
    with_cost = any(r["usd_per_million_output_tokens"] is not None for r in rows)
    # Narrow enough for 80 columns: no vertical rules, short headers, units in the title.
    title = (f"load curve: rates in requests/s, means over {len(result.seeds)} seeds; met: seeds meeting the SLOs; "
             "tok/s: output tokens; latency p99 of unsaturated runs" + ("; $ per 1M output tokens" if with_cost else ""))
    t = Table(title=title,
              title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col in ("offered", "met", "served", "goodput", "tok/s", "ttft p99", "tpot p99", "e2e p99",
                *(("$/1M",) if with_cost else ())):
        t.add_column(col, justify="right", no_wrap=True)
    for rate, group in by_rate.items():
        n = len(group)
        sat = sum(r["saturated"] for r in group)
        cells = [f"{rate:.4g}", f"{sum(r['meets_slo'] for r in group)}/{n}",
                 f"{_mean([r['requests_per_s'] for r in group]):.2f}",
                 f"{_mean([r['goodput_requests_per_s'] for r in group]):.2f}",
                 fmt(_mean([r["output_tokens_per_s"] for r in group]), "")]
        for m in ("ttft", "tpot", "e2e"):
            cells.append(fmt(_mean([r[f"{m}_p99_s"] for r in group])) if sat < n else "saturated")
        if with_cost:
            c = _mean([r["usd_per_million_output_tokens"] for r in group])
            cells.append("-" if c is None else f"{c:.3g}")
        t.add_row(*cells)
    con.print(t)
    mr = result.max_rate
    what = (", ".join(str(s) for s in result.slos) if result.slos else "no SLO target: the saturation knee")
    if mr.max == 0:
        con.print(f"[bold]highest rate meeting the SLOs[/] ({escape(what)}): none; no rate tried met them",
                  highlight=False)
    else:
        con.print(f"[bold]highest rate meeting the SLOs[/] ({escape(what)}): {'at least ' if mr.at_least else ''}"
                  f"[bold]{mr.mean:.4g}[/] requests/s (seeds {mr.min:.4g} to {mr.max:.4g}; bisection to "
                  f"{mr.rel_tol:.0%})", highlight=False)
    if result.reference is not None and result.scenario.replicas > 1:
        ref = result.reference
        con.print(f"per replica: {ref.rate_per_s:.4g} requests/s, {ref.output_tokens_per_s:,.0f} output tokens/s",
                  highlight=False)
    knee, cap = result.saturation_rate_per_s, result.capacity_per_s
    con.print("saturation: " + ("every grid rate saturated" if knee is None else
                                f"knee at {knee:.4g} requests/s (the highest rate no seed saturated)")
              + ("" if cap is None else f"; saturated runs served {cap:.4g} requests/s"), highlight=False)
    for note in result.notes:
        con.print(f"note: {escape(note)}", highlight=False)
    con.print(f"profile {result.provenance['kind']}: {escape(result.provenance['headline'])}", highlight=False)
    con.print(f"results: {out}/ ({', '.join(written)})", highlight=False, soft_wrap=True)
