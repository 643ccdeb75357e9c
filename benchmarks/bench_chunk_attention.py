"""What a prefill chunk after cached tokens costs on this CPU, three ways (one layer's attention
at Llama-3.2-1B's shapes: 32 query heads, 8 KV heads, head_dim 64; fp32; median of 5).

    python benchmarks/bench_chunk_attention.py

- ``masked``: one SDPA call with the bottom-right causal mask (the harness before issue 5's fix);
- ``merged``: :func:`calibration.harness.model.chunk_attention` (cached prefix unmasked + chunk
  causal, merged by log-sum-exp), what the harness runs now;
- ``pairs``: the two parts timed alone, what the pairs alone cost.
At offset 0 all three are one causal call.
"""

from __future__ import annotations

import time


def _median_ms(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2] * 1e3


def main() -> None:
    import torch
    import torch.nn.functional as F
    from torch.nn.attention.bias import causal_lower_right

    from calibration.harness.model import chunk_attention

    torch.manual_seed(0)
    nh, nkv, d = 32, 8, 64
    print("chunk | offset | masked ms | merged ms | pairs ms")
    print("----- | ------ | --------- | --------- | --------")
    for c, off in ((2048, 0), (2048, 512), (1024, 1024), (512, 4096), (256, 2048)):
        end = c + off
        q, k, v = torch.randn(1, nh, c, d), torch.randn(1, nkv, end, d), torch.randn(1, nkv, end, d)
        masked = _median_ms(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(c, end),
                                                                    enable_gqa=True))
        merged = _median_ms(lambda: chunk_attention(q, k, v, off))
        own = _median_ms(lambda: F.scaled_dot_product_attention(q, k[:, :, off:], v[:, :, off:], is_causal=True,
                                                                 enable_gqa=True))
        prefix = _median_ms(lambda: F.scaled_dot_product_attention(q, k[:, :, :off], v[:, :, :off],
                                                                    enable_gqa=True)) if off else 0.0
        print(f"{c} | {off} | {masked:.1f} | {merged:.1f} | {own + prefix:.1f}")


if __name__ == "__main__":
    main()
