"""Reading serving benchmarks: the tidy CSV that ``capsim calibrate --from-benchmarks`` fits.

One row per measured run of a real server (model, quantization, hardware, tp, lengths, load and
the metrics a benchmark client reports). Every cell is checked as it is read; a mistake is one
line naming the file, the row and the column. What the rows may claim is checked next
(:mod:`sim.fitting.benchmark_checks`), and what they say is fitted by :mod:`sim.fitting.benchmark_fit`.
"""

from __future__ import annotations

import csv
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from calibration.catalog import GPUS, KV_CACHE_DTYPES, MODELS, QUANTIZATIONS, close_matches

__all__ = ["BENCHMARK_METRICS", "ENGINE_COLUMNS", "METRIC_FAMILY", "BenchmarkRow", "row_error", "read_benchmarks"]

# Metrics a benchmark row may carry (seconds, tokens/s, requests/s), in the order they are shown.
BENCHMARK_METRICS = ("output_tokens_per_s", "requests_per_s", "ttft_mean_s", "ttft_p50_s", "ttft_p99_s",
                     "tpot_mean_s", "tpot_p50_s", "tpot_p99_s", "itl_mean_s")
_REQUIRED = ("model", "quantization", "hardware", "tp", "input_tokens", "output_tokens", "num_requests")
_LOAD = ("concurrency", "request_rate")
# Optional columns that say how the server was run: its engine (a preset of sim/data/engines.toml,
# or one of its aliases) and the settings that differ from the preset's, so that each row is
# simulated under the engine that produced it. Empty cells keep the preset's (or capsim's) defaults.
ENGINE_COLUMNS = ("engine", "kv_cache_dtype", "kv_memory_fraction", "max_num_seqs", "max_num_batched_tokens",
                  "admission")
_ADMISSIONS = ("recompute", "reserve")
_KNOWN = frozenset(_REQUIRED + _LOAD + BENCHMARK_METRICS + ENGINE_COLUMNS)
# What each metric measures (the fit weighs families alike; TPOT and ITL need two tokens).
METRIC_FAMILY = {"output_tokens_per_s": "throughput", "requests_per_s": "throughput", "ttft_mean_s": "ttft",
           "ttft_p50_s": "ttft", "ttft_p99_s": "ttft", "tpot_mean_s": "tpot", "tpot_p50_s": "tpot",
           "tpot_p99_s": "tpot", "itl_mean_s": "itl"}
# Field names of vLLM's result JSON that people paste as column headers, and what to do instead.
_VLLM_NAMES = {
    "mean_ttft_ms": "ttft_mean_s", "median_ttft_ms": "ttft_p50_s", "p99_ttft_ms": "ttft_p99_s",
    "mean_tpot_ms": "tpot_mean_s", "median_tpot_ms": "tpot_p50_s", "p99_tpot_ms": "tpot_p99_s",
    "mean_itl_ms": "itl_mean_s", "output_throughput": "output_tokens_per_s", "request_throughput": "requests_per_s",
    "max_concurrency": "concurrency", "num_prompts": "num_requests",
}

