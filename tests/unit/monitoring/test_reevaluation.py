"""Re-evaluation after a drifted or degraded window (dresscode.monitoring.reevaluation) against a
real MLflow SQLite registry: a version whose recorded evaluation started after the window ended,
on today's golden set, is not evaluated again; anything else is.

The golden-set evaluation itself (the simulator and ``mlflow.genai.evaluate``) is replaced by a
recorder: what is tested here is the choice to run it, which the DAG tests run for real."""

from __future__ import annotations

from typing import Any

import pytest

from dresscode.monitoring import reevaluation
from dresscode.registry import prompt_registry as registry

NAME = "wardrobe-digitizer"
WINDOW_END = "2026-12-06T10:35:56.120000+00:00"
AFTER = "2026-12-06T10:39:42+00:00"
BEFORE = "2026-12-06T10:30:00+00:00"


@pytest.fixture
def production(mlflow_uri: str) -> int:
    registry.sync(NAME)
    version = max(i.git_version for i in registry.versions(NAME))
    registry.promote(NAME, version, actor="test", reason="first release")
    return version


@pytest.fixture
def evaluated(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    calls: list[tuple[str, int]] = []

    def evaluate(name: str, version: int) -> dict[str, Any]:
        calls.append((name, version))
        return {"version": version, "passed": True, "reasons": [], "metrics": {"f1": 0.9},
                "mlflow_run_id": "fresh", "golden_hash": "h"}  # fmt: skip

    monkeypatch.setattr(reevaluation, "evaluate", evaluate)
    return calls


def _decision() -> dict[str, Any]:
    return {"branch": "drifted", "reasons": [], "reevaluate": [NAME], "evidence": {}}


def _gate_run(mlflow_uri: str, reasons: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_uri)
    experiment = client.create_experiment("dresscode-evaluations-test")
    run = client.create_run(experiment, tags={"dresscode.gate_reasons": reasons})
    return run.info.run_id


def test_an_evaluation_started_after_the_window_on_todays_golden_set_is_reused(
    mlflow_uri: str, production: int, evaluated: list
) -> None:
    run_id = _gate_run(mlflow_uri, "-")
    registry.mark_gate(
        NAME, production, True, {"f1": 0.952, "json_validity": 0.992},
        golden_hash=reevaluation.golden_hash_now(NAME), run_id=run_id, started_at=AFTER,
    )  # fmt: skip
    [entry] = reevaluation.run(_decision(), since=WINDOW_END)  # type: ignore[arg-type]
    assert evaluated == []
    gate = entry["production"]
    assert gate is not None
    assert (gate["passed"], gate["mlflow_run_id"], gate["metrics"]["f1"]) == (True, run_id, 0.952)
    assert (gate.get("reused"), gate.get("evaluated_at")) == (True, AFTER)


def test_a_reused_failed_gate_keeps_its_reasons(
    mlflow_uri: str, production: int, evaluated: list
) -> None:
    run_id = _gate_run(mlflow_uri, "f1 0.61 < 0.85; json_validity 0.90 < 0.98")
    registry.mark_gate(
        NAME, production, False, {"f1": 0.61},
        golden_hash=reevaluation.golden_hash_now(NAME), run_id=run_id, started_at=AFTER,
    )  # fmt: skip
    [entry] = reevaluation.run(_decision(), since=WINDOW_END)  # type: ignore[arg-type]
    assert evaluated == []
    assert entry["production"]["reasons"] == ["f1 0.61 < 0.85", "json_validity 0.90 < 0.98"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("started_at", "golden", "since"),
    [
        (BEFORE, "today", WINDOW_END),  # started before the window ended: it may not have seen it
        (AFTER, "another", WINDOW_END),  # made on another golden set
        (None, "today", WINDOW_END),  # no start recorded (an older evaluation)
        (AFTER, "today", None),  # no window given: always fresh
    ],
    ids=["before-the-window", "other-golden-set", "no-start-recorded", "no-window"],
)
def test_anything_else_is_evaluated_again(
    mlflow_uri: str,
    production: int,
    evaluated: list,
    started_at: str | None,
    golden: str,
    since: str | None,
) -> None:
    today = reevaluation.golden_hash_now(NAME)
    registry.mark_gate(
        NAME, production, True, {"f1": 0.952},
        golden_hash=today if golden == "today" else "0" * 64, run_id="r", started_at=started_at,
    )  # fmt: skip
    [entry] = reevaluation.run(_decision(), since=since)  # type: ignore[arg-type]
    assert evaluated == [(NAME, production)]
    assert entry["production"]["mlflow_run_id"] == "fresh"  # type: ignore[index]
