"""Near-duplicate photos: the same picture sent again, re-compressed, resized, cropped or
screenshotted, is recognised before it reaches the model.

Two steps, measured on the near-duplicate set of :mod:`dresscode.local.near_duplicate_set`
(``docs/benchmarks.md``, "Near-duplicate photos"; ``tests/integration/test_near_duplicate_set.py``
asserts recall and precision on it):

1. **Candidates by perceptual hash** (``imagehash.phash``, 64 bits of the luminance's lowest
   DCT frequencies), stored in the manifest as the photo's :class:`Fingerprint`. A pHash
   survives re-compression, resizing, EXIF rotation (normalize has turned the pixels upright)
   and, once the letterbox bars are trimmed (:func:`content`), a screenshot; it does not survive
   a 10 % crop, which shifts every frequency. So a fingerprint is the hash of the whole picture
   *and* of nine 90 % windows of it: a crop of one photo matches a window of the other.
2. **Colour check on the pixels.** pHash sees luminance only: the same shirt in another colour
   laid out the same way hashes the same. A candidate is confirmed only when the two pictures,
   cut to the matching windows and aligned, have no region of another colour
   (:func:`colour_difference`, CIE76 ΔE). The earlier photo's clean JPEG is read for that,
   once per batch (:class:`LabCache`).

Only a user's own photos are compared (another user's copy of a picture is theirs), and only
the newest ``DRESSCODE_INGEST_NEAR_DUPLICATE_CANDIDATES`` of them: a photo's cost must not grow
with its user's history (``bench/near_duplicate_history.py``). Photos laid out alike (flat
lays, the seeded ones) are pHash candidates of each other more often than the set suggests.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

_WINDOW = 0.9  # the windows' side, as a share of the picture's: a 10 % crop fits one
_OFFSETS = (0.0, 0.05, 0.1)  # window offsets; a crop lands within 2.5 % of one of them
_FLAT_ROW_STD = 1.0  # grey-level spread under which a row or column is a letterbox bar
_TRIM_WIDTH = 128  # bars are found on a copy this wide
_HASH_SIDE = 256  # windows are hashed from a grey copy this long
_SIDE = 64  # the colour check compares 64 x 64 Lab pictures ...
_CELL = 4  # ... in cells of 4 x 4 pixels ...
_SHIFT = 3  # ... after aligning them within 3 pixels each way
_BLUR = 1.0  # and blurring both: a half-pixel misalignment must not look like a new colour

FULL = 0  # window 0 is the whole picture; 1-9 are the 90 % windows


@dataclass(frozen=True)
class Fingerprint:
    """A clean photo's perceptual hashes: the whole picture first, then the nine windows."""

    hashes: tuple[int, ...]

    def encode(self) -> str:
        """The manifest's ``phash`` column: 16 hex digits per hash, comma-separated."""
        return ",".join(f"{h:016x}" for h in self.hashes)

    @classmethod
    def decode(cls, text: str) -> Fingerprint:
        return cls(tuple(int(part, 16) for part in text.split(",") if part))


@dataclass(frozen=True)
class Match:
    """A photo judged the same picture as an earlier one."""

    earlier: str  # the earlier upload's key
    distance: int  # pHash bits apart, over the best pair of windows
    colour_difference: float  # ΔE of the most different region (0 = same colours)


@dataclass(frozen=True)
class Earlier:
    """One of the user's earlier photos, as the manifest recorded it."""

    upload_key: str
    image_sha256: str
    fingerprint: Fingerprint


def content(img: Image.Image) -> Image.Image:
    """The picture without the flat bars a screenshot or a letterboxed copy puts around it.

    The longest run of rows that are not flat, then within those the longest run of columns:
    a status bar's few rows of text lose to the photo's hundreds. A photo without bars is
    returned whole (real photos and the synthetic ones have no flat rows: sensor grain).
    """
    import numpy as np
    from PIL import Image as PILImage

    height = max(1, round(_TRIM_WIDTH * img.height / img.width))
    grey = np.asarray(
        img.resize((_TRIM_WIDTH, height), PILImage.Resampling.BOX).convert("L"), dtype=np.float32
    )
    top, bottom = _longest_run(grey.std(axis=1) >= _FLAT_ROW_STD)
    left, right = _longest_run(grey[top:bottom].std(axis=0) >= _FLAT_ROW_STD)
    if bottom - top < 8 or right - left < 8:
        return img  # nothing but bars (a blank picture): hash it as it is
    sx, sy = img.width / _TRIM_WIDTH, img.height / height
    box = (round(left * sx), round(top * sy), round(right * sx), round(bottom * sy))
    return img if box == (0, 0, img.width, img.height) else img.crop(box)


