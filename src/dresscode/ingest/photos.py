"""Validate, normalize and hash one wardrobe photo.

Bytes in, values out: :func:`normalize` turns one uploaded photo into a small, upright, sRGB,
metadata-free JPEG (a :class:`CleanPhoto`) or raises :class:`Rejected` with a stable
:class:`RejectCode`. No lake, clock or network in here, so tests need nothing but bytes.

Decisions worth knowing (each has a test in ``tests/unit/test_images.py``):

* The format is sniffed from the magic bytes, never taken from the file name. When a name with a
  known image extension is given and the content is another image format (a PNG named
  ``.heic``), the photo is rejected as ``disguised_type``: a renamed file is suspicious, and
  quarantining it costs a user one re-upload. Unknown or missing extensions are not checked.
* Checks run cheapest first, and the first failing check names the reason: ``empty``,
  ``too_large``, ``not_an_image``, ``disguised_type``, ``unsupported_format``, then header
  checks (``decompression_bomb``, ``bad_dimensions``, ``animated``), then the decode
  (``truncated``, ``corrupt``). So an animated GIF is ``unsupported_format`` (no GIF is ever
  accepted, animated or not) and ``animated`` only ever names an animated PNG or WebP.
* Width × height from the header is checked against ``max_pixels`` *before* any pixel is
  decoded, and Pillow's own ``DecompressionBombWarning`` is turned into an error as well.
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

import ctypes
import ctypes.util
import functools
import glob
import hashlib
import io
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from PIL import Image, ImageCms, ImageFile, ImageStat

log = logging.getLogger(__name__)

DEFAULT_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP", "HEIF"})
"""Formats :func:`normalize` accepts unless told otherwise (names as :func:`sniff_format`)."""

MIN_SIDE = 32
"""Shortest side, in pixels, of a photo worth digitizing; smaller is an icon, not a garment."""

MAX_ASPECT = 8.0
"""Longest over shortest side. Panoramas and banners beyond this are not wardrobe photos."""

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


class RejectCode(StrEnum):
    """Why a photo was rejected. Values are stable: quarantine, metrics and runbooks use them."""

    EMPTY = "empty"
    TOO_LARGE = "too_large"
    NOT_AN_IMAGE = "not_an_image"
    DISGUISED_TYPE = "disguised_type"
    UNSUPPORTED_FORMAT = "unsupported_format"
    ANIMATED = "animated"
    TRUNCATED = "truncated"
    CORRUPT = "corrupt"
    DECOMPRESSION_BOMB = "decompression_bomb"
    BAD_DIMENSIONS = "bad_dimensions"


class Rejected(Exception):
    """A photo we will not process; ``code`` is stable, ``message`` is for people."""

    def __init__(self, code: RejectCode, message: str, detail: dict[str, Any] | None = None):
        super().__init__(code, message, detail)
        self.code = RejectCode(code)
        self.message = message
        self.detail: dict[str, Any] = dict(detail or {})

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, e.g. for a quarantine ``reason.json``."""
        return {"code": str(self.code), "message": self.message, "detail": self.detail}


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
# Sniffing and container checks (bytes only, no decoder involved)
# --------------------------------------------------------------------------------------------

_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
)
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_BMP_DIB_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})

_EXTENSION_FORMATS: dict[str, str] = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".jfif": "JPEG",
    ".png": "PNG",
    ".apng": "PNG",
    ".webp": "WEBP",
    ".heic": "HEIF",
    ".heif": "HEIF",
    ".heics": "HEIF",
    ".heifs": "HEIF",
    ".hif": "HEIF",
    ".avif": "AVIF",
    ".gif": "GIF",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".svg": "SVG",
    ".ico": "ICO",
    ".psd": "PSD",
    ".jxl": "JXL",
    ".jp2": "JPEG2000",
}


def sniff_format(raw: bytes) -> str | None:
    """Name the image format of ``raw`` from its magic bytes, or None if it is not an image.

    Returns "JPEG", "PNG", "WEBP" or "HEIF" for the accepted formats, and "AVIF", "GIF",
    "TIFF", "BMP", "SVG", "ICO", "PSD", "JXL" or "JPEG2000" for images we recognise but may
    not accept. Never looks at a file name.
    """
    head = bytes(raw[:64])
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp":
        return _sniff_isobmff(raw)
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    if head.startswith(b"BM") and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
        return "BMP"  # "BM" alone would also match text that starts with those letters
    if head.startswith(b"\x00\x00\x01\x00"):
        return "ICO"
    if head.startswith(b"8BPS"):
        return "PSD"
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL \r\n\x87\n"):
        return "JXL"
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or head.startswith(b"\xff\x4f\xff\x51"):
        return "JPEG2000"
    if _looks_like_svg(raw):
        return "SVG"
    return None


