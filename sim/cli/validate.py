"""``capsim validate``: serve a workload for real on the harness's kernels and compare with the simulation.

Registered on the main app in :mod:`sim.cli.app` (``app.command("validate")(validate_command)``);
kept apart because, like ``calibrate``, it needs PyTorch (imported only when a run starts).
"""

from __future__ import annotations

import json
import re
import tempfile
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


def validate_command(
    model: str = typer.Option(..., "--model", "-m", help="Catalog model whose shapes to build, e.g. llama-3.2-1b."),
    # No short form: -q is --quiet in `capsim run`.
    quant: str = typer.Option("int8", "--quant", help="Quantization scheme the profile was calibrated in."),
    layers: int = typer.Option(2, "--layers", "-l", min=1, help="Layers the real loop builds and runs (the profile is "
                               "priced at this depth for the comparison)."),
    profile: Optional[Path] = typer.Option(None, "--profile", "-p", help="Profile JSON, or a directory holding one for "
                                           "this configuration. Omitted: calibrate first, into a temporary directory."),
    utilisation: float = typer.Option(0.7, "--utilisation", "-u", help="Offered load as a share of the saturated "
                                      "capacity the profile predicts for these lengths."),
    rate: Optional[float] = typer.Option(None, "--rate", help="Poisson rate in requests/s (instead of --utilisation)."),
    requests: int = typer.Option(200, "--requests", "-n", min=1, help="Requests in the workload."),
    repeats: int = typer.Option(2, "--repeats", "-r", help="Real runs of the same workload (>= 2: their spread is "
                                "part of the answer)."),
    calibrate_budget: str = typer.Option("2m", "--calibrate-budget", help="Budget of the calibration run when no "
                                         "--profile is given: 300, 90s, 5m."),
    prompt_tokens: str = typer.Option("16-128", "--prompt-tokens", help="Prompt lengths: N, or LOW-HIGH (uniform)."),
    output_tokens: str = typer.Option("8-64", "--output-tokens", help="Output lengths: N, or LOW-HIGH (uniform)."),
    max_num_seqs: int = typer.Option(8, "--max-num-seqs", min=1, help="Most sequences per iteration."),
    max_num_batched_tokens: int = typer.Option(512, "--max-num-batched-tokens", min=1,
                                               help="Most tokens per iteration (chunked prefill)."),
    seed: int = typer.Option(0, help="Seeds the workload (and the calibration, when there is one)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the comparison as JSON here."),
) -> None:
    """Validate a measured profile against reality: draw one Poisson workload, serve it REPEATS
    times on the calibration harness's kernels (continuous batching, chunked prefill), simulate
    it once with the profile under the same engine settings, and print real (mean ± spread
    between runs) against simulated p50/p90/p99 TTFT, TPOT, E2E and output throughput, with the
    simulation's error.

    The real loop times its iterations as the calibration times its steps (on a CPU: the
    thread's CPU time, torch on one intra-op thread) and runs on a timeline of those seconds,
    so other load on the machine does not change its latencies. Without --profile it first
    calibrates on the step shapes this workload runs.

    Examples:
      capsim validate --model llama-3.2-1b --quant int8 --layers 2 --profile profiles
      capsim validate -m llama-3.2-1b --quant int8 --requests 60 --calibrate-budget 90s
    """
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
    if profile is not None and not profile.exists():
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
                profile = run.path
            from sim.fitting.validate import validate

            result = validate(model, quant, layers=layers, profile_path=profile, rate_per_s=rate,
                              utilisation=utilisation, num_requests=requests, prompt_tokens=lengths["prompt"],
                              output_tokens=lengths["output"], repeats=repeats, seed=seed, max_num_seqs=max_num_seqs,
                              max_num_batched_tokens=max_num_batched_tokens,
                              progress=lambda msg: err.print(f"[dim]{msg}[/]"))
        except (CatalogError, HarnessError, ValueError) as e:
            fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    _print_result(result)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
        typer.echo(f"written: {out}")


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
              f"time")
    for note in result.notes:
        con.print(f"[yellow]note:[/] {note}")
