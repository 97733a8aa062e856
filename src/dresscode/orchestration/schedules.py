"""DAG schedules that depend on settings, built at parse time (so: cheap unless switched on)."""

from __future__ import annotations

from typing import Any

from dresscode.core.config import Settings, get_settings

INGEST_CRON = "*/15 * * * *"


def ingest_schedule(settings: Settings | None = None) -> Any:
    """Every 15 minutes; with ``DRESSCODE_INGEST_SQS_QUEUE_URL`` set, also on S3 upload events.

    The landing bucket sends ``s3:ObjectCreated:*`` notifications to an SQS queue; an
    ``AssetWatcher`` in the triggerer turns each batch of messages into an event of the
    ``landing_uploads`` Asset, which starts a run at once. The cron stays as a safety net for
    lost notifications. The amazon provider (and boto3) are imported only when this is on.
    """
    settings = settings or get_settings()
    if not settings.ingest_sqs_queue_url:
        return INGEST_CRON
    from airflow.providers.amazon.aws.triggers.sqs import SqsSensorTrigger
    from airflow.sdk import Asset, AssetOrTimeSchedule, AssetWatcher, CronTriggerTimetable

    trigger = SqsSensorTrigger(
        sqs_queue=settings.ingest_sqs_queue_url,
        aws_conn_id=settings.aws_conn_id,
        max_messages=10,
        wait_time_seconds=20,  # long polling: one request per 20 s while the bucket is quiet
    )
    uploads = Asset(
        name="landing_uploads", watchers=[AssetWatcher(name="landing_s3_events", trigger=trigger)]
    )
    return AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(INGEST_CRON, timezone="UTC"), assets=[uploads]
    )
