"""Multi-turn sessions, shared system prompts and the closed loop: in the RequestTable that
``workloads.generate`` draws, and in the engine that releases follow-up requests.

Table structure is checked exactly, row by row: turn k re-sends turn k-1's prompt and response
plus a new user message, its prefix is exactly that history, it names its predecessor in
``after_id`` and carries no arrival time; a conversation that would outgrow the context stops
there (compared with the same seed drawn without a context limit). Frequencies (Zipf popularity
of system-prompt variants, turns per conversation, think times) are chi-square or KS tests with
p-values above 1e-3 on fixed seeds.

In the engine, release times are checked exactly (to float rounding): a follower arrives its
think time after its predecessor finished, or was refused. Closed-loop throughput is checked
twice: against the interactive response-time law X = N / (R + Z), which holds on every sample
path up to edge effects (fast, within four batch-means standard errors), and, behind ``slow``,
against the exact throughput of the finite-source M/M/1//N queue (one sequence per iteration,
service proportional to an exponential prompt length), an independent queueing-theory result.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from sim import Scenario, SimResult, load_scenario, simulate
from tests.helpers import requests
from workloads import WorkloadSpec, generate

Z = 4.0
P_MIN = 1e-3

_USER = {"dist": "uniform", "low": 20, "high": 400}
_CHAT: dict[str, Any] = {
    "name": "chat", "share": 3.0, "prompt_tokens": _USER, "output_tokens": {"dist": "uniform", "low": 10, "high": 600},
    "sessions": {"turns": {"dist": "uniform", "low": 1, "high": 12}, "think_time": {"mean_s": 15.0}},
    "system_prompt": {"tokens": {"dist": "uniform", "low": 50, "high": 1500}, "variants": 8, "popularity": "zipf",
                      "zipf_exponent": 1.2},
}
_BATCH: dict[str, Any] = {"name": "batch", "prompt_tokens": {"dist": "uniform", "low": 100, "high": 2000},
                          "output_tokens": {"dist": "fixed", "value": 50}}


def spec(**stop: Any) -> WorkloadSpec:
    return WorkloadSpec.model_validate({"arrival": {"rate_per_s": 2.0}, "classes": [_CHAT, _BATCH], **stop})


def cols(table: pa.Table) -> dict[str, np.ndarray]:
    out = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    out["class"] = np.asarray(table.column("class").to_pylist())
    return out


# ----------------------------------------------------------------------------------------------
# The table


def test_turns_resend_the_history_and_name_their_predecessor():
    max_context = 4096
    c = cols(generate(spec(num_requests=20_000), seed=1, max_context=max_context))
    n = c["request_id"].size
    assert n == 20_000
    np.testing.assert_array_equal(c["request_id"], np.arange(n))
    fol = np.flatnonzero(c["after_id"] >= 0)
    head = np.flatnonzero(c["after_id"] < 0)
    prev = c["after_id"][fol]
    assert fol.size > n // 2, "most chat requests should be later turns"
    # A follower: same conversation and class, released by the engine after a think time.
    assert np.all(prev < fol), "a turn follows an earlier row"
    np.testing.assert_array_equal(c["session_id"][fol], c["session_id"][prev])
    np.testing.assert_array_equal(c["class"][fol], c["class"][prev])
    assert np.all(c["session_id"][fol] >= 0) and np.all(c["class"][fol] == "chat")
    assert np.all(np.isnan(c["arrival_s"][fol])) and np.all(c["think_s"][fol] > 0)
    # Turn k's prompt = turn k-1's prompt + its response + a new user message from the class's law,
    # and its cached prefix is exactly that history.
    history = c["prompt_tokens"][prev] + c["output_tokens"][prev]
    np.testing.assert_array_equal(c["prefix_tokens"][fol], history)
    new = c["prompt_tokens"][fol] - history
    assert new.min() >= _USER["low"] and new.max() <= _USER["high"]
    # Requests with an arrival time: no predecessor, no think time, in arrival order.
    assert np.all(np.isfinite(c["arrival_s"][head])) and np.all(c["think_s"][head] == 0)
    assert np.all(np.diff(c["arrival_s"][head]) >= 0)
    # First chat turns start with a system prompt variant; batch requests have neither.
    first_chat = head[c["class"][head] == "chat"]
    assert np.all((c["prefix_id"][first_chat] >= 0) & (c["prefix_id"][first_chat] < 8))
    sys_len = c["prefix_tokens"][first_chat]
    assert sys_len.min() >= 50 and sys_len.max() <= 1500
    user = c["prompt_tokens"][first_chat] - sys_len
    assert user.min() >= _USER["low"] and user.max() <= _USER["high"]
    batch = c["class"] == "batch"
    assert np.all(c["session_id"][batch] == -1) and np.all(c["prefix_id"][batch] == -1)
    assert np.all(c["prefix_tokens"][batch] == 0) and np.all(c["after_id"][batch] == -1)
    # Every conversation is one chain: one head, and no request followed by two others.
    sessions = c["session_id"][c["session_id"] >= 0]
    heads_per_session = np.bincount(c["session_id"][first_chat], minlength=sessions.max() + 1)
    assert np.all(heads_per_session[np.unique(sessions)] == 1)
    assert np.unique(prev).size == prev.size
    # Nothing outgrows the context.
    assert np.all(c["prompt_tokens"] + c["output_tokens"] <= max_context)
    assert c["prompt_tokens"].min() >= 1 and c["output_tokens"].min() >= 1


def test_conversations_end_early_rather_than_outgrow_the_context():
    s = spec(duration_s=2_000.0)
    full = cols(generate(s, seed=2))
    cut = cols(generate(s, seed=2, max_context=4096))
    assert np.all(cut["prompt_tokens"] + cut["output_tokens"] <= 4096)
    # The same conversations start at the same times either way...
    np.testing.assert_array_equal(full["arrival_s"][full["after_id"] < 0], cut["arrival_s"][cut["after_id"] < 0])
    ended = 0
    for sid in np.unique(full["session_id"][full["session_id"] >= 0]):
        f, k = np.flatnonzero(full["session_id"] == sid), np.flatnonzero(cut["session_id"] == sid)
        assert 1 <= k.size <= f.size
        # ...and a cut conversation is the same conversation, stopped before its first turn that
        # would not fit (first turns here are at most 1,500 + 400 + 600 tokens: never truncated).
        # (prefix_id labels are not compared: a history's label is its row, which shifts. Think
        # times are compared in the test below.)
        for name in ("prompt_tokens", "output_tokens", "prefix_tokens"):
            np.testing.assert_array_equal(cut[name][k], full[name][f[: k.size]], err_msg=name)
        if k.size < f.size:
            ended += 1
            nxt = f[k.size]
            assert full["prompt_tokens"][nxt] + full["output_tokens"][nxt] > 4096
    assert ended > 50, "the context limit should end some conversations early"


def test_context_limit_leaves_think_times_of_uncut_conversations_alone():
    # Prompts and outputs are drawn for every turn before the cut, so a conversation that is not
    # cut keeps them; its think times should be kept the same way (common random numbers when
    # comparing models with different context lengths on the same seed).
    s = spec(duration_s=2_000.0)
    full = cols(generate(s, seed=2))
    cut = cols(generate(s, seed=2, max_context=4096))
    for sid in np.unique(full["session_id"][full["session_id"] >= 0]):
        f, k = np.flatnonzero(full["session_id"] == sid), np.flatnonzero(cut["session_id"] == sid)
        if k.size == f.size:
            np.testing.assert_array_equal(cut["think_s"][k], full["think_s"][f], err_msg=f"session {sid}")


def test_same_prefix_id_means_same_prefix_tokens():
    c = cols(generate(spec(num_requests=20_000), seed=3, max_context=8192))
    pid, ptok = c["prefix_id"], c["prefix_tokens"]
    assert np.all((pid < 0) == (ptok == 0))
    ids = pid[pid >= 0]
    order = np.argsort(ids, kind="stable")
    sorted_ids, sorted_tok = ids[order], ptok[pid >= 0][order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    first = np.repeat(sorted_tok[starts], np.diff(np.r_[starts, sorted_ids.size]))
    np.testing.assert_array_equal(sorted_tok, first)
    # System-prompt variants are shared; each re-sent history is its own prefix.
    later = pid[c["after_id"] >= 0]
    assert np.unique(later).size == later.size and later.min() >= 8


@pytest.mark.parametrize("popularity", ["zipf", "uniform"])
def test_system_prompt_popularity(popularity):
    exponent, variants = 1.2, 8
    cls = {"name": "x", "prompt_tokens": _USER, "output_tokens": {"dist": "fixed", "value": 5},
           "system_prompt": {"tokens": {"dist": "uniform", "low": 50, "high": 1500}, "variants": variants,
                             "popularity": popularity, "zipf_exponent": exponent}}
    spec_ = WorkloadSpec.model_validate({"arrival": {"rate_per_s": 1.0}, "num_requests": 50_000, "classes": [cls]})
    t = generate(spec_, 4)
    counts = np.bincount(t.column("prefix_id").to_numpy(), minlength=variants)
    assert counts.size == variants
    w = 1.0 / np.arange(1, variants + 1) ** exponent if popularity == "zipf" else np.ones(variants)
    assert stats.chisquare(counts, counts.sum() * w / w.sum()).pvalue > P_MIN
    if popularity == "zipf":
        assert np.all(np.diff(counts) < 0), "Zipf: variant 0 most popular, then 1, ..."


def test_class_shares_apply_to_conversation_starts():
    # chat (share 3, several turns each) and batch (share 1, single requests): a quarter of the
    # requests with an arrival time are batch, whatever the number of turns chat adds.
    c = cols(generate(spec(duration_s=10_000.0), seed=7))
    heads = c["class"][c["after_id"] < 0]
    batch = int((heads == "batch").sum())
    assert abs(batch - heads.size / 4) < Z * math.sqrt(heads.size * 0.25 * 0.75)
    assert (c["class"] == "chat").sum() > 4 * (c["class"] == "batch").sum()


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 12_345])
def test_num_requests_is_exact_with_sessions(n):
    assert generate(spec(num_requests=n), seed=5, max_context=4096).num_rows == n
    closed = WorkloadSpec.model_validate({"arrival": {"process": "closed_loop", "users": 3}, "num_requests": n,
                                         "classes": [_CHAT]})
    assert generate(closed, seed=5, max_context=4096).num_rows == n


def test_turns_and_think_times_follow_their_laws():
    # By duration and without a context limit, no conversation is cut: rows per conversation
    # follow the turns law (uniform on 1..12), and later turns' think times are exponential.
    c = cols(generate(WorkloadSpec.model_validate({"arrival": {"rate_per_s": 2.0}, "duration_s": 5_000.0,
                                                   "classes": [_CHAT]}), seed=6))
    turns = np.bincount(c["session_id"])
    counts = np.bincount(turns, minlength=13)[1:]
    assert counts.size == 12
    assert stats.chisquare(counts).pvalue > P_MIN
    think = c["think_s"][c["after_id"] >= 0]
    assert stats.kstest(think, stats.expon(scale=15.0).cdf).pvalue > P_MIN


# ----------------------------------------------------------------------------------------------
# The engine

_PROFILE = {"kind": "explicit", "fixed_s": 0.01, "per_token_s": 1e-5, "kv_capacity_tokens": 1 << 22}


def scenario(workload: dict[str, Any], **kw: Any) -> Scenario:
    return load_scenario({"profile": _PROFILE, "workload": workload, **kw})


def finish_times(result: SimResult) -> tuple[np.ndarray, np.ndarray]:
    q = result.requests
    arrival = q.column("arrival_s").to_numpy()
    return arrival, arrival + q.column("e2e_s").to_numpy()


def test_a_later_turn_arrives_its_think_time_after_the_previous_one_finishes():
    s = scenario({"arrival": {"rate_per_s": 2.0}, "num_requests": 600, "classes": [{
        "name": "chat", "prompt_tokens": {"dist": "uniform", "low": 10, "high": 200},
        "output_tokens": {"dist": "uniform", "low": 5, "high": 50},
        "sessions": {"turns": {"dist": "uniform", "low": 1, "high": 5}, "think_time": {"mean_s": 0.5}},
        "system_prompt": {"tokens": {"dist": "fixed", "value": 100}, "variants": 2}}]})
    table = generate(s.workload, s.seed, s.max_context)
    result = simulate(s)
    assert result.summary["requests"]["completed"] == 600
    arrival, finish = finish_times(result)
    after, think = table.column("after_id").to_numpy(), table.column("think_s").to_numpy()
    fol = np.flatnonzero(after >= 0)
    assert fol.size > 200
    np.testing.assert_allclose(arrival[fol], finish[after[fol]] + think[fol], rtol=1e-12, atol=1e-9)
    head = after < 0
    np.testing.assert_array_equal(arrival[head], table.column("arrival_s").to_numpy()[head])


def _in_system(arrival: np.ndarray, finish: np.ndarray) -> np.ndarray:
    """Requests in the system after all the events of each instant, over [arrival, finish)
    intervals. Instants are compared to 1 ns: ``finish`` is rebuilt as arrival + e2e, which can
    differ from the engine's clock by an ulp."""
    t = np.round(np.concatenate([arrival, finish]), 9)
    d = np.concatenate([np.ones(arrival.size, np.int64), -np.ones(finish.size, np.int64)])
    order = np.argsort(t, kind="stable")
    level = np.cumsum(d[order])
    last_of_instant = np.r_[np.flatnonzero(np.diff(t[order]) > 0), t.size - 1]
    return level[last_of_instant]


