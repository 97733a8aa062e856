"""Feedback events: the JSON-lines files the app drops, read and checked line by line.

The app drops JSON-lines files into ``landing/feedback/``, one event per line:
``item_corrected`` (changed category, colours, ...), ``item_deleted``, ``item_added`` (a garment
the model missed), ``outfit_rated`` (thumbs up/down) and ``wore_instead``. Each line is checked
against its event type's JSON Schema (the item fields against the digitizer's own output
schema, so a label outside the closed vocabularies cannot get in) by :class:`LineChecker`,
which knows nothing of the lake; :mod:`.references` then checks what an event points at, and
:mod:`.landing` reads the files and writes what became of them.

Decisions, for hostile input:

* one line is one record: whatever a line holds — bad UTF-8, a lone surrogate escape
  (``"\\ud800"``), a timestamp in year 1 or 9999, NaN, a 5,000-digit number, nesting 10,000
  deep — :meth:`LineChecker.check` returns an :class:`Event` or a :class:`Rejection` with a
  :class:`Reason`; an unexpected exception is a rejection too (``check_failed``), never a
  failed task;
* only strict JSON: ``NaN``/``Infinity`` and numbers beyond a double are malformed;
* a leading UTF-8 byte-order mark is not part of the first line;
* every text that leaves this module for a report or a table is encodable UTF-8
  (:func:`safe_text` spells a lone surrogate as ``\\udXXX``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypedDict

from dresscode.core import lake, tables
from dresscode.core.config import Settings
from dresscode.core.wardrobe import DUPLICATE_EVENTS, WORE_INSTEAD

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

CORRECTION_TYPES = tables.WARDROBE_EVENTS
OUTFIT_TYPES = ("outfit_rated", WORE_INSTEAD)
DUPLICATE_TYPES = DUPLICATE_EVENTS  # answers to a possible_duplicate_of mark
EVENT_TYPES = CORRECTION_TYPES + OUTFIT_TYPES + DUPLICATE_TYPES
COMMON_FIELDS = ("event_id", "event_type", "user_id", "event_time")
ITEM_FIELDS = tables.ITEM_FIELDS


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
    """Why a line (or a file) was rejected; reports, logs and the runbook use these codes."""

    EMPTY_FILE = "empty_file"
    NOT_JSONL = "not_jsonl"
    NOT_UTF8 = "not_utf8"
    LONE_SURROGATE = "lone_surrogate"
    MALFORMED_JSON = "malformed_json"
    TOO_DEEP = "too_deep"
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
    CHECK_FAILED = "check_failed"

    @property
    def sentence(self) -> str:
        """The reason for people, one sentence (the report's ``message``)."""
        return _SENTENCES[self]


_SENTENCES = {
    Reason.EMPTY_FILE: "The file holds no events.",
    Reason.NOT_JSONL: "Only .jsonl files of JSON lines belong in landing/feedback/.",
    Reason.NOT_UTF8: "The line is not UTF-8 text.",
    Reason.LONE_SURROGATE: "A string escapes half of a UTF-16 surrogate pair, which is not text.",
    Reason.MALFORMED_JSON: "The line is not one strict JSON value.",
    Reason.TOO_DEEP: "The line nests objects or arrays too deep to be an event.",
    Reason.UNKNOWN_EVENT_TYPE: "The event type is not one the pipeline knows.",
    Reason.MISSING_FIELD: "A field the event type requires is missing.",
    Reason.INVALID_FIELD: "A field breaks the event type's schema.",
    Reason.FUTURE_EVENT: "The event time is further ahead than the clock skew allowance.",
    Reason.DUPLICATE_EVENT: "The user already sent an accepted event with this id.",
    Reason.UNKNOWN_ITEM: "The event names a wardrobe item the lake does not have.",
    Reason.UNKNOWN_PHOTO: "The event names a photo the lake has not accepted.",
    Reason.UNKNOWN_SUGGESTION: "The event names an outfit suggestion the user was not given.",
    Reason.NOT_OWNER: "The event names an item or photo of another user.",
    Reason.ITEM_DELETED: "The event is about an item the user had already deleted.",
    Reason.CHECK_FAILED: "The line could not be checked; nothing of it was applied.",
}
MAX_DEPTH = 32
"""Deepest nesting a line may have (an event needs 4: item, colors, a colour, its fields)."""
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
"""Older event times are invalid: a backdated correction must not slip before a deletion."""


# --------------------------------------------------------------------------------------------
# Event schemas
# --------------------------------------------------------------------------------------------

_ID = {"type": "string", "minLength": 1, "maxLength": 128}
# `\Z`, not `$`: JSON Schema patterns are searched, and `$` also matches before a final newline.
_USER = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._=@+-]{0,127}\Z"}
_TIME = {"type": "string", "minLength": 10, "maxLength": 40}
_SHA = {"type": "string", "pattern": r"^[0-9a-f]{64}\Z"}
_DAY = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}\Z"}
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
        # item_id: the new item marked possible_duplicate_of duplicate_of
        "duplicate_confirmed": ({"item_id": _ID, "duplicate_of": _ID}, ["item_id"]),
        "duplicate_rejected": ({"item_id": _ID, "duplicate_of": _ID}, ["item_id"]),
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
        """The report line: every text :func:`safe_text`, so it always encodes as UTF-8."""
        return {
            "source": safe_text(self.source),
            "source_sha256": self.source_sha256,
            "line": self.line,
            "reason": self.reason.value,
            "message": self.reason.sentence,
            "detail": safe_text(self.detail),
            "raw": safe_text(self.raw),
        }


