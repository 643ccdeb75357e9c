"""Typed spec of the workload part of a scenario: arrivals, request classes, sessions and prefixes.

A workload is a mixture of request classes (chat, RAG, code, batch summarisation, ...), each with
its share of arrivals, its length distributions, priority and SLOs, and optionally multi-turn
sessions and a shared system prompt; plus an arrival process and a stop rule (a number of
requests or a duration). ``preset`` starts from a named workload fitted to a real trace
(:mod:`workloads.presets`) and lets any key be overridden.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, field_validator, model_validator

from workloads.arrivals import ArrivalSpec, ClosedLoopArrivals, ThinkTime, TraceArrivals
from workloads.fitted_presets import preset_data
from workloads.lengths import LengthSpec, TraceLength
from workloads.limits import BYTES_PER_ARRIVAL_DRAWN, BYTES_PER_REQUEST, BYTES_PER_VISIT, MAX_VARIANTS, check_requests

__all__ = ["ClassSpec", "SLOSpec", "SessionSpec", "SystemPromptSpec", "WorkloadSpec"]

_Strict = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SLOSpec(BaseModel):
    """Latency targets a request of the class must meet to count towards goodput (all optional: a
    class with none counts every completed request as meeting its SLOs)."""

    model_config = _Strict
    ttft_s: StrictFloat | None = Field(None, gt=0, description="seconds: max time to first token")
    tpot_s: StrictFloat | None = Field(None, gt=0, description="seconds: max time per output token after the first")
    e2e_s: StrictFloat | None = Field(None, gt=0, description="seconds: max end-to-end latency")


class SessionSpec(BaseModel):
    """Multi-turn conversations: each arrival of the class starts a conversation of ``turns``
    requests. Turn k re-sends the whole history (every earlier prompt and response) plus a new
    user message drawn from the class's ``prompt_tokens``; it is sent ``think_time`` after the
    response to turn k-1 ends. A conversation ends early rather than outgrow the model's context."""

    model_config = _Strict
    turns: LengthSpec = Field(description="turns per conversation (a length distribution, >= 1), e.g. "
                              "{dist: uniform, low: 1, high: 8}")
    think_time: ThinkTime = Field(ThinkTime(mean_s=30.0), description="wait between the response to one turn and "
                                  "the next turn (default: exponential, mean 30 s)")


class SystemPromptSpec(BaseModel):
    """A shared system prompt at the start of every request of the class: ``variants`` distinct
    prompts (each with a length drawn once from ``tokens``), picked per conversation uniformly or
    by a Zipf law. Requests sharing a variant share its prefix (prefix caching can reuse it)."""

    model_config = _Strict
    tokens: LengthSpec = Field(description="length of each variant, tokens (a length distribution, drawn once per "
                               "variant)")
    variants: StrictInt = Field(1, ge=1, le=MAX_VARIANTS, description="distinct system prompts "
                                "(at most 10^7: each one's length is drawn up front)")
    popularity: Literal["uniform", "zipf"] = Field("uniform", description="how a conversation picks its variant: "
                                                   "uniformly, or by a Zipf law of zipf_exponent")
    zipf_exponent: StrictFloat = Field(1.0, gt=0, description="variant i is picked with weight 1/(i+1)^exponent")


class ClassSpec(BaseModel):
    """One kind of request in the mixture: its share, lengths, priority and SLOs."""

    model_config = _Strict
    name: str = Field(min_length=1, description="class label (column class in the outputs); unique in the workload")
    share: StrictFloat = Field(1.0, gt=0, description="relative weight of arrivals in the mixture (shares are "
                               "normalised)")
    priority: StrictInt = Field(0, description="lower is served first: in the waiting queues, the central queue and "
                                "the choice of preemption victim")
    prompt_tokens: LengthSpec | None = Field(
        None, description="prompt length (a length distribution): after the system prompt if there is one; the new "
        "user message of each turn with sessions. Required unless a trace is replayed with lengths: trace")
    output_tokens: LengthSpec | None = Field(None, description="output length (a length distribution). Required "
                                             "unless a trace is replayed with lengths: trace")
    length_correlation: StrictFloat = Field(0.0, ge=-1, le=1, description="correlation of prompt and output length "
                                      "(Gaussian copula: the correlation of their normal scores; Spearman's rho is "
                                      "(6/π)·asin(rho/2))")
    sessions: SessionSpec | None = Field(None, description="multi-turn conversations: each arrival of the class "
                                         "starts one (unset: single requests)")
    system_prompt: SystemPromptSpec | None = Field(None, description="a shared prefix at the start of every request "
                                                   "of the class (unset: none)")
    slo: SLOSpec = Field(SLOSpec(), description="latency targets for goodput and SLO attainment (unset: none)")

    @property
    def prompt_upper_bound(self) -> int | None:
        """The longest prompt this class can send, or None when only the context limits it."""
        if self.sessions is not None or self.prompt_tokens is None:
            return None
        b = self.prompt_tokens.upper_bound
        if b is None or self.system_prompt is None:
            return b
        s = self.system_prompt.tokens.upper_bound
        return None if s is None else b + s


