"""The summary of a run as a typed, documented structure: what ``SimResult.summary`` holds and
``summary.json`` contains.

At run time the summary is a plain ``dict`` (it is written with ``json.dumps`` as it is, so
``summary.json`` keeps its keys in the order :mod:`sim.results.records` builds them); these
:class:`~typing.TypedDict` classes say which keys it has, what type each value is and what it
means, for readers, notebooks and type checkers. Every key always exists (``total=True``); a
value that may be missing is ``None`` (``null`` in JSON), never an absent key. The one block with
two shapes is ``cost``: :class:`CloudCost` or :class:`OwnedCost`, told apart by ``model``.

Units are in the names: ``_s`` seconds of simulated time, ``_per_s`` per simulated second,
``usd`` US dollars, ``gpu_s`` GPU-seconds, ``kwh`` kilowatt-hours. "The window" is the
measurement window (:class:`Window`); the rules behind every figure are in ``docs/metrics.md``
and ``docs/cost-and-curves.md``. ``tests/test_summary_types.py`` checks that the summaries of
varied runs have exactly these keys, recursively, with values of these types.
"""

from __future__ import annotations

from typing import Literal, TypedDict

from calibration.profile import ProvenanceKind

__all__ = ["Benchmark", "BusyFraction", "ClassSummary", "ClientStats", "CloudCost", "Cost", "EngineEcho", "Latencies",
           "LatencyStats", "Load", "OwnedCost", "Power", "ProfileProvenance", "RequestCounts", "Summary", "Throughput",
           "Utilisation", "Waste", "WasteGpuSeconds", "WasteReferenceBlock", "WasteShares", "WasteWindows", "Window",
           "Windows"]


class ProfileProvenance(TypedDict):
    """Where the step-time profile that priced every iteration came from."""

    # "measured" (fitted to timings of this configuration), "derived-from-measured" (fitted to
    # serving benchmarks, or to timings of related shapes or precisions), "derived" (datasheet
    # roofline) or "explicit" (coefficients written in the scenario).
    kind: ProvenanceKind
    # Which kind of profile priced the run: "roofline", "measured", "engine" (a serving engine's
    # efficiencies fitted over its benchmarks: calibration/data/engine_profiles.toml) or "explicit";
    # runs compared with each other should share it.
    family: str
    # The serving engine whose fitted profile priced the run (family "engine"); "" for other families.
    engine: str
    # Which measurements or datasheet and model config it came from, and what the scenario
    # overrode; a profile labelled a poor fit starts with "warning:".
    source: str
    # Every figure and efficiency factor the profile used, by name (TFLOP/s, TB/s, coefficients...).
    assumptions: dict[str, float | int | str]


class EngineEcho(TypedDict):
    """Which serving engine the run modelled (the scenario's ``engine`` section, in words)."""

    preset: str  # engine.preset (e.g. "tensorrt-llm-0.17"), or "none": capsim's own defaults, vLLM-like
    scheduler: Literal["continuous", "prefill_first", "static"]  # engine.scheduler
    admission: Literal["recompute", "reserve"]  # engine.admission: preemption by recompute, or whole sequences reserved


class Window(TypedDict):
    """The measurement window: warm-up before it and drain after it are excluded."""

    start_s: float  # measurement.warmup_s (0 when the warm-up reaches past the last arrival)
    end_s: float  # the earlier of the last arrival and the end of the run (the end of the run when start_s is 0 above)
    duration_s: float  # end_s - start_s (at least 1e-12): every rate below is per second of it
    note: str  # what the window includes, in words


class RequestCounts(TypedDict):
    """How many requests did what, over the whole run (``measured``: inside the window)."""

    arrived: int  # arrived before the run ended; = completed + rejected + in_flight
    not_arrived: int  # due after measurement.horizon_s (0 without a horizon)
    completed: int  # finished their last token
    rejected: int  # refused on arrival (they can never be served; see rejected_by_reason)
    in_flight: int  # arrived but unfinished when the run stopped at measurement.horizon_s
    rejected_by_reason: dict[str, int]  # reason (sim.engine.REJECT_REASONS) -> count, in order of first occurrence
    measured: int  # completed requests that arrived inside the window: the latency statistics' sample
    preemptions: int  # recompute preemptions over the whole run