def _longest_run(busy: np.ndarray) -> tuple[int, int]:
    best, start = (0, 0), None
    for i, value in enumerate([*busy.tolist(), False]):
        if value and start is None:
            start = i
        elif not value and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best


def windows(img: Image.Image) -> list[Image.Image]:
    """The whole picture, then its nine 90 % windows (offsets 0, 5 and 10 % each way)."""
    w, h = img.size
    ww, wh = round(w * _WINDOW), round(h * _WINDOW)
    crops = [img]
    for oy in _OFFSETS:
        for ox in _OFFSETS:
            left, top = round(w * ox), round(h * oy)
            crops.append(img.crop((left, top, left + ww, top + wh)))
    return crops


def open_clean(jpeg: bytes) -> Image.Image:
    """A clean (normalized) photo's content, ready to fingerprint or compare."""
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(jpeg)) as im:
        return content(im.convert("RGB"))


def fingerprint(picture: Image.Image) -> Fingerprint:
    """The hashes of :func:`windows` of a picture from :func:`open_clean`.

    Hashed from a grey copy 256 px on its long side: pHash looks at 32 x 32 pixels anyway, and
    ten windows of the full picture cost ten large resizes (measured twice as slow).
    """
    import imagehash
    from PIL import Image as PILImage

    scale = _HASH_SIDE / max(picture.size)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    grey = picture.convert("L").resize(size, PILImage.Resampling.BOX)
    return Fingerprint(tuple(int(str(imagehash.phash(w)), 16) for w in windows(grey)))


def window_pairs(a: Fingerprint, b: Fingerprint) -> list[tuple[int, int, int]]:
    """(bits apart, window of a, window of b) of every pair where one side is whole, closest
    first.

    One side whole: a crop of the other photo is matched by a window of the uncropped one; two
    windows of two whole photos would only add ways for different photos to look alike.
    """
    pairs = [
        ((ha ^ hb).bit_count(), i, j)
        for i, ha in enumerate(a.hashes)
        for j, hb in enumerate(b.hashes)
        if i == FULL or j == FULL
    ]
    return sorted(pairs)


def colour_difference(a: Image.Image, window_a: int, b: Image.Image, window_b: int) -> float:
    """ΔE (CIE76) of the most different region of two pictures cut to their matching windows.

    Both windows go to 64 x 64 Lab; the shift of up to 3 pixels each way (what a crop's window
    leaves) with the smallest mean ΔE aligns them; the answer is the largest mean ΔE of a
    4 x 4-pixel cell (1/256 of the picture) where they overlap. Re-encoding moves a cell by a
    few ΔE; a garment in another colour or pattern by tens.
    """
    return _lab_difference(_lab(windows(a)[window_a]), _lab(windows(b)[window_b]))