_SURROGATE = re.compile("[\ud800-\udfff]")


def safe_text(text: str) -> str:
    """``text`` as encodable UTF-8: a lone surrogate becomes the six characters ``\\udXXX``."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def iso_utc(moment: datetime) -> str:
    """The one time format of the feedback tables (sorts as text)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def parse_time(value: str) -> datetime | None:
    """ISO 8601 with a timezone, else None (a local time without zone is ambiguous)."""
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None or moment.utcoffset() is None:
            return None
        # Year 1 at +05:00 is year 0 in UTC, 9999-12-31 at -05:00 is year 10000: OverflowError.
        return moment.astimezone(UTC)
    except (TypeError, ValueError, OverflowError):
        return None


class LineChecker:
    """Checks single lines: JSON, schema, timestamp. Knows nothing of the lake."""

    def __init__(self, *, now: datetime, max_future_s: int, item: dict | None = None) -> None:
        from dresscode.llm.parsing import StrictValidator

        self.validators = {t: StrictValidator(s) for t, s in event_schemas(item).items()}
        self.latest = now + timedelta(seconds=max_future_s)

    def check(self, raw: bytes, *, line: int, source: str, sha: str) -> Event | Rejection:
        """An event, or why not. Never raises: a surprise is a ``check_failed`` rejection."""
        try:
            return self._check(raw, line=line, source=source, sha=sha)
        except Exception as exc:  # per-record isolation: one line never fails its file
            log.warning(
                "%s line %d: check_failed (%s)", safe_text(source), line, type(exc).__name__
            )
            return Rejection(
                source,
                sha,
                line,
                Reason.CHECK_FAILED,
                f"unexpected {type(exc).__name__} while checking the line",
                raw.decode("utf-8", errors="backslashreplace"),
            )

    def _check(self, raw: bytes, *, line: int, source: str, sha: str) -> Event | Rejection:
        from jsonschema.exceptions import best_match

        def reject(reason: Reason, detail: str) -> Rejection:
            text = raw.decode("utf-8", errors="backslashreplace")
            return Rejection(source, sha, line, reason, detail[:300], text)

        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            return reject(Reason.NOT_UTF8, f"not UTF-8 at byte {err.start}")
        try:
            obj = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
        except (ValueError, RecursionError) as err:
            return reject(Reason.MALFORMED_JSON, str(err))
        odd = _odd_text_or_depth(obj)
        if odd is not None:
            return reject(*odd)
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
            return reject(
                Reason.INVALID_FIELD, "event_time: not an ISO 8601 time with a timezone in range"
            )
        if moment < EARLIEST_EVENT_TIME:
            return reject(
                Reason.INVALID_FIELD,
                f"event_time {iso_utc(moment)} is before {iso_utc(EARLIEST_EVENT_TIME)}",
            )
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


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON (only finite numbers are)")


def _finite_float(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:20]}... is beyond a double")
    return value


def _odd_text_or_depth(obj: Any) -> tuple[Reason, str] | None:
    """A lone surrogate in any key or string, or nesting deeper than MAX_DEPTH (iterative)."""
    stack: list[tuple[Any, int, str]] = [(obj, 1, "(root)")]
    while stack:
        value, depth, at = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value) is not None:
                return Reason.LONE_SURROGATE, f"{at}: a string holds a lone surrogate"
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                return Reason.TOO_DEEP, f"{at}: nested deeper than {MAX_DEPTH} levels"
            if isinstance(value, dict):
                for key, item in value.items():
                    if _SURROGATE.search(key) is not None:
                        return Reason.LONE_SURROGATE, f"{at}: a key holds a lone surrogate"
                    stack.append((item, depth + 1, key if depth == 1 else at))
            else:
                stack.extend((item, depth + 1, at) for item in value)
    return None


UTF8_BOM = b"\xef\xbb\xbf"


def split_lines(data: bytes) -> list[tuple[int, bytes]]:
    """(line number, bytes) of every non-blank line; numbers count blank lines too.

    A leading UTF-8 byte-order mark (Windows editors write one) is not part of line 1.
    """
    data = data.removeprefix(UTF8_BOM)
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


def read_feedback(settings: Settings) -> pd.DataFrame:
    """The ``feedback`` table (every accepted event): for the local summary, not for tasks."""
    return lake.read_table("feedback", settings)


def events_of(users: Sequence[str], settings: Settings) -> pd.DataFrame:
    """The accepted events of ``users`` (``user_events``: their buckets' files only), with
    the columns of a ``feedback`` row; empty for no users."""
    import pandas as pd

    if not users:
        return pd.DataFrame(columns=list(FeedbackRow.__annotations__))
    frame = lake.read_table(
        lake.USER_EVENTS_TABLE, settings, filters=[("user_id", "in", sorted(set(users)))]
    )
    for column in FeedbackRow.__annotations__:
        if column not in frame.columns:
            frame[column] = None
    return frame
