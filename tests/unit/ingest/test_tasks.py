"""Ingest's batch logic against the simulator over real HTTP and a local lake (no Airflow runtime).

Each bad model answer and each bad key is fed on purpose; the rest of the batch must go through.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import httpx
import pytest

from dresscode.core import config, lake, tables
from dresscode.core.connections import LLMEndpoint
from dresscode.ingest import tasks as ingest
from dresscode.local import samples
from dresscode.local.seed import _sent_sha
from dresscode.sim.testing import running_simulator

MODEL = "google/gemma-4-26B-A4B-it"
DAY = "2026-11-23"
GOOD_ITEM = {
    "category": "top", "subcategory": "t-shirt", "colors": [{"name": "navy", "hex": "#1f2a44"}],
    "pattern": "solid", "material": "cotton", "warmth": "light", "formality": "casual",
    "seasons": ["summer"], "water_resistant": False, "description": "A navy tee.",
}  # fmt: skip


def _upload(
    key: str,
    seed: int,
    script: Path | None = None,
    items: list | None = None,
    faults: list | None = None,
) -> str:
    """Put one synthetic photo in landing; optionally script the model's answer for it."""
    img, labels = samples.wardrobe_photo(seed, size=(640, 480))
    raw = samples.encode(img, "JPEG")
    lake.write_bytes(lake.landing() / key, raw)
    sha = _sent_sha(raw, config.get_settings())
    if script is not None:
        line = {
            "image_sha256": sha,
            "items": items if items is not None else [i.to_json() for i in labels],
        }
        with script.open("a") as fh:
            fh.write(json.dumps(line | ({"faults": faults} if faults else {})) + "\n")
    return sha


@pytest.fixture
def script(dresscode_home: Path) -> Path:
    path = dresscode_home / "script.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


@pytest.fixture
def endpoint(script: Path) -> Iterator[LLMEndpoint]:
    with running_simulator(
        scripts=[script], served_model_name=[f"{MODEL}=perfect"], fixed_latency_ms=10
    ) as url:
        yield LLMEndpoint(url, "EMPTY", MODEL, 20.0, 8)


def _run(endpoint: LLMEndpoint, run_id: str = "run-1") -> dict:
    results = [
        ingest.process_batch(b, run_id=run_id, day=DAY, endpoint=endpoint)
        for b in ingest.discover()
    ]
    return ingest.commit_and_report(results)


def _log() -> dict[str, dict]:
    frame = lake.read_table("inference_log")
    return {row["image_sha256"]: row for row in frame.to_dict("records")}


def test_each_bad_model_answer_is_handled_and_the_batch_goes_on(
    script: Path, endpoint: LLMEndpoint
) -> None:
    shas = {
        "prefix": _upload("u1/prefix.jpg", 1, script, faults=["prefix"]),
        "repeat": _upload("u1/repeat.jpg", 2, script, faults=["repeat"]),
        "unknown_category": _upload("u1/unknown.jpg", 3, script, items=[GOOD_ITEM, GOOD_ITEM | {"category": "spacesuit"}], faults=["unconstrained"]),
        "zero_items": _upload("u1/empty.jpg", 4, script, items=[]),
        "malformed": _upload("u1/malformed.jpg", 5, script, faults=["malformed"]),
        "pad": _upload("u1/pad.jpg", 6, script, faults=["pad"]),
        "clean": _upload("u1/clean.jpg", 7, script),
    }  # fmt: skip
    with pytest.raises(
        ingest.IngestFailed, match=r"2 of 7 photos failed \(28\.6% > 5% allowed\); top reasons: "
    ):
        _run(endpoint)

    log = _log()
    assert log[shas["malformed"]]["error_class"] == "invalid_json"
    assert log[shas["pad"]]["error_class"] == "pad_output"
    assert log[shas["prefix"]]["repaired"] and log[shas["prefix"]]["n_items"] >= 1
    assert (
        log[shas["repeat"]]["error_class"] == "repetition" and log[shas["repeat"]]["n_items"] >= 1
    )
    assert log[shas["unknown_category"]]["schema_ok"] is False
    assert (
        log[shas["unknown_category"]]["n_items"],
        log[shas["unknown_category"]]["dropped_items"],
    ) == (1, 1)
    assert (
        log[shas["zero_items"]]["n_items"] == 0 and log[shas["zero_items"]]["error_class"] is None
    )
    assert log[shas["clean"]]["parse_ok"] and not log[shas["clean"]]["repaired"]

    items = lake.read_table("wardrobe_items")
    assert set(items["category"]) <= {
        "top",
        "bottom",
        "dress",
        "outerwear",
        "footwear",
        "bag",
        "accessory",
    }
    # The two unusable answers stay in landing for the next run; everything else left it.
    assert sorted(ingest.landing_keys(config.get_settings())) == ["u1/malformed.jpg", "u1/pad.jpg"]


