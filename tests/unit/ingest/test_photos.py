"""Tests for dresscode.ingest.photos: every input is built in memory, every check is on the output."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import struct
import warnings

import pytest
from PIL import ExifTags, Image, ImageChops, ImageCms, ImageDraw, ImageFile, ImageStat

from dresscode.ingest import photos as images
from dresscode.ingest.photos import CleanPhoto, RejectCode, Rejected, normalize, sniff_format
from dresscode.local import samples

# ---- helpers ---------------------------------------------------------------------------------

QUADRANTS = {  # an asymmetric picture: any rotation or mirror moves a colour to another corner
    "top_left": (220, 30, 30),
    "top_right": (30, 170, 60),
    "bottom_left": (30, 60, 200),
    "bottom_right": (235, 215, 40),
}


def quadrant_picture(size: tuple[int, int] = (160, 96)) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, w // 2, h // 2), fill=QUADRANTS["top_left"])
    draw.rectangle((w // 2, 0, w, h // 2), fill=QUADRANTS["top_right"])
    draw.rectangle((0, h // 2, w // 2, h), fill=QUADRANTS["bottom_left"])
    draw.rectangle((w // 2, h // 2, w, h), fill=QUADRANTS["bottom_right"])
    return img


def assert_upright_quadrants(photo: CleanPhoto, size: tuple[int, int] = (160, 96)) -> None:
    assert (photo.width, photo.height) == size
    out = decode(photo)
    w, h = size
    centres = {
        "top_left": (w // 4, h // 4),
        "top_right": (3 * w // 4, h // 4),
        "bottom_left": (w // 4, 3 * h // 4),
        "bottom_right": (3 * w // 4, 3 * h // 4),
    }
    for name, xy in centres.items():
        assert close(out.getpixel(xy), QUADRANTS[name], 40), name


def close(a, b, tolerance: int) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def decode(photo: CleanPhoto) -> Image.Image:
    img = Image.open(io.BytesIO(photo.jpeg))
    img.load()
    return img


def save(img: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


def jpeg_markers(data: bytes) -> list[int]:
    """Marker codes from SOI up to and including the first SOS."""
    assert data[:2] == b"\xff\xd8"
    markers, pos = [0xD8], 2
    while pos < len(data):
        assert data[pos] == 0xFF, f"no marker at {pos}"
        marker = data[pos + 1]
        markers.append(marker)
        if marker == 0xDA:
            return markers
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + length
    raise AssertionError("no SOS marker")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return samples.wardrobe_photo(3, size=(480, 360), n_items=3)[0]


@pytest.fixture
def no_libwebp(monkeypatch):
    """Force the Pillow WebP decoder, as on a system where libwebp cannot be loaded."""
    monkeypatch.setattr(images, "_libwebp", lambda: None)


# ---- the catalogue of bad and tricky files -------------------------------------------------


@pytest.mark.parametrize("name", sorted(samples.bad_files()))
def test_bad_file_is_rejected_with_its_code(name):
    data, expected = samples.bad_files()[name]
    with pytest.raises(Rejected) as caught:
        normalize(data, filename=name)
    assert caught.value.code == expected, caught.value.detail
    assert caught.value.message.endswith(".")
    json.dumps(caught.value.to_dict())  # quarantine writes it as reason.json


@pytest.mark.parametrize("name", sorted(samples.tricky_good_files()))
def test_tricky_but_valid_file_is_accepted(name):
    result = normalize(samples.tricky_good_files()[name], filename=name)
    out = decode(result)
    assert out.format == "JPEG"
    assert out.mode == "RGB"
    assert max(out.size) <= 768
    assert not out.getexif()


@pytest.mark.parametrize("name", ["animated.webp", "truncated.jpg", "corrupt.jpg"])
def test_reject_survives_pickling(name):
    data, _ = samples.bad_files()[name]
    with pytest.raises(Rejected) as caught:
        normalize(data, filename=name)
    clone = pickle.loads(pickle.dumps(caught.value))  # e.g. across a process pool
    assert (clone.code, clone.message, clone.detail) == (
        caught.value.code,
        caught.value.message,
        caught.value.detail,
    )


# ---- sniffing and container checks ---------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "JPEG"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "PNG"),
        (b"RIFF\x00\x01\x00\x00WEBPVP8 ", "WEBP"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIF"),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic", "HEIF"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", "AVIF"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", None),  # an MP4 video
        (b"GIF89a\x10\x00\x10\x00", "GIF"),
        (b"II*\x00\x08\x00\x00\x00", "TIFF"),
        (b"BM" + b"\x00" * 12 + b"\x28\x00\x00\x00" + b"\x00" * 16, "BMP"),
        (b"BMW owners club newsletter", None),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
        (b"%PDF-1.7\n", None),
        (b"Hello, this is text named photo.jpg", None),
    ],
)
def test_sniff_format_reads_magic_bytes(head, expected):
    assert sniff_format(head) == expected


def test_format_comes_from_content_not_extension(photo):
    png = save(photo, "PNG")
    assert normalize(png).source_format == "PNG"
    assert normalize(png, filename="IMG_0001.PNG").source_format == "PNG"
    assert normalize(png, filename="upload.bin").source_format == "PNG"  # unknown: not checked
    with pytest.raises(Rejected) as caught:
        normalize(png, filename="IMG_0001.heic")
    assert caught.value.code == RejectCode.DISGUISED_TYPE
    assert caught.value.detail["format"] == "PNG"


def test_jpeg_extension_family_is_one_format(photo):
    jpeg = save(photo, "JPEG")
    for name in ("a.jpg", "a.JPEG", "a.jpe", "a.jfif"):
        assert normalize(jpeg, filename=name).source_format == "JPEG"


def test_file_over_the_byte_limit_is_too_large(photo):
    jpeg = save(photo, "JPEG")
    with pytest.raises(Rejected) as caught:
        normalize(jpeg, max_bytes=len(jpeg) - 1)
    assert caught.value.code == RejectCode.TOO_LARGE
    assert normalize(jpeg, max_bytes=len(jpeg)).source_bytes == len(jpeg)


def test_allowed_formats_can_be_narrowed(photo):
    with pytest.raises(Rejected) as caught:
        normalize(save(photo, "PNG"), allowed_formats=frozenset({"JPEG"}))
    assert caught.value.code == RejectCode.UNSUPPORTED_FORMAT


def test_animated_gif_is_unsupported_rather_than_animated(photo):
    """No GIF is accepted, still or animated, so the format is the more useful reason."""
    for gif in (save(photo, "GIF"), samples.bad_files()["animated.gif"][0]):
        with pytest.raises(Rejected) as caught:
            normalize(gif, filename="clip.gif")
        assert caught.value.code == RejectCode.UNSUPPORTED_FORMAT


def test_bytearray_and_memoryview_are_accepted(photo):
    jpeg = save(photo, "JPEG")
    expected = normalize(jpeg).sha256
    assert normalize(bytearray(jpeg)).sha256 == expected
    assert normalize(memoryview(jpeg)).sha256 == expected


# ---- header checks: bombs and absurd dimensions --------------------------------------------


def test_bomb_is_rejected_from_the_header_before_any_decode(monkeypatch):
    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    bomb = samples.bomb_png(10_000, 8_000)  # 80 MP, under Pillow's own limit
    assert len(bomb) < 10_000
    with pytest.raises(Rejected) as caught:
        normalize(bomb)
    assert caught.value.code == RejectCode.DECOMPRESSION_BOMB
    assert caught.value.detail["pixels"] == 80_000_000


def test_pillow_bomb_error_is_a_decompression_bomb_too():
    """Above 2x Image.MAX_IMAGE_PIXELS Pillow refuses in open(), before our own check."""
    with pytest.raises(Rejected) as caught:
        normalize(samples.bomb_png(20_000, 20_000), max_pixels=10**10)
    assert caught.value.code == RejectCode.DECOMPRESSION_BOMB


def test_pillow_bomb_warning_is_an_error_and_does_not_leak():
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # the default this test is built around
    filters_before = list(warnings.filters)
    with pytest.raises(Rejected) as caught:
        normalize(samples.bomb_png(10_000, 9_500), max_pixels=10**9)  # 95 MP: a warning
    assert caught.value.code == RejectCode.DECOMPRESSION_BOMB
    assert warnings.filters == filters_before


@pytest.mark.parametrize(
    ("size", "accepted"),
    [
        ((20, 200), False),
        ((400, 31), False),
        ((900, 100), False),
        ((256, 32), True),
        ((32, 32), True),
    ],
)
def test_dimensions_must_look_like_a_photo(size, accepted):
    png = save(Image.new("RGB", size, (120, 90, 60)), "PNG")
    if accepted:
        result = normalize(png)
        assert (result.width, result.height) == size
    else:
        with pytest.raises(Rejected) as caught:
            normalize(png)
        assert caught.value.code == RejectCode.BAD_DIMENSIONS


# ---- decode failures -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIC"])
@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_truncated_files_are_truncated(photo, fmt, keep):
    data = samples.encode(photo, fmt)
    with pytest.raises(Rejected) as caught:
        normalize(data[: int(len(data) * keep)])
    assert caught.value.code == RejectCode.TRUNCATED


def test_truncated_webp_without_libwebp_fast_path(photo, no_libwebp):
    data = samples.encode(photo, "WEBP")
    with pytest.raises(Rejected) as caught:
        normalize(data[: len(data) // 2])
    assert caught.value.code == RejectCode.TRUNCATED


def test_truncated_progressive_jpeg_is_truncated(photo):
    data = save(photo, "JPEG", progressive=True)
    with pytest.raises(Rejected) as caught:
        normalize(data[: len(data) * 2 // 3])
    assert caught.value.code == RejectCode.TRUNCATED


def test_truncation_is_caught_even_if_pillow_was_told_to_pad(photo, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = save(photo, "JPEG")
    with pytest.raises(Rejected) as caught:
        normalize(data[: len(data) // 2])
    assert caught.value.code == RejectCode.TRUNCATED
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_png_with_damaged_pixel_data_is_corrupt(photo):
    data = bytearray(save(photo, "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 200 : idat + 232] = b"\x00" * 32  # CRC no longer matches
    with pytest.raises(Rejected) as caught:
        normalize(bytes(data))
    assert caught.value.code == RejectCode.CORRUPT


def test_multi_picture_jpeg_is_a_still_photo(photo):
    """Some phones store a second view or depth map as an MPO frame; that is not animation."""
    data = save(photo, "MPO", save_all=True, append_images=[photo.convert("L").convert("RGB")])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert normalize(data, filename="PXL_0001.jpg").source_format == "JPEG"


def test_jpeg_with_data_after_the_end_is_fine(photo):
    """Motion photos append a video after the JPEG's EOI; that is not damage."""
    data = save(photo, "JPEG") + b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4000
    assert normalize(data).source_format == "JPEG"


