"""Run a simulator from tests and benchmarks: in a thread, or in its own process.

``running_simulator`` is the cheap one (same process, background thread). Benchmarks use
``simulator_process`` so the client under test does not share the GIL with the server.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dresscode.sim import command as sim_command
from dresscode.sim.config import SimConfig

STARTUP_TIMEOUT_S = 30.0


@contextlib.contextmanager
def _serving(app: Any, what: str) -> Iterator[str]:
    """Serve an ASGI app on a free loopback port in a background thread; yield its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"{what}-{port}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the {what} did not start (see the log above)")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextlib.contextmanager
def running_simulator(*, wrap: Callable[[Any], Any] | None = None, **options: Any) -> Iterator[str]:
    """Serve a simulator on a free loopback port in a background thread; yield its ``/v1`` URL.

    ``options`` are the CLI options' keyword names (``max_num_seqs=4``,
    ``fixed_latency_ms=50``, ``scripts=[path]``, ``served_model_name=["m=sloppy"]``).
    ``wrap`` puts ASGI middleware in front of it (a flaky gateway in the fault drills).
    """
    from dresscode.sim.server import create_app

    config = SimConfig.from_options(**{"host": "127.0.0.1", **options})
    app = create_app(config)
    with _serving(wrap(app) if wrap else app, "simulator") as url:
        yield f"{url}/v1"


@contextlib.contextmanager
def running_weather_stub(**options: Any) -> Iterator[str]:
    """Serve the Open-Meteo-shaped weather stub on a free loopback port; yield its ``/v1`` URL.

    ``options`` go to ``create_weather_app`` (``seed=1``, ``timeout_fault_s=1.0``). The URL
    serves both ``/forecast`` and ``/search``; the controls live at ``<url>/../_faults`` etc.
    """
    from dresscode.sim.weather import create_weather_app

    with _serving(create_weather_app(**options), "weather stub") as url:
        yield f"{url}/v1"


@contextlib.contextmanager
def simulator_process(*cli_args: str) -> Iterator[str]:
    """Run ``python -m dresscode.sim`` on a free port; yield its ``/v1`` URL once healthy."""
    port = free_port()
    command = sim_command(port, *cli_args)
    process = subprocess.Popen(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(process, f"{base}/health", STARTUP_TIMEOUT_S, "the simulator", poll_s=0.05)
        yield f"{base}/v1"
    finally:
        stop_process(process, timeout_s=10)


def wait_healthy(
    process: subprocess.Popen,
    health_url: str,
    timeout_s: float,
    what: str,
    *,
    log: Path | None = None,
    poll_s: float = 0.25,
) -> None:
    """Wait until ``health_url`` answers 200; RuntimeError if ``process`` exits or time runs out.

    The error carries the tail of ``log`` (the server's output), where the reason usually is.
    """
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}{_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(health_url, timeout=2.0).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} was not healthy within {timeout_s:g}s{_tail(log)}")
        time.sleep(poll_s)


def _tail(log: Path | None) -> str:
    return f":\n{log.read_text(errors='replace')[-5000:]}" if log and log.exists() else ""


def stop_process(process: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """SIGTERM, then SIGKILL what has not exited after ``timeout_s``."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def llm_connection(url: str, model: str, *, max_concurrency: int, timeout_s: float = 30) -> str:
    """The ``dresscode_llm`` Airflow connection (``AIRFLOW_CONN_DRESSCODE_LLM``) for ``url``."""
    extra = {"model": model, "timeout": timeout_s, "max_concurrency": max_concurrency}
    return json.dumps({"conn_type": "dresscode_llm", "host": url, "extra": extra})


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (for servers started by tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
