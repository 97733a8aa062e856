"""Feedback files in landing, and what becomes of each: its outcome, committed as one unit.

A file under ``landing/feedback/`` is either a ``.jsonl`` file of events or not feedback at
all. Anything else — a photo uploaded under a user id spelled ``feedback``, a PDF, a ``.jsonl``
that is really a JPEG — is moved to quarantine as ``not_jsonl`` (``quarantine/date=<day>/
feedback/<file name>/original.<ext>`` with a ``reason.json`` naming its size and sha256, the
layout of ingest's quarantine); it is never archived under ``feedback/raw/`` and none of its
bytes reach a report, a table or a log.

A ``.jsonl`` file is the unit of commit. :func:`prepare` turns its accepted rows and rejections
into bytes (the rejected-lines report, one Parquet part per event day) without writing
anything, so a surprise in one file's data stops before the lake is touched. :func:`commit`
then writes the report, the archive copy (``feedback/raw/<sha256>/<name>``) and the event parts,
in that order, each atomically and named by the file's content hash; the file leaves landing
(:func:`remove`) only after all of them — and the corrected labels — exist. A retry of a task
that died in between writes the same bytes to the same names.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

from dresscode.core import lake, tables
from dresscode.core.config import Settings
from dresscode.feedback.events import UTF8_BOM, FeedbackRow, Reason, Rejection, safe_text

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

LANDING_PREFIX = next(p for p, owner in tables.LANDING_OWNERS.items() if owner == "feedback")
EXTENSION = ".jsonl"

# The first bytes of files that are never JSON lines, whatever their name says.
_MAGIC = (
    (b"\xff\xd8\xff", "JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"RIFF", "RIFF (WebP) image"),
    (b"II*\x00", "TIFF image"),
    (b"MM\x00*", "TIFF image"),
    (b"BM", "BMP image"),
    (b"%PDF", "PDF document"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip archive"),
)


@dataclass
class LandingFile:
    keys: list[str]
    """Every landing key holding these bytes (the first one is the source)."""
    sha256: str
    data: bytes

    @property
    def key(self) -> str:
        return self.keys[0]

    @property
    def source(self) -> str:
        """The key as it is written into reports and the ``source`` column (encodable)."""
        return safe_text(self.key)


class SetAside(TypedDict):
    """A landing file that is not feedback: moved to quarantine, described, never copied."""

    key: str
    size: int
    sha256: str
    reason: str  # Reason value (not_jsonl)
    detail: str


@dataclass
class Landed:
    """What :func:`read_landing_files` found."""

    files: list[LandingFile] = field(default_factory=list)
    """``.jsonl`` files, grouped by content (the same bytes twice are one file)."""
    not_jsonl: list[tuple[LandingFile, str]] = field(default_factory=list)
    """Files that are not JSON lines, with what they are instead."""
    unreadable: list[str] = field(default_factory=list)
    """Keys left in landing for the next run (a storage hiccup)."""


def not_jsonl(key: str, data: bytes) -> str | None:
    """Why a landing file is not a feedback file (its name or its first bytes), else None."""
    name = key.rpartition("/")[2]
    if not name.lower().endswith(EXTENSION):
        ext = name.rpartition(".")[2] if "." in name else ""
        return f"a .{safe_text(ext[:10])} file, not {EXTENSION}" if ext else "no file extension"
    head = data.removeprefix(UTF8_BOM)[:16]
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return f"named {EXTENSION} but holds a {kind}"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return f"named {EXTENSION} but holds an ISO media (HEIC/MP4) file"
    return None


def read_landing_files(keys: Sequence[str], settings: Settings) -> Landed:
    """Read the landing keys: feedback files by content, files that are not, unreadable keys."""
    landed = Landed()
    by_sha: dict[str, LandingFile] = {}
    for key in sorted(keys):
        try:
            data = lake.read_bytes(lake.landing(settings) / key)
        except FileNotFoundError:
            log.info("%s: already gone from landing (an earlier try finished it)", safe_text(key))
            continue
        except Exception as exc:  # a storage hiccup: the file stays and the next run retries
            log.warning(
                "%s: read_failed (%s); left in landing for the next run", safe_text(key), exc
            )
            landed.unreadable.append(safe_text(key))
            continue
        sha = hashlib.sha256(data).hexdigest()
        why = not_jsonl(key, data)
        if why is not None:
            landed.not_jsonl.append((LandingFile([key], sha, data), why))
        elif sha in by_sha:
            log.warning("%s: same bytes as %s; processed once", safe_text(key), by_sha[sha].source)
            by_sha[sha].keys.append(key)
        else:
            by_sha[sha] = LandingFile([key], sha, data)
    landed.files = list(by_sha.values())
    return landed


def quarantine(f: LandingFile, why: str, day: str, settings: Settings) -> SetAside:
    """Move a file that is not feedback to quarantine with its reason; report it by hash only."""
    folder = lake.partition(tables.QUARANTINE.name, day, settings)
    parts = f.key.split("/")
    name = parts[-1]
    try:
        if len(parts) != 2:
            raise lake.UnsafeKey(f"{len(parts)} segments")
        lake.safe_segment(name, what="file name")
        stem, ext = name.rpartition(".")[0], name.rpartition(".")[2]
        # One folder per key and content: a re-upload of other bytes never overwrites it.
        target = (
            folder
            / LANDING_PREFIX
            / name
            / f.sha256[:32]
            / (f"original.{ext.lower()}" if stem and ext else "original")
        )
    except lake.UnsafeKey:
        # An odd key never becomes a path: filed under the hash of the key itself.
        hashed = hashlib.sha256(f.source.encode("utf-8")).hexdigest()[:32]
        target = folder / "_unsafe_keys" / hashed / f.sha256[:32] / "original"
    aside = SetAside(
        key=f.source, size=len(f.data), sha256=f.sha256, reason=Reason.NOT_JSONL.value, detail=why
    )
    lake.write_bytes(target, f.data)
    lake.write_json(
        target.parent / "reason.json",
        {
            "code": Reason.NOT_JSONL.value,
            "message": Reason.NOT_JSONL.sentence,
            "detail": {"what": why, "size": aside["size"], "sha256": aside["sha256"]},
            "upload_key": aside["key"],
        },
    )
    # Only while it still holds these bytes: a re-upload stays for the next run.
    lake.delete_if_unchanged(lake.landing(settings) / f.key, f.sha256)
    log.warning(
        "%s: not_jsonl (%s; %d bytes, sha256 %s); moved to quarantine, not archived",
        aside["key"],
        why,
        aside["size"],
        aside["sha256"][:16],
    )
    return aside


# --------------------------------------------------------------------------------------------
# One file's outcome: prepared in memory, then committed
# --------------------------------------------------------------------------------------------


def part_name(sha256: str) -> str:
    return f"events-{sha256[:16]}"


def report_path(day: str, sha256: str, settings: Settings) -> lake.ObjectStoragePath:
    return (
        lake.table("reports", settings)
        / "feedback"
        / f"date={day}"
        / f"rejected-{sha256[:16]}.jsonl"
    )


def archive_path(f: LandingFile, settings: Settings) -> lake.ObjectStoragePath:
    name = f.key.rpartition("/")[2]
    try:
        name = lake.safe_segment(name, what="feedback file name")
    except lake.UnsafeKey:
        name = "feedback.jsonl"
    return lake.table("feedback", settings) / "raw" / f.sha256 / name


@dataclass(frozen=True)
class Outcome:
    """Everything one file changes, as bytes ready to write."""

    file: LandingFile
    rows: list[FeedbackRow]
    rejections: list[Rejection]
    report: tuple[lake.ObjectStoragePath, bytes] | None
    parts: list[tuple[lake.ObjectStoragePath, bytes]]
    stale: list[lake.ObjectStoragePath]
    """Parts this file wrote before for days it no longer covers (a changed outcome)."""
    by_day: dict[str, list[FeedbackRow]] = field(default_factory=dict)
    stale_days: list[str] = field(default_factory=list)


def prepare(
    f: LandingFile,
    rows: list[FeedbackRow],
    rejections: list[Rejection],
    earlier: pd.DataFrame,
    day: str,
    settings: Settings,
) -> Outcome:
    """Serialize one file's outcome; writes nothing (raises on a surprise, before any write)."""
    rejections = sorted(rejections, key=lambda r: r.line)
    report = None
    if rejections:
        body = "".join(json.dumps(r.record(), ensure_ascii=False) + "\n" for r in rejections)
        report = (report_path(day, f.sha256, settings), body.encode("utf-8"))
    by_day: dict[str, list[FeedbackRow]] = defaultdict(list)
    for row in rows:
        by_day[row["event_time"][:10]].append(row)
    parts = []
    name = f"{part_name(f.sha256)}.parquet"
    for event_day, day_rows in sorted(by_day.items()):
        day_rows.sort(key=lambda r: (r["event_time"], r["event_id"]))
        path = lake.partition("feedback", event_day, settings) / name
        parts.append((path, lake.to_parquet_bytes(day_rows)))
    stale_days: list[str] = []
    if not earlier.empty:
        before = set(earlier.loc[earlier["source_sha256"] == f.sha256, "date"])
        stale_days = sorted(before - set(by_day))
    stale = [lake.partition("feedback", d, settings) / name for d in stale_days]
    return Outcome(f, rows, rejections, report, parts, stale, dict(by_day), stale_days)