def test_unusable_answers_are_quarantined_after_three_runs(
    script: Path, endpoint: LLMEndpoint
) -> None:
    _upload("u2/broken.jpg", 11, script, faults=["malformed"])
    for attempt in (1, 2):
        with pytest.raises(ingest.IngestFailed):
            _run(endpoint, run_id=f"run-{attempt}")
        assert ingest.landing_keys(config.get_settings()) == ["u2/broken.jpg"]
    totals = _run(endpoint, run_id="run-3")

    assert totals["quarantined"] == {"model_failed": 1}
    assert ingest.landing_keys(config.get_settings()) == []
    [reason_file] = [
        p for p in lake.list_files(lake.table("quarantine")) if p.name == "reason.json"
    ]
    assert reason_file.parent.parent == lake.partition("quarantine", DAY) / "u2" / "broken.jpg"
    reason = lake.read_json(reason_file)
    assert reason["code"] == "model_failed" and "3 runs" in reason["message"]


@pytest.mark.parametrize("key", ["u3/..hidden.jpg", "u3/a/b.jpg", "..u3/x.jpg", "u3/noext"])
def test_unsafe_landing_keys_are_quarantined_not_followed(
    script: Path, endpoint: LLMEndpoint, key: str
) -> None:
    _upload("u3/fine.jpg", 21, script)
    path = lake.landing() / key
    lake.write_bytes(path, b"\xff\xd8 whatever")

    totals = _run(endpoint)

    assert totals["accepted"] == 1 and totals["quarantined"] == {"unsafe_key": 1}
    [reason_file] = [
        p for p in lake.list_files(lake.table("quarantine")) if p.name == "reason.json"
    ]
    reason = lake.read_json(reason_file)
    assert reason["code"] == "unsafe_key" and reason["upload_key"] == key
    assert "/_unsafe_keys/" in str(reason_file)
    assert lake.read_bytes(reason_file.parent / "original") == b"\xff\xd8 whatever"


