"""The lake's history-growing tables as Delta Lake tables (delta-rs, no JVM).

Why a table format: a folder of small Parquet parts is read whole, file by file, by every task
that wants a few keys of it, and its cost grows with the lake's age. A Delta table keeps a log
of which files make up each version, with each file's column statistics, so a reader skips the
files (and row groups) that cannot hold its keys, two writers commit atomically (optimistic
concurrency: a commit that loses the race retries on the new version), a commit is all or
nothing for readers, and ``lake_maintenance`` compacts and clusters small files and vacuums old
versions. Spark, Trino, DuckDB and Feast read the same tables without conversion.

The tables keep the lake's contract (``lake.write_parquet`` / ``lake.read_table``): rows are
written as named *parts* of a day, and writing the same part again **replaces** it in one
commit (``_part`` column; ``overwrite`` with a predicate), so a retried task never duplicates
rows. Each table is partitioned by what its readers select on: ``manifests`` and
``redigitized`` by ``date`` (discovery reads the newest days), ``wardrobe_items``,
``user_events`` and ``users`` by ``user_bucket`` (a pre-generation batch reads its users' rows:
:func:`user_bucket`, a hash of the user id, so a batch of users planned bucket by bucket reads
one or two partitions whatever the lake's age; the rows keep their ``date`` column). Known columns have fixed types (:data:`TYPES`): a batch where a column is all
null, or an int column with gaps read back as float, is cast, never allowed to change the
table's schema; new columns are merged in (``schema_mode="merge"``).

On S3 the credentials and endpoint come from the ``aws_default`` connection (the same as the
rest of the lake), and commits use S3's conditional put, so two writers cannot overwrite each
other's log entry. delta-rs runs a Tokio runtime that does not survive ``fork``: a process that
used it must not fork workers that use it too (Airflow's task processes are fine: each task
starts its own).
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from dresscode.core import delta_filters, delta_kept, delta_types
from dresscode.core.config import Settings, get_settings
from dresscode.core.delta_layout import BUCKET as BUCKET
from dresscode.core.delta_layout import PART as PART
from dresscode.core.delta_layout import PARTITION as PARTITION
from dresscode.core.delta_layout import USER_BUCKETS as USER_BUCKETS
from dresscode.core.delta_layout import sql
from dresscode.core.delta_layout import user_bucket as user_bucket
from dresscode.core.delta_layout import user_order as user_order
from dresscode.core.delta_storage import s3_options as s3_options

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from deltalake import DeltaTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeltaSpec:
    """A Delta table of the lake: the columns its files are clustered by, and known types."""

    cluster_by: tuple[str, ...]  # z-order columns of lake_maintenance (readers filter on them)
    types: Mapping[str, str]
    partition: str = PARTITION  # PARTITION (by day) or BUCKET (by user)
    # A state table (one row per key, merged: :func:`upsert`) names its key and the column
    # whose newer value wins; a history table (parts: :func:`write_part`) names none.
    key: tuple[str, ...] = ()
    newest_by: str | None = None
    # Rows per Parquet row group of a commit (None: delta-rs's default, ~1M): a reader that
    # streams a part (the feature materializer) decodes one group at a time.
    row_group: int | None = None


TABLES: dict[str, DeltaSpec] = {
    "manifests": DeltaSpec(("upload_key",), delta_types.MANIFEST_TYPES),
    "wardrobe_items": DeltaSpec(("user_id",), delta_types.ITEM_TYPES, BUCKET),
    "redigitized": DeltaSpec(("upload_key",), delta_types.REDIGITIZED_TYPES),
    # The feedback events by user (written with each ``feedback`` part): the fold of a batch's
    # wardrobes, the labels and the duplicate check read their users' events here instead of
    # every day of ``feedback``.
    "user_events": DeltaSpec(("user_id",), delta_types.EVENT_TYPES, BUCKET),
    # User profiles: state, one row per user, merged on user_id (the newest last_active_at
    # wins), so "who is active" reads one row per user, not every profile change ever written.
    "users": DeltaSpec(
        ("user_id",), delta_types.USER_TYPES, BUCKET, key=("user_id",), newest_by="last_active_at"
    ),
    # The feature tables: Feast's offline store (get_historical_features) and the materializer
    # read them by day (a window), then by entity.
    "user_style": DeltaSpec(("user_id",), delta_types.USER_STYLE_TYPES, row_group=65_536),
    "weather": DeltaSpec(("city_id",), delta_types.WEATHER_TYPES),
}


class DeltaTableError(RuntimeError):
    """A Delta table cannot be read: the message names the table and the file or cause."""


def is_delta(name: str) -> bool:
    return name in TABLES


def location(name: str, settings: Settings | None = None) -> tuple[str, dict[str, str]]:
    """The table's URI for delta-rs and its storage options (S3: the AWS connection)."""
    settings = settings or get_settings()
    root = settings.lake_uri.rstrip("/")
    if root.startswith("s3://") or root.startswith("s3a://"):
        return f"s3://{root.split('://', 1)[1]}/{name}", dict(s3_options(settings.aws_conn_id))
    path = root.removeprefix("file://")
    return f"{path}/{name}", {}