class LatencyStats(TypedDict):
    """Mean and percentiles of one latency, in seconds; ``None`` when the sample is empty."""

    count: int  # values in the sample (for itl: inter-token gaps)
    mean: float | None  # plain mean (for itl: weighted by each gap's multiplicity)
    p50: float | None  # 50th percentile (numpy linear interpolation; itl: inverted CDF)
    p90: float | None  # 90th percentile
    p95: float | None  # 95th percentile
    p99: float | None  # 99th percentile


class Latencies(TypedDict):
    """Latency statistics over the measured requests (``itl``: over gaps ending in the window)."""

    ttft: LatencyStats  # arrival -> first output token
    tpot: LatencyStats  # (e2e - ttft) / (output_tokens - 1), requests with more than one output token
    itl: LatencyStats  # gaps between consecutive output tokens of a request, pooled
    e2e: LatencyStats  # arrival -> last token
    queue: LatencyStats  # arrival -> first admitted into a batch (central queue included)


class Throughput(TypedDict):
    """Production per second of the window."""

    output_tokens_per_s: float  # output tokens emitted by iterations that ended in the window
    total_tokens_per_s: float  # prompt + output tokens of the requests completed in the window
    input_tokens_per_s: float  # prompt tokens of the requests completed in the window
    good_output_tokens_per_s: float  # output tokens of those that met every SLO of their class
    requests_per_s: float  # requests completed in the window


class BusyFraction(TypedDict):
    """Share of the window each replica spends running an iteration, however full its batch."""

    mean: float  # average over replicas
    per_replica: list[float]  # one per replica, in replica order


class Utilisation(TypedDict):
    """The headroom the busy fraction hides: time-averaged over the window (idle time counts as
    zero), mean over replicas."""

    kv_cache: float  # share of the KV-cache blocks in use
    batch_slots: float  # share of engine.max_num_seqs running
    mfu: float | None  # step model's FLOPs per GPU / datasheet peak FLOP/s at the matmul precision (None: explicit)
    mbu: float | None  # step model's HBM bytes per GPU / datasheet HBM bandwidth (None: explicit profile)
    note: str  # the definitions above, in words


class Load(TypedDict):
    """Whether the offered load outran the configuration over the window."""

    overloaded: bool  # verdict == "overloaded"
    verdict: Literal["stable", "overloaded", "undetermined"]  # see rule; undetermined: too short a run to tell
    arrival_rate_per_s: float  # requests that arrived in the window, per second
    departure_rate_per_s: float  # requests that left the system (completed or refused) over the window, per second
    backlog_at_start: int  # requests arrived and not done at the window's start
    backlog_at_end: int  # ... and at its end
    backlog_growth_per_s: float  # (backlog_at_end - backlog_at_start) / window
    waiting_at_start: int  # requests arrived and not yet scheduled (the admission queue) at the window's start
    waiting_at_end: int  # ... and at its end
    rule: str  # the overload rule, in words


class ClassSummary(TypedDict):
    """One workload class's statistics over its measured requests."""

    completed: int  # measured requests of the class (completed, arrived in the window)
    ttft: LatencyStats  # as in Latencies
    tpot: LatencyStats
    e2e: LatencyStats
    slo_attainment: float | None  # share of them meeting every SLO of the class; None when none
    goodput_requests_per_s: float  # completed in the window meeting every SLO, per second


class ClientStats(TypedDict):
    """Mean and percentiles of one per-request metric as a benchmark client computes them, in
    seconds; ``None`` when there is nothing to compute them from."""

    mean: float | None  # plain mean (itl: over every gap, from per-request sums)
    p50: float | None  # 50th percentile, numpy's linear interpolation
    p90: float | None  # 90th percentile
    p99: float | None  # 99th percentile


