"""A small lake the serving readers are tested over: two users' profiles and wardrobes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dresscode.core import lake
from dresscode.core.config import get_settings
from dresscode.features import users


def _item(user: str, item_id: str, category: str) -> dict[str, Any]:
    return {
        "item_id": item_id,
        "user_id": user,
        "image_sha256": "a" * 64,
        "prompt_version": 2,
        "category": category,
        "subcategory": category,
        "color_names": ["white"],
        "color_hexes": ["#ffffff"],
        "warmth": "light",
        "formality": "casual",
        "water_resistant": False,
        "description": f"a {category}",
    }


@pytest.fixture
def two_users_lake(dresscode_home: Path) -> Path:
    """u1 (profile Oslo, then Rome) owns a tee and jeans; u2 (Lima) owns a coat."""
    users.write_profiles(
        [
            {"user_id": "u1", "city": "Oslo", "last_active_at": datetime(2026, 5, 1, tzinfo=UTC)},
            {"user_id": "u1", "city": "Rome", "last_active_at": datetime(2026, 5, 2, tzinfo=UTC)},
            {"user_id": "u2", "city": "Lima", "last_active_at": datetime(2026, 5, 1, tzinfo=UTC)},
        ],
        day="2026-05-02",
        settings=get_settings(),
    )
    lake.write_parquet(
        "wardrobe_items",
        "2026-05-01",
        "p1",
        [
            _item("u1", "tee", "top"),
            _item("u1", "jeans", "bottom"),
            _item("u2", "coat", "outerwear"),
        ],
    )
    return dresscode_home
