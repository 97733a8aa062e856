"""One evaluation as MLflow sees it: a GenAI evaluation on a versioned golden dataset, scored
for a LoggedModel, linked to its prompt version.

* **Golden datasets.** A golden set is an MLflow evaluation dataset named by its content hash
  (``dresscode-golden-<set>-<hash12>``, :func:`golden_dataset`): the same content reuses the
  dataset, an edited set is a new one, so each evaluation names the dataset version it scored
  (the run's ``dresscode.golden_dataset`` tag and its dataset input), and two scores are
  compared only on the same one (principle 8).
* **LoggedModels.** One per blueprint version (:func:`logged_model`): prompt name and version,
  served model id and settings as params, found again by the blueprint's content hash, linked
  to its prompt version, so MLflow's model view compares versions side by side.
* **The evaluation.** :func:`evaluate` hands the runner's outputs to ``mlflow.genai.evaluate``
  with the code scorers of :mod:`.scorers` (and the LLM judges, when asked) inside the active
  run; it returns the per-example scores the gate reads.

Examples carry ids, labels and model outputs only: photos are named by their sha256, never
sent as bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from dresscode.core.config import environ_overrides
from dresscode.registry.evaluation import provenance

if TYPE_CHECKING:
    from dresscode.llm.blueprints import Blueprint
    from dresscode.registry.evaluation.scorers import Scored
    from dresscode.registry.evaluation.stylist import Scenario
    from dresscode.registry.golden import GoldenPhoto

log = logging.getLogger(__name__)

DATASET_PREFIX = "dresscode-golden"
DATASET_TAG = "dresscode.golden_dataset"  # the run's tag: the dataset's name
DATASET_ID_TAG = "dresscode.golden_dataset_id"
LOGGED_MODEL_TAG = "dresscode.logged_model"  # the run's tag: the LoggedModel's id
BLUEPRINT_HASH_TAG = "dresscode.content_hash"  # on the LoggedModel: the blueprint it stands for


@dataclass(frozen=True)
class Example:
    """One golden example as ``mlflow.genai.evaluate`` takes it."""

    inputs: dict[str, Any]
    outputs: dict[str, Any]
    expectations: dict[str, Any]


def digitizer_example(photo: GoldenPhoto, out: dict[str, Any]) -> Example:
    """A golden photo (named by its hash) with the digitizer's answer and its labels."""
    return Example(
        inputs={"example_id": photo.id, "image_sha256": photo.image_sha256},
        outputs=out,
        expectations={"items": photo.items},
    )


def stylist_example(scenario: Scenario, row: dict[str, Any], shown: dict[str, Any]) -> Example:
    """A scenario with the stylist's per-example row and what the user would read."""
    return Example(
        inputs={
            "example_id": scenario.id,
            "city": scenario.city,
            "date": scenario.day.isoformat(),
            "occasion": scenario.occasion,
            "weather": scenario.weather,
            "wardrobe": scenario.wardrobe,
        },
        outputs={**row, **shown},
        # MLflow refuses an expectation without a value: unset ones are left out.
        expectations={k: v for k, v in asdict(scenario.expectations).items() if v is not None},
    )


DATASET_TRIES = 4


def dataset_name(golden_set: str, golden_hash: str) -> str:
    return f"{DATASET_PREFIX}-{golden_set}-{golden_hash[:12]}"


def golden_dataset(
    golden_set: str, golden_hash: str, examples: Sequence[Example], experiment_id: str
) -> Any:
    """The MLflow evaluation dataset of this golden content, created on first use.

    Named by content hash, so it is immutable in effect: a set edited between two evaluations
    gets a new dataset and the earlier one still holds what the earlier run scored. Two
    evaluations creating it at once may both succeed; the oldest is used from then on.
    """
    import time

    from mlflow.exceptions import MlflowException
    from mlflow.genai import datasets

    name = dataset_name(golden_set, golden_hash)
    records = [{"inputs": e.inputs, "expectations": e.expectations} for e in examples]
    for attempt in range(1, DATASET_TRIES + 1):
        found = datasets.search_datasets(
            filter_string=f"name = '{name}'", order_by=["created_time"]
        )
        dataset = found[0] if found else None
        try:
            if dataset is None:
                dataset = datasets.create_dataset(
                    name=name,
                    experiment_id=[experiment_id],
                    tags={
                        provenance.GOLDEN_SET_TAG: golden_set,
                        provenance.GOLDEN_HASH_TAG: golden_hash,
                    },
                )
            elif dataset.has_records():
                return dataset
            dataset.merge_records(records)
        except MlflowException as exc:
            # Seen on a fresh server's SQLite store with two evaluations starting together: a
            # dataset just created is "not found" by the next call. The next try finds it
            # (and fills it) or creates it; any other error is the caller's to report.
            if "not found" not in str(exc).lower() or attempt == DATASET_TRIES:
                raise
            log.warning("dataset %s: %s; trying again (%d/%d)", name, exc, attempt, DATASET_TRIES)
            time.sleep(attempt)
            continue
        log.info(
            "golden set %s (%d examples) recorded as dataset %s", golden_set, len(examples), name
        )
        return dataset
    raise AssertionError("unreachable")  # the last try returns or raises


