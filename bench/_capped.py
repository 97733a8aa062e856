"""Shared by the benchmarks: run one case in a child process under a resident-memory cap.

Imported as ``from _capped import run_capped`` (the benchmarks run as scripts from bench/).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path


def run_capped(cmd: list[str], cap_mb: int) -> tuple[int, str, str, bool]:
    """Run a case; kill it if its resident memory passes ``cap_mb`` (checked every 0.2 s).

    Returns (exit code, stdout, stderr, whether it was killed for memory).
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        capped = False
        while proc.poll() is None:
            time.sleep(0.2)
            if cap_mb and child_rss_mb(proc.pid) > cap_mb:
                proc.kill()
                capped = True
        proc.wait()
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read(), err.read(), capped


def child_rss_mb(pid: int) -> float:
    """Resident memory of a live process in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
