"""The executor the local stack runs Airflow with (``DRESSCODE_EXECUTOR``).

``local`` (the default): the LocalExecutor inside the scheduler, the metadata DB a SQLite file in
the stack's home — nothing to install. ``celery``: what a team runs when it outgrows one machine,
here on loopback — the CeleryExecutor with ``DRESSCODE_CELERY_WORKERS`` workers, Redis as the
broker and PostgreSQL for the metadata DB and Celery's results. The same Airflow settings drive
``docker-compose.yaml`` (its test checks them against :func:`celery_settings`).

Services are checked before anything starts, so a stack never half-starts against a broker or
database it cannot reach: the error names the URL, what failed and the setting to change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from dresscode.core.config import Settings
from dresscode.local.processes import Part, StackError

# The metadata DB the celery stack creates on the machine's PostgreSQL when none is configured.
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/dresscode_airflow"
# Celery redelivers a task whose worker has not acknowledged it within the visibility timeout
# (Airflow acknowledges late, when the task ends): shorter than the longest task, a running
# batch would be handed to a second worker. Six hours; the check below holds it to the tasks.
VISIBILITY_TIMEOUT_S = 6 * 3600
VISIBILITY_KEY = "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"
HEARTBEAT_KEY = "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"
# A worker whose tasks stop heartbeating is taken for lost after this long and its tasks are
# retried elsewhere (Airflow's default is 300 s; a laptop stack should notice sooner).
HEARTBEAT_TIMEOUT_S = 60
# Connections one Airflow server process keeps (its SQLAlchemy pool size; the 10 overflow
# connections are transient, and counting them would refuse stacks that run fine).
CONNECTIONS_PER_AIRFLOW_PROCESS = 5
AIRFLOW_DB_PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")


def airflow_db_url(settings: Settings, airflow_home: Path) -> str:
    if settings.airflow_db_url:
        return settings.airflow_db_url
    if settings.executor == "celery":
        return DEFAULT_POSTGRES_URL
    return f"sqlite:///{airflow_home / 'airflow.db'}"


def longest_task_timeout(settings: Settings) -> timedelta:
    """The longest execution_timeout any task may run for (the batch timeouts grow with the
    batch size settings)."""
    from dresscode.orchestration import dag_defaults as d

    return max(
        d.ingest_batch_timeout(settings),
        d.outfit_batch_timeout(settings),
        d.FEEDBACK_TIMEOUT,
        d.WEATHER_FETCH_TIMEOUT,
        d.LISTING_TIMEOUT,
    )


def celery_settings(settings: Settings, db_url: str) -> dict[str, str]:
    """The Airflow settings of a CeleryExecutor deployment on ``settings``' broker and DB."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": settings.celery_broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{db_url}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(settings.celery_worker_concurrency),
        VISIBILITY_KEY: str(VISIBILITY_TIMEOUT_S),
        HEARTBEAT_KEY: str(HEARTBEAT_TIMEOUT_S),
        # Which worker ran a task: "<worker name>@<host>" (two workers share a host here).
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "dresscode.orchestration.hostname.worker_hostname",
    }


def airflow_env(settings: Settings, airflow_home: Path, environ: dict[str, str]) -> dict[str, str]:
    """What the executor adds to every Airflow process's environment. A visibility or
    heartbeat timeout set in the caller's ``environ`` wins over the stack's (an operator's
    override); the visibility timeout that results is checked against the tasks'."""
    db_url = airflow_db_url(settings, airflow_home)
    env = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    }
    if db_url.startswith("postgresql"):
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = db_url
    if settings.executor == "celery":
        celery = celery_settings(settings, db_url)
        for key in (VISIBILITY_KEY, HEARTBEAT_KEY):
            celery[key] = environ.get(key, celery[key])
        check_visibility_timeout(celery[VISIBILITY_KEY], settings)
        env |= celery
    return env


def check_visibility_timeout(raw: str, settings: Settings) -> None:
    try:
        seconds = int(raw)
    except ValueError:
        raise StackError(f"{VISIBILITY_KEY}={raw!r} is not a number of seconds.") from None
    longest = longest_task_timeout(settings)
    if seconds <= longest.total_seconds():
        raise StackError(
            f"The broker's visibility timeout ({seconds} s, {VISIBILITY_KEY}) is not longer than the "
            f"longest task may run ({longest}, the ingest and outfit batch timeouts included): "
            "Redis would hand a running task to a second worker. Raise it above "
            f"{int(longest.total_seconds())} s, or lower the batch sizes."
        )


def worker_preload(settings: Settings) -> str:
    """What the stack's task-forking processes import first (dresscode.orchestration.preload)."""
    return settings.worker_preload or "all"


