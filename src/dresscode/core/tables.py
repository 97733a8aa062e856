"""The lake's tables: names, keys, row types, and the readers more than one stage uses.

A table is written by one stage, but several stages read some of them (the manifest is read by
ingest, feedback, the shadow, the view and the summary; wardrobe items by outfits, features,
feedback and the shadow). What a reader needs to know about such a table lives here, in the
shared layer, so no stage imports another stage to read the lake.

Each table is described once in ``CATALOGUE``: writer, layout, the columns that identify a
row and those that pick the newest row of a key (history tables keep every row written; how
the Delta ones are partitioned: :mod:`dresscode.core.delta`). Row types are ``TypedDict``.

Statuses and keys here are the values written to the lake: renaming one is a migration.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast

from dresscode.core import lake, wardrobe
from dresscode.core.config import Settings, get_settings
from dresscode.core.rows import InferenceLogRow as InferenceLogRow
from dresscode.core.rows import OutfitSuggestionRow as OutfitSuggestionRow
from dresscode.core.rows import latest_suggestions as latest_suggestions
from dresscode.core.wardrobe import ITEM_FIELDS as ITEM_FIELDS
from dresscode.core.wardrobe import WARDROBE_EVENTS as WARDROBE_EVENTS

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

Layout = Literal["parquet", "objects"]


@dataclass(frozen=True)
class Table:
    """One lake table: who writes it, how it is laid out and how its rows are identified."""

    name: str
    writer: str  # the stage (package) that writes it
    layout: Layout  # "parquet": <name>/date=YYYY-MM-DD/<part>.parquet; "objects": keyed files
    key: tuple[str, ...]  # Parquet: the columns that identify a row; objects: the key's shape
    latest_by: tuple[str, ...] = ()  # columns ordering a key's rows, newest last
    doc: str = ""

    def path(self, settings: Settings | None = None) -> lake.ObjectStoragePath:
        return lake.table(self.name, settings)


LANDING = Table("landing", "apps", "objects", ("<user_id>/<upload_id>.<ext>",), doc="raw uploads")
IMAGES = Table(
    "images", "ingest", "objects", ("<sha256[:2]>/<sha256>.jpg",), doc="normalized JPEGs"
)
DIGITIZED = Table(
    "digitized",
    "ingest",
    "objects",
    ("<prompt>@v<version>/<image_sha256>.json",),
    doc="the model's answer per photo and prompt version (the digitize cache)",
)
QUARANTINE = Table(
    "quarantine",
    "ingest, feedback",
    "objects",
    (
        "date=<day>/<user_id>/<file name>/<raw sha256[:32]>/{original.<ext>,reason.json}",
        "date=<day>/_unsafe_keys/<sha256(key)[:32]>/<raw sha256[:32]>/{original,reason.json}",
    ),
    doc="rejected uploads with a machine-readable reason; one folder per key and content "
    "(feedback files that are not .jsonl under date=<day>/feedback/<name>/<sha256[:32]>/)",
)
MANIFESTS = Table(
    "manifests",
    "ingest",
    "parquet",
    ("upload_key",),
    ("processed_at",),
    doc="one row per upload per run: what became of it (ManifestRow)",
)
WARDROBE_ITEMS = Table(
    "wardrobe_items",
    "ingest",
    "parquet",
    ("item_id",),
    doc="the digitizer's items (WardrobeItemRow)",
)
REDIGITIZED = Table(
    "redigitized",
    "ingest",
    "parquet",
    ("upload_key", "prompt_version"),
    ("processed_at",),
    doc="photos digitized again by a later digitizer (wardrobe_redigitize): what was done",
)
INFERENCE_LOG = Table(
    "inference_log",
    "ingest, outfits, serve",
    "parquet",
    ("request_id",),
    doc="one row per model call, the monitoring source of truth (InferenceLogRow)",
)
USERS = Table(
    "users", "features", "parquet", ("user_id",), ("last_active_at",), doc="user profiles"
)
WEATHER = Table(
    "weather",
    "features",
    "parquet",
    ("city_id", "day"),
    ("event_timestamp", "created"),
    doc="derived weather features per city and day",
)
WEATHER_CACHE = Table("weather_cache", "features", "objects", ("<city_id>.json",), doc="answers")
USER_STYLE = Table(
    "user_style",
    "features",
    "parquet",
    ("user_id",),
    ("event_timestamp",),
    doc="user style features (the Feast offline source)",
)
OUTFIT_SUGGESTIONS = Table(
    "outfit_suggestions",
    "outfits",
    "parquet",
    ("user_id", "day"),
    ("generated_at",),
    doc="one suggestion per user and day, newest generated_at wins (OutfitSuggestionRow)",
)
SERVE_SHADOW = Table(  # live shadow: one row per online request also answered by the candidate
    "serve_shadow", "serve", "parquet", ("request_id",), doc="live shadow of online requests"
)
FEEDBACK = Table(
    "feedback",
    "feedback",
    "parquet",
    ("user_id", "event_id"),  # event ids are the app's, unique per user only
    doc="applied user feedback events",
)
USER_EVENTS_TABLE = Table(
    lake.USER_EVENTS_TABLE,
    "feedback",
    "parquet",
    ("user_id", "event_id"),
    doc="the feedback events by user_bucket (written with each feedback part)",
)
CORRECTED_LABELS = Table(
    "corrected_labels",
    "feedback",
    "parquet",
    ("user_id", "image_sha256", "prompt_version"),
    ("computed_at",),
    doc="a photo's items with the user's corrections applied",
)
GOLDEN_CANDIDATES = Table(
    "golden_candidates",
    "feedback",
    "parquet",
    ("image_sha256",),
    ("revision", "updated_at"),
    doc="corrected photos waiting for a human; accepted beats pending at a tie",
)
QUALITY_METRICS = Table(
    "quality_metrics",
    "monitoring",
    "parquet",
    ("day", "prompt_name", "prompt_version", "metric"),
    doc="daily quality metrics per prompt version (one part per day, replaced)",
)
MONITORING_DECISIONS = Table(
    "monitoring_decisions",
    "monitoring",
    "parquet",
    ("run_id",),
    ("decided_at",),
    doc="the monitoring DAG's branch, action and reasons per run",
)
REPORTS = Table(
    "reports",
    "monitoring, registry, feedback, features",
    "objects",
    ("{drift,eval,shadow,feedback}/…", "date=<day>/weather-run-<run>.json"),
    doc="human-readable reports",
)
ITEM_EMBEDDINGS = Table(
    "item_embeddings",
    "features",
    "parquet",
    ("item_id", "model", "text_sha"),
    ("embedded_at",),
    doc="each item's description vector per embedding model (the online store's offline copy)",
)

CATALOGUE: dict[str, Table] = {
    t.name: t
    for t in (
        LANDING,
        IMAGES,
        DIGITIZED,
        QUARANTINE,
        MANIFESTS,
        WARDROBE_ITEMS,
        REDIGITIZED,
        INFERENCE_LOG,
        USERS,
        WEATHER,
        WEATHER_CACHE,
        USER_STYLE,
        OUTFIT_SUGGESTIONS,
        SERVE_SHADOW,
        FEEDBACK,
        USER_EVENTS_TABLE,
        CORRECTED_LABELS,
        GOLDEN_CANDIDATES,
        QUALITY_METRICS,
        MONITORING_DECISIONS,
        REPORTS,
        ITEM_EMBEDDINGS,
    )
}


# --- manifests ------------------------------------------------------------------------------

ManifestStatus = Literal[
    "accepted", "duplicate", "near_duplicate", "quarantined", "digitize_failed", "read_failed"
]

# Final statuses leave landing; the others are retried by the next ingest run.
ACCEPTED: ManifestStatus = "accepted"
DUPLICATE: ManifestStatus = "duplicate"
NEAR_DUPLICATE: ManifestStatus = "near_duplicate"  # the same picture re-sent, not digitized
QUARANTINED: ManifestStatus = "quarantined"
DIGITIZE_FAILED: ManifestStatus = "digitize_failed"
READ_FAILED: ManifestStatus = "read_failed"
FINAL_STATUSES: frozenset[str] = frozenset({ACCEPTED, DUPLICATE, NEAR_DUPLICATE, QUARANTINED})


class ManifestRow(TypedDict):
    """One ``manifests`` row: what became of one upload in one run (ingest's PhotoOutcome)."""

    upload_key: str
    user_id: str | None
    upload_id: str | None
    status: str  # a ManifestStatus
    raw_sha256: str | None
    image_sha256: str | None
    reason_code: str | None
    reason: str | None
    source_format: str | None
    source_bytes: int | None
    source_width: int | None
    source_height: int | None
    width: int | None
    height: int | None
    brightness: float | None
    prompt_version: int | None
    n_items: int | None
    model_called: bool
    attempt: int
    run_id: str
    processed_at: str  # ISO 8601, UTC, milliseconds
    phash: str | None  # the clean photo's perceptual hashes (ingest.near_duplicates.Fingerprint)
    duplicate_of: str | None  # the earlier upload a duplicate or near-duplicate repeats


class ManifestEntry(ManifestRow):
    """An upload's latest manifest row, as :func:`manifest_state` returns it.

    Read back from Parquet: missing numbers may be NaN, not None.
    """

    date: str  # the partition the row was written to
    failed_attempts: int  # digitize_failed rows of this upload so far


def manifest_state(
    settings: Settings | None = None,
    *,
    keys: Iterable[str] | None = None,
    days: Iterable[str] | None = None,
) -> dict[str, ManifestEntry]:
    """upload_key -> its latest manifest row, plus the count of failed digitize attempts.

    ``keys`` reads only those uploads' rows and ``days`` only those partitions (pushed down to
    the Delta table's files): ingest asks about the keys in landing over its lookback, not the
    whole history. Without them, every upload's state (the view, the summary, the seed).
    """
    filters = None if keys is None else [("upload_key", "in", sorted(set(keys)))]
    if filters is not None and not filters[0][2]:
        return {}
    frame = lake.read_table(
        MANIFESTS.name,
        settings or get_settings(),
        days=None if days is None else sorted(set(days)),
        filters=filters,
    )
    if frame.empty:
        return {}
    frame = frame.sort_values("processed_at")
    failed = frame[frame["status"] == DIGITIZE_FAILED].groupby("upload_key").size().to_dict()
    latest = frame.groupby("upload_key").tail(1)
    state: dict[str, ManifestEntry] = {}
    for row in latest.to_dict("records"):
        row["failed_attempts"] = int(failed.get(row["upload_key"], 0))
        state[row["upload_key"]] = row
    return state


# --- landing and images ---------------------------------------------------------------------


# Landing prefixes another stage owns: ``landing/<prefix>/…`` is that stage's, never an upload,
# and its name is never a user id (compared case-insensitively: ``Feedback/`` is refused too).
LANDING_OWNERS: dict[str, str] = {"feedback": "feedback"}
RESERVED_USER_IDS: frozenset[str] = frozenset(LANDING_OWNERS)


def accepted_photos_of(
    user_ids: Iterable[str], settings: Settings | None = None
) -> dict[tuple[str, str], str]:
    """(user_id, raw or image sha256) -> the upload that first brought that photo, for the
    accepted uploads of ``user_ids`` (duplicate detection: only those users' rows are read)."""
    wanted = sorted({str(u) for u in user_ids})
    if not wanted:
        return {}
    columns = ["upload_key", "user_id", "status", "raw_sha256", "image_sha256", "processed_at"]
    frame = lake.read_table(
        MANIFESTS.name,
        settings or get_settings(),
        columns=columns,
        filters=[("user_id", "in", wanted), ("status", "=", ACCEPTED)],
    )
    seen: dict[tuple[str, str], str] = {}
    if frame.empty:
        return seen
    frame = frame.sort_values("processed_at", kind="stable")
    for key, user, sha_raw, sha_image in frame[
        ["upload_key", "user_id", "raw_sha256", "image_sha256"]
    ].itertuples(index=False, name=None):
        for sha in (sha_raw, sha_image):
            if isinstance(sha, str) and sha:
                seen.setdefault((str(user), sha), str(key))
    return seen


def landing_owner(key: str) -> str | None:
    """The stage owning ``key`` when it lies under another stage's landing prefix, else None."""
    head, sep, _ = key.partition("/")
    return LANDING_OWNERS.get(head) if sep else None


def landing_keys(settings: Settings | None = None) -> list[str]:
    """Every upload in landing, as keys relative to the landing root.

    Prefixes other stages own (``feedback/``) are left out. Hidden (dot) files are included:
    they are uploads too, or a writer's file in flight, and ingest reports them. Keys are
    portable (:func:`lake.portable_key`): a file name that is not UTF-8 becomes a token that
    travels through XCom, not an error that stops discovery.
    """
    root = lake.landing(settings or get_settings())
    return [
        lake.portable_key(obj.key)
        for obj in lake.list_objects(root)
        if landing_owner(obj.key) is None
    ]


def image_path(image_sha256: str, settings: Settings | None = None) -> lake.ObjectStoragePath:
    """Where the normalized JPEG of a photo is (content-addressed)."""
    return lake.table(IMAGES.name, settings) / image_sha256[:2] / f"{image_sha256}.jpg"


# --- wardrobe items -------------------------------------------------------------------------


class WardrobeItemRow(TypedDict, total=False):
    """One ``wardrobe_items`` row: a digitized item, colours as parallel lists."""

    item_id: str  # deterministic from user, photo, position and prompt version
    user_id: str
    image_sha256: str
    upload_key: str
    prompt_version: int
    category: str
    subcategory: str
    color_names: list[str]
    color_hexes: list[str]
    pattern: str
    material: str
    warmth: str
    formality: str
    seasons: list[str]
    water_resistant: bool
    description: str
    digitized_at: str  # the digitization that wrote the row (core.wardrobe)
    replaces: str | None  # the earlier item of the photo this one took over from
    date: str


# The columns of an item the stylist sees (and the shadow replays): what wardrobes_of returns.
WARDROBE_SUMMARY: tuple[str, ...] = (
    "item_id",
    "category",
    "subcategory",
    "color_names",
    "warmth",
    "formality",
    "water_resistant",
    "description",
)


def wardrobes_of(
    user_ids: Sequence[str],
    settings: Settings | None = None,
    *,
    columns: Sequence[str] = WARDROBE_SUMMARY,
) -> dict[str, list[WardrobeItemRow]]:
    """Each user's items as the digitizer listed them (the newest digitization of each photo),
    *before* the user's corrections.

    What users see is :func:`current_wardrobes_of`; this raw view is for the digitizer's own
    questions (its evaluation, the correction rate). Only the users' rows are read.
    """
    wanted = sorted({str(u) for u in user_ids})
    items, names = _rows_of(WARDROBE_ITEMS.name, wanted, settings or get_settings())
    items = wardrobe.newest_digitization(wardrobe.one_row_per_item(items))
    return _by_user(items, names, user_ids, columns)


def _by_user(
    items: list[dict[str, Any]],
    names: Sequence[str],
    user_ids: Sequence[str],
    columns: Sequence[str],
) -> dict[str, list[WardrobeItemRow]]:
    """Each user's items, the ``columns`` of them the rows have (a column an item lacks: None)."""
    found: dict[str, list[WardrobeItemRow]] = {u: [] for u in user_ids}
    present = [c for c in ("user_id", *columns) if c in names]
    for item in items:
        row = {c: item.get(c) for c in present}
        if "color_names" in row:
            colors = row["color_names"]
            row["color_names"] = [] if colors is None else [str(c) for c in colors]
        found.setdefault(str(row["user_id"]), []).append(cast(WardrobeItemRow, row))
    return found


# --- the current wardrobe: items with the users' corrections applied --------------------------


def current_wardrobes_of(
    user_ids: Sequence[str],
    settings: Settings | None = None,
    *,
    columns: Sequence[str] = WARDROBE_SUMMARY,
    as_of: datetime | None = None,
) -> dict[str, list[WardrobeItemRow]]:
    """Each user's wardrobe as the user sees it (``wardrobe_current``), by user id.

    The one source for what the stylist is given (``outfit_pregen``, the shadow replays) and
    what ``style_features`` summarises: see :func:`current_wardrobe_items`.
    """
    items, names = _current_rows(user_ids, settings, as_of)
    return _by_user(items, names, user_ids, columns)


def current_wardrobe_items(
    user_ids: Sequence[str] | None,
    settings: Settings | None = None,
    *,
    as_of: datetime | None = None,
) -> pd.DataFrame:
    """``wardrobe_items`` rows of ``user_ids`` (None: everyone) with their corrections applied.

    The users' ``item_corrected``, ``item_deleted`` and ``item_added`` events from the
    ``feedback`` table are applied in event-time order (ties by event id), so the order files
    arrived in does not matter: a deleted item is gone, an added one is present (``date`` its
    event's day), a corrected field is replaced (``colors`` sets ``color_names`` and
    ``color_hexes``). A photo digitized again shows only its newest digitization, and an
    event naming an item it replaced applies to the successor (:mod:`dresscode.core.wardrobe`).
    An event for an item not there at its time — deleted already (twice, or
    corrected after deletion), added later, another user's — changes nothing; an event whose
    payload cannot be read is skipped with a WARNING, never an error. ``as_of`` (aware) leaves
    out items of later days and later events, for point-in-time features.

    Only the users' rows are read: ``wardrobe_items`` and ``user_events`` (the feedback
    table's events, kept by user) are partitioned by ``user_bucket``, so a batch of
    users reads its buckets' files, and of those the row groups of its id range.
    """
    import pandas as pd

    items, names = _current_rows(user_ids, settings, as_of)
    return pd.DataFrame(items, columns=names)


def _current_rows(
    user_ids: Sequence[str] | None, settings: Settings | None, as_of: datetime | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """:func:`current_wardrobe_items` as rows and their column names, folded in Python: the
    online stylist reads a few users' wardrobes per request, where pandas' frames cost more
    than the rows (five users' wardrobes: 4.4 -> 1.8 ms of CPU; ``docs/benchmarks.md``)."""
    settings = settings or get_settings()
    wanted = None if user_ids is None else sorted({str(u) for u in user_ids})
    items, names = _rows_of(WARDROBE_ITEMS.name, wanted, settings)
    kinds = WARDROBE_EVENTS + wardrobe.DUPLICATE_EVENTS
    events, _ = _rows_of(USER_EVENTS_TABLE.name, wanted, settings, kinds=kinds)
    cutoff = None if as_of is None else as_of.astimezone(UTC)
    items = wardrobe.one_row_per_item(items)
    if cutoff is not None:
        # str() as the lake's strings compare: a row of no day or no stamp is not "before".
        day, stamp = cutoff.date().isoformat(), cutoff.isoformat(timespec="milliseconds")
        if "date" in names:
            items = [r for r in items if not str(r.get("date")) > day]
        if wardrobe.DIGITIZED_AT in names:
            items = [r for r in items if not wardrobe.stamp_of(r) > stamp]
    successor = wardrobe.successors(items)
    items = wardrobe.newest_digitization(items)
    current: dict[str, dict[str, Any]] = {str(r["item_id"]): r for r in items}
    events = [e for e in events if e.get("event_type") in kinds]
    if cutoff is not None:
        events = [e for e in events if str(e.get("event_time")) <= stamp]
    seen: set[tuple[Any, Any]] = set()
    for event in sorted(events, key=_event_order):
        key = (event.get("user_id"), event.get("event_id"))
        if key in seen:
            continue  # the same event in two feedback files: the first counts
        seen.add(key)
        if event["event_type"] != "item_added" and str(event.get("item_id")) in successor:
            event["item_id"] = successor[str(event["item_id"])]
        wardrobe.apply_event(current, event)
    return list(current.values()), wardrobe.columns_of(names, current)


def _event_order(event: dict[str, Any]) -> tuple[bool, str, bool, str]:
    """Event time, then event id (a missing one last), as the events' strings compare."""
    at, event_id = event.get("event_time"), event.get("event_id")
    return (at is None, str(at or ""), event_id is None, str(event_id or ""))


def _rows_of(
    name: str,
    user_ids: Sequence[str] | None,
    settings: Settings,
    *,
    kinds: Sequence[str] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """A Delta table's rows of ``user_ids`` (None: all; of ``kinds`` of events), only the files
    and row groups that can hold them, as Python rows and the table's column names."""
    from dresscode.core import delta

    filters: list[tuple[str, str, Any]] = []
    if kinds is not None:
        filters.append(("event_type", "in", list(kinds)))
    if user_ids is not None:
        if not user_ids:
            return [], []
        filters.append(("user_id", "in", list(user_ids)))
    table = delta.read_arrow(name, settings, filters=filters or None)
    if table is None:
        return [], []
    names = [n for n in table.column_names if n not in (delta.PART, delta.BUCKET)]
    columns = [table.column(n).to_pylist() for n in names]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)], names
