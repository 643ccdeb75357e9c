"""The workload presets' numbers: named workloads fitted to real traces, as plain data in code (they
work offline, on a fresh machine). Read them through :mod:`workloads.presets`.

Each preset is the plain-data form of a :class:`workloads.WorkloadSpec` (without a stop rule),
fitted by ``capsim workload fit`` (:func:`workloads.fit.fit`) to the trace it is named after and
pasted here rounded as the fit rounds it: a per-minute step rate table for one trace span (after
which the rate holds the trace's mean), a gamma, Weibull or Poisson base for the burstiness within
minutes, and prompt and output lengths as quantile functions. Its ``source`` says which trace, under
which licence, with which command and date, and what the fit reproduced. Use one as
``workload: {preset: NAME, num_requests: N}`` and override any key (e.g.
``arrival: {process: poisson, rate_per_s: 5.5}`` keeps the preset's lengths at a constant rate).

The tests check that each preset still reproduces its trace (mean rate within 2%, inter-arrival
CV within 10%, prompt and output p50/p90/p99 within 10%) whenever the shared traces are present.

Plain data and a lookup that import nothing of capsim: :mod:`workloads.spec` reads a preset from
here when it validates ``workload: {preset: NAME}``, and :mod:`workloads.presets`, which summarises
a preset through ``WorkloadSpec``, imports spec; so this module imports neither.
"""

from __future__ import annotations

import copy
import difflib
from typing import Any

__all__ = ["PRESETS", "preset_data"]


def _fitted(*, source: str, process: str, cv: float | None, span_s: float, minute_rates: list[float], name: str,
            length_correlation: float, prompt_probs: list[float], prompt_values: list[float],
            output_probs: list[float], output_values: list[float]) -> dict[str, Any]:
    """One fitted preset as plain WorkloadSpec data: a step rate table of one rate per minute (the
    last step runs to ``span_s`` and the final entry is the rate held after it), a renewal base of
    the given CV (none for Poisson), and one class with quantile-function lengths."""
    times = [60.0 * i for i in range(len(minute_rates) - 1)] + [span_s]
    arrival: dict[str, Any] = {"process": process}
    if cv is not None:
        arrival["cv"] = cv
    arrival["rate_profile"] = {"shape": "table", "interpolate": "step", "times_s": times, "rates_per_s": minute_rates}
    cls: dict[str, Any] = {
        "name": name,
        "prompt_tokens": {"dist": "quantiles", "probs": prompt_probs, "values": prompt_values},
        "output_tokens": {"dist": "quantiles", "probs": output_probs, "values": output_values},
    }
    if length_correlation:
        cls["length_correlation"] = length_correlation
    return {"source": source, "workload": {"arrival": arrival, "classes": [cls]}}


