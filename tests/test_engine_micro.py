"""Tiny scenarios with constant 1 s iterations, each with its event log worked out by hand."""

from __future__ import annotations

import math

import pytest

from sim import simulate
from tests.helpers import iteration_log, requests, scenario

COLS = ("start_s", "duration_s", "prefill_tokens", "prefill_seqs", "decode_seqs", "tokens_out", "kv_blocks_used")


def _col(result, name):
    return result.requests.column(name).to_pylist()


def test_continuous_batching_joins_new_prompt_to_running_decodes():
    # r0 prefills alone in [0,1); r1 (arrived at 0.5) joins r0's first decode in [1,2).
    s = scenario(engine={"block_size": 1})
    res = simulate(s, requests=requests([0.0, 0.5], 4, 3))
    assert iteration_log(res, *COLS) == [
        (0.0, 1.0, 4, 1, 0, 1, 4),
        (1.0, 1.0, 4, 1, 1, 2, 9),
        (2.0, 1.0, 0, 0, 2, 2, 11),
        (3.0, 1.0, 0, 0, 1, 1, 6),   # r0 done; r1 holds prompt + 2 tokens
    ]
    assert _col(res, "queue_s") == [0.0, 0.5]
    assert _col(res, "ttft_s") == [1.0, 1.5]
    assert _col(res, "e2e_s") == [3.0, 3.5]
    assert _col(res, "tpot_s") == [1.0, 1.0]
    assert _col(res, "status") == ["completed", "completed"]


def test_chunked_prefill_splits_prompt_over_token_budget():
    # Budget 4 tokens: a 6-token prompt takes chunks of 4 then 2; r1's prompt waits for budget.
    s = scenario(engine={"max_num_seqs": 4, "max_num_batched_tokens": 4, "block_size": 1})
    res = simulate(s, requests=requests([0.0, 0.0], [6, 3], [2, 2]))
    assert iteration_log(res, "start_s", "prefill_tokens", "prefill_seqs", "decode_seqs", "tokens_out") == [
        (0.0, 4, 1, 0, 0),      # r0 chunk [0,4)
        (1.0, 4, 2, 0, 1),      # r0 chunk [4,6) -> token 1; r1 chunk [0,2)
        (2.0, 1, 1, 1, 2),      # r0 decode -> done; r1 chunk [2,3) -> token 1
        (3.0, 0, 0, 1, 1),      # r1 decode -> done
    ]
    assert _col(res, "ttft_s") == [2.0, 3.0]
    assert _col(res, "e2e_s") == [3.0, 4.0]


def test_without_chunking_a_prompt_waits_for_whole_budget():
    s = scenario(engine={"max_num_seqs": 4, "max_num_batched_tokens": 8, "chunked_prefill": False, "block_size": 1})
    res = simulate(s, requests=requests([0.0, 0.0], [6, 3], [2, 2]))
    # r1's 3 tokens do not fit the 2 left after r0's 6, so r1 waits one iteration.
    assert iteration_log(res, "start_s", "prefill_tokens", "decode_seqs") == [(0.0, 6, 0), (1.0, 3, 1), (2.0, 0, 1)]
    assert _col(res, "ttft_s") == [1.0, 2.0]


def test_preemption_by_recompute_exact_log():
    # 4 blocks of 2 tokens. Two requests of prompt 3, output 4 need 3 blocks each at most.
    s = scenario(profile={"kind": "explicit", "fixed_s": 1.0, "kv_capacity_tokens": 8},
                 engine={"block_size": 2, "max_num_seqs": 4, "max_num_batched_tokens": 64})
    res = simulate(s, requests=requests([0.0, 0.0], 3, 4))
    assert iteration_log(res, *COLS) == [
        (0.0, 1.0, 6, 2, 0, 2, 4),   # both prefill: 2 blocks each, cache full
        (1.0, 1.0, 0, 0, 2, 2, 4),   # both decode into their second block
        (2.0, 1.0, 0, 0, 1, 1, 3),   # both need a third block: r1 (admitted last) is preempted
        (3.0, 1.0, 0, 0, 1, 1, 3),   # r1's recompute (5 tokens, 3 blocks) does not fit beside r0
        (4.0, 1.0, 5, 1, 0, 1, 3),   # r0 done; r1 re-prefills prompt + 2 generated tokens
        (5.0, 1.0, 0, 0, 1, 1, 3),
    ]
    assert _col(res, "preemptions") == [0, 1]
    assert _col(res, "ttft_s") == [1.0, 1.0]
    assert _col(res, "e2e_s") == [4.0, 6.0]
    # r1's tokens at 1, 2, 5, 6: the gap spanning the preemption counts in itl.
    assert res.summary["latency_s"]["itl"]["count"] == 6
    assert res.summary["latency_s"]["itl"]["p99"] == 3.0


def test_priority_class_jumps_the_queue():
    s = scenario(engine={"max_num_seqs": 1, "max_num_batched_tokens": 8, "block_size": 1})
    # All arrive while r0 runs; r2 has the better (lower) priority value and goes next.
    res = simulate(s, requests=requests([0.0, 0.1, 0.2], 1, 1, priority=[5, 5, 0]))
    assert _col(res, "e2e_s") == pytest.approx([1.0, 2.9, 1.8])


def test_preemption_victim_is_lowest_priority_before_most_recent():
    # 4 blocks of 2. r0 (priority 5) runs from t=0; r1 (priority 0) joins at t=1. At t=3 r1 needs a
    # block and none is free: r0 is preempted although r1 was admitted more recently.
    s = scenario(profile={"kind": "explicit", "fixed_s": 1.0, "kv_capacity_tokens": 8},
                 engine={"block_size": 2, "max_num_seqs": 4, "max_num_batched_tokens": 64})
    res = simulate(s, requests=requests([0.0, 0.5], [3, 1], 4, priority=[5, 0]))
    assert _col(res, "preemptions") == [1, 0]
    assert _col(res, "e2e_s")[1] == 4.5  # r1: tokens at 2, 3, 4, 5 without interruption


