"""Named workloads fitted to real traces: the list, a preset's data, and its headline numbers.

Use one as ``workload: {preset: NAME, num_requests: N}`` and override any key (e.g.
``arrival: {process: poisson, rate_per_s: 5.5}`` keeps the preset's lengths at a constant rate).
The numbers, how they were fitted and to which trace: :mod:`workloads.fitted_presets`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workloads.fitted_presets import PRESETS, preset_data
from workloads.spec import WorkloadSpec

__all__ = ["PRESETS", "preset_data", "preset_summary"]


def preset_summary(name: str) -> dict[str, Any]:
    """Headline numbers of a preset, read from its spec without generating anything: mean rate,
    arrival process (base CV, rate-table span), and prompt/output p50 and p99 of each class.

    The base CV is the gamma process's own, below the inter-arrival CV of the generated traffic,
    which the rate table's variation raises (the ``source`` text gives the fitted value).
    """
    spec = WorkloadSpec.model_validate({**preset_data(name), "num_requests": 1})
    a = spec.arrival
    prof = getattr(a, "rate_profile", None)
    span = None if prof is None else float(prof.knots().span)
    probs = np.array([0.5, 0.99])
    classes = []
    for c in spec.classes:
        assert c.prompt_tokens is not None and c.output_tokens is not None
        classes.append({"name": c.name, "prompt_p50_p99": tuple(int(x) for x in c.prompt_tokens.quantile(probs)),
                        "output_p50_p99": tuple(int(x) for x in c.output_tokens.quantile(probs))})
    return {"mean_rate_per_s": spec.mean_rate_per_s, "process": a.process, "cv": getattr(a, "cv", None),
            "profile_span_s": span, "classes": classes}
