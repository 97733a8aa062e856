"""Weather: derived features, the per-city cache, retries and bad payloads — over real HTTP.

The provider is the Open-Meteo-shaped stub (``dresscode.sim.weather``) on loopback; its
``/_stats`` counts what really reached it, so cache and retry claims are checked on the wire.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import airflow.sdk  # noqa: F401  (Airflow sets up logging on import: before caplog, not during)
import httpx
import pytest

from dresscode.core import config, lake
from dresscode.core.config import Settings
from dresscode.core.connections import WeatherEndpoint
from dresscode.features.weather import (
    CIRCUIT_BREAK_AFTER,
    CityWeather,
    InvalidCity,
    Missing,
    MissingReason,
    RetryPolicy,
    WeatherError,
    cache_path,
    city_id,
    derive,
    fetch_weather,
    forecast_answer,
    forecast_features,
    season,
    temperature_tier,
    tool_answer,
    weather_for,
)
from dresscode.sim.testing import running_simulator, running_weather_stub

DAY = date(2025, 1, 15)
NOW = datetime(2025, 1, 15, 5, 0, tzinfo=UTC)
NO_WAIT = RetryPolicy(backoff_base_s=0.0, sleep=lambda _s: None)


# --- fixtures --------------------------------------------------------------------------------


@dataclass
class Stub:
    """The running stub: its API URL and its test controls."""

    url: str

    @property
    def control(self) -> str:
        return self.url.removesuffix("/v1")

    def endpoint(self, *, timeout_s: float = 5.0, api_key: str | None = None) -> WeatherEndpoint:
        return WeatherEndpoint(self.url, self.url, api_key, timeout_s)

    def faults(self, faults: dict[str, Any]) -> None:
        httpx.post(f"{self.control}/_faults", json=faults).raise_for_status()

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.control}/_stats").json()

    def forecasts(self) -> dict[str, int]:
        return self.stats()["forecast_requests"]


@pytest.fixture(scope="module")
def stub_url() -> Iterator[str]:
    with running_weather_stub(seed=7, timeout_fault_s=5.0) as url:
        yield url


@pytest.fixture
def stub(stub_url: str) -> Stub:
    stub = Stub(stub_url)
    httpx.post(f"{stub.control}/_reset").raise_for_status()
    return stub


@pytest.fixture
def settings(dresscode_home: Path) -> Settings:
    return config.get_settings()


class Sleeps(list):
    """A RetryPolicy.sleep that records instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def fetch(stub: Stub, settings: Settings, cities: list[str], **kwargs: Any) -> Any:
    kwargs.setdefault("day", DAY)
    kwargs.setdefault("now", NOW)
    kwargs.setdefault("endpoint", stub.endpoint())
    kwargs.setdefault("retry", NO_WAIT)
    return fetch_weather(cities, settings=settings, **kwargs)


def hourly(day: date = DAY, **overrides: Any) -> dict[str, list]:
    """24 local hours of ``day``: night hours extreme, daytime hours (08-20) known."""
    temps = [-40.0 if h < 8 or h > 20 else 10.0 + (h - 8) for h in range(24)]  # day mean 16
    return {
        "time": [f"{day.isoformat()}T{h:02d}:00" for h in range(24)],
        "temperature_2m": temps,
        "apparent_temperature": [t - 3 for t in temps],
        "precipitation_probability": [100 if h < 8 else 20 + 2 * h for h in range(24)],
        "wind_speed_10m": [90.0 if h > 20 else 5.0 + h for h in range(24)],
        **overrides,
    }


# --- names, tiers, seasons, derive -----------------------------------------------------------


def test_city_ids_are_stable_lake_safe_slugs() -> None:
    assert city_id("São Paulo") == "sao-paulo"
    assert city_id("  BERLIN ") == city_id("berlin") == "berlin"
    assert city_id("Reykjavík") == "reykjavik"
    assert city_id("Frankfurt (Oder)") == "frankfurt-oder"
    assert city_id("../../etc") == "etc"  # cannot climb out of weather_cache/
    moscow = city_id("Москва")
    assert moscow == city_id("москва") and moscow.startswith("x-")
    assert lake.safe_segment(moscow) == moscow


