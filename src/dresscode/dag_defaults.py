"""What every DAG shares, defined once: default args (owner, retries, the failure notifier) and Assets.

Imported at DAG parse time, so it stays cheap: only ``airflow.sdk`` and the notifier.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset

from dresscode.alerts import FailureNotifier

OWNER = "dresscode-ml"

DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "on_failure_callback": FailureNotifier(),
}

# Data products other DAGs react to. Name-only on purpose: an Asset URI with a scheme makes
# Airflow load every provider's URI normalizer at parse time (~0.6 s, boto3 included).
WARDROBE_ITEMS = Asset(name="wardrobe_items")
WEATHER_FEATURES = Asset(name="weather_features")
USER_STYLE = Asset(name="user_style")
OUTFIT_SUGGESTIONS = Asset(name="outfit_suggestions")
