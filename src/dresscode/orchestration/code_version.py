"""Every task checks that its worker runs the code that was deployed.

A worker left on an older image (or an older checkout) would run yesterday's task code on
today's runs: with the dags-folder bundle Airflow catches only a DAG whose *shape* changed
(a task it cannot find), never a changed task body. The deployment records its code's
fingerprint in the Airflow Variable ``dresscode_code_version`` (``make up`` on start,
compose's ``airflow-init``); :func:`check`, every task's ``pre_execute`` hook
(``dag_defaults.DEFAULT_ARGS``), compares it with the worker's own and fails the try before
the task does anything, naming both and the worker. Without the Variable (``dag.test()``, a
deployment that does not record one) nothing is checked.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

VARIABLE = "dresscode_code_version"
PACKAGE = Path(__file__).resolve().parents[1]  # src/dresscode (or site-packages/dresscode)


@functools.cache
def fingerprint(dags: Path | None = None) -> str:
    """12 hex digits of SHA-256 over the package's and the DAG files' paths and contents."""
    from airflow.configuration import conf

    folder = dags or Path(conf.get("core", "dags_folder"))
    digest = hashlib.sha256()
    for root in (PACKAGE, folder):
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def check(context: dict[str, Any]) -> None:
    """``pre_execute``: refuse to run on a worker whose code differs from the deployment's."""
    from airflow.sdk import Variable
    from airflow.sdk.exceptions import AirflowFailException

    deployed = Variable.get(VARIABLE, default=None)
    if not deployed or deployed == fingerprint():
        return
    ti = context.get("ti")
    worker = getattr(ti, "hostname", None) or "this worker"
    raise AirflowFailException(
        f"{worker} runs dresscode code {fingerprint()}, the deployment is {deployed} "
        f"(Variable {VARIABLE}): this worker was not updated. Deploy the same image (or "
        "checkout) to every worker, then clear the task; nothing was run."
    )
