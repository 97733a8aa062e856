"""The view's similar-items panel over a real Feast online store and lake (vectors written
online directly, as the embedding run does)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from dresscode.core import lake
from dresscode.features.embeddings import online
from dresscode.ui import similar

ITEMS = {  # item -> (description, direction of its vector)
    "shirt": ("Light blue cotton shirt.", [1.0, 0.0, 0.0]),
    "blouse": ("Blue linen blouse.", [0.9, 0.1, 0.0]),
    "coat": ("Camel wool coat.", [0.0, 1.0, 0.0]),
    "gone": ("Blue shirt, deleted.", [0.95, 0.05, 0.0]),
}


@pytest.fixture
def wardrobe(dresscode_home: Path) -> None:
    rows = [
        {"item_id": i, "user_id": "u1", "category": "top", "subcategory": i, "description": d}
        for i, (d, _) in ITEMS.items()
    ]
    lake.write_parquet("wardrobe_items", "2026-11-23", "items", rows)
    store = online.open_store(apply=True)
    now = datetime.now(UTC)
    rows = [
        {"item_id": i, "user_id": "u1", "category": "top", "colour_family": "blue",
         "model": "m", "vector": _pad(v), "event_timestamp": now}
        for i, (_, v) in ITEMS.items()
    ]  # fmt: skip
    online.write(store, rows)
    deleted = {
        "user_id": "u1", "event_id": "d1", "event_type": "item_deleted",
        "event_time": "2026-11-24T08:00:00+00:00", "item_id": "gone", "payload": json.dumps({}),
    }  # fmt: skip
    lake.write_parquet("feedback", "2026-11-24", "d1", [deleted])


def _pad(v: list[float]) -> list[float]:
    out = np.zeros(384, dtype=np.float32)
    out[:3] = v
    return (out / np.linalg.norm(out)).tolist()


def test_the_panel_lists_the_nearest_current_items_with_their_descriptions(wardrobe) -> None:
    panel = similar.similar_panel("shirt", k=3)
    assert [s["item_id"] for s in panel["similar"]] == ["blouse", "coat"]  # "gone" was deleted
    assert panel["similar"][0]["description"] == "Blue linen blouse."
    page = similar.render_similar(panel)
    assert "Similar to shirt" in page and "Blue linen blouse." in page and "gone" not in page


def test_an_item_without_a_vector_is_a_clear_not_found(dresscode_home: Path) -> None:
    with pytest.raises(similar.NoVector, match="not embedded yet"):
        similar.similar_panel("nope")