def _lab_difference(lab_a: np.ndarray, lab_b: np.ndarray) -> float:
    """:func:`colour_difference` of two windows already in 64 x 64 Lab."""
    import numpy as np

    best: tuple[float, np.ndarray] | None = None
    for dy in range(-_SHIFT, _SHIFT + 1):
        for dx in range(-_SHIFT, _SHIFT + 1):
            part_a = lab_a[max(dy, 0) : _SIDE + min(dy, 0), max(dx, 0) : _SIDE + min(dx, 0)]
            part_b = lab_b[max(-dy, 0) : _SIDE + min(-dy, 0), max(-dx, 0) : _SIDE + min(-dx, 0)]
            delta = np.sqrt(((part_a - part_b) ** 2).sum(axis=-1))
            mean = float(delta.mean())
            if best is None or mean < best[0]:
                best = (mean, delta)
    assert best is not None
    delta = best[1]
    rows, cols = (delta.shape[0] // _CELL) * _CELL, (delta.shape[1] // _CELL) * _CELL
    cells = delta[:rows, :cols].reshape(rows // _CELL, _CELL, cols // _CELL, _CELL)
    return float(cells.mean(axis=(1, 3)).max())


class LabCache:
    """The 64 x 64 Lab copies of earlier photos' windows, by image sha256, shared by the
    photos of one batch (thread-safe): a user's earlier photo that is a pHash candidate for
    several new photos is read, decoded and converted once, not once per new photo. Holds the
    ``size`` most recently used photos (~0.5 MB each)."""

    def __init__(self, size: int = 64) -> None:
        import threading
        from collections import OrderedDict

        self._labs: OrderedDict[str, list[np.ndarray]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()
        self.loads = 0  # photos read and converted (a benchmark's figure)

    def windows_of(
        self, sha: str, load: Callable[[str], Image.Image | None]
    ) -> list[np.ndarray] | None:
        with self._lock:
            if sha in self._labs:
                self._labs.move_to_end(sha)
                return self._labs[sha]
        picture = load(sha)
        if picture is None:
            return None
        labs = [_lab(w) for w in windows(picture)]
        with self._lock:
            self.loads += 1
            self._labs[sha] = labs
            while len(self._labs) > self._size:
                self._labs.popitem(last=False)
        return labs


def _lab(img: Image.Image) -> np.ndarray:
    """The picture as 64 x 64 pixels of CIE Lab (L 0-100, a and b signed)."""
    import numpy as np
    from PIL import Image as PILImage
    from PIL import ImageCms, ImageFilter

    small = img.resize((_SIDE, _SIDE), PILImage.Resampling.BOX).filter(
        ImageFilter.GaussianBlur(_BLUR)
    )
    lab = np.asarray(ImageCms.applyTransform(small, _srgb_to_lab()))
    out = lab.astype(np.float32)
    out[..., 0] *= 100 / 255
    out[..., 1:] = lab[..., 1:].view(np.int8).astype(np.float32)  # Pillow stores a, b signed
    return out


_TRANSFORM: list[ImageCms.ImageCmsTransform] = []


def _srgb_to_lab() -> ImageCms.ImageCmsTransform:
    from PIL import ImageCms

    if not _TRANSFORM:
        srgb, lab = ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB")
        _TRANSFORM.append(ImageCms.buildTransform(srgb, lab, "RGB", "LAB"))
    return _TRANSFORM[0]


def find(
    picture: Image.Image,
    print_: Fingerprint,
    earlier: Iterable[Earlier],
    load: Callable[[str], Image.Image | None],
    *,
    max_distance: int,
    max_colour_difference: float,
    labs: LabCache | None = None,
) -> Match | None:
    """The earlier photo this one is a near-duplicate of, or None.

    ``earlier`` are the user's photos, oldest first (the first one matched wins, so a third
    copy names the original, not the second). ``load`` opens an earlier photo's clean JPEG
    by its image sha256 (None when it is gone: that candidate is skipped); ``labs`` keeps what
    was loaded for the next photo of the batch.
    """
    labs = labs if labs is not None else LabCache()
    mine: dict[int, np.ndarray] = {}
    crops: list[Image.Image] = []

    def my_lab(window: int) -> np.ndarray:
        if window not in mine:
            crops[:] = crops or windows(picture)  # cut once, only when a candidate is close
            mine[window] = _lab(crops[window])
        return mine[window]

    for candidate in earlier:
        close = [p for p in window_pairs(print_, candidate.fingerprint) if p[0] <= max_distance]
        if not close:
            continue
        other = labs.windows_of(candidate.image_sha256, load)
        if other is None:
            continue
        # The closest hashes are not always the best-aligned windows: every close pair is
        # checked, and the one with the least colour difference speaks for the candidate.
        delta, bits = min((_lab_difference(my_lab(i), other[j]), bits) for bits, i, j in close)
        if delta <= max_colour_difference:
            return Match(candidate.upload_key, bits, round(delta, 1))
    return None


if TYPE_CHECKING:
    from PIL import ImageCms
