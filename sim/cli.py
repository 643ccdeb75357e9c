"""The ``capsim`` command line.

Errors in what the user gave (a bad scenario, a bad ``--set``) print one line and exit 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import typer
import yaml
from typer.core import TyperGroup

from sim.cli_calibrate import calibrate_command
from sim.cli_validate import validate_command

if TYPE_CHECKING:  # annotations only: the CLI imports the catalog when a command runs
    from rich.console import Console
    from rich.table import Table

    from calibration.catalog import GPU, ModelArch, Quantization, ResolvedPrecision

__all__ = ["app", "main"]

class _OneLineErrors(TyperGroup):
    """The command group with click's usage errors (an unknown option, a missing argument, a
    value of the wrong type) as one ``capsim: error:`` line and exit code 2, like every other
    refusal, instead of a usage box spread over many lines."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,  # type: ignore[override]
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                              **extra)
        except typer.Abort:
            typer.echo("capsim: aborted", err=True)
            rv = 1
        except Exception as e:
            # Click's exceptions, known by their interface: typer bundles its own copy of click
            # (typer._click) in some versions and uses the click package in others.
            if not (hasattr(e, "format_message") and isinstance(getattr(e, "exit_code", None), int)):
                raise
            if type(e).__name__ == "NoArgsIsHelpError":  # a bare `capsim workload`: its help, as click shows it
                e.show()  # type: ignore[attr-defined]
            else:
                ctx = getattr(e, "ctx", None)
                where = f"{ctx.command_path}: " if ctx is not None else ""
                hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
                message = " ".join(e.format_message().split())  # type: ignore[attr-defined]
                typer.echo(f"capsim: error: {where}{message}{hint}", err=True)
            rv = e.exit_code  # type: ignore[attr-defined]
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
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
    """Apply ``a.b.c=value`` (value parsed as YAML) to nested dicts; ``classes.0`` indexes lists.
    ``null`` removes the key, so that its default applies (for an optional key, the default is unset)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise UsageError(f"--set {assignment!r}: expected KEY=VALUE, e.g. workload.arrival.rate_per_s=20")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    node: Any = data
    parts = key.split(".")
    if "" in parts:
        raise UsageError(f"--set {assignment!r}: the key {key!r} has an empty part; keys are dotted paths such as "
                         "engine.max_num_seqs")
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
            if last and value is None:  # null removes the key: its default applies
                node.pop(part, None)
            elif last:
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


def _print_summary(result, out: Optional[Path], written: Sequence[str] = ()) -> None:
    from rich.console import Console
    from rich.table import Table

    s = result.summary
    con = Console()
    req, win, thr = s["requests"], s["window"], s["throughput"]
    prov = s["profile"]
    from rich.markup import escape

    from sim.records import first_clause

    con.print(f"[bold]{escape(s['scenario'])}[/]: {result.scenario.model} {result.scenario.quantization} on "
              f"{s['replicas']} × {result.scenario.hardware} (tp={result.scenario.tp}); profile [bold]{prov['kind']}[/]: "
              f"{escape(first_clause(prov['source'], 100))} (whole provenance: summary.json, profile.source)", highlight=False)
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


@app.callback()
def _root() -> None:
    """capsim: what serving costs, before it is bought."""


@app.command()
def run(
    scenario: Optional[Path] = typer.Argument(
        None, help="Scenario file (.yaml, .yml or .toml). Omit it to run the embedded default: Llama-3.1-8B bf16 "
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
    """
    sc = _load(scenario, set_, seed)
    if show_scenario:
        typer.echo(yaml.safe_dump(sc.to_dict(), sort_keys=False), nl=False)
        return
    from functools import partial

    from sim.engine import simulate
    from sim.errors import ScenarioError
    from sim.records import RECORDS

    from sim.records import EXISTING, OutputError, check_output_dir

    if records not in RECORDS:
        _fail(f"--records {records!r}: must be one of {', '.join(RECORDS)}")
    if existing not in EXISTING:
        _fail(f"--existing {existing!r}: must be one of {', '.join(EXISTING)}")
    if records == "stream" and no_write:
        _fail("--records stream writes iterations.parquet as the run goes: it cannot go with --no-write")
    out = Path(out_name)  # checked as given: Path("") would read as the current directory
    if not no_write:
        try:  # before simulating: a run is never lost to an output directory that cannot take it
            check_output_dir(out_name, existing)
        except OutputError as e:
            _fail(f"--out {e}")
    try:
        result = _simulate(sc, quiet, partial(simulate, records=records,
                                              stream_to=out if records == "stream" else None))
    except ScenarioError as e:  # the workload could not be drawn (e.g. an unreadable trace file)
        _fail(f"{scenario or 'default scenario'}: {e}")
    written: list[str] = []
    if not no_write:
        try:
            result.write(out)
            written = list(result.files)
        except OSError as e:
            _fail(f"--out {out}: cannot write the results there ({e.strerror or e})")
    if not quiet:
        _print_summary(result, out, written)
    _warn(result)


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
        _fail(str(e))
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
        _fail(f"--seed {seed}: must be >= 0")
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


