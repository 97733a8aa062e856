"""The latency model and the slot pool: how long a request takes, and when it may start.

A request waits in FIFO order for one of ``max_num_seqs`` slots (vLLM's running batch), then
holds it for TTFT + completion tokens × inter-token latency. The inter-token latency grows
with the number of running requests, as decode steps do on a busy GPU.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from dataclasses import dataclass


@dataclass
class LatencyModel:
    """Turns a request's size and the current load into (ttft, generation) seconds."""

    ttft_ms: float
    itl_ms: float
    load_factor: float
    jitter: float
    max_num_seqs: int
    fixed_latency_ms: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def plan(self, completion_tokens: int, running: int) -> tuple[float, float]:
        """Seconds to the first token, and seconds of generation after it."""
        if self.fixed_latency_ms is not None:
            total = self.fixed_latency_ms / 1000
            ttft = min(self.ttft_ms / 1000, total)
            return ttft, total - ttft
        load = 1 + self.load_factor * running / self.max_num_seqs
        ttft = self.ttft_ms / 1000 * self._wobble()
        generation = completion_tokens * self.itl_ms / 1000 * load * self._wobble()
        return ttft, generation

    def _wobble(self) -> float:
        return 1 + self.jitter * (2 * self._rng.random() - 1)


class QueueFull(Exception):
    """Every slot is busy and the queue holds ``max_queue`` requests already."""


class SlotPool:
    """``size`` slots handed out in ``priority`` order (lower first; vLLM's rule), first come,
    first served among equals, behind a bounded queue. With every priority 0 — all that the
    ``fcfs`` policy admits — that is strict FCFS. Unlike vLLM's priority policy, a running
    request is never preempted for a more urgent one: it keeps its slot to the end.

    ``admit`` is synchronous on purpose: admission (slot, queue place or rejection) is
    decided the moment a request arrives, so a burst cannot slip past a full queue.
    """

    def __init__(self, size: int, max_queue: int) -> None:
        self.size = size
        self.max_queue = max_queue
        self.running = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # a heap
        self._arrivals = itertools.count()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def admit(self, priority: int = 0) -> Ticket:
        """A slot now, or a place in the queue; raises QueueFull when there is neither."""
        if self.running < self.size and not self._waiters:
            self.running += 1
            return Ticket(self, None)
        if len(self._waiters) >= self.max_queue:
            raise QueueFull
        waiter = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._arrivals), waiter))
        return Ticket(self, waiter)

    def _free(self) -> None:
        """Hand the slot to the most urgent, then oldest, live waiter, or free it."""
        while self._waiters:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():
                waiter.set_result(None)  # ownership passes on; `running` is unchanged
                return
        self.running -= 1

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        waiter.cancel()
        kept = [entry for entry in self._waiters if entry[2] is not waiter]
        if len(kept) != len(self._waiters):  # _free() may have dropped it already
            self._waiters = kept
            heapq.heapify(self._waiters)


class Ticket:
    """One request's claim on a slot. ``release`` is idempotent and safe in every state:
    queued, granted but never awaited (client gone), or running."""

    def __init__(self, pool: SlotPool, waiter: asyncio.Future[None] | None) -> None:
        self._pool = pool
        self._waiter = waiter
        self._released = False

    @property
    def queued(self) -> bool:
        return self._waiter is not None and not self._waiter.done()

    async def ready(self) -> None:
        """Wait until the slot is ours."""
        if self._waiter is not None:
            await self._waiter

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        waiter = self._waiter
        if waiter is None or (waiter.done() and not waiter.cancelled()):
            self._pool._free()  # we held the slot, or it was handed to us
        else:
            self._pool._forget(waiter)
