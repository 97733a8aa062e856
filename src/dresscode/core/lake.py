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

import base64
import hashlib
import io
import json
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

from dresscode.core.config import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import ObjectStoragePath

# Safe path segments: user ids, upload ids, table and part names. No "..", no slashes,
# no control characters, no leading dot (hidden temp files use it). Always ``fullmatch``: with
# ``match``, ``$`` also matches before a trailing newline ("rt-nl\n" would pass).
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=@+-]{0,199}")

TABLES = (
    "landing",
    "images",
    "digitized",
    "quarantine",
    "manifests",
    "wardrobe_items",
    "redigitized",
    "inference_log",
    "users",
    "weather",
    "weather_cache",
    "user_style",
    "outfit_suggestions",
    "serve_shadow",
    "feedback",
    "user_events",
    "corrected_labels",
    "golden_candidates",
    "quality_metrics",
    "monitoring_decisions",
    "reports",
    "item_embeddings",
)


TMP_PREFIX = ".tmp-"


class UnsafeKey(ValueError):
    """A user-supplied key segment that could escape its folder or hide a file."""


def safe_segment(value: str, *, what: str = "key segment") -> str:
    """Return ``value`` if it is safe as one path segment, else raise UnsafeKey."""
    if not isinstance(value, str) or not _SEGMENT.fullmatch(value) or ".." in value:
        raise UnsafeKey(
            f"Unsafe {what} {value!r}: only letters, digits and ._=@+- are allowed, without '..'."
        )
    return value


# A key travels between tasks as JSON (XCom). A local file name need not be UTF-8: Python shows
# its bad bytes as lone surrogates, which no UTF-8 encoder takes, so one such name would fail the
# whole XCom. Such a key travels as a token: NUL (never in a POSIX file name), "b64:" and the
# base64 of the name's bytes. Keys holding NUL are tokens too, so the two never collide.
_TOKEN = "\x00b64:"


def portable_key(key: str) -> str:
    """``key`` as a string every JSON/UTF-8 encoder takes; :func:`native_key` reverses it."""
    if "\x00" not in key:
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            pass
        else:
            return key
    try:
        raw = key.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file name can hold: keep it reversible anyway
        raw = key.encode("utf-8", "surrogatepass")
    return _TOKEN + base64.urlsafe_b64encode(raw).decode("ascii")


