"""The kill-and-rerun drill: SIGKILL the ingest work mid-batch, re-run the DAG, lose nothing.

A worker dies without warning (OOM killer, spot reclaim, ``kill -9``) while a batch is half
digitized. The batch commits only at its end, so the killed try leaves no manifest rows, no
items and every upload still in landing; it may leave cleaned images, cached model answers and
orphaned temp files. The next run must account for every photo exactly once, write no duplicate
item or manifest row, and re-send no photo whose answer was already saved.

The killed work runs in its own process calling what the DAG's ``process`` task calls
(``registry.serving`` -> ``ingest.discover`` -> ``ingest.process_batch``) against a slow
simulator, so the kill lands while model calls are in flight.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dresscode.core import config, lake
from dresscode.ingest import tasks as ingest
from dresscode.local import seed
from dresscode.sim.testing import llm_connection, running_simulator

MODEL = "google/gemma-4-26B-A4B-it"
N_PHOTOS = 16
CONCURRENCY = 2
LATENCY_MS = 400  # 16 photos / 2 in flight * 0.4 s: the batch needs >= 3 s of model time
KILL_AFTER_CALLS = 4
STARTUP_TIMEOUT_S = 90.0

# What the DAG's resolve_prompt, discover and process tasks do, in one process to be killed.
WORKER = """
from dresscode.ingest import digitize
from dresscode.ingest import tasks as ingest
from dresscode.registry import prompt_registry as registry
serving = registry.serving(digitize.PROMPT_NAME)
blueprint = registry.blueprint_for(serving)
for i, keys in enumerate(ingest.discover()):
    ingest.process_batch(
        keys, run_id="manual__kill-drill", day="{day}", blueprint=blueprint, label=f"batch {{i}}"
    )
