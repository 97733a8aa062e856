"""What a file is, from its bytes alone: the format sniffed from the magic bytes, the checks on
the container and on the header's declared size, and whether a decode failure means the data
stops early (``truncated``) or is damaged (``corrupt``).

No decoder runs in here. The checks raise :class:`~dresscode.ingest.rejects.Rejected`;
:func:`decode_failure` turns a decoder's exception into one.
"""

from __future__ import annotations

import math
import os
import re

from dresscode.ingest.rejects import RejectCode, Rejected

MIN_SIDE = 32
"""Shortest side, in pixels, of a photo worth digitizing; smaller is an icon, not a garment."""

MAX_ASPECT = 8.0
"""Longest over shortest side. Panoramas and banners beyond this are not wardrobe photos."""

DEFAULT_MAX_JPEG_SCANS = 64
"""Scans (SOS markers) a JPEG may have; ``DRESSCODE_IMAGE_MAX_JPEG_SCANS``.

A baseline JPEG has 1 (3 when not interleaved), libjpeg's and Pillow's progressive script
10, Photoshop's 3-5, mozjpeg's optimized scripts a dozen or so. Every scan is a pass over all
the blocks of its components whatever its size in bytes: a 75-byte refinement scan of a
7000x7000 photo costs ~24 ms of CPU (measured, libjpeg-turbo 3.2), so 3,000 of them in a
500 KB file cost over a minute. 64 scans bound that to ~2 s at the 60 MP pixel cap.
"""


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


def check_container(
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


def check_header(fmt: str, width: int, height: int, max_pixels: int, animated: bool) -> None:
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


# The next marker after a scan's entropy-coded data: FF followed by anything but a stuffed 00,
# a restart marker (D0-D7) or a fill byte (FF).
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def jpeg_scan_count(raw: bytes) -> int:
    """The number of scans (SOS segments) of the first image of a JPEG, from its bytes alone.

    Walks the segments (APPn payloads such as an EXIF thumbnail are skipped, not counted) and
    stops at the first EOI; what follows (an MPO's second image, a trailer) is not decoded.
    Costs one regular-expression pass over the data, no decoding.
    """
    count, pos, size = 0, 2, len(raw)
    while pos + 4 <= size:
        if raw[pos] != 0xFF:
            break  # garbage where a marker belongs: the decoder names it corrupt
        marker = raw[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # EOI
            break
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        pos += 2 + int.from_bytes(raw[pos + 2 : pos + 4], "big")
        if marker == 0xDA:
            count += 1
            found = _NEXT_MARKER.search(raw, pos)
            if found is None:
                break
            pos = found.start()
    return count


def check_jpeg_scans(raw: bytes, max_scans: int) -> None:
    """Refuse a JPEG with more scans than ``max_scans`` before any of them is decoded."""
    scans = jpeg_scan_count(raw)
    if scans > max_scans:
        raise Rejected(
            RejectCode.TOO_COMPLEX,
            f"The JPEG has {scans:,} scans, more than the {max_scans} allowed (photos have "
            "about 10); decoding it would take far longer than a photo should.",
            {"format": "JPEG", "scans": scans, "max_scans": max_scans},
        )


def over_decode_budget(fmt: str, cpu_s: float, max_decode_s: float, read: int) -> Rejected:
    """The rejection of a photo whose decode used more CPU time than ``max_decode_s``."""
    return Rejected(
        RejectCode.TOO_COMPLEX,
        f"Decoding the {fmt} image took more than {max_decode_s:g} s of CPU time, the limit "
        "for one photo; it was stopped.",
        # Rounded up, to the millisecond: a detail never says a stopped decode was within its limit.
        {
            "format": fmt,
            "cpu_s": math.ceil(cpu_s * 1000) / 1000,
            "max_decode_s": max_decode_s,
            "read_bytes": read,
        },
    )


# --------------------------------------------------------------------------------------------
# Failure classification: truncated or corrupt?
# --------------------------------------------------------------------------------------------

_TRUNCATION_HINTS = ("truncated", "end of file", "not enough data", "premature end")


def decode_failure(raw: bytes, fmt: str, exc: BaseException) -> Rejected:
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
