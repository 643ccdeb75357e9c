"""The ``capsim`` command line.

Errors in what the user gave (a bad scenario, a bad ``--set``) print one line and exit 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer
import yaml

__all__ = ["app", "main"]

app = typer.Typer(
    name="capsim",
    help="Capacity simulator for LLM inference serving: simulate a serving configuration under a workload "
         "and report latency, throughput, goodput and how busy the GPUs are.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class UsageError(Exception):
    """Bad input from the user; printed as one line, exit code 2."""


def _fail(message: str) -> None:
    typer.echo(f"capsim: error: {message}", err=True)
    raise typer.Exit(2)


def _apply_set(data: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to nested dicts; ``classes.0`` indexes lists."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise UsageError(f"--set {assignment!r}: expected KEY=VALUE, e.g. workload.arrival.rate_per_s=20")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    node: Any = data
    parts = key.split(".")
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UsageError(f"--set {key}: {'.'.join(parts[:depth])} is a list of {len(node)}; "
                                 f"{part!r} is not an index in it")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise UsageError(f"--set {key}: {'.'.join(parts[:depth])} holds a value, not keys")


def _load(scenario: Optional[Path], sets: list[str], seed: Optional[int]):
    from sim.config import load_scenario, scenario_data
    from sim.errors import ScenarioError

    try:
        data = scenario_data(scenario)
        for s in sets:
            _apply_set(data, s)
        if seed is not None:
            data["seed"] = seed
        try:
            return load_scenario(data)
        except ScenarioError as e:
            raise ScenarioError(f"{scenario or 'default scenario'}: {e}") from None
    except (ScenarioError, UsageError) as e:
        _fail(str(e))


def _fmt(x: Any, unit: str = "s") -> str:
    if x is None:
        return "-"
    if unit == "s":
        return f"{x * 1e3:.1f} ms" if x < 1 else f"{x:.2f} s"
    return f"{x:,.1f}"


def _print_summary(result, out: Optional[Path]) -> None:
    from rich.console import Console
    from rich.table import Table

    s = result.summary
    con = Console()
    req, win, thr = s["requests"], s["window"], s["throughput"]
    prov = s["profile"]
    con.print(f"[bold]{s['scenario']}[/]: {result.scenario.model} {result.scenario.quantization} on "
              f"{s['replicas']} × {result.scenario.hardware} (tp={result.scenario.tp}); profile [bold]{prov['kind']}[/]"
              f" ({prov['source']})")
    con.print(f"requests: {req['arrived']:,} arrived, {req['completed']:,} completed, {req['rejected']:,} rejected, "
              f"{req['in_flight']:,} in flight, {req['preemptions']:,} preemptions; measured window "
              f"{win['start_s']:.0f}–{win['end_s']:.0f} s ({req['measured']:,} requests)")
    lat = Table(title="latency (measured window)", title_justify="left")
    lat.add_column("metric")
    for col in ("mean", "p50", "p90", "p95", "p99"):
        lat.add_column(col, justify="right")
    for name in ("ttft", "tpot", "itl", "e2e", "queue"):
        st = s["latency_s"][name]
        lat.add_row(f"{name}_s", *(_fmt(st[c]) for c in ("mean", "p50", "p90", "p95", "p99")))
    con.print(lat)
    tp = Table(title="throughput (measured window)", title_justify="left")
    tp.add_column("metric")
    tp.add_column("value", justify="right")
    tp.add_row("output tokens/s", _fmt(thr["output_tokens_per_s"], ""))
    tp.add_row("total tokens/s", _fmt(thr["total_tokens_per_s"], ""))
    tp.add_row("requests/s", f"{thr['requests_per_s']:.2f}")
    tp.add_row("goodput (requests/s meeting SLOs)", f"{s['goodput_requests_per_s']:.2f}")
    att = s["slo_attainment"]
    tp.add_row("SLO attainment", "-" if att is None else f"{att:.1%}")
    tp.add_row("busy fraction (mean over replicas)", f"{s['busy_fraction']['mean']:.1%}")
    con.print(tp)
    if req["rejected"]:
        con.print(f"[yellow]warning:[/] {req['rejected']:,} requests rejected: {req['rejected_by_reason']}")
    sim_s = s["simulated_s"]
    con.print(f"simulated {sim_s:,.0f} s in {result.wall_s:.2f} s wall "
              f"({req['arrived'] / max(result.wall_s, 1e-9):,.0f} requests per wall-second)")
    if out is not None:
        con.print(f"results: {out}/ (requests.parquet, iterations.parquet, timeline.parquet, summary.json, scenario.yaml)")


@app.callback()
def _root() -> None:
    """capsim: what serving costs, before it is bought."""


@app.command()
def run(
    scenario: Optional[Path] = typer.Argument(
        None, help="Scenario file (.yaml, .yml or .toml). Omit it to run the embedded default: Llama-3.1-8B bf16 "
                   "on one H100 SXM under chat-like Poisson traffic for four simulated minutes."),
    out: Path = typer.Option(Path("capsim-out"), "--out", "-o",
                             help="Directory for requests/iterations/timeline Parquet, summary.json and scenario.yaml."),
    set_: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE",
                                   help="Override one scenario key, e.g. --set workload.arrival.rate_per_s=20 "
                                        "or --set workload.classes.0.slo.ttft_s=0.5. Repeatable."),
    seed: Optional[int] = typer.Option(None, help="Override the scenario's seed."),
    no_write: bool = typer.Option(False, "--no-write", help="Print the summary only; write no files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no table; still writes files."),
    show_scenario: bool = typer.Option(False, "--show-scenario",
                                       help="Print the resolved scenario as YAML (every default filled in) and exit: "
                                            "a starting point for your own file."),
) -> None:
    """Simulate one scenario: print the summary and write the records."""
    sc = _load(scenario, set_, seed)
    if show_scenario:
        typer.echo(yaml.safe_dump(sc.to_dict(), sort_keys=False), nl=False)
        return
    from sim.engine import simulate

    if quiet:
        result = simulate(sc)
    else:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)
        with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TextColumn("requests"),
                      TimeElapsedColumn(), TimeRemainingColumn(), transient=True,
                      console=Console(stderr=True)) as bar:
            task = bar.add_task("sim", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = simulate(sc, progress=progress)
    written = None if no_write else result.write(out)
    if not quiet:
        _print_summary(result, written)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())
