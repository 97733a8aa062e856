"""Hostile landing keys and races: one test per finding, each failing on the old behaviour.

1. A file name that is not UTF-8 stopped discovery (its XCom could not be sent).
2. Bytes lost in races: a re-upload during a run was deleted with the processed upload; a
   quarantined original was overwritten by the next bad upload to the same key; a local file
   still being written was quarantined and deleted under its writer.
3. ``feedback`` passed as a user id; ingest and feedback could claim the same keys.
4. ``$`` with ``re.match`` let ``rt-nl\\n`` become a user id; ``.tmp-…`` uploads sat in landing
   forever, never processed, never reported.

The pipeline runs as the DAG's tasks do (discover -> process_batch per batch ->
commit_and_report) against the simulator over real HTTP, on a local lake and, where the race
differs, on the S3 server (moto on loopback).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dresscode.core import config, lake, tables
from dresscode.core.connections import LLMEndpoint
from dresscode.ingest import tasks as ingest
from dresscode.local import samples
from dresscode.sim.testing import running_simulator

MODEL = "google/gemma-4-26B-A4B-it"
DAY = "2026-11-23"


def photo(seed: int) -> bytes:
    img, _ = samples.wardrobe_photo(seed, size=(320, 240))
    return samples.encode(img, "JPEG")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def endpoint(dresscode_home: Path) -> Iterator[LLMEndpoint]:
    script = dresscode_home / "script.jsonl"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("")  # unscripted photos get the simulator's pixel-based answer
    with running_simulator(
        scripts=[script], served_model_name=[f"{MODEL}=perfect"], fixed_latency_ms=1
    ) as url:
        yield LLMEndpoint(url, "EMPTY", MODEL, 20.0, 8)


@pytest.fixture(params=["file", "s3"])
def any_lake(request: pytest.FixtureRequest) -> str:
    if request.param == "s3":
        request.getfixturevalue("s3_lake")
    return str(request.param)


def xcom_bytes(value: object) -> bytes:
    """Encode ``value`` the way a task's return value travels to the API server."""
    from airflow.sdk.bases.xcom import BaseXCom
    from airflow.sdk.execution_time import comms

    message = comms.SetXCom(
        key="return_value",
        value=BaseXCom.serialize_value(value),
        dag_id="wardrobe_ingest",
        run_id="r",
        task_id="discover",
        map_index=-1,
    )
    return comms._RequestFrame(id=1, body=message.model_dump()).as_bytes()


def run(endpoint: LLMEndpoint, run_id: str = "run-1") -> ingest.RunTotals:
    batches = ingest.discover()
    xcom_bytes(batches)  # what the discover task hands on must be sendable
    results = [ingest.process_batch(b, run_id=run_id, day=DAY, endpoint=endpoint) for b in batches]
    return ingest.commit_and_report(results)


def landing_dir() -> Path:
    return Path(lake.landing().path)


