"""Synthetic wardrobe photos with their true labels, and a catalogue of bad and tricky files.

Used by ``dresscode seed``, the tests and the golden set. Everything is deterministic for a
seed: the same seed gives the same pixels, the same labels and (for JPEG/PNG/WebP) the same
bytes. Drawings are deliberately simple (flat garment silhouettes on a textured background)
so they are cheap to make, while the encoded files look like phone photos where it matters
for the pipeline: EXIF with GPS and an Orientation tag, XMP, a JPEG comment, sensor-like grain.

The labels use the closed vocabularies of ``include/prompts/wardrobe-digitizer/v1.yaml``, and
every colour named in a label is a :data:`PALETTE` colour actually used to draw that item.
"""

from __future__ import annotations

import functools
import io
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import ExifTags, Image, ImageChops, ImageCms, ImageDraw, PngImagePlugin

from dresscode.ingest import photos as images
from dresscode.ingest.photos import RejectCode

PALETTE: dict[str, str] = {
    "black": "#1b1b1d",
    "white": "#f2f1ec",
    "grey": "#8a8d91",
    "navy": "#1f2a44",
    "blue": "#2f5fa7",
    "light blue": "#9cc3e6",
    "red": "#b3262e",
    "burgundy": "#6d1a2c",
    "pink": "#e8a3b5",
    "orange": "#e07a1f",
    "yellow": "#e9c46a",
    "green": "#2e7d32",
    "olive": "#6b6b2a",
    "beige": "#d8c3a0",
    "camel": "#c19a6b",
    "brown": "#6b4226",
    "purple": "#6a4c93",
    "teal": "#1f7a7a",
}
"""Colour name -> hex of every colour a garment can be drawn in (labels use these exactly)."""

# Backgrounds are never labelled, so they stay out of PALETTE: bed linen, floorboards, rug.
_BACKGROUNDS = ("#e9e4da", "#c9b08e", "#b7b9bc", "#dcd3c4", "#a88f74")

# Vocabularies of the digitizer schema (v1). Kept here as tuples so tests can compare them with
# the YAML; `samples` must not read prompt files at import time.
CATEGORIES = ("top", "bottom", "dress", "outerwear", "footwear", "bag", "accessory")
PATTERNS = ("solid", "striped", "checked", "floral", "dotted", "graphic", "animal", "other")
WARMTH_LEVELS = ("light", "medium", "warm", "heavy")
FORMALITY_LEVELS = ("casual", "smart_casual", "business", "formal", "sport")
SEASONS = ("spring", "summer", "autumn", "winter")


@dataclass
class LabeledItem:
    """One garment as the digitizer should report it (schema: wardrobe-digitizer v1)."""

    category: str
    subcategory: str
    colors: list[tuple[str, str]]
    """(name, "#rrggbb"), dominant first, 1-3 entries."""
    pattern: str
    warmth: str
    formality: str
    seasons: list[str]
    water_resistant: bool
    material: str
    description: str

    def to_json(self) -> dict[str, Any]:
        """The item exactly as the digitizer's JSON answer spells it."""
        item = asdict(self)
        item["colors"] = [{"name": n, "hex": h} for n, h in self.colors]
        return item


# --------------------------------------------------------------------------------------------
# Garments: silhouettes in a unit box, and what each kind is
# --------------------------------------------------------------------------------------------

