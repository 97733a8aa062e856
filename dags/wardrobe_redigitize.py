"""Wardrobe re-digitize — run existing photos through a newer digitizer after a promotion.

Manual only; trigger it after `prompt_release` (or `model_monitoring`) promotes a new
`wardrobe-digitizer`. Params: `prompt_version` (empty: the registry's `production`; else a
registered, unblocked git version), `users` (user ids; empty: everyone) and `limit` (photos
this run, oldest first). **resolve_prompt** resolves the version, **select** lists the accepted
photos whose current items come from another version, **redigitize** sends them in mapped
batches through the `dresscode_llm` connection and the `llm` pool (the same slots ingest
takes, so the two share the endpoint), and **report** gives the totals.

Safe to run again, or after an interruption: a photo done for the version is skipped, and a
photo whose model call finished before the interruption is answered from the digitize cache
(no second call). Readers keep each photo's newest digitization; each new item takes over the
photo's earlier item of the same category, so the user's corrections and deletions follow it.
A failed call leaves the photo's items as they were (retried by the next run); only when every
photo fails does the run fail.

On failure, see `docs/runbooks/wardrobe_redigitize.md`.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, get_current_context, task

from dresscode.core.config import get_settings
from dresscode.ingest import tasks as ingest
from dresscode.orchestration.dag_defaults import (
    DEFAULT_ARGS,
    LISTING_TIMEOUT,
    WARDROBE_CURRENT,
    ingest_batch_timeout,
)


@dag(
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["dresscode", "ingest", "llm"],
    doc_md=__doc__,
    params={
        "prompt_version": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description="The digitizer's git version; empty: the registry's production",
        ),
        "users": Param(
            [],
            type="array",
            items={"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._=@+-]{0,127}\Z"},
            maxItems=1000,
            description="Only these users' photos; empty: everyone's",
        ),
        "limit": Param(
            1000,
            type="integer",
            minimum=1,
            maximum=100_000,
            description="Photos this run at most (oldest first); run again for the rest",
        ),
    },
)
def wardrobe_redigitize():
    @task
    def resolve_prompt() -> ingest.Serving:
        return ingest.resolve_redigitize_prompt(get_current_context()["params"]["prompt_version"])

    @task(execution_timeout=LISTING_TIMEOUT)
    def select(serving: ingest.Serving) -> list[list[ingest.Pending]]:
        params = get_current_context()["params"]
        return ingest.redigitize_selection(
            serving, users=list(params["users"]), limit=int(params["limit"])
        )

    @task(
        pool="llm",
        pool_slots=get_settings().llm_max_concurrency,
        map_index_template="{{ batch_label }}",
        execution_timeout=ingest_batch_timeout(),
    )
    def redigitize(
        photos: list[ingest.Pending], serving: ingest.Serving
    ) -> ingest.RedigitizeResult:
        context = get_current_context()
        ti, run = context["ti"], context["dag_run"]
        label = f"batch {ti.map_index + 1} ({len(photos)} photos)"
        context["batch_label"] = label
        return ingest.redigitize_batch(
            photos,
            serving=serving,
            run_id=run.run_id,
            day=run.run_after.date().isoformat(),
            label=label,
        )

    @task(outlets=[WARDROBE_CURRENT])
    def report(results: list[ingest.RedigitizeResult]) -> ingest.RedigitizeTotals:
        totals = ingest.redigitize_report(list(results))
        get_current_context()["outlet_events"][WARDROBE_CURRENT].extra = dict(totals)
        return totals

    serving = resolve_prompt()
    report(redigitize.partial(serving=serving).expand(photos=select(serving)))


wardrobe_redigitize()
