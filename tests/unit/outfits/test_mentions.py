"""The text users read (an outfit's reason, the notes) names only garments they own."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from dresscode.outfits import mentions, rules
from dresscode.outfits.stylist import UserContext


def item(item_id: str, category: str, subcategory: str, description: str = "") -> dict[str, Any]:
    return {
        "item_id": item_id,
        "category": category,
        "subcategory": subcategory,
        "warmth": "medium",
        "description": description or f"A {subcategory}.",
    }


WARDROBE = [
    item("tee", "top", "t-shirt"),
    item("jeans", "bottom", "jeans"),
    item("trainers", "footwear", "sneakers"),
    item("parka", "outerwear", "parka", "Green parka with a hood."),
]


@pytest.mark.parametrize(
    ("text", "unowned"),
    [
        ("Your white tee with jeans and sneakers.", []),
        ("The parka keeps the rain out; a jacket is what you need.", []),  # same kind
        ("Wear your leather boots and the wool scarf.", ["boots", "scarf"]),
        ("Sandals for the heat.", ["sandals"]),  # owns sneakers, not sandals
        ("Comfortable shoes and a light top.", []),  # generic words: any item of the category
        ("A summer dress, and a skirt if it cools.", ["dress", "skirt"]),
        ("No coat needed today; leave the boots at home.", []),  # negated: no claim
        ("It is warm, so no heavy wool sweater.", []),
        ("", []),
    ],
)
def test_garment_nouns_must_be_owned(text: str, unowned: list[str]) -> None:
    assert mentions.unowned_mentions(text, WARDROBE) == unowned


def test_a_reason_naming_unowned_boots_counts_as_a_hallucination_and_is_withheld() -> None:
    ctx = UserContext("u1", "Oslo", date(2025, 10, 20), WARDROBE)
    answer = {
        "outfits": [
            {"item_ids": ["tee", "jeans", "trainers"], "reason": "Tee, jeans and your boots."},
            {"item_ids": ["tee", "jeans", "trainers", "parka"], "reason": "Add the parka."},
        ],
        "notes": "Bring an umbrella.",
    }
    kept, dropped, violations = rules.validate(answer, ctx, None)
    assert dropped == ["text:boots", "text:umbrella"]
    assert [o["reason"] for o in kept] == ["", "Add the parka."]  # the outfit stays, not the lie
    assert violations == []
    assert rules.owned_notes(answer["notes"], WARDROBE) == ""
    assert rules.owned_notes("Layer up, it is windy.", WARDROBE) == "Layer up, it is windy."
