"""``capsim validate``: serve a workload for real on the harness's kernels and compare with the simulation,
or predict a serving benchmark's rows with a profile and compare with what was measured (``--benchmarks``).

Registered on the main app in :mod:`sim.cli.app` (``app.command("validate")(validate_command)``);
kept apart because, like ``calibrate``, its real-loop mode needs PyTorch (imported only when a run starts);
``--benchmarks`` needs only the simulator.
"""

from __future__ import annotations

import json
import re
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional

import typer

from sim.cli.common import fail, measuring_progress, parse_duration

__all__ = ["parse_lengths", "validate_command"]


def parse_lengths(text: str, option: str) -> dict[str, Any]:
    """A length spec from ``N`` (fixed) or ``LOW-HIGH`` (uniform, inclusive); ValueError naming
    the option and the text otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if not m:
        raise ValueError(f"{option} {text!r}: expected a token count (64) or a uniform range (16-128)")
    low = int(m.group(1))
    high = int(m.group(2)) if m.group(2) is not None else None
    if low < 1 or (high is not None and high < low):
        raise ValueError(f"{option} {text!r}: lengths must be >= 1, and a range's low <= high")
    return {"dist": "fixed", "value": low} if high is None else {"dist": "uniform", "low": low, "high": high}


# Option panels of `capsim validate --help`: the two modes take different options.
_LOOP = "Real serving loop (on this machine's kernels)"
_BENCH = "Benchmarks (--benchmarks FILE.csv)"
# Options of the real loop that mean nothing against a benchmark CSV (which names each row's
# model, quantization, lengths and load), and the benchmark mode's own: mixing them is refused.
_LOOP_ONLY = ("model", "quant", "layers", "utilisation", "rate", "requests", "repeats", "calibrate_budget",
              "alongside", "prompt_tokens", "output_tokens", "max_num_seqs", "max_num_batched_tokens")
_BENCH_ONLY = ("engine", "max_requests", "jobs")


def validate_command(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Catalog model whose shapes to build, e.g. "
                                        "llama-3.2-1b (required for the real loop).", rich_help_panel=_LOOP),
    # No short form: -q is --quiet in `capsim run`.
    quant: str = typer.Option("int8", "--quant", help="Quantization scheme the profile was calibrated in.",
                              rich_help_panel=_LOOP),
    layers: int = typer.Option(2, "--layers", "-l", min=1, help="Layers the real loop builds and runs (the profile is "
                               "priced at this depth for the comparison).", rich_help_panel=_LOOP),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="Real loop: a profile JSON, or a directory "
                                          "holding one for this configuration (omitted: calibrate first, into a "
                                          "temporary directory). --benchmarks: auto (the default: the best profile "
                                          "capsim has, as kind: auto), roofline (the datasheet roofline), or a "
                                          "measured profile's JSON file or directory (as kind: measured)."),
    utilisation: float = typer.Option(0.7, "--utilisation", "-u", help="Offered load as a share of the saturated "
                                      "capacity the profile predicts for these lengths.", rich_help_panel=_LOOP),
    rate: Optional[float] = typer.Option(None, "--rate", help="Poisson rate in requests/s (instead of --utilisation).",
                                         rich_help_panel=_LOOP),
    requests: int = typer.Option(200, "--requests", "-n", min=1, help="Requests in the workload.",
                                 rich_help_panel=_LOOP),
    repeats: int = typer.Option(2, "--repeats", "-r", help="Real runs of the same workload (>= 2: their spread is "
                                "part of the answer).", rich_help_panel=_LOOP),
    alongside: bool = typer.Option(False, "--alongside", help="Also re-measure the profile's step shapes in short "
                                   "bursts between the real loop's iterations and price the simulation with that "
                                   "fit (the load is set by the profile given, scaled to the speed a burst of each "
                                   "shape reads just before the runs; what the profile alone would have predicted is "
                                   "printed too): on a machine whose speed drifts from minute to minute, the profile "
                                   "and the real runs then see the same machine.", rich_help_panel=_LOOP),
    calibrate_budget: str = typer.Option("2m", "--calibrate-budget", help="Budget of the calibration run when no "
                                         "--profile is given: 300, 90s, 5m.", rich_help_panel=_LOOP),
    prompt_tokens: str = typer.Option("16-128", "--prompt-tokens", help="Prompt lengths: N, or LOW-HIGH (uniform).",
                                      rich_help_panel=_LOOP),
    output_tokens: str = typer.Option("8-64", "--output-tokens", help="Output lengths: N, or LOW-HIGH (uniform).",
                                      rich_help_panel=_LOOP),
    max_num_seqs: int = typer.Option(8, "--max-num-seqs", min=1, help="Most sequences per iteration.",
                                     rich_help_panel=_LOOP),
    max_num_batched_tokens: int = typer.Option(512, "--max-num-batched-tokens", min=1,
                                               help="Most tokens per iteration (chunked prefill).",
                                               rich_help_panel=_LOOP),
    benchmarks: Optional[Path] = typer.Option(
        None, "--benchmarks", help="Instead of the real loop: predict every row of this benchmark CSV (the "
        "--from-benchmarks format, docs/calibration.md) with --profile, no fitting, and compare with what was "
        "measured.", rich_help_panel=_BENCH),
    engine: Optional[str] = typer.Option(None, "--engine", "-e", help="Engine preset every row runs under, e.g. "
                                         "tensorrt-llm-0.17, vllm-0.8, sglang-0.4 (docs/engine.md); omitted: "
                                         "capsim's defaults (vLLM-like).", rich_help_panel=_BENCH),
    max_requests: int = typer.Option(400, "--max-requests", min=1, help="Most requests simulated per row (warm-up "
                                     "and drain once, the steady state weighted up to the measured count), as "
                                     "calibrate --from-benchmarks simulates them.", rich_help_panel=_BENCH),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Rows simulated in parallel (worker processes).",
                             rich_help_panel=_BENCH),
    seed: int = typer.Option(0, help="Seeds the workload (and the calibration, when there is one); with "
                             "--benchmarks, the arrivals of request-rate rows."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Real loop: also write the comparison as JSON to "
                                       "this file. --benchmarks: the directory for validate-benchmarks.csv, "
                                       "validate-benchmarks-summary.csv and validate-benchmarks.json (default: "
                                       "validation)."),
) -> None:
    """Validate a profile against reality, in one of two ways.

    Real serving loop (the default): draw one Poisson workload, serve it REPEATS times on the
    calibration harness's kernels (continuous batching, chunked prefill), simulate it once with
    the profile under the same engine settings, and print real (mean ± spread between runs)
    against simulated p50/p90/p99 TTFT, TPOT, E2E and output throughput, with the simulation's
    error. The real loop times its iterations as the calibration times its steps (on a CPU: the
    thread's CPU time, torch on one intra-op thread) and runs on a timeline of those seconds,
    so other load on the machine does not change its latencies. Without --profile it first
    calibrates on the step shapes this workload runs.

    Benchmarks (--benchmarks FILE.csv): re-enact every measured run of a serving benchmark with
    the profile and engine given (no fitting), print measured against predicted per row and
    metric with the relative error, then the median and p90 |error| per metric and overall, and
    write them as CSV and JSON. Rows that cannot be simulated are listed with the reason.

    Examples:
      capsim validate --model llama-3.2-1b --quant int8 --layers 2 --profile profiles
      capsim validate -m llama-3.2-1b --quant int8 --requests 60 --calibrate-budget 90s
      capsim validate -m llama-3.2-1b --quant int8 --layers 1 --alongside
      capsim validate --benchmarks bench.csv --profile roofline --engine tensorrt-llm-0.17 -o validation
    """
    # Options given on the command line, by the source click records (compared by name: typer
    # bundles its own copy of click in some versions, whose enum is not click's).
    given = [name for name in ctx.params if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"]
    if benchmarks is not None:
        loop = [name for name in given if name in _LOOP_ONLY]
        if loop:
            fail(f"--{loop[0].replace('_', '-')} does not apply with --benchmarks: the CSV names each row's model, "
                 "quantization, lengths and load")
        return _from_benchmarks(benchmarks, profile, engine, out, seed, max_requests, jobs)
    bench = [name for name in given if name in _BENCH_ONLY]
    if bench:
        fail(f"--{bench[0].replace('_', '-')} applies only with --benchmarks FILE.csv")
    if model is None:
        fail("--model is required (or --benchmarks FILE.csv); 'capsim catalog --kind models' lists models")
    lengths: dict[str, Any] = {}
    try:
        lengths["prompt"] = parse_lengths(prompt_tokens, "--prompt-tokens")
        lengths["output"] = parse_lengths(output_tokens, "--output-tokens")
        budget_s = parse_duration(calibrate_budget)
    except ValueError as e:
        fail(str(e).replace("--budget", "--calibrate-budget"))
    if repeats < 2:
        fail(f"--repeats {repeats}: at least 2 real runs are needed to measure their spread")
    if rate is None and not 0 < utilisation < 1:
        fail(f"--utilisation {utilisation}: must be between 0 and 1 (a share of the saturated capacity)")
    if rate is not None and rate <= 0:
        fail(f"--rate {rate}: must be > 0 requests/s")
    if max_num_batched_tokens < max_num_seqs:
        fail(f"--max-num-batched-tokens {max_num_batched_tokens}: must be >= --max-num-seqs {max_num_seqs}")
    if profile is not None and not Path(profile).exists():
        fail(f"--profile {profile}: no such file or directory")
    try:
        import torch  # noqa: F401
    except ImportError:
        fail("validating on real kernels needs PyTorch: pip install 'capsim[calibrate]'")
    from calibration.catalog import MODELS, CatalogError
    from calibration.harness.model import HarnessError

    if model not in MODELS:
        from calibration.catalog import close_matches

        fail(f"--model {model!r}: unknown{close_matches(model, MODELS)}; 'capsim catalog --kind models' lists them")
    if layers > MODELS[model].layers:
        fail(f"--layers {layers}: {model} has {MODELS[model].layers} layers")

    from rich.console import Console

    err = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="capsim-validate-profile-") as tmp:
        try:
            if profile is None:
                from calibration.calibrate import calibrate
                from sim.fitting.validate import calibration_axes

                axes = calibration_axes(model, layers=layers, num_requests=requests, prompt_tokens=lengths["prompt"],
                                        output_tokens=lengths["output"], seed=seed, max_num_seqs=max_num_seqs,
                                        max_num_batched_tokens=max_num_batched_tokens)
                err.print(f"no --profile: calibrating {model} {quant} ({' and '.join(map(str, axes.layer_counts))} "
                          f"layers) on this workload's step shapes for {budget_s:g} s of the harness's clock")
                run = measuring_progress(lambda progress: calibrate(model, quant, layers=layers, budget_s=budget_s,
                                                                    out_dir=tmp, seed=seed, progress=progress,
                                                                    axes=axes))
                profile = str(run.path)
            from sim.fitting.validate import validate

            result = validate(model, quant, layers=layers, profile_path=Path(profile), rate_per_s=rate,
                              utilisation=utilisation, num_requests=requests, prompt_tokens=lengths["prompt"],
                              output_tokens=lengths["output"], repeats=repeats, seed=seed, max_num_seqs=max_num_seqs,
                              max_num_batched_tokens=max_num_batched_tokens, alongside=alongside,
                              progress=lambda msg: err.print(f"[dim]{msg}[/]"))
        except (CatalogError, HarnessError, ValueError) as e:
            fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    _print_result(result)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
        typer.echo(f"written: {out}")


def _from_benchmarks(path: Path, profile: Optional[str], engine: Optional[str], out: Optional[Path], seed: int,
                     max_requests: int, jobs: int) -> None:
    """``capsim validate --benchmarks``: every row predicted, the comparison printed and written."""
    from sim.analysis.atomic import write_csv, write_json
    from sim.analysis.executor import local_executor
    from sim.fitting.benchmark_validate import format_validation, validate_benchmarks

    if profile is None or profile == "auto":
        spec: dict[str, Any] = {"kind": "auto"}
    elif profile == "roofline":
        spec = {"kind": "roofline"}
    elif Path(profile).exists():
        spec = {"kind": "measured", "path": profile}
    else:
        fail(f"--profile {profile}: no such file or directory; give auto, roofline, or a measured profile's JSON file "
             "or directory")
    out_dir = Path("validation") if out is None else out
    if out_dir.exists() and not out_dir.is_dir():
        fail(f"--out {out_dir}: exists and is not a directory")
    try:
        # One job: rows run in turn here (a progress line as each ends); more: a process pool.
        with local_executor(jobs) if jobs > 1 else nullcontext() as ex:
            result = validate_benchmarks(path, profile=spec, engine=None if engine is None else {"preset": engine},
                                         seed=seed, max_requests=max_requests, executor=ex,
                                         progress=lambda msg: typer.echo(msg, err=True))
    except ValueError as e:
        fail(str(e).replace("engine: preset = ", "--engine "))
    typer.echo(format_validation(result))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        written = [write_csv(out_dir / "validate-benchmarks.csv", result.table()),
                   write_csv(out_dir / "validate-benchmarks-summary.csv", result.summary_table()),
                   write_json(out_dir / "validate-benchmarks.json", result.as_dict())]
    except OSError as e:
        fail(f"--out {out_dir}: cannot write there ({e.strerror or e})")
    typer.echo("written: " + ", ".join(map(str, written)))


def _fmt(value: float, unit: str) -> str:
    if value != value:  # NaN
        return "-"
    if unit == "s":
        return f"{value * 1e3:,.1f} ms" if value < 1 else f"{value:,.2f} s"
    return f"{value:,.1f}"


def _print_result(result) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table

    con = Console()
    meta = result.real[0].meta
    con.print(f"[bold]{result.model}[/] {result.quant}, {result.layers} layers on {meta['device']} "
              f"(timed on {meta['clock']}); profile {result.profile_path}")
    con.print(f"{result.requests.num_rows} Poisson requests at {result.rate_per_s:.3f}/s = {result.utilisation:.0%} of "
              f"the saturated capacity {result.capacity.requests_per_s:.3f}/s the profile predicts; engine: "
              f"continuous, "
              f"chunked prefill, max_num_seqs {meta['max_num_seqs']}, max_num_batched_tokens "
              f"{meta['max_num_batched_tokens']}; window {result.window[0]:g}–{result.window[1]:.1f} s")
    t = Table(title=f"real ({len(result.real)} runs: mean ± spread) vs simulated", title_justify="left")
    for col in ("metric", "real", "± spread", "simulated", "error"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    for m in result.metrics:
        bad = abs(m.error) > max(0.10, m.spread)
        t.add_row(m.name, _fmt(m.real_mean, m.unit), f"{m.spread:.1%}", _fmt(m.simulated, m.unit),
                  f"[{'red' if bad else 'green'}]{m.error:+.1%}[/]")
    con.print(t)
    it = result.iterations
    con.print(f"per iteration, profile vs measured ({it['iterations']:.0f} iterations): decode-only median "
              f"{it['decode_only_median']:+.1%}, with a prefill chunk median {it['with_prefill_median']:+.1%}, busy "
              f"time {it['busy_time']:+.1%}; the loop's own overhead is {it['loop_overhead_share']:.2%} of its busy "
              f"time; decode-only iterations ran p10-p90 {it['jitter']:.0%} apart of their price (the machine's own "
              f"jitter: the simulation runs at constant step prices)")
    if result.remeasured is not None:
        con.print(result.remeasured_line())
    for note in result.notes:
        con.print(f"[yellow]note:[/] {note}")