def native_key(key: str) -> str:
    """The key as the filesystem knows it (the reverse of :func:`portable_key`)."""
    if not key.startswith(_TOKEN):
        return key
    try:
        raw = base64.urlsafe_b64decode(key[len(_TOKEN) :].encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return key  # not a token of ours: a key that is simply unsafe
    return raw.decode("utf-8", "surrogateescape")


def printable_key(key: str) -> str:
    """The native key for logs and reason.json: undecodable bytes as ``\\xNN``."""
    native = native_key(key)
    return native.encode(
        "utf-8", "surrogateescape" if _escapable(native) else "surrogatepass"
    ).decode("utf-8", "backslashreplace")


def _escapable(key: str) -> bool:
    return all(not "\ud800" <= ch <= "\udfff" or "\udc80" <= ch <= "\udcff" for ch in key)


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


Removal = Literal["deleted", "missing", "changed"]


def delete_if_unchanged(path: ObjectStoragePath, sha256: str | None) -> Removal:
    """Remove ``path`` only while it still holds the bytes whose hash is ``sha256``.

    A writer may replace an object between our read and our delete (an app re-uploading to the
    same key: a temp file and a rename, or an S3 PUT). Deleting blindly would lose the new
    bytes, so the object is read again and hashed, and the delete is conditional:

    * S3: HEAD gives the ETag, the object is read and hashed, and the delete carries
      ``If-Match: <ETag>`` — S3 refuses it (412) when the object changed after the HEAD. A
      server without conditional deletes (501) gets a second HEAD right before a plain delete.
    * local: the file's inode, size and mtime are taken before and after the re-read; the
      unlink follows at once (the window left is microseconds).

    ``sha256=None`` (bytes never read) never deletes. Returns ``"deleted"``, ``"missing"`` or
    ``"changed"`` (kept: the next run processes the new bytes).
    """
    if sha256 is None:
        return "missing" if not exists(path) else "changed"
    if _is_s3(path):
        return _delete_s3_if_unchanged(path, sha256)
    fs, target = path.fs, path.path
    try:
        before = _fingerprint(path)
        data = fs.cat_file(target)
        after = _fingerprint(path)
    except FileNotFoundError:
        return "missing"
    if before != after or hashlib.sha256(data).hexdigest() != sha256:
        return "changed"
    try:
        fs.rm(target)
    except FileNotFoundError:
        return "missing"
    return "deleted"


def _fingerprint(path: ObjectStoragePath) -> tuple[Any, ...]:
    if path.protocol in {"file", "local"}:
        st = os.stat(path.path)
        return (st.st_ino, st.st_size, st.st_mtime_ns)
    info = path.fs.info(path.path)
    return tuple(info.get(k) for k in ("ino", "size", "mtime", "ETag", "VersionId"))


def _s3_error_code(exc: BaseException) -> str:
    cause = exc.__cause__
    response = getattr(cause, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _delete_s3_if_unchanged(path: ObjectStoragePath, sha256: str) -> Removal:
    fs = path.fs
    bucket, key, _ = fs.split_path(path.path)
    try:
        etag = fs.call_s3("head_object", Bucket=bucket, Key=key)["ETag"]
        data = fs.cat_file(path.path)
    except FileNotFoundError:
        return "missing"
    if hashlib.sha256(data).hexdigest() != sha256:
        return "changed"
    try:
        fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=etag)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        code = _s3_error_code(exc)
        if code == "PreconditionFailed":
            return "changed"
        if code not in {"NotImplemented", "InvalidArgument"}:
            raise
        # No conditional deletes on this server: check the ETag once more, right before.
        try:
            if fs.call_s3("head_object", Bucket=bucket, Key=key)["ETag"] != etag:
                return "changed"
        except FileNotFoundError:
            return "missing"
        fs.call_s3("delete_object", Bucket=bucket, Key=key)
    finally:
        fs.invalidate_cache(path.path)
    return "deleted"


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing says about one object: its key below the prefix, size and age."""

    key: str  # relative to the listed prefix, as the filesystem knows it
    size: int
    modified: float  # seconds since the epoch


def _modified(info: Mapping[str, Any]) -> float:
    value = info.get("mtime", info.get("LastModified", info.get("last_modified")))
    if isinstance(value, datetime):
        return value.timestamp()
    try:
        return float(value) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0


def stat(path: ObjectStoragePath) -> ObjectInfo | None:
    """Size and modification time of one object; None when it does not exist."""
    try:
        info = path.fs.info(path.path)
    except FileNotFoundError:
        return None
    return ObjectInfo(path.name, int(info.get("size") or 0), _modified(info))


def open_for_writing(path: ObjectStoragePath) -> bool | None:
    """Whether a process holds this local file open for writing; None when we cannot tell.

    Linux refuses a read lease (``F_SETLEASE``) on a file that any process has open for
    writing, which tells a half-written upload from a finished one without waiting. Not on S3
    (a PUT is atomic), not on other systems, not on files we may not lease (another owner).
    """
    if path.protocol not in {"file", "local"}:
        return False if _is_s3(path) else None
    try:
        import fcntl

        set_lease = fcntl.F_SETLEASE  # type: ignore[attr-defined,unused-ignore]
    except (ImportError, AttributeError):
        return None
    try:
        fd = os.open(path.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        fcntl.fcntl(fd, set_lease, fcntl.F_RDLCK)
    except BlockingIOError:
        return True  # EAGAIN: a writer has it open
    except OSError:
        return None  # EACCES (not our file), EINVAL (filesystem without leases)
    else:
        fcntl.fcntl(fd, set_lease, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


def list_objects(prefix: ObjectStoragePath) -> list[ObjectInfo]:
    """Every object below ``prefix`` (recursive), hidden and temp files included, by key."""
    fs = prefix.fs
    if not fs.exists(prefix.path):
        return []
    found = fs.find(prefix.path, detail=True)
    base = prefix.path.rstrip("/")
    out = []
    for name, info in sorted(found.items()):
        if info.get("type", "file") != "file":
            continue
        rel = name[len(base) :].lstrip("/") if name.startswith(base) else name
        out.append(ObjectInfo(rel, int(info.get("size") or 0), _modified(info)))
    return out


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
    """Write one part of a date partition atomically; the same ``part`` replaces, never duplicates.

    A Delta table (:mod:`dresscode.core.delta`) commits the part; the others get a Parquet file.
    """
    if is_delta(name):
        from dresscode.core import delta

        delta.write_part(name, day, safe_segment(part, what="part name"), records, settings)
        return table(name, settings)
    path = partition(name, day, settings) / f"{safe_segment(part, what='part name')}.parquet"
    write_bytes(path, to_parquet_bytes(records))
    if name == "feedback":
        write_user_events(day, part, records, settings)
    return path


USER_EVENTS_TABLE = "user_events"


def upsert(
    name: str,
    day: date | str,
    records: Iterable[Mapping[str, Any]] | pd.DataFrame,
    settings: Settings | None = None,
) -> dict[str, int]:
    """Merge rows into a state table on its key (:func:`dresscode.core.delta.upsert`)."""
    from dresscode.core import delta

    return delta.upsert(name, day, records, settings)


def write_user_events(
    day: date | str,
    part: str,
    records: Iterable[Mapping[str, Any]] | pd.DataFrame,
    settings: Settings | None = None,
    *,
    replace: bool = False,
) -> int:
    """Commit the events of a ``feedback`` part to ``user_events`` too.

    ``feedback`` is partitioned by event day (the windows of features and monitoring read a
    few days); the fold of a user's wardrobe, the labels of a user's photos and the duplicate
    check of a user's next events need that user's events of every day, so they are also kept
    by user (a Delta table partitioned by ``user_bucket``). The part is named after the
    feedback part and its day, so writing a feedback part again replaces its events.
    ``replace`` commits even when there are none (the feedback part was removed or emptied).
    Returns the events written.
    """
    import pandas as pd

    from dresscode.core import delta

    frame = (
        records if isinstance(records, pd.DataFrame) else pd.DataFrame.from_records(list(records))
    )
    columns = [c for c in delta.TABLES[USER_EVENTS_TABLE].types if c in frame.columns]
    if frame.empty and not replace:
        return 0
    day_str = day.isoformat() if isinstance(day, date) else str(day)
    name = safe_segment(f"{day_str}-{part}", what="part name")
    delta.write_part(USER_EVENTS_TABLE, day_str, name, frame[columns], settings)
    return len(frame)


def read_table(
    name: str,
    settings: Settings | None = None,
    *,
    days: Iterable[date | str] | None = None,
    columns: list[str] | None = None,
    filters: list[tuple[str, str, Any]] | None = None,
    version: int | None = None,
) -> pd.DataFrame:
    """Read a whole table (or some days of it) into a DataFrame; a missing table is empty.

    ``filters`` (pyarrow's DNF, e.g. ``[("user_id", "in", ids)]``) are applied as each part is
    read: row groups that cannot match are skipped and the rest never reach pandas. A Delta
    table reads only the files its log says can match (:func:`dresscode.core.delta.read`), at
    ``version`` when given (time travel: what an evaluation read, read again).
    """
    if is_delta(name):
        from dresscode.core import delta

        return delta.read(
            name, settings, days=days, columns=columns, filters=filters, version=version
        )
    if version is not None:
        raise ValueError(f"{name} is not a Delta table: it has no versions")
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
                part = pq.read_table(fh, columns=columns, filters=filters)
            day = _day_of(path)
            if day is not None and "date" not in part.column_names:
                part = part.append_column("date", pa.array([day] * part.num_rows, pa.string()))
            parts.append(part)
    if not parts:
        return pd.DataFrame(columns=columns or [])
    # Parts written at different times may type a column differently (all-null in one part,
    # strings in another): Arrow promotes them to one schema.
    return pa.concat_tables(parts, promote_options="permissive").to_pandas()


def partition_days(
    name: str, settings: Settings | None = None, *, version: int | None = None
) -> list[str]:
    """The ``date`` partitions a Parquet table holds, oldest first (a Delta table's from its
    log, without reading data; at ``version`` for time travel)."""
    if is_delta(name):
        from dresscode.core import delta

        return delta.partition_days(name, settings, version=version)
    if version is not None:
        raise ValueError(f"{name} is not a Delta table: it has no versions")
    folder = table(name, settings)
    if not folder.fs.exists(folder.path):
        return []
    names = (p.rstrip("/").rpartition("/")[2] for p in folder.fs.ls(folder.path, detail=False))
    return sorted(n[len("date=") :] for n in names if n.startswith("date="))


def is_delta(name: str) -> bool:
    """Whether ``name`` is a Delta table (:mod:`dresscode.core.delta`), not Parquet parts."""
    from dresscode.core.delta import is_delta as delta_table

    return delta_table(name)


def _day_of(path: ObjectStoragePath) -> str | None:
    for part in str(path).split("/"):
        if part.startswith("date="):
            return part[len("date=") :]
    return None
