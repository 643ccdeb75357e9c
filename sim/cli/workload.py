"""``capsim workload``: describe a trace, fit a synthetic workload to it, list the presets.

Registered on the app in :mod:`sim.cli.app` as a group (``workload_app``); thin over
:mod:`workloads.traces`, :mod:`workloads.describe`, :mod:`workloads.fit` and :mod:`workloads.presets`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sim.cli.common import fail

__all__ = ["workload_app"]


workload_app = typer.Typer(
    name="workload",
    help="Real traces and the synthetic workloads fitted to them: describe a trace, fit a workload to it "
         "(written as YAML for a scenario's workload: key), list the built-in presets.",
    no_args_is_help=True,
)

_FORMAT_HELP = ("Trace format: azure-2023, azure-2024, burstgpt, mooncake, csv or parquet. Detected from the file "
                "when omitted (csv and parquet need --columns).")
_COLUMNS_HELP = ("For csv/parquet: which file column holds each field, as ROLE=COLUMN pairs separated by commas, "
                 "e.g. arrival_s=ts,prompt_tokens=in,output_tokens=out (optional roles: session_id, prefix_id, "
                 "prefix_tokens, class).")
_TIME_UNIT_HELP = "For csv/parquet: the unit of numeric times in the time column (s, ms, us or ns)."
_DUPLICATES_HELP = ("Accept rows that repeat the previous row's timestamp and lengths exactly (otherwise taken for a "
                    "doubled file and refused). Not for mooncake, whose coarse timestamps repeat anyway.")
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
            fail(f"--columns {text!r}: expected ROLE=COLUMN pairs separated by commas, "
                 "e.g. arrival_s=ts,prompt_tokens=in,output_tokens=out")
        if role in out:
            fail(f"--columns {text!r}: {role} is given twice")
        out[role] = column
    return out


def _check_suffix(path: Optional[Path], option: str, suffixes: tuple[str, ...]) -> None:
    """Refuse a bad output name before any long work starts."""
    if path is not None and path.suffix.lower() not in suffixes:
        fail(f"{option} {path}: the file name must end in {', '.join(suffixes)}")


def _read_trace(file: Path, fmt: Optional[str], columns: Optional[str], time_unit: str,
                allow_duplicates: bool = False, need_rate: bool = True):
    """The trace, or one line and exit 2; with ``need_rate``, it must have a rate (two requests at
    distinct times)."""
    from workloads.traces import TraceError, load_trace

    mapping = _parse_columns(columns) if columns is not None else None
    options = {"allow_duplicates": True} if allow_duplicates else {}
    try:
        trace = load_trace(file, fmt, columns=mapping, time_unit=time_unit, **options)
        if need_rate:
            trace.require_rate()
    except TraceError as e:
        fail(str(e))
    return trace


@workload_app.command("describe", help=_DESCRIBE_HELP)
def workload_describe(
    file: Path = typer.Argument(..., help="Trace file (.csv, .jsonl, .parquet, optionally .gz)."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help=_FORMAT_HELP),
    columns: Optional[str] = typer.Option(None, "--columns", metavar="ROLE=COLUMN,...", help=_COLUMNS_HELP),
    time_unit: str = typer.Option("s", "--time-unit", help=_TIME_UNIT_HELP),
    allow_duplicates: bool = typer.Option(False, "--allow-duplicates", help=_DUPLICATES_HELP),
    plot: Optional[Path] = typer.Option(None, "--plot", help=_PLOT_HELP),
) -> None:
    """Print a trace's summary statistics (help text: ``_DESCRIBE_HELP``)."""
    from workloads.plot import FIGURE_SUFFIXES

    _check_suffix(plot, "--plot", FIGURE_SUFFIXES)
    trace = _read_trace(file, fmt, columns, time_unit, allow_duplicates)
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
    allow_duplicates: bool = typer.Option(False, "--allow-duplicates", help=_DUPLICATES_HELP),
    name: Optional[str] = typer.Option(None, "--name", help="Name of the fitted request class (default: the "
                                                              "file's name)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the samples the fit draws (the fit is deterministic)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help=_PLOT_HELP + " Trace and fit are overlaid."),
) -> None:
    """Fit a workload to a trace, print trace vs fit, write the YAML (help text: ``_FIT_HELP``)."""
    from workloads.plot import FIGURE_SUFFIXES

    _check_suffix(out, "--out", (".yaml", ".yml"))
    _check_suffix(plot, "--plot", FIGURE_SUFFIXES)
    if seed < 0:
        fail(f"--seed {seed}: must be >= 0")
    # The fit checks its own minimum (more than a rate needs), so the trace is not held to a rate here.
    trace = _read_trace(file, fmt, columns, time_unit, allow_duplicates, need_rate=False)
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from workloads.fit import FitError, fit

    try:
        # A bar with a percentage on stderr: the fit draws samples of millions of requests for
        # several seconds (tens on a slow machine), in steps of about one draw each. Only on a
        # terminal: piped, a bar is noise, and an error stays the one line on stderr.
        err = Console(stderr=True)
        with Progress(TextColumn(escape(f"fitting {file.name}")), BarColumn(bar_width=24), TaskProgressColumn(),
                      TimeElapsedColumn(), TextColumn("{task.description}"), console=err, transient=True,
                      disable=not err.is_terminal) as bar:
            task = bar.add_task("reading", total=None)

            def progress(step: str, done: int, total: int) -> None:
                bar.update(task, description=escape(step), completed=done, total=total)

            result = fit(trace, name=name, seed=seed, progress=progress)
    except FitError as e:  # a trace too short to fit: the user's input, not a bug
        fail(str(e))
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
