"""libwebp's scaled decode, through ctypes.

Pillow decodes WebP through WebPAnimDecoder, always at full size into an RGBA canvas, and
offers no draft(). libwebp itself can scale while decoding (the rescaler works on YUV rows,
so a full-size RGB buffer never exists). We call it through ctypes on the libwebp that the
Pillow wheel ships (or the system one); :func:`libwebp` is None when none can be loaded, and
the caller falls back to Pillow.

This module is the binding only: the checks on what a header declares stay with the caller,
which gets the features first and decides whether to decode.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import logging
import os
import threading
from dataclasses import dataclass

from PIL import Image

log = logging.getLogger(__name__)

WEBP_ABI = 0x0209  # decode.h ABI 2.x; libwebp accepts any minor version of major 2
VP8_NOT_ENOUGH_DATA = 7
MODE_RGB, MODE_RGBA = 0, 1
c_int = ctypes.c_int


class WebPFeatures(ctypes.Structure):
    _fields_ = [
        ("width", c_int),
        ("height", c_int),
        ("has_alpha", c_int),
        ("has_animation", c_int),
        ("format", c_int),
        ("pad", ctypes.c_uint32 * 5),
    ]


class WebPRGBABuffer(ctypes.Structure):
    _fields_ = [("rgba", ctypes.c_void_p), ("stride", c_int), ("size", ctypes.c_size_t)]


class WebPYUVABuffer(ctypes.Structure):
    _fields_ = [
        *((name, ctypes.c_void_p) for name in ("y", "u", "v", "a")),
        *((name, c_int) for name in ("y_stride", "u_stride", "v_stride", "a_stride")),
        *((name, ctypes.c_size_t) for name in ("y_size", "u_size", "v_size", "a_size")),
    ]


class WebPBufferUnion(ctypes.Union):
    _fields_ = [("RGBA", WebPRGBABuffer), ("YUVA", WebPYUVABuffer)]


class WebPDecBuffer(ctypes.Structure):
    _fields_ = [
        ("colorspace", c_int),
        ("width", c_int),
        ("height", c_int),
        ("is_external_memory", c_int),
        ("u", WebPBufferUnion),
        ("pad", ctypes.c_uint32 * 4),
        ("private_memory", ctypes.c_void_p),
    ]


class WebPDecoderOptions(ctypes.Structure):
    _fields_ = [
        (name, c_int)
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


class WebPDecoderConfig(ctypes.Structure):
    _fields_ = [
        ("input", WebPFeatures),
        ("output", WebPDecBuffer),
        ("options", WebPDecoderOptions),
    ]


class WebPFailure(Exception):
    """libwebp refused the data; ``str()`` is its status, worded for the failure classifier."""


@dataclass(frozen=True)
class Features:
    """What a WebP bitstream's header declares."""

    width: int
    height: int
    has_alpha: bool
    has_animation: bool


class LibWebP:
    """Scaled WebP decode through libwebp's advanced API (``WebPDecode`` + ``use_scaling``)."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib
        lib.WebPGetFeaturesInternal.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.POINTER(WebPFeatures),
            c_int,
        ]
        lib.WebPInitDecoderConfigInternal.argtypes = [ctypes.POINTER(WebPDecoderConfig), c_int]
        lib.WebPDecode.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.POINTER(WebPDecoderConfig),
        ]
        lib.WebPFreeDecBuffer.argtypes = [ctypes.POINTER(WebPDecBuffer)]
        lib.WebPFreeDecBuffer.restype = None

    def new_config(self) -> WebPDecoderConfig:
        config = WebPDecoderConfig()
        if not self.lib.WebPInitDecoderConfigInternal(ctypes.byref(config), WEBP_ABI):
            raise OSError(f"libwebp rejected decoder ABI version {WEBP_ABI:#06x}")
        return config

    def features(self, raw: bytes) -> Features:
        """The header's size, alpha and animation flags; raises WebPFailure."""
        feats = WebPFeatures()
        status = self.lib.WebPGetFeaturesInternal(raw, len(raw), ctypes.byref(feats), WEBP_ABI)
        if status != 0:
            raise WebPFailure(f"WebPGetFeatures status {status}")
        return Features(feats.width, feats.height, bool(feats.has_alpha), bool(feats.has_animation))

    def decode(self, raw: bytes, features: Features, size: tuple[int, int]) -> Image.Image:
        """Decode at ``size`` (scaled by libwebp when smaller than the source); raises WebPFailure."""
        config = self.new_config()
        mode = "RGBA" if features.has_alpha else "RGB"
        config.output.colorspace = MODE_RGBA if features.has_alpha else MODE_RGB
        if size != (features.width, features.height):
            config.options.use_scaling = 1
            config.options.scaled_width, config.options.scaled_height = size
        status = self.lib.WebPDecode(raw, len(raw), ctypes.byref(config))
        try:
            if status != 0:
                hint = "not enough data" if status == VP8_NOT_ENOUGH_DATA else "bitstream error"
                raise WebPFailure(f"WebPDecode status {status}: {hint}")
            out = config.output
            buf = out.u.RGBA
            # One copy of the (small) output into Python memory, then libwebp frees its own.
            pixels = ctypes.string_at(buf.rgba, buf.size)
            return Image.frombuffer(
                mode, (out.width, out.height), pixels, "raw", mode, buf.stride, 1
            )
        finally:
            self.lib.WebPFreeDecBuffer(ctypes.byref(config.output))


def riff_chunks(raw: bytes, wanted: frozenset[bytes]) -> dict[bytes, bytes]:
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


_lock = threading.Lock()
_loaded = False
_decoder: LibWebP | None = None


def libwebp() -> LibWebP | None:
    """The scaled WebP decoder, or None when no compatible libwebp can be loaded."""
    global _loaded, _decoder
    if _loaded:
        return _decoder
    with _lock:
        if not _loaded:
            _decoder = _load()
            _loaded = True
    return _decoder


def _candidates() -> list[str]:
    pil_dir = os.path.dirname(Image.__file__)
    found = [
        *sorted(glob.glob(os.path.join(pil_dir, os.pardir, "pillow.libs", "libwebp-*.so*"))),
        *sorted(glob.glob(os.path.join(pil_dir, ".dylibs", "libwebp*.dylib"))),
    ]
    system = ctypes.util.find_library("webp")
    return [*found, *([system] if system else [])]


def _load() -> LibWebP | None:
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
            if lib.WebPGetDecoderVersion() < 0x010000:  # the struct layouts above are >= 1.0
                continue
            decoder = LibWebP(lib)
            decoder.new_config()  # raises if this libwebp does not speak our ABI
            return decoder
        except (OSError, AttributeError) as exc:
            log.debug("libwebp at %s unusable: %s", path, exc)
    log.info("libwebp not loadable through ctypes; WebP photos are decoded at full size")
    return None
