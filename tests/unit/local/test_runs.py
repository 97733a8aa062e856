"""make up's runs: a paused DAG's first run stands in for the scheduled run unpausing starts.

The Airflow API is scripted (a subclass recording the requests ``start_run`` makes); that the
scheduler then skips the interval is Airflow's own rule (a scheduled run is keyed on its
logical date), exercised by every ``make up``: its runs list shows no ``scheduled__`` run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dresscode.local import runs
from dresscode.local.airflow_api import AirflowAPI

NEXT = "2026-12-05T22:00:00Z"


class RecordingAPI(AirflowAPI):
    def __init__(self, paused: bool, next_logical: str | None) -> None:
        super().__init__("http://127.0.0.1:1", "admin", "admin")
        self.paused, self.next_logical = paused, next_logical
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def dag(self, dag_id: str) -> dict[str, Any]:
        return {
            "dag_id": dag_id,
            "is_paused": self.paused,
            "next_dagrun_logical_date": self.next_logical,
        }

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, **kwargs: Any) -> str:
        self.calls.append(("trigger", {"conf": conf, **kwargs}))
        return "manual__1"

    def unpause(self, dag_id: str) -> None:
        self.calls.append(("unpause", {}))


def test_a_paused_dags_run_takes_the_logical_date_of_the_scheduled_one() -> None:
    api = RecordingAPI(paused=True, next_logical=NEXT)
    before = datetime.now(UTC)
    assert runs.start_run(api, "prompt_release", {"x": 1}) == "manual__1"
    [(first, trigger), (second, _)] = api.calls
    assert (first, second) == ("trigger", "unpause")  # triggered while paused: no race
    assert trigger["logical_date"] == NEXT and trigger["conf"] == {"x": 1}
    start, end = (datetime.fromisoformat(t) for t in trigger["data_interval"])
    assert end - start == timedelta(days=1) and before <= end <= datetime.now(UTC)


def test_an_unpaused_dag_gets_a_plain_manual_run() -> None:
    api = RecordingAPI(paused=False, next_logical=NEXT)
    runs.start_run(api, "wardrobe_ingest")
    [(_, trigger), _] = api.calls
    assert trigger == {"conf": None}


def test_an_unscheduled_dag_gets_a_plain_manual_run() -> None:
    api = RecordingAPI(paused=True, next_logical=None)
    runs.start_run(api, "prompt_rollback")
    [(_, trigger), _] = api.calls
    assert trigger == {"conf": None}


def test_the_stages_run_every_pipeline_dag_once_after_what_it_reads() -> None:
    order = [dag for stage in runs.STAGES for dag in stage]
    assert sorted(order) == sorted(set(order)) == sorted(runs.PIPELINE)
    stage_of = {dag: i for i, stage in enumerate(runs.STAGES) for dag in stage}
    # what each DAG reads, written by another pipeline DAG
    reads = {
        "item_embeddings": ["wardrobe_ingest"],
        "style_features": ["wardrobe_ingest", "weather_ingest"],
        "outfit_pregen": ["style_features", "prompt_release", "weather_ingest"],
    }
    for dag, inputs in reads.items():
        assert all(stage_of[i] < stage_of[dag] for i in inputs), dag
