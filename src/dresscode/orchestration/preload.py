"""Heavy imports paid once per worker, not once per task.

Airflow's LocalExecutor (in the scheduler) and a Celery worker fork their task processes without
exec: a module the forking process has imported is already in every task's ``sys.modules``.
Feast (~18 s here), Evidently (~20 s) and MLflow (~10 s) were paid again by every task process
that used them; imported by the worker before it forks, they cost each task nothing (the pages
are shared copy-on-write). Only imports: no client, thread, pool or event loop is created here,
so nothing that cannot survive a fork exists yet when the worker forks.

``config/airflow_local_settings.py`` calls :func:`preload_from_env` in every Airflow process;
only processes started with ``DRESSCODE_WORKER_PRELOAD`` set import anything (the local stack
sets it on the scheduler and the Celery workers, not on the api-server or the dag-processor).
"""

from __future__ import annotations

import importlib
import os
import sys
import time

ENV = "DRESSCODE_WORKER_PRELOAD"
# What the tasks import, the heaviest (MLflow, Feast, Evidently) last (``DRESSCODE_WORKER_PRELOAD=all`` takes every one).
PRELOADABLE = (
    "pandas",
    "pyarrow",
    "deltalake",
    "PIL",
    "pillow_heif",
    "httpx",
    "openai",
    "boto3",
    "mlflow",
    "feast",
    "evidently",
)
# Submodules a task imports that the package's own import does not (measured: ~1 s for dask).
SUBMODULES = {"feast": ("feast.infra.offline_stores.dask",)}


def modules_to_preload(raw: str) -> list[str]:
    """The modules ``raw`` (the setting's value) names: ``all``, or a comma-separated subset."""
    names = [part.strip() for part in raw.split(",") if part.strip()]
    if [n.lower() for n in names] == ["all"]:
        return list(PRELOADABLE)
    by_key = {name.lower(): name for name in PRELOADABLE}
    unknown = sorted(n for n in names if n.lower() not in by_key)
    if unknown:
        raise ValueError(
            f"{ENV}: unknown modules {unknown}; choose from {', '.join(PRELOADABLE)} or 'all'"
        )
    return [by_key[n.lower()] for n in names]


def preload(modules: list[str]) -> dict[str, float]:
    """Import ``modules``; returns seconds per module. A module that fails to import is reported
    and skipped: the task that needs it will then fail with the real error, in its own log."""
    took: dict[str, float] = {}
    for name in modules:
        started = time.perf_counter()
        try:
            for module in (name, *SUBMODULES.get(name, ())):
                importlib.import_module(module)
        except Exception as exc:  # a worker must start even so
            print(
                f"dresscode worker preload: could not import {name} ({exc}); its tasks will",
                file=sys.stderr,
                flush=True,
            )
            continue
        took[name] = time.perf_counter() - started
    return took


def preload_from_env() -> dict[str, float]:
    raw = os.environ.get(ENV, "")
    if not raw.strip():
        return {}
    try:
        modules = modules_to_preload(raw)
    except ValueError as exc:
        print(f"dresscode worker preload skipped: {exc}", file=sys.stderr, flush=True)
        return {}
    took = preload(modules)
    # Printed, not logged: Airflow imports this hook before it configures logging.
    print(
        "dresscode worker preload: imported "
        + ", ".join(f"{m} {s:.1f}s" for m, s in took.items())
        + f" ({sum(took.values()):.1f} s), before forking task processes",
        file=sys.stderr,
        flush=True,
    )
    return took
