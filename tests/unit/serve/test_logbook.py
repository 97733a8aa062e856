"""The service's buffered lake writes: no row is lost to a failed write, a cancelled flush or
shutdown in the middle of a flush, and none is written twice."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any

from dresscode.core.config import Settings, get_settings
from dresscode.serve.logbook import LakeLog

NOW = datetime.now(UTC).isoformat()


def row(request_id: str) -> dict[str, Any]:
    return {"request_id": request_id, "ts": NOW}


class Lake:
    """Records each part written (by name, so a part rewritten replaces itself, as the lake
    does); ``hold`` makes the writes of one table wait until released."""

    def __init__(self, hold: str | None = None, fail: int = 0) -> None:
        self.parts: dict[tuple[str, str], list[str]] = {}
        self.hold = hold
        self.release = threading.Event()
        self.held = threading.Event()
        self.fail = fail

    def write(
        self, table: str, day: str, part: str, rows: list[dict[str, Any]], _: Settings
    ) -> None:
        if table == self.hold:
            self.held.set()
            assert self.release.wait(10), "the test never released the write"
        if self.fail:
            self.fail -= 1
            raise OSError("the lake is down")
        self.parts[(table, part)] = [r["request_id"] for r in rows]

    def rows(self, table: str) -> list[str]:
        return sorted(r for (t, _), ids in self.parts.items() if t == table for r in ids)


async def test_shutdown_during_a_flush_writes_every_row_of_every_table_once() -> None:
    lake = Lake(hold="inference_log")
    log = LakeLog(get_settings(), flush_s=0.01, write=lake.write)
    log.start()
    log.add("inference_log", [row("a")])
    log.add("serve_shadow", [row("a")])
    # The periodic flush is writing inference_log (serve_shadow next) when shutdown begins.
    assert await asyncio.to_thread(lake.held.wait, 5)
    closing = asyncio.create_task(log.aclose())
    await asyncio.sleep(0.05)
    log.add("serve_shadow", [row("b")])  # a shadow finishing while the service stops
    lake.release.set()
    await asyncio.wait_for(closing, 10)
    assert lake.rows("inference_log") == ["a"]
    assert lake.rows("serve_shadow") == ["a", "b"]
    assert dict(log.written) == {"inference_log": 1, "serve_shadow": 2}
    assert log.pending("serve_shadow") == 0


async def test_a_cancelled_flush_keeps_what_it_did_not_write_for_the_next() -> None:
    lake = Lake(hold="inference_log")
    log = LakeLog(get_settings(), flush_s=60, write=lake.write)
    log.add("inference_log", [row("a")])
    log.add("serve_shadow", [row("a"), row("b")])
    flushing = asyncio.create_task(log.flush())
    assert await asyncio.to_thread(lake.held.wait, 5)
    flushing.cancel()
    await asyncio.sleep(0.05)
    lake.release.set()  # the write in its thread still lands
    await asyncio.gather(flushing, return_exceptions=True)
    assert flushing.cancelled()
    assert lake.rows("inference_log") == ["a"] and lake.rows("serve_shadow") == []
    assert (log.pending("inference_log"), log.pending("serve_shadow")) == (0, 2)
    await log.flush()
    assert lake.rows("serve_shadow") == ["a", "b"] and lake.rows("inference_log") == ["a"]


async def test_a_failed_write_is_retried_at_the_next_flush_as_the_same_part() -> None:
    lake = Lake(fail=1)
    log = LakeLog(get_settings(), flush_s=60, write=lake.write)
    log.add("serve_shadow", [row("b"), row("a")])
    await log.flush()
    assert lake.parts == {} and log.pending("serve_shadow") == 2
    await log.flush()
    assert lake.rows("serve_shadow") == ["a", "b"] and len(lake.parts) == 1
    assert log.pending("serve_shadow") == 0 and log.written["serve_shadow"] == 2
