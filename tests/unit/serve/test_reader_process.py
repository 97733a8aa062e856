"""The service's reads in a reader process: the same answers as in threads, a process that dies
is replaced without refusing the read, and the processes start and stop with the service."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import psutil
import pytest

from dresscode.core.config import get_settings
from dresscode.serve.context import lake_readers, read_inputs
from dresscode.serve.reader_process import ReaderProcess, readers_for

DAY = date(2026, 5, 2)


@pytest.fixture
def reader(two_users_lake: Path) -> Iterator[ReaderProcess]:
    process = ReaderProcess(get_settings())
    try:
        yield process
    finally:
        process.close()


async def test_the_reader_process_answers_as_the_readers_in_a_thread_do(
    reader: ReaderProcess,
) -> None:
    local = lake_readers(get_settings())
    remote = reader.readers(local)
    keys = [("u1", DAY, None), ("u2", DAY, "Paris"), ("nobody", DAY, None)]
    assert remote.inputs is not None
    found = await remote.inputs(keys)
    assert found == read_inputs(local, keys)
    assert set(found) == {("u1", DAY, None), ("u2", DAY, "Paris")}  # an unknown user: absent
    mine = found[("u1", DAY, None)]
    assert mine.profile_city == "Rome" and mine.pregenerated is None
    assert sorted(i["item_id"] for i in mine.wardrobe) == ["jeans", "tee"]
    assert found[("u2", DAY, "Paris")].profile_city == "Lima"
    # The process read the lake, not this one: its pid is not ours.
    (pid,) = reader.start()
    assert pid != os.getpid()


async def test_a_reader_process_that_dies_is_replaced_and_the_read_still_answered(
    reader: ReaderProcess, caplog: pytest.LogCaptureFixture
) -> None:
    (first,) = reader.start()
    os.kill(first, signal.SIGKILL)
    psutil.Process(first).wait(10)
    found = await reader.read([("u2", DAY, None)])
    assert found[("u2", DAY, None)].profile_city == "Lima"
    assert reader.restarts == 1
    (second,) = reader.start()
    assert second != first
    assert "a reader process stopped while reading the inputs of 1 request(s)" in caplog.text


async def test_reads_at_once_each_get_their_own_answer(reader: ReaderProcess) -> None:
    reader.start()
    mine = asyncio.create_task(reader.read([("u1", DAY, None)]))
    leaving = asyncio.create_task(reader.read([("u1", DAY, "Paris")]))
    theirs = asyncio.create_task(reader.read([("u2", DAY, None), ("nobody", DAY, None)]))
    await asyncio.sleep(0)  # the first is out; the others wait their turn on the socket
    leaving.cancel()  # gone before its turn: nothing of it reaches the reader
    after = await reader.read([("u2", DAY, "Paris")])
    assert list(await mine) == [("u1", DAY, None)]
    assert list(await theirs) == [("u2", DAY, None)]
    assert (
        list(after) == [("u2", DAY, "Paris")] and after[("u2", DAY, "Paris")].profile_city == "Lima"
    )
    assert leaving.cancelled() and reader.restarts == 0


async def test_a_stuck_reader_is_killed_and_replaced_and_its_read_refused(
    two_users_lake: Path, caplog: pytest.LogCaptureFixture
) -> None:
    process = ReaderProcess(get_settings(), read_timeout_s=2.0)
    try:
        (stuck,) = process.start()
        os.kill(stuck, signal.SIGSTOP)  # a read that never ends (a storage stall, say)
        with pytest.raises(TimeoutError):
            await process.read([("u1", DAY, None)])
        assert not psutil.pid_exists(stuck)  # killed and reaped, not left stopped
        assert "took over 2 s to read the inputs of 1 request(s): killed" in caplog.text
        # The next read goes to a new process, not behind the stuck one (its first read opens
        # the lake tables: not stuck, but not instant on a busy machine).
        process.read_timeout_s = 120.0
        found = await process.read([("u2", DAY, None)])
        assert found[("u2", DAY, None)].profile_city == "Lima" and process.restarts == 1
    finally:
        process.close()


def test_the_processes_start_and_stop_with_the_readers(two_users_lake: Path) -> None:
    process = ReaderProcess(get_settings())
    readers = process.readers(lake_readers(get_settings()))
    assert readers.start is not None and readers.close is not None
    pids = readers.start()
    assert all(psutil.pid_exists(p) for p in pids)
    readers.close()
    assert not any(psutil.pid_exists(p) for p in pids)  # stopped and reaped


def test_no_reader_processes_when_the_setting_is_zero(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRESSCODE_SERVE_READER_PROCESSES", "0")
    get_settings.cache_clear()
    local = lake_readers(get_settings())
    assert readers_for(get_settings(), local) is local
    monkeypatch.setenv("DRESSCODE_SERVE_READER_PROCESSES", "2")
    get_settings.cache_clear()
    remote = readers_for(get_settings(), local)
    assert remote.inputs is not None and local.inputs is None
    # The reads are warmed where they run: in the reader process, not in this one.
    assert local.warm is not None and remote.warm is None
    assert remote.weather is local.weather and remote.wardrobes is local.wardrobes


def test_a_reader_process_exits_when_its_server_is_killed(two_users_lake: Path) -> None:
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import asyncio\n"
            "from datetime import date\n"
            "from dresscode.core.config import get_settings\n"
            "from dresscode.serve.reader_process import ReaderProcess\n"
            "async def serve():\n"
            "    process = ReaderProcess(get_settings())\n"
            "    print('reader', *await asyncio.to_thread(process.start), flush=True)\n"
            "    found = await process.read([('u2', date(2026, 5, 2), None)])\n"
            "    print('read', *(i.profile_city for i in found.values()), flush=True)\n"
            "    await asyncio.sleep(120)\n"
            "asyncio.run(serve())\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    reader = None
    try:
        assert server.stdout is not None
        line = next(line for line in server.stdout if line.startswith("reader "))
        reader = psutil.Process(int(line.split()[1]))
        assert next(line for line in server.stdout if line.startswith("read ")) == ("read Lima\n")
        assert reader.ppid() == server.pid
        server.kill()  # SIGKILL: no shutdown, no goodbye to the reader
        server.wait(10)
        reader.wait(10)  # psutil.TimeoutExpired if the orphan lived on
    finally:
        server.kill()
        if reader is not None and reader.is_running():
            reader.kill()
