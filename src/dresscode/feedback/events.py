"""Feedback events: the JSON-lines files the app drops, read and checked line by line.

The app drops JSON-lines files into ``landing/feedback/``, one event per line:
``item_corrected`` (changed category, colours, ...), ``item_deleted``, ``item_added`` (a garment
the model missed), ``outfit_rated`` (thumbs up/down) and ``wore_instead``. Each line is checked
against its event type's JSON Schema (the item fields against the digitizer's own output
schema, so a label outside the closed vocabularies cannot get in) by :class:`LineChecker`,
which knows nothing of the lake; :mod:`.references` then checks what an event points at.

Nothing is lost: every rejected line goes to ``reports/feedback/date=<day>/rejected-<file
hash>.jsonl`` with its line number, reason code and raw text, and a landing file leaves
landing only after its events, labels and report are written and the file itself is archived
under ``feedback/raw/<sha256>/``. Event parts are named by the source file's content hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypedDict

from dresscode.core import lake
from dresscode.core.config import Settings

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

LANDING_PREFIX = "feedback"
CORRECTION_TYPES = ("item_corrected", "item_deleted", "item_added")
OUTFIT_TYPES = ("outfit_rated", "wore_instead")
EVENT_TYPES = CORRECTION_TYPES + OUTFIT_TYPES
COMMON_FIELDS = ("event_id", "event_type", "user_id", "event_time")
ITEM_FIELDS = (
    "category",
    "subcategory",
    "colors",
    "pattern",
    "material",
    "warmth",
    "formality",
    "seasons",
    "water_resistant",
    "description",
)


class FeedbackRow(TypedDict):
    """One row of the ``feedback`` table: an accepted event (columns in table order)."""

    event_id: str
    event_type: str
    user_id: str
    event_time: str  # ISO UTC with milliseconds (iso_utc)
    received_at: str
    item_id: str | None  # the item corrected, deleted or added
    image_sha256: str | None
    prompt_version: str | None  # of the photo's digitization
    payload: str  # the event type's own fields, as JSON
    source: str  # the landing key it came from
    source_sha256: str


class Reason(StrEnum):
    """Why a line was rejected; the report, the task log and the runbook use these codes."""

    EMPTY_FILE = "empty_file"
    NOT_UTF8 = "not_utf8"
    MALFORMED_JSON = "malformed_json"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    FUTURE_EVENT = "future_event"
    DUPLICATE_EVENT = "duplicate_event"
    UNKNOWN_ITEM = "unknown_item"
    UNKNOWN_PHOTO = "unknown_photo"
    UNKNOWN_SUGGESTION = "unknown_suggestion"
    NOT_OWNER = "not_owner"
    ITEM_DELETED = "item_deleted"


# --------------------------------------------------------------------------------------------
# Event schemas
# --------------------------------------------------------------------------------------------

_ID = {"type": "string", "minLength": 1, "maxLength": 128}
_USER = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._=@+-]{0,127}$"}
_TIME = {"type": "string", "minLength": 10, "maxLength": 40}
_SHA = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_DAY = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
_INDEX = {"type": "integer", "minimum": 0, "maximum": 50}


def item_schema() -> dict[str, Any]:
    """One wardrobe item as the digitizer answers it (the golden set's schema version)."""
    from dresscode.llm import blueprints
    from dresscode.registry import golden

    return blueprints.resolve(golden.SCHEMA_REF).output_schema["properties"]["items"]["items"]


def event_schemas(item: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """A JSON Schema per event type: the common fields plus the type's own, nothing else."""
    item = item or item_schema()
    changes = {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": False,
        "properties": item["properties"],
    }
    own: dict[str, tuple[dict[str, Any], list[str]]] = {
        "item_corrected": ({"item_id": _ID, "changes": changes}, ["item_id", "changes"]),
        "item_deleted": ({"item_id": _ID}, ["item_id"]),
        "item_added": ({"image_sha256": _SHA, "item": item}, ["image_sha256", "item"]),
        "outfit_rated": (
            {"suggestion_day": _DAY, "outfit_index": _INDEX, "rating": {"enum": ["up", "down"]}},
            ["suggestion_day", "outfit_index", "rating"],
        ),
        "wore_instead": (
            {
                "suggestion_day": _DAY,
                "outfit_index": _INDEX,
                "item_ids": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 30,
                    "uniqueItems": True,
                    "items": _ID,
                },
            },
            ["suggestion_day", "item_ids"],
        ),
    }
    schemas = {}
    for event_type, (props, required) in own.items():
        common = {
            "event_id": _ID,
            "event_type": {"const": event_type},
            "user_id": _USER,
            "event_time": _TIME,
        }
        schemas[event_type] = {
            "type": "object",
            "additionalProperties": False,
            "required": [*COMMON_FIELDS, *required],
            "properties": common | props,
        }
    return schemas


# --------------------------------------------------------------------------------------------
# One line -> an event or a rejection (pure)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """A schema-valid event, its time normalized to ISO UTC with milliseconds."""

    event_id: str
    event_type: str
    user_id: str
    event_time: str
    fields: dict[str, Any]
    """The type's own fields (the ``payload``)."""
    source: str
    source_sha256: str
    line: int


@dataclass(frozen=True)
class Rejection:
    source: str
    source_sha256: str
    line: int
    reason: Reason
    detail: str
    raw: str

    def record(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "source_sha256": self.source_sha256,
            "line": self.line,
            "reason": self.reason.value,
            "detail": self.detail,
            "raw": self.raw,
        }


def iso_utc(moment: datetime) -> str:
    """The one time format of the feedback tables (sorts as text)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def parse_time(value: str) -> datetime | None:
    """ISO 8601 with a timezone, else None (a local time without zone is ambiguous)."""
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        return None
    return moment.astimezone(UTC)


class LineChecker:
    """Checks single lines: JSON, schema, timestamp. Knows nothing of the lake."""

    def __init__(self, *, now: datetime, max_future_s: int, item: dict | None = None) -> None:
        from jsonschema import Draft202012Validator

        self.validators = {t: Draft202012Validator(s) for t, s in event_schemas(item).items()}
        self.latest = now + timedelta(seconds=max_future_s)

    def check(self, raw: bytes, *, line: int, source: str, sha: str) -> Event | Rejection:
        from jsonschema.exceptions import best_match

        def reject(reason: Reason, detail: str) -> Rejection:
            text = raw.decode("utf-8", errors="backslashreplace")
            return Rejection(source, sha, line, reason, detail[:300], text)

        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            return reject(Reason.NOT_UTF8, f"not UTF-8 at byte {err.start}")
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as err:
            return reject(Reason.MALFORMED_JSON, str(err))
        if not isinstance(obj, dict):
            return reject(
                Reason.INVALID_FIELD, f"(root): an event is a JSON object, not {type(obj).__name__}"
            )
        event_type = obj.get("event_type")
        if event_type is None:
            return reject(Reason.MISSING_FIELD, "'event_type' is a required property")
        if not isinstance(event_type, str):
            return reject(Reason.INVALID_FIELD, "event_type: must be a string")
        if event_type not in self.validators:
            return reject(
                Reason.UNKNOWN_EVENT_TYPE,
                f"event_type {event_type[:40]!r}; known: {', '.join(EVENT_TYPES)}",
            )
        errors = list(self.validators[event_type].iter_errors(obj))
        if errors:
            missing = [e for e in errors if e.validator == "required"]
            first = missing[0] if missing else best_match(errors)
            at = "/".join(str(p) for p in first.absolute_path) or "(root)"
            code = Reason.MISSING_FIELD if missing else Reason.INVALID_FIELD
            return reject(code, f"{at}: {first.message}")
        moment = parse_time(obj["event_time"])
        if moment is None:
            return reject(Reason.INVALID_FIELD, "event_time: not ISO 8601 with a timezone")
        if moment > self.latest:
            return reject(
                Reason.FUTURE_EVENT, f"event_time {iso_utc(moment)} is after {iso_utc(self.latest)}"
            )
        return Event(
            event_id=obj["event_id"],
            event_type=event_type,
            user_id=obj["user_id"],
            event_time=iso_utc(moment),
            fields={k: v for k, v in obj.items() if k not in COMMON_FIELDS},
            source=source,
            source_sha256=sha,
            line=line,
        )


def split_lines(data: bytes) -> list[tuple[int, bytes]]:
    """(line number, bytes) of every non-blank line; numbers count blank lines too."""
    return [
        (n, raw.rstrip(b"\r")) for n, raw in enumerate(data.split(b"\n"), start=1) if raw.strip()
    ]


def cell_text(value: Any) -> str | None:
    """A plain str from a table cell; None/NaN/empty become None."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    return text or None


def cell_list(value: Any) -> list[Any]:
    if value is None or (isinstance(value, float) and value != value):
        return []
    return list(value)


# --------------------------------------------------------------------------------------------
# Landing files, the feedback table, the rejected-lines reports and the raw archive
# --------------------------------------------------------------------------------------------


@dataclass
class LandingFile:
    keys: list[str]
    """Every landing key holding these bytes (the first one is the source)."""
    sha256: str
    data: bytes

    @property
    def key(self) -> str:
        return self.keys[0]


def read_landing_files(
    keys: Sequence[str], settings: Settings
) -> tuple[list[LandingFile], list[str]]:
    """Landing files grouped by content (the same bytes twice are one file); unreadable keys."""
    by_sha: dict[str, LandingFile] = {}
    unreadable = []
    for key in sorted(keys):
        try:
            data = lake.read_bytes(lake.landing(settings) / key)
        except FileNotFoundError:
            log.info("%s: already gone from landing (an earlier try finished it)", key)
            continue
        except Exception as exc:  # a storage hiccup: the file stays and the next run retries
            log.warning("%s: read_failed (%s); left in landing for the next run", key, exc)
            unreadable.append(key)
            continue
        sha = hashlib.sha256(data).hexdigest()
        if sha in by_sha:
            log.warning("%s: same bytes as %s; processed once", key, by_sha[sha].key)
            by_sha[sha].keys.append(key)
        else:
            by_sha[sha] = LandingFile([key], sha, data)
    return list(by_sha.values()), unreadable


def read_feedback(settings: Settings) -> pd.DataFrame:
    return lake.read_table("feedback", settings)


def part_name(sha256: str) -> str:
    return f"events-{sha256[:16]}"


def write_events(
    f: LandingFile, rows: list[FeedbackRow], earlier: pd.DataFrame, settings: Settings
) -> None:
    """One part per event day, named by the file's hash; days it no longer covers are cleared."""
    by_day: dict[str, list[FeedbackRow]] = defaultdict(list)
    for row in rows:
        by_day[row["event_time"][:10]].append(row)
    for day, day_rows in sorted(by_day.items()):
        day_rows.sort(key=lambda r: (r["event_time"], r["event_id"]))
        lake.write_parquet("feedback", day, part_name(f.sha256), day_rows, settings)
    if not earlier.empty:
        stale = set(earlier.loc[earlier["source_sha256"] == f.sha256, "date"]) - set(by_day)
        for day in stale:
            lake.delete(
                lake.partition("feedback", day, settings) / f"{part_name(f.sha256)}.parquet"
            )


def report_path(day: str, sha256: str, settings: Settings) -> lake.ObjectStoragePath:
    return (
        lake.table("reports", settings)
        / "feedback"
        / f"date={day}"
        / f"rejected-{sha256[:16]}.jsonl"
    )


def write_rejections(
    f: LandingFile, rejected: list[Rejection], day: str, settings: Settings
) -> str:
    """The rejected lines of one file with their reasons; WARNING per reason in the log."""
    rejected = sorted(rejected, key=lambda r: r.line)
    path = report_path(day, f.sha256, settings)
    body = "".join(json.dumps(r.record(), ensure_ascii=False) + "\n" for r in rejected)
    lake.write_bytes(path, body.encode())
    by_reason: dict[str, list[int]] = defaultdict(list)
    for r in rejected:
        by_reason[r.reason.value].append(r.line)
    for reason, numbers in sorted(by_reason.items()):
        shown = ", ".join(str(n) for n in numbers[:10]) + (", ..." if len(numbers) > 10 else "")
        log.warning(
            "%s: %d rejected as %s (lines %s); kept in %s", f.key, len(numbers), reason, shown, path
        )
    return str(path)


def archive_path(f: LandingFile, settings: Settings) -> lake.ObjectStoragePath:
    name = f.key.rpartition("/")[2]
    try:
        name = lake.safe_segment(name, what="feedback file name")
    except lake.UnsafeKey:
        name = "feedback.jsonl"
    return lake.table("feedback", settings) / "raw" / f.sha256 / name


def archive_and_remove(f: LandingFile, settings: Settings) -> None:
    """Archive the raw file (content-addressed), then clear it from landing."""
    target = archive_path(f, settings)
    if not lake.exists(target):
        lake.write_bytes(target, f.data)
    for key in f.keys:
        lake.delete(lake.landing(settings) / key)
