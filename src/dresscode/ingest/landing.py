"""The landing area and quarantine: parse upload keys, decide what is ready, clean up, quarantine.

An upload is ``landing/<user_id>/<upload_id>.<ext>``. It leaves landing only after its cleaned
copy (or its quarantine copy with ``reason.json``) and its final manifest row exist, and only
while it still holds the bytes that were processed (:func:`remove_if_unchanged`): a re-upload
to the same key during a run stays for the next run.

Keys are hostile input. Each one is handled on its own — one bad key never stops discovery or
a batch:

* a name that is not UTF-8 travels as a portable token (``lake.portable_key``) and is
  quarantined as ``unsafe_key``, as is any key that is not ``<safe user>/<safe name>.<ext>``;
* a user id that is a reserved name (a prefix another stage owns, e.g. ``feedback``) is not a
  user: ``reserved_user_id``; keys under the owned prefix itself are never touched;
* a hidden (dot) file is usually a writer's upload in flight: it is left alone and reported
  (``waiting: hidden_file``) until it is ``DRESSCODE_INGEST_HIDDEN_MAX_AGE_S`` old, then quarantined as
  ``hidden_file``;
* on a local landing folder a file some process still has open for writing (Linux tells us),
  or one changed in the last ``DRESSCODE_INGEST_SETTLE_S`` seconds when the system cannot tell, waits for the
  next run (``waiting: settling``). Writers should still write to a hidden temp name and
  rename: that is the one protocol that works everywhere (S3 PUTs are atomic already).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dresscode.core import lake, tables
from dresscode.core.config import Settings

log = logging.getLogger(__name__)


# A Unix dot-file name (".x", ".tmp-…"); names starting with ".." look like path traversal and
# are unsafe keys at once.
_HIDDEN = re.compile(r"\.[^.].*", re.DOTALL)


class KeyCode(StrEnum):
    """Why a landing key is not an upload we process now. Values are stable (manifest, metrics)."""

    UNSAFE_KEY = "unsafe_key"
    RESERVED_USER_ID = "reserved_user_id"
    HIDDEN_FILE = "hidden_file"


class Waiting(StrEnum):
    """Why a key stays in landing this run, untouched and without a manifest row."""

    SETTLING = "settling"  # a writer still has it open, or it changed a moment ago
    HIDDEN_FILE = "hidden_file"  # a dot file younger than DRESSCODE_INGEST_HIDDEN_MAX_AGE_S
    OTHER_STAGE = "other_stage"  # under a prefix another stage owns (feedback/)
    GONE = "gone"  # listed, then gone before it was read (another run or the writer took it)


class KeyRejected(lake.UnsafeKey):
    """A landing key that is not an upload: ``code`` is the reason filed with its quarantine copy."""

    def __init__(self, code: KeyCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Upload:
    """One landing object: ``<user_id>/<upload_id>.<ext>``."""

    key: str
    user_id: str
    upload_id: str
    ext: str

    @classmethod
    def parse(cls, key: str) -> Upload:
        """Parse and check a landing key (portable or native); raises KeyRejected.

        Accepted keys are valid UTF-8 made of safe segments (``lake.safe_segment``), their user
        id is no reserved name and their file name has a non-empty extension.
        """
        native = lake.native_key(key)
        shown = lake.printable_key(key)
        if native != key:
            raise KeyRejected(KeyCode.UNSAFE_KEY, f"Landing key {shown!r} is not valid UTF-8.")
        parts = key.split("/")
        if len(parts) != 2:
            raise KeyRejected(
                KeyCode.UNSAFE_KEY, f"Landing key {shown!r} is not <user_id>/<upload_id>.<ext>."
            )
        try:
            user_id = lake.safe_segment(parts[0], what="user id")
            name = lake.safe_segment(parts[1], what="file name")
        except lake.UnsafeKey as exc:
            raise KeyRejected(KeyCode.UNSAFE_KEY, str(exc)) from None
        if user_id.casefold() in tables.RESERVED_USER_IDS:
            raise KeyRejected(
                KeyCode.RESERVED_USER_ID,
                f"{user_id!r} is a reserved name, not a user id: landing/{user_id.casefold()}/ "
                "belongs to another stage.",
            )
        upload_id, dot, ext = name.rpartition(".")
        if not dot or not upload_id or not ext:
            raise KeyRejected(KeyCode.UNSAFE_KEY, f"Landing file name {name!r} has no extension.")
        return cls(key, user_id, upload_id, ext.lower())


def is_hidden(key: str) -> bool:
    """A dot file: the key's file name starts with one dot (``.tmp-…``, ``.photo.jpg.part``)."""
    return _HIDDEN.fullmatch(lake.native_key(key).rpartition("/")[2]) is not None


def landing_path(key: str, settings: Settings) -> lake.ObjectStoragePath:
    """Where a (portable) landing key's object is."""
    return lake.landing(settings) / lake.native_key(key)


