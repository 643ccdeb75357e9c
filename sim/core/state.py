"""Mutable state of a run, held as numpy columns so per-iteration work is vectorised.

Requests are indexed by their row in the request table. Their arrival order (the FCFS tie-break
in every queue) is ``seq``, the order the source released them in: rows with an arrival time are
released in time order, follow-up requests when their predecessor ends. A request's progress is
counted in tokens the way vLLM's V1 scheduler counts them:

- ``num_tokens``: tokens known so far, prompt plus generated;
- ``computed``: tokens whose KV is in the cache;
- each iteration a request is given ``n <= num_tokens - computed`` tokens to compute, and when
  ``computed`` reaches ``num_tokens`` it emits one new token (so a decode step is ``n = 1``);
- ``prefill_target`` marks where the current prefill ends: the prompt, or after a recompute
  preemption the prompt plus everything generated so far;
- ``lost``: the most tokens whose KV a preemption threw away (0 if never preempted): a prefill
  chunk below it recomputes work done before (the iteration records' ``recompute_tokens``).
"""

from __future__ import annotations

import heapq

import numpy as np

from sim.core.fast import total

__all__ = ["COMPLETED", "PENDING", "REJECTED", "REJECT_REASONS", "RUNNING", "WAITING", "ReplicaState", "RequestState"]

# Status codes held in RequestState.status. PENDING: not yet released by the source (at the end
# of a run with a horizon: never arrived); WAITING: in a queue; RUNNING: in a replica's batch.
PENDING, WAITING, RUNNING, COMPLETED, REJECTED = 0, 1, 2, 3, 4
# Why a REJECTED request can never be served: the code stored per request, and what it means. Code 3
# is recompute's (a preempted request re-prefills prompt and output together), code 4 reserve
# admission's (never preempted, only the prompt is ever prefilled); see sim.core.run.reject_codes.
REJECT_REASONS = {
    1: "longer than the model's context",
    2: "needs more KV blocks than a replica has",
    3: "prompt + output exceed max_num_batched_tokens without chunked prefill",
    4: "prompt exceeds max_num_batched_tokens without chunked prefill",
}


class RequestState:
    """Per-request columns for every request of the run."""

    def __init__(self, arrival: np.ndarray, prompt: np.ndarray, output: np.ndarray, priority: np.ndarray):
        n = arrival.size
        self.arrival = arrival.copy()  # NaN until released, for requests that follow another
        # Release order: the FCFS tie-break in every queue (arrival order, whatever the row order).
        self.seq = np.full(n, -1, np.int64)
        self.prompt = prompt
        self.output = output
        self.priority = priority
        self.num_tokens = prompt.copy()
        self.computed = np.zeros(n, np.int64)
        self.generated = np.zeros(n, np.int64)
        self.blocks = np.zeros(n, np.int64)
        self.prefill_target = prompt.copy()
        self.preemptions = np.zeros(n, np.int64)
        self.lost = np.zeros(n, np.int64)
        self.replica = np.full(n, -1, np.int64)
        self.status = np.zeros(n, np.int8)
        self.first_scheduled = np.full(n, np.nan)
        self.first_token = np.full(n, np.nan)
        self.last_token = np.full(n, np.nan)
        self.finish = np.full(n, np.nan)


class ReplicaState:
    """One replica's queue, running batch and KV blocks.

    ``run`` lists running requests in admission order (the order vLLM keeps ``running`` in);
    ``waiting`` is a heap of ``(priority, seq, index)`` tuples, compared in C (STYLE rule 3): lower
    priority values first, then earlier arrivals (``seq`` is the release order), so a preempted
    request goes back ahead of everything that arrived after it.
    """

    def __init__(self, index: int, total_blocks: int, reqs: RequestState):
        self.index = index
        self.total_blocks = total_blocks
        self.free_blocks = total_blocks
        self.reqs = reqs
        self.waiting: list[tuple[int, int, int]] = []
        self.run = np.empty(0, np.int64)
        self.preemptions = 0  # on this replica so far (the engine checks whether a schedule preempted)

    def enqueue(self, i: int) -> None:
        r = self.reqs
        r.status[i] = WAITING
        heapq.heappush(self.waiting, (int(r.priority[i]), int(r.seq[i]), i))

    def admit(self, i: int, blocks: int, now: float) -> None:
        """Move the head of ``waiting`` (which must be ``i``) into the running batch."""
        heapq.heappop(self.waiting)
        r = self.reqs
        r.status[i] = RUNNING
        r.blocks[i] += blocks
        self.free_blocks -= blocks
        first = r.first_scheduled[i]
        if first != first:  # NaN: never scheduled before (np.isnan costs a ufunc call per admission)
            r.first_scheduled[i] = now
        run = self.run  # grown by one: cheaper than concatenating with a converted (i,)
        self.run = np.empty(run.size + 1, np.int64)
        self.run[:-1] = run
        self.run[-1] = i

    def complete(self, done: np.ndarray, t: float | np.ndarray, rest: np.ndarray | None = None) -> None:
        """Requests ``done`` completed at ``t`` (one time, or one each): their blocks freed, out of
        the running batch (``rest``: what remains of it, when the caller has it already)."""
        r = self.reqs
        r.status[done] = COMPLETED
        r.finish[done] = t
        self.free_blocks += total(r.blocks[done])
        r.blocks[done] = 0
        self.run = self.run[r.status[self.run] == RUNNING] if rest is None else rest

    def preempt(self, pos: int) -> None:
        """Preempt ``run[pos]`` by recompute: free its blocks and queue it again; its prompt and
        the tokens it generated are prefilled anew when it is readmitted."""
        r = self.reqs
        i = int(self.run[pos])
        self.free_blocks += int(r.blocks[i])
        r.blocks[i] = 0
        r.lost[i] = max(int(r.lost[i]), int(r.computed[i]))
        r.computed[i] = 0
        r.prefill_target[i] = r.num_tokens[i]
        r.preemptions[i] += 1
        self.preemptions += 1
        self.run = np.delete(self.run, pos)
        self.enqueue(i)

    def victim(self) -> int:
        """Position in ``run`` of the request to preempt: the lowest priority (highest value),
        and among those the most recently admitted."""
        pr = self.reqs.priority[self.run]
        top = pr.max()
        if pr[-1] == top:
            return self.run.size - 1
        return int(self.run.size - 1 - np.argmax(pr[::-1] == top))
