"""wardrobe_ingest end to end through dag.test(), against the simulator over real HTTP.

One seeded batch (good photos in every format with GPS and rotation tags, every kind of bad
file) goes through the real DAG. Then: outputs carry no metadata, a second run adds nothing,
and a model outage fails the run with an alert while keeping every photo.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from dresscode.core import config, lake
from dresscode.ingest import tasks as ingest
from dresscode.local import samples, seed
from dresscode.orchestration import alerts
from dresscode.sim.testing import running_simulator

MODEL = "google/gemma-4-26B-A4B-it"
N_PHOTOS = 6


def _use_simulator(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    conn = {
        "conn_type": "http",
        "host": url,
        "extra": {"model": MODEL, "timeout": 30, "max_concurrency": 8},
    }
    monkeypatch.setenv("AIRFLOW_CONN_DRESSCODE_LLM", json.dumps(conn))


def _sim_stats(url: str) -> dict:
    return httpx.get(url.removesuffix("/v1") + "/sim/stats").json()


def _lake_snapshot() -> dict[str, str]:
    """Every object in the lake (landing included) -> sha256 of its bytes."""
    return {
        str(p): hashlib.sha256(lake.read_bytes(p)).hexdigest() for p in lake.list_files(lake.root())
    }


@pytest.fixture(scope="module")
def ingest_dag(load_dag):
    return load_dag("wardrobe_ingest")


@pytest.fixture(scope="module")
def seeded(module_home) -> Iterator[dict]:
    """A fresh home with a seeded landing area and a simulator serving its labels."""
    home, monkeypatch = module_home
    script = home / "script.jsonl"
    result = seed.seed(N_PHOTOS, script_path=script, size=(800, 600))
    with running_simulator(
        scripts=[script], served_model_name=[f"{MODEL}=perfect"], fixed_latency_ms=20
    ) as url:
        _use_simulator(monkeypatch, url)
        yield {
            "home": home,
            "script": script,
            "url": url,
            "seeded": result.new,
            "monkeypatch": monkeypatch,
        }


@pytest.fixture(scope="module")
def first_run(ingest_dag, seeded: dict):
    return ingest_dag.test()


def test_first_run_succeeds_and_every_task_ran(first_run) -> None:
    states = {ti.task_id: ti.state for ti in first_run.get_task_instances()}
    assert first_run.state == "success", states
    assert set(states) == {"resolve_prompt", "discover", "process", "report"}
    assert set(states.values()) == {"success"}


def test_bad_files_are_quarantined_with_their_reason_and_original(first_run, seeded: dict) -> None:
    day = first_run.run_after.date().isoformat()
    for name, (data, code) in samples.bad_files().items():
        sha = hashlib.sha256(data).hexdigest()
        folder = ingest.quarantine_folder(f"user-bad/{name}", sha, day, config.get_settings())
        assert folder.parent == lake.partition("quarantine", day) / "user-bad" / name
        reason = lake.read_json(folder / "reason.json")
        assert reason["code"] == code.value, name
        assert reason["message"]
        assert lake.read_bytes(folder / f"original.{name.rpartition('.')[2].lower()}") == data


def test_good_photos_become_the_scripted_items(first_run, seeded: dict) -> None:
    manifest = ingest.manifest_state(config.get_settings())
    accepted = [row for row in manifest.values() if row["status"] == ingest.ACCEPTED]
    resent = [row for row in manifest.values() if row["status"] == ingest.NEAR_DUPLICATE]
    # The tricky files are one picture in 13 encodings from one user: one is an exact
    # duplicate, and those that keep its colours are near-duplicates of the first (not sent to
    # the model); the grey, transparent and tiny ones are other pictures to the colour check.
    assert len(accepted) + len(resent) == N_PHOTOS + len(samples.tricky_good_files()) - 1
    assert resent and all(row["upload_key"].startswith("user-tricky/") for row in resent)
    labels = seed.scripted_item_counts(seeded["script"])
    items = lake.read_table("wardrobe_items")
    per_photo = items.groupby("image_sha256").size().to_dict()
    for row in accepted:
        if (
            row["image_sha256"] in labels
        ):  # the seeded photos; tricky files get pixel-derived answers
            assert per_photo[row["image_sha256"]] == labels[row["image_sha256"]]
    assert items["item_id"].is_unique


def test_landing_is_empty_and_nothing_was_lost(first_run, seeded: dict) -> None:
    assert ingest.landing_keys(config.get_settings()) == []
    manifest = ingest.manifest_state(config.get_settings())
    assert len(manifest) == seeded["seeded"]
    for row in manifest.values():
        if row["status"] in (ingest.ACCEPTED, ingest.DUPLICATE):
            assert lake.exists(ingest.image_path(row["image_sha256"], config.get_settings()))


def test_no_output_carries_metadata(first_run) -> None:
    outputs = [p for p in lake.list_files(lake.table("images")) if p.name.endswith(".jpg")]
    assert len(outputs) >= N_PHOTOS
    for path in outputs:
        data = lake.read_bytes(path)
        with Image.open(__import__("io").BytesIO(data)) as im:
            assert len(im.getexif()) == 0, path
            assert not {"exif", "xmp", "icc_profile", "comment", "photoshop"} & set(im.info), path
        assert b"GPS" not in data and b"http://ns.adobe.com/xap" not in data, path


def test_rerun_adds_no_rows_objects_or_model_calls(ingest_dag, first_run, seeded: dict) -> None:
    before, calls_before = _lake_snapshot(), _sim_stats(seeded["url"])["requests_total"]
    second = ingest_dag.test()
    assert second.state == "success"
    assert _lake_snapshot() == before
    assert _sim_stats(seeded["url"])["requests_total"] == calls_before


def test_model_outage_fails_the_run_alerts_and_keeps_the_photos(
    ingest_dag, first_run, seeded: dict
) -> None:
    monkeypatch = seeded["monkeypatch"]
    seed.seed(4, script_path=seeded["script"], start=100, bad_files=False, size=(800, 600))
    monkeypatch.setenv("DRESSCODE_LLM_MAX_ATTEMPTS", "1")
    config.get_settings.cache_clear()
    try:
        with running_simulator(
            served_model_name=[f"{MODEL}=perfect"], fault_rate_5xx=1.0
        ) as broken:
            _use_simulator(monkeypatch, broken)
            run = ingest_dag.test()
    finally:
        _use_simulator(monkeypatch, seeded["url"])
        monkeypatch.delenv("DRESSCODE_LLM_MAX_ATTEMPTS")
        config.get_settings.cache_clear()

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "failed" and states["report"] == "failed", states
    assert len(ingest.landing_keys(config.get_settings())) == 4  # kept for the next run
    [alert] = [a for a in alerts.read_alerts() if a["run_id"] == run.run_id]
    assert alert["dag_id"] == "wardrobe_ingest" and alert["task_id"] == "report"
    assert "IngestFailed: 4 of 4 photos failed" in alert["summary"]
    assert "server_error" in alert["summary"]
    assert alert["runbook"].endswith("runbooks/wardrobe_ingest.md")

    # The endpoint is back: the next run digitizes the kept photos and empties landing.
    recovered = ingest_dag.test()
    assert recovered.state == "success"
    assert ingest.landing_keys(config.get_settings()) == []


def test_the_run_emits_wardrobe_items_with_its_counts(first_run) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = (
            select(AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(
                AssetModel.name == "wardrobe_items", AssetEvent.source_run_id == first_run.run_id
            )
        )
        [extra] = session.scalars(query).all()
    assert (
        extra["photos"]
        == first_run.get_task_instance("report").xcom_pull(task_ids="report")["photos"]
    )
    assert extra["accepted"] + extra["near_duplicates"] == (
        N_PHOTOS + len(samples.tricky_good_files()) - 1
    )
    assert sum(extra["quarantined"].values()) == len(samples.bad_files())


def _served_versions(run) -> set[str]:
    """The prompt versions the run's photos were digitized with (from the manifest)."""
    rows = ingest.manifest_state(config.get_settings()).values()
    return {
        str(int(r["prompt_version"]))
        for r in rows
        if r["run_id"] == run.run_id and r["status"] == ingest.ACCEPTED
    }


