"""Wardrobe ingest — turn new photos in the landing area into clean JPEGs and wardrobe items.

Every 15 minutes (and on S3 upload events when `DRESSCODE_INGEST_SQS_QUEUE_URL` is set):
**resolve_prompt** reads the `production` blueprint of `wardrobe-digitizer` from the MLflow
prompt registry (the newest in git, with a warning, until one is promoted); **discover** new uploads in `landing/` (the manifest says what is done),
**process** them in mapped batches (validate, orient, downscale and strip each photo; quarantine
bad files with a reason; digitize the good ones with the `wardrobe-digitizer` blueprint through
the `dresscode_llm` connection and the `llm` pool), then **report** the run's totals and emit
the `wardrobe_items` Asset.

Safe to re-run: uploads already in the manifest are skipped, images are content-addressed and a
photo already digitized with the same prompt version is not sent to the model again. One bad
photo never fails the run; a failure rate above `DRESSCODE_INGEST_MAX_FAILURE_RATE` does.

On failure, see `docs/runbooks/wardrobe_ingest.md`.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, get_current_context, task

from dresscode.core.config import get_settings
from dresscode.ingest import tasks as ingest
from dresscode.orchestration.dag_defaults import (
    DEFAULT_ARGS,
    LISTING_TIMEOUT,
    USER_FACING_PRIORITY,
    WARDROBE_ITEMS,
    ingest_batch_timeout,
)
from dresscode.orchestration.schedules import ingest_schedule


@dag(
    schedule=ingest_schedule(),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["dresscode", "ingest", "llm"],
    doc_md=__doc__,
)
def wardrobe_ingest():
    @task
    def resolve_prompt() -> ingest.Serving:
        """The registry's production blueprint, once per run (a promotion or rollback applies
        from the next run on)."""
        return ingest.resolve_prompt()

    @task(execution_timeout=LISTING_TIMEOUT)
    def discover() -> list[list[str]]:
        return ingest.discover()

    # Each batch keeps up to llm_max_concurrency calls in flight, so it takes that many slots
    # of the `llm` pool: the pool's size is the endpoint's total concurrency budget.
    @task(
        pool="llm",
        pool_slots=get_settings().llm_max_concurrency,
        priority_weight=USER_FACING_PRIORITY,
        map_index_template="{{ batch_label }}",
        execution_timeout=ingest_batch_timeout(),
    )
    def process(keys: list[str], serving: ingest.Serving) -> ingest.BatchResult:
        context = get_current_context()
        ti, run = context["ti"], context["dag_run"]
        label = f"batch {ti.map_index + 1} ({len(keys)} photos)"
        context["batch_label"] = label
        return ingest.process_batch(
            keys,
            run_id=run.run_id,
            day=run.run_after.date().isoformat(),
            serving=serving,
            label=label,
        )

    @task(outlets=[WARDROBE_ITEMS])
    def report(results: list[ingest.BatchResult]) -> ingest.RunTotals:
        totals = ingest.commit_and_report(list(results))
        get_current_context()["outlet_events"][WARDROBE_ITEMS].extra = totals
        return totals

    report(process.partial(serving=resolve_prompt()).expand(keys=discover()))


wardrobe_ingest()