def open_table(
    name: str, settings: Settings | None = None, *, version: int | None = None
) -> DeltaTable | None:
    """The table (at ``version``, default the latest), or None when nothing was written yet."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError, TableNotFoundError

    uri, options = location(name, settings)
    try:
        return DeltaTable(uri, version=version, storage_options=options)
    except TableNotFoundError as exc:
        if version is None:
            return None
        # Time travel to a version the log no longer holds (expired by lake_maintenance's
        # retention) is an error to name, not an empty table to read as "no rows".
        raise DeltaTableError(
            f"lake table {name!r} has no version {version} any more ({exc}); versions older "
            "than DRESSCODE_LAKE_RETENTION_HOURS are vacuumed"
        ) from exc
    except (OSError, DeltaError) as exc:  # storage unreachable, a log that cannot be read
        raise failure(name, uri, options, exc) from exc


def open_uri(uri: str, settings: Settings | None = None) -> DeltaTable | None:
    """The Delta table at ``uri`` — a lake table's folder as a Feast source names it (a local
    path or ``s3://``) — with the lake's storage options; None when nothing was written yet."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError, TableNotFoundError

    settings = settings or get_settings()
    uri = uri.removeprefix("file://")
    s3 = uri.startswith(("s3://", "s3a://"))
    options = dict(s3_options(settings.aws_conn_id)) if s3 else {}
    try:
        return DeltaTable(uri, storage_options=options)
    except TableNotFoundError:
        return None
    except (OSError, DeltaError) as exc:
        raise failure(uri.rstrip("/").rpartition("/")[2], uri, options, exc) from exc


_PINNED: ContextVar[dict[str, int] | None] = ContextVar("dresscode_delta_pinned", default=None)


@contextmanager
def snapshot(*names: str, settings: Settings | None = None) -> Iterator[dict[str, int]]:
    """Within the block, reads of ``names`` see the versions current at its start — one
    consistent snapshot however many commits land meanwhile — and the dict yielded names them
    (table -> version), for the report or MLflow run that must say what it read."""
    versions = {n: v for n in names if (v := current_version(n, settings)) is not None}
    token = _PINNED.set({**(_PINNED.get() or {}), **versions})
    try:
        yield versions
    finally:
        _PINNED.reset(token)


@contextmanager
def at_versions(versions: Mapping[str, int]) -> Iterator[None]:
    """Within the block, reads of these tables see the versions given — those a report
    recorded (:func:`snapshot`), to read again exactly what it read (time travel)."""
    token = _PINNED.set({**(_PINNED.get() or {}), **{k: int(v) for k, v in versions.items()}})
    try:
        yield
    finally:
        _PINNED.reset(token)


def _pinned(name: str, version: int | None) -> int | None:
    return version if version is not None else (_PINNED.get() or {}).get(name)