def worker_parts(settings: Settings, airflow_bin: str) -> list[Part]:
    """The Celery workers: each named (its task instances record ``worker-N@<host>``), each
    importing the tasks' libraries once before it forks (dresscode.orchestration.preload;
    ``DRESSCODE_WORKER_PRELOAD`` narrows the list, default all).
    Their logs are read from the shared log folder, so they serve none (one port each)."""
    if settings.executor != "celery":
        return []
    concurrency = ["--concurrency", str(settings.celery_worker_concurrency), "--skip-serve-logs"]
    preload = worker_preload(settings)
    return [
        Part(
            f"worker-{n}",
            [airflow_bin, "celery", "worker", "--celery-hostname", f"worker-{n}@%h", *concurrency],
            env=(("DRESSCODE_WORKER_NAME", f"worker-{n}"), ("DRESSCODE_WORKER_PRELOAD", preload)),
        )
        for n in range(1, settings.celery_workers + 1)
    ]


# --- the services a celery stack needs ---------------------------------------------------------


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL (a broker URL): drop anything before the host
        return url.split("@")[-1] if "@" in url else url


def ping_broker(url: str) -> None:
    """Raise StackError unless the Redis broker at ``url`` answers."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
    except (redis.RedisError, ValueError) as exc:
        raise StackError(
            f"The Celery broker {_redacted(url)} does not answer ({exc}). Start Redis, or point "
            "DRESSCODE_CELERY_BROKER_URL at one (DRESSCODE_EXECUTOR=local needs none)."
        ) from exc


@contextlib.contextmanager
def _server(url: str) -> Iterator[tuple[Any, str]]:
    """A connection to the server's ``postgres`` DB, and the DB name ``url`` names."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.database:
        raise StackError(f"The metadata DB URL {_redacted(url)} names no database.")
    try:
        conn = psycopg.connect(
            host=parsed.host or "127.0.0.1",
            port=parsed.port or 5432,
            user=parsed.username or "postgres",
            password=parsed.password or None,
            dbname="postgres",
            connect_timeout=5,
            autocommit=True,
        )
    except psycopg.Error as exc:
        raise StackError(
            f"PostgreSQL for the metadata DB ({_redacted(url)}) does not answer: "
            f"{str(exc).strip().splitlines()[0]}. Start it, or set DRESSCODE_AIRFLOW_DB_URL."
        ) from exc
    with conn:
        yield conn, parsed.database


def ensure_database(url: str, settings: Settings) -> None:
    """Create the metadata DB if missing; refuse when the server has too few connections
    left for the stack's Airflow processes and workers."""
    with _server(url) as (conn, name):
        cur = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
        limit = int(conn.execute("SHOW max_connections").fetchone()[0])
        used = int(conn.execute("SELECT count(*) FROM pg_stat_activity").fetchone()[0])
    needed = connections_needed(settings)
    if used + needed > limit:
        raise StackError(
            f"PostgreSQL allows {limit} connections and {used} are in use; the stack may open "
            f"{needed} ({len(AIRFLOW_DB_PROCESSES)} Airflow processes x "
            f"{CONNECTIONS_PER_AIRFLOW_PROCESS}, and one per Celery worker process for results). "
            "Raise max_connections, or lower DRESSCODE_CELERY_WORKERS or "
            "DRESSCODE_CELERY_WORKER_CONCURRENCY."
        )


def connections_needed(settings: Settings) -> int:
    workers = settings.celery_workers * settings.celery_worker_concurrency
    return len(AIRFLOW_DB_PROCESSES) * CONNECTIONS_PER_AIRFLOW_PROCESS + workers


def check_services(settings: Settings, airflow_home: Path) -> None:
    """Before the stack starts: the celery stack's broker and database answer (and the
    database exists). The local executor needs neither."""
    url = airflow_db_url(settings, airflow_home)
    if url.startswith("postgresql"):
        ensure_database(url, settings)
    if settings.executor == "celery":
        ping_broker(settings.celery_broker_url)


def service_status(settings: Settings, airflow_home: Path) -> list[str]:
    """One line per service the stack depends on, for ``make status``."""
    lines = []
    url = airflow_db_url(settings, airflow_home)
    if url.startswith("postgresql"):
        try:
            with _server(url):
                lines.append(f"metadata DB    reachable ({_redacted(url)})")
        except StackError as exc:
            lines.append(f"metadata DB    NOT REACHABLE: {exc}")
    if settings.executor == "celery":
        try:
            ping_broker(settings.celery_broker_url)
            lines.append(f"celery broker  reachable ({_redacted(settings.celery_broker_url)})")
        except StackError as exc:
            lines.append(f"celery broker  NOT REACHABLE: {exc}")
    return lines


def answering_workers(settings: Settings) -> set[str]:
    """The local workers that answer a Celery ping through the broker (``worker-N``)."""
    from celery import Celery

    app = Celery(broker=settings.celery_broker_url)
    app.conf.broker_connection_retry_on_startup = False
    try:
        replies = app.control.ping(timeout=2.0)
    except Exception:  # the broker is down: no worker answers (service_status says why)
        return set()
    finally:
        app.close()
    return {node.split("@", 1)[0] for reply in replies for node in reply}
