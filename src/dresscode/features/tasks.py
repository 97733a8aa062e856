"""The work of the feature DAGs (``weather_ingest``, ``style_features``), one function per task.

Each function reads its inputs from the lake or the feature store, writes its outputs
atomically, and returns a small typed summary (for XCom and the task log). Re-running a task
for the same run or data interval writes the same parts and the same online values.

What crosses an XCom is a ``TypedDict``: a plain JSON dict at runtime (Airflow 3 refuses to
deserialize other classes by default), typed for the DAG file and for readers.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, TypedDict

from dresscode.core import lake, tables
from dresscode.core.config import Settings, get_settings
from dresscode.features import users
from dresscode.features.materialization import Materialized

if TYPE_CHECKING:
    from dresscode.core.connections import LLMEndpoint

log = logging.getLogger(__name__)

# More than this share of cities without weather is an outage, not bad luck: fail loudly.
WEATHER_MAX_MISSING_SHARE = 0.5
# Users read back from the online store after materializing.
VERIFY_SAMPLE = 20
WEATHER_TABLE = "weather"


class FeatureJobError(RuntimeError):
    """A feature job that must fail the task; the message says what to look at."""


class WeatherFetched(TypedDict):
    """``fetch_forecasts``' result: what one weather_ingest run wrote."""

    cities: int  # distinct city names asked for
    with_weather: int  # rows written (fresh, cached or stale)
    missing: dict[str, int]  # MissingReason value -> cities
    provider_calls: int  # forecast requests sent, retries included
    cache_hits: int
    stale_used: int
    path: str | None  # the ``weather`` table the rows were committed to; None without rows
    day: str  # the ``date`` partition of the rows
    part: str | None  # their part (a retry replaces it); None without rows


class WeatherPushed(WeatherFetched):
    """``push_online``'s result: the fetch summary plus the rows pushed online."""

    pushed: int


class Window(TypedDict):
    """The interval a style_features run covers, as ISO UTC strings."""

    start: str
    as_of: str  # the end of the data interval: features are "as of" it


class StyleComputed(TypedDict):
    """``compute``'s result: the user_style part written and who is in it."""

    users: int
    empty_wardrobes: int
    user_ids: list[str]
    path: str | None  # the ``user_style`` table the rows were committed to; None without rows


class Verified(TypedDict):
    """``verify``'s result: how many sampled users were read back fresh."""

    verified: int


def _part(*keys: str) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


# --- weather_ingest ---------------------------------------------------------------------


def cities_of_active_users(settings: Settings | None = None) -> list[str]:
    """The distinct cities of active users, sorted (display names; the provider geocodes)."""
    active = users.active_users(settings=settings)
    cities = sorted({u.city for u in active})
    log.info("%d active users in %d cities", len(active), len(cities))
    return cities


def ingest_weather(
    cities: list[str], *, day: date, run_id: str, settings: Settings | None = None
) -> WeatherFetched:
    """Fetch (or reuse) each city's forecast, write the day's features; returns a summary.

    The part written is named by the run, so a retry or re-run replaces it.
    """
    from dresscode.features import weather

    settings = settings or get_settings()
    batch = weather.fetch_weather(cities, day=day, settings=settings)
    rows = [w.feature_row() for w in batch.rows]
    path, part = None, f"run-{_part(run_id)}"
    if rows:
        path = str(lake.write_parquet(WEATHER_TABLE, day, part, rows, settings))
    missing = Counter(m.reason for m in batch.missing)
    for m in batch.missing:
        log.warning("weather missing for %s: %s (%s)", m.city, m.reason, m.message)
    summary = WeatherFetched(
        cities=len(set(cities)),
        with_weather=len(rows),
        missing=dict(missing),
        provider_calls=batch.provider_calls,
        cache_hits=batch.cache_hits,
        stale_used=batch.stale_used,
        path=path,
        day=day.isoformat(),
        part=part if rows else None,
    )
    log.info(
        "weather: %d of %d cities, %d fetched, %d from cache, %d stale, missing %s",
        len(rows),
        summary["cities"],
        batch.provider_calls,
        batch.cache_hits,
        batch.stale_used,
        dict(missing) or "none",
    )
    # The run's report (which cities are missing, and why) stays in the lake for on-call
    # and for the `make up` summary; the part name is the run's, so a retry replaces it.
    report = {
        **summary,
        "day": day.isoformat(),
        "at": datetime.now(UTC).isoformat(),
        "missing_cities": [asdict(m) for m in batch.missing],
    }
    lake.write_json(
        lake.partition("reports", day, settings) / f"weather-run-{_part(run_id)}.json", report
    )
    if cities and len(batch.missing) > WEATHER_MAX_MISSING_SHARE * summary["cities"]:
        raise FeatureJobError(
            f"weather missing for {len(batch.missing)} of {summary['cities']} cities "
            f"({dict(missing)}): the provider looks down or misconfigured (weather_api connection)."
        )
    return summary


