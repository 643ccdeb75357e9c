"""The RequestTable: one row per request, the only thing the engine reads from a workload.

Columns (``REQUEST_SCHEMA``):

- ``request_id``: 0..n-1, the row number.
- ``arrival_s``: when the request is sent; NaN when it is released by the engine instead, after
  the request ``after_id`` ends plus ``think_s`` (later turns of a conversation, closed-loop users).
- ``prompt_tokens``, ``output_tokens``: >= 1, prompt + output within the model's context.
- ``class``, ``priority``: the request class and its priority (lower is served first).
- ``session_id``: the conversation (or closed-loop user's conversation) it belongs to; -1 if none.
- ``prefix_id``, ``prefix_tokens``: the prompt's first ``prefix_tokens`` tokens are the content
  named ``prefix_id``, shared with other requests that carry the same id (a system prompt, or the
  history a later turn re-sends), so a prefix cache can reuse them; -1 and 0 when none.
- ``after_id``, ``think_s``: see ``arrival_s``; -1 and 0 for requests with an arrival time.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from workloads.arrivals import ClosedLoopArrivals, TraceArrivals
from workloads.spec import ClassSpec, WorkloadSpec

__all__ = ["REQUEST_SCHEMA", "generate", "request_table"]

REQUEST_SCHEMA = pa.schema([
    ("request_id", pa.int64()),
    ("arrival_s", pa.float64()),
    ("prompt_tokens", pa.int64()),
    ("output_tokens", pa.int64()),
    ("class", pa.string()),
    ("priority", pa.int64()),
    ("session_id", pa.int64()),
    ("prefix_id", pa.int64()),
    ("prefix_tokens", pa.int64()),
    ("after_id", pa.int64()),
    ("think_s", pa.float64()),
])

# Columns a hand-made table may omit, and the value they then take.
OPTIONAL_COLUMNS = {"priority": 0, "session_id": -1, "prefix_id": -1, "prefix_tokens": 0, "after_id": -1,
                    "think_s": 0.0}


def request_table(columns: dict[str, np.ndarray], class_index: np.ndarray, class_names: list[str]) -> pa.Table:
    """Assemble a RequestTable from numpy columns (missing optional ones take their defaults);
    the class column is built from indices into ``class_names`` (no per-row Python strings)."""
    n = class_index.size
    cls = pa.DictionaryArray.from_arrays(pa.array(class_index.astype(np.int32)), pa.array(class_names, pa.string()))
    data = {"request_id": np.arange(n, dtype=np.int64)}
    for f in REQUEST_SCHEMA:
        if f.name == "request_id":
            continue
        if f.name == "class":
            data["class"] = cls.cast(pa.string())
        elif f.name in columns:
            data[f.name] = columns[f.name]
        else:
            data[f.name] = np.full(n, OPTIONAL_COLUMNS[f.name], dtype=f.type.to_pandas_dtype())
    return pa.table(data, schema=REQUEST_SCHEMA)


# Schema metadata of a drawn table: how many of its requests were cut to fit the model's context
# (the simulation's summary reports it, and warns).
TRUNCATED_KEY = b"capsim.truncated_requests"


def with_truncated(table: pa.Table, count: int) -> pa.Table:
    """``table`` saying that ``count`` of its requests were cut to fit the context (see :data:`TRUNCATED_KEY`)."""
    return table.replace_schema_metadata({**(table.schema.metadata or {}), TRUNCATED_KEY: str(count).encode()})


class _Requests:
    """The requests of one class's conversations, in (conversation, turn) order."""

    def __init__(self, conv: np.ndarray, turn: np.ndarray, prompt: np.ndarray, output: np.ndarray,
                 prefix_tokens: np.ndarray, sys_variant: np.ndarray, think: np.ndarray, cut: np.ndarray):
        self.conv, self.turn, self.prompt, self.output = conv, turn, prompt, output
        self.prefix_tokens, self.sys_variant, self.think = prefix_tokens, sys_variant, think
        self.cut = cut  # cut to fit the model's context