@pytest.mark.parametrize("bad", ["", "   ", "!!!", "12345", "Ber\x00lin", "x" * 101, None])
def test_garbage_city_names_are_invalid(bad: Any) -> None:
    with pytest.raises(InvalidCity) as caught:
        city_id(bad)
    assert caught.value.reason is MissingReason.INVALID_CITY


@pytest.mark.parametrize(
    ("t", "tier"),
    [
        (-0.1, "freezing"),
        (0.0, "cold"),
        (6.9, "cold"),
        (7.0, "chilly"),
        (12.9, "chilly"),
        (13.0, "mild"),
        (19.9, "mild"),
        (20.0, "warm"),
        (26.9, "warm"),
        (27.0, "hot"),
        (45.0, "hot"),
    ],
)
def test_temperature_tier_boundaries(t: float, tier: str) -> None:
    assert temperature_tier(t) == tier


@pytest.mark.parametrize(
    ("month", "north", "south"),
    [
        (1, "winter", "summer"),
        (4, "spring", "autumn"),
        (7, "summer", "winter"),
        (10, "autumn", "spring"),
        (12, "winter", "summer"),
    ],
)
def test_season_depends_on_hemisphere(month: int, north: str, south: str) -> None:
    day = date(2025, month, 10)
    assert season(52.5, day) == north
    assert season(-33.9, day) == south


def test_derive_uses_daytime_hours_only() -> None:
    features = derive(hourly(), latitude=-33.9, day=DAY)
    # Daytime 08:00-20:00: temperatures 10..22 (mean 16), night's -40 and wind 90 ignored.
    assert features == {
        "temperature_c": 16.0,
        "temperature_max_c": 22.0,
        "temperature_min_c": 10.0,
        "feels_like_c": 7.0,
        "precip_prob": 0.6,  # 20 + 2*20 at 20:00; the 100 % before 08:00 does not count
        "wind_kph": 25.0,
        "is_rainy": True,
        "temperature_tier": "mild",
        "season": "summer",
    }


def test_derive_ignores_other_days_in_the_answer() -> None:
    other = hourly(DAY + timedelta(days=1))
    both = {k: hourly()[k] + other[k] for k in other}
    both["temperature_2m"][24 + 12] = None  # junk on the next day is not this day's problem
    assert derive(both, latitude=52.5, day=DAY)["temperature_c"] == 16.0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"apparent_temperature": None}, MissingReason.MISSING_FIELDS),
        ({"wind_speed_10m": [5.0] * 23}, MissingReason.MALFORMED),
        ({"wind_speed_10m": "windy"}, MissingReason.MALFORMED),
        ({"time": ["yesterday"] * 24}, MissingReason.MALFORMED),
        ({"temperature_2m": [12.0] * 12 + ["12"] + [12.0] * 11}, MissingReason.MALFORMED),
        ({"temperature_2m": [12.0] * 12 + [True] + [12.0] * 11}, MissingReason.MALFORMED),
        ({"temperature_2m": [12.0] * 12 + [None] + [12.0] * 11}, MissingReason.MISSING_VALUES),
        ({"temperature_2m": [12.0] * 3 + [math.nan] + [12.0] * 20}, MissingReason.MISSING_VALUES),
        ({"temperature_2m": [12.0] * 14 + [70.0] + [12.0] * 9}, MissingReason.ABSURD_VALUE),
        ({"temperature_2m": [12.0] * 2 + [-90.0] + [12.0] * 21}, MissingReason.ABSURD_VALUE),
        ({"temperature_2m": [12.0] * 14 + [math.inf] + [12.0] * 9}, MissingReason.ABSURD_VALUE),
        ({"wind_speed_10m": [5.0] * 14 + [-1.0] + [5.0] * 9}, MissingReason.ABSURD_VALUE),
        ({"wind_speed_10m": [5.0] * 14 + [401.0] + [5.0] * 9}, MissingReason.ABSURD_VALUE),
        ({"precipitation_probability": [50] * 14 + [101] + [50] * 9}, MissingReason.ABSURD_VALUE),
        ({"time": [f"2025-01-16T{h:02d}:00" for h in range(24)]}, MissingReason.NO_DATA_FOR_DAY),
    ],
)
def test_derive_rejects_junk_with_a_precise_reason(change: dict, reason: MissingReason) -> None:
    data = hourly(**{k: v for k, v in change.items() if v is not None})
    for key in [k for k, v in change.items() if v is None]:
        del data[key]
    with pytest.raises(WeatherError) as caught:
        derive(data, latitude=52.5, day=DAY)
    assert caught.value.reason is reason
    assert caught.value.message  # one sentence for people


