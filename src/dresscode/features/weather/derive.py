"""Weather features: what a city is, and one day's daytime features from an hourly forecast.

Pure: no network, no lake. :func:`city_id` turns a display name into the stable, lake-safe id
the cache and the feature store key on; :func:`derive` validates Open-Meteo ``hourly`` data and
derives the daytime features — a 70 °C hour, a NaN or a daytime hour missing raises
:class:`WeatherError` with a reason from :class:`MissingReason` instead of becoming a feature.
:class:`CityWeather` is one city's row; :class:`Missing` says why a city has none.

One weather truth. Every consumer reads the same derived fields, over the same daytime hours
(local 08:00-20:00): ``temperature_c`` (the mean, and its ``temperature_tier``),
``temperature_max_c`` / ``temperature_min_c`` (the day's high and low: the outfit rules' heat
and cold thresholds read them), ``feels_like_c`` (the lowest apparent temperature), the highest
precipitation chance and wind. The ``weather`` lake table, the Feast views, the stylist's
``get_weather`` answer (:func:`tool_answer`) and the golden outfit scenarios (provider payloads,
through :func:`forecast_answer`) all come from :func:`derive`.

Days are local wall-clock days: a day across a DST change has 23 or 25 entries, and only the
daytime hours (never touched by a change) must all be there.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from dresscode.core import lake

HOURLY_VARIABLES = (
    "temperature_2m",
    "apparent_temperature",
    "precipitation_probability",
    "wind_speed_10m",
)
# Daytime = local hours 08:00 to 20:00, both included: when people wear what they pick.
DAY_START_HOUR = 8
DAY_END_HOUR = 20
RAINY_AT = 0.5  # precipitation probability (0..1) from which a day counts as rainy
# Plausible bounds per variable; outside them a value is junk, not weather. Apparent
# temperature legitimately goes past air temperature (wind chill, humidex), hence wider.
VALID_RANGES: dict[str, tuple[float, float]] = {
    "temperature_2m": (-60.0, 60.0),
    "apparent_temperature": (-80.0, 80.0),
    "precipitation_probability": (0.0, 100.0),
    "wind_speed_10m": (0.0, 400.0),
}
TEMPERATURE_TIERS = (  # (upper bound exclusive, tier), checked in order
    (0.0, "freezing"),
    (7.0, "cold"),
    (13.0, "chilly"),
    (20.0, "mild"),
    (27.0, "warm"),
    (math.inf, "hot"),
)
NORTH_SEASONS = {
    12: "winter", 1: "winter", 2: "winter",
    3: "spring", 4: "spring", 5: "spring",
    6: "summer", 7: "summer", 8: "summer",
    9: "autumn", 10: "autumn", 11: "autumn",
}  # fmt: skip
SOUTH_OF = {"winter": "summer", "summer": "winter", "spring": "autumn", "autumn": "spring"}

MAX_CITY_CHARS = 100
MAX_SLUG_CHARS = 80
SOURCES = ("provider", "cache", "stale_cache")
# The features :func:`derive` returns, in the order a CityWeather row holds them.
FEATURE_KEYS = (
    "temperature_c",
    "temperature_max_c",
    "temperature_min_c",
    "feels_like_c",
    "precip_prob",
    "wind_kph",
    "is_rainy",
    "temperature_tier",
    "season",
)


class MissingReason(StrEnum):
    """Why a city has no weather row. Stable codes: logs, metrics and the runbook use them."""

    INVALID_CITY = "invalid_city"  # empty or garbage name
    UNKNOWN_CITY = "unknown_city"  # the geocoder has no such place
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    RATE_LIMITED = "rate_limited"  # 429 after every retry
    SERVER_ERROR = "server_error"  # 5xx after every retry
    UNAUTHORIZED = "unauthorized"  # 401/403: the API key is wrong or missing
    CLIENT_ERROR = "client_error"  # another 4xx: our request is wrong
    PROVIDER_UNAVAILABLE = "provider_unavailable"  # not asked: the provider is down this batch
    MALFORMED = "malformed"  # not JSON, wrong types, wrong lengths, bad timestamps
    MISSING_FIELDS = "missing_fields"  # a requested variable is absent
    MISSING_VALUES = "missing_values"  # null or NaN values on the target day
    ABSURD_VALUE = "absurd_value"  # a value outside VALID_RANGES
    NO_DATA_FOR_DAY = "no_data_for_day"  # the answer lacks daytime hours of the target day
    INTERNAL_ERROR = "internal_error"  # a bug on our side; the traceback is in the log


class WeatherError(Exception):
    """One city's weather could not be had; ``reason`` is stable, ``message`` is for people."""

    def __init__(
        self, reason: MissingReason, message: str, *, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after_s = retry_after_s


class InvalidCity(WeatherError):
    """A city name that is empty, too long or has no letters."""

    def __init__(self, message: str) -> None:
        super().__init__(MissingReason.INVALID_CITY, message)


@dataclass(frozen=True)
class CityWeather:
    """Daytime weather features of one city for one day."""

    city_id: str
    city: str
    latitude: float
    longitude: float
    day: date
    temperature_c: float  # mean air temperature over the daytime hours
    temperature_max_c: float  # the day's high: warmest daytime hour (the heat rule)
    temperature_min_c: float  # the day's low: coldest daytime hour (the cold rule)
    feels_like_c: float  # coldest apparent temperature over the daytime hours
    precip_prob: float  # highest precipitation probability, 0..1
    wind_kph: float  # highest wind speed
    is_rainy: bool
    temperature_tier: str
    season: str
    fetched_at: datetime  # aware UTC: when the provider answered
    source: str  # provider | cache | stale_cache

    def feature_row(self) -> dict[str, Any]:
        """One row of the ``weather`` offline table (plain Python types)."""
        row = asdict(self)
        row["day"] = self.day.isoformat()
        row["event_timestamp"] = self.fetched_at
        row["created"] = datetime.now(UTC)
        return row

    def tool_answer(self) -> dict[str, Any]:
        """What the stylist's ``get_weather`` tool returns to the model."""
        return tool_answer(asdict(self), city=self.city, day=self.day.isoformat())


def tool_answer(features: Mapping[str, Any], *, city: str, day: str) -> dict[str, Any]:
    """The ``get_weather`` answer from one city's weather features — a fresh fetch, an
    online feature row or a lake row alike (``precip_prob`` 0..1 becomes a percentage).

    The high and low go to the model under the names the outfit rules read. A row written
    before they existed has none (null or NaN): they are left out rather than sent as junk,
    and the rules fall back on the mean.
    """
    extremes = {
        key: _finite(features.get(key)) for key in ("temperature_max_c", "temperature_min_c")
    }
    return {
        "city": city,
        "date": day,
        "temperature_c": features["temperature_c"],
        **{key: value for key, value in extremes.items() if value is not None},
        "feels_like_c": features.get("feels_like_c"),
        "precipitation_probability": round(100 * float(features.get("precip_prob") or 0)),
        "wind_kph": features.get("wind_kph"),
        "is_rainy": bool(features.get("is_rainy")),
        "temperature_tier": features.get("temperature_tier"),
        "season": features.get("season"),
    }


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def forecast_features(forecast: Any, *, day: date, latitude: float | None = None) -> dict[str, Any]:
    """One day's features from a whole Open-Meteo ``/v1/forecast`` answer. Pure.

    What the provider returns and what a golden outfit scenario states go through here alike.
    ``latitude`` (it decides the season) is the geocoder's when given, else the answer's own.
    Raises :class:`WeatherError`.
    """
    if not isinstance(forecast, Mapping):
        raise WeatherError(MissingReason.MALFORMED, "The forecast is not a JSON object.")
    if "hourly" not in forecast:
        raise WeatherError(MissingReason.MISSING_FIELDS, "The forecast has no 'hourly' data.")
    if latitude is None:
        latitude = _finite(forecast.get("latitude"))
        if latitude is None or not -90 <= latitude <= 90:
            raise WeatherError(
                MissingReason.MALFORMED,
                f"The forecast's latitude is not a latitude: {forecast.get('latitude')!r}.",
            )
    return derive(forecast["hourly"], latitude=latitude, day=day)


def forecast_answer(forecast: Any, *, city: str, day: date) -> dict[str, Any]:
    """The ``get_weather`` answer for ``city`` on ``day`` from a whole Open-Meteo forecast:
    :func:`forecast_features`, then :func:`tool_answer`. Raises :class:`WeatherError`."""
    return tool_answer(forecast_features(forecast, day=day), city=city, day=day.isoformat())


@dataclass(frozen=True)
class Missing:
    """A city without a weather row, and why."""

    city_id: str  # "" when the name itself is invalid
    city: str
    reason: str  # a MissingReason value
    message: str


# --- names -----------------------------------------------------------------------------------


def clean_city_name(name: str) -> str:
    """The display name as we send it: NFC, single spaces. Raises InvalidCity for garbage."""
    if not isinstance(name, str):
        raise InvalidCity(f"City name must be text, got {type(name).__name__}.")
    text = " ".join(unicodedata.normalize("NFC", name).split())
    if not text:
        raise InvalidCity("City name is empty.")
    if len(text) > MAX_CITY_CHARS:
        raise InvalidCity(f"City name is longer than {MAX_CITY_CHARS} characters.")
    # Control, surrogate, private-use and unassigned code points; format characters such as
    # the zero-width non-joiner are legitimate in some scripts (Persian) and stay.
    if any(unicodedata.category(ch) in {"Cc", "Cs", "Co", "Cn"} for ch in text):
        raise InvalidCity("City name contains control or invisible characters.")
    if not any(ch.isalpha() for ch in text):
        raise InvalidCity(f"City name {text!r} has no letters.")
    return text


def city_id(name: str) -> str:
    """A stable, lake-safe slug: ``"São Paulo"`` -> ``"sao-paulo"``. Raises InvalidCity.

    Accents are dropped and case folded, so spellings of one city share one id (and one cache
    record). Names with no Latin letters (``"Москва"``) get ``"x-"`` plus a hash of the name:
    still stable, still safe, and the geocoder still gets the real name.
    """
    text = clean_city_name(name)
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    ascii_text = decomposed.encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")[:MAX_SLUG_CHARS].strip("-")
    if not re.search(r"[a-z]", slug):
        folded = unicodedata.normalize("NFKC", text.casefold())
        slug = "x-" + hashlib.sha256(folded.encode()).hexdigest()[:16]
    return lake.safe_segment(slug, what="city id")


# --- pure features ---------------------------------------------------------------------------


def temperature_tier(t: float) -> str:
    """freezing (<0), cold [0,7), chilly [7,13), mild [13,20), warm [20,27), hot (>=27)."""
    return next(tier for upper, tier in TEMPERATURE_TIERS if t < upper)


def season(latitude: float, day: date) -> str:
    """Meteorological season; the southern hemisphere (latitude < 0) is shifted by 6 months."""
    north = NORTH_SEASONS[day.month]
    return SOUTH_OF[north] if latitude < 0 else north


def _number(variable: str, value: Any, when: str) -> float:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise WeatherError(
            MissingReason.MISSING_VALUES, f"The forecast has no {variable} value at {when}."
        )
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WeatherError(
            MissingReason.MALFORMED,
            f"The forecast's {variable} at {when} is not a number ({type(value).__name__}).",
        )
    lo, hi = VALID_RANGES[variable]
    if not lo <= value <= hi:  # also catches ±inf
        raise WeatherError(
            MissingReason.ABSURD_VALUE,
            f"The forecast's {variable} at {when} is {value:g}, outside [{lo:g}, {hi:g}].",
        )
    return float(value)


def _hours_of_day(times: list[Any], day: date) -> list[tuple[int, int, str]]:
    """(index, local hour, time string) of every entry on ``day``."""
    out = []
    for i, raw in enumerate(times):
        try:
            stamp = datetime.fromisoformat(raw) if isinstance(raw, str) else None
        except ValueError:
            stamp = None
        if stamp is None:
            raise WeatherError(
                MissingReason.MALFORMED, f"The forecast's time #{i} is not a timestamp: {raw!r}."
            )
        if stamp.date() == day:
            out.append((i, stamp.hour, raw))
    return out


def derive(
    hourly: Mapping[str, Any],
    *,
    latitude: float,
    day: date,
    start_hour: int = DAY_START_HOUR,
    end_hour: int = DAY_END_HOUR,
) -> dict[str, Any]:
    """Validate Open-Meteo ``hourly`` data and derive one day's daytime features. Pure.

    ``hourly["time"]`` holds local timestamps (with or without an offset: the wall-clock date
    and hour are what count). Every value of the target day is checked (a junk value at night
    means a junk forecast); the daytime hours, all of them, feed the features: mean, high and
    low of the air temperature, lowest feels-like, highest rain chance and wind. Raises
    :class:`WeatherError` with a precise reason instead of returning a row with junk.
    """
    if not isinstance(hourly, Mapping):
        raise WeatherError(MissingReason.MALFORMED, "The forecast has no 'hourly' object.")
    absent = [name for name in ("time", *HOURLY_VARIABLES) if name not in hourly]
    if absent:
        raise WeatherError(
            MissingReason.MISSING_FIELDS, f"The forecast lacks hourly {', '.join(absent)}."
        )
    series = {name: hourly[name] for name in ("time", *HOURLY_VARIABLES)}
    for name, values in series.items():
        if not isinstance(values, list):
            raise WeatherError(
                MissingReason.MALFORMED, f"The forecast's hourly {name} is not a list."
            )
    lengths = {name: len(values) for name, values in series.items()}
    if len(set(lengths.values())) != 1:
        raise WeatherError(
            MissingReason.MALFORMED,
            f"The forecast's hourly series differ in length: {lengths}.",
        )
    entries = _hours_of_day(series["time"], day)
    checked = {
        name: {i: _number(name, series[name][i], when) for i, _, when in entries}
        for name in HOURLY_VARIABLES
    }
    daytime = [i for i, hour, _ in entries if start_hour <= hour <= end_hour]
    _check_daytime_complete({hour for _, hour, _ in entries}, day, start_hour, end_hour)
    temps = [checked["temperature_2m"][i] for i in daytime]
    temperature_c = round(sum(temps) / len(temps), 1)
    precip_prob = round(max(checked["precipitation_probability"][i] for i in daytime) / 100, 2)
    return {
        "temperature_c": temperature_c,
        "temperature_max_c": round(max(temps), 1),
        "temperature_min_c": round(min(temps), 1),
        "feels_like_c": round(min(checked["apparent_temperature"][i] for i in daytime), 1),
        "precip_prob": precip_prob,
        "wind_kph": round(max(checked["wind_speed_10m"][i] for i in daytime), 1),
        "is_rainy": precip_prob >= RAINY_AT,
        "temperature_tier": temperature_tier(temperature_c),  # of the value we show
        "season": season(latitude, day),
    }


def _check_daytime_complete(hours: set[int], day: date, start_hour: int, end_hour: int) -> None:
    """Every daytime hour must be there: a high and a low from what is left of a day could
    miss the cold morning or the hot afternoon. (Night hours may be missing or doubled: a DST
    change gives a local day of 23 or 25 entries, always at night.)"""
    wanted = range(start_hour, end_hour + 1)
    missing = [h for h in wanted if h not in hours]
    if len(missing) == len(wanted):
        raise WeatherError(
            MissingReason.NO_DATA_FOR_DAY,
            f"The forecast has no hours between {start_hour:02d}:00 and {end_hour:02d}:00 on {day}.",
        )
    if missing:
        shown = ", ".join(f"{h:02d}:00" for h in missing[:4]) + (", …" if len(missing) > 4 else "")
        raise WeatherError(
            MissingReason.NO_DATA_FOR_DAY,
            f"The forecast lacks {len(missing)} of the {len(wanted)} daytime hours on {day} "
            f"({shown}): no high and low can be told from the rest.",
        )
