"""Profiles fitted to measured step times, and the files they live in.

A measured profile prices an iteration with the step-time model fitted by
:mod:`calibration.fit` to real kernel timings (the harness, or published timings):

    T = t0 + c_head·S + L·[max(w, c_lin·N) + c_tok·N + c_seq·S + c_pf·Σ c(p + c/2) + c_dc·Σ l]

with N tokens computed in the iteration, S sequences in it, prefill chunks of c tokens at
position p, decode contexts l (Σ l also counts each prefill chunk's p cached tokens, which it
reads as a decode reads its context), and L layers. The bracket is one layer: reading its weights (w)
or multiplying every token by them (c_lin per token), whichever is slower (on a GPU the two
overlap); per-token work that does not overlap with the weight read (c_tok: on a CPU, dequantizing
and multiplying mostly add to the read rather than hide behind it); per-sequence work; prefill
attention pairs and decode KV reads; t0 and c_head are the per-iteration parts outside
the layers (launch overhead, embedding, LM head and sampling per sequence). Fitting at two
layer counts separates the two, so a profile measured on a few layers prices the full depth.
The form is the roofline's, so it extrapolates the same way: linear in each term beyond the grid.

Two optional refinements, for profiles fitted to GPU operator timings (:mod:`calibration.operator_fit`):
- ``knee`` k > 0 rounds the roofline's corner, (w^k + (c_lin·N)^k)^(1/k) in place of the max: a
  GPU's GEMM leaves the weight-read floor gradually, not at a corner (0 or absent: the max).
- ``linear_table``: the per-layer linear-layer time measured at token counts N_i. Within them it
  is interpolated (cuBLAS picks a different kernel as N grows, so GEMM time is a staircase no
  two-parameter roof follows), beyond the last one it grows at the compute slope c_lin.

KV capacity and the FLOPs/bytes reported per iteration (for MFU/MBU) come from the catalog's
memory and roofline model of the same (model, quantization, hardware, tp); only the seconds are
measured. On disk a profile is ``NAME.json`` (coefficients, validity range, held-out error,
provenance) beside ``NAME.parquet`` (the raw measurements).

**KV precision.** c_dc prices reading one cached token's K and V at the precision the measurements
held them in (:attr:`ProfileRecord.kv_bytes_per_element`); a scenario that stores KV at another
precision (``kv_cache_dtype``) reads kv_bytes / kv_bytes_measured as many bytes per token, so the
profile prices its KV reads (decode contexts and prefill chunks' cached prefixes alike) at
c_dc · kv_bytes / kv_bytes_measured. Left at auto, reads are priced as measured (a CPU harness's
float32 cache is what its own serving loop reads). The rest is unchanged: attention's FLOPs (c_pf) run in 16
bits whatever the cache holds, as the roofline's do. This assumes the measured c_dc is all memory
traffic, which it is on a GPU: decode attention does 2·(heads / kv_heads) / kv_bytes FLOPs per byte
read (4-16 for Llama-3's grouped-query attention), far below a datacenter GPU's ridge of ~300.
"""

from __future__ import annotations

import bisect
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from calibration.catalog import KV_CACHE_DTYPES, same_architecture
from calibration.profile import BatchShape, Provenance, ReplicaSpec, StepCost, prefill_sums, size_rows
from calibration.roofline import RooflineProfile

__all__ = ["COEFFICIENTS", "OPTIONAL", "MeasuredProfile", "linear_seconds", "seconds_of", "seconds_parts",
           "coefficients_from_roofline", "ProfileRecord", "find_profile", "list_profiles", "poor_fit_note",
           "profile_name", "read_profile", "shipped_profile_dir", "write_profile"]