# Silhouettes as "x,y" points in percent of the item's box (x right, y down).
_SHAPES: dict[str, str] = {
    "tshirt": "30,5 42,10 58,10 70,5 95,25 85,38 75,32 75,95 25,95 25,32 15,38 5,25",
    "longsleeve": "30,5 42,10 58,10 70,5 92,20 98,80 86,82 76,35 76,95 24,95 24,35 14,82 2,80 8,20",
    "coat": "32,2 50,14 68,2 92,15 99,78 87,80 79,36 80,99 20,99 21,36 13,80 1,78 8,15",
    "trousers": "25,3 75,3 80,97 58,97 50,35 42,97 20,97",
    "dress": "38,3 62,3 64,30 86,97 14,97 36,30",
    "sneaker": "8,55 40,52 52,66 88,72 93,84 90,90 8,90",
    "boot": "25,8 52,8 54,60 88,70 93,84 90,92 25,92",
    "bag": "15,40 85,40 91,95 9,95",
    "beanie": "20,75 22,45 35,26 50,21 65,26 78,45 80,75",
    "sunhat": "5,62 30,56 32,32 50,26 68,32 70,56 95,62 70,70 30,70",
}


def _polygon(shape: str, width: int, height: int) -> list[tuple[float, float]]:
    points = (point.split(",") for point in _SHAPES[shape].split())
    return [(float(x) * width / 100, float(y) * height / 100) for x, y in points]


@dataclass(frozen=True)
class _Kind:
    shape: str
    category: str
    subcategory: str
    patterns: tuple[str, ...]
    warmth: tuple[str, ...]
    formality: tuple[str, ...]
    seasons: tuple[str, ...]
    materials: tuple[str, ...]
    colors: tuple[str, ...]
    water_resistant: bool = False
    aspect: float = 1.0  # height / width of the drawing box
    extras: tuple[str, ...] = field(default=())  # "handle": a bag strap


_KINDS: tuple[_Kind, ...] = (
    _Kind("tshirt", "top", "t-shirt", ("solid", "striped", "dotted"), ("light",), ("casual",),
          ("spring", "summer"), ("cotton",),
          ("white", "black", "grey", "navy", "red", "yellow", "green", "pink", "light blue")),
    _Kind("longsleeve", "top", "shirt", ("solid", "striped", "checked"), ("light", "medium"),
          ("smart_casual", "business"), ("spring", "summer", "autumn"), ("cotton", "linen"),
          ("white", "light blue", "blue", "pink", "beige")),
    _Kind("longsleeve", "top", "sweater", ("solid", "striped"), ("warm",), ("casual",),
          ("autumn", "winter"), ("wool", "cashmere"),
          ("grey", "navy", "burgundy", "beige", "green", "camel")),
    _Kind("trousers", "bottom", "jeans", ("solid",), ("medium",), ("casual",),
          ("spring", "autumn", "winter"), ("denim",), ("blue", "navy", "black", "light blue")),
    _Kind("trousers", "bottom", "trousers", ("solid", "checked"), ("medium",),
          ("smart_casual", "business"), ("spring", "autumn", "winter"), ("wool", "cotton"),
          ("grey", "black", "navy", "beige", "olive", "camel")),
    _Kind("dress", "dress", "dress", ("solid", "dotted", "striped"), ("light",),
          ("smart_casual", "formal"), ("spring", "summer"), ("viscose", "cotton", "silk"),
          ("red", "black", "navy", "yellow", "green", "pink", "purple", "teal")),
    _Kind("coat", "outerwear", "coat", ("solid", "checked"), ("warm", "heavy"),
          ("smart_casual", "business"), ("autumn", "winter"), ("wool",),
          ("camel", "grey", "black", "navy", "brown"), aspect=1.2),
    _Kind("coat", "outerwear", "raincoat", ("solid",), ("medium",), ("casual",),
          ("spring", "autumn"), ("polyester",), ("yellow", "olive", "navy", "beige", "red"),
          water_resistant=True, aspect=1.2),
    _Kind("sneaker", "footwear", "sneakers", ("solid",), ("medium",), ("casual", "sport"),
          ("spring", "summer", "autumn"), ("canvas", "leather"), ("white", "black", "grey")),
    _Kind("boot", "footwear", "boots", ("solid",), ("warm",), ("casual", "smart_casual"),
          ("autumn", "winter"), ("leather",), ("brown", "black", "camel"),
          water_resistant=True),
    _Kind("bag", "bag", "tote bag", ("solid", "striped"), ("light",), ("casual",),
          ("spring", "summer", "autumn", "winter"), ("canvas", "leather"),
          ("beige", "black", "brown", "navy", "camel"), extras=("handle",)),
    _Kind("beanie", "accessory", "beanie", ("solid", "striped"), ("warm",), ("casual",),
          ("winter",), ("wool",), ("grey", "black", "burgundy", "orange", "navy", "green")),
    _Kind("sunhat", "accessory", "sun hat", ("solid",), ("light",), ("casual",), ("summer",),
          ("straw",), ("beige", "camel", "white"), aspect=0.7),
)  # fmt: skip


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    value = int(hex_colour.lstrip("#"), 16)
    return (value >> 16) & 255, (value >> 8) & 255, value & 255


