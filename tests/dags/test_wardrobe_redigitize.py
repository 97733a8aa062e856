"""wardrobe_redigitize end to end through dag.test(): a digitizer promotion reaches old photos.

On a real MLflow registry and the simulator over real HTTP: photos are ingested with
wardrobe-digitizer v1, a user corrects one item and deletes another, v2 is promoted. A run that
was interrupted after some model calls left their answers in the digitize cache; the DAG then
re-digitizes every photo once (calling the model only for the others), the users see v2's items
with their correction and deletion carried over, and a second run makes zero model calls.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from airflow.sdk.exceptions import AirflowFailException

from dresscode.core import config, lake, tables
from dresscode.ingest import redigitize
from dresscode.ingest import tasks as ingest
from dresscode.llm.hook import DresscodeLLMHook
from dresscode.local import seed
from dresscode.registry import prompt_registry as registry
from dresscode.sim.testing import running_simulator

MODEL = "google/gemma-4-26B-A4B-it"
DIGITIZER = "wardrobe-digitizer"
N_PHOTOS = 8
INTERRUPTED = 2  # photos whose model call finished before the "interruption"


def _requests(url: str) -> int:
    return httpx.get(url.removesuffix("/v1") + "/sim/stats").json()["requests_total"]


def _event(user: str, event_id: str, event_type: str, item: dict, **payload: Any) -> dict:
    at = datetime.now(UTC) - timedelta(minutes=10 - int(event_id[-1]))
    return {
        "event_id": event_id,
        "event_type": event_type,
        "user_id": user,
        "event_time": at.isoformat(timespec="milliseconds"),
        "received_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "item_id": item["item_id"],
        "image_sha256": item["image_sha256"],
        "prompt_version": "1",
        "payload": json.dumps(payload),
        "source": "feedback/app.jsonl",
        "source_sha256": "0" * 64,
    }


@pytest.fixture(scope="module")
def story(module_home, load_dag) -> Iterator[dict[str, Any]]:
    """v1 ingest, a correction and a deletion, v2 promoted, an interrupted attempt."""
    home, monkeypatch = module_home
    script = home / "script.jsonl"
    seed.seed(N_PHOTOS, script_path=script, size=(640, 480), bad_files=False)
    with running_simulator(
        scripts=[script], served_model_name=[f"{MODEL}=perfect"], fixed_latency_ms=5
    ) as url:
        conn = {"conn_type": "http", "host": url, "extra": {"model": MODEL, "timeout": 30}}
        monkeypatch.setenv("AIRFLOW_CONN_DRESSCODE_LLM", json.dumps(conn))
        registry.sync(DIGITIZER)
        for version in (1, 2):
            registry.mark_gate(DIGITIZER, version, True, {"item_f1": 0.9})
        registry.promote(DIGITIZER, 1, actor="test", reason="first release")
        assert load_dag("wardrobe_ingest").test().state == "success"

        # One user corrects an item's category and deletes another of the same photo.
        items = tables.current_wardrobe_items(None)
        assert set(items["prompt_version"]) == {1}
        photo = items.groupby(["user_id", "image_sha256"]).size().idxmax()
        user, sha = photo
        first, second = items[(items.user_id == user) & (items.image_sha256 == sha)].to_dict(
            "records"
        )[:2]
        new_category = "shoes" if first["category"] != "shoes" else "top"
        events = [
            _event(user, "e1", "item_corrected", first, changes={"category": new_category}),
            _event(user, "e2", "item_deleted", second),
        ]
        lake.write_parquet("feedback", datetime.now(UTC).date(), "events", events)

        registry.promote(DIGITIZER, 2, actor="test", reason="better shoes")
        serving = ingest.resolve_redigitize_prompt(None)
        [batch, *_] = ingest.redigitize_selection(serving, users=[], limit=INTERRUPTED)
        blueprint = registry.blueprint_for(serving)

        async def interrupted() -> None:  # the calls finish, the task dies before its commit
            settings = config.get_settings()
            endpoint = DresscodeLLMHook(settings=settings).endpoint()
            async with DresscodeLLMHook.client_for(endpoint, settings) as client:
                await redigitize.digitize(batch, client, blueprint, settings, "killed", "run-0")

        asyncio.run(interrupted())
        before_run = _requests(url)
        dag = load_dag("wardrobe_redigitize")
        run = dag.test()
        yield {
            "dag": dag,
            "run": run,
            "url": url,
            "calls": _requests(url) - before_run,
            "user": user,
            "corrected": first,
            "new_category": new_category,
            "deleted": second,
            "accepted": [
                r for r in ingest.manifest_state().values() if r["status"] == ingest.ACCEPTED
            ],
            "script": script,
        }


def _xcom(run, task_id: str) -> Any:
    [ti] = [ti for ti in run.get_task_instances() if ti.task_id == task_id]
    return ti.xcom_pull(task_ids=task_id)


def _totals(run) -> dict[str, Any]:
    return _xcom(run, "report")


def test_every_photo_is_redigitized_once_and_the_interrupted_calls_are_not_repeated(story) -> None:
    assert story["run"].state == "success"
    totals = _totals(story["run"])
    photos = len(story["accepted"])
    assert totals["photos"] == totals["redigitized"] == photos
    assert totals["cached"] == INTERRUPTED
    assert totals["model_calls"] == story["calls"] == photos - INTERRUPTED
    assert totals["failed"] == {} and totals["set_aside"] == {}


def test_users_see_the_new_digitizers_items(story) -> None:
    counts = seed.scripted_item_counts(story["script"])
    current = tables.current_wardrobe_items(None)
    raw = lake.read_table("wardrobe_items")
    assert set(raw["prompt_version"]) == {1, 2}  # the v1 rows are kept as history
    assert set(current["prompt_version"]) == {2}
    per_photo = current.groupby("image_sha256").size().to_dict()
    for row in story["accepted"]:
        expected = counts[row["image_sha256"]]
        if (
            row["user_id"] == story["user"]
            and row["image_sha256"] == story["corrected"]["image_sha256"]
        ):
            expected -= 1  # the deletion followed the item
        assert per_photo.get(row["image_sha256"], 0) == expected


def test_the_users_correction_and_deletion_follow_the_garment(story) -> None:
    user, corrected = story["user"], story["corrected"]
    mine = tables.current_wardrobe_items([user])
    photo = mine[mine["image_sha256"] == corrected["image_sha256"]]
    successor = photo[photo["replaces"] == corrected["item_id"]]
    assert len(successor) == 1
    assert successor.iloc[0]["category"] == story["new_category"]
    assert successor.iloc[0]["item_id"] != corrected["item_id"]
    assert story["deleted"]["item_id"] not in set(photo["replaces"])
    raw = lake.read_table("wardrobe_items")
    assert story["deleted"]["item_id"] in set(raw["replaces"].dropna())  # it had a successor…
    assert (photo["prompt_version"] == 2).all()  # …which stays deleted


def test_a_second_run_selects_nothing_and_makes_no_model_call(story) -> None:
    before = _requests(story["url"])
    run = story["dag"].test()
    assert run.state == "success"
    assert _xcom(run, "select") == []  # nothing to do: the mapped batches and report skip
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["redigitize"] == states["report"] == "skipped"
    assert _requests(story["url"]) == before


def test_a_blocked_or_unknown_version_is_refused_in_one_sentence(story) -> None:
    with pytest.raises(AirflowFailException, match="v9 is not registered"):
        ingest.resolve_redigitize_prompt(9)
    registry.park(DIGITIZER, 1, action="rollback", actor="on-call", reason="drops shoes")
    with pytest.raises(AirflowFailException, match=r"v1 is blocked .*drops shoes"):
        ingest.resolve_redigitize_prompt(1)