def settle_s(settings: Settings) -> float:
    return settings.ingest_settle_s


def hidden_max_age_s(settings: Settings) -> float:
    return settings.ingest_hidden_max_age_s


def waiting_reason(key: str, settings: Settings, now: float | None = None) -> Waiting | None:
    """Why ``key`` must stay in landing untouched this run, or None when it is ready."""
    if tables.landing_owner(lake.native_key(key)) is not None:
        return Waiting.OTHER_STAGE
    path = landing_path(key, settings)
    info = lake.stat(path)
    if info is None:
        return Waiting.GONE
    now = time.time() if now is None else now
    age = now - info.modified
    if is_hidden(key) and age < hidden_max_age_s(settings):
        return Waiting.HIDDEN_FILE
    writing = lake.open_for_writing(path)
    if writing or (writing is None and age < settle_s(settings)):
        return Waiting.SETTLING
    return None


def read_if_exists(path: lake.ObjectStoragePath) -> bytes | None:
    """The object's bytes, or None when it does not exist.

    Any other error (S3 unreachable) propagates: taken for "missing", it would make a
    committed upload look new (processed twice) or a saved answer look unsaved (asked again).
    """
    try:
        return lake.read_bytes(path)
    except FileNotFoundError:
        return None


def remove_if_unchanged(key: str, raw_sha256: str | None, settings: Settings) -> lake.Removal:
    """Remove a processed upload from landing, unless it no longer holds the processed bytes."""
    removal = lake.delete_if_unchanged(landing_path(key, settings), raw_sha256)
    if removal == "changed":
        log.warning(
            "upload %s changed after it was read (re-uploaded); kept in landing for the next run",
            lake.printable_key(key),
        )
    return removal


def clean_up_if_committed(
    key: str, state: dict[str, tables.ManifestEntry], settings: Settings
) -> bool:
    """Remove an upload that an earlier run (or try) committed but did not get to remove.

    Only when the landing object is the very upload its final manifest row describes: new
    bytes under a finished key (an app reusing an upload id) are a new upload. Returns True
    when the key was cleaned up and must not be processed.
    """
    row = state.get(key)
    if row is None or row["status"] not in tables.FINAL_STATUSES:
        return False
    recorded = row.get("raw_sha256")
    if not isinstance(recorded, str) or not recorded:
        # No bytes were recorded (an unsafe key whose file was gone): only an absent object
        # is "committed"; anything present now is a new upload.
        return not lake.exists(landing_path(key, settings))
    removal = lake.delete_if_unchanged(landing_path(key, settings), recorded)
    if removal == "missing":
        # Committed and gone from landing: a retried task is handed its batch's keys again.
        log.info("upload %s is already in the manifest as %s", key, row["status"])
        return True
    if removal == "changed":
        log.warning("upload %s was sent again with other bytes; processing it as a new upload", key)
        return False
    log.warning(
        "upload %s is already in the manifest as %s; removed it from landing", key, row["status"]
    )
    return True


def quarantine_folder(
    key: str, raw_sha256: str | None, day: str, settings: Settings
) -> lake.ObjectStoragePath:
    """``quarantine/date=<day>/<user_id>/<file name>/<content hash>/`` of one upload.

    The content hash keeps every original: the same key re-uploaded with other bad bytes gets
    its own folder. A key that is not an upload never becomes a path: it is filed under
    ``_unsafe_keys/<hash of the key>/<content hash>``.
    """
    folder = lake.partition(tables.QUARANTINE.name, day, settings)
    content = raw_sha256[:32] if raw_sha256 else "no-bytes"
    try:
        upload = Upload.parse(key)
    except KeyRejected:
        native = lake.native_key(key)
        digest = hashlib.sha256(native.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return folder / f"_unsafe_keys/{digest}/{content}"  # one join: joins are not free
    # The full file name, not the upload id: photo.gif and photo.webp must not collide.
    return folder / f"{upload.key}/{content}"  # <user_id>/<file name>: both safe segments


def quarantine(
    upload: Upload | None,
    key: str,
    raw: bytes | None,
    code: str,
    message: str,
    detail: dict[str, Any],
    day: str,
    settings: Settings,
) -> lake.ObjectStoragePath:
    """Copy the original to quarantine with a reason.json next to it (before it leaves landing).

    Returns the folder (see :func:`quarantine_folder`).
    """
    sha = hashlib.sha256(raw).hexdigest() if raw is not None else None
    stem = quarantine_folder(upload.key if upload else key, sha, day, settings)
    if raw is not None:
        name = f"original.{upload.ext}" if upload is not None else "original"
        lake.write_bytes(stem / name, raw)
    lake.write_json(
        stem / "reason.json",
        {
            "code": code,
            "message": message,
            "detail": detail,
            "upload_key": key,
            "landing_key": lake.printable_key(key),
            "raw_sha256": sha,
        },
    )
    return stem