def test_an_endpoint_failing_for_a_while_is_ridden_out_with_retries(
    dresscode_home: Path, script: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRESSCODE_LLM_MAX_ATTEMPTS", "10")
    config.get_settings.cache_clear()
    for i in range(6):
        _upload(f"u4/p{i}.jpg", 30 + i, script)
    with running_simulator(
        scripts=[script],
        served_model_name=[f"{MODEL}=perfect"],
        fixed_latency_ms=5,
        fault_rate_5xx=0.3,
    ) as url:
        totals = _run(LLMEndpoint(url, "EMPTY", MODEL, 20.0, 8))
        stats = httpx.get(url.removesuffix("/v1") + "/sim/stats").json()

    assert totals["accepted"] == 6 and totals["failed"] == {}
    assert stats["requests_total"] > 6  # some calls were answered 503 and retried
    assert max(lake.read_table("inference_log")["attempts"]) > 1


def test_an_upload_committed_before_a_crash_is_only_cleaned_up(
    script: Path, endpoint: LLMEndpoint
) -> None:
    _upload("u5/photo.jpg", 41, script)
    _run(endpoint)
    calls = len(lake.read_table("inference_log"))
    # The run died after the manifest was written but before the upload left landing.
    _upload("u5/photo.jpg", 41)

    assert ingest.discover() == []
    assert ingest.landing_keys(config.get_settings()) == []
    assert len(lake.read_table("inference_log")) == calls


def test_the_same_photo_again_is_a_duplicate_but_another_users_copy_is_theirs(
    script: Path, endpoint: LLMEndpoint
) -> None:
    _upload("u6/first.jpg", 51, script)
    _run(endpoint, run_id="run-1")
    _upload("u6/again.jpg", 51)
    _upload("u7/same-picture.jpg", 51)
    totals = _run(endpoint, run_id="run-2")

    assert (totals["duplicates"], totals["accepted"], totals["model_calls"]) == (
        1,
        1,
        0,
    )  # u7 hits the cache
    items = lake.read_table("wardrobe_items")
    assert set(items["user_id"]) == {"u6", "u7"}
    assert items["item_id"].is_unique


def test_digitize_command_prints_the_items_of_one_photo(
    tmp_path: Path,
    script: Path,
    endpoint: LLMEndpoint,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dresscode.local import cli

    img, labels = samples.wardrobe_photo(61, size=(640, 480))
    raw = samples.encode(img, "HEIC", orientation=6)
    photo = tmp_path / "coat.heic"
    photo.write_bytes(raw)
    line = {
        "image_sha256": _sent_sha(raw, config.get_settings()),
        "items": [label.to_json() for label in labels],
    }
    script.write_text(json.dumps(line) + "\n")
    conn = {"conn_type": "http", "host": endpoint.base_url, "extra": {"model": MODEL}}
    monkeypatch.setenv("AIRFLOW_CONN_DRESSCODE_LLM", json.dumps(conn))

    assert cli.main(["digitize", str(photo)]) == 0
    assert json.loads(capsys.readouterr().out) == [label.to_json() for label in labels]


def test_new_bytes_under_a_finished_key_are_a_new_upload_not_a_leftover(
    script: Path, endpoint: LLMEndpoint
) -> None:
    _upload("u9/photo.jpg", 71, script)
    _run(endpoint, run_id="run-1")
    _upload("u9/photo.jpg", 72, script)  # the app reused the upload id for another photo

    totals = _run(endpoint, run_id="run-2")

    assert (totals["accepted"], totals["model_calls"]) == (1, 1)
    assert ingest.landing_keys(config.get_settings()) == []
    assert lake.read_table("wardrobe_items")["image_sha256"].nunique() == 2


def test_a_retried_batch_task_does_not_process_what_its_first_try_committed(
    script: Path, endpoint: LLMEndpoint
) -> None:
    keys = [f"u10/p{i}.jpg" for i in range(3)]
    for i, key in enumerate(keys):
        _upload(key, 80 + i, script)
    originals = {key: lake.read_bytes(lake.landing() / key) for key in keys}
    ingest.process_batch(keys, run_id="run-1", day=DAY, endpoint=endpoint)
    items = len(lake.read_table("wardrobe_items"))
    # Try 1 died after committing, before clearing landing; a fourth photo is new in try 2.
    for key, data in originals.items():
        lake.write_bytes(lake.landing() / key, data)
    _upload("u10/p3.jpg", 83, script)

    retry = ingest.process_batch([*keys, "u10/p3.jpg"], run_id="run-1", day=DAY, endpoint=endpoint)

    # One new model call; the three committed by try 1 are counted (try 1 never reported).
    assert (retry["photos"], retry["accepted"], retry["model_calls"]) == (4, 4, 1)
    frame = lake.read_table("wardrobe_items")
    assert frame["item_id"].is_unique and len(frame) > items
    assert ingest.landing_keys(config.get_settings()) == []


def test_a_process_retry_after_its_batch_committed_keeps_the_batch(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The restart drill's failure path, without its timing: the first try of ``process``
    commits its batch (manifest, items, landing emptied) but cannot report success (PostgreSQL
    is down for its last API call), and Airflow retries it with the same keys."""
    from dresscode.local import seed

    n_photos, run_id, day = 4, "manual__restart-drill", "2026-05-01"
    script = dresscode_home / "script.jsonl"
    seed.seed(n_photos, script_path=script, size=(800, 600), bad_files=False)
    with running_simulator(scripts=[script], served_model_name=[f"{MODEL}=perfect"]) as url:
        llm = {"conn_type": "http", "host": url, "extra": {"model": MODEL}}
        monkeypatch.setenv("AIRFLOW_CONN_DRESSCODE_LLM", json.dumps(llm))
        (keys,) = ingest.discover()
        first = ingest.process_batch(keys, run_id=run_id, day=day, label="try 1")
        if first["accepted"] != n_photos:
            pytest.fail(f"the first try did not accept every photo: {first}")
        retry = ingest.process_batch(keys, run_id=run_id, day=day, label="try 2")
    assert retry["failed"] == {}, retry
    # The retry reports what its committed try could not: the run's totals stay whole.
    assert (retry["photos"], retry["accepted"], retry["items"]) == (
        n_photos,
        n_photos,
        first["items"],
    )
    latest = ingest.manifest_state(config.get_settings())
    assert {row["status"] for row in latest.values()} == {ingest.ACCEPTED}
    assert ingest.commit_and_report([retry])["failure_rate"] == 0


def test_what_the_tasks_hand_each_other_survives_a_json_round_trip(
    script: Path, endpoint: LLMEndpoint
) -> None:
    """XCom stores JSON: a batch result and the run totals must come back equal."""
    _upload("u1/a.jpg", 1, script)
    _upload("u1/b.jpg", 2, script)
    [keys] = ingest.discover()
    result = ingest.process_batch(keys, run_id="run-1", day=DAY, endpoint=endpoint)
    totals = ingest.commit_and_report([json.loads(json.dumps(result))])
    assert json.loads(json.dumps(result)) == result and type(result) is dict
    assert json.loads(json.dumps(totals)) == totals and type(totals) is dict
    assert set(result) == set(ingest.BatchResult.__annotations__)
    assert set(totals) == set(ingest.RunTotals.__annotations__)
    assert (totals["photos"], totals["accepted"], totals["batches"]) == (2, 2, 1)


def test_a_batch_says_where_its_time_went(script: Path, endpoint: LLMEndpoint) -> None:
    """The phases a load run adds up: every instant inside the batch, the model window
    around its calls, and a photo answered from the cache costs the endpoint nothing."""
    _upload("u2/a.jpg", 11, script)
    _upload("u2/b.jpg", 12, script)
    _upload("u2/bad.jpg", 13, script)
    lake.write_bytes(lake.landing() / "u2/bad.jpg", b"not a photo")  # quarantined, no call
    [keys] = ingest.discover()
    timings = ingest.process_batch(keys, run_id="run-1", day=DAY, endpoint=endpoint)["timings"]

    first, last = timings["model_first_at"], timings["model_last_at"]
    assert first is not None and last is not None
    assert timings["started_at"] <= first < last <= timings["ended_at"]
    # Two calls of >= 10 ms each (the simulator's fixed latency), never more than the window
    # times the two calls that could overlap.
    assert 0.02 <= timings["model_call_s"] <= 2 * (last - first) + 1e-3
    assert timings["normalize_cpu_s"] > 0 and timings["setup_s"] > 0 and timings["commit_s"] > 0
    total = timings["ended_at"] - timings["started_at"]
    assert timings["setup_s"] + timings["commit_s"] <= total

    # The same photos under new keys: answered from the digitize cache, no model window.
    for key, seed in (("u3/a.jpg", 11), ("u3/b.jpg", 12)):
        _upload(key, seed)
    [again] = ingest.discover()
    cached = ingest.process_batch(again, run_id="run-2", day=DAY, endpoint=endpoint)
    assert (cached["cached"], cached["model_calls"]) == (2, 0)
    assert cached["timings"]["model_first_at"] is None
    assert cached["timings"]["model_call_s"] == 0


def test_the_table_catalogue_describes_every_lake_folder() -> None:
    assert set(tables.CATALOGUE) == set(lake.TABLES)
    assert all(t.key for t in tables.CATALOGUE.values())


def test_a_manifest_row_has_the_columns_of_a_photo_outcome() -> None:
    row = ingest.PhotoOutcome("u1/a.jpg", "u1", "a", tables.ACCEPTED).row()
    assert list(row) == [f.name for f in fields(ingest.PhotoOutcome)]
    assert set(row) == set(tables.ManifestRow.__annotations__)


def test_wardrobes_of_reads_each_users_newest_item_rows(dresscode_home: Path) -> None:
    old = {"item_id": "i1", "user_id": "u1", "category": "top", "color_names": ["red"]}
    old["digitized_at"] = "2026-05-01T10:00:00.000+00:00"
    newer = old | {"category": "dress", "digitized_at": "2026-05-01T11:00:00.000+00:00"}
    # Written in the opposite order: the newer digitization wins, not the later write.
    lake.write_parquet("wardrobe_items", DAY, "p2", [newer])
    lake.write_parquet("wardrobe_items", DAY, "p1", [old, old | {"item_id": "i2", "user_id": "u2"}])
    found = tables.wardrobes_of(["u1", "u3"])
    assert set(found) == {"u1", "u3"} and found["u3"] == []
    [item] = found["u1"]
    assert (item["item_id"], item["category"], item["color_names"]) == ("i1", "dress", ["red"])
