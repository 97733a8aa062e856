"""Validate, normalize and hash one wardrobe photo.

Bytes in, values out: :func:`normalize` turns one uploaded photo into a small, upright, sRGB,
metadata-free JPEG (a :class:`CleanPhoto`) or raises :class:`Rejected` with a stable
:class:`RejectCode`. No lake, clock or network in here, so tests need nothing but bytes.
This module decodes and finishes the pixels; what a file is (sniffing, container and header
checks, truncated or corrupt) is ``ingest.formats``, the reason codes are ``ingest.rejects``
and libwebp's scaled decode is ``ingest._webp``.

Decisions worth knowing (each has a test in ``tests/unit/ingest/test_photos.py``):

* The format is sniffed from the magic bytes, never taken from the file name. When a name with a
  known image extension is given and the content is another image format (a PNG named
  ``.heic``), the photo is rejected as ``disguised_type``: a renamed file is suspicious, and
  quarantining it costs a user one re-upload. Unknown or missing extensions are not checked.
* Checks run cheapest first, and the first failing check names the reason: ``empty``,
  ``too_large``, ``not_an_image``, ``disguised_type``, ``unsupported_format``, then header
  checks (``decompression_bomb``, ``bad_dimensions``, ``animated``, then a JPEG's scan count:
  ``too_complex``), then the decode (``truncated``, ``corrupt``, or ``too_complex`` when it
  runs over its CPU budget). So an animated GIF is ``unsupported_format`` (no GIF is ever
  accepted, animated or not) and ``animated`` only ever names an animated PNG or WebP.
* Width × height from the header is checked against ``max_pixels`` *before* any pixel is
  decoded, and Pillow's own ``DecompressionBombWarning`` is turned into an error as well.
* Decode cost is bounded too (``too_complex``): a JPEG with more than ``max_jpeg_scans`` scans
  is refused from its bytes before decoding (each scan is a pass over every block, however few
  bytes it has), and a decode that uses more than ``max_decode_s`` of the thread's CPU time is
  stopped. Pillow pulls JPEG and PNG data in blocks of ``_DECODE_BLOCK`` bytes and the budget
  is checked before each; libwebp and libheif decode in one call, so for WebP and HEIF it is
  checked when the call returns (libheif's own worker threads are not counted).
* Pixels are decoded fully and strictly (``ImageFile.LOAD_TRUNCATED_IMAGES`` must be False),
  so a photo that decodes only half-way is rejected as ``truncated`` instead of being passed on
  with a grey lower half. A corrupt JPEG whose headers are intact but whose entropy-coded data
  is garbage still decodes (libjpeg only warns), to garbage pixels: that is not detectable
  cheaply and is left to the model-quality monitoring.
* Speed: JPEGs are decoded with DCT scaling (``Image.draft``) straight to 1-2x the target size;
  WebPs are decoded by libwebp's own scaler when the libwebp library Pillow ships with can be
  loaded (Pillow exposes no reduced-size WebP decode); HEIF has no reduced-size decode, and
  embedded HEIF thumbnails, depth and auxiliary images are never decoded. Everything after the
  decode (colour conversion, ICC transform, orientation) runs on the already-small image.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import cast

from PIL import Image, ImageCms, ImageFile, ImageStat

from dresscode.ingest._webp import LibWebP, WebPFailure, riff_chunks
from dresscode.ingest._webp import libwebp as _libwebp  # a module global: tests switch it off
from dresscode.ingest.formats import (
    DEFAULT_MAX_JPEG_SCANS,
    MAX_ASPECT,
    MIN_SIDE,
    check_container,
    check_header,
    check_jpeg_scans,
    decode_failure,
    over_decode_budget,
    sniff_format,
)
from dresscode.ingest.rejects import RejectCode, Rejected

__all__ = [
    "DEFAULT_FORMATS",
    "DEFAULT_MAX_DECODE_S",
    "DEFAULT_MAX_JPEG_SCANS",
    "MAX_ASPECT",
    "MIN_SIDE",
    "CleanPhoto",
    "RejectCode",
    "Rejected",
    "normalize",
    "sniff_format",
]

log = logging.getLogger(__name__)

DEFAULT_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP", "HEIF"})
"""Formats :func:`normalize` accepts unless told otherwise (names as :func:`sniff_format`)."""

DEFAULT_MAX_DECODE_S = 10.0
"""CPU seconds one photo's decode may take; ``DRESSCODE_IMAGE_MAX_DECODE_S``. The slowest real
photos measured take ~1.5 s (a 30 MB progressive 54 MP JPEG of noise; a 48 MP HEIF 0.4 s in
the calling thread), so 10 s leaves room for slower machines and still stops a hostile file."""

_DECODE_BLOCK = 16_384
"""Bytes Pillow hands its decoder at a time (its default is 64 KiB): the decode budget is
checked between blocks, so a smaller block stops an expensive decode sooner."""

# Downscaling follows Image.thumbnail's recipe: the large step is done cheaply (DCT scaling,
# libwebp's area scaler, or an integer box reduce) and a BICUBIC filter does the last < 2x.
# Measured with `bench/normalize.py --quality` (docs/benchmarks.md, "Photo normalization"): the
# output is 0.5 dB PSNR further from a full decode + LANCZOS than that reference merely encoded
# at q85, i.e. the shortcuts cost far less than the JPEG encode does. LANCZOS for the last step
# gains 0.2 dB but is slower, and on the JPEG path the resize is the largest cost after the
# decode; HAMMING is ~10% faster overall and loses 0.5 dB.

_JPEG_DRAFT_FACTOR = 1
"""Decode JPEGs with DCT scaling to >= this multiple of the target size (1/2, 1/4 or 1/8)."""

_REDUCING_GAP = 2.0
"""``Image.resize(reducing_gap=...)``: integer ``reduce()`` first, filter the last >= 2x."""

_RESAMPLE = Image.Resampling.BICUBIC
"""Filter for the last step of every downscale (the one ``Image.thumbnail`` uses)."""


@dataclass(frozen=True)
class CleanPhoto:
    """One normalized photo: an upright sRGB JPEG without metadata, and facts about its source.

    ``source_width``/``source_height`` are the dimensions the file's header declares: before
    the EXIF orientation is applied (JPEG, PNG, WebP), after the rotation boxes for HEIF
    (libheif reports them so). ``width``/``height`` are those of ``jpeg`` (upright).
    """

    jpeg: bytes = field(repr=False)
    sha256: str
    raw_sha256: str
    width: int
    height: int
    source_format: str
    source_width: int
    source_height: int
    source_bytes: int
    brightness: float
    """Mean luma (0-255, ITU-R 601) of the output pixels; a cheap drift signal."""


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------

_heif_lock = threading.Lock()
_heif_registered = False


def _ensure_heif_opener() -> None:
    """Register pillow-heif with Pillow once, lazily (importing it costs ~50 ms)."""
    global _heif_registered
    if _heif_registered:
        return
    with _heif_lock:
        if not _heif_registered:
            import pillow_heif

            # Never parse or decode embedded thumbnails, depth maps or auxiliary images: we
            # always want the primary image, and a 320 px thumbnail is smaller than the target.
            # (These are pillow-heif's process-wide options.)
            pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
            _heif_registered = True


@contextmanager
def _strict_decoding() -> Iterator[None]:
    """Make decoding fail loudly: no silent truncation, no bomb warnings."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone in this process switched Pillow to "pad truncated images with grey"; that
        # would pass broken photos on, so this module takes the setting back.
        log.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES was True; setting it to False")
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    # catch_warnings swaps a process-wide filter list (not thread-safe before Python 3.14). With
    # normalize() running in several threads at once, the worst case is that the "error" filter
    # outlives a call, which only makes other Pillow users in the process stricter.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


