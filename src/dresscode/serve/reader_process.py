"""The service's lake and Feast reads in a process of their own, beside the one that streams.

Why: a read is CPU work in pandas, pyarrow and Feast that holds the GIL for most of its time.
In threads of the serving process it took turns with the event loop streaming every answer:
under 200 concurrent streams a profile or wardrobe read of 3-5 ms CPU took 15-60 ms wall, and
the reads were most of the time the service added before the first token
(docs/benchmarks.md, "The online stylist under load"). In a process of their own the reads run
beside the loop, which only awaits their answers: a batch of requests' keys in, their inputs
out (:func:`~dresscode.serve.context.read_inputs`: profile, online features, wardrobe and the
morning's suggestion in one round trip), with no thread of the serving process waiting.

:class:`ReaderProcess` holds ``DRESSCODE_SERVE_READER_PROCESSES`` processes (``0``: none, the
reads run in threads of the serving process). Each builds the production readers once
(:func:`dresscode.serve.context.lake_readers`: its own kept lake tables and Feast store), so
the lake's files are kept in the reader's memory, not the server's. The processes are spawned,
never forked (the serving process has threads and an event loop), and started with the service
so the first request does not pay for their imports.

A reader process that dies (killed, out of memory) fails the read it was doing; that read is
tried once more in a new process (logged at ERROR), so the requests waiting on it are answered
late rather than refused. A second failure is the read's error (the requests get
``inputs_unavailable``, one sentence). A reader process whose server is gone (stopped, or
killed with no chance to stop it) exits within a second.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from dresscode.core.config import Settings
from dresscode.serve.context import InputsKey, Readers, UserInputs, lake_readers, read_inputs

log = logging.getLogger(__name__)

BuildReaders = Callable[[Settings], Readers]  # module-level: it is sent to the process

_in_reader: list[Readers] = []  # in a reader process: its readers, built by _start


def _start(settings: Settings, server: int, build: BuildReaders) -> None:
    """A reader process's start: its readers, and the imports its reads need, made now; it
    exits when the serving process ``server`` is gone (even killed, with no goodbye)."""
    from dresscode.serve.memory import import_and_freeze

    _in_reader.append(build(settings))
    import_and_freeze("reader process", settings=settings)
    threading.Thread(target=_exit_without, args=(server,), daemon=True).start()


def _exit_without(server: int) -> None:
    # A worker waiting on the pool's queue does not reliably see its server die (a reader of
    # `dresscode serve` killed with SIGKILL lived on; tested): a new parent is the sign.
    while os.getppid() == server:
        time.sleep(1.0)
    os._exit(0)


def _read(keys: list[InputsKey]) -> dict[InputsKey, UserInputs]:
    return read_inputs(_in_reader[0], keys)


def _ready() -> int:
    return os.getpid()


class ReaderProcess:
    """``processes`` reader processes, started on :meth:`start` (or the first read)."""

    def __init__(
        self, settings: Settings, processes: int = 1, build: BuildReaders = lake_readers
    ) -> None:
        if processes < 1:
            raise ValueError("a ReaderProcess needs at least one process")
        self._settings = settings
        self._build = build
        self._processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self.restarts = 0  # new processes made after one died (for tests and the log)

    def readers(self, local: Readers) -> Readers:
        """``local``'s readers, with a request's inputs read in the processes (all its reads
        in one round trip: :func:`~dresscode.serve.context.read_inputs`); the returned
        :class:`Readers` starts and stops the processes with the service."""
        return dataclasses.replace(local, inputs=self.read, start=self.start, close=self.close)

    def start(self) -> list[int]:
        """Start the processes (spawned, their imports done) and wait until they answer: the
        ids of the processes that answered."""
        pool = self._executor()
        return [f.result() for f in [pool.submit(_ready) for _ in range(self._processes)]]

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    async def read(self, keys: list[InputsKey]) -> dict[InputsKey, UserInputs]:
        """The inputs of a batch of requests, read in a reader process and awaited without a
        thread of this process."""
        for attempt in (1, 2):
            pool = self._executor()
            try:
                return await asyncio.wrap_future(pool.submit(_read, keys))
            except BrokenProcessPool:
                self._discard(pool)
                if attempt == 2:
                    raise
                log.error(
                    "a reader process stopped while reading the inputs of %d request(s); "
                    "reading them again in a new one",
                    len(keys),
                )
        raise AssertionError("unreachable")

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self._processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start,
                    initargs=(self._settings, os.getpid(), self._build),
                )
            return self._pool

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is not pool:
                return  # another thread's read replaced it already
            self._pool = None
            self.restarts += 1
        pool.shutdown(wait=False, cancel_futures=True)


def readers_for(settings: Settings, local: Readers) -> Readers:
    """The service's readers as the settings say: in reader processes, or ``local`` as is."""
    if settings.serve_reader_processes == 0:
        return local
    return ReaderProcess(settings, settings.serve_reader_processes).readers(local)