# The fitted coefficients, in the order of the step-time formula above.
COEFFICIENTS = ("t0", "c_head", "w", "c_lin", "c_tok", "c_seq", "c_pf", "c_dc")
# Absent: the plain max; the chunk's own pairs priced at c_pf; the LM head linear in sequences.
OPTIONAL = ("knee", "c_pf_self", "head_w")
FORMAT_VERSION = 1
# Bytes per element of the KV-cache precisions a record's ``meta["kv_cache_dtype"]`` may name: a
# scenario's names, and the torch dtype names the harness writes.
KV_DTYPE_BYTES: dict[str, float] = {**KV_CACHE_DTYPES, "fp32": 4.0, "float32": 4.0, "bfloat16": 2.0, "float16": 2.0,
                                    "float8_e4m3fn": 1.0, "float8_e5m2": 1.0}


@dataclass(frozen=True)
class ProfileRecord:
    """Everything a profile file holds except the raw measurements."""

    model: str
    quantization: str
    hardware: str
    tp: int
    kind: str                                  # measured | derived-from-measured
    coefficients: dict[str, float]             # per COEFFICIENTS; per-layer ones per layer
    layers: int                                # the model's full depth the profile prices
    validity: dict[str, float]                 # the measured grid's ranges
    heldout_error: dict[str, dict[str, float]]  # phase -> {median, p90, max, points}
    source: str
    meta: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    linear_table: dict[str, list[float]] | None = None  # {"tokens": [...], "seconds": [...]} per layer

    def linear_arrays(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The linear-layer table as (tokens, seconds) arrays, or None."""
        if self.linear_table is None:
            return None
        return (np.asarray(self.linear_table["tokens"], dtype=np.float64),
                np.asarray(self.linear_table["seconds"], dtype=np.float64))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @property
    def kv_bytes_per_element(self) -> float:
        """Bytes per KV-cache element in the measurements c_dc was fitted to: ``meta["kv_cache_dtype"]``
        where the writer recorded it (the harness and the operator-table fits do), else 2: a record
        that names none is a 16-bit one. A benchmark fit's records name none, and rightly: its
        candidates price each row's KV reads from 16 bits to the row's scenario precision, so the c_dc
        it fits is a 16-bit one whatever cache the benchmark held."""
        return KV_DTYPE_BYTES[self.meta.get("kv_cache_dtype", "fp16")]

    @property
    def poor(self) -> bool:
        """Labelled a poor fit (``meta["quality"] == "poor"``): kept although its fit error was
        above the threshold (``capsim calibrate --from-benchmarks --keep-poor-fit``)."""
        return self.meta.get("quality") == "poor"

    @classmethod
    def from_json(cls, text: str, where: str = "profile") -> ProfileRecord:
        try:
            data = json.loads(text)
            missing = [k for k in ("model", "quantization", "hardware", "tp", "kind", "coefficients", "layers",
                                   "validity", "heldout_error", "source") if k not in data]
            if missing:
                raise ValueError(f"missing key(s) {', '.join(missing)}")
            coef = data["coefficients"]
            coef.setdefault("c_tok", 0.0)  # profiles written before the term existed
            absent = [c for c in COEFFICIENTS if c not in coef]
            if absent:
                raise ValueError(f"coefficients lack {', '.join(absent)}")
            if any(not np.isfinite(float(coef[c])) or float(coef[c]) < 0 for c in (*COEFFICIENTS, *OPTIONAL) if c in coef):
                raise ValueError("coefficients must be finite and >= 0")
            table = data.get("linear_table")
            if table is not None:
                tok = np.asarray(table.get("tokens", []), dtype=np.float64)
                sec = np.asarray(table.get("seconds", []), dtype=np.float64)
                if (tok.size < 2 or tok.shape != sec.shape or not np.isfinite(sec).all() or (sec <= 0).any()
                        or (np.diff(tok) <= 0).any() or tok[0] < 1):
                    raise ValueError("linear_table needs >= 2 increasing token counts >= 1 with seconds > 0")
            kv = data.get("meta", {}).get("kv_cache_dtype")
            if kv is not None and kv not in KV_DTYPE_BYTES:
                raise ValueError(f"meta.kv_cache_dtype = {kv!r}: unknown KV precision; known: "
                                 f"{', '.join(sorted(KV_DTYPE_BYTES))}")
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (json.JSONDecodeError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: not a capsim profile ({e})") from None


def poor_fit_note(record: ProfileRecord) -> str | None:
    """The warning a profile labelled poor carries into every result's provenance, or None."""
    if not record.poor:
        return None
    figures = record.meta.get("quality_note", "fit error above the threshold")
    return f"warning: a poor fit, kept with --keep-poor-fit ({figures})"


@dataclass(frozen=True)
class MeasuredProfile:
    """A profile whose seconds come from a fit to measurements; memory, FLOPs and bytes from the
    catalog model of the same configuration (``base``). ``note``: a warning about how it was
    chosen (``kind: auto`` skipping a poor profile), shown in its provenance. ``kv_as_measured``:
    the scenario left ``kv_cache_dtype`` at auto, so KV reads are priced as measured (c_dc as fitted,
    whatever precision the measurements held: a CPU harness's float32 KV is what its real loop
    reads); a named precision rescales them (module docstring)."""

    record: ProfileRecord
    base: RooflineProfile
    note: str = ""
    kv_as_measured: bool = False

    def __post_init__(self) -> None:
        table = self.record.linear_arrays()
        object.__setattr__(self, "_table", None if table is None else LinearTable(table))
        coef = self.record.coefficients
        if self.kv_read_scale != 1.0:  # the record's own coefficients, untouched, where the precisions agree
            coef = {**coef, "c_dc": coef["c_dc"] * self.kv_read_scale}
        # The coefficients this profile prices with: the record's, c_dc at the scenario's KV precision.
        object.__setattr__(self, "_coefficients", coef)
        object.__setattr__(self, "_seconds", scalar_seconds(coef, self.record.layers, self._table))
        # Decode iterations' parts that depend on the batch size alone, by size (decode_steps).
        object.__setattr__(self, "_decode_sizes", np.empty((4, 0)))
        # decode_steps's scalar operands as 0-d arrays: the same products, without numpy resolving
        # a Python float's type on every operation (which doubles its cost on a plan's arrays).
        object.__setattr__(self, "_kv_terms", (np.array(self.record.layers, np.float64),
                                               np.array(coef["c_dc"], np.float64)))

    @property
    def kv_read_scale(self) -> float:
        """Bytes per KV element the scenario stores over those the measurements read (the base
        roofline is built at the scenario's ``kv_cache_dtype``): the factor on c_dc; 1 at auto."""
        if self.kv_as_measured:
            return 1.0
        return self.base.kv_bytes_per_element / self.record.kv_bytes_per_element

    def __reduce__(self) -> tuple[type, tuple[ProfileRecord, RooflineProfile, str, bool]]:
        # Pickled and copied as what it is built from: what __post_init__ derives (a closure
        # among it) is derived again.
        return type(self), (self.record, self.base, self.note, self.kv_as_measured)

    @property
    def provenance(self) -> Provenance:
        r = self.record
        err = "; ".join(f"{phase} held-out error median {e['median']:.1%}, p90 {e['p90']:.1%}"
                        for phase, e in sorted(r.heldout_error.items()))
        assumptions = {k: float(v) for k, v in r.coefficients.items()}
        assumptions["layers"] = float(r.layers)
        # Warnings first, where a reader of the run summary sees them before the long source.
        warnings = [w for w in (poor_fit_note(r), self.note) if w]
        source = f"{r.source} ({err})" if err else r.source
        if self.kv_read_scale != 1.0:  # said only where it applies: other runs' summaries stay as they were
            assumptions["kv_read_scale"] = self.kv_read_scale
            source += (f"; KV reads (c_dc) x{self.kv_read_scale:g}: {self.base.kv_bytes_per_element * 8:g}-bit KV "
                       f"against the {r.kv_bytes_per_element * 8:g}-bit KV measured")
        return Provenance(kind=r.kind, source="; ".join([*warnings, source]), assumptions=assumptions)

    def kv_capacity_tokens(self, replica: ReplicaSpec) -> int:
        return self.base.kv_capacity_tokens(replica)

    def memory_shortfall_bytes(self, replica: ReplicaSpec) -> float:
        return self.base.memory_shortfall_bytes(replica)

    def step(self, batch: BatchShape) -> StepCost:
        # On the engine's hot path: integer sums go through Python lists (exact, and cheaper than
        # numpy's reductions on a batch's ~40 elements), and FLOPs and bytes come from the base
        # roofline's pricing of the same sums rather than from a second pass over the batch.
        chunk, start, dctx = batch.prefill_chunk, batch.prefill_start, batch.decode_context
        n_pre, n_dec = chunk.size, dctx.size
        chunk_tokens, start_tokens, pairs = prefill_sums(chunk, start)
        # The chunks' causal pairs among themselves, Σ c²/2 (an exact integer sum either way).
        own = float(np.dot(chunk, chunk) if n_pre > 1 else chunk_tokens * chunk_tokens) / 2.0
        context = sum(dctx.tolist()) if n_dec else 0
        tokens = (float(chunk_tokens) if n_pre else 0.0) + n_dec
        seqs = float(n_pre + n_dec)
        # KV tokens read: every decode's context, and every prefill chunk's cached prefix.
        ctx = (float(context) if n_dec else 0.0) + (float(start_tokens) if n_pre else 0.0)
        seconds = self._seconds(tokens, seqs, pairs, ctx, own)  # type: ignore[attr-defined]
        flops, nbytes = self.base._work(n_pre, n_dec, chunk_tokens, pairs, start_tokens, context)
        return StepCost(seconds=float(seconds), flops=flops, bytes=nbytes)

    def _decode_size_row(self, seqs: int) -> tuple[float, float, float, float]:
        """The parts of a decode-only iteration of ``seqs`` sequences that depend on ``seqs``
        alone, from the scalar code :meth:`step` runs: the seconds outside the layers, one
        layer's seconds before its KV reads (:func:`seconds_parts` with :meth:`step`'s operands),
        and the base roofline's FLOPs and bytes of the linear layers and LM head."""
        outside, layer = seconds_parts(self._coefficients, 0.0 + seqs, float(seqs), 0.0,  # type: ignore[attr-defined]
                                       self._table, 0.0)  # type: ignore[attr-defined]
        _, flops, nbytes = self.base._dense_part(seqs, seqs)
        return outside, layer, flops, nbytes

    def decode_steps(self, seqs: np.ndarray | int, context: np.ndarray,
                     work: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Seconds, FLOPs and bytes of decode-only iterations, with the arguments and the
        ``work`` switch of :meth:`RooflineProfile.decode_steps`, equal to :meth:`step` bit for bit.

        Here the parts that depend on the batch size alone are the linear-layer table's
        interpolation and the knee's ``**`` (numpy's vectorised form may differ from Python's in
        the last bit), tabulated once per size by :meth:`step`'s own scalar code; the KV-read
        terms are added on arrays in :meth:`step`'s order (which reads ``ctx + 0.0``: the same as
        ``ctx`` for the positive sums here). FLOPs and bytes are the base roofline's."""
        seqs, (outside, layer, *dense) = size_rows(self, seqs, context.size, (0, 1, 2, 3) if work else (0, 1))
        layers, c_dc = self._kv_terms
        seconds = outside + layers * (layer + c_dc * context)
        if not work:
            return seconds, None, None
        flops, nbytes = dense
        dc_flops, dc_bytes = self.base._decode_traffic(context)
        return seconds, flops + dc_flops, nbytes + dc_bytes