# ---- pixels: orientation, colour, size -----------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_comes_out_upright(orientation):
    data = samples.encode(quadrant_picture(), "JPEG", orientation=orientation, quality=95)
    assert_upright_quadrants(normalize(data))


@pytest.mark.parametrize(("fmt", "orientation"), [("PNG", 8), ("WEBP", 6), ("HEIC", 6)])
def test_orientation_is_applied_in_other_formats(fmt, orientation):
    data = samples.encode(quadrant_picture(), fmt, orientation=orientation, quality=95)
    assert_upright_quadrants(normalize(data))


def test_webp_orientation_without_libwebp_fast_path(no_libwebp):
    data = samples.encode(quadrant_picture(), "WEBP", orientation=5, quality=95)
    assert_upright_quadrants(normalize(data))


def test_cmyk_jpeg_including_adobe_inverted_keeps_its_colours():
    cmyk = quadrant_picture().convert("CMYK")
    data = save(cmyk, "JPEG", quality=95)
    assert b"Adobe" in data[:200]  # Pillow writes inverted CMYK with an Adobe APP14 marker
    assert_upright_quadrants(normalize(data))


def test_sixteen_bit_png_is_scaled_not_clipped():
    grey = Image.new("I", (64, 64), 32768).convert("I;16")  # mid grey in 16 bits
    out = decode(normalize(save(grey, "PNG")))
    assert close(out.getpixel((32, 32)), (128, 128, 128), 2)


