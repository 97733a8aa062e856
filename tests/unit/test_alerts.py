"""A failure alert names the DAG, task, run, try, first line of the cause, log and runbook."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from dresscode import alerts, config


def _context(exc: BaseException) -> dict:
    ti = SimpleNamespace(
        dag_id="wardrobe_ingest",
        task_id="report",
        run_id="manual__2026-11-23T10:00:00",
        try_number=3,
        map_index=-1,
        log_url="http://127.0.0.1:8080/dags/wardrobe_ingest/runs/x/tasks/report",
    )
    return {"ti": ti, "exception": exc}


def test_failure_alert_has_everything_on_call_needs(dresscode_home: Path) -> None:
    error = RuntimeError(
        "12 of 64 photos failed (18.8% > 5% allowed); top reasons: timeout x12\nTraceback noise"
    )
    alerts.FailureNotifier().notify(_context(error))

    [record] = alerts.read_alerts()
    text = record["text"]
    assert record["dag_id"] == "wardrobe_ingest" and record["task_id"] == "report"
    assert "run manual__2026-11-23T10:00:00, try 3" in text
    assert "cause: RuntimeError: 12 of 64 photos failed" in text
    assert "Traceback noise" not in text
    assert "log: http://127.0.0.1:8080/dags/wardrobe_ingest" in text
    assert "runbook: docs/runbooks/wardrobe_ingest.md" in text


def test_notifier_never_raises_when_the_alert_file_cannot_be_written(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = dresscode_home / "not-a-dir"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where a folder should be")
    monkeypatch.setenv("DRESSCODE_ALERTS_FILE", str(blocker / "alerts.jsonl"))
    config.get_settings.cache_clear()

    alerts.FailureNotifier().notify(_context(ValueError("boom")))

    assert "Could not write the alert file" in caplog.text
    assert "cause: ValueError: boom" in caplog.text  # still in the task log


def test_first_line_of_an_exception_without_message() -> None:
    assert alerts.first_line(KeyError()) == "KeyError"
    assert alerts.first_line(None).startswith("unknown cause")
