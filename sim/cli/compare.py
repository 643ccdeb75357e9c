"""``capsim compare``: one workload on several hardware × quantization × TP options, ranked by cost
under the SLOs (the method: :mod:`sim.analysis.compare`).

Registered on the app in :mod:`sim.cli.app`; thin over :func:`sim.analysis.compare.compare`.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn, Optional

import typer

from sim.cli.common import executor_from_args, fail, fail_with_flag, ray_option, search_inputs, split_list  # split_list: also plan's

__all__ = ["compare_command", "split_list"]


def compare_command(
    scenario: Optional[Path] = typer.Argument(None, help="Scenario file (.yaml, .yml, .toml); omit it for the embedded "
                                              "default. Its workload, engine, SLOs and cost section apply to every option."),
    hardware: Optional[str] = typer.Option(None, "--hardware", metavar="H1,H2,...", help="Catalog hardware to compare "
                                           "(capsim catalog), comma-separated: every one with every --quant and "
                                           "--tp. Or give --option instead."),
    option: list[str] = typer.Option([], "--option", metavar="HW:QUANT[:TP]", help="One option to compare, e.g. "
                                     "h100-sxm:fp8 or l40s:int4-awq:2 (TP 1 when left out): exactly these, not a "
                                     "grid. Not with --hardware, --quant or --tp."),
    quant: Optional[str] = typer.Option(None, "--quant", metavar="Q1,Q2,...", help="Quantizations, comma-separated "
                                        "(default: the scenario's)."),
    tp: str = typer.Option("1", "--tp", metavar="N1,N2,...", help="Tensor-parallel degrees, comma-separated."),
    rate: Optional[float] = typer.Option(None, "--rate", help="Target load in requests/s, for sizing the fleet and "
                                         "its waste (default: the scenario's mean arrival rate)."),
    slo: list[str] = typer.Option([], "--slo", metavar="METRIC_STAT=LIMIT", help="An SLO target, e.g. ttft_p99=1s or "
                                  "tpot_p99=60ms (repeatable; default: p99 of each class's own SLOs)."),
    family: str = typer.Option("auto", "--family", metavar="auto|roofline|measured", help="Step-time model of every "
                               "row, one family for all. auto: with the scenario's profile at kind auto, measured if "
                               "every option has a measured profile, else the datasheet roofline for all (the notes say "
                               "why); roofline: the datasheet roofline for all; measured: only options with a measured "
                               "profile."),
    seeds: int = typer.Option(2, "--seeds", help="Seeds per load-curve point (the spread of the highest rate)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Processes for the curve points (default: all cores)."),
    ray: Optional[str] = ray_option(),
    set_: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE", help="Override a scenario key, as in "
                                   "capsim run. Repeatable."),
    out_name: str = typer.Option("capsim-compare", "--out", "-o", metavar="DIR", help="Directory for compare.parquet, "
                                 "compare.json and the charts (waste per option, $ per 1M output tokens)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no table; still writes files."),
) -> None:
    """Compare hardware options for one workload: for each, its highest rate per replica under
    the SLOs, $ per 1M output tokens there, replicas needed for the target rate, and the
    idle-capacity waste of that fleet; options that do not fit or cannot meet the SLOs are listed
    with the reason. Each row states its profile kind (measured or roofline).

    \b
    Examples:
      capsim compare --hardware h100-sxm,h200,a100-80gb,l40s --quant bf16,fp8 --rate 40
      capsim compare my.yaml --hardware h100-sxm,l40s --quant fp8,int4-awq --tp 1,2 --slo ttft_p99=1s --slo tpot_p99=60ms
      capsim compare my.yaml --hardware h100-sxm,h200 --family roofline -o out/cmp
      capsim compare my.yaml --option h100-sxm:fp8 --option l40s:int4-awq --rate 40 --slo ttft_p99=1s
      capsim compare my.yaml --hardware h100-sxm,h200,l40s --quant bf16,fp8 --ray auto
    """
    from sim.analysis.compare import CompareError, chosen_options, compare

    options = None
    if option:
        if hardware is not None or quant is not None or tp != "1":
            fail("--option: give the options one by one, or --hardware with --quant and --tp to combine, not both")
        options = [_option(o) for o in option]
        hw, tps = [], [1]
    elif hardware is None:
        fail("--hardware: give the hardware to compare (e.g. --hardware h100-sxm,l40s), or --option HW:QUANT[:TP] "
             "for each option")
    else:
        try:
            hw = split_list(hardware, "--hardware")
            tps_text = split_list(tp, "--tp")
        except ValueError as e:
            fail(str(e))
        try:
            tps = [int(t) for t in tps_text]
        except ValueError:
            fail(f"--tp {tp!r}: give whole numbers, comma-separated, e.g. 1,2")
    if seeds < 1:
        fail(f"--seeds {seeds}: must be >= 1")
    sc, targets, quants = search_inputs(scenario, set_, slo, quant, out_name, rate, workers)
    say = (lambda m: None) if quiet else (lambda m: typer.echo(f"capsim: {m}", err=True))
    grid = {} if options is not None else {"hardware": hw, "quantization": quants, "tp": tps}
    try:  # the options are checked before any worker (or a Ray cluster) starts
        chosen_options(sc, grid.get("hardware", ()), grid.get("quantization", ()), grid.get("tp", (1,)), options)
    except CompareError as e:
        _fail(e, options is not None)
    ex = executor_from_args(workers, ray)
    try:
        result = compare(sc, **grid, options=options, rate_per_s=rate,
                         slos=targets or None, family=family, seeds=seeds, executor=ex, progress=say)
    except CompareError as e:
        _fail(e, options is not None)
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
    out = Path(out_name)
    written = result.write(out)
    written += _charts(result, out)
    if not quiet:
        _print(result)
        typer.echo(f"results: {out}/ ({', '.join(p.name for p in written)})")
    for note in result.notes:
        typer.echo(f"capsim: warning: {note}", err=True)


def _fail(e: Exception, by_option: bool) -> NoReturn:
    """A comparison's one-line error, prefixed with the flag it is about."""
    given = ((("--option", "options"), ("--option", "hardware"), ("--option", "quantization"), ("--option", "tp"))
             if by_option else (("--hardware", "hardware"), ("--quant", "quantization"), ("--tp", "tp")))
    fail_with_flag(e, (*given, ("--rate", "rate"), ("--family", "family")))


