"""Real LLM request traces read in place and turned into request tables: `load_trace`.

Formats (`TRACE_FORMATS`): ``azure-2023`` and ``azure-2024`` (Azure LLM inference traces),
``burstgpt``, ``mooncake`` (FAST'25 JSON lines, with prefix identity from its block hashes), and
the generic ``csv`` and ``parquet`` read through a column mapping. Each format is one module
here; adding one is that module (a ``sniff(peek)`` for detection and a loader) plus one line in
``_REGISTRY``. Modules are imported only when their format is used or detected.

Every problem with a file is a `TraceError` whose text is one line naming the file, the row and
the problem; nothing is silently repaired. What a loader leaves out on purpose (BurstGPT's
failed requests, rows outside a filter) is counted in `Trace.dropped`.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any

from workloads.traces.common import TRACE_SCHEMA, Trace, TraceError, peek

__all__ = ["TRACE_FORMATS", "TRACE_SCHEMA", "Trace", "TraceError", "detect_format", "load_trace"]

# format name -> "module:loader" in this package; the order is the order of detection.
_REGISTRY: dict[str, str] = {
    "azure-2023": "azure:load_2023",
    "azure-2024": "azure:load_2024",
    "burstgpt": "burstgpt:load",
    "mooncake": "mooncake:load",
    "csv": "generic:load_csv",
    "parquet": "generic:load_parquet",
}

TRACE_FORMATS: tuple[str, ...] = tuple(_REGISTRY)


def _module(name: str) -> Any:
    return importlib.import_module(f"{__name__}.{name}")


# Options that the command line also sets, by the flag it sets them with (messages name both).
_FLAGS = {"columns": "--columns", "time_unit": "--time-unit", "allow_duplicates": "--allow-duplicates"}


def _option(name: str) -> str:
    """An option as messages name it: ``columns (--columns)``, or just its name."""
    return f"{name} ({_FLAGS[name]})" if name in _FLAGS else name


def _loader(path: str, fmt: object) -> Callable[..., Trace]:
    if not isinstance(fmt, str) or fmt not in _REGISTRY:
        close = difflib.get_close_matches(str(fmt), TRACE_FORMATS, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TraceError(path, f"unknown trace format {fmt!r}{hint} (--format); known formats: "
                               f"{', '.join(TRACE_FORMATS)}")
    module, func = _REGISTRY[fmt].split(":")
    return getattr(_module(module), func)


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of ``path``, from its name's extension (``.gz`` aside) and its header.

    Reads at most the first 64 KiB. A CSV whose header matches no known trace is not guessed to
    be generic: the error says so and how to pass a mapping.
    """
    p = os.fspath(path)
    sample = peek(p)
    for module in dict.fromkeys(v.split(":")[0] for v in _REGISTRY.values()):
        fmt = _module(module).sniff(sample)
        if fmt is not None:
            return fmt
    shown = ", ".join(sample.header[:8]) + (", ..." if len(sample.header) > 8 else "")
    if sample.header and sample.suffix in (".csv", ".jsonl", ".json", ".ndjson"):
        what = f"columns {shown}"
    elif sample.suffix in (".jsonl", ".json", ".ndjson"):
        what = "first line, which is not a JSON object"
    else:
        what = f"extension {sample.suffix or '(none)'}"
    raise TraceError(p, f"cannot tell the trace format from its {what}; name it (--format / format=) as one of "
                        f"{', '.join(TRACE_FORMATS)}; csv and parquet also need the column mapping "
                        "(--columns / columns=)")


def load_trace(path: str | os.PathLike[str], format: str | None = None, *,
               columns: Mapping[str, str] | None = None, time_unit: str = "s", **options: Any) -> Trace:
    """Load a real trace as a `Trace`: a request table plus provenance.

    ``format`` None detects it (`detect_format`); with ``columns`` given and no format, the file
    is read as generic ``parquet`` (``.parquet``/``.pq``) or ``csv``. ``columns`` and
    ``time_unit`` apply to the generic formats; ``options`` are the format's own (burstgpt:
    ``model``, ``log_type``; mooncake: ``block_tokens``; all but mooncake: ``allow_duplicates``).
    """
    p = os.fspath(path)
    if format is None:
        if columns is not None:
            suffix = p.lower().removesuffix(".gz")
            format = "parquet" if suffix.endswith((".parquet", ".pq")) else "csv"
        else:
            format = detect_format(p)
    loader = _loader(p, format)
    params = inspect.signature(loader).parameters
    kwargs = dict(options)
    if columns is not None:
        kwargs["columns"] = columns
    if time_unit != "s" or "time_unit" in params:
        kwargs["time_unit"] = time_unit
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        takes = ", ".join(_option(k) for k in params if k != "path") or "none"
        raise TraceError(p, f"format {format!r} takes no {', '.join(map(_option, unknown))}; its options: {takes}")
    return loader(p, **kwargs)
