"""Feedback: users' corrections and thumbs -> feedback events, corrected labels, golden candidates.

The app drops JSON-lines files into ``landing/feedback/``, one event per line:
``item_corrected`` (changed category, colours, ...), ``item_deleted``, ``item_added`` (a garment
the model missed), ``outfit_rated`` (thumbs up/down) and ``wore_instead``. Each line is checked
against its event type's JSON Schema (the item fields against the digitizer's own output
schema, so a label outside the closed vocabularies cannot get in), deduplicated by
``event_id`` — within a file and against everything already in the ``feedback`` table — and
checked, in event-time order, against the lake: the item, photo or suggestion must exist and
belong to the user, and an item cannot be corrected after it was deleted.

Nothing is lost: every rejected line goes to ``reports/feedback/date=<day>/rejected-<file
hash>.jsonl`` with its line number, reason code and raw text, and a landing file leaves
landing only after its events, labels and report are written and the file itself is archived
under ``feedback/raw/<sha256>/``.

Idempotent: parts are named by the source file's content hash, events a file already
contributed are its own (not duplicates) when it is processed again, and the derived tables
(``corrected_labels``, ``golden_candidates``) are reconciled — a row is written only when what
it would say differs from its latest row. Replaying a file changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dresscode.core import lake
from dresscode.core.config import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

LANDING_PREFIX = "feedback"
CORRECTION_TYPES = ("item_corrected", "item_deleted", "item_added")
OUTFIT_TYPES = ("outfit_rated", "wore_instead")
EVENT_TYPES = CORRECTION_TYPES + OUTFIT_TYPES
COMMON_FIELDS = ("event_id", "event_type", "user_id", "event_time")
PENDING, ACCEPTED = "pending", "accepted"
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


class FeedbackError(ValueError):
    """A request that cannot be done (unknown candidate, missing photo); the message says which."""


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


# --------------------------------------------------------------------------------------------
# What the lake knows: items, photos, suggestions, earlier feedback
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemRef:
    user_id: str
    image_sha256: str
    prompt_version: str


@dataclass
class LakeState:
    """The references an event may point at, and the deletions made so far."""

    items: dict[str, ItemRef] = field(default_factory=dict)
    photos: dict[str, dict[str, str]] = field(default_factory=dict)
    """image_sha256 -> {user_id: prompt_version} for every accepted photo."""
    suggestions: dict[tuple[str, str], int] = field(default_factory=dict)
    """(user_id, day) -> number of outfits suggested."""
    deleted_at: dict[str, str] = field(default_factory=dict)
    """item_id -> the earliest time it was deleted."""

    def delete(self, item_id: str, at: str) -> None:
        if item_id not in self.deleted_at or at < self.deleted_at[item_id]:
            self.deleted_at[item_id] = at

    def add_item(self, item_id: str, ref: ItemRef) -> None:
        self.items.setdefault(item_id, ref)


def _text(value: Any) -> str | None:
    """A plain str from a table cell; None/NaN/empty become None."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    return text or None


def _list(value: Any) -> list[Any]:
    if value is None or (isinstance(value, float) and value != value):
        return []
    return list(value)


def load_state(feedback: pd.DataFrame, settings: Settings) -> LakeState:
    """Items, photos and suggestions from the lake, deletions from ``feedback`` rows."""
    from dresscode.ingest import tasks as ingest

    state = LakeState()
    items = lake.read_table(
        "wardrobe_items", settings, columns=["item_id", "user_id", "image_sha256", "prompt_version"]
    )
    for row in items.to_dict("records"):
        ref = ItemRef(
            str(row["user_id"]), str(row["image_sha256"]), _text(row["prompt_version"]) or ""
        )
        state.add_item(str(row["item_id"]), ref)
        state.photos.setdefault(ref.image_sha256, {}).setdefault(ref.user_id, ref.prompt_version)
    for row in ingest.manifest_state(settings).values():
        sha, user = _text(row.get("image_sha256")), _text(row.get("user_id"))
        if row["status"] == ingest.ACCEPTED and sha and user:
            state.photos.setdefault(sha, {})[user] = _text(row.get("prompt_version")) or ""
    suggestions = lake.read_table("outfit_suggestions", settings)
    if not suggestions.empty:
        if "generated_at" in suggestions.columns:
            suggestions = suggestions.sort_values("generated_at", kind="stable")
        latest = suggestions.drop_duplicates(["user_id", "day"], keep="last")
        for row in latest.to_dict("records"):
            n = int(row["n_outfits"]) if row.get("status") == "ok" else 0
            state.suggestions[(str(row["user_id"]), str(row["day"]))] = n
    for row in feedback.to_dict("records"):
        _remember(state, row)
    return state