def _option(text: str) -> tuple[str, str, int]:
    """``HW:QUANT[:TP]`` as a triple (one line and exit 2 when malformed)."""
    parts = [p.strip() for p in text.split(":")]
    if len(parts) not in (2, 3) or not all(parts):
        fail(f"--option {text!r}: give HW:QUANT or HW:QUANT:TP, e.g. h100-sxm:fp8 or l40s:int4-awq:2")
    tp = 1
    if len(parts) == 3:
        try:
            tp = int(parts[2])
        except ValueError:
            fail(f"--option {text!r}: the TP {parts[2]!r} is not a whole number")
    return parts[0], parts[1], tp


def _charts(result, out: Path) -> list[Path]:  # type: ignore[no-untyped-def]
    """The waste per option and, for the cheapest option's fleet, per window (when some option
    was simulated)."""
    from sim.analysis.charts import waste_by_option_chart, waste_by_window_chart

    rows = result.options
    if not any(rows.column("meets_slo").to_pylist()):
        return []
    caption = (f"{result.scenario.model}, target {result.target_rate_per_s:g} requests/s, SLOs "
               f"{', '.join(result.slos) or 'none'}; profile family {result.family}; waste of the fleet sized for "
               "the target, against each option's own load curve")
    written = list(waste_by_option_chart(rows, out / "waste_by_option", caption))
    cheapest = rows.to_pylist()[0]["option"]  # options come cheapest first among those meeting the SLOs
    written += waste_by_window_chart(result.waste_windows(cheapest), out / "waste_by_window",
                                     f"{cheapest}: fleet of {rows.to_pylist()[0]['replicas_needed']} at "
                                     f"{result.target_rate_per_s:g} requests/s; " + caption)
    return written


_KIND = {"measured": "measured", "derived-from-measured": "measured, scaled", "derived": "roofline"}


def _print(result) -> None:  # type: ignore[no-untyped-def]
    """The options, cheapest first, in a table (140 columns when not on a terminal: rich's 80 folds it)."""
    import os

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    con = Console()
    if not (con.is_terminal or "COLUMNS" in os.environ):
        con = Console(width=140)
    sized = next((r["sized_for_rate_per_s"] for r in result.options.to_pylist() if r["sized_for_rate_per_s"]), None)
    peak = f" (the fleet sized for the peak, {sized:.3g}/s)" if sized and sized > result.target_rate_per_s * 1.0001 else ""
    t = Table(title=f"options at {result.target_rate_per_s:.3g} requests/s{peak}, SLOs {', '.join(result.slos) or 'none'}: "
                    "cheapest first", title_justify="left")
    for col in ("option", "profile", "rate/replica", "(seeds)", "$/1M out", "replicas", "fleet $/h", "fleet meets",
                "not useful", "notes"):
        t.add_column(col, justify="left" if col in ("option", "profile", "notes") else "right")
    for r in result.options.to_pylist():
        kind = _KIND.get(r["profile_kind"] or "", r["profile_kind"] or "-")
        if r["meets_slo"]:
            parts = {p: r[f"{p}_gpu_h"] or 0.0 for p in ("useful", "under_filled", "recompute", "idle", "over_provisioned")}
            total = sum(parts.values())
            t.add_row(r["option"], kind, f"{r['max_rate_per_replica_per_s']:.3g}/s",
                      f"{r['max_rate_min_per_s']:.3g}-{r['max_rate_max_per_s']:.3g}",
                      f"${r['usd_per_million_output_tokens']:.3f}", str(r["replicas_needed"]),
                      f"${r['usd_per_hour_fleet']:.2f}", "yes" if r["fleet_meets_slo"] else "no",
                      f"{1 - parts['useful'] / total:.0%}" if total else "-",
                      escape(r["fleet_slo_failures"] or ""))
        else:
            t.add_row(r["option"], kind, "-", "-", "-", "-", "-", "-", "-", escape(r["reason"] or ""))
    con.print(t)
    con.print("rate/replica: highest arrival rate one replica sustains under the SLOs (mean over seeds; their range "
              "beside it); $/1M out: one replica's price over its output at that rate; not useful: the fleet's GPU "
              "time under-filled, recomputing, idle or over-provisioned (compare.json has each part)", style="dim")
