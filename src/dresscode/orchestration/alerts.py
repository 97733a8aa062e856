"""Alerts an on-call engineer can act on in one read, delivered even when something is broken.

Every DAG's tasks carry :class:`FailureNotifier` as their failure callback (through
``dag_defaults.DEFAULT_ARGS``); the nightly DAGs also carry a deadline whose callback is
:func:`deadline_missed`; pipelines that decide to wake someone call :func:`page`. All three
build an :class:`Alert` — DAG, task, run, try, the first line of the cause, the log URL and the
runbook ``docs/runbooks/<dag_id>.md`` — and hand it to :func:`deliver`.

Delivery never raises. The alert text goes to the task log at ERROR, the record goes to the
local JSONL file (``DRESSCODE_ALERTS_FILE``, always), and to every backend in
``DRESSCODE_ALERT_BACKENDS`` (``slack``, ``smtp``, ``sns``) through the providers' notifiers.
A backend that is down or not configured is logged at ERROR and recorded in the record's
``delivery`` map; the other backends and the file still get the alert. See docs/alerts.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.notifier import BaseNotifier

from dresscode.core.config import SETTINGS, Settings, SettingsError, get_settings, load_settings

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

SENT = "sent"
INTERRUPTED = "interrupted (the sender stopped before it finished)"
# Seconds one backend may take to answer (Slack; SMTP and SNS take theirs from the connection).
SEND_TIMEOUT_S = 10
# A pending record older than this belongs to a sender that died mid-send (every backend gives
# up long before): the next delivery moves it into the alert file, marked "interrupted".
STALE_PENDING_S = 3600


@dataclass(frozen=True)
class Alert:
    """One alert record; also the JSONL line of the local alert file."""

    kind: str  # "task_failed" | "page" | "deadline_missed" | "worker_lost"
    dag_id: str
    summary: str  # first line of the cause, or the page's headline
    runbook: str
    task_id: str | None = None
    run_id: str | None = None
    try_number: int | None = None
    map_index: int | None = None
    log_url: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    ts: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])

    def headline(self) -> str:
        where = f"{self.dag_id}.{self.task_id}" if self.task_id else self.dag_id
        return f"[dresscode] {self.kind.replace('_', ' ')}: {where}"

    def text(self, *, fence: bool = False) -> str:
        """The human message: headline, where, why, what to read next.

        A multi-line detail value (a text table) starts on its own line, indented — or, with
        ``fence`` (Slack), inside a code block so its columns stay aligned.
        """
        lines = [self.headline()]
        if self.run_id:
            where = [f"run {self.run_id}"]
            if self.try_number is not None:
                where.append(f"try {self.try_number}")
            if self.map_index not in (None, -1):
                where.append(f"map index {self.map_index}")
            lines.append(", ".join(where))
        lines.append(f"{'summary' if self.kind == 'page' else 'cause'}: {self.summary}")
        for key, value in self.details.items():
            lines.extend(_detail_lines(key, value, fence=fence))
        if self.log_url:
            lines.append(f"log: {self.log_url}")
        lines.append(f"runbook: {self.runbook}")
        return "\n".join(lines)


def _detail_lines(key: str, value: Any, *, fence: bool) -> list[str]:
    text = str(value).rstrip()
    if "\n" not in text:
        return [f"{key}: {text.strip()}"]
    block = text.splitlines()
    if fence:
        return [f"{key}:", "```", *block, "```"]
    return [f"{key}:", *(f"    {line}" for line in block)]


def runbook_for(dag_id: str, settings: Settings | None = None) -> str:
    settings = settings or alert_settings()
    return f"{settings.runbook_base_url.rstrip('/')}/{dag_id}.md"


def first_line(exc: BaseException | str | None) -> str:
    """The first non-empty line of an exception, prefixed with its type."""
    if exc is None:
        return "unknown cause (no exception in the task context)"
    text = str(exc).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if isinstance(exc, BaseException):
        return f"{type(exc).__name__}: {line}" if line else type(exc).__name__
    return line or "unknown cause"


def alert_settings() -> Settings:
    """The settings, even when one of them is invalid: a bad knob must not silence the alert.

    An invalid value is dropped (its default is used) and named in the log.
    """
    try:
        return get_settings()
    except SettingsError as exc:
        env = dict(os.environ)
        dropped = []
        for knob in SETTINGS.values():
            raw = env.get(knob.env)
            if not raw:
                continue
            try:
                knob.parse(raw)
            except (ValueError, TypeError):
                del env[knob.env]
                dropped.append(knob.env)
        log.error("Alerting with the defaults of the invalid %s (%s)", ", ".join(dropped), exc)
        try:
            return load_settings(env)
        except SettingsError:
            return load_settings({})


# ----------------------------------------------------------------------------- building alerts


def alert_from_context(context: Mapping[str, Any], settings: Settings | None = None) -> Alert:
    """Build a task-failure alert from an Airflow task context."""
    ti = context.get("ti") or context.get("task_instance")
    dag_id = str(
        getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", None) or "unknown_dag"
    )
    return Alert(
        kind="task_failed",
        dag_id=dag_id,
        task_id=getattr(ti, "task_id", None),
        run_id=getattr(ti, "run_id", None) or context.get("run_id"),
        try_number=getattr(ti, "try_number", None),
        map_index=getattr(ti, "map_index", None),
        summary=first_line(context.get("exception")),
        log_url=_log_url(ti),
        runbook=runbook_for(dag_id, settings),
    )


def _log_url(ti: Any) -> str | None:
    try:
        return ti.log_url if ti is not None else None
    except Exception:  # the URL is a convenience; never let it block the alert
        return None


def page(
    dag_id: str,
    summary: str,
    details: Mapping[str, str],
    *,
    run_id: str | None = None,
    task_id: str | None = None,
) -> Alert:
    """Wake someone up: a ``page`` alert, delivered like a failure alert. Never raises.

    ``details`` are shown in order, one per line; a multi-line value (a metric table) is shown
    as a block. Called from inside a task, the run, task, try and log URL default to that
    task's.
    """
    settings = alert_settings()
    ti = _current_ti()
    same_task = ti is not None and task_id in (None, getattr(ti, "task_id", None))
    alert = Alert(
        kind="page",
        dag_id=dag_id,
        summary=summary,
        runbook=runbook_for(dag_id, settings),
        task_id=task_id or getattr(ti, "task_id", None),
        run_id=run_id or getattr(ti, "run_id", None),
        try_number=getattr(ti, "try_number", None) if same_task else None,
        map_index=getattr(ti, "map_index", None) if same_task else None,
        log_url=_log_url(ti) if same_task else None,
        details={str(k): str(v) for k, v in details.items()},
    )
    deliver(alert, settings)
    return alert


def _current_ti() -> Any:
    try:
        from airflow.sdk import get_current_context

        return get_current_context().get("ti")
    except Exception:  # not inside a task: no defaults to take
        return None


async def deadline_missed(
    *, limit_s: int, reference: str = "dagrun_queued_at", context: Mapping[str, Any] | None = None
) -> None:
    """Deadline callback (an ``AsyncCallback``, run by the triggerer): the run is late.

    ``context`` is what Airflow passes to deadline callbacks: ``dag_run`` (the run as the REST
    API shows it) and ``deadline`` (``id``, ``deadline_time``). Never raises.
    """
    try:
        alert = deadline_alert(limit_s=limit_s, reference=reference, context=context or {})
        await asyncio.to_thread(deliver, alert)
    except Exception:  # the callback must never raise into Airflow
        log.exception("Failed to build or deliver the deadline alert")


def deadline_alert(*, limit_s: int, reference: str, context: Mapping[str, Any]) -> Alert:
    """The ``deadline_missed`` alert for a deadline callback's context."""
    settings = alert_settings()
    run = context.get("dag_run") or {}
    deadline = context.get("deadline") or {}
    dag_id = run.get("dag_id") or "unknown_dag"
    run_id = run.get("dag_run_id") or run.get("run_id")
    since = "it was queued" if reference == "dagrun_queued_at" else "its logical date"
    summary = (
        f"run not finished {timedelta(seconds=limit_s)} after {since} "
        f"(deadline {deadline.get('deadline_time', 'unknown')}, state {run.get('state', 'unknown')})"
    )
    return Alert(
        kind="deadline_missed",
        dag_id=dag_id,
        run_id=run_id,
        summary=summary,
        log_url=_run_url(dag_id, run_id),
        runbook=runbook_for(dag_id, settings),
    )


