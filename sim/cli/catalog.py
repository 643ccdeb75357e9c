"""``capsim catalog``: the hardware, model and quantization figures, each with its source, and the
profiles ``kind: auto`` can use; the tables it prints live here, beside the commands.

Registered on the app in :mod:`sim.cli.app` as a group (``catalog_app``); thin over
:mod:`calibration.catalog` and :mod:`calibration.measured`.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from sim.cli.common import fail

if TYPE_CHECKING:  # annotations only: the catalog is imported when a command runs
    from rich.console import Console
    from rich.table import Table

    from calibration.catalog import GPU, ModelArch, Quantization, ResolvedPrecision

__all__ = ["CatalogKind", "catalog_app"]


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
                    "KV-cache bytes per token at bf16; 'name = other': an alias, other's architecture under another "
                    "name", title_justify="left")
    t.add_column("name", no_wrap=True)
    for col in ("params", "active", "layers", "hidden", "heads/kv", "context", "KV B/token"):
        t.add_column(col, justify="right")
    for key, m in MODELS.items():
        t.add_row(key if m.alias_of is None else f"{key} = {m.alias_of}", f"{m.params / 1e9:.2f}",
                  f"{m.active_params / 1e9:.2f}", str(m.layers), f"{m.hidden:,}", f"{m.heads}/{m.kv_heads}",
                  f"{m.max_context:,}", f"{m.kv_bytes_per_token(KV_CACHE_DTYPES['bf16']):,.0f}")
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
                fail(str(e))
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
    if m.alias_of is not None:
        con.print(escape(f"an alias of {m.alias_of}: the same architecture (and profiles) under another name"),
                  highlight=False)
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
        fail(str(e))
    known = [*GPUS, *MODELS, *QUANTIZATIONS]
    fail(f"unknown hardware, model or quantization {name!r}{close_matches(name, known)}; "
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

    from calibration.catalog import same_architecture
    from calibration.measured import list_profiles, shipped_profile_dir

    for d in dirs:
        if not d.exists():
            fail(f"--dir {d}: no such directory or file")
    models = None if model is None else same_architecture(model)  # an alias lists the profiles it would use
    rows = [(f, r) for f, r in list_profiles([*dirs, shipped_profile_dir()])
            if (hardware is None or r.hardware == hardware) and (models is None or r.model in models)]
    if not rows:
        fail("no profile matches" + (f" --hardware {hardware!r}" if hardware else "")
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