class Benchmark(TypedDict):
    """The run as a serving benchmark's client reports it (vLLM's ``benchmark_serving`` definitions,
    :mod:`sim.results.benchmark`): no window, from the first arrival to the last token of a
    completed request, completed requests only. ``None`` where no request completed."""

    duration_s: float | None  # first arrival -> last token of a completed request
    completed: int  # requests completed (all of the run, warm-up included)
    input_tokens: int  # their prompt tokens
    output_tokens: int  # their output tokens
    requests_per_s: float | None  # completed / duration_s
    input_tokens_per_s: float | None  # input_tokens / duration_s
    output_tokens_per_s: float | None  # output_tokens / duration_s
    ttft_s: ClientStats  # arrival -> first token, per completed request
    tpot_s: ClientStats  # (e2e - ttft) / (output_tokens - 1), per completed request with output_tokens > 1
    itl_s: ClientStats  # gaps between consecutive tokens of completed requests, pooled (see note)
    note: str  # what it covers, in words, and where it is approximate


class Windows(TypedDict):
    """The window cut into ``cost.window_s`` pieces from its start (the last one shorter), with
    what the replicas did in each, summed over replicas: one list entry per piece."""

    window_s: float  # cost.window_s
    start_s: list[float]  # start of each piece
    length_s: list[float]  # its length
    busy_s: list[float]  # replica-seconds an iteration ran
    recompute_s: list[float]  # of those, seconds recomputing preempted work
    active_s: list[float] | None  # busy seconds weighted by each iteration's max(MFU, MBU); None: explicit profile
    output_tokens: list[int]  # output tokens emitted by iterations that ended in the piece
    arrivals: list[int]  # requests that arrived in the piece


class Power(TypedDict):
    """The power model's figures, per GPU."""

    idle_w: float  # W with nothing running (catalog, or cost.idle_w)
    tdp_w: float  # W at full load (catalog, or cost.tdp_w)
    pue: float  # facility energy per GPU energy (cost.pue)
    model: str  # the power model, in words


class _CostCommon(TypedDict):
    """Keys of the ``cost`` block under both cost models."""

    usd_per_gpu_hour: float | None  # price of one GPU-hour (owned: everything included; None for an empty window)
    source: str  # where the price came from
    gpus: int  # replicas x tp
    gpu_hours: float  # gpus x window: every GPU paid for, busy or not
    usd_per_hour: float | None  # total_usd per hour of window
    total_usd: float  # the bill for the window
    usd_per_request: float | None  # total_usd / requests completed in the window (None: none)
    usd_per_million_output_tokens: float | None  # total_usd / output tokens emitted in the window x 1e6
    usd_per_million_input_tokens: float | None  # over the prompt tokens of the requests completed in it
    usd_per_million_total_tokens: float | None  # over those prompt tokens + the output tokens
    usd_per_million_good_output_tokens: float | None  # over output tokens of completed requests meeting their SLOs
    energy_kwh: float | None  # at the GPUs; None for an explicit profile (no FLOPs or bytes)
    facility_energy_kwh: float | None  # energy_kwh x PUE
    wh_per_1000_output_tokens: float | None  # GPU energy per 1000 output tokens emitted in the window
    power: Power  # the power model's figures
    rule: str  # how the figures are allocated, in words


class CloudCost(_CostCommon):
    """The ``cost`` block of hardware rented per GPU-hour (``cost.model: cloud``)."""

    model: Literal["cloud"]
    pricing: Literal["on-demand", "committed", "spot"]  # cost.pricing


class OwnedCost(_CostCommon):
    """The ``cost`` block of hardware bought and run (``cost.model: owned``)."""

    model: Literal["owned"]
    amortisation_usd_per_gpu_hour: float  # (purchase + server share) / (amortisation_years x 8760 h)
    hosting_usd_per_gpu_hour: float  # hosting_usd_per_gpu_month x 12 / 8760
    energy_usd: float  # facility energy x usd_per_kwh
    amortisation_years: float  # cost.amortisation_years (4 when unset)
    usd_per_kwh: float  # cost.usd_per_kwh


Cost = CloudCost | OwnedCost


