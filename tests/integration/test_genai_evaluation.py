"""Evaluations through ``mlflow.genai.evaluate``: code scorers, versioned golden datasets,
one LoggedModel per blueprint version, the prompt version linked, the gate reading MLflow's
assessments."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dresscode.registry import golden
from dresscode.registry import prompt_registry as registry

NAME = "wardrobe-digitizer"
MODEL = "google/gemma-4-26B-A4B-it"
SUBSET = 16


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
def photos() -> list[golden.GoldenPhoto]:
    return golden.load_wardrobe_golden()[:SUBSET]


@pytest.fixture
def script(dresscode_home: Path, photos: list[golden.GoldenPhoto]) -> Path:
    return golden.write_script(photos, dresscode_home / "golden-script.jsonl")


def _assessments(run_id: str) -> dict[str, list]:
    import mlflow

    traces = mlflow.search_traces(run_id=run_id, return_type="list")
    by_name: dict[str, list] = {}
    for trace in traces:
        for assessment in trace.info.assessments:
            by_name.setdefault(assessment.name, []).append(assessment)
    return by_name


def test_a_sloppy_digitizer_is_scored_in_mlflow_and_the_gate_reads_the_same_numbers(
    script: Path, photos, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from dresscode.registry.evaluation import runs

    with _endpoint(monkeypatch, "sloppy", script):
        result = runs.evaluate_prompt(f"{NAME}@1", golden=photos)

    # The runner's own per-example table (score_digitizer) against MLflow's assessments.
    rows = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=result.mlflow_run_id, artifact_path="examples.json"
            )
        ).read_text()
    )["rows"]
    assert 0 < result.metrics["f1"] < 1  # a sloppy model: the numbers mean something
    assert result.metrics["tp"] == sum(r["tp"] for r in rows)
    assert result.metrics["fp"] == sum(r["fp"] for r in rows)
    assert result.metrics["fn"] == sum(r["fn"] for r in rows)
    assert result.metrics["json_validity"] == sum(r["json_valid"] for r in rows) / len(rows)
    assessed = _assessments(result.mlflow_run_id)
    assert len(assessed["item_f1"]) == len(assessed["json_valid"]) == SUBSET
    assert sum(a.value for a in assessed["item_tp"]) == result.metrics["tp"]
    run = mlflow.get_run(result.mlflow_run_id)
    assert run.data.metrics["json_valid/mean"] == pytest.approx(result.metrics["json_validity"])
    assert run.data.tags["dresscode.scorer_errors"] == "0"
    assert any(r.startswith("item F1") for r in result.verdict.reasons)


def test_each_evaluation_names_its_golden_dataset_version_model_and_prompt(
    dresscode_home: Path, photos, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from mlflow import MlflowClient

    from dresscode.registry.evaluation import genai_run, provenance, runs

    edited = [photos[0].__class__(**{**photos[0].__dict__, "items": []}), *photos[1:]]
    script = golden.write_script(photos, dresscode_home / "s.jsonl")
    with _endpoint(monkeypatch, "perfect", script):
        first = runs.evaluate_prompt(f"{NAME}@2", golden=photos)
        again = runs.evaluate_prompt(f"{NAME}@2", golden=photos)
        after_edit = runs.evaluate_prompt(f"{NAME}@2", golden=edited)
        other_version = runs.evaluate_prompt(f"{NAME}@1", golden=photos)

    tags = {r.mlflow_run_id: mlflow.get_run(r.mlflow_run_id).data.tags for r in
            (first, again, after_edit, other_version)}  # fmt: skip
    dataset = tags[first.mlflow_run_id][genai_run.DATASET_TAG]
    assert dataset == genai_run.dataset_name("wardrobe", provenance.golden_photos_hash(photos))
    assert tags[again.mlflow_run_id][genai_run.DATASET_TAG] == dataset  # same content, same set
    assert tags[after_edit.mlflow_run_id][genai_run.DATASET_TAG] != dataset  # edited: a new one
    from mlflow.genai import datasets

    [stored] = datasets.search_datasets(filter_string=f"name = '{dataset}'")
    assert len(stored.to_df()) == SUBSET
    # One LoggedModel per blueprint version, reused by every evaluation of that version.
    model = tags[first.mlflow_run_id][genai_run.LOGGED_MODEL_TAG]
    assert tags[again.mlflow_run_id][genai_run.LOGGED_MODEL_TAG] == model
    assert tags[other_version.mlflow_run_id][genai_run.LOGGED_MODEL_TAG] != model
    logged = mlflow.get_logged_model(model)
    assert logged.params["prompt_version"] == "2" and logged.params["served_model"] == MODEL
    # The prompt version lists the run (MLflow's prompt view links them).
    [v2] = [v for v in registry.versions(NAME) if v.git_version == 2]
    linked = MlflowClient().get_run(first.mlflow_run_id).data.tags.get("mlflow.linkedPrompts")
    assert linked and json.loads(linked) == [{"name": NAME, "version": str(v2.mlflow_version)}]


def test_a_scorer_raising_on_one_example_makes_it_an_error_and_the_rest_are_scored(
    mlflow_uri: str, photos
) -> None:
    import mlflow

    from dresscode.registry.evaluation import genai_run, scorers

    examples = [
        genai_run.digitizer_example(
            p, {"items": p.items, "json_valid": True, "repaired": False, "error_class": None}
        )
        for p in photos[:4]
    ]
    del examples[1].outputs["items"]  # item_match cannot read this answer
    mlflow.set_experiment("scorer-errors")
    with mlflow.start_run():
        scored = genai_run.evaluate(
            examples, scorers.digitizer_scorers(), scorers.DIGITIZER_SCORERS, model_id=""
        )
    broken = photos[1].id
    assert {(i, s) for i, s, _ in scored.errors} >= {(broken, "item_match")}
    assert scored.values["item_f1"][broken] is None
    assert scored.values["json_valid"][broken] is True  # its other scorers still ran
    assert all(scored.values["item_f1"][p.id] == 1.0 for p in photos[:4] if p.id != broken)
    assert "could not be computed" in (scored.errors_sentence() or "")


def test_mlflow_failing_mid_evaluation_is_one_sentence_and_no_verdict_is_written(
    script: Path, photos, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.exceptions import MlflowException

    from dresscode.registry.evaluation import genai_run, runs

    def broken(*args: object, **kwargs: object) -> None:
        raise MlflowException("API request to http://mlflow:5000 failed with exception boom")

    monkeypatch.setattr(genai_run, "evaluate", broken)
    with _endpoint(monkeypatch, "perfect", script), pytest.raises(registry.RegistryError) as err:
        runs.evaluate_prompt(f"{NAME}@2", golden=photos)

    message = str(err.value)
    assert "while recording the evaluation of wardrobe-digitizer@2" in message
    assert "no gate verdict was recorded" in message and "\n" not in message
    [v2] = [v for v in registry.versions(NAME) if v.git_version == 2]
    assert not v2.gate  # nothing half written on the version


def test_a_golden_dataset_left_empty_is_filled_by_the_next_evaluation(mlflow_uri: str) -> None:
    """A dataset created but never filled (an evaluation that stopped between the two calls, or
    the fresh-server race where the new dataset was "not found") is filled, not used empty."""
    import mlflow
    from mlflow.genai import datasets

    from dresscode.registry.evaluation import genai_run

    examples = [
        genai_run.Example(inputs={"example_id": f"e{n}"}, outputs={}, expectations={"n": n})
        for n in range(3)
    ]
    experiment = mlflow.set_experiment("golden-datasets-test").experiment_id
    name = genai_run.dataset_name("wardrobe", "f" * 64)
    datasets.create_dataset(name=name, experiment_id=[experiment])  # created, never filled
    dataset = genai_run.golden_dataset("wardrobe", "f" * 64, examples, experiment)
    assert len(dataset.to_df()) == 3
    again = genai_run.golden_dataset("wardrobe", "f" * 64, examples, experiment)
    assert again.dataset_id == dataset.dataset_id and len(again.to_df()) == 3  # not refilled
    assert len(datasets.search_datasets(filter_string=f"name = '{name}'")) == 1
