"""``capsim run``: simulate one scenario, print its summary, write its records.

Registered on the app in :mod:`sim.cli.app`; thin over :func:`sim.engine.simulate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import typer
import yaml

from sim.cli.common import fail, fmt, scenario_from_args

__all__ = ["run"]


def run(
    scenario: Optional[Path] = typer.Argument(
        None, help="Scenario file (.yaml, .yml or .toml), or a plan directory (capsim plan -o DIR: its fleet.yaml, "
                   "the recommended fleet). Omit it to run the embedded default: Llama-3.1-8B bf16 "
                   "on one H100 SXM under chat-like Poisson traffic for four simulated minutes."),
    out_name: str = typer.Option("capsim-out", "--out", "-o", metavar="DIR",
                                 help="Directory for requests/iterations/timeline Parquet, summary.json and "
                                      "scenario.yaml (created if needed; . for the current directory)."),
    set_: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE",
                                   help="Override one scenario key (a dotted path; a number indexes a list; VALUE "
                                        "is YAML; null removes the key so its default applies). Repeatable. "
                                        "Examples below."),
    seed: Optional[int] = typer.Option(None, help="Override the scenario's seed."),
    no_write: bool = typer.Option(False, "--no-write", help="Print the summary only; write no files."),
    records: str = typer.Option(
        "full", "--records", metavar="full|stream|summary",
        help="What the run keeps. full: every table in memory, written at the end. stream: iteration rows "
             "written to OUT/iterations.parquet chunk by chunk as the run goes (for long runs: memory stays "
             "bounded). summary: only summary.json and scenario.yaml, no per-request or per-iteration tables "
             "(for sweeps; the summary is the same, exactly)."),
    existing: str = typer.Option(
        "replace", "--existing", metavar="replace|refuse",
        help="When OUT holds an earlier run's files. replace: the run's files replace them and the earlier "
             "run's files this run does not write are removed, so OUT holds exactly this run's results. refuse: "
             "stop before simulating. Other files in OUT are never touched."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no table; still writes files "
                                                           "and prints warnings."),
    show_scenario: bool = typer.Option(False, "--show-scenario",
                                       help="Print the resolved scenario as YAML (every default filled in) and exit: "
                                            "a starting point for your own file."),
) -> None:
    """Simulate one scenario: print the summary and write the records.

    Warnings (overload, rejected or truncated requests, requests cut off by the horizon) go to
    stderr as "capsim: warning: ..." lines and into summary.json's "warnings".

    \b
    Examples:
      capsim run                                        # the embedded default scenario
      capsim run --show-scenario > my.yaml              # every default, as a starting point
      capsim run my.yaml --set workload.arrival.rate_per_s=20 -o out/rate20
      capsim run my.yaml --set workload.classes.0.slo.ttft_s=0.5 --seed 3 --no-write
      capsim run my.yaml --set workload.duration_s=null --set workload.num_requests=5000
      capsim run my.yaml --set profile.kind=roofline --set profile.hbm_tb_s=6.7
      capsim run capsim-plan                            # a plan's recommended fleet (capsim-plan/fleet.yaml)
    """
    scenario = _plan_fleet(scenario)
    sc = scenario_from_args(scenario, set_, seed)
    if show_scenario:
        typer.echo(yaml.safe_dump(sc.to_dict(), sort_keys=False), nl=False)
        return
    from functools import partial

    from sim.engine import simulate
    from sim.errors import ScenarioError
    from sim.results.records import EXISTING, RECORDS, OutputError, check_output_dir

    if records not in RECORDS:
        fail(f"--records {records!r}: must be one of {', '.join(RECORDS)}")
    if existing not in EXISTING:
        fail(f"--existing {existing!r}: must be one of {', '.join(EXISTING)}")
    if records == "stream" and no_write:
        fail("--records stream writes iterations.parquet as the run goes: it cannot go with --no-write")
    out = Path(out_name)  # checked as given: Path("") would read as the current directory
    if not no_write:
        try:  # before simulating: a run is never lost to an output directory that cannot take it
            check_output_dir(out_name, existing)
        except OutputError as e:
            fail(f"--out {e}")
    try:
        result = _simulate(sc, quiet, partial(simulate, records=records,
                                              stream_to=out if records == "stream" else None))
    except ScenarioError as e:  # the workload could not be drawn (e.g. an unreadable trace file)
        fail(f"{scenario or 'default scenario'}: {e}")
    written: list[str] = []
    if not no_write:
        try:
            result.write(out)
            written = list(result.files)
        except OSError as e:
            fail(f"--out {out}: cannot write the results there ({e.strerror or e})")
    if not quiet:
        _print_summary(result, out, written)
    _warn(result)


def _plan_fleet(path: Optional[Path]) -> Optional[Path]:
    """A plan directory (one holding plan.json) stands for its fleet.yaml; anything else is itself."""
    if path is None or not path.is_dir() or not (path / "plan.json").is_file():
        return path
    fleet = path / "fleet.yaml"
    if not fleet.is_file():
        fail(f"{path}: this plan has no fleet.yaml: no configuration met its SLOs (plan.json's \"infeasible\" "
             "says why)")
    return fleet


def _simulate(sc, quiet: bool, simulate):  # type: ignore[no-untyped-def]
    """Run ``simulate`` with a progress bar on stderr unless ``quiet``."""
    if quiet:
        return simulate(sc)
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    err = Console(stderr=True)
    # Only on a terminal: piped, a bar's remains would stand before an error line or a warning.
    with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TextColumn("requests"),
                  TimeElapsedColumn(), TimeRemainingColumn(), transient=True, console=err,
                  disable=not err.is_terminal) as bar:
        task = bar.add_task("sim", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return simulate(sc, progress=progress)


def _print_summary(result, out: Optional[Path], written: Sequence[str] = ()) -> None:
    """The run's headline, latency, throughput and cost tables, and where its files went."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from sim.results.records import first_clause

    s = result.summary
    con = Console()
    req, win, thr = s["requests"], s["window"], s["throughput"]
    prov, eng = s["profile"], s["engine"]
    con.print(f"[bold]{escape(s['scenario'])}[/]: {result.scenario.model} {result.scenario.quantization} on "
              f"{s['replicas']} × {result.scenario.hardware} (tp={result.scenario.tp}); profile [bold]{prov['kind']}[/]: "
              f"{escape(first_clause(prov['source'], 100))} (whole provenance: summary.json, profile.source); engine "
              f"preset {escape(eng['preset'])}, {eng['scheduler']} batching, {eng['admission']} admission",
              highlight=False)
    con.print(f"requests: {req['arrived']:,} arrived, {req['completed']:,} completed, {req['rejected']:,} rejected, "
              f"{req['in_flight']:,} in flight, {req['preemptions']:,} preemptions; measured window "
              f"{win['start_s']:.0f}–{win['end_s']:.0f} s ({req['measured']:,} requests)")
    lat = Table(title="latency (measured window)", title_justify="left")
    lat.add_column("metric")
    for col in ("mean", "p50", "p90", "p95", "p99"):
        lat.add_column(col, justify="right")
    for name in ("ttft", "tpot", "itl", "e2e", "queue"):
        st = s["latency_s"][name]
        lat.add_row(f"{name}_s", *(fmt(st[c]) for c in ("mean", "p50", "p90", "p95", "p99")))
    con.print(lat)
    tp = Table(title="throughput (measured window)", title_justify="left")
    tp.add_column("metric")
    tp.add_column("value", justify="right")
    tp.add_row("output tokens/s", fmt(thr["output_tokens_per_s"], ""))
    tp.add_row("total tokens/s", fmt(thr["total_tokens_per_s"], ""))
    tp.add_row("requests/s", f"{thr['requests_per_s']:.2f}")
    bench = s["benchmark"]  # first arrival to last token, as a benchmark client counts (summary.json: benchmark)
    tp.add_row(f"benchmark output tokens/s ({fmt(bench['duration_s'])} run)", fmt(bench["output_tokens_per_s"], ""))
    tp.add_row("goodput (requests/s meeting SLOs)", f"{s['goodput_requests_per_s']:.2f}")
    att = s["slo_attainment"]
    tp.add_row("SLO attainment", "-" if att is None else f"{att:.1%}")
    tp.add_row("busy fraction (mean over replicas)", f"{s['busy_fraction']['mean']:.1%}")
    u = s["utilisation"]
    tp.add_row("KV cache in use (time mean)", f"{u['kv_cache']:.1%}")
    tp.add_row("batch slots in use (of max_num_seqs)", f"{u['batch_slots']:.1%}")
    if u["mfu"] is not None:
        tp.add_row("MFU / MBU (step model vs datasheet peak)", f"{u['mfu']:.1%} / {u['mbu']:.1%}")
    con.print(tp)
    _print_cost(con, s)
    sim_s = s["simulated_s"]
    con.print(f"simulated {sim_s:,.0f} s in {result.wall_s:.2f} s wall "
              f"({req['arrived'] / max(result.wall_s, 1e-9):,.0f} requests per wall-second)")
    if written:
        con.print(f"results: {out}/ ({', '.join(written)})", highlight=False, soft_wrap=True)  # a path to copy: never wrapped