def _kept(name: str, settings: Settings | None) -> delta_kept.Kept | None:
    """The table kept open by a long-lived reader (:mod:`dresscode.core.delta_kept`), if one
    is in use; None otherwise (and while the table does not exist)."""
    kept = delta_kept.in_use()
    if kept is None:
        return None
    from deltalake.exceptions import DeltaError

    uri, options = location(name, settings)
    try:
        return kept.get(uri, lambda: open_table(name, settings))
    except (OSError, DeltaError) as exc:  # the log cannot be read now: as an open would say
        raise failure(name, uri, options, exc) from exc


def current_version(name: str, settings: Settings | None = None) -> int | None:
    """The table's latest version (what a reader reads now), or None for an empty table."""
    table = open_table(name, settings)
    return None if table is None else table.version()


# Commits that rewrite files without changing a row (lake_maintenance's compaction/z-order).
REWRITES = frozenset({"OPTIMIZE"})


def changed_users(
    name: str, since: int | None, settings: Settings | None = None, *, version: int | None = None
) -> set[str] | None:
    """The users whose rows commits after version ``since`` added or removed, up to ``version``
    (default: the pinned or latest one) — what a reader that keeps up with a table partitioned
    by user reads next, instead of the table. ``since`` -1: the table did not exist yet.

    From the commits themselves: each commit's log entry names the files it added and removed,
    and only those files' ``user_id`` column is read, so the cost follows the changes, not the
    table. A compaction's rewrite (:data:`REWRITES`) changes no row and is skipped. None when it
    cannot be told — no ``since``, a log entry or file no longer kept (older than the lake's
    retention), a re-created table — and the reader must read every user."""
    import json
    from urllib.parse import unquote

    import pyarrow as pa
    import pyarrow.parquet as pq

    from dresscode.core import lake

    if TABLES[name].partition != BUCKET:
        raise ValueError(f"{name} is not partitioned by {BUCKET}")
    now = open_table(name, settings, version=_pinned(name, version))
    if now is None:
        return set()
    if since is None or since > now.version():
        return None
    if since == now.version():
        return set()
    # Through the lake's own storage (the AWS connection on S3), as every other object read.
    folder = lake.table(name, settings)
    files: set[str] = set()
    for v in range(since + 1, now.version() + 1):
        try:
            entry = lake.read_bytes(folder / "_delta_log" / f"{v:020d}.json").decode()
            actions = [json.loads(line) for line in entry.splitlines() if line]
        except (OSError, ValueError) as exc:
            log.info("%s: the log entry of version %d cannot be read (%s)", name, v, exc)
            return None
        if any(a.get("commitInfo", {}).get("operation") in REWRITES for a in actions):
            continue
        for action in actions:
            for kind in ("add", "remove"):
                if kind in action:
                    files.add(unquote(str(action[kind]["path"])))
    users: set[str] = set()
    for relative in sorted(files):
        path = folder / relative
        try:
            with path.fs.open(path.path, "rb") as fh:
                column = pq.read_table(fh, columns=["user_id"]).column("user_id")
        except (OSError, pa.ArrowException) as exc:  # a removed file vacuumed since
            log.info("%s: %s cannot be read (%s)", name, relative, exc)
            return None
        users |= {str(u) for u in column.unique().to_pylist() if u is not None}
    return users


def partition_days(
    name: str, settings: Settings | None = None, *, version: int | None = None
) -> list[str]:
    """The days with live files (at ``version``), oldest first: a ``date``-partitioned table's
    from its log, without reading data; another's from its ``date`` column."""
    table = open_table(name, settings, version=_pinned(name, version))
    if table is None:
        return []
    if TABLES[name].partition != PARTITION:
        days = table.to_pyarrow_dataset().to_table(columns=[PARTITION]).column(PARTITION)
        return sorted({str(d) for d in days.unique().to_pylist() if d})
    return sorted({str(p[PARTITION]) for p in table.partitions() if p.get(PARTITION)})


