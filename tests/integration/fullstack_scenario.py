"""The whole pipeline through dag.test() on the full stack; run only by test_full_stack.py.

Not collected on its own (no ``test_`` prefix): it needs the environment test_full_stack.py
builds before Airflow is imported — the metadata DB on a scratch PostgreSQL database
(DRESSCODE_TEST_AIRFLOW_DB), the lake and landing on the S3 server (aws_default), the
MLflow tracking server, Feast on Redis with its SQL registry on PostgreSQL. This module adds
the model: the project's simulator over real HTTP (its numbers are the simulator's, not
Gemma's), which also serves the weather stub. The DAGs run in the order the pipeline does;
each test depends on the ones before it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dresscode.core import config, lake
from dresscode.local import seed
from dresscode.registry import golden

GEMMA = "google/gemma-4-26B-A4B-it"
N_PHOTOS = 12
PROMPTS = ("wardrobe-digitizer", "outfit-stylist")

pytestmark = pytest.mark.skipif(
    not os.environ.get("DRESSCODE_TEST_AIRFLOW_DB"),
    reason="run through tests/integration/test_full_stack.py, which builds the full stack",
)


@pytest.fixture(scope="module")
def load_dag(airflow_db: Path):
    """As tests/dags/conftest.py's: a fresh DAG object from its file, with no import error."""
    from airflow.dag_processing.dagbag import DagBag

    def load(dag_id: str):
        bag = DagBag(dag_folder=str(config.REPO_ROOT / "dags" / f"{dag_id}.py"))
        assert bag.import_errors == {}
        return bag.dags[dag_id]

    return load


def _states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def _succeeds(run) -> None:
    states = _states(run)
    assert run.state == "success", states
    assert "failed" not in states.values() and "upstream_failed" not in states.values(), states


@pytest.fixture(scope="module")
def stack(load_dag) -> Iterator[dict]:
    """The simulator (model + weather stub) on loopback, wired in as the Airflow connections."""
    from dresscode.sim.testing import running_simulator

    home = Path(os.environ["DRESSCODE_HOME"])
    config.get_settings.cache_clear()
    settings = config.get_settings()
    assert settings.lake_uri.startswith("s3://") and settings.landing_uri.startswith("s3://")
    assert settings.mlflow_tracking_uri.startswith("http://")
    photos = home / "photos.jsonl"
    labels = golden.write_script(golden.load_wardrobe_golden(), home / "golden.jsonl")
    seed.seed(N_PHOTOS, script_path=photos, size=(800, 600))
    monkeypatch = pytest.MonkeyPatch()
    with running_simulator(
        scripts=[labels, photos],
        served_model_name=[f"{GEMMA}=perfect"],
        fixed_latency_ms=2,
        max_num_seqs=64,
    ) as url:
        root = url.removesuffix("/v1")
        llm = {
            "conn_type": "dresscode_llm",
            "host": url,
            "extra": {"model": GEMMA, "max_concurrency": 16},
        }
        weather = {
            "conn_type": "dresscode_weather",
            "host": f"{root}/weather/v1",
            "extra": {"geocoding_url": f"{root}/weather/v1", "timeout": 5},
        }
        monkeypatch.setenv("AIRFLOW_CONN_DRESSCODE_LLM", json.dumps(llm))
        monkeypatch.setenv("AIRFLOW_CONN_WEATHER_API", json.dumps(weather))
        yield {"home": home}
    monkeypatch.undo()
    config.get_settings.cache_clear()


@pytest.fixture(scope="module")
def ingest_window(stack: dict, load_dag) -> dict[str, str]:
    began = datetime.now(UTC).isoformat()
    _succeeds(load_dag("wardrobe_ingest").test())
    return {"window_start": began, "window_end": datetime.now(UTC).isoformat()}


def test_wardrobe_ingest_digitizes_the_seeded_landing(ingest_window) -> None:
    manifests = lake.read_table("manifests")
    assert (manifests["status"] == "accepted").sum() > 0
    assert len(lake.read_table("wardrobe_items")) > 0


def test_prompt_release_gates_and_promotes_into_the_mlflow_server(ingest_window, load_dag) -> None:
    from dresscode.registry import prompt_registry as registry

    _succeeds(load_dag("prompt_release").test(run_conf={"auto_promote": True}))
    for name in PROMPTS:
        assert registry.aliases(name)["production"] == 2


def test_weather_ingest_pushes_the_forecasts(ingest_window, load_dag) -> None:
    _succeeds(load_dag("weather_ingest").test())
    assert set(lake.read_table("weather")["city"]) == set(seed.CITIES.values()) - {"Atlantis"}


def test_style_features_reach_the_online_store(ingest_window, load_dag) -> None:
    from dresscode.features import store as features

    # No logical date: the run wardrobe_ingest's Asset triggers, covering the 24 h before it
    # (a run for the last nightly interval would end before these uploads).
    _succeeds(load_dag("style_features").test(logical_date=None))
    style = lake.read_table("user_style")
    sizes = style.set_index("user_id")["wardrobe_size"]
    user = next(u for u in sizes.index if sizes[u] > 0)
    online = features.online_context([{"user_id": user, "city_id": "berlin"}])
    assert int(online.loc[0, "wardrobe_size"]) == int(sizes[user])


def test_outfit_pregen_suggests_from_the_online_features(ingest_window, load_dag) -> None:
    _succeeds(load_dag("outfit_pregen").test())
    suggestions = lake.read_table("outfit_suggestions")
    assert (suggestions["status"] == "ok").sum() > 0


def test_model_monitoring_records_a_decision(ingest_window, load_dag) -> None:
    _succeeds(load_dag("model_monitoring").test(run_conf=ingest_window))
    decisions = lake.read_table("monitoring_decisions")
    assert len(decisions) >= 1