def _remember(state: LakeState, row: Mapping[str, Any]) -> None:
    """Fold one accepted feedback row into the state (added items, deletions)."""
    if row["event_type"] == "item_deleted":
        state.delete(str(row["item_id"]), str(row["event_time"]))
    elif row["event_type"] == "item_added":
        ref = ItemRef(
            str(row["user_id"]), str(row["image_sha256"]), _text(row["prompt_version"]) or ""
        )
        state.add_item(str(row["item_id"]), ref)


def added_item_id(user_id: str, event_id: str) -> str:
    """Deterministic id of an item a user added, so later events can correct it."""
    return hashlib.sha256(f"added:{user_id}:{event_id}".encode()).hexdigest()[:24]


def resolve(event: Event, state: LakeState) -> dict[str, Any] | Rejection:
    """The feedback row fields an event resolves to, or why it points at nothing of the user's."""

    def reject(reason: Reason, detail: str) -> Rejection:
        raw = json.dumps(_event_json(event), sort_keys=True)
        return Rejection(event.source, event.source_sha256, event.line, reason, detail, raw)

    def check_item(item_id: str) -> Rejection | ItemRef:
        ref = state.items.get(item_id)
        if ref is None:
            return reject(Reason.UNKNOWN_ITEM, f"no wardrobe item {item_id}")
        if ref.user_id != event.user_id:
            return reject(Reason.NOT_OWNER, f"item {item_id} belongs to another user")
        deleted = state.deleted_at.get(item_id)
        if deleted is not None and deleted <= event.event_time:
            return reject(Reason.ITEM_DELETED, f"item {item_id} was deleted at {deleted}")
        return ref

    def check_suggestion() -> Rejection | None:
        day, index = event.fields["suggestion_day"], event.fields.get("outfit_index")
        n = state.suggestions.get((event.user_id, day))
        if n is None:
            return reject(Reason.UNKNOWN_SUGGESTION, f"no suggestion for {event.user_id} on {day}")
        if index is not None and index >= n:
            return reject(
                Reason.UNKNOWN_SUGGESTION, f"the suggestion of {day} has {n} outfits, not #{index}"
            )
        return None

    row: dict[str, Any] = {"item_id": None, "image_sha256": None, "prompt_version": None}
    if event.event_type in ("item_corrected", "item_deleted"):
        ref = check_item(event.fields["item_id"])
        if isinstance(ref, Rejection):
            return ref
        return row | {
            "item_id": event.fields["item_id"],
            "image_sha256": ref.image_sha256,
            "prompt_version": ref.prompt_version or None,
        }
    if event.event_type == "item_added":
        sha = event.fields["image_sha256"]
        owners = state.photos.get(sha)
        if not owners:
            return reject(Reason.UNKNOWN_PHOTO, f"no accepted photo {sha[:12]}")
        if event.user_id not in owners:
            return reject(Reason.NOT_OWNER, f"photo {sha[:12]} belongs to another user")
        return row | {
            "item_id": added_item_id(event.user_id, event.event_id),
            "image_sha256": sha,
            "prompt_version": owners[event.user_id] or None,
        }
    bad = check_suggestion()
    if bad is not None:
        return bad
    for item_id in event.fields.get("item_ids", []):
        ref = check_item(item_id)
        if isinstance(ref, Rejection):
            return ref
    return row


