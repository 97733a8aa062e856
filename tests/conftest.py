"""Fixtures shared by every test layer: isolated settings, a real S3 server on loopback."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Airflow reads its configuration once, at first import: isolate it before anything imports it.
# One migrated SQLite DB under .local/test is reused across sessions (migrating costs ~10 s) as
# a template; each pytest process works on its own copy. `make test` runs three processes at
# once, and one SQLite file written by all of them was a lock-contention hazard: a CI run hung
# in a dag.test() whose approval was answered from a second thread.
REPO = Path(__file__).resolve().parents[1]
TEST_AIRFLOW_HOME = REPO / ".local" / "test" / "airflow"
TEMPLATE_DB = TEST_AIRFLOW_HOME / "airflow.db"
PROCESS_DB = TEST_AIRFLOW_HOME / f"airflow-{os.getpid()}.db"
# The full-stack run (tests/integration/test_full_stack.py) sets this to a scratch PostgreSQL DB.
AIRFLOW_DB_OVERRIDE = os.environ.get("DRESSCODE_TEST_AIRFLOW_DB")
os.environ.update(
    {
        "AIRFLOW_HOME": str(TEST_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": AIRFLOW_DB_OVERRIDE or f"sqlite:///{PROCESS_DB}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(TEST_AIRFLOW_HOME / "logs"),
        # dag.test() cannot run a DAG with a deadline (an upstream bug); tests that check the
        # deadlines turn them on for the DAG they load.
        "DRESSCODE_DEADLINES": "false",
    }
)
if AIRFLOW_DB_OVERRIDE:
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = AIRFLOW_DB_OVERRIDE

from dresscode.core import config  # noqa: E402
from dresscode.sim.testing import free_port  # noqa: E402


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[Path]:
    """This process's migrated test metadata DB: a copy of the template, which is migrated once
    (and again when Airflow changes) under a lock that the parallel processes share."""
    import airflow

    marker = TEST_AIRFLOW_HOME / f".migrated-{airflow.__version__}"
    TEST_AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
    with (TEST_AIRFLOW_HOME / ".migrate.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if AIRFLOW_DB_OVERRIDE or not marker.exists():
            target = AIRFLOW_DB_OVERRIDE or f"sqlite:///{TEMPLATE_DB}"
            airflow_bin = Path(sys.executable).parent / "airflow"
            subprocess.run(
                [str(airflow_bin), "db", "migrate"],
                check=True,
                capture_output=True,
                env={**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": target},
            )
            if (
                not AIRFLOW_DB_OVERRIDE
            ):  # a scratch DB is migrated each time; the marker is SQLite's
                marker.touch()
        if not AIRFLOW_DB_OVERRIDE:
            _remove_orphaned_copies()
            # In place, not os.replace(): a connection Airflow already opened keeps its inode.
            shutil.copyfile(TEMPLATE_DB, PROCESS_DB)
    if AIRFLOW_DB_OVERRIDE:  # the lock is released first: the session must not hold it
        yield TEST_AIRFLOW_HOME / "override"
        return
    try:
        yield PROCESS_DB
    finally:
        _remove_copy(PROCESS_DB)


def _remove_copy(db: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):  # Airflow runs SQLite in WAL mode
        db.with_name(db.name + suffix).unlink(missing_ok=True)


def _remove_orphaned_copies() -> None:
    """Copies whose process is gone (killed before its session ended)."""
    for copy in TEST_AIRFLOW_HOME.glob("airflow-*.db"):
        pid = copy.stem.removeprefix("airflow-")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _remove_copy(copy)


@pytest.fixture
def dresscode_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh DRESSCODE_HOME with a local lake; settings cache cleared around the test."""
    home = tmp_path / "home"
    monkeypatch.setenv("DRESSCODE_HOME", str(home))
    # mlflow.set_tracking_uri() also exports MLFLOW_TRACKING_URI: keep an earlier
    # test's registry out of this home (undo() removes it again).
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for knob in (
        "DRESSCODE_LAKE_URI",
        "DRESSCODE_LANDING_URI",
        "MLFLOW_TRACKING_URI",
        "DRESSCODE_ALERTS_FILE",
    ):
        monkeypatch.delenv(knob, raising=False)
    config.get_settings.cache_clear()
    yield home
    config.get_settings.cache_clear()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's standalone S3-compatible server on a loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_lake(s3_server: str, dresscode_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the lake and landing at a fresh bucket on the S3 server via the aws_default connection."""
    import json
    import uuid

    import boto3

    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    creds = {
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "region_name": "us-east-1",
    }
    boto3.client("s3", endpoint_url=s3_server, **creds).create_bucket(Bucket=bucket)
    conn = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": s3_server, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
    monkeypatch.setenv("DRESSCODE_LAKE_URI", f"s3://{bucket}/lake")
    monkeypatch.setenv("DRESSCODE_LANDING_URI", f"s3://{bucket}/landing")
    config.get_settings.cache_clear()
    _reset_object_store_cache()
    yield bucket
    config.get_settings.cache_clear()
    _reset_object_store_cache()


