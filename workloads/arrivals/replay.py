"""Replaying a real trace: its arrival times (sped up or rescaled to a target rate) and, by
default, its prompt and output lengths and prefix identities.

``speedup: 2`` plays the trace twice as fast (every gap halved: twice the rate, same burstiness);
``rate_per_s`` picks the speed-up that gives that mean rate. ``loop: true`` repeats the trace
end to end (one mean gap apart) when more requests or a longer duration are asked for than it holds.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, model_validator

from workloads.limits import MAX_RATE_PER_S, check_requests

__all__ = ["TraceArrivals"]

_Strict = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TraceArrivals(BaseModel):
    """Arrivals (and by default lengths) read from a trace file: its arrival times, sped up or
    rescaled to a mean rate; with ``lengths: trace`` (the default) its prompt and output lengths
    and prefix identities too. ``speedup`` and ``rate_per_s`` are mutually exclusive."""

    model_config = _Strict
    process: Literal["trace"] = Field(description="replay a real trace's arrival times")
    path: str = Field(min_length=1, description="the trace file; in a scenario file, read beside the scenario file "
                      "when it is there, else from the current directory")
    format: str | None = Field(None, description="trace format: azure-2023, azure-2024, burstgpt, mooncake, csv or "
                               "parquet (see docs/workloads.md); detected from the file when omitted")
    columns: dict[str, str] | None = Field(None, description="generic csv/parquet: RequestTable column -> file "
                                           "column (arrival_s, prompt_tokens, output_tokens; optionally session_id, "
                                           "prefix_id, prefix_tokens, class)")
    time_unit: Literal["s", "ms", "us", "ns"] = Field("s", description="generic csv/parquet: the unit of numeric "
                                                      "times (datetime columns are read as such)")
    speedup: StrictFloat | None = Field(None, ge=1e-9, le=1e9, description="play the trace this many times faster "
                                        "(10^-9 to 10^9): speedup 2 halves every gap")
    rate_per_s: StrictFloat | None = Field(None, gt=0, le=MAX_RATE_PER_S,
                                           description="rescale time so the mean rate is this (at most 10^9)")
    lengths: Literal["trace", "classes"] = Field(
        "trace", description="trace: the trace's own prompt/output lengths; classes: drawn from the workload's classes")
    loop: StrictBool = Field(False, description="repeat the trace when more requests or time are asked for than it "
                                                "holds")
    allow_duplicates: StrictBool = Field(False, description="accept rows that repeat the previous row exactly "
                                                            "(otherwise taken for a doubled file)")

    @model_validator(mode="after")
    def _one_speed(self) -> TraceArrivals:
        if self.speedup is not None and self.rate_per_s is not None:
            raise ValueError("give at most one of speedup or rate_per_s")
        return self

    def load(self):  # type: ignore[no-untyped-def]
        """The :class:`workloads.traces.Trace` this replays."""
        from workloads.traces import load_trace

        kw: dict[str, object] = {} if self.columns is None else {"columns": self.columns}
        if self.allow_duplicates:
            kw["allow_duplicates"] = True
        return load_trace(self.path, self.format, time_unit=self.time_unit, **kw)

    def replay(self, n: int | None, duration: float | None) -> tuple[np.ndarray, np.ndarray]:
        """(arrival times, row of the trace each came from), sorted by time."""
        trace = self.load()
        t = trace.table.column("arrival_s").to_numpy()
        rows = t.size
        if rows == 0:
            raise ValueError(f"{self.path}: the trace holds no requests")
        scale = 1.0
        if self.speedup is not None:
            scale = 1.0 / self.speedup
        elif self.rate_per_s is not None:
            if rows < 2 or t[-1] <= 0:
                raise ValueError(f"{self.path}: rate_per_s needs a trace with at least two distinct arrival times")
            scale = trace.mean_rate_per_s / self.rate_per_s
        t = t * scale
        period = t[-1] + (t[-1] / (rows - 1) if rows > 1 and t[-1] > 0 else 1.0)
        if n is not None:
            if n > rows and not self.loop:
                raise ValueError(f"{self.path}: num_requests = {n} but the trace holds {rows} requests: ask for at "
                                 "most that many, or set loop: true to repeat it")
            reps = -(-n // rows) if self.loop else 1
        else:
            assert duration is not None
            if duration > period and not self.loop:
                raise ValueError(f"{self.path}: duration_s = {duration:g} but the trace (at this speed) lasts "
                                 f"{t[-1]:.1f} s: ask for at most that, or set loop: true to repeat it")
            reps = int(min(np.floor(duration / period), 2**62)) + 1 if self.loop else 1
            if reps > 1:
                check_requests(reps * float(rows), f"duration_s = {duration:g} loops the trace of {rows} requests "
                                                   f"~{reps:.3g} times: ~{reps * float(rows):.3g} requests")
        times = (t[None, :] + period * np.arange(reps)[:, None]).ravel()
        idx = np.tile(np.arange(rows), reps)
        if n is not None:
            return times[:n], idx[:n]
        keep = times < duration
        return times[keep], idx[keep]
