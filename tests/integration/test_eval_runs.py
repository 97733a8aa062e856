"""`dresscode eval`: the golden set through the endpoint, recorded in MLflow and on the registry."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dresscode.local import cli
from dresscode.registry import golden
from dresscode.registry import prompt_registry as registry
from dresscode.registry.evaluation import provenance

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
    assert run.data.tags["dresscode.golden_set"] == "outfits"
    assert run.data.tags["dresscode.golden_hash"] == provenance.scenarios_hash(scenarios)


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


def _eval_runs(version: int) -> list:
    import mlflow

    from dresscode.registry.evaluation import runs

    experiment = mlflow.get_experiment_by_name(runs.EXPERIMENT)
    found = mlflow.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`dresscode.prompt_version` = '{version}'",
        output_format="list",
    )
    return sorted(found, key=lambda r: r.info.start_time)


def test_every_run_names_its_golden_set_and_the_commit(
    script: Path, golden_subset, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from dresscode.registry.evaluation import runs

    with _endpoint(monkeypatch, "perfect", script):
        result = runs.evaluate_prompt(f"{NAME}@2", golden=golden_subset)

    tags = mlflow.get_run(result.mlflow_run_id).data.tags
    digest = provenance.golden_photos_hash(golden_subset)
    assert tags["dresscode.golden_set"] == "wardrobe"
    assert tags["dresscode.golden_hash"] == result.golden_hash == digest
    assert tags["dresscode.git_commit"] == result.git_commit == provenance.git_commit()
    assert len(tags["mlflow.source.git.commit"]) == 40  # this checkout is a git repository
    # The gate record on the version names the same golden set and run.
    info = next(v for v in registry.versions(NAME) if v.git_version == 2)
    assert info.tags[registry.GATE_GOLDEN_TAG] == digest
    assert info.tags[registry.GATE_RUN_TAG] == result.mlflow_run_id


def test_the_golden_hash_follows_content_not_order() -> None:
    photos = golden.load_wardrobe_golden()[:5]
    assert provenance.golden_photos_hash(photos) == provenance.golden_photos_hash(photos[::-1])
    relabelled = [dataclasses.replace(photos[0], items=[]), *photos[1:]]
    assert provenance.golden_photos_hash(relabelled) != provenance.golden_photos_hash(photos)


def test_after_the_golden_set_grows_production_is_rescored_before_the_gate_compares(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from dresscode.registry.evaluation import runs

    photos = golden.load_wardrobe_golden()
    before, grown = photos[:SUBSET], photos[: SUBSET + 6]  # `dresscode golden accept` added 6
    script = golden.write_script(grown, dresscode_home / "grown.jsonl")
    with _endpoint(monkeypatch, "perfect", script):
        runs.evaluate_prompt(f"{NAME}@1", golden=before)
        registry.promote(NAME, 1, actor="test", reason="first release")
        same_set = runs.evaluate_prompt(f"{NAME}@2", golden=before)
        assert same_set.baseline_ref == f"{NAME}@1 (recorded on this golden set)"
        assert len(_eval_runs(1)) == 1  # the record was like with like: no re-scoring

        after = runs.evaluate_prompt(f"{NAME}@2", golden=grown)

    # The stale record (made on the smaller set) was not used: production was re-scored on
    # the grown set first, and the candidate's run names that re-scoring.
    assert after.baseline_ref == f"{NAME}@1 (re-scored on this golden set)"
    rescored = _eval_runs(1)[-1]
    assert len(_eval_runs(1)) == 2
    assert rescored.data.tags["dresscode.golden_hash"] == provenance.golden_photos_hash(grown)
    tags = mlflow.get_run(after.mlflow_run_id).data.tags
    assert tags["dresscode.baseline_run"] == rescored.info.run_id
    assert tags["dresscode.baseline_golden_hash"] == tags["dresscode.golden_hash"]
    production = next(v for v in registry.versions(NAME) if v.git_version == 1)
    assert production.tags[registry.GATE_GOLDEN_TAG] == provenance.golden_photos_hash(grown)
