"""The per-city weather cache, and the batch that reads through it: :func:`fetch_weather`.

For each city and target day we keep a small JSON record in the lake
(``weather_cache/<city_id>.json``) with its coordinates (kept forever: cities do not move) and
the last good features per day, so that:

* a city asked for again within ``weather_cache_ttl_s`` is answered from the cache, not the
  provider (the hourly DAG and the stylist's tool fallback share it);
* when the provider fails after retries, a forecast up to ``weather_stale_max_s`` old is used
  instead (``source="stale_cache"``, with a WARNING naming the reason); older: the city is
  missing with that reason.

Nothing here raises for one bad city: every city ends as a :class:`CityWeather` row or a
:class:`Missing` entry with a reason code from :class:`MissingReason`. A broken cache record
costs a refetch, never the city's weather; cached features are validated like any input.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from dresscode.core import lake
from dresscode.core.config import Settings, get_settings
from dresscode.core.connections import WeatherEndpoint
from dresscode.features.weather.derive import (
    FEATURE_KEYS,
    MAX_CITY_CHARS,
    SOUTH_OF,
    TEMPERATURE_TIERS,
    CityWeather,
    InvalidCity,
    Missing,
    MissingReason,
    WeatherError,
    city_id,
    clean_city_name,
)
from dresscode.features.weather.provider import Place, RetryPolicy, WeatherProvider

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

CACHE_VERSION = 1
PROGRESS_EVERY = 25  # cities between progress log lines


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


_NUMBERS = (
    "temperature_c",
    "temperature_max_c",
    "temperature_min_c",
    "feels_like_c",
    "precip_prob",
    "wind_kph",
)


def _valid_features(features: Mapping[str, Any]) -> bool:
    """Cached features are data from storage: check them like any input before serving them.

    An entry cached before the day's high and low were derived lacks them: it is not served
    (fresh or stale), so the city is fetched again rather than answered without its extremes.
    """
    if set(features) != set(FEATURE_KEYS):
        return False
    numbers = [features[k] for k in _NUMBERS]
    return (
        all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in numbers
        )
        and features["temperature_min_c"]
        <= features["temperature_c"]
        <= features["temperature_max_c"]
        and 0.0 <= features["precip_prob"] <= 1.0
        and isinstance(features["is_rainy"], bool)
        and features["temperature_tier"] in {tier for _, tier in TEMPERATURE_TIERS}
        and features["season"] in SOUTH_OF
    )


def _cached_features(
    record: Mapping[str, Any], day: date
) -> tuple[dict[str, Any], datetime] | None:
    entry = (record.get("forecasts") or {}).get(day.isoformat())
    if not isinstance(entry, Mapping):
        return None
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
    provider: WeatherProvider
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
            **{key: features[key] for key in FEATURE_KEYS},
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
    cache freshness and stamps new forecasts. The provider client comes from
    :class:`WeatherProviderHook` (the ``weather_api`` connection unless ``endpoint`` is given);
    ``client`` lets callers share a connection pool; it is not closed here.
    """
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    now = now.astimezone(UTC)
    # The hook imports airflow.sdk (seconds): only when a batch runs, not on import.
    from dresscode.features.weather.hook import WeatherProviderHook

    retry = retry or RetryPolicy()
    unique, invalid = _unique_cities(cities)
    batch = WeatherBatch()
    hook = WeatherProviderHook(endpoint=endpoint, settings=settings)
    with hook.get_conn(client=client, retry=retry) as provider:
        run = _Run(day, now, settings, provider, batch)
        outcome: CityWeather | Missing
        for outcome in invalid:
            run.add(outcome)
        started = time.perf_counter()
        total = len(unique)
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
