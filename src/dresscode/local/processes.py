"""The local stack's processes: started in their own sessions, their PIDs (and start times)
recorded under ``<home>/run``, so ``down`` stops exactly what ``up`` started and a PID reused by
another program is never taken for ours (:mod:`dresscode.local.stack`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from dresscode.core.config import REPO_ROOT, get_settings


class StackError(RuntimeError):
    """The stack cannot start or stop; the message says why and what to do."""


@dataclass(frozen=True)
class Part:
    name: str
    argv: list[str]
    port: int | None = None
    env: tuple[tuple[str, str], ...] = ()  # on top of the stack's environment, for this part


def home() -> Path:
    return get_settings().home


def run_dir() -> Path:
    return home() / "run"


def pid_file(name: str) -> Path:
    return run_dir() / f"{name}.pid"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def recorded(name: str) -> tuple[int, str | None] | None:
    """(pid, start time) from the part's PID file."""
    path = pid_file(name)
    if not path.exists():
        return None
    fields = path.read_text().split()
    if not fields or not fields[0].isdigit():
        return None
    return int(fields[0]), (fields[1] if len(fields) > 1 else None)


def recorded_pid(name: str) -> int | None:
    entry = recorded(name)
    return entry[0] if entry else None


def is_ours(name: str) -> bool:
    """The recorded PID is still the process we started (not a reused PID).

    Compares the start time recorded at launch; /proc/PID/environ cannot be used, because
    Airflow's processes rewrite it when they set their process titles.
    """
    entry = recorded(name)
    return entry is not None and entry[1] is not None and _start_time(entry[0]) == entry[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_part(part: Part, env: dict[str, str]) -> int:
    logs = home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    run_dir().mkdir(parents=True, exist_ok=True)
    with (logs / f"{part.name}.log").open("ab") as log_fh:
        proc = subprocess.Popen(
            part.argv,
            env={**env, **dict(part.env)},
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=REPO_ROOT,
        )
    pid_file(part.name).write_text(f"{proc.pid} {_start_time(proc.pid)}")
    return proc.pid


def stop_part(name: str, pid: int, timeout_s: float = 20.0) -> None:
    """SIGTERM the part's process group, then SIGKILL what is left after ``timeout_s``."""
    for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _groupalive(pid):
            time.sleep(0.2)
        if not _groupalive(pid):
            break
    pid_file(name).unlink(missing_ok=True)


def _groupalive(pgid: int) -> bool:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def log_tail(log_name: str, lines: int = 15) -> str:
    """The last lines of a part's log, indented, for an error message ('' when there is none)."""
    try:
        text = (home() / "logs" / f"{log_name}.log").read_text(errors="replace")
    except OSError:
        return ""
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return "".join(f"\n    | {line}" for line in tail)


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout_s: float,
    log_name: str | None = None,
    progress_every_s: float = 30.0,
) -> None:
    """Poll ``check`` until it is true; every ``progress_every_s`` say what is still awaited (a
    slow first start, e.g. MLflow's migrations on a busy machine, is not a hang). On failure
    the message ends with the part's last log lines: the cause, in the alert itself."""
    started = time.monotonic()
    deadline = started + timeout_s
    next_note = started + progress_every_s
    log = home() / "logs" / f"{log_name}.log" if log_name else None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        if log_name and recorded_pid(log_name) and not alive(recorded_pid(log_name) or 0):
            raise StackError(
                f"{what} exited during start-up; see {log}. Its last lines:{log_tail(log_name)}"
            )
        if time.monotonic() >= next_note:
            waited = time.monotonic() - started
            print(f"  … still waiting for {what} ({waited:.0f} s of {timeout_s:.0f} s)", flush=True)
            next_note += progress_every_s
        time.sleep(1.0)
    hint = f"; see {log}. Its last lines:{log_tail(log_name)}" if log_name else "."
    raise StackError(f"{what} did not become healthy within {timeout_s:.0f} s{hint}")


# --- up / down / status ----------------------------------------------------------------------
