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
    from sim.errors import ScenarioError

    try:
        result = _simulate(sc, quiet, simulate)
    except ScenarioError as e:  # the workload could not be drawn (e.g. an unreadable trace file)
        _fail(f"{scenario or 'default scenario'}: {e}")
    written = None if no_write else result.write(out)
    if not quiet:
        _print_summary(result, written)


def _simulate(sc, quiet: bool, simulate):  # type: ignore[no-untyped-def]
    """Run ``simulate`` with a progress bar on stderr unless ``quiet``."""
    if quiet:
        return simulate(sc)
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TextColumn("requests"),
                  TimeElapsedColumn(), TimeRemainingColumn(), transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("sim", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return simulate(sc, progress=progress)


# ------------------------------------------------------------------------------------------------
# capsim workload: describe traces, fit synthetic workloads to them, list the presets.

workload_app = typer.Typer(
    name="workload",
    help="Real traces and the synthetic workloads fitted to them: describe a trace, fit a workload to it "
         "(written as YAML for a scenario's workload: key), list the built-in presets.",
    no_args_is_help=True,
)
app.add_typer(workload_app, name="workload")

_FORMAT_HELP = ("Trace format: azure-2023, azure-2024, burstgpt, mooncake, csv or parquet. Detected from the file "
                "when omitted (csv and parquet need --columns).")
_COLUMNS_HELP = ("For csv/parquet: which file column holds each field, as ROLE=COLUMN pairs separated by commas, "
                 "e.g. arrival_s=ts,prompt_tokens=in,output_tokens=out (optional roles: session_id, prefix_id, "
                 "prefix_tokens, class).")
_TIME_UNIT_HELP = "For csv/parquet: the unit of numeric times in the time column (s, ms, us or ns)."
_PLOT_HELP = "Also draw arrivals per minute, the inter-arrival CCDF and the length CDFs to this .png, .svg or .pdf."
# Command help: one line per paragraph (rich help keeps line breaks), examples in a \\b block.
_DESCRIBE_HELP = (
    "Print a trace's summary statistics: requests, span, mean rate, inter-arrival CV, peak/mean of 1-minute "
    "counts, prompt and output length mean/p50/p90/p99, their Spearman correlation, and the share of prompt "
    "tokens in shared prefixes (when the trace says which prefixes are shared)."
    "\n\n\b\nExamples:\n"
    "  capsim workload describe AzureLLMInferenceTrace_conv.csv\n"
    "  capsim workload describe conversation_trace.jsonl.gz --plot mooncake.png\n"
    "  capsim workload describe reqs.csv --columns arrival_s=t,prompt_tokens=in,output_tokens=out --time-unit ms")
_FIT_HELP = (
    "Fit a synthetic workload to a trace, print trace vs fit side by side, and write it as YAML."
    "\n\n"
    "The fit: a per-minute step rate table (the trace's surges and lulls); a gamma or Weibull renewal base whose "
    "CV is searched so that the generated inter-arrival CV matches the trace's; prompt and output lengths (a "
    "parametric family if one reproduces p50/p90/p99 within 3%, else the trace's quantile function); their "
    "correlation, as a Gaussian copula. It is checked on a two-million-request sample of itself. The YAML sets "
    "duration_s to one trace span: use it as a scenario's workload: mapping, changing the stop rule at will. "
    "Takes a few seconds."
    "\n\n\b\nExamples:\n"
    "  capsim workload fit AzureLLMInferenceTrace_code.csv -o code.yaml --plot code.png\n"
    "  capsim workload fit conversation_trace.jsonl.gz --name chat -o chat.yaml\n"
    "  capsim run scenario.yaml   (with the file's keys under workload:)")
_PRESETS_HELP = (
    "List the built-in workload presets, each fitted to a public trace: headline numbers and provenance."
    "\n\n\b\nUse one in a scenario, with a stop rule and any override:\n"
    "  workload: {preset: azure-conv-2023, num_requests: 5000}\n"
    "  workload: {preset: azure-code-2023, duration_s: 600, arrival: {process: poisson, rate_per_s: 4}}")


def _parse_columns(text: str) -> dict[str, str]:
    """``a=b,c=d`` as a mapping; a one-line usage error for anything else."""
    out: dict[str, str] = {}
    for pair in text.split(","):
        role, sep, column = (part.strip() for part in pair.partition("="))
        if not sep or not role or not column:
            _fail(f"--columns {text!r}: expected ROLE=COLUMN pairs separated by commas, "
                  "e.g. arrival_s=ts,prompt_tokens=in,output_tokens=out")
        if role in out:
            _fail(f"--columns {text!r}: {role} is given twice")
        out[role] = column
    return out


def _check_suffix(path: Optional[Path], option: str, suffixes: tuple[str, ...]) -> None:
    """Refuse a bad output name before any long work starts."""
    if path is not None and path.suffix.lower() not in suffixes:
        _fail(f"{option} {path}: the file name must end in {', '.join(suffixes)}")


def _read_trace(file: Path, fmt: Optional[str], columns: Optional[str], time_unit: str):
    from workloads.traces import TraceError, load_trace

    mapping = _parse_columns(columns) if columns is not None else None
    try:
        return load_trace(file, fmt, columns=mapping, time_unit=time_unit)
    except TraceError as e:
        _fail(str(e))


@workload_app.command("describe", help=_DESCRIBE_HELP)
def workload_describe(
    file: Path = typer.Argument(..., help="Trace file (.csv, .jsonl, .parquet, optionally .gz)."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help=_FORMAT_HELP),
    columns: Optional[str] = typer.Option(None, "--columns", metavar="ROLE=COLUMN,...", help=_COLUMNS_HELP),
    time_unit: str = typer.Option("s", "--time-unit", help=_TIME_UNIT_HELP),
    plot: Optional[Path] = typer.Option(None, "--plot", help=_PLOT_HELP),
) -> None:
    """Print a trace's summary statistics (help text: ``_DESCRIBE_HELP``)."""
    from workloads.plot import FIGURE_SUFFIXES

    _check_suffix(plot, "--plot", FIGURE_SUFFIXES)
    trace = _read_trace(file, fmt, columns, time_unit)
    from rich.console import Console
    from rich.table import Table

    from workloads.describe import describe

    stats = describe(trace)
    from rich.markup import escape

    table = Table(title=escape(f"{file} ({trace.format})"), title_justify="left", title_style="bold")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for label, value in stats.rows():
        table.add_row(label, value)
    con = Console()
    con.print(table)
    if trace.dropped:
        con.print("left out on purpose: " + ", ".join(f"{n:,} {why}" for why, n in trace.dropped.items()))
    if plot is not None:
        from workloads.plot import plot_workload

        con.print(f"plot: {plot_workload(trace, plot, title=str(file.name))}")


@workload_app.command("fit", help=_FIT_HELP)
def workload_fit(
    file: Path = typer.Argument(..., help="Trace file (.csv, .jsonl, .parquet, optionally .gz)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="Write the fitted workload here (.yaml or .yml). Without it, only the "
                                            "comparison is printed."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help=_FORMAT_HELP),
    columns: Optional[str] = typer.Option(None, "--columns", metavar="ROLE=COLUMN,...", help=_COLUMNS_HELP),
    time_unit: str = typer.Option("s", "--time-unit", help=_TIME_UNIT_HELP),
    name: Optional[str] = typer.Option(None, "--name", help="Name of the fitted request class (default: the "
                                                              "file's name)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the samples the fit draws (the fit is deterministic)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help=_PLOT_HELP + " Trace and fit are overlaid."),
) -> None:
    """Fit a workload to a trace, print trace vs fit, write the YAML (help text: ``_FIT_HELP``)."""
    from workloads.plot import FIGURE_SUFFIXES

    _check_suffix(out, "--out", (".yaml", ".yml"))
    _check_suffix(plot, "--plot", FIGURE_SUFFIXES)
    trace = _read_trace(file, fmt, columns, time_unit)
    from rich.console import Console
    from rich.table import Table

    from rich.markup import escape

    from workloads.fit import FitError, fit

    err = Console(stderr=True)
    try:
        with err.status(escape(f"fitting {file.name}")) as status:
            result = fit(trace, name=name, seed=seed,
                         progress=lambda msg: status.update(escape(f"{file.name}: {msg}")))
    except FitError as e:  # a trace too short to fit: the user's input, not a bug
        _fail(str(e))
    con = Console()
    ts = result.trace_stats
    con.print(f"[bold]{escape(str(file))}[/] ({trace.format}): {ts.requests:,} requests over "
              f"{ts.duration_s / 60:.1f} min; the fit is checked on {result.sample_periods} repeated spans "
              f"(~{result.sample_periods * ts.requests:,} requests)", highlight=False)
    table = Table()
    for col, justify in (("statistic", "left"), ("trace", "right"), ("fit", "right"), ("error", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in result.formatted():
        table.add_row(*row)
    con.print(table)
    for note in result.notes:
        con.print(f"- {note}", highlight=False)
    if out is not None:
        import datetime

        command = (f"capsim workload fit {file}" + (f" --format {fmt}" if fmt else "")
                   + (f" --columns {columns}" if columns else "") + (f" --name {name}" if name else "")
                   + (f" --seed {seed}" if seed else "") + f" -o {out}   ({datetime.date.today().isoformat()})")
        out.write_text(result.to_yaml(command=command))
        con.print(f"wrote {out}: use it as a scenario's workload: mapping (keys arrival, classes, duration_s)")
    if plot is not None:
        from workloads.plot import plot_workload

        sample = result.sample()  # the sample the table describes, so that the legend's CV agrees with it
        con.print(f"plot: {plot_workload(trace, plot, fit=sample, period_s=result.duration_s, title=str(file.name))}")


@workload_app.command("presets", help=_PRESETS_HELP)
def workload_presets() -> None:
    """List the presets with their headline numbers and provenance (help text: ``_PRESETS_HELP``)."""
    from rich.console import Console
    from rich.table import Table

    from workloads.presets import PRESETS, preset_summary

    table = Table(title="workload presets: arrivals = renewal base / span of its per-minute rate table; "
                        "lengths in tokens, p50 / p99", title_justify="left")
    table.add_column("preset", no_wrap=True)
    for col in ("req/s", "arrivals", "prompt", "output"):
        table.add_column(col, justify="left" if col == "arrivals" else "right")
    for name in PRESETS:
        s = preset_summary(name)
        base = "Poisson" if s["process"] == "poisson" else f"{s['process']} CV {s['cv']:g}"
        span = "" if s["profile_span_s"] is None else f" / {s['profile_span_s'] / 60:.0f} min"
        for i, c in enumerate(s["classes"]):
            table.add_row(name if i == 0 else "", f"{s['mean_rate_per_s']:.2f}" if i == 0 else "",
                          (base + span) if i == 0 else "", "{:,} / {:,}".format(*c["prompt_p50_p99"]),
                          "{:,} / {:,}".format(*c["output_p50_p99"]))
    con = Console()
    con.print(table)
    for name, entry in PRESETS.items():
        con.print(f"[bold]{name}[/]: {entry['source']}", highlight=False)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())
