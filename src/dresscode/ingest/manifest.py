"""The commit of one batch: wardrobe items, inference log and manifest, then landing is cleared.

Parts are named by the batch's keys *and* outcomes: a retried batch replaces its own parts, a
later batch with the same keys (an upload id reused for a new photo) adds new ones. The
manifest is written last, so an upload is "done" only once its items exist.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from dresscode.core import lake, tables
from dresscode.core.config import Settings

if TYPE_CHECKING:
    from dresscode.ingest.digitize import Digitized
    from dresscode.ingest.near_duplicates import Earlier
    from dresscode.llm.blueprints import Blueprint

# Not a manifest status: the key stays in landing untouched this run (see landing.Waiting).
WAITING = "waiting"

# image sha256 -> the items the digitizer (or its cache) answered for that photo
Answers = dict[str, list[dict[str, Any]]]


@dataclass
class PhotoOutcome:
    """What became of one upload in this run (one ``manifests`` row, see tables.ManifestRow)."""

    upload_key: str
    user_id: str | None
    upload_id: str | None
    status: str
    raw_sha256: str | None = None
    image_sha256: str | None = None
    reason_code: str | None = None
    reason: str | None = None
    source_format: str | None = None
    source_bytes: int | None = None
    source_width: int | None = None
    source_height: int | None = None
    width: int | None = None
    height: int | None = None
    brightness: float | None = None
    prompt_version: int | None = None
    n_items: int | None = None
    model_called: bool = False
    attempt: int = 1
    run_id: str = ""
    phash: str | None = None
    duplicate_of: str | None = None
    processed_at: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds")
    )

    def row(self) -> tables.ManifestRow:
        return cast(tables.ManifestRow, asdict(self))

    @classmethod
    def of(cls, row: tables.ManifestEntry) -> PhotoOutcome:
        """A manifest row back as the outcome it recorded (Parquet's NaN read as None)."""
        values: dict[str, Any] = {f.name: row.get(f.name) for f in fields(cls)}
        clean: dict[str, Any] = {k: None if _missing(v) else v for k, v in values.items()}
        return cls(**clean)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def seen_photos(keys: list[str], settings: Settings) -> dict[tuple[str, str], str]:
    """(user_id, raw or image sha256) -> the upload that first brought that photo, for the
    users of ``keys`` (their accepted uploads outside this batch: a retried batch is not a
    duplicate of itself). Reads only those users' manifest rows."""
    batch = set(keys)
    users = {key.partition("/")[0] for key in keys}
    seen = tables.accepted_photos_of(users, settings)
    return {photo: key for photo, key in seen.items() if key not in batch}


def earlier_fingerprints(keys: list[str], settings: Settings) -> dict[str, list[Earlier]]:
    """user_id -> that user's accepted photos with a fingerprint, oldest first, for the users
    of ``keys`` (not the batch's own keys: a retried batch is not a near-duplicate of itself).

    One pushed-down read: only those users' accepted rows, four columns. Rows written before
    fingerprints existed have none and are not compared. Each user keeps the newest
    ``DRESSCODE_INGEST_NEAR_DUPLICATE_CANDIDATES``: every new photo is compared with each of
    them, so more would make a photo's cost grow with its user's history.
    """
    from dresscode.ingest.near_duplicates import Earlier, Fingerprint

    users = sorted({key.partition("/")[0] for key in keys})
    if not users or not settings.ingest_near_duplicate_bits:
        return {}
    frame = lake.read_table(
        tables.MANIFESTS.name,
        settings,
        columns=["upload_key", "user_id", "image_sha256", "phash", "processed_at"],
        filters=[("user_id", "in", users), ("status", "=", tables.ACCEPTED)],
    )
    batch = set(keys)
    earlier: dict[str, list[Earlier]] = {}
    if frame.empty:
        return earlier
    frame = frame[frame["phash"].notna()].sort_values("processed_at", kind="stable")
    for key, user, sha, phash in frame[
        ["upload_key", "user_id", "image_sha256", "phash"]
    ].itertuples(index=False, name=None):
        if key not in batch and isinstance(phash, str) and phash:
            earlier.setdefault(str(user), []).append(
                Earlier(str(key), str(sha), Fingerprint.decode(phash))
            )
    newest = settings.ingest_near_duplicate_candidates
    return {user: photos[-newest:] for user, photos in earlier.items()}


def commit(
    name: str,
    outcomes: list[PhotoOutcome],
    calls: list[Digitized],
    answers: Answers,
    blueprint: Blueprint,
    day: str,
    settings: Settings,
) -> list[str]:
    """Write items, inference log and manifest atomically; only then clear landing.

    Outcomes with status ``waiting`` (keys left untouched this run) get no row. An upload
    leaves landing only while it still holds the bytes that were processed: re-uploaded during
    the run, it stays for the next one. Returns the keys kept because they changed.
    """
    from dresscode.ingest import landing

    outcomes = [o for o in outcomes if o.status != WAITING]
    if not outcomes:
        return []

    part = name + "-" + _outcome_hash(outcomes)
    rows = item_rows(outcomes, answers, blueprint)
    if rows:
        lake.write_parquet(tables.WARDROBE_ITEMS.name, day, part, rows, settings)
    write_calls(calls, day, settings)
    manifest = [o.row() for o in outcomes]
    lake.write_parquet(tables.MANIFESTS.name, day, part, manifest, settings)
    changed = []
    for outcome in outcomes:
        if outcome.status in tables.FINAL_STATUSES:
            removal = landing.remove_if_unchanged(outcome.upload_key, outcome.raw_sha256, settings)
            if removal == "changed":
                changed.append(outcome.upload_key)
    return changed


def item_rows(
    outcomes: list[PhotoOutcome], answers: Answers, blueprint: Blueprint
) -> list[tables.WardrobeItemRow]:
    """The ``wardrobe_items`` rows of the accepted photos, stamped with their digitization."""
    from dresscode.core.wardrobe import DIGITIZED_AT
    from dresscode.ingest.digitize import item_id

    items: list[dict[str, Any]] = []
    for outcome in outcomes:
        if outcome.status == tables.ACCEPTED and outcome.n_items:
            sha, user = outcome.image_sha256 or "", outcome.user_id or ""
            items.extend(
                {
                    "item_id": item_id(user, sha, i, blueprint),
                    "user_id": user,
                    "image_sha256": sha,
                    "upload_key": outcome.upload_key,
                    "prompt_version": blueprint.version,
                    DIGITIZED_AT: outcome.processed_at,
                    **item,
                }
                for i, item in enumerate(answers[sha])
            )
    return [flatten_item(i) for i in items]


def write_calls(calls: list[Digitized], day: str, settings: Settings) -> None:
    """The model calls' inference-log rows, in a part named by their request ids."""
    if calls:
        ids = "\n".join(sorted(c.record["request_id"] for c in calls))
        calls_part = "calls-" + hashlib.sha256(ids.encode()).hexdigest()[:16]
        records = [c.record for c in calls]
        lake.write_parquet(tables.INFERENCE_LOG.name, day, calls_part, records, settings)


def _outcome_hash(outcomes: list[PhotoOutcome]) -> str:
    # A retried batch with the same outcomes replaces its parts; a later run with different
    # outcomes (a retried model failure that now succeeded, a new photo under a reused key)
    # adds new ones.
    sig = "\n".join(
        sorted(f"{o.upload_key}|{o.status}|{o.attempt}|{o.image_sha256}" for o in outcomes)
    )
    return hashlib.sha256(sig.encode()).hexdigest()[:12]


def flatten_item(item: dict[str, Any]) -> tables.WardrobeItemRow:
    """Parquet-friendly item row: colours as parallel lists, seasons as a list."""
    flat = dict(item)
    colors = flat.pop("colors", [])
    flat["color_names"] = [c["name"] for c in colors]
    flat["color_hexes"] = [c["hex"] for c in colors]
    flat["seasons"] = list(flat.get("seasons", []))
    return cast(tables.WardrobeItemRow, flat)