def test_a_two_to_fourteen_degree_day_keeps_its_high_and_low() -> None:
    # 2 °C at 08:00 rising to 14 °C at 14:00 and cooling again: the mean (under 10) hides both.
    temps = (
        [0.0] * 8
        + [2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 13.0, 12.0, 11.0, 10.0, 9.0, 8.0]
        + [0.0] * 3
    )
    features = derive(hourly(temperature_2m=temps), latitude=39.7, day=DAY)
    assert (features["temperature_min_c"], features["temperature_max_c"]) == (2.0, 14.0)
    assert features["temperature_min_c"] < features["temperature_c"] < features["temperature_max_c"]


@pytest.mark.parametrize("gone", [[12], [8], [20], list(range(9, 20))], ids=str)
def test_a_forecast_missing_daytime_hours_is_refused_not_guessed(gone: list[int]) -> None:
    data = {k: [v for h, v in enumerate(values) if h not in gone] for k, values in hourly().items()}
    with pytest.raises(WeatherError) as caught:
        derive(data, latitude=52.5, day=DAY)
    assert caught.value.reason is MissingReason.NO_DATA_FOR_DAY
    assert f"lacks {len(gone)} of the 13 daytime hours" in caught.value.message


def test_missing_night_hours_do_not_matter() -> None:
    night = {0, 1, 2, 5, 21, 23}
    data = {
        k: [v for h, v in enumerate(values) if h not in night] for k, values in hourly().items()
    }
    assert derive(data, latitude=52.5, day=DAY) == derive(hourly(), latitude=52.5, day=DAY)


@pytest.mark.parametrize(("hour", "says"), [(12, "lacks 12 of the 13"), (3, "no hours between")])
def test_one_hour_of_data_is_not_a_day(hour: int, says: str) -> None:
    data = {k: [values[hour]] for k, values in hourly().items()}
    with pytest.raises(WeatherError) as caught:
        derive(data, latitude=52.5, day=DAY)
    assert caught.value.reason is MissingReason.NO_DATA_FOR_DAY and says in caught.value.message


def local_hours(zone: str, day: date, *, offsets: bool) -> list[str]:
    """The local timestamps of ``day`` and the day after, as a DST-aware provider writes them:
    hour by hour in UTC, shown on the local clock (with the offset, or without: naive)."""
    tz = ZoneInfo(zone)
    start = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
    stamps = [(start + timedelta(hours=n)).astimezone(tz) for n in range(49)]
    stamps = [s for s in stamps if s.date() <= day + timedelta(days=1)]
    return [
        s.isoformat(timespec="minutes") if offsets else s.strftime("%Y-%m-%dT%H:%M") for s in stamps
    ]


def by_local_hour(times: list[str]) -> dict[str, list]:
    """Values that depend on the local hour only: 10 + h/2 °C, so 14 at 08:00 and 20 at 20:00."""
    hours = [datetime.fromisoformat(t).hour for t in times]
    temps = [10.0 + h / 2 for h in hours]
    return {
        "time": times,
        "temperature_2m": temps,
        "apparent_temperature": [t - 1 for t in temps],
        "precipitation_probability": [30] * len(times),
        "wind_speed_10m": [10.0] * len(times),
    }


