"""Lake maintenance — keep the lake's Delta tables quick to read and bounded in size.

Nightly at 01:30 UTC, one mapped **maintain** per Delta table (`manifests`, `wardrobe_items`,
`redigitized`, `user_events`, `users`, and the feature tables `user_style` and `weather`): compact
the partitions (past days of the tables partitioned
by `date`, every user bucket of those partitioned by `user_bucket`) that hold two or more small
files (one per ingest batch) into files of about `DRESSCODE_LAKE_TARGET_FILE_MB`, z-ordered by the table's
cluster column so that readers filtering on it skip files; vacuum the files that no version of
the last `DRESSCODE_LAKE_RETENTION_HOURS` references (time travel to newer versions keeps
working); write a checkpoint and expire old log entries. A table never written is skipped.
**report** totals the run and fails, naming them, when tables failed; the others are done all
the same.

Safe to re-run, and beside ingest: a compacted partition is skipped the next time, the run's
own day is left alone while ingest writes it, and a commit that loses to a concurrent one
fails the task, whose retry starts again from the new version.

On failure, see `docs/runbooks/lake_maintenance.md`.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import CronTriggerTimetable, dag, get_current_context, task

from dresscode.lake import tasks as lake
from dresscode.orchestration.dag_defaults import DEFAULT_ARGS, LISTING_TIMEOUT


@dag(
    schedule=CronTriggerTimetable("30 1 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["dresscode", "lake"],
    doc_md=__doc__,
)
def lake_maintenance():
    # One table at a time: a z-order sorts a whole partition in memory, and nothing waits on
    # this run, so the worker's peak stays one table's.
    @task(
        map_index_template="{{ table_name }}",
        max_active_tis_per_dagrun=1,
        execution_timeout=lake.MAINTAIN_TIMEOUT,
    )
    def maintain(table: str) -> lake.Maintained:
        context = get_current_context()
        context["table_name"] = table
        return lake.maintain(table, day=context["dag_run"].run_after.date())

    # Runs when every table is done, failed or not, and fails naming the tables that failed.
    # A failed table has no result: the slice fetches those there are in one request (iterating
    # would probe one past the end and log an "XCom not found" error that is none).
    @task(trigger_rule="all_done", execution_timeout=LISTING_TIMEOUT)
    def report(results: list[lake.Maintained]) -> lake.Report:
        return lake.report(list(results[:]))

    report(maintain.expand(table=list(lake.TABLES)))


lake_maintenance()
