"""The service's lake writes: ``inference_log`` and ``serve_shadow`` rows, a part per flush.

One Parquet part per request would bury the lake in tiny files, so rows are buffered and
written every ``DRESSCODE_SERVE_LOG_FLUSH_S`` (and at shutdown), one part per table and day,
named by a hash of the request ids it holds: written again (a retried flush), it replaces
itself, never duplicates. ``inference_log`` rows are the same shape as the batch's (built by
``llm.ask``), partitioned by the day of the call, so ``model_monitoring`` reads online traffic
with the batch's. A write that fails keeps its rows for the next flush (logged), up to
``MAX_BUFFERED_ROWS`` per table, beyond which the oldest are dropped with an ERROR: the
service keeps answering users when the lake is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from dresscode.core import lake
from dresscode.core.config import Settings

log = logging.getLogger(__name__)

MAX_BUFFERED_ROWS = 200_000
Writer = Callable[[str, str, str, list[dict[str, Any]], Settings], Any]


def _write(name: str, day: str, part: str, rows: list[dict[str, Any]], settings: Settings) -> Any:
    return lake.write_parquet(name, day, part, rows, settings)


class LakeLog:
    """Buffered, periodic writes of rows to lake tables."""

    def __init__(self, settings: Settings, flush_s: float, write: Writer = _write) -> None:
        self.settings = settings
        self.flush_s = flush_s
        self._write = write
        self._rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._loop: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._lock = asyncio.Lock()
        self.written: dict[str, int] = defaultdict(int)

    def add(self, table: str, rows: Iterable[Mapping[str, Any]]) -> None:
        buffer = self._rows[table]
        buffer.extend(dict(r) for r in rows)
        if len(buffer) > MAX_BUFFERED_ROWS:
            dropped = len(buffer) - MAX_BUFFERED_ROWS
            del buffer[:dropped]
            log.error("%s: lake writes are failing; dropped the %d oldest rows", table, dropped)

    def pending(self, table: str) -> int:
        return len(self._rows.get(table, ()))

    def start(self) -> None:
        self._loop = asyncio.create_task(self._flush_forever(), name="lake-log-flush")

    async def aclose(self) -> None:
        """Stop the periodic flush and write what is buffered.

        The loop is asked to stop, not cancelled: a flush in progress finishes its writes
        (a write runs in a thread, which cancelling would orphan, racing the final flush).
        """
        if self._loop is not None:
            self._stopping.set()
            await self._loop
        await self.flush()

    async def _flush_forever(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.flush_s)
            await self.flush()

    async def flush(self) -> None:
        """Write everything buffered now: one part per table and day.

        Rows not written (a write failed, or the flush was cancelled) go back to the buffer
        for the next flush; a part written twice replaces itself.
        """
        async with self._lock:
            batches, self._rows = self._rows, defaultdict(list)
            parts = [
                (table, day, day_rows)
                for table, rows in batches.items()
                for day, day_rows in _by_day(rows).items()
            ]
            for n, (table, day, day_rows) in enumerate(parts):
                ids = "\n".join(sorted(str(r.get("request_id")) for r in day_rows))
                part = "serve-" + hashlib.sha256(ids.encode()).hexdigest()[:16]
                write = asyncio.ensure_future(
                    asyncio.to_thread(self._write, table, day, part, day_rows, self.settings)
                )
                try:
                    await asyncio.shield(write)
                except asyncio.CancelledError:
                    # A thread cannot be stopped: let this write land, then keep the rows
                    # not written for the next flush (rewritten, they would be a new part).
                    await asyncio.wait([write])
                    landed = not write.cancelled() and write.exception() is None
                    if landed:
                        self.written[table] += len(day_rows)
                    for unwritten_table, _, unwritten in parts[n + 1 if landed else n :]:
                        self.add(unwritten_table, unwritten)
                    raise
                except Exception as exc:
                    log.error(
                        "could not write %d %s row(s) to the lake (%s: %s); retrying at the next flush",
                        len(day_rows),
                        table,
                        type(exc).__name__,
                        str(exc)[:200],
                    )
                    self.add(table, day_rows)
                    continue
                self.written[table] += len(day_rows)


def _by_day(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_day: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_day[_day_of(row)].append(row)
    return by_day


def _day_of(row: Mapping[str, Any]) -> str:
    """The UTC day of the row's ``ts`` (ISO 8601), else today."""
    ts = str(row.get("ts") or "")
    try:
        return datetime.fromisoformat(ts).astimezone(UTC).date().isoformat()
    except ValueError:
        return datetime.now(UTC).date().isoformat()