@pytest.mark.parametrize(
    ("day", "entries"),
    [(date(2025, 3, 30), 23), (date(2025, 10, 26), 25), (date(2025, 10, 27), 24)],
    ids=["spring-forward-23h", "fall-back-25h", "ordinary-24h"],
)
@pytest.mark.parametrize("offsets", [True, False], ids=["with-offset", "naive"])
def test_a_local_day_across_a_dst_change_derives_like_any_day(
    day: date, entries: int, offsets: bool
) -> None:
    times = local_hours("Europe/Berlin", day, offsets=offsets)
    assert sum(t.startswith(day.isoformat()) for t in times) == entries
    features = derive(by_local_hour(times), latitude=52.5, day=day)
    assert features["temperature_min_c"] == 14.0 and features["temperature_max_c"] == 20.0
    assert features["temperature_c"] == 17.0 and features["feels_like_c"] == 13.0
    # The day after the change is a plain 24-hour day in the same answer.
    after = derive(by_local_hour(times), latitude=52.5, day=day + timedelta(days=1))
    assert after == features


def test_a_whole_forecast_answer_derives_with_its_own_latitude() -> None:
    body = {
        "latitude": -33.87,
        "longitude": 151.2,
        "timezone": "Australia/Sydney",
        "hourly": hourly(),
    }
    assert forecast_features(body, day=DAY)["season"] == "summer"  # January, south
    assert forecast_features(body, day=DAY, latitude=52.5)["season"] == "winter"  # the geocoder's
    answer = forecast_answer(body, city="Sydney", day=DAY)
    assert answer == tool_answer(
        derive(hourly(), latitude=-33.87, day=DAY), city="Sydney", day="2025-01-15"
    )
    assert (answer["temperature_max_c"], answer["temperature_min_c"]) == (22.0, 10.0)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], MissingReason.MALFORMED),
        ({"latitude": 52.5}, MissingReason.MISSING_FIELDS),
        ({"hourly": hourly()}, MissingReason.MALFORMED),
        ({"latitude": "north", "hourly": hourly()}, MissingReason.MALFORMED),
        ({"latitude": 95.0, "hourly": hourly()}, MissingReason.MALFORMED),
    ],
)
def test_a_forecast_answer_that_is_not_one_is_refused(body: Any, reason: MissingReason) -> None:
    with pytest.raises(WeatherError) as caught:
        forecast_features(body, day=DAY)
    assert caught.value.reason is reason


def test_a_row_from_before_the_high_and_low_sends_no_junk_to_the_model() -> None:
    old_row = {"temperature_c": 9.9, "temperature_max_c": math.nan, "feels_like_c": 7.0}
    answer = tool_answer(old_row, city="Denver", day="2025-10-14")
    assert "temperature_max_c" not in answer and "temperature_min_c" not in answer
    assert answer["temperature_c"] == 9.9
    json.dumps(answer, allow_nan=False)


# --- end to end over HTTP --------------------------------------------------------------------


def test_features_for_cities_in_both_hemispheres(stub: Stub, settings: Settings) -> None:
    batch = fetch(stub, settings, ["Berlin", "Sydney", "São Paulo", "Yakutsk", "Dubai"])
    assert batch.missing == []
    rows = {row.city: row for row in batch.rows}
    assert rows["Berlin"].season == "winter" and rows["Sydney"].season == "summer"
    assert rows["São Paulo"].season == "summer" and rows["São Paulo"].latitude < 0
    assert rows["Yakutsk"].temperature_tier == "freezing"  # January in Yakutsk
    assert rows["Dubai"].temperature_c > rows["Berlin"].temperature_c + 8
    for row in batch.rows:
        assert row.source == "provider" and row.fetched_at == NOW and row.day == DAY
        assert row.temperature_tier == temperature_tier(row.temperature_c)
        assert row.temperature_min_c <= row.temperature_c <= row.temperature_max_c
        assert row.feels_like_c <= row.temperature_c + 5
        assert 0.0 <= row.precip_prob <= 1.0 and row.is_rainy == (row.precip_prob >= 0.5)
    assert batch.provider_calls == 5 and batch.geocoding_calls == 5


