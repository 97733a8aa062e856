"""Prompt rollback — put a prompt's `production` alias back on a known-good version, with an audit record.

Manual only. Trigger with Params: `prompt` (e.g. `outfit-stylist`), `target` (`previous`, or a
git version such as `2`) and `reason` (required: it is recorded). **rollback** checks that the
target exists and passed its golden-set gate once, moves `production` to it (the replaced
version becomes `previous`), and records who, when, why and from-to as an MLflow run in the
`dresscode-releases` experiment and in this task's log. Readers resolve `production` at the
start of every run, so the very next `wardrobe_ingest` / `outfit_pregen` run uses it.

The rollback sticks: the replaced version is **parked** — `candidate` leaves it and it is
tagged blocked with who, when and why — so neither `model_monitoring` nor `prompt_release`
ever promotes it again on its own. Refused, in one sentence: a target that is production
already, a blocked target, a target that never passed its gate. A promotion waiting for
approval meanwhile is refused when someone answers it (production moved under it).

The same from a shell: `dresscode prompts rollback PROMPT --reason "…"`.
On failure, see `docs/runbooks/prompt_rollback.md`.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, get_current_context, task

from dresscode.core import prompts
from dresscode.orchestration.dag_defaults import DEFAULT_ARGS
from dresscode.registry import tasks as registry

PROMPTS = list(prompts.PROMPT_NAMES)


@dag(
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        **DEFAULT_ARGS,
        "retries": 0,
    },  # a human is watching; a retry would re-move the alias
    tags=["dresscode", "registry", "on-call"],
    doc_md=__doc__,
    params={
        "prompt": Param(prompts.DIGITIZER.name, type="string", enum=PROMPTS),
        "target": Param(
            "previous",
            type="string",
            pattern=r"^(previous|v?[0-9]+)\Z",
            description="`previous`, or the git version to serve (e.g. 2)",
        ),
        "reason": Param(
            "", type="string", minLength=5, description="Why (recorded with who and when)"
        ),
    },
)
def prompt_rollback():
    @task
    def rollback() -> registry.RolledBack:
        context = get_current_context()
        params, run = context["params"], context["dag_run"]
        actor = getattr(run, "triggering_user_name", None) or "airflow"
        return registry.rollback(
            params["prompt"], params["target"], actor=actor, reason=params["reason"]
        )

    rollback()


prompt_rollback()