# ------------------------------------------------------------------------------------------------
# capsim catalog: the hardware, model and quantization figures, each with its source.

class CatalogKind(str, Enum):
    """Which of the three catalogs ``capsim catalog --kind`` lists."""

    hardware = "hardware"
    models = "models"
    quantizations = "quantizations"


_CATALOG_HELP = (
    "The catalog the simulator's derived profiles start from: hardware (memory, bandwidth, dense peak "
    "TFLOPS per precision, interconnect, power, price), model architectures and quantization schemes, "
    "every figure with its source."
    "\n\n"
    "Without a subcommand, lists all three as tables (one with --kind). 'show NAME' prints one entry with "
    "every figure and its source, and what follows from them (a model's parameter count, weight bytes and "
    "KV-cache bytes per token; what each quantization runs as on each device). TFLOPS are dense peaks "
    "(datasheets' 2:4-sparse figures halved); memory is what an engine can address; links are per direction."
    "\n\n\b\nExamples:\n"
    "  capsim catalog\n"
    "  capsim catalog --kind hardware\n"
    "  capsim catalog show h100-sxm\n"
    "  capsim catalog show llama-3.1-70b\n"
    "  capsim catalog show fp8\n"
    "  capsim catalog show ./Llama-3.1-8B/config.json")
_CATALOG_SHOW_HELP = (
    "Print one catalog entry (hardware, model or quantization) with every figure and its source."
    "\n\n"
    "For a model: also its parameters (total and, for mixture-of-experts, active per token), bf16 weight "
    "bytes, and KV-cache bytes per token. For hardware: what each quantization scheme runs as on it. For a "
    "quantization: what it runs as on each device (natively, or by fallback). NAME may also be the path "
    "of a Hugging Face config.json (or of the folder holding it) to see the model it describes."
    "\n\n\b\nExamples:\n"
    "  capsim catalog show b200\n"
    "  capsim catalog show mixtral-8x7b\n"
    "  capsim catalog show int4-awq\n"
    "  capsim catalog show ~/models/Qwen2.5-7B-Instruct/config.json")

catalog_app = typer.Typer(name="catalog", help=_CATALOG_HELP, invoke_without_command=True, no_args_is_help=False)
app.add_typer(catalog_app, name="catalog")


def _catalog_console() -> Console:
    """A console for catalog tables: 120 columns when writing to a file or a pipe (rich's default there
    is 80, which folds these tables), the terminal's width otherwise."""
    import os

    from rich.console import Console

    con = Console()
    return con if con.is_terminal or "COLUMNS" in os.environ else Console(width=120)


def _gb(n_bytes: float) -> str:
    """Bytes as decimal gigabytes, the unit of model sizes."""
    return f"{n_bytes / 1e9:,.2f} GB"


def _peak(x: Optional[float]) -> str:
    """A peak rate for a table cell: whole numbers from 100 up, three figures below, "-" when absent."""
    return "-" if x is None else f"{x:,.0f}" if x >= 100 else f"{x:,.3g}"