def test_feature_row_and_tool_answer_are_plain(stub: Stub, settings: Settings) -> None:
    row = weather_for("Sydney", day=DAY, now=NOW, endpoint=stub.endpoint(), settings=settings)
    assert isinstance(row, CityWeather)
    feature = row.feature_row()
    assert feature["city_id"] == "sydney" and feature["day"] == "2025-01-15"
    assert feature["event_timestamp"] == NOW and feature["event_timestamp"].tzinfo is not None
    assert feature["created"].tzinfo is not None and feature["created"] >= NOW
    assert {type(v) for v in feature.values()} <= {str, float, bool, datetime}
    answer = row.tool_answer()
    assert answer["date"] == "2025-01-15" and answer["city"] == "Sydney"
    assert answer["precipitation_probability"] == round(row.precip_prob * 100)
    assert isinstance(answer["precipitation_probability"], int)
    assert set(answer) == {
        "city",
        "date",
        "temperature_c",
        "temperature_max_c",
        "temperature_min_c",
        "feels_like_c",
        "precipitation_probability",
        "wind_kph",
        "is_rainy",
        "temperature_tier",
        "season",
    }
    json.dumps(answer)  # goes to the model as a tool result


def test_the_cache_saves_provider_calls_within_its_ttl(stub: Stub, settings: Settings) -> None:
    cities = ["Berlin", "Oslo", "Cape Town"]
    batches = [fetch(stub, settings, cities, now=NOW + timedelta(minutes=m)) for m in (0, 30, 90)]
    assert stub.forecasts() == {"berlin": 1, "oslo": 1, "cape town": 1}
    assert sum(stub.stats()["search_requests"].values()) == 3
    assert [b.provider_calls for b in batches] == [3, 0, 0]
    assert [b.cache_hits for b in batches] == [0, 3, 3]
    assert [r.source for r in batches[2].rows] == ["cache"] * 3
    first = {r.city_id: replace(r, source="x") for r in batches[0].rows}
    assert {r.city_id: replace(r, source="x") for r in batches[2].rows} == first


def test_an_expired_cache_is_refetched_and_days_are_cached_apart(
    stub: Stub, settings: Settings
) -> None:
    ttl = timedelta(seconds=settings.weather_cache_ttl_s)
    fetch(stub, settings, ["London"])
    assert fetch(stub, settings, ["London"], now=NOW + ttl - timedelta(seconds=1)).cache_hits == 1
    later = fetch(stub, settings, ["London"], now=NOW + ttl + timedelta(seconds=1))
    assert later.provider_calls == 1 and later.rows[0].source == "provider"
    assert later.rows[0].fetched_at == NOW + ttl + timedelta(seconds=1)
    tomorrow = fetch(stub, settings, ["London"], day=DAY + timedelta(days=1))
    assert tomorrow.provider_calls == 1 and tomorrow.rows[0].day == DAY + timedelta(days=1)
    assert stub.forecasts() == {"london": 3}
    assert stub.stats()["search_requests"] == {"london": 1}  # coordinates are cached for good


def test_server_errors_are_retried_with_backoff(stub: Stub, settings: Settings) -> None:
    stub.faults({"berlin": {"fault": "server_error", "times": 2}})
    sleeps = Sleeps()
    batch = fetch(stub, settings, ["Berlin"], retry=RetryPolicy(backoff_base_s=0.5, sleep=sleeps))
    assert [r.source for r in batch.rows] == ["provider"] and batch.missing == []
    assert batch.provider_calls == 3 and stub.forecasts() == {"berlin": 3}
    assert len(sleeps) == 2
    assert 0.0 <= sleeps[0] <= 0.5 and 0.0 <= sleeps[1] <= 1.0  # full jitter, doubling


