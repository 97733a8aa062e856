"""model_monitoring end to end through dag.test(): healthy, drifted -> page, drifted -> promote.

Real seeded photos go through wardrobe_ingest into the lake; the model is the simulator over
real HTTP (its quality numbers are not Gemma's), the registry a real MLflow on SQLite. The
normal batches are checked first (healthy), then a `--shift dark` batch: the simulator sees
few of the garments on dark photos, so items per photo, zero-item photos, brightness and the
photo bytes move, and the run must say so.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from dresscode.core import config, lake
from dresscode.llm import blueprints
from dresscode.local import seed
from dresscode.orchestration import alerts
from dresscode.registry import golden
from dresscode.registry import prompt_registry as registry

GEMMA = "google/gemma-4-26B-A4B-it"
SLOPPY = "dresscode-sim/sloppy"
BATCH = 36  # photos per batch: above DRESSCODE_DRIFT_MIN_ROWS (30)
DIGITIZER = "wardrobe-digitizer"


def _states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def _now() -> str:
    return datetime.now(UTC).isoformat()


@pytest.fixture(scope="module")
def env(load_dag, module_home) -> Iterator[dict]:
    from dresscode.registry import tasks as release
    from dresscode.sim.testing import running_simulator

    home, monkeypatch = module_home
    # A scratch copy of the prompts, with a sloppy digitizer version for the promote scenario.
    prompts = home / "prompts"
    shutil.copytree(blueprints.PROMPTS_DIR, prompts)
    data = yaml.safe_load((prompts / DIGITIZER / "v2.yaml").read_text())
    data.update(version=3, model=SLOPPY)
    (prompts / DIGITIZER / "v3.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setattr(blueprints, "PROMPTS_DIR", prompts)

    script = home / "photos.jsonl"
    labels = golden.write_script(golden.load_wardrobe_golden(), home / "golden.jsonl")
    with running_simulator(
        scripts=[labels, script],
        served_model_name=[f"{GEMMA}=perfect", f"{SLOPPY}=sloppy"],
        fixed_latency_ms=2,
        max_num_seqs=64,
    ) as url:
        conn = {"conn_type": "http", "host": url, "extra": {"model": GEMMA, "max_concurrency": 32}}
        monkeypatch.setenv("AIRFLOW_CONN_DRESSCODE_LLM", json.dumps(conn))
        ingest = load_dag("wardrobe_ingest")

        def ingest_batch(start: int, shift: str | None = None) -> dict[str, str]:
            began = _now()
            seed.seed(
                BATCH,
                script_path=script,
                start=start,
                bad_files=False,
                size=(800, 600),
                shift=shift,
            )
            run = ingest.test()
            assert run.state == "success", _states(run)
            return {"window_start": began, "window_end": _now()}

        for name in blueprints.prompt_names():
            registry.sync(name)
        release.promote(
            [
                {"name": DIGITIZER, "version": 2, "mlflow_run_id": "-"},
                {"name": "outfit-stylist", "version": 2, "mlflow_run_id": "-"},
            ],
            actor="test",
        )
        registry.set_candidate(DIGITIZER, 2)
        ingest_batch(0)  # the reference: photos from before the windows under test
        windows = {"normal": ingest_batch(BATCH), "dark": ingest_batch(2 * BATCH, "dark")}
        yield {"home": home, "dag": load_dag("model_monitoring"), "windows": windows}


def _decisions() -> list[dict]:
    frame = lake.read_table("monitoring_decisions")
    return frame.sort_values("decided_at").to_dict("records")


@pytest.fixture(scope="module")
def normal_run(env):
    return env["dag"].test(run_conf=env["windows"]["normal"])


@pytest.fixture(scope="module")
def dark_run(env, normal_run):
    return env["dag"].test(run_conf=env["windows"]["dark"])


def test_the_dag_branches_healthy_or_reevaluates_then_promotes_or_pages(env) -> None:
    dag = env["dag"]
    assert dag.task_dict["choose_branch"].downstream_task_ids == {
        "healthy",
        "quality_degraded",
        "drifted",
    }
    assert dag.task_dict["reevaluate"].upstream_task_ids == {"quality_degraded", "drifted"}
    assert dag.task_dict["choose_action"].downstream_task_ids >= {"promote", "page"}
    assert {"healthy", "promote", "page"} <= dag.task_dict["record"].upstream_task_ids


def test_the_dag_wires_typed_values_and_pulls_nothing_by_task_id() -> None:
    # The decisions (branch, what to re-evaluate, promote or page, the action recorded) are
    # made in dresscode.monitoring.tasks; the DAG file only passes values along.
    source = (config.REPO_ROOT / "dags" / "model_monitoring.py").read_text()
    assert "xcom_pull" not in source


def test_a_normal_batch_takes_the_healthy_branch(normal_run) -> None:
    states = _states(normal_run)
    assert normal_run.state == "success", states
    assert states["healthy"] == "success"
    assert {states[t] for t in ("quality_degraded", "drifted", "reevaluate", "page")} == {"skipped"}
    # No suggestion in the window (only photos were ingested): the judges have nothing to do.
    judged = normal_run.get_task_instance("judge_production").xcom_pull(task_ids="judge_production")
    assert judged["judged"] == 0 and judged["judges"].startswith("not run (no suggestion")
    decision = _decisions()[-1]
    assert (decision["branch"], decision["action"]) == ("healthy", "none")


def test_the_normal_day_is_in_the_metrics_table(normal_run, env) -> None:
    metrics = lake.read_table("quality_metrics")
    day = env["windows"]["normal"]["window_start"][:10]
    ours = metrics[(metrics["day"] == day) & (metrics["metric"] == "items_per_photo")]
    assert not ours.empty and (ours["value"] > 1).all()


def test_a_dark_batch_drifts_reevaluates_and_pages_with_what_moved(dark_run, env) -> None:
    states = _states(dark_run)
    assert dark_run.state == "success", states
    assert states["drifted"] == "success" and states["healthy"] == "skipped"
    assert states["reevaluate"] == "success"
    # production and candidate are the same version: nothing better to promote.
    assert (states["page"], states["promote"]) == ("success", "skipped")
    decision = _decisions()[-1]
    assert (decision["branch"], decision["action"]) == ("drifted", "paged")
    moved = json.loads(decision["drifted_columns"])
    assert "brightness" in moved

    page = [a for a in alerts.read_alerts() if a["kind"] == "page"][-1]
    text = page["text"]
    assert "model_monitoring" in text
    assert "brightness" in text
    assert decision["drift_report"] in text and decision["drift_report"].endswith(".html")
    assert lake.exists(lake.storage_path(decision["drift_report"]))
    # The report names the Delta table versions its frames were read at (time travel).
    summary = lake.read_json(lake.storage_path(decision["drift_report"].replace(".html", ".json")))
    assert summary["lake_versions"]["manifests"] >= 0
    assert "docs/runbooks/model_monitoring.md" in text
    assert Path(config.REPO_ROOT / "docs/runbooks/model_monitoring.md").exists()
    # The MLflow runs it is about (a file store here: ids; a server: URLs into its UI).
    drift_run = dark_run.get_task_instance("detect_drift").xcom_pull(task_ids="detect_drift")
    assert f"drift report run: MLflow run {drift_run['mlflow_run_id']}" in text
    [evaluated] = dark_run.get_task_instance("reevaluate").xcom_pull(task_ids="reevaluate")
    run_id = evaluated["production"]["mlflow_run_id"]
    assert f"wardrobe-digitizer@2 (production) evaluation: MLflow run {run_id}" in text


def test_the_promotion_goes_through_the_release_approval_unless_auto_promote(env) -> None:
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    dag = env["dag"]
    approve = dag.task_dict["approve"]
    assert isinstance(approve, ApprovalOperator) and approve.defaults == ["Reject"]
    assert approve.response_timeout is not None
    assert dag.task_dict["choose_action"].downstream_task_ids == {"approve", "promote", "page"}
    assert approve.downstream_task_ids == {"promote", "park"}
    assert "park" in dag.task_dict["record"].upstream_task_ids
    assert dag.params["auto_promote"] is False


def test_a_better_candidate_is_promoted_instead_of_paging(dark_run, env) -> None:
    # Production regressed to a sloppy model; the good version is the candidate.
    registry.promote(DIGITIZER, 3, actor="test", reason="a bad release")
    registry.set_candidate(DIGITIZER, 2)
    # auto_promote: no person to answer the approval inside dag.test() (see
    # tests/dags/test_promotion_governance.py for the approval itself).
    run = env["dag"].test(run_conf={**env["windows"]["dark"], "auto_promote": True})
    states = _states(run)
    assert run.state == "success", states
    assert (states["promote"], states["page"]) == ("success", "skipped")
    assert registry.aliases(DIGITIZER)["production"] == 2
    assert registry.aliases(DIGITIZER)["previous"] == 3
    decision = _decisions()[-1]
    assert decision["action"] == "promoted"
    assert "model_monitoring" in decision["outcome"]
