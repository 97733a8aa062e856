"""Outfit pre-generation — every active user's outfit suggestion for today, before they wake up.

Daily at 05:00 UTC: **resolve_prompt** reads the `production` blueprint of `outfit-stylist`
from the MLflow prompt registry (the newest in git until one is promoted); **plan** splits the
active users into batches of `DRESSCODE_OUTFIT_BATCH_SIZE`; **suggest** runs each batch
(mapped, in the `llm` pool): the user's features from Feast's `outfit_context` service and
wardrobe from the lake go into the stylist prompt, the model calls the `get_weather` tool
(answered from the weather features, falling back to the provider) in a bounded loop, and the
answer is validated — items the user does not own are dropped and counted as hallucinations,
outfits breaking a weather rule are removed, and a user with no complete outfit left is
skipped with a reason; **report** totals the run.

Writes `outfit_suggestions` and `inference_log` rows. Safe to re-run: each batch's part is
named by its users, so a re-run replaces it.

On failure, see `docs/runbooks/outfit_pregen.md`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, get_current_context, task

from dresscode.core.config import get_settings
from dresscode.orchestration.dag_defaults import (
    DEFAULT_ARGS,
    OUTFIT_SUGGESTIONS,
    deadline,
    outfit_batch_timeout,
)
from dresscode.outfits import tasks as outfits


@dag(
    schedule="0 5 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    # Suggestions must be ready before users wake up (~07:00 UTC).
    deadline=deadline(timedelta(hours=2)),
    tags=["dresscode", "outfits", "llm"],
    doc_md=__doc__,
)
def outfit_pregen():
    @task
    def resolve_prompt() -> outfits.Serving:
        """The registry's production stylist, once per run."""
        return outfits.resolve_prompt()

    @task
    def plan() -> list[list[outfits.UserRef]]:
        return outfits.plan_batches()

    @task(
        pool="llm",
        pool_slots=get_settings().llm_max_concurrency,
        map_index_template="{{ batch_label }}",
        execution_timeout=outfit_batch_timeout(),
    )
    def suggest(users: list[outfits.UserRef], serving: outfits.Serving) -> outfits.BatchSummary:
        context = get_current_context()
        ti, run = context["ti"], context["dag_run"]
        label = f"batch {ti.map_index + 1} ({len(users)} users)"
        context["batch_label"] = label
        return outfits.run_batch(users, day=run.run_after.date(), serving=serving, label=label)

    @task(outlets=[OUTFIT_SUGGESTIONS])
    def report(results: list[outfits.BatchSummary]) -> outfits.RunTotals:
        return outfits.report(list(results))

    report(suggest.partial(serving=resolve_prompt()).expand(users=plan()))


outfit_pregen()
