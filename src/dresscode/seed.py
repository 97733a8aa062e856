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

from dresscode import images, lake, samples, users
from dresscode.config import Settings, get_settings

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

FORMATS = ("JPEG", "PNG", "WEBP", "HEIC")
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "HEIC": "heic"}
ORIENTATIONS = (1, 6, 3, 8)  # upright, and the three rotations phones write
USERS = 8
SHIFTS = ("dark", "lowres", "format")
DARK_EXPOSURE = 0.2  # brightness factor of a dim-room photo: mean luma well below 50/255
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


def seed(
    n_photos: int = 48,
    *,
    script_path: Path,
    start: int = 0,
    bad_files: bool = True,
    size: tuple[int, int] = (1600, 1200),
    shift: str | None = None,
    settings: Settings | None = None,
) -> SeedResult:
    """Write the uploads and the response script; returns how many were new."""
    from dresscode.ingest import manifest_state

    if shift is not None and shift not in SHIFTS:
        raise ValueError(f"Unknown shift {shift!r}; known: {', '.join(SHIFTS)}.")
    settings = settings or get_settings()
    bad_files = bad_files and shift is None
    done = set(manifest_state(settings))
    landing = lake.landing(settings)
    known_shas = _script_shas(script_path)
    new = skipped = 0
    script_lines = []
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
        sha = _sent_sha(raw, settings)
        if sha not in known_shas:
            script_lines.append(
                {"image_sha256": sha, "items": [item.to_json() for item in labels], "source": key}
            )
            known_shas.add(sha)
        if key in done:
            skipped += 1
            continue
        lake.write_bytes(landing / key, raw)
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
