"""Model monitoring — notice when the model got worse, decide, and act (or wake a human).

Nightly at 03:00 UTC over the previous day (by hand: the 24 hours before the run, or the
window in the Params). **measure** computes the quality metrics per day and prompt version
(JSON errors, repairs, schema violations, items per photo, zero-item share, TTFT and latency,
tokens, tool-call success, hallucinations, quarantine and correction rates) into the
`quality_metrics` lake table and checks the window against the SLOs (`DRESSCODE_MONITORING_SLOS`);
**judge_production** has the LLM judges (owned garments, weather fit, colour harmony, safe
language) score a fixed sample of the window's suggestions (`DRESSCODE_MONITORING_JUDGE_SAMPLE`)
and records it in MLflow — it informs, it never decides;
**detect_drift** compares the window's photos, model outputs and latency with a reference (the
days since the last promotion, or a frozen baseline) with Evidently, and stores the HTML report
and its JSON summary under `reports/drift/` and in MLflow; **choose_branch** goes to `healthy`,
`quality_degraded` or `drifted`, as **decide** chose. For the last two, **reevaluate** runs
production and the candidate on the golden set, and **choose_action** either **promote**s a
candidate that passes its gate and beats production — through **approve**, the same approval
step as `prompt_release` (it pages the on-call; no answer within
`DRESSCODE_APPROVAL_TIMEOUT_HOURS`, 12 by default, is Reject), unless the Param `auto_promote`
is true (default: `DRESSCODE_MONITORING_AUTO_PROMOTE`, false) — or **page**s the on-call with
the SLO table, the drift summary, the report path, the runbook and the versions that are blocked. A rejected
candidate is **park**ed: blocked with who and why. A version parked by a rollback or a
rejection is never re-evaluated or promoted here. **record** writes the decision, its reasons
and what was done to the `monitoring_decisions` table.

Safe to re-run: the metrics of a day and the decision of a run are replaced, not duplicated.
On failure, or when paged, see `docs/runbooks/model_monitoring.md`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from airflow.sdk import CronDataIntervalTimetable, Param, dag, get_current_context, task

from dresscode.core.config import get_settings
from dresscode.monitoring import tasks as monitoring
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
        "auto_promote": Param(
            get_settings().monitoring_auto_promote,
            type="boolean",
            description="Promote a better candidate without a person's approval "
            "(default: DRESSCODE_MONITORING_AUTO_PROMOTE)",
        ),
    },
)
def model_monitoring():
    # Every value is one XCom (a JSON dict), not one per key: multiple_outputs=False.
    @task(multiple_outputs=False)
    def choose_window() -> monitoring.Window:
        context = get_current_context()
        return monitoring.current_window(
            context.get("data_interval_start"),
            context.get("data_interval_end"),
            context["dag_run"].run_after,
            start=context["params"]["window_start"],
            end=context["params"]["window_end"],
        )

    @task(multiple_outputs=False)
    def measure(window: monitoring.Window) -> monitoring.Measured:
        return monitoring.measure(window)

    @task(multiple_outputs=False)
    def detect_drift(window: monitoring.Window) -> monitoring.DriftVerdict:
        return monitoring.detect_drift(window, _run_id())

    # The judges read what users were shown; they inform (MLflow, the log), never decide.
    @task(pool="llm", multiple_outputs=False)
    def judge_production(window: monitoring.Window) -> monitoring.JudgedSample:
        return monitoring.judge_production(window, _run_id())

    @task(multiple_outputs=False)
    def decide(
        measured: monitoring.Measured, drift: monitoring.DriftVerdict
    ) -> monitoring.Decision:
        return monitoring.decide(measured, drift)

    @task.branch
    def choose_branch(decision: monitoring.Decision) -> monitoring.Branch:
        return decision["branch"]

    @task
    def healthy() -> str:
        return "every SLO met, no drift"

    # The two branches that act hand the decision, and the window's end, on to reevaluate.
    @task(multiple_outputs=False)
    def quality_degraded(
        decision: monitoring.Decision, window: monitoring.Window
    ) -> monitoring.Decision:
        return {**decision, "window_end": window["end"]}

    @task(multiple_outputs=False)
    def drifted(decision: monitoring.Decision, window: monitoring.Window) -> monitoring.Decision:
        return {**decision, "window_end": window["end"]}

    # Its only upstreams are the two branches that act: it runs after whichever ran (the
    # skipped one hands on None) and is skipped after healthy, where both are skipped.
    @task(pool="llm", trigger_rule="none_failed_min_one_success")
    def reevaluate(
        after_degraded: monitoring.Decision | None, after_drifted: monitoring.Decision | None
    ) -> list[monitoring.Evaluation]:
        decision = monitoring.taken(after_degraded, after_drifted)
        return monitoring.reevaluate(decision, since=decision.get("window_end"))

    @task.branch
    def choose_action(
        evaluated: list[monitoring.Evaluation],
    ) -> Literal["promote", "approve", "page"]:
        auto = get_current_context()["params"]["auto_promote"]
        return monitoring.choose_action(evaluated, auto_promote=auto)

    @task
    def propose(evaluated: list[monitoring.Evaluation], decision: monitoring.Decision) -> str:
        return monitoring.proposal(evaluated, decision)

    # After choose_action (auto_promote) or an approval; a skipped approval hands on None.
    # Its upstreams are all on the re-evaluation path: after healthy they are all skipped.
    @task(trigger_rule="none_failed_min_one_success")
    def promote(
        evaluated: list[monitoring.Evaluation], answer: monitoring.Answer | None
    ) -> list[str]:
        return monitoring.promote(evaluated, answer)

    @task
    def park(evaluated: list[monitoring.Evaluation], answer: monitoring.Answer) -> list[str]:
        return monitoring.park(evaluated, answer)

    @task(multiple_outputs=False)
    def page(
        decision: monitoring.Decision,
        evaluated: list[monitoring.Evaluation],
        window: monitoring.Window,
    ) -> monitoring.Paged:
        return monitoring.page(decision, evaluated, window=window, run_id=_run_id())

    # Always runs: after healthy, or after promote, page or park (the skipped ones are None).
    @task(trigger_rule="none_failed_min_one_success")
    def record(
        window: monitoring.Window,
        decision: monitoring.Decision,
        promoted: list[str] | None,
        paged: monitoring.Paged | None,
        parked: list[str] | None,
    ) -> str:
        return monitoring.record(
            run_id=_run_id(),
            window=window,
            decision=decision,
            outcome=monitoring.outcome_of(promoted, paged, parked),
        )

    window = choose_window()
    decision = decide(measure(window), detect_drift(window))
    judge_production(window)
    branches = [healthy(), quality_degraded(decision, window), drifted(decision, window)]
    choose_branch(decision) >> branches
    evaluated = reevaluate(branches[1], branches[2])
    approve = monitoring.PromotionApproval(
        task_id="approve",
        on_approve="promote",
        on_reject="park",
        subject="Promote the candidate that beats production on the golden set?",
        body=propose(evaluated, decision),
        response_timeout=monitoring.approval_timeout(),
        retries=0,
    )
    promoted = promote(evaluated, approve.output)
    paged = page(decision, evaluated, window)
    parked = park(evaluated, approve.output)  # the approval branches to promote or park
    choose_action(evaluated) >> [approve, promoted, paged]
    branches[0] >> record(window, decision, promoted, paged, parked)


model_monitoring()
