"""What every DAG shares, defined once: default args (owner, retries, the failure notifier),
deadlines, and Assets.

Imported at DAG parse time, so it stays cheap: only ``airflow.sdk``, the settings and the
notifier (which imports its providers only when it sends).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

# airflow.sdk exports the deadline API, but its __init__.pyi (3.3.2) does not declare it.
from airflow.sdk import (  # type: ignore[attr-defined]
    Asset,
    AsyncCallback,
    DeadlineAlert,
    DeadlineReference,
)

from dresscode.core.config import get_settings
from dresscode.orchestration.alerts import FailureNotifier, deadline_missed

OWNER = "dresscode-ml"

DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "on_failure_callback": FailureNotifier(),
}

_REFERENCES = {
    "dagrun_queued_at": DeadlineReference.DAGRUN_QUEUED_AT,
    "dagrun_logical_date": DeadlineReference.DAGRUN_LOGICAL_DATE,
}


def deadline(
    after: timedelta,
    reference: Literal["dagrun_queued_at", "dagrun_logical_date"] = "dagrun_queued_at",
) -> DeadlineAlert | None:
    """For ``@dag(deadline=deadline(timedelta(hours=2)))``: alert (kind ``deadline_missed``)
    when a run has not finished ``after`` its reference time (when it was queued, by default).

    The alert goes through ``alerts.deliver`` like a failure alert, from the triggerer. None
    when ``DRESSCODE_DEADLINES`` is false: ``dag.test()`` cannot run a DAG with a deadline.
    """
    if not get_settings().deadlines:
        return None
    return DeadlineAlert(
        reference=_REFERENCES[reference],
        interval=after,
        callback=AsyncCallback(
            deadline_missed,
            kwargs={"limit_s": int(after.total_seconds()), "reference": reference},
        ),
        name=f"finish within {after} of {reference}",
    )


# Data products other DAGs react to. Name-only on purpose: an Asset URI with a scheme makes
# Airflow load every provider's URI normalizer at parse time (~0.6 s, boto3 included).
WARDROBE_ITEMS = Asset(name="wardrobe_items")
WEATHER_FEATURES = Asset(name="weather_features")
USER_STYLE = Asset(name="user_style")
OUTFIT_SUGGESTIONS = Asset(name="outfit_suggestions")
