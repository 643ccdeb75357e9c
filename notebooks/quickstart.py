"""The default scenario with a few overrides, done in Python instead of with ``capsim run --set``.

    python notebooks/quickstart.py

is the same what-if as

    capsim run --set workload.duration_s=120 --set workload.arrival.rate_per_s=16 \
               --set measurement.warmup_s=20 --no-write
"""

from __future__ import annotations

from sim import default_scenario, load_scenario, simulate


def main() -> None:
    data = default_scenario().to_dict()  # plain dicts and lists: edit freely, then validate
    data["workload"]["duration_s"] = 120  # shorter than the default's 240 s
    data["workload"]["arrival"]["rate_per_s"] = 16
    data["measurement"]["warmup_s"] = 20
    scenario = load_scenario(data)  # raises ScenarioError naming key, value and rule

    result = simulate(scenario)
    s = result.summary
    ttft_p99 = s["latency_s"]["ttft"]["p99"]
    print(f"{s['scenario']}: {s['requests']['completed']} of {s['requests']['arrived']} requests completed "
          f"({s['profile']['kind']} profile)")
    print(f"measured window: {s['window']['start_s']:.0f}-{s['window']['end_s']:.0f} s")
    print(f"p99 TTFT: {ttft_p99 * 1e3:.1f} ms")
    print(f"goodput: {s['goodput_requests_per_s']:.2f} requests/s meeting every SLO "
          f"(of {s['throughput']['requests_per_s']:.2f} completed requests/s)")


if __name__ == "__main__":
    main()