class WasteGpuSeconds(TypedDict):
    """Provisioned capacity split into its five parts (GPU-seconds or GPU-hours). The parts
    add up to ``provisioned``; ``under_filled`` and ``over_provisioned`` need a reference (a load
    curve) and are ``None`` in a single run."""

    useful: float  # turned into output tokens at the reference pace (all busy, non-recompute time without one)
    under_filled: float | None  # running, but below the reference pace
    recompute: float  # redoing work a preemption threw away
    idle: float  # no iteration running
    over_provisioned: float | None  # capacity beyond the smallest fleet meeting the SLOs at each piece's load
    provisioned: float  # replicas x tp x window


class WasteShares(TypedDict):
    """The five parts in dollars, or as shares of ``provisioned`` (``None`` where the part is)."""

    useful: float | None
    under_filled: float | None
    recompute: float | None
    idle: float | None
    over_provisioned: float | None


class WasteReferenceBlock(TypedDict):
    """What one replica sustains under the SLOs, from its load curve (:class:`sim.results.waste.WasteReference`)."""

    rate_per_s: float  # highest arrival rate meeting the SLOs
    output_tokens_per_s: float  # output tokens per second at that rate
    source: str  # where it came from


class WasteWindows(TypedDict):
    """The parts per piece of the window (the pieces of :class:`Windows`), in GPU-seconds."""

    start_s: list[float]
    length_s: list[float]
    useful_gpu_s: list[float]
    under_filled_gpu_s: list[float | None]
    recompute_gpu_s: list[float]
    idle_gpu_s: list[float]
    over_provisioned_gpu_s: list[float | None]
    replicas_needed: list[int | None]  # smallest fleet meeting the SLOs at the piece's load; None without a reference


class Waste(TypedDict):
    """Idle-capacity waste: where the provisioned GPU-seconds went (see :mod:`sim.results.waste`)."""

    gpu_s: WasteGpuSeconds  # in GPU-seconds
    gpu_hours: WasteGpuSeconds  # the same in GPU-hours
    usd: WasteShares  # total_usd in proportion to GPU-seconds
    share: WasteShares  # share of provisioned
    reference: WasteReferenceBlock | None  # None in a single run (capsim curve / compare give one)
    windows: WasteWindows  # per piece of the window
    note: str  # what was and was not computed, in words


class Summary(TypedDict):
    """Everything ``summary.json`` holds, in the order it is written."""

    scenario: str  # the scenario's name
    seed: int  # the scenario's seed
    profile: ProfileProvenance  # the step-time profile's provenance
    engine: EngineEcho  # the engine preset (or none), scheduler and admission rule the run used
    replicas: int  # engine replicas
    gpus: int  # replicas x tp
    kv_capacity_tokens_per_replica: int  # KV-cache tokens per replica, in whole blocks
    window: Window  # the measurement window every statistic describes
    requests: RequestCounts  # request counts
    latency_s: Latencies  # latency statistics, seconds
    throughput: Throughput  # production per second of the window
    goodput_requests_per_s: float  # requests completed in the window meeting every SLO of their class, per second
    slo_attainment: float | None  # share of measured requests meeting their SLOs; None when none was measured
    busy_fraction: BusyFraction  # share of the window the replicas run iterations
    utilisation: Utilisation  # KV cache, batch slots, MFU and MBU
    load: Load  # overload detection
    truncated_requests: int  # requests cut to fit the model's context when the workload was drawn
    mean_in_system: float  # time-average number of requests in the system over the window (Little's law)
    per_class: dict[str, ClassSummary]  # workload class name -> its statistics, in the scenario's order
    benchmark: Benchmark  # the run as a benchmark client reports it: first arrival to last token, no window
    simulated_s: float  # end of the run: horizon_s when work was left there, else the last iteration's end (or arrival)
    iterations: int  # engine iterations recorded, all replicas
    windows: Windows  # what the replicas did per piece of the window (cost.window_s)
    cost: Cost  # what the window cost
    waste: Waste  # where the provisioned GPU-seconds went
    warnings: list[str]  # one line per way the numbers may not mean what a reader assumes
