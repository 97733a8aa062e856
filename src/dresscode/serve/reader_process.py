"""The service's lake and Feast reads in a process of their own, beside the one that streams.

Why: a read is CPU work in pandas, pyarrow and Feast that holds the GIL for most of its time.
In threads of the serving process it took turns with the event loop streaming every answer:
under 200 concurrent streams a profile or wardrobe read of 3-5 ms CPU took 15-60 ms wall, and
the reads were most of the time the service added before the first token
(docs/benchmarks.md, "The online stylist under load"). In a process of their own the reads run
beside the loop, which only awaits their answers: a batch of requests' keys in, their inputs
out (:func:`~dresscode.serve.context.read_inputs`: profile, online features, wardrobe and the
morning's suggestion in one round trip).

The round trip is the event loop's own socket I/O (``loop.sock_sendall`` / ``sock_recv_into``
on one end of a socket pair; the reader blocks on the other): no thread of the serving process
sits between a request and its read. A ``concurrent.futures.ProcessPoolExecutor`` did this
before, through its manager and queue-feeder threads, each a turn for the GIL against the busy
loop: ~5 ms at the median and ~20 ms at p95 on top of a ~7 ms read (measured under 200
streams). A frame is a pickle after its 8-byte length; a read cancelled midway (the service
stopping) leaves its process's socket in an unknown state, so that process is replaced.

:class:`ReaderProcess` holds ``DRESSCODE_SERVE_READER_PROCESSES`` processes (``0``: none, the
reads run in threads of the serving process). Each builds the production readers once
(:func:`dresscode.serve.context.lake_readers`: its own kept lake tables and Feast store), so
the lake's files are kept in the reader's memory, not the server's. The processes are spawned,
never forked (the serving process has threads and an event loop), and started with the service
so the first request does not pay for their imports.

A reader process that dies (killed, out of memory) fails the read it was doing; that read is
tried once more in a new process (logged at ERROR), so the requests waiting on it are answered
late rather than refused. A second failure is the read's error (the requests get
``inputs_unavailable``, one sentence). A read stuck longer than ``READ_TIMEOUT_S`` (a storage
stall) is refused the same way and its process killed and replaced, so the requests after it
are read by a fresh process instead of waiting behind it. A reader process whose server is
gone (stopped, or killed with no chance to stop it) sees its end of the socket close and
exits; it ignores Ctrl-C (the terminal sends it to the whole process group): its server
decides when it stops.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import struct
import threading
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

from dresscode.core.config import Settings
from dresscode.serve.context import InputsKey, Readers, UserInputs, lake_readers, read_inputs

log = logging.getLogger(__name__)

BuildReaders = Callable[[Settings], Readers]  # module-level: it is sent to the process

_LENGTH = struct.Struct("!Q")
START_TIMEOUT_S = 300.0  # a reader's imports (Feast ~18 s) on a busy machine
# A batch reads in milliseconds (a burst of 200 new users ~0.3 s); one stuck this long (a
# storage stall) would keep every later request waiting behind it: its process is killed.
READ_TIMEOUT_S = 30.0


class ReaderGone(ConnectionError):
    """The reader process stopped (killed, out of memory) before it answered."""


# --- the reader process ------------------------------------------------------------------


def _serve(sock: socket.socket, settings: Settings, build: BuildReaders) -> None:
    """A reader process: build the readers, make the request path's imports, say ready (its
    pid), then answer each frame of keys with their inputs until the server's end closes."""
    from dresscode.serve.memory import import_and_freeze

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    readers = build(settings)
    import_and_freeze("reader process", settings=settings, warm=readers.warm)
    _send(sock, os.getpid())
    while (keys := _receive(sock)) is not None:
        try:
            answer: Any = read_inputs(readers, keys)
        except Exception as exc:  # the read's error, raised in the server for its requests
            answer = exc
        try:
            _send(sock, answer)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            _send(sock, RuntimeError(f"{type(answer).__name__}: {answer} ({exc})"))


def _send(sock: socket.socket, message: Any) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_LENGTH.pack(len(payload)) + payload)


def _receive(sock: socket.socket) -> Any | None:
    """The next frame, or None when the other end closed."""
    header = _exactly(sock, _LENGTH.size)
    if header is None:
        return None
    payload = _exactly(sock, _LENGTH.unpack(header)[0])
    # Pickle both ways: the peer is our own process, never a client.
    return None if payload is None else pickle.loads(payload)


def _exactly(sock: socket.socket, size: int) -> bytearray | None:
    data = bytearray(size)
    view, got = memoryview(data), 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            return None
        got += n
    return data


