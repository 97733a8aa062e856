"""Weather for the stylist: provider client, per-city cache, derived daytime features.

The provider speaks Open-Meteo's API (``/v1/search`` geocoding, ``/v1/forecast`` hourly
forecasts); the ``weather_api`` connection points it at the public API, a paid plan, a mirror
or the local stub (``dresscode.sim.weather``). For each city and target day we keep a small
JSON record in the lake (``weather_cache/<city_id>.json``) with its coordinates (kept forever:
cities do not move) and the last good features per day, so that:

* a city asked for again within ``weather_cache_ttl_s`` is answered from the cache, not the
  provider (the hourly DAG and the stylist's tool fallback share it);
* when the provider fails after retries, a forecast up to ``weather_stale_max_s`` old is used
  instead (``source="stale_cache"``, with a WARNING naming the reason); older: the city is
  missing with that reason.

Nothing here raises for one bad city: every city ends as a :class:`CityWeather` row or a
:class:`Missing` entry with a reason code from :class:`MissingReason`. Provider answers are
validated before they become features (a 70 °C hour or a NaN never reaches the feature store).
Retries: timeouts, connection errors, 429 (``Retry-After`` honoured, capped) and 5xx, with
exponential backoff and full jitter; other 4xx and bad payloads are not retried (asking again
gets the same answer). After ``CIRCUIT_BREAK_AFTER`` cities in a row fail that way, the provider
is considered down for the rest of the batch, so an outage costs seconds, not hours.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import httpx

from dresscode.core import lake
from dresscode.core.config import Settings, WeatherEndpoint, get_settings, weather_endpoint
from dresscode.core.http import retry_after_seconds

log = logging.getLogger(__name__)

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
CACHE_VERSION = 1
CIRCUIT_BREAK_AFTER = 3  # cities in a row failing on a retryable error -> provider is down
PROGRESS_EVERY = 25  # cities between progress log lines
SOURCES = ("provider", "cache", "stale_cache")


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
    NO_DATA_FOR_DAY = "no_data_for_day"  # the answer has no daytime hours of the target day
    INTERNAL_ERROR = "internal_error"  # a bug on our side; the traceback is in the log


RETRYABLE = frozenset(
    {
        MissingReason.TIMEOUT,
        MissingReason.CONNECTION_ERROR,
        MissingReason.RATE_LIMITED,
        MissingReason.SERVER_ERROR,
    }
)


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
    online feature row or a lake row alike (``precip_prob`` 0..1 becomes a percentage)."""
    return {
        "city": city,
        "date": day,
        "temperature_c": features["temperature_c"],
        "feels_like_c": features.get("feels_like_c"),
        "precipitation_probability": round(100 * float(features.get("precip_prob") or 0)),
        "wind_kph": features.get("wind_kph"),
        "is_rainy": bool(features.get("is_rainy")),
        "temperature_tier": features.get("temperature_tier"),
        "season": features.get("season"),
    }


@dataclass(frozen=True)
class Missing:
    """A city without a weather row, and why."""

    city_id: str  # "" when the name itself is invalid
    city: str
    reason: str  # a MissingReason value
    message: str


@dataclass
class WeatherBatch:
    """The outcome of one :func:`fetch_weather` call."""

    rows: list[CityWeather] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)
    provider_calls: int = 0  # HTTP requests sent to the forecast endpoint (retries included)
    cache_hits: int = 0
    stale_used: int = 0
    geocoding_calls: int = 0  # HTTP requests sent to the geocoding endpoint

    def missing_by_reason(self) -> dict[str, int]:
        return dict(Counter(m.reason for m in self.missing).most_common())