class LinearTable(tuple):
    """A linear-layer table, ``(tokens, seconds)`` arrays, that also holds them as Python lists:
    a profile's ``step`` interpolates it at one point per iteration (:func:`interp_at`), in a
    fifth of ``np.interp``'s time and with the same result."""

    def __new__(cls, arrays: tuple[np.ndarray, np.ndarray]) -> LinearTable:
        out = super().__new__(cls, arrays)
        out.lists = (arrays[0].tolist(), arrays[1].tolist())
        return out

    def __getnewargs__(self) -> tuple[tuple[np.ndarray, np.ndarray]]:  # pickling and copying
        return (tuple(self),)


def interp_at(x: float, xs: list[float], ys: list[float]) -> float:
    """``np.interp(x, xs, ys)`` at one point, in Python floats: numpy's own steps (its binary
    search, exact hits, and the slope times the offset plus the left value) in the same order,
    so the same float."""
    if x < xs[0]:
        return ys[0]
    j = bisect.bisect_right(xs, x) - 1
    if j == len(xs) - 1 or xs[j] == x:
        return ys[j]
    slope = (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j])
    out = slope * (x - xs[j]) + ys[j]
    if out != out:  # NaN one way: numpy tries the other
        out = slope * (x - xs[j + 1]) + ys[j + 1]
        if out != out and ys[j] == ys[j + 1]:
            out = ys[j]
    return out


