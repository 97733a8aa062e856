"""Task start-up: what a task process pays for its libraries, with and without the worker preload.

Airflow's LocalExecutor (inside the scheduler) and a Celery worker fork their task processes.
Without a preload, a task imports the libraries it uses itself, in every process: the worker
that forked it had imported Airflow, not pandas, Feast or Evidently. With
``DRESSCODE_WORKER_PRELOAD`` the worker imported them before forking
(``config/airflow_local_settings.py``) and the task finds them in ``sys.modules``.

Measured in one run, as the executors do it: a parent process imports Airflow's task SDK, forks
a child per measurement and the child times the imports of one task's libraries — first
``--repeats`` times "cold" (the parent has not imported them: today's task processes without
the preload), then the parent runs the preload hook and the same children are forked again
("preloaded"). Medians per task and the ratio. The libraries per task are what its code imports
(``grep import`` of the task modules), a lower bound: a task also imports the project's modules.

    .venv/bin/python bench/task_start.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# What each task imports beyond Airflow (its module's imports inside the task functions).
TASKS = {
    "wardrobe_ingest.process": ["pandas", "pyarrow", "deltalake", "PIL.Image", "pillow_heif",
                                "httpx", "openai", "boto3", "mlflow"],
    "style_features.materialize": ["pandas", "pyarrow", "deltalake", "feast",
                                   "feast.infra.offline_stores.dask"],
    "model_monitoring.detect_drift": ["pandas", "pyarrow", "deltalake", "evidently",
                                      "evidently.presets"],
    "prompt_release.evaluate": ["pandas", "openai", "mlflow", "mlflow.genai"],
}  # fmt: skip


def time_in_child(modules: list[str]) -> float:
    """Fork; the child imports ``modules`` and reports the seconds through a pipe."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        import importlib

        started = time.perf_counter()
        for name in modules:
            importlib.import_module(name)
        os.write(write, f"{time.perf_counter() - started:.6f}".encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        took = float(pipe.read())
    os.waitpid(pid, 0)
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import warnings

    warnings.simplefilter("ignore")
    import airflow.sdk  # noqa: F401 - what every task process has before its own imports

    cold = {
        task: [time_in_child(mods) for _ in range(args.repeats)] for task, mods in TASKS.items()
    }
    os.environ["DRESSCODE_WORKER_PRELOAD"] = "all"
    sys.path.insert(0, str(REPO / "config"))
    started = time.perf_counter()
    import airflow_local_settings  # noqa: F401 - the hook, as Airflow imports it

    preload_s = time.perf_counter() - started
    warm = {
        task: [time_in_child(mods) for _ in range(args.repeats)] for task, mods in TASKS.items()
    }

    print(f"worker preload (once per worker, before it forks): {preload_s:.1f} s")
    print(f"| task | imports without preload (median of {args.repeats}) | with preload | ratio |")
    print("|---|---|---|---|")
    for task in TASKS:
        before, after = statistics.median(cold[task]), statistics.median(warm[task])
        ratio = before / after if after > 0 else float("inf")
        print(f"| {task} | {before:.2f} s | {after * 1000:.1f} ms | {ratio:,.0f}x |")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
