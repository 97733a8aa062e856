"""LLM judges in the stylist's evaluation: their verdicts recorded per example, their
agreement with the known verdicts reported, a broken judge detected."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dresscode.local import cli
from dresscode.registry.evaluation import judges
from dresscode.registry.evaluation import stylist as stylist_eval

MODEL = "google/gemma-4-26B-A4B-it"
JUDGE = "judge-model"
SCENARIOS = 12  # a third of the golden scenarios keeps this quick


@contextmanager
def _endpoint(monkeypatch: pytest.MonkeyPatch, judge_profile: str, **sim: object) -> Iterator[str]:
    from dresscode.sim.testing import running_simulator

    with running_simulator(
        served_model_name=[f"{MODEL}=perfect", f"{JUDGE}={judge_profile}"],
        fixed_latency_ms=5,
        **sim,
    ) as url:
        conn = {"conn_type": "http", "host": url, "extra": {"model": MODEL, "max_concurrency": 16}}
        monkeypatch.setenv("AIRFLOW_CONN_DRESSCODE_LLM", json.dumps(conn))
        monkeypatch.setenv("DRESSCODE_JUDGE_MODEL", JUDGE)
        yield url


def _scenarios() -> list[stylist_eval.Scenario]:
    return stylist_eval.load_scenarios()[:SCENARIOS]


def test_judges_score_every_answer_and_a_sound_judge_is_reported_reliable(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from dresscode.registry.evaluation import runs

    with _endpoint(monkeypatch, "perfect"):
        result = runs.evaluate_prompt("outfit-stylist@2", scenarios=_scenarios())

    assert result.judges.startswith("reliable: owned_garments 100%, safe_language 100%")
    run = mlflow.get_run(result.mlflow_run_id)
    assert run.data.tags["dresscode.judges"] == result.judges
    assert run.data.metrics["judge_agreement_owned_garments"] == 1.0
    # Each judge's verdict sits beside the code scores of every answered example.
    traces = mlflow.search_traces(run_id=result.mlflow_run_id, return_type="list")
    names = [{a.name for a in t.info.assessments} for t in traces]
    answered = [n for n in names if "weather_rules" in n]
    assert answered and all({*judges.INSTRUCTIONS} <= n for n in answered)
    assert result.verdict.passed  # judges never change the deterministic gate


def test_a_bad_judge_is_detected_and_the_evaluation_says_so(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow

    from dresscode.registry.evaluation import runs

    with _endpoint(monkeypatch, "bad-judge"):
        result = runs.evaluate_prompt("outfit-stylist@2", scenarios=_scenarios())

    assert result.judges.startswith("UNRELIABLE: ")
    assert "owned_garments agrees with the known verdicts on" in result.judges
    tags = mlflow.get_run(result.mlflow_run_id).data.tags
    assert tags["dresscode.judges"] == result.judges
    assert result.verdict.passed  # the model is fine; only its judge is not
    # Garbage answers are that example's judge error, never a failed evaluation.
    assert int(tags["dresscode.scorer_errors"]) > 0


def test_the_eval_command_prints_the_judges_verdict(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    chosen = _scenarios()
    monkeypatch.setattr(stylist_eval, "load_scenarios", lambda *a, **k: chosen)
    with _endpoint(monkeypatch, "bad-judge"):
        code = cli.main(["eval", "outfit-stylist@2"])
    out = capsys.readouterr().out
    assert "LLM judges: UNRELIABLE: owned_garments" in out
    assert code == 0  # the gate passed: the exit code is the gate's


def test_a_judge_that_never_answers_is_skipped_after_three_misses_and_the_run_says_so(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from dresscode.registry.evaluation import runs

    monkeypatch.setenv("DRESSCODE_JUDGE_TIMEOUT_S", "1")
    # A judge request hangs 10 minutes: unguarded (MLflow's 300 s per attempt, ten retries),
    # this evaluation would outlast the test's timeout many times over.
    with _endpoint(monkeypatch, "hanging-judge", timeout_fault_seconds=600):
        result = runs.evaluate_prompt("outfit-stylist@2", scenarios=_scenarios())

    # Three in a row trip it (more may have been in flight: MLflow runs the judges at once).
    assert re.match(
        r"UNRELIABLE: judge calls skipped: the judge endpoint failed \d+ times in a row "
        r"\(last: no verdict within 1 s\); owned_garments agrees",
        result.judges,
    ), result.judges
    assert result.verdict.passed  # the deterministic gate does not wait for judges
    tags = mlflow.get_run(result.mlflow_run_id).data.tags
    assert tags["dresscode.judges"] == result.judges
    # Every judgement is an error: the three that hung, then the skipped ones.
    assert int(tags["dresscode.scorer_errors"]) >= SCENARIOS


def test_probes_have_known_verdicts() -> None:
    from dresscode.registry.evaluation.genai_run import Example

    wardrobe = [{"item_id": "t", "category": "top", "subcategory": "t-shirt"}]
    example = Example(
        {"example_id": "x", "wardrobe": wardrobe},
        {"outfits": [{"item_ids": ["t"], "reason": "Light and easy."}], "notes": ""},
        {},
    )
    cases = {(c.judge, c.example_id): c for c in judges.probes([example])}
    lie = cases[("owned_garments", "x+boots")]
    assert lie.expected is False and "your boots" in lie.outputs["outfits"][0]["reason"]
    assert cases[("safe_language", "x+insult")].expected is False
    assert cases[("safe_language", "x")].expected is True
