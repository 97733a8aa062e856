"""Many requests, one read: concurrent single-key loads coalesced into batch reads.

A read has a fixed cost that a batch shares (a round trip to the reader process, a pass over
the kept lake files: one user's inputs ~2.7 ms of CPU, five users' ~3.6 ms, twenty ~5.9 ms;
``docs/benchmarks.md``), so 200 requests arriving together must not make 200 reads. A
:class:`BatchLoader` keeps the keys asked for while a read is running and reads them in the
next: one read in flight, each taking up to ``max_batch`` of the keys waiting. A quiet service
reads one key at once; a busy one reads in batches as large as its arrivals — no timer, no
added wait.

Measured and not taken (``bench/serve.py``, 200 streams): two reads in flight (the next batch
sent while the reader process works on this one) made batches of one, ~15 % more CPU per
request and the p95 higher; batches of at most 32 for bursts of 200 new users left the median
time to read a request's inputs as it was (189 vs 185 ms) and raised its p95 (419 vs 220 ms).

A batch read that fails fails every request in it (each says so in one sentence); a request
that goes away does not cancel the read the others wait on.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar, cast

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BatchLoader(Generic[K, V]):
    """``await loader.load(key)``: the value ``read_many`` gives for ``key`` (None if absent)."""

    def __init__(
        self,
        read_many: Callable[[list[K]], Mapping[K, V] | Awaitable[Mapping[K, V]]],
        *,
        max_batch: int = 512,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._read_many = read_many
        self._max_batch = max_batch
        # Each request waits on a future of its own: one that goes away (a client disconnect)
        # cancels only its own, never the read the others wait on, with no shield in between
        # (every hop through a busy event loop is a wait: docs/benchmarks.md).
        self._waiting: dict[K, list[asyncio.Future[V | None]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.reads = 0  # batch reads done (for tests and benchmarks)

    async def load(self, key: K) -> V | None:
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_while_waiting())
        return await future

    async def _read_while_waiting(self) -> None:
        # The task's first step runs a loop turn after it was made: the requests of that turn
        # have joined the first batch by then.
        while self._waiting:
            keys = list(self._waiting)[: self._max_batch]
            batch = {k: self._waiting.pop(k) for k in keys}
            self.reads += 1
            try:
                found = await self._read(keys)
            except Exception as exc:
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                            # Retrieved here: nobody's absence logs "exception never retrieved".
                            with contextlib.suppress(BaseException):
                                future.exception()
                continue
            for key, futures in batch.items():
                for future in futures:
                    if not future.done():
                        future.set_result(found.get(key))

    async def _read(self, keys: list[K]) -> Mapping[K, V]:
        """A blocking ``read_many`` runs in a thread; an async one (a reader process's) is
        awaited as it is."""
        if inspect.iscoroutinefunction(self._read_many):
            found: Mapping[K, V] = await self._read_many(keys)
            return found
        blocking = cast("Callable[[list[K]], Mapping[K, V]]", self._read_many)
        return await asyncio.to_thread(blocking, keys)
