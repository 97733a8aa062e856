"""Every DAG alerts when it fails, and the nightly DAGs alert when they are late.

Each DAG file in dags/ (new ones included: the folder is globbed) is loaded, its tasks checked
for the failure notifier, then run once through dag.test() with the lake and the MLflow
tracking URI pointing at a scheme nothing serves — the kind of mistake a deploy makes — so its
first tasks fail for real. (An invalid setting cannot do it: dag.test() re-parses every DAG
file, and the DAG files read settings at parse time.) The alert file must then hold a
``task_failed`` record per failed task that an on-call engineer can act on. The deadline of
the nightly DAGs is checked the same way Airflow handles a miss: the scheduler's
``Deadline.handle_miss`` builds the callback, the triggerer's ``CallbackTrigger`` runs it.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from dresscode.core import config
from dresscode.orchestration import alerts, dag_defaults

REPO = Path(__file__).resolve().parents[2]
DAG_IDS = sorted(p.stem for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_"))
# DAGs that must finish by a time of day carry a deadline (dag_defaults.deadline).
NIGHTLY = ["style_features", "outfit_pregen", "model_monitoring", "feedback_ingest"]
# Params without a valid default, for the DAGs that have them (a rollback must say why).
RUN_CONF = {"prompt_rollback": {"reason": "alerting test: a forced failure"}}
# Valid settings that no task can use: the first read of the lake or the registry fails (the
# lake on S3 through a connection that does not exist; a tracking URI of no known scheme).
BROKEN = {
    "DRESSCODE_LAKE_URI": "s3://unreachable-lake/lake",
    "DRESSCODE_AWS_CONN_ID": "unreachable_aws",
    "MLFLOW_TRACKING_URI": "unreachable://mlflow",
    # Defined (a missing connection is a configuration error, not an outage) but unreachable.
    "AIRFLOW_CONN_DRESSCODE_EMBEDDINGS": json.dumps(
        {
            "conn_type": "http",
            "host": "http://unreachable-embeddings.invalid/v1",
            "extra": {"model": "intfloat/multilingual-e5-small"},
        }
    ),
}


def _break(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in BROKEN.items():
        monkeypatch.setenv(name, value)
    config.get_settings.cache_clear()


def _callbacks(task) -> list:
    callbacks = task.on_failure_callback or []
    return callbacks if isinstance(callbacks, list) else [callbacks]


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_a_failure_in_every_dag_reaches_the_alert_file(
    dag_id: str, load_dag, dresscode_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dag = load_dag(dag_id)
    for task in dag.tasks:
        assert any(isinstance(cb, alerts.FailureNotifier) for cb in _callbacks(task)), (
            f"{dag_id}.{task.task_id} has no failure notifier: use dag_defaults.DEFAULT_ARGS"
        )
        task.retries = 0  # dag.test() waits out retry delays
    _break(monkeypatch)

    run = dag.test(run_conf=RUN_CONF.get(dag_id))

    failed = {ti.task_id: ti.try_number for ti in run.get_task_instances() if ti.state == "failed"}
    assert run.state == "failed" and failed, f"{dag_id} did not fail with {BROKEN}"
    records = [r for r in alerts.read_alerts() if r["kind"] == "task_failed"]
    assert {r["task_id"] for r in records} == set(failed), "one alert per failed task"
    for record in records:
        assert record["dag_id"] == dag_id
        assert record["run_id"] == run.run_id
        assert record["try_number"] == failed[record["task_id"]] == 1
        assert "unreachable" in record["summary"], record["summary"]
        assert record["log_url"] and f"/dags/{dag_id}/runs/" in record["log_url"]
        assert record["runbook"] == f"docs/runbooks/{dag_id}.md"
        assert (REPO / record["runbook"]).exists()
        for line in (f"{dag_id}.{record['task_id']}", f"run {run.run_id}, try 1", "cause: "):
            assert line in record["text"]


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_deadlines_are_off_when_switched_off(dag_id: str, load_dag) -> None:
    """dag.test() cannot run a DAG with a deadline, so the tests' setting must remove them all."""
    assert config.get_settings().deadlines is False  # tests/conftest.py
    assert load_dag(dag_id).deadline is None


@pytest.mark.parametrize("dag_id", NIGHTLY)
def test_nightly_dags_carry_a_deadline_that_alerts(
    dag_id: str, load_dag, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    monkeypatch.setenv("DRESSCODE_DEADLINES", "true")
    config.get_settings.cache_clear()
    dag = load_dag(dag_id)

    [deadline] = dag.deadline
    assert deadline.callback.path == "dresscode.orchestration.alerts.deadline_missed"
    assert deadline.interval > timedelta(0)
    # The dag-processor stores it serialized: it must survive the round trip.
    [stored] = DagSerialization.from_dict(DagSerialization.to_dict(dag)).deadline
    assert (
        stored["callback"]["__data__"]["path"] == "dresscode.orchestration.alerts.deadline_missed"
    )
    config.get_settings.cache_clear()


def test_a_missed_deadline_alerts_through_the_triggerer(
    load_dag, dresscode_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.models import DagRun
    from airflow.models.deadline import Deadline
    from airflow.settings import Session
    from airflow.triggers.callback import CallbackTrigger
    from sqlalchemy import select

    dag = load_dag("style_features")
    for task in dag.tasks:
        task.retries = 0
    _break(monkeypatch)  # a quick run to be late: it fails at once
    late = dag.test()
    monkeypatch.setenv("DRESSCODE_DEADLINES", "true")
    config.get_settings.cache_clear()
    limit = timedelta(hours=2)
    definition = dag_defaults.deadline(limit)

    session = Session()
    try:  # what the scheduler does when the deadline passes
        dag_run = session.scalar(
            select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == late.run_id)
        )
        deadline = Deadline(
            deadline_time=(dag_run.queued_at or dag_run.start_date)
            + limit,  # dag.test() queues none
            callback=definition.callback,
            dagrun_id=dag_run.id,
            deadline_alert_id=None,
            dag_id=dag.dag_id,
        )
        session.add(deadline)
        session.flush()
        deadline.handle_miss(session)
        queued = dict(deadline.callback.data)
    finally:
        session.rollback()
        session.close()

    async def run_in_triggerer() -> list[dict]:
        trigger = CallbackTrigger(callback_path=queued["path"], callback_kwargs=queued["kwargs"])
        return [event.payload async for event in trigger.run()]

    events = asyncio.run(run_in_triggerer())

    assert events[-1]["state"] == "success", events
    [record] = [r for r in alerts.read_alerts() if r["kind"] == "deadline_missed"]
    assert record["dag_id"] == "style_features" and record["run_id"] == late.run_id
    assert record["summary"].startswith("run not finished 2:00:00 after it was queued")
    assert record["log_url"].endswith(f"/dags/style_features/runs/{quote(late.run_id)}")
    assert record["runbook"] == "docs/runbooks/style_features.md"
    assert "[dresscode] deadline missed: style_features" in record["text"]
