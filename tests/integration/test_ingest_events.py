"""S3 upload events start wardrobe_ingest: the AssetWatcher's trigger against a real SQS API (moto)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from dresscode.core import config
from dresscode.orchestration import schedules

CREDS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region_name": "us-east-1",
}


@pytest.fixture
def queue_url(s3_lake: str, s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    sqs = boto3.client("sqs", endpoint_url=s3_server, **CREDS)
    url = sqs.create_queue(QueueName=f"uploads-{s3_lake}")["QueueUrl"]
    monkeypatch.setenv("DRESSCODE_INGEST_SQS_QUEUE_URL", url)
    config.get_settings.cache_clear()
    return url


def test_without_the_setting_the_dag_runs_on_cron_only(dresscode_home: Path) -> None:
    assert schedules.ingest_schedule() == "*/15 * * * *"


def test_with_the_setting_the_dag_also_watches_the_queue(queue_url: str, airflow_db: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.amazon.aws.triggers.sqs import SqsSensorTrigger

    dag = DagBag(
        dag_folder=str(Path(__file__).resolve().parents[2] / "dags" / "wardrobe_ingest.py")
    ).dags["wardrobe_ingest"]
    [asset] = dag.timetable.asset_condition.objects
    [watcher] = asset.watchers
    assert asset.name == "landing_uploads"
    trigger = _serialized(watcher.trigger)
    assert trigger["classpath"] == f"{SqsSensorTrigger.__module__}.{SqsSensorTrigger.__name__}"
    assert trigger["kwargs"]["sqs_queue"] == queue_url
    assert dag.timetable.timetable.expression == "*/15 * * * *"  # the cron stays as a safety net


def test_an_s3_notification_fires_the_watcher_trigger(queue_url: str, s3_server: str) -> None:
    event = {
        "Records": [
            {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "landing/user-1/p.jpg"}}}
        ]
    }
    boto3.client("sqs", endpoint_url=s3_server, **CREDS).send_message(
        QueueUrl=queue_url, MessageBody=json.dumps(event)
    )
    from airflow.providers.amazon.aws.triggers.sqs import SqsSensorTrigger

    # Rebuilt from its serialized form, as the triggerer does.
    serialized = _serialized(
        schedules.ingest_schedule().asset_condition.objects[0].watchers[0].trigger
    )
    trigger = SqsSensorTrigger(**(serialized["kwargs"] | {"wait_time_seconds": 1}))

    async def first_event():
        return await asyncio.wait_for(anext(trigger.run()), timeout=30)

    fired = asyncio.run(first_event())
    [message] = fired.payload["message_batch"]
    assert json.loads(message["Body"]) == event


def _serialized(trigger: Any) -> dict[str, Any]:
    """A watcher's trigger as the triggerer gets it: ``{"classpath", "kwargs"}``.

    Depending on the Airflow version the watcher holds the trigger or its serialized form.
    """
    if isinstance(trigger, dict):
        return trigger
    classpath, kwargs = trigger.serialize()
    return {"classpath": classpath, "kwargs": kwargs}
