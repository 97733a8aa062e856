"""What the online stylist knows about one request: the user, the wardrobe, features, weather.

The readers are the batch's own (:mod:`dresscode.core.tables` for the wardrobe as the user sees
it and the morning's suggestions, the ``users`` table for the profile city, Feast's online
``outfit_context`` for the style and live weather features, the lake's per-city weather cache
in front of the provider); :class:`Readers` bundles them so tests can give in-memory ones.
They are blocking (pandas, Feast, the lake) and read many users at once: :class:`Loaders`
coalesces the requests in flight into batch reads (:mod:`dresscode.serve.batching`), run in a
reader process (:mod:`dresscode.serve.reader_process`) or, with none, in threads.

:class:`WeatherAnswers` answers the ``get_weather`` tool for every request of the process:
the request's online weather row first, then a process memo per (city, day), then the lake
cache and the provider (``features.weather.weather_for``, which itself reuses a forecast
younger than ``DRESSCODE_WEATHER_CACHE_TTL_S``). The same user asking three times in a
morning costs the provider at most one call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

from dresscode.core import delta_kept, lake, tables
from dresscode.core.config import Settings
from dresscode.outfits.stylist import UserContext
from dresscode.serve.batching import BatchLoader

log = logging.getLogger(__name__)

FeatureRow = Mapping[str, Any]
K = TypeVar("K")
V = TypeVar("V")
Read = Callable[[list[K]], Mapping[K, V] | Awaitable[Mapping[K, V]]]
WeatherAnswer = dict[str, Any]
# An online weather row answers the tool only with these (the rules read the high and low).
_ANSWERING_FEATURES = ("temperature_c", "temperature_max_c", "temperature_min_c")


@dataclass(frozen=True)
class Readers:
    """The service's readers, each for many keys at once (absent keys: not found): blocking
    (run in a thread) or async (a reader process's, awaited)."""

    profile_cities: Read[str, str]  # user id -> profile city
    wardrobes: Read[str, list[dict[str, Any]]]  # current items
    online: Read[tuple[str, str], FeatureRow]
    pregenerated: Read[tuple[str, date], dict[str, Any]]
    weather: Callable[[str, date], WeatherAnswer | None]  # the cache-then-provider fallback
    # Run (in a thread) when the service starts and stops: reader processes start with it.
    start: Callable[[], Any] | None = None
    close: Callable[[], Any] | None = None


# How long an answer is reused: profiles change rarely; a wardrobe changes when ingest or
# feedback runs (every 15 minutes at most), so a minute-old one is the user's wardrobe; the
# morning's suggestions are written once a day. Online features are read every time (the live
# weather push).
PROFILE_TTL_S = 300.0
WARDROBE_TTL_S = 60.0
PREGENERATED_TTL_S = 300.0


class Loaders:
    """The readers behind batch loaders: one read in flight each, taking all that waits."""

    def __init__(self, readers: Readers) -> None:
        self.profile = BatchLoader(readers.profile_cities, ttl_s=PROFILE_TTL_S)
        self.wardrobe = BatchLoader(readers.wardrobes, ttl_s=WARDROBE_TTL_S)
        self.online = BatchLoader(readers.online)
        self.pregenerated = BatchLoader(readers.pregenerated, ttl_s=PREGENERATED_TTL_S)


@dataclass
class RequestContext:
    """One request's inputs, read once and shared by the primary answer and its shadow."""

    user: UserContext
    profile_city: str
    online: FeatureRow = field(default_factory=dict)
    pregenerated: dict[str, Any] | None = None


class UnknownUser(LookupError):
    """No profile for the user id."""


def city_key(city: str) -> str:
    """The city's feature-store id; a name no provider could know gets a key nothing matches."""
    from dresscode.features import weather

    try:
        return weather.city_id(city)
    except weather.InvalidCity:
        return "invalid-city"


async def read_context(
    loaders: Loaders, user_id: str, day: date, city: str | None, occasion: str | None
) -> RequestContext:
    """Profile first (an unknown user is :class:`UnknownUser`), then the rest at once."""
    # The wardrobe and the morning's suggestion do not need the profile: read all at once.
    reads = asyncio.gather(
        loaders.wardrobe.load(user_id), loaders.pregenerated.load((user_id, day))
    )
    try:
        profile_city = await loaders.profile.load(user_id)
        if profile_city is None:
            raise UnknownUser(user_id)
        city = city or profile_city
        online = await _features_or_none(loaders, user_id, city_key(city))
        wardrobe, pregenerated = await reads
    except BaseException:
        reads.cancel()  # the loaders' reads go on for the others; this request stops waiting
        with contextlib.suppress(BaseException):
            await reads
        raise
    style = {k: v for k, v in (online or {}).items() if _present(v)}
    user = UserContext(user_id, city, day, list(wardrobe or []), style=style, occasion=occasion)
    return RequestContext(user, profile_city, online or {}, pregenerated)


async def _features_or_none(loaders: Loaders, user_id: str, city_id: str) -> FeatureRow:
    """The online features, or none (logged) when the online store cannot answer: the
    stylist still has the wardrobe, and the weather comes through the cache."""
    try:
        return await loaders.online.load((user_id, city_id)) or {}
    except Exception as exc:
        log.warning(
            "online features for %s unavailable (%s: %s); answering without them",
            user_id,
            type(exc).__name__,
            str(exc)[:200],
        )
        return {}


def _present(value: Any) -> bool:
    if value is None:
        return False
    return not isinstance(value, float) or value == value


class WeatherAnswers:
    """``get_weather`` answers for the whole process, memoised per (city, day) for ``ttl_s``."""

    def __init__(self, fetch: Callable[[str, date], WeatherAnswer | None], ttl_s: float) -> None:
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._memo: dict[tuple[str, str], tuple[float, WeatherAnswer | None]] = {}
        self._pending: dict[tuple[str, str], asyncio.Future[WeatherAnswer | None]] = {}
        self.fetches = 0  # calls that went past the memo (to the lake cache / provider)

    def lookup_for(self, online: FeatureRow) -> Callable[[str, date], Any]:
        """The stylist's WeatherLookup for one request: its online row, then the memo."""

        async def lookup(city: str, day: date) -> WeatherAnswer | None:
            from dresscode.features import weather

            row = online
            if (
                row.get("city_id") == city_key(city)
                and str(row.get("day")) == day.isoformat()
                and all(_present(row.get(k)) for k in _ANSWERING_FEATURES)
            ):
                return weather.tool_answer(row, city=city, day=day.isoformat())
            return await self.get(city, day)

        return lookup

    async def get(self, city: str, day: date) -> WeatherAnswer | None:
        key = (city_key(city), day.isoformat())
        cached = self._memo.get(key)
        if cached is not None and time.monotonic() - cached[0] < self._ttl_s:
            return cached[1]
        fetching = self._pending.get(key)
        if fetching is None:  # one fetch per city and day, whoever asks meanwhile shares it
            self.fetches += 1
            fetching = asyncio.ensure_future(self._fetch_into_memo(key, city, day))
            self._pending[key] = fetching
            fetching.add_done_callback(lambda _: self._pending.pop(key, None))
        # Shielded: a request that goes away (client disconnect) does not cancel the others' fetch.
        return await asyncio.shield(fetching)

    async def _fetch_into_memo(
        self, key: tuple[str, str], city: str, day: date
    ) -> WeatherAnswer | None:
        try:
            answer = await asyncio.to_thread(self._fetch, city, day)
        except Exception as exc:  # the model is told "weather unavailable"; outfits still come
            log.warning("weather for %s on %s failed: %s: %s", city, day, type(exc).__name__, exc)
            answer = None
        self._memo[key] = (time.monotonic(), answer)
        return answer


# --- the lake, Feast and the weather cache: the production readers -------------------------


def lake_readers(settings: Settings) -> Readers:
    """Readers over the lake, Feast's online store and the weather cache.

    The lake tables stay open between reads (:mod:`dresscode.core.delta_kept`), brought up to
    date at most every ``DRESSCODE_SERVE_TABLE_REFRESH_S``: a read filters its users' files'
    rows, kept in memory once read, instead of reading the log, listing the table's files and
    opening its users' files again.
    """
    store: list[Any] = []  # one FeatureStore per process, made on first use (Feast is slow)
    kept = delta_kept.KeptTables(settings.serve_table_refresh_s)

    def profile_cities(user_ids: list[str]) -> dict[str, str]:
        with delta_kept.keeping(kept):
            rows = lake.read_table(
                tables.USERS.name,
                settings,
                columns=["user_id", "city", "last_active_at"],
                filters=[("user_id", "in", user_ids)],
            )
        if rows.empty:
            return {}
        latest = rows.sort_values("last_active_at").drop_duplicates("user_id", keep="last")
        return {
            str(r["user_id"]): city
            for r in latest.to_dict("records")
            if (city := str(r["city"] or "").strip())
        }

    def wardrobes(user_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        with delta_kept.keeping(kept):
            found = tables.current_wardrobes_of(user_ids, settings)
        return {u: [dict(item) for item in items] for u, items in found.items()}

    def online(keys: list[tuple[str, str]]) -> dict[tuple[str, str], FeatureRow]:
        from dresscode.features import store as features

        if not store:
            store.append(features.feature_store(settings))
        service = store[0].get_feature_service(features.SERVICE)
        rows = [{"user_id": u, "city_id": c} for u, c in keys]
        answer = store[0].get_online_features(features=service, entity_rows=rows).to_dict()
        return {key: {k: v[n] for k, v in answer.items()} for n, key in enumerate(keys)}

    def pregenerated(keys: list[tuple[str, date]]) -> dict[tuple[str, date], dict[str, Any]]:
        wanted = set(keys)
        rows = lake.read_table(
            tables.OUTFIT_SUGGESTIONS.name,
            settings,
            days=sorted({d for _, d in keys}),
            filters=[("user_id", "in", sorted({u for u, _ in keys}))],
        )
        if rows.empty:
            return {}
        if "generated_at" in rows.columns:
            rows = rows.sort_values("generated_at", kind="stable")
        found = {}
        for row in rows.drop_duplicates(["user_id", "day"], keep="last").to_dict("records"):
            key = (str(row["user_id"]), date.fromisoformat(str(row["day"])))
            if key in wanted and row.get("status") == "ok":
                row["outfits"] = json.loads(row.get("outfits") or "[]")
                found[key] = row
        return found

    def weather(city: str, day: date) -> WeatherAnswer | None:
        from dresscode.features import weather as forecasts

        found = forecasts.weather_for(city, day=day, settings=settings)
        if isinstance(found, forecasts.Missing):
            log.warning("no weather for %s on %s: %s", city, day, found.reason)
            return None
        return found.tool_answer()

    return Readers(profile_cities, wardrobes, online, pregenerated, weather)