def _event_json(event: Event) -> dict[str, Any]:
    common = {k: getattr(event, k) for k in COMMON_FIELDS}
    return common | event.fields


# --------------------------------------------------------------------------------------------
# The run: landing files -> feedback rows, reports, archive
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


def discover(settings: Settings | None = None) -> list[str]:
    """Every file under ``landing/feedback/``, as keys relative to the landing root."""
    settings = settings or get_settings()
    root = lake.landing(settings)
    base = str(root).rstrip("/") + "/"
    keys = [
        str(path)[len(base) :]
        for path in lake.list_files(root / LANDING_PREFIX)
        if str(path).startswith(base)
    ]
    log.info("discovered %d feedback files in %s%s/", len(keys), base, LANDING_PREFIX)
    return keys


def _read_files(keys: Sequence[str], settings: Settings) -> tuple[list[LandingFile], list[str]]:
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


def validate_and_apply(
    keys: Sequence[str],
    *,
    day: str,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Validate, deduplicate and apply the events of landing files; returns the run's counts.

    Outputs are committed (feedback parts, rejected-lines reports, corrected labels, the raw
    archive) before any file leaves landing.
    """
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    files, unreadable = _read_files(keys, settings)
    existing = read_feedback(settings)
    own = {f.sha256 for f in files}
    if not existing.empty:
        prior = existing[~existing["source_sha256"].isin(own)]
        mine = existing[existing["source_sha256"].isin(own)]
    else:
        prior, mine = existing, existing
    known = {str(r["event_id"]): r for r in prior.to_dict("records")}
    earlier_own = {str(r["event_id"]): r for r in mine.to_dict("records")}
    checker = LineChecker(now=now, max_future_s=settings.feedback_max_future_s)

    rejections: dict[str, list[Rejection]] = {f.sha256: [] for f in files}
    events, lines = _check_files(files, checker, known, rejections)
    state = load_state(prior, settings)
    rows: dict[str, list[dict[str, Any]]] = {f.sha256: [] for f in files}
    received_at = iso_utc(now)
    for event in sorted(events, key=lambda e: (e.event_time, e.event_id)):
        resolved = resolve(event, state)
        if isinstance(resolved, Rejection):
            rejections[event.source_sha256].append(resolved)
            continue
        before = earlier_own.get(event.event_id, {})
        row = {
            "event_id": event.event_id,
            "event_type": event.event_type,
            "user_id": event.user_id,
            "event_time": event.event_time,
            "received_at": before.get("received_at", received_at),
            **resolved,
            "payload": json.dumps(event.fields, sort_keys=True, ensure_ascii=False),
            "source": before.get("source", event.source),
            "source_sha256": event.source_sha256,
        }
        _remember(state, row)
        rows[event.source_sha256].append(row)

    reports = {}
    for f in files:
        _write_events(f, rows[f.sha256], mine, settings)
        if rejections[f.sha256]:
            reports[f.key] = _write_rejections(f, rejections[f.sha256], day, settings)
    labels = reconcile_corrected_labels(day=day, now=now, settings=settings)
    for f in files:
        _archive_and_remove(f, settings)
    return _summarize(files, lines, rows, rejections, reports, labels, unreadable)


def _check_files(
    files: list[LandingFile],
    checker: LineChecker,
    known: Mapping[str, Mapping[str, Any]],
    rejections: dict[str, list[Rejection]],
) -> tuple[list[Event], dict[str, int]]:
    """Schema-valid, first-seen events of every file (file by file, line by line)."""
    seen: dict[str, str] = {}
    events = []
    lines = {}
    for f in files:
        numbered = split_lines(f.data)
        lines[f.sha256] = len(numbered)
        if not numbered:
            rejections[f.sha256].append(
                Rejection(f.key, f.sha256, 0, Reason.EMPTY_FILE, "the file holds no events", "")
            )
            continue
        for n, raw in numbered:
            checked = checker.check(raw, line=n, source=f.key, sha=f.sha256)
            if isinstance(checked, Event):
                checked = _dedup(checked, raw, seen, known)
            if isinstance(checked, Rejection):
                rejections[f.sha256].append(checked)
            else:
                seen[checked.event_id] = f"{f.key}:{n}"
                events.append(checked)
    return events, lines


def _dedup(
    event: Event, raw: bytes, seen: Mapping[str, str], known: Mapping[str, Mapping[str, Any]]
) -> Event | Rejection:
    first = seen.get(event.event_id)
    if first is None and event.event_id in known:
        row = known[event.event_id]
        first = f"{row['source']} (received {row['received_at']})"
    if first is None:
        return event
    text = raw.decode("utf-8", errors="backslashreplace")
    return Rejection(
        event.source,
        event.source_sha256,
        event.line,
        Reason.DUPLICATE_EVENT,
        f"event {event.event_id} already received from {first}",
        text,
    )


def _part(sha256: str) -> str:
    return f"events-{sha256[:16]}"


def _write_events(
    f: LandingFile, rows: list[dict[str, Any]], earlier: pd.DataFrame, settings: Settings
) -> None:
    """One part per event day, named by the file's hash; days it no longer covers are cleared."""
    by_day: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_day[row["event_time"][:10]].append(row)
    for day, day_rows in sorted(by_day.items()):
        day_rows.sort(key=lambda r: (r["event_time"], r["event_id"]))
        lake.write_parquet("feedback", day, _part(f.sha256), day_rows, settings)
    if not earlier.empty:
        stale = set(earlier.loc[earlier["source_sha256"] == f.sha256, "date"]) - set(by_day)
        for day in stale:
            lake.delete(lake.partition("feedback", day, settings) / f"{_part(f.sha256)}.parquet")


def report_path(day: str, sha256: str, settings: Settings) -> lake.ObjectStoragePath:
    return (
        lake.table("reports", settings)
        / "feedback"
        / f"date={day}"
        / f"rejected-{sha256[:16]}.jsonl"
    )


def _write_rejections(
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


def _archive_and_remove(f: LandingFile, settings: Settings) -> None:
    """Archive the raw file (content-addressed), then clear it from landing."""
    target = archive_path(f, settings)
    if not lake.exists(target):
        lake.write_bytes(target, f.data)
    for key in f.keys:
        lake.delete(lake.landing(settings) / key)


def _summarize(
    files: list[LandingFile],
    lines: Mapping[str, int],
    rows: Mapping[str, list[dict[str, Any]]],
    rejections: Mapping[str, list[Rejection]],
    reports: Mapping[str, str],
    labels: Mapping[str, int],
    unreadable: list[str],
) -> dict[str, Any]:
    rejected: Counter[str] = Counter()
    by_type: Counter[str] = Counter()
    for f in files:
        file_rejected = Counter(r.reason.value for r in rejections[f.sha256])
        rejected.update(file_rejected)
        by_type.update(r["event_type"] for r in rows[f.sha256])
        log.info(
            "%s: %d lines, %d accepted, %d rejected %s",
            f.key,
            lines[f.sha256],
            len(rows[f.sha256]),
            sum(file_rejected.values()),
            dict(file_rejected) or "",
        )
    result = {
        "files": len(files),
        "lines": sum(lines.values()),
        "accepted": sum(by_type.values()),
        "by_type": dict(sorted(by_type.items())),
        "rejected_total": sum(rejected.values()),
        "rejected": dict(rejected.most_common()),
        "reports": dict(reports),
        "unreadable": list(unreadable),
        "labels_updated": labels["updated"],
        "photos_with_corrections": labels["photos"],
    }
    log.info(
        "feedback: %d files, %d lines: %d events accepted %s, %d rejected %s; %d photos' labels updated",
        result["files"],
        result["lines"],
        result["accepted"],
        result["by_type"] or "",
        result["rejected_total"],
        result["rejected"] or "",
        result["labels_updated"],
    )
    return result


# --------------------------------------------------------------------------------------------
# Corrected labels: the model's items with every correction applied, in event-time order
# --------------------------------------------------------------------------------------------


def item_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``wardrobe_items`` row back to the digitizer's item JSON (schema field order)."""
    names, hexes = _list(row.get("color_names")), _list(row.get("color_hexes"))
    return {
        "category": str(row["category"]),
        "subcategory": str(row["subcategory"]),
        "colors": [{"name": str(n), "hex": str(h)} for n, h in zip(names, hexes, strict=False)],
        "pattern": str(row["pattern"]),
        "material": _text(row.get("material")) or "unknown",
        "warmth": str(row["warmth"]),
        "formality": str(row["formality"]),
        "seasons": [str(s) for s in _list(row.get("seasons"))],
        "water_resistant": bool(row["water_resistant"]),
        "description": _text(row.get("description")) or "",
    }


def apply_events(
    items: Sequence[tuple[str, dict[str, Any]]], events: Iterable[Mapping[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """Apply correction rows (already in event-time order) to ``(item_id, item)`` pairs.

    A correction changes only the fields it names (``colors`` as a whole); a deletion removes
    the item; an addition appends one. Events for an item no longer there change nothing.
    """
    out = [(item_id, dict(item)) for item_id, item in items]
    for event in events:
        payload = json.loads(event["payload"])
        item_id = event["item_id"]
        if event["event_type"] == "item_corrected":
            for _, item in (pair for pair in out if pair[0] == item_id):
                item.update(payload["changes"])
        elif event["event_type"] == "item_deleted":
            out = [pair for pair in out if pair[0] != item_id]
        elif event["event_type"] == "item_added" and all(i != item_id for i, _ in out):
            out.append(
                (item_id, {k: payload["item"][k] for k in ITEM_FIELDS if k in payload["item"]})
            )
    return [(i, {k: item[k] for k in ITEM_FIELDS if k in item}) for i, item in out]


def _digest(values: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(values)).encode()).hexdigest()


def _latest(frame: pd.DataFrame, keys: list[str], order: list[str]) -> pd.DataFrame:
    """The newest row per key (``order`` ascending, last wins)."""
    if frame.empty:
        return frame
    return frame.sort_values(order, kind="stable").drop_duplicates(keys, keep="last")


LABEL_KEY = ["user_id", "image_sha256", "prompt_version"]


def latest_corrected_labels(settings: Settings | None = None) -> pd.DataFrame:
    """One row per (user, photo, prompt version): the newest corrected labels."""
    frame = lake.read_table("corrected_labels", settings or get_settings())
    return _latest(frame, LABEL_KEY, ["computed_at"])


def reconcile_corrected_labels(
    *, day: str, now: datetime | None = None, settings: Settings | None = None
) -> dict[str, int]:
    """Bring ``corrected_labels`` in line with the ``feedback`` table.

    A photo gets a new row only when its set of correction events differs from its latest
    row's, so a replay writes nothing and a run that died after writing events is completed
    by the next one.
    """
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    events = read_feedback(settings)
    if events.empty:
        return {"photos": 0, "updated": 0}
    events = events[events["event_type"].isin(CORRECTION_TYPES)].copy()
    if events.empty:
        return {"photos": 0, "updated": 0}
    events["prompt_version"] = events["prompt_version"].map(lambda v: _text(v) or "")
    latest = latest_corrected_labels(settings)
    done = (
        {tuple(r[k] for k in LABEL_KEY): r["events_digest"] for r in latest.to_dict("records")}
        if not latest.empty
        else {}
    )
    base = _base_items(settings)
    rows = []
    for key, group in events.groupby(LABEL_KEY, sort=True):
        digest = _digest(group["event_id"])
        if done.get(tuple(key)) == digest:
            continue
        ordered = group.sort_values(["event_time", "event_id"]).to_dict("records")
        pairs = apply_events(base.get(tuple(key), []), ordered)
        rows.append(
            {
                "image_sha256": key[1],
                "user_id": key[0],
                "prompt_version": key[2],
                "items_json": json.dumps([item for _, item in pairs], ensure_ascii=False),
                "item_ids": [item_id for item_id, _ in pairs],
                "n_items": len(pairs),
                "n_corrections": len(ordered),
                "last_event_time": ordered[-1]["event_time"],
                "events_digest": digest,
                "computed_at": iso_utc(now),
            }
        )
    if rows:
        part = "labels-" + _digest(r["events_digest"] + r["image_sha256"] for r in rows)[:16]
        lake.write_parquet("corrected_labels", day, part, rows, settings)
    n_photos = events.groupby(LABEL_KEY).ngroups
    log.info("corrected labels: %d photos with corrections, %d updated", n_photos, len(rows))
    return {"photos": n_photos, "updated": len(rows)}


def _base_items(settings: Settings) -> dict[tuple[str, str, str], list[tuple[str, dict[str, Any]]]]:
    """The model's items per (user, photo, prompt version), in the order it listed them."""
    items = lake.read_table("wardrobe_items", settings)
    out: dict[tuple[str, str, str], list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    if items.empty:
        return out
    items = items.drop_duplicates("item_id", keep="first")
    for row in items.to_dict("records"):
        key = (str(row["user_id"]), str(row["image_sha256"]), _text(row["prompt_version"]) or "")
        out[key].append((str(row["item_id"]), item_from_row(row)))
    return out


# --------------------------------------------------------------------------------------------
# Golden candidates: photos with corrected labels, waiting for a human
# --------------------------------------------------------------------------------------------


def latest_candidates(settings: Settings | None = None) -> pd.DataFrame:
    """One row per photo: its highest revision (clocks of the CLI and the workers may differ,
    so the order is a counter, not a timestamp; accepted beats pending at a tie)."""
    frame = lake.read_table("golden_candidates", settings or get_settings())
    if frame.empty:
        return frame
    frame = frame.assign(_rank=(frame["status"] == ACCEPTED).astype(int))
    order = ["revision", "updated_at", "_rank"]
    return _latest(frame, ["image_sha256"], order).drop(columns="_rank")


def stage_golden_candidates(
    *, day: str, now: datetime | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """Stage each photo's newest corrected labels as a pending golden candidate.

    One candidate per photo (the user whose corrections are newest wins); a photo is staged
    again only when its labels changed since its latest candidate row — accepted or not.
    """
    from dresscode.ingest import tasks as ingest

    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    labels = latest_corrected_labels(settings)
    if labels.empty:
        log.info("golden candidates: no corrected labels yet")
        return {"staged": 0, "pending": 0, "accepted": 0, "missing_photo": 0}
    labels = _latest(labels, ["image_sha256"], ["last_event_time", "computed_at"])
    current = latest_candidates(settings)
    latest = {r["image_sha256"]: r for r in current.to_dict("records")} if not current.empty else {}
    rows, missing = [], 0
    for row in labels.to_dict("records"):
        sha = row["image_sha256"]
        digest = hashlib.sha256(row["items_json"].encode()).hexdigest()
        before = latest.get(sha, {})
        if before.get("labels_digest") == digest:
            continue
        if not lake.exists(ingest.image_path(sha, settings)):
            log.warning("photo %s: missing_photo (no images/ copy); not staged", sha[:12])
            missing += 1
            continue
        rows.append(_candidate(row, digest, now, revision=int(before.get("revision", 0)) + 1))
    if rows:
        part = "staged-" + _digest(f"{r['labels_digest']}:{r['revision']}" for r in rows)[:16]
        lake.write_parquet("golden_candidates", day, part, rows, settings)
    state = latest_candidates(settings)
    statuses = Counter(state["status"]) if not state.empty else Counter()
    result = {
        "staged": len(rows),
        "pending": statuses.get(PENDING, 0),
        "accepted": statuses.get(ACCEPTED, 0),
        "missing_photo": missing,
    }
    log.info(
        "golden candidates: %d staged, %d pending review, %d accepted so far",
        result["staged"],
        result["pending"],
        result["accepted"],
    )
    return result


def _candidate(
    labels: Mapping[str, Any], digest: str, now: datetime, *, revision: int
) -> dict[str, Any]:
    at = iso_utc(now)
    return {
        "image_sha256": labels["image_sha256"],
        "user_id": labels["user_id"],
        "prompt_version": labels["prompt_version"],
        "items_json": labels["items_json"],
        "n_items": int(labels["n_items"]),
        "n_corrections": int(labels["n_corrections"]),
        "last_event_time": labels["last_event_time"],
        "labels_digest": digest,
        "status": PENDING,
        "revision": revision,
        "staged_at": at,
        "updated_at": at,
        "accepted_at": None,
        "golden_id": None,
        "golden_file": None,
    }


@dataclass
class AcceptResult:
    accepted: list[str] = field(default_factory=list)
    """Golden ids written by this call."""
    already: list[str] = field(default_factory=list)
    """Photo hashes that were accepted before (no-op)."""
    golden_dir: str = ""


def _pick(
    candidates: pd.DataFrame, wanted: Sequence[str], all_pending: bool
) -> list[dict[str, Any]]:
    """The candidate rows named by full hash or unique prefix (or every pending one)."""
    rows = candidates.to_dict("records") if not candidates.empty else []
    if all_pending:
        return [r for r in rows if r["status"] == PENDING]
    picked, unknown, ambiguous = [], [], []
    for want in wanted:
        want = want.strip().lower()
        matches = [r for r in rows if r["image_sha256"] == want] or (
            [r for r in rows if r["image_sha256"].startswith(want)] if len(want) >= 8 else []
        )
        if not matches:
            unknown.append(want)
        elif len(matches) > 1:
            ambiguous.append(want)
        elif matches[0] not in picked:
            picked.append(matches[0])
    if unknown or ambiguous:
        parts = []
        if unknown:
            parts.append(f"no golden candidate {', '.join(unknown)}")
        if ambiguous:
            parts.append(f"ambiguous prefix {', '.join(ambiguous)} (give more characters)")
        raise FeedbackError("; ".join(parts) + f" ({len(rows)} candidates in the lake)")
    return picked


def accept_candidates(
    shas: Sequence[str] = (),
    *,
    all_pending: bool = False,
    golden_dir: Path | None = None,
    set_name: str = "feedback",
    now: datetime | None = None,
    settings: Settings | None = None,
) -> AcceptResult:
    """Copy candidates into the golden set (photo + label line), then mark them accepted.

    The golden files are written first, so a crash in between is healed by accepting again;
    accepting an already-accepted candidate is a no-op.
    """
    from dresscode.ingest import tasks as ingest
    from dresscode.registry import golden

    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    golden_dir = Path(golden_dir or golden.GOLDEN_DIR)
    result = AcceptResult(golden_dir=str(golden_dir))
    rows = []
    for cand in _pick(latest_candidates(settings), shas, all_pending):
        sha = cand["image_sha256"]
        if cand["status"] == ACCEPTED:
            result.already.append(sha)
            continue
        path = ingest.image_path(sha, settings)
        if not lake.exists(path):
            raise FeedbackError(f"photo {sha} of the candidate is missing from {path}")
        photo = golden.accept_photo(
            lake.read_bytes(path),
            json.loads(cand["items_json"]),
            out_dir=golden_dir,
            set_name=set_name,
            photo_id=f"{set_name}-{sha[:12]}",
            tags=["feedback"],
        )
        at = iso_utc(now)
        rows.append(
            {k: v for k, v in cand.items() if k != "date"}
            | {
                "status": ACCEPTED,
                "revision": int(cand["revision"]) + 1,
                "updated_at": at,
                "accepted_at": at,
                "golden_id": photo.id,
                "golden_file": str(photo.path),
            }
        )
        result.accepted.append(photo.id)
    if rows:
        part = "accepted-" + _digest(f"{r['labels_digest']}:{r['revision']}" for r in rows)[:16]
        lake.write_parquet("golden_candidates", now.date().isoformat(), part, rows, settings)
    log.info(
        "accepted %d golden candidates into %s (%d already accepted)",
        len(result.accepted),
        golden_dir,
        len(result.already),
    )
    return result


# --------------------------------------------------------------------------------------------
# The correction-rate metric and the run report
# --------------------------------------------------------------------------------------------


def correction_rate(settings: Settings | None = None) -> dict[str, Any]:
    """Share of digitized photos (and items) users corrected, overall and per prompt version.

    Photos: the accepted uploads the digitizer answered; a photo counts as corrected when any
    item of it was corrected, deleted, or one was added. Items: corrected or deleted items over
    the items the model listed.
    """
    from dresscode.ingest import tasks as ingest

    settings = settings or get_settings()
    photos: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for row in ingest.manifest_state(settings).values():
        version = _text(row.get("prompt_version"))
        if row["status"] == ingest.ACCEPTED and version:
            photos[version].add((str(row["user_id"]), str(row["image_sha256"])))
    items = lake.read_table("wardrobe_items", settings, columns=["item_id", "prompt_version"])
    n_items: Counter[str] = Counter()
    if not items.empty:
        for version, n in items.drop_duplicates("item_id").groupby("prompt_version").size().items():
            n_items[_text(version) or ""] = int(n)
    events = read_feedback(settings)
    corrected: dict[str, set[tuple[str, str]]] = defaultdict(set)
    corrected_items: dict[str, set[str]] = defaultdict(set)
    if not events.empty:
        events = events[events["event_type"].isin(CORRECTION_TYPES)]
        for row in events.to_dict("records"):
            version = _text(row["prompt_version"]) or ""
            corrected[version].add((str(row["user_id"]), str(row["image_sha256"])))
            if row["event_type"] != "item_added":
                corrected_items[version].add(str(row["item_id"]))
    by_version = {}
    for version in sorted(set(photos) | set(corrected)):
        by_version[version] = _rates(
            len(photos[version]),
            len(corrected[version] & photos[version]),
            n_items[version],
            len(corrected_items[version]),
        )
    total = _rates(
        sum(len(p) for p in photos.values()),
        sum(v["corrected_photos"] for v in by_version.values()),
        sum(n_items.values()),
        sum(len(i) for i in corrected_items.values()),
    )
    return total | {"by_prompt_version": by_version}


def _rates(photos: int, corrected: int, items: int, corrected_items: int) -> dict[str, Any]:
    return {
        "photos": photos,
        "corrected_photos": corrected,
        "correction_rate": round(corrected / photos, 4) if photos else None,
        "items": items,
        "corrected_items": corrected_items,
        "item_correction_rate": round(corrected_items / items, 4) if items else None,
    }


def report(
    applied: Mapping[str, Any], staged: Mapping[str, Any], settings: Settings | None = None
) -> dict[str, Any]:
    """The run's totals and the correction-rate metric, in one log line and one dict."""
    rates = correction_rate(settings)
    summary = {"applied": dict(applied), "golden": dict(staged), "correction": rates}
    shown = rates["correction_rate"]
    log.info(
        "feedback_ingest: %d events accepted, %d lines rejected %s; correction rate %s "
        "(%d of %d photos), item correction rate %s; golden candidates: %d staged, %d pending",
        applied.get("accepted", 0),
        applied.get("rejected_total", 0),
        applied.get("rejected") or "",
        "n/a" if shown is None else f"{shown:.1%}",
        rates["corrected_photos"],
        rates["photos"],
        "n/a" if rates["item_correction_rate"] is None else f"{rates['item_correction_rate']:.1%}",
        staged.get("staged", 0),
        staged.get("pending", 0),
    )
    return summary