class _Budget:
    """The decode's CPU-time budget, in the calling thread's CPU time (not wall time: a busy
    machine or a pool of decoding threads must not make a photo fail)."""

    def __init__(self, fmt: str, seconds: float) -> None:
        self.fmt, self.seconds = fmt, seconds
        self.started = time.thread_time()

    def check(self, read: int) -> None:
        spent = time.thread_time() - self.started
        if spent > self.seconds:
            raise over_decode_budget(self.fmt, spent, self.seconds, read)


class _BudgetedReader(io.BytesIO):
    """The photo's bytes for Pillow; every read first checks the decode budget."""

    def __init__(self, raw: bytes, budget: _Budget) -> None:
        super().__init__(raw)
        self.budget = budget

    def read(self, size: int | None = -1, /) -> bytes:
        self.budget.check(self.tell())
        return super().read(size)


@dataclass
class _Decoded:
    """Pixels at (or near) the target size, plus what is needed to finish them."""

    image: Image.Image
    source_width: int
    source_height: int
    orientation: int
    icc_profile: bytes | None


def _fit(width: int, height: int, long_edge: int) -> tuple[int, int]:
    """Size with the long edge at most ``long_edge``, aspect kept; never upscales."""
    scale = long_edge / max(width, height)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


@dataclass(frozen=True)
class _Limits:
    long_edge: int
    max_pixels: int
    max_jpeg_scans: int
    max_decode_s: float