# -- reading -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BenchmarkRow:
    """One measured serving run. ``row`` is its 1-based data row in the CSV (the header is row
    0); exactly one of ``concurrency`` and ``request_rate`` is set (``inf``: every request sent at
    time 0); ``metrics`` holds the measured values present (seconds, tokens/s, requests/s), keyed by
    :data:`BENCHMARK_METRICS` names. ``engine`` is the preset the row's ``engine`` cell names (an
    alias resolved), ``engine_settings`` the scenario ``engine:`` section it was run under (the
    preset and the row's own settings; empty without engine columns), and ``kv_cache_dtype`` the
    precision of its KV cache (None: not stated, 16-bit)."""

    row: int
    model: str
    quantization: str
    hardware: str
    tp: int
    input_tokens: int
    output_tokens: int
    concurrency: int | None
    request_rate: float | None
    num_requests: int
    metrics: dict[str, float]
    engine: str | None = None
    engine_settings: dict[str, Any] = field(default_factory=dict)
    kv_cache_dtype: str | None = None

    @property
    def all_at_once(self) -> bool:
        """Every request is sent at time 0 (concurrency at least the request count, or rate ``inf``):
        the server sees one queue whose batches do not depend on step times."""
        return (self.request_rate == math.inf or
                (self.concurrency is not None and self.concurrency >= self.num_requests))

    @property
    def users(self) -> int | None:
        """The closed loop that re-enacts the row: its concurrency, or every request at once (rate
        ``inf`` is a closed loop of ``num_requests`` users); None for a finite rate."""
        if self.concurrency is not None:
            return self.concurrency
        return self.num_requests if self.request_rate == math.inf else None

    @property
    def configuration(self) -> tuple[str, str, str, int]:
        """(model, quantization, hardware, tp): the rows of one configuration share one profile."""
        return (self.model, self.quantization, self.hardware, self.tp)

    @property
    def load(self) -> str:
        """The load in words: ``concurrency 16`` or ``rate 4/s``."""
        if self.concurrency is not None:
            return f"concurrency {self.concurrency}"
        return "rate inf (all at once)" if self.request_rate == math.inf else f"rate {self.request_rate:g}/s"


def row_error(path: Path, where: str, message: str) -> ValueError:
    """A one-line error naming the benchmark file and where in it (``row 3, column 'tp'``)."""
    return ValueError(f"{path}: {where}{': ' if where else ''}{message}")


def _number(path: Path, row: int, col: str, text: str, *, whole: bool, infinite: bool = False) -> float:
    """A positive finite number (a whole one if ``whole``; ``inf`` too if ``infinite``) from a cell,
    or a one-line error."""
    try:
        v = float(text)
    except ValueError:
        raise row_error(path, f"row {row}, column {col!r}", f"{text!r} is not a number") from None
    if infinite and v == math.inf:
        return v
    if not math.isfinite(v):
        raise row_error(path, f"row {row}, column {col!r}", f"{text!r} must be a finite number")
    if v <= 0:
        raise row_error(path, f"row {row}, column {col!r}", f"{text!r} must be > 0")
    if whole and not v.is_integer():
        raise row_error(path, f"row {row}, column {col!r}", f"{text!r} must be a whole number")
    return v


def _catalog_name(path: Path, row: int, col: str, text: str, table: Mapping[str, Any]) -> str:
    if not text:
        raise row_error(path, f"row {row}, column {col!r}", "empty; every row names its " + col)
    if text not in table:
        raise row_error(path, f"row {row}, column {col!r}",
                        f"unknown {col} {text!r}{close_matches(text, table)}; known: {', '.join(sorted(table))}")
    return text


def _check_header(path: Path, header: list[str]) -> None:
    seen: set[str] = set()
    for name in header:
        if name in seen and name:
            raise row_error(path, "header", f"column {name!r} appears twice; every column name must be unique")
        seen.add(name)
    missing = [c for c in _REQUIRED if c not in seen]
    if missing:
        raise row_error(path, "header", f"missing column(s) {', '.join(repr(c) for c in missing)}; a benchmark CSV "
                        f"needs {', '.join(_REQUIRED)}, one of {' or '.join(_LOAD)}, and at least one metric of "
                        f"{', '.join(BENCHMARK_METRICS)}")
    if not seen & set(_LOAD):
        raise row_error(path, "header", "needs a column 'concurrency' or 'request_rate' (or both, one set per row)")
    for name in header:
        if name in _KNOWN:
            continue
        if name in _VLLM_NAMES:
            unit = " in seconds (vLLM's *_ms fields divided by 1000)" if name.endswith("_ms") else ""
            raise row_error(path, f"column {name!r}", f"is vLLM's result field; name it {_VLLM_NAMES[name]!r}{unit}")
        hint = difflib.get_close_matches(name, sorted(_KNOWN), n=1, cutoff=0.75)
        if hint:
            raise row_error(path, f"column {name!r}", f"is not a known column (did you mean {hint[0]!r}?); latencies "
                            "are in seconds (*_s), throughputs in tokens/s and requests/s")
        # Anything else (dates, notes, engine flags) is carried along unread.
    if not seen & set(BENCHMARK_METRICS):
        raise row_error(path, "header", f"no metric column; give at least one of {', '.join(BENCHMARK_METRICS)}")