@dataclass(frozen=True)
class RetryPolicy:
    """How provider requests are retried. ``max_attempts=None``: ``settings.weather_max_attempts``.

    Full jitter: the n-th retry waits uniform(0, min(backoff_max_s, backoff_base_s * 2^(n-1))).
    A ``Retry-After`` is a floor on that wait, itself capped at ``retry_after_cap_s`` so a
    provider cannot park the batch. ``sleep`` and ``rng`` are injectable for tests.
    """

    max_attempts: int | None = None
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    retry_after_cap_s: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random | None = None

    def delay(self, retry: int, retry_after_s: float | None) -> float:
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (retry - 1))
        delay = (self.rng or random).uniform(0.0, ceiling) if ceiling > 0 else 0.0
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.retry_after_cap_s))
        return delay


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

    ``hourly["time"]`` holds local timestamps. Every value of the target day is checked
    (a junk value at night means a junk forecast); daytime hours feed the features. Raises
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
    if not daytime:
        raise WeatherError(
            MissingReason.NO_DATA_FOR_DAY,
            f"The forecast has no hours between {start_hour:02d}:00 and {end_hour:02d}:00 on {day}.",
        )
    temps = [checked["temperature_2m"][i] for i in daytime]
    temperature_c = round(sum(temps) / len(temps), 1)
    precip_prob = round(max(checked["precipitation_probability"][i] for i in daytime) / 100, 2)
    return {
        "temperature_c": temperature_c,
        "feels_like_c": round(min(checked["apparent_temperature"][i] for i in daytime), 1),
        "precip_prob": precip_prob,
        "wind_kph": round(max(checked["wind_speed_10m"][i] for i in daytime), 1),
        "is_rainy": precip_prob >= RAINY_AT,
        "temperature_tier": temperature_tier(temperature_c),  # of the value we show
        "season": season(latitude, day),
    }


# --- the provider ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """A geocoded city, cached forever."""

    name: str
    latitude: float
    longitude: float
    timezone: str | None
    country: str | None
    country_code: str | None


def _status_error(response: httpx.Response, redact: Callable[[str], str]) -> WeatherError:
    """Map a non-200 answer to a reason; Open-Meteo explains errors in ``{"reason": …}``."""
    status = response.status_code
    try:
        detail = response.json().get("reason")
    except (ValueError, AttributeError):
        detail = None
    said = f": {redact(str(detail)[:200]).rstrip('.')}" if detail else ""
    if status == 429:
        return WeatherError(
            MissingReason.RATE_LIMITED,
            f"The provider rate-limited us (HTTP 429){said}.",
            retry_after_s=retry_after_seconds(response.headers.get("retry-after")),
        )
    if status >= 500:
        return WeatherError(
            MissingReason.SERVER_ERROR, f"The provider failed (HTTP {status}){said}."
        )
    if status in (401, 403):
        return WeatherError(
            MissingReason.UNAUTHORIZED,
            f"The provider refused our API key (HTTP {status}); check the weather_api connection.",
        )
    return WeatherError(
        MissingReason.CLIENT_ERROR, f"The provider rejected the request (HTTP {status}){said}."
    )


