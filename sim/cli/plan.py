"""``capsim plan``: the cheapest fleet that meets the SLOs, searched smartly and confirmed whole
(the method: :mod:`sim.analysis.plan`; the saved directory: docs/planning.md).

Registered on the app in :mod:`sim.cli.app`; thin over :func:`sim.analysis.plan.plan`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sim.cli.common import executor_from_args, fail, fail_with_flag, ray_option, search_inputs, split_list

__all__ = ["plan_command"]

# The flags a search's one-line errors are about, by the argument name the library's message starts with.
_FLAGS = (("--hardware", "hardware"), ("--quant", "quantization"), ("--tp", "tp"), ("--rate", "rate"),
          ("--family", "family"), ("--slo", "SLO"))


def _ints(text: str, option: str) -> list[int]:
    """``1,2`` -> [1, 2]; one line naming the option when not whole numbers >= 1."""
    try:
        values = [int(x) for x in split_list(text, option)]
    except ValueError:
        fail(f"{option} {text!r}: give whole numbers >= 1, comma-separated, e.g. 1,2")
    if any(v < 1 for v in values):
        fail(f"{option} {text!r}: give whole numbers >= 1, comma-separated, e.g. 1,2")
    return values


def plan_command(
    scenario: Optional[Path] = typer.Argument(None, help="Scenario file (.yaml, .yml, .toml); omit it for the embedded "
                                              "default. Its workload, engine and cost section apply to every option."),
    slo: list[str] = typer.Option([], "--slo", metavar="[CLASS:]METRIC_STAT=LIMIT", help="An SLO target, e.g. "
                                  "ttft_p99=1s, tpot_p99=60ms, chat:e2e_p90=20s (repeatable; default: p99 of each "
                                  "class's own SLOs)."),
    rate: Optional[float] = typer.Option(None, "--rate", help="Target load in requests/s (default: the scenario's own "
                                         "arrivals; a time-varying rate is sized for its peak)."),
    hardware: str = typer.Option("h100-sxm,h200,a100-80gb,l40s", "--hardware", metavar="H1,H2,...",
                                 help="Catalog hardware to search (capsim catalog), comma-separated."),
    quant: Optional[str] = typer.Option(None, "--quant", metavar="Q1,Q2,...", help="Quantizations, comma-separated "
                                        "(default: the scenario's)."),
    tp: str = typer.Option("1,2", "--tp", metavar="N1,N2,...", help="Tensor-parallel degrees, comma-separated."),
    max_num_seqs: Optional[str] = typer.Option(None, "--max-num-seqs", metavar="N1,N2,...", help="Batch limits to try "
                                               "where they can change the ranking (default: the scenario's and twice "
                                               "it)."),
    max_num_batched_tokens: Optional[str] = typer.Option(None, "--max-num-batched-tokens", metavar="N1,N2,...",
                                                         help="Token budgets to try likewise (default: the "
                                                              "scenario's and half of it)."),
    seeds: int = typer.Option(2, "--seeds", help="Seeds per load-curve point of the search."),
    confirm_seeds: int = typer.Option(2, "--confirm-seeds", help="Fresh seeds each chosen fleet is confirmed with "
                                      "(simulated whole; never seeds of the search)."),
    family: str = typer.Option("auto", "--family", metavar="auto|roofline|measured", help="Step-time model family, "
                               "one for every option (as in capsim compare)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Processes for the simulations (default: all cores)."),
    ray: Optional[str] = ray_option(),
    set_: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE", help="Override a scenario key, as in "
                                   "capsim run. Repeatable."),
    out_name: str = typer.Option("capsim-plan", "--out", "-o", metavar="DIR", help="The plan directory: plan.json, "
                                 "options.parquet, curves.parquet, fleet.yaml (docs/planning.md)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no tables; still writes the plan."),
    api_price: Optional[str] = typer.Option(None, "--api-price", metavar="IN,OUT", help="A managed API's price in USD "
                                            "per 1M input and per 1M output tokens, e.g. 0.20,0.60: priced beside the "
                                            "fleet, with the monthly volume at which self-hosting breaks even."),
    committed_discount: Optional[float] = typer.Option(None, "--committed-discount", metavar="SHARE", help="Committed-"
                                                       "use discount off the catalog's on-demand price, e.g. 0.4."),
    spot_discount: Optional[float] = typer.Option(None, "--spot-discount", metavar="SHARE", help="Spot discount off "
                                                  "the catalog's on-demand price, e.g. 0.6."),
    owned_purchase: Optional[float] = typer.Option(None, "--owned-purchase", metavar="USD", help="Owned hardware: "
                                                   "purchase price per GPU (with --owned-kwh: the owned pattern and "
                                                   "the utilisation at which it beats cloud)."),
    owned_kwh: Optional[float] = typer.Option(None, "--owned-kwh", metavar="USD", help="Owned hardware: electricity "
                                              "price per kWh."),
    owned_hosting: Optional[float] = typer.Option(None, "--owned-hosting", metavar="USD", help="Owned hardware: "
                                                  "hosting per GPU per month (default 0)."),
    scale_up_delay: str = typer.Option("10m", "--scale-up-delay", metavar="DURATION", help="Time-varying traffic: how "
                                       "long a new replica takes to serve (600, 90s, 10m); the hourly-resized fleet "
                                       "starts replicas that far ahead."),
) -> None:
    """Plan the cheapest fleet that meets the SLOs: search hardware × quantization × TP × engine
    settings, size replicas from each option's load curve, confirm the chosen fleet by simulating
    it whole with fresh seeds (correcting the count where it disagrees), and rank what meets the
    SLOs by $/hour. Prints the ranking and each hardware's best configuration (with why, where it
    cannot meet the SLOs), and writes the plan directory; run its fleet with `capsim run DIR`.

    \b
    Examples:
      capsim plan --slo ttft_p99=1s --slo tpot_p99=50ms --rate 12
      capsim plan my.yaml --hardware h100-sxm,h200,a100-80gb,l40s --quant bf16,fp8 --tp 1,2 --rate 40 -o plans/chat
      capsim plan my.yaml --slo chat:ttft_p99=500ms --max-num-seqs 128,256,512 --max-num-batched-tokens 4096,8192
      capsim plan diurnal.yaml --slo ttft_p99=2s        # no --rate: sized for the workload's own peak
      capsim plan my.yaml --rate 40 --ray auto           # the simulations on the Ray cluster this machine belongs to
      capsim plan --rate 40 --api-price 0.20,0.60 --committed-discount 0.4 --owned-purchase 30000 --owned-kwh 0.12
      capsim run capsim-plan                             # the recommended fleet, simulated
      capsim report capsim-plan -o report                # the capacity-planning document
    """
    from sim.analysis.plan import PlanError, plan

    try:
        hw = split_list(hardware, "--hardware")
    except ValueError as e:
        fail(str(e))
    tps = _ints(tp, "--tp")
    grid = {}
    if max_num_seqs is not None:
        grid["max_num_seqs"] = _ints(max_num_seqs, "--max-num-seqs")
    if max_num_batched_tokens is not None:
        grid["max_num_batched_tokens"] = _ints(max_num_batched_tokens, "--max-num-batched-tokens")
    for name, v in (("--seeds", seeds), ("--confirm-seeds", confirm_seeds)):
        if v < 1:
            fail(f"{name} {v}: must be >= 1")
    sc, targets, quants = search_inputs(scenario, set_, slo, quant, out_name, rate, workers)
    deployment = _deployment(api_price, committed_discount, spot_discount, owned_purchase, owned_kwh, owned_hosting,
                             scale_up_delay)
    say = (lambda m: None) if quiet else (lambda m: typer.echo(f"capsim: {m}", err=True))
    from sim.analysis.compare import CompareError, check_search

    try:  # the search is checked before any worker (or a Ray cluster) starts
        check_search(sc, hw, quants, tps)
    except CompareError as e:
        fail_with_flag(e, _FLAGS)
    ex = executor_from_args(workers, ray)
    try:
        result = plan(sc, slos=targets or None, rate_per_s=rate, hardware=hw, quantization=quants, tp=tps,
                      engine_grid=grid or None, seeds=seeds, confirm_seeds=confirm_seeds, family=family,
                      executor=ex, progress=say, deployment=deployment)
    except PlanError as e:
        fail_with_flag(e, _FLAGS)
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
    out = Path(out_name)
    try:
        written = result.write(out)
    except OSError as e:
        fail(f"--out {out}: cannot write the plan there ({e.strerror or e})")
    if not quiet:
        _print(result)
        typer.echo(f"plan: {out}/ ({', '.join(p.name for p in written)}); {result.simulations} simulations in "
                   f"{result.data['wall_s']:.1f} s")
    for note in result.data["notes"]:
        typer.echo(f"capsim: note: {note}", err=True)


def _deployment(api_price: Optional[str], committed: Optional[float], spot: Optional[float],
                owned_purchase: Optional[float], owned_kwh: Optional[float], owned_hosting: Optional[float],
                delay: str):  # type: ignore[no-untyped-def]
    """The deployment inputs from the options, each checked in one line naming its option."""
    from pydantic import ValidationError

    from sim.analysis.deployment import ManagedAPI
    from sim.analysis.plan import DeploymentInputs
    from sim.cli.common import parse_duration
    from sim.config import CostSpec

    api = None
    if api_price is not None:
        try:
            p_in, p_out = (float(x) for x in split_list(api_price, "--api-price"))
            api = ManagedAPI(p_in, p_out)
        except ValueError as e:
            fail(f"--api-price {api_price!r}: give USD per 1M input and per 1M output tokens, e.g. 0.20,0.60 ({e})")
    specs = {}
    for flag, value, kw in (("--committed-discount", committed, {"pricing": "committed"}),
                            ("--spot-discount", spot, {"pricing": "spot"})):
        if value is not None:
            try:
                specs[flag] = CostSpec(discount=value, **kw)
            except ValidationError:
                fail(f"{flag} {value:g}: must be a share in [0, 1), e.g. 0.4 for 40% off on-demand")
    owned = None
    if (owned_purchase is None) != (owned_kwh is None):
        fail("--owned-purchase and --owned-kwh go together: the owned pattern needs both prices")
    if owned_purchase is not None:
        for flag, value in (("--owned-purchase", owned_purchase), ("--owned-kwh", owned_kwh),
                            ("--owned-hosting", owned_hosting)):
            if value is not None and not value >= 0:
                fail(f"{flag} {value:g}: must be a price >= 0")
        try:
            owned = CostSpec(model="owned", purchase_usd_per_gpu=owned_purchase, usd_per_kwh=owned_kwh,
                             hosting_usd_per_gpu_month=owned_hosting)
        except ValidationError as e:
            fail(f"--owned-purchase/--owned-kwh: {e.errors()[0]['msg']}")
    elif owned_hosting is not None:
        fail("--owned-hosting needs --owned-purchase and --owned-kwh")
    try:
        seconds = parse_duration(delay, "--scale-up-delay")
    except ValueError as e:
        fail(str(e))
    return DeploymentInputs(api=api, committed=specs.get("--committed-discount"), spot=specs.get("--spot-discount"),
                            owned=owned, scale_up_delay_s=seconds)


def _money(x: Optional[float]) -> str:
    return "-" if x is None else f"${x:,.2f}" if x >= 1 else f"${x:.3g}"


def _share(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.0%}"


def _print(result) -> None:  # type: ignore[no-untyped-def]
    """The ranking and the per-hardware table (140 columns when not on a terminal)."""
    import os

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    con = Console()
    if not (con.is_terminal or "COLUMNS" in os.environ):
        con = Console(width=140)
    con.print(escape(result.data["question"]), style="bold", highlight=False)
    inf = result.infeasible
    if inf is not None:
        con.print(f"[bold red]no configuration meets the SLOs[/] (binding constraint: {inf['binding_constraint']}): "
                  f"{escape(inf['detail'])}", highlight=False)
    else:
        t = Table(title="configurations meeting the SLOs, cheapest fleet first", title_justify="left")
        for col in ("rank", "option", "replicas", "$/hour", "$/1M out", "headroom", "utilisation", "not useful",
                    "ttft p99", "tpot p99", "confirmed"):
            t.add_column(col, justify="left" if col == "option" else "right")
        for r in result.ranked:
            t.add_row(str(r["rank"]), r["option"], str(r["replicas"]), _money(r["usd_per_hour"]),
                      _money(r["usd_per_million_output_tokens"]), f"{r['headroom']:.2f}x", _share(r["utilisation"]),
                      _share(r["waste_share"]), _ms(r["ttft_p99_s"]), _ms(r["tpot_p99_s"]),
                      "yes" if r["confirmed"] else "no (estimate)")
        con.print(t)
        m = result.data["margin"]
        if m is not None:
            con.print(f"runner-up costs {_money(m['usd_per_hour'])}/hour more ({m['share']:.0%})", highlight=False)
    h = Table(title="each hardware's best configuration", title_justify="left")
    for col in ("hardware", "option", "replicas", "$/hour", "meets", "why not / notes"):
        h.add_column(col, justify="right" if col in ("replicas", "$/hour") else "left")
    for r in result.per_hardware:
        h.add_row(r["hardware"], r["option"], "-" if r["replicas"] is None else str(r["replicas"]),
                  _money(r["usd_per_hour"]), "yes" if r["rank"] is not None else f"no ({r['binding'] or '-'})",
                  escape(r["reason"] or ""))
    con.print(h)
    con.print("headroom: the fleet's highest sustainable rate (replicas x highest rate per replica under the SLOs) "
              "over the rate it is sized for; not useful: the idle-capacity waste share of its GPU time; figures of "
              "a confirmed fleet are from its runs with fresh seeds, others estimated from the load curve",
              style="dim")


def _ms(x: Optional[float]) -> str:
    return "-" if x is None else f"{x * 1e3:.0f} ms" if x < 1 else f"{x:.2f} s"