def linear_seconds(c: dict[str, float], tokens: Any, table: tuple[np.ndarray, np.ndarray] | None = None) -> Any:
    """One layer's linear-layer time for ``tokens`` tokens: the measured table where it reaches
    (then its last value plus the compute slope), else the (rounded) roof max(w, c_lin·N)."""
    if table is not None:
        tok, sec = table
        # The engine's per-iteration call passes a float: no array round trips (nor np.ndim's cost).
        if isinstance(tokens, float) or np.ndim(tokens) == 0:
            x = float(tokens)
            if x > tok[-1]:
                return float(sec[-1] + c["c_lin"] * (x - tok[-1]))
            lists = getattr(table, "lists", None)
            return interp_at(x, *lists) if lists is not None else float(np.interp(x, tok, sec))
        n = np.asarray(tokens, dtype=np.float64)
        out = np.where(n <= tok[-1], np.interp(n, tok, sec), sec[-1] + c["c_lin"] * (n - tok[-1]))
        return out if out.ndim else float(out)
    k = c.get("knee", 0.0)
    if k > 0 and (isinstance(tokens, float) or np.ndim(tokens) == 0):
        w, lin = c["w"], c["c_lin"] * float(tokens)
        top = max(w, lin)
        return top * ((w / top) ** k + (lin / top) ** k) ** (1.0 / k)
    if k > 0:
        w, lin = c["w"], c["c_lin"] * np.asarray(tokens, dtype=np.float64)
        top = np.maximum(w, lin)
        # (w^k + lin^k)^(1/k), scaled by the larger term so that large k does not overflow.
        out = top * ((w / top) ** k + (lin / top) ** k) ** (1.0 / k)
        return out if np.ndim(out) else float(out)
    return np.maximum(c["w"], c["c_lin"] * tokens)