def write_part(
    name: str,
    day: date | str,
    part: str,
    records: Iterable[Mapping[str, Any]] | pd.DataFrame,
    settings: Settings | None = None,
) -> None:
    """Commit the rows of one part of a ``date`` partition; the same part again replaces it.

    One commit: readers see the old part or the new one, never both, never half (a reader
    names what it read with :func:`current_version` or :func:`snapshot`).
    """
    import pandas as pd
    from deltalake.exceptions import CommitFailedError, DeltaError

    settings = settings or get_settings()
    if TABLES[name].key:
        raise ValueError(f"lake table {name!r} keeps state (one row per key): use upsert")
    day_str = day.isoformat() if isinstance(day, date) else date.fromisoformat(day).isoformat()
    rows = (
        records if isinstance(records, pd.DataFrame) else pd.DataFrame.from_records(list(records))
    )
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            _commit(name, day_str, part, rows, settings)
            return
        except (CommitFailedError, DeltaError) as exc:
            # Another writer won the race for this version (or created the table a moment
            # before us): read the new version and commit again. delta-rs already retries
            # plain appends; a conflict it cannot resolve arrives here.
            if attempt == COMMIT_ATTEMPTS or not _is_race(exc):
                uri, options = location(name, settings)
                raise failure(name, uri, options, exc) from exc
            pause = random.uniform(0.05, 0.2) * attempt
            log.info(
                "%s: commit of part %s lost a race (%s); retrying in %.2fs", name, part, exc, pause
            )
            time.sleep(pause)
    raise AssertionError("unreachable")


COMMIT_ATTEMPTS = 8


def upsert(
    name: str,
    day: date | str,
    records: Iterable[Mapping[str, Any]] | pd.DataFrame,
    settings: Settings | None = None,
) -> dict[str, int]:
    """Merge rows into the state table ``name`` on its key, in one commit: a key already there
    is updated when the row's ``newest_by`` is not older (a late, older row changes nothing),
    a new key is inserted. Of several rows of one key in ``records`` the newest is merged.
    Only the buckets of the rows' users are searched. Returns delta-rs's merge counts."""
    import pandas as pd
    from deltalake.exceptions import CommitFailedError, DeltaError

    settings = settings or get_settings()
    spec = TABLES[name]
    if not spec.key:
        raise ValueError(f"lake table {name!r} keeps history (parts), not state: use write_part")
    day_str = day.isoformat() if isinstance(day, date) else date.fromisoformat(day).isoformat()
    rows = (
        records if isinstance(records, pd.DataFrame) else pd.DataFrame.from_records(list(records))
    )
    if rows.empty:
        return {}
    if spec.newest_by:
        rows = rows.sort_values(spec.newest_by, kind="stable")
    rows = rows.drop_duplicates(list(spec.key), keep="last")
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            return _merge(name, day_str, rows, settings)
        except (CommitFailedError, DeltaError) as exc:
            if attempt == COMMIT_ATTEMPTS or not _is_race(exc):
                uri, options = location(name, settings)
                raise failure(name, uri, options, exc) from exc
            time.sleep(random.uniform(0.05, 0.2) * attempt)
    raise AssertionError("unreachable")


def _merge(name: str, day: str, rows: pd.DataFrame, settings: Settings) -> dict[str, int]:
    from deltalake import write_deltalake

    spec = TABLES[name]
    uri, options = location(name, settings)
    existing = open_table(name, settings)
    if existing is not None:
        check_layout(name, existing)
    data = _arrow(name, rows, day, None, existing)
    if existing is None:
        write_deltalake(uri, data, partition_by=[spec.partition], storage_options=options)
        return {"num_target_rows_inserted": data.num_rows}
    on = [f"t.{k} = s.{k}" for k in spec.key]
    if spec.partition == BUCKET:
        buckets = sorted(set(data.column(BUCKET).to_pylist()))
        on = [f"t.{BUCKET} IN ({', '.join(sql(b) for b in buckets)})", *on]
    merger = existing.merge(
        data,
        predicate=" AND ".join(on),
        source_alias="s",
        target_alias="t",
        merge_schema=True,
    )
    newer = f"s.{spec.newest_by} >= t.{spec.newest_by}" if spec.newest_by else None
    counts = merger.when_matched_update_all(predicate=newer).when_not_matched_insert_all().execute()
    return {k: int(v) for k, v in counts.items() if k.startswith("num_target_rows")}


