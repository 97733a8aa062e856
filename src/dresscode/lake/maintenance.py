"""Upkeep of the lake's Delta tables: compact, set the retention, vacuum, checkpoint.

Every ingest batch commits one small file to its day's partition, so a table gathers thousands
of small files and log entries; a reader pays a request per file and a replay per log entry.
Per table (:data:`dresscode.core.delta.TABLES`), in this order:

1. **compact** — each partition that holds two or more small files (under half of
   ``DRESSCODE_LAKE_TARGET_FILE_MB``) is rewritten into files of about the target size,
   z-ordered by the table's cluster columns so that a reader filtering on them skips files
   (plain bin-packing when a table has none), in row groups of :data:`ROW_GROUP_ROWS` so that
   a reader of a few users decodes a row group or two, not the file. delta-rs closes an output
   file once it reaches the target, so a compacted partition keeps at most one small file, its
   tail, and the next run skips it: the work is the partitions that changed, not the lake's
   age. Of a ``date``-partitioned table only the days *before the run's day*: ingest is still
   committing to that one, and each of its commits would have to be retried after a
   compaction of its partition. A ``user_bucket``-partitioned table has no quiet partition
   (every batch writes to some bucket): a commit that races the compaction of its bucket
   retries (``delta.write_part``), and so does this task.
2. **retention** — the table's own ``delta.deletedFileRetentionDuration`` is made
   ``DRESSCODE_LAKE_RETENTION_HOURS`` (and ``delta.logRetentionDuration`` at least that): a
   checkpoint forgets a removed file once it is older than the table's setting, and a forgotten
   file is never vacuumed; other engines' VACUUM reads the same property. One metadata commit,
   only when the setting changed.
3. **vacuum** — deletes the files removed from the table longer ago than the retention (the
   files of the versions before a compaction). Only files the log says were removed, never an
   unreferenced file (a concurrent writer's file not yet committed is one). Versions newer than
   the retention stay readable by time travel.
4. **checkpoint** and **expire the log** — a checkpoint of the current version, then log entries
   older than the log retention are deleted, so opening the table replays one checkpoint and a
   day of commits.

Concurrency: Delta's optimistic commits. Ingest appending to other partitions never conflicts.
A commit that lost to a concurrent one raises ``CommitFailedError`` (for example a part of a
partition being compacted was replaced meanwhile); the task's retries run the whole table again
on the new version, which is safe: each step is idempotent.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict

from dresscode.core import delta
from dresscode.core.config import Settings, get_settings

if TYPE_CHECKING:
    from deltalake import DeltaTable

log = logging.getLogger(__name__)

DELETED_FILE_RETENTION = "delta.deletedFileRetentionDuration"
LOG_RETENTION = "delta.logRetentionDuration"
# Delta's defaults when a table does not set them (the protocol's, also delta-rs's).
DEFAULT_RETENTION_S = {DELETED_FILE_RETENTION: 7 * 86_400, LOG_RETENTION: 30 * 86_400}
# A long first compaction (a lake that was never compacted) commits what it has done every few
# minutes, so a retry after a conflict or a timeout does not start from nothing.
COMMIT_EVERY = timedelta(minutes=5)
# Rows per row group of a compacted file: a user's items are a few dozen rows, a batch of 200
# users a few thousand, so a batch's range falls in one or two groups of this size.
ROW_GROUP_ROWS = 16_384


class Maintained(TypedDict):
    """One table's maintenance: what was compacted and vacuumed (``written`` False: no table)."""

    table: str
    written: bool
    version: int | None  # the table's version afterwards
    files_before: int
    files_after: int
    partitions_compacted: list[str]
    files_compacted: int  # small files rewritten
    files_written: int  # files they became
    files_vacuumed: int
    seconds: float