print("BATCH COMMITTED", flush=True)
"""


def _stats(url: str) -> dict:
    return httpx.get(url.removesuffix("/v1") + "/sim/stats", timeout=5).json()


def _temp_files_on_disk(home: Path) -> list[Path]:
    return [p for p in home.rglob("*") if p.name.startswith(lake.TMP_PREFIX)]


def _digitized_answers() -> int:
    return sum(1 for p in lake.list_files(lake.table("digitized")) if p.name.endswith(".json"))


@pytest.fixture(scope="module")
def drill(load_dag, module_home) -> Iterator[dict]:
    """Seed, kill the digitize work mid-batch, then re-run the DAG; yield what each step saw."""
    home, monkeypatch = module_home
    script = home / "script.jsonl"
    seeded = seed.seed(N_PHOTOS, script_path=script, size=(800, 600), bad_files=False)
    keys = sorted(ingest.landing_keys(config.get_settings()))
    labels = seed.scripted_item_counts(script)
    with running_simulator(
        scripts=[script],
        served_model_name=[f"{MODEL}=perfect"],
        fixed_latency_ms=LATENCY_MS,
        max_num_seqs=CONCURRENCY,
    ) as url:
        conn = llm_connection(url, MODEL, max_concurrency=CONCURRENCY)
        monkeypatch.setenv("AIRFLOW_CONN_DRESSCODE_LLM", conn)
        day = time.strftime("%Y-%m-%d", time.gmtime())
        log_path = home / "worker.log"
        with log_path.open("wb") as log_file:
            worker = subprocess.Popen(
                [sys.executable, "-c", WORKER.format(day=day)],
                env=os.environ.copy(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            calls_at_kill = 0
            try:
                while worker.poll() is None and time.monotonic() < deadline:
                    calls_at_kill = _stats(url)["requests_total"]
                    if calls_at_kill >= KILL_AFTER_CALLS:
                        os.kill(worker.pid, signal.SIGKILL)
                        break
                    time.sleep(0.02)
            finally:
                if worker.poll() is None and calls_at_kill < KILL_AFTER_CALLS:
                    worker.kill()  # timed out: the assertions below say so
                worker.wait(timeout=30)
        after_kill = {
            "returncode": worker.returncode,
            "calls": calls_at_kill,
            "log": log_path.read_text(errors="replace"),
            "manifest_rows": len(lake.read_table("manifests")),
            "items": len(lake.read_table("wardrobe_items")),
            "landing": sorted(ingest.landing_keys(config.get_settings())),
            "answers_saved": _digitized_answers(),
            "temp_files": _temp_files_on_disk(home),
        }
        calls_before_rerun = _stats(url)["requests_total"]
        run = load_dag("wardrobe_ingest").test()
        rerun_calls = _stats(url)["requests_total"] - calls_before_rerun
        yield {
            "home": home,
            "seeded": seeded.new,
            "keys": keys,
            "labels": labels,
            "after_kill": after_kill,
            "run": run,
            "rerun_calls": rerun_calls,
        }


def test_the_worker_was_killed_in_the_middle_of_the_batch(drill: dict) -> None:
    killed = drill["after_kill"]
    assert drill["seeded"] == N_PHOTOS == len(drill["keys"])
    assert killed["returncode"] == -signal.SIGKILL, killed["log"][-2000:]
    assert "BATCH COMMITTED" not in killed["log"]
    assert KILL_AFTER_CALLS <= killed["calls"] < N_PHOTOS  # some calls made, not all
    # The batch never committed: nothing recorded, every upload still waiting in landing.
    assert killed["manifest_rows"] == 0
    assert killed["items"] == 0
    assert killed["landing"] == drill["keys"]


def test_the_rerun_succeeds(drill: dict) -> None:
    states = {ti.task_id: ti.state for ti in drill["run"].get_task_instances()}
    assert drill["run"].state == "success", states


def test_every_seeded_photo_is_accounted_for_exactly_once(drill: dict) -> None:
    manifests = lake.read_table("manifests")
    final = manifests[manifests["status"].isin(ingest.FINAL_STATUSES)]
    per_upload = final.groupby("upload_key").size().to_dict()
    assert per_upload == dict.fromkeys(drill["keys"], 1)
    for row in final.to_dict("records"):
        if row["status"] == ingest.QUARANTINED:
            assert row["reason_code"], row
        else:
            assert lake.exists(ingest.image_path(row["image_sha256"], config.get_settings()))
    assert (final["status"] == ingest.ACCEPTED).sum() == N_PHOTOS  # good photos, distinct


def test_no_duplicate_items_and_every_photo_has_its_scripted_items(drill: dict) -> None:
    items = lake.read_table("wardrobe_items")
    assert items["item_id"].is_unique
    per_photo = items.groupby("image_sha256").size().to_dict()
    manifest = ingest.manifest_state(config.get_settings())
    accepted = {row["image_sha256"] for row in manifest.values() if row["status"] == "accepted"}
    assert per_photo == {sha: drill["labels"][sha] for sha in accepted}


def test_landing_is_empty_after_the_rerun(drill: dict) -> None:
    assert ingest.landing_keys(config.get_settings()) == []


def test_answers_saved_before_the_kill_are_not_requested_again(drill: dict) -> None:
    saved = drill["after_kill"]["answers_saved"]
    assert saved >= 1  # the killed try did finish some photos before it died
    assert drill["rerun_calls"] == N_PHOTOS - saved
    log = lake.read_table("inference_log")
    assert log["image_sha256"].is_unique  # one logged call per photo that was (re)sent


def test_no_temp_file_is_visible_to_readers(drill: dict) -> None:
    orphans = _temp_files_on_disk(drill["home"])
    visible = {str(p) for p in lake.list_files(lake.root())}
    visible |= {str(p) for p in lake.list_files(lake.landing())}
    assert not any(lake.TMP_PREFIX in name for name in visible)
    for orphan in orphans:  # a write cut short by SIGKILL may leave one behind, hidden
        assert not any(name.endswith(orphan.name) for name in visible), orphan