def seconds_of(c: dict[str, float], layers: float | np.ndarray, tokens: Any, seqs: Any, pairs: Any, ctx: Any,
               table: tuple[np.ndarray, np.ndarray] | None = None, own_pairs: Any = 0.0) -> Any:
    """The step-time formula (scalars or numpy arrays). ``own_pairs`` (Σ c²/2, the chunks' causal
    pairs among themselves, part of ``pairs``) is priced at ``c_pf_self`` where the profile has it."""
    outside, layer = seconds_parts(c, tokens, seqs, pairs, table, own_pairs)
    return outside + layers * (layer + c["c_dc"] * ctx)


def scalar_seconds(c: dict[str, float], layers: float,
                   table: LinearTable | None) -> Callable[[float, float, float, float, float], float]:
    """:func:`seconds_of` at one point, ``(tokens, seqs, pairs, ctx, own_pairs) -> seconds``, with
    the coefficients read once: the engine prices every iteration it steps through it, and the
    dictionary lookups and four nested calls of the general form cost more than its arithmetic.
    The same operations in the same order as :func:`seconds_parts` and :func:`seconds_of` (tested
    bit for bit), so the same float."""
    t0, c_head, c_tok, c_seq, c_pf, c_dc, c_lin = (c["t0"], c["c_head"], c.get("c_tok", 0.0), c["c_seq"], c["c_pf"],
                                                   c["c_dc"], c["c_lin"])
    self_extra = c["c_pf_self"] - c["c_pf"] if "c_pf_self" in c else None
    head_w = c.get("head_w")
    if table is not None:
        xs, ys = table.lists
        tok_last, sec_last = table[0][-1], table[1][-1]

    def seconds(tokens: float, seqs: float, pairs: float, ctx: float, own_pairs: float) -> float:
        attention = c_pf * pairs
        if self_extra is not None:
            attention = attention + self_extra * own_pairs
        if table is None:
            linear = linear_seconds(c, tokens, None)
        elif tokens > tok_last:
            linear = float(sec_last + c_lin * (tokens - tok_last))
        else:
            linear = interp_at(tokens, xs, ys)
        layer = linear + c_tok * tokens + c_seq * seqs + attention
        head = c_head * seqs
        if head_w is not None:
            head = max(head_w, head)
        return (t0 + head) + layers * (layer + c_dc * ctx)

    return seconds