def test_prefill_first_pauses_decodes():
    s = scenario(engine={"scheduler": "prefill_first", "max_num_seqs": 4, "block_size": 1})
    res = simulate(s, requests=requests([0.0, 0.5], 2, 3))
    assert iteration_log(res, "start_s", "prefill_tokens", "decode_seqs") == [
        (0.0, 2, 0),   # r0 prefill
        (1.0, 2, 0),   # r1 prefill alone: r0's decode waits
        (2.0, 0, 2),
        (3.0, 0, 2),
    ]
    assert _col(res, "e2e_s") == [4.0, 3.5]


def test_static_batch_runs_to_completion_before_next():
    s = scenario(engine={"scheduler": "static", "max_num_seqs": 2, "block_size": 1})
    res = simulate(s, requests=requests([0.0, 0.0, 0.5], 2, [2, 3, 1]))
    assert iteration_log(res, "start_s", "prefill_tokens", "decode_seqs") == [
        (0.0, 4, 0), (1.0, 0, 2), (2.0, 0, 1), (3.0, 2, 0),
    ]
    assert _col(res, "queue_s") == [0.0, 0.0, 2.5]
    assert _col(res, "e2e_s") == [2.0, 3.0, 3.5]
    assert math.isnan(_col(res, "tpot_s")[2])


def test_round_robin_and_least_outstanding_routing():
    reqs = requests([0.0, 0.1, 1.5, 1.6], 1, [5, 1, 1, 1])
    rr = simulate(scenario(replicas=2, router={"policy": "round_robin"}), requests=reqs)
    assert _col(rr, "replica") == [0, 1, 0, 1]
    # r0 keeps replica 0 busy for 5 s; r1 is done by 1.1 s, so r2 goes to the idle replica 1 and
    # r3 (a tie, one outstanding each) to the lowest index.
    lo = simulate(scenario(replicas=2, router={"policy": "least_outstanding"}), requests=reqs)
    assert _col(lo, "replica") == [0, 1, 1, 0]


def test_central_queue_holds_requests_until_a_replica_frees():
    s = scenario(replicas=2, router={"policy": "least_outstanding", "max_outstanding_per_replica": 1},
                 engine={"max_num_seqs": 1, "max_num_batched_tokens": 8})
    res = simulate(s, requests=requests([0.0, 0.0, 0.0], 1, [3, 1, 1]))
    # r2 waits centrally and goes to replica 1, which frees first (at 1 s), not behind r0.
    assert _col(res, "replica") == [0, 1, 1]
    assert _col(res, "e2e_s") == [3.0, 1.0, 2.0]


def test_request_that_can_never_fit_is_rejected_and_counted():
    s = scenario(profile={"kind": "explicit", "fixed_s": 1.0, "kv_capacity_tokens": 64})
    res = simulate(s, requests=requests([0.0, 0.0], [10, 60], [1, 10]))
    assert _col(res, "status") == ["completed", "rejected"]
    assert _col(res, "reject_reason")[1] == "needs more KV blocks than a replica has"
    assert res.summary["requests"]["rejected"] == 1


@pytest.mark.parametrize("table, match", [
    (requests([1.0, -0.5], 1, 1), "finite and >= 0"),
    (requests([0.0, 0.5], [1, 0], 1), "'prompt_tokens' has value 0"),
    (requests([0.0], 1, 1).drop_columns(["prompt_tokens"]), "lacks column.*prompt_tokens"),
])
def test_bad_request_table_is_refused_with_one_line(table, match):
    with pytest.raises(ValueError, match=match):
        simulate(scenario(), requests=table)


def test_warmup_past_the_end_of_traffic_is_refused():
    from sim import ScenarioError, load_scenario
    from tests.helpers import _merge
    bad = _merge(scenario().to_dict(), {"measurement": {"warmup_s": 60.0}})
    bad["workload"] = {**bad["workload"], "duration_s": 30.0}
    del bad["workload"]["num_requests"]
    with pytest.raises(ScenarioError, match=r"measurement.warmup_s = 60: must be below workload.duration_s = 30"):
        load_scenario(bad)


def test_itl_counts_only_tokens_emitted_in_the_measurement_window():
    # Two requests of 4 tokens at t=0 and t=10: r0 emits at 1..4, r1 at 11..14. The window is
    # [5, 10]: r1's arrival is in it (the last arrival is measured), but none of its gaps are.
    s = scenario(measurement={"warmup_s": 5.0}, engine={"block_size": 1})
    res = simulate(s, requests=requests([0.0, 10.0], 1, 4))
    summ = res.summary
    assert summ["requests"]["measured"] == 1
    assert summ["latency_s"]["itl"]["count"] == 0
    whole = simulate(scenario(engine={"block_size": 1}), requests=requests([0.0, 10.0], 1, 4)).summary
    assert whole["requests"]["measured"] == 2
    assert whole["latency_s"]["itl"]["count"] == 3  # r0's gaps, emitted in [0, 10)


def test_horizon_after_the_last_event_does_not_stretch_the_run():
    s = scenario(measurement={"horizon_s": 100.0})
    res = simulate(s, requests=requests([0.0, 1.0], 1, 2))
    assert res.summary["simulated_s"] == 3.0
    assert res.timeline.column("end_s").to_pylist()[-1] == 3.0