def _sniff_isobmff(raw: bytes) -> str | None:
    """HEIF or AVIF from an ``ftyp`` box: the major brand, else the compatible brands."""
    size = int.from_bytes(raw[0:4], "big")
    major = bytes(raw[8:12])
    compatible = {bytes(raw[i : i + 4]) for i in range(16, min(size, 256, len(raw)) - 3, 4)}
    if major in _AVIF_BRANDS:
        return "AVIF"
    if major in _HEIF_BRANDS - {b"mif1", b"msf1"}:
        return "HEIF"
    if compatible & _AVIF_BRANDS and not compatible & (_HEIF_BRANDS - {b"mif1", b"msf1"}):
        return "AVIF"
    if major in _HEIF_BRANDS or compatible & _HEIF_BRANDS:
        return "HEIF"
    return None  # an MP4/MOV/3GP video shares the ftyp box, and is not a photo


def _looks_like_svg(raw: bytes) -> bool:
    head = bytes(raw[:1024]).lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<?xml", b"<svg", b"<!doctype svg")) and b"<svg" in head


def _check_container(
    raw: bytes, filename: str | None, max_bytes: int, allowed: frozenset[str]
) -> str:
    """Checks that need only the bytes; returns the sniffed format."""
    if len(raw) == 0:
        raise Rejected(RejectCode.EMPTY, "The file is empty (0 bytes).", {"bytes": 0})
    if len(raw) > max_bytes:
        raise Rejected(
            RejectCode.TOO_LARGE,
            f"The file is {len(raw) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB.",
            {"bytes": len(raw), "max_bytes": max_bytes},
        )
    fmt = sniff_format(raw)
    if fmt is None:
        raise Rejected(
            RejectCode.NOT_AN_IMAGE,
            "The file is not an image (its first bytes match no image format).",
            {"head_hex": bytes(raw[:16]).hex(), "filename": filename},
        )
    claimed = _extension_format(filename)
    if claimed is not None and claimed != fmt:
        raise Rejected(
            RejectCode.DISGUISED_TYPE,
            f"The file is named like a {claimed} image but contains a {fmt} image.",
            {"format": fmt, "extension_format": claimed, "filename": filename},
        )
    if fmt not in allowed:
        raise Rejected(
            RejectCode.UNSUPPORTED_FORMAT,
            f"{fmt} images are not supported; accepted: {', '.join(sorted(allowed))}.",
            {"format": fmt, "allowed": sorted(allowed)},
        )
    return fmt


def _extension_format(filename: str | None) -> str | None:
    if not filename:
        return None
    return _EXTENSION_FORMATS.get(os.path.splitext(filename)[1].lower())


def _check_header(fmt: str, width: int, height: int, max_pixels: int, animated: bool) -> None:
    """Checks on what the header declares, before a single pixel is decoded."""
    size = {"width": width, "height": height}
    if width * height > max_pixels:
        raise Rejected(
            RejectCode.DECOMPRESSION_BOMB,
            f"The image declares {width}x{height} pixels, more than the {max_pixels:,} allowed.",
            {**size, "pixels": width * height, "max_pixels": max_pixels},
        )
    short, long = sorted((width, height))
    if short < MIN_SIDE or long > MAX_ASPECT * short:
        raise Rejected(
            RejectCode.BAD_DIMENSIONS,
            f"The image is {width}x{height} pixels; a photo needs sides of at least "
            f"{MIN_SIDE} px and an aspect ratio of at most {MAX_ASPECT:g}:1.",
            size,
        )
    if animated:
        raise Rejected(
            RejectCode.ANIMATED,
            f"The {fmt} image is animated; upload a still photo.",
            {"format": fmt, **size},
        )


# --------------------------------------------------------------------------------------------
# Failure classification: truncated or corrupt?
# --------------------------------------------------------------------------------------------

_TRUNCATION_HINTS = ("truncated", "end of file", "not enough data", "premature end")