def maintain(
    name: str, settings: Settings | None = None, *, today: date | None = None
) -> Maintained:
    """Compact, vacuum and checkpoint the Delta table ``name``; partitions from ``today`` (the
    run's UTC day, by default the current one) on are not compacted. A table never written is
    skipped. Raises ``CommitFailedError`` when a concurrent commit won (the task retries)."""
    settings = settings or get_settings()
    today = today or datetime.now(UTC).date()
    started = time.monotonic()
    table = delta.open_table(name, settings)
    if table is None:
        log.info("%s: never written, nothing to maintain", name)
        return _outcome(name, started)
    files_before = _file_count(table)
    compacted = compact(
        table,
        name,
        target_bytes=settings.lake_target_file_mb * 1024 * 1024,
        before=today,
    )
    align_retention(table, name, settings.lake_retention_hours)
    vacuumed = vacuum(table, name, settings.lake_retention_hours)
    table.create_checkpoint()
    table.cleanup_metadata()
    table.update_incremental()
    outcome = _outcome(
        name,
        started,
        table=table,
        files_before=files_before,
        compacted=compacted,
        vacuumed=len(vacuumed),
    )
    log.info(
        "%s: version %s, %d files -> %d (%s compacted, %s vacuumed), "
        "checkpointed and log expired in %.1f s",
        name,
        outcome["version"],
        outcome["files_before"],
        outcome["files_after"],
        _count(len(outcome["partitions_compacted"]), "partition"),
        _count(outcome["files_vacuumed"], "file"),
        outcome["seconds"],
    )
    return outcome


@dataclass(frozen=True)
class Compaction:
    """What :func:`compact` rewrote: the partitions, the small files and what they became."""

    partitions: list[str]
    files_removed: int = 0
    files_added: int = 0


