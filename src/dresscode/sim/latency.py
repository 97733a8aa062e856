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
    """``size`` slots handed out in ``priority`` order (lower first), first come, first served
    among equals, behind a bounded queue. With every priority 0 — all that the ``fcfs`` policy
    admits — that is strict FCFS.

    ``preemptive`` (vLLM's ``priority`` policy): a request that finds every slot taken takes
    the slot of the least urgent running request (highest priority value, latest arrival) when
    that one is less urgent than itself. The preempted request goes back to the queue with its
    place and, once it has a slot again, recomputes its prefill (its caller adds a TTFT) —
    as vLLM's recompute preemption does.

    ``admit`` is synchronous on purpose: admission (slot, queue place or rejection) is
    decided the moment a request arrives, so a burst cannot slip past a full queue.
    """

    def __init__(self, size: int, max_queue: int, *, preemptive: bool = False) -> None:
        self.size = size
        self.max_queue = max_queue
        self.preemptive = preemptive
        self.running = 0
        self.preemptions = 0
        self._waiters: list[tuple[int, int, Ticket]] = []  # a heap
        self._holders: set[Ticket] = set()
        self._arrivals = itertools.count()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def admit(self, priority: int = 0) -> Ticket:
        """A slot now, or a place in the queue; raises QueueFull when there is neither."""
        ticket = Ticket(self, priority, next(self._arrivals))
        if self.running < self.size and not self._waiters:
            self.running += 1
            self._holders.add(ticket)
            return ticket
        victim = self._victim(priority)
        if victim is not None:
            self._holders.discard(victim)
            self._holders.add(ticket)  # the slot passes on; `running` is unchanged
            self.preemptions += 1
            victim._preempted()
            return ticket
        if len(self._waiters) >= self.max_queue:
            raise QueueFull
        self._queue(ticket)
        return ticket

    def _victim(self, priority: int) -> Ticket | None:
        if not self.preemptive or not self._holders:
            return None
        victim = max(self._holders, key=lambda t: (t.priority, t.arrival))
        return victim if victim.priority > priority else None

    def _queue(self, ticket: Ticket) -> None:
        ticket._waiter = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (ticket.priority, ticket.arrival, ticket))

    def _free(self, holder: Ticket) -> None:
        """Hand ``holder``'s slot to the most urgent, then oldest, live waiter, or free it."""
        self._holders.discard(holder)
        while self._waiters:
            _, _, ticket = heapq.heappop(self._waiters)
            if ticket._waiter is not None and not ticket._waiter.done():
                self._holders.add(ticket)
                ticket._waiter.set_result(None)  # ownership passes on; `running` is unchanged
                return
        self.running -= 1

    def _forget(self, ticket: Ticket) -> None:
        if ticket._waiter is not None:
            ticket._waiter.cancel()
        kept = [entry for entry in self._waiters if entry[2] is not ticket]
        if len(kept) != len(self._waiters):  # _free() may have dropped it already
            self._waiters = kept
            heapq.heapify(self._waiters)


class Ticket:
    """One request's claim on a slot. ``release`` is idempotent and safe in every state:
    queued, granted but never awaited (client gone), running, or preempted."""

    def __init__(self, pool: SlotPool, priority: int, arrival: int) -> None:
        self._pool = pool
        self.priority = priority
        self.arrival = arrival
        self._waiter: asyncio.Future[None] | None = None
        self._preemption = asyncio.Event()
        self._released = False

    def __lt__(self, other: Ticket) -> bool:  # heap ties never get here: arrivals are unique
        return self.arrival < other.arrival

    @property
    def queued(self) -> bool:
        return self._waiter is not None and not self._waiter.done()

    async def ready(self) -> None:
        """Wait until the slot is ours (again, after a preemption)."""
        if self._waiter is not None:
            await self._waiter
        self._preemption.clear()

    async def hold(self, seconds: float) -> bool:
        """Keep the slot ``seconds``; True when it was taken away meanwhile (preempted)."""
        if self._preemption.is_set():
            return True
        try:
            await asyncio.wait_for(self._preemption.wait(), max(0.0, seconds))
        except TimeoutError:
            return False
        return True

    def _preempted(self) -> None:
        self._pool._queue(self)
        self._preemption.set()

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self.queued:
            self._pool._forget(self)
        else:
            self._pool._free(self)  # we held the slot, or it was handed to us
