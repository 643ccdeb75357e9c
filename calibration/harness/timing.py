"""Timing one engine step: a prefill chunk, or a decode step of a batch of sequences.

A step is the model's forward pass as an engine runs it per iteration: embeddings, the layers,
the LM head over each sequence's last position. On CUDA it is
:class:`~calibration.harness.model.LlamaDecoder`'s batched forward; on the CPU it is the real
serving loop's own step, :func:`~calibration.harness.serving.ragged_step` (attention per
sequence), with every sequence at the same length: a profile validated against that loop
(:mod:`sim.fitting.validate`) is then measured on the code it is checked against (the batched forward
was 2-7% faster for two to four sequences, a bias the fit cannot see). Each shape is timed the
way kernel benchmarks are:

- under ``torch.inference_mode()``, with Python's garbage collector paused;
- ``warmup`` untimed runs first (first-touch of memory, oneDNN/cuBLAS plan selection, the
  rotary table growing), then ``repeats`` timed runs, each measured around one step on the
  device's :class:`~calibration.harness.clock.StepClock`: on the CPU the calling thread's CPU
  time with torch on one intra-op thread (so that time given to another process is not counted),
  on CUDA the wall clock after ``torch.cuda.synchronize()``;
- the KV cache is allocated once by the caller and only re-viewed per shape
  (:meth:`~calibration.harness.model.KVCache.reshape`), the token ids drawn before timing:
  nothing is allocated by the harness inside the timed region but what the step itself
  allocates.

The cache holds random values at every position (written when it was allocated), so a decode
"with ``context`` tokens resident" reads ``context`` real-sized keys and values; the step
writes its new keys and values at their positions, which later repeats overwrite.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

import numpy as np
import torch

from calibration.harness.clock import StepClock, step_clock
from calibration.harness.model import HarnessError, KVCache, LlamaDecoder

__all__ = ["Timing", "time_decode", "time_prefill", "time_step"]


@dataclass(frozen=True)
class Timing:
    """Seconds of one step shape on the step clock (:mod:`~calibration.harness.clock`): median,
    10th and 90th percentiles over ``repeats`` runs, and the runs themselves."""

    median_s: float
    p10_s: float
    p90_s: float
    repeats: int
    samples_s: tuple[float, ...]

    @classmethod
    def from_samples(cls, samples: list[float] | tuple[float, ...]) -> Timing:
        """Summary of ``samples`` (at least one), percentiles linearly interpolated."""
        if not samples:
            raise HarnessError("samples = []: a timing needs at least one run")
        a = np.asarray(samples, dtype=np.float64)
        p10, med, p90 = np.percentile(a, [10.0, 50.0, 90.0])
        return cls(median_s=float(med), p10_s=float(p10), p90_s=float(p90), repeats=len(a),
                   samples_s=tuple(float(s) for s in a))


def time_step(model: LlamaDecoder, cache: KVCache | None, *, sequences: int, tokens_per_sequence: int, start: int,
              layers: int | None = None, warmup: int = 2, repeats: int = 10, max_seconds: float | None = None,
              seed: int = 0, clock: StepClock | None = None) -> Timing:
    """Time ``model`` computing ``tokens_per_sequence`` tokens for each of ``sequences``
    sequences at positions ``start`` onward (``start`` tokens already cached).

    ``cache`` must hold ``sequences * (start + tokens_per_sequence)`` tokens; ``None``
    allocates one (before timing). ``max_seconds`` stops the timed runs early once that much
    time is spent and at least three runs are done. ``clock``: the clock to time with (default:
    the device's, :func:`~calibration.harness.clock.step_clock`; torch runs on one thread on the
    CPU either way)."""
    if sequences < 1 or tokens_per_sequence < 1 or start < 0:
        raise HarnessError(f"step shape sequences = {sequences}, tokens = {tokens_per_sequence}, start = {start}: "
                           f"sequences and tokens must be >= 1, start >= 0")
    if warmup < 0 or repeats < 1:
        raise HarnessError(f"warmup = {warmup}, repeats = {repeats}: need warmup >= 0 and repeats >= 1")
    with step_clock(model.device) as own:  # on the CPU: one thread (again, if the caller's clock set it)
        return _time_step(model, cache, sequences, tokens_per_sequence, start, layers, warmup, repeats, max_seconds,
                          seed, clock or own)


def _time_step(model: LlamaDecoder, cache: KVCache | None, sequences: int, tokens_per_sequence: int, start: int,
               layers: int | None, warmup: int, repeats: int, max_seconds: float | None, seed: int,
               clock: StepClock) -> Timing:
    """:func:`time_step` with its clock taken."""
    length = start + tokens_per_sequence
    if cache is None:
        cache = model.new_cache(sequences * length, seed=seed)
    cache.reshape(sequences, length)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    ids = torch.randint(model.arch.vocab, (sequences, tokens_per_sequence), generator=gen).to(model.device)
    if model.device.type == "cpu":
        from calibration.harness.serving import ragged_step

        flat, slots = ids.reshape(-1), np.arange(sequences)
        starts, counts = np.full(sequences, start), np.full(sequences, tokens_per_sequence)

        def step() -> None:
            ragged_step(model, cache, flat, slots, starts, counts, layers)
    else:
        def step() -> None:
            model(ids, start, cache, layers)

    samples: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed run is noise, not the step's cost
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                step()
            clock.sync()
            spent = 0.0
            for _ in range(repeats):
                t0 = clock.now()
                step()
                dt = clock.stamp() - t0
                samples.append(dt)
                spent += dt
                if max_seconds is not None and spent >= max_seconds and len(samples) >= 3:
                    break
    finally:
        if gc_was_enabled:
            gc.enable()
    return Timing.from_samples(samples)


def time_prefill(model: LlamaDecoder, cache: KVCache | None, chunk: int, start: int = 0, *,
                 layers: int | None = None, warmup: int = 2, repeats: int = 10, max_seconds: float | None = None,
                 seed: int = 0, clock: StepClock | None = None) -> Timing:
    """Time a prefill of one chunk of ``chunk`` tokens of one sequence whose first ``start``
    tokens are already in the KV cache (chunked prefill at context offset ``start``)."""
    return time_step(model, cache, sequences=1, tokens_per_sequence=chunk, start=start, layers=layers, warmup=warmup,
                     repeats=repeats, max_seconds=max_seconds, seed=seed, clock=clock)


def time_decode(model: LlamaDecoder, cache: KVCache | None, batch: int, context: int, *, layers: int | None = None,
                warmup: int = 2, repeats: int = 10, max_seconds: float | None = None, seed: int = 0,
                clock: StepClock | None = None) -> Timing:
    """Time a decode step of ``batch`` sequences, each with ``context`` tokens in the KV cache,
    computing one new token each (which attends to ``context + 1`` positions; in
    :class:`~calibration.profile.BatchShape` terms, ``decode_context = context + 1``)."""
    return time_step(model, cache, sequences=batch, tokens_per_sequence=1, start=context, layers=layers,
                     warmup=warmup, repeats=repeats, max_seconds=max_seconds, seed=seed, clock=clock)