def _label(kind: _Kind, rng: random.Random) -> LabeledItem:
    """Choose what to draw; the label is decided first and the drawing follows it."""
    pattern = rng.choice(kind.patterns)
    base = rng.choice(kind.colors)
    colors = [(base, PALETTE[base])]
    if pattern != "solid":
        accent = rng.choice([c for c in PALETTE if c != base and _contrast(c, base)])
        colors.append((accent, PALETTE[accent]))
    pattern_word = "" if pattern == "solid" else f" {pattern}"
    material = rng.choice(kind.materials)
    return LabeledItem(
        category=kind.category,
        subcategory=kind.subcategory,
        colors=colors,
        pattern=pattern,
        warmth=rng.choice(kind.warmth),
        formality=rng.choice(kind.formality),
        seasons=list(kind.seasons),
        water_resistant=kind.water_resistant,
        material=material,
        description=f"{base.capitalize()}{pattern_word} {material} {kind.subcategory}.",
    )


def _contrast(a: str, b: str) -> bool:
    """Accent colours must be tell-apart-able from the base colour (sum of channel gaps)."""
    return sum(abs(x - y) for x, y in zip(_rgb(PALETTE[a]), _rgb(PALETTE[b]), strict=True)) > 180


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------


def _grid(n: int) -> tuple[int, int]:
    return {1: (1, 1), 2: (2, 1), 3: (3, 1), 4: (2, 2)}[n]


