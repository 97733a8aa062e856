"""Feedback closes the loop: what users delete, add and correct is what the stylist and the style
features see next, and their thumbs reach the stylist version's quality metrics and the view.

Events go through the functions feedback_ingest calls (landing file -> ``validate_and_apply``),
then the readers of style_features (``compute_style``) and outfit_pregen
(``current_wardrobes_of``) run on the same lake.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from dresscode.core import lake, tables
from dresscode.feedback import tasks as feedback
from dresscode.outfits import rules

DAY = "2026-03-03"
NOW = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
USER = "user-a"
SHA = hashlib.sha256(USER.encode()).hexdigest()
ITEM = {
    "subcategory": "t-shirt",
    "pattern": "solid",
    "material": "cotton",
    "warmth": "light",
    "formality": "casual",
    "seasons": ["summer"],
    "water_resistant": False,
    "description": "a white t-shirt",
}
ADDED = ITEM | {
    "category": "footwear",
    "subcategory": "sneakers",
    "colors": [{"name": "red", "hex": "#ff0000"}],
}


def _item(item_id: str, category: str) -> dict:
    return ITEM | {
        "item_id": item_id,
        "category": category,
        "user_id": USER,
        "image_sha256": SHA,
        "upload_key": f"{USER}/p.jpg",
        "prompt_version": 2,
        "color_names": ["white"],
        "color_hexes": ["#ffffff"],
    }


@pytest.fixture
def world(dresscode_home: Path) -> None:
    """One user, one photo: a top, a jacket digitized as a top, trousers and old shoes."""
    manifest = {
        "upload_key": f"{USER}/p.jpg",
        "user_id": USER,
        "status": "accepted",
        "image_sha256": SHA,
        "prompt_version": 2,
        "processed_at": "2026-03-01T08:00:00.000+00:00",
    }
    items = [
        _item("tee", "top"),
        _item("jacket", "top"),
        _item("trousers", "bottom"),
        _item("old-shoes", "footwear"),
    ]
    lake.write_parquet("manifests", "2026-03-01", "batch-test", [manifest])
    lake.write_parquet("wardrobe_items", "2026-03-01", "batch-test", items)
    suggestions = [
        {
            "user_id": USER,
            "day": day,
            "status": "ok",
            "n_outfits": 3,
            "prompt_name": "outfit-stylist",
            "prompt_version": version,
            "generated_at": f"{day}T05:00:00.000+00:00",
        }
        for day, version in (("2026-03-01", 4), ("2026-03-02", 5))
    ]
    lake.write_parquet("outfit_suggestions", "2026-03-02", "users-test", suggestions)


def _event(event_id: str, event_type: str, minutes_ago: float, **fields: object) -> dict:
    at = (NOW - timedelta(minutes=minutes_ago)).isoformat()
    common = {"event_id": event_id, "event_type": event_type, "user_id": USER, "event_time": at}
    return common | fields


def _land(name: str, lines: list[dict]) -> None:
    text = "".join(json.dumps(line) + "\n" for line in lines)
    lake.write_bytes(lake.landing() / "feedback" / name, text.encode())


def _apply() -> feedback.Applied:
    return feedback.validate_and_apply(feedback.discover(), day=DAY, now=NOW)


def _current() -> dict[str, dict]:
    return {i["item_id"]: dict(i) for i in tables.current_wardrobes_of([USER])[USER]}


def _corrections() -> list[dict]:
    return [
        _event("e1", "item_deleted", 50, item_id="old-shoes"),
        _event("e2", "item_added", 40, image_sha256=SHA, item=ADDED),
        _event("e3", "item_corrected", 30, item_id="jacket", changes={"category": "outerwear"}),
    ]


def test_the_wardrobe_read_leaves_deleted_out_adds_added_and_sees_corrections(world) -> None:
    _land("a.jsonl", _corrections())
    applied = _apply()
    assert applied["by_type"] == {"item_added": 1, "item_corrected": 1, "item_deleted": 1}
    assert feedback.wardrobe_changes(applied) == {
        "item_corrected": 1,
        "item_deleted": 1,
        "item_added": 1,
        "duplicate_confirmed": 0,  # a confirmed possible duplicate leaves the wardrobe too
    }

    wardrobe = _current()  # what outfit_pregen hands the stylist (and its rules)
    assert "old-shoes" not in wardrobe
    added = [i for i in wardrobe.values() if i["category"] == "footwear"]
    assert [a["color_names"] for a in added] == [["red"]]
    assert wardrobe["jacket"]["category"] == "outerwear"
    assert tables.wardrobes_of([USER])[USER][1]["category"] == "top"  # the raw read is untouched
    # The rules see the corrected category: the jacket is outerwear now, not a second top.
    assert [i["item_id"] for i in wardrobe.values() if i["category"] == "top"] == ["tee"]
    assert rules.can_form_outfit(wardrobe.values())
    assert not rules.can_form_outfit([wardrobe["jacket"], wardrobe["trousers"]])


def test_style_features_are_computed_from_the_current_wardrobe(world, monkeypatch) -> None:
    from dresscode.features import tasks as features
    from dresscode.features import users

    _land("a.jsonl", _corrections())
    _apply()
    monkeypatch.setattr(
        users,
        "active_users",
        lambda **_: [users.User(user_id=USER, city="Berlin", last_active_at=NOW)],
    )
    # item_embeddings ran before the deletion: the old shoes' vector is still online.
    _embed_items({"tee": "top", "jacket": "top", "trousers": "bottom", "old-shoes": "footwear"})
    as_of = NOW + timedelta(hours=1)
    window = features.Window(start=(as_of - timedelta(days=1)).isoformat(), as_of=as_of.isoformat())
    computed = features.compute_style(window)
    row = lake.read_table("user_style").set_index("user_id").loc[USER]
    assert computed["users"] == 1
    assert row["wardrobe_size"] == 4  # tee, jacket, trousers, the added sneakers; no old shoes
    assert row["outerwear_count"] == 1
    assert row["share_top"] == pytest.approx(0.25)
    assert "red" in list(row["top_colors"])
    # The vectors of the current wardrobe only (3 items, one cluster); the sneakers have none yet.
    assert list(row["style_clusters"]) == ["white top x3"]


def _embed_items(categories: dict[str, str]) -> None:
    from dresscode.core.config import get_settings
    from dresscode.features.embeddings import online

    vector = [1.0] + [0.0] * (get_settings().embedding_dimension - 1)
    online.write(
        online.open_store(apply=True),
        [
            {"item_id": item_id, "user_id": USER, "category": category,
             "colour_family": "white", "model": "test-model", "text_sha": "sha",
             "vector": vector, "event_timestamp": datetime.now(UTC)}
            for item_id, category in categories.items()
        ],
    )  # fmt: skip


def test_bad_and_out_of_order_feedback_leaves_a_truthful_wardrobe(world) -> None:
    # A later file carries an earlier deletion; a correction of the deleted item comes after.
    _land(
        "a.jsonl", [_event("e5", "item_corrected", 10, item_id="tee", changes={"warmth": "warm"})]
    )
    _apply()
    _land(
        "b.jsonl",
        [
            _event("e4", "item_deleted", 20, item_id="tee"),
            _event("e6", "item_deleted", 5, item_id="tee"),  # twice
            _event("e7", "item_corrected", 4, item_id="tee", changes={"category": "dress"}),
        ],
    )
    _apply()
    assert "tee" not in _current()
    # Point in time: before the deletion the tee is there, uncorrected.
    before = tables.current_wardrobes_of([USER], as_of=NOW - timedelta(minutes=25))[USER]
    assert {i["item_id"]: i["warmth"] for i in before}["tee"] == "light"
    # A user with no photos has no items, and reading them fails nothing.
    assert tables.current_wardrobes_of(["nobody"]) == {"nobody": []}


def test_thumbs_down_rate_per_stylist_version_reaches_metrics_and_the_view(world) -> None:
    from dresscode.monitoring import metrics
    from dresscode.ui import view

    rated = [
        _event(
            "r1", "outfit_rated", 30, suggestion_day="2026-03-01", outfit_index=0, rating="down"
        ),
        _event("r2", "outfit_rated", 29, suggestion_day="2026-03-01", outfit_index=1, rating="up"),
        _event("r3", "outfit_rated", 28, suggestion_day="2026-03-02", outfit_index=0, rating="up"),
        _event("r4", "wore_instead", 27, suggestion_day="2026-03-02", item_ids=["tee"]),
    ]
    _land("r.jsonl", rated)
    assert _apply()["accepted"] == 4
    frame = metrics.compute_metrics(
        datetime(2026, 3, 3, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC)
    )
    got = {
        (r["prompt_version"], r["metric"]): (r["value"], r["n"])
        for r in frame[frame["prompt_name"] == "outfit-stylist"].to_dict("records")
    }
    assert got[("4", "thumbs_down_rate")] == (0.5, 2)
    assert got[("5", "thumbs_down_rate")] == (0.0, 1)
    assert got[("5", "wore_instead_rate")] == (1.0, 1)
    assert got[("4", "wore_instead_rate")] == (0.0, 1)
    metrics.write_metrics(frame)
    shown = view.feedback_by_version("outfit-stylist", today=date(2026, 3, 3))
    assert [(f["version"], f["thumbs_down_rate"]) for f in shown] == [("4", 0.5), ("5", 0.0)]
    page = view.render_prompt(
        {"name": "outfit-stylist", "versions": [], "evaluations": [], "feedback": shown,
         "slo": view.slo_series("outfit-stylist", today=date(2026, 3, 3))}
    )  # fmt: skip
    assert "thumbs-down rate" in page
    assert "thumbs_down_rate" in page  # its SLO sparkline, from the default SLOs