def _hardware_table() -> Table:
    """One row per device: memory, bandwidth, dense peaks, link, power and price."""
    from rich.table import Table

    from calibration.catalog import GPUS

    t = Table(title="hardware, per device: memory an engine can address (GiB) and its bandwidth (TB/s); dense "
                    "peak TFLOPS (TOPS for int8); intra-node link per direction; TDP; cloud $ per device-hour",
              title_justify="left")
    t.add_column("name", no_wrap=True)
    for col in ("GiB", "TB/s", "bf16", "fp8", "int8", "link GB/s", "TDP W", "$/h"):
        t.add_column(col, justify="right")
    for key, g in GPUS.items():
        sixteen = _peak(g.bf16_tflops) + ("" if "bf16" in g.tflops else " fp16")
        t.add_row(key, f"{g.memory_gib:,.1f}", f"{g.hbm_tb_s:.3g}", sixteen, _peak(g.tflops.get("fp8")),
                  _peak(g.tflops.get("int8")), "-" if not g.interconnect_gb_s else f"{g.interconnect_gb_s:,.0f}",
                  f"{g.tdp_w:,.0f}", f"{g.price_usd_per_hour:.2f}")
    return t


def _models_table() -> Table:
    """One row per model: parameters (total, active), shapes, context and KV bytes per token."""
    from rich.table import Table

    from calibration.catalog import KV_CACHE_DTYPES, MODELS

    t = Table(title="models: parameters in billions (active: those one token uses); context in tokens; "
                    "KV-cache bytes per token at bf16", title_justify="left")
    t.add_column("name", no_wrap=True)
    for col in ("params", "active", "layers", "hidden", "heads/kv", "context", "KV B/token"):
        t.add_column(col, justify="right")
    for key, m in MODELS.items():
        t.add_row(key, f"{m.params / 1e9:.2f}", f"{m.active_params / 1e9:.2f}", str(m.layers), f"{m.hidden:,}",
                  f"{m.heads}/{m.kv_heads}", f"{m.max_context:,}",
                  f"{m.kv_bytes_per_token(KV_CACHE_DTYPES['bf16']):,.0f}")
    return t


def _runs_on(quant: Quantization) -> tuple[list[str], list[str]]:
    """The catalog's devices that run ``quant`` natively, and those that run it by a fallback."""
    from calibration.catalog import GPUS, resolve_precision

    native, fallback = [], []
    for key, g in GPUS.items():
        (fallback if resolve_precision(quant, g).note else native).append(key)
    return native, fallback


def _quantizations_table() -> Table:
    """One row per scheme: bits per weight, matmul precision, and where it runs natively or by fallback."""
    from rich.table import Table

    from calibration.catalog import GPUS, QUANTIZATIONS

    t = Table(title="quantizations: stored bits per weight (scales included); matmul precision where the hardware "
                    "has it; which listed hardware runs it natively, and which by a fallback (the stored weights "
                    "through 16-bit matmuls)", title_justify="left")
    t.add_column("name", no_wrap=True)
    t.add_column("bits/weight", justify="right")
    t.add_column("compute")
    t.add_column("weight-only")
    t.add_column("native on")
    t.add_column("fallback on")
    for key, q in QUANTIZATIONS.items():
        native, fallback = _runs_on(q)
        # Spell out the shorter list; the other column says "all others".
        if not fallback:
            where = (f"all {len(GPUS)}", "-")
        elif len(native) <= len(fallback):
            where = (", ".join(native) or "-", "all others")
        else:
            where = ("all others", ", ".join(fallback))
        t.add_row(key, f"{q.weight_bits:g}", q.compute, "yes" if q.weight_only else "no", *where)
    return t


@catalog_app.callback(invoke_without_command=True, help=_CATALOG_HELP)
def catalog_list(
    ctx: typer.Context,
    kind: Optional[CatalogKind] = typer.Option(None, "--kind", "-k",
                                               help="List only this catalog: hardware, models or quantizations."),
) -> None:
    """List the catalog as tables (help text: ``_CATALOG_HELP``)."""
    if ctx.invoked_subcommand is not None:
        return
    from calibration.catalog import CatalogError

    builders = {CatalogKind.hardware: _hardware_table, CatalogKind.models: _models_table,
                CatalogKind.quantizations: _quantizations_table}
    con = _catalog_console()
    for k, build in builders.items():
        if kind is None or kind == k:
            try:
                table = build()
            except CatalogError as e:  # a data file that does not validate
                _fail(str(e))
            con.print(table)
    con.print("every figure with its source: capsim catalog show NAME", highlight=False)