class _RedactApiKey(logging.Filter):
    """httpx logs every request URL at INFO; ours carry ``apikey=…``. Keys never reach logs."""

    _KEY = re.compile(r"(apikey=)[^&\s\"']+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "apikey=" in message.lower():
            record.msg, record.args = self._KEY.sub(r"\1***", message), None
        return True


_REDACTOR = _RedactApiKey()


def _install_redactor() -> None:
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if _REDACTOR not in logger.filters:
            logger.addFilter(_REDACTOR)


class _Provider:
    """HTTP to the provider: retries, counters, a circuit breaker per endpoint."""

    def __init__(
        self, endpoint: WeatherEndpoint, client: httpx.Client, retry: RetryPolicy, attempts: int
    ) -> None:
        self.endpoint = endpoint
        self.client = client
        self.retry = retry
        self.max_attempts = attempts
        self.calls = Counter[str]()
        self.failures_in_a_row = Counter[str]()
        self.last_failure: dict[str, WeatherError] = {}
        if endpoint.api_key:
            _install_redactor()

    def _redact(self, text: str) -> str:
        key = self.endpoint.api_key
        return text.replace(key, "***") if key else text

    def get_json(self, kind: str, url: str, params: dict[str, Any], what: str) -> Any:
        """GET with retries; the parsed JSON body, or WeatherError. ``kind``: forecast|search."""
        if self.failures_in_a_row[kind] >= CIRCUIT_BREAK_AFTER:
            last = self.last_failure[kind]
            raise WeatherError(
                MissingReason.PROVIDER_UNAVAILABLE,
                f"Not asked: the {kind} endpoint failed for {CIRCUIT_BREAK_AFTER} cities in a row "
                f"this batch (last: {last.reason}).",
            )
        if self.endpoint.api_key:
            params = {**params, "apikey": self.endpoint.api_key}
        attempt = 0
        while True:
            attempt += 1
            try:
                body = self._attempt(kind, url, params)
            except WeatherError as err:
                if err.reason not in RETRYABLE:
                    self.failures_in_a_row[kind] = 0  # it answered: up, if unhelpful
                    raise
                if attempt >= self.max_attempts:
                    self.failures_in_a_row[kind] += 1
                    self.last_failure[kind] = err
                    tries = f"{attempt} attempts" if attempt > 1 else "1 attempt"
                    raise WeatherError(
                        err.reason, f"{err.message.rstrip('.')}; gave up after {tries}."
                    ) from None
                delay = self.retry.delay(attempt, err.retry_after_s)
                log.info(
                    "weather %s for %s attempt %d/%d failed: %s — retrying in %.2fs",
                    kind,
                    what,
                    attempt,
                    self.max_attempts,
                    err.reason,
                    delay,
                )
                self.retry.sleep(delay)
                continue
            self.failures_in_a_row[kind] = 0
            return body

    def _attempt(self, kind: str, url: str, params: dict[str, Any]) -> Any:
        self.calls[kind] += 1
        try:
            response = self.client.get(url, params=params, timeout=self.endpoint.timeout_s)
        except httpx.TimeoutException:
            raise WeatherError(
                MissingReason.TIMEOUT,
                f"The provider did not answer within {self.endpoint.timeout_s:g}s.",
            ) from None
        except httpx.TransportError as exc:
            raise WeatherError(
                MissingReason.CONNECTION_ERROR,
                self._redact(f"Could not reach the provider: {type(exc).__name__}: {exc}"),
            ) from None
        if response.status_code != 200:
            raise _status_error(response, self._redact)
        try:
            return response.json()
        except ValueError:
            kind_of = response.headers.get("content-type", "?").split(";")[0]
            raise WeatherError(
                MissingReason.MALFORMED, f"The provider's answer is not JSON ({kind_of})."
            ) from None

    def geocode(self, name: str) -> Place:
        body = self.get_json(
            "search",
            f"{self.endpoint.geocoding_url}/search",
            {"name": name, "count": 1, "language": "en", "format": "json"},
            name,
        )
        if not isinstance(body, dict):
            raise WeatherError(MissingReason.MALFORMED, "The geocoder's answer is not an object.")
        results = body.get("results") or []
        if not results:
            raise WeatherError(
                MissingReason.UNKNOWN_CITY, f"The geocoder does not know a place called {name!r}."
            )
        first = results[0]
        try:
            latitude, longitude = float(first["latitude"]), float(first["longitude"])
        except (KeyError, TypeError, ValueError):
            raise WeatherError(
                MissingReason.MALFORMED, f"The geocoder's result for {name!r} has no coordinates."
            ) from None
        if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise WeatherError(
                MissingReason.ABSURD_VALUE,
                f"The geocoder placed {name!r} at impossible coordinates {latitude}, {longitude}.",
            )

        def text(key: str) -> str | None:
            value = first.get(key)
            return str(value) if value else None

        return Place(
            text("name") or name,
            latitude,
            longitude,
            text("timezone"),
            text("country"),
            text("country_code"),
        )

    def forecast(self, place: Place, day: date, what: str) -> dict[str, Any]:
        body = self.get_json(
            "forecast",
            f"{self.endpoint.base_url}/forecast",
            {
                "latitude": place.latitude,
                "longitude": place.longitude,
                "hourly": ",".join(HOURLY_VARIABLES),
                "timezone": place.timezone or "auto",
                "start_date": day.isoformat(),
                "end_date": day.isoformat(),
            },
            what,
        )
        if not isinstance(body, dict):
            raise WeatherError(MissingReason.MALFORMED, "The forecast is not a JSON object.")
        if "hourly" not in body:
            raise WeatherError(MissingReason.MISSING_FIELDS, "The forecast has no 'hourly' data.")
        return derive(body["hourly"], latitude=place.latitude, day=day)


# --- the cache -------------------------------------------------------------------------------


def cache_path(cid: str, settings: Settings | None = None) -> Any:
    """Where one city's cache record lives in the lake."""
    return lake.table("weather_cache", settings) / f"{lake.safe_segment(cid, what='city id')}.json"


def _load_record(cid: str, settings: Settings) -> dict[str, Any]:
    path = cache_path(cid, settings)
    try:
        if not lake.exists(path):
            return {}
        record = lake.read_json(path)
        if not isinstance(record, dict) or record.get("version") != CACHE_VERSION:
            raise ValueError("not a weather cache record of this version")
        return record
    except Exception as exc:  # a broken cache must never cost the city its weather
        log.warning(
            "weather cache for %s unreadable, ignoring it: %s: %s", cid, type(exc).__name__, exc
        )
        return {}


def _cached_place(record: Mapping[str, Any]) -> Place | None:
    geo = record.get("geocode")
    if not isinstance(geo, dict):
        return None
    try:
        return Place(
            str(geo["name"]),
            float(geo["latitude"]),
            float(geo["longitude"]),
            geo.get("timezone"),
            geo.get("country"),
            geo.get("country_code"),
        )
    except (KeyError, TypeError, ValueError):
        return None


_FEATURE_KEYS = (
    "temperature_c",
    "feels_like_c",
    "precip_prob",
    "wind_kph",
    "is_rainy",
    "temperature_tier",
    "season",
)


def _valid_features(features: Mapping[str, Any]) -> bool:
    """Cached features are data from storage: check them like any input before serving them."""
    if set(features) != set(_FEATURE_KEYS):
        return False
    numbers = [features[k] for k in ("temperature_c", "feels_like_c", "precip_prob", "wind_kph")]
    return (
        all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in numbers
        )
        and 0.0 <= features["precip_prob"] <= 1.0
        and isinstance(features["is_rainy"], bool)
        and features["temperature_tier"] in {tier for _, tier in TEMPERATURE_TIERS}
        and features["season"] in SOUTH_OF
    )


