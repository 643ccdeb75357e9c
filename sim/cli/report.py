"""``capsim report``: the capacity-planning document of a saved plan, a comparison, a load curve
or a sweep (the method and the contents: :mod:`sim.analysis.report`, :mod:`sim.analysis.sweep_report`).

Registered on the app in :mod:`sim.cli.app`; thin over :func:`sim.analysis.report.report`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from sim.cli.common import fail

__all__ = ["report_command"]


def report_command(
    source_dir: Path = typer.Argument(..., metavar="SOURCE_DIR", help="A directory written by capsim plan -o (plan.json), "
                                  "capsim compare -o (compare.json), capsim curve -o (curve.json) or capsim sweep -o "
                                  "(sweep.json)."),
    out_name: str = typer.Option("capsim-report", "--out", "-o", metavar="DIR", help="Directory for report.html, "
                                 "report.md and the charts (PNG and SVG) beside them; created if needed, earlier "
                                 "files of the same names replaced."),
    formats: str = typer.Option("html,md", "--format", metavar="html,md", help="Documents to write, "
                                "comma-separated: html (report.html), md (report.md)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no summary; still writes the files."),
) -> None:
    """Write the capacity-planning document of a plan, comparison, load curve or sweep: the question,
    the recommendation and its runner-up with the margin between them, the workload (arrival
    rate and lengths), the options compared (load curves, $ per 1M output tokens against load,
    waste, the fleet per hour for time-varying traffic, every option with the reason it cannot
    meet the SLOs), deployment patterns and break-even, the assumptions (prices and their
    sources, SLOs, engine settings) and each profile's provenance.

    The folder reads anywhere without a server: every chart is a PNG and an SVG file beside
    report.html and report.md, linked relatively, and nothing is loaded from elsewhere.
    A comparison's recommendation is its cheapest option meeting the SLOs; a load curve's
    document gives its highest rate under the SLOs instead. A sweep's document ranks its
    configurations by good output tokens per dollar (output of requests that met their SLOs, per
    dollar of GPU time), with a heatmap over its first two varying axes, the metrics against each
    axis, every configuration, and every failed or invalid point with its reason. Sections the
    source has no data for say "not computed".

    \b
    Examples:
      capsim plan my.yaml --slo ttft_p99=1s --slo tpot_p99=60ms -o plan/ && capsim report plan/ -o report/
      capsim compare --hardware h100-sxm,h200,l40s --quant bf16,fp8 --rate 40 -o cmp/ && capsim report cmp/ -o report/
      capsim curve my.yaml -o curve/ && capsim report curve/ -o report/ --format md
      capsim sweep sweep.yaml -o sweep/ && capsim report sweep/ -o report/
    """
    from sim.analysis.report import FORMATS, ReportError, report
    from sim.results.records import OutputError, check_output_dir

    wanted = [f.strip() for f in formats.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown or not wanted:
        fail(f"--format {formats!r}: give one or more of {', '.join(FORMATS)}, comma-separated")
    try:
        check_output_dir(out_name, "replace")
    except OutputError as e:
        fail(f"--out {e}")
    try:
        say = (lambda m: None) if quiet else (lambda m: typer.echo(f"capsim: {m}", err=True))
        written = report(source_dir, out_name, formats=wanted, progress=say)
    except ReportError as e:
        fail(str(e))
    if not quiet:
        docs = [p for p in written if p.suffix in (".html", ".md")]
        charts = len([p for p in written if p.suffix == ".png"])
        typer.echo(f"report: {', '.join(str(p) for p in docs)} ({charts} charts as PNG and SVG beside them)")
