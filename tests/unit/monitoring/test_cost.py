"""Tokens and cost per photo, per outfit suggestion and per day (monitoring/cost.py)."""

from __future__ import annotations

import math
from datetime import timedelta

import pandas as pd
import pytest

from dresscode.monitoring import cost

PRICES = {"gemma": {"prompt_per_1m": 1.0, "completion_per_1m": 2.0}}


def calls(*rows: dict) -> pd.DataFrame:
    base = {"day": "2026-03-02", "prompt_version": "2", "model": "gemma"}
    return pd.DataFrame([{**base, **row} for row in rows])


def value(frame: pd.DataFrame, metric: str, prompt: str = "") -> tuple[float, int]:
    row = frame[(frame["metric"] == metric) & (frame["prompt_name"] == prompt)].iloc[0]
    return float(row["value"]), int(row["n"])


def test_a_photo_asked_twice_counts_once_with_both_calls_tokens() -> None:
    frame = cost.cost_metrics(
        calls(
            {
                "prompt_name": "wardrobe-digitizer",
                "purpose": "digitize",
                "image_sha256": "a",
                "prompt_tokens": 300,
                "completion_tokens": 100,
            },
            {
                "prompt_name": "wardrobe-digitizer",
                "purpose": "digitize",
                "image_sha256": "a",
                "prompt_tokens": 300,
                "completion_tokens": 100,
            },
            {
                "prompt_name": "wardrobe-digitizer",
                "purpose": "digitize",
                "image_sha256": "b",
                "prompt_tokens": 300,
                "completion_tokens": 200,
            },
        ),
        PRICES,
        by_day=True,
        span=timedelta(days=1),
    )
    assert value(frame, "tokens_per_photo", "wardrobe-digitizer") == (650.0, 2)
    spent, n = value(frame, "cost_per_photo_usd", "wardrobe-digitizer")
    assert spent == pytest.approx(((900 * 1.0 + 400 * 2.0) / 1e6) / 2) and n == 2


def test_every_turn_of_a_suggestion_adds_up_and_the_day_totals_all_prompts() -> None:
    turns = [
        {"prompt_name": "outfit-stylist", "purpose": "outfit", "user_id": "u1",
         "prompt_tokens": 1000, "completion_tokens": 50}
        for _ in range(4)
    ] + [{"prompt_name": "outfit-stylist", "purpose": "outfit", "user_id": "u2",
          "prompt_tokens": 1000, "completion_tokens": 50}]  # fmt: skip
    frame = cost.cost_metrics(calls(*turns), PRICES, by_day=False, span=timedelta(days=2))
    assert value(frame, "tokens_per_outfit", "outfit-stylist") == (2625.0, 2)  # (4200+1050)/2
    per_day, _ = value(frame, "cost_usd_per_day")
    assert per_day == pytest.approx(5 * (1000 + 100) / 1e6 / 2)  # a 2-day window: per day


def test_a_model_without_a_price_has_no_cost_never_a_zero() -> None:
    frame = cost.cost_metrics(
        calls(
            {
                "prompt_name": "outfit-stylist",
                "purpose": "outfit",
                "user_id": "u1",
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "model": "unpriced",
            }
        ),
        PRICES,
        by_day=True,
        span=timedelta(days=1),
    )
    assert value(frame, "tokens_per_outfit", "outfit-stylist") == (15.0, 1)
    spent, n = value(frame, "cost_usd_per_day")
    assert math.isnan(spent) and n == 0
