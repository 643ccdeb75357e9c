"""One calibration run: measure real kernels with the harness, fit the step-time model, write a profile.

``capsim calibrate`` is this function plus a progress bar. The harness needs PyTorch (the
``calibrate`` extra); nothing else in capsim does, so torch is imported only inside
:func:`calibrate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from calibration.catalog import GPUS, MODELS, QUANTIZATIONS, CatalogError
from calibration.fit import MIN_STEPS, FitResult, fit_step_model
from calibration.harness.grid import DEFAULT_MAX_REPEATS
from calibration.measured import ProfileRecord, write_profile

__all__ = ["NOISY_SPREAD", "CalibrationRun", "calibrate", "default_hardware", "timing_spread"]

# Catalog hardware a CUDA device's name maps to (first match wins).
_CUDA_NAMES = (("H200", "h200"), ("H100 PCIe", "h100-pcie"), ("H100", "h100-sxm"), ("B200", "b200"),
               ("A100-SXM4-40GB", "a100-40gb"), ("A100", "a100-80gb"), ("L40S", "l40s"), ("L4", "l4"),
               ("A10G", "a10g"), ("T4", "t4"), ("MI300X", "mi300x"))


@dataclass(frozen=True)
class CalibrationRun:
    """What a run produced: the profile record, where it was written, the fit and the raw table."""

    record: ProfileRecord
    path: Path
    fit: FitResult
    measurements: pa.Table
    meta: dict[str, Any]


def default_hardware(device: str, device_name: str | None = None) -> str:
    """The catalog hardware a profile measured on ``device`` is filed under: the server CPU entry
    for ``cpu``; for ``cuda`` the catalog GPU whose name the device reports."""
    if device == "cpu":
        return "cpu-server"
    for needle, key in _CUDA_NAMES:
        if device_name and needle.lower() in device_name.lower():
            return key
    raise CatalogError(f"cannot tell which catalog GPU {device_name!r} is: pass --hardware with one of "
                       f"{', '.join(sorted(GPUS))}")


# A median repeat spread past which the machine's timing noise is as large as the 10% held-out
# p90 a good profile reaches: the median of ~10 repeats spread S apart is uncertain by ~0.15 S.
NOISY_SPREAD = 0.10


def timing_spread(table: pa.Table) -> float:
    """How noisily this machine timed the steps: the median over steps of the p10-p90 spread of a
    step's timed repeats, relative to its median."""
    seconds = table.column("seconds").to_numpy()
    return float(np.median((table.column("p90_s").to_numpy() - table.column("p10_s").to_numpy()) / seconds))


def _validity(table: pa.Table) -> dict[str, float]:
    out: dict[str, float] = {}
    for col in ("layers", "sequences", "chunk", "start", "context"):
        v = table.column(col).to_numpy()
        nz = v[v > 0]
        if nz.size:
            out[f"{col}_min"], out[f"{col}_max"] = float(nz.min()), float(nz.max())
    return out


def calibrate(model: str, quant: str, *, device: str = "cpu", layers: int | None = None, budget_s: float = 300.0,
              hardware: str | None = None, out_dir: str | Path = "profiles", seed: int = 0,
              progress: Callable[[int, int, float], None] | None = None, axes: Any = None,
              max_repeats: int = DEFAULT_MAX_REPEATS) -> CalibrationRun:
    """Measure ``model`` in ``quant`` on ``device`` for about ``budget_s`` seconds of the
    harness's clock (on the CPU its thread's CPU time on one torch thread: see
    :mod:`calibration.harness.clock`), fit, and write the profile (JSON + Parquet) into
    ``out_dir``. ``axes``: the grid (a :class:`calibration.harness.grid.Axes`; default the
    harness's own); ``max_repeats``: the most timed runs of one point."""
    arch = MODELS[model]
    QUANTIZATIONS[quant]  # noqa: B018 - a catalog scheme, so scenarios can use the profile (CatalogError if not)
    from calibration.harness import measure  # torch lives here

    # At least the steps the fit needs, even where this machine runs slower than the budget assumed.
    m = measure(model, quant, device=device, layers=layers, budget_s=budget_s, seed=seed, progress=progress, axes=axes,
                min_points=MIN_STEPS, max_repeats=max_repeats)
    table, meta = m.table, dict(m.meta)
    hw = hardware or default_hardware(device, meta.get("device"))
    GPUS[hw]  # noqa: B018 - validates the name
    fit = fit_step_model(table, seed=seed)
    measured_layers = sorted({int(x) for x in np.unique(table.column("layers").to_numpy())})
    when = meta.get("date") or datetime.now(timezone.utc).strftime("%Y-%m-%d")
    depth = fit.depth_error
    source = (f"capsim calibrate on {meta.get('device', device)} ({device}; torch {meta.get('torch_version', '?')}, "
              f"timed on {meta.get('clock', '?')}), {when}: {arch.name} shapes with random weights, "
              f"{'/'.join(map(str, measured_layers))} of {arch.layers} layers, {quant}; {table.num_rows} step shapes "
              f"({fit.train_rows} fitted, {fit.heldout_rows} held out)"
              + (f"; fitted on {depth['fitted_layers']:.0f} layers, {depth['scored_layers']:.0f}-layer steps "
                 f"predicted with median error {depth['median']:.1%}" if depth else ""))
    record = ProfileRecord(
        model=model, quantization=quant, hardware=hw, tp=1, kind="measured", coefficients=fit.coefficients,
        layers=arch.layers, validity=_validity(table), heldout_error=fit.heldout_error, source=source,
        meta={**{k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool))},
              "depth_error": depth or {}},
    )
    path = write_profile(out_dir, record, table)
    return CalibrationRun(record=record, path=path, fit=fit, measurements=table, meta=meta)