# name -> {"source": provenance text, "workload": WorkloadSpec data without num_requests/duration_s}
PRESETS: dict[str, dict[str, Any]] = {
    "azure-code-2023": _fitted(
        source=(
            "Azure LLM inference trace 2023, code service (Splitwise, ISCA'24): "
            "github.com/Azure/AzurePublicDataset @ b469a11, data/AzureLLMInferenceTrace_code.csv, CC-BY-4.0; "
            "8,819 requests over 57 min. Fitted 2026-11-23 by `capsim workload fit "
            "../shared/traces/azure_llm_2023/AzureLLMInferenceTrace_code.csv --name code -o azure-code-2023.yaml`"
            " (seed 0): weibull CV 8.11 arrivals through a 57-step per-minute rate table, lengths as quantiles. "
            "Fit (a 2M-request sample) vs trace: 2.555 vs 2.566 req/s, inter-arrival CV 13.46 vs 13.15, peak/mean"
            " of 1-min counts 4.77 vs 4.18, prompt p50/p90/p99 1,469/5,178/7,436 vs 1,469/5,188/7,436, output "
            "13/55/251 vs 13/55/251."
        ),
        process="weibull", cv=8.11, span_s=3435.95,
        minute_rates=[
            1.05, 0, 0, 8.85, 3.117, 2.167, 0.25, 0.7, 0.6333, 7.933, 7.017, 1.05, 0, 0, 10.53,
            4.983, 0, 0.3333, 6.6, 5.25, 1.933, 1.3, 5.1, 7.45, 4.2, 0.5667, 2.133, 1.85, 6.767,
            3.9, 1.967, 2.817, 2.167, 5.1, 2.633, 0, 5.65, 0.9167, 4.75, 3.183, 0, 0.4667, 3.417,
            4.083, 1.65, 0, 0, 0.5333, 0, 0, 0, 1.617, 3.533, 0.3667, 0.5333, 1.883, 3.2, 2.567,
        ],
        name="code", length_correlation=-0.022,
        prompt_probs=[
            0, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65,
            0.7, 0.75, 0.8, 0.85, 0.875, 0.9, 0.925, 0.95, 0.975, 0.99, 0.995, 0.999, 1,
        ],
        prompt_values=[
            3, 17, 44, 75, 147, 232, 386, 578, 770, 939, 1075, 1261, 1469, 1690, 1909, 2164, 2433,
            2744, 3192, 3920, 4434, 5188, 6097, 7303, 7435, 7436, 7436, 7437, 7437,
        ],
        output_probs=[
            0, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65,
            0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.9625, 0.975, 0.9825, 0.99, 0.9925, 0.995,
            0.997, 0.999, 0.9995, 1,
        ],
        output_values=[
            6, 6, 6, 6, 7, 7, 8, 9, 9, 10, 11, 12, 13, 14, 16, 18, 20, 24, 29, 39, 55, 69, 90, 109,
            145, 183, 251, 287, 359, 512, 825, 885, 1899,
        ],
    ),
    "azure-conv-2023": _fitted(
        source=(
            "Azure LLM inference trace 2023, conversation service (Splitwise, ISCA'24): "
            "github.com/Azure/AzurePublicDataset @ b469a11, data/AzureLLMInferenceTrace_conv.csv, CC-BY-4.0; "
            "19,366 requests over 58 min. Fitted 2026-11-23 by `capsim workload fit "
            "../shared/traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv --name conversation -o "
            "azure-conv-2023.yaml` (seed 0): gamma CV 1.04 arrivals through a 58-step per-minute rate table, "
            "lengths as quantiles. Fit (a 2M-request sample) vs trace: 5.528 vs 5.530 req/s, inter-arrival CV "
            "1.09 vs 1.09, peak/mean of 1-min counts 1.54 vs 1.52, prompt p50/p90/p99 1,020/2,728/4,150 vs "
            "1,020/2,734/4,142, output 129/424/601 vs 129/424/601."
        ),
        process="gamma", cv=1.04, span_s=3501.72,
        minute_rates=[
            3.183, 4.417, 5.483, 5.883, 5.117, 4.55, 4.467, 4.35, 5.367, 4.967, 5.017, 5.033, 5.75,
            5.433, 4.717, 4.65, 4.667, 5.133, 5.717, 5.85, 5.85, 5.717, 6.8, 6.6, 6.433, 6.633, 7.2,
            8, 7.933, 7.55, 7.467, 8.45, 7.3, 6.883, 7.05, 6.967, 7.75, 5.183, 5.483, 5.267, 5.55,
            5.917, 5.317, 6, 5.567, 6.25, 5.5, 4.15, 3.683, 4.15, 4.417, 4.667, 4.267, 4.233, 4.033,
            4.333, 4.1, 3.206, 5.53,
        ],
        name="conversation", length_correlation=0.076,
        prompt_probs=[
            0, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.375, 0.4, 0.425, 0.45, 0.5,
            0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.825, 0.85, 0.9, 0.9125, 0.925, 0.95, 0.975, 0.99,
            0.995, 0.999, 0.9995, 1,
        ],
        prompt_values=[
            2, 29, 120, 181, 207, 372, 387, 396, 403, 414, 428, 703, 922, 984, 1020, 1045, 1071,
            1097, 1130, 1189, 1315, 1434, 1876, 2734, 3536, 4075, 4083, 4092, 4142, 4831, 6179,
            6570, 14050,
        ],
        output_probs=[
            0, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65,
            0.675, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.99, 0.995, 0.999, 1,
        ],
        output_values=[
            7, 16, 28, 41, 54, 67, 77, 85, 91, 96, 103, 113, 129, 151, 177, 217, 373, 384, 395, 400,
            411, 424, 430, 451, 522, 601, 643, 954, 1000,
        ],
    ),
    "mooncake-conversation": _fitted(
        source=(
            "Mooncake FAST'25 conversation trace (Kimi production traffic): github.com/kvcache-ai/Mooncake @ "
            "3b5a594, FAST25-release/traces/conversation_trace.jsonl, Apache-2.0; 12,031 requests over 59 min. "
            "Fitted 2026-11-23 by `capsim workload fit "
            "../shared/traces/mooncake_fast25/conversation_trace.jsonl.gz --name conversation -o "
            "mooncake-conversation.yaml` (seed 0): gamma CV 3.03 arrivals through a 58-step per-minute rate "
            "table, lengths as quantiles. Fit (a 2M-request sample) vs trace: 3.385 vs 3.401 req/s, inter-arrival"
            " CV 3.05 vs 3.03, peak/mean of 1-min counts 1.61 vs 1.21, prompt p50/p90/p99 6,909/27,326/85,592 vs "
            "6,909/27,367/85,400, output 350/597/1,119 vs 350/597/1,119. Not modelled: the trace's shared "
            "prefixes (53% of prompt tokens)."
        ),
        process="gamma", cv=3.03, span_s=3537,
        minute_rates=[
            2.7, 2.95, 3.617, 2.917, 3.117, 2.733, 2.4, 3.05, 2.7, 2.983, 3.633, 3.1, 3.1, 3.4,
            3.067, 2.7, 3.15, 2.817, 3.167, 3.667, 3.383, 3.433, 3.633, 3.467, 2.867, 4, 2.983, 3.5,
            3.6, 3.483, 3.917, 3.283, 3.233, 3.133, 3.75, 3.467, 4.117, 2.933, 3.8, 3.9, 3.45, 3.9,
            3.433, 3.733, 3.633, 3.583, 3.267, 3.833, 3.783, 3.917, 3.65, 4.117, 3.7, 3.6, 3.333,
            3.967, 3.633, 3.658, 3.401,
        ],
        name="conversation", length_correlation=0.075,
        prompt_probs=[
            0, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65,
            0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.9625, 0.975, 0.9825, 0.99, 0.995, 0.999, 1,
        ],
        prompt_values=[
            891, 894, 896, 901, 964, 1261, 1662, 2306, 3263, 4251, 4993, 5870, 6909, 8187, 9570,
            11238, 13196, 15367, 17869, 21464, 27367, 31519, 39550, 46863, 58977, 69283, 85400,
            100810, 121301, 126195,
        ],
        output_probs=[
            0, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65,
            0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.99, 0.995, 0.999, 1,
        ],
        output_values=[
            1, 3, 3, 10, 24, 46, 100, 156, 213, 256, 291, 322, 350, 375, 399, 423, 447, 472, 504,
            543, 597, 639, 698, 835, 1119, 1568, 2000, 2000,
        ],
    ),
    "mooncake-synthetic": _fitted(
        source=(
            "Mooncake FAST'25 synthetic trace (Poisson arrivals): github.com/kvcache-ai/Mooncake @ 3b5a594, "
            "FAST25-release/traces/synthetic_trace.jsonl, Apache-2.0; 3,993 requests over 17 min. Fitted "
            "2026-11-23 by `capsim workload fit ../shared/traces/mooncake_fast25/synthetic_trace.jsonl.gz --name "
            "synthetic -o mooncake-synthetic.yaml` (seed 0): Poisson arrivals through a 17-step per-minute rate "
            "table, lengths as quantiles. Fit (a 2M-request sample) vs trace: 3.905 vs 3.906 req/s, inter-arrival"
            " CV 1.00 vs 1.01, peak/mean of 1-min counts 1.19 vs 1.17, prompt p50/p90/p99 11,587/38,581/66,579 vs"
            " 11,587/38,611/66,456, output 69/389/768 vs 69/389/768. Not modelled: the trace's shared prefixes "
            "(80% of prompt tokens)."
        ),
        process="poisson", cv=None, span_s=1022.02,
        minute_rates=[
            3.467, 3.65, 3.633, 3.867, 3.567, 3.917, 3.7, 4.117, 4.067, 3.583, 4.317, 3.983, 3.983,
            4.117, 3.85, 4.55, 4.047, 3.907,
        ],
        name="synthetic", length_correlation=-0.534,
        prompt_probs=[
            0, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65,
            0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.99, 0.995, 0.997, 0.999, 1,
        ],
        prompt_values=[
            13, 16, 19, 22, 30, 45, 88, 277, 913, 2777, 4365, 6657, 11587, 14724, 16290, 17642,
            19409, 23175, 28425, 34319, 38611, 41325, 48905, 55781, 66456, 76328, 87510, 191373,
            191378,
        ],
        output_probs=[
            0, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65,
            0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.9625, 0.975, 0.99, 0.995, 0.999, 1,
        ],
        output_values=[
            1, 2, 2, 2, 4, 6, 8, 11, 16, 22, 32, 49, 69, 92, 126, 169, 210, 250, 289, 332, 389, 444,
            519, 572, 658, 768, 782, 813, 893,
        ],
    ),
}


def preset_data(name: str) -> dict[str, Any]:
    """A fresh copy of the named preset's workload data; ValueError naming close matches if unknown."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=3)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise ValueError(f"unknown preset {name!r}{hint}; known: {', '.join(sorted(PRESETS)) or 'none'}")
    return copy.deepcopy(PRESETS[name]["workload"])
