"""A worker on other code than the deployment's fails each task before it runs (the
``pre_execute`` hook every task gets from ``DEFAULT_ARGS``), and says so in the alert."""

from __future__ import annotations

import pytest

from dresscode.orchestration import alerts
from dresscode.orchestration.code_version import VARIABLE, fingerprint

ENV = f"AIRFLOW_VAR_{VARIABLE.upper()}"  # Airflow's environment-variable secrets backend


def _states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


@pytest.fixture(scope="module")
def maintenance(load_dag, module_home):
    return load_dag("lake_maintenance")


def test_a_worker_on_the_deployed_code_runs_its_tasks(maintenance, monkeypatch) -> None:
    monkeypatch.setenv(ENV, fingerprint())
    run = maintenance.test()
    assert run.state == "success", _states(run)


def test_a_worker_on_other_code_fails_before_running_and_the_alert_says_why(
    maintenance, monkeypatch
) -> None:
    monkeypatch.setenv(ENV, "0123456789ab")
    run = maintenance.test()
    assert run.state == "failed"
    states = _states(run)
    assert "success" not in states.values(), states  # nothing ran
    summaries = [a["summary"] for a in alerts.read_alerts()]
    assert any(
        f"runs dresscode code {fingerprint()}, the deployment is 0123456789ab" in s
        for s in summaries
    ), summaries