def failure(name: str, uri: str, options: Mapping[str, str], exc: BaseException) -> DeltaTableError:
    """One sentence for the on-call: which table, where, through which endpoint, and why."""
    endpoint = options.get("AWS_ENDPOINT_URL")
    where = f"{uri} (endpoint {endpoint})" if endpoint else uri
    cause = " ".join(str(exc).split())[:400] or type(exc).__name__
    return DeltaTableError(f"lake table {name!r} at {where}: {type(exc).__name__}: {cause}")


def _is_race(exc: Exception) -> bool:
    from deltalake.exceptions import CommitFailedError

    text = str(exc).lower()
    return isinstance(exc, CommitFailedError) or "already exists" in text or "conflict" in text


def _commit(name: str, day: str, part: str, rows: pd.DataFrame, settings: Settings) -> None:
    """One attempt: create the table with this part, or replace the part in one commit."""
    from deltalake import WriterProperties, write_deltalake

    uri, options = location(name, settings)
    existing = open_table(name, settings)
    spec = TABLES[name]
    if existing is not None:
        check_layout(name, existing)
    data = _arrow(name, rows, day, part, existing)
    # Only when asked, and with delta-rs's default compression spelled out: WriterProperties
    # replaces the defaults, and its own compression is none.
    writer: dict[str, Any] = (
        {
            "writer_properties": WriterProperties(
                max_row_group_size=spec.row_group, compression="SNAPPY"
            )
        }
        if spec.row_group
        else {}
    )
    if existing is None:
        write_deltalake(
            uri,
            data,
            partition_by=[spec.partition],
            storage_options=options,
            **writer,
        )
        return
    if spec.partition == BUCKET:
        # The part's users are the batch's (its uploads' owners): a retry has the same ones,
        # so only their buckets are searched for the part's earlier rows.
        buckets = sorted(set(data.column(BUCKET).to_pylist()))
        where = f"{BUCKET} IN ({', '.join(sql(b) for b in buckets)}) AND " if buckets else ""
    else:
        where = f"{PARTITION} = {sql(day)} AND "
    write_deltalake(
        existing,
        data,
        mode="overwrite",
        predicate=f"{where}{PART} = {sql(part)}",
        schema_mode="merge",
        storage_options=options,
        **writer,
    )


def check_layout(name: str, table: DeltaTable) -> None:
    """Raise when the table on storage is partitioned otherwise than this release writes it
    (a lake from before the layout changed): writing or pruning by the new layout would be
    wrong, and the fix is one command."""
    found = list(table.metadata().partition_columns)
    wanted = TABLES[name].partition
    if found != [wanted]:
        raise DeltaTableError(
            f"lake table {name!r} is partitioned by {found or 'nothing'}, this release by "
            f"{wanted!r}: run `dresscode lake migrate --table {name}` (it re-partitions in "
            "place, idempotently)"
        )


def _arrow(
    name: str,
    records: Iterable[Mapping[str, Any]] | pd.DataFrame,
    day: str,
    part: str | None,
    existing: DeltaTable | None,
) -> pa.Table:
    """The rows as Arrow with the table's types: known columns cast, null columns typed."""
    import pandas as pd
    import pyarrow as pa

    frame = (
        records.copy()
        if isinstance(records, pd.DataFrame)
        else pd.DataFrame.from_records(list(records))
    )
    frame[PARTITION] = day
    if part is not None:  # a state table's rows are their key's, not a part's
        frame[PART] = part
    if TABLES[name].partition == BUCKET:
        if len(frame) and ("user_id" not in frame.columns or frame["user_id"].isna().any()):
            raise ValueError(
                f"lake table {name!r} is partitioned by user: every row needs a user_id "
                f"(part {part!r} has rows without one)"
            )
        frame[BUCKET] = [user_bucket(u) for u in frame["user_id"]] if len(frame) else []
    current = delta_types.schema_types(existing)
    wanted = {**TABLES[name].types, **current}
    columns = {}
    for column in frame.columns:
        kind = wanted.get(str(column), delta_types.STR if frame[column].isna().all() else None)
        columns[str(column)] = delta_types.column(frame[column], kind)
    return pa.table(columns)


