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
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from dresscode.core import delta, delta_kept, lake, tables
from dresscode.core.config import Settings
from dresscode.outfits.stylist import UserContext
from dresscode.serve.batching import BatchLoader

log = logging.getLogger(__name__)

FeatureRow = Mapping[str, Any]
WeatherAnswer = dict[str, Any]
# An online weather row answers the tool only with these (the rules read the high and low).
_ANSWERING_FEATURES = ("temperature_c", "temperature_max_c", "temperature_min_c")


@dataclass(frozen=True)
class Readers:
    """The service's blocking readers, each for many keys at once (absent keys: not found)."""

    profile_cities: Callable[[list[str]], Mapping[str, str]]  # user id -> profile city
    wardrobes: Callable[[list[str]], Mapping[str, list[dict[str, Any]]]]  # current items
    online: Callable[[list[tuple[str, str]]], Mapping[tuple[str, str], FeatureRow]]
    pregenerated: Callable[[list[tuple[str, date]]], Mapping[tuple[str, date], dict[str, Any]]]
    weather: Callable[[str, date], WeatherAnswer | None]  # the cache-then-provider fallback
    # All of a request's reads at once, awaited (:func:`read_inputs` in a reader process);
    # None: the service runs read_inputs over the readers above in a thread.
    inputs: Callable[[list[InputsKey]], Awaitable[Mapping[InputsKey, UserInputs]]] | None = None
    # Run (in a thread) when the service starts and stops: reader processes start with it.
    start: Callable[[], Any] | None = None
    close: Callable[[], Any] | None = None
    # Run once where the reads run, before the first: opens what a first read would (Feast's
    # store, ~3 s), so the first request does not wait for it.
    warm: Callable[[], Any] | None = None


InputsKey = tuple[str, date, str | None]  # user id, day, the city asked for (None: the profile's)


@dataclass(frozen=True)
class UserInputs:
    """What one read finds for a request: the profile city (a user without one is unknown),
    the online features, the current wardrobe and the morning's suggestion."""

    profile_city: str
    online: FeatureRow
    wardrobe: list[dict[str, Any]]
    pregenerated: dict[str, Any] | None


def read_inputs(readers: Readers, keys: list[InputsKey]) -> dict[InputsKey, UserInputs]:
    """The inputs of many requests in one read (unknown users absent): profiles first, then
    the online features (for the city asked for, else the profile's), the wardrobes and the
    morning's suggestions. Online features that cannot be read are none (logged): the stylist
    still has the wardrobe, and the weather comes through the cache. Blocking: it runs in a
    reader process (:mod:`dresscode.serve.reader_process`) or a thread."""
    cities = readers.profile_cities(sorted({u for u, _, _ in keys}))
    known = [key for key in keys if key[0] in cities]
    if not known:
        return {}
    where = {key: city_key(key[2] or cities[key[0]]) for key in known}
    try:
        online = readers.online(sorted({(key[0], c) for key, c in where.items()}))
    except Exception as exc:
        log.warning(
            "online features unavailable (%s: %s); answering without them",
            type(exc).__name__,
            str(exc)[:200],
        )
        online = {}
    users = sorted({key[0] for key in known})
    wardrobes = readers.wardrobes(users)
    pregenerated = readers.pregenerated(sorted({(u, d) for u, d, _ in known}))
    return {
        key: UserInputs(
            cities[key[0]],
            online.get((key[0], where[key])) or {},
            list(wardrobes.get(key[0]) or []),
            pregenerated.get((key[0], key[1])),
        )
        for key in known
    }


class Loaders:
    """The readers behind one batch loader: one read in flight, taking every request that
    waits, each answered with all its inputs (one round trip to a reader process)."""

    def __init__(self, readers: Readers) -> None:
        read = readers.inputs or functools.partial(read_inputs, readers)
        self.inputs: BatchLoader[InputsKey, UserInputs] = BatchLoader(read)


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
    """The request's inputs in one read; an unknown user is :class:`UnknownUser`."""
    found = await loaders.inputs.load((user_id, day, city))
    if found is None:
        raise UnknownUser(user_id)
    online = found.online
    style = {k: v for k, v in online.items() if _present(v)}
    user = UserContext(
        user_id, city or found.profile_city, day, found.wardrobe, style=style, occasion=occasion
    )
    return RequestContext(user, found.profile_city, online, found.pregenerated)


def _newer_or_same(at: Any, than: Any) -> bool:
    return than is None or (at is not None and at >= than)


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
        # Arrow rows, not a DataFrame: a user has a few profile rows, and pandas' frame, sort
        # and records cost more than the read itself (~3.4 -> ~1.5 ms of CPU for one user).
        with delta_kept.keeping(kept):
            rows = delta.read_arrow(
                tables.USERS.name,
                settings,
                columns=["user_id", "city", "last_active_at"],
                filters=[("user_id", "in", user_ids)],
            )
        latest: dict[str, dict[str, Any]] = {}  # the newest row per user (unknown time: oldest)
        for row in rows.to_pylist() if rows is not None else []:
            seen = latest.get(row["user_id"])
            if seen is None or _newer_or_same(row["last_active_at"], seen["last_active_at"]):
                latest[row["user_id"]] = row
        return {
            str(user): city
            for user, row in latest.items()
            if (city := str(row["city"] or "").strip())
        }

    def wardrobes(user_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        with delta_kept.keeping(kept):
            found = tables.current_wardrobes_of(user_ids, settings)
        return {u: [dict(item) for item in items] for u, items in found.items()}

    def feature_store() -> Any:
        from dresscode.features import store as features

        if not store:
            store.append(features.feature_store(settings))
        return store[0]

    def warm() -> None:
        from dresscode.features import store as features

        started = time.perf_counter()
        try:
            feature_store().get_feature_service(features.SERVICE)  # loads the registry
        except Exception as exc:  # the first online read will say so, and answer without it
            log.warning(
                "Feast's online store not ready at start (%s: %s); the online reads try again",
                type(exc).__name__,
                str(exc)[:200],
            )
            return
        log.info("Feast's online store opened in %.1f s", time.perf_counter() - started)

    def online(keys: list[tuple[str, str]]) -> dict[tuple[str, str], FeatureRow]:
        from dresscode.features import store as features

        online_store = feature_store()
        service = online_store.get_feature_service(features.SERVICE)
        rows = [{"user_id": u, "city_id": c} for u, c in keys]
        answer = online_store.get_online_features(features=service, entity_rows=rows).to_dict()
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

    return Readers(profile_cities, wardrobes, online, pregenerated, weather, warm=warm)
