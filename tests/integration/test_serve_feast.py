"""The online stylist's Feast reader against the real Feast (local yaml: SQLite online store):
style features and the pushed live weather come back per (user, city), and the weather row
answers the get_weather tool without a fetch."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from dresscode.core import lake
from dresscode.core.config import get_settings
from dresscode.features import materialization, style
from dresscode.features import store as features
from dresscode.features.weather import city_id
from dresscode.serve.context import WeatherAnswers, lake_readers

pytestmark = pytest.mark.integration


def test_the_serve_reader_gets_style_and_live_weather_for_many_users_at_once(
    dresscode_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    features.apply()
    now = datetime.now(UTC).replace(microsecond=0)
    day = now - timedelta(days=1)
    items = [
        {
            "user_id": "u1",
            "category": c,
            "color_names": ["black"],
            "warmth": "medium",
            "formality": "casual",
            "water_resistant": False,
            "date": day.date().isoformat(),
        }
        for c in ("top", "bottom", "outerwear")
    ]
    frame = style.style_features(pd.DataFrame(items), as_of=now, user_ids=["u1"], created=now)
    lake.write_parquet("user_style", day.date(), "snapshot", frame)
    materialization.materialize(day, now)
    oslo = city_id("Oslo")
    features.push_weather(
        [
            {
                "city_id": oslo,
                "event_timestamp": now,
                "created": now,
                "temperature_c": 4.0,
                "temperature_max_c": 7.0,
                "temperature_min_c": 1.0,
                "feels_like_c": 0.0,
                "precip_prob": 0.7,
                "wind_kph": 20.0,
                "is_rainy": True,
                "temperature_tier": "cold",
                "season": "winter",
                "day": now.date().isoformat(),
            }
        ]
    )

    readers = lake_readers(get_settings())
    assert readers.warm is not None
    with caplog.at_level("INFO", logger="dresscode.serve.context"):
        readers.warm()  # what a reader does at start: the first request finds the store open
    assert "Feast's online store opened in" in caplog.text
    rows = readers.online([("u1", oslo), ("ghost", "atlantis")])
    assert rows[("u1", oslo)]["wardrobe_size"] == 3
    assert rows[("u1", oslo)]["temperature_c"] == 4.0
    assert rows[("ghost", "atlantis")]["wardrobe_size"] is None  # unknown: nulls, not an error

    fetched: list[str] = []
    answers = WeatherAnswers(lambda city, d: fetched.append(city) or None, ttl_s=3600)
    lookup = answers.lookup_for(rows[("u1", oslo)])
    answer = asyncio.run(lookup("Oslo", now.date()))
    assert answer is not None and answer["temperature_max_c"] == 7.0
    assert answer["precipitation_probability"] == 70 and fetched == []  # no fetch needed
