"""The worker preload hook: what it accepts, and that a process forked after it has the modules.

The hook runs for real here (config/airflow_local_settings.py imported in a fresh interpreter,
then os.fork(), as the LocalExecutor and a Celery worker fork their task processes).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dresscode.core.config import REPO_ROOT
from dresscode.orchestration import preload

CHILD = """
import os, sys
sys.path.insert(0, {config!r})
import airflow_local_settings  # the hook, as Airflow imports it
pid = os.fork()
if pid == 0:
    os._exit(0 if {module!r} in sys.modules else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _forked_child_has(module: str, setting: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != preload.ENV}
    if setting is not None:
        env[preload.ENV] = setting
    code = CHILD.format(config=str(REPO_ROOT / "config"), module=module)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_a_task_process_forked_after_the_preload_has_the_module_already() -> None:
    done = _forked_child_has("pandas", "pandas")
    assert done.returncode == 0, done.stderr
    assert "dresscode worker preload: imported pandas" in done.stderr


def test_without_the_setting_the_hook_imports_nothing() -> None:
    done = _forked_child_has("pandas", None)
    assert done.returncode == 3, done.stderr  # the child had to import it itself
    assert "preload" not in done.stderr


def test_a_bad_setting_is_reported_and_the_worker_still_starts() -> None:
    done = _forked_child_has("pandas", "pandas,numpyy")
    assert done.returncode == 3, done.stderr
    assert "preload skipped" in done.stderr and "numpyy" in done.stderr


def test_all_names_every_preloadable_library_and_names_are_case_insensitive() -> None:
    assert preload.modules_to_preload("all") == list(preload.PRELOADABLE)
    assert preload.modules_to_preload(" Pandas , FEAST,,") == ["pandas", "feast"]
    assert preload.modules_to_preload("") == []


def test_an_unknown_library_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown modules \['torch'\].*evidently"):
        preload.modules_to_preload("pandas,torch")


def test_a_library_that_fails_to_import_is_skipped_not_fatal() -> None:
    took = preload.preload(["json", "dresscode_no_such_module"])
    assert set(took) == {"json"}