def logged_model(blueprint: Blueprint, experiment_id: str, mlflow_version: int | None) -> str:
    """The LoggedModel of one blueprint version (created once); returns its model id."""
    import mlflow
    from mlflow import MlflowClient

    digest = blueprint.content_hash()
    found = mlflow.search_logged_models(
        experiment_ids=[experiment_id],
        filter_string=f"tags.`{BLUEPRINT_HASH_TAG}` = '{digest}'",
        output_format="list",
    )
    if found:
        return str(found[0].model_id)
    model = mlflow.create_external_model(
        name=f"{blueprint.name}-v{blueprint.version}",
        experiment_id=experiment_id,
        model_type="prompt-blueprint",
        params={
            "prompt": blueprint.name,
            "prompt_version": str(blueprint.version),
            "served_model": blueprint.model,
            "temperature": str(blueprint.temperature),
            "max_tokens": str(blueprint.max_tokens),
            "image_long_edge": str(blueprint.image_long_edge),
        },
        tags={BLUEPRINT_HASH_TAG: digest, "dresscode.source": blueprint.source},
    )
    if mlflow_version is not None:
        MlflowClient().link_prompt_version_to_model(
            blueprint.name, str(mlflow_version), model.model_id
        )
    return str(model.model_id)


def link_prompt(run_id: str, name: str, mlflow_version: int | None) -> None:
    """Show the run under its prompt version in MLflow's prompt view."""
    from mlflow import MlflowClient

    if mlflow_version is not None:
        MlflowClient().link_prompt_version_to_run(run_id, f"prompts:/{name}/{mlflow_version}")


@contextmanager
def _sequential_on_sqlite() -> Iterator[None]:
    """Score one example at a time, traces written synchronously, on a SQLite store.

    MLflow's default (10 scoring threads, traces exported in the background) exhausts
    SQLAlchemy's pool on SQLite and drops traces with their assessments; one writer at a time
    is also the faster order there (96 examples: 16 s against 34 s with 4 threads, measured
    here). A tracking server keeps MLflow's defaults.
    """
    from mlflow import get_tracking_uri

    if not get_tracking_uri().startswith("sqlite:"):
        yield
        return
    knobs = {"MLFLOW_GENAI_EVAL_MAX_WORKERS": "1", "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false"}
    with environ_overrides(knobs):
        yield


def evaluate(
    examples: Sequence[Example],
    scorers: Sequence[Any],
    names: Sequence[str],
    *,
    model_id: str | None,
) -> Scored:
    """Score ``examples`` in the active run through ``mlflow.genai.evaluate``; the assessments
    of ``names`` read back per example."""
    import mlflow

    from dresscode.registry.evaluation.scorers import Scored, read_scores

    ids = [str(e.inputs["example_id"]) for e in examples]
    if not examples:
        return Scored([], {name: {} for name in names})
    with _sequential_on_sqlite():
        result = mlflow.genai.evaluate(
            data=[asdict(e) for e in examples], scorers=list(scorers), model_id=model_id
        )
    return read_scores(result.result_df, names, ids)


def tag_dataset(run_id: str, dataset: Any) -> dict[str, str]:
    """The run's dataset tags, and the dataset as a run input (MLflow's "Dataset" column)."""
    from mlflow import MlflowClient
    from mlflow.entities import DatasetInput, InputTag

    try:
        entity = dataset._to_mlflow_entity()
        MlflowClient().log_inputs(
            run_id,
            datasets=[DatasetInput(entity, tags=[InputTag("mlflow.data.context", "golden")])],
        )
    except Exception as exc:  # the tags below still name it; the input is a convenience
        log.warning("golden dataset %s not logged as a run input: %s", dataset.name, exc)
    return {DATASET_TAG: dataset.name, DATASET_ID_TAG: dataset.dataset_id}


@contextmanager
def recording(ref: str) -> Iterator[None]:
    """MLflow failing while an evaluation is recorded is one sentence, and no gate verdict is
    written (the caller records the verdict only after this block)."""
    import requests
    from mlflow.exceptions import MlflowException

    from dresscode.registry.store import RegistryError, first_line, is_unreachable, tracking_uri

    try:
        yield
    except (MlflowException, requests.RequestException) as exc:
        what = "is unreachable" if is_unreachable(exc) else "failed"
        raise RegistryError(
            f"MLflow at {tracking_uri()} {what} while recording the evaluation of {ref}: "
            f"{first_line(exc)}; no gate verdict was recorded, re-run the evaluation."
        ) from exc