def _parse_row(path: Path, i: int, cells: dict[str, str]) -> BenchmarkRow:
    model = _catalog_name(path, i, "model", cells["model"], MODELS)
    quant = _catalog_name(path, i, "quantization", cells["quantization"], QUANTIZATIONS)
    hardware = _catalog_name(path, i, "hardware", cells["hardware"], GPUS)
    ints = {}
    for col in ("tp", "input_tokens", "output_tokens", "num_requests"):
        if not cells[col]:
            raise row_error(path, f"row {i}, column {col!r}", "empty; a positive whole number is required")
        ints[col] = int(_number(path, i, col, cells[col], whole=True))
    conc_text, rate_text = cells.get("concurrency", ""), cells.get("request_rate", "")
    if conc_text and rate_text:
        raise row_error(path, f"row {i}, columns 'concurrency' and 'request_rate'",
                        f"both are set ({conc_text!r}, {rate_text!r}); give exactly one per row")
    if not conc_text and not rate_text:
        raise row_error(path, f"row {i}, columns 'concurrency' and 'request_rate'",
                        "neither is set; give exactly one per row")
    conc = int(_number(path, i, "concurrency", conc_text, whole=True)) if conc_text else None
    # inf: every request sent at once, as vLLM's and Triton's clients do with --request-rate inf.
    rate = _number(path, i, "request_rate", rate_text, whole=False, infinite=True) if rate_text else None
    metrics = {m: _number(path, i, m, cells[m], whole=False) for m in BENCHMARK_METRICS if cells.get(m, "")}
    if not metrics:
        raise row_error(path, f"row {i}, metric columns", f"all empty; give at least one of {', '.join(BENCHMARK_METRICS)}")
    arch = MODELS[model]
    if arch.heads % ints["tp"] or arch.kv_heads % ints["tp"]:
        raise row_error(path, f"row {i}, column 'tp'", f"{ints['tp']} must divide {model}'s {arch.heads} attention heads "
                        f"and {arch.kv_heads} KV heads")
    if ints["input_tokens"] + ints["output_tokens"] > arch.max_context:
        raise row_error(path, f"row {i}, column 'input_tokens'",
                        f"input_tokens + output_tokens = {ints['input_tokens'] + ints['output_tokens']} exceeds "
                        f"{model}'s context of {arch.max_context} tokens")
    if ints["output_tokens"] < 2:
        per_token = [m for m in metrics if METRIC_FAMILY[m] in ("tpot", "itl")]
        if per_token:
            raise row_error(path, f"row {i}, column {per_token[0]!r}", "needs output_tokens >= 2 (there is no gap "
                            "between tokens in a one-token response)")
    engine, settings, kv_dtype = _engine_cells(path, i, cells)
    return BenchmarkRow(row=i, model=model, quantization=quant, hardware=hardware, tp=ints["tp"],
                        input_tokens=ints["input_tokens"], output_tokens=ints["output_tokens"], concurrency=conc,
                        request_rate=rate, num_requests=ints["num_requests"], metrics=metrics, engine=engine,
                        engine_settings=settings, kv_cache_dtype=kv_dtype)