def test_transparency_is_flattened_on_white():
    rgba = Image.new("RGBA", (64, 64), (200, 30, 30, 255))
    ImageDraw.Draw(rgba).rectangle((0, 0, 63, 31), fill=(0, 0, 0, 0))  # top half clear
    la = rgba.convert("LA")
    palette = rgba.convert("RGB").quantize(colors=4)
    index = palette.getpixel((10, 5))
    cases = [
        save(rgba, "PNG"),
        save(la, "PNG"),
        save(palette, "PNG", transparency=index),
        save(rgba, "WEBP", lossless=True),
    ]
    for data in cases:
        out = decode(normalize(data))
        assert close(out.getpixel((32, 8)), (255, 255, 255), 3)
        assert not close(out.getpixel((32, 56)), (255, 255, 255), 30)


def test_transparent_webp_is_flattened_without_libwebp_fast_path(no_libwebp):
    rgba = Image.new("RGBA", (64, 64), (200, 30, 30, 255))
    ImageDraw.Draw(rgba).rectangle((0, 0, 63, 31), fill=(0, 0, 0, 0))
    out = decode(normalize(save(rgba, "WEBP", lossless=True)))
    assert close(out.getpixel((32, 8)), (255, 255, 255), 3)


def test_greyscale_becomes_rgb():
    out = decode(normalize(save(Image.new("L", (64, 64), 90), "JPEG")))
    assert out.mode == "RGB"
    assert close(out.getpixel((5, 5)), (90, 90, 90), 2)