# --- the serving process's side -------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class _Reader:
    """One reader process and the server's end of its socket (non-blocking, the loop's)."""

    process: BaseProcess
    sock: socket.socket
    pid: int
    lock: asyncio.Lock | None = None  # one read at a time on the socket, made in the loop
    broken: bool = False  # a read stopped midway: what is on the socket is unknown

    async def read(self, keys: list[InputsKey]) -> dict[InputsKey, UserInputs]:
        if self.lock is None:
            self.lock = asyncio.Lock()
        async with self.lock:
            if self.broken:
                raise ReaderGone(f"reader process {self.pid} was left midway by a read")
            loop = asyncio.get_running_loop()
            payload = pickle.dumps(keys, protocol=pickle.HIGHEST_PROTOCOL)
            try:
                await loop.sock_sendall(self.sock, _LENGTH.pack(len(payload)) + payload)
                header = await _exactly_async(loop, self.sock, _LENGTH.size)
                body = await _exactly_async(loop, self.sock, _LENGTH.unpack(header)[0])
            except (ConnectionError, EOFError) as exc:
                raise ReaderGone(f"reader process {self.pid} stopped") from exc
            except BaseException:  # cancelled midway: replaced at the next read
                self.broken = True
                raise
        answer = pickle.loads(body)
        if isinstance(answer, BaseException):
            raise answer
        found: dict[InputsKey, UserInputs] = answer
        return found

    def stop(self, *, wait_s: float = 10.0) -> None:
        """Close our end (the reader sees it and exits), wait up to ``wait_s``, then kill."""
        self.sock.close()
        self.process.join(wait_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(10)


async def _exactly_async(loop: asyncio.AbstractEventLoop, sock: socket.socket, size: int) -> bytes:
    data = bytearray(size)
    view, got = memoryview(data), 0
    while got < size:
        n = await loop.sock_recv_into(sock, view[got:])
        if n == 0:
            raise EOFError("the reader process closed its end")
        got += n
    return bytes(data)


def _spawn(settings: Settings, build: BuildReaders) -> _Reader:
    """A new reader process, its imports done and its readers built (blocking)."""
    ours, theirs = socket.socketpair()
    process = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(theirs, settings, build), name="dresscode-serve-reader", daemon=True
    )
    process.start()
    theirs.close()  # only the reader holds its end: our death closes the pair for it
    ours.settimeout(START_TIMEOUT_S)
    try:
        ready = _receive(ours)
    except TimeoutError:
        ready = None
    if not isinstance(ready, int):
        process.kill()
        process.join(10)
        ours.close()
        raise ReaderGone(
            f"the reader process stopped before it was ready (exit code {process.exitcode}); "
            "its log above says why"
        )
    ours.setblocking(False)
    return _Reader(process, ours, pid=ready)


class ReaderProcess:
    """``processes`` reader processes, started on :meth:`start` (or the first read)."""

    def __init__(
        self,
        settings: Settings,
        processes: int = 1,
        build: BuildReaders = lake_readers,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        if processes < 1:
            raise ValueError("a ReaderProcess needs at least one process")
        self._settings = settings
        self.read_timeout_s = read_timeout_s  # seconds a read may take before its process dies
        self._build = build
        self._processes = processes
        self._readers: list[_Reader] = []
        self._next = 0
        self._lock = threading.Lock()  # the list: start() runs in a thread, reads in the loop
        self._starting = threading.Lock()  # one start() spawns at a time (never the loop's)
        self.restarts = 0  # new processes made after one died (for tests and the log)

    def readers(self, local: Readers) -> Readers:
        """``local``'s readers, with a request's inputs read in the processes (all its reads
        in one round trip: :func:`~dresscode.serve.context.read_inputs`); the returned
        :class:`Readers` starts and stops the processes with the service."""
        return dataclasses.replace(
            local, inputs=self.read, start=self.start, close=self.close, warm=None
        )

    def start(self) -> list[int]:
        """Start the processes (spawned, their imports done; blocking): their ids."""
        with self._starting:
            while True:
                with self._lock:
                    if len(self._readers) >= self._processes:
                        return [reader.pid for reader in self._readers]
                reader = _spawn(self._settings, self._build)
                with self._lock:
                    self._readers.append(reader)

    def close(self) -> None:
        with self._lock:
            readers, self._readers = self._readers, []
        for reader in readers:
            reader.stop()

    async def read(self, keys: list[InputsKey]) -> dict[InputsKey, UserInputs]:
        """The inputs of a batch of requests, read in a reader process; one that stopped
        is replaced and the read tried once more; one stuck is killed and replaced, and the
        read fails (``TimeoutError``)."""
        for attempt in (1, 2):
            reader = await self._reader()
            try:
                async with asyncio.timeout(self.read_timeout_s):
                    return await reader.read(keys)
            except TimeoutError:
                self._discard(reader)
                log.error(
                    "a reader process took over %.0f s to read the inputs of %d request(s): "
                    "killed and replaced; those requests are answered inputs_unavailable",
                    self.read_timeout_s,
                    len(keys),
                )
                raise
            except ReaderGone:
                self._discard(reader)
                if attempt == 2:
                    raise
                log.error(
                    "a reader process stopped while reading the inputs of %d request(s); "
                    "reading them again in a new one",
                    len(keys),
                )
        raise AssertionError("unreachable")

    async def _reader(self) -> _Reader:
        if len(self._readers) < self._processes:
            await asyncio.to_thread(self.start)
        with self._lock:
            self._next = (self._next + 1) % len(self._readers)
            return self._readers[self._next]

    def _discard(self, reader: _Reader) -> None:
        with self._lock:
            if reader not in self._readers:
                return  # another read replaced it already
            self._readers.remove(reader)
            self.restarts += 1
        reader.stop(wait_s=0.0)  # dead already, or left midway: not worth waiting for


def readers_for(settings: Settings, local: Readers) -> Readers:
    """The service's readers as the settings say: in reader processes, or ``local`` as is."""
    if settings.serve_reader_processes == 0:
        return local
    return ReaderProcess(settings, settings.serve_reader_processes).readers(local)