def push_weather(fetched: WeatherFetched, settings: Settings | None = None) -> WeatherPushed:
    """Push the rows ``ingest_weather`` wrote to the online store (``weather_live``)."""
    from dresscode.core import delta
    from dresscode.features import store as features

    settings = settings or get_settings()
    part = fetched.get("part")
    if not fetched.get("path") or not part:
        log.info("no weather rows to push")
        return WeatherPushed(**fetched, pushed=0)
    # The rows of this run's part: what ingest_weather committed (a retry's, if it re-ran).
    rows = lake.read_table(
        WEATHER_TABLE, settings, days=[fetched["day"]], filters=[(delta.PART, "=", part)]
    ).to_dict("records")
    features.apply(settings)  # idempotent: the registry matches feature_repo/ before the push
    pushed = features.push_weather(rows, settings)
    log.info("pushed %d city forecasts to the online store", pushed)
    return WeatherPushed(**fetched, pushed=pushed)


# --- style_features -----------------------------------------------------------------------


def materialize_window(
    interval_start: datetime | None, interval_end: datetime | None, run_after: datetime
) -> Window:
    """The interval a style_features run covers, as ISO strings (XCom-friendly).

    ``as_of`` is the end of the data interval; runs without a real interval (asset-triggered,
    manual: start == end or none) cover the 24 hours before they started.
    ``materialization.materialize`` moves ``start`` back by the overlap for late rows.
    """
    end = interval_end or run_after
    start = interval_start if interval_start and interval_start < end else end - timedelta(days=1)
    return Window(start=start.astimezone(UTC).isoformat(), as_of=end.astimezone(UTC).isoformat())


def compute_style(window: Window, settings: Settings | None = None) -> StyleComputed:
    """Style features of every active user as of the window's end, written to ``user_style``:
    from their current wardrobe (and its items' vectors: ``style_clusters``), and from what
    they wore in the 30 days before (``worn``)."""
    from dresscode.features import style, worn

    settings = settings or get_settings()
    as_of = datetime.fromisoformat(window["as_of"])
    active = users.active_users(now=as_of, settings=settings)
    ids = [u.user_id for u in active]
    # The wardrobe the users see (their deletions, additions and corrections applied up to
    # as_of), read for the active users only.
    items = tables.current_wardrobe_items(ids, settings, as_of=as_of)
    # Their wore_instead events of the window: only the feedback partitions of its days.
    wore = worn.worn_as_of(items, as_of=as_of, user_ids=ids, settings=settings)
    # Their style clusters: the vectors of those items, read from Feast's online store.
    named = style.clusters_as_of(items, as_of=as_of, settings=settings)
    # Users with no items get a zero row: an empty wardrobe is a state worth serving.
    table = style.style_features(items, as_of=as_of, user_ids=ids, worn=wore, clusters=named)
    empty = int((table["wardrobe_size"] == 0).sum()) if not table.empty else 0
    path = None
    if not table.empty:
        # One part per as_of: a retry or re-run replaces it in one commit.
        written = lake.write_parquet(
            style.TABLE, as_of.date(), f"asof-{as_of:%Y%m%dT%H%M%S}", table, settings
        )
        path = str(written)
    log.info(
        "style features for %d active users (%d with an empty wardrobe) as of %s",
        len(table),
        empty,
        as_of.isoformat(),
    )
    return StyleComputed(users=len(table), empty_wardrobes=empty, user_ids=ids, path=path)