def test_embedded_icc_profile_is_converted_to_srgb():
    flat = Image.new("RGB", (64, 64), (40, 160, 60))
    adobe = samples.adobe_rgb_icc()
    expected = ImageCms.profileToProfile(
        flat, ImageCms.ImageCmsProfile(io.BytesIO(adobe)), ImageCms.createProfile("sRGB")
    ).getpixel((0, 0))
    tagged = decode(normalize(save(flat, "PNG", icc_profile=adobe))).getpixel((32, 32))
    untagged = decode(normalize(save(flat, "PNG"))).getpixel((32, 32))
    assert close(tagged, expected, 3)
    assert close(untagged, (40, 160, 60), 3)
    assert abs(tagged[0] - untagged[0]) > 20  # the profile made a visible difference


def test_broken_icc_profile_is_ignored_not_fatal():
    flat = Image.new("RGB", (64, 64), (40, 160, 60))
    out = decode(normalize(save(flat, "PNG", icc_profile=b"not a profile" * 10)))
    assert close(out.getpixel((32, 32)), (40, 160, 60), 3)


@pytest.mark.parametrize(
    ("size", "long_edge", "expected"),
    [
        ((2000, 1500), 768, (768, 576)),
        ((1500, 2000), 768, (576, 768)),
        ((2000, 1500), 512, (512, 384)),
        ((400, 300), 768, (400, 300)),  # never upscaled
    ],
)
@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_long_edge_is_capped_and_never_upscaled(size, long_edge, expected, fmt):
    img = samples.wardrobe_photo(1, size=size, n_items=1)[0]
    result = normalize(samples.encode(img, fmt), long_edge=long_edge)
    assert (result.width, result.height) == expected == decode(result).size
    assert (result.source_width, result.source_height) == size


def test_downscaled_pixels_match_a_careful_resize():
    """DCT-scaled decode + LANCZOS stays close to a full decode + LANCZOS (mean error)."""
    img = samples.wardrobe_photo(5, size=(2400, 1800), n_items=4)[0]
    data = samples.encode(img, "JPEG", quality=95)
    reference = Image.open(io.BytesIO(data)).convert("RGB").resize((768, 576), Image.LANCZOS)
    out = decode(normalize(data, quality=95))
    assert mean_abs_diff(out, reference) < 3


def test_webp_fast_path_and_pillow_path_agree(photo, monkeypatch):
    data = samples.encode(samples.wardrobe_photo(2, size=(1600, 1200))[0], "WEBP")
    fast = decode(normalize(data))
    monkeypatch.setattr(images, "_libwebp", lambda: None)
    slow = decode(normalize(data))
    assert fast.size == slow.size
    assert mean_abs_diff(fast, slow) < 3


def test_brightness_is_mean_luma_of_the_output():
    white = normalize(save(Image.new("RGB", (64, 64), "white"), "PNG"))
    black = normalize(save(Image.new("RGB", (64, 64), "black"), "PNG"))
    assert white.brightness == pytest.approx(255, abs=1)
    assert black.brightness == pytest.approx(0, abs=1)
    lit = normalize(samples.encode(samples.wardrobe_photo(4)[0], "JPEG"))
    dim = normalize(samples.encode(samples.wardrobe_photo(4, dark=True)[0], "JPEG"))
    assert dim.brightness < lit.brightness - 50


# ---- metadata ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIC"])
def test_gps_and_all_other_metadata_are_removed(photo, fmt):
    data = samples.encode(photo, fmt, orientation=6)
    source = Image.open(io.BytesIO(data))
    assert source.getexif().get_ifd(ExifTags.IFD.GPSInfo), "the input must carry GPS"

    result = normalize(data)
    out = decode(result)
    assert not out.getexif()
    assert not {"exif", "xmp", "icc_profile", "comment", "photoshop", "adobe"} & set(out.info)
    markers = jpeg_markers(result.jpeg)
    assert not [m for m in markers if 0xE1 <= m <= 0xEF], "no APP1-APP15 (EXIF/XMP/ICC/IPTC)"
    assert 0xFE not in markers, "no COM comment"
    assert result.jpeg.count(b"\xff\xd8") == 1, "no embedded thumbnail"
    for secret in (b"GPSLatitude", b"xmpmeta", b"Synthetic Camera", b"dresscode synthetic"):
        assert secret not in result.jpeg