def _cached_features(
    record: Mapping[str, Any], day: date
) -> tuple[dict[str, Any], datetime] | None:
    entry = (record.get("forecasts") or {}).get(day.isoformat())
    try:
        fetched_at = datetime.fromisoformat(entry["fetched_at"])
        features = dict(entry["features"])
        if fetched_at.tzinfo is None or not _valid_features(features):
            return None
        return features, fetched_at.astimezone(UTC)
    except (KeyError, TypeError, ValueError):
        return None


def _save_record(
    cid: str,
    name: str,
    record: dict[str, Any],
    place: Place,
    fresh: tuple[date, dict[str, Any], datetime] | None,
    now: datetime,
    keep_s: float,
    settings: Settings,
) -> None:
    forecasts = dict(record.get("forecasts") or {})
    if fresh is not None:
        day, features, fetched_at = fresh
        forecasts[day.isoformat()] = {"fetched_at": fetched_at.isoformat(), "features": features}
    # Entries too old to be used even as stale are dropped: the record stays small.
    kept = {}
    for key, entry in forecasts.items():
        age = _age_s(now, entry.get("fetched_at")) if isinstance(entry, dict) else None
        if age is not None and age <= keep_s:
            kept[key] = entry
    geocode = (
        record["geocode"]
        if _cached_place(record) is not None
        else {**asdict(place), "geocoded_at": now.isoformat()}
    )
    new = {
        "version": CACHE_VERSION,
        "city_id": cid,
        "city": record.get("city") or name,
        "geocode": geocode,
        "forecasts": dict(sorted(kept.items())),
    }
    if new != record:
        lake.write_json(cache_path(cid, settings), new)


