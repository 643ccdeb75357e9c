"""A minimal real serving loop on the harness's kernels: the ground truth a simulation is checked against.

:func:`serve` takes a plain request table (``request_id``, ``arrival_s``, ``prompt_tokens``,
``output_tokens``; arrival times in seconds from the start) and a built harness decoder
(:func:`~calibration.harness.model.build_model`, the scheme and layers the profile was
calibrated with), and serves the requests on the loop's own timeline:

- the timeline is made of what the loop measured, not of the wall clock: every iteration
  advances it by the iteration's own time on the device's step clock
  (:mod:`~calibration.harness.clock`: on the CPU the calling thread's CPU time with torch on one
  intra-op thread; on CUDA the wall clock after a synchronize), and an idle loop jumps to the
  next arrival instead of sleeping. A request becomes visible to the loop once the timeline
  reaches its arrival. The latencies are then what the machine gives with one dedicated core
  (on CUDA: one GPU), whatever else runs beside it, and the run takes its busy time only;
- every iteration the loop forms a batch under ``max_num_seqs`` and ``max_num_batched_tokens``
  with the admission rules of the simulator's continuous scheduler
  (``sim/core/scheduling/continuous.py``, vLLM V1 style, chunked prefill): running requests first,
  in admission order, each given the tokens it still needs (one for a decode, the rest of its
  prompt for a prefill) until the token budget runs out; then waiting requests in FCFS order
  while there is budget and a sequence slot, a prompt taking only what budget is left (the
  rest follows in later iterations). ``calibration`` may not import ``sim`` (DESIGN.md), so the
  rules are mirrored here, and a test checks the batches against the simulator's;
- it runs **one** forward pass for the whole batch (:func:`ragged_step`): the linear layers over
  all the batch's tokens concatenated (where batching pays), attention per sequence over its own
  slot of a pre-allocated KV cache, each sequence at its own length; then the LM head over the
  last computed position of every sequence, as the harness's steps do. Nothing is sampled: token
  values do not change the time, so every token id comes from a fixed random pool;
- a token is emitted when a request's computed tokens reach its known tokens, at the end of the
  iteration (the first at the end of the iteration that finishes its prompt), exactly as the
  simulator counts them (:mod:`sim.core.state`).

The KV cache is one buffer per layer of ``max_num_seqs`` slots, each as long as the longest
request; a request holds a slot from admission to its last token. A CPU holds every slot at
these sizes, so nothing is ever preempted: the loop asserts that its requests fit their slots
and, given ``kv_capacity_tokens``, that the simulator's block-granular cache would never have
had to preempt either.

Iterations are timed twice, on the step clock: ``duration_s`` from the iteration's start (before
scheduling) to its end (after bookkeeping), the time the simulator prices and the timeline
advances by; ``forward_s`` the forward pass alone. Their difference is the loop's own overhead.
Python's garbage collector is paused while serving, as it is while the harness times a step.

``torch`` is imported with this module: import it only where torch is installed.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F

from calibration.harness.clock import StepClock, step_clock
from calibration.harness.model import RMS_EPS, HarnessError, KVCache, LlamaDecoder, _rotate, chunk_attention

__all__ = ["ITERATION_SCHEMA", "RESULT_SCHEMA", "ServingRun", "SlotCache", "ragged_step", "serve"]

# Per-request results of a run, in DESIGN.md's vocabulary (seconds from the start of the loop's timeline).
RESULT_SCHEMA = pa.schema([
    ("request_id", pa.int64()),
    ("arrival_s", pa.float64()),
    ("prompt_tokens", pa.int64()),
    ("output_tokens", pa.int64()),
    ("first_scheduled_s", pa.float64()),
    ("first_token_s", pa.float64()),
    ("last_token_s", pa.float64()),
    ("queue_s", pa.float64()),     # arrival -> first scheduled
    ("ttft_s", pa.float64()),      # arrival -> first token
    ("tpot_s", pa.float64()),      # (e2e - ttft) / (output_tokens - 1); NaN for one output token
    ("e2e_s", pa.float64()),       # arrival -> last token
])

# One row per iteration; the batch-shape columns are the step-time formula's inputs.
ITERATION_SCHEMA = pa.schema([
    ("start_s", pa.float64()),        # on the loop's timeline (see the module docstring)
    ("duration_s", pa.float64()),     # scheduling + forward + bookkeeping, on the step clock
    ("forward_s", pa.float64()),      # the forward pass alone
    ("tokens", pa.int64()),           # N: tokens computed
    ("sequences", pa.int64()),        # S: sequences in the batch
    ("prefill_tokens", pa.int64()),
    ("prefill_seqs", pa.int64()),
    ("decode_seqs", pa.int64()),
    ("prefill_pairs", pa.float64()),  # Σ c·(p + c/2) over prefill chunks
    ("prefill_own_pairs", pa.float64()),  # Σ c²/2: the chunks' causal pairs among themselves
    ("decode_context", pa.int64()),   # Σ l over decodes (KV tokens after the step)
    ("prefill_context", pa.int64()),  # Σ p over prefill chunks (cached tokens each reads)
    ("tokens_out", pa.int64()),       # tokens emitted at the iteration's end
    ("running", pa.int64()),          # requests holding a slot during the iteration
    ("waiting", pa.int64()),          # arrived requests not yet admitted
])

# Token ids are drawn once from this many random values (no sampling: values do not change the time).
_ID_POOL = 4096


class SlotCache:
    """Keys and values of ``layers`` layers for ``slots`` sequences of up to ``capacity`` tokens
    each: per layer one ``(slots, kv_heads, capacity, head_dim)`` buffer for keys and one for
    values, allocated (and zero-filled, so first touch is not timed) once."""

    def __init__(self, model: LlamaDecoder, slots: int, capacity: int, layers: int | None = None):
        if slots < 1 or capacity < 1:
            raise HarnessError(f"slot cache slots = {slots}, capacity = {capacity}: both must be >= 1")
        n = len(model.layers) if layers is None else layers
        a, dt, dev = model.arch, model.scheme.act_dtype, model.device
        shape = (slots, a.kv_heads, capacity, a.head_dim)
        self.slots, self.capacity = slots, capacity
        self.k = [torch.zeros(shape, dtype=dt, device=dev) for _ in range(n)]
        self.v = [torch.zeros(shape, dtype=dt, device=dev) for _ in range(n)]

    @property
    def layers(self) -> int:
        return len(self.k)

    @property
    def nbytes(self) -> int:
        """Bytes held by keys and values of every layer."""
        return sum(t.numel() * t.element_size() for t in (*self.k, *self.v))


def ragged_step(model: LlamaDecoder, cache: SlotCache | KVCache, ids: torch.Tensor, slots: np.ndarray,
                starts: np.ndarray, counts: np.ndarray, layers: int | None = None) -> torch.Tensor:
    """One engine iteration over a ragged batch: sequence ``j`` computes ``counts[j]`` tokens at
    positions ``starts[j]`` onward (``starts[j]`` tokens already in its slot ``slots[j]`` of
    ``cache``), with the token ids of all sequences concatenated in ``ids`` (1-D, ``Σ counts``).

    The layers' own weights run it: norms and the linear layers (fused QKV, output, fused
    gate/up, down) over all tokens at once; rotary per token position; attention per sequence
    over its own slot (a decode: the query heads of each KV head as that head's query rows, as
    :class:`~calibration.harness.model.DecoderLayer` does; a prefill chunk: causal with the
    diagonal at the bottom right). Returns the logits ``(sequences, vocab)`` of each sequence's
    last computed position, through the first ``layers`` layers (all the cache holds by default).

    ``cache``: a :class:`SlotCache`, or a harness :class:`~calibration.harness.model.KVCache`
    viewed as ``(sequences, length)`` (each sequence its own slot): the harness times its CPU
    steps through this function, so that the calibration and the real loop run the same code."""
    n_layers = cache.layers if layers is None else layers
    if not 1 <= n_layers <= min(cache.layers, len(model.layers)):
        raise HarnessError(f"layers = {layers}: must be between 1 and the {min(cache.layers, len(model.layers))} "
                           f"layers built and cached")
    seqs = int(counts.size)
    total = int(counts.sum())
    if ids.shape != (total,) or seqs < 1:
        raise HarnessError(f"ids of shape {tuple(ids.shape)} for {seqs} sequences of {total} tokens: need a 1-D "
                           f"tensor of Σ counts ids and at least one sequence")
    ends = starts + counts
    positions = cache.k[0].shape[2]
    if int(ends.max()) > positions:
        raise HarnessError(f"a sequence reaches position {int(ends.max())}: the slots hold {positions} tokens")
    arch, dt = model.arch, model.scheme.act_dtype
    hidden, nh, nkv, d = arch.hidden, arch.heads, arch.kv_heads, arch.head_dim
    group = nh // nkv
    # Positions of every token (vectorised: no per-token Python), and the rotary rows for them.
    offsets = np.cumsum(counts) - counts
    pos = torch.from_numpy(np.repeat(starts - offsets, counts) + np.arange(total)).to(model.device)
    cos_all, sin_all = model.rope(0, int(ends.max()))
    cos, sin = cos_all[pos], sin_all[pos]
    # Per sequence: (slot, start, count, offset, end) as Python ints, read once per step.
    plan = list(zip(slots.tolist(), starts.tolist(), counts.tolist(), offsets.tolist(), ends.tolist()))

    x = F.embedding(ids, model.embed).to(dt)
    attn = torch.empty(total, nh * d, dtype=dt, device=model.device)
    for li in range(n_layers):
        layer = model.layers[li]
        kc, vc = cache.k[li], cache.v[li]
        h = F.rms_norm(x, (hidden,), layer.input_norm, RMS_EPS)
        qkv = layer.qkv(h).view(1, total, nh + 2 * nkv, d)
        q, k, v = qkv.split((nh, nkv, nkv), dim=2)
        q, k = _rotate(q, cos, sin)[0], _rotate(k, cos, sin)[0]
        v = v[0]
        for slot, s, c, o, e in plan:
            kc[slot, :, s:e] = k[o:o + c].transpose(0, 1)
            vc[slot, :, s:e] = v[o:o + c].transpose(0, 1)
            # 4-D views (one sequence): SDPA picks its fused CPU kernels for 4-D inputs only.
            keys, values = kc[slot:slot + 1, :, :e], vc[slot:slot + 1, :, :e]
            if c == 1:
                out = F.scaled_dot_product_attention(q[o].view(1, nkv, group, d), keys, values)
                attn[o] = out.reshape(nh * d)
            else:
                out = chunk_attention(q[o:o + c].transpose(0, 1)[None], keys, values, s)
                attn[o:o + c] = out[0].transpose(0, 1).reshape(c, nh * d)
        x = x + layer.o(attn)
        h = F.rms_norm(x, (hidden,), layer.post_norm, RMS_EPS)
        gate, up = layer.gate_up(h).chunk(2, dim=-1)
        x = x + layer.down(F.silu(gate) * up)
    last_rows = torch.from_numpy(offsets + counts - 1).to(model.device)
    last = F.rms_norm(x[last_rows].to(model.scheme.head_dtype), (hidden,), model.norm, RMS_EPS)
    return model.lm_head(last)


@dataclass(frozen=True)
class ServingRun:
    """What one real serving run produced: per-request results (:data:`RESULT_SCHEMA`, in the
    input table's row order), per-iteration records (:data:`ITERATION_SCHEMA`) and plain-JSON
    ``meta`` (settings, the clock, busy and wall time, loop overhead)."""

    requests: pa.Table
    iterations: pa.Table
    meta: dict[str, Any] = field(default_factory=dict)


def _columns(requests: pa.Table) -> tuple[np.ndarray, ...]:
    """The four columns the loop reads, checked, or a one-line HarnessError."""
    need = ("request_id", "arrival_s", "prompt_tokens", "output_tokens")
    missing = [c for c in need if c not in requests.column_names]
    if missing:
        raise HarnessError(f"request table lacks column(s) {', '.join(missing)}; needs {', '.join(need)}")
    if requests.num_rows == 0:
        raise HarnessError("request table has no rows: nothing to serve")
    ids = requests.column("request_id").to_numpy().astype(np.int64)
    arrival = requests.column("arrival_s").to_numpy(zero_copy_only=False).astype(np.float64)
    prompt = requests.column("prompt_tokens").to_numpy().astype(np.int64)
    output = requests.column("output_tokens").to_numpy().astype(np.int64)
    if not np.isfinite(arrival).all() or arrival.min() < 0:
        raise HarnessError("request table column 'arrival_s' must be finite and >= 0 (requests that follow "
                           "others are the simulator's business, not the real loop's)")
    for name, col in (("prompt_tokens", prompt), ("output_tokens", output)):
        if col.min() < 1:
            raise HarnessError(f"request table column {name!r} has value {col.min()}: token counts must be >= 1")
    return ids, arrival, prompt, output


def serve(model: LlamaDecoder, requests: pa.Table, *, max_num_seqs: int, max_num_batched_tokens: int,
          layers: int | None = None, kv_capacity_tokens: int | None = None, block_size: int = 16,
          warmup_steps: int = 2, seed: int = 0, clock: StepClock | None = None,
          between: Callable[[], None] | None = None) -> ServingRun:
    """Serve ``requests`` on ``model`` on the loop's timeline (see the module docstring) and
    return the per-request and per-iteration records.

    ``layers``: run the first this many layers (all built by default). ``kv_capacity_tokens``
    (with ``block_size``): the simulator's KV cache, checked every iteration so that a run the
    simulator would have had to preempt in fails loudly (HarnessError) instead of being compared.
    ``warmup_steps`` untimed steps (a full prefill chunk, a full decode batch) run before the
    timeline starts, as the harness warms up before it times. ``clock``: the step clock (default:
    the device's, :func:`~calibration.harness.clock.step_clock`; tests inject a deterministic
    one, and torch runs on one thread on the CPU either way). ``between()`` is called after each
    iteration, outside its timing and the timeline (:class:`~calibration.harness.alongside.Alongside`
    times calibration steps there)."""
    with step_clock(model.device) as own:
        return _serve(model, requests, max_num_seqs, max_num_batched_tokens, layers, kv_capacity_tokens, block_size,
                      warmup_steps, seed, clock or own, between)


def _serve(model: LlamaDecoder, requests: pa.Table, max_num_seqs: int, max_num_batched_tokens: int,
           layers: int | None, kv_capacity_tokens: int | None, block_size: int, warmup_steps: int, seed: int,
           clock: StepClock, between: Callable[[], None] | None) -> ServingRun:
    """:func:`serve` with its clock taken."""
    if max_num_seqs < 1 or max_num_batched_tokens < max_num_seqs:
        raise HarnessError(f"max_num_seqs = {max_num_seqs}, max_num_batched_tokens = {max_num_batched_tokens}: need "
                           f"max_num_seqs >= 1 and max_num_batched_tokens >= max_num_seqs")
    n_layers = len(model.layers) if layers is None else layers
    if not 1 <= n_layers <= len(model.layers):
        raise HarnessError(f"layers = {layers}: must be between 1 and the {len(model.layers)} layers built")
    ids_in, arrival_in, prompt_in, output_in = _columns(requests)
    order = np.argsort(arrival_in, kind="stable")  # FCFS: arrival order, ties in row order
    arr, prompt, output = arrival_in[order], prompt_in[order], output_in[order]
    n = arr.size
    # The KV a request holds at most: its prompt and every output token but the last.
    longest = int((prompt + output - 1).max())
    cache = SlotCache(model, max_num_seqs, longest, n_layers)
    max_blocks = None if kv_capacity_tokens is None else kv_capacity_tokens // block_size
    if max_blocks is not None and -(-longest // block_size) > max_blocks:
        raise HarnessError(f"a request needs {longest} KV tokens but kv_capacity_tokens = {kv_capacity_tokens}: it "
                           f"could never be served")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    pool = torch.randint(model.arch.vocab, (_ID_POOL,), generator=gen).to(model.device)
    model.rope(0, longest)  # grow the rotary table now, not inside a timed iteration

    def batch_ids(starts: np.ndarray, counts: np.ndarray) -> torch.Tensor:
        total = int(counts.sum())
        pos = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(total)
        return pool[torch.from_numpy(pos % _ID_POOL).to(model.device)]

    # Per-request state, indexed by arrival rank (the sim's RequestState columns, minus preemption).
    num_tokens = prompt.copy()
    computed = np.zeros(n, np.int64)
    generated = np.zeros(n, np.int64)
    slot_of = np.full(n, -1, np.int64)
    first_sched = np.full(n, np.nan)
    first_tok = np.full(n, np.nan)
    last_tok = np.full(n, np.nan)
    run = np.empty(0, np.int64)       # admitted requests, in admission order
    admitted = 0                      # arrival ranks [admitted, arrived) are waiting (FCFS)
    free = list(range(max_num_seqs - 1, -1, -1))
    finished = 0
    rec: dict[str, list] = {f.name: [] for f in ITERATION_SCHEMA}
    budget = max_num_batched_tokens

    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside an iteration is noise, as in the harness's timings
    try:
        with torch.inference_mode():
            # Warm-up: one-time costs (kernel selection, first touch) land here, not in the first iteration.
            chunk = min(budget, int(prompt.max()), longest)
            for _ in range(warmup_steps):
                ragged_step(model, cache, batch_ids(np.zeros(1, np.int64), np.array([chunk])), np.zeros(1, np.int64),
                            np.zeros(1, np.int64), np.array([chunk]), n_layers)
                b = np.arange(max_num_seqs)
                ctx = np.full(max_num_seqs, min(chunk, longest - 1))
                ragged_step(model, cache, batch_ids(ctx, np.ones_like(b)), b, ctx, np.ones_like(b), n_layers)
            clock.sync()
            wall0, busy_wall = time.perf_counter(), 0.0
            now = 0.0  # the loop's timeline: measured iterations, and idle gaps jumped over
            while finished < n:
                arrived = int(np.searchsorted(arr, now, side="right"))
                if not run.size and admitted == arrived:
                    now = max(now, float(arr[arrived]))  # idle until the next arrival
                    continue
                t_start = now
                w0 = time.perf_counter()
                c0 = clock.now()
                # -- schedule: ContinuousScheduler.schedule with chunked prefill, mirrored --------
                rem = num_tokens[run] - computed[run]
                before = np.cumsum(rem) - rem
                n_run = np.minimum(rem, np.maximum(budget - before, 0))
                left = budget - int(n_run.sum())
                new_n: list[int] = []
                while admitted < arrived and left > 0 and run.size + len(new_n) < max_num_seqs:
                    c = min(int(num_tokens[admitted] - computed[admitted]), left)
                    slot_of[admitted] = free.pop()
                    first_sched[admitted] = t_start
                    new_n.append(c)
                    left -= c
                    admitted += 1
                if new_n:
                    run = np.concatenate([run, np.arange(admitted - len(new_n), admitted)])
                    n_run = np.concatenate([n_run, np.asarray(new_n, np.int64)])
                sel = n_run > 0
                idx, cnt = run[sel], n_run[sel]
                starts = computed[idx]
                if max_blocks is not None:
                    blocks = int((-(-(computed[run] + n_run) // block_size)).sum())
                    if blocks > max_blocks:
                        raise HarnessError(f"{blocks} KV blocks needed of {max_blocks}: the simulator would be short "
                                           f"of blocks here (and preempt or hold requests back); this loop never does")
                pre = starts < prompt[idx]
                ids = batch_ids(starts, cnt)
                # -- one forward pass for the whole batch ------------------------------------------
                f0 = clock.now()
                ragged_step(model, cache, ids, slot_of[idx], starts, cnt, n_layers)
                f1 = clock.stamp()
                # -- commit: tokens computed, emitted at the iteration's end -----------------------
                comp = starts + cnt
                computed[idx] = comp
                emit = idx[comp == num_tokens[idx]]
                g = generated[emit] + 1
                generated[emit] = g
                num_tokens[emit] += 1
                done = emit[g == output[emit]]
                if done.size:
                    free.extend(slot_of[done].tolist())
                    run = run[~np.isin(run, done)]
                    finished += done.size
                took = clock.now() - c0
                now = t_end = t_start + took
                busy_wall += time.perf_counter() - w0
                first_tok[emit[g == 1]] = t_end
                last_tok[emit] = t_end
                pc, ps = cnt[pre], starts[pre]
                for name, value in (("start_s", t_start), ("duration_s", took), ("forward_s", f1 - f0),
                                    ("tokens", int(cnt.sum())), ("sequences", int(idx.size)),
                                    ("prefill_tokens", int(pc.sum())), ("prefill_seqs", int(pc.size)),
                                    ("decode_seqs", int(idx.size - pc.size)),
                                    ("prefill_pairs", float(np.dot(pc, ps + pc / 2.0))),
                                    ("prefill_own_pairs", float(np.dot(pc, pc)) / 2.0),
                                    ("decode_context", int((starts[~pre] + 1).sum())),
                                    ("prefill_context", int(ps.sum())), ("tokens_out", int(emit.size)),
                                    ("running", int(run.size + done.size)), ("waiting", arrived - admitted)):
                    rec[name].append(value)
                if between is not None:
                    between()
            wall = time.perf_counter() - wall0
    finally:
        if gc_was_enabled:
            gc.enable()

    assert (generated == output).all() and (computed == prompt + output - 1).all(), "a request was not served whole"
    # Back to the input's row order.
    back = np.empty(n, np.int64)
    back[order] = np.arange(n)
    a, fs, ft, lt = arr[back], first_sched[back], first_tok[back], last_tok[back]
    e2e, ttft = lt - a, ft - a
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(output_in > 1, (e2e - ttft) / (output_in - 1), np.nan)
    results = pa.table({"request_id": ids_in, "arrival_s": a, "prompt_tokens": prompt_in, "output_tokens": output_in,
                        "first_scheduled_s": fs, "first_token_s": ft, "last_token_s": lt, "queue_s": fs - a,
                        "ttft_s": ttft, "tpot_s": tpot, "e2e_s": e2e}, schema=RESULT_SCHEMA)
    iterations = pa.table(rec, schema=ITERATION_SCHEMA)
    dur = np.asarray(rec["duration_s"])
    fwd = np.asarray(rec["forward_s"])
    meta = {
        "device": str(model.device), "threads": torch.get_num_threads(), "scheme": model.scheme.description,
        "model": model.arch.key, "layers": n_layers, "max_num_seqs": max_num_seqs,
        "max_num_batched_tokens": max_num_batched_tokens, "requests": n, "iterations": len(dur),
        "clock": clock.name,
        "busy_s": float(dur.sum()), "timeline_s": float(now),
        "loop_overhead_s": float((dur - fwd).sum()),
        # Wall seconds the run took (busy iterations only, idle gaps are jumped over), and the share
        # of them the step clock counted: about 1 on a quiet machine, about 0.5 where another
        # process shared the loop's core. The timeline does not depend on it; it says how shared
        # the machine was.
        "wall_s": float(wall), "busy_wall_s": float(busy_wall),
        "clock_share": float(dur.sum() / max(busy_wall, 1e-12)),
        "kv_cache_bytes": cache.nbytes, "slot_tokens": longest,
        "timing": f"{clock.name}; duration_s spans scheduling, the forward pass and bookkeeping, forward_s the "
                  "forward pass alone; the timeline advances by duration_s and jumps idle gaps to the next "
                  "arrival; torch.inference_mode, garbage collector paused",
    }
    return ServingRun(requests=results, iterations=iterations, meta=meta)