def _run_url(dag_id: str, run_id: str | None) -> str | None:
    if not run_id:
        return None
    from urllib.parse import quote

    from airflow.sdk.configuration import conf

    base_url = conf.get("api", "base_url", fallback="http://localhost:8080/")
    return f"{base_url.rstrip('/')}/dags/{dag_id}/runs/{quote(run_id)}"


# ----------------------------------------------------------------------------- delivery


def deliver(alert: Alert, settings: Settings | None = None) -> dict[str, str]:
    """Log the alert, keep it in the local file, send it to every configured backend.

    Returns the ``delivery`` map stored with the record: backend -> ``"sent"`` or
    ``"failed: <reason>"``. Never raises.

    The file gets one record per alert, written after the backends were tried so that it says
    where the alert went. So that a sender killed mid-send cannot lose it, the record is first
    written to ``<alerts file>.pending/<id>.json`` and removed once the line is in the file;
    :func:`read_alerts` lists pending records too, and a later delivery moves stale ones into
    the file, marked ``interrupted``.
    """
    try:
        settings = settings or alert_settings()
    except Exception:
        log.exception("No settings to deliver alert %s with:\n%s", alert.id, alert.text())
        return {}
    log.error("%s", alert.text())  # the task log has it whatever happens next
    try:
        _adopt_stale_pending(settings)
    except Exception:
        log.exception("Could not move stale pending alerts into %s", settings.alerts_file)
    backends = sorted(settings.alert_backends)
    pending = _write_pending(alert, backends, settings) if backends else None
    delivery = dict.fromkeys(backends, INTERRUPTED)
    try:
        for name in backends:
            delivery[name] = _send(name, alert, settings)
    finally:
        if _append_record(_record(alert, delivery), settings) and pending is not None:
            pending.unlink(missing_ok=True)
    return delivery