def _money(x: Optional[float]) -> str:
    """Dollars with the digits that matter: $0.7616, $12.40, $1,234."""
    if x is None:
        return "-"
    return f"${x:,.0f}" if x >= 1000 else f"${x:,.2f}" if x >= 1 else f"${x:.4g}"


def _print_cost(con, s: dict) -> None:  # type: ignore[no-untyped-def]
    """The summary's cost and waste blocks as a table (rules in summary.json: cost.rule, waste.note)."""
    from rich.table import Table

    c, w = s["cost"], s["waste"]
    t = Table(title=f"cost ({c['model']}, {c['gpus']} GPU{'s' if c['gpus'] > 1 else ''}, measured window)",
              title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("$ per GPU-hour", _money(c["usd_per_gpu_hour"]))
    t.add_row("$ for the window / $ per hour", f"{_money(c['total_usd'])} / {_money(c['usd_per_hour'])}")
    t.add_row("$ per 1M output / input / total tokens", " / ".join(
        _money(c[f"usd_per_million_{k}_tokens"]) for k in ("output", "input", "total")))
    t.add_row("$ per 1M output tokens meeting SLOs", _money(c["usd_per_million_good_output_tokens"]))
    t.add_row("$ per request", _money(c["usd_per_request"]))
    if c["energy_kwh"] is not None:
        t.add_row("energy (GPUs) / Wh per 1,000 output tokens",
                  f"{c['energy_kwh']:.3g} kWh / {c['wh_per_1000_output_tokens']:.3g}")
    share = w["share"]
    t.add_row("GPU time: useful / recompute / idle", " / ".join(
        "-" if share[p] is None else f"{share[p]:.1%}" for p in ("useful", "recompute", "idle")))
    con.print(t)


def _warn(result) -> None:  # type: ignore[no-untyped-def]
    """The summary's warnings, one line each on stderr (printed even with --quiet)."""
    for line in result.summary["warnings"]:
        typer.echo(f"capsim: warning: {line}", err=True)
