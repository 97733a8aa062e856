"""The approval's wait and the monitoring DAG's auto-promotion follow their settings."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from dresscode.core import config
from dresscode.registry.approval import APPROVAL_TIMEOUT, PromotionApproval

DAGS = Path(__file__).resolve().parents[3] / "dags"


def _approval() -> PromotionApproval:
    return PromotionApproval(
        task_id="approve", on_approve="promote", on_reject="park", subject="promote?"
    )


def test_the_wait_is_the_setting_and_twelve_hours_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DRESSCODE_APPROVAL_TIMEOUT_HOURS", raising=False)
    config.get_settings.cache_clear()
    assert _approval().response_timeout == APPROVAL_TIMEOUT == timedelta(hours=12)
    monkeypatch.setenv("DRESSCODE_APPROVAL_TIMEOUT_HOURS", "0.5")
    config.get_settings.cache_clear()
    try:
        assert _approval().response_timeout == timedelta(minutes=30)
        assert _approval().defaults == ["Reject"]  # silence still never promotes
    finally:
        config.get_settings.cache_clear()


@pytest.mark.parametrize("bad", ["0", "-1", "1000", "soon"])
def test_a_bad_timeout_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("DRESSCODE_APPROVAL_TIMEOUT_HOURS", bad)
    config.get_settings.cache_clear()
    try:
        with pytest.raises(Exception, match="DRESSCODE_APPROVAL_TIMEOUT_HOURS"):
            config.get_settings()
    finally:
        config.get_settings.cache_clear()


@pytest.mark.parametrize(("value", "expected"), [(None, False), ("true", True), ("false", False)])
def test_monitoring_auto_promote_param_defaults_to_the_setting(
    monkeypatch: pytest.MonkeyPatch, airflow_db: Path, value: str | None, expected: bool
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    if value is None:
        monkeypatch.delenv("DRESSCODE_MONITORING_AUTO_PROMOTE", raising=False)
    else:
        monkeypatch.setenv("DRESSCODE_MONITORING_AUTO_PROMOTE", value)
    config.get_settings.cache_clear()
    try:
        bag = DagBag(dag_folder=str(DAGS / "model_monitoring.py"))
        assert bag.import_errors == {}
        assert bag.dags["model_monitoring"].params["auto_promote"] is expected
    finally:
        config.get_settings.cache_clear()
