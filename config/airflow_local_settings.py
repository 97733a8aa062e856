"""Airflow's local-settings hook (Airflow imports this module in every one of its processes).

It lives in ``$AIRFLOW_HOME/config/`` in the image and on ``PYTHONPATH`` in the local stack.
Its one job: let a process that forks task processes (the scheduler's LocalExecutor, a Celery
worker) import the tasks' heavy libraries once, when ``DRESSCODE_WORKER_PRELOAD`` is set on it.
"""

from dresscode.orchestration.preload import preload_from_env

preload_from_env()