def commit(outcome: Outcome, settings: Settings) -> str | None:
    """Write the report, the archive copy and the event parts; returns the report's path."""
    f = outcome.file
    if outcome.report is not None:
        path, body = outcome.report
        lake.write_bytes(path, body)
        _log_rejections(f, outcome.rejections, str(path))
    target = archive_path(f, settings)
    if not lake.exists(target):
        lake.write_bytes(target, f.data)
    for path, data in outcome.parts:
        lake.write_bytes(path, data)
    for path in outcome.stale:
        lake.delete(path)
    # The same events by user, for the wardrobe fold (lake.write_user_events); after the
    # parts, so a crash in between is repaired by the retry that writes both again.
    stem = part_name(f.sha256)
    for event_day, day_rows in sorted(outcome.by_day.items()):
        lake.write_user_events(event_day, stem, day_rows, settings)
    for event_day in outcome.stale_days:
        lake.write_user_events(event_day, stem, [], settings, replace=True)
    return None if outcome.report is None else str(outcome.report[0])


def remove(f: LandingFile, settings: Settings) -> None:
    """Clear a committed file from landing (every key that held its bytes)."""
    for key in f.keys:
        removal = lake.delete_if_unchanged(lake.landing(settings) / key, f.sha256)
        if removal == "changed":
            log.warning("%s was re-uploaded while it was applied; it stays for the next run", key)


def _log_rejections(f: LandingFile, rejected: list[Rejection], path: str) -> None:
    """One WARNING per reason, with the first line numbers."""
    by_reason: dict[str, list[int]] = defaultdict(list)
    for r in rejected:
        by_reason[r.reason.value].append(r.line)
    for reason, numbers in sorted(by_reason.items()):
        shown = ", ".join(str(n) for n in numbers[:10]) + (", ..." if len(numbers) > 10 else "")
        log.warning(
            "%s: %d rejected as %s (lines %s); kept in %s",
            f.source,
            len(numbers),
            reason,
            shown,
            path,
        )
