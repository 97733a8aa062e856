"""weather_ingest, style_features and outfit_pregen end to end through dag.test().

A seeded batch goes through wardrobe_ingest first (real photos, real items), then the three
feature DAGs run against the simulator over real HTTP — it also serves the Open-Meteo-shaped
weather stub — with a real Feast repo (file offline store over the lake, SQLite online store).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from dresscode.core import lake
from dresscode.local import seed
from dresscode.sim.testing import running_simulator

MODEL = "google/gemma-4-26B-A4B-it"
N_PHOTOS = 16


def _states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


@pytest.fixture(scope="module")
def stack(load_dag, module_home) -> Iterator[dict]:
    """A fresh home, seeded and ingested, with the simulator and its weather stub."""
    home, monkeypatch = module_home
    script = home / "script.jsonl"
    seed.seed(N_PHOTOS, script_path=script, size=(800, 600))
    with running_simulator(
        scripts=[script], served_model_name=[f"{MODEL}=perfect"], fixed_latency_ms=5
    ) as url:
        root = url.removesuffix("/v1")
        monkeypatch.setenv(
            "AIRFLOW_CONN_DRESSCODE_LLM",
            json.dumps(
                {
                    "conn_type": "http",
                    "host": url,
                    "extra": {"model": MODEL, "timeout": 30, "max_concurrency": 8},
                }
            ),
        )
        monkeypatch.setenv(
            "AIRFLOW_CONN_WEATHER_API",
            json.dumps(
                {
                    "conn_type": "http",
                    "host": f"{root}/weather/v1",
                    "extra": {"geocoding_url": f"{root}/weather/v1", "timeout": 5},
                }
            ),
        )
        ingest = load_dag("wardrobe_ingest").test()
        assert ingest.state == "success", _states(ingest)
        yield {"home": home, "url": url, "weather": f"{root}/weather"}


def _forecast_requests(stack: dict) -> dict[str, int]:
    return httpx.get(f"{stack['weather']}/_stats").json()["forecast_requests"]


@pytest.fixture(scope="module")
def weather_run(stack: dict, load_dag):
    return load_dag("weather_ingest").test()


def test_weather_ingest_writes_features_for_every_known_city(weather_run, stack) -> None:
    assert weather_run.state == "success", _states(weather_run)
    summary = weather_run.get_task_instance("push_online").xcom_pull(task_ids="push_online")
    cities = set(seed.CITIES.values())
    assert summary["cities"] == len(cities)
    assert summary["missing"] == {"unknown_city": 1}  # Atlantis
    assert summary["with_weather"] == summary["pushed"] == len(cities) - 1
    table = lake.read_table("weather")
    assert set(table["city"]) == cities - {"Atlantis"}
    assert set(table["temperature_tier"]) <= {"freezing", "cold", "chilly", "mild", "warm", "hot"}
    sydney, oslo = (table[table["city"] == c].iloc[0] for c in ("Sydney", "Oslo"))
    assert sydney["season"] != oslo["season"]  # opposite hemispheres


def test_weather_reruns_within_the_ttl_fetch_each_city_once(weather_run, stack, load_dag) -> None:
    dag = load_dag("weather_ingest")
    for _ in range(2):
        assert dag.test().state == "success"
    requests = _forecast_requests(stack)
    assert requests and set(requests.values()) == {1}, requests


@pytest.fixture(scope="module")
def style_run(stack: dict, weather_run, load_dag):
    # Run it the way the wardrobe_items Asset does (the 24 h before it starts): the default
    # logical date would check the last nightly interval, which before 02:00 UTC ends
    # yesterday and holds none of the photos ingested above.
    return load_dag("style_features").test(logical_date=None)


def test_style_features_are_materialized_and_verified(style_run) -> None:
    from dresscode.features import store as features

    assert style_run.state == "success", _states(style_run)
    assert set(_states(style_run).values()) == {"success"}
    table = lake.read_table("user_style")
    active = set(seed.CITIES)
    assert set(table["user_id"]) == active
    assert int(table.loc[table["user_id"] == "user-bad", "wardrobe_size"].iloc[0]) == 0
    online = features.online_context(
        [{"user_id": "user-000", "city_id": "berlin"}, {"user_id": "nobody", "city_id": "nowhere"}]
    )
    rows = online.set_index("user_id")
    expected = int(table.loc[table["user_id"] == "user-000", "wardrobe_size"].iloc[0])
    assert expected > 0 and int(rows.loc["user-000", "wardrobe_size"]) == expected
    assert rows.loc["nobody"].isna()["wardrobe_size"]  # an unknown entity is empty, not an error


@pytest.fixture(scope="module")
def pregen_run(stack: dict, style_run, load_dag):
    return load_dag("outfit_pregen").test()


def test_outfit_pregen_suggests_for_users_with_a_wardrobe(pregen_run) -> None:
    assert pregen_run.state == "success", _states(pregen_run)
    totals = pregen_run.get_task_instance("report").xcom_pull(task_ids="report")
    suggestions = lake.read_table("outfit_suggestions").set_index("user_id")
    assert set(suggestions.index) == set(seed.CITIES)
    assert suggestions.loc["user-bad", "status"] == "skipped"
    assert suggestions.loc["user-bad", "skip_reason"] == "empty_wardrobe"
    ok = suggestions[suggestions["status"] == "ok"]
    assert len(ok) == totals["suggested"] > 0
    owned = lake.read_table("wardrobe_items", columns=["item_id", "user_id"])
    for user_id, row in ok.iterrows():
        mine = set(owned.loc[owned["user_id"] == user_id, "item_id"])
        for outfit in json.loads(row["outfits"]):
            assert set(outfit["item_ids"]) <= mine


def test_outfit_calls_are_logged_with_their_tool_calls(pregen_run) -> None:
    log = lake.read_table("inference_log")
    calls = log[log["purpose"] == "outfit"]
    assert not calls.empty
    assert set(calls["prompt_name"]) == {"outfit-stylist"}
    assert calls["tool_calls"].sum() > 0
    assert (calls["hallucinated_items"] == 0).all()  # the perfect profile owns up to its wardrobe


def test_outfit_pregen_rerun_replaces_its_parts(stack: dict, pregen_run, load_dag) -> None:
    before = len(lake.read_table("outfit_suggestions"))
    assert load_dag("outfit_pregen").test().state == "success"
    assert len(lake.read_table("outfit_suggestions")) == before


def test_the_stylist_shadow_replays_recent_users_through_both_versions(pregen_run) -> None:
    from dresscode.registry import prompt_registry as registry
    from dresscode.registry import tasks as release

    name = "outfit-stylist"
    registry.sync(name)
    for version in (1, 2):
        registry.mark_gate(name, version, True, {"hallucinated_items": 0})
    registry.promote(name, 1, actor="test", reason="baseline for the shadow")
    shadowed = release.shadow({"name": name, "version": 2, "mlflow_run_id": "-"})
    report = lake.read_json(lake.storage_path(shadowed["shadow"]["report"]))
    suggested = lake.read_table("outfit_suggestions")
    assert report["inputs"] == (suggested["status"] == "ok").sum() > 0
    assert (report["candidate"], report["production"]) == (2, 1)
    assert 0.0 <= report["agreement"] <= 1.0
    for side in ("candidate_stats", "production_stats"):
        assert report[side]["calls"] >= report["inputs"] and report[side]["failures"] == 0