def test_jpeg_comment_is_not_copied():
    """Pillow copies im.info['comment'] into a re-saved JPEG unless info is cleared."""
    data = save(quadrant_picture(), "JPEG", comment=b"secret note")
    assert b"secret note" in data
    assert b"secret note" not in normalize(data).jpeg


def test_output_is_a_baseline_jpeg_at_the_asked_quality(photo):
    jpeg = normalize(save(photo, "PNG"), quality=85).jpeg
    markers = jpeg_markers(jpeg)
    assert 0xC0 in markers and 0xC2 not in markers  # SOF0 baseline, not progressive
    low = normalize(save(photo, "PNG"), quality=40).jpeg
    assert len(low) < len(jpeg)


# ---- hashes and determinism ----------------------------------------------------------------


def test_hashes_address_the_output_and_the_input(photo):
    raw = samples.encode(photo, "JPEG")
    result = normalize(raw)
    assert result.sha256 == hashlib.sha256(result.jpeg).hexdigest()
    assert result.raw_sha256 == hashlib.sha256(raw).hexdigest()
    assert result.source_bytes == len(raw)
    assert normalize(raw).jpeg == result.jpeg  # same input, same bytes: safe to re-run
    other = normalize(samples.encode(photo, "JPEG", exif_gps=False))
    assert other.raw_sha256 != result.raw_sha256


def test_clean_photo_repr_leaves_out_the_bytes(photo):
    result = normalize(save(photo, "JPEG"))
    assert "jpeg=" not in repr(result)
    assert result.sha256 in repr(result)


# ---- decode cost: scans and CPU time (too_complex) -------------------------------------------


def progressive_jpeg(size: tuple[int, int] = (256, 192), repeats: int = 0) -> bytes:
    """A flat progressive JPEG whose last scan (a few bytes of EOB runs) is repeated."""
    raw = save(Image.new("RGB", size, (120, 90, 60)), "JPEG", quality=85, progressive=True)
    last = raw.rfind(b"\xff\xda")
    return raw[:-2] + raw[last:-2] * repeats + b"\xff\xd9"


def test_scans_are_counted_from_the_bytes_without_what_an_app_segment_holds() -> None:
    from dresscode.ingest.formats import jpeg_scan_count

    assert jpeg_scan_count(progressive_jpeg()) == 10  # libjpeg's progression for YCbCr
    assert jpeg_scan_count(progressive_jpeg(repeats=5)) == 15
    baseline = save(quadrant_picture(), "JPEG")
    assert jpeg_scan_count(baseline) == 1
    app1 = b"\xff\xe1" + struct.pack(">H", 10) + b"\xff\xda\xff\xda\x00\x00\xff\xd9"
    assert jpeg_scan_count(baseline[:2] + app1 + baseline[2:]) == 1
    # What follows the first EOI (an MPO's second image, an appended file) is not decoded.
    assert jpeg_scan_count(baseline + progressive_jpeg()) == 1


def test_a_jpeg_with_too_many_scans_is_too_complex_before_any_decode() -> None:
    raw = progressive_jpeg(repeats=100)
    with pytest.raises(Rejected) as caught:
        normalize(raw, max_jpeg_scans=64)
    assert caught.value.code == RejectCode.TOO_COMPLEX
    assert caught.value.detail == {"format": "JPEG", "scans": 110, "max_scans": 64}
    assert "110 scans" in caught.value.message
    assert normalize(raw, max_jpeg_scans=110).source_format == "JPEG"


def test_a_decode_over_its_cpu_budget_is_stopped_part_way() -> None:
    import numpy as np

    noise = np.random.default_rng(7).integers(0, 255, (1200, 1600, 3), dtype=np.uint8)
    raw = save(Image.fromarray(noise), "JPEG", quality=95, progressive=True)
    with pytest.raises(Rejected) as caught:
        normalize(raw, max_decode_s=0.005)
    rej = caught.value
    assert rej.code == RejectCode.TOO_COMPLEX and rej.detail["max_decode_s"] == 0.005
    assert rej.detail["read_bytes"] < len(raw)  # stopped before the decoder had all the data
    assert normalize(raw).width == 768  # the default budget is far above a real photo's decode


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_the_decode_budget_holds_for_every_format(fmt: str) -> None:
    raw = save(quadrant_picture((1200, 800)), fmt)
    with pytest.raises(Rejected) as caught:
        normalize(raw, max_decode_s=1e-9)
    assert caught.value.code == RejectCode.TOO_COMPLEX
    assert caught.value.detail["format"] == fmt
