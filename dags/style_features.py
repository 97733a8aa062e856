"""Style features — each active user's wardrobe as features, materialized into Feast.

Nightly at 02:00 UTC, and whenever `wardrobe_ingest` updates the `wardrobe_items` Asset or
`feedback_ingest` the `wardrobe_current` Asset (users deleted, added or corrected items):
**compute** the user style features (wardrobe size, category, warmth and formality mix, top
colours, style clusters of the item vectors, outerwear and rain-gear counts, last upload) of
every active user's wardrobe as the user sees it (their corrections applied) as of the end of
the data interval and write them to the `user_style` lake table; **materialize** the
`user_style` and `weather` views for the interval, starting `DRESSCODE_MATERIALIZE_OVERLAP_H`
hours earlier to catch late rows, in bounded-memory chunks; **verify** a sample back from the
online store and fail loudly if it is stale.

The nightly schedule has a real 24-hour data interval (Airflow 3's `@daily` would give a
zero-length one); runs started by the Asset or by hand use the 24 hours before they started.
Safe to re-run: the same interval writes the same part and materializes the same values.

On failure, see `docs/runbooks/style_features.md`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import (
    AssetOrTimeSchedule,
    CronDataIntervalTimetable,
    dag,
    get_current_context,
    task,
)

from dresscode.features import tasks as features
from dresscode.orchestration.dag_defaults import (
    DEFAULT_ARGS,
    USER_STYLE,
    WARDROBE_CURRENT,
    WARDROBE_ITEMS,
    deadline,
)


def _window() -> features.Window:
    context = get_current_context()
    return features.materialize_window(
        context.get("data_interval_start"),
        context.get("data_interval_end"),
        context["dag_run"].run_after,
    )


@dag(
    schedule=AssetOrTimeSchedule(
        timetable=CronDataIntervalTimetable("0 2 * * *", timezone="UTC"),
        assets=WARDROBE_ITEMS | WARDROBE_CURRENT,
    ),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    # Features must be online before outfit_pregen starts at 05:00 UTC.
    deadline=deadline(timedelta(hours=2)),
    tags=["dresscode", "features", "feast"],
    doc_md=__doc__,
)
def style_features():
    @task
    def compute() -> features.StyleComputed:
        return features.compute_style(_window())

    @task
    def materialize(computed: features.StyleComputed) -> features.Materialized:
        return features.materialize(_window())

    @task(outlets=[USER_STYLE])
    def verify(
        computed: features.StyleComputed, materialized: features.Materialized
    ) -> features.Verified:
        return features.verify_online(computed, _window())

    computed = compute()
    verify(computed, materialize(computed))


style_features()
