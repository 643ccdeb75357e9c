"""Measure a model's step times over a designed grid, within a time budget.

:func:`measure` builds the decoder (:mod:`~calibration.harness.model`) at two layer counts'
worth of layers, times a few probe steps to estimate what each grid point costs, plans the
grid (:mod:`~calibration.harness.grid`) to fit what is left of the budget, allocates one KV
cache for the largest point, and times the points in priority order
(:mod:`~calibration.harness.timing`), skipping any that the remaining budget cannot pay for
(estimates are corrected as measured points come in). The smallest shape of each phase is
always measured at both layer counts, so a result always covers both phases and both counts.

Every second of it, the budget's included, is charged on the device's step clock
(:mod:`~calibration.harness.clock`): on the CPU the calling thread's CPU time with torch on one
intra-op thread, which time the scheduler gives to other processes does not lengthen; on CUDA the
wall clock.

The result is a :class:`Measurements`: a pyarrow table with one row per measured point and a
``meta`` dict of provenance (device, driver and library versions, the clock and threads, date,
model, scheme, layer counts, budget, grid size), which the fitting turns into a ``measured``
profile.

``torch`` is imported when :func:`measure` runs, not when this module is imported.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from calibration.catalog import MODELS, ModelArch
from calibration.harness.clock import StepClock
from calibration.harness.grid import (DEFAULT_MAX_REPEATS, Axes, CostModel, Shape, default_axes, layer_differences,
                                      plan, probe_shapes)

__all__ = ["MEASUREMENT_SCHEMA", "Measurements", "measure"]

MEASUREMENT_SCHEMA = pa.schema([
    pa.field("phase", pa.string()),        # 'prefill' | 'decode'
    pa.field("layers", pa.int64()),        # layers run in the step
    pa.field("sequences", pa.int64()),     # sequences in the step (1 for a prefill chunk)
    pa.field("chunk", pa.int64()),         # prefill chunk tokens (0 for decode)
    pa.field("start", pa.int64()),         # prefill offset: tokens already cached (0 for decode)
    pa.field("context", pa.int64()),       # decode: tokens cached before the step (0 for prefill)
    pa.field("tokens", pa.int64()),        # tokens computed in the step
    pa.field("seconds", pa.float64()),     # median seconds of one step on the step clock
    pa.field("p10_s", pa.float64()),
    pa.field("p90_s", pa.float64()),
    pa.field("repeats", pa.int64()),       # timed runs behind the median
])

# Share of free memory (host RAM on CPU, GPU memory on CUDA) the KV cache may take.
_KV_MEMORY_SHARE = 0.4
# Probe runs: one warm-up and one timed run of each probe shape (a rough cost is all the plan needs;
# the runner corrects it with every point it measures).
_PROBE_WARMUP, _PROBE_REPEATS = 1, 1


@dataclass(frozen=True)
class Measurements:
    """Step timings (``table``, columns of :data:`MEASUREMENT_SCHEMA`) and their provenance
    (``meta``: plain JSON values)."""

    table: pa.Table
    meta: dict[str, Any] = field(default_factory=dict)

    def phase(self, phase: str) -> pa.Table:
        """The rows of one phase ('prefill' or 'decode')."""
        import pyarrow.compute as pc
        return self.table.filter(pc.equal(self.table.column("phase"), phase))

    def layer_differences(self) -> pa.Table:
        """Per-layer and fixed seconds of every shape measured at both layer counts
        (:func:`~calibration.harness.grid.layer_differences`)."""
        return layer_differences(self.table)


def measure(model: str | ModelArch, quant: str, device: str = "cpu", layers: int | None = None,
            budget_s: float = 300, seed: int = 0,
            progress: Callable[[int, int, float], None] | None = None,
            clock: StepClock | None = None, axes: Axes | None = None, min_points: int = 0,
            max_repeats: int = DEFAULT_MAX_REPEATS) -> Measurements:
    """Time prefill and decode steps of ``model`` (a catalog key, or a ModelArch) under
    ``quant`` on ``device`` within about ``budget_s`` seconds of the harness's clock, everything
    included (building the model, probing, allocating the KV cache, the points).

    The clock is the device's step clock (:mod:`~calibration.harness.clock`): on the CPU the
    calling thread's CPU time, torch on one intra-op thread, so the budget buys the same grid on
    a busy machine as on a quiet one (the wall time it takes grows with the load instead); on
    CUDA the wall clock. ``clock`` replaces it (tests: a deterministic clock; torch still runs
    on one thread on the CPU).

    ``layers`` is L (default 2): every shape is timed at L and 2L layers (at L/2 and L where
    the model has fewer than 2L layers; see :func:`~calibration.harness.grid.layer_counts`).
    ``axes``: the grid (default :func:`~calibration.harness.grid.default_axes`; a workload's own,
    :func:`~calibration.harness.grid.serving_axes`, measures where it runs), whose layer counts
    then replace ``layers``'s. ``progress(done, total, eta_s)`` is called after each planned
    point (measured, or skipped for the budget), ``eta_s`` in the harness's clock.
    ``min_points``: measure at least this many points (the smallest shapes first), overrunning
    the budget if the machine is slower than it needs (:func:`~calibration.harness.grid.plan`).
    ``max_repeats``: the most timed runs of one point (a small grid and a large budget buy up to
    this many, which tames a noisy machine's per-run jitter)."""
    if not (isinstance(budget_s, int | float) and 0 < budget_s < math.inf):
        from calibration.harness.model import HarnessError
        raise HarnessError(f"budget_s = {budget_s!r}: must be a positive number of seconds")
    from calibration.harness.clock import step_clock
    from calibration.harness.model import resolve_device

    with step_clock(resolve_device(device)) as own:
        return _measure(model, quant, device, layers, budget_s, seed, progress, clock or own, axes, min_points,
                        max_repeats)


def _measure(model: str | ModelArch, quant: str, device: str, layers: int | None, budget_s: float, seed: int,
             progress: Callable[[int, int, float], None] | None, clock: StepClock,
             given_axes: Axes | None, min_points: int, max_repeats: int) -> Measurements:
    """:func:`measure` with its clock taken (and, on the CPU, torch on one thread)."""
    import torch

    from calibration.harness.model import HarnessError, build_model, resolve_scheme
    from calibration.harness.timing import Timing, time_step

    wall_begin = time.perf_counter()
    t_begin = clock.now()
    arch = MODELS[model] if isinstance(model, str) else model
    if layers is not None and (not isinstance(layers, int) or not 1 <= layers <= arch.layers):
        raise HarnessError(f"layers = {layers!r}: must be an integer from 1 to the {arch.layers} layers of "
                           f"{arch.key}")
    scheme = resolve_scheme(quant, device)
    axes = given_axes or default_axes(layers=min(2, arch.layers) if layers is None else layers,
                                      full_layers=arch.layers, device_type=scheme.device.type)
    counts = axes.layer_counts
    if max(counts) > arch.layers:
        raise HarnessError(f"axes.layer_counts = {counts}: {arch.key} has {arch.layers} layers")

    decoder = build_model(arch, quant, scheme.device, layers=max(counts), seed=seed)
    build_s = clock.now() - t_begin
    bytes_per_token = decoder.kv_bytes_per_token()
    max_kv = max(1, int(_free_memory_bytes(scheme.device) * _KV_MEMORY_SHARE // bytes_per_token))

    # Probe: a few cheap shapes at the smaller layer count fix the cost model.
    t_probe = clock.now()
    probes = [s for s in probe_shapes(axes)
              if s.offset + s.tokens_per_sequence <= arch.max_context and s.kv_tokens <= max_kv]
    if not probes:
        raise HarnessError(f"model = {arch.key!r}: not even the smallest probe step fits in memory "
                           f"({max_kv} KV tokens)")
    t_alloc = clock.now()
    cache = decoder.new_cache(max(s.kv_tokens for s in probes), seed=seed)
    alloc_s_per_token = (clock.stamp() - t_alloc) / cache.capacity_tokens
    # One-time costs (kernel selection, allocator growth, first touch of every weight) land in a
    # few untimed steps of the two smallest probes at full depth, not in the first probe.
    for s in probes[:1] + [p for p in probes if p.phase == "decode"][:1]:
        time_step(decoder, cache, sequences=s.sequences, tokens_per_sequence=s.tokens_per_sequence, start=s.offset,
                  layers=counts[-1], warmup=1, repeats=1, seed=seed, clock=clock)
    probe_times: list[tuple[Shape, float]] = []
    for s in probes:
        t = time_step(decoder, cache, sequences=s.sequences, tokens_per_sequence=s.tokens_per_sequence,
                      start=s.offset, layers=counts[0], warmup=_PROBE_WARMUP, repeats=_PROBE_REPEATS, seed=seed,
                      clock=clock)
        probe_times.append((s, t.median_s))
    cost = CostModel.fit(counts[0], probe_times)
    del cache
    probe_s = clock.now() - t_probe

    remaining = budget_s - (clock.now() - t_begin)
    grid = plan(axes, cost, max(remaining, 1e-3), max_positions=arch.max_context, max_kv_tokens=max_kv,
                kv_alloc_s_per_token=alloc_s_per_token, min_points=min_points, max_repeats=max_repeats)
    cache = decoder.new_cache(max(grid.kv_tokens, 1), seed=seed)

    # The smallest shape of each phase (the first unit of each), and the shapes the plan keeps
    # for ``min_points``, run whatever the clock says.
    always = set(grid.kept)
    for ph in ("prefill", "decode"):
        first = next((p.shape for p in grid.points if p.shape.phase == ph), None)
        if first is not None:
            always.add(first)

    rows: dict[str, list[Any]] = {f.name: [] for f in MEASUREMENT_SCHEMA}
    spent = {"prefill": 0.0, "decode": 0.0}
    estimated = {"prefill": 0.0, "decode": 0.0}
    skipped = 0

    def ratio(ph: str) -> float:
        """Measured over estimated seconds so far in this phase (1 before any point)."""
        return spent[ph] / estimated[ph] if estimated[ph] > 0 else 1.0

    # Two passes, the second in reverse order, each with half of a point's repeats: a point
    # measured early in the first pass is measured late in the second, so a slow drift of the
    # machine's speed (shared cores, clocks) lands about equally on every point instead of
    # biasing whichever shapes happened to run during it. A point's timing pools both passes.
    total = 2 * len(grid.points)
    skip_unit = False
    measured: list[tuple[Any, list[float]]] = []

    def run_point(pt: Any, repeats: int) -> list[float]:
        s = pt.shape
        t0 = clock.now()
        t = time_step(decoder, cache, sequences=s.sequences, tokens_per_sequence=s.tokens_per_sequence,
                      start=s.offset, layers=pt.layers, warmup=pt.warmup, repeats=repeats,
                      max_seconds=2.0 * repeats * pt.est_step_s * ratio(s.phase), seed=seed, clock=clock)
        spent[s.phase] += clock.now() - t0
        estimated[s.phase] += pt.est_s * repeats / pt.repeats
        return list(t.samples_s)

    def report(done: int, left_points: list[Any], share: float) -> None:
        if progress is not None:
            left = sum(p.est_s * share * ratio(p.shape.phase) for p in left_points)
            budget_left = max(0.0, budget_s - (clock.now() - t_begin))
            progress(done, total, min(left, budget_left))

    pending = 0.0  # estimated seconds of the second pass over the points measured so far

    def second_half(pt: Any) -> float:
        """Estimated seconds of a point's second pass: its other repeats and another warm-up."""
        return (pt.est_s * (pt.repeats // 2) / pt.repeats + pt.warmup * pt.est_step_s) * ratio(pt.shape.phase)

    for i, pt in enumerate(grid.points):
        s = pt.shape
        if i == 0 or grid.points[i - 1].shape != s:
            # A shape's layer counts are measured or skipped together: a shape at one count
            # only says nothing about the per-layer part.
            unit = [p for p in grid.points[i:i + len(counts)] if p.shape == s]
            # Both passes of the unit (one more warm-up than a single pass).
            expect = sum((p.est_s + p.warmup * p.est_step_s) * ratio(s.phase) for p in unit)
            skip_unit = s not in always and clock.now() - t_begin + expect + pending > budget_s
        if skip_unit:
            skipped += 1
        else:
            measured.append((pt, run_point(pt, max(1, (pt.repeats + 1) // 2))))
            pending += second_half(pt)
        report(i + 1, grid.points[i + 1:], 1.0)
    done = len(grid.points) + skipped  # the second pass has nothing to do for skipped points
    backwards = [pt for pt, _ in reversed(measured)]
    for j, (pt, samples) in enumerate(reversed(measured)):
        second = pt.repeats - len(samples)
        if second >= 1:
            samples.extend(run_point(pt, second))
        report(done + j + 1, backwards[j + 1:], 0.5)
    for pt, samples in measured:
        s, t = pt.shape, Timing.from_samples(samples)
        for name, value in (("phase", s.phase), ("layers", pt.layers), ("sequences", s.sequences),
                            ("chunk", s.chunk), ("start", s.start), ("context", s.context),
                            ("tokens", s.tokens), ("seconds", t.median_s), ("p10_s", t.p10_s),
                            ("p90_s", t.p90_s), ("repeats", t.repeats)):
            rows[name].append(value)

    table = pa.table(rows, schema=MEASUREMENT_SCHEMA)
    meta = _device_meta(torch, scheme.device)
    meta.update({
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": arch.key,
        "model_name": arch.name,
        "model_source": arch.source,
        "quant": scheme.quant,
        "scheme": scheme.description,
        "kernel": scheme.kernel,
        "activation_dtype": str(scheme.act_dtype).removeprefix("torch."),
        "head_dtype": str(scheme.head_dtype).removeprefix("torch."),
        "kv_cache_dtype": str(scheme.act_dtype).removeprefix("torch."),
        "layers": list(counts),
        "full_layers": arch.layers,
        "budget_s": float(budget_s),
        "clock": clock.name,
        "elapsed_s": round(clock.now() - t_begin, 3),  # on the clock the budget is charged in
        "wall_s": round(time.perf_counter() - wall_begin, 3),
        "build_s": round(build_s, 3),
        "probe_s": round(probe_s, 3),
        "grid_size": len(grid.points),
        "axes": {k: list(getattr(axes, k)) for k in ("chunks", "starts", "batches", "contexts")},
        "grid_candidates": grid.candidates,
        "measured_points": table.num_rows,
        "skipped_points": skipped,
        "planned_s": round(grid.est_s, 3),
        "kv_cache_tokens": cache.capacity_tokens,
        "kv_cache_bytes": cache.nbytes,
        "seed": seed,
        "probe": [{"phase": s.phase, "sequences": s.sequences, "chunk": s.chunk, "start": s.start,
                   "context": s.context, "layers": counts[0], "seconds": sec} for s, sec in probe_times],
        "decode_context": "tokens cached before the step; the step attends to context + 1 positions "
                          "(BatchShape.decode_context = context + 1)",
        "timing": f"median of timed runs after warm-up; {clock.name} around one step under "
                  "torch.inference_mode; KV cache pre-allocated",
    })
    return Measurements(table=table, meta=meta)


def _free_memory_bytes(device: Any) -> float:
    """Memory a KV cache may come out of: free GPU memory, or the host's MemAvailable."""
    import torch
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return float(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8.0 * 2**30  # no way to ask: assume a modest machine


def _cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what platform says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _nvidia_driver() -> str | None:
    """The NVIDIA driver version from nvidia-smi, or None where it cannot be asked."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.strip().splitlines()
    return first[0].strip() if first else None


def _device_meta(torch: Any, device: Any) -> dict[str, Any]:
    """Device, driver and library versions, and threads, as plain JSON values."""
    meta: dict[str, Any] = {
        "device_type": device.type,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        meta.update({
            "device": torch.cuda.get_device_name(device),
            "compute_capability": f"{props.major}.{props.minor}",
            "device_memory_bytes": int(props.total_memory),
            "cuda_version": torch.version.cuda,
            "driver_version": _nvidia_driver(),
        })
    else:
        meta["device"] = meta["cpu"]
        meta["quantized_engine"] = torch.backends.quantized.engine
        try:
            meta["mkldnn_bf16"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            pass
    return meta
