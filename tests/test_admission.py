"""Admission policies (``engine.admission``): recompute preemption and reserve-for-whole-sequence,
each on tiny scenarios with constant 1 s iterations whose event logs are worked out by hand, and
on a long-context case where recompute preempts and reserve never does."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import sim
from sim import simulate
from tests.helpers import iteration_log, requests, scenario

COLS = ("start_s", "duration_s", "prefill_tokens", "prefill_seqs", "decode_seqs", "tokens_out", "kv_blocks_used",
        "recompute_tokens")


def _col(result: sim.SimResult, name: str) -> list[Any]:
    return result.requests.column(name).to_pylist()


def _ten_blocks(**engine: Any) -> sim.Scenario:
    """A 10-token KV cache in blocks of one token, 1 s per iteration, room for 4 sequences."""
    return scenario(profile={"kind": "explicit", "fixed_s": 1.0, "kv_capacity_tokens": 10},
                    engine={"block_size": 1, "max_num_seqs": 4, "max_num_batched_tokens": 64, **engine})


# r0 (t=0, prompt 2, output 4), r1 (t=0, prompt 4, output 4), r2 (t=0.5, prompt 1, output 2). Whole
# sequences (prompt + output - 1 tokens) need 5, 7 and 2 blocks: r0 and r1 never fit together.
THREE = requests([0.0, 0.0, 0.5], [2, 4, 1], [4, 4, 2])


def test_recompute_admits_on_the_first_chunk_and_preempts_the_latest_admitted():
    res = simulate(_ten_blocks(admission="recompute"), requests=THREE)
    assert iteration_log(res, *COLS) == [
        (0.0, 1.0, 6, 2, 0, 2, 6, 0),   # r0 and r1 admitted on their prompts (2 + 4 blocks), first tokens
        (1.0, 1.0, 1, 1, 2, 3, 9, 0),   # decodes take a block each (8); r2 joins with its 1-token prompt
        (2.0, 1.0, 0, 0, 2, 2, 10, 0),  # 3 blocks wanted, 1 free: r2 (admitted last) preempted; nothing admitted
        (3.0, 1.0, 0, 0, 1, 1, 5, 0),   # 2 wanted, 0 free: r1 preempted (its 6 blocks freed); r0's last token
        (4.0, 1.0, 9, 2, 0, 2, 9, 7),   # r0 done: r1 re-prefills 4 + 3 tokens, r2 1 + 1: 6 + 1 redone; both end
    ]
    assert _col(res, "preemptions") == [0, 1, 1]
    assert _col(res, "queue_s") == [0.0, 0.0, 0.5]
    assert _col(res, "ttft_s") == [1.0, 1.0, 1.5]
    assert _col(res, "e2e_s") == [4.0, 5.0, 4.5]
    assert res.summary["requests"]["preemptions"] == 2


@pytest.mark.parametrize("scheduler", ["continuous", "prefill_first"])
def test_reserve_admits_only_whole_sequences_and_never_preempts(scheduler: str):
    res = simulate(_ten_blocks(admission="reserve", scheduler=scheduler), requests=THREE)
    assert iteration_log(res, *COLS) == [
        (0.0, 1.0, 2, 1, 0, 1, 5, 0),   # r0 takes its whole 5 blocks; r1 needs 7 of the 5 left and waits
        (1.0, 1.0, 0, 0, 1, 1, 5, 0),   # r2 (2 blocks) would fit, but waits behind r1: first come, first served
        (2.0, 1.0, 0, 0, 1, 1, 5, 0),   # decodes take no blocks: r0 holds its 5 throughout
        (3.0, 1.0, 0, 0, 1, 1, 5, 0),   # r0's 4th and last token
        (4.0, 1.0, 5, 2, 0, 2, 9, 0),   # r0's blocks freed: r1 takes 7, r2 takes 2; both prefill
        (5.0, 1.0, 0, 0, 2, 2, 9, 0),   # r2's 2nd and last token
        (6.0, 1.0, 0, 0, 1, 1, 7, 0),   # r2's blocks freed at its end
        (7.0, 1.0, 0, 0, 1, 1, 7, 0),
    ]
    assert _col(res, "preemptions") == [0, 0, 0]
    assert _col(res, "queue_s") == [0.0, 4.0, 3.5]
    assert _col(res, "ttft_s") == [1.0, 5.0, 4.5]
    assert _col(res, "e2e_s") == [4.0, 8.0, 5.5]


def test_reserve_instead_of_the_recompute_in_the_preemption_example():
    # tests/test_engine_micro.py's recompute example (4 blocks of 2, two requests of prompt 3 and
    # output 4, each 3 blocks whole) under reserve: r1 waits for r0's blocks instead of being evicted.
    s = scenario(profile={"kind": "explicit", "fixed_s": 1.0, "kv_capacity_tokens": 8},
                 engine={"block_size": 2, "max_num_seqs": 4, "max_num_batched_tokens": 64, "admission": "reserve"})
    res = simulate(s, requests=requests([0.0, 0.0], 3, 4))
    assert iteration_log(res, *COLS) == [
        (0.0, 1.0, 3, 1, 0, 1, 3, 0),   # r0 takes 3 blocks; r1 needs 3 of the 1 left
        (1.0, 1.0, 0, 0, 1, 1, 3, 0),
        (2.0, 1.0, 0, 0, 1, 1, 3, 0),
        (3.0, 1.0, 0, 0, 1, 1, 3, 0),   # r0 done at 4
        (4.0, 1.0, 3, 1, 0, 1, 3, 0),   # r1 admitted on r0's freed blocks
        (5.0, 1.0, 0, 0, 1, 1, 3, 0),
        (6.0, 1.0, 0, 0, 1, 1, 3, 0),
        (7.0, 1.0, 0, 0, 1, 1, 3, 0),
    ]
    assert _col(res, "preemptions") == [0, 0]
    assert _col(res, "e2e_s") == [4.0, 8.0]


def test_a_request_that_can_never_fit_whole_is_refused_under_either_policy():
    # 60 + 10 - 1 = 69 tokens: 5 blocks of 16 against 4. The KV reason already is the whole
    # sequence's (sim.core.run.reject_codes), which is what reserving admission needs.
    for admission in ("recompute", "reserve"):
        s = scenario(profile={"kind": "explicit", "fixed_s": 1.0, "kv_capacity_tokens": 64},
                     engine={"admission": admission})
        res = simulate(s, requests=requests([0.0, 0.0], [10, 60], [1, 10]))
        assert _col(res, "status") == ["completed", "rejected"], admission
        assert _col(res, "reject_reason")[1] == "needs more KV blocks than a replica has"


def test_without_chunking_reserve_needs_only_the_prompt_to_fit_the_budget():
    # 50 + 20 tokens exceed a 64-token budget. Recompute refuses the request (a preempted one
    # re-prefills prompt and output together); reserve never preempts, so only the prompt must fit.
    engine = {"chunked_prefill": False, "max_num_seqs": 4, "max_num_batched_tokens": 64}
    table = requests([0.0, 0.0], [50, 70], 20)
    rec = simulate(scenario(engine=engine), requests=table)
    assert _col(rec, "reject_reason") == ["prompt + output exceed max_num_batched_tokens without chunked prefill"] * 2
    res = simulate(scenario(engine={**engine, "admission": "reserve"}), requests=table)
    assert _col(res, "status") == ["completed", "rejected"]
    assert _col(res, "reject_reason") == [None, "prompt exceeds max_num_batched_tokens without chunked prefill"]


def _long_context(admission: str) -> dict[str, Any]:
    """96 requests of 20,000 prompt and 2,000 output tokens at once, batches of up to 64, and a KV
    cache that holds 49 whole sequences (as TensorRT-LLM's max-throughput run of Llama-3.1-8B)."""
    return {
        "profile": {"kind": "explicit", "fixed_s": 0.01, "per_token_s": 1e-5, "decode_attention_s": 1e-9,
                    "kv_capacity_tokens": 49 * 22_000},
        "engine": {"max_num_seqs": 64, "max_num_batched_tokens": 32768, "admission": admission},
        "workload": {"arrival": {"rate_per_s": 1000.0}, "num_requests": 96,
                     "classes": [{"name": "long", "prompt_tokens": {"dist": "fixed", "value": 20_000},
                                  "output_tokens": {"dist": "fixed", "value": 2_000}}]},
    }


def test_long_context_preempts_under_recompute_and_never_under_reserve():
    rec = simulate(sim.load_scenario(_long_context("recompute")))
    res = simulate(sim.load_scenario(_long_context("reserve")))
    for r in (rec, res):
        assert r.summary["requests"]["completed"] == 96
    assert rec.summary["requests"]["preemptions"] > 0
    assert rec.iterations.column("recompute_tokens").to_numpy().sum() > 0
    assert res.summary["requests"]["preemptions"] == 0
    assert res.iterations.column("recompute_tokens").to_numpy().sum() == 0
    # Recompute admits on prompts alone, so more run at once than fit whole; reserve runs at most
    # the 49 whole sequences the cache holds (21,999 tokens, 1,375 blocks of 16 each).
    seqs = {k: (r.iterations.column("prefill_seqs").to_numpy() + r.iterations.column("decode_seqs").to_numpy())
            for k, r in (("recompute", rec), ("reserve", res))}
    assert seqs["recompute"].max() > 49
    assert seqs["reserve"].max() == 49
    blocks = sim.load_scenario(_long_context("reserve")).kv_capacity_tokens // 16
    assert np.all(res.iterations.column("kv_blocks_used").to_numpy() <= blocks)


def test_long_context_under_the_tensorrt_llm_preset_shows_no_preemption():
    # Issue 19's case on the datasheet roofline: Llama-3.1-8B on one H100 with TensorRT-LLM's
    # defaults, the batch limit and token budget of its max-throughput run given beside the preset
    # (a 20,000-token prompt exceeds the default 8192 without chunked context). About 20 whole
    # sequences fit; the same run with recompute admission preempts.
    data = {"engine": {"preset": "tensorrt-llm-0.17", "max_num_seqs": 64, "max_num_batched_tokens": 32768},
            "workload": {"arrival": {"rate_per_s": 1000.0}, "num_requests": 64,
                         "classes": [{"name": "long", "prompt_tokens": {"dist": "fixed", "value": 20_000},
                                      "output_tokens": {"dist": "fixed", "value": 2_000}}]}}
    s = sim.load_scenario(data)
    assert s.engine.admission == "reserve" and s.kv_capacity_tokens // 21_999 < 64
    res = simulate(s)
    assert res.summary["engine"] == {"preset": "tensorrt-llm-0.17", "scheduler": "continuous", "admission": "reserve"}
    assert res.summary["requests"]["completed"] == 64
    assert res.summary["requests"]["preemptions"] == 0
    rec = simulate(sim.load_scenario({**data, "engine": {**data["engine"], "admission": "recompute"}}))
    assert rec.summary["requests"]["preemptions"] > 0
