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
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        await self.flush()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            await self.flush()

    async def flush(self) -> None:
        """Write everything buffered now: one part per table and day."""
        async with self._lock:
            batches, self._rows = self._rows, defaultdict(list)
            for table, rows in batches.items():
                by_day: dict[str, list[dict[str, Any]]] = defaultdict(list)
                for row in rows:
                    by_day[_day_of(row)].append(row)
                for day, day_rows in by_day.items():
                    ids = "\n".join(sorted(str(r.get("request_id")) for r in day_rows))
                    part = "serve-" + hashlib.sha256(ids.encode()).hexdigest()[:16]
                    try:
                        await asyncio.to_thread(
                            self._write, table, day, part, day_rows, self.settings
                        )
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


def _day_of(row: Mapping[str, Any]) -> str:
    """The UTC day of the row's ``ts`` (ISO 8601), else today."""
    ts = str(row.get("ts") or "")
    try:
        return datetime.fromisoformat(ts).astimezone(UTC).date().isoformat()
    except ValueError:
        return datetime.now(UTC).date().isoformat()