@pytest.mark.parametrize("think", [0.0, 0.3])
def test_a_closed_loop_never_has_more_than_its_users_in_the_system(think):
    users = 6
    s = scenario({"arrival": {"process": "closed_loop", "users": users, "think_time": {"mean_s": think}},
                  "num_requests": 2_000,
                  "classes": [{"name": "x", "prompt_tokens": {"dist": "uniform", "low": 10, "high": 500},
                               "output_tokens": {"dist": "uniform", "low": 1, "high": 20}}]})
    table = generate(s.workload, s.seed, s.max_context)
    result = simulate(s)
    assert result.summary["requests"]["completed"] == 2_000
    arrival, finish = finish_times(result)
    level = _in_system(arrival, finish)
    assert level.max() == users  # all users start at once (no ramp-up)
    if think == 0:
        # Each next request is sent the instant the previous one ends: exactly N in flight until
        # the users run out of requests.
        assert level[0] == users
        assert np.all(level[: np.argmax(level < users)] == users)
        assert np.all(np.diff(level[np.argmax(level < users):]) <= 0), "then users run out one by one"
    after, th = table.column("after_id").to_numpy(), table.column("think_s").to_numpy()
    fol = after >= 0
    np.testing.assert_allclose(arrival[fol], finish[after[fol]] + th[fol], rtol=1e-12, atol=1e-9)


