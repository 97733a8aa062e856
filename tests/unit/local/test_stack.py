"""`make up` explains a taken port, a stale PID file and a reused PID instead of tripping on them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dresscode.core import config
from dresscode.local import stack
from dresscode.sim.testing import free_port


@pytest.fixture
def ports(dresscode_home: Path, monkeypatch: pytest.MonkeyPatch) -> stack.Ports:
    monkeypatch.setenv("DRESSCODE_AIRFLOW_PORT", str(free_port()))
    monkeypatch.setenv("DRESSCODE_SIM_PORT", str(free_port()))
    config.get_settings.cache_clear()
    stack.run_dir().mkdir(parents=True, exist_ok=True)
    return stack.Ports.from_env()


def test_stale_pid_file_is_removed_with_a_note(
    ports: stack.Ports, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stack.pid_file("scheduler").write_text(f"{dead.pid} 12345")

    assert stack.running_parts(ports) == {}
    assert not stack.pid_file("scheduler").exists()
    assert f"stale PID file for scheduler (pid {dead.pid} is gone)" in capsys.readouterr().out


def test_a_reused_pid_is_never_taken_for_ours(ports: stack.Ports) -> None:
    # Our own (alive) PID, but with another start time: some other program got that PID.
    stack.pid_file("simulator").write_text(f"{os.getpid()} 1")

    assert stack.running_parts(ports) == {}
    assert not stack.pid_file("simulator").exists()


def test_a_part_we_started_is_recognised(ports: stack.Ports) -> None:
    part = stack.Part("simulator", [sys.executable, "-c", "import time; time.sleep(30)"])
    pid = stack.start_part(part, dict(os.environ))
    try:
        assert stack.running_parts(ports) == {"simulator": pid}
    finally:
        stack.stop_part("simulator", pid)
    assert stack.running_parts(ports) == {}


def test_a_part_that_dies_while_starting_is_reported_with_its_last_log_lines(
    ports: stack.Ports,
) -> None:
    # What the on-call engineer reads first: the cause, not only a path to a log file.
    script = "import sys; print('starting'); print('sqlite3.OperationalError: database is locked'); sys.exit(3)"
    part = stack.Part("mlflow", [sys.executable, "-c", script])
    pid = stack.start_part(part, dict(os.environ))
    with pytest.raises(stack.StackError) as err:
        stack.wait_for("the MLflow server", lambda: False, 30, "mlflow")
    message = str(err.value)
    assert message.startswith("the MLflow server exited during start-up; see ")
    assert message.endswith("| starting\n    | sqlite3.OperationalError: database is locked")
    stack.stop_part("mlflow", pid)


def test_a_slow_start_says_what_it_waits_for_and_a_timeout_shows_the_log(
    ports: stack.Ports, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = stack.home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "mlflow.log").write_text("Creating initial MLflow database tables...\n\n")
    with pytest.raises(stack.StackError) as err:
        stack.wait_for("the MLflow server", lambda: False, 2.5, "mlflow", progress_every_s=1)
    assert "the MLflow server did not become healthy within 2 s; see " in str(err.value)
    assert str(err.value).endswith(
        "Its last lines:\n    | Creating initial MLflow database tables..."
    )
    assert "… still waiting for the MLflow server (" in capsys.readouterr().out


def test_a_wait_that_succeeds_prints_nothing(
    ports: stack.Ports, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter([False, True])
    stack.wait_for("the simulator", lambda: next(answers), 10, "simulator", progress_every_s=60)
    assert capsys.readouterr().out == ""


def test_taken_port_is_explained_before_anything_starts(
    ports: stack.Ports, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports.airflow))
        squatter.listen()
        with pytest.raises(stack.StackError) as err:
            stack.start(ports)
    assert f"Port {ports.airflow} (for the api-server) is taken by another program" in str(
        err.value
    )
    assert "DRESSCODE_AIRFLOW_PORT=<port> make up" in str(err.value)
    assert list(stack.run_dir().glob("*.pid")) == []


def test_bad_port_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRESSCODE_SIM_PORT", "eighty")
    with pytest.raises(stack.StackError, match="DRESSCODE_SIM_PORT='eighty' is not a TCP port"):
        stack.Ports.from_env()


def test_make_up_runs_the_online_stylist_and_prints_a_curl_line_without_its_key(
    dresscode_home: Path,
) -> None:
    import json as json_module

    ports = stack.Ports(airflow=8080, sim=8000, serve=8123)
    serve = next(p for p in stack.parts(ports) if p.name == "serve")
    assert serve.port == 8123 and serve.argv[-3:] == ["serve", "--port", "8123"]
    env = stack.airflow_env(ports)
    key = stack.serve_key_file().read_text().strip()
    assert json_module.loads(env["AIRFLOW_CONN_DRESSCODE_SERVE"])["password"] == key
    assert env["DRESSCODE_SERVE_PORT"] == "8123"
    line = stack.serve_curl(ports)
    assert "curl -N" in line and "http://127.0.0.1:8123/v1/outfits" in line
    assert key not in line and str(stack.serve_key_file()) in line