def _send(name: str, alert: Alert, settings: Settings) -> str:
    try:
        BACKENDS[name](alert, settings)
    except Exception as exc:  # a backend that is down must not stop the others
        reason = first_line(exc)
        log.error("Alert %s was NOT sent to %s: %s", alert.id, name, reason)
        return f"failed: {reason}"
    log.info("Alert %s sent to %s", alert.id, name)
    return SENT


class NotConfigured(Exception):
    """A selected backend lacks its connection or setting; the message says which."""


def _require_connection(conn_id: str, backend: str) -> None:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise NotConfigured(
            f"backend {backend} is selected but connection {conn_id!r} is not defined "
            f"(set AIRFLOW_CONN_{conn_id.upper()})"
        ) from None


def _send_slack(alert: Alert, settings: Settings) -> None:
    _require_connection(settings.alert_slack_conn_id, "slack")
    from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

    # notify() directly: the text is final, and Jinja must not interpret "{{" in a cause.
    SlackWebhookNotifier(
        slack_webhook_conn_id=settings.alert_slack_conn_id,
        text=slack_text(alert),
        timeout=SEND_TIMEOUT_S,
    ).notify({})


def slack_text(alert: Alert) -> str:
    """Slack mrkdwn: tables in code blocks, and &, <, > escaped as Slack requires."""
    text = alert.text(fence=True)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _send_smtp(alert: Alert, settings: Settings) -> None:
    if not settings.alert_email_to:
        raise NotConfigured("backend smtp is selected but DRESSCODE_ALERT_EMAIL_TO is not set")
    _require_connection(settings.alert_smtp_conn_id, "smtp")
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    recipients = [addr.strip() for addr in settings.alert_email_to.split(",") if addr.strip()]
    SmtpNotifier(
        to=recipients,
        subject=alert.headline(),
        html_content=f"<pre>{html.escape(alert.text())}</pre>",
        smtp_conn_id=settings.alert_smtp_conn_id,
    ).notify({})


def _send_sns(alert: Alert, settings: Settings) -> None:
    if not settings.alert_sns_topic_arn:
        raise NotConfigured("backend sns is selected but DRESSCODE_ALERT_SNS_TOPIC_ARN is not set")
    from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

    SnsNotifier(
        aws_conn_id=settings.aws_conn_id,
        target_arn=settings.alert_sns_topic_arn,
        message=alert.text(),
        subject=sns_subject(alert),
        # For subscription filter policies (e.g. only pages to the phone).
        message_attributes={"kind": alert.kind, "dag_id": alert.dag_id},
    ).notify({})


def sns_subject(alert: Alert) -> str:
    """SNS subjects are ASCII, one line, at most 100 characters."""
    subject = alert.headline().encode("ascii", "replace").decode()
    return subject if len(subject) <= 100 else subject[:99] + "~"


BACKENDS: dict[str, Callable[[Alert, Settings], None]] = {
    "slack": _send_slack,
    "smtp": _send_smtp,
    "sns": _send_sns,
}


# ----------------------------------------------------------------------------- the local file


def _record(alert: Alert, delivery: Mapping[str, str]) -> dict[str, Any]:
    return asdict(alert) | {"text": alert.text(), "delivery": dict(delivery)}