def _decode_failure(raw: bytes, fmt: str, exc: BaseException) -> Rejected:
    """Turn a decoder exception into ``truncated`` (the data stops early) or ``corrupt``.

    The container structure decides where it can (chunks/boxes/segments that run past the end
    of the data); decoder messages are only a fallback, since their wording is not an API.
    """
    text = f"{type(exc).__name__}: {exc}"
    detail = {"format": fmt, "error": text[:300]}
    if _looks_truncated(raw, fmt) or any(h in text.lower() for h in _TRUNCATION_HINTS):
        return Rejected(
            RejectCode.TRUNCATED,
            f"The {fmt} file stops before the image ends (an incomplete upload or copy).",
            detail,
        )
    return Rejected(RejectCode.CORRUPT, f"The {fmt} file is damaged and cannot be decoded.", detail)


def _looks_truncated(raw: bytes, fmt: str) -> bool:
    checker = {
        "JPEG": _jpeg_truncated,
        "PNG": _png_truncated,
        "WEBP": _webp_truncated,
        "HEIF": _isobmff_truncated,
    }.get(fmt)
    return checker is not None and checker(raw)


# JPEG markers that carry a length field; everything else but the standalone ones is invalid.
_JPEG_SEGMENTS = frozenset([*range(0xC0, 0xD0), *range(0xDB, 0xE0), *range(0xE0, 0xF0), 0xFE])
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])