def _fill(size: tuple[int, int], item: LabeledItem) -> Image.Image:
    """The garment's fabric: its base colour, with stripes, checks or dots in the accent."""
    base = _rgb(item.colors[0][1])
    fabric = Image.new("RGB", size, base)
    if item.pattern == "solid":
        return fabric
    accent = _rgb(item.colors[1][1])
    draw = ImageDraw.Draw(fabric)
    w, h = size
    step = max(6, min(w, h) // 10)
    if item.pattern == "striped":
        for y in range(0, h, step):
            draw.rectangle((0, y, w, y + step // 3), fill=accent)
    elif item.pattern == "checked":
        for x in range(0, w, step):
            draw.rectangle((x, 0, x + step // 5, h), fill=accent)
        for y in range(0, h, step):
            draw.rectangle((0, y, w, y + step // 5), fill=accent)
    elif item.pattern == "dotted":
        r = max(2, step // 5)
        for y in range(step // 2, h, step):
            for x in range(step // 2, w, step):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=accent)
    return fabric


def _draw_item(
    canvas: Image.Image, kind: _Kind, item: LabeledItem, box: tuple[int, int, int, int]
) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    draw.polygon(_polygon(kind.shape, w, h), fill=255)
    if "handle" in kind.extras:
        draw.arc((0.3 * w, 0.12 * h, 0.7 * w, 0.62 * h), 180, 360, fill=255, width=max(3, w // 25))
    shadow = mask.point(lambda v: v * 45 // 255)  # a faint contact shadow, offset down-right
    offset = max(2, w // 60)
    canvas.paste((0, 0, 0), (x0 + offset, y0 + offset), shadow)
    canvas.paste(_fill((w, h), item), (x0, y0), mask)


def _texture(size: tuple[int, int], rng: random.Random, dark: bool) -> Image.Image:
    """Lighting and sensor grain as one L layer (multiplied over the drawing).

    A radial falloff (darker corners, like a phone lens) blended with per-pixel noise; the noise
    gives the encoded files a phone-photo-like size and decode cost instead of flat colour.
    """
    w, h = size
    light = Image.radial_gradient("L").resize(size, Image.Resampling.BILINEAR)
    top = 110 if dark else 255
    falloff = 70 if dark else 40  # how much darker the corners are, in 1/255
    light = light.point(lambda v: top - v * falloff // 255)
    grain = Image.frombytes("L", size, rng.randbytes(w * h))
    return Image.blend(light, grain, 0.06)


Restyle = Callable[[LabeledItem, tuple[str, ...]], LabeledItem]
"""A change to one item's label before it is drawn; gets the colours its kind comes in."""


def wardrobe_photo(
    seed: int,
    *,
    size: tuple[int, int] = (1600, 1200),
    n_items: int | None = None,
    dark: bool = False,
    restyle: Restyle | None = None,
) -> tuple[Image.Image, list[LabeledItem]]:
    """A synthetic photo of 1-4 garments laid out flat, and their true labels.

    Deterministic for ``(seed, size, n_items, dark)``. ``dark=True`` simulates a dim room
    (for brightness-drift tests); the labels do not change with it. ``restyle`` changes each
    item's label (colour, pattern) before it is drawn, leaving the layout as the seed made it:
    the same garments in the same places in another colour, a near-duplicate's hard negative.
    """
    rng = random.Random(seed)
    canvas, items = _compose(rng, size, n_items, restyle)
    texture = _texture(size, rng, dark)
    photo = ImageChops.multiply(canvas, Image.merge("RGB", (texture, texture, texture)))
    return photo, items


def _compose(
    rng: random.Random,
    size: tuple[int, int],
    n_items: int | None,
    restyle: Restyle | None = None,
) -> tuple[Image.Image, list[LabeledItem]]:
    """The flat drawing: garments in exact PALETTE colours on a plain background, in a grid."""
    n = n_items if n_items is not None else rng.randint(1, 4)
    if not 1 <= n <= 4:
        raise ValueError(f"n_items must be 1-4, not {n}")
    width, height = size
    canvas = Image.new("RGB", size, _rgb(rng.choice(_BACKGROUNDS)))
    cols, rows = _grid(n)
    cell_w, cell_h = width // cols, height // rows
    items = []
    for index, kind in enumerate(rng.sample(_KINDS, n)):
        item = _label(kind, rng)
        if restyle is not None:  # after _label: the seed's rng draws the same layout
            item = restyle(item, kind.colors)
        col, row = index % cols, index // cols
        side = int(min(cell_w, cell_h / kind.aspect) * rng.uniform(0.72, 0.88))
        box_w, box_h = side, int(side * kind.aspect)
        x0 = col * cell_w + (cell_w - box_w) // 2 + rng.randint(-cell_w // 20, cell_w // 20)
        y0 = row * cell_h + (cell_h - box_h) // 2 + rng.randint(-cell_h // 20, cell_h // 20)
        x0 = min(max(x0, col * cell_w), (col + 1) * cell_w - box_w)
        y0 = min(max(y0, row * cell_h), (row + 1) * cell_h - box_h)
        _draw_item(canvas, kind, item, (x0, y0, x0 + box_w, y0 + box_h))
        items.append(item)
    return canvas, items


# --------------------------------------------------------------------------------------------
# Encoding like a phone: EXIF (GPS, orientation), XMP, comment
# --------------------------------------------------------------------------------------------

# Where the synthetic photos were "taken": Paris, 48°51'29.6"N 2°17'40.2"E.
GPS_LATITUDE = (48.0, 51.0, 29.6)
GPS_LONGITUDE = (2.0, 17.0, 40.2)

_XMP = (
    b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/" '
    b'exif:GPSLatitude="48,51.4933N" exif:GPSLongitude="2,17.67E" '
    b'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreatorTool="dresscode.local.samples"/>'
    b'</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)
_COMMENT = b"dresscode synthetic photo"

# The inverse of each EXIF orientation's display transform: the stored pixels are the upright
# picture put through this, so a viewer applying the orientation shows it upright again.
_STORE_FOR_ORIENTATION: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def make_exif(*, gps: bool = True, orientation: int = 1, padding: int = 0) -> Image.Exif:
    """A phone-like EXIF block: make/model/time, the Orientation tag, GPS if asked.

    ``padding`` adds a MakerNote of that many bytes (phones write tens of KB of them).
    """
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Dresscode"
    exif[ExifTags.Base.Model] = "Synthetic Camera 1"
    exif[ExifTags.Base.DateTime] = "2026:03:14 09:26:53"
    exif[ExifTags.Base.Orientation] = orientation
    if padding:
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.MakerNote] = b"\x5a" * padding
    if gps:
        info = exif.get_ifd(ExifTags.IFD.GPSInfo)
        info[ExifTags.GPS.GPSLatitudeRef] = "N"
        info[ExifTags.GPS.GPSLatitude] = GPS_LATITUDE
        info[ExifTags.GPS.GPSLongitudeRef] = "E"
        info[ExifTags.GPS.GPSLongitude] = GPS_LONGITUDE
    return exif


def encode(
    img: Image.Image,
    fmt: str,
    *,
    exif_gps: bool = True,
    orientation: int = 1,
    quality: int = 90,
) -> bytes:
    """Encode an upright picture as a phone would: ``fmt`` is JPEG, PNG, WEBP or HEIC.

    Embeds EXIF (with GPS when ``exif_gps``) whose Orientation tag is ``orientation``, the
    pixels stored rotated so that applying that orientation shows ``img`` upright; an XMP packet
    (with GPS too) in every format; and a comment in JPEG. HEIC is HEVC in 512 px grid tiles,
    like an iPhone's, encoded with x265's fastest preset to keep seeding quick.
    """
    if not 1 <= orientation <= 8:
        raise ValueError(f"EXIF orientation must be 1-8, not {orientation}")
    stored = img.transpose(_STORE_FOR_ORIENTATION[orientation]) if orientation != 1 else img
    exif = make_exif(gps=exif_gps, orientation=orientation).tobytes()
    return _save(stored, fmt, quality=quality, exif=exif, xmp=_XMP)


def _save(img: Image.Image, fmt: str, *, quality: int = 90, **meta: Any) -> bytes:
    """Encode with the given metadata keyword arguments (exif, xmp, icc_profile, ...)."""
    fmt = fmt.upper()
    out = io.BytesIO()
    if fmt == "JPEG":
        img.save(out, "JPEG", quality=quality, comment=_COMMENT, **meta)
    elif fmt == "PNG":
        # Pillow's PNG writer has no xmp=; Adobe's tools put XMP in this iTXt chunk.
        if xmp := meta.pop("xmp", None):
            info = PngImagePlugin.PngInfo()
            info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"))
            meta["pnginfo"] = info
        img.save(out, "PNG", compress_level=1, **meta)
    elif fmt == "WEBP":
        img.save(out, "WEBP", quality=quality, method=2, **meta)
    elif fmt in ("HEIC", "HEIF"):
        images._ensure_heif_opener()  # the one place pillow-heif's options are set
        # x265 quality scales differently from JPEG's: 90 would make 8 MB files; phones sit
        # near 50-60 on this scale.
        img.save(
            out, "HEIF", quality=min(quality, 60), tile_size=512,
            enc_params={"preset": "ultrafast"}, **meta,
        )  # fmt: skip
    else:
        raise ValueError(f"cannot encode samples as {fmt}")
    return out.getvalue()


# --------------------------------------------------------------------------------------------
# Bad files (each must be rejected) and tricky files (each must be accepted)
# --------------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 10_000, height: int = 8_000, rows: int = 64) -> bytes:
    """A PNG of a few KB whose header declares ``width`` x ``height`` pixels.

    Only the first ``rows`` rows of (zero) pixel data are present: the point is the header,
    which is all a safe decoder should read before refusing it.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    scanlines = (b"\x00" + b"\x00" * (3 * width)) * rows
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(scanlines, 9))
        + _png_chunk(b"IEND", b"")
    )


def _small_photo(seed: int = 7, size: tuple[int, int] = (320, 240)) -> Image.Image:
    return wardrobe_photo(seed, size=size, n_items=2)[0]


@functools.cache
def _bad_files() -> tuple[tuple[str, bytes, RejectCode], ...]:
    photo = _small_photo()
    jpeg = _save(photo, "JPEG")
    heic = _save(photo, "HEIC")
    png = _save(photo, "PNG")
    frames = [photo, photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]

    def animated(fmt: str) -> bytes:
        out = io.BytesIO()
        frames[0].save(out, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
        return out.getvalue()

    def still(fmt: str) -> bytes:
        out = io.BytesIO()
        photo.save(out, fmt)
        return out.getvalue()

    panorama = io.BytesIO()
    Image.new("RGB", (30_000, 10), (200, 180, 160)).save(panorama, "PNG", compress_level=1)
    garbage = random.Random(13).randbytes(4096)
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"/>'
    return (
        ("empty.jpg", b"", RejectCode.EMPTY),
        ("notes.jpg", b"Shopping list: socks, a raincoat, two white shirts.\n" * 20,
         RejectCode.NOT_AN_IMAGE),
        ("renamed_png.heic", png, RejectCode.DISGUISED_TYPE),
        ("truncated.jpg", jpeg[: len(jpeg) * 6 // 10], RejectCode.TRUNCATED),
        ("truncated.heic", heic[: len(heic) // 2], RejectCode.TRUNCATED),
        ("truncated.png", png[: len(png) // 2], RejectCode.TRUNCATED),
        ("bomb.png", bomb_png(), RejectCode.DECOMPRESSION_BOMB),
        ("panorama.png", panorama.getvalue(), RejectCode.BAD_DIMENSIONS),
        ("animated.webp", animated("WEBP"), RejectCode.ANIMATED),
        ("animated.png", animated("PNG"), RejectCode.ANIMATED),
        ("animated.gif", animated("GIF"), RejectCode.UNSUPPORTED_FORMAT),
        ("scan.bmp", still("BMP"), RejectCode.UNSUPPORTED_FORMAT),
        ("scan.tiff", still("TIFF"), RejectCode.UNSUPPORTED_FORMAT),
        ("logo.svg", svg, RejectCode.UNSUPPORTED_FORMAT),
        # SOI, then a marker that does not exist, then noise: what a bad disk sector looks like.
        ("corrupt.jpg", b"\xff\xd8\xff\x13" + garbage, RejectCode.CORRUPT),
    )  # fmt: skip


def bad_files() -> dict[str, tuple[bytes, RejectCode]]:
    """Filename -> (bytes, the reject code :func:`dresscode.ingest.photos.normalize` must give)."""
    return {name: (data, code) for name, data, code in _bad_files()}


def adobe_rgb_icc() -> bytes:
    """A minimal ICC v2 display profile with Adobe RGB (1998) primaries and gamma 2.2.

    ``ImageCms.createProfile`` only makes sRGB, LAB and XYZ profiles, so this builds the
    matrix/TRC profile by hand: header, description, white point, three colorants (Bradford-
    adapted to D50, from the Adobe RGB specification) and three identical tone curves.
    """

    def s15f16(*values: float) -> bytes:
        return b"".join(struct.pack(">i", round(v * 65536)) for v in values)

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ \x00\x00\x00\x00" + s15f16(x, y, z)

    name = b"Adobe RGB (1998) compatible (dresscode)"
    desc = (
        b"desc\x00\x00\x00\x00" + struct.pack(">I", len(name) + 1) + name + b"\x00"
        + b"\x00" * 8 + b"\x00\x00" + b"\x00" + b"\x00" * 67
    )  # fmt: skip
    curve = b"curv\x00\x00\x00\x00" + struct.pack(">IH", 1, 563) + b"\x00\x00"  # 2.19921875
    tags = [
        (b"desc", desc),
        (b"cprt", b"text\x00\x00\x00\x00No copyright, synthetic test profile\x00"),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(0.60974, 0.31111, 0.01947)),
        (b"gXYZ", xyz(0.20528, 0.62567, 0.06087)),
        (b"bXYZ", xyz(0.14919, 0.06322, 0.74457)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, payload in tags:
        payload += b"\x00" * (-len(payload) % 4)  # tags start on 4-byte boundaries
        table += signature + struct.pack(">II", offset + len(data), len(payload))
        data += payload
    body = struct.pack(">I", len(tags)) + table + data
    header = (
        struct.pack(">I", 128 + len(body)) + b"\x00" * 4 + b"\x02\x10\x00\x00"
        + b"mntr" + b"RGB " + b"XYZ " + struct.pack(">6H", 2026, 1, 1, 0, 0, 0)
        + b"acsp" + b"\x00" * 24 + struct.pack(">I", 0) + s15f16(0.9642, 1.0, 0.8249)
        + b"\x00" * 48
    )  # fmt: skip
    assert len(header) == 128
    return header + body


@functools.cache
def _tricky_good_files() -> tuple[tuple[str, bytes], ...]:
    photo = _small_photo(seed=11)
    grey16 = photo.convert("L").convert("I").point(lambda v: v * 257).convert("I;16")
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=255)
    ImageDraw.Draw(palette).rectangle((0, 0, photo.width, 30), fill=255)  # index 255: clear
    rgba = photo.convert("RGBA")
    ImageDraw.Draw(rgba).rectangle((0, 0, photo.width, 30), fill=(0, 0, 0, 0))

    def jpeg(img: Image.Image, **kw: Any) -> bytes:
        out = io.BytesIO()
        img.save(out, "JPEG", quality=90, **kw)
        return out.getvalue()

    def png(img: Image.Image, **kw: Any) -> bytes:
        out = io.BytesIO()
        img.save(out, "PNG", **kw)
        return out.getvalue()

    return (
        ("cmyk_adobe.jpg", jpeg(photo.convert("CMYK"))),
        ("grey16.png", png(grey16)),
        ("palette_transparent.png", png(palette, transparency=255)),
        ("greyscale.jpg", jpeg(photo.convert("L"))),
        ("huge_exif.jpg", jpeg(photo, exif=make_exif(padding=60_000).tobytes())),
        ("rgba.png", png(rgba)),
        ("adobe_rgb_icc.jpg", jpeg(photo, icc_profile=adobe_rgb_icc())),
        ("srgb_icc.png", png(photo, icc_profile=ImageCms.ImageCmsProfile(
            ImageCms.createProfile("sRGB")).tobytes())),
        ("progressive.jpg", jpeg(photo, progressive=True)),
        ("rotated_6.jpg", encode(photo, "JPEG", orientation=6)),
        ("gps.webp", encode(photo, "WEBP", orientation=3)),
        ("gps.heic", encode(photo, "HEIC", orientation=8)),
        ("tiny_but_fine.png", png(photo.resize((48, 36)))),
    )  # fmt: skip


def tricky_good_files() -> dict[str, bytes]:
    """Filename -> bytes of unusual but valid photos that normalize must accept."""
    return dict(_tricky_good_files())
