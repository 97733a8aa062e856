"""The lake's history-growing tables as Delta Lake tables (delta-rs, no JVM).

Why a table format: a folder of small Parquet parts is read whole, file by file, by every task
that wants a few keys of it, and its cost grows with the lake's age. A Delta table keeps a log
of which files make up each version, with each file's column statistics, so a reader skips the
files (and row groups) that cannot hold its keys, two writers commit atomically (optimistic
concurrency: a commit that loses the race retries on the new version), a commit is all or
nothing for readers, and ``lake_maintenance`` compacts and clusters small files and vacuums old
versions. Spark, Trino, DuckDB and Feast read the same tables without conversion.

The tables keep the lake's contract (``lake.write_parquet`` / ``lake.read_table``): rows are
written as named *parts* of a ``date`` partition, and writing the same part again **replaces**
it in one commit (``_part`` column; ``overwrite`` with a predicate), so a retried task never
duplicates rows. Known columns have fixed types (:data:`TYPES`): a batch where a column is all
null, or an int column with gaps read back as float, is cast, never allowed to change the
table's schema; new columns are merged in (``schema_mode="merge"``).

On S3 the credentials and endpoint come from the ``aws_default`` connection (the same as the
rest of the lake), and commits use S3's conditional put, so two writers cannot overwrite each
other's log entry. delta-rs runs a Tokio runtime that does not survive ``fork``: a process that
used it must not fork workers that use it too (Airflow's task processes are fine: each task
starts its own).
"""

from __future__ import annotations

import logging
import operator
import random
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import TYPE_CHECKING, Any

from dresscode.core.config import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from deltalake import DeltaTable

log = logging.getLogger(__name__)

PART = "_part"  # the part name a row was written under (a retried write replaces its part)
PARTITION = "date"

_STR, _INT, _FLOAT, _BOOL, _STRS = "string", "int64", "float64", "bool", "list<string>"


@dataclass(frozen=True)
class DeltaSpec:
    """A Delta table of the lake: the columns its files are clustered by, and known types."""

    cluster_by: tuple[str, ...]  # z-order columns of lake_maintenance (readers filter on them)
    types: Mapping[str, str]


_MANIFEST_TYPES = {
    "upload_key": _STR,
    "user_id": _STR,
    "upload_id": _STR,
    "status": _STR,
    "raw_sha256": _STR,
    "image_sha256": _STR,
    "reason_code": _STR,
    "reason": _STR,
    "source_format": _STR,
    "source_bytes": _INT,
    "source_width": _INT,
    "source_height": _INT,
    "width": _INT,
    "height": _INT,
    "brightness": _FLOAT,
    "prompt_version": _INT,
    "n_items": _INT,
    "model_called": _BOOL,
    "attempt": _INT,
    "run_id": _STR,
    "processed_at": _STR,
    "phash": _STR,
    "duplicate_of": _STR,
}
_ITEM_TYPES = {
    "item_id": _STR,
    "user_id": _STR,
    "image_sha256": _STR,
    "upload_key": _STR,
    "prompt_version": _INT,
    "category": _STR,
    "subcategory": _STR,
    "color_names": _STRS,
    "color_hexes": _STRS,
    "pattern": _STR,
    "material": _STR,
    "warmth": _STR,
    "formality": _STR,
    "seasons": _STRS,
    "water_resistant": _BOOL,
    "description": _STR,
    "digitized_at": _STR,
    "replaces": _STR,
}
_REDIGITIZED_TYPES = {
    "upload_key": _STR,
    "user_id": _STR,
    "image_sha256": _STR,
    "prompt_version": _INT,
    "from_version": _INT,
    "n_items": _INT,
    "model_called": _BOOL,
    "run_id": _STR,
    "processed_at": _STR,
}

