"""Model monitoring — notice when the model got worse, decide, and act (or wake a human).

Nightly at 03:00 UTC over the previous day (by hand: the 24 hours before the run, or the
window in the Params). **measure** computes the quality metrics per day and prompt version
(JSON errors, repairs, schema violations, items per photo, zero-item share, TTFT and latency,
tokens, tool-call success, hallucinations, quarantine and correction rates) into the
`quality_metrics` lake table and checks the window against the SLOs (`DRESSCODE_MONITORING_SLOS`);
**detect_drift** compares the window's photos, model outputs and latency with a reference (the
days since the last promotion, or a frozen baseline) with Evidently, and stores the HTML report
and its JSON summary under `reports/drift/` and in MLflow; **choose_branch** goes to `healthy`,
`quality_degraded` or `drifted`. For the last two, **reevaluate** runs production and the
candidate on the golden set, and **choose_action** either **promote**s a candidate that passes
its gate and beats production, or **page**s the on-call with the SLO table, the drift summary,
the report path and the runbook. **record** writes the decision and its reasons to the
`monitoring_decisions` table.

Safe to re-run: the metrics of a day and the decision of a run are replaced, not duplicated.
On failure, or when paged, see `docs/runbooks/model_monitoring.md`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable

from dresscode.orchestration.dag_defaults import DEFAULT_ARGS, deadline


def _run_id() -> str:
    return get_current_context()["run_id"]


@dag(
    schedule=CronDataIntervalTimetable("0 3 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # a promotion decided on stale numbers would race a newer run
    default_args=DEFAULT_ARGS,
    deadline=deadline(timedelta(hours=2)),
    tags=["dresscode", "monitoring", "llm"],
    doc_md=__doc__,
    params={
        "window_start": Param(
            None,
            type=["null", "string"],
            description="Start of the window to check (ISO 8601); default: the data interval",
        ),
        "window_end": Param(
            None,
            type=["null", "string"],
            description="End of the window to check (ISO 8601); default: the data interval",
        ),
    },
)
def model_monitoring():
    @task
    def choose_window() -> dict:
        from dresscode.monitoring import tasks as monitoring_jobs

        context = get_current_context()
        return monitoring_jobs.current_window(
            context.get("data_interval_start"),
            context.get("data_interval_end"),
            context["dag_run"].run_after,
            start=context["params"]["window_start"],
            end=context["params"]["window_end"],
        )

    @task
    def measure(window: dict) -> dict:
        from dresscode.monitoring import tasks as monitoring_jobs

        return monitoring_jobs.measure(window)

    @task
    def detect_drift(window: dict) -> dict:
        from dresscode.monitoring import tasks as monitoring_jobs

        return monitoring_jobs.detect_drift(window, _run_id())

    @task
    def decide(measured: dict, drifted: dict) -> dict:
        from dresscode.monitoring import tasks as monitoring_jobs

        return monitoring_jobs.decide(measured, drifted)

    @task.branch
    def choose_branch(decision: dict) -> str:
        return decision["branch"]

    @task
    def healthy() -> str:
        return "every SLO met, no drift"

    @task
    def quality_degraded(decision: dict) -> list[str]:
        return decision["reasons"]

    @task
    def drifted(decision: dict) -> list[str]:
        return decision["reasons"]

    # Runs after whichever of quality_degraded / drifted was chosen; skipped after healthy
    # (so its only upstreams are those two: the metrics come through XCom inside).
    @task(pool="llm", trigger_rule="none_failed_min_one_success")
    def reevaluate() -> list[dict]:
        from dresscode.monitoring import tasks as monitoring_jobs

        measured = get_current_context()["ti"].xcom_pull(task_ids="measure")
        return monitoring_jobs.reevaluate(monitoring_jobs.prompts_to_reevaluate(measured))

    @task.branch
    def choose_action(evaluated: list[dict]) -> str:
        from dresscode.monitoring import tasks as monitoring_jobs

        return "promote" if monitoring_jobs.better_candidates(evaluated) else "page"

    @task
    def promote(evaluated: list[dict], decision: dict) -> list[str]:
        from dresscode.monitoring import tasks as monitoring_jobs

        return monitoring_jobs.promote(monitoring_jobs.better_candidates(evaluated), decision)

    @task
    def page(
        decision: dict, measured: dict, drifted: dict, evaluated: list[dict], window: dict
    ) -> dict:
        from dresscode.monitoring import tasks as monitoring_jobs

        return monitoring_jobs.page(
            decision, measured, drifted, evaluated, window=window, run_id=_run_id()
        )

    @task(trigger_rule="none_failed_min_one_success")
    def record(window: dict, decision: dict, drifted: dict) -> str:
        from dresscode.monitoring import tasks as monitoring_jobs

        ti = get_current_context()["ti"]
        promoted = ti.xcom_pull(task_ids="promote")
        paged = ti.xcom_pull(task_ids="page")
        action, outcome = (
            ("promoted", promoted) if promoted else ("paged", paged) if paged else ("none", None)
        )
        return monitoring_jobs.record(
            run_id=_run_id(),
            window=window,
            decision=decision,
            drifted=drifted,
            action=action,
            outcome=outcome,
        )

    window = choose_window()
    measured = measure(window)
    drift = detect_drift(window)
    decision = decide(measured, drift)
    branches = [healthy(), quality_degraded(decision), drifted(decision)]
    choose_branch(decision) >> branches
    evaluated = reevaluate()
    branches[1:] >> evaluated
    action = choose_action(evaluated)
    promoted = promote(evaluated, decision)
    paged = page(decision, measured, drift, evaluated, window)
    action >> [promoted, paged]
    recorded = record(window, decision, drift)
    [branches[0], promoted, paged] >> recorded


model_monitoring()