def _closed_loop_run(users: int, think: float, n: int, seed: int = 0) -> tuple[pa.Table, SimResult]:
    s = scenario({"arrival": {"process": "closed_loop", "users": users, "think_time": {"mean_s": think}},
                  "num_requests": n,
                  "classes": [{"name": "x", "prompt_tokens": {"dist": "uniform", "low": 100, "high": 4000},
                               "output_tokens": {"dist": "uniform", "low": 1, "high": 12}}]},
                 seed=seed, profile={**_PROFILE, "fixed_s": 0.02, "per_token_s": 1e-4},
                 engine={"max_num_batched_tokens": 2048})
    table = generate(s.workload, s.seed, s.max_context)
    return table, simulate(s)


def test_closed_loop_obeys_the_interactive_response_time_law():
    users, think = 8, 1.0
    table, result = _closed_loop_run(users, think, 8_000)
    arrival, finish = finish_times(result)
    e2e = finish - arrival
    after, th = table.column("after_id").to_numpy(), table.column("think_s").to_numpy()
    # On every sample path, each user's time is the sum of their responses and thinks: the last
    # finish of user u is Σ (response + think) over u's requests, to rounding.
    last = np.flatnonzero(~np.isin(np.arange(after.size), after[after >= 0]))  # requests nobody follows
    assert last.size == users
    np.testing.assert_allclose(finish[last].sum(), e2e.sum() + th.sum(), rtol=1e-9)
    # X = N / (R + Z), with X measured over the middle 80% of the run (no ramp-up or drain).
    end = finish.max()
    lo, hi = 0.1 * end, 0.9 * end
    done = (finish >= lo) & (finish < hi)
    x = done.sum() / (hi - lo)
    law = users / (e2e[done].mean() + th[after >= 0].mean())
    edges = np.linspace(lo, hi, 21)
    per_batch = np.histogram(finish, edges)[0] / (edges[1] - edges[0])
    se = per_batch.std(ddof=1) / math.sqrt(per_batch.size)
    # Measured: X − N/(R+Z) = −0.06% of X, batch-means SE ±0.54%.
    assert se / x < 0.01, f"batch-means SE ±{se / x:.1%} too wide for a few-percent check"
    assert abs(x - law) < Z * se, f"X = {x:.4f}/s, N/(R+Z) = {law:.4f}/s (SE {se:.4f})"