TABLES: dict[str, DeltaSpec] = {
    "manifests": DeltaSpec(("upload_key",), _MANIFEST_TYPES),
    "wardrobe_items": DeltaSpec(("user_id",), _ITEM_TYPES),
    "redigitized": DeltaSpec(("upload_key",), _REDIGITIZED_TYPES),
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


@cache
def s3_options(conn_id: str) -> dict[str, str]:
    """delta-rs storage options from an Airflow AWS connection (keys, region, endpoint).

    Resolved once per process, like the lake's own S3 filesystem (``ObjectStoragePath``
    caches one per connection): a task does not look the connection up on every commit.
    """
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    hook = AwsBaseHook(aws_conn_id=conn_id, client_type="s3")
    config = hook.conn_config
    options = {
        "conditional_put": "etag",  # S3 (and S3-compatible stores): two writers never clash
        # Like the lake's boto3 clients: a few quick retries, not object_store's 10 over 3
        # minutes, so an S3 outage fails the try in seconds and Airflow's retries take over.
        "max_retries": "4",
        "retry_timeout": "30s",
    }
    key, secret, token = (
        config.aws_access_key_id,
        config.aws_secret_access_key,
        config.aws_session_token,
    )
    if not key:  # no keys in the connection: the environment's chain (role, profile, env)
        session = hook.get_session()
        found = session.get_credentials()
        if found is not None:
            frozen = found.get_frozen_credentials()
            key, secret, token = frozen.access_key, frozen.secret_key, frozen.token
    if key and secret:
        options["AWS_ACCESS_KEY_ID"], options["AWS_SECRET_ACCESS_KEY"] = key, secret
    if token:
        options["AWS_SESSION_TOKEN"] = token
    region = hook.conn_region_name
    if region:
        options["AWS_REGION"] = region
    endpoint = config.get_service_endpoint_url(service_name="s3")
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    return options


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


def _pinned(name: str, version: int | None) -> int | None:
    return version if version is not None else (_PINNED.get() or {}).get(name)


def current_version(name: str, settings: Settings | None = None) -> int | None:
    """The table's latest version (what a reader reads now), or None for an empty table."""
    table = open_table(name, settings)
    return None if table is None else table.version()


def partition_days(
    name: str, settings: Settings | None = None, *, version: int | None = None
) -> list[str]:
    """The ``date`` partitions with live files (at ``version``), oldest first, from the log."""
    table = open_table(name, settings, version=_pinned(name, version))
    if table is None:
        return []
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
    from deltalake import write_deltalake

    uri, options = location(name, settings)
    existing = open_table(name, settings)
    data = _arrow(name, rows, day, part, existing)
    if existing is None:
        write_deltalake(uri, data, partition_by=[PARTITION], storage_options=options)
    else:
        write_deltalake(
            existing,
            data,
            mode="overwrite",
            predicate=f"{PARTITION} = '{day}' AND {PART} = '{_quote(part)}'",
            schema_mode="merge",
            storage_options=options,
        )


def _quote(value: str) -> str:
    return value.replace("'", "''")


def _arrow(
    name: str,
    records: Iterable[Mapping[str, Any]] | pd.DataFrame,
    day: str,
    part: str,
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
    frame[PART] = part
    current = _schema_types(existing)
    wanted = {**TABLES[name].types, **current}
    columns = {}
    for column in frame.columns:
        kind = wanted.get(str(column), _STR if frame[column].isna().all() else None)
        columns[str(column)] = _column(frame[column], kind)
    return pa.table(columns)


def _schema_types(table: DeltaTable | None) -> dict[str, str]:
    if table is None:
        return {}
    import pyarrow as pa

    schema = pa.schema(table.schema())
    return {field.name: _kind(field.type) for field in schema}


def _kind(arrow_type: pa.DataType) -> str:
    import pyarrow as pa

    if pa.types.is_integer(arrow_type):
        return _INT
    if pa.types.is_floating(arrow_type):
        return _FLOAT
    if pa.types.is_boolean(arrow_type):
        return _BOOL
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return _STRS
    return _STR


def _column(values: pd.Series, kind: str | None) -> pa.Array:
    """One column as Arrow ``kind`` (None: as pandas infers it); NaN and None become null."""
    import pandas as pd
    import pyarrow as pa

    if kind is None:
        return pa.array(values, from_pandas=True)
    if kind == _INT:
        return pa.array(pd.to_numeric(values, errors="coerce").astype("Int64"), pa.int64())
    if kind == _FLOAT:
        return pa.array(pd.to_numeric(values, errors="coerce"), pa.float64(), from_pandas=True)
    if kind == _BOOL:
        return pa.array([None if _missing(v) else bool(v) for v in values], pa.bool_())
    if kind == _STRS:
        return pa.array(
            [None if _missing(v) else [str(x) for x in v] for v in values], pa.list_(pa.string())
        )
    return pa.array([None if _missing(v) else str(v) for v in values], pa.string())


def _missing(value: Any) -> bool:
    if value is None:
        return True
    return isinstance(value, float) and value != value


def read(
    name: str,
    settings: Settings | None = None,
    *,
    days: Iterable[date | str] | None = None,
    columns: Sequence[str] | None = None,
    filters: list[tuple[str, str, Any]] | None = None,
    version: int | None = None,
) -> pd.DataFrame:
    """Rows of ``days`` matching ``filters`` (pyarrow DNF), only the files that can hold them.

    The partition (``date``) prunes whole folders; the files' statistics in the Delta log skip
    files and row groups whose ranges cannot match ``filters``. A requested column the table
    does not have reads as nulls. ``version`` reads the table as it was (time travel).
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    table = open_table(name, settings, version=_pinned(name, version))
    if table is None:
        return pd.DataFrame(columns=list(columns or []))
    dataset = table.to_pyarrow_dataset()
    expression = None
    if days is not None:
        wanted = sorted({d.isoformat() if isinstance(d, date) else str(d) for d in days})
        expression = pc.field(PARTITION).isin(wanted)
    for column, op, value in filters or []:
        term = _term(column, op, value)
        expression = term if expression is None else expression & term
    names = dataset.schema.names
    present = None if columns is None else [c for c in columns if c in names]
    if present is not None and PARTITION not in present and columns is not None:
        present.append(PARTITION)  # the lake contract: rows carry their partition day
    try:
        result = ds.Scanner.from_dataset(dataset, columns=present, filter=expression).to_table()
    except (OSError, pa.ArrowException) as exc:  # a file the log names is missing or corrupt
        uri, options = location(name, settings)
        raise failure(name, f"{uri} (version {table.version()})", options, exc) from exc
    frame = result.to_pandas()
    frame = frame.drop(columns=[PART], errors="ignore")
    for column in columns or []:
        if column not in frame.columns:
            frame[column] = None
    return frame


def _term(column: str, op: str, value: Any) -> Any:
    import pyarrow.compute as pc

    field = pc.field(column)
    if op == "in":
        return field.isin(list(value))
    if op == "not in":
        return ~field.isin(list(value))
    compare = _COMPARISONS.get(op)
    if compare is None:
        raise ValueError(f"unsupported filter operator {op!r}")
    return compare(field, value)


_COMPARISONS = {
    "=": operator.eq,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