def test_server_errors_past_max_attempts_make_the_city_missing(
    stub: Stub, settings: Settings
) -> None:
    stub.faults({"berlin": "server_error"})
    batch = fetch(stub, settings, ["Berlin", "Oslo"])
    assert [m.reason for m in batch.missing] == ["server_error"]
    assert [r.city for r in batch.rows] == ["Oslo"]  # one bad city does not stop the batch
    assert stub.forecasts()["berlin"] == settings.weather_max_attempts


@pytest.mark.parametrize(("retry_after", "slept"), [(5, 5.0), (3600, 30.0)])
def test_rate_limits_honour_retry_after_capped(
    stub: Stub, settings: Settings, retry_after: int, slept: float
) -> None:
    stub.faults({"oslo": {"fault": "rate_limited", "times": 1, "retry_after": retry_after}})
    sleeps = Sleeps()
    policy = RetryPolicy(backoff_base_s=0.0, retry_after_cap_s=30.0, sleep=sleeps)
    batch = fetch(stub, settings, ["Oslo"], retry=policy)
    assert batch.rows[0].source == "provider" and batch.provider_calls == 2
    assert sleeps == [slept]


def test_client_errors_are_not_retried(stub: Stub, settings: Settings) -> None:
    stub.faults({"oslo": "bad_request"})
    batch = fetch(stub, settings, ["Oslo"])
    assert batch.missing[0].reason == "client_error" and batch.provider_calls == 1


def test_timeouts_fall_back_to_a_stale_cache_then_go_missing(
    stub: Stub, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    good = fetch(stub, settings, ["Bergen"]).rows[0]
    stub.faults({"bergen": {"fault": "timeout", "seconds": 2.0}, "seattle": {"fault": "timeout", "seconds": 2.0}})  # fmt: skip
    quick = stub.endpoint(timeout_s=0.2)
    past_ttl = NOW + timedelta(seconds=settings.weather_cache_ttl_s + 60)
    with caplog.at_level(logging.WARNING, logger="dresscode.features.weather"):
        batch = fetch(
            stub,
            settings,
            ["Bergen", "Seattle"],
            now=past_ttl,
            endpoint=quick,
            retry=replace(NO_WAIT, max_attempts=2),
        )
    stale = batch.rows[0]
    assert stale.source == "stale_cache" and batch.stale_used == 1
    assert replace(stale, source="provider") == good  # the cached values, fetched_at kept
    assert [(m.city, m.reason) for m in batch.missing] == [("Seattle", "timeout")]  # no cache
    assert stub.forecasts() == {"bergen": 3, "seattle": 2}  # 1 good + 2 timed-out attempts
    assert any("cached forecast" in r.message and "timeout" in r.message for r in caplog.records)

    too_old = NOW + timedelta(seconds=settings.weather_stale_max_s + 1)
    gone = fetch(stub, settings, ["Bergen"], now=too_old, endpoint=quick, retry=replace(NO_WAIT, max_attempts=1))  # fmt: skip
    assert gone.rows == [] and gone.missing[0].reason == "timeout"
    assert "too old" in gone.missing[0].message


def test_unknown_cities_are_missing(stub: Stub, settings: Settings) -> None:
    batch = fetch(stub, settings, ["Atlantis", "Oslo"])
    assert batch.missing == [
        Missing(
            "atlantis",
            "Atlantis",
            "unknown_city",
            "The geocoder does not know a place called 'Atlantis'.",
        )
    ]
    assert batch.provider_calls == 1  # no forecast asked for a place we could not find


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("missing_fields", "missing_fields"),
        ("nan", "missing_values"),
        ("absurd_cold", "absurd_value"),
        ("absurd_hot", "absurd_value"),
        ("malformed", "malformed"),
    ],
)
def test_bad_payloads_make_the_city_missing_never_a_junk_row(
    stub: Stub, settings: Settings, fault: str, reason: str
) -> None:
    stub.faults({"reykjavik": fault})
    batch = fetch(stub, settings, ["Reykjavik", "Madrid"])
    assert [(m.city, m.reason) for m in batch.missing] == [("Reykjavik", reason)]
    assert [r.city for r in batch.rows] == ["Madrid"]
    assert stub.forecasts()["reykjavik"] == 1  # the same question gets the same junk: no retry
    assert not lake.exists(cache_path("reykjavik", settings)) or (
        not lake.read_json(cache_path("reykjavik", settings))["forecasts"]
    )


