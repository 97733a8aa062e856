"""The wardrobe outfit_pregen reads: ``tables.current_wardrobes_of``, the user's corrections
applied in event-time order to the digitizer's items, on a real local lake."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dresscode.core import lake, tables
from dresscode.outfits import tasks as pregen

SHA = "a" * 64


def _item(user: str, item_id: str, category: str = "top") -> dict:
    return {
        "item_id": item_id,
        "user_id": user,
        "image_sha256": SHA,
        "prompt_version": 2,
        "category": category,
        "subcategory": "t-shirt",
        "color_names": ["white"],
        "color_hexes": ["#ffffff"],
        "warmth": "light",
        "formality": "casual",
        "water_resistant": False,
        "description": "a tee",
    }


def _event(user: str, event_id: str, at: str, event_type: str, **payload: object) -> dict:
    item_id = payload.pop("item_id", None)
    return {
        "event_id": event_id,
        "event_type": event_type,
        "user_id": user,
        "event_time": f"2026-05-0{at}:00.000+00:00",
        "received_at": "2026-05-09T00:00:00.000+00:00",
        "item_id": item_id,
        "image_sha256": SHA,
        "prompt_version": "2",
        "payload": json.dumps(payload),
        "source": "feedback/x.jsonl",
        "source_sha256": "0" * 64,
    }


@pytest.fixture
def lake_items(dresscode_home: Path) -> None:
    lake.write_parquet(
        "wardrobe_items",
        "2026-05-01",
        "p1",
        [_item("u1", "tee"), _item("u1", "jeans", "bottom"), _item("u2", "coat", "outerwear")],
    )


def _ids(user: str = "u1", **kw: object) -> dict[str, str]:
    return {i["item_id"]: i["category"] for i in tables.current_wardrobes_of([user], **kw)[user]}


def test_outfit_pregen_reads_the_current_wardrobe() -> None:
    assert pregen.current_wardrobes_of is tables.current_wardrobes_of


def test_without_feedback_the_current_wardrobe_is_the_digitized_one(lake_items) -> None:
    assert _ids() == {"tee": "top", "jeans": "bottom"}
    assert tables.current_wardrobes_of(["u1"]) == tables.wardrobes_of(["u1"])


def test_events_apply_in_event_time_order_not_arrival_order(lake_items) -> None:
    # The deletion arrives first but happened last: the correction before it is moot.
    lake.write_parquet(
        "feedback", "2026-05-02", "a", [_event("u1", "d", "2T10", "item_deleted", item_id="tee")]
    )
    lake.write_parquet(
        "feedback",
        "2026-05-03",
        "b",
        [
            _event("u1", "c", "2T09", "item_corrected", item_id="tee", changes={"warmth": "warm"}),
            _event(
                "u1", "c2", "2T11", "item_corrected", item_id="tee", changes={"category": "dress"}
            ),
            _event("u1", "d2", "2T12", "item_deleted", item_id="tee"),  # deleted twice
        ],
    )
    assert _ids() == {"jeans": "bottom"}
    before = tables.current_wardrobes_of(["u1"], as_of=datetime(2026, 5, 2, 9, 30, tzinfo=UTC))
    assert {i["item_id"]: i["warmth"] for i in before["u1"]} == {"tee": "warm", "jeans": "light"}


def test_an_added_item_appears_with_its_colours_even_without_photos(lake_items) -> None:
    added = {
        "item": {
            "category": "footwear",
            "subcategory": "boots",
            "colors": [{"name": "brown", "hex": "#553311"}],
            "warmth": "warm",
            "formality": "casual",
            "water_resistant": True,
            "description": "boots",
        }
    }
    rows = [
        _event("u3", "a1", "2T10", "item_added", item_id="added-1", **added),
        _event("u3", "a2", "2T11", "item_added", item_id="added-1", **added),  # same id: once
    ]
    lake.write_parquet("feedback", "2026-05-02", "a", rows)
    (boots,) = tables.current_wardrobes_of(["u3"])["u3"]
    assert boots["category"] == "footwear"
    assert boots["color_names"] == ["brown"]
    assert boots["water_resistant"] is True


def test_another_users_event_and_an_unreadable_payload_change_nothing(lake_items, caplog) -> None:
    bad = _event("u1", "x", "2T10", "item_corrected", item_id="tee")
    bad["payload"] = "{not json"
    lake.write_parquet(
        "feedback",
        "2026-05-02",
        "a",
        [bad, _event("u2", "y", "2T10", "item_deleted", item_id="tee")],
    )
    assert _ids() == {"tee": "top", "jeans": "bottom"}
    assert "unreadable_payload" in caplog.text


def test_only_the_asked_users_are_read(lake_items) -> None:
    frame = tables.current_wardrobe_items(["u2"])
    assert set(frame["user_id"]) == {"u2"}
    assert tables.current_wardrobes_of([]) == {}
    assert tables.current_wardrobes_of(["nobody"]) == {"nobody": []}
