"""What-if on traffic shape: the same mean load, three shapes, one H100.

    python notebooks/traffic_shapes.py

Llama-3.1-8B bf16 on one H100 serves chat traffic at the Azure conversation trace's lengths
(preset ``azure-conv-2023``) at 12 requests/s, arriving three ways: Poisson, bursty (Gamma gaps
with CV 4, the same mean rate), and as 8-turn conversations that re-send their history (the same
request rate, spread over fewer, longer-lived users). The capacity question: how much does the
shape of the traffic, not its mean, move p99 time to first token?
"""

from __future__ import annotations

from sim import load_scenario, simulate

RATE = 12.0  # requests per second in every variant
SHAPES = {
    "Poisson": {"arrival": {"process": "poisson", "rate_per_s": RATE}},
    "bursty (gamma CV 4)": {"arrival": {"process": "gamma", "rate_per_s": RATE, "cv": 4.0}},
    # 4 turns per conversation on average: conversations start at RATE / 4 per second.
    "4-turn conversations": {"arrival": {"process": "poisson", "rate_per_s": RATE / 4},
                             "classes": "sessions"},
}


def scenario(shape: dict) -> dict:
    workload = {"preset": "azure-conv-2023", "duration_s": 300.0, **shape}
    if workload.get("classes") == "sessions":
        from workloads.presets import preset_data

        chat = preset_data("azure-conv-2023")["classes"][0]
        # The preset's prompt lengths become each turn's new message; history is re-sent on top.
        chat["sessions"] = {"turns": {"dist": "uniform", "low": 1, "high": 7}, "think_time": {"mean_s": 20.0}}
        workload["classes"] = [chat]
    return {"name": "traffic-shape", "workload": workload, "measurement": {"warmup_s": 60.0}}


def main() -> None:
    print(f"{'arrivals':<22} {'completed':>9} {'prompt mean':>11} {'p50 TTFT':>9} {'p99 TTFT':>9} {'tokens/s':>9}")
    for name, shape in SHAPES.items():
        result = simulate(load_scenario(scenario(shape)))
        s = result.summary
        prompt = result.requests.column("prompt_tokens").to_numpy().mean()
        ttft = s["latency_s"]["ttft"]
        print(f"{name:<22} {s['requests']['completed']:>9,} {prompt:>11,.0f} {ttft['p50'] * 1e3:>7.0f}ms "
              f"{ttft['p99'] * 1e3:>7.0f}ms {s['throughput']['output_tokens_per_s']:>9,.0f}")
    print("(same mean request rate in each row; profile: derived roofline, see docs/catalog-and-profiles.md)")


if __name__ == "__main__":
    main()