def _reset_object_store_cache() -> None:
    # ObjectStoragePath caches one filesystem per protocol+connection; each test's bucket
    # and connection differ, so start clean.
    from airflow.sdk.io import store

    store._STORE_CACHE.clear()
    os.environ.pop("AWS_ENDPOINT_URL", None)
    from dresscode.core import delta

    delta.s3_options.cache_clear()  # the Delta tables' view of the same connection


@pytest.fixture(autouse=True)
def _no_traces_left_over() -> Iterator[None]:
    """Each test starts with an empty trace buffer: model calls are sampled into a
    process-wide buffer (``llm.tracing``) that only the end of a batch task flushes, so a test
    that made calls without flushing would leave them to the next test's flush."""
    from dresscode.llm import tracing

    tracing._take()
    yield


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite DB with its schema created once per session (migrating costs ~2 s)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    uri = f"sqlite:///{path}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).search_prompts()
    return path


@pytest.fixture
def mlflow_uri(empty_mlflow_db: Path, dresscode_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, empty MLflow store for this test, set as MLFLOW_TRACKING_URI."""
    dresscode_home.mkdir(parents=True, exist_ok=True)
    db = dresscode_home / "mlflow.db"
    shutil.copy(empty_mlflow_db, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    config.get_settings.cache_clear()
    return uri


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the full-stack run (tests/integration/test_full_stack.py) now, in the background.

    It spends ~2 minutes in other processes (servers and its own pytest); started here, it
    overlaps the other tests of its pytest process instead of adding to them.
    """
    for item in session.items:
        start = getattr(getattr(item, "module", None), "start_in_background", None)
        if start is not None:
            start()
            return


# Nothing phones home: on this closed network Chromium's background requests stall it.
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)


@pytest.fixture(scope="module")
def headless_chrome(request: pytest.FixtureRequest) -> Any:
    """Starts Debian's headless Chromium (``start(profile_dir, *flags)``: options to adjust
    first as keyword ``adjust``). Requested before anything else is set up, so a machine
    without the browser starts nothing: under ``CI`` that is a failure (the project's
    ``scripts/install_browser.sh`` installs it), elsewhere a loud skip."""
    import warnings

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (Path(chromium).is_file() and Path(driver).is_file()):
        which = request.module.__name__.rsplit(".", 1)[-1]
        message = (
            "headless Chromium is missing (chromium and chromedriver): run "
            "scripts/install_browser.sh"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{message} — CI must run {which}")
        warnings.warn(f"SKIPPED {which}: {message}", stacklevel=2)
        pytest.skip(message)

    def start(profile: Path, *flags: str, adjust: Any = None) -> Any:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in (*CHROME_FLAGS, *flags, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        if adjust is not None:
            adjust(options)
        browser = webdriver.Chrome(service=Service(driver), options=options)
        browser.set_page_load_timeout(60)
        return browser

    return start
