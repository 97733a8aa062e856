"""Materialization into the online store with bounded memory: Feast's write API, our reads.

Feast's ``materialize`` (local compute engine over the file offline store)
reads *every* partition of the source with Dask, sorts the whole table by event time, filters
the window, turns it into pandas and back, and — unless ``online_write_batch_size`` is set —
builds one protobuf per value for the whole window before the first write. Memory grows with
the table's history, not with the window. :func:`materialize` does the same job with Feast's
own write API and bounded memory:

1. take from the source Delta table's log only the files of the partitions that can hold
   the window (``date`` from ``start - overlap - 1 day`` to ``end + 1 day``: a row's event
   time may fall on the day after its partition) — the live files of the current version,
   never a replaced part, and no listing of folders;
2. pass 1 reads just (entity key, event_timestamp, created) of rows in the window and keeps,
   per entity, the row with the latest (event_timestamp, created) — Feast's latest-per-entity
   semantics, exactly, whatever the number of rows per entity per day;
3. pass 2 streams the winning rows in record batches of ``DRESSCODE_FEAST_WRITE_BATCH_SIZE``
   and hands each to ``FeatureStore.write_to_online_store``;
4. the interval is recorded in the registry like Feast's ``materialize`` does.

The overlap (``DRESSCODE_MATERIALIZE_OVERLAP_H``) re-reads late rows before the interval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict

from dresscode.core.config import Settings, get_settings
from dresscode.features.store import (
    CREATED,
    MATERIALIZED_VIEWS,
    PUSH_VIEW,
    TIMESTAMP,
    VECTOR_VIEW,
    OnlineStoreUnavailable,
    aware,
    feature_columns,
    feature_store,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from feast import FeatureStore, FeatureView

log = logging.getLogger(__name__)

# A row's event time may be up to a day after its partition day (interval start vs end).
PARTITION_SLACK = timedelta(days=1)


def _connection_errors() -> tuple[type[BaseException], ...]:
    """What an unreachable online store raises (after its client's own retries)."""
    errors: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    try:
        import redis.exceptions
    except ImportError:  # the local SQLite online store has no network to lose
        return errors
    return (*errors, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def _online_store_name(store: FeatureStore, view: FeatureView) -> str:
    """``redis at host:port``: never the connection string's options (they may hold a password).

    With the full stack's hybrid store, the store ``view`` is routed to."""
    from dresscode.features.hybrid_online_store import routed_config

    online = routed_config(store.config.online_store, view)
    where = (
        getattr(online, "connection_string", None)
        or getattr(online, "path", None)
        or getattr(online, "host", None)
        or "?"
    )
    return f"{online.type} at {str(where).split(',')[0]}"


class ViewWritten(TypedDict):
    """One view's line of a :class:`Materialized` summary."""

    view: str
    partitions: int
    rows_in_window: int
    entities_written: int
    batches: int
    seconds: float
    rows_per_s: float


class Materialized(TypedDict):
    """:meth:`MaterializeReport.as_dict`: plain types, for XCom and the task log."""

    start: str
    end: str
    entities_written: int
    views: list[ViewWritten]


@dataclass
class ViewReport:
    view: str
    partitions: int = 0
    rows_in_window: int = 0
    entities_written: int = 0
    batches: int = 0
    seconds: float = 0.0

    @property
    def rows_per_s(self) -> float:
        return self.entities_written / self.seconds if self.seconds > 0 else 0.0


@dataclass
class MaterializeReport:
    """What one materialization wrote: the window actually read and a line per view."""

    start: datetime
    end: datetime
    views: list[ViewReport] = field(default_factory=list)

    @property
    def entities_written(self) -> int:
        return sum(v.entities_written for v in self.views)

    def as_dict(self) -> Materialized:
        return Materialized(
            start=self.start.isoformat(),
            end=self.end.isoformat(),
            entities_written=self.entities_written,
            views=[
                ViewWritten(
                    view=v.view,
                    partitions=v.partitions,
                    rows_in_window=v.rows_in_window,
                    entities_written=v.entities_written,
                    batches=v.batches,
                    seconds=v.seconds,
                    rows_per_s=round(v.rows_per_s, 1),
                )
                for v in self.views
            ],
        )


# --- materialization -------------------------------------------------------------------------


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _source_dataset(
    source_uri: str, start: datetime, end: datetime, settings: Settings
) -> tuple[Any, int]:
    """(pyarrow dataset, partitions): the files of the Delta table at ``source_uri`` whose
    ``date`` partition the window can hit, chosen from its log; None when it has none."""
    from dresscode.core import delta

    days = _days((start - PARTITION_SLACK).date(), (end + PARTITION_SLACK).date())
    table = delta.open_uri(source_uri, settings)
    if table is None:
        return None, 0  # nothing written yet
    wanted = {d.isoformat() for d in days}
    live = {str(p.get(delta.PARTITION)) for p in table.partitions()}
    hit = sorted(wanted & live)
    if not hit:
        return None, 0
    days_sql = ", ".join(f"'{d}'" for d in hit)
    dataset = table.to_pyarrow_dataset(file_pruning_predicate=f"{delta.PARTITION} IN ({days_sql})")
    return dataset, len(hit)


def _window_filter(schema: pa.Schema, start: datetime, end: datetime) -> Any:
    import pyarrow as pa
    import pyarrow.dataset as ds

    ts_type = schema.field(TIMESTAMP).type
    if not pa.types.is_timestamp(ts_type):
        raise TypeError(f"{TIMESTAMP} must be a timestamp column, found {ts_type}")

    def bound(moment: datetime) -> Any:
        # Naive event times are UTC (Feast's convention): compare like with like.
        value = moment if ts_type.tz else moment.replace(tzinfo=None)
        return pa.scalar(value, type=pa.timestamp(ts_type.unit, ts_type.tz))

    # Inclusive on both ends, like Feast's file offline store.
    return (ds.field(TIMESTAMP) >= bound(start)) & (ds.field(TIMESTAMP) <= bound(end))


def _latest_rows(dataset: Any, key: str, window: Any) -> tuple[dict[int, Any], int]:
    """Pass 1: per entity, the (file, row) of its latest row in the window.

    Reads only the key and timestamp columns; returns {file index: sorted row positions} and
    the number of rows in the window. Ties on (event_timestamp, created) go to the later part.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = []
    for index, fragment in enumerate(dataset.get_fragments()):
        cols = [key, TIMESTAMP] + ([CREATED] if CREATED in dataset.schema.names else [])
        table = fragment.to_table(schema=dataset.schema, columns=cols, filter=window)
        if table.num_rows == 0:
            continue
        n = table.num_rows
        table = table.append_column("_file", pa.array(np.full(n, index, dtype=np.int32)))
        table = table.append_column("_row", pa.array(np.arange(n, dtype=np.int64)))
        if CREATED not in table.column_names:
            table = table.append_column(CREATED, pa.nulls(n, pa.timestamp("us", "UTC")))
        parts.append(table.select([key, TIMESTAMP, CREATED, "_file", "_row"]))
    if not parts:
        return {}, 0
    rows = pa.concat_tables(parts, promote_options="permissive")
    total = rows.num_rows
    order = pc.sort_indices(
        rows,
        sort_keys=[
            (key, "ascending"),
            (TIMESTAMP, "descending"),
            (CREATED, "descending"),
            ("_file", "descending"),
            ("_row", "descending"),
        ],
    )
    rows = rows.take(order)
    keys = rows.column(key).combine_chunks()
    first = np.ones(len(keys), dtype=bool)
    if len(keys) > 1:
        first[1:] = pc.not_equal(keys.slice(1), keys.slice(0, len(keys) - 1)).to_numpy(
            zero_copy_only=False
        )
    winners = rows.filter(pa.array(first))
    files = winners.column("_file").to_numpy()
    positions = winners.column("_row").to_numpy()
    by_file = {int(f): np.sort(positions[files == f]) for f in np.unique(files)}
    return by_file, total


class _Progress:
    """INFO line at most every ``every_s``: rows n of N, rate, ETA."""

    def __init__(self, label: str, total: int, every_s: float = 10.0) -> None:
        self.label, self.total, self.every_s = label, total, every_s
        self.started = self.last = time.monotonic()

    def __call__(self, done: int, batch: int) -> None:
        now = time.monotonic()
        if done < self.total and now - self.last < self.every_s:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        eta = (self.total - done) / rate if rate else float("inf")
        log.info(
            "%s: batch %d, %d/%d entities, %.0f rows/s, ETA %s",
            self.label,
            batch,
            done,
            self.total,
            rate,
            "unknown" if eta == float("inf") else f"{eta:.0f}s",
        )


def _materialize_view(
    store: FeatureStore, view: FeatureView, start: datetime, end: datetime, settings: Settings
) -> ViewReport:
    import warnings

    import numpy as np
    import pyarrow as pa

    report = ViewReport(view=view.name)
    began = time.monotonic()
    source_uri = getattr(view.batch_source, "path", None)
    if not source_uri:
        raise ValueError(f"{view.name}: its batch source has no file path to read the lake from")
    source, report.partitions = _source_dataset(source_uri, start, end, settings)
    if source is None:
        log.warning(
            "no_source_partitions: %s has no partitions for %s..%s under %s",
            view.name,
            start.isoformat(),
            end.isoformat(),
            source_uri,
        )
        return report
    # The table's schema (every column it ever had): a file written before a column existed
    # reads it as null. Fragments are the data files, in one order for both passes.
    dataset, schema = source, source.schema
    files = list(dataset.get_fragments())
    key = view.entity_columns[0].name
    wanted = [c for c in feature_columns(view) if c in schema.names]
    missing = sorted(set(feature_columns(view)) - set(wanted) - {CREATED})
    features = {f.name for f in view.features}
    if missing and (set(missing) - features or features <= set(missing)):  # keys, or everything
        raise ValueError(f"{view.name}: source {source_uri} lacks columns {missing}")
    if missing:
        # Parts written before a feature existed (an upgrade, a backfill of older history):
        # the feature is unknown for them, not an error that stops the other features.
        log.warning(
            "older_source_schema: %s parts of %s..%s lack %s; written as null (unknown)",
            view.name,
            start.isoformat(),
            end.isoformat(),
            missing,
        )
    window = _window_filter(schema, start, end)
    winners, report.rows_in_window = _latest_rows(dataset, key, window)
    total = sum(len(rows) for rows in winners.values())
    progress = _Progress(f"materialize {view.name}", total)
    log.info(
        "materialize %s %s..%s: %d partitions, %d files, %d rows in window, %d entities",
        view.name,
        start.isoformat(),
        end.isoformat(),
        report.partitions,
        len(files),
        report.rows_in_window,
        total,
    )
    batch_size = settings.feast_write_batch_size
    for index, fragment in enumerate(dataset.get_fragments()):
        rows = winners.get(index)
        if rows is None or len(rows) == 0:
            continue
        offset = 0
        for batch in fragment.to_batches(
            schema=schema, columns=wanted, filter=window, batch_size=batch_size
        ):
            lo, hi = np.searchsorted(rows, [offset, offset + batch.num_rows])
            take = rows[lo:hi] - offset
            offset += batch.num_rows
            if len(take) == 0:
                continue
            chunk = batch.take(pa.array(take)).to_pandas()
            for name in missing:
                chunk[name] = None
            try:
                with warnings.catch_warnings():
                    # An all-null chunk is skipped by Feast with a UserWarning; nothing to keep.
                    warnings.simplefilter("ignore", UserWarning)
                    store.write_to_online_store(view.name, chunk)
            except _connection_errors() as exc:
                raise OnlineStoreUnavailable(
                    f"{view.name}: the online store ({_online_store_name(store, view)}) is unreachable "
                    f"after {report.entities_written} of {total} entities were written: {exc} "
                    "Re-running the interval completes it."
                ) from exc
            report.entities_written += len(take)
            report.batches += 1
            progress(report.entities_written, report.batches)
    report.seconds = time.monotonic() - began
    return report


def materialize(
    start: datetime,
    end: datetime,
    *,
    views: Sequence[str] = MATERIALIZED_VIEWS,
    settings: Settings | None = None,
) -> MaterializeReport:
    """Load the latest row per entity with event time in [start - overlap, end] into the online store.

    Re-running the same interval writes the same values and timestamps (idempotent).
    """
    settings = settings or get_settings()
    start, end = aware(start, "start"), aware(end, "end")
    if PUSH_VIEW in views:
        raise ValueError(
            f"{PUSH_VIEW} is fed by pushes only; materializing it would overwrite fresher pushes."
        )
    if VECTOR_VIEW in views:
        raise ValueError(
            f"{VECTOR_VIEW} is written online by item_embeddings only; materializing it from "
            "the lake would bring removed items back into similar-item search."
        )
    if end < start:
        raise ValueError(f"materialize: end {end.isoformat()} is before start {start.isoformat()}")
    window_start = start - timedelta(hours=settings.materialize_overlap_h)
    store = feature_store(settings)
    report = MaterializeReport(start=window_start, end=end)
    for name in views:
        view = store.get_feature_view(name)
        view_report = _materialize_view(store, view, window_start, end, settings)
        store.registry.apply_materialization(view, store.project, window_start, end)
        report.views.append(view_report)
        log.info(
            "materialized %s: %d entities from %d rows in %d partitions, %.1fs, %.0f rows/s",
            name,
            view_report.entities_written,
            view_report.rows_in_window,
            view_report.partitions,
            view_report.seconds,
            view_report.rows_per_s,
        )
    return report