@pytest.mark.slow
def test_closed_loop_throughput_matches_the_finite_source_queue():
    # N users, exponential think Z, one server (one sequence per iteration) whose service time is
    # tau × a geometric prompt length (the ceiling of an exponential, CV² = 0.999): M/M/1//N.
    # p0 = 1 / Σ_k N!/(N−k)! (S/Z)^k, X = (1 − p0)/S, R = N/X − Z.
    users, think, tau, mean_prompt = 5, 4.0, 1e-3, 1000.0
    service = tau / (1 - math.exp(-1 / mean_prompt))
    p0 = 1 / sum(math.factorial(users) / math.factorial(users - k) * (service / think) ** k for k in range(users + 1))
    x_theory = (1 - p0) / service
    rates, responses = [], []
    for seed in range(3):
        s = load_scenario({
            "seed": seed,
            "profile": {"kind": "explicit", "fixed_s": 0.0, "per_token_s": tau, "kv_capacity_tokens": 1 << 24},
            "engine": {"max_num_seqs": 1, "max_num_batched_tokens": 1 << 20},
            "workload": {"arrival": {"process": "closed_loop", "users": users, "think_time": {"mean_s": think}},
                         "num_requests": 100_000,
                         "classes": [{"name": "x", "prompt_tokens": {"dist": "exponential", "mean": mean_prompt},
                                      "output_tokens": {"dist": "fixed", "value": 1}}]}})
        arrival, finish = finish_times(simulate(s))
        end = finish.max()
        edges = np.linspace(0.02 * end, 0.98 * end, 21)  # 2% warm-up and drain left out
        rates.append(np.histogram(finish, edges)[0] / (edges[1] - edges[0]))
        keep = (arrival >= edges[0]) & (arrival < edges[-1])
        responses += [b.mean() for b in np.array_split((finish - arrival)[keep], 20)]
    r = np.concatenate(rates)
    x, se = r.mean(), r.std(ddof=1) / math.sqrt(r.size)
    # Measured (3 seeds × 100k requests, 60 batches): X +0.21% ± 0.16%, R −0.03% ± 0.31% (± one SE).
    assert se / x < 0.005, f"SE ±{se / x:.2%} too wide"
    assert abs(x - x_theory) < Z * se, f"X {x:.5f}/s vs M/M/1//N {x_theory:.5f}/s (SE {se:.5f})"
    resp = np.asarray(responses)
    r_mean, r_se = resp.mean(), resp.std(ddof=1) / math.sqrt(resp.size)
    r_theory = users / x_theory - think
    assert abs(r_mean - r_theory) < Z * r_se, f"R {r_mean:.4f} s vs {r_theory:.4f} s (SE {r_se:.4f})"


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    """A user RequestTable: request_id, arrival_s, prompt/output tokens, class, after_id, think_s."""
    t = requests([r.get("arrival", math.nan) for r in rows], [r.get("prompt", 1) for r in rows],
                 [r.get("output", 1) for r in rows])
    t = t.set_column(0, "request_id", pa.array([r["id"] for r in rows], pa.int64()))
    t = t.append_column("after_id", pa.array([r.get("after", -1) for r in rows], pa.int64()))
    return t.append_column("think_s", pa.array([r.get("think", 0.0) for r in rows], pa.float64()))