def write_native(name: bytes, data: bytes) -> Path:
    """Create a landing file by its raw bytes name (what a foreign writer can do)."""
    path = os.path.join(os.fsencode(landing_dir()), name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    return Path(os.fsdecode(path))


def quarantined_reasons() -> list[dict]:
    return [
        lake.read_json(p)
        for p in lake.list_files(lake.table("quarantine"))
        if p.name == "reason.json"
    ]


def quarantined_originals() -> set[bytes]:
    return {
        lake.read_bytes(p)
        for p in lake.list_files(lake.table("quarantine"))
        if p.name.startswith("original")
    }


# --- 1. one bad key never stops discovery ---------------------------------------------------


@pytest.mark.parametrize(
    "name", [b"u1/\xff\xfe.jpg", b"\xc3(/photo.jpg", b"u1/\xed\xa0\x80.jpg", b"u1/ok\x80.png"]
)
def test_a_file_name_that_is_not_utf8_is_quarantined_and_the_rest_goes_on(
    endpoint: LLMEndpoint, name: bytes
) -> None:
    good = photo(1)
    lake.write_bytes(lake.landing() / "u1/good.jpg", good)
    write_native(name, b"bytes under a name no encoder takes")

    totals = run(endpoint)

    assert (totals["accepted"], totals["quarantined"]) == (1, {"unsafe_key": 1})
    assert ingest.landing_keys(config.get_settings()) == []
    [reason] = quarantined_reasons()
    assert reason["code"] == "unsafe_key" and "\\x" in reason["landing_key"]
    assert quarantined_originals() == {b"bytes under a name no encoder takes"}
    rows = ingest.manifest_state(config.get_settings())
    assert all(key.encode("utf-8") for key in rows)  # Parquet takes every key


# --- 2. bytes lost in races -----------------------------------------------------------------


def reupload_after_first_read(monkeypatch: pytest.MonkeyPatch, key: str, new: bytes) -> list[str]:
    """Re-upload ``key`` right after the run has read it (temp file + rename / one PUT)."""
    real_read = lake.read_bytes
    done: list[str] = []

    def read_then_reupload(path: lake.ObjectStoragePath) -> bytes:
        data = real_read(path)
        if str(path).endswith("/" + key) and not done:
            done.append(key)
            lake.write_bytes(lake.landing() / key, new)
        return data

    monkeypatch.setattr(lake, "read_bytes", read_then_reupload)
    return done


@pytest.mark.parametrize("old_kind", ["good", "bad"])
def test_a_reupload_during_the_run_stays_in_landing_for_the_next_run(
    any_lake: str, endpoint: LLMEndpoint, monkeypatch: pytest.MonkeyPatch, old_kind: str
) -> None:
    old = photo(2) if old_kind == "good" else b"not a photo at all"
    new = photo(3)
    lake.write_bytes(lake.landing() / "u2/photo.jpg", old)
    done = reupload_after_first_read(monkeypatch, "u2/photo.jpg", new)

    first = run(endpoint)
    monkeypatch.undo()

    assert done == ["u2/photo.jpg"]
    assert lake.read_bytes(lake.landing() / "u2/photo.jpg") == new  # the new photo survived
    assert first["waiting"] == {"reuploaded": 1}
    second = run(endpoint, run_id="run-2")
    assert second["accepted"] == 1 and ingest.landing_keys(config.get_settings()) == []
    shas = set(lake.read_table("manifests")["raw_sha256"])
    assert {sha(old), sha(new)} <= shas  # both versions were processed


def test_a_reupload_while_discover_cleans_up_a_committed_key_is_kept(
    endpoint: LLMEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = photo(4), photo(5)
    lake.write_bytes(lake.landing() / "u2/p.jpg", old)
    run(endpoint)
    # The run died after its commit, before the upload left landing; then the app re-uploads
    # while the next discover compares the leftover with the manifest.
    lake.write_bytes(lake.landing() / "u2/p.jpg", old)
    reuploaded: list[str] = []
    for name in ("delete", "delete_if_unchanged"):  # the old blind delete, the new checked one
        real = getattr(lake, name, None)
        if real is None:
            continue

        def reupload_then(*args: object, _real: object = real) -> object:
            if not reuploaded:
                reuploaded.append("u2/p.jpg")
                lake.write_bytes(lake.landing() / "u2/p.jpg", new)
            return _real(*args)  # type: ignore[operator]

        monkeypatch.setattr(lake, name, reupload_then)
    batches = ingest.discover()
    monkeypatch.undo()
    assert reuploaded == ["u2/p.jpg"]
    assert lake.read_bytes(lake.landing() / "u2/p.jpg") == new
    assert batches == [["u2/p.jpg"]]  # the new bytes are a new upload


@pytest.mark.parametrize("key", ["u3/bad.jpg", "u3/sub/bad.jpg", "Feedback/bad.jpg"])
def test_a_quarantined_original_is_never_overwritten_by_a_later_upload(
    any_lake: str, endpoint: LLMEndpoint, key: str
) -> None:
    versions = [b"first bad bytes", b"second bad bytes", b""]
    for i, data in enumerate(versions):
        lake.write_bytes(lake.landing() / key, data)
        run(endpoint, run_id=f"run-{i}")

    assert quarantined_originals() == set(versions)
    assert len(quarantined_reasons()) == len(versions)
    assert ingest.landing_keys(config.get_settings()) == []


def test_a_local_file_still_being_written_is_left_alone_until_its_writer_is_done(
    endpoint: LLMEndpoint,
) -> None:
    whole = photo(6)
    path = landing_dir() / "u4" / "slow.jpg"
    path.parent.mkdir(parents=True)
    with path.open("wb") as writer:
        first = run(endpoint)  # the writer has opened the file, nothing written yet
        writer.write(whole[:100])
        writer.flush()
        second = run(endpoint, run_id="run-2")  # half-written
        writer.write(whole[100:])

    assert quarantined_reasons() == []  # not taken for an empty or truncated photo
    third = run(endpoint, run_id="run-3")
    assert third["accepted"] == 1
    [row] = ingest.manifest_state(config.get_settings()).values()
    assert row["raw_sha256"] == sha(whole)
    for totals in (first, second):
        assert (totals["photos"], totals["waiting"]) == (0, {"settling": 1})


def test_without_lease_support_a_local_file_waits_until_it_has_been_still_for_the_settle_time(
    endpoint: LLMEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The OS cannot tell (no leases: another owner, NFS, macOS).
    monkeypatch.setattr(lake, "open_for_writing", lambda path: None, raising=False)
    monkeypatch.setenv("DRESSCODE_INGEST_SETTLE_S", "30")
    config.get_settings.cache_clear()
    path = write_native(b"u4/fresh.jpg", photo(7))

    assert run(endpoint)["waiting"] == {"settling": 1}
    old = time.time() - 31
    os.utime(path, (old, old))
    assert run(endpoint, run_id="run-2")["accepted"] == 1


# --- 3. namespaces --------------------------------------------------------------------------


def test_feedback_is_not_a_user_and_its_prefix_is_never_claimed_twice(
    any_lake: str, endpoint: LLMEndpoint
) -> None:
    from dresscode.feedback import tasks as feedback

    for key in ("feedback/photo.jpg", "FEEDBACK/photo.jpg", "u5/photo.jpg"):
        lake.write_bytes(lake.landing() / key, photo(8))
    lake.write_bytes(lake.landing() / "feedback/events.jsonl", b"{}\n")

    ingest_keys = set(ingest.landing_keys(config.get_settings()))
    feedback_keys = set(feedback.discover())
    assert ingest_keys.isdisjoint(feedback_keys)
    assert ingest_keys | feedback_keys == {
        "feedback/photo.jpg",
        "feedback/events.jsonl",
        "FEEDBACK/photo.jpg",
        "u5/photo.jpg",
    }
    # Even handed feedback's key directly, ingest leaves it where feedback will find it.
    direct = ingest.process_batch(["feedback/photo.jpg"], run_id="r", day=DAY, endpoint=endpoint)
    assert lake.exists(lake.landing() / "feedback/photo.jpg")
    assert (direct["photos"], direct["waiting"]) == (0, {"other_stage": 1})

    totals = run(endpoint)

    assert (totals["accepted"], totals["quarantined"]) == (1, {"reserved_user_id": 1})
    users = set(lake.read_table("wardrobe_items")["user_id"])
    assert users == {"u5"}
    assert set(feedback.discover()) == feedback_keys  # feedback's files are untouched


@pytest.mark.parametrize("user", ["feedback", "Feedback", "FEEDBACK", "feedBack"])
def test_a_reserved_name_is_refused_as_a_user_id(user: str) -> None:
    with pytest.raises(lake.UnsafeKey) as refused:
        ingest.Upload.parse(f"{user}/photo.jpg")
    assert getattr(refused.value, "code", None) == "reserved_user_id"


# --- 4. validation that let things through --------------------------------------------------


@pytest.mark.parametrize(
    "key", ["rt-nl\n/photo.jpg", "u6/photo.jpg\n", "u6/photo\n.jpg", "u6\r\n/p.jpg"]
)
def test_a_trailing_newline_never_passes_as_part_of_a_user_id_or_name(
    endpoint: LLMEndpoint, key: str
) -> None:
    with pytest.raises(lake.UnsafeKey):
        ingest.Upload.parse(key)
    with pytest.raises(lake.UnsafeKey):
        lake.safe_segment("rt-nl\n", what="user id")
    lake.write_bytes(lake.landing() / "u6/good.jpg", photo(9))
    write_native(key.encode(), photo(10))

    totals = run(endpoint)

    assert (totals["accepted"], totals["quarantined"]) == (1, {"unsafe_key": 1})
    assert set(lake.read_table("wardrobe_items")["user_id"]) == {"u6"}


@pytest.mark.parametrize("name", [".tmp-0123abcd-photo.jpg", ".photo.jpg", ".partial"])
def test_a_dot_file_upload_is_reported_then_quarantined_when_old(
    any_lake: str, endpoint: LLMEndpoint, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    key = f"u7/{name}"
    lake.write_bytes(lake.landing() / key, b"a dot file")

    assert ingest.landing_keys(config.get_settings()) == [key]  # listed, not hidden
    young = run(endpoint)
    assert (young["photos"], young["waiting"]) == (0, {"hidden_file": 1})
    assert lake.exists(lake.landing() / key)

    monkeypatch.setenv("DRESSCODE_INGEST_HIDDEN_MAX_AGE_S", "0")  # an hour later
    config.get_settings.cache_clear()
    old = run(endpoint, run_id="run-2")

    assert old["quarantined"] == {"hidden_file": 1}
    assert ingest.landing_keys(config.get_settings()) == []
    [reason] = quarantined_reasons()
    assert reason["code"] == "hidden_file" and reason["landing_key"] == key
    assert quarantined_originals() == {b"a dot file"}


def test_the_reason_codes_of_keys_are_stable() -> None:
    assert {c.value for c in ingest.KeyCode} == {"unsafe_key", "reserved_user_id", "hidden_file"}
    assert "feedback" in tables.RESERVED_USER_IDS