def seconds_parts(c: dict[str, float], tokens: Any, seqs: Any, pairs: Any,
                  table: tuple[np.ndarray, np.ndarray] | None = None, own_pairs: Any = 0.0) -> tuple[Any, Any]:
    """:func:`seconds_of` but for the KV reads, in its order of operations: the seconds outside
    the layers (t0 and the LM head) and one layer's seconds before its ``c_dc·Σ l`` term. A
    profile's ``decode_steps`` tabulates them per batch size and adds the KV reads itself."""
    attention = c["c_pf"] * pairs
    if "c_pf_self" in c:
        attention = attention + (c["c_pf_self"] - c["c_pf"]) * own_pairs
    layer = linear_seconds(c, tokens, table) + c.get("c_tok", 0.0) * tokens + c["c_seq"] * seqs + attention
    head = c["c_head"] * seqs
    if "head_w" in c:  # the LM head reads its weights once: flat until its per-sequence work is slower
        head = max(c["head_w"], head) if isinstance(head, float) else np.maximum(c["head_w"], head)
    return c["t0"] + head, layer


def coefficients_from_roofline(p: RooflineProfile) -> dict[str, float]:
    """The step-time formula's coefficients that approximate a roofline profile (dense models; an
    MoE's expert reads are taken at their large-batch value): a starting point, in the formula's
    own terms, for fits that have too few measurements to find all seven from scratch (serving
    benchmarks). Per-layer coefficients are per layer; all-reduce time joins the per-token term."""
    m, tp = p.model, p.tp
    flop_rate = p.peak_flops * p.compute_efficiency
    rate16 = p.gpu.bf16_tflops * 1e12 * p.compute_efficiency
    byte_rate = p.peak_bytes_per_s * p.memory_efficiency
    layer_params = m.active_layer_linear_params / tp
    weights = (m.attention_params_per_layer + m.router_params_per_layer + m.experts * m.expert_params) / tp
    allreduce = (2.0 * 2.0 * (tp - 1) / tp * m.hidden * 2.0 / max(p.gpu.interconnect_gb_s * 1e9, 1.0)) if tp > 1 else 0.0
    head = m.vocab * m.hidden / tp
    return {
        "t0": p.overhead_s + (2.0 * m.layers * p.allreduce_latency_s if tp > 1 else 0.0) + head * 2.0 / byte_rate,
        "c_head": 2.0 * head / rate16 + m.vocab / tp * 4.0 / byte_rate,
        "w": weights * p.weight_bytes_per_element / byte_rate,
        "c_lin": 2.0 * layer_params / flop_rate + allreduce,
        "c_tok": 0.0,
        "c_seq": 0.0,
        "c_pf": 4.0 * m.heads * m.head_dim / tp / rate16,
        "c_dc": max(4.0 * m.heads * m.head_dim / tp / rate16, 2.0 * m.kv_heads * m.head_dim / tp
                    * p.kv_bytes_per_element / byte_rate),
    }


