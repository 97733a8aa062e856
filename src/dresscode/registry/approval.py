"""The approval step of a promotion: a person says yes or no in time, or the answer is no.

``prompt_release`` and ``model_monitoring`` promote through the same step,
:class:`PromotionApproval`: an Airflow ``ApprovalOperator`` (Required actions in the UI) that

* pages the on-call when it starts waiting (:class:`ApprovalWaiting`), with what is proposed,
  where to answer and when the wait ends;
* follows ``on_approve`` (the promote task) on *Approve*, and ``on_reject`` (the park task) on
  *Reject* — which is also the answer when nobody responds within ``response_timeout``
  (:data:`APPROVAL_TIMEOUT`): the scheduler applies the default, so a forgotten approval ends
  the run instead of holding every later run of the DAG (``max_active_runs=1``);
* hands on an :class:`Answer` (who, when, whether it timed out), so a rejection is recorded on
  the parked version with its author.

Airflow 3.3 parks the waiting task in ``awaiting_input`` (no triggerer); the scheduler's sweep
applies the default at the deadline.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict

from airflow.providers.standard.operators.branch import BranchMixIn
from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk.bases.notifier import BaseNotifier

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

APPROVAL_TIMEOUT = timedelta(hours=12)
"""How long an approval waits before it counts as *Reject* by default (a working day, and well
inside the nightly monitoring cadence); ``DRESSCODE_APPROVAL_TIMEOUT_HOURS`` sets it."""


def approval_timeout() -> timedelta:
    """The approval's ``response_timeout``: ``DRESSCODE_APPROVAL_TIMEOUT_HOURS`` (default 12)."""
    from dresscode.core.config import get_settings

    return timedelta(hours=get_settings().approval_timeout_hours)


class Answer(TypedDict):
    """The answer to an approval, as handed to the promote or park task (XCom)."""

    approved: bool
    by: str  # the person who answered, or "nobody (...)" when the wait timed out
    at: str  # ISO 8601
    timed_out: bool


def answer_from(event: dict[str, Any], approved: bool, timeout: timedelta | None) -> Answer:
    """The :class:`Answer` of a resumed approval (a person's response or the timeout default)."""
    user = event.get("responded_by_user") or {}
    timed_out = bool(event.get("timedout")) or not user
    at = event.get("responded_at")
    return Answer(
        approved=approved,
        by=(
            f"nobody (no answer within {timeout})"
            if timed_out
            else str(user.get("name") or user.get("id"))
        ),
        at=at.isoformat() if isinstance(at, datetime) else str(at or ""),
        timed_out=timed_out,
    )


class PromotionApproval(ApprovalOperator, BranchMixIn):
    """Approve -> ``on_approve``; Reject or no answer in time -> ``on_reject``. Returns an
    :class:`Answer`. ``defaults`` is fixed to *Reject*: silence never promotes. The wait is
    ``response_timeout``, else :func:`approval_timeout` (the setting)."""

    def __init__(
        self,
        *,
        on_approve: str,
        on_reject: str,
        response_timeout: timedelta | None = None,
        notifiers: list[BaseNotifier] | None = None,
        **kwargs: Any,
    ) -> None:
        if "defaults" in kwargs:
            raise ValueError("PromotionApproval always defaults to Reject.")
        super().__init__(
            defaults=ApprovalOperator.REJECT,
            response_timeout=response_timeout or approval_timeout(),
            notifiers=notifiers if notifiers is not None else [ApprovalWaiting()],
            **kwargs,
        )
        self.on_approve = on_approve
        self.on_reject = on_reject

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Answer:
        payload = HITLOperator.execute_complete(self, context=context, event=event)
        approved = payload["chosen_options"] == [self.APPROVE]
        answer = answer_from(event, approved, self.response_timeout)
        log.info(
            "%s by %s at %s",
            "approved"
            if approved
            else "REJECTED" + (" (timed out)" if answer["timed_out"] else ""),
            answer["by"],
            answer["at"],
        )
        # Pushed now: skipping the other branch ends the task before Airflow pushes the return
        # value, and promote / park need the answer.
        context["ti"].xcom_push(key="return_value", value=answer)
        self.do_branch(context, self.on_approve if approved else self.on_reject)
        return answer


class ApprovalWaiting(BaseNotifier):
    """Page the on-call: an approval is waiting, what it is about, where and until when."""

    template_fields = ()

    def notify(self, context: Context) -> None:
        from dresscode.orchestration import alerts

        try:
            task = context["task"]
            ti = context["ti"]
            until = getattr(task, "hitl_summary_extra", {}).get("timeout_datetime")
            details = {
                "proposal": str(getattr(task, "body", "") or "(see the task)"),
                "answer in": _required_actions_link(context)
                or f"Airflow, Required actions of {ti.dag_id} run {ti.run_id}",
                "if nobody answers": f"at {until or 'the timeout'} the answer is Reject and the "
                "candidate is parked (it is never promoted automatically)",
            }
            alerts.page(
                ti.dag_id,
                f"approval waiting: {getattr(task, 'subject', 'promote the candidate?')}",
                details,
                run_id=ti.run_id,
                task_id=ti.task_id,
            )
        except Exception:  # a notifier must never fail the approval itself
            log.exception("could not notify the on-call of the waiting approval")


def _required_actions_link(context: Context) -> str | None:
    try:
        return HITLOperator.generate_link_to_ui_from_context(context=context)
    except Exception:  # no api base_url configured (local runs): the page names the run
        return None


def refusal(name: str, version: int, compared_with: int | None) -> str | None:
    """Why ``name`` v``version`` must not be promoted now, in one sentence (None: it may).

    Blocked: a person parked it. Stale: production is no longer ``compared_with``, the version
    the evidence was about — a rollback (or another promotion) happened while the approval
    waited, and that later human decision wins.
    """
    from dresscode.registry import prompt_registry as registry

    infos = registry.versions(name)
    block = next((i.block for i in infos if i.git_version == version), None)
    if block is not None:
        return f"{name} v{version} is not promoted: it is blocked ({block.describe()})."
    production = next((i.git_version for i in infos if "production" in i.aliases), None)
    if compared_with is not None and production != compared_with:
        return (
            f"{name} v{version} is not promoted: production moved from v{compared_with} to "
            f"v{production} while the promotion waited, so the evidence no longer holds; "
            "release it again or promote it by hand."
        )
    return None