def _jpeg_truncated(raw: bytes) -> bool:
    """Headers running past the end, or no EOI after the first SOS.

    FF D9 cannot occur inside entropy-coded data (0xFF is stuffed as FF 00), so a missing EOI
    after SOS means the scan data was cut; data after EOI (e.g. a motion-photo video) is fine.
    """
    pos = 2
    while pos + 4 <= len(raw):
        if raw[pos] != 0xFF:
            return False  # garbage where a marker belongs: corrupt, not truncated
        marker = raw[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker not in _JPEG_SEGMENTS and marker != 0xDA:
            return False
        length = int.from_bytes(raw[pos + 2 : pos + 4], "big")
        if pos + 2 + length > len(raw):
            return True
        if marker == 0xDA:
            return raw.find(b"\xff\xd9", pos + 2 + length) < 0
        pos += 2 + length
    return True


def _png_truncated(raw: bytes) -> bool:
    """A chunk running past the end of the data, or no IEND chunk."""
    pos = 8
    while pos + 8 <= len(raw):
        length = int.from_bytes(raw[pos : pos + 4], "big")
        if pos + 12 + length > len(raw):
            return True
        if raw[pos + 4 : pos + 8] == b"IEND":
            return False
        pos += 12 + length
    return True


def _webp_truncated(raw: bytes) -> bool:
    return int.from_bytes(raw[4:8], "little") + 8 > len(raw)


def _isobmff_truncated(raw: bytes) -> bool:
    """A top-level box (usually ``mdat``) that claims more bytes than there are."""
    pos = 0
    while pos < len(raw):
        if pos + 8 > len(raw):
            return True
        size = int.from_bytes(raw[pos : pos + 4], "big")
        if size == 1:
            if pos + 16 > len(raw):
                return True
            size = int.from_bytes(raw[pos + 8 : pos + 16], "big")
        elif size == 0:
            return False  # the box runs to the end of the file by definition
        if size < 8:
            return False  # nonsense size: corrupt
        if pos + size > len(raw):
            return True
        pos += size
    return False


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


def _decode(raw: bytes, fmt: str, long_edge: int, max_pixels: int) -> _Decoded:
    if fmt == "WEBP":
        decoder = _libwebp()
        if decoder is not None:
            return decoder.decode(raw, long_edge, max_pixels)
    if fmt == "HEIF":
        _ensure_heif_opener()
    return _decode_with_pillow(raw, fmt, long_edge, max_pixels)


def _decode_with_pillow(raw: bytes, fmt: str, long_edge: int, max_pixels: int) -> _Decoded:
    try:
        im = Image.open(io.BytesIO(raw), formats=[fmt])  # parses the header only
    except Exception as exc:  # any decoder error on untrusted bytes means a bad file
        raise _pillow_failure(raw, fmt, exc) from None
    # No `with im:` on purpose: closing an ImageFile also invalidates its pixels, and the
    # BytesIO it reads from holds no OS resource.
    width, height = im.size
    # Only PNG (APNG) and WebP animate. Several frames in a JPEG (MPO: a depth map or second
    # view, as some phones write) or a HEIF (a burst, an edit) are not an animation: Pillow
    # opens the first/primary image, the photo every viewer shows.
    animated = fmt in ("PNG", "WEBP") and bool(getattr(im, "is_animated", False))
    _check_header(fmt, width, height, max_pixels, animated)
    if fmt == "JPEG":
        # DCT scaling: libjpeg decodes straight at 1/2, 1/4 or 1/8 of the size.
        im.draft("RGB", _fit(width, height, long_edge * _JPEG_DRAFT_FACTOR))
    try:
        im.load()
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
    return _decode_failure(raw, fmt, exc)


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


# ---- WebP through libwebp's scaler ---------------------------------------------------------
# Pillow decodes WebP through WebPAnimDecoder, always at full size into an RGBA canvas, and
# offers no draft(). libwebp itself can scale while decoding (the rescaler works on YUV rows,
# so a full-size RGB buffer never exists). We call it through ctypes on the libwebp that the
# Pillow wheel ships (or the system one), and fall back to Pillow when it cannot be loaded.

_WEBP_ABI = 0x0209  # decode.h ABI 2.x; libwebp accepts any minor version of major 2
_VP8_NOT_ENOUGH_DATA = 7
_MODE_RGB, _MODE_RGBA = 0, 1
_c_int = ctypes.c_int


class _WebPFeatures(ctypes.Structure):
    _fields_ = [
        ("width", _c_int),
        ("height", _c_int),
        ("has_alpha", _c_int),
        ("has_animation", _c_int),
        ("format", _c_int),
        ("pad", ctypes.c_uint32 * 5),
    ]


class _WebPRGBABuffer(ctypes.Structure):
    _fields_ = [("rgba", ctypes.c_void_p), ("stride", _c_int), ("size", ctypes.c_size_t)]


class _WebPYUVABuffer(ctypes.Structure):
    _fields_ = [
        *((name, ctypes.c_void_p) for name in ("y", "u", "v", "a")),
        *((name, _c_int) for name in ("y_stride", "u_stride", "v_stride", "a_stride")),
        *((name, ctypes.c_size_t) for name in ("y_size", "u_size", "v_size", "a_size")),
    ]


class _WebPBufferUnion(ctypes.Union):
    _fields_ = [("RGBA", _WebPRGBABuffer), ("YUVA", _WebPYUVABuffer)]


class _WebPDecBuffer(ctypes.Structure):
    _fields_ = [
        ("colorspace", _c_int),
        ("width", _c_int),
        ("height", _c_int),
        ("is_external_memory", _c_int),
        ("u", _WebPBufferUnion),
        ("pad", ctypes.c_uint32 * 4),
        ("private_memory", ctypes.c_void_p),
    ]


class _WebPDecoderOptions(ctypes.Structure):
    _fields_ = [
        (name, _c_int)
        for name in (
            "bypass_filtering",
            "no_fancy_upsampling",
            "use_cropping",
            "crop_left",
            "crop_top",
            "crop_width",
            "crop_height",
            "use_scaling",
            "scaled_width",
            "scaled_height",
            "use_threads",
            "dithering_strength",
            "flip",
            "alpha_dithering_strength",
        )
    ] + [("pad", ctypes.c_uint32 * 5)]


class _WebPDecoderConfig(ctypes.Structure):
    _fields_ = [
        ("input", _WebPFeatures),
        ("output", _WebPDecBuffer),
        ("options", _WebPDecoderOptions),
    ]


class _LibWebP:
    """Scaled WebP decode through libwebp's advanced API (``WebPDecode`` + ``use_scaling``)."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib
        lib.WebPGetFeaturesInternal.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.POINTER(_WebPFeatures),
            _c_int,
        ]
        lib.WebPInitDecoderConfigInternal.argtypes = [ctypes.POINTER(_WebPDecoderConfig), _c_int]
        lib.WebPDecode.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.POINTER(_WebPDecoderConfig),
        ]
        lib.WebPFreeDecBuffer.argtypes = [ctypes.POINTER(_WebPDecBuffer)]
        lib.WebPFreeDecBuffer.restype = None

    def new_config(self) -> _WebPDecoderConfig:
        config = _WebPDecoderConfig()
        if not self.lib.WebPInitDecoderConfigInternal(ctypes.byref(config), _WEBP_ABI):
            raise OSError(f"libwebp rejected decoder ABI version {_WEBP_ABI:#06x}")
        return config

    def decode(self, raw: bytes, long_edge: int, max_pixels: int) -> _Decoded:
        config = self.new_config()
        status = self.lib.WebPGetFeaturesInternal(
            raw, len(raw), ctypes.byref(config.input), _WEBP_ABI
        )
        if status != 0:
            raise _decode_failure(raw, "WEBP", OSError(f"WebPGetFeatures status {status}"))
        feats = config.input
        width, height = feats.width, feats.height
        _check_header("WEBP", width, height, max_pixels, bool(feats.has_animation))
        chunks = _riff_chunks(raw, frozenset({b"EXIF", b"ICCP"}))
        mode = "RGBA" if feats.has_alpha else "RGB"
        config.output.colorspace = _MODE_RGBA if feats.has_alpha else _MODE_RGB
        target = _fit(width, height, long_edge)
        if target != (width, height):
            config.options.use_scaling = 1
            config.options.scaled_width, config.options.scaled_height = target
        status = self.lib.WebPDecode(raw, len(raw), ctypes.byref(config))
        try:
            if status != 0:
                hint = "not enough data" if status == _VP8_NOT_ENOUGH_DATA else "bitstream error"
                raise _decode_failure(raw, "WEBP", OSError(f"WebPDecode status {status}: {hint}"))
            out = config.output
            buf = out.u.RGBA
            # One copy of the (small) output into Python memory, then libwebp frees its own.
            pixels = ctypes.string_at(buf.rgba, buf.size)
            image = Image.frombuffer(
                mode, (out.width, out.height), pixels, "raw", mode, buf.stride, 1
            )
        finally:
            self.lib.WebPFreeDecBuffer(ctypes.byref(config.output))
        return _Decoded(
            image,
            width,
            height,
            _orientation_from_exif_bytes(chunks.get(b"EXIF")),
            chunks.get(b"ICCP") or None,
        )


def _riff_chunks(raw: bytes, wanted: frozenset[bytes]) -> dict[bytes, bytes]:
    """First occurrence of each ``wanted`` top-level chunk of a RIFF/WebP file (EXIF, ICCP)."""
    chunks: dict[bytes, bytes] = {}
    pos = 12
    while pos + 8 <= len(raw):
        fourcc = raw[pos : pos + 4]
        size = int.from_bytes(raw[pos + 4 : pos + 8], "little")
        if fourcc in wanted and fourcc not in chunks:
            chunks[fourcc] = raw[pos + 8 : pos + 8 + size]
        pos += 8 + size + (size & 1)  # chunks are padded to an even size
    return chunks


_libwebp_lock = threading.Lock()
_libwebp_loaded = False
_libwebp_decoder: _LibWebP | None = None


def _libwebp() -> _LibWebP | None:
    """The scaled WebP decoder, or None when no compatible libwebp can be loaded."""
    global _libwebp_loaded, _libwebp_decoder
    if _libwebp_loaded:
        return _libwebp_decoder
    with _libwebp_lock:
        if not _libwebp_loaded:
            _libwebp_decoder = _load_libwebp()
            _libwebp_loaded = True
    return _libwebp_decoder


def _libwebp_candidates() -> list[str]:
    pil_dir = os.path.dirname(Image.__file__)
    found = [
        *sorted(glob.glob(os.path.join(pil_dir, os.pardir, "pillow.libs", "libwebp-*.so*"))),
        *sorted(glob.glob(os.path.join(pil_dir, ".dylibs", "libwebp*.dylib"))),
    ]
    system = ctypes.util.find_library("webp")
    return [*found, *([system] if system else [])]


def _load_libwebp() -> _LibWebP | None:
    for path in _libwebp_candidates():
        try:
            lib = ctypes.CDLL(path)
            if lib.WebPGetDecoderVersion() < 0x010000:  # the struct layouts above are >= 1.0
                continue
            decoder = _LibWebP(lib)
            decoder.new_config()  # raises if this libwebp does not speak our ABI
            return decoder
        except (OSError, AttributeError) as exc:
            log.debug("libwebp at %s unusable: %s", path, exc)
    log.info("libwebp not loadable through ctypes; WebP photos are decoded at full size")
    return None


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
            return ImageCms.applyTransform(img, _transform_to_srgb(icc, img.mode))
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
) -> CleanPhoto:
    """Validate, orient, downscale and strip one photo. Raises :class:`Rejected`.

    ``filename`` is only used to catch disguised files (its extension against the content).
    The result is an 8-bit sRGB baseline JPEG at ``quality`` whose long edge is at most
    ``long_edge`` (never upscaled), upright, with alpha flattened on white, and no metadata at
    all (no EXIF/GPS, XMP, IPTC, ICC, comment or thumbnail). Same input, same output bytes.
    """
    if not isinstance(raw, bytes):  # bytearray/memoryview: the decoders want immutable bytes
        raw = bytes(raw)
    fmt = _check_container(raw, filename, max_bytes, allowed_formats)
    with _strict_decoding():
        decoded = _decode(raw, fmt, long_edge, max_pixels)
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