def compact(table: DeltaTable, name: str, *, target_bytes: int, before: date) -> Compaction:
    """Rewrite the partitions before ``before`` that hold two or more small files (one commit
    every :data:`COMMIT_EVERY`), z-ordered by the table's cluster columns."""
    partitions = partitions_to_compact(table, target_bytes=target_bytes, before=before)
    if not partitions:
        log.info(
            "%s: no partition before %s holds two files under %s; nothing to compact",
            name,
            before.isoformat(),
            _size(target_bytes // 2),
        )
        return Compaction(partitions=[])
    from deltalake import WriterProperties

    present = {field.name for field in table.schema().fields}
    columns = [c for c in delta.TABLES[name].cluster_by if c in present]
    filters: list[tuple[str, str, Any]] = [(delta.TABLES[name].partition, "in", partitions)]
    started = time.monotonic()
    if columns:
        metrics = table.optimize.z_order(
            columns,
            partition_filters=filters,
            target_size=target_bytes,
            min_commit_interval=COMMIT_EVERY,
            # delta-rs drops its default compression when properties are given: name it.
            writer_properties=WriterProperties(
                max_row_group_size=ROW_GROUP_ROWS, compression="SNAPPY"
            ),
        )
    else:
        if delta.TABLES[name].cluster_by:
            log.warning(
                "%s: cluster columns %s not in the table yet; compacting without z-order",
                name,
                list(delta.TABLES[name].cluster_by),
            )
        metrics = table.optimize.compact(
            partition_filters=filters, target_size=target_bytes, min_commit_interval=COMMIT_EVERY
        )
    table.update_incremental()
    removed, added = _details(metrics, "filesRemoved"), _details(metrics, "filesAdded")
    log.info(
        "%s: %s %s (%s): %d files (%s) -> %d (%s) in %.1f s",
        name,
        f"z-ordered by {', '.join(columns)}" if columns else "compacted",
        _count(len(partitions), "partition"),
        _span(partitions),
        int(metrics.get("numFilesRemoved", 0)),
        _size(int(removed.get("totalSize", 0))),
        int(metrics.get("numFilesAdded", 0)),
        _size(int(added.get("totalSize", 0))),
        time.monotonic() - started,
    )
    return Compaction(
        partitions=partitions,
        files_removed=int(metrics.get("numFilesRemoved", 0)),
        files_added=int(metrics.get("numFilesAdded", 0)),
    )


def partitions_to_compact(table: DeltaTable, *, target_bytes: int, before: date) -> list[str]:
    """The partitions holding two or more files under half the target (half: an output file
    is closed at the target by its estimated size, which counts its last pages uncompressed, so
    a full file may come out a little under the target); of ``date`` partitions, those before
    ``before``."""
    import pyarrow as pa

    actions = pa.table(table.get_add_actions(flatten=True))
    partitioned_by = list(table.metadata().partition_columns)
    if not partitioned_by:
        return []
    column = f"partition.{partitioned_by[0]}"
    if actions.num_rows == 0 or column not in actions.column_names:
        return []
    cutoff = before.isoformat() if partitioned_by[0] == delta.PARTITION else None
    small = Counter(
        value
        for value, size in zip(
            actions.column(column).to_pylist(),
            actions.column("size_bytes").to_pylist(),
            strict=True,
        )
        if value is not None and (cutoff is None or value < cutoff) and size < target_bytes // 2
    )
    return sorted(value for value, files in small.items() if files >= 2)


def align_retention(table: DeltaTable, name: str, hours: int) -> dict[str, str]:
    """Make the table's file retention ``hours`` and its log retention at least that; returns
    the properties changed (none when the table says so already)."""
    configured = table.metadata().configuration
    seconds = hours * 3600

    def effective(key: str) -> float:
        value = _interval_seconds(configured.get(key))
        return DEFAULT_RETENTION_S[key] if value is None else value

    changes = {}
    if effective(DELETED_FILE_RETENTION) != seconds:
        changes[DELETED_FILE_RETENTION] = f"interval {hours} hours"
    if effective(LOG_RETENTION) < seconds:
        changes[LOG_RETENTION] = f"interval {hours} hours"
    if changes:
        table.alter.set_table_properties(changes)
        table.update_incremental()
        log.info("%s: retention set: %s", name, ", ".join(f"{k} = {v}" for k, v in changes.items()))
    return changes


def vacuum(table: DeltaTable, name: str, hours: int) -> list[str]:
    """Delete the files removed from the table more than ``hours`` ago; returns their paths."""
    deleted = table.vacuum(retention_hours=hours, dry_run=False, enforce_retention_duration=False)
    table.update_incremental()
    log.info(
        "%s: vacuum deleted %s no version of the last %d h references",
        name,
        _count(len(deleted), "file"),
        hours,
    )
    return list(deleted)


_INTERVAL = re.compile(r"^\s*interval\s+(\d+)\s+([a-z]+?)s?\s*$", re.IGNORECASE)
_UNIT_S = {
    "nanosecond": 1e-9,
    "microsecond": 1e-6,
    "millisecond": 1e-3,
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86_400,
    "week": 604_800,
}


def _interval_seconds(value: str | None) -> float | None:
    """``interval 7 days`` (Delta's duration form) in seconds; None when absent or unreadable."""
    match = _INTERVAL.match(value or "")
    if not match or match.group(2).lower() not in _UNIT_S:
        return None
    return int(match.group(1)) * _UNIT_S[match.group(2).lower()]


def _file_count(table: DeltaTable) -> int:
    return len(table.file_uris())


def _details(metrics: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """delta-rs reports ``filesAdded``/``filesRemoved`` as a JSON string of size statistics."""
    value = metrics.get(key) or {}
    return json.loads(value) if isinstance(value, str) else value


def _outcome(
    name: str,
    started: float,
    *,
    table: DeltaTable | None = None,
    files_before: int = 0,
    compacted: Compaction | None = None,
    vacuumed: int = 0,
) -> Maintained:
    compacted = compacted or Compaction(partitions=[])
    return Maintained(
        table=name,
        written=table is not None,
        version=None if table is None else table.version(),
        files_before=files_before,
        files_after=0 if table is None else _file_count(table),
        partitions_compacted=list(compacted.partitions),
        files_compacted=compacted.files_removed,
        files_written=compacted.files_added,
        files_vacuumed=vacuumed,
        seconds=round(time.monotonic() - started, 3),
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _span(days: Sequence[str]) -> str:
    return days[0] if len(days) == 1 else f"{days[0]} … {days[-1]}"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB"):
        value /= 1024
        if value < 1024 or unit == "GB":
            break
    return f"{value:.1f} {unit}"