@pytest.mark.parametrize(
    ("fault", "tier", "check"),
    [
        ("blizzard", "freezing", lambda r: r.wind_kph == 60.0 and r.feels_like_c == -25.0),
        ("heatwave", "hot", lambda r: r.temperature_c == 38.0 and not r.is_rainy),
        ("downpour", None, lambda r: r.precip_prob == 0.95 and r.is_rainy),
    ],
)
def test_weather_scenarios_come_through_as_features(
    stub: Stub, settings: Settings, fault: str, tier: str | None, check: Any
) -> None:
    stub.faults({"madrid": fault})
    row = fetch(stub, settings, ["Madrid"]).rows[0]
    assert check(row)
    assert tier is None or row.temperature_tier == tier


def test_duplicates_and_garbage_in_the_input(stub: Stub, settings: Settings) -> None:
    batch = fetch(
        stub, settings, ["Berlin", "berlin", " BERLIN ", "São Paulo", "Sao Paulo", "", "!!"]
    )
    assert [(r.city_id, r.city) for r in batch.rows] == [
        ("berlin", "Berlin"),
        ("sao-paulo", "São Paulo"),
    ]
    assert stub.forecasts() == {"berlin": 1, "sao paulo": 1}
    assert [m.reason for m in batch.missing] == ["invalid_city", "invalid_city"]


def test_api_key_is_sent_only_when_set_and_never_logged(
    stub: Stub, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "om-secret-key-123"
    # Airflow quiets httpx to WARNING; open it up so its request lines (with URLs) are logged.
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="httpx"):
        fetch(stub, settings, ["Tokyo", "Atlantis"], endpoint=stub.endpoint(api_key=secret))
        stub.faults({"mumbai": "server_error"})
        fetch(stub, settings, ["Mumbai"], endpoint=stub.endpoint(api_key=secret))
    stats = stub.stats()
    assert stats["apikeys"] == {secret: 2 + 1 + 1 + settings.weather_max_attempts}
    assert stats["without_apikey"] == 0
    assert "httpx" in {r.name for r in caplog.records}  # requests were logged, ...
    assert secret not in caplog.text  # ... without the key

    httpx.post(f"{stub.control}/_reset")
    fetch(stub, settings, ["Oslo"])
    assert stub.stats()["apikeys"] == {} and stub.stats()["without_apikey"] == 2


def test_a_provider_outage_trips_the_breaker_and_spares_the_batch(
    stub: Stub, settings: Settings
) -> None:
    cities = ["Berlin", "London", "Paris", "Madrid", "Oslo"]
    fetch(stub, settings, ["Madrid"])  # cached earlier: still served stale during the outage
    stub.faults({"*": "server_error"})
    batch = fetch(
        stub,
        settings,
        cities,
        now=NOW + timedelta(hours=4),
        retry=replace(NO_WAIT, max_attempts=2),
    )
    reasons = {m.city: m.reason for m in batch.missing}
    assert reasons == {
        "Berlin": "server_error",
        "London": "server_error",
        "Paris": "server_error",
        "Oslo": "provider_unavailable",
    }
    assert [(r.city, r.source) for r in batch.rows] == [("Madrid", "stale_cache")]
    assert batch.provider_calls == 2 * CIRCUIT_BREAK_AFTER