def _class_requests(c: ClassSpec, m: int, ss: np.random.SeedSequence, max_context: int | None) -> _Requests:
    """Draw ``m`` conversations of class ``c`` (single requests when it has no sessions)."""
    s_prompt, s_output, s_turns, s_sys_len, s_sys_pick, s_think = ss.spawn(6)
    assert c.prompt_tokens is not None and c.output_tokens is not None
    turns = np.ones(m, np.int64) if c.sessions is None else c.sessions.turns.sample(np.random.default_rng(s_turns), m)
    r = int(turns.sum())
    conv = np.repeat(np.arange(m), turns)
    first = np.concatenate([[0], np.cumsum(turns)[:-1]]) if m else np.zeros(0, np.int64)
    turn = np.arange(r) - first[conv]
    # Prompt and output lengths from (possibly correlated) uniforms: a Gaussian copula.
    rp, ro = np.random.default_rng(s_prompt), np.random.default_rng(s_output)
    if c.length_correlation == 0:
        up, uo = rp.random(r), ro.random(r)
    else:
        from scipy.special import ndtr

        z1, z2 = rp.standard_normal(r), ro.standard_normal(r)
        rho = c.length_correlation
        up, uo = ndtr(z1), ndtr(rho * z1 + np.sqrt(1 - rho * rho) * z2)
    user = c.prompt_tokens.quantile(up)
    output = c.output_tokens.quantile(uo)
    # Drawn for every row before the context cut, so a cut leaves other conversations' draws alone.
    think = np.zeros(r)
    if c.sessions is not None:
        think = c.sessions.think_time.sample(np.random.default_rng(s_think), r)
    sys_len = np.zeros(m, np.int64)
    variant = np.full(m, -1, np.int64)
    if c.system_prompt is not None:
        sp = c.system_prompt
        lengths = sp.tokens.sample(np.random.default_rng(s_sys_len), sp.variants)
        w = np.ones(sp.variants) if sp.popularity == "uniform" else 1.0 / np.arange(1, sp.variants + 1) ** sp.zipf_exponent
        variant = np.random.default_rng(s_sys_pick).choice(sp.variants, size=m, p=w / w.sum())
        sys_len = lengths[variant]
    # Turn k re-sends the history: the system prompt, every earlier user message and response.
    step = user + output
    cum = np.cumsum(step) - step  # exclusive running total over all rows
    history = cum - cum[first[conv]] if r else cum
    prefix = sys_len[conv] + history
    prompt = prefix + user
    if max_context is not None:
        # A first turn (or single request) is truncated the way a client must: prompt, then output.
        # A later turn that would outgrow the context ends its conversation, so prefixes stay exact.
        over = (turn > 0) & (prompt + output > max_context)
        if over.any():
            first_over = np.full(m, np.iinfo(np.int64).max)
            np.minimum.at(first_over, conv[over], turn[over])
            keep = turn < first_over[conv]
            conv, turn, prompt, output, prefix, think = (conv[keep], turn[keep], prompt[keep], output[keep],
                                                         prefix[keep], think[keep])
        cut = _fit_context(prompt, output, prefix, max_context)
    else:
        cut = np.zeros(prompt.size, bool)
    return _Requests(conv, turn, prompt, output, prefix, variant[conv], think, cut)


def _fit_context(prompt: np.ndarray, output: np.ndarray, prefix: np.ndarray, max_context: int) -> np.ndarray:
    """Cut requests in place to fit ``max_context`` the way a client must (prompt to the context
    less one token, then output to what is left); which rows were cut."""
    cut = prompt + output > max_context
    np.minimum(prompt, max_context - 1, out=prompt)
    np.minimum(prefix, prompt, out=prefix)
    np.minimum(output, max_context - prompt, out=output)
    return cut


def generate(spec: WorkloadSpec, seed: int, max_context: int | None = None) -> pa.Table:
    """Draw the request table for ``spec``; identical for identical (spec, seed).

    Independent streams (arrivals, class choice, closed-loop think times, then each class's own)
    come from ``SeedSequence(seed).spawn`` so that changing one class leaves the others' draws
    alone. With ``max_context`` given, prompt + output never exceed it.
    """
    s_arr, s_cls, s_think, *s_class = np.random.SeedSequence(seed).spawn(3 + len(spec.classes))
    a = spec.arrival
    n, duration = spec.num_requests, spec.duration_s
    names = [c.name for c in spec.classes]
    rng_cls = np.random.default_rng(s_cls)
    shares = np.array([c.share for c in spec.classes], dtype=np.float64)

    if isinstance(a, TraceArrivals) and a.lengths == "trace":
        return _trace_lengths(spec, a, rng_cls, shares, names, max_context, seed)

    # Conversation starts: n starts always yield at least n requests; the surplus is cut below.
    if isinstance(a, ClosedLoopArrivals):
        assert n is not None
        start = np.full(n, np.nan)
    elif isinstance(a, TraceArrivals):
        start, _ = a.replay(n, duration)
    else:
        start = a.times(np.random.default_rng(s_arr), n, duration)
    m = start.size
    if m == 0:
        _none_arrived(spec, seed)
    cls_idx = rng_cls.choice(len(spec.classes), size=m, p=shares / shares.sum())

    # Per class, its conversations' requests; then every request placed in start order.
    parts = [_class_requests(c, int((cls_idx == k).sum()), s_class[k], max_context)
             for k, c in enumerate(spec.classes)]
    conv_of_start = np.empty(m, np.int64)  # rank of each start within its class
    for k in range(len(parts)):
        sel = cls_idx == k
        conv_of_start[sel] = np.arange(int(sel.sum()))
    per_start = np.zeros(m, np.int64)
    for k, p in enumerate(parts):
        per_start[cls_idx == k] = np.bincount(p.conv, minlength=int((cls_idx == k).sum()))
    offset = np.concatenate([[0], np.cumsum(per_start)])
    total = int(offset[-1])
    cols = {name: np.empty(total, np.int64) for name in ("prompt", "output", "prefix", "turn", "start", "variant")}
    think = np.empty(total)
    cls_row = np.empty(total, np.int64)
    cut = np.empty(total, bool)
    for k, p in enumerate(parts):
        starts_k = np.flatnonzero(cls_idx == k)
        s_of_req = starts_k[p.conv]
        pos = offset[s_of_req] + p.turn
        cols["prompt"][pos], cols["output"][pos], cols["prefix"][pos] = p.prompt, p.output, p.prefix_tokens
        cols["turn"][pos], cols["start"][pos], cols["variant"][pos] = p.turn, s_of_req, p.sys_variant
        think[pos] = p.think
        cls_row[pos] = k
        cut[pos] = p.cut
    keep = total if n is None else min(n, total)
    sl = slice(0, keep)
    turn, st, cls_row, think = cols["turn"][sl], cols["start"][sl], cls_row[sl], think[sl]
    prompt, output, prefix, variant = cols["prompt"][sl], cols["output"][sl], cols["prefix"][sl], cols["variant"][sl]

    rows = np.arange(keep, dtype=np.int64)
    arrival = np.where(turn == 0, start[st], np.nan)
    after = np.where(turn == 0, -1, rows - 1)
    if isinstance(a, ClosedLoopArrivals):
        # Conversations go to users round-robin; each user's rows form one chain.
        user = st % a.users
        arrival, after, think = _chain_users(user, turn, think, a, np.random.default_rng(s_think))
    else:
        think = np.where(turn == 0, 0.0, think)

    # Prefix identities: system-prompt variants first (per class), then one per re-sent history.
    sessions = np.array([c.sessions is not None for c in spec.classes])
    sys_base = np.concatenate([[0], np.cumsum([c.system_prompt.variants if c.system_prompt else 0
                                                for c in spec.classes])])
    prefix_id = np.where(variant >= 0, sys_base[cls_row] + variant, -1)
    prefix_id = np.where(turn > 0, sys_base[-1] + rows, prefix_id)
    prefix = np.where(prefix_id >= 0, prefix, 0)
    session = np.where(sessions[cls_row], st, -1)
    return with_truncated(request_table({
        "arrival_s": arrival, "prompt_tokens": prompt, "output_tokens": output,
        "priority": np.array([c.priority for c in spec.classes], np.int64)[cls_row],
        "session_id": session, "prefix_id": prefix_id, "prefix_tokens": prefix, "after_id": after, "think_s": think,
    }, cls_row, names), int(cut[sl].sum()))


