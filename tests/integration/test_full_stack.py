"""The pipeline end to end on PostgreSQL, Redis, the S3 server and the MLflow server.

Airflow reads its configuration once per process and tests/conftest.py pins it to SQLite, so
the scenario (fullstack_scenario.py: six DAGs through dag.test()) runs in its own pytest
process with the full-stack environment built here. Afterwards this test reads what the run
left in each service directly — dag_run rows in PostgreSQL, objects in the bucket, prompt
aliases on the MLflow server, feature keys in Redis — so a run that quietly fell back to a
local store fails.

The run takes ~2 minutes, nearly all of it in other processes (the scenario, the MLflow
server, moto's S3 server, PostgreSQL, Redis). So it starts in a background thread as soon as
collection ends (tests/conftest.py calls ``start_in_background``) and overlaps the other tests
of its pytest process; the fixture below only waits for it. ``DRESSCODE_FULLSTACK=0`` leaves it out.

Scratch databases (Airflow, MLflow, Feast registry) get unique names and are dropped; the
Redis keys of the run (db 12) are deleted. Missing PostgreSQL or Redis skips loudly locally
and fails under CI, where both run.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dresscode.local.stack import MLFLOW_START_TIMEOUT_S
from dresscode.sim.testing import free_port, stop_process, wait_healthy

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        os.environ.get("DRESSCODE_FULLSTACK") == "0",
        reason="DRESSCODE_FULLSTACK=0: the full-stack pipeline run was switched off",
    ),
]

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "fullstack_scenario.py"
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_DB = 12  # test_feast.py uses 13
DAGS = (
    "wardrobe_ingest",
    "prompt_release",
    "weather_ingest",
    "style_features",
    "outfit_pregen",
    "model_monitoring",
)
CREDS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region_name": "us-east-1",
}
SCENARIO_TIMEOUT_S = 600


class StackDown(Exception):
    """PostgreSQL or Redis is not there: the run cannot be built (skip, or fail under CI)."""


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def _scratch_databases(*purposes: str) -> Iterator[dict[str, str]]:
    """One fresh PostgreSQL database per purpose (SQLAlchemy URLs), dropped afterwards."""
    import psycopg

    names = {p: f"dresscode_{p}_{uuid.uuid4().hex[:10]}" for p in purposes}
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f"CREATE DATABASE {name}")
    try:
        yield {p: f"postgresql+psycopg://postgres@127.0.0.1:5432/{n}" for p, n in names.items()}
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            for name in names.values():
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def _server(
    name: str, cmd: list[str], health: str, env: dict[str, str], log: Path
) -> Iterator[None]:
    """A server subprocess, healthy (``health`` answers 200) before the body runs. The MLflow
    server's first start (migrations, then uvicorn's import) takes minutes beside the suite."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(proc, health, MLFLOW_START_TIMEOUT_S, name, log=log, poll_s=0.5)
        yield
    finally:
        stop_process(proc)


def _s3_server(env: dict[str, str], log: Path) -> contextlib.AbstractContextManager[None]:
    # moto's server in its own process: in this one it would share the GIL with the suite.
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    env["S3_URL"] = f"http://127.0.0.1:{port}"
    return _server("moto_server", cmd, f"{env['S3_URL']}/moto-api/", env, log)


def _mlflow_server(backend: str, artifacts: str, env: dict[str, str], log: Path):
    port = free_port()
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        artifacts,
    ]
    env["MLFLOW_URL"] = f"http://127.0.0.1:{port}"
    return _server("mlflow server", cmd, f"{env['MLFLOW_URL']}/health", env, log)


