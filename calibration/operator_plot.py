"""A picture of an operator-table fit: is the profile's linear-layer time where the kernels were?

Three panels for one measured (GPU, layer shapes, TP): the per-layer GEMM time against tokens
(fitted counts, held-out counts, the interpolated table the profile prices, the rounded roof);
the same per token, where the weight-read floor and the compute roof show; and the all-reduce
fit against NCCL's timings at that TP. matplotlib is imported only here, when drawing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from calibration.operator_fit import MESSAGE_RANGE, CollectiveFit, LayerFit

__all__ = ["FIGURE_SUFFIXES", "plot_operator_fit"]

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


def plot_operator_fit(fit: LayerFit, path: str | Path, collectives: pa.Table | None = None,
                      allreduce: CollectiveFit | None = None, title: str = "") -> Path:
    """Draw ``fit`` (and the all-reduce fit with its measurements, when given) to ``path``."""
    path = Path(path)
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise ValueError(f"{path}: figure files end in {', '.join(FIGURE_SUFFIXES)}, not {path.suffix or '(none)'!r}")
    from matplotlib.figure import Figure

    rows = fit.rows.to_pydict()
    n, gemm = np.asarray(rows["tokens"], float), np.asarray(rows["gemm_s"], float)
    held = np.asarray(rows["heldout"], bool)
    grid = np.unique(np.geomspace(n.min(), n.max(), 400).round())
    table = np.interp(grid, fit.linear.tokens, fit.linear.gemm_seconds)
    roof = fit.linear.roof(grid)
    panels = 3 if allreduce is not None else 2
    fig = Figure(figsize=(5.2 * panels, 4.4), layout="constrained")
    axes = fig.subplots(1, panels)
    e = fit.linear.heldout
    for ax, per_token in ((axes[0], False), (axes[1], True)):
        d = n if per_token else 1.0
        g = grid if per_token else 1.0
        ax.plot(n[~held], (gemm / d)[~held] * 1e3, ".", ms=3, color="0.45", label="measured (fitted)")
        ax.plot(n[held], (gemm / d)[held] * 1e3, "x", ms=4, color="C3",
                label=f"held out: median {e['median']:.1%}, p90 {e['p90']:.1%}")
        ax.plot(grid, table / g * 1e3, "-", lw=1, color="C0", label="profile (interpolated table)")
        ax.plot(grid, roof / g * 1e3, "--", lw=1, color="C2", label="rounded roof (extrapolation)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tokens in the iteration")
        ax.set_ylabel("ms per token per layer" if per_token else "ms per layer (4 GEMMs)")
        ax.grid(True, which="both", lw=0.3)
    axes[0].legend(fontsize=7)
    axes[0].set_title(f"{fit.source_model} on {fit.gpu}, tp {fit.tp}", fontsize=9)
    axes[1].axhline(fit.linear.roof.c * 1e3, color="C1", lw=0.8, ls=":", label="compute slope c_lin")
    axes[1].legend(fontsize=7)
    axes[1].set_title("per token: falls until the compute roof, then flat", fontsize=9)
    if allreduce is not None and collectives is not None:
        ax = axes[2]
        t = collectives.filter(pc.and_(pc.equal(collectives["gpu"], allreduce.gpu),
                                       pc.equal(collectives["workers"], allreduce.workers)))
        t = t.filter(pc.and_(pc.equal(t["collective"], "all_reduce"), pc.equal(t["topology"], allreduce.topology)))
        t = t.filter(pc.equal(t["devices_per_node"], allreduce.workers))
        x, y = t["bytes"].to_numpy().astype(float), t["seconds"].to_numpy()
        ax.plot(x, y * 1e6, ".", ms=2, color="0.45", label="NCCL all-reduce (measured)")
        xs = np.geomspace(x.min(), x.max(), 200)
        ax.plot(xs, np.asarray(allreduce.seconds(xs)) * 1e6, "-", color="C0",
                label=f"{allreduce.latency_s * 1e6:.0f} us + m / {allreduce.algbw_bytes_per_s / 1e9:.0f} GB/s")
        for edge in MESSAGE_RANGE:
            ax.axvline(edge, color="0.7", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("message bytes")
        ax.set_ylabel("µs")
        ax.set_title(f"all-reduce, {allreduce.workers} GPUs: held-out median {allreduce.heldout['median']:.1%}\n"
                     f"(fitted between the dotted lines)", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(True, which="both", lw=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    return path
