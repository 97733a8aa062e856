"""Shared by the dag.test() modules: load one DAG file the way the dag-processor does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="session")
def load_dag(airflow_db: Path) -> Callable[[str], object]:
    """``load_dag("wardrobe_ingest")``: a fresh DAG object from its file, with no import error."""
    from airflow.dag_processing.dagbag import DagBag

    def load(dag_id: str):
        bag = DagBag(dag_folder=str(DAGS / f"{dag_id}.py"))
        assert bag.import_errors == {}
        return bag.dags[dag_id]

    return load