@contextlib.contextmanager
def _full_stack_run(tmp: Path) -> Iterator[dict]:
    """Build the stack, run the scenario in its own pytest process; yields where things are."""
    import boto3

    down = [name for name, port in (("PostgreSQL", 5432), ("Redis", 6379)) if not _listening(port)]
    if down:
        raise StackDown(
            f"FULL-STACK PIPELINE NOT TESTED: {', '.join(down)} not listening on 127.0.0.1."
        )
    bucket = f"fullstack-{uuid.uuid4().hex[:12]}"
    aws_env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    # mlflow.set_experiment() in earlier tests of this process exports MLFLOW_* variables
    # (an experiment id of another store): none of them may reach the servers or the run.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    urls: dict[str, str] = {**clean, **aws_env}
    with _s3_server(urls, tmp / "s3.log"), _scratch_databases("airflow", "mlflow", "feast") as dbs:
        s3_url = urls["S3_URL"]
        boto3.client("s3", endpoint_url=s3_url, **CREDS).create_bucket(Bucket=bucket)
        server_env = {**clean, **aws_env, "MLFLOW_S3_ENDPOINT_URL": s3_url}
        with _mlflow_server(dbs["mlflow"], f"s3://{bucket}/mlflow", server_env, tmp / "mlflow.log"):
            mlflow_url = server_env["MLFLOW_URL"]
            env = {k: v for k, v in clean.items() if not k.startswith(("AIRFLOW", "DRESSCODE"))}
            env.update(aws_env)
            aws_default = {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": s3_url, "region_name": "us-east-1"},
            }
            env.update(
                {
                    "DRESSCODE_TEST_AIRFLOW_DB": dbs["airflow"],
                    "DRESSCODE_HOME": str(tmp / "home"),
                    "DRESSCODE_LAKE_URI": f"s3://{bucket}/lake",
                    "DRESSCODE_LANDING_URI": f"s3://{bucket}/landing",
                    "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(aws_default),
                    "FEAST_S3_ENDPOINT_URL": s3_url,  # Feast's offline reads of the lake
                    "MLFLOW_TRACKING_URI": mlflow_url,
                    "DRESSCODE_FEAST_ENV": "fullstack",
                    "DRESSCODE_FEAST_REGISTRY_URL": dbs["feast"],
                    "DRESSCODE_FEAST_REDIS": f"127.0.0.1:6379,db={REDIS_DB}",
                }
            )
            (tmp / "home").mkdir()
            _drop_redis_keys()  # a crashed earlier run's keys would inflate the count
            try:
                result = subprocess.run(
                    [sys.executable, "-m", "pytest", str(SCENARIO), "-p", "no:cacheprovider", "-q"],
                    env=env,
                    cwd=HERE.parents[1],
                    capture_output=True,
                    text=True,
                    timeout=SCENARIO_TIMEOUT_S,
                )
                (tmp / "scenario.log").write_text(result.stdout + result.stderr)
                yield {
                    "result": result,
                    "s3": s3_url,
                    "bucket": bucket,
                    "mlflow": mlflow_url,
                    "airflow_db": dbs["airflow"],
                }
            finally:
                _drop_redis_keys()


class _BackgroundRun:
    """The full-stack run in a thread: started once, read by the tests, torn down after them."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.release = threading.Event()
        self.data: dict | None = None
        self.error: BaseException | None = None
        self.tmp: Path | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self.tmp = Path(tempfile.mkdtemp(prefix="dresscode-full-stack-"))
            self._thread = threading.Thread(target=self._run, name="full-stack", daemon=True)
            self._thread.start()
            atexit.register(self.stop)  # an interrupted session still stops the servers

    def _run(self) -> None:
        try:
            with _full_stack_run(self.tmp) as data:
                self.data = data
                self.ready.set()
                self.release.wait()
        except BaseException as exc:  # handed to the test that waits for the run
            self.error = exc
        finally:
            self.ready.set()

    def wait(self) -> dict:
        self.start()
        self.ready.wait(SCENARIO_TIMEOUT_S + 300)
        if isinstance(self.error, StackDown):
            if os.environ.get("CI"):
                pytest.fail(str(self.error))
            pytest.skip(str(self.error))
        if self.error is not None:
            raise self.error
        if self.data is None:
            pytest.fail(f"the full-stack run did not finish; logs in {self.tmp}")
        return self.data

    def stop(self) -> None:
        self.release.set()
        if self._thread is not None:
            self._thread.join(120)
        if self.tmp is not None and self.error is None and _passed(self.data):
            shutil.rmtree(self.tmp, ignore_errors=True)  # kept for reading when it failed


def _passed(data: dict | None) -> bool:
    return data is not None and data["result"].returncode == 0


RUN = _BackgroundRun()


def start_in_background() -> None:
    """Called by tests/conftest.py once collection ends, when this module's tests are selected."""
    if os.environ.get("DRESSCODE_FULLSTACK") != "0":
        logging.getLogger(__name__).info("starting the full-stack run in the background")
        RUN.start()


