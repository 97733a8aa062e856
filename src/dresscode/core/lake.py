"""The lake: one object-store API over ``file://`` and ``s3://`` with atomic writes.

Airflow's ``ObjectStoragePath`` gives one code path for both: locally a folder, in production
a bucket reached through the ``aws_default`` connection. Every write is atomic — readers see
the whole object or nothing:

* on S3 an object appears only when its single PUT (or multipart upload) completes, so bytes
  are built in memory and sent in one ``pipe_file`` call, never streamed through ``open()``;
* on a local or other filesystem the bytes go to a hidden temporary sibling first and are
  renamed into place (``os.rename`` is atomic within a filesystem).

Tables are Parquet, Hive-partitioned by date: ``<table>/date=YYYY-MM-DD/<part>.parquet``.
Part names are derived from their content key (a batch hash or a data interval), so writing the
same part again replaces it instead of adding a duplicate.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import date
from typing import TYPE_CHECKING, Any

from dresscode.core.config import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import ObjectStoragePath

# Safe path segments: user ids, upload ids, table and part names. No "..", no slashes,
# no control characters, no leading dot (hidden temp files use it).
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=@+-]{0,199}$")

TABLES = (
    "landing",
    "images",
    "digitized",
    "quarantine",
    "manifests",
    "wardrobe_items",
    "inference_log",
    "users",
    "weather",
    "weather_cache",
    "user_style",
    "outfit_suggestions",
    "feedback",
    "corrected_labels",
    "golden_candidates",
    "quality_metrics",
    "monitoring_decisions",
    "reports",
)


TMP_PREFIX = ".tmp-"


class UnsafeKey(ValueError):
    """A user-supplied key segment that could escape its folder or hide a file."""


def safe_segment(value: str, *, what: str = "key segment") -> str:
    """Return ``value`` if it is safe as one path segment, else raise UnsafeKey."""
    if not isinstance(value, str) or not _SEGMENT.match(value) or ".." in value:
        raise UnsafeKey(
            f"Unsafe {what} {value!r}: only letters, digits and ._=@+- are allowed, without '..'."
        )
    return value


def storage_path(uri: str, settings: Settings | None = None) -> ObjectStoragePath:
    """An ObjectStoragePath for ``uri``; s3:// URIs use the configured AWS connection."""
    from airflow.sdk import ObjectStoragePath

    settings = settings or get_settings()
    if uri.startswith("s3://"):
        return ObjectStoragePath(uri, conn_id=settings.aws_conn_id)
    return ObjectStoragePath(uri)


def root(settings: Settings | None = None) -> ObjectStoragePath:
    """The lake root (``DRESSCODE_LAKE_URI``)."""
    settings = settings or get_settings()
    return storage_path(settings.lake_uri, settings)


def landing(settings: Settings | None = None) -> ObjectStoragePath:
    """The landing area for raw uploads (``DRESSCODE_LANDING_URI``)."""
    settings = settings or get_settings()
    return storage_path(settings.landing_uri, settings)


def table(name: str, settings: Settings | None = None) -> ObjectStoragePath:
    """The folder of one lake table."""
    if name not in TABLES:
        raise ValueError(f"Unknown lake table {name!r}; known: {', '.join(TABLES)}.")
    return root(settings) / name


def partition(name: str, day: date | str, settings: Settings | None = None) -> ObjectStoragePath:
    """``<table>/date=YYYY-MM-DD`` for one day."""
    day_str = day.isoformat() if isinstance(day, date) else date.fromisoformat(day).isoformat()
    return table(name, settings) / f"date={day_str}"


def _is_s3(path: ObjectStoragePath) -> bool:
    return path.protocol in {"s3", "s3a"}


def write_bytes(path: ObjectStoragePath, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (whole object or nothing)."""
    fs = path.fs
    target = path.path
    if _is_s3(path):
        # One PUT (or one multipart upload for big objects): S3 shows nothing until it completes.
        fs.pipe_file(target, data)
        return
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}"
    try:
        fs.pipe_file(tmp.path, data)
        fs.mv(tmp.path, target)
    except BaseException:
        if fs.exists(tmp.path):
            fs.rm(tmp.path)
        raise


def read_bytes(path: ObjectStoragePath) -> bytes:
    return path.fs.cat_file(path.path)


def write_json(path: ObjectStoragePath, obj: Any) -> None:
    write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def read_json(path: ObjectStoragePath) -> Any:
    return json.loads(read_bytes(path))


def exists(path: ObjectStoragePath) -> bool:
    return path.fs.exists(path.path)


def delete(path: ObjectStoragePath) -> None:
    """Remove one object; a missing object is fine (deletes are replayed on retries)."""
    if exists(path):
        path.fs.rm(path.path)


def copy(src: ObjectStoragePath, dst: ObjectStoragePath) -> None:
    """Copy one object atomically (through memory: objects here are photos, a few MB)."""
    write_bytes(dst, read_bytes(src))


def list_files(prefix: ObjectStoragePath) -> list[ObjectStoragePath]:
    """Every object below ``prefix`` (recursive), our temp files excluded, sorted by key."""
    fs = prefix.fs
    if not fs.exists(prefix.path):
        return []
    found = fs.find(prefix.path)
    base = prefix.path.rstrip("/")
    out = []
    for key in sorted(found):
        rel = key[len(base) :].lstrip("/") if key.startswith(base) else key
        # Only our own in-flight temp files are hidden; a user's dot-file is data to handle.
        if any(part.startswith(TMP_PREFIX) for part in rel.split("/")):
            continue
        out.append(prefix / rel)
    return out


def to_parquet_bytes(records: Iterable[Mapping[str, Any]] | pd.DataFrame) -> bytes:
    """Serialize records (or a DataFrame) to Parquet bytes in memory."""
    import pandas as pd

    frame = (
        records if isinstance(records, pd.DataFrame) else pd.DataFrame.from_records(list(records))
    )
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False, engine="pyarrow", compression="zstd")
    return buf.getvalue()


def write_parquet(
    name: str,
    day: date | str,
    part: str,
    records: Iterable[Mapping[str, Any]] | pd.DataFrame,
    settings: Settings | None = None,
) -> ObjectStoragePath:
    """Write one part of a date partition atomically; the same ``part`` replaces, never duplicates."""
    path = partition(name, day, settings) / f"{safe_segment(part, what='part name')}.parquet"
    write_bytes(path, to_parquet_bytes(records))
    return path


def read_table(
    name: str,
    settings: Settings | None = None,
    *,
    days: Iterable[date | str] | None = None,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """Read a whole table (or some days of it) into a DataFrame; a missing table is empty."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    folders = (
        [partition(name, d, settings) for d in days]
        if days is not None
        else [table(name, settings)]
    )
    parts = []
    for folder in folders:
        for path in list_files(folder):
            if not path.name.endswith(".parquet"):
                continue
            with path.fs.open(path.path, "rb") as fh:
                part = pq.read_table(fh, columns=columns)
            day = _day_of(path)
            if day is not None and "date" not in part.column_names:
                part = part.append_column("date", pa.array([day] * part.num_rows, pa.string()))
            parts.append(part)
    if not parts:
        return pd.DataFrame(columns=columns or [])
    # Parts written at different times may type a column differently (all-null in one part,
    # strings in another): Arrow promotes them to one schema.
    return pa.concat_tables(parts, promote_options="permissive").to_pandas()


def _day_of(path: ObjectStoragePath) -> str | None:
    for part in str(path).split("/"):
        if part.startswith("date="):
            return part[len("date=") :]
    return None