def test_promotion_and_rollback_apply_from_the_next_run(
    ingest_dag, first_run, seeded: dict, load_dag
) -> None:
    from dresscode.registry import prompt_registry as registry

    name = "wardrobe-digitizer"
    assert _served_versions(first_run) == {"2"}  # nothing promoted yet: the newest in git
    registry.sync(name)
    for version in (1, 2):
        registry.mark_gate(name, version, True, {"f1": 1.0})
    registry.promote(name, 1, actor="test", reason="baseline")

    seed.seed(2, script_path=seeded["script"], start=200, bad_files=False, size=(800, 600))
    assert _served_versions(ingest_dag.test()) == {"1"}

    registry.promote(name, 2, actor="test", reason="v2 passed its gate")
    seed.seed(2, script_path=seeded["script"], start=250, bad_files=False, size=(800, 600))
    assert _served_versions(ingest_dag.test()) == {"2"}

    # The on-call engineer rolls back through the prompt_rollback DAG ...
    rollback_dag = load_dag("prompt_rollback")
    reason = "wool coats in a heatwave"
    done = rollback_dag.test(run_conf={"prompt": name, "target": "previous", "reason": reason})
    assert done.state == "success"
    assert registry.aliases(name) == {"production": 1, "previous": 2}
    audit = done.get_task_instance("rollback").xcom_pull(task_ids="rollback")
    assert (audit["from_version"], audit["to_version"], audit["reason"]) == (2, 1, reason)
    assert _audit_tags(audit["audit_run_id"])["dresscode.actor"]  # who is recorded

    # ... and the very next ingest run serves v1, as its inference-log rows show.
    seed.seed(2, script_path=seeded["script"], start=300, bad_files=False, size=(800, 600))
    rerun = ingest_dag.test()
    assert _served_versions(rerun) == {"1"}
    calls = lake.read_table("inference_log", columns=["prompt_name", "prompt_version", "ts"])
    newest = calls.sort_values("ts").tail(2)
    assert set(newest["prompt_version"]) == {"1"}


