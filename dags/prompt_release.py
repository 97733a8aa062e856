"""Prompt release — gate, shadow and promote new prompt blueprints from git.

Every 30 minutes (a cheap no-op when nothing changed), or by hand after a merge:
**sync** registers every blueprint in `include/prompts/` in the MLflow prompt registry
(idempotent: a content-hash tag, so an unchanged tree creates no version) and lists, per
prompt, the versions newer than `production` (and than any judged one) that were never
evaluated; **evaluate** (one task per prompt) gates them on the golden set newest first,
stopping at the first that passes (an MLflow run each with metrics, verdict and a per-example
table; an older version would never be chosen over a newer passing one, so it is not
evaluated); **choose** makes that newest passing version the `candidate` — if none passed, the
run fails with the report; **shadow** replays recent real inputs from the lake through candidate and production
and compares agreement, latency, tokens and JSON failures; then the candidate is promoted —
at once when the Param `auto_promote` is true (default: `DRESSCODE_RELEASE_AUTO_PROMOTE`), otherwise after a human approves the
**approve** task in the Airflow UI (Required actions). Waiting there pages the on-call; no
answer within `DRESSCODE_APPROVAL_TIMEOUT_HOURS` (12) counts as Reject, so a forgotten approval never holds later runs.
Promotion moves `previous` to the old `production` first, and is recorded as an MLflow run; it
is refused if production moved while the approval waited (a rollback wins), or if the
candidate fails the live shadow of `dresscode serve` (`DRESSCODE_SHADOW_LIVE_GATE`, read at promotion). **park**: a
rejected candidate is blocked, with who and why, and never promoted automatically again.

On failure, see `docs/runbooks/prompt_release.md`.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, get_current_context, task

from dresscode.core.config import get_settings
from dresscode.orchestration.dag_defaults import DEFAULT_ARGS
from dresscode.registry import tasks as registry


@dag(
    schedule="*/30 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # two releases at once would race on the aliases
    default_args=DEFAULT_ARGS,
    tags=["dresscode", "registry", "llm"],
    doc_md=__doc__,
    params={
        "auto_promote": Param(
            get_settings().release_auto_promote,
            type="boolean",
            description="Promote a passing candidate without approval",
        )
    },
)
def prompt_release():
    @task
    def sync() -> list[registry.Pending]:
        return registry.sync_all()

    @task.short_circuit
    def anything_new(pending: list[registry.Pending]) -> bool:
        return bool(pending)

    @task(pool="llm", map_index_template="{{ task.op_kwargs['pending']['name'] }}")
    def evaluate(pending: registry.Pending) -> list[registry.Evaluated]:
        return registry.evaluate_newest_passing(pending)

    @task
    def choose(evaluated: list[list[registry.Evaluated]]) -> list[registry.Evaluated]:
        return registry.choose_candidates(list(evaluated))

    @task
    def shadow(candidates: list[registry.Evaluated]) -> list[registry.Shadowed]:
        return [registry.shadow(c) for c in candidates]

    @task.branch
    def decide(shadowed: list[registry.Shadowed]) -> str:
        auto = get_current_context()["params"]["auto_promote"]
        return "promote" if auto else "approve"

    approve = registry.PromotionApproval(
        task_id="approve",
        on_approve="promote",
        on_reject="park",
        subject="Promote the prompt candidates to production?",
        body="{% for c in ti.xcom_pull(task_ids='shadow') %}"
        "- **{{ c.name }}@{{ c.version }}** passed its gate (MLflow run {{ c.mlflow_run_id }})"
        "{% if c.shadow %}; {{ c.shadow.summary }}{% endif %}\n{% endfor %}",
        response_timeout=registry.approval_timeout(),
        retries=0,
    )

    # After decide (auto_promote) or an approval; a skipped approval hands on None.
    @task(trigger_rule="none_failed_min_one_success")
    def promote(shadowed: list[registry.Shadowed], answer: registry.Answer | None) -> list[str]:
        run = get_current_context()["dag_run"]
        actor = getattr(run, "triggering_user_name", None) or "prompt_release"
        return registry.promote(shadowed, actor=actor, approval=answer)

    @task
    def park(shadowed: list[registry.Shadowed], answer: registry.Answer) -> list[str]:
        return registry.park(shadowed, answer, dag_id="prompt_release")

    pending = sync()
    evaluated = evaluate.expand(pending=pending)
    anything_new(pending) >> evaluated
    shadowed = shadow(choose(evaluated))
    decision = decide(shadowed)
    promoted = promote(shadowed, approve.output)
    decision >> [approve, promoted]
    park(shadowed, approve.output)  # the approval branches to promote or park


prompt_release()
