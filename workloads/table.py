"""The RequestTable: one row per request, the only thing the engine reads from a workload."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from workloads.spec import WorkloadSpec

__all__ = ["REQUEST_SCHEMA", "generate"]

REQUEST_SCHEMA = pa.schema([
    ("request_id", pa.int64()),
    ("arrival_s", pa.float64()),
    ("prompt_tokens", pa.int64()),
    ("output_tokens", pa.int64()),
    ("class", pa.string()),
    ("priority", pa.int64()),
])


def _poisson_arrivals(rng: np.random.Generator, rate: float, n: int | None, duration: float | None) -> np.ndarray:
    if n is not None:
        return np.cumsum(rng.exponential(1.0 / rate, size=n))
    # Draw in blocks until the horizon is passed: the expected count plus a generous margin.
    assert duration is not None
    out, t = [], 0.0
    block = int(rate * duration + 10 * np.sqrt(rate * duration) + 16)
    while True:
        a = t + np.cumsum(rng.exponential(1.0 / rate, size=block))
        out.append(a[a < duration])
        if a[-1] >= duration:
            return np.concatenate(out)
        t = float(a[-1])


def generate(spec: WorkloadSpec, seed: int, max_context: int | None = None) -> pa.Table:
    """Draw the request table for ``spec``; identical for identical (spec, seed).

    Independent streams (arrivals, class choice, then prompt and output lengths per class) come
    from ``SeedSequence(seed).spawn`` so that changing one class leaves the others' draws alone.
    With ``max_context`` given, prompt + output never exceed it (prompt truncated first).
    """
    ss = np.random.SeedSequence(seed)
    s_arr, s_cls, *s_len = ss.spawn(2 + 2 * len(spec.classes))
    arrivals = _poisson_arrivals(np.random.default_rng(s_arr), spec.arrival.rate_per_s,
                                 spec.num_requests, spec.duration_s)
    n = arrivals.size
    shares = np.array([c.share for c in spec.classes], dtype=np.float64)
    cls_idx = np.random.default_rng(s_cls).choice(len(spec.classes), size=n, p=shares / shares.sum())
    prompt = np.empty(n, dtype=np.int64)
    output = np.empty(n, dtype=np.int64)
    priority = np.empty(n, dtype=np.int64)
    for k, c in enumerate(spec.classes):
        m = cls_idx == k
        cnt = int(m.sum())
        prompt[m] = c.prompt_tokens.sample(np.random.default_rng(s_len[2 * k]), cnt)
        output[m] = c.output_tokens.sample(np.random.default_rng(s_len[2 * k + 1]), cnt)
        priority[m] = c.priority
    if max_context is not None:
        # Truncate to the model's context the way a client must: prompt first, then output.
        np.minimum(prompt, max_context - 1, out=prompt)
        np.minimum(output, max_context - prompt, out=output)
    names = np.array([c.name for c in spec.classes], dtype=object)
    return pa.table({
        "request_id": np.arange(n, dtype=np.int64),
        "arrival_s": arrivals,
        "prompt_tokens": prompt,
        "output_tokens": output,
        "class": pa.array(names[cls_idx].tolist() if n else [], type=pa.string()),
        "priority": priority,
    }, schema=REQUEST_SCHEMA)