def _one_second_steps() -> Scenario:
    """One replica, every iteration 1 s: a 1-token prompt with 1 output token takes exactly 1 s."""
    return load_scenario({"profile": {"kind": "explicit", "fixed_s": 1.0, "kv_capacity_tokens": 1 << 20},
                          "workload": {"arrival": {"rate_per_s": 1.0}, "num_requests": 1,
                                       "classes": [{"name": "x", "prompt_tokens": {"dist": "fixed", "value": 1},
                                                    "output_tokens": {"dist": "fixed", "value": 1}}]}})


def test_a_refused_request_still_releases_its_follower():
    # 0 runs [0, 1); 1 arrives at 1 + 0.5 and is refused (longer than the model's 131,072-token
    # context); 2 arrives 2.5 s after that refusal, at 4, and runs [4, 5).
    table = _table([{"id": 0, "arrival": 0.0}, {"id": 1, "after": 0, "think": 0.5, "prompt": 200_000},
                    {"id": 2, "after": 1, "think": 2.5}])
    q = simulate(_one_second_steps(), requests=table).requests
    assert q.column("status").to_pylist() == ["completed", "rejected", "completed"]
    assert q.column("reject_reason").to_pylist() == [None, "longer than the model's context", None]
    assert q.column("arrival_s").to_pylist() == [0.0, 1.5, 4.0]
    assert q.column("e2e_s").to_pylist()[::2] == [1.0, 1.0]


