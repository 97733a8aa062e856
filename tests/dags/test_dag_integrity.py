"""Every DAG imports cleanly, is documented, owned, retried, alerted on, and parses fast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dresscode.orchestration.alerts import FailureNotifier

REPO = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO / "dags"
DAG_FILES = sorted(p for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))
PARSE_BUDGET_S = 1.0

# Runs in a fresh interpreter with -X importtime: import what the dag-processor already has
# loaded (Airflow's authoring API), then time the DAG file alone. A marker on stderr separates
# the warm-up imports from the DAG file's own.
_MEASURE = """
import importlib.util, json, sys, time
import airflow.sdk
from airflow.sdk import dag, task, Asset, get_current_context  # warm, as in the dag-processor
spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
print("--- dag file starts ---", file=sys.stderr, flush=True)
start = time.perf_counter()
spec.loader.exec_module(module)
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


@pytest.fixture(scope="module")
def dagbag(airflow_db: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_dag_folder_has_dags() -> None:
    assert DAG_FILES, "no DAG files found in dags/"


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_file_name_is_the_dag_id(dagbag, path: Path) -> None:
    owned = [d for d in dagbag.dags.values() if Path(d.fileloc).resolve() == path.resolve()]
    assert [d.dag_id for d in owned] == [path.stem], (
        "one DAG per file, and the file name is its dag_id"
    )


# Tasks that must not retry, and why (each is also documented in its runbook).
NOT_RETRIED = {
    # A retry after the alias moved would roll "previous" back again, flipping production.
    ("prompt_rollback", "rollback"),
    # A human's decision; there is nothing transient to retry.
    ("prompt_release", "approve"),
    ("model_monitoring", "approve"),
}


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_dag_is_documented_owned_tagged_and_retried(dagbag, path: Path) -> None:
    dag = dagbag.dags[path.stem]
    assert dag.doc_md and len(dag.doc_md.strip()) > 80, "doc_md comes from a real module docstring"
    assert "runbooks/" in dag.doc_md, "doc_md must point at the DAG's runbook"
    assert (REPO / "docs" / "runbooks" / f"{dag.dag_id}.md").exists(), "every DAG has a runbook"
    assert "dresscode" in dag.tags
    for task in dag.tasks:
        assert task.owner not in ("", "airflow"), f"{task.task_id} has no owner"
        if (dag.dag_id, task.task_id) not in NOT_RETRIED:
            assert task.retries >= 2, f"{task.task_id} retries={task.retries}"
        callbacks = task.on_failure_callback or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        assert any(isinstance(cb, FailureNotifier) for cb in callbacks), (
            f"{task.task_id} has no failure notifier"
        )


def measure_parse(path: Path) -> dict:
    """Parse time of one DAG file, and its slowest module-level imports (name, ms)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", _MEASURE, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    dag_part = out.stderr.split("--- dag file starts ---", 1)[1]
    top_level = []
    for line in dag_part.splitlines():
        # "import time:  self [us] | cumulative | name"; top-level imports are not indented.
        fields = line.split("|")
        if line.startswith("import time:") and len(fields) == 3 and not fields[2].startswith("  "):
            top_level.append((fields[2].strip(), int(fields[1]) // 1000))
    result["slowest_imports"] = sorted(top_level, key=lambda item: -item[1])[:3]
    return result


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_dag_file_parses_in_under_a_second(path: Path) -> None:
    result = measure_parse(path)
    slowest = ", ".join(f"{name} ({ms} ms)" for name, ms in result["slowest_imports"]) or "none"
    assert result["seconds"] < PARSE_BUDGET_S, (
        f"{path.name} took {result['seconds']:.2f} s to parse (budget {PARSE_BUDGET_S} s). "
        f"Slowest module-level imports: {slowest} — move heavy imports inside the task functions."
    )


def test_parse_check_catches_a_heavy_module_level_import(tmp_path: Path) -> None:
    """The guard above is only worth something if it fails on the mistake it exists for."""
    slow = tmp_path / "slow_dag.py"
    slow.write_text(
        DAG_FILES[0].read_text() + "\nimport mlflow  # a heavy import at module level\n"
    )
    result = measure_parse(slow)
    assert result["seconds"] >= PARSE_BUDGET_S
    assert result["slowest_imports"][0][0] == "mlflow"
