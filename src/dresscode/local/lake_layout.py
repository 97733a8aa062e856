"""``dresscode lake migrate``'s second half: a lake written by an earlier layout, brought to
this release's.

Two changes of layout, both in place and idempotent:

* **Re-partition.** ``wardrobe_items`` was a ``date``-partitioned Delta table; this release
  partitions it by ``user_bucket`` (:mod:`dresscode.core.delta`). One Delta commit rewrites the
  table with the new partitioning (``overwrite`` with ``schema_mode="overwrite"``): readers see
  the old layout or the new, never a mix, and the old version stays readable by time travel
  until ``lake_maintenance`` vacuums it. The rows are read at one version and checked after the
  commit (the key tuples, with multiplicity); a mismatch raises. The table is read whole, once:
  a one-off, sized in ``docs/runbooks/lake_maintenance.md``.
* **Index the events by user.** ``user_events`` (the feedback table's events, by user) is
  written with every feedback part from this release on; the events of older parts are
  committed here, part by part, under the same part names the writers use, so a second run
  replaces them with themselves.

Run it with nothing writing to the lake (``make down`` first), like the rest of the migration.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from dresscode.core import delta, lake
from dresscode.core.config import Settings, get_settings
from dresscode.core.tables import CATALOGUE, FEEDBACK

log = logging.getLogger(__name__)


class LayoutMigrationFailed(RuntimeError):
    """A table read back after re-partitioning does not hold the rows it held before."""


@dataclass(frozen=True)
class LayoutReport:
    table: str
    action: str  # "repartitioned", "indexed", "up to date", or "would ..." in a dry run
    rows: int = 0

    def summary(self) -> str:
        return f"{self.table}: {self.action}" + (f" ({self.rows} rows)" if self.rows else "")


def pending(settings: Settings | None = None) -> list[str]:
    """The tables whose layout is older than this release's (nothing read but logs)."""
    settings = settings or get_settings()
    found = [name for name in delta.TABLES if _stale_partitioning(name, settings)]
    if _events_missing(settings):
        found.append(lake.USER_EVENTS_TABLE)
    return found


def migrate_layout(
    settings: Settings | None = None, *, dry_run: bool = False
) -> list[LayoutReport]:
    """Re-partition what is stale and index the events by user; one report per table."""
    settings = settings or get_settings()
    reports = [
        repartition(name, settings, dry_run=dry_run)
        for name in delta.TABLES
        if _stale_partitioning(name, settings)
    ]
    if _events_missing(settings):
        reports.append(index_user_events(settings, dry_run=dry_run))
    return reports


def repartition(
    name: str, settings: Settings | None = None, *, dry_run: bool = False
) -> LayoutReport:
    """Rewrite ``name`` with this release's partitioning in one commit, verified."""
    import pyarrow as pa
    from deltalake import write_deltalake

    settings = settings or get_settings()
    table = delta.open_table(name, settings)
    if table is None or not _stale_partitioning(name, settings):
        return LayoutReport(name, "up to date")
    spec = delta.TABLES[name]
    data = table.to_pyarrow_table()
    if dry_run:
        return LayoutReport(name, f"would be re-partitioned by {spec.partition}", data.num_rows)
    if spec.partition == delta.BUCKET:
        users = data.column("user_id").to_pylist()
        buckets = pa.array([delta.user_bucket(u) for u in users], pa.string())
        if delta.BUCKET in data.column_names:
            data = data.drop_columns([delta.BUCKET])
        data = data.append_column(delta.BUCKET, buckets)
    key = list(CATALOGUE[name].key)
    before = _keys(data, key)
    uri, options = delta.location(name, settings)
    log.info("%s: re-partitioning %d rows by %s", name, data.num_rows, spec.partition)
    write_deltalake(
        table,
        data,
        mode="overwrite",
        schema_mode="overwrite",
        partition_by=[spec.partition],
        storage_options=options,
    )
    after = _keys(delta.read(name, settings, columns=key), key)
    if after != before:
        raise LayoutMigrationFailed(
            f"lake table {name!r} at {uri}: read back after re-partitioning holds "
            f"{after.total()} key rows, {before.total()} before; the previous version "
            f"{table.version()} is intact (time travel) — restore it with DeltaTable.restore"
        )
    return LayoutReport(name, f"re-partitioned by {spec.partition}, verified", data.num_rows)


def index_user_events(settings: Settings | None = None, *, dry_run: bool = False) -> LayoutReport:
    """Commit the events of every ``feedback`` part to ``user_events``."""
    import pyarrow.parquet as pq

    settings = settings or get_settings()
    name = lake.USER_EVENTS_TABLE
    written = 0
    for path in lake.list_files(lake.table(FEEDBACK.name, settings)):
        day = _day(str(path))
        if day is None or not path.name.endswith(".parquet"):
            continue  # the raw archive and reports live beside the parts
        with path.fs.open(path.path, "rb") as fh:
            frame = pq.read_table(fh).to_pandas()
        if not dry_run:
            written += lake.write_user_events(day, path.stem, frame, settings)
        else:
            written += len(frame)
    if not dry_run and delta.open_table(name, settings) is None:
        # No event in the whole feedback table: an empty table says "indexed", so the next run
        # does not read every feedback part again to find out.
        lake.write_user_events(_today(), "layout-migration", [], settings, replace=True)
    verb = "would index" if dry_run else "indexed"
    return LayoutReport(name, f"{verb} the events of feedback by user", written)


def _today() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).date().isoformat()


def _stale_partitioning(name: str, settings: Settings) -> bool:
    table = delta.open_table(name, settings)
    if table is None:
        return False
    return list(table.metadata().partition_columns) != [delta.TABLES[name].partition]


def _events_missing(settings: Settings) -> bool:
    """Feedback parts exist and ``user_events`` was never written (an older lake)."""
    if delta.open_table(lake.USER_EVENTS_TABLE, settings) is not None:
        return False
    return bool(lake.partition_days(FEEDBACK.name, settings))


def _day(path: str) -> str | None:
    for segment in path.split("/"):
        if segment.startswith("date="):
            return segment[len("date=") :]
    return None


def _keys(data: object, key: list[str]) -> Counter[tuple[str | None, ...]]:
    import pyarrow as pa

    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data)
    columns = [table.column(k).to_pylist() for k in key]
    return Counter(
        tuple(None if v is None else str(v) for v in row) for row in zip(*columns, strict=True)
    )
