"""A photo digitized again: readers keep its newest digitization and corrections follow the
garment to the item that took over (``core.wardrobe``, read through ``tables``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dresscode.core import lake, tables, wardrobe

SHA = "b" * 64


def _row(item_id: str, version: int, at: str | None, replaces: str | None = None, **kw) -> dict:
    row = {
        "item_id": item_id,
        "user_id": kw.pop("user", "u1"),
        "image_sha256": kw.pop("sha", SHA),
        "prompt_version": version,
        "category": kw.pop("category", "top"),
        "subcategory": "shirt",
        "color_names": ["blue"],
        "color_hexes": ["#0000ff"],
    }
    if at is not None:
        row |= {"digitized_at": at, "replaces": replaces}
    return row | kw


def _event(event_id: str, at: str, kind: str, item_id: str, **payload: object) -> dict:
    return {
        "event_id": event_id,
        "event_type": kind,
        "user_id": "u1",
        "event_time": at,
        "item_id": item_id,
        "image_sha256": SHA,
        "prompt_version": "1",
        "payload": json.dumps(payload),
    }


def test_newest_digitization_keeps_one_digitization_per_photo() -> None:
    items = [
        _row("old-a", 1, None),  # written before the column existed: the oldest
        _row("old-b", 1, None),
        _row("new-a", 2, "2026-06-01T00:00:00.000+00:00"),
        _row("other", 1, None, sha="c" * 64),  # another photo, never re-digitized
        _row("theirs", 1, None, user="u2"),  # the same photo of another user
    ]
    kept = wardrobe.newest_digitization(items)
    assert sorted(r["item_id"] for r in kept) == ["new-a", "other", "theirs"]


def test_one_row_per_item_keeps_the_latest_digitization_whatever_the_file_order() -> None:
    items = [
        _row("a", 2, "2026-06-02T00:00:00.000+00:00", category="outerwear"),
        _row("b", 1, None),
        _row("a", 1, "2026-06-01T00:00:00.000+00:00"),
        _row("c", 1, "2026-06-01T00:00:00.000+00:00"),
    ]
    kept = wardrobe.one_row_per_item(items)
    # In the order of their stamps, each where its item's latest row is.
    assert [(r["item_id"], r["category"]) for r in kept] == [
        ("b", "top"),
        ("c", "top"),
        ("a", "outerwear"),
    ]


def test_successors_follow_chains_and_survive_a_cycle() -> None:
    items = [
        _row("v2", 2, "2026-06-01T00:00:00.000+00:00", "v1"),
        _row("v3", 3, "2026-06-02T00:00:00.000+00:00", "v2"),
        _row("x", 3, "2026-06-02T00:00:00.000+00:00", None),
    ]
    assert wardrobe.successors(items) == {"v1": "v3", "v2": "v3"}
    loop = [_row("a", 2, "t", "b"), _row("b", 3, "t", "a")]
    found = wardrobe.successors(loop)  # never written, but a walk must still end
    assert set(found) == {"a", "b"}


@pytest.fixture
def redigitized(dresscode_home: Path) -> None:
    lake.write_parquet(
        "wardrobe_items",
        "2026-05-01",
        "v1",
        [_row("shirt-v1", 1, None), _row("belt-v1", 1, None, category="accessory")],
    )
    lake.write_parquet(
        "wardrobe_items",
        "2026-06-01",
        "v2",
        [
            _row("shirt-v2", 2, "2026-06-01T12:00:00.000+00:00", "shirt-v1"),
            _row("belt-v2", 2, "2026-06-01T12:00:00.000+00:00", "belt-v1", category="accessory"),
            _row("scarf-v2", 2, "2026-06-01T12:00:00.000+00:00", None, category="accessory"),
        ],
    )
    lake.write_parquet(
        "feedback",
        "2026-05-02",
        "events",
        [
            _event(
                "e1",
                "2026-05-02T08:00:00.000+00:00",
                "item_corrected",
                "shirt-v1",
                changes={"category": "outerwear"},
            ),
            _event("e2", "2026-05-02T09:00:00.000+00:00", "item_deleted", "belt-v1"),
        ],
    )


def test_readers_see_the_new_items_with_the_old_corrections(redigitized: None) -> None:
    seen = {i["item_id"]: i["category"] for i in tables.current_wardrobes_of(["u1"])["u1"]}
    assert seen == {"shirt-v2": "outerwear", "scarf-v2": "accessory"}  # belt stays deleted
    raw = {i["item_id"] for i in tables.wardrobes_of(["u1"])["u1"]}
    assert raw == {"shirt-v2", "belt-v2", "scarf-v2"}  # the digitizer's newest, uncorrected


def test_as_of_before_the_redigitization_shows_the_old_items(redigitized: None) -> None:
    before = tables.current_wardrobes_of(["u1"], as_of=datetime(2026, 5, 20, tzinfo=UTC))["u1"]
    assert {i["item_id"]: i["category"] for i in before} == {"shirt-v1": "outerwear"}
    # The same day, before the digitization's hour: still the old items.
    morning = tables.current_wardrobes_of(["u1"], as_of=datetime(2026, 6, 1, 9, tzinfo=UTC))
    assert {i["item_id"] for i in morning["u1"]} == {"shirt-v1"}


def test_an_added_item_without_some_fields_reads_them_as_none(redigitized: None) -> None:
    lake.write_parquet(
        "feedback",
        "2026-06-02",
        "added",
        [
            _event(
                "e3",
                "2026-06-02T08:00:00.000+00:00",
                "item_added",
                "hat-1",
                item={"category": "accessory", "colors": [{"name": "red", "hex": "#ff0000"}]},
            )
        ],
    )
    items = {i["item_id"]: i for i in tables.current_wardrobes_of(["u1"])["u1"]}
    hat = items["hat-1"]
    assert (hat["category"], hat["color_names"]) == ("accessory", ["red"])
    # A column the table has that the event did not name is None (never NaN): the stylist's
    # prompt is JSON.
    assert hat["subcategory"] is None and items["shirt-v2"]["subcategory"] == "shirt"
    json.dumps(list(items.values()), allow_nan=False)
