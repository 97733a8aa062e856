"""Alerts an on-call engineer can act on in one read.

Every DAG's tasks carry :class:`FailureNotifier` as their failure callback (through
``dag_defaults.DEFAULT_ARGS``). An alert names the DAG, task, run, try, the first line of the
cause, the log URL and the runbook ``docs/runbooks/<dag_id>.md``. Delivery never raises: the
local JSONL file always gets the record, and the text goes to the task log at ERROR.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.bases.notifier import BaseNotifier

from dresscode.config import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    """One alert record; also the JSONL line of the local alert file."""

    kind: str  # "task_failed" | "page"
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

    def text(self) -> str:
        """The human message: headline, where, why, what to read next."""
        where = f"{self.dag_id}.{self.task_id}" if self.task_id else self.dag_id
        lines = [f"[dresscode] {self.kind.replace('_', ' ')}: {where}"]
        if self.run_id:
            mapped = f", map index {self.map_index}" if self.map_index not in (None, -1) else ""
            lines.append(f"run {self.run_id}, try {self.try_number}{mapped}")
        lines.append(f"cause: {self.summary}")
        for key, value in self.details.items():
            lines.append(f"{key}: {value}")
        if self.log_url:
            lines.append(f"log: {self.log_url}")
        lines.append(f"runbook: {self.runbook}")
        return "\n".join(lines)


def runbook_for(dag_id: str, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
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


def alert_from_context(context: dict[str, Any], settings: Settings | None = None) -> Alert:
    """Build a task-failure alert from an Airflow task context."""
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "unknown_dag")
    log_url = None
    try:
        log_url = ti.log_url if ti is not None else None
    except Exception:  # the URL is a convenience; never let it block the alert
        log_url = None
    return Alert(
        kind="task_failed",
        dag_id=dag_id,
        task_id=getattr(ti, "task_id", None),
        run_id=getattr(ti, "run_id", None) or context.get("run_id"),
        try_number=getattr(ti, "try_number", None),
        map_index=getattr(ti, "map_index", None),
        summary=first_line(context.get("exception")),
        log_url=log_url,
        runbook=runbook_for(dag_id, settings),
    )


def deliver(alert: Alert, settings: Settings | None = None) -> None:
    """Record the alert in the local JSONL file and the task log. Never raises."""
    settings = settings or get_settings()
    _append_local(alert, settings)


def _append_local(alert: Alert, settings: Settings) -> None:
    try:
        settings.alerts_file.parent.mkdir(parents=True, exist_ok=True)
        with settings.alerts_file.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(alert) | {"text": alert.text()}, default=str) + "\n")
    except OSError as exc:
        log.error("Could not write the alert file %s: %s", settings.alerts_file, exc)
    log.error("%s", alert.text())


def read_alerts(settings: Settings | None = None) -> list[dict[str, Any]]:
    """Every alert in the local file, oldest first."""
    settings = settings or get_settings()
    if not settings.alerts_file.exists():
        return []
    return [
        json.loads(line) for line in settings.alerts_file.read_text().splitlines() if line.strip()
    ]


class FailureNotifier(BaseNotifier):
    """Task-level failure callback: builds the alert from the context and delivers it."""

    template_fields = ()

    def notify(self, context: dict[str, Any]) -> None:
        try:
            deliver(alert_from_context(context))
        except Exception:  # the callback must never raise into Airflow
            log.exception("Failed to build or deliver the failure alert")