def materialize(window: Window, settings: Settings | None = None) -> Materialized:
    """Apply the feature repo (idempotent) and materialize user_style and weather for the window."""
    from dresscode.features import materialization
    from dresscode.features import store as features

    settings = settings or get_settings()
    features.apply(settings)
    start = datetime.fromisoformat(window["start"])
    # Feast's window end is exclusive: one second past as_of includes the rows stamped as_of.
    end = datetime.fromisoformat(window["as_of"]) + timedelta(seconds=1)
    return materialization.materialize(start, end, settings=settings).as_dict()


def verify_online(
    computed: StyleComputed, window: Window, settings: Settings | None = None
) -> Verified:
    """Read a sample of users back online; stale or missing rows fail the task."""
    from dresscode.features import store as features

    sample = sorted(computed.get("user_ids") or [])[:VERIFY_SAMPLE]
    if not sample:
        log.info("no active users: nothing to verify")
        return Verified(verified=0)
    features.check_fresh(
        [{"user_id": u} for u in sample],
        view="user_style",
        not_before=datetime.fromisoformat(window["as_of"]),
        settings=settings,
    )
    log.info("online store fresh for %d sampled users", len(sample))
    return Verified(verified=len(sample))


# --- item_embeddings ---------------------------------------------------------------------------


class EmbeddingTotals(TypedDict):
    """``embed_items``' result: what one item_embeddings run did."""

    model: str  # the embedding model and text recipe the vectors are made with
    users_read: int | None  # users changed since the last complete run (None: everyone read)
    current_items: int  # items in the current wardrobes read
    up_to_date: int  # already embedded with this model and text: no call
    embedded: int
    removed: int  # gone from every wardrobe (deleted, confirmed duplicates): out of search
    deferred: int  # over DRESSCODE_EMBEDDING_MAX_ITEMS_PER_RUN: the next run embeds them
    calls: int  # /v1/embeddings requests
    possible_duplicates: int  # new items marked possible_duplicate_of an existing one
    seconds: float


def embed_items(
    *,
    day: str,
    endpoint: LLMEndpoint | None = None,
    settings: Settings | None = None,
) -> EmbeddingTotals:
    """Embed the items of the current wardrobes that have no vector for the served model (or
    whose text changed), drop the items that are gone, mark possible duplicates.

    Idempotent and bounded: a re-run over unchanged wardrobes makes zero calls; one run embeds
    at most ``DRESSCODE_EMBEDDING_MAX_ITEMS_PER_RUN`` items. Raises
    :class:`~dresscode.features.embeddings.client.EmbeddingUnavailable` (endpoint down: what
    earlier batches committed stays) or ``DimensionMismatch`` (nothing written).
    """
    import time

    from dresscode.core.connections import embeddings_endpoint
    from dresscode.features.embeddings import backfill, client, similar

    settings = settings or get_settings()
    started = time.monotonic()
    endpoint = endpoint or embeddings_endpoint(settings=settings)
    api = client.open_client(endpoint)
    model = client.served_model(api, endpoint, settings.embedding_dimension)
    plan, embedded, calls, duplicates = backfill.catch_up(
        api, endpoint, model, settings, day, similar.duplicate_finder(settings)
    )
    totals = EmbeddingTotals(
        model=model.ref,
        users_read=plan.users_read,
        current_items=plan.current,
        up_to_date=plan.up_to_date,
        embedded=embedded,
        removed=len(plan.gone),
        deferred=plan.deferred,
        calls=calls,
        possible_duplicates=len(duplicates),
        seconds=round(time.monotonic() - started, 3),
    )
    log.info(
        "item embeddings with %s: wardrobes of %s read, %d current items in them, %d up to "
        "date, %d embedded in %d calls, %d removed, %d deferred to the next run, %d possible "
        "duplicates",
        totals["model"],
        "every user" if plan.users_read is None else f"{plan.users_read} changed users",
        totals["current_items"],
        totals["up_to_date"],
        totals["embedded"],
        totals["calls"],
        totals["removed"],
        totals["deferred"],
        totals["possible_duplicates"],
    )
    return totals