@pytest.fixture(scope="module")
def full_run() -> Iterator[dict]:
    yield RUN.wait()
    RUN.stop()


def _redis():
    import redis

    return redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)


def _feast_keys() -> list[bytes]:
    # Feast's Redis keys end with the project name (feature_repo: project dresscode).
    return list(_redis().scan_iter(match="*dresscode", count=1000))


def _drop_redis_keys() -> None:
    keys = _feast_keys()
    if keys:
        _redis().delete(*keys)


def test_the_scenario_passes_in_its_own_process(full_run: dict) -> None:
    result = full_run["result"]
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
    assert f"{len(DAGS)} passed" in result.stdout, result.stdout[-5000:]


def test_postgres_holds_a_successful_run_of_every_dag(full_run: dict) -> None:
    import psycopg

    dsn = full_run["airflow_db"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        runs = conn.execute("SELECT dag_id, state FROM dag_run").fetchall()
        tasks = conn.execute(
            "SELECT count(*) FROM task_instance WHERE state = 'success'"
        ).fetchone()[0]
    assert {dag for dag, state in runs if state == "success"} == set(DAGS), runs
    assert [r for r in runs if r[1] != "success"] == []
    assert tasks >= 3 * len(DAGS)


def test_the_bucket_holds_the_lake_and_mlflow_artifacts_and_an_emptied_landing(
    full_run: dict,
) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=full_run["s3"], **CREDS)
    keys = [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=full_run["bucket"])
        for obj in page.get("Contents", [])
    ]
    tables = {k.split("/")[1] for k in keys if k.startswith("lake/")}
    assert {
        "images",
        "manifests",
        "wardrobe_items",
        "inference_log",
        "weather",
        "user_style",
        "outfit_suggestions",
        "quality_metrics",
        "monitoring_decisions",
    } <= tables, sorted(tables)
    # The seeded uploads were written to landing/ (the scenario checks their manifest rows);
    # each leaves landing once its final manifest row is committed.
    assert [k for k in keys if k.startswith("landing/")] == []
    assert any(k.startswith("mlflow/") for k in keys), "no MLflow artifact reached the bucket"


def test_the_mlflow_server_serves_the_promoted_prompts(full_run: dict) -> None:
    from mlflow import MlflowClient

    from dresscode.registry.prompt_registry import GIT_VERSION_TAG

    client = MlflowClient(tracking_uri=full_run["mlflow"], registry_uri=full_run["mlflow"])
    for name in ("wardrobe-digitizer", "outfit-stylist"):
        production = client.get_prompt_version_by_alias(name, "production")
        assert production.tags[GIT_VERSION_TAG] == "2"
        versions = client.search_prompt_versions(name, max_results=100)
        assert sorted(int(v.tags[GIT_VERSION_TAG]) for v in versions) == [1, 2]


def test_redis_holds_the_online_features(full_run: dict) -> None:
    # One key per entity: the users' style rows and the cities' weather.
    from dresscode.local import seed

    assert len(_feast_keys()) >= len(seed.CITIES)