def read_arrow(
    name: str,
    settings: Settings | None = None,
    *,
    days: Iterable[date | str] | None = None,
    columns: Sequence[str] | None = None,
    filters: list[tuple[str, str, Any]] | None = None,
    version: int | None = None,
) -> pa.Table | None:
    """:func:`read`'s rows as a pyarrow Table (None: no such table), the bookkeeping columns
    kept and a requested column the table lacks absent: for a reader of a few rows, pandas'
    frame costs more than the read (the online stylist's profile read: ~3.4 -> ~1.5 ms).

    Rows of ``days`` matching ``filters`` (pyarrow DNF), only the files that can hold them.

    The Delta log lists each file's partition and column ranges; only the files that can match
    become part of the scan (delta-rs ``file_pruning_predicate``: partitions, and the min-max
    range of an ``in`` filter, per ``user_bucket`` for a user filter on a table partitioned by
    it), and the range is added to the row filter too, so pyarrow skips row groups by their
    statistics (it does not test an ``in`` list against them; a kept table's rows, in memory,
    are filtered by the exact terms alone). ``version`` reads the table as it was (time travel).
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    pinned = _pinned(name, version)
    kept = _kept(name, settings) if pinned is None else None
    table = kept.table if kept is not None else open_table(name, settings, version=pinned)
    if table is None:
        return None
    # A kept dataset's own columns: the table's may have grown since it was listed.
    schema = kept.dataset.schema if kept is not None else pa.schema(table.schema())
    names = set(schema.names)
    # A kept table's files were listed once; its scan prunes them by the partition terms and
    # filters its rows in memory (delta_filters.rows_matching).
    dataset, expression = None, None
    if kept is None:
        terms, pruning = delta_filters.conditions(days, filters or [], names)
        dataset = table.to_pyarrow_dataset(
            file_pruning_predicate=" AND ".join(pruning) if pruning else None
        )
        expression = delta_filters.all_of(terms)
    present = None if columns is None else [c for c in columns if c in names]
    if present is not None and PARTITION not in present:
        present.append(PARTITION)  # the lake contract: rows carry their day
    try:
        if kept is not None:
            partition = TABLES[name].partition
            prune = delta_filters.all_of(
                delta_filters.partition_terms(days, filters or [], partition)
            )
            keep = functools.partial(delta_filters.rows_matching, days=days, filters=filters or [])
            result = kept.scan(prune, keep, present)
        else:
            result = ds.Scanner.from_dataset(dataset, columns=present, filter=expression).to_table()
    except (OSError, pa.ArrowException) as exc:  # a file the log names is missing or corrupt
        uri, options = location(name, settings)
        raise failure(name, f"{uri} (version {table.version()})", options, exc) from exc
    return result


def read(
    name: str,
    settings: Settings | None = None,
    *,
    days: Iterable[date | str] | None = None,
    columns: Sequence[str] | None = None,
    filters: list[tuple[str, str, Any]] | None = None,
    version: int | None = None,
) -> pd.DataFrame:
    """Rows of ``days`` matching ``filters`` (pyarrow DNF) as a DataFrame (a missing table:
    empty, with ``columns``); see :func:`read_arrow`. A requested column the table does not
    have reads as nulls."""
    import pandas as pd

    result = read_arrow(
        name, settings, days=days, columns=columns, filters=filters, version=version
    )
    if result is None:
        return pd.DataFrame(columns=list(columns or []))
    frame = result.to_pandas()
    frame = frame.drop(columns=[PART, BUCKET], errors="ignore")
    for column in columns or []:
        if column not in frame.columns:
            frame[column] = None
    return frame
