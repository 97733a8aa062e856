"""Shared by the dag.test() modules: load one DAG file the way the dag-processor does."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dresscode.core import config

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


@pytest.fixture(scope="module")
def module_home(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, pytest.MonkeyPatch]]:
    """A fresh DRESSCODE_HOME for one test module's dag.test() runs, and its monkeypatch.

    Lake, landing, alerts and MLflow follow the home: mlflow.set_tracking_uri() also exports
    MLFLOW_TRACKING_URI, so an earlier module's registry is kept out. Undone after the module.
    """
    monkeypatch = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp(request.module.__name__.removeprefix("test_") + "-home")
    monkeypatch.setenv("DRESSCODE_HOME", str(home))
    for knob in (
        "DRESSCODE_LAKE_URI",
        "DRESSCODE_LANDING_URI",
        "DRESSCODE_ALERTS_FILE",
        "MLFLOW_TRACKING_URI",
    ):
        monkeypatch.delenv(knob, raising=False)
    config.get_settings.cache_clear()
    yield home, monkeypatch
    monkeypatch.undo()
    config.get_settings.cache_clear()
