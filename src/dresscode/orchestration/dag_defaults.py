"""What every DAG shares, defined once: default args (owner, retries, the failure notifier),
deadlines, task timeouts, and Assets.

Imported at DAG parse time, so it stays cheap: only ``airflow.sdk``, the settings and the
notifier (which imports its providers only when it sends).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

# airflow.sdk exports the deadline API, but its __init__.pyi (3.3.2) does not declare it.
from airflow.sdk import (  # type: ignore[attr-defined]
    Asset,
    AsyncCallback,
    DeadlineAlert,
    DeadlineReference,
)

from dresscode.core.config import get_settings
from dresscode.orchestration.alerts import FailureNotifier, WorkerLostNotifier, deadline_missed
from dresscode.orchestration.code_version import check as code_version_check

if TYPE_CHECKING:
    from dresscode.core.config import Settings

OWNER = "dresscode-ml"

DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "on_failure_callback": FailureNotifier(),
    "on_retry_callback": WorkerLostNotifier(),
    "pre_execute": code_version_check,  # a worker on other code fails before doing anything
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


# --- Task timeouts (``execution_timeout``) ----------------------------------------------------
# Every task that handles user data has one, so a hostile input or a stalled endpoint ends in a
# failed, retried and alerted task instead of a worker slot held for ever. Each is a worst case
# computed from the settings (or a stated constant), plus TASK_MARGIN.

# The `llm` pool's order when slots free up: users wait on their uploads, nobody waits on a
# golden evaluation. A batch takes the whole pool (llm_max_concurrency slots) and the scheduler
# fills freed slots by priority: with the default weights an evaluation (more tasks downstream)
# went first, and its one slot kept an ingest batch out for two minutes (seen in `make up`).
USER_FACING_PRIORITY = 100

TASK_MARGIN = timedelta(minutes=5)
"""Start-up, lake reads and writes, a manifest commit: added to every computed timeout."""

LISTING_TIMEOUT = timedelta(minutes=10)
"""Tasks that list or total a run's inputs (discover, report): seconds normally."""

FEEDBACK_TIMEOUT = timedelta(minutes=30)
"""feedback_ingest's validate_and_apply and stage_golden_candidates: one day's feedback files
(a few MB) take a minute or two; half of the DAG's one-hour deadline."""

WEATHER_FETCH_TIMEOUT = timedelta(minutes=30)
"""weather_ingest's fetch_forecasts: the hourly run must end well before the next one; a city
costs at most DRESSCODE_WEATHER_MAX_ATTEMPTS x DRESSCODE_WEATHER_TIMEOUT_S and most are cached."""


def ingest_batch_timeout(settings: Settings | None = None) -> timedelta:
    """wardrobe_ingest's process: every photo of a batch at its full decode budget, one after
    the other, and each wave of model calls (``llm_max_concurrency`` at a time) at its full
    retry budget. Defaults: 64 x 10 s + 4 x 300 s + 5 min = 35 min 40 s."""
    settings = settings or get_settings()
    waves = math.ceil(settings.ingest_batch_size / settings.llm_max_concurrency)
    decode_s = settings.ingest_batch_size * settings.image_max_decode_s
    return timedelta(seconds=decode_s + waves * settings.llm_retry_budget_s) + TASK_MARGIN


def outfit_batch_timeout(settings: Settings | None = None) -> timedelta:
    """outfit_pregen's suggest: each wave of users (``llm_max_concurrency`` at a time) through
    ``outfit_max_turns`` model calls at their per-call timeout. Defaults: 13 x 4 x 120 s + 5 min
    = 1 h 49 min (a call retrying beyond its timeout is the exception the timeout is for)."""
    settings = settings or get_settings()
    waves = math.ceil(settings.outfit_batch_size / settings.llm_max_concurrency)
    seconds = waves * settings.outfit_max_turns * settings.llm_timeout_s
    return timedelta(seconds=seconds) + TASK_MARGIN


# Data products other DAGs react to. Name-only on purpose: an Asset URI with a scheme makes
# Airflow load every provider's URI normalizer at parse time (~0.6 s, boto3 included).
WARDROBE_ITEMS = Asset(name="wardrobe_items")
# The wardrobe as users see it (``tables.current_wardrobes_of``): feedback_ingest updates it when
# it accepts corrections, deletions or additions, and style_features refreshes on it.
WARDROBE_CURRENT = Asset(name="wardrobe_current")
WEATHER_FEATURES = Asset(name="weather_features")
USER_STYLE = Asset(name="user_style")
OUTFIT_SUGGESTIONS = Asset(name="outfit_suggestions")
