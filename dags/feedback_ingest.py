"""Feedback ingest — users' corrections and thumbs become corrected labels, a correction rate and golden candidates.

Daily at 04:30 UTC: **discover** lists the JSON-lines files the app dropped in
`landing/feedback/`; **validate_and_apply** checks every line against its event type's schema
(`item_corrected`, `item_deleted`, `item_added`, `outfit_rated`, `wore_instead`), checks in
event-time order that each event points at the user's own item, photo or suggestion, drops a
user's events already accepted (same user and `event_id`), writes the accepted events to the `feedback` table and
each photo's model items with the corrections applied to `corrected_labels` (updating the
`wardrobe_current` Asset, which refreshes `style_features`), keeps rejected
lines with their reason in `reports/feedback/date=<day>/`, archives each file under
`feedback/raw/` and only then removes it from landing; **stage_golden_candidates** stages
photos with corrected labels in `golden_candidates` for a human to accept with
`dresscode golden accept`; **report** logs the counts and the correction rate.

Bad lines never fail the run: they are kept and counted (a WARNING per reason). A file commits
whole or not at all. Files under `feedback/` that are not `.jsonl` go to quarantine, never the
archive. Safe to
re-run: parts are named by the file's content hash and the derived tables are written only
when they change, so replaying a file changes nothing.

On failure, see `docs/runbooks/feedback_ingest.md`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, get_current_context, task

from dresscode.feedback import tasks as feedback
from dresscode.orchestration.dag_defaults import (
    DEFAULT_ARGS,
    FEEDBACK_TIMEOUT,
    LISTING_TIMEOUT,
    WARDROBE_CURRENT,
    deadline,
)


def _run_day() -> str:
    return get_current_context()["dag_run"].run_after.date().isoformat()


@dag(
    schedule="30 4 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    deadline=deadline(timedelta(hours=1)),
    tags=["dresscode", "feedback", "labels"],
    doc_md=__doc__,
)
def feedback_ingest():
    @task(execution_timeout=LISTING_TIMEOUT)
    def discover() -> list[str]:
        return feedback.discover()

    @task(execution_timeout=FEEDBACK_TIMEOUT, outlets=[WARDROBE_CURRENT])
    def validate_and_apply(keys: list[str]) -> feedback.Applied:
        applied = feedback.validate_and_apply(keys, day=_run_day())
        changes = feedback.wardrobe_changes(applied)
        get_current_context()["outlet_events"][WARDROBE_CURRENT].extra = dict(changes)
        return applied

    @task(execution_timeout=FEEDBACK_TIMEOUT)
    def stage_golden_candidates(applied: feedback.Applied) -> feedback.Staged:
        return feedback.stage_golden_candidates(day=_run_day())

    @task(execution_timeout=LISTING_TIMEOUT)
    def report(applied: feedback.Applied, staged: feedback.Staged) -> feedback.Report:
        return feedback.report(applied, staged)

    applied = validate_and_apply(discover())
    report(applied, stage_golden_candidates(applied))


feedback_ingest()