def _age_s(now: datetime, stamp: Any) -> float | None:
    try:
        when = datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return (now - when).total_seconds()


# --- the batch -------------------------------------------------------------------------------


@dataclass
class _Run:
    """One fetch_weather call: its inputs and running tallies."""

    day: date
    now: datetime
    settings: Settings
    provider: _Provider
    batch: WeatherBatch
    sources: Counter[str] = field(default_factory=Counter)

    def city(self, name: str, cid: str) -> CityWeather | Missing:
        settings = self.settings
        record = _load_record(cid, settings)
        cached = _cached_features(record, self.day)
        place = _cached_place(record)
        if cached is not None and place is not None:
            features, fetched_at = cached
            # A record newer than "now" (a replayed past interval) is the best we have: fresh.
            if (self.now - fetched_at).total_seconds() < settings.weather_cache_ttl_s:
                return self._row(cid, name, place, features, fetched_at, "cache")
        try:
            if place is None:
                place = self.provider.geocode(name)
            features = self.provider.forecast(place, self.day, name)
        except WeatherError as err:
            if place is not None and _cached_place(record) is None:
                self._save(cid, name, record, place, None)
            return self._fallback(cid, name, place, cached, err)
        self._save(cid, name, record, place, (self.day, features, self.now))
        return self._row(cid, name, place, features, self.now, "provider")

    def _fallback(
        self,
        cid: str,
        name: str,
        place: Place | None,
        cached: tuple[dict[str, Any], datetime] | None,
        err: WeatherError,
    ) -> CityWeather | Missing:
        if cached is not None and place is not None:
            features, fetched_at = cached
            age = (self.now - fetched_at).total_seconds()
            if age <= self.settings.weather_stale_max_s:
                log.warning(
                    "weather for %s (%s): provider failed (%s), using the cached forecast from "
                    "%s (%.1f h old): %s",
                    cid,
                    self.day,
                    err.reason,
                    fetched_at.isoformat(timespec="seconds"),
                    age / 3600,
                    err.message,
                )
                return self._row(cid, name, place, features, fetched_at, "stale_cache")
            message = (
                f"{err.message} The cached forecast is {age / 3600:.1f} h old, too old to use."
            )
            return Missing(cid, name, str(err.reason), message)
        return Missing(cid, name, str(err.reason), err.message)

    def _save(
        self,
        cid: str,
        name: str,
        record: dict[str, Any],
        place: Place,
        fresh: tuple[date, dict[str, Any], datetime] | None,
    ) -> None:
        keep_s = max(self.settings.weather_stale_max_s, self.settings.weather_cache_ttl_s)
        try:
            _save_record(cid, name, record, place, fresh, self.now, keep_s, self.settings)
        except Exception as exc:  # the row is good; a cache write failure only costs a refetch
            log.warning("weather cache for %s not written: %s: %s", cid, type(exc).__name__, exc)

    def _row(
        self,
        cid: str,
        name: str,
        place: Place,
        features: dict[str, Any],
        fetched_at: datetime,
        source: str,
    ) -> CityWeather:
        return CityWeather(
            city_id=cid,
            city=name,
            latitude=place.latitude,
            longitude=place.longitude,
            day=self.day,
            fetched_at=fetched_at,
            source=source,
            **{key: features[key] for key in _FEATURE_KEYS},
        )

    def add(self, outcome: CityWeather | Missing) -> None:
        batch = self.batch
        if isinstance(outcome, CityWeather):
            batch.rows.append(outcome)
            self.sources[outcome.source] += 1
            batch.cache_hits += outcome.source == "cache"
            batch.stale_used += outcome.source == "stale_cache"
        else:
            batch.missing.append(outcome)
            log.warning(
                "weather for %r (%s) missing: %s — %s",
                outcome.city,
                self.day,
                outcome.reason,
                outcome.message,
            )

    def progress(self, done: int, total: int, started: float) -> str:
        batch = self.batch
        reasons = ", ".join(f"{n} {reason}" for reason, n in batch.missing_by_reason().items())
        missing = f"{len(batch.missing)} missing" + (f" ({reasons})" if reasons else "")
        elapsed = time.perf_counter() - started
        rate = done / elapsed if elapsed > 0 else 0.0
        return (
            f"weather: {done}/{total} cities, {self.sources['provider']} from provider, "
            f"{batch.cache_hits} from cache, {batch.stale_used} stale, {missing}; "
            f"{batch.provider_calls} forecast calls, {rate:.1f} cities/s"
        )