def _show_gpu(g: GPU) -> None:
    """Every figure of a device with its source, its roofline ridge, and what each scheme runs as on it."""
    from rich.markup import escape
    from rich.table import Table

    from calibration.catalog import QUANTIZATIONS, resolve_precision

    t = Table()
    t.add_column("figure", no_wrap=True)
    t.add_column("value", justify="right")
    t.add_column("source", overflow="fold")

    def src(figure: str) -> str:  # its own source, or a pointer to the entry's default printed below
        return g.sources.get(figure, "default source (below)")

    t.add_row("memory_gib", f"{g.memory_gib:,.2f} GiB ({g.memory_bytes / 1e9:,.1f} GB)", escape(src("memory_gib")))
    t.add_row("hbm_tb_s", f"{g.hbm_tb_s:g} TB/s", escape(src("hbm_tb_s")))
    for i, (p, v) in enumerate(g.tflops.items()):
        unit = "TOPS" if p.startswith("int") else "TFLOPS"
        t.add_row(f"tflops.{p}", f"{v:,g} {unit} dense", escape(src("tflops")) if i == 0 else "(as above)")
    t.add_row("interconnect_gb_s", f"{g.interconnect_gb_s:,g} GB/s per direction" if g.interconnect_gb_s else "none",
              escape(src("interconnect_gb_s")))
    t.add_row("tdp_w", f"{g.tdp_w:,g} W", escape(src("tdp_w")))
    t.add_row("idle_w", f"{g.idle_w:,g} W", escape(src("idle_w")))
    t.add_row("price_usd_per_hour", f"${g.price_usd_per_hour:,.4g} per device-hour", escape(src("price_usd_per_hour")))
    con = _catalog_console()
    con.print(f"[bold]{escape(g.key)}[/bold]: {escape(g.name)}; vendor {escape(g.vendor)}, kind {g.kind}",
              highlight=False)
    con.print(t)
    if "default" in g.sources:
        con.print(escape(f"default source: {g.sources['default']}"), highlight=False)
    ridge = g.bf16_tflops / g.hbm_tb_s
    con.print(f"derived: 16-bit FLOP per byte of memory traffic (roofline ridge) = {ridge:,.0f}", highlight=False)
    con.print("quantizations on it:", highlight=False)
    for key, q in QUANTIZATIONS.items():
        con.print(escape(f"  {key}: {_runs_as(q, resolve_precision(q, g))}"), highlight=False)


def _runs_as(quant: Quantization, resolved: ResolvedPrecision) -> str:
    """How a scheme runs on a device, in words."""
    if resolved.note:
        return resolved.note
    bits = f"{resolved.weight_bytes * 8:g}-bit weights"
    if quant.weight_only:
        return f"weight-only as designed ({bits} dequantized into {resolved.compute} matmuls)"
    return f"native ({resolved.compute} matmuls, {bits})"


