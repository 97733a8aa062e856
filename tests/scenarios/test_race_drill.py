"""The race drill: 100 re-uploads to keys while a run processes them; no upload is lost.

An app re-uploads to the same key (an S3 PUT; locally a temp file and a rename) while the
ingest run holds the old bytes. Deterministic, not timed: the drill hooks the run itself.

* after the read — the lake's ``read_bytes`` re-uploads the key right after the run read it
  (on S3 and on the local folder);
* between the check and the delete — on S3 the re-upload lands right before the run's
  ``DeleteObject`` leaves (its ``If-Match`` must refuse it).

Each version is then either processed (a final manifest row carries its sha256) or still in
landing for the next run; a second run processes what stayed. Lost = neither.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dresscode.core import config, lake, tables
from dresscode.core.connections import LLMEndpoint
from dresscode.ingest import tasks as ingest
from dresscode.local import samples
from dresscode.sim.testing import running_simulator

MODEL = "google/gemma-4-26B-A4B-it"
DAY = "2026-11-23"
N_KEYS = 100
BAD_EVERY = 10  # every 10th first version is a bad file: the quarantine path races too


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def version(i: int, generation: int) -> bytes:
    if generation == 1 and i % BAD_EVERY == 0:
        return f"not a photo {i}".encode()
    img, _ = samples.wardrobe_photo(1000 * generation + i, size=(160, 120))
    return samples.encode(img, "JPEG")


@pytest.fixture
def endpoint(dresscode_home: Path) -> Iterator[LLMEndpoint]:
    script = dresscode_home / "script.jsonl"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("")
    with running_simulator(
        scripts=[script], served_model_name=[f"{MODEL}=perfect"], fixed_latency_ms=1
    ) as url:
        yield LLMEndpoint(url, "EMPTY", MODEL, 20.0, 16)


def run(endpoint: LLMEndpoint, run_id: str) -> ingest.RunTotals:
    batches = ingest.discover()
    results = [ingest.process_batch(b, run_id=run_id, day=DAY, endpoint=endpoint) for b in batches]
    return ingest.commit_and_report(results)


def reupload_after_read(monkeypatch: pytest.MonkeyPatch, new: dict[str, bytes]) -> set[str]:
    """Re-upload each key once, right after the run read it (prepare runs in threads)."""
    real_read = lake.read_bytes
    base = str(lake.landing()).rstrip("/") + "/"
    done: set[str] = set()
    lock = threading.Lock()

    def read_then_reupload(path: lake.ObjectStoragePath) -> bytes:
        data = real_read(path)
        key = str(path)[len(base) :]
        with lock:
            first = key in new and key not in done
            if first:
                done.add(key)
        if first:
            lake.write_bytes(lake.landing() / key, new[key])
        return data

    monkeypatch.setattr(lake, "read_bytes", read_then_reupload)
    return done


def reupload_before_delete(monkeypatch: pytest.MonkeyPatch, new: dict[str, bytes]) -> set[str]:
    """S3: the re-upload lands after the run's re-check, right before its DeleteObject."""
    fs = lake.landing().fs
    real_call = fs.call_s3
    prefix = lake.landing().path.rstrip("/") + "/"
    done: set[str] = set()

    def call_s3(method: str, *args: Any, **kwargs: Any) -> Any:
        if method == "delete_object":
            full = f"{kwargs['Bucket']}/{kwargs['Key']}"
            key = full[len(prefix) :]
            if key in new and key not in done:
                done.add(key)
                fs.pipe_file(full, new[key])  # one PUT, straight to the server
        return real_call(method, *args, **kwargs)

    monkeypatch.setattr(fs, "call_s3", call_s3)
    return done


def account(uploads: dict[str, list[bytes]]) -> dict[str, int]:
    """Every version: processed (a final manifest row has its bytes), in landing, or lost."""
    settings = config.get_settings()
    rows = lake.read_table(tables.MANIFESTS.name, settings)
    final = rows[rows["status"].isin(list(tables.FINAL_STATUSES))]
    processed_shas = set(zip(final["upload_key"], final["raw_sha256"], strict=True))
    in_landing = {}
    for key in ingest.landing_keys(settings):
        in_landing[key] = sha(lake.read_bytes(lake.landing() / key))
    figures = {"uploads": 0, "processed": 0, "still_in_landing": 0, "lost": 0}
    for key, versions in uploads.items():
        for data in versions:
            figures["uploads"] += 1
            if (key, sha(data)) in processed_shas:
                figures["processed"] += 1
            elif in_landing.get(key) == sha(data):
                figures["still_in_landing"] += 1
            else:
                figures["lost"] += 1
    return figures


@pytest.mark.parametrize("where", ["file", "s3"])
def test_reuploads_under_processing_are_never_lost(
    where: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if where == "s3":
        request.getfixturevalue("s3_lake")
    endpoint = request.getfixturevalue("endpoint")
    started = time.monotonic()
    keys = [f"drill-{i % 10}/p{i:03d}.jpg" for i in range(N_KEYS)]
    uploads = {key: [version(i, 1)] for i, key in enumerate(keys)}
    for key, (first,) in uploads.items():
        lake.write_bytes(lake.landing() / key, first)
    second = {key: version(i, 2) for i, key in enumerate(keys)}
    for key, data in second.items():
        uploads[key].append(data)

    # S3: half the keys are re-uploaded after the read, half between the check and the delete.
    late = set(keys[N_KEYS // 2 :]) if where == "s3" else set()
    after_read = reupload_after_read(
        monkeypatch, {k: v for k, v in second.items() if k not in late}
    )
    before_delete = (
        reupload_before_delete(monkeypatch, {k: v for k, v in second.items() if k in late})
        if late
        else set()
    )
    first_run = run(endpoint, "race-1")
    monkeypatch.undo()
    after_first = account(uploads)
    reuploaded = len(after_read) + len(before_delete)

    second_run = run(endpoint, "race-2")
    after_second = account(uploads)
    seconds = time.monotonic() - started

    print(
        f"\nrace drill ({where}): {reuploaded} re-uploads under processing; after run 1 "
        f"{after_first}; after run 2 {after_second}; {seconds:.1f} s"
    )
    assert reuploaded == N_KEYS
    assert after_first == {
        "uploads": 2 * N_KEYS,
        "processed": N_KEYS,
        "still_in_landing": N_KEYS,
        "lost": 0,
    }
    assert first_run["waiting"] == {"reuploaded": N_KEYS}
    assert after_second == {
        "uploads": 2 * N_KEYS,
        "processed": 2 * N_KEYS,
        "still_in_landing": 0,
        "lost": 0,
    }
    assert second_run["accepted"] == N_KEYS
    assert ingest.landing_keys(config.get_settings()) == []