# -- files -----------------------------------------------------------------------------------------

def profile_name(model: str, quantization: str, hardware: str, tp: int) -> str:
    """The file stem a profile is stored under."""
    return f"{model}__{quantization}__{hardware}__tp{tp}"


def shipped_profile_dir() -> Path:
    """Profiles that ship inside the package."""
    return Path(str(resources.files("calibration").joinpath("profiles")))


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_profile(out_dir: str | Path, record: ProfileRecord, measurements: pa.Table) -> Path:
    """Write ``NAME.json`` and ``NAME.parquet`` into ``out_dir`` (each atomically); return the JSON path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = profile_name(record.model, record.quantization, record.hardware, record.tp)
    _atomic_write(out / f"{stem}.parquet", lambda tmp: pq.write_table(measurements, tmp))
    js = out / f"{stem}.json"
    _atomic_write(js, lambda tmp: Path(tmp).write_text(record.to_json() + "\n"))
    return js


# Profiles read, by (path, modification time, size): a scenario builds its profile several
# times per run and ``auto`` reads every shipped profile each time; a changed file is read anew.
_READ: dict[tuple[str, int, int], ProfileRecord] = {}


def read_profile(path: str | Path) -> ProfileRecord:
    p = Path(path)
    try:
        stat = p.stat()
        key = (str(p.resolve()), stat.st_mtime_ns, stat.st_size)
        if key in _READ:
            return _READ[key]
        text = p.read_text()
    except FileNotFoundError:
        raise ValueError(f"{p}: no such profile file") from None
    record = _READ[key] = ProfileRecord.from_json(text, str(p))
    return record


def list_profiles(dirs: Iterable[str | Path]) -> list[tuple[Path, ProfileRecord]]:
    """Every readable profile JSON in ``dirs`` (a directory, or a profile file), in order."""
    out = []
    for d in dirs:
        p = Path(d)
        files = [p] if p.is_file() else sorted(p.glob("*.json")) if p.is_dir() else []
        for f in files:
            try:
                out.append((f, read_profile(f)))
            except ValueError:
                continue
    return out


_KIND_RANK = {"measured": 0, "derived-from-measured": 1}


def find_profile(model: str, quantization: str, hardware: str, tp: int, dirs: Iterable[str | Path], *,
                 skip_poor: bool = False) -> tuple[Path, ProfileRecord] | None:
    """The best profile for the configuration in ``dirs`` (earlier directories first), measured
    before derived-from-measured; None when none matches. A catalog alias also finds the profiles
    of the model it names (the same architecture runs the same kernels), after its own name's.
    ``skip_poor``: pass over profiles labelled a poor fit (:attr:`ProfileRecord.poor`), as
    ``kind: auto`` does."""
    names = same_architecture(model)
    hits = [(_KIND_RANK.get(r.kind, 9), i, r.model != model, f, r) for i, (f, r) in enumerate(list_profiles(dirs))
            if r.model in names and (r.quantization, r.hardware, r.tp) == (quantization, hardware, tp)
            and not (skip_poor and r.poor)]
    if not hits:
        return None
    *_, f, r = min(hits, key=lambda h: h[:3])
    return f, r