def _none_arrived(spec: WorkloadSpec, seed: int) -> None:
    """Refuse a draw with no request in it (validation refuses a workload expecting fewer than one;
    one expecting a few can still draw none): the engine would report an empty run."""
    expect = getattr(spec.arrival, "expected_count", None)
    about = f" (~{expect(spec.duration_s):.2g} expected)" if expect is not None and spec.duration_s else ""
    raise ValueError(f"no request arrives before duration_s = {spec.duration_s:g} with seed {seed}{about}: "
                     "raise the rate or duration_s")


def _chain_users(user: np.ndarray, turn: np.ndarray, think: np.ndarray, a: ClosedLoopArrivals,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrival, after_id and think_s of closed-loop rows: each user's first request at its ramp-up
    time, every later one after the user's previous request, with the session's think time between
    turns and the loop's think time between conversations."""
    n = user.size
    order = np.argsort(user, kind="stable")  # rows of each user, in row order
    u_sorted = user[order]
    is_first = np.concatenate([[True], u_sorted[1:] != u_sorted[:-1]]) if n else np.zeros(0, bool)
    after = np.full(n, -1, np.int64)
    after[order[~is_first]] = order[np.flatnonzero(~is_first) - 1]
    arrival = np.full(n, np.nan)
    arrival[order[is_first]] = a.first_times(u_sorted[is_first])
    loop_think = a.think_time.sample(rng, n)
    think = np.where(turn == 0, loop_think, think)
    think[after < 0] = 0.0
    return arrival, after, think


def _trace_lengths(spec: WorkloadSpec, a: TraceArrivals, rng_cls: np.random.Generator, shares: np.ndarray,
                   names: list[str], max_context: int | None, seed: int) -> pa.Table:
    """A trace replayed with its own lengths and prefixes; classes (by share) set SLOs and priority."""
    times, idx = a.replay(spec.num_requests, spec.duration_s)
    if times.size == 0:
        _none_arrived(spec, seed)
    t = a.load().table
    col = {name: t.column(name).to_numpy()[idx] for name in ("prompt_tokens", "output_tokens", "session_id",
                                                             "prefix_id", "prefix_tokens")}
    cls_idx = rng_cls.choice(len(names), size=times.size, p=shares / shares.sum())
    prompt, output, prefix = col["prompt_tokens"].copy(), col["output_tokens"].copy(), col["prefix_tokens"].copy()
    cut = 0 if max_context is None else int(_fit_context(prompt, output, prefix, max_context).sum())
    return with_truncated(request_table({
        "arrival_s": times, "prompt_tokens": prompt, "output_tokens": output,
        "priority": np.array([c.priority for c in spec.classes], np.int64)[cls_idx],
        "session_id": col["session_id"], "prefix_id": col["prefix_id"], "prefix_tokens": prefix,
    }, cls_idx, names), cut)
