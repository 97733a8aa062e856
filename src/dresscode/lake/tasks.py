"""The work of ``lake_maintenance``, one function per task: maintain (one Delta table), report.

The work is :mod:`.maintenance`: compact the small files of past days z-ordered by the
table's cluster columns, align the table's retention, vacuum, checkpoint and expire the log.
What crosses an XCom is a ``TypedDict``: a plain JSON dict at runtime.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, timedelta
from typing import TypedDict

from dresscode.core import delta
from dresscode.core.config import Settings, get_settings
from dresscode.lake import maintenance
from dresscode.lake.maintenance import Maintained

__all__ = ["MAINTAIN_TIMEOUT", "TABLES", "Maintained", "Report", "maintain", "report"]

log = logging.getLogger(__name__)

TABLES: tuple[str, ...] = tuple(delta.TABLES)
"""The Delta tables, one mapped ``maintain`` each (known at parse time: no listing task)."""

MAINTAIN_TIMEOUT = timedelta(hours=2)
"""One table's maintenance: minutes nightly (the days that changed); the first run on a lake
that was never compacted rewrites every day, committing every few minutes as it goes."""


class Report(TypedDict):
    """The run's totals over the tables that were maintained."""

    maintained: list[str]
    never_written: list[str]
    files_before: int
    files_after: int
    files_vacuumed: int


class MaintenanceFailed(RuntimeError):
    """Some tables were not maintained; the message names them."""


def maintain(table: str, *, day: date, settings: Settings | None = None) -> Maintained:
    """Compact, vacuum and checkpoint one Delta table; the partitions from ``day`` (the run's
    day, still being written) on are not compacted."""
    if table not in delta.TABLES:
        raise ValueError(f"{table!r} is not a Delta table of the lake; known: {', '.join(TABLES)}")
    return maintenance.maintain(table, settings, today=day)


def report(results: Sequence[Maintained]) -> Report:
    """Totals of the tables maintained; fails naming each table that has no result (its
    ``maintain`` failed after its retries: its log says why)."""
    done = {result["table"]: result for result in results}
    maintained = [name for name in TABLES if name in done and done[name]["written"]]
    totals = Report(
        maintained=maintained,
        never_written=[name for name in TABLES if name in done and not done[name]["written"]],
        files_before=sum(done[name]["files_before"] for name in maintained),
        files_after=sum(done[name]["files_after"] for name in maintained),
        files_vacuumed=sum(done[name]["files_vacuumed"] for name in maintained),
    )
    log.info(
        "lake maintenance: maintained %s; never written: %s; files %d -> %d, %d vacuumed",
        ", ".join(maintained) or "none",
        ", ".join(totals["never_written"]) or "none",
        totals["files_before"],
        totals["files_after"],
        totals["files_vacuumed"],
    )
    failed = [name for name in TABLES if name not in done]
    if failed:
        lake_uri = get_settings().lake_uri
        raise MaintenanceFailed(
            f"lake maintenance failed for {len(failed)} of {len(TABLES)} tables of {lake_uri}: "
            f"{', '.join(failed)} (see their maintain task logs; "
            "docs/runbooks/lake_maintenance.md)"
        )
    return totals
