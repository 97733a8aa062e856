"""A vLLM-faithful simulator of Gemma 4 behind the OpenAI-compatible API.

SIMULATOR — not a real model; quality numbers are not Gemma's. It serves the same routes as
vLLM (``/v1/chat/completions``, ``/v1/models``, ``/health``, ``/metrics``) with schema-valid
answers, a latency and concurrency model, seeded behaviour profiles and fault injection, so
the pipelines, tests and benchmarks run without a GPU. Run ``python -m dresscode.sim --help``
for the options; ``dresscode.sim.testing`` starts one from tests and benchmarks.

Nothing heavy is imported here: ``dresscode.sim.testing`` and ``dresscode.sim.server`` pull
in FastAPI and uvicorn when used.
"""

from __future__ import annotations

import sys


def command(port: int, *cli_args: str, host: str = "127.0.0.1") -> list[str]:
    """The command line that serves the simulator in its own process on ``host:port``."""
    return [sys.executable, "-m", "dresscode.sim", "--host", host, "--port", str(port), *cli_args]


def main(argv: list[str] | None = None) -> int:
    """Run the simulator server (``dresscode sim``); see ``dresscode.sim.__main__``."""
    from dresscode.sim.__main__ import main as _main

    return _main(argv)


__all__ = ["command", "main"]