def _unique_cities(cities: Iterable[str]) -> tuple[list[tuple[str, str]], list[Missing]]:
    """(display name, city_id) once per city_id, first spelling wins; invalid names apart."""
    seen: dict[str, str] = {}
    invalid: dict[str, Missing] = {}
    for raw in cities:
        try:
            cid = city_id(raw)
        except InvalidCity as err:
            shown = raw if isinstance(raw, str) else repr(raw)
            shown = shown[:MAX_CITY_CHARS]
            invalid.setdefault(shown, Missing("", shown, str(err.reason), err.message))
            continue
        seen.setdefault(cid, clean_city_name(raw))
    return [(name, cid) for cid, name in seen.items()], list(invalid.values())


def fetch_weather(
    cities: Iterable[str],
    *,
    day: date,
    now: datetime | None = None,
    endpoint: WeatherEndpoint | None = None,
    settings: Settings | None = None,
    client: httpx.Client | None = None,
    retry: RetryPolicy | None = None,
) -> WeatherBatch:
    """Daytime weather features for every city on ``day``; never raises for one city.

    Cities are deduplicated by :func:`city_id`. ``now`` (aware; default: the clock) decides
    cache freshness and stamps new forecasts. ``client`` lets callers share a connection
    pool; it is not closed here.
    """
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    now = now.astimezone(UTC)
    endpoint = endpoint or weather_endpoint(settings=settings)
    retry = retry or RetryPolicy()
    attempts = retry.max_attempts or settings.weather_max_attempts
    unique, invalid = _unique_cities(cities)
    batch = WeatherBatch()
    own_client = client is None
    http = client or httpx.Client(timeout=endpoint.timeout_s, follow_redirects=True)
    provider = _Provider(endpoint, http, retry, attempts)
    run = _Run(day, now, settings, provider, batch)
    for outcome in invalid:
        run.add(outcome)
    started = time.perf_counter()
    total = len(unique)
    try:
        for done, (name, cid) in enumerate(unique, start=1):
            try:
                outcome = run.city(name, cid)
            except Exception as exc:  # a bug for one city must not cost the others theirs
                log.exception("weather for %s failed unexpectedly", cid)
                outcome = Missing(
                    cid,
                    name,
                    MissingReason.INTERNAL_ERROR.value,
                    f"Unexpected error: {type(exc).__name__}.",
                )
            run.add(outcome)
            batch.provider_calls = provider.calls["forecast"]
            batch.geocoding_calls = provider.calls["search"]
            if done % PROGRESS_EVERY == 0 and done < total:
                log.info(run.progress(done, total, started))
    finally:
        if own_client:
            http.close()
    log.info(run.progress(total, total, started))
    return batch


def weather_for(
    city: str,
    *,
    day: date,
    now: datetime | None = None,
    endpoint: WeatherEndpoint | None = None,
    settings: Settings | None = None,
    client: httpx.Client | None = None,
    retry: RetryPolicy | None = None,
) -> CityWeather | Missing:
    """One city's weather (the stylist tool's fallback when the feature store has none)."""
    batch = fetch_weather(
        [city],
        day=day,
        now=now,
        endpoint=endpoint,
        settings=settings,
        client=client,
        retry=retry,
    )
    return batch.rows[0] if batch.rows else batch.missing[0]