def test_rollback_to_a_version_that_never_passed_fails_clearly(
    first_run, seeded: dict, load_dag
) -> None:
    from dresscode.registry import prompt_registry as registry

    name = "wardrobe-digitizer"
    registry.sync(name)
    before = registry.aliases(name)
    registry.mark_gate(name, 2, False, {"f1": 0.5})
    run = load_dag("prompt_rollback").test(
        run_conf={"prompt": name, "target": "2", "reason": "try the failed one"}
    )
    assert run.state == "failed"
    assert registry.aliases(name) == before  # nothing moved
    alert = alerts.read_alerts()[-1]
    assert alert["dag_id"] == "prompt_rollback"
    assert "gate" in alert["summary"]
    registry.mark_gate(name, 2, True, {"f1": 1.0})


def _audit_tags(run_id: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return MlflowClient(config.get_settings().mlflow_tracking_uri).get_run(run_id).data.tags


def test_a_file_name_that_is_not_utf8_does_not_stop_the_run(
    ingest_dag, first_run, seeded: dict
) -> None:
    """The real XCom: a landing name that is not UTF-8 used to fail ``discover`` (and so the
    whole run) until someone deleted the file. Now it is quarantined and the rest goes on."""
    import os
    from pathlib import Path

    seed.seed(1, script_path=seeded["script"], start=400, bad_files=False, size=(800, 600))
    landing = os.fsencode(Path(lake.landing().path))
    os.makedirs(os.path.join(landing, b"user-\xff"), exist_ok=True)
    with open(os.path.join(landing, b"user-\xff", b"photo\xfe.jpg"), "wb") as fh:
        fh.write(b"bytes under a name no encoder takes")

    run = ingest_dag.test()

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    totals = run.get_task_instance("report").xcom_pull(task_ids="report")
    assert (totals["accepted"], totals["quarantined"]) == (1, {"unsafe_key": 1})
    assert ingest.landing_keys(config.get_settings()) == []