def test_user_table_with_after_id_and_think_s():
    # Rows out of order and ids that are not row numbers: 10 at 0 → [0, 1); 20 after 10 + 0.25 →
    # [1.25, 2.25); 30 after 20 + 1 → [3.25, 4.25).
    table = _table([{"id": 30, "after": 20, "think": 1.0}, {"id": 10, "arrival": 0.0},
                    {"id": 20, "after": 10, "think": 0.25}])
    q = simulate(_one_second_steps(), requests=table).requests
    assert q.column("request_id").to_pylist() == [30, 10, 20]
    assert q.column("status").to_pylist() == ["completed"] * 3
    assert q.column("arrival_s").to_pylist() == [3.25, 0.0, 1.25]
    assert q.column("e2e_s").to_pylist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("rows, message", [
    ([{"id": 0, "arrival": 0.0}, {"id": 1, "after": 2}, {"id": 2, "after": 1}],
     r"row 1: its chain of after_id never reaches a request with an arrival time \(a cycle\)"),
    ([{"id": 0, "arrival": 0.0}, {"id": 1, "after": 1}], r"row 1: .*\(a cycle\)"),
    ([{"id": 0, "arrival": 0.0}, {"id": 1, "after": 7}], r"row 1: after_id = 7 names no request_id in the table"),
    ([{"id": 0, "arrival": 0.0}, {"id": 1, "after": 0, "arrival": 0.5}],
     r"row 1: arrival_s = 0.5 with after_id = 0: a request that follows another is released by the engine, "
     r"so its arrival_s must be empty \(NaN\)"),
    ([{"id": 0, "arrival": 0.0}, {"id": 1, "after": 0, "think": -1.0}], r"'think_s' must be finite and >= 0"),
], ids=["cycle", "self", "unknown", "arrival_on_follower", "negative_think"])
def test_bad_after_id_tables_are_one_line_errors(rows, message):
    with pytest.raises(ValueError, match=message) as e:
        simulate(_one_second_steps(), requests=_table(rows))
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------------------------
# Bad input: absurd conversations and closed loops are refused before anything is drawn (issue 16)


