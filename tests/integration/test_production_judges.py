"""The LLM judges nightly on production suggestions (``model_monitoring.judge_production``):
a fixed sample of the window's suggestions, judged against the user's wardrobe and the day's
weather, recorded in MLflow, a broken judge detected. A real local lake, the real MLflow
store and the project's simulator as the judge model (its verdicts are rules, not Gemma's)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dresscode.core import config, lake
from dresscode.features import users as user_profiles
from dresscode.features import weather
from dresscode.monitoring import production_judges

MODEL = "google/gemma-4-26B-A4B-it"
JUDGE = "judge-model"
DAY, OTHER_DAY = "2026-05-01", "2026-04-28"
START, END = datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 2, tzinfo=UTC)
CITY = {"u-hot": "Seville", "u-ok": "Oslo", "u-lie": "Oslo", "u-old": "Oslo", "u-skip": "Oslo"}


def _item(user: str, item_id: str, sub: str, warmth: str = "light") -> dict:
    return {"item_id": item_id, "user_id": user, "image_sha256": "a" * 64, "prompt_version": 2,
            "category": "top", "subcategory": sub, "color_names": ["white"],
            "color_hexes": ["#ffffff"], "warmth": warmth, "formality": "casual",
            "water_resistant": False, "description": f"a {sub}"}  # fmt: skip


def _suggestion(user: str, day: str, reason: str, items: list[str], status: str = "ok") -> dict:
    outfits = [{"item_ids": items, "reason": reason}] if status == "ok" else []
    return {"user_id": user, "day": day, "status": status, "skip_reason": None,
            "outfits": json.dumps(outfits), "n_outfits": len(outfits), "notes": "",
            "prompt_name": "outfit-stylist", "prompt_version": 2,
            "generated_at": datetime(2026, 5, 1, 3, tzinfo=UTC)}  # fmt: skip


def _weather(city: str, day: str, high: float, low: float) -> dict:
    return {"city_id": weather.city_id(city), "day": day, "temperature_c": (high + low) / 2,
            "temperature_max_c": high, "temperature_min_c": low, "feels_like_c": high,
            "precip_prob": 0.0, "wind_kph": 5.0, "is_rainy": False,
            "temperature_tier": "hot" if high > 25 else "mild", "season": "spring",
            "event_timestamp": datetime(2026, 5, 1, tzinfo=UTC),
            "created": datetime(2026, 5, 1, tzinfo=UTC)}  # fmt: skip


@pytest.fixture
def production(dresscode_home: Path) -> None:
    """Four answered suggestions of the window's day (one names boots the user does not own,
    one puts a heavy parka on a 33 °C day in Seville), a skipped one, and one of another day."""
    items = [
        _item("u-ok", "tee", "t-shirt"), _item("u-ok", "jeans", "jeans"),
        _item("u-lie", "tee2", "t-shirt"), _item("u-lie", "jeans2", "jeans"),
        _item("u-hot", "parka", "parka", "heavy"), _item("u-hot", "shorts", "shorts"),
        _item("u-old", "tee3", "t-shirt"), _item("u-skip", "tee4", "t-shirt"),
    ]  # fmt: skip
    lake.write_parquet("wardrobe_items", DAY, "items", items)
    user_profiles.write_profiles(
        [{"user_id": u, "city": c, "last_active_at": START} for u, c in CITY.items()], day=DAY
    )
    lake.write_parquet(
        "weather", DAY, "w", [_weather("Seville", DAY, 33, 21), _weather("Oslo", DAY, 14, 6)]
    )
    lake.write_parquet("outfit_suggestions", DAY, "s", [
        _suggestion("u-ok", DAY, "Your white t-shirt with jeans.", ["tee", "jeans"]),
        _suggestion("u-lie", DAY, "The t-shirt and jeans, finished with your boots.",
                    ["tee2", "jeans2"]),
        _suggestion("u-hot", DAY, "The parka over shorts.", ["parka", "shorts"]),
        _suggestion("u-skip", DAY, "", [], status="skipped"),
    ])  # fmt: skip
    lake.write_parquet(
        "outfit_suggestions", OTHER_DAY, "s", [_suggestion("u-old", OTHER_DAY, "Boots!", ["tee3"])]
    )


@contextmanager
def _judge(monkeypatch: pytest.MonkeyPatch, profile: str, sample: int = 20) -> Iterator[None]:
    from dresscode.sim.testing import running_simulator

    with running_simulator(
        served_model_name=[f"{MODEL}=perfect", f"{JUDGE}={profile}"], fixed_latency_ms=5
    ) as url:
        conn = {"conn_type": "http", "host": url, "extra": {"model": MODEL, "max_concurrency": 8}}
        monkeypatch.setenv("AIRFLOW_CONN_DRESSCODE_LLM", json.dumps(conn))
        monkeypatch.setenv("DRESSCODE_JUDGE_MODEL", JUDGE)
        monkeypatch.setenv("DRESSCODE_MONITORING_JUDGE_SAMPLE", str(sample))
        config.get_settings.cache_clear()
        yield
    config.get_settings.cache_clear()


def test_the_judges_score_the_windows_suggestions_and_the_run_is_in_mlflow(
    production: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    with _judge(monkeypatch, "perfect"):
        judged = production_judges.judge_production(START, END, "manual__night")

    # The window's three answered suggestions: not the skipped one, not another day's.
    assert (judged["suggestions"], judged["judged"], judged["errors"]) == (3, 3, 0)
    assert judged["unowned_by_rule"] == 1  # u-lie's boots
    assert judged["rule_agreement"] == 1.0 and judged["judges"].startswith("reliable")
    assert judged["pass_rates"]["owned_garments"] == pytest.approx(2 / 3)
    # The parka on a 33 °C day: the weather reached the judge from the lake's weather features.
    assert judged["pass_rates"]["weather_fit"] == pytest.approx(2 / 3)
    assert judged["pass_rates"]["safe_language"] == 1.0
    assert sorted(judged["failing"]) == [f"u-hot/{DAY} weather_fit", f"u-lie/{DAY} owned_garments"]
    run = mlflow.get_run(judged["mlflow_run_id"])
    assert run.data.tags["dresscode.kind"] == "production_judges"
    assert run.data.tags["dresscode.sample"] == "3 of 3"
    assert run.data.metrics["judge_pass_rate_owned_garments"] == pytest.approx(2 / 3)
    # Each suggestion's verdicts sit on its own trace, with the judges' rationales.
    traces = mlflow.search_traces(run_id=judged["mlflow_run_id"], return_type="list")
    assert len(traces) == 3
    rationale = {
        a.name: a.rationale
        for t in traces
        for a in t.info.assessments
        if json.loads(t.data.request)["example_id"] == f"u-lie/{DAY}"
    }
    assert "boots" in rationale["owned_garments"]


def test_a_bad_judge_is_reported_unreliable_and_fails_nothing(
    production: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _judge(monkeypatch, "bad-judge"):
        judged = production_judges.judge_production(START, END, "manual__bad")

    assert judged["judged"] == 3
    assert judged["judges"].startswith("UNRELIABLE")
    assert judged["rule_agreement"] is not None and judged["rule_agreement"] < 0.9


def test_the_sample_is_fixed_and_bounded(production: None) -> None:
    settings = config.get_settings()
    first, total = production_judges.sample([DAY], 2, settings)
    again, _ = production_judges.sample([DAY], 2, settings)
    assert total == 3 and len(first) == 2
    assert list(first["user_id"]) == list(again["user_id"])  # a re-run judges the same ones
    larger, _ = production_judges.sample([DAY], 3, settings)
    assert set(first["user_id"]) < set(larger["user_id"])  # a larger sample extends it
    assert production_judges.sample([OTHER_DAY], 5, settings)[1] == 1  # by the window's days


def test_off_and_an_empty_window_judge_nothing_and_call_no_model(
    production: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRESSCODE_MONITORING_JUDGE_SAMPLE", "0")
    config.get_settings.cache_clear()
    off = production_judges.judge_production(START, END, "manual__off")
    assert off["judged"] == 0 and off["judges"].startswith("not run")
    monkeypatch.setenv("DRESSCODE_MONITORING_JUDGE_SAMPLE", "5")
    config.get_settings.cache_clear()
    empty = production_judges.judge_production(
        datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 2, tzinfo=UTC), "manual__empty"
    )
    assert (empty["suggestions"], empty["judged"]) == (0, 0)
    assert empty["mlflow_run_id"] is None  # no endpoint is set here: no model was called


def test_window_days_cover_the_window_by_calendar_day() -> None:
    assert production_judges.window_days(START, END) == [DAY]
    assert production_judges.window_days(
        datetime(2026, 4, 30, 12, tzinfo=UTC), datetime(2026, 5, 1, 12, tzinfo=UTC)
    ) == ["2026-04-30", DAY]
