"""The sizes past which a workload is refused rather than attempted, each with its reason.

Validation refuses what could never run, with what it would have cost, before numpy is asked
for the memory: a workload of 10^12 requests used to reach ``numpy.random`` and fail there after
trying to allocate terabytes, with a traceback.

- ``MAX_TOKENS`` (10^7): the longest context of any public model is 10M tokens (Llama 4 Scout);
  a prompt or output longer than that is a typo or a corrupt trace, never a request.
- ``MAX_RATE_PER_S`` (10^9): one request every nanosecond. No serving system admits requests
  faster, and the arrival times of a faster process collapse into float rounding.
- ``MAX_USERS`` (10^7) closed-loop users and ``MAX_VARIANTS`` (10^7) system-prompt variants: more
  than any serving fleet holds in flight, or any run has conversations to pick from.
- Requests: capsim holds about ``BYTES_PER_REQUEST`` (1 KiB) per request while it simulates (a
  1M-request run with streamed records peaks near 0.9 GiB). A workload whose expected request
  count (rate x duration, or ``num_requests``; times the mean turns for multi-turn sessions, since
  whole conversations are drawn before the count is cut) would need more than this machine's
  physical memory at that rate is refused, naming the memory it would need. A Markov-modulated
  process also counts the regime visits and arrivals of the first block it draws at once.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache

__all__ = ["BYTES_PER_ARRIVAL_DRAWN", "BYTES_PER_REQUEST", "BYTES_PER_VISIT", "MAX_RATE_PER_S", "MAX_TOKENS",
           "MAX_USERS", "MAX_VARIANTS", "check_requests", "machine_memory_bytes"]

MAX_TOKENS = 10_000_000
MAX_RATE_PER_S = 1e9
MAX_USERS = 10_000_000
MAX_VARIANTS = 10_000_000
BYTES_PER_REQUEST = 1024
# An MMPP draws its regime visits in blocks: about five float64/int64 arrays per visit, and an
# arrival drawn (then kept or cut) holds a time, its repeat and its sort buffer.
BYTES_PER_VISIT = 40
BYTES_PER_ARRIVAL_DRAWN = 24
# Used when the machine's memory cannot be read (a platform without sysconf): 1 TiB.
_FALLBACK_MEMORY = 1 << 40


@lru_cache(maxsize=1)
def machine_memory_bytes() -> int:
    """This machine's physical memory in bytes (1 TiB where the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return _FALLBACK_MEMORY


def _size(nbytes: float) -> str:
    """``nbytes`` as a few significant digits of GiB, TiB or PiB."""
    for unit, scale in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30)):
        if nbytes >= scale or unit == "GiB":
            x = nbytes / scale
            return f"{x:,.0f} {unit}" if 100 <= x < 1e5 else f"{x:.2g} {unit}"
    raise AssertionError("unreachable")


def check_requests(requests: float, what: str, extra_bytes: float = 0.0, advice: str | None = None) -> None:
    """Refuse ``requests`` expected requests when they would need more than this machine's memory.

    ``what`` says where the count comes from (``"num_requests = 10"``, ``"duration_s = 60 at 5
    requests/s means ~300 requests"``); the message goes on with the memory it would need.
    ``extra_bytes``: what drawing them costs besides (an MMPP's regime visits), said in ``what``;
    ``advice`` replaces the default end (ask for fewer requests) where that is not the remedy.
    """
    memory = machine_memory_bytes()
    need = requests * BYTES_PER_REQUEST + extra_bytes
    if need <= memory:
        return
    shown = "beyond any machine" if not math.isfinite(need) else f"~{_size(need)}"
    advice = advice or f"ask for at most ~{memory // BYTES_PER_REQUEST:.2g} requests"
    raise ValueError(f"{what}, which would need {shown} of memory to simulate (about {BYTES_PER_REQUEST} bytes per "
                     f"request) but this machine has {_size(memory)}: {advice}")
