"""The host name a task instance records (Airflow's ``[core] hostname_callable``).

Two Celery workers on one machine (the local stack's ``DRESSCODE_EXECUTOR=celery``) share the
machine's name, so the task instances could not say which worker ran them, nor a lost-worker
alert which worker was lost. A worker started with ``DRESSCODE_WORKER_NAME`` records
``<name>@<fqdn>``; any other process records the plain FQDN, as Airflow's default does.
"""

from __future__ import annotations

import os
import socket

ENV = "DRESSCODE_WORKER_NAME"


def worker_hostname() -> str:
    host = socket.getfqdn()
    name = os.environ.get(ENV, "").strip()
    return f"{name}@{host}" if name else host
