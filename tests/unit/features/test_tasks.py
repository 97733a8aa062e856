"""The feature DAGs' task functions: weather run reports, the outage threshold, windows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from dresscode.core import lake
from dresscode.features import tasks as feature_jobs
from dresscode.sim.testing import running_weather_stub

DAY = date(2026, 11, 23)


@pytest.fixture
def provider(dresscode_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with running_weather_stub() as url:
        conn = {"conn_type": "http", "host": url, "extra": {"geocoding_url": url, "timeout": 5}}
        monkeypatch.setenv("AIRFLOW_CONN_WEATHER_API", json.dumps(conn))
        yield url


def _reports() -> list[dict]:
    return [lake.read_json(p) for p in lake.list_files(lake.table("reports"))]


def test_a_few_missing_cities_are_reported_not_fatal(provider: str) -> None:
    summary = feature_jobs.ingest_weather(["Berlin", "Oslo", "Atlantis"], day=DAY, run_id="r1")
    assert (summary["with_weather"], summary["missing"]) == (2, {"unknown_city": 1})
    [report] = _reports()
    assert [m["city"] for m in report["missing_cities"]] == ["Atlantis"]
    assert len(lake.read_table("weather")) == 2


def test_most_cities_missing_fails_the_run_but_keeps_what_it_got(provider: str) -> None:
    with pytest.raises(feature_jobs.FeatureJobError, match="2 of 3 cities"):
        feature_jobs.ingest_weather(["Berlin", "Atlantis", "Lemuria"], day=DAY, run_id="r2")
    assert len(lake.read_table("weather")) == 1  # Berlin's row is written before failing
    [report] = _reports()
    assert report["missing"] == {"unknown_city": 2}


def test_a_rerun_of_the_same_run_replaces_its_part(provider: str) -> None:
    for _ in range(2):
        feature_jobs.ingest_weather(["Berlin"], day=DAY, run_id="same")
    assert len(lake.read_table("weather")) == 1 and len(_reports()) == 1


def test_window_is_the_data_interval_or_the_day_before_a_manual_run() -> None:
    end = datetime(2026, 11, 23, 2, tzinfo=UTC)
    nightly = feature_jobs.materialize_window(end - timedelta(days=1), end, end)
    assert nightly == {"start": (end - timedelta(days=1)).isoformat(), "as_of": end.isoformat()}
    manual = feature_jobs.materialize_window(end, end, end)  # zero-length interval
    assert manual["start"] == (end - timedelta(days=1)).isoformat()
    assert feature_jobs.materialize_window(None, None, end) == manual


@pytest.mark.parametrize(
    ("view", "why"), [("weather_live", "fed by pushes only"), ("item_embeddings", "removed items")]
)
def test_views_fed_online_by_their_own_task_are_never_materialized(view: str, why: str) -> None:
    from dresscode.features import materialization

    start = datetime(2026, 5, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match=why):
        materialization.materialize(start, start + timedelta(days=1), views=[view])