def test_a_corrupt_cache_record_is_ignored(stub: Stub, settings: Settings) -> None:
    lake.write_bytes(cache_path("oslo", settings), b"{not json")
    batch = fetch(stub, settings, ["Oslo"])
    assert batch.rows[0].source == "provider"
    record = lake.read_json(cache_path("oslo", settings))
    assert record["geocode"]["country_code"] == "NO"

    # A fresh-looking entry with junk in it is not served either.
    record["forecasts"][DAY.isoformat()]["features"]["precip_prob"] = 7.0
    lake.write_json(cache_path("oslo", settings), record)
    again = fetch(stub, settings, ["Oslo"], now=NOW + timedelta(minutes=1))
    assert again.rows[0].source == "provider" and 0 <= again.rows[0].precip_prob <= 1
    assert stub.forecasts() == {"oslo": 2}


def test_a_cache_entry_from_before_the_high_and_low_is_fetched_again(
    stub: Stub, settings: Settings
) -> None:
    fetch(stub, settings, ["Oslo"])
    record = lake.read_json(cache_path("oslo", settings))
    for key in ("temperature_max_c", "temperature_min_c"):
        del record["forecasts"][DAY.isoformat()]["features"][key]
    lake.write_json(cache_path("oslo", settings), record)
    again = fetch(stub, settings, ["Oslo"], now=NOW + timedelta(minutes=1))
    assert again.rows[0].source == "provider" and stub.forecasts() == {"oslo": 2}
    assert again.rows[0].temperature_min_c <= again.rows[0].temperature_max_c


def test_naive_now_is_refused(stub: Stub, settings: Settings) -> None:
    with pytest.raises(ValueError, match="aware"):
        fetch(stub, settings, ["Oslo"], now=datetime(2025, 1, 15, 5, 0))


# --- the stub itself -------------------------------------------------------------------------


def forecast(url: str, **params: Any) -> dict[str, Any]:
    base = {
        "latitude": 52.52437,
        "longitude": 13.41053,
        "hourly": "temperature_2m,apparent_temperature,precipitation_probability,wind_speed_10m",
        "timezone": "auto",
        "start_date": "2025-07-01",
        "end_date": "2025-07-02",
    }
    response = httpx.get(f"{url}/forecast", params={**base, **params})
    response.raise_for_status()
    return response.json()


def test_the_stub_answers_in_open_meteo_shape_deterministically(stub: Stub) -> None:
    body = forecast(stub.url)
    assert body["timezone"] == "Europe/Berlin" and body["utc_offset_seconds"] == 7200
    assert body["hourly_units"]["temperature_2m"] == "°C"
    assert body["hourly"]["time"][:2] == ["2025-07-01T00:00", "2025-07-01T01:00"]
    assert {len(v) for v in body["hourly"].values()} == {48}
    assert forecast(stub.url)["hourly"] == body["hourly"]
    with running_weather_stub(seed=8) as other:
        assert forecast(other)["hourly"]["temperature_2m"] != body["hourly"]["temperature_2m"]
    found = httpx.get(f"{stub.url}/search", params={"name": "sao paulo", "count": 1}).json()
    assert found["results"][0]["name"] == "São Paulo"
    assert found["results"][0]["timezone"] == "America/Sao_Paulo"
    assert "results" not in httpx.get(f"{stub.url}/search", params={"name": "Atlantis"}).json()
    bad = httpx.get(f"{stub.url}/forecast", params={"latitude": 91, "longitude": 0})
    assert bad.status_code == 400 and bad.json()["error"] is True


def test_the_simulator_serves_the_weather_stub_under_weather() -> None:
    with running_simulator(fixed_latency_ms=1) as sim_url:
        root = sim_url.removesuffix("/v1")
        found = httpx.get(f"{root}/weather/v1/search", params={"name": "Cape Town"}).json()
        assert found["results"][0]["country_code"] == "ZA"
        assert forecast(f"{root}/weather/v1")["timezone"] == "Europe/Berlin"
