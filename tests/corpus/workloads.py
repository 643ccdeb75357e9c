"""Bad ``workload:`` sections of a scenario, run as ``capsim run s.yaml --no-write -q``.

Every case is a whole scenario file whose only fault is in its ``workload:`` mapping; the profile
is an explicit one so that validation stays cheap. Each expected pattern names the key, the value
and the rule (or, for a size, what it would cost).
"""

from __future__ import annotations

from tests.corpus import Accepted, BadInput

__all__ = ["ACCEPTED", "CASES"]

_PROFILE = "profile: {kind: explicit, fixed_s: 0.01, per_token_s: 1.0e-5, kv_capacity_tokens: 4096}\n"
_CLASS = "[{name: a, prompt_tokens: {dist: fixed, value: 100}, output_tokens: {dist: fixed, value: 10}}]"
_ARGV = ("run", "s.yaml", "--no-write", "-q")


def _scenario(workload: str) -> str:
    """A scenario whose ``workload:`` is the given YAML flow mapping (or any YAML text)."""
    return _PROFILE + "workload: " + workload + "\n"


def _wl(arrival: str = "{rate_per_s: 5}", stop: str = "num_requests: 20", classes: str = _CLASS,
        extra: str = "") -> str:
    """A workload mapping from its parts, in flow style."""
    parts = [f"arrival: {arrival}", stop, f"classes: {classes}"] + ([extra] if extra else [])
    return "{" + ", ".join(p for p in parts if p) + "}"


def _cls(**keys: str) -> str:
    """One class: the default fixed lengths with some keys replaced (values are YAML text)."""
    base = {"name": "a", "prompt_tokens": "{dist: fixed, value: 100}", "output_tokens": "{dist: fixed, value: 10}"}
    base.update(keys)
    return "[{" + ", ".join(f"{k}: {v}" for k, v in base.items()) + "}]"


def _case(id: str, expect: str, **parts: str) -> BadInput:
    return BadInput(f"workloads-{id}", _ARGV, expect, {"s.yaml": _scenario(_wl(**parts))})


