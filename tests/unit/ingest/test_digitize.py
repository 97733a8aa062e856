"""Digitize's pure parts: the prompt shows the schema's vocabularies; bad items are dropped one by one."""

from __future__ import annotations

import copy

from dresscode.ingest import digitize
from dresscode.llm import blueprints

BLUEPRINT = blueprints.resolve("wardrobe-digitizer@1")
ITEM = {
    "category": "top",
    "subcategory": "t-shirt",
    "colors": [{"name": "navy", "hex": "#1f2a44"}],
    "pattern": "solid",
    "material": "cotton",
    "warmth": "light",
    "formality": "casual",
    "seasons": ["summer"],
    "water_resistant": False,
    "description": "A navy tee.",
}


def test_prompt_lists_the_schema_vocabularies_and_carries_the_image() -> None:
    messages = digitize.build_messages(BLUEPRINT, b"\xff\xd8\xff\xe0fake-jpeg")
    user_text = messages[1]["content"][1]["text"]
    assert "top, bottom, dress, outerwear, footwear, bag, accessory" in user_text
    assert "{{" not in user_text and "{{" not in messages[0]["content"]
    assert messages[1]["content"][0]["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_unknown_category_drops_only_that_item() -> None:
    bad = copy.deepcopy(ITEM) | {"category": "spacesuit"}
    kept, dropped = digitize.salvage_items({"items": [ITEM, bad, ITEM]}, BLUEPRINT.output_schema)
    assert (len(kept), dropped) == (2, 1)


def test_salvage_of_a_wrong_shape_keeps_nothing() -> None:
    assert digitize.salvage_items([ITEM], BLUEPRINT.output_schema) == ([], 0)
    assert digitize.salvage_items({"things": [ITEM]}, BLUEPRINT.output_schema) == ([], 0)


def test_item_ids_are_deterministic_and_depend_on_the_prompt_version() -> None:
    v2 = blueprints.from_mapping({**BLUEPRINT.__dict__, "version": 2}, "test")
    first = digitize.item_id("user-1", "abc", 0, BLUEPRINT)
    assert first == digitize.item_id("user-1", "abc", 0, BLUEPRINT)
    assert first != digitize.item_id("user-1", "abc", 1, BLUEPRINT)
    assert first != digitize.item_id("user-1", "abc", 0, v2)
    assert first != digitize.item_id("user-2", "abc", 0, BLUEPRINT)


def test_photos_are_fitted_to_a_blueprint_that_wants_them_smaller() -> None:
    import io

    from PIL import Image

    from dresscode.ingest import photos as images
    from dresscode.local import samples

    img, _ = samples.wardrobe_photo(5, size=(1600, 1200))
    stored = images.normalize(samples.encode(img, "JPEG"), long_edge=768).jpeg
    small = blueprints.from_mapping({**BLUEPRINT.__dict__, "image_long_edge": 384}, "test")

    assert digitize.fit_to_blueprint(stored, BLUEPRINT) is stored  # already 768 px: sent as stored
    with Image.open(io.BytesIO(digitize.fit_to_blueprint(stored, small))) as sent:
        assert sent.size == (384, 288)
