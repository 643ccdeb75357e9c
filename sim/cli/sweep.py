"""``capsim sweep``: every point of a sweep spec, on local processes or a Ray cluster, into a
resumable Parquet dataset (the method and the layout: :mod:`sim.analysis.sweep`, docs/sweeps.md).

Registered on the app in :mod:`sim.cli.app`; thin over :func:`sim.analysis.sweep.run_sweep`.
The command builds the executor and hands it over (the seam a cluster backend plugs into).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from sim.cli.common import executor_from_args, fail, ray_option

__all__ = ["sweep_command"]


def sweep_command(
    spec: Path = typer.Argument(..., help="Sweep spec (.yaml, .yml, .toml): base scenario, axes, design (see below "
                                "and docs/sweeps.md)."),
    out_name: str = typer.Option(..., "--out", "-o", metavar="DIR", help="Output directory: manifest.parquet, "
                                 "points/point_id=ID/summary.parquet, sweep.json. Run the same command again to "
                                 "resume: finished points are skipped."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Local processes (default: all cores; 1 runs in "
                                          "this process)."),
    ray: Optional[str] = ray_option(),
    records: str = typer.Option("summary", "--records", metavar="summary|full", help="summary: one summary row per "
                                "point; full: also requests/ and iterations/ datasets, partitioned by point."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no table; still writes every file."),
) -> None:
    """Run a parameter sweep: a base scenario with axes varied over any field by dotted path (as
    --set takes it), each point simulated once per repeat with a seed of its own, each written to
    its own Parquet partition as it finishes. Killed at any moment, the same command resumes.

    \b
    Example spec (sweep.yaml):
      base: my-scenario.yaml              # or a mapping; omitted: the embedded default
      axes:
        hardware: \\[h100-sxm, l40s]
        quantization: \\[bf16, fp8]
        workload.arrival.rate_per_s: \\[4, 8, 16]
      exclude: \\[{hardware: l40s, quantization: bf16}]
      repeats: 2                          # seeds per point
      seed: 0                             # the sweep seed; a point's seed derives from it and the point's id

    \b
    Designs: design: grid (every combination, the default); design: random or latin_hypercube
    with samples: N, where an axis may also be a range {low: 4, high: 32}; zip: \\[\\[tp, replicas]]
    varies axes together. Points whose scenario does not validate are listed first and not run.

    \b
    Examples:
      capsim sweep sweep.yaml -o out/sweep
      capsim sweep sweep.yaml -o out/sweep --workers 2 --records full
      capsim sweep sweep.yaml -o out/sweep --ray auto         # on the Ray cluster this machine belongs to
      python -c "import pyarrow.dataset as ds; print(ds.dataset('out/sweep/points', partitioning='hive').to_table())"
    """
    from sim.analysis.sweep import RECORDS, SweepError, run_sweep
    from sim.analysis.sweep_spec import SweepSpecError, load_sweep_spec

    if records not in RECORDS:
        fail(f"--records {records!r}: must be one of {', '.join(RECORDS)}")
    try:
        checked = load_sweep_spec(spec)
    except SweepSpecError as e:
        fail(str(e))
    say = (lambda line: None) if quiet else (lambda line: typer.echo(f"capsim: {line}", err=True))
    # A local pool forks its workers now, before the progress bar's thread starts (see local_executor).
    ex = executor_from_args(workers, ray)
    try:
        with ex:
            # Absolute: on a cluster, each worker writes its partition from a working directory of its own.
            result = _run(lambda progress: run_sweep(checked, Path(out_name).absolute(), executor=ex, records=records,
                                                     progress=progress, notify=say), quiet)
    except (SweepSpecError, SweepError) as e:
        fail(str(e))
    if not quiet:
        _print(result, out_name)


def _run(go, quiet: bool):  # type: ignore[no-untyped-def]
    """``go(progress)`` under a progress bar with an ETA on stderr (on a terminal, unless quiet)."""
    if quiet:
        return go(None)
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    err = Console(stderr=True)
    with Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("points"), TimeElapsedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), transient=True, console=err,
                  disable=not err.is_terminal) as bar:
        task = bar.add_task("sweep", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return go(progress)


def _print(result: Any, out: str) -> None:
    """The counts of this run, its wall time and rate, and where the results are."""
    import os

    from rich.console import Console
    from rich.table import Table

    from sim.analysis.sweep import points_per_minute

    t = Table(title="sweep", title_justify="left")
    for col in ("ran ok", "failed", "invalid", "skipped (done before)", "excluded", "wall time", "points/min"):
        t.add_column(col, justify="right")
    rate = points_per_minute(result.ok + result.failed, result.wall_s)
    t.add_row(str(result.ok), str(result.failed), str(result.invalid), str(result.skipped), str(result.excluded),
              f"{result.wall_s:,.1f} s", "-" if result.ok + result.failed == 0 else f"{rate:,.1f}")
    con = Console()
    if not (con.is_terminal or "COLUMNS" in os.environ):  # rich's 80 columns fold the table
        con = Console(width=120)
    con.print(t)
    failed = [r for r in result.manifest.to_pylist() if r["status"] == "failed"]
    for r in failed[:5]:
        typer.echo(f"capsim: warning: point {r['point_id']} {r['params']} failed: {r['error']}", err=True)
    if len(failed) > 5:
        typer.echo(f"capsim: warning: {len(failed) - 5} more points failed (manifest.parquet)", err=True)
    typer.echo(f"results: {out}/ (manifest.parquet, points/: {result.table.num_rows} summaries); its document: "
               f"capsim report {out} -o REPORT_DIR")