def _show_model(m: ModelArch) -> None:
    """A model's shapes and source, then what follows from them: parameters, weight and KV bytes."""
    from rich.markup import escape
    from rich.table import Table

    from calibration.catalog import KV_CACHE_DTYPES

    t = Table()
    t.add_column("figure", no_wrap=True)
    t.add_column("value", justify="right")
    for field in ("layers", "hidden", "heads", "kv_heads", "head_dim", "intermediate", "vocab", "max_context",
                  "tied_embeddings", "attention_bias", "experts", "experts_per_token"):
        v = getattr(m, field)
        t.add_row(field, str(v).lower() if isinstance(v, bool) else f"{v:,}")
    con = _catalog_console()
    con.print(f"[bold]{escape(m.key)}[/bold]: {escape(m.name)}", highlight=False)
    con.print(t)
    con.print(escape(f"source: {m.source}"), highlight=False)
    d = Table(title="derived", title_justify="left")
    d.add_column("figure", no_wrap=True)
    d.add_column("value", justify="right")
    d.add_column("how", overflow="fold")
    d.add_row("params", f"{m.params:,} ({m.params / 1e9:.2f} B)",
              "layers x (attention + experts x gated MLP + router + 2 norms) + embeddings + LM head "
              + ("(tied) " if m.tied_embeddings else "") + "+ final norm")
    if m.is_moe:
        d.add_row("active params", f"{m.active_params:,} ({m.active_params / 1e9:.2f} B)",
                  f"the same with {m.experts_per_token} of {m.experts} experts per token")
    d.add_row("bf16 weights", _gb(m.params * 2), "params x 2 bytes")
    for dtype in ("bf16", "fp8"):
        per_token = m.kv_bytes_per_token(KV_CACHE_DTYPES[dtype])
        d.add_row(f"KV bytes/token ({dtype})", f"{per_token:,.0f}",
                  f"2 (K, V) x {m.layers} layers x {m.kv_heads} KV heads x {m.head_dim} x {KV_CACHE_DTYPES[dtype]:g} B")
    full = m.kv_bytes_per_token(KV_CACHE_DTYPES["bf16"]) * m.max_context
    d.add_row("KV of one full context (bf16)", f"{full / 2**30:,.2f} GiB", f"{m.max_context:,} tokens")
    con.print(d)


def _show_quantization(q: Quantization) -> None:
    """A scheme's figures and source, then what it runs as on each device of the catalog."""
    from rich.markup import escape
    from rich.table import Table

    from calibration.catalog import GPUS, resolve_precision

    t = Table()
    t.add_column("figure", no_wrap=True)
    t.add_column("value", overflow="fold")
    t.add_row("weight_bits", f"{q.weight_bits:g} (bytes per weight: {q.weight_bytes:g})")
    t.add_row("compute", q.compute)
    t.add_row("weight_only", "yes" if q.weight_only else "no")
    t.add_row("activation_bytes", f"{q.activation_bytes:g}")
    t.add_row("fallback", q.fallback or "-")
    t.add_row("description", escape(q.description))
    con = _catalog_console()
    con.print(f"[bold]{escape(q.key)}[/bold]: {escape(q.name)}", highlight=False)
    con.print(t)
    con.print(escape(f"source: {q.source}"), highlight=False)
    r = Table(title="on each device", title_justify="left")
    for col in ("hardware", "matmuls", "weight bytes", "activation bytes", "how"):
        r.add_column(col, no_wrap=col == "hardware", overflow="fold")
    for key, g in GPUS.items():
        res = resolve_precision(q, g)
        r.add_row(key, res.compute, f"{res.weight_bytes:g}", f"{res.activation_bytes:g}", escape(_runs_as(q, res)))
    con.print(r)


def _hf_config_path(name: str) -> Optional[Path]:
    """``name`` as a Hugging Face config.json (or a folder holding one), if it looks like a path."""
    p = Path(name).expanduser()
    if p.is_dir() and (p / "config.json").is_file():
        return p / "config.json"
    if p.suffix == ".json" or p.is_file() or "/" in name:
        return p
    return None


@catalog_app.command("show", help=_CATALOG_SHOW_HELP)
def catalog_show(
    name: str = typer.Argument(..., metavar="NAME",
                               help="A hardware, model or quantization name from 'capsim catalog', or the path of "
                                    "a Hugging Face config.json."),
) -> None:
    """Print one entry with its sources (help text: ``_CATALOG_SHOW_HELP``)."""
    from calibration.catalog import GPUS, MODELS, QUANTIZATIONS, CatalogError, close_matches, model_from_hf_config

    try:  # a data file that does not validate, or a bad config.json, is one line
        if name in GPUS:
            return _show_gpu(GPUS[name])
        if name in MODELS:
            return _show_model(MODELS[name])
        if name in QUANTIZATIONS:
            return _show_quantization(QUANTIZATIONS[name])
        path = _hf_config_path(name)
        if path is not None:
            return _show_model(model_from_hf_config(path))
    except CatalogError as e:
        _fail(str(e))
    known = [*GPUS, *MODELS, *QUANTIZATIONS]
    _fail(f"unknown hardware, model or quantization {name!r}{close_matches(name, known)}; "
          "'capsim catalog' lists them, and a path to a Hugging Face config.json shows that model")