def _one_class(**extra: Any) -> dict[str, Any]:
    return {"name": "chat", "prompt_tokens": {"dist": "fixed", "value": 10}, "output_tokens": {"dist": "fixed", "value": 5},
            **extra}


def test_whole_conversations_count_towards_the_size_check(monkeypatch):
    from pydantic import ValidationError

    import workloads.limits as limits

    monkeypatch.setattr(limits, "machine_memory_bytes", lambda: 2**30)  # room for 1,048,576 requests

    # 1,000 conversations of 10^7 turns each are drawn whole before num_requests cuts them.
    long = _one_class(sessions={"turns": {"dist": "fixed", "value": 10**7}})
    with pytest.raises(ValidationError, match=r"num_requests = 1000 with classes\[0\] \('chat'\) holding ~1e\+07 turns "
                                              r"per conversation means ~1e\+10 requests drawn, which would need ~9\.3 TiB"):
        WorkloadSpec.model_validate({"arrival": {"rate_per_s": 1.0}, "num_requests": 1000, "classes": [long]})
    # The mean is weighted by share: a rare long-conversation class counts for its share only
    # (about 11 requests per start, 11,000 in all; its 10^4 turns alone would make 10^7).
    short = _one_class(name="short", share=999.0)
    rare = {**long, "sessions": {"turns": {"dist": "fixed", "value": 10**4}}}
    WorkloadSpec.model_validate({"arrival": {"rate_per_s": 1.0}, "num_requests": 1000, "classes": [short, rare]})
    with pytest.raises(ValidationError, match=r"classes\[0\] \('chat'\) holding ~1e\+04 turns"):
        WorkloadSpec.model_validate({"arrival": {"rate_per_s": 1.0}, "num_requests": 1000, "classes": [rare]})
    with pytest.raises(ValidationError, match=r"duration_s = 1e\+06 at 1 requests/s means ~1e\+06 requests with "
                                              r"classes\[0\] \('chat'\) holding ~1e\+07 turns"):
        WorkloadSpec.model_validate({"arrival": {"rate_per_s": 1.0}, "duration_s": 1e6, "classes": [long]})


def test_absurd_system_prompt_variants_and_users_are_refused():
    from pydantic import ValidationError

    sp = {"tokens": {"dist": "fixed", "value": 10}, "variants": 10**12}
    with pytest.raises(ValidationError, match=r"variants\n.*less than or equal to 10000000"):
        WorkloadSpec.model_validate({"arrival": {"rate_per_s": 1.0}, "num_requests": 5,
                                     "classes": [_one_class(system_prompt=sp)]})
    for users in (10**12, 10**7 + 1):
        with pytest.raises(ValidationError, match=r"users\n.*less than or equal to 10000000"):
            WorkloadSpec.model_validate({"arrival": {"process": "closed_loop", "users": users}, "num_requests": 5,
                                         "classes": [_one_class()]})


def test_a_closed_loop_computes_first_times_only_for_the_users_that_send():
    from workloads.arrivals import ClosedLoopArrivals

    loop = ClosedLoopArrivals(process="closed_loop", users=10**7, ramp_up_s=10.0)
    np.testing.assert_array_equal(loop.first_times(np.array([0, 3, 10**7 - 1])),
                                  np.arange(10**7)[[0, 3, 10**7 - 1]] * (10.0 / 10**7))
    # Ten million users, five requests: five users send, and nothing of size users is allocated.
    spec = WorkloadSpec.model_validate({"arrival": {"process": "closed_loop", "users": 10**7, "ramp_up_s": 10.0},
                                        "num_requests": 5, "classes": [_one_class()]})
    t = generate(spec, 0)
    np.testing.assert_array_equal(t.column("arrival_s").to_numpy(), np.arange(5) * 1e-6)
