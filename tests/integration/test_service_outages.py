"""Outage drills: the S3 server, the MLflow server and the weather provider go away.

Each drill takes a real service down before or in the middle of the work a DAG task does,
calls what that task calls, and records what a user would see and what the lake holds after.
The figures are in docs/reliability.md ("Outage drills").

* **S3 stopped mid-batch** (``wardrobe_ingest``'s discover/process): the lake and landing live
  on an S3-compatible server (moto, standing in for MinIO). It is stopped three times in one
  batch's life — while photos are with the model, as the commit writes the manifest, as the
  committed uploads leave landing — and started again on the same port with its data (moto
  keeps buckets in process-global backends, as MinIO keeps them on disk). Every upload must
  end accepted or quarantined exactly once, with no duplicate item or manifest row, and landing
  empty.
* **S3 not ready when Airflow starts**: the endpoint does not listen when discover runs; the
  error must name the endpoint, the S3 client's own retries are counted, and the next try after
  the server is up ingests everything.
* **MLflow down**: prompts registered and promoted on a real ``mlflow server``, which is then
  stopped. ``registry.serving`` (the DAGs' resolve_prompt) must fail with a RegistryError that
  names the server and must never fall back to a blueprint from git (as it rightly does while
  a registered prompt has no production yet) or to a local MLflow store; the MLflow client's
  own retries are counted.
* **Weather provider down**: ``feature_jobs`` (what ``weather_ingest`` runs) against a
  provider where nothing listens: retries with bounded backoff, the stale cache for known
  cities, a reason code for the others, the circuit breaker, a failed run that says why, and a
  full recovery once the provider is back. (push_online, Feast, is not part of this drill.)

Model answers come from the project's LLM simulator, forecasts from its weather stub. Retry
backoffs are recorded instead of slept (the delays are the clients' own, only the waiting is
skipped), except the S3 client's in the not-ready drill, which measures how long a try takes
to fail.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import airflow.sdk  # noqa: F401  (Airflow sets up logging on import: before our handlers)
import httpx
import pytest

from dresscode.core import config, lake
from dresscode.features import tasks as feature_jobs
from dresscode.features import users as users_mod
from dresscode.features.weather import cache as weather_mod
from dresscode.features.weather import provider as weather_provider
from dresscode.ingest import tasks as ingest
from dresscode.llm import blueprints
from dresscode.local import samples, seed, stack
from dresscode.registry import prompt_registry as registry
from dresscode.sim.testing import (
    free_port,
    llm_connection,
    running_simulator,
    running_weather_stub,
    stop_process,
    wait_healthy,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

MODEL = "google/gemma-4-26B-A4B-it"
PROMPT = "wardrobe-digitizer"
CREDS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region_name": "us-east-1",
}
GOOD_PHOTOS = 10
BAD_FILES = ("truncated.jpg", "notes.jpg", "empty.jpg")  # from samples.bad_files()
LATENCY_MS = 300  # per model call, 2 in flight: the batch is with the model for >= 1.5 s
CONCURRENCY = 2
STOP_AFTER_CALLS = 3
BATCH_TIMEOUT_S = 120.0


# --- shared helpers --------------------------------------------------------------------------


@contextlib.contextmanager
def _environment(home: Path, **env: str) -> Iterator[pytest.MonkeyPatch]:
    """A fresh DRESSCODE_HOME plus ``env`` for one drill; settings and S3 caches reset."""
    patch = pytest.MonkeyPatch()
    home.mkdir(parents=True, exist_ok=True)
    patch.setenv("DRESSCODE_HOME", str(home))
    for knob in (
        "DRESSCODE_LAKE_URI",
        "DRESSCODE_LANDING_URI",
        "DRESSCODE_ALERTS_FILE",
        "AWS_ENDPOINT_URL",
    ):
        patch.delenv(knob, raising=False)
    # mlflow.set_tracking_uri()/set_experiment() in earlier tests export MLFLOW_* variables.
    for name in [k for k in os.environ if k.startswith("MLFLOW_")]:
        patch.delenv(name)
    for name, value in env.items():
        patch.setenv(name, value)
    _reset_caches()
    try:
        yield patch
    finally:
        patch.undo()
        _reset_caches()


def _reset_caches() -> None:
    # ObjectStoragePath caches one filesystem per protocol+connection; a task try is a fresh
    # process in Airflow, so each try here starts without one too.
    from airflow.sdk.io import store

    config.get_settings.cache_clear()
    store._STORE_CACHE.clear()


class _Records(logging.Handler):
    """Keeps the records of some loggers (at ``level``) while installed."""

    def __init__(self, *names: str, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.names, self.records = names, []
        self._saved: list[tuple[logging.Logger, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> _Records:
        for name in self.names:
            logger = logging.getLogger(name)
            self._saved.append((logger, logger.level))
            logger.setLevel(min(logger.getEffectiveLevel(), self.level))
            logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for logger, level in self._saved:
            logger.removeHandler(self)
            logger.setLevel(level)

    def messages(self, at_least: int = logging.WARNING) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= at_least]


def _error_text(exc: BaseException | None) -> str:
    return f"{type(exc).__name__}: {exc}" if exc is not None else "no error"


def _attempt(call: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return call(), None
    except Exception as exc:  # the drill records what the user sees
        return None, exc


# --- S3 --------------------------------------------------------------------------------------


class S3Server:
    """moto's S3 server on one loopback port that can be stopped and started again.

    moto keeps buckets in process-global backends, so a server started again on the same port
    serves the same objects: a restart with the data kept. Stopping closes the listening socket
    *and* every open connection (keep-alive and in flight), as a stopped MinIO does;
    ``ThreadedMotoServer.stop`` would leave open connections served. ``stop_before`` (method,
    path) -> bool stops the server on the first matching request, which dies unanswered.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stop_before: Callable[[str, str], bool] | None = None
        self.stopped = threading.Event()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        owner = self

        class Handler(MotoRequestHandler):
            def setup(self) -> None:
                super().setup()
                with owner._lock:
                    owner._connections.add(self.connection)

            def finish(self) -> None:
                with owner._lock:
                    owner._connections.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            def run_wsgi(self) -> None:
                trip = owner.stop_before
                if trip is not None and trip(self.command, self.path):
                    owner.stop_before = None
                    self.close_connection = True
                    owner.stop()  # this request goes down with the server, unanswered
                    return
                super().run_wsgi()

        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(
            "127.0.0.1", self.port, app, threaded=True, request_handler=Handler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.stopped.clear()
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        thread, self._thread = self._thread, None
        self._server.shutdown()
        thread.join()  # werkzeug closes the listening socket as serve_forever returns
        with self._lock:
            for conn in list(self._connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        self.stopped.set()

    def listening(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0


@dataclass
class S3Attempts:
    """What the S3 client (aiobotocore) did on the wire: failed sends and backoff sleeps."""

    failed_sends: list[str] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)


@contextlib.contextmanager
def _counting_s3_attempts(*, sleep: bool) -> Iterator[S3Attempts]:
    """Count every failed HTTP attempt and every retry sleep of the S3 client; the sleeps are
    slept for real only when ``sleep`` is true."""
    from aiobotocore.endpoint import AioEndpoint

    seen = S3Attempts()
    real_send, real_sleep = AioEndpoint._send, AioEndpoint._sleep

    async def send(self: Any, request: Any) -> Any:
        try:
            return await real_send(self, request)
        except Exception as exc:
            seen.failed_sends.append(f"{request.method} {type(exc).__name__}")
            raise

    async def record_sleep(self: Any, seconds: float) -> None:
        seen.sleeps.append(float(seconds))
        if sleep:
            await real_sleep(self, seconds)

    patch = pytest.MonkeyPatch()
    patch.setattr(AioEndpoint, "_send", send)
    patch.setattr(AioEndpoint, "_sleep", record_sleep)
    try:
        yield seen
    finally:
        patch.undo()


@contextlib.contextmanager
def _s3_lake(home: Path, server: S3Server) -> Iterator[str]:
    """Lake and landing in a fresh bucket on ``server`` via the aws_default connection."""
    import boto3

    bucket = f"outage-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=server.url, **CREDS).create_bucket(Bucket=bucket)
    conn = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": server.url, "region_name": "us-east-1"},
    }
    with _environment(
        home,
        AIRFLOW_CONN_AWS_DEFAULT=json.dumps(conn),
        DRESSCODE_LAKE_URI=f"s3://{bucket}/lake",
        DRESSCODE_LANDING_URI=f"s3://{bucket}/landing",
    ):
        yield bucket


@contextlib.contextmanager
def _simulator(script: Path) -> Iterator[str]:
    """The LLM simulator (slow enough to stop S3 mid-batch) behind dresscode_llm."""
    with (
        running_simulator(
            scripts=[script],
            served_model_name=[f"{MODEL}=perfect"],
            fixed_latency_ms=LATENCY_MS,
            max_num_seqs=CONCURRENCY,
        ) as url,
        pytest.MonkeyPatch.context() as patch,
    ):
        conn = llm_connection(url, MODEL, max_concurrency=CONCURRENCY)
        patch.setenv("AIRFLOW_CONN_DRESSCODE_LLM", conn)
        config.get_settings.cache_clear()
        yield url


def _model_calls(sim_url: str) -> int:
    return httpx.get(sim_url.removesuffix("/v1") + "/sim/stats", timeout=5).json()["requests_total"]


def _seed_uploads(home: Path) -> tuple[list[str], dict[str, int]]:
    """Good photos (with their scripted item counts) and a few bad files in landing."""
    script = home / "script.jsonl"
    seed.seed(GOOD_PHOTOS, script_path=script, size=(800, 600), bad_files=False)
    bad = samples.bad_files()
    for name in BAD_FILES:
        lake.write_bytes(lake.landing() / f"user-bad/{name}", bad[name][0])
    labels = seed.scripted_item_counts(script)
    return sorted(ingest.landing_keys(config.get_settings())), labels


def _lake_state() -> dict[str, Any]:
    """What the lake holds right now (the server must be up)."""
    _reset_caches()
    settings = config.get_settings()
    manifests = lake.read_table("manifests", settings)
    items = lake.read_table("wardrobe_items", settings)
    answers = lake.list_files(lake.table("digitized", settings))
    return {
        "manifest_rows": len(manifests),
        "items": len(items),
        "landing": sorted(ingest.landing_keys(settings)),
        "answers_saved": sum(1 for p in answers if p.name.endswith(".json")),
        "images": len(lake.list_files(lake.table("images", settings))),
    }


@dataclass
class FailedTry:
    """One try of the process task that S3 went away under, and what the lake held after."""

    window: str
    error: BaseException | None
    model_calls: int  # when the server stopped
    model_calls_in_try: int  # by the time the try failed (calls go on while S3 is away)
    listening_after_stop: bool
    seconds_to_fail: float  # from the stop to the exception, backoff not slept (reported only)
    state: dict[str, Any]


class ProcessTask:
    """Runs what the DAG's process task runs (``process_batch`` on one batch) against a
    stoppable S3 server, and records each try."""

    def __init__(
        self, server: S3Server, sim: str, keys: list[str], blueprint: blueprints.Blueprint
    ) -> None:
        self.server, self.sim, self.keys, self.blueprint = server, sim, keys, blueprint
        self.run_id = "scheduled__s3-outage"
        self.day = datetime.now(UTC).date().isoformat()
        self.tries: list[FailedTry] = []

    def run(self) -> dict[str, Any]:
        _reset_caches()  # each try of a task is a new process
        return ingest.process_batch(
            self.keys, run_id=self.run_id, day=self.day, blueprint=self.blueprint, label="drill"
        )

    def fail(
        self,
        window: str,
        *,
        after_calls: int = 0,
        trip: Callable[[str, str], bool] | None = None,
    ) -> None:
        """One try with the server stopped after ``after_calls`` model calls (by the drill)
        or on the first request ``trip`` matches (by the server); then the server restarts."""
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["result"] = self.run()
            except BaseException as exc:  # the drill inspects whatever came out
                outcome["error"] = exc

        calls_before = _model_calls(self.sim)
        self.server.stop_before = trip
        thread = threading.Thread(target=work, name="process-batch", daemon=True)
        thread.start()
        if trip is None:
            deadline = time.monotonic() + BATCH_TIMEOUT_S
            while _model_calls(self.sim) - calls_before < after_calls and thread.is_alive():
                assert time.monotonic() < deadline, f"{window}: the batch never reached the model"
                time.sleep(0.01)
            self.server.stop()
        assert self.server.stopped.wait(BATCH_TIMEOUT_S), f"{window}: the server never stopped"
        stopped_at = time.monotonic()
        listening = self.server.listening()
        calls = _model_calls(self.sim) - calls_before
        thread.join(timeout=BATCH_TIMEOUT_S)
        assert not thread.is_alive(), f"{window}: process_batch still running"
        seconds = time.monotonic() - stopped_at
        calls_in_try = _model_calls(self.sim) - calls_before
        self.server.start()
        self.tries.append(
            FailedTry(
                window,
                outcome.get("error"),
                calls,
                calls_in_try,
                listening,
                seconds,
                _lake_state(),
            )
        )


def _is_landing_delete(method: str, path: str) -> bool:
    # s3fs removes objects with DeleteObjects (POST ?delete) or DeleteObject (DELETE).
    return method == "DELETE" or (method == "POST" and "delete" in path.partition("?")[2])


@pytest.fixture(scope="module")
def s3_stopped_mid_batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Stop the S3 server three times in one batch's life, restart it each time, then re-run."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto logs every request
    home = tmp_path_factory.mktemp("s3-mid-batch")
    server = S3Server()
    server.start()
    try:
        with _s3_lake(home, server) as bucket:
            keys, labels = _seed_uploads(home)
            blueprint = blueprints.resolve(PROMPT)  # no MLflow in this drill: pinned from git
            with (
                _simulator(home / "script.jsonl") as sim,
                _counting_s3_attempts(sleep=False) as wire,  # drill 2 sleeps them for real
            ):
                [batch] = ingest.discover()  # one batch: what the process task is given
                task = ProcessTask(server, sim, batch, blueprint)
                task.fail("model calls", after_calls=STOP_AFTER_CALLS)
                manifest_put = f"/{bucket}/lake/manifests/"
                task.fail(
                    "commit: manifest write",
                    trip=lambda method, path: method == "PUT" and manifest_put in path,
                )
                task.fail("commit: landing clean-up", trip=_is_landing_delete)
                # The task's last retry: the batch was committed, so it only empties landing.
                # (Its result counts 0 photos: the failed try committed them, not this one.)
                calls_before = _model_calls(sim)
                retry = task.run()
                report = ingest.commit_and_report([retry])
                retry_calls = _model_calls(sim) - calls_before
                # The next scheduled run finds nothing new.
                next_batches = ingest.discover()
                total_calls = _model_calls(sim)
            _reset_caches()
            settings = config.get_settings()
            state = ingest.manifest_state(settings)
            yield {
                "server": server,
                "keys": keys,
                "labels": labels,
                "tries": task.tries,
                "retry": {"result": retry, "report": report, "calls": retry_calls},
                "next_batches": next_batches,
                "total_calls": total_calls,
                "wire": wire,
                "manifests": lake.read_table("manifests", settings),
                "items": lake.read_table("wardrobe_items", settings),
                "landing": ingest.landing_keys(settings),
                "quarantined": [
                    lake.read_json(p)
                    for p in lake.list_files(lake.table("quarantine", settings))
                    if p.name == "reason.json"
                ],
                "images_exist": {
                    row["upload_key"]: lake.exists(ingest.image_path(row["image_sha256"], settings))
                    for row in state.values()
                    if row["status"] == ingest.ACCEPTED
                },
            }
    finally:
        server.stop()


def test_s3_stop_fails_each_try_with_an_error_naming_the_endpoint(
    s3_stopped_mid_batch: dict,
) -> None:
    drill = s3_stopped_mid_batch
    url = drill["server"].url
    assert STOP_AFTER_CALLS <= drill["tries"][0].model_calls < GOOD_PHOTOS  # mid-batch
    assert len(drill["tries"]) == 3
    for failed in drill["tries"]:
        text = _error_text(failed.error)
        assert failed.error is not None, failed.window
        assert not failed.listening_after_stop  # a real stop: nothing answers on the port
        # boto3's words for the objects, delta-rs's (object_store) for the Delta tables.
        reached = "EndpointConnectionError" in text or "error sending request" in text
        assert reached and url in text, (failed.window, text)


def test_s3_stop_before_the_manifest_commits_nothing_and_keeps_every_upload(
    s3_stopped_mid_batch: dict,
) -> None:
    drill = s3_stopped_mid_batch
    mid_model, mid_commit, _ = (t.state for t in drill["tries"])
    for state in (mid_model, mid_commit):
        assert state["manifest_rows"] == 0
        assert state["landing"] == drill["keys"]
    assert mid_model["items"] == 0
    # The items part was written before the manifest: the next try must replace it, not add.
    assert mid_commit["items"] == sum(drill["labels"].values())


def test_s3_stop_during_landing_clean_up_keeps_the_committed_manifest(
    s3_stopped_mid_batch: dict,
) -> None:
    drill = s3_stopped_mid_batch
    clean_up = drill["tries"][2]
    assert clean_up.state["manifest_rows"] == len(drill["keys"])
    assert clean_up.state["landing"] == drill["keys"]  # committed but not yet removed
    assert clean_up.model_calls == 0  # every answer was saved by the earlier tries
    # The task's next retry only empties landing: nothing re-sent, nothing left for next run.
    assert drill["retry"]["calls"] == 0 and drill["landing"] == []
    assert drill["next_batches"] == []


def test_s3_outage_loses_no_upload_and_duplicates_nothing(s3_stopped_mid_batch: dict) -> None:
    drill = s3_stopped_mid_batch
    manifests = drill["manifests"]
    final = manifests[manifests["status"].isin(ingest.FINAL_STATUSES)]
    assert final.groupby("upload_key").size().to_dict() == dict.fromkeys(drill["keys"], 1)
    assert len(manifests) == len(final)  # no row of a failed try survived
    statuses = final.set_index("upload_key")["status"].to_dict()
    accepted = {k for k, s in statuses.items() if s == ingest.ACCEPTED}
    assert len(accepted) == GOOD_PHOTOS
    assert all(drill["images_exist"][k] for k in accepted)
    assert {k for k, s in statuses.items() if s == ingest.QUARANTINED} == {
        f"user-bad/{name}" for name in BAD_FILES
    }
    assert sorted(q["upload_key"] for q in drill["quarantined"]) == [
        f"user-bad/{name}" for name in sorted(BAD_FILES)
    ]
    items = drill["items"]
    assert items["item_id"].is_unique
    assert items.groupby("image_sha256").size().to_dict() == drill["labels"]
    assert drill["landing"] == []


def test_s3_outage_resends_only_the_answers_lost_with_the_server(
    s3_stopped_mid_batch: dict,
) -> None:
    drill = s3_stopped_mid_batch
    first = drill["tries"][0]
    lost = first.model_calls_in_try - first.state["answers_saved"]
    # Every photo is answered once; only answers whose save failed are asked for again.
    assert drill["total_calls"] == GOOD_PHOTOS + lost


def test_s3_client_retries_a_dead_endpoint_a_bounded_number_of_times(
    s3_stopped_mid_batch: dict,
) -> None:
    wire = s3_stopped_mid_batch["wire"]
    assert wire.failed_sends and len(wire.sleeps) >= 1
    # botocore's legacy policy: base * 2^(n-1) with a random base in [0, 1), at most 4 retries.
    assert all(0 <= s < 8 for s in wire.sleeps)


# --- S3 not ready when ingest starts ---------------------------------------------------------


@pytest.fixture(scope="module")
def s3_not_ready(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Landing holds uploads, the server is down when discover runs, then it comes up."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    home = tmp_path_factory.mktemp("s3-not-ready")
    server = S3Server()
    server.start()
    try:
        with _s3_lake(home, server):
            keys, _labels = _seed_uploads(home)
            server.stop()  # MinIO not up (yet, or again) when the scheduler starts a run
            listening = server.listening()
            day = datetime.now(UTC).date().isoformat()
            _reset_caches()
            with _counting_s3_attempts(sleep=True) as wire:
                started = time.monotonic()
                _, error = _attempt(ingest.discover)
                seconds_to_fail = time.monotonic() - started  # reported, not asserted
            server.start()
            _reset_caches()  # the task's next try is a new process
            with _simulator(home / "script.jsonl"):
                batches = ingest.discover()
                blueprint = blueprints.resolve(PROMPT)
                results = [
                    ingest.process_batch(b, run_id="r", day=day, blueprint=blueprint)
                    for b in batches
                ]
            settings = config.get_settings()
            yield {
                "server": server,
                "keys": keys,
                "listening": listening,
                "error": error,
                "seconds_to_fail": seconds_to_fail,
                "wire": wire,
                "totals": ingest.commit_and_report(results),
                "state": ingest.manifest_state(settings),
                "landing": ingest.landing_keys(settings),
            }
    finally:
        server.stop()


def test_s3_not_ready_fails_discover_with_an_error_naming_the_endpoint(
    s3_not_ready: dict,
) -> None:
    assert not s3_not_ready["listening"]
    text = _error_text(s3_not_ready["error"])
    assert "EndpointConnectionError" in text and s3_not_ready["server"].url in text, text


def test_s3_not_ready_is_retried_by_the_client_then_given_up(s3_not_ready: dict) -> None:
    wire = s3_not_ready["wire"]
    # One S3 call failed (discover's first), each attempt refused, with a sleep between tries.
    assert len(wire.failed_sends) >= 2
    assert len(wire.sleeps) == len(wire.failed_sends) - 1
    assert all(0 <= s < 8 for s in wire.sleeps)


def test_s3_not_ready_the_next_try_ingests_everything(s3_not_ready: dict) -> None:
    state, keys = s3_not_ready["state"], s3_not_ready["keys"]
    assert sorted(state) == keys
    assert {row["status"] for row in state.values()} <= ingest.FINAL_STATUSES
    assert s3_not_ready["totals"]["accepted"] == GOOD_PHOTOS
    assert s3_not_ready["totals"]["failed"] == {}
    assert s3_not_ready["landing"] == []


# --- MLflow down -----------------------------------------------------------------------------


class MlflowServer:
    """A real ``mlflow server`` subprocess on a free loopback port (SQLite backend)."""

    def __init__(self, backend: Path, artifacts: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._cmd = [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{backend}",
            "--artifacts-destination",
            artifacts.as_uri(),
        ]
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        """Start the process; ``wait_healthy`` waits until it answers."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        with self._log.open("ab") as out:
            self._proc = subprocess.Popen(self._cmd, env=env, stdout=out, stderr=out)

    def wait_healthy(self) -> None:
        assert self._proc is not None, "launch() first"
        wait_healthy(
            self._proc,
            f"{self.url}/health",
            stack.MLFLOW_START_TIMEOUT_S,
            "mlflow server",
            log=self._log,
        )

    def stop(self) -> None:
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        stop_process(proc)

    def _log_text(self) -> str:
        return self._log.read_text(errors="replace")[-5000:]


@dataclass
class HttpRetries:
    """The MLflow client's urllib3 retries: failed attempts and the backoffs it would sleep."""

    attempts: int = 0
    backoffs: list[float] = field(default_factory=list)


@contextlib.contextmanager
def _recording_urllib3_retries() -> Iterator[HttpRetries]:
    """Count urllib3 retry increments and record (not sleep) its backoffs."""
    from urllib3.util.retry import Retry

    seen = HttpRetries()
    real_increment = Retry.increment

    def increment(self: Retry, *args: Any, **kwargs: Any) -> Retry:
        seen.attempts += 1
        return real_increment(self, *args, **kwargs)

    def sleep_backoff(self: Retry) -> None:
        seen.backoffs.append(self.get_backoff_time())

    patch = pytest.MonkeyPatch()
    patch.setattr(Retry, "increment", increment)
    patch.setattr(Retry, "_sleep_backoff", sleep_backoff)
    try:
        yield seen
    finally:
        patch.undo()


def _local_mlflow_files(*folders: Path) -> set[Path]:
    """MLflow stores a client could fall back to on local disk."""
    found: set[Path] = set()
    for folder in folders:
        for pattern in ("mlflow.db", "mlruns", "mlflow-artifacts"):
            found |= set(folder.glob(pattern))
    return found


@pytest.fixture(scope="module")
def mlflow_down(
    tmp_path_factory: pytest.TempPathFactory, empty_mlflow_db: Path
) -> Iterator[dict[str, Any]]:
    """Register and promote on a real MLflow server, stop it, then ask for what to serve."""
    tmp = tmp_path_factory.mktemp("mlflow-down")
    backend = tmp / "server.db"
    shutil.copy(empty_mlflow_db, backend)  # already migrated: the server starts faster
    server = MlflowServer(backend, tmp / "artifacts", tmp / "mlflow.log")
    server.launch()
    # MLflow loads its request-header plugins (and with them feast) on the first HTTP call:
    # a one-off import that can run while the server boots.
    import mlflow.tracking.request_header.registry  # noqa: F401

    server.wait_healthy()
    home = tmp / "home"
    try:
        with (
            _environment(home, MLFLOW_TRACKING_URI=server.url),
            _Records("dresscode.registry.prompt_registry") as logged,
        ):
            registry.sync(PROMPT)
            # Registered, not promoted: the one case where serving() falls back to git (v2).
            unpromoted = registry.serving(PROMPT)
            registry.promote(PROMPT, 1, actor="outage-drill", reason="a production to serve")
            promoted = registry.serving(PROMPT)
            pinned = registry.blueprint_for(promoted)
            up_lines = logged.messages(logging.INFO)

            server.stop()
            del logged.records[:]
            local_before = _local_mlflow_files(home, Path.cwd())
            with _recording_urllib3_retries() as retries:
                served, error = _attempt(lambda: registry.serving(PROMPT))
                attempts, backoffs = retries.attempts, list(retries.backoffs)
                loaded, load_error = _attempt(lambda: registry.load(PROMPT, 1))
            pinned_while_down = registry.blueprint_for(promoted)
            yield {
                "url": server.url,
                "unpromoted": unpromoted,
                "promoted": promoted,
                "up_lines": up_lines,
                "pinned": pinned,
                "pinned_while_down": pinned_while_down,
                "served": served,
                "error": error,
                "loaded": loaded,
                "load_error": load_error,
                "attempts": attempts,
                "backoffs": backoffs,
                "down_lines": logged.messages(logging.INFO),
                "new_local_files": _local_mlflow_files(home, Path.cwd()) - local_before,
            }
    finally:
        server.stop()


def test_mlflow_serving_worked_while_the_server_was_up(mlflow_down: dict) -> None:
    assert mlflow_down["unpromoted"]["source"] == "git (nothing promoted yet)"
    assert any("Serving the newest blueprint in git" in m for m in mlflow_down["up_lines"])
    assert mlflow_down["promoted"]["source"] == "registry production"
    assert mlflow_down["promoted"]["ref"] == f"{PROMPT}@1"
    assert mlflow_down["unpromoted"]["ref"] != mlflow_down["promoted"]["ref"]  # git has a v2


def test_mlflow_down_fails_resolve_prompt_with_an_error_naming_the_server(
    mlflow_down: dict,
) -> None:
    for key in ("error", "load_error"):
        error = mlflow_down[key]
        assert isinstance(error, registry.RegistryError), _error_text(error)
        assert f"MLflow at {mlflow_down['url']} is unreachable" in str(error), str(error)
        assert "(prompt wardrobe-digitizer)" in str(error)


def test_mlflow_down_never_serves_a_fallback_blueprint(mlflow_down: dict) -> None:
    # No answer at all: not the last production from a cache, not the newest blueprint in git
    # (what serving() gives while nothing is promoted: an outage must not look like that).
    assert mlflow_down["served"] is None and mlflow_down["loaded"] is None
    assert not any("blueprint in git" in m for m in mlflow_down["down_lines"])
    assert not any(m.startswith("serving ") for m in mlflow_down["down_lines"])
    # Nor did a client quietly open a local store instead of the server.
    assert mlflow_down["new_local_files"] == set()


def test_mlflow_down_spares_a_run_that_resolved_its_prompt_before(mlflow_down: dict) -> None:
    # blueprint_for (the process tasks) reads git and checks the hash resolve_prompt pinned:
    # it never calls MLflow, so a run already under way keeps serving the same version.
    assert mlflow_down["pinned_while_down"] == mlflow_down["pinned"]
    assert mlflow_down["pinned"].ref == mlflow_down["promoted"]["ref"]
    assert mlflow_down["pinned"].content_hash() == mlflow_down["promoted"]["content_hash"]


def test_mlflow_client_retries_a_dead_server_with_growing_backoff(mlflow_down: dict) -> None:
    attempts, backoffs = mlflow_down["attempts"], mlflow_down["backoffs"]
    assert attempts >= 2  # it retries before giving up
    assert len(backoffs) == attempts - 1
    assert backoffs == sorted(backoffs)  # exponential, capped


# --- Weather provider down -------------------------------------------------------------------

CACHED_CITIES = ("Bergen", "Berlin", "Cape Town", "Dubai")  # fetched before the outage
NEW_CITIES = ("London", "Madrid", "Oslo", "Paris", "Sydney")  # first asked during it


def _profiles(cities: tuple[str, ...], offset: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {"user_id": f"user-{offset + i:03d}", "city": city, "last_active_at": now}
        for i, city in enumerate(cities)
    ]


def _weather_conn(url: str) -> str:
    return json.dumps({"conn_type": "http", "host": url, "extra": {"geocoding_url": url}})


def _weather_run(run_id: str) -> tuple[dict[str, Any] | None, BaseException | None]:
    """find_cities + fetch_forecasts, as the weather_ingest DAG runs them."""
    config.get_settings.cache_clear()
    cities = feature_jobs.cities_of_active_users()
    day = datetime.now(UTC).date()
    return _attempt(lambda: feature_jobs.ingest_weather(cities, day=day, run_id=run_id))


@pytest.fixture(scope="module")
def weather_down(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A good run, the provider down for the next (new users in new cities), then back."""
    home = tmp_path_factory.mktemp("weather-down")
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens here
    sleeps: list[float] = []
    runs: dict[str, tuple[dict[str, Any] | None, BaseException | None]] = {}
    # The cache TTL is 0 so every run asks the provider (as when the outage outlasts the TTL).
    with (
        running_weather_stub(seed=3) as stub,
        _environment(home, DRESSCODE_WEATHER_CACHE_TTL_S="0") as patch,
    ):
        day = datetime.now(UTC).date()
        users_mod.write_profiles(_profiles(CACHED_CITIES, 0), day=day.isoformat())
        patch.setenv("AIRFLOW_CONN_WEATHER_API", _weather_conn(stub))
        runs["before"] = _weather_run("scheduled__before")

        users_mod.write_profiles(_profiles(NEW_CITIES, 100), day=day.isoformat())
        patch.setenv("AIRFLOW_CONN_WEATHER_API", _weather_conn(dead))
        with (
            pytest.MonkeyPatch.context() as retry_patch,
            _Records("dresscode.features.weather", "dresscode.features.tasks") as logged,
        ):
            recording = functools.partial(weather_mod.RetryPolicy, sleep=sleeps.append)
            retry_patch.setattr(weather_mod, "RetryPolicy", recording)
            runs["outage"] = _weather_run("scheduled__outage")

        patch.setenv("AIRFLOW_CONN_WEATHER_API", _weather_conn(stub))
        runs["after"] = _weather_run("scheduled__after")
        settings = config.get_settings()
        reports = {
            name: lake.read_json(
                lake.partition("reports", day, settings)
                / f"weather-run-{feature_jobs._part(f'scheduled__{name}')}.json"
            )
            for name in runs
        }
        yield {
            "runs": runs,
            "reports": reports,
            "sleeps": sleeps,
            "records": logged.records,
            "rows": lake.read_table("weather", settings),
            "max_attempts": settings.weather_max_attempts,
            "policy": weather_mod.RetryPolicy(),
        }


def _retry_lines(records: list[logging.LogRecord]) -> list[tuple[Any, ...]]:
    """(kind, city, attempt, max, reason, delay) of every 'retrying in' log line."""
    return [r.args for r in records if str(r.msg).startswith("weather %s for %s attempt")]


def test_weather_before_the_outage_fills_the_cache(weather_down: dict) -> None:
    summary, error = weather_down["runs"]["before"]
    assert error is None, _error_text(error)
    assert summary["with_weather"] == len(CACHED_CITIES) and summary["missing"] == {}


def test_weather_outage_fails_the_run_saying_why(weather_down: dict) -> None:
    summary, error = weather_down["runs"]["outage"]
    cities = len(CACHED_CITIES) + len(NEW_CITIES)
    assert summary is None and isinstance(error, feature_jobs.FeatureJobError)
    assert f"weather missing for {len(NEW_CITIES)} of {cities} cities" in str(error)
    assert "weather_api connection" in str(error)


def test_weather_outage_serves_known_cities_from_the_stale_cache(weather_down: dict) -> None:
    report = weather_down["reports"]["outage"]
    assert report["stale_used"] == report["with_weather"] == len(CACHED_CITIES)
    rows = weather_down["rows"]
    stale = rows[rows["source"] == "stale_cache"]
    assert sorted(stale["city"]) == sorted(CACHED_CITIES)
    fresh_before = rows[(rows["source"] == "provider") & rows["city"].isin(CACHED_CITIES)]
    # The stale rows carry the forecast of the run before, stamped when it was fetched.
    assert set(stale["fetched_at"]) <= set(fresh_before["fetched_at"])
    stale_lines = [
        m for m in (r.getMessage() for r in weather_down["records"]) if "cached forecast" in m
    ]
    assert len(stale_lines) == len(CACHED_CITIES)


def test_weather_outage_marks_new_cities_missing_with_a_reason(weather_down: dict) -> None:
    report = weather_down["reports"]["outage"]
    reasons = {m["city"]: m["reason"] for m in report["missing_cities"]}
    assert set(reasons) == set(NEW_CITIES)
    asked = NEW_CITIES[: weather_provider.CIRCUIT_BREAK_AFTER]
    assert {c: reasons[c] for c in asked} == dict.fromkeys(asked, "connection_error")
    not_asked = NEW_CITIES[weather_provider.CIRCUIT_BREAK_AFTER :]
    assert {c: reasons[c] for c in not_asked} == dict.fromkeys(not_asked, "provider_unavailable")


def test_weather_outage_retries_with_bounded_backoff_then_opens_the_breaker(
    weather_down: dict,
) -> None:
    lines, attempts = _retry_lines(weather_down["records"]), weather_down["max_attempts"]
    retried = {(kind, city) for kind, city, *_ in lines}
    breaker = weather_provider.CIRCUIT_BREAK_AFTER
    # Each endpoint is tried for the first CIRCUIT_BREAK_AFTER cities only, then not asked.
    assert retried == {("forecast", c) for c in CACHED_CITIES[:breaker]} | {
        ("search", c) for c in NEW_CITIES[:breaker]
    }
    assert len(lines) == len(retried) * (attempts - 1)
    assert weather_down["reports"]["outage"]["provider_calls"] == breaker * attempts
    policy = weather_down["policy"]
    for _kind, _city, attempt, _max, reason, delay in lines:
        assert reason == "connection_error"
        assert 0 <= delay <= min(policy.backoff_max_s, policy.backoff_base_s * 2 ** (attempt - 1))
    assert weather_down["sleeps"] == [line[-1] for line in lines]  # what was logged was slept


def test_weather_recovers_fully_once_the_provider_is_back(weather_down: dict) -> None:
    summary, error = weather_down["runs"]["after"]
    assert error is None, _error_text(error)
    assert summary["with_weather"] == len(CACHED_CITIES) + len(NEW_CITIES)
    assert summary["missing"] == {} and summary["stale_used"] == 0
