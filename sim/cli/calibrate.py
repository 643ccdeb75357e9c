"""``capsim calibrate``: measure real kernels and fit a profile, fit one to serving benchmarks, or
fit serving engines' profiles to their benchmarks (``--engine-fit``).

Registered on the app in :mod:`sim.cli.app`; kept apart because it is the one command that
needs PyTorch (imported only when a harness run starts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sim.cli.common import fail, measuring_progress, parse_duration

__all__ = ["calibrate_command"]


def calibrate_command(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Catalog model whose shapes to build, e.g. llama-3.2-1b."),
    # No -q: it means --quiet in `capsim run`.
    quant: str = typer.Option("int8", "--quant", help="Quantization scheme: on cpu bf16 or int8 (dynamic int8 "
                              "linear layers); on cuda bf16, fp8, int8, int4-awq."),
    device: str = typer.Option("cpu", "--device", "-d", help="cpu, or cuda (needs a GPU and a CUDA build of torch)."),
    layers: Optional[int] = typer.Option(None, "--layers", "-l", min=1, help="Build this many layers (and twice as "
                                         "many, to verify the per-layer scaling) instead of the model's full depth; "
                                         "the profile prices the full depth."),
    budget: str = typer.Option("5m", "--budget", "-b", help="Time to spend measuring: 300, 90s, 5m, 1h."),
    hardware: Optional[str] = typer.Option(None, "--hardware", help="Catalog hardware to file the profile under "
                                           "(default: cpu-server for cpu; the GPU's catalog entry for cuda)."),
    out: Path = typer.Option(Path("profiles"), "--out", "-o", help="Directory for NAME.json + NAME.parquet; with "
                             "--engine-fit a .toml file, or a directory for engine_profiles.toml."),
    seed: int = typer.Option(0, help="Seeds the random weights, the grid order and the held-out split."),
    from_benchmarks: Optional[Path] = typer.Option(
        None, "--from-benchmarks", help="Fit profiles to measured serving benchmarks in this CSV instead of "
        "measuring kernels (format: see docs/calibration.md, 'From serving benchmarks')."),
    from_operators: Optional[Path] = typer.Option(
        None, "--from-operators", help="Fit profiles to published operator-level GPU timings in this directory "
        "(Vidur's data/profiling layout). With --model/--quant/--hardware/--tp: that configuration; without: every "
        "profile capsim ships."),
    engine_fit: Optional[list[Path]] = typer.Option(
        None, "--engine-fit", metavar="FILE.csv", help="Fit serving-engine profiles to this benchmark CSV (repeat the "
        "flag for more files; every row names its engine in an 'engine' column): per engine and GPU, the roofline's "
        "compute efficiency, memory efficiency and per-iteration overhead, over the rows that send every request at "
        "once. Writes -o FILE.toml, or -o DIR/engine_profiles.toml. Takes about 2 s per row on one core."),
    max_requests: Optional[int] = typer.Option(
        None, "--max-requests", min=1, help="With --engine-fit: requests simulated per row at most (default "
        "30,000; a capped run stands for the whole one by its steady middle). Lower it for a quick first look."),
    keep_poor_fit: bool = typer.Option(
        False, "--keep-poor-fit", help="With --from-benchmarks: write a profile whose fit error is above the threshold "
        "(median 25%) instead of refusing it; it is labelled poor, and kind: auto skips it."),
    tp: int = typer.Option(1, "--tp", min=1, help="Tensor-parallel degree (with --from-operators)."),
    collectives: Optional[Path] = typer.Option(
        None, "--collectives", help="With --from-operators: also write the all-reduce fits (the roofline's "
        "calibration/data/collectives.toml) to this file."),
    plot: Optional[Path] = typer.Option(
        None, "--plot", help="With --from-operators --model: draw the measured and fitted linear-layer time and "
        "the all-reduce fit to this .png, .svg or .pdf."),
) -> None:
    """Calibrate a profile on real kernels: time prefill and decode steps of a quantized
    Llama-architecture model (random weights at the catalog model's shapes), fit the step-time
    model, report its error on held-out steps, and write the profile.

    Examples:
      capsim calibrate --model llama-3.2-1b --quant int8 --layers 2 --budget 3m -o profiles
      capsim calibrate --model llama-3.1-8b --quant fp8 --device cuda --budget 20m -o profiles
      capsim calibrate --from-benchmarks vllm-bench.csv -o profiles
      capsim calibrate --engine-fit trtllm-bench.csv -o my-engines.toml
      capsim calibrate --from-operators vidur/data/profiling --model llama-3.1-8b --quant fp16 --hardware h100-sxm -o profiles

    Use the profile in a scenario with  profile: {kind: measured, path: profiles}  (or kind: auto, with
    profiles among its dirs).

    --engine-fit fits one profile per serving engine instead (the CSV's engine column, e.g.
    tensorrt-llm-0.17): per GPU, the roofline's compute efficiency and memory efficiency (shares of
    the datasheet peaks) and overhead per iteration (seconds), shared by every model, quantization
    and TP on that GPU, plus an engine-wide fallback for other GPUs. They are fitted to the rows that
    send every request at once (concurrency >= num_requests, or request_rate inf), each simulated
    once and then replayed, and cross-validated by leaving out one ISL/OSL pair, GPU or model at a
    time; rows with timed arrivals are predicted by simulation and their errors reported. It takes
    minutes: about 2 s per row on one core (the 228 shared rows: about 8 minutes). Use the result
    with  profile: {kind: auto, engine: NAME, engine_profiles: my-engines.toml}.
    """
    if keep_poor_fit and from_benchmarks is None:
        fail("--keep-poor-fit applies only with --from-benchmarks FILE (the other calibrations report held-out error)")
    if max_requests is not None and not engine_fit:
        fail("--max-requests applies only with --engine-fit FILE (requests simulated per benchmark row)")
    if engine_fit:
        given = [flag for flag, value in (("--from-benchmarks", from_benchmarks), ("--from-operators", from_operators),
                                          ("--model", model), ("--hardware", hardware), ("--layers", layers),
                                          ("--plot", plot), ("--collectives", collectives)) if value is not None]
        if given:
            fail(f"{given[0]} does not apply with --engine-fit: the CSV names each row's engine, model, quantization, "
                 "hardware and tp")
        return _engine_fit(engine_fit, out, max_requests)
    if from_benchmarks is not None:
        # The CSV names each row's model, quantization, hardware and tp: flags that would name
        # them too (or start another calibration) are refused rather than silently ignored.
        given = [flag for flag, value in (("--from-operators", from_operators), ("--model", model),
                                          ("--hardware", hardware), ("--layers", layers), ("--plot", plot),
                                          ("--collectives", collectives)) if value is not None]
        if given:
            fail(f"{given[0]} does not apply with --from-benchmarks: the CSV names each row's model, quantization, "
                 "hardware and tp")
        return _from_benchmarks(from_benchmarks, out, seed, keep_poor_fit)
    if from_operators is not None:
        return _from_operators(from_operators, out, model, None if model is None else quant, hardware, tp, collectives,
                               plot)
    if model is None:
        fail("--model is required (or --from-benchmarks FILE); 'capsim catalog --kind models' lists models")
    if device not in ("cpu", "cuda"):
        fail(f"--device {device!r}: must be cpu or cuda")
    try:
        budget_s = parse_duration(budget)
    except ValueError as e:
        fail(str(e))
    if out.exists() and not out.is_dir():
        fail(f"--out {out}: exists and is not a directory")
    from calibration.catalog import MODELS, QUANTIZATIONS, CatalogError

    # Catalog names are checked before the progress bar starts: an error raised under it would
    # follow the line the bar leaves on stderr.
    try:
        MODELS[model], QUANTIZATIONS[quant]  # noqa: B018
    except CatalogError as e:
        fail(str(e))
    try:
        import torch  # noqa: F401
    except ImportError:
        fail("calibrating on real kernels needs PyTorch: pip install 'capsim[calibrate]'")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            fail("--device cuda: no CUDA device is visible to torch on this machine; use --device cpu")
    from calibration.calibrate import calibrate
    from calibration.catalog import CatalogError

    run = None
    try:
        run = measuring_progress(lambda progress: calibrate(model, quant, device=device, layers=layers,
                                                            budget_s=budget_s, hardware=hardware, out_dir=out,
                                                            seed=seed, progress=progress))
    except (CatalogError, ValueError) as e:
        fail(str(e))
    except OSError as e:
        fail(f"--out {out}: cannot write the profile there ({e.strerror or e})")
    assert run is not None
    _print_run(run)


def _print_run(run) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table

    con = Console()
    r = run.record
    con.print(f"[bold]{r.model}[/] {r.quantization} on {run.meta.get('device', '?')}: filed as hardware "
              f"[bold]{r.hardware}[/], {r.layers} layers")
    t = Table(title="held-out step-time error (steps never used in the fit)", title_justify="left")
    for col in ("phase", "steps", "median", "p90", "max"):
        t.add_column(col, justify="right" if col != "phase" else "left")
    for phase, e in sorted(r.heldout_error.items()):
        t.add_row(phase, str(e["points"]), f"{e['median']:.1%}", f"{e['p90']:.1%}", f"{e['max']:.1%}")
    d = run.fit.depth_error
    if d:
        t.add_row(f"depth: fit {d['fitted_layers']:.0f} → {d['scored_layers']:.0f} layers", str(d["points"]),
                  f"{d['median']:.1%}", f"{d['p90']:.1%}", f"{d['max']:.1%}")
    con.print(t)
    c = r.coefficients
    con.print("per layer: weights " + f"{c['w'] * 1e3:.3f} ms, or {c['c_lin'] * 1e6:.3f} µs/token if slower, "
              f"+ {c['c_tok'] * 1e6:.3f} µs/token, "
              f"{c['c_seq'] * 1e6:.3f} µs/sequence, {c['c_pf'] * 1e9:.3f} ns/prefill pair, "
              f"{c['c_dc'] * 1e9:.3f} ns/decode KV token; per iteration {c['t0'] * 1e3:.3f} ms + LM head "
              + (f"max({c['head_w'] * 1e3:.3f} ms, {c['c_head'] * 1e3:.3f} ms/sequence)" if "head_w" in c
                 else f"{c['c_head'] * 1e3:.3f} ms/sequence"))
    con.print(f"profile: {run.path} (+ .parquet with {run.measurements.num_rows} measured steps)")
    from calibration.calibrate import NOISY_SPREAD, timing_spread

    spread = timing_spread(run.measurements)
    con.print(f"timing noise: a step's timed repeats spread {spread:.1%} (median p10–p90)"
              + ("" if spread <= NOISY_SPREAD else
                 f" — over {NOISY_SPREAD:.0%}: this machine times noisily (shared cores?), and the held-out errors "
                 "above include that noise; calibrate on a quiet machine for a sharper profile"))


def _from_benchmarks(path: Path, out: Path, seed: int, keep_poor_fit: bool = False) -> None:
    try:
        from sim.fitting.benchmark_fit import fit_from_benchmarks
        from sim.fitting.fit_report import format_fit
    except ImportError:  # pragma: no cover - shipped together
        fail("fitting from benchmarks is not available in this build")
    from calibration.measured import write_profile

    if out.exists() and not out.is_dir():
        fail(f"--out {out}: exists and is not a directory")
    try:
        fits = fit_from_benchmarks(path, seed=seed, progress=lambda msg: typer.echo(msg, err=True),
                                   keep_poor_fit=keep_poor_fit)
    except ValueError as e:
        fail(str(e))
    for f in fits:
        typer.echo(format_fit(f))
        try:
            written = write_profile(out, f.record, f.table)
        except OSError as e:
            fail(f"--out {out}: cannot write the profile there ({e.strerror or e})")
        typer.echo(f"profile: {written}")


def _engine_profiles_file(out: Path) -> Path:
    """Where ``--engine-fit`` writes: ``-o FILE.toml`` as given, any other ``-o`` a directory (made if
    need be) holding ``engine_profiles.toml``; refused in one line when that cannot be."""
    from calibration.engine_profiles import FILE_NAME

    if out.suffix.lower() == ".toml":
        if out.is_dir():
            fail(f"--out {out}: is a directory; name a .toml file, or a directory without the .toml suffix")
        target = out
    else:
        if out.exists() and not out.is_dir():
            fail(f"--out {out}: exists and is not a directory; name a .toml file or a directory")
        target = out / FILE_NAME
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"--out {out}: cannot write there ({e.strerror or e})")
    return target


def _engine_fit(paths: list[Path], out: Path, max_requests: Optional[int]) -> None:
    """Fit the engine profiles of every CSV in ``paths`` (:func:`sim.fitting.engine_fit.fit_file`), write
    them to one file and print each engine's numbers and held-out errors."""
    from sim.fitting.benchmark_csv import read_benchmarks
    from sim.fitting.engine_fit import MAX_REQUESTS, fit_file, write_profiles

    # Every file is read and checked before the first simulation: a bad second file would otherwise be
    # found only after minutes spent on the first.
    seen: dict[str, Path] = {}
    for path in paths:
        try:
            rows = read_benchmarks(path)
        except ValueError as e:
            fail(str(e))
        engines = sorted({r.engine for r in rows if r.engine is not None})
        if not engines:
            fail(f"{path}: no row names its engine (column 'engine', a preset such as tensorrt-llm-0.17); engine "
                 "profiles are per engine")
        for engine in engines:
            if engine in seen:
                # One profile per engine: its rows are fitted together, so they must come from one file.
                fail(f"{path}: engine {engine!r} also has rows in {seen[engine]}; put an engine's rows in one CSV")
            seen[engine] = path
    target = _engine_profiles_file(out)
    entries = []
    for path in paths:
        try:
            entries += fit_file(path, max_requests=MAX_REQUESTS if max_requests is None else max_requests,
                                progress=lambda msg: typer.echo(msg, err=True))["entries"]
        except ValueError as e:
            fail(str(e))
    try:
        write_profiles(target, entries)
    except OSError as e:
        fail(f"--out {out}: cannot write the engine profiles there ({e.strerror or e})")
    for e in entries:
        typer.echo(f"{e['engine']}: " + "; ".join(
            f"{g} e_c {v['compute_efficiency']:.3f} e_m {v['memory_efficiency']:.3f} t0 {v['overhead_s'] * 1e3:.2f} ms "
            f"({v['rows']} rows)" for g, v in e["gpus"].items()))
        typer.echo("\n".join("  " + line for line in e["folds"]) or "  not cross-validated: the rows span one "
                   "ISL/OSL pair, GPU and model")
    typer.echo(f"engine profiles: {target}")
    typer.echo("use with  profile: {kind: auto, engine: " + (entries[0]["engine"] if len(entries) == 1 else "NAME")
               + f", engine_profiles: {target}}}")