def _decode(raw: bytes, fmt: str, limits: _Limits) -> _Decoded:
    if fmt == "HEIF":
        _ensure_heif_opener()  # before the budget starts: a one-off import, not the photo's cost
    budget = _Budget(fmt, limits.max_decode_s)
    decoder = _libwebp() if fmt == "WEBP" else None
    if decoder is not None:
        decoded = _decode_webp(decoder, raw, limits.long_edge, limits.max_pixels)
    else:
        decoded = _decode_with_pillow(raw, fmt, limits, budget)
    budget.check(len(raw))  # libwebp and libheif decode in one call: checked afterwards
    return decoded


def _decode_with_pillow(raw: bytes, fmt: str, limits: _Limits, budget: _Budget) -> _Decoded:
    try:
        # parses the header only
        im = Image.open(_BudgetedReader(raw, budget), formats=[fmt])
    except Rejected:
        raise
    except Exception as exc:  # any decoder error on untrusted bytes means a bad file
        raise _pillow_failure(raw, fmt, exc) from None
    # No `with im:` on purpose: closing an ImageFile also invalidates its pixels, and the
    # BytesIO it reads from holds no OS resource.
    width, height = im.size
    # Only PNG (APNG) and WebP animate. Several frames in a JPEG (MPO: a depth map or second
    # view, as some phones write) or a HEIF (a burst, an edit) are not an animation: Pillow
    # opens the first/primary image, the photo every viewer shows.
    animated = fmt in ("PNG", "WEBP") and bool(getattr(im, "is_animated", False))
    check_header(fmt, width, height, limits.max_pixels, animated)
    if fmt == "JPEG":
        check_jpeg_scans(raw, limits.max_jpeg_scans)
        # DCT scaling: libjpeg decodes straight at 1/2, 1/4 or 1/8 of the size.
        im.draft("RGB", _fit(width, height, limits.long_edge * _JPEG_DRAFT_FACTOR))
    im.decodermaxblock = _DECODE_BLOCK
    try:
        im.load()
    except Rejected:
        raise
    except Exception as exc:
        raise _pillow_failure(raw, fmt, exc) from None
    # HEIF: libheif has applied the irot/imir boxes (the orientation that counts in HEIF) and
    # pillow-heif reset the EXIF tag to 1; never rotate twice.
    orientation = 1 if fmt == "HEIF" else _exif_orientation(im)
    return _Decoded(im, width, height, orientation, im.info.get("icc_profile") or None)


def _pillow_failure(raw: bytes, fmt: str, exc: Exception) -> Rejected:
    if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return Rejected(
            RejectCode.DECOMPRESSION_BOMB,
            "The image declares more pixels than Pillow will decode safely.",
            {"format": fmt, "error": str(exc)[:300]},
        )
    return decode_failure(raw, fmt, exc)