class WorkloadSpec(BaseModel):
    """How much traffic of which kinds arrives, and when."""

    model_config = _Strict
    preset: str | None = Field(None, description="start from a workload fitted to a real trace (`capsim workload "
                               "presets`); every other key overrides it")
    arrival: ArrivalSpec = Field(description="when requests (or conversations) start; process picks one (poisson "
                                 "when left out)")
    classes: tuple[ClassSpec, ...] = Field(
        (ClassSpec(name="trace"),), min_length=1,
        description="the request mixture: at least one class, names unique (a trace replayed with its own lengths "
        "needs none)")
    num_requests: StrictInt | None = Field(None, gt=0, description="stop generating after this many requests; give "
                                           "exactly one of num_requests and duration_s (a closed loop needs "
                                           "num_requests)")
    duration_s: StrictFloat | None = Field(None, gt=0, description="seconds: stop generating arrivals at this time; "
                                           "give exactly one of num_requests and duration_s")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") is not None:
            return _merge(preset_data(data["preset"]), data)
        return data

    @field_validator("classes")
    @classmethod
    def _unique_names(cls, v: tuple[ClassSpec, ...]) -> tuple[ClassSpec, ...]:
        names = [c.name for c in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"class name {dup[0]!r} is used twice: class names must be unique")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> WorkloadSpec:
        if (self.num_requests is None) == (self.duration_s is None):
            raise ValueError("give exactly one of num_requests or duration_s")
        if isinstance(self.arrival, ClosedLoopArrivals) and self.num_requests is None:
            raise ValueError("a closed loop needs num_requests (the engine decides when each request is sent); "
                             "to stop at a time, also set measurement.horizon_s")
        from_trace = isinstance(self.arrival, TraceArrivals) and self.arrival.lengths == "trace"
        for i, c in enumerate(self.classes):
            if from_trace:
                if c.sessions is not None or c.system_prompt is not None:
                    raise ValueError(f"classes[{i}] ({c.name!r}) has sessions or a system prompt, but the trace "
                                     "replay takes lengths from the trace: set arrival.lengths = 'classes'")
            elif c.prompt_tokens is None or c.output_tokens is None:
                raise ValueError(f"classes[{i}] ({c.name!r}) needs prompt_tokens and output_tokens (only a trace "
                                 "replayed with lengths: trace goes without)")
        self._check_size()
        return self

    def _check_size(self) -> None:
        """Refuse a workload expected to yield no request, or more than this machine could
        simulate (see :mod:`workloads.limits`), before anything is drawn."""
        if self.num_requests is not None:
            starts: float = self.num_requests
            what = f"num_requests = {self.num_requests}"
        else:
            assert self.duration_s is not None
            expect = getattr(self.arrival, "expected_count", None)
            if expect is None:  # a trace: its count is known once the file is read (see TraceArrivals.replay)
                return
            starts = expect(self.duration_s)
            what = f"duration_s = {self.duration_s:g} {self.arrival.rate_text}"  # type: ignore[union-attr]
            if not starts >= 1:
                raise ValueError(f"{what} expects {starts:.2g} requests: a workload needs at least one; raise the "
                                 "rate or duration_s")
            what += f" means ~{starts:.3g} requests"
        turns, longest = self._mean_turns()
        if turns > 1:
            i, t = longest
            what += (f" with classes[{i}] ({self.classes[i].name!r}) holding ~{t:.3g} turns per conversation "
                     f"means ~{starts * turns:.3g} requests drawn")
        extra, advice = 0.0, None
        first_block = getattr(self.arrival, "first_block", None)
        if first_block is not None:  # an MMPP: its first block of regime visits is drawn at once
            visits, drawn = first_block(self.num_requests, self.duration_s)
            extra = visits * BYTES_PER_VISIT + drawn * BYTES_PER_ARRIVAL_DRAWN
            if extra > starts * turns * BYTES_PER_REQUEST:
                what += f", drawn as ~{visits:.3g} regime visits with ~{drawn:.3g} arrivals at once"
                advice = ("give the states mean_duration_s values that fit the run (many short visits, or long ones "
                          "at a high rate, are drawn whole)")
        check_requests(starts * turns, what, extra, advice)

    def _mean_turns(self) -> tuple[float, tuple[int, float]]:
        """(requests per conversation start averaged over the classes by share, (index, mean turns)
        of the class with the longest conversations). Whole conversations are drawn before a
        ``num_requests`` count is cut, so memory goes with starts times this."""
        total = sum(c.share for c in self.classes)
        mean, longest = 0.0, (0, 1.0)
        for i, c in enumerate(self.classes):
            t = 1.0
            if c.sessions is not None and not isinstance(c.sessions.turns, TraceLength):
                t = c.sessions.turns.mean_estimate()
            mean += c.share / total * t
            if t > longest[1]:
                longest = (i, t)
        return mean, longest

    @property
    def mean_rate_per_s(self) -> float | None:
        """Mean arrivals (conversation starts, for session classes) per second; None for a closed loop."""
        return getattr(self.arrival, "mean_rate_per_s", None)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: mappings merge key by key, anything else replaces. An arrival
    naming another ``process`` replaces the whole arrival (its keys belong to another process);
    one naming none keeps the preset's process and overrides its keys; ``rate_per_s`` given there
    replaces the preset's ``rate_profile`` (and the other way round)."""
    out = dict(base)
    for k, v in over.items():
        b = base.get(k)
        same_kind = not (k == "arrival" and isinstance(v, dict) and isinstance(b, dict) and "process" in v
                         and v["process"] != b.get("process", "poisson"))
        out[k] = _merge(b, v) if isinstance(v, dict) and isinstance(b, dict) and same_kind else v
        if k == "arrival" and isinstance(v, dict) and isinstance(out[k], dict):
            # A rate given replaces the other way of giving one (a constant rate over a profile).
            for given, other in (("rate_per_s", "rate_profile"), ("rate_profile", "rate_per_s")):
                if v.get(given) is not None and other not in v:
                    out[k].pop(other, None)
    return out