def _from_operators(path: Path, out: Path, model: Optional[str], quant: Optional[str], hardware: Optional[str],
                    tp: int, collectives: Optional[Path], plot: Optional[Path] = None) -> None:
    """Fit profiles to operator timing tables and print each one's held-out error."""
    from rich.console import Console
    from rich.table import Table

    from calibration.catalog import GPUS, MODELS, QUANTIZATIONS, CatalogError, close_matches
    from calibration.measured import write_profile
    from calibration.operator_profiles import SHIPPED, build_record, collectives_toml, fit_gpus
    from calibration.operators import OperatorTableError, read_operator_tables

    if model is not None:
        for flag, value, known in (("--model", model, MODELS), ("--quant", quant, QUANTIZATIONS),
                                   ("--hardware", hardware, GPUS)):
            if value is None:
                fail(f"{flag} is required with --from-operators --model (one configuration)")
            if value not in known:
                fail(f"{flag} {value!r}: unknown{close_matches(str(value), known)}")
    if out.exists() and not out.is_dir():
        fail(f"--out {out}: exists and is not a directory")
    if plot is not None:
        from calibration.operator_plot import FIGURE_SUFFIXES

        if model is None:
            fail("--plot draws one configuration: give --model, --quant and --hardware too")
        if plot.suffix.lower() not in FIGURE_SUFFIXES:
            fail(f"--plot {plot}: the file name must end in {', '.join(FIGURE_SUFFIXES)}")
    try:
        tables = read_operator_tables(path)
        fits = fit_gpus(tables)
        wanted = SHIPPED if model is None else ((model, (quant,), hardware, (tp,)),)
        records = []
        for m, quants, gpu, tps in wanted:
            for q in quants:
                for t in tps:
                    record, rows = build_record(fits, m, q, gpu, t)
                    if record.meta["weights_fit"] or model is not None:
                        records.append((record, rows))
    except (OperatorTableError, CatalogError, ValueError) as e:
        fail(str(e))
    table = Table(title="held-out error (token counts, shapes and message sizes never used in the fit)")
    table.add_column("profile", no_wrap=True)
    for col in ("kind", "linear layers", "decode N<=256", "prefill N>256", "all-reduce"):
        table.add_column(col)

    def cell(e: Optional[dict]) -> str:
        return "" if e is None else f"{e['median']:.1%} / {e['p90']:.1%}"

    for record, rows in records:
        h = record.heldout_error
        lin = next((e for k, e in h.items() if k.startswith("linear layers") and "roof alone" not in k), None)
        table.add_row(f"{record.model}/{record.quantization}/{record.hardware}/tp{record.tp}", record.kind, cell(lin),
                      cell(h.get("decode (N <= 256)")), cell(h.get("prefill (N > 256)")), cell(h.get("all-reduce")))
        try:
            write_profile(out, record, rows)
        except OSError as e:
            fail(f"--out {out}: cannot write the profile there ({e.strerror or e})")
    con = Console()
    con.print(f"{tables.ops.num_rows} operator, {tables.attention.num_rows} attention and "
              f"{tables.collectives.num_rows} collective timings from {path}")
    con.print(table)
    con.print("median / p90 of |predicted / measured − 1|; a profile priced from other shapes reports the "
              "leave-one-model-out error of that pricing")
    if model is not None:
        record = records[0][0]
        ops = {**record.meta["gemm_heldout"], **record.meta["elementwise_heldout"]}
        con.print(f"per operator, each fitted alone (GEMMs: a rounded roof; elementwise: a line) on {record.meta['layers_from']}, tp {record.tp}; median / p90: "
                  + ", ".join(f"{op} {cell(e)}" for op, e in ops.items()))
        con.print("every held-out error: " + "; ".join(f"{k} {cell(e)}" for k, e in record.heldout_error.items()))
    con.print(f"{len(records)} profile(s) written to {out}")
    if plot is not None:
        from calibration.operator_plot import plot_operator_fit

        record = records[0][0]
        g = fits[record.hardware]
        layer = g.layers.get((record.meta["layers_from"], record.tp))
        if layer is None:
            fail(f"--plot: no {record.hardware} table has {record.model}'s layer shapes at tp {record.tp} to draw")
        try:
            drawn = plot_operator_fit(layer, plot, tables.collectives, g.collectives.get(record.tp),
                                      title=f"{record.model}/{record.quantization}/{record.hardware}/tp{record.tp}: "
                                            f"{record.kind}")
        except ImportError:
            fail("--plot needs matplotlib: pip install 'capsim[plot]'")
        except OSError as e:
            fail(f"--plot {plot}: cannot write ({e.strerror or e})")
        con.print(f"plot: {drawn}")
    if collectives is not None:
        try:
            collectives.write_text(collectives_toml(tables))
        except OSError as e:
            fail(f"--collectives {collectives}: cannot write ({e.strerror or e})")
        con.print(f"all-reduce fits: {collectives}")
