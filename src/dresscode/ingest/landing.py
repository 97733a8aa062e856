"""The landing area and quarantine: parse upload keys, clean up committed uploads, quarantine.

An upload is ``landing/<user_id>/<upload_id>.<ext>``. It leaves landing only after its cleaned
copy (or its quarantine copy with ``reason.json``) and its final manifest row exist.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from dresscode.core import lake, tables
from dresscode.core.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Upload:
    """One landing object: ``<user_id>/<upload_id>.<ext>``."""

    key: str
    user_id: str
    upload_id: str
    ext: str

    @classmethod
    def parse(cls, key: str) -> Upload:
        """Parse and check a landing key; raises lake.UnsafeKey for anything odd."""
        parts = key.split("/")
        if len(parts) != 2:
            raise lake.UnsafeKey(f"Landing key {key!r} is not <user_id>/<upload_id>.<ext>.")
        user_id = lake.safe_segment(parts[0], what="user id")
        name = lake.safe_segment(parts[1], what="file name")
        upload_id, dot, ext = name.rpartition(".")
        if not dot or not upload_id:
            raise lake.UnsafeKey(f"Landing file name {name!r} has no extension.")
        return cls(key, user_id, upload_id, ext.lower())


def read_if_exists(path: lake.ObjectStoragePath) -> bytes | None:
    """The object's bytes, or None when it does not exist.

    Any other error (S3 unreachable) propagates: taken for "missing", it would make a
    committed upload look new (processed twice) or a saved answer look unsaved (asked again).
    """
    try:
        return lake.read_bytes(path)
    except FileNotFoundError:
        return None


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
    raw = read_if_exists(lake.landing(settings) / key)
    if raw is None:
        # Committed and gone from landing: a retried task is handed its batch's keys again.
        log.info("upload %s is already in the manifest as %s", key, row["status"])
        return True
    recorded = row.get("raw_sha256")
    if not recorded or hashlib.sha256(raw).hexdigest() != recorded:
        log.warning("upload %s was sent again with other bytes; processing it as a new upload", key)
        return False
    log.warning(
        "upload %s is already in the manifest as %s; removing it from landing", key, row["status"]
    )
    lake.delete(lake.landing(settings) / key)
    return True


def quarantine(
    upload: Upload | None,
    key: str,
    raw: bytes | None,
    code: str,
    message: str,
    detail: dict[str, Any],
    day: str,
    settings: Settings,
) -> None:
    """Copy the original to quarantine with a reason.json next to it (before it leaves landing)."""
    folder = lake.partition(tables.QUARANTINE.name, day, settings)
    if upload is None:
        # An unsafe key never becomes a path: file it under the hash of the key itself.
        stem = (
            folder
            / "_unsafe_keys"
            / hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        )
        name = "original"
    else:
        # The full file name, not the upload id: photo.gif and photo.webp must not collide.
        stem = folder / upload.user_id / upload.key.rpartition("/")[2]
        name = f"original.{upload.ext}"
    if raw is not None:
        lake.write_bytes(stem / name, raw)
    lake.write_json(
        stem / "reason.json",
        {"code": code, "message": message, "detail": detail, "upload_key": key},
    )
