"""``dresscode seed``: synthetic uploads for the local demo and the tests.

Writes N synthetic wardrobe photos into the landing area — JPEG, PNG, WebP and HEIC in turn,
each with GPS in its EXIF and XMP and a rotation tag — plus every kind of bad file and a few
tricky-but-valid ones, and appends the true labels of the good photos to the simulator's
response script (keyed by the sha256 of the normalized JPEG the model will be sent), and the
users' profiles (their cities) to the ``users`` table.

``shift`` writes a batch that looks different the way real traffic drifts (``dark``: photos
taken in a dim room; ``lowres``: small, messenger-compressed photos; ``format``: a phone update
that uploads everything as PNG). Shifted uploads get their own keys (``photo-00000-dark.jpg``),
carry the same true labels, and no bad files. The simulator sees far fewer items on dark photos,
as a real vision model would; the other two shifts move only the inputs.

Idempotent: uploads already in the manifest are not written again, and labels already in the
script are not appended twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dresscode.core import lake, tables
from dresscode.core.config import Settings, get_settings
from dresscode.features import users
from dresscode.ingest import photos as images
from dresscode.local import samples

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd
    from PIL import Image

log = logging.getLogger(__name__)

FORMATS = ("JPEG", "PNG", "WEBP", "HEIC")
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "HEIC": "heic"}
ORIENTATIONS = (1, 6, 3, 8)  # upright, and the three rotations phones write
USERS = 8
SHIFTS = ("dark", "lowres", "format")
DARK_EXPOSURE = 0.15  # brightness factor of a dark-room photo: mean luma about 15-30 of 255
LOWRES_EDGE = 320  # long edge of a messenger-compressed photo
# Where the synthetic users live: both hemispheres, hot, cold and rainy places, and one city
# no weather provider knows (its user is skipped with a reason, not crashed on). user-bad
# only uploads broken files, so it is an active user with an empty wardrobe.
CITIES = {
    "user-000": "Berlin",
    "user-001": "London",
    "user-002": "Sydney",
    "user-003": "Dubai",
    "user-004": "Oslo",
    "user-005": "Seattle",
    "user-006": "São Paulo",
    "user-007": "Atlantis",
    "user-bad": "Reykjavik",
    "user-tricky": "Cape Town",
}


@dataclass(frozen=True)
class SeedResult:
    new: int
    skipped: int


@dataclass(frozen=True)
class Upload:
    """One rendered upload: its landing key and bytes, its labels for the simulator's script
    (keyed by the sha256 of the JPEG the model will be sent), and its re-sent copy if any."""

    key: str
    raw: bytes
    script_line: dict
    copy: tuple[str, bytes] | None = None


def render(
    n_photos: int,
    *,
    start: int = 0,
    size: tuple[int, int] = (1600, 1200),
    shift: str | None = None,
    near_duplicates: int = 0,
    settings: Settings | None = None,
) -> list[Upload]:
    """Draw and encode photos ``start`` .. ``start + n_photos - 1`` (deterministic in their
    number): the CPU part of :func:`seed`, which ``make up`` runs ahead, in the background."""
    _check_shift(shift)
    settings = settings or get_settings()
    uploads = []
    for i in range(start, start + n_photos):
        fmt = "PNG" if shift == "format" else FORMATS[i % len(FORMATS)]
        suffix = f"-{shift}" if shift else ""
        key = f"user-{i % USERS:03d}/photo-{i:05d}{suffix}.{EXTENSIONS[fmt]}"
        img, labels = samples.wardrobe_photo(i, size=size)
        img = shifted(img, shift)
        raw = samples.encode(
            img,
            fmt,
            exif_gps=True,
            orientation=ORIENTATIONS[(i // len(FORMATS)) % len(ORIENTATIONS)],
        )
        line = {
            "image_sha256": _sent_sha(raw, settings),
            "items": [item.to_json() for item in labels],
            "source": key,
        }
        copy = None
        if i - start < near_duplicates:
            half = img.resize((img.width // 2, img.height // 2))
            copy = (
                f"user-{i % USERS:03d}/resent-{i:05d}.jpg",
                samples.encode(half, "JPEG", quality=80),
            )
        uploads.append(Upload(key, raw, line, copy))
    return uploads


def seed(
    n_photos: int = 48,
    *,
    script_path: Path,
    start: int = 0,
    bad_files: bool = True,
    size: tuple[int, int] = (1600, 1200),
    shift: str | None = None,
    settings: Settings | None = None,
    near_duplicates: int = 0,
    rendered: list[Upload] | None = None,
) -> SeedResult:
    """Write the uploads and the response script; returns how many were new.

    ``near_duplicates`` of the photos are sent again by their user as a half-size re-encoded
    copy (``resent-…``): ingest recognises them and does not send them to the model.
    ``rendered``: these photos drawn already by :func:`render` with the same arguments.
    """
    _check_shift(shift)
    settings = settings or get_settings()
    bad_files = bad_files and shift is None
    uploads = rendered
    if uploads is None:
        uploads = render(
            n_photos,
            start=start,
            size=size,
            shift=shift,
            near_duplicates=near_duplicates,
            settings=settings,
        )
    done = set(tables.manifest_state(settings))
    landing = lake.landing(settings)
    known_shas = _script_shas(script_path)
    new = skipped = 0
    script_lines = []
    for upload in uploads:
        if upload.script_line["image_sha256"] not in known_shas:
            script_lines.append(upload.script_line)
            known_shas.add(upload.script_line["image_sha256"])
        if upload.key in done:
            skipped += 1
            continue
        lake.write_bytes(landing / upload.key, upload.raw)
        new += 1
        if upload.copy is not None and upload.copy[0] not in done:
            lake.write_bytes(landing / upload.copy[0], upload.copy[1])
            new += 1
    if bad_files:
        extra = {f"user-bad/{name}": data for name, (data, _code) in samples.bad_files().items()}
        extra |= {f"user-tricky/{name}": data for name, data in samples.tricky_good_files().items()}
        for key, data in extra.items():
            if key in done:
                skipped += 1
                continue
            lake.write_bytes(landing / key, data)
            new += 1
    _append_script(script_path, script_lines)
    now = datetime.now(UTC)
    users.write_profiles(
        [{"user_id": u, "city": c, "last_active_at": now} for u, c in CITIES.items()],
        day=now.date().isoformat(),
        settings=settings,
    )
    log.info(
        "seeded %d uploads (%d already ingested), %d new script lines",
        new,
        skipped,
        len(script_lines),
    )
    return SeedResult(new, skipped)


def _check_shift(shift: str | None) -> None:
    if shift is not None and shift not in SHIFTS:
        raise ValueError(f"Unknown shift {shift!r}; known: {', '.join(SHIFTS)}.")


def shifted(img: Image.Image, shift: str | None) -> Image.Image:
    """The photo as the drifted traffic would have taken it (labels do not change)."""
    from PIL import Image, ImageEnhance

    if shift == "dark":
        return ImageEnhance.Brightness(img).enhance(DARK_EXPOSURE)
    if shift == "lowres":
        scale = LOWRES_EDGE / max(img.size)
        small = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        return img.resize(small, Image.Resampling.LANCZOS)
    return img


def _sent_sha(raw: bytes, settings: Settings) -> str:
    """The sha256 of the JPEG the model will receive for this upload."""
    photo = images.normalize(
        raw, long_edge=settings.image_long_edge, quality=settings.image_jpeg_quality
    )
    return hashlib.sha256(photo.jpeg).hexdigest()


def scripted_item_counts(path: Path) -> dict[str, int]:
    """image sha256 -> how many items the response script gives that photo."""
    counts = {}
    for line in path.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            counts[entry["image_sha256"]] = len(entry["items"])
    return counts


def _script_shas(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {
        json.loads(line)["image_sha256"] for line in path.read_text().splitlines() if line.strip()
    }


def _append_script(path: Path, lines: list[dict]) -> None:
    if not lines:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        for line in lines:
            fh.write(json.dumps(line, sort_keys=True) + "\n")


# --- feedback demo ---------------------------------------------------------------------------

FEEDBACK_DEMO_KEY = "feedback/demo.jsonl"


@dataclass(frozen=True)
class FeedbackSeed:
    key: str | None
    """Landing key written, or None when there was nothing to write."""
    events: int
    bad_lines: int


@dataclass(frozen=True)
class _DemoEvents:
    """Builds demo events; ids come from ``kind`` and ``key``, so they are stable across seeds."""

    now: datetime

    def __call__(self, kind: str, key: str, user_id: str, minutes: int, **fields: object) -> dict:
        from datetime import timedelta

        from dresscode.feedback.events import iso_utc

        digest = hashlib.sha256(f"{kind}:{key}".encode()).hexdigest()[:16]
        return {
            "event_id": f"demo-{digest}",
            "event_type": kind,
            "user_id": user_id,
            "event_time": iso_utc(self.now - timedelta(minutes=minutes)),
            **fields,
        }


def seed_feedback(*, settings: Settings | None = None, now: datetime | None = None) -> FeedbackSeed:
    """Write a demo feedback file into ``landing/feedback/`` for already-ingested items.

    Good events: a category and a colour correction, a deletion, an added item, a thumbs up
    and down and a "wore instead" (the outfit events only when ``outfit_suggestions`` has rows).
    Bad lines, so the demo shows rejections: malformed JSON, missing fields, an unknown item,
    a future event, a duplicated event id and an unknown event type. Seeding again after the
    file was ingested writes nothing.
    """

    settings = settings or get_settings()
    event = _DemoEvents(now or datetime.now(UTC))
    # Once ingested, never again: later batches change which photos the demo would pick.
    sources = lake.read_table(tables.FEEDBACK.name, settings, columns=["source"])
    if not sources.empty and (sources["source"] == FEEDBACK_DEMO_KEY).any():
        log.info("the demo feedback was ingested already; nothing to seed")
        return FeedbackSeed(None, 0, 0)
    items = lake.read_table(tables.WARDROBE_ITEMS.name, settings)
    if items.empty:
        log.warning("no wardrobe items yet: ingest photos before seeding feedback")
        return FeedbackSeed(None, 0, 0)
    items = items.drop_duplicates("item_id").sort_values(["image_sha256", "item_id"])
    photos = list(dict.fromkeys(items["image_sha256"]))[:4]
    first = [items[items["image_sha256"] == sha].iloc[0] for sha in photos]

    def on_item(kind: str, row: pd.Series, minutes: int, **fields: object) -> dict:
        return event(kind, row["item_id"], str(row["user_id"]), minutes, **fields)

    a = first[0]
    category = "outerwear" if a["category"] != "outerwear" else "top"
    good = [on_item("item_corrected", a, 50, item_id=a["item_id"], changes={"category": category})]
    if len(first) > 1:
        navy = [{"name": "navy", "hex": "#1f2a44"}]
        good.append(
            on_item(
                "item_corrected",
                first[1],
                45,
                item_id=first[1]["item_id"],
                changes={"colors": navy},
            )
        )
    deleted = first[2]["item_id"] if len(first) > 2 else None
    if deleted:
        good.append(on_item("item_deleted", first[2], 40, item_id=deleted))
    if len(first) > 3:
        sha = first[3]["image_sha256"]
        good.append(on_item("item_added", first[3], 35, image_sha256=sha, item=_DEMO_SCARF))
    kept = items[items["item_id"] != deleted]
    answers = _duplicate_answers(kept, [str(r["item_id"]) for r in first], on_item)
    good += answers
    confirmed = {e["item_id"] for e in answers if e["event_type"] == "duplicate_confirmed"}
    kept = kept[~kept["item_id"].isin(confirmed)]  # gone like a deletion: nobody wears it
    worn_by = kept.groupby("user_id")["item_id"].apply(lambda ids: list(ids)[:2]).to_dict()
    good += _outfit_events(worn_by, event, settings)
    done = lake.read_table(tables.FEEDBACK.name, settings, columns=["user_id", "event_id"])
    seeded = {(e["user_id"], e["event_id"]) for e in good}
    if not done.empty and seeded <= set(zip(done["user_id"], done["event_id"], strict=True)):
        log.info("the demo feedback was ingested already; nothing to seed")
        return FeedbackSeed(None, 0, 0)
    user = str(a["user_id"])
    future = {"item_id": a["item_id"], "changes": {"pattern": "striped"}}
    bad = [
        '{"event_id": "demo-broken", "event_type": "item_deleted", ',  # malformed JSON
        json.dumps({"event_id": "demo-missing", "event_type": "item_deleted", "user_id": user}),
        json.dumps(event("item_deleted", "no-such-item", user, 15, item_id="no-such-item")),
        json.dumps(on_item("item_corrected", a, -24 * 60, **future)),  # a day ahead
        json.dumps(good[0]),  # the same event id again
        json.dumps(on_item("item_liked", a, 10, item_id=a["item_id"])),  # unknown event type
    ]
    lines = [json.dumps(e) for e in good] + bad
    lake.write_bytes(lake.landing(settings) / FEEDBACK_DEMO_KEY, ("\n".join(lines) + "\n").encode())
    log.info("seeded %s: %d events and %d bad lines", FEEDBACK_DEMO_KEY, len(good), len(bad))
    return FeedbackSeed(FEEDBACK_DEMO_KEY, len(good), len(bad))


_DEMO_SCARF = {
    "category": "accessory",
    "subcategory": "scarf",
    "colors": [{"name": "red", "hex": "#b22222"}],
    "pattern": "checked",
    "material": "wool",
    "warmth": "warm",
    "formality": "casual",
    "seasons": ["autumn", "winter"],
    "water_resistant": False,
    "description": "Red checked wool scarf.",
}


def _duplicate_answers(
    items: pd.DataFrame, used: list[str], on_item: Callable[..., dict]
) -> list[dict]:
    """A user's answers to two possible duplicates (issue 19): one rejected, one confirmed —
    two of the user's items the other demo events leave alone, each "a duplicate of" a third."""
    for _, group in items.groupby("user_id", sort=True):
        free = group[~group["item_id"].astype(str).isin(used)]
        if len(free) < 2 or len(group) < 3:
            continue
        same, other = free.iloc[0], free.iloc[1]
        keep = group[~group["item_id"].isin([same["item_id"], other["item_id"]])].iloc[0]
        return [
            on_item(
                "duplicate_rejected",
                other,
                33,
                item_id=other["item_id"],
                duplicate_of=keep["item_id"],
            ),
            on_item(
                "duplicate_confirmed",
                same,
                32,
                item_id=same["item_id"],
                duplicate_of=keep["item_id"],
            ),
        ]
    return []


def _outfit_events(
    worn_by: dict[str, list[str]], event: _DemoEvents, settings: Settings
) -> list[dict]:
    """A thumbs up, a thumbs down and a "wore instead" on the newest suggestion, if any."""
    suggestions = lake.read_table(tables.OUTFIT_SUGGESTIONS.name, settings)
    ok = suggestions[suggestions["status"] == "ok"] if not suggestions.empty else suggestions
    if ok.empty:
        log.warning("no outfit suggestions yet: the demo feedback has no thumbs or wore_instead")
        return []
    newest = ok.sort_values(["day", "user_id"]).iloc[-1]
    user, day = str(newest["user_id"]), str(newest["day"])
    ref = {"suggestion_day": day, "outfit_index": 0}
    out = [
        event("outfit_rated", f"up:{user}:{day}", user, 30, **ref, rating="up"),
        event("outfit_rated", f"down:{user}:{day}", user, 25, **ref, rating="down"),
    ]
    if worn_by.get(user):
        out.append(
            event(
                "wore_instead",
                f"wore:{user}:{day}",
                user,
                20,
                suggestion_day=day,
                item_ids=worn_by[user],
            )
        )
    return out