@catalog_app.command("profiles", help=(
        "List the measured and derived-from-measured profiles a scenario with profile: {kind: auto} can use: "
        "those shipped with capsim, and those in the --dir directories (searched first), with each one's kind, "
        "linear-layer held-out error and what it was measured on. Configurations not listed are priced by the "
        "datasheet roofline (kind derived).\n\n\b\nExamples:\n  capsim catalog profiles\n"
        "  capsim catalog profiles --hardware h100-sxm\n  capsim catalog profiles --dir profiles"))
def catalog_profiles(
    dirs: list[Path] = typer.Option([], "--dir", help="A directory (or profile .json) of your own; repeatable."),
    hardware: Optional[str] = typer.Option(None, "--hardware", help="Only profiles for this catalog device."),
    model: Optional[str] = typer.Option(None, "--model", help="Only profiles for this catalog model."),
) -> None:
    """Shipped and user profiles as one table."""
    from rich.table import Table

    from calibration.measured import list_profiles, shipped_profile_dir

    for d in dirs:
        if not d.exists():
            _fail(f"--dir {d}: no such directory or file")
    rows = [(f, r) for f, r in list_profiles([*dirs, shipped_profile_dir()])
            if (hardware is None or r.hardware == hardware) and (model is None or r.model == model)]
    if not rows:
        _fail("no profile matches" + (f" --hardware {hardware!r}" if hardware else "")
              + (f" --model {model!r}" if model else "") + "; 'capsim catalog profiles' lists them all")
    t = Table(title="profiles for kind: auto (user directories first, then shipped)")
    for col in ("model", "quantization", "hardware", "tp", "kind", "held-out error: linear layers or steps "
                "(median / p90)", "measured on"):
        t.add_column(col, overflow="fold")
    shipped = shipped_profile_dir()
    for f, r in sorted(rows, key=lambda fr: (fr[1].hardware, fr[1].model, fr[1].quantization, fr[1].tp)):
        h = r.heldout_error
        lin = next((e for k, e in h.items() if k.startswith("linear layers") and "roof alone" not in k), None)
        # Operator-table profiles: their linear layers; harness profiles: whole steps per phase.
        err = (f"{lin['median']:.1%} / {lin['p90']:.1%}" if lin is not None else
               "; ".join(f"{k} {h[k]['median']:.1%} / {h[k]['p90']:.1%}" for k in ("decode", "prefill") if k in h))
        m = r.meta
        if "layers_from" in m:  # fitted to operator tables
            where = (f"layers of {str(m['layers_from']).split('/')[-1]}" if m.get("layer_shapes_match")
                     else "nearest measured GEMMs")
        else:
            where = str(m.get("device") or r.source.split(";")[0])
        t.add_row(r.model, r.quantization, r.hardware, str(r.tp), r.kind, err,
                  f"{where}" + ("" if f.parent == shipped else f" ({f.parent})"))
    con = _catalog_console()
    con.print(t)
    con.print("a profile's whole provenance: the 'source' in its .json, and every result's summary.json",
              highlight=False)


app.command("calibrate")(calibrate_command)
app.command("validate")(validate_command)
from sim.cli_curve import curve as curve_command  # noqa: E402 - a command module, like calibrate's
app.command("curve")(curve_command)
from sim.cli_compare import compare_command  # noqa: E402 - a command module, like calibrate's
app.command("compare")(compare_command)


def _help_width() -> None:
    """Render ``--help`` at least 120 columns wide when it is not going to a terminal (piped, or
    captured by a tool), unless COLUMNS or TERMINAL_WIDTH says otherwise: rich assumes 80 there,
    which squeezes the option table and cuts long examples with an ellipsis."""
    import os
    import shutil

    import typer.rich_utils

    if os.environ.get("TERMINAL_WIDTH") or os.environ.get("COLUMNS") or sys.stdout.isatty():
        return
    typer.rich_utils.MAX_WIDTH = max(shutil.get_terminal_size((120, 24)).columns, 120)


def main() -> None:
    """Console-script entry point."""
    _help_width()
    app()


if __name__ == "__main__":
    sys.exit(main())
