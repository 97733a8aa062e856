"""`dresscode eval`: the golden set through the endpoint, recorded in MLflow and on the registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dresscode.local import cli
from dresscode.registry import golden
from dresscode.registry import prompt_registry as registry

NAME = "wardrobe-digitizer"
MODEL = "google/gemma-4-26B-A4B-it"
SUBSET = 24  # a quarter of the golden set keeps this test quick; the CLI uses all of it


@pytest.fixture
def golden_subset() -> list[golden.GoldenPhoto]:
    return golden.load_wardrobe_golden()[:SUBSET]


@contextmanager
def _endpoint(monkeypatch: pytest.MonkeyPatch, profile: str, script: Path) -> Iterator[None]:
    from dresscode.sim.testing import running_simulator

    with running_simulator(
        scripts=[script], served_model_name=[f"{MODEL}={profile}"], fixed_latency_ms=5
    ) as url:
        conn = {"conn_type": "http", "host": url, "extra": {"model": MODEL, "max_concurrency": 16}}
        monkeypatch.setenv("AIRFLOW_CONN_DRESSCODE_LLM", json.dumps(conn))
        yield


@pytest.fixture
def script(dresscode_home: Path, golden_subset: list[golden.GoldenPhoto]) -> Path:
    return golden.write_script(golden_subset, dresscode_home / "golden-script.jsonl")


def test_a_good_model_passes_and_everything_is_recorded(
    script: Path, golden_subset, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from dresscode.registry.evaluation import digitizer as evaluation

    with _endpoint(monkeypatch, "perfect", script):
        result = evaluation.evaluate_prompt(f"{NAME}@2", golden=golden_subset)

    assert result.verdict.passed and result.metrics["f1"] == 1.0
    [info] = [v for v in registry.versions(NAME) if v.git_version == 2]
    assert info.gate == "passed"
    run = mlflow.get_run(result.mlflow_run_id)
    assert (
        run.data.tags["dresscode.prompt_version"] == "2"
        and run.data.tags["dresscode.gate"] == "passed"
    )
    assert run.data.metrics["f1"] == 1.0
    examples = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path="examples.json"
            )
        ).read_text()
    )
    assert len(examples["rows"]) == SUBSET


def test_a_sloppy_model_fails_the_gate_and_cannot_be_promoted(
    script: Path, golden_subset, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dresscode.registry.evaluation import digitizer as evaluation

    with _endpoint(monkeypatch, "sloppy", script):
        result = evaluation.evaluate_prompt(f"{NAME}@1", golden=golden_subset)

    assert not result.verdict.passed
    assert any(reason.startswith("item F1") for reason in result.verdict.reasons)
    assert cli.main(["prompts", "promote", NAME, "1", "--reason", "try it"]) == 1
    assert "has not passed its gate (gate: failed)" in capsys.readouterr().err


def test_eval_command_runs_the_whole_golden_set(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = golden.load_wardrobe_golden()
    script = golden.write_script(photos, dresscode_home / "all-golden.jsonl")
    with _endpoint(monkeypatch, "perfect", script):
        assert cli.main(["eval", f"{NAME}@2"]) == 0
    out = capsys.readouterr().out
    assert f"{NAME}@2 on {len(photos)} golden examples:" in out
    assert "f1 1.000" in out and "json_validity 1.000" in out
    assert "gate: PASSED" in out


def test_a_stylist_version_is_evaluated_on_the_outfit_scenarios(
    script: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from dresscode.registry.evaluation import digitizer as evaluation
    from dresscode.registry.evaluation import stylist as stylist_eval

    scenarios = stylist_eval.load_scenarios()
    with _endpoint(monkeypatch, "perfect", script):
        result = evaluation.evaluate_prompt("outfit-stylist@2")

    assert result.verdict.passed, result.verdict.reasons
    assert result.examples == len(scenarios) >= 25
    assert result.metrics["hallucinated_items"] == 0
    assert result.metrics["weather_rule_pass_rate"] == 1.0
    [info] = [v for v in registry.versions("outfit-stylist") if v.git_version == 2]
    assert info.gate == "passed"
    run = mlflow.get_run(result.mlflow_run_id)
    assert run.data.tags["dresscode.prompt"] == "outfit-stylist"
    assert run.data.metrics["tool_call_rate_when_needed"] == 1.0


def test_a_model_the_endpoint_does_not_serve_fails_before_any_call(
    script: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import shutil

    import yaml

    from dresscode.llm import blueprints
    from dresscode.registry.evaluation import digitizer as evaluation

    prompts = tmp_path / "prompts"
    shutil.copytree(blueprints.PROMPTS_DIR, prompts)
    data = yaml.safe_load((prompts / NAME / "v2.yaml").read_text())
    data.update(version=3, model="google/gemma-9-unreleased")
    (prompts / NAME / "v3.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setattr(blueprints, "PROMPTS_DIR", prompts)
    with _endpoint(monkeypatch, "perfect", script), pytest.raises(evaluation.ModelNotServed) as err:
        evaluation.evaluate_prompt(f"{NAME}@3")
    assert "google/gemma-9-unreleased" in str(err.value) and MODEL in str(err.value)
    [v3] = [v for v in registry.versions(NAME) if v.git_version == 3]
    assert v3.gate is None or v3.gate == ""  # no verdict recorded from a run that never ran