def _exif_orientation(im: Image.Image) -> int:
    """The EXIF Orientation (1-8); 1 when absent or unreadable (bad EXIF is not a bad photo)."""
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # malformed EXIF: we drop it anyway
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _orientation_from_exif_bytes(data: bytes | None) -> int:
    if not data:
        return 1
    exif = Image.Exif()
    try:
        exif.load(data)
        value = exif.get(0x0112, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _decode_webp(decoder: LibWebP, raw: bytes, long_edge: int, max_pixels: int) -> _Decoded:
    """WebP through libwebp's scaler: the header is checked before any pixel is decoded."""
    try:
        feats = decoder.features(raw)
    except WebPFailure as exc:
        raise decode_failure(raw, "WEBP", OSError(str(exc))) from None
    check_header("WEBP", feats.width, feats.height, max_pixels, feats.has_animation)
    chunks = riff_chunks(raw, frozenset({b"EXIF", b"ICCP"}))
    try:
        image = decoder.decode(raw, feats, _fit(feats.width, feats.height, long_edge))
    except WebPFailure as exc:
        raise decode_failure(raw, "WEBP", OSError(str(exc))) from None
    return _Decoded(
        image,
        feats.width,
        feats.height,
        _orientation_from_exif_bytes(chunks.get(b"EXIF")),
        chunks.get(b"ICCP") or None,
    )


# --------------------------------------------------------------------------------------------
# Pixel pipeline: resize, flatten, colour-manage, orient, encode
# --------------------------------------------------------------------------------------------


def _downscale(img: Image.Image, long_edge: int) -> Image.Image:
    target = _fit(*img.size, long_edge)
    if target == img.size:
        return img
    return img.resize(target, _RESAMPLE, reducing_gap=_REDUCING_GAP)


def _to_8bit(img: Image.Image) -> Image.Image:
    """Bring every mode to L, LA, RGB, RGBA or CMYK with 8 bits per channel.

    Runs before the resize: palette indices must not be resampled (neighbouring indices are
    unrelated colours), and 16-bit data must be scaled before anything clips it.
    """
    mode = img.mode
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        return img
    if mode.startswith("I;16") or mode in ("I", "F"):
        # convert("L") would clip 16-bit values at 255 instead of scaling them: scale first.
        return img.point(lambda v: v / 256).convert("L")
    if mode in ("P", "PA"):
        return img.convert("RGBA" if img.has_transparency_data else "RGB")
    if mode in ("1",):
        return img.convert("L")
    if mode in ("La", "RGBa"):
        return img.convert(mode.upper())
    return img.convert("RGBA" if img.has_transparency_data else "RGB")


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite transparency onto white, the way a product photo on a page looks."""
    if img.mode not in ("LA", "RGBA"):
        return img
    base = img.mode[:-1]
    flat = Image.new(base, img.size, 255 if base == "L" else (255, 255, 255))
    flat.paste(img.convert(base), mask=img.getchannel("A"))
    return flat


@functools.cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@functools.lru_cache(maxsize=32)
def _transform_to_srgb(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform:
    # NOCACHE: lcms2's one-pixel cache is what makes a shared transform unsafe across threads.
    return ImageCms.buildTransform(
        ImageCms.ImageCmsProfile(io.BytesIO(icc)),
        _srgb(),
        mode,
        "RGB",
        flags=ImageCms.Flags.NOCACHE,
    )


def _to_srgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    """Convert to 8-bit sRGB through the embedded ICC profile, if any (then it is dropped)."""
    if icc:
        try:
            return cast(
                Image.Image, ImageCms.applyTransform(img, _transform_to_srgb(icc, img.mode))
            )
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
            # A broken or mismatched profile (e.g. a grey profile on an RGB image) is common
            # enough in the wild; the pixels are still fine, so treat them as sRGB.
            log.debug("ignoring unusable ICC profile (%d bytes): %s", len(icc), exc)
    return img if img.mode == "RGB" else img.convert("RGB")


def _apply_orientation(img: Image.Image, orientation: int) -> Image.Image:
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    return img if method is None else img.transpose(method)


def _encode_jpeg(img: Image.Image, quality: int) -> bytes:
    # Pillow's JPEG writer copies some im.info entries (the comment, dpi) into the output:
    # an empty info, and no exif/icc/xmp arguments, means a JFIF header and pixels only.
    img.info = {}
    out = io.BytesIO()
    img.save(
        out,
        "JPEG",
        quality=quality,
        optimize=False,  # a second Huffman pass: ~2-4% smaller, noticeably slower
        progressive=False,
        subsampling="4:2:0",
    )
    return out.getvalue()


def _mean_luma(img: Image.Image) -> float:
    return round(ImageStat.Stat(img.convert("L")).mean[0], 2)


# --------------------------------------------------------------------------------------------
# The public entry point
# --------------------------------------------------------------------------------------------


def normalize(
    raw: bytes,
    *,
    filename: str | None = None,
    long_edge: int = 768,
    quality: int = 85,
    max_bytes: int = 40_000_000,
    max_pixels: int = 60_000_000,
    allowed_formats: frozenset[str] = DEFAULT_FORMATS,
    max_jpeg_scans: int = DEFAULT_MAX_JPEG_SCANS,
    max_decode_s: float = DEFAULT_MAX_DECODE_S,
) -> CleanPhoto:
    """Validate, orient, downscale and strip one photo. Raises :class:`Rejected`.

    ``filename`` is only used to catch disguised files (its extension against the content).
    The result is an 8-bit sRGB baseline JPEG at ``quality`` whose long edge is at most
    ``long_edge`` (never upscaled), upright, with alpha flattened on white, and no metadata at
    all (no EXIF/GPS, XMP, IPTC, ICC, comment or thumbnail). Same input, same output bytes.
    A JPEG with more than ``max_jpeg_scans`` scans, or a decode using more than
    ``max_decode_s`` seconds of CPU, is rejected as ``too_complex``.
    """
    if not isinstance(raw, bytes):  # bytearray/memoryview: the decoders want immutable bytes
        raw = bytes(raw)
    fmt = check_container(raw, filename, max_bytes, allowed_formats)
    with _strict_decoding():
        decoded = _decode(raw, fmt, _Limits(long_edge, max_pixels, max_jpeg_scans, max_decode_s))
    img = _to_8bit(decoded.image)
    img = _downscale(img, long_edge)
    img = _flatten_alpha(img)
    img = _to_srgb(img, decoded.icc_profile)
    img = _apply_orientation(img, decoded.orientation)
    jpeg = _encode_jpeg(img, quality)
    return CleanPhoto(
        jpeg=jpeg,
        sha256=hashlib.sha256(jpeg).hexdigest(),
        raw_sha256=hashlib.sha256(raw).hexdigest(),
        width=img.width,
        height=img.height,
        source_format=fmt,
        source_width=decoded.source_width,
        source_height=decoded.source_height,
        source_bytes=len(raw),
        brightness=_mean_luma(img),
    )
