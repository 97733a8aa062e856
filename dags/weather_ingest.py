"""Weather ingest — hourly forecasts for the cities of active users, as Feast features.

Every hour: **find_cities** lists the cities of active users (`users` table, seen within
`DRESSCODE_ACTIVE_USER_DAYS`); **fetch_forecasts** asks the forecast provider (the
`weather_api` connection, Open-Meteo's API shape) for today's daytime weather of each city —
a city fetched within `DRESSCODE_WEATHER_CACHE_TTL_S` is served from the per-city cache —
derives the features (temperature tier, rain, season by hemisphere) and writes them to the
`weather` lake table; **push_online** pushes them to the Feast online store (`weather_live`
view), where the stylist reads them.

A provider failure is retried with backoff, then the cached forecast is used if it is fresh
enough, else the city is marked missing with a reason: one city never fails the run, but more
than half of the cities missing does. Safe to re-run: each run writes one part of the day's
partition, replaced on re-run.

On failure, see `docs/runbooks/weather_ingest.md`.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, get_current_context, task

from dresscode.features import tasks as features
from dresscode.orchestration.dag_defaults import (
    DEFAULT_ARGS,
    WEATHER_FEATURES,
    WEATHER_FETCH_TIMEOUT,
)


@dag(
    schedule="@hourly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["dresscode", "features", "weather"],
    doc_md=__doc__,
)
def weather_ingest():
    @task
    def find_cities() -> list[str]:
        return features.cities_of_active_users()

    @task(execution_timeout=WEATHER_FETCH_TIMEOUT)
    def fetch_forecasts(cities: list[str]) -> features.WeatherFetched:
        run = get_current_context()["dag_run"]
        return features.ingest_weather(cities, day=run.run_after.date(), run_id=run.run_id)

    @task(outlets=[WEATHER_FEATURES])
    def push_online(fetched: features.WeatherFetched) -> features.WeatherPushed:
        return features.push_weather(fetched)

    push_online(fetch_forecasts(find_cities()))


weather_ingest()
