"""prompt_release end to end through dag.test(): gate, shadow, promote — and do nothing twice.

The blueprints come from a scratch copy of include/prompts (so the test can add versions),
the golden sets are the real ones, and the model is the simulator over real HTTP.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dresscode.core import lake
from dresscode.llm import blueprints
from dresscode.local import seed
from dresscode.orchestration import alerts
from dresscode.registry import golden

GEMMA = "google/gemma-4-26B-A4B-it"
SLOPPY = "dresscode-sim/sloppy"
PROMPTS = ("wardrobe-digitizer", "outfit-stylist")


def _states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def _add_version(prompts: Path, name: str, version: int, **changes) -> None:
    data = yaml.safe_load((prompts / name / "v2.yaml").read_text())
    data.update(version=version, **changes)
    (prompts / name / f"v{version}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="module")
def env(load_dag, module_home) -> Iterator[dict]:
    from dresscode.sim.testing import running_simulator

    home, monkeypatch = module_home
    prompts = home / "prompts"
    shutil.copytree(blueprints.PROMPTS_DIR, prompts)
    monkeypatch.setattr(blueprints, "PROMPTS_DIR", prompts)
    photos = home / "photos.jsonl"
    seed.seed(4, script_path=photos, bad_files=False, size=(800, 600))
    labels = golden.write_script(golden.load_wardrobe_golden(), home / "golden.jsonl")
    with running_simulator(
        scripts=[labels, photos],
        served_model_name=[f"{GEMMA}=perfect", f"{SLOPPY}=sloppy"],
        fixed_latency_ms=2,
        max_num_seqs=64,
    ) as url:
        conn = {"conn_type": "http", "host": url, "extra": {"model": GEMMA, "max_concurrency": 32}}
        monkeypatch.setenv("AIRFLOW_CONN_DRESSCODE_LLM", json.dumps(conn))
        ingest = load_dag("wardrobe_ingest").test()  # recent real photos for the shadow
        assert ingest.state == "success", _states(ingest)
        yield {"prompts": prompts, "dag": load_dag("prompt_release")}


def _release(env: dict, auto_promote: bool = True):
    return env["dag"].test(run_conf={"auto_promote": auto_promote})


def _registered() -> dict[str, int]:
    from dresscode.registry import prompt_registry as registry

    return {name: len(registry.versions(name)) for name in PROMPTS}


@pytest.fixture(scope="module")
def first_release(env: dict):
    return _release(env)


def test_first_release_gates_and_promotes_the_newest_passing_versions(first_release) -> None:
    from dresscode.registry import prompt_registry as registry

    assert first_release.state == "success", _states(first_release)
    states = _states(first_release)
    assert states["approve"] == "skipped" and states["promote"] == "success"
    for name in PROMPTS:
        assert registry.aliases(name)["production"] == 2
        # v2 passed, and v1 would never be chosen over it: one evaluation per prompt.
        assert {v.git_version: v.gate for v in registry.versions(name)} == {1: None, 2: "passed"}
    evaluated = [ti for ti in first_release.get_task_instances() if ti.task_id == "evaluate"]
    assert sorted(ti.rendered_map_index for ti in evaluated) == sorted(PROMPTS)


def test_a_rerun_on_an_unchanged_tree_changes_nothing(env: dict, first_release) -> None:
    from dresscode.registry import prompt_registry as registry

    before = (_registered(), {n: registry.aliases(n) for n in PROMPTS})
    rerun = _release(env)
    assert rerun.state == "success"
    states = _states(rerun)
    assert states["sync"] == "success"
    assert {states[t] for t in ("evaluate", "choose", "shadow", "promote")} == {"skipped"}
    assert (_registered(), {n: registry.aliases(n) for n in PROMPTS}) == before


def test_a_passing_candidate_is_shadowed_then_promoted(env: dict, first_release) -> None:
    from dresscode.registry import prompt_registry as registry

    _add_version(env["prompts"], "wardrobe-digitizer", 3, max_tokens=1600)
    run = _release(env)
    assert run.state == "success", _states(run)
    assert registry.aliases("wardrobe-digitizer") == {
        "candidate": 3,
        "production": 3,
        "previous": 2,
    }
    [shadowed] = run.get_task_instance("shadow").xcom_pull(task_ids="shadow")
    report = lake.read_json(lake.storage_path(shadowed["shadow"]["report"]))
    assert (report["candidate"], report["production"]) == (3, 2)
    assert report["inputs"] > 0 and report["agreement"] == 1.0  # same model, same photos


def test_a_failing_candidate_is_not_promoted(env: dict, first_release) -> None:
    from dresscode.registry import prompt_registry as registry

    before = registry.aliases("wardrobe-digitizer")["production"]
    _add_version(env["prompts"], "wardrobe-digitizer", 4, model=SLOPPY)
    run = _release(env)
    assert run.state == "failed"
    assert _states(run)["choose"] == "failed"
    assert registry.aliases("wardrobe-digitizer")["production"] == before
    [v4] = [v for v in registry.versions("wardrobe-digitizer") if v.git_version == 4]
    assert v4.gate == "failed"
    alert = alerts.read_alerts()[-1]
    assert alert["dag_id"] == "prompt_release" and "wardrobe-digitizer@4" in alert["summary"]
    # The verdict stands: the next run does not evaluate v4 again.
    assert _states(_release(env))["evaluate"] == "skipped"


def test_when_the_newest_version_fails_the_next_older_one_is_gated_in_the_same_run(
    env: dict, first_release
) -> None:
    from dresscode.registry import prompt_registry as registry

    _add_version(env["prompts"], "wardrobe-digitizer", 5, max_tokens=1700)
    _add_version(env["prompts"], "wardrobe-digitizer", 6, model=SLOPPY)
    run = _release(env)
    assert run.state == "success", _states(run)
    gates = {v.git_version: v.gate for v in registry.versions("wardrobe-digitizer")}
    assert (gates[6], gates[5]) == ("failed", "passed")
    assert registry.aliases("wardrobe-digitizer")["production"] == 5
    # Nothing left to judge: v6 failed, v5 is production.
    assert _states(_release(env))["evaluate"] == "skipped"


def test_a_candidate_failing_the_live_shadow_is_not_promoted_and_the_run_says_why(
    env: dict, first_release
) -> None:
    from datetime import UTC, datetime

    from dresscode.registry import prompt_registry as registry

    before = registry.aliases("outfit-stylist")["production"]
    _add_version(env["prompts"], "outfit-stylist", 3, max_tokens=900)
    # What dresscode serve recorded while shadowing v3 on live requests: other outfits.
    now = datetime.now(UTC)
    rows = [
        {
            "request_id": f"live-{n}",
            "ts": now.isoformat(timespec="milliseconds"),
            "user_id": f"u{n}",
            "prompt_name": "outfit-stylist",
            "production_version": before,
            "candidate_version": 3,
            "production_model": GEMMA,
            "candidate_model": GEMMA,
            "agreement": 0.2,
            "candidate_ok": True,
            "candidate_skip_reason": None,
            "candidate_tool_calls": 1,
            "candidate_tool_call_ok": True,
            "candidate_hallucinated_items": 0,
            "production_hallucinated_items": 0,
            "candidate_latency_ms": 900.0,
            "production_latency_ms": 900.0,
            "candidate_prompt_tokens": 1700,
            "candidate_completion_tokens": 60,
            "production_completion_tokens": 60,
        }
        for n in range(12)
    ]
    lake.write_parquet("serve_shadow", now.date(), "serve-live", rows)
    run = _release(env)
    assert run.state == "failed"
    assert _states(run)["promote"] == "failed"
    assert registry.aliases("outfit-stylist")["production"] == before
    alert = alerts.read_alerts()[-1]
    assert (
        "outfit-stylist v3 is not promoted: live shadow over 12 requests FAILED" in alert["summary"]
    )
    assert "agreement 0.2 < 0.5" in alert["summary"]


def test_without_auto_promote_a_human_approves(load_dag) -> None:
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    dag = load_dag("prompt_release")
    approve = dag.get_task("approve")
    assert isinstance(approve, ApprovalOperator)
    assert dag.get_task("decide").downstream_task_ids == {"approve", "promote"}
    assert "promote" in approve.downstream_task_ids
    assert dag.params["auto_promote"] is False