def _engine_cells(path: Path, i: int, cells: dict[str, str]) -> tuple[str | None, dict[str, Any], str | None]:
    """The row's engine (a preset name), its scenario ``engine:`` section and its KV precision from
    the optional :data:`ENGINE_COLUMNS`, each cell checked on its own and then the section as a
    whole (as a scenario's would be: max_num_batched_tokens >= max_num_seqs, say)."""
    from sim.config import EngineSpec
    from sim.engine_presets import preset_names, resolve_preset

    def where(col: str) -> str:
        return f"row {i}, column {col!r}"

    settings: dict[str, Any] = {}
    engine = None
    if text := cells.get("engine", ""):
        engine = resolve_preset(text)
        if engine is None:
            known = preset_names()
            raise row_error(path, where("engine"), f"unknown engine preset {text!r}{close_matches(text, known)}; "
                            f"known: {', '.join(known)}")
        settings["preset"] = engine
    kv_dtype = cells.get("kv_cache_dtype", "") or None
    if kv_dtype is not None and kv_dtype not in KV_CACHE_DTYPES:
        raise row_error(path, where("kv_cache_dtype"), f"unknown KV cache precision {kv_dtype!r}; known: "
                        f"{', '.join(KV_CACHE_DTYPES)}")
    if text := cells.get("kv_memory_fraction", ""):
        frac = _number(path, i, "kv_memory_fraction", text, whole=False)
        if frac > 1:
            raise row_error(path, where("kv_memory_fraction"), f"{text!r} must be <= 1 (a share of free GPU memory)")
        settings["kv_memory_fraction"] = frac
    for col in ("max_num_seqs", "max_num_batched_tokens"):
        if text := cells.get(col, ""):
            settings[col] = int(_number(path, i, col, text, whole=True))
    if text := cells.get("admission", ""):
        if text not in _ADMISSIONS:
            raise row_error(path, where("admission"), f"unknown admission {text!r}; known: {', '.join(_ADMISSIONS)}")
        settings["admission"] = text
    if settings:
        try:
            EngineSpec.model_validate(settings)
        except ValueError as e:
            given = ", ".join(repr(c) for c in ENGINE_COLUMNS if cells.get(c, ""))
            reason = str(e).splitlines()[-1].strip() if str(e).strip() else type(e).__name__
            raise row_error(path, f"row {i}, columns {given}", f"not a valid engine: {reason}") from None
    return engine, settings, kv_dtype


def read_benchmarks(path: str | Path) -> list[BenchmarkRow]:
    """Read and validate a benchmark CSV: one row per measured run.

    Columns: ``model, quantization, hardware, tp, input_tokens, output_tokens, num_requests``
    (required; names from the catalog), ``concurrency`` or ``request_rate`` (exactly one per
    row), and any of :data:`BENCHMARK_METRICS` (empty cells allowed, at least one per row;
    latencies in seconds). Other columns are ignored unless they look like a misspelt or
    vLLM-named metric. Blank lines are skipped; data rows are numbered from 1 after the header.

    Raises ValueError with one line naming the file, the row and the column of the first problem.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ValueError(f"{p}: no such benchmark file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not a UTF-8 text file; a benchmark CSV is plain text") from None
    except OSError as e:
        raise ValueError(f"{p}: cannot read ({e.strerror})") from None
    try:
        records = [r for r in csv.reader(text.splitlines()) if any(c.strip() for c in r)]
    except csv.Error as e:
        raise ValueError(f"{p}: not a readable CSV ({e})") from None
    if not records:
        raise row_error(p, "", f"empty file; expected a header row with {', '.join(_REQUIRED)}, concurrency or "
                        "request_rate, and metric columns")
    header = [c.strip() for c in records[0]]
    _check_header(p, header)
    if len(records) == 1:
        raise row_error(p, "", "no data rows after the header")
    rows = []
    for i, rec in enumerate(records[1:], start=1):
        if len(rec) > len(header):
            raise row_error(p, f"row {i}", f"{len(rec)} cells but the header names {len(header)} columns")
        cells = {name: (rec[k].strip() if k < len(rec) else "") for k, name in enumerate(header)}
        rows.append(_parse_row(p, i, cells))
    return rows
