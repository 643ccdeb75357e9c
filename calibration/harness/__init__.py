"""The calibration harness: a quantized Llama-architecture decoder with random weights at a real
model's shapes, run on real PyTorch kernels (CUDA when present, CPU otherwise), timing prefill and
decode steps over a grid designed for fitting the step-time model.

- :mod:`~calibration.harness.model`: the decoder, its KV cache, and the linear-layer kernels per
  quantization scheme and device;
- :mod:`~calibration.harness.clock`: the clock steps are timed on (CPU: the thread's CPU time on
  one torch thread; CUDA: wall time after a synchronize);
- :mod:`~calibration.harness.timing`: timing one step shape (median, p10, p90);
- :mod:`~calibration.harness.grid`: which shapes, in what order, within a budget (no torch);
- :mod:`~calibration.harness.run`: :func:`measure`, returning :class:`Measurements`;
- :mod:`~calibration.harness.serving`: the real serving loop the simulator is validated against;
- :mod:`~calibration.harness.alongside`: a calibration's points timed again in bursts between
  that loop's iterations, so that both see the same machine.

Only this subpackage imports torch, and only when one of its torch-using modules is imported:
``import calibration.harness`` itself loads nothing heavy (names below resolve on first use).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from calibration.harness.model import HarnessError, build_model, resolve_scheme
    from calibration.harness.run import Measurements, measure
    from calibration.harness.timing import Timing, time_decode, time_prefill

__all__ = ["HarnessError", "Measurements", "Timing", "build_model", "measure", "resolve_scheme", "time_decode",
           "time_prefill"]

_WHERE = {"HarnessError": "model", "build_model": "model", "resolve_scheme": "model", "Measurements": "run",
          "measure": "run", "Timing": "timing", "time_decode": "timing", "time_prefill": "timing"}


def __getattr__(name: str) -> Any:
    """Load the module that defines ``name`` on first use (torch is imported then, not before)."""
    if name in _WHERE:
        return getattr(import_module(f"calibration.harness.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'calibration.harness' has no attribute {name!r}")