CASES: list[BadInput] = [
    # --- type coercions: a bool or a string is never a number --------------------------------
    _case("rate-bool", r"workload\.arrival\.rate_per_s = True: must be a valid number", arrival="{rate_per_s: true}"),
    _case("rate-string", r"workload\.arrival\.rate_per_s = '20': must be a valid number",
          arrival="{rate_per_s: '20'}"),
    _case("num-requests-float", r"workload\.num_requests = 10\.5: must be a valid integer", stop="num_requests: 10.5"),
    _case("num-requests-bool", r"workload\.num_requests = True: must be a valid integer", stop="num_requests: true"),
    _case("num-requests-yaml-1e12", r"workload\.num_requests = '1e12': must be a valid integer",
          stop="num_requests: 1e12"),
    _case("duration-string", r"workload\.duration_s = '60': must be a valid number", stop="duration_s: '60'"),
    _case("gamma-cv-string", r"workload\.arrival\.cv = '2': must be a valid number",
          arrival="{process: gamma, cv: '2', rate_per_s: 5}"),
    _case("share-bool", r"workload\.classes\[0\]\.share = True: must be a valid number", classes=_cls(share="true")),
    _case("priority-float", r"workload\.classes\[0\]\.priority = 1\.5: must be a valid integer",
          classes=_cls(priority="1.5")),
    _case("length-value-string", r"prompt_tokens\.value = '100': must be a valid integer",
          classes=_cls(prompt_tokens="{dist: fixed, value: '100'}")),
    _case("lognormal-mean-string", r"prompt_tokens\.mean = '100': must be a valid number",
          classes=_cls(prompt_tokens="{dist: lognormal, mean: '100', p99: 400}")),
    _case("think-time-bool", r"workload\.arrival\.think_time\.mean_s = True: must be a valid number",
          arrival="{process: closed_loop, users: 2, think_time: {mean_s: true}}"),
    _case("loop-string", r"workload\.arrival\.loop = 'yes': must be a valid boolean",
          arrival="{process: trace, path: t.csv, loop: 'yes'}"),
    # --- absurd sizes: refused in validation with what they would cost --------------------------
    _case("duration-1e12", r"workload\.duration_s = 1e\+12 at 1 requests/s means ~1e\+12 requests, which would "
                           r"need ~931 TiB of memory to simulate \(about 1024 bytes per request\) but this machine has",
          arrival="{rate_per_s: 1}", stop="duration_s: 1.0e+12"),
    _case("duration-yaml-text", r"workload\.duration_s = '1\.0e12': must be a valid number", stop="duration_s: 1.0e12"),
    _case("num-requests-1e12", r"workload\.num_requests = 1000000000000, which would need ~931 TiB of memory",
          stop="num_requests: 1000000000000"),
    _case("rate-1e308", r"workload\.arrival\.rate_per_s = 1e\+308: must be less than or equal to 1000000000",
          arrival="{rate_per_s: 1.0e+308}"),
    _case("rate-1e308-long", r"workload\.arrival\.rate_per_s = 1e\+308: must be less than or equal to 1000000000",
          arrival="{rate_per_s: 1.0e+308}", stop="duration_s: 60"),
    _case("profile-rate-1e308", r"rates_per_s\[1\] = 1e\+308: must be less than or equal to 1000000000",
          arrival="{rate_profile: {shape: steps, times_s: [0, 10], rates_per_s: [1, 1.0e+308]}}"),
    _case("mmpp-rate-1e308", r"states\[1\]\.rate_per_s = 1e\+308: must be less than or equal to 1000000000",
          arrival="{process: mmpp, states: [{rate_per_s: 1, mean_duration_s: 1}, "
                  "{rate_per_s: 1.0e+308, mean_duration_s: 1}]}"),
    _case("mmpp-duration-huge", r"workload\.duration_s = 1e\+15 at a mean 2 requests/s means ~2e\+15 requests, "
                                r"which would need ~2,132 PiB",
          arrival="{process: mmpp, states: [{rate_per_s: 1, mean_duration_s: 1}, {rate_per_s: 3, mean_duration_s: 1}]}",
          stop="duration_s: 1.0e+15"),
    _case("profile-duration-huge", r"workload\.duration_s = 1e\+12 under its rate_profile means ~2e\+12 requests, "
                                   r"which would need",
          arrival="{rate_profile: {shape: steps, times_s: [0, 10], rates_per_s: [1, 2]}}", stop="duration_s: 1.0e+12"),
    _case("mmpp-short-visits", r"workload\.num_requests = 20, drawn as ~2\.67e\+10 regime visits with ~80 arrivals at "
                               r"once, which would need ~993 GiB of memory .*: give the states mean_duration_s values",
          arrival="{process: mmpp, states: [{rate_per_s: 5, mean_duration_s: 1.0e-9}, "
                  "{rate_per_s: 1, mean_duration_s: 1.0e-9}]}"),
    _case("mmpp-long-busy-visit", r"drawn as ~16 regime visits with ~8e\+18 arrivals at once",
          arrival="{process: mmpp, states: [{rate_per_s: 1.0e+9, mean_duration_s: 1.0e+9}, "
                  "{rate_per_s: 0, mean_duration_s: 1}]}"),
    _case("ramp-instant", r"rate_profile\.over_s = 1e-320: must be greater than or equal to 0\.000001",
          arrival="{rate_profile: {shape: ramp, from_rate_per_s: 0, to_rate_per_s: 5, over_s: 1.0e-320}}"),
    _case("table-instant-piece", r"times_s\[2\] = 10 is 1e-09 s after the time before it: pieces must last at least "
                                 r"1e-06 s",
          arrival="{rate_profile: {shape: table, times_s: [0, 9.999999999, 10], rates_per_s: [1, 5, 1]}}"),
    _case("diurnal-period-tiny", r"rate_profile\.period_s = 1e-300: must be greater than or equal to 0\.01",
          arrival="{rate_profile: {shape: diurnal, mean_rate_per_s: 5, peak_to_trough: 2, period_s: 1.0e-300}}"),
    _case("closed-loop-users-1e12", r"workload\.arrival\.users = 1000000000000: must be less than or equal to 10000000",
          arrival="{process: closed_loop, users: 1000000000000}"),
    _case("session-turns-huge", r"workload\.num_requests = 1000 with classes\[0\] \('a'\) holding ~1e\+07 turns per "
                                r"conversation means ~1e\+10 requests drawn, which would need ~9\.3 TiB",
          stop="num_requests: 1000",
          classes=_cls(sessions="{turns: {dist: fixed, value: 10000000}}")),
    _case("system-prompt-variants-huge", r"system_prompt\.variants = 1000000000000: must be less than or equal to",
          classes=_cls(system_prompt="{tokens: {dist: fixed, value: 10}, variants: 1000000000000}")),
    _case("length-1e15", r"prompt_tokens\.value = 1000000000000000: must be less than or equal to 10000000",
          classes=_cls(prompt_tokens="{dist: fixed, value: 1000000000000000}")),
    _case("output-max-1e15", r"output_tokens\.max = 1000000000000000: must be less than or equal to 10000000",
          classes=_cls(output_tokens="{dist: exponential, mean: 10, max: 1000000000000000}")),
    # --- workloads that yield no requests ------------------------------------------------------
    _case("zero-expected", r"workload\.duration_s = 5 at 1e-09 requests/s expects 5e-09 requests: a workload "
                           r"needs at least one; raise the rate or duration_s",
          arrival="{rate_per_s: 1.0e-9}", stop="duration_s: 5"),
    _case("duration-denormal", r"workload\.duration_s = 4\.94066e-324 at 5 requests/s expects 2\.5e-323 requests: a "
                               r"workload needs at least one",
          stop="duration_s: 5.0e-324"),
    _case("profile-ends-at-zero", r"the rate profile ends at 0 requests/s after 10 expected arrivals: ask for fewer "
                                  r"requests",
          arrival="{rate_profile: {shape: steps, times_s: [0, 10], rates_per_s: [1, 0]}}", stop="num_requests: 50"),
    _case("mmpp-all-zero", r"workload\.arrival: every MMPP state has rate_per_s 0",
          arrival="{process: mmpp, states: [{rate_per_s: 0, mean_duration_s: 1}, "
                  "{rate_per_s: 0, mean_duration_s: 2}]}"),
    # --- stop rule ------------------------------------------------------------------------------
    _case("num-requests-zero", r"workload\.num_requests = 0: must be greater than 0", stop="num_requests: 0"),
    _case("num-requests-negative", r"workload\.num_requests = -5: must be greater than 0", stop="num_requests: -5"),
    _case("duration-nan", r"workload\.duration_s = nan: must be a finite number", stop="duration_s: .nan"),
    _case("duration-inf", r"workload\.duration_s = inf: must be a finite number", stop="duration_s: .inf"),
    _case("both-stops", r"workload: give exactly one of num_requests or duration_s",
          stop="num_requests: 5, duration_s: 10"),
    _case("no-stop", r"workload: give exactly one of num_requests or duration_s", stop=""),
    _case("closed-loop-duration", r"workload: a closed loop needs num_requests",
          arrival="{process: closed_loop, users: 2}", stop="duration_s: 10"),
    # --- arrival processes ----------------------------------------------------------------------
    _case("process-typo", r"workload\.arrival\.process = 'posson': must be one of .*did you mean 'poisson'",
          arrival="{process: posson, rate_per_s: 5}"),
    _case("no-rate", r"workload\.arrival: give exactly one of rate_per_s or rate_profile",
          arrival="{process: poisson}"),
    _case("gamma-cv-zero", r"workload\.arrival\.cv = 0: must be greater than 0",
          arrival="{process: gamma, cv: 0, rate_per_s: 5}"),
    _case("weibull-cv-high", r"workload\.arrival\.cv = 50: must be less than or equal to 20",
          arrival="{process: weibull, cv: 50, rate_per_s: 5}"),
    _case("mmpp-one-state", r"workload\.arrival\.states = .*: Tuple should have at least 2 items",
          arrival="{process: mmpp, states: [{rate_per_s: 1, mean_duration_s: 1}]}"),
    _case("steps-not-from-zero", r"times_s must start at 0 and increase strictly",
          arrival="{rate_profile: {shape: steps, times_s: [5, 10], rates_per_s: [1, 2]}}"),
    _case("diurnal-ratio", r"rate_profile\.peak_to_trough = 0\.5: must be greater than or equal to 1",
          arrival="{rate_profile: {shape: diurnal, mean_rate_per_s: 2, peak_to_trough: 0.5}}"),
    _case("closed-loop-users-zero", r"workload\.arrival\.users = 0: must be greater than or equal to 1",
          arrival="{process: closed_loop, users: 0}"),
    _case("trace-speed-both", r"workload\.arrival: give at most one of speedup or rate_per_s",
          arrival="{process: trace, path: t.csv, speedup: 2, rate_per_s: 3}"),
    # --- classes and lengths --------------------------------------------------------------------
    _case("classes-empty", r"workload\.classes = \[\]: Tuple should have at least 1 item", classes="[]"),
    _case("share-negative", r"workload\.classes\[0\]\.share = -1: must be greater than 0", classes=_cls(share="-1")),
    _case("duplicate-class", r"class name 'a' is used twice",
          classes="[{name: a, prompt_tokens: {dist: fixed, value: 1}, output_tokens: {dist: fixed, value: 1}}, "
                  "{name: a, prompt_tokens: {dist: fixed, value: 1}, output_tokens: {dist: fixed, value: 1}}]"),
    _case("no-lengths", r"classes\[0\] \('a'\) needs prompt_tokens and output_tokens", classes="[{name: a}]"),
    _case("fixed-zero", r"prompt_tokens\.value = 0: must be greater than or equal to 1",
          classes=_cls(prompt_tokens="{dist: fixed, value: 0}")),
    _case("uniform-reversed", r"prompt_tokens\.high = 5 is below low = 50: high must be >= low",
          classes=_cls(prompt_tokens="{dist: uniform, low: 50, high: 5}")),
    _case("lognormal-p99-low", r"p99 = 50 is not above mean = 100",
          classes=_cls(prompt_tokens="{dist: lognormal, mean: 100, p99: 50}")),
    _case("normal-std-negative", r"prompt_tokens\.std = -1: must be greater than or equal to 0",
          classes=_cls(prompt_tokens="{dist: normal, mean: 100, std: -1}")),
    _case("histogram-edges", r"edges must start at >= 1 and increase strictly",
          classes=_cls(prompt_tokens="{dist: histogram, edges: [10, 5, 20], counts: [1, 1]}")),
    _case("quantiles-probs", r"probs must increase strictly from 0 to 1",
          classes=_cls(prompt_tokens="{dist: quantiles, probs: [0.1, 1], values: [1, 10]}")),
    _case("correlation-2", r"length_correlation = 2: must be less than or equal to 1",
          classes=_cls(length_correlation="2")),
    _case("turns-zero", r"sessions\.turns\.value = 0: must be greater than or equal to 1",
          classes=_cls(sessions="{turns: {dist: fixed, value: 0}}")),
    _case("slo-negative", r"slo\.ttft_s = -1: must be greater than 0", classes=_cls(slo="{ttft_s: -1}")),
    _case("unknown-key", r"workload\.arrival\.rate: unknown key; allowed keys in workload\.arrival: process, "
                         r"rate_per_s",
          arrival="{rate: 5}"),
    _case("unknown-preset", r"unknown preset 'azure-cod-2023'", arrival="{rate_per_s: 5}",
          extra="preset: azure-cod-2023"),
    BadInput("workloads-not-a-mapping", _ARGV,
             r"workload = \[1, 2\]: must be a mapping of keys",
             {"s.yaml": _scenario("[1, 2]")}),
    BadInput("workloads-file-missing", _ARGV, r"workload = 'w\.yaml': .*w\.yaml: no such workload file",
             {"s.yaml": _scenario("w.yaml")}),
]

ACCEPTED: list[Accepted] = []