def _pending_dir(settings: Settings) -> Path:
    return settings.alerts_file.with_name(settings.alerts_file.name + ".pending")


def _write_pending(alert: Alert, backends: list[str], settings: Settings) -> Path | None:
    path = _pending_dir(settings) / f"{alert.id}.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(_record(alert, dict.fromkeys(backends, "pending")), default=str))
        tmp.replace(path)
        return path
    except OSError as exc:
        log.error("Could not write the pending alert %s: %s", path, exc)
        return None


def _append_record(record: Mapping[str, Any], settings: Settings) -> bool:
    try:
        settings.alerts_file.parent.mkdir(parents=True, exist_ok=True)
        with settings.alerts_file.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=str) + "\n")
        return True
    except OSError as exc:
        log.error("Could not write the alert file %s: %s", settings.alerts_file, exc)
        return False


def _adopt_stale_pending(settings: Settings) -> None:
    """Move records whose sender died mid-send into the file (each claimed by one process)."""
    folder = _pending_dir(settings)
    if not folder.is_dir():
        return
    for path in folder.glob("*.json"):
        try:
            if time.time() - path.stat().st_mtime < STALE_PENDING_S:
                continue
            claimed = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}.claimed")
            path.rename(claimed)  # atomic: only one process wins
        except OSError:
            continue
        try:
            record = json.loads(claimed.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            log.error("Unreadable pending alert %s left in place: %s", claimed, exc)
            continue
        record["delivery"] = {
            name: INTERRUPTED if outcome == "pending" else outcome
            for name, outcome in record.get("delivery", {}).items()
        }
        if _append_record(record, settings):
            claimed.unlink(missing_ok=True)
        log.warning("Alert %s was left pending by an interrupted sender", record.get("id"))


def read_alerts(settings: Settings | None = None) -> list[dict[str, Any]]:
    """Every alert in the local file, oldest first, then any still pending (being sent)."""
    settings = settings or alert_settings()
    records = []
    if settings.alerts_file.exists():
        records = [
            json.loads(line)
            for line in settings.alerts_file.read_text().splitlines()
            if line.strip()
        ]
    seen = {r.get("id") for r in records}
    folder = _pending_dir(settings)
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if record.get("id") not in seen:
                records.append(record)
    return records


class FailureNotifier(BaseNotifier):
    """Task-level failure callback: builds the alert from the context and delivers it."""

    template_fields = ()

    def notify(self, context: Context) -> None:
        try:
            settings = alert_settings()
            deliver(alert_from_context(context, settings), settings)
        except Exception:  # the callback must never raise into Airflow
            log.exception("Failed to build or deliver the failure alert")


def worker_lost_alert(context: Mapping[str, Any], settings: Settings | None = None) -> Alert:
    """The task stopped heartbeating and Airflow retries it: the alert names the worker."""
    ti = context.get("ti") or context.get("task_instance")
    worker = getattr(ti, "hostname", None) or "an unknown worker"
    return replace(
        alert_from_context(context, settings),
        kind="worker_lost",
        summary=(
            f"worker {worker} stopped heartbeating while running this task (killed, out of "
            "memory, or its machine was lost); Airflow retries it on a worker that answers"
        ),
        details={"worker": worker},
    )


class WorkerLostNotifier(BaseNotifier):
    """Task-level retry callback. A retry the task asked for (it raised) is routine: its log
    says why. A retry because the task stopped heartbeating is news for the on-call: its worker
    is gone. Airflow's scheduler runs this callback in the dag-processor for such a task, with
    no exception in the context."""

    template_fields = ()

    def notify(self, context: Context) -> None:
        if context.get("exception") is not None:
            return
        try:
            settings = alert_settings()
            alert = worker_lost_alert(context, settings)
            if _first_report(alert, settings):
                deliver(alert, settings)
        except Exception:  # the callback must never raise into Airflow
            log.exception("Failed to build or deliver the worker-lost alert")


def _first_report(alert: Alert, settings: Settings) -> bool:
    """Whether no alert was sent yet for this task try's lost worker. The scheduler may hand
    the same heartbeat timeout to the callback twice (seen: two calls 2 s apart on the
    CeleryExecutor); a marker file created exclusively lets one of them through."""
    key = f"{alert.dag_id}.{alert.task_id}.{alert.run_id}.{alert.map_index}.{alert.try_number}"
    marker = settings.alerts_file.with_name(settings.alerts_file.name + ".lost")
    marker.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    try:
        (marker / digest).open("x").close()
    except FileExistsError:
        return False
    return True
