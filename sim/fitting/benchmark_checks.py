"""What a serving benchmark row may claim: the hardware's limits and its own columns.

Run before any fitting (:func:`check_benchmarks`), so that a profile never rests on numbers no
server produced: a row faster than the hardware's peak allows (:class:`HardwareLimits`), a row
whose columns cannot all hold (a p50 above its p99, Little's law against the concurrency, ...),
and latencies that look like milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from calibration.spec import RooflineProfileSpec, build_profile
from sim.fitting.benchmark_csv import BenchmarkRow, row_error

__all__ = ["LITTLE_RANGE", "PEAK_SLACK", "HardwareLimits", "check_benchmarks", "hardware_limits"]

# The checks below (:func:`check_benchmarks`) run before any fitting. Each bound is argued where it
# is defined; together they refuse what no server could have measured, or what two columns of one
# row cannot both be, while real runs (the published tables in the shared data) stay well inside.
#
# A row may be this much faster than the hardware's peak before it is refused. The bounds assume
# 100% of datasheet peak FLOP/s and HBM bandwidth, which no kernel reaches (decode reads weights at
# about 80-90% of peak bandwidth, GEMMs run at 60-80% of peak FLOP/s), so a real run is already
# 10% or more slower than them; another 10% absorbs rounded datasheet figures and parameter counts.
PEAK_SLACK = 1.1
# For telling milliseconds from seconds: the slowest an iteration can plausibly be is all of HBM
# read plus a full token budget computed at this share of peak (the slowest GEMMs and attention
# kernels at such sizes run above 30% of peak), plus this much host time (schedulers take about
# a millisecond per iteration, a Python engine under load tens of them).
_SLOWEST_EFFICIENCY = 0.1
_HOST_SECONDS = 0.1
# Little's law for a closed loop: requests/s × mean latency = requests in flight, at most the
# users (strictly: the users' busy time cannot exceed users × duration; 1.5× allows the latency to
# be rebuilt from ttft_mean + tpot_mean × (output − 1), and an ITL counted per streamed chunk).
# Below the users only while they idle: warm-up and drain, stragglers, and an offline run with
# every request queued at once (about half); a tenth is beyond all of these.
LITTLE_RANGE = (0.1, 1.5)
# output_tokens_per_s and requests_per_s × output_tokens count the same requests over the same
# run: equal when every response has output_tokens tokens, apart by the spread of the lengths
# about their mean otherwise (the published online table: 28 against 2 × 16 = 32).
_THROUGHPUT_AGREEMENT = 1.5
# itl_mean_s and tpot_mean_s average the same gaps between tokens, per token and per request:
# equal when every response has output_tokens tokens.
_PER_TOKEN_AGREEMENT = 2.0
# A ratio of two columns in this range, where they should be about equal, is one of them in
# milliseconds.
_MS_RATIO = (300.0, 3000.0)
_PER_TOKEN = ("tpot_mean_s", "tpot_p50_s", "tpot_p99_s", "itl_mean_s")
_TTFT = ("ttft_mean_s", "ttft_p50_s", "ttft_p99_s")


@dataclass(frozen=True)
class HardwareLimits:
    """What one configuration can do at best (and, generously, at worst), per GPU of its TP
    group, from the catalog's roofline at 100% of datasheet peak: bounds no measured run passes,
    not estimates.

    ``read_bytes``: HBM bytes every iteration reads at least: the weights one token touches (a
    dense model's linear layers; a mixture's shared weights and one token's experts) and the LM
    head. ``bandwidth``: peak HBM bytes/s. ``flops``/``flops16``: peak FLOP/s of the linear
    layers' matmuls at the quantization's precision, and at 16 bits (attention, LM head).
    ``token_flops``/``head_flops``/``pair_flops``: FLOPs of the linear layers per token, of the
    LM head per sampled token and of attention per (query, key) pair. ``memory_bytes``: HBM."""

    label: str
    read_bytes: float
    bandwidth: float
    flops: float
    flops16: float
    token_flops: float
    head_flops: float
    pair_flops: float
    memory_bytes: float

    @property
    def step_min_s(self) -> float:
        """The shortest possible iteration: its weights read once at peak bandwidth."""
        return self.read_bytes / self.bandwidth

    def prefill_min_s(self, tokens: int) -> float:
        """The shortest possible prefill of a ``tokens``-token prompt: its weight read, or its
        linear layers, causal attention (tokens²/2 pairs) and one LM head at peak FLOP/s."""
        t = float(tokens)
        compute = t * self.token_flops / self.flops + (t * t / 2.0 * self.pair_flops + self.head_flops) / self.flops16
        return max(self.step_min_s, compute)

    def request_min_s(self, input_tokens: int, output_tokens: int) -> float:
        """The matmul time one request needs at peak FLOP/s: input + output − 1 tokens through the
        linear layers, an LM head per output token, and attention over the prompt's causal pairs
        and each decode's whole context. A whole TP group completes at most 1/this requests/s."""
        i, o = float(input_tokens), float(output_tokens)
        pairs = i * i / 2.0 + (o - 1.0) * (i + o / 2.0)
        return ((i + o - 1.0) * self.token_flops / self.flops
                + (o * self.head_flops + pairs * self.pair_flops) / self.flops16)

    def step_max_s(self, budget: int, context: int) -> float:
        """A generous bound on the longest iteration: all of HBM read, and ``budget`` tokens (the
        engine's token budget) computed, each sampled and attending to ``context`` tokens, at
        :data:`_SLOWEST_EFFICIENCY` of peak; plus :data:`_HOST_SECONDS` on the host."""
        b = float(budget)
        work = (self.memory_bytes / self.bandwidth + b * self.token_flops / self.flops
                + b * (self.head_flops + context * self.pair_flops) / self.flops16)
        return work / _SLOWEST_EFFICIENCY + _HOST_SECONDS

    def reads(self) -> str:
        """The weight-read bound in words."""
        return (f"every decode step of {self.label} reads at least {self.read_bytes / 1e9:.3g} GB of weights per "
                f"GPU, {self.step_min_s * 1e3:.3g} ms at its peak {self.bandwidth / 1e12:.3g} TB/s")


def hardware_limits(model: str, quantization: str, hardware: str, tp: int) -> HardwareLimits:
    """The :class:`HardwareLimits` of a catalog configuration, from its datasheet roofline."""
    p = build_profile(RooflineProfileSpec(), model=model, hardware=hardware, quantization=quantization, tp=tp)
    # One token's linear layers and one LM head: the roofline's own FLOPs and bytes of them.
    lin_flops, lin_bytes, head_flops, head_bytes = p._dense_work(1, 1)  # type: ignore[union-attr]
    pair_flops, _ = p._prefill_traffic(1.0, 0)  # type: ignore[union-attr]
    return HardwareLimits(label=f"{model} ({quantization}) on {hardware} at tp {tp}", read_bytes=lin_bytes + head_bytes,
                          bandwidth=p.peak_bytes_per_s, flops=p.peak_flops,  # type: ignore[union-attr]
                          flops16=p.gpu.bf16_tflops * 1e12, token_flops=lin_flops,  # type: ignore[union-attr]
                          head_flops=head_flops, pair_flops=pair_flops,
                          memory_bytes=float(p.gpu.memory_bytes))  # type: ignore[union-attr]


def _where(row: BenchmarkRow, *cols: str) -> str:
    return f"row {row.row}, column{'s' if len(cols) > 1 else ''} " + ", ".join(repr(c) for c in cols)


def _is_ms_ratio(ratio: float) -> bool:
    return _MS_RATIO[0] <= ratio <= _MS_RATIO[1]


def _check_hardware(path: Path, r: BenchmarkRow, lim: HardwareLimits) -> None:
    """Refuse a row faster than the hardware's peak allows (see :data:`PEAK_SLACK`)."""
    m = r.metrics
    floor = lim.step_min_s
    for col in _PER_TOKEN:
        if col in m and m[col] * PEAK_SLACK < floor:
            raise row_error(path, _where(r, col), f"{m[col]:g} s per token is faster than the hardware allows: "
                            f"{lim.reads()} (speculative decoding, the one way past it, is not simulated)")
    prefill = lim.prefill_min_s(r.input_tokens)
    for col in _TTFT:
        if col in m and m[col] * PEAK_SLACK < prefill:
            raise row_error(path, _where(r, col), f"{m[col]:g} s to the first token is faster than the hardware allows: "
                            f"a prompt of {r.input_tokens} tokens takes {lim.label} at least {prefill * 1e3:.3g} ms at "
                            f"its peak {lim.flops / 1e12:.4g} TFLOP/s and {lim.bandwidth / 1e12:.3g} TB/s per GPU "
                            "(capsim simulates no prefix cache)")
    per_request = lim.request_min_s(r.input_tokens, r.output_tokens)
    for col in ("output_tokens_per_s", "requests_per_s"):
        if col not in m:
            continue
        in_requests = col == "requests_per_s"
        unit, scale = ("requests/s", 1.0 / r.output_tokens) if in_requests else ("output tokens/s", 1.0)
        tokens = m[col] / scale
        if r.users is not None:
            users = min(r.users, r.num_requests)
            cap = users / floor
            if tokens > cap * PEAK_SLACK:
                seqs = "1 sequence gains" if users == 1 else f"{users} sequences gain"
                raise row_error(path, _where(r, col), f"{m[col]:g} {unit} is faster than the hardware allows: at "
                                f"{_load(r)} at most {seqs} one token per decode step, and "
                                f"{lim.reads()}: at most {cap * scale:.4g} {unit}")
        cap = r.output_tokens / per_request
        if tokens > cap * PEAK_SLACK:
            raise row_error(path, _where(r, col), f"{m[col]:g} {unit} is faster than the hardware allows: a request of "
                            f"{r.input_tokens} + {r.output_tokens} tokens takes {lim.label} at least "
                            f"{per_request * 1e3:.3g} ms of matmuls at its peak {lim.flops / 1e12:.4g} TFLOP/s per GPU: "
                            f"at most {cap * scale:.4g} {unit}")


def _check_agreement(path: Path, r: BenchmarkRow) -> None:
    """Refuse columns of one row that cannot all be true together."""
    m = r.metrics
    for fam in ("ttft", "tpot"):
        lo, hi = f"{fam}_p50_s", f"{fam}_p99_s"
        if lo in m and hi in m and m[lo] > m[hi]:
            hint = "; one of them looks like milliseconds: give seconds" if _is_ms_ratio(m[lo] / m[hi]) else ""
            raise row_error(path, _where(r, lo, hi), f"the median {m[lo]:g} exceeds the 99th percentile {m[hi]:g}, "
                            f"which no set of measurements allows{hint}")
    if "itl_mean_s" in m and "tpot_mean_s" in m:
        a, b = m["itl_mean_s"], m["tpot_mean_s"]
        ratio = max(a, b) / min(a, b)
        if ratio > _PER_TOKEN_AGREEMENT:
            hint = (f"; {max(a, b):g} looks like milliseconds: give seconds" if _is_ms_ratio(ratio) else
                    "; one of them is another metric")
            raise row_error(path, _where(r, "itl_mean_s", "tpot_mean_s"), f"{a:g} and {b:g} are {ratio:.3g}× apart, but "
                            f"both average the gaps between tokens of the same run (equal when every response has "
                            f"output_tokens tokens; refused beyond {_PER_TOKEN_AGREEMENT:g}×){hint}")
    out = r.output_tokens
    if "output_tokens_per_s" in m and "requests_per_s" in m:
        implied = m["requests_per_s"] * out
        ratio = m["output_tokens_per_s"] / implied
        if not 1 / _THROUGHPUT_AGREEMENT <= ratio <= _THROUGHPUT_AGREEMENT:
            raise row_error(path, _where(r, "output_tokens_per_s", "requests_per_s"),
                            f"{m['output_tokens_per_s']:g} output tokens/s but {m['requests_per_s']:g} requests/s × "
                            f"{out} output_tokens = {implied:.4g}: both count the same requests over the same run "
                            f"(refused beyond {_THROUGHPUT_AGREEMENT:g}× apart)")
    thr = "requests_per_s" if "requests_per_s" in m else "output_tokens_per_s" if "output_tokens_per_s" in m else None
    if thr is None:
        return
    rps = m["requests_per_s"] if thr == "requests_per_s" else m["output_tokens_per_s"] / out
    if r.users is None:
        assert r.request_rate is not None
        # The n-th request is sent at n/rate (vLLM spaces them so; plain Poisson gaps put it
        # within 3/sqrt(n) of there), so n requests cannot complete in less time.
        tol = max(1.5, 1.0 + 3.0 / math.sqrt(r.num_requests))
        if rps > r.request_rate * tol:
            raise row_error(path, _where(r, "request_rate", thr), f"requests complete at {rps:.4g}/s but are sent at "
                            f"{r.request_rate:g}/s; a run cannot complete requests faster than it sends them")
        return
    per_col = "itl_mean_s" if "itl_mean_s" in m else "tpot_mean_s" if "tpot_mean_s" in m else None
    lat = [c for c in ("ttft_mean_s", per_col) if c is not None and c in m]
    if not lat:
        return
    latency = m.get("ttft_mean_s", 0.0) + (m[per_col] * (out - 1) if per_col is not None else 0.0)
    whole = "ttft_mean_s" in m and (per_col is not None or out == 1)
    users = min(r.users, r.num_requests)
    flight = rps * latency
    lo, hi = LITTLE_RANGE
    if flight <= users * hi and (flight >= users * lo or not whole):
        return
    cols = _where(r, *lat, thr)
    values = " and ".join(f"{m[c]:g}" for c in lat)
    if flight > users and users * lo <= flight / 1000 <= users * hi:
        raise row_error(path, cols, f"{values} {'look' if len(lat) > 1 else 'looks'} like milliseconds: in seconds, by "
                        f"Little's law {rps:.4g} requests/s × {latency:.4g} s of latency = {flight:.4g} requests in "
                        f"flight, but {_load(r)} keeps at most {users}; give seconds "
                        f"({' and '.join(f'{m[c] / 1000:g}' for c in lat)})")
    raise row_error(path, cols, f"by Little's law {rps:.4g} requests/s × {latency:.4g} s of latency "
                    f"({' + '.join(lat)}{' × (output_tokens − 1)' if per_col in lat else ''}) = {flight:.4g} requests "
                    f"in flight, but {_closed_loop(r)} keeps {users} (refused outside "
                    f"{lo:g}–{hi:g}× that)")


def _load(r: BenchmarkRow) -> str:
    """``r``'s closed loop as its column says it: ``concurrency C`` or ``request_rate inf``."""
    return f"concurrency {r.concurrency}" if r.concurrency is not None else "request_rate inf"


def _closed_loop(r: BenchmarkRow) -> str:
    """The closed loop that re-enacts ``r``, in words: its concurrency, or request_rate inf (every
    request at once, a closed loop of num_requests users)."""
    if r.concurrency is not None:
        return f"a closed loop of concurrency {r.concurrency}"
    return f"request_rate inf (all {r.num_requests} requests at once)"


def _check_units(path: Path, r: BenchmarkRow, lim: HardwareLimits, budget: int) -> None:
    """Refuse latencies too slow for seconds that would be plausible as milliseconds."""
    m = r.metrics
    slowest = lim.step_max_s(budget, r.input_tokens + r.output_tokens)
    how = (f"{slowest:.3g} s: all {lim.memory_bytes / 2**30:.0f} GiB of memory read and {budget} tokens computed "
           f"at {_SLOWEST_EFFICIENCY:.0%} of peak, plus {_HOST_SECONDS:g} s on the host")
    for col in ("tpot_mean_s", "tpot_p50_s", "itl_mean_s"):
        v = m.get(col)
        if v is not None and v > slowest and v / 1000 * PEAK_SLACK >= lim.step_min_s:
            raise row_error(path, _where(r, col), f"{v:g} looks like milliseconds: a token every {v:g} s is slower than "
                            f"the slowest iteration of {lim.label} ({how}); give seconds ({v / 1000:g})")
    if r.concurrency == 1:
        # Alone on the server, a first token waits for nothing but its prompt's prefill.
        chunks = math.ceil(r.input_tokens / budget)
        for col in ("ttft_mean_s", "ttft_p50_s"):
            v = m.get(col)
            if v is not None and v > chunks * slowest and v / 1000 * PEAK_SLACK >= lim.prefill_min_s(r.input_tokens):
                raise row_error(path, _where(r, col), f"{v:g} looks like milliseconds: alone on the server (concurrency "
                                f"1), a first token after {v:g} s is slower than the {chunks} iteration"
                                f"{'s' if chunks > 1 else ''} of its prefill on {lim.label} can take (each at most {how}); give "
                                f"seconds ({v / 1000:g})")


def check_benchmarks(path: str | Path, rows: Sequence[BenchmarkRow], *, max_num_batched_tokens: int = 8192) -> None:
    """Refuse, before any fitting, a row that no server could have measured or that mistakes its
    units, naming the file, the row, the column(s), the value(s) and the reason:

    - faster than the hardware allows (:class:`HardwareLimits` at 100% of peak, with
      :data:`PEAK_SLACK`): a TPOT or ITL below one weight read at peak HBM bandwidth; a TTFT below
      the prompt's prefill at peak FLOP/s (or its weight read); a throughput beyond what the
      sequences in flight can gain at one token per weight read, or beyond the requests' matmuls
      at peak FLOP/s;
    - columns that cannot all hold: a p50 above its p99; ITL and TPOT means far apart; output
      tokens/s against requests/s × output_tokens; requests completing faster than a rate sends
      them; Little's law against the concurrency (:data:`LITTLE_RANGE`);
    - latencies that look like milliseconds: slower than the slowest iteration the hardware can
      plausibly run (:meth:`HardwareLimits.step_max_s`, at the engine's ``max_num_batched_tokens``),
      and plausible divided by 1000.

    Rows are checked in order, each in that order; the first problem raises ValueError (one line).
    """
    p = Path(path)
    limits: dict[tuple[str, str, str, int], HardwareLimits] = {}
    for r in rows:
        lim = limits.get(r.configuration)
        if lim is None:
            lim = limits[r.configuration] = hardware_limits(*r.configuration)
        _check_hardware(p, r, lim)
        _check_agreement(p, r)
        _check_units(p, r, lim, max_num_batched_tokens)
