"""Tests for dresscode.local.samples: deterministic, schema-valid, and honest about what is drawn.

That every bad file is rejected with its code (and every tricky file accepted) is tested once,
in test_images.py.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import jsonschema
import pytest
import yaml
from PIL import ExifTags, Image, ImageChops, ImageCms, ImageOps

from dresscode.local import samples

BLUEPRINT = Path(__file__).parents[3] / "include/prompts/wardrobe-digitizer/v1.yaml"


@pytest.fixture(scope="module")
def output_schema() -> dict:
    return yaml.safe_load(BLUEPRINT.read_text())["output_schema"]


def small(seed: int, **kw):
    return samples.wardrobe_photo(seed, size=(320, 240), **kw)


def test_same_seed_gives_same_pixels_labels_and_bytes():
    (a, labels_a), (b, labels_b) = small(42), small(42)
    assert a.tobytes() == b.tobytes()
    assert labels_a == labels_b
    for fmt in ("JPEG", "PNG", "WEBP"):
        assert samples.encode(a, fmt) == samples.encode(b, fmt)


def test_different_seeds_give_different_photos():
    photos = {small(seed)[0].tobytes() for seed in range(8)}
    assert len(photos) == 8


def test_n_items_is_respected_and_bounded():
    for n in (1, 2, 3, 4):
        assert len(small(5, n_items=n)[1]) == n
    with pytest.raises(ValueError):
        small(5, n_items=5)


def test_labels_are_valid_digitizer_answers(output_schema):
    for seed in range(40):
        _, items = small(seed)
        jsonschema.validate({"items": [item.to_json() for item in items]}, output_schema)


def test_vocabularies_match_the_blueprint(output_schema):
    props = output_schema["properties"]["items"]["items"]["properties"]
    assert tuple(props["category"]["enum"]) == samples.CATEGORIES
    assert tuple(props["pattern"]["enum"]) == samples.PATTERNS
    assert tuple(props["warmth"]["enum"]) == samples.WARMTH_LEVELS
    assert tuple(props["formality"]["enum"]) == samples.FORMALITY_LEVELS
    assert tuple(props["seasons"]["items"]["enum"]) == samples.SEASONS


def test_labelled_colours_come_from_the_palette():
    for seed in range(40):
        for item in small(seed)[1]:
            for name, hex_colour in item.colors:
                assert samples.PALETTE[name] == hex_colour
            assert (len(item.colors) == 1) == (item.pattern == "solid")


def test_every_labelled_colour_is_drawn_and_no_other():
    """In the flat drawing (before lighting and grain), pixel for pixel."""
    assert not {samples._rgb(h) for h in samples._BACKGROUNDS} & {
        samples._rgb(h) for h in samples.PALETTE.values()
    }
    for seed in range(12):
        canvas, items = samples._compose(random.Random(seed), (320, 240), None)
        counts = {rgb: n for n, rgb in canvas.getcolors(maxcolors=100_000)}
        labelled = {samples._rgb(h) for item in items for _, h in item.colors}
        for name, hex_colour in samples.PALETTE.items():
            share = counts.get(samples._rgb(hex_colour), 0) / (320 * 240)
            if samples._rgb(hex_colour) in labelled:
                assert share > 0.005, (seed, name)
            else:
                assert share == 0, (seed, name)


def test_photo_is_the_drawing_under_light_and_grain():
    canvas, _ = samples._compose(random.Random(4), (320, 240), None)
    photo, _ = small(4)
    assert photo.tobytes() != canvas.tobytes()
    diff = ImageChops.difference(photo, canvas).convert("L")
    assert sum(diff.getdata()) / (320 * 240) < 40  # lit and grainy, but the same picture


def test_dark_photos_are_darker_with_the_same_labels():
    lit, lit_items = small(9)
    dim, dim_items = small(9, dark=True)
    assert lit_items == dim_items
    mean = lambda img: sum(img.convert("L").getdata()) / (img.width * img.height)  # noqa: E731
    assert mean(dim) < mean(lit) * 0.6


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIC"])
def test_encoded_samples_carry_gps_xmp_and_orientation(fmt):
    """So that the metadata-stripping tests strip something real."""
    img = small(1)[0]
    data = samples.encode(img, fmt, orientation=6)
    reopened = Image.open(io.BytesIO(data))
    gps = reopened.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert gps[ExifTags.GPS.GPSLatitudeRef] == "N"
    assert tuple(float(v) for v in gps[ExifTags.GPS.GPSLatitude]) == pytest.approx(
        samples.GPS_LATITUDE
    )
    assert b"GPSLatitude" in data  # the XMP packet
    if fmt == "JPEG":
        assert reopened.info["comment"] == b"dresscode synthetic photo"
    if fmt != "HEIC":  # HEIF stores the orientation as irot/imir boxes, not in EXIF
        assert reopened.getexif()[ExifTags.Base.Orientation] == 6


def test_exif_without_gps_has_none():
    data = samples.encode(small(1)[0], "JPEG", exif_gps=False)
    assert not Image.open(io.BytesIO(data)).getexif().get_ifd(ExifTags.IFD.GPSInfo)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_is_stored_so_that_a_viewer_shows_the_picture_upright(orientation):
    img = small(2)[0]
    data = samples.encode(img, "PNG", orientation=orientation)  # lossless: exact comparison
    shown = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert shown.tobytes() == img.tobytes()


def test_bomb_png_is_small_but_declares_huge_dimensions():
    data = samples.bomb_png(10_000, 8_000)
    assert len(data) < 10_000
    assert Image.open(io.BytesIO(data)).size == (10_000, 8_000)


def test_adobe_rgb_profile_is_a_valid_icc_profile():
    profile = ImageCms.ImageCmsProfile(io.BytesIO(samples.adobe_rgb_icc()))
    assert "Adobe RGB" in ImageCms.getProfileDescription(profile)
    assert profile.profile.xcolor_space.strip() == "RGB"


def test_catalogues_are_fresh_copies():
    bad = samples.bad_files()
    bad.clear()
    assert samples.bad_files()
    assert "cmyk_adobe.jpg" in samples.tricky_good_files()
