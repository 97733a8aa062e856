"""What the simulator "sees" in a photo: brightness and dominant colours, cached per sha256.

Decoding is the only expensive step of a request, so each distinct image is decoded once,
at a small size (JPEG draft mode), and the facts are cached by the sha256 of its bytes.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict, defaultdict
from dataclasses import dataclass

# Small, human colour vocabulary: the names a vision model would plausibly use.
PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20),
    "white": (245, 245, 245),
    "grey": (128, 128, 128),
    "light grey": (200, 200, 200),
    "navy": (20, 30, 80),
    "blue": (40, 90, 200),
    "light blue": (150, 190, 230),
    "red": (200, 30, 40),
    "burgundy": (110, 20, 40),
    "pink": (240, 150, 180),
    "orange": (240, 130, 30),
    "yellow": (240, 210, 50),
    "beige": (220, 200, 160),
    "brown": (120, 75, 40),
    "green": (40, 140, 60),
    "olive": (110, 110, 40),
    "purple": (110, 50, 140),
}
_CACHE_SIZE = 4096


class BadImage(ValueError):
    """The bytes are not an image Pillow can decode."""


@dataclass(frozen=True)
class PhotoFacts:
    """The little the simulator derives from pixels."""

    sha256: str
    brightness: float  # mean luma, 0..255
    colors: tuple[tuple[str, str], ...]  # (name, "#rrggbb"), dominant first, 1-3


_cache: OrderedDict[str, PhotoFacts] = OrderedDict()
_lock = threading.Lock()  # tests run several simulators (threads) in one process


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def analyze(data: bytes, sha256: str | None = None) -> PhotoFacts:
    """Facts about one image, decoded at most once per distinct content. Raises BadImage."""
    key = sha256 or sha256_hex(data)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    facts = _decode(data, key)
    with _lock:
        _cache[key] = facts
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return facts


def _decode(data: bytes, sha256: str) -> PhotoFacts:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (64, 64))  # JPEG decodes at 1/2..1/8 scale: far cheaper
            raw = img.convert("RGB").resize((16, 16), Image.Resampling.BOX).tobytes()
    except Exception as exc:  # Pillow raises many types for bad input; all mean the same here
        raise BadImage(f"cannot decode image: {exc}") from exc
    pixels = list(zip(raw[0::3], raw[1::3], raw[2::3], strict=True))
    brightness = sum(0.299 * r + 0.587 * g + 0.114 * b for r, g, b in pixels) / len(pixels)
    # Dominant colours: coarse 4x4x4 RGB buckets by pixel count, each named by its mean.
    # (Pillow's quantize costs more than the whole decode; this is good enough here.)
    buckets: dict[tuple[int, int, int], list[tuple[int, int, int]]] = defaultdict(list)
    for px in pixels:
        buckets[(px[0] >> 6, px[1] >> 6, px[2] >> 6)].append(px)
    colors: list[tuple[str, str]] = []
    for members in sorted(buckets.values(), key=len, reverse=True):
        r, g, b = (sum(channel) // len(members) for channel in zip(*members, strict=True))
        name = nearest_color_name((r, g, b))
        if name not in (c[0] for c in colors):
            colors.append((name, f"#{r:02x}{g:02x}{b:02x}"))
        if len(colors) == 3:
            break
    return PhotoFacts(sha256, brightness, tuple(colors))


def nearest_color_name(rgb: tuple[int, int, int]) -> str:
    return min(
        PALETTE, key=lambda name: sum((a - b) ** 2 for a, b in zip(PALETTE[name], rgb, strict=True))
    )
