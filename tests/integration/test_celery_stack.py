"""The local stack on the CeleryExecutor: two workers, Redis and PostgreSQL on loopback.

What runs: the stack's own ``start`` with ``DRESSCODE_EXECUTOR=celery`` in a scratch home (its
own ports, a scratch PostgreSQL database, its own Redis DB index) — the simulator, the MLflow
server, Airflow's api-server, scheduler and dag-processor, and two ``airflow celery
worker`` processes. 300 photos in landing (``DRESSCODE_TEST_CELERY_PHOTOS``: 500 is the
issue's drill), one ``wardrobe_ingest`` run in batches of 50; four batches fit the `llm` pool
at once and each worker runs one task at a time, so both workers
take batches. While a batch runs, its worker is killed with SIGKILL (the worker and every
process under it: a lost machine); the scheduler notices the silence after the heartbeat
timeout and the batch is retried on the other worker.

Two schedulers run against the same PostgreSQL database all along (a second ``airflow
scheduler`` beside the stack's: what an HA deployment, or an operator who starts one too many,
does). Airflow's row locks make them share the work.

Then the broker drill: another run, and the stack's Redis (a redis-server of the test's own,
its queue in an append-only file) killed with SIGKILL while a batch runs, left down 15 s, and
started again: ``make status`` says the broker is not reachable meanwhile, the worker's log
says it cannot connect, and the run completes afterwards with nothing lost or done twice.

Checked: the run succeeds; both workers ran batches (the task instances' hostnames, first
tries included); every photo has exactly one outcome (0 lost), no photo has two accepted
rows and no item is written twice (0 duplicates); both schedulers stayed alive and the run's
tasks were queued by them; the worker-lost alert names the killed worker. The model is the
project's vLLM simulator.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dresscode.core import config

# Starting the stack, seeding and the run with its retry are the first test's setup.
pytestmark = pytest.mark.timeout(900)

# The drill is 500 photos (DRESSCODE_TEST_CELERY_PHOTOS=500, run and reported in
# docs/deploy.md); `make test` runs 300 — both workers and the kill in six batches — in less
# of the suite's time on 2 cores.
PHOTOS = int(os.environ.get("DRESSCODE_TEST_CELERY_PHOTOS", "300"))
BATCH = 50
OUTAGE_PHOTOS = 100  # the broker drill's run: two batches of new photos
OUTAGE_S = 15  # how long the broker stays down, mid-batch
REDIS_SERVER = Path("/usr/bin/redis-server")
# No triggerer (nothing here defers), no embedding server, no stylist: less for 2 cores to run
# beside the rest of `make test`.
PARTS = ("simulator", "mlflow", "api-server", "scheduler", "dag-processor", "worker-1", "worker-2")


@dataclass
class Broker:
    """The stack's Redis broker: a redis-server of the test's own (the drill kills it), its
    queue kept in an append-only file as a production Redis would, so a restart loses none."""

    workdir: Path
    port: int
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        if not REDIS_SERVER.exists():
            message = f"CELERY BROKER DRILL NOT RUN: {REDIS_SERVER} is missing"
            if os.environ.get("CI"):  # CI installs it: missing there is a failure
                pytest.fail(message)
            pytest.skip(message)
        self.proc = subprocess.Popen(
            [str(REDIS_SERVER), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "yes", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                if redis.Redis(port=self.port, socket_timeout=1).ping():
                    return
            except redis.RedisError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    import psycopg

    from dresscode.local import processes, stack
    from dresscode.sim.testing import free_port

    home = tmp_path_factory.mktemp("celery-home")
    db = f"dresscode_celery_{uuid.uuid4().hex[:8]}"
    broker = Broker(tmp_path_factory.mktemp("broker"), free_port())
    broker.start()
    monkeypatch = pytest.MonkeyPatch()
    for name in ("AIRFLOW", "SIM", "SERVE", "EMBEDDINGS", "MLFLOW"):
        monkeypatch.setenv(f"DRESSCODE_{name}_PORT", str(free_port()))
    for knob in ("DRESSCODE_LAKE_URI", "DRESSCODE_LANDING_URI", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(knob, raising=False)
    settings = {
        "DRESSCODE_HOME": str(home),
        "DRESSCODE_EXECUTOR": "celery",
        "DRESSCODE_AIRFLOW_DB_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}",
        "DRESSCODE_CELERY_BROKER_URL": broker.url,
        "DRESSCODE_CELERY_WORKERS": "2",
        "DRESSCODE_CELERY_WORKER_CONCURRENCY": "1",
        "DRESSCODE_INGEST_BATCH_SIZE": str(BATCH),
        "DRESSCODE_LLM_MAX_CONCURRENCY": "8",  # a batch takes 8 of the pool's 32 slots
        # What the ingest tasks import (not feast, evidently): less for the workers to load.
        "DRESSCODE_WORKER_PRELOAD": "pandas,pyarrow,deltalake,PIL,pillow_heif,httpx,openai,boto3,mlflow",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        # The DAG files do not change during the test: parse them once, not every 30 s.
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    config.get_settings.cache_clear()
    ports = stack.Ports.from_env()
    second: int | None = None
    try:
        stack.start(ports, only=PARTS)
        scheduler = processes.Part("scheduler-2", [str(stack.venv_bin() / "airflow"), "scheduler"])
        second = processes.start_part(scheduler, stack.airflow_env(ports))
        client = stack.api(ports)
        stack.wait_for_dags(client, ["wardrobe_ingest"])
        yield {"client": client, "home": home, "db": db, "broker": broker}
    finally:
        if second is not None:
            processes.stop_part("scheduler-2", second)
        stack.down()
        monkeypatch.undo()
        config.get_settings.cache_clear()
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        broker.kill()


def _worker_pid(name: str) -> int:
    from dresscode.local.processes import recorded_pid

    pid = recorded_pid(name)
    assert pid is not None, f"{name} has no PID file"
    return pid


def _kill_tree(pid: int) -> list[int]:
    """SIGKILL the worker and everything under it at once (a machine that vanished)."""
    import psutil

    root = psutil.Process(pid)
    victims = [root, *root.children(recursive=True)]
    for proc in victims:
        proc.kill()
    psutil.wait_procs(victims, timeout=10)
    return [p.pid for p in victims]


def _batches(client: Any, run_id: str) -> list[dict[str, Any]]:
    tis = client.request(
        "GET",
        f"/api/v2/dags/wardrobe_ingest/dagRuns/{run_id}/taskInstances",
        params={"limit": 500},
    )["task_instances"]
    return [ti for ti in tis if ti["task_id"] == "process"]


def _tries(client: Any, run_id: str, map_index: int) -> list[dict[str, Any]]:
    path = f"/api/v2/dags/wardrobe_ingest/dagRuns/{run_id}/taskInstances/process/{map_index}/tries"
    return client.request("GET", path)["task_instances"]


@pytest.fixture(scope="module")
def killed_run(celery_stack: dict[str, Any]) -> dict[str, Any]:
    from dresscode.local import runs, seed, stack

    client = celery_stack["client"]
    written = seed.seed(PHOTOS, script_path=stack.sim_script(), bad_files=False, size=(320, 240))
    assert written.new == PHOTOS
    run_id = runs.start_run(client, "wardrobe_ingest")

    victim: dict[str, Any] | None = None
    give_up = time.monotonic() + 600
    while victim is None and time.monotonic() < give_up:
        running = [b for b in _batches(client, run_id) if b["state"] == "running" and b["hostname"]]
        if running:
            victim = running[0]
        else:
            time.sleep(0.5)
    assert victim is not None, "no batch ever ran"
    worker = victim["hostname"].split("@", 1)[0]
    killed = _kill_tree(_worker_pid(worker))
    state = client.wait_for_run("wardrobe_ingest", run_id, 900)
    return {
        "client": client,
        "db": celery_stack["db"],
        "run_id": run_id,
        "state": state,
        "victim": victim,
        "worker": victim["hostname"],
        "killed": killed,
    }


def test_the_run_survives_a_worker_killed_mid_batch(killed_run: dict[str, Any]) -> None:
    assert killed_run["state"] == "success"
    client, run_id = killed_run["client"], killed_run["run_id"]
    batches = _batches(client, run_id)
    assert len(batches) == PHOTOS // BATCH
    assert {b["state"] for b in batches} == {"success"}
    tries = _tries(client, run_id, killed_run["victim"]["map_index"])
    assert tries[0]["hostname"] == killed_run["worker"]
    assert tries[-1]["state"] == "success" and tries[-1]["hostname"] != killed_run["worker"]


def test_both_workers_ran_batches(killed_run: dict[str, Any]) -> None:
    client, run_id = killed_run["client"], killed_run["run_id"]
    hosts = {
        t["hostname"].split("@", 1)[0]
        for b in _batches(client, run_id)
        for t in _tries(client, run_id, b["map_index"])
        if t["hostname"]
    }
    assert hosts == {"worker-1", "worker-2"}


def test_no_photo_is_lost_or_digitized_twice(killed_run: dict[str, Any]) -> None:
    from dresscode.core import lake

    manifests = lake.read_table("manifests")
    # 0 lost: each of the PHOTOS uploads seeded (all new, none before) has an outcome.
    assert manifests["upload_key"].nunique() == PHOTOS
    assert set(manifests["status"]) <= {"accepted", "quarantined", "digitize_failed"}
    accepted = manifests[manifests["status"] == "accepted"]
    assert not accepted["upload_key"].duplicated().any()  # 0 duplicates
    items = lake.read_table("wardrobe_items")
    assert not items["item_id"].duplicated().any()
    per_photo = items.groupby("upload_key").size()
    expected = accepted.set_index("upload_key")["n_items"]
    assert (per_photo.reindex(expected.index, fill_value=0) == expected).all()


def test_two_schedulers_stayed_alive_and_queued_the_run_between_them(
    killed_run: dict[str, Any],
) -> None:
    import psycopg

    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={killed_run['db']}") as conn:
        alive = conn.execute(
            "SELECT id FROM job WHERE job_type = 'SchedulerJob' AND state = 'running' "
            "AND latest_heartbeat > now() - interval '60 seconds'"
        ).fetchall()
        queued_by = conn.execute(
            "SELECT DISTINCT queued_by_job_id FROM task_instance "
            "WHERE dag_id = 'wardrobe_ingest' AND run_id = %s",
            (killed_run["run_id"],),
        ).fetchall()
    schedulers = {row[0] for row in alive}
    assert len(schedulers) == 2
    assert {row[0] for row in queued_by} <= schedulers  # and nothing ran twice: above


def test_the_alert_names_the_lost_worker(killed_run: dict[str, Any]) -> None:
    from dresscode.orchestration import alerts

    lost = [a for a in alerts.read_alerts() if a["kind"] == "worker_lost"]
    assert lost, "no worker-lost alert"
    [alert] = lost
    assert alert["details"]["worker"] == killed_run["worker"]
    assert killed_run["worker"] in alert["summary"]
    assert alert["task_id"] == "process" and alert["map_index"] == killed_run["victim"]["map_index"]


def test_make_status_reports_the_dead_worker(killed_run: dict[str, Any], capsys) -> None:
    from dresscode.local import stack

    assert stack.status() == 0
    out = capsys.readouterr().out
    dead = killed_run["worker"].split("@", 1)[0]
    alive = {"worker-1", "worker-2"} - {dead}
    assert f"celery {dead}: NOT ANSWERING" in out
    assert f"celery {alive.pop()}: answering" in out
    assert "celery broker  reachable" in out and "metadata DB    reachable" in out


def _wait_until_no_run_is_due(client: Any) -> None:
    """Until no ``wardrobe_ingest`` run is queued or running and the next scheduled one is
    more than 90 s away: the DAG is unpaused and runs every 15 minutes, one run at a
    time, so a scheduled run queued behind the first run (or due during the seeding) would
    take some of the drill's photos before the drill's own run starts (seen in CI: the
    drill's run had one batch, the scheduled run the other). Seeding and triggering take
    seconds; a run created after ours waits behind it."""
    from datetime import UTC, datetime, timedelta

    give_up = time.monotonic() + 1200
    while time.monotonic() < give_up:
        active = [r for r in client.runs("wardrobe_ingest") if r["state"] in ("queued", "running")]
        due = client.dag("wardrobe_ingest").get("next_dagrun_run_after")
        soon = due is not None and datetime.fromisoformat(due) < datetime.now(UTC) + timedelta(
            seconds=90
        )
        if not active and not soon:
            return
        time.sleep(2)
    pytest.fail("wardrobe_ingest never went quiet before the broker drill")


@pytest.fixture(scope="module")
def broker_outage(celery_stack: dict[str, Any], killed_run: dict[str, Any]) -> dict[str, Any]:
    """After the killed-worker run: another run, and the broker killed with SIGKILL while its
    first batch runs; ``make status`` is read during the outage, then Redis comes back."""
    from dresscode.local import runs, seed, stack

    client, broker = celery_stack["client"], celery_stack["broker"]
    _wait_until_no_run_is_due(client)
    seed.seed(OUTAGE_PHOTOS, script_path=stack.sim_script(), start=PHOTOS, bad_files=False,
              size=(320, 240))  # fmt: skip
    run_id = runs.start_run(client, "wardrobe_ingest")
    give_up = time.monotonic() + 300
    while not any(b["state"] == "running" for b in _batches(client, run_id)):
        assert time.monotonic() < give_up, "no batch of the drill's run ever ran"
        time.sleep(0.5)
    broker.kill()
    time.sleep(OUTAGE_S)
    status = io.StringIO()
    with contextlib.redirect_stdout(status):
        stack.status()
    broker.start()
    state = client.wait_for_run("wardrobe_ingest", run_id, 900)
    logs = celery_stack["home"] / "logs"
    worker_logs = "".join(f.read_text(errors="replace") for f in logs.glob("worker-*.log"))
    return {"run_id": run_id, "state": state, "status": status.getvalue(), "logs": worker_logs}


def test_a_broker_outage_mid_run_is_said_and_the_run_completes_after_it(
    broker_outage: dict[str, Any], celery_stack: dict[str, Any]
) -> None:
    assert "celery broker  NOT REACHABLE" in broker_outage["status"], broker_outage["status"]
    assert "Connection to broker lost" in broker_outage["logs"]
    assert "Cannot connect to redis://" in broker_outage["logs"]  # the URL's password masked
    assert broker_outage["state"] == "success"
    # Its batches: the drill's photos (no scheduled run took any: see the fixture), and any
    # the first run left in landing to retry (a photo whose call failed in the killed batch).
    batches = _batches(celery_stack["client"], broker_outage["run_id"])
    assert len(batches) >= OUTAGE_PHOTOS // BATCH and {b["state"] for b in batches} == {"success"}


def test_after_the_broker_outage_no_photo_is_lost_or_digitized_twice(
    broker_outage: dict[str, Any],
) -> None:
    from dresscode.core import lake

    manifests = lake.read_table("manifests")
    assert manifests["upload_key"].nunique() == PHOTOS + OUTAGE_PHOTOS
    accepted = manifests[manifests["status"] == "accepted"]
    assert not accepted["upload_key"].duplicated().any()
    assert not lake.read_table("wardrobe_items")["item_id"].duplicated().any()
