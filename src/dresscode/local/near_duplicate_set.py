"""A near-duplicate photo set drawn like the golden photos: what ingest's threshold is chosen on.

Each original is a synthetic wardrobe photo (:func:`dresscode.local.samples.wardrobe_photo`,
the golden set's plan: 1-4 garments, every 5th dark, every 3rd portrait) encoded like a phone
photo. Its copies are what users really send twice, and must be caught:

* ``recompressed`` — the JPEG decoded and saved again at quality 35 (a messenger's copy);
* ``resized`` — half the size, quality 80 (a "send smaller" share);
* ``cropped`` — 10 % cut off the width and the height, off-centre;
* ``exif_rotated`` — the pixels stored on their side with EXIF Orientation 6;
* ``screenshot`` — a phone screenshot (PNG, 1080 x 2340) of the photo in a gallery app: status
  bar, black bars, toolbar.

Its hard negatives are other photos that must *not* be caught: the same garments in the same
places with one garment in **another colour** (``recoloured``) or **another pattern**
(``repatterned``) — the same shirt bought twice in two colours, laid out the same way.

Deterministic for a count: the same bytes every run, so a measurement can be repeated.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, replace

from PIL import Image, ImageDraw

from dresscode.local import samples

POSITIVE_KINDS = ("recompressed", "resized", "cropped", "exif_rotated", "screenshot")
NEGATIVE_KINDS = ("recoloured", "repatterned")

_SEED_BASE = 70_000  # the golden set's seeds: the originals are the golden photos' drawings
_LONG_EDGE = 1024  # phone photos are larger; 1024 keeps the set quick and still above 768


@dataclass(frozen=True)
class Copy:
    """One photo sent after ``original``: a near-duplicate of it (``positive``) or not."""

    original: str
    kind: str
    positive: bool
    raw: bytes


@dataclass(frozen=True)
class NearDuplicateSet:
    originals: dict[str, bytes]  # id -> the photo as first uploaded
    copies: list[Copy]


def _plan(count: int) -> list[tuple[str, int, int, bool, bool]]:
    counts = (1, 2, 3, 4, 4, 3, 2, 3)
    return [
        (f"nd-{i + 1:04d}", _SEED_BASE + i, counts[i % len(counts)], i % 5 == 4, i % 3 == 2)
        for i in range(count)
    ]


def near_duplicate_set(count: int = 60) -> NearDuplicateSet:
    """``count`` originals, each with every copy kind and every hard negative."""
    originals: dict[str, bytes] = {}
    copies: list[Copy] = []
    for photo_id, seed, n_items, dark, portrait in _plan(count):
        long, short = _LONG_EDGE, _LONG_EDGE * 3 // 4
        size = (short, long) if portrait else (long, short)
        img, _ = samples.wardrobe_photo(seed, size=size, n_items=n_items, dark=dark)
        original = samples.encode(img, "JPEG", quality=90)
        originals[photo_id] = original
        rng = random.Random(seed)
        for kind, raw in _copies(img, original, rng):
            copies.append(Copy(photo_id, kind, True, raw))
        for kind, restyle in (("recoloured", _recolour_first), ("repatterned", _repattern_first)):
            other, _ = samples.wardrobe_photo(
                seed, size=size, n_items=n_items, dark=dark, restyle=restyle()
            )
            copies.append(Copy(photo_id, kind, False, samples.encode(other, "JPEG", quality=90)))
    return NearDuplicateSet(originals, copies)


def _copies(img: Image.Image, original: bytes, rng: random.Random) -> list[tuple[str, bytes]]:
    decoded = Image.open(io.BytesIO(original)).convert("RGB")
    w, h = decoded.size
    cut_w, cut_h = w // 10, h // 10
    left, top = rng.randint(0, cut_w), rng.randint(0, cut_h)
    cropped = decoded.crop((left, top, left + w - cut_w, top + h - cut_h))
    half = decoded.resize((w // 2, h // 2), Image.Resampling.BILINEAR)
    return [
        ("recompressed", _jpeg(decoded, 35)),
        ("resized", _jpeg(half, 80)),
        ("cropped", _jpeg(cropped, 90)),
        ("exif_rotated", samples.encode(img, "JPEG", orientation=6, quality=90)),
        ("screenshot", _screenshot(decoded)),
    ]


def _jpeg(img: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _screenshot(photo: Image.Image) -> bytes:
    """The photo shown full-width in a gallery app on a 1080 x 2340 phone, as a PNG."""
    screen = Image.new("RGB", (1080, 2340), (0, 0, 0))
    shown = photo.resize((1080, round(photo.height * 1080 / photo.width)), Image.Resampling.BICUBIC)
    if shown.height > 1900:  # a portrait photo is fitted to the height between the bars
        shown = photo.resize((round(photo.width * 1900 / photo.height), 1900))
    screen.paste(shown, ((1080 - shown.width) // 2, (2340 - shown.height) // 2))
    draw = ImageDraw.Draw(screen)
    draw.text((40, 30), "9:41", fill=(255, 255, 255))
    draw.rectangle((960, 32, 1030, 58), outline=(255, 255, 255), width=3)  # the battery
    draw.rectangle((966, 38, 1010, 52), fill=(255, 255, 255))
    for x in (140, 400, 660, 920):  # share, favourite, edit, delete
        draw.ellipse((x - 28, 2200, x + 28, 2256), outline=(230, 230, 230), width=4)
    out = io.BytesIO()
    screen.save(out, "PNG", compress_level=1)
    return out.getvalue()


def _recolour_first() -> samples.Restyle:
    seen = [False]

    def restyle(item: samples.LabeledItem, colours: tuple[str, ...]) -> samples.LabeledItem:
        if seen[0]:
            return item
        seen[0] = True
        base = item.colors[0][0]
        other = next(c for c in colours[colours.index(base) + 1 :] + colours if c != base)
        colors = [(other, samples.PALETTE[other]), *item.colors[1:]]
        return replace(item, colors=colors, description=item.description.replace(base, other))

    return restyle


def _repattern_first() -> samples.Restyle:
    seen = [False]

    def restyle(item: samples.LabeledItem, colours: tuple[str, ...]) -> samples.LabeledItem:
        if seen[0]:
            return item
        seen[0] = True
        if item.pattern != "solid":
            return replace(item, pattern="solid", colors=item.colors[:1])
        base = samples.PALETTE[item.colors[0][0]]
        accent = "white" if sum(samples._rgb(base)) < 384 else "black"
        return replace(
            item, pattern="striped", colors=[item.colors[0], (accent, samples.PALETTE[accent])]
        )

    return restyle
