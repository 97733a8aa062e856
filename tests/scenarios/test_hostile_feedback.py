"""Hostile feedback files on a real local lake, through the functions feedback_ingest calls.

Each finding of the hostile-input review is one test here that failed before its fix: a time
that overflows UTC, a lone surrogate escape (and the partial commit it caused), a photo under
``landing/feedback/`` archived and copied into a report, one user's rejected event suppressing
another's, a byte-order mark eating line 1. Plus the unit rules behind them: a file commits
whole or not at all, and a retry after a half-done commit ends where a clean run ends.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from dresscode.core import lake
from dresscode.feedback import landing
from dresscode.feedback import tasks as feedback
from dresscode.feedback.events import Reason, Rejection

DAY = "2026-03-03"
NOW = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
CORPUS = Path(__file__).resolve().parents[1] / "corpus"
ITEM = {
    "category": "top",
    "subcategory": "t-shirt",
    "colors": [{"name": "white", "hex": "#ffffff"}],
    "pattern": "solid",
    "material": "cotton",
    "warmth": "light",
    "formality": "casual",
    "seasons": ["summer"],
    "water_resistant": False,
    "description": "a white t-shirt",
}
USERS = ("user-a", "user-c")


@pytest.fixture
def world(dresscode_home: Path) -> dict[str, list[str]]:
    """Two users, one digitized photo each with two items: user id -> item ids."""
    manifests, items, owned = [], [], {}
    for user in USERS:
        sha = hashlib.sha256(user.encode()).hexdigest()
        manifests.append(
            {
                "upload_key": f"{user}/p.jpg",
                "user_id": user,
                "status": "accepted",
                "image_sha256": sha,
                "prompt_version": 2,
                "processed_at": "2026-03-01T08:00:00.000+00:00",
            }
        )
        owned[user] = [f"{user}-item-{k}" for k in range(2)]
        for item_id in owned[user]:
            flat = {k: v for k, v in ITEM.items() if k != "colors"}
            items.append(
                flat
                | {
                    "item_id": item_id,
                    "user_id": user,
                    "image_sha256": sha,
                    "upload_key": f"{user}/p.jpg",
                    "prompt_version": 2,
                    "color_names": ["white"],
                    "color_hexes": ["#ffffff"],
                }
            )
    lake.write_parquet("manifests", "2026-03-01", "batch-test", manifests)
    lake.write_parquet("wardrobe_items", "2026-03-01", "batch-test", items)
    return owned


def _fix(user: str, item_id: str, minutes_ago: float, event_id: str, **kw: object) -> dict:
    at = (NOW - timedelta(minutes=minutes_ago)).isoformat()
    return {
        "event_id": event_id,
        "event_type": "item_corrected",
        "user_id": user,
        "event_time": at,
        "item_id": item_id,
        "changes": {"pattern": "striped"},
    } | kw


def _land_bytes(name: str, data: bytes) -> str:
    key = f"feedback/{name}"
    lake.write_bytes(lake.landing() / key, data)
    return key


def _land(name: str, lines: list[dict | str]) -> str:
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    return _land_bytes(name, text.encode())


def _run(now: datetime = NOW) -> feedback.Applied:
    return feedback.validate_and_apply(feedback.discover(), day=DAY, now=now)


def _rejected(applied: feedback.Applied) -> list[dict]:
    rows = []
    for path in applied["reports"].values():
        text = lake.read_bytes(lake.storage_path(path)).decode("utf-8")  # strict: must decode
        rows += [json.loads(line) for line in text.splitlines()]
    return sorted(rows, key=lambda r: (r["source"], r["line"]))


def _archived(data: bytes, name: str) -> bool:
    return lake.exists(lake.table("feedback") / "raw" / hashlib.sha256(data).hexdigest() / name)


def _lake_files(exclude: str = "quarantine") -> dict[str, bytes]:
    root = lake.root()
    return {
        str(p): lake.read_bytes(p)
        for p in lake.list_files(root)
        if f"/{exclude}/" not in str(p) and "/landing/" not in str(p)
    }


def _tables() -> dict[str, pd.DataFrame]:
    out = {}
    for name in ("feedback", "corrected_labels"):
        frame = lake.read_table(name)
        if not frame.empty:
            # When and at which table versions a row was computed differ between a retry and a
            # clean run (more commits happened); what was computed must not.
            frame = frame.drop(
                columns=["computed_at", "received_at", "lake_versions"], errors="ignore"
            )
            frame = frame.sort_values(list(frame.columns[:2])).reset_index(drop=True)
        out[name] = frame
    return out


# --- 1. a time that overflows UTC -------------------------------------------------------------


@pytest.mark.parametrize(
    "when",
    ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+00:00"],
)
def test_an_event_time_outside_utc_is_a_rejection_and_the_valid_lines_are_applied(
    world, when
) -> None:
    a = world["user-a"]
    lines = [_fix("user-a", a[0], 10, "ok-1"), _fix("user-a", a[1], 5, "odd-1", event_time=when)]
    key = _land("times.jsonl", lines)
    applied = _run()

    assert applied["accepted"] == 1 and applied["rejected"] == {"invalid_field": 1}
    [rejection] = _rejected(applied)
    assert rejection["line"] == 2 and "event_time" in rejection["detail"]
    assert rejection["message"] == Reason.INVALID_FIELD.sentence
    assert not lake.exists(lake.landing() / key)  # the file is done, not retried forever


# --- 2. a lone surrogate, and the partial commit it caused ------------------------------------


def test_a_lone_surrogate_is_a_rejection_and_the_file_commits_whole(world) -> None:
    a = world["user-a"]
    surrogate = json.dumps(_fix("user-a", "\ud800", 5, "bad-1"))  # ASCII: the escape "\ud800"
    assert "\\ud800" in surrogate
    key = _land("surrogate.jsonl", [_fix("user-a", a[0], 10, "ok-1"), surrogate])
    data = lake.read_bytes(lake.landing() / key)
    applied = _run()

    assert applied["accepted"] == 1 and applied["rejected"] == {"lone_surrogate": 1}
    [rejection] = _rejected(applied)
    assert rejection["line"] == 2 and rejection["raw"] == surrogate
    assert list(lake.read_table("feedback")["event_id"]) == ["ok-1"]
    assert _archived(data, "surrogate.jsonl") and not lake.exists(lake.landing() / key)


def test_text_with_surrogates_is_written_to_reports_as_escaped_utf8() -> None:
    rejection = Rejection(
        "feedback/\udcff.jsonl", "0" * 64, 3, Reason.UNKNOWN_ITEM, "no item \ud800", "\udfff"
    )
    record = rejection.record()
    encoded = json.dumps(record, ensure_ascii=False).encode("utf-8")  # raised before the fix
    assert json.loads(encoded)["detail"] == "no item \\ud800"
    assert record["source"] == "feedback/\\udcff.jsonl" and record["raw"] == "\\udfff"


def test_a_file_that_fails_to_prepare_writes_nothing_and_stays_in_landing(
    world, monkeypatch
) -> None:
    a = world["user-a"]
    good = _land("good.jsonl", [_fix("user-a", a[0], 10, "ok-1")])
    bad = _land("bad.jsonl", [_fix("user-a", a[1], 9, "ok-2"), "{broken"])
    real = landing.prepare

    def prepare(f, *args, **kwargs):
        if f.key == bad:
            raise RuntimeError("a surprise in this file's data")
        return real(f, *args, **kwargs)

    monkeypatch.setattr(landing, "prepare", prepare)
    applied = _run()

    assert applied["files"] == 1 and applied["unreadable"] == [bad]
    assert list(lake.read_table("feedback")["event_id"]) == ["ok-1"]
    assert list(applied["reports"]) == []  # nothing of bad.jsonl: no report, no archive
    assert not any("/raw/" in p and "bad.jsonl" in p for p in _lake_files())
    assert lake.exists(lake.landing() / bad) and not lake.exists(lake.landing() / good)

    monkeypatch.setattr(landing, "prepare", real)
    again = _run(NOW + timedelta(minutes=5))
    assert again["accepted"] == 1 and again["rejected"] == {"malformed_json": 1}
    assert set(lake.read_table("feedback")["event_id"]) == {"ok-1", "ok-2"}


def test_a_retry_after_a_half_done_commit_ends_where_a_clean_run_ends(
    world, monkeypatch, tmp_path
) -> None:
    a, c = world["user-a"], world["user-c"]
    lines = [_fix("user-a", a[0], 10, "ok-1"), _fix("user-c", c[0], 9, "ok-2"), "{"]
    _land("one.jsonl", lines)
    _land("two.jsonl", [_fix("user-a", a[1], 8, "ok-3")])
    real = lake.write_bytes
    calls = {"n": 0}

    def flaky(path, data):  # the storage dies after the first event part is written
        if str(path).endswith(".parquet") and "/feedback/date=" in str(path):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError("connection reset")
        real(path, data)

    monkeypatch.setattr(lake, "write_bytes", flaky)
    with pytest.raises(OSError):
        _run()
    assert len(feedback.discover()) == 2  # nothing left landing
    monkeypatch.setattr(lake, "write_bytes", real)
    retried = _run(NOW + timedelta(minutes=1))
    after_retry = _tables()

    for name in ("feedback", "corrected_labels", "reports"):
        for path in lake.list_files(lake.table(name)):
            lake.delete(path)
    _land("one.jsonl", lines)
    _land("two.jsonl", [_fix("user-a", a[1], 8, "ok-3")])
    clean = _run(NOW + timedelta(minutes=1))
    assert retried == clean
    for name, frame in _tables().items():
        pd.testing.assert_frame_equal(after_retry[name], frame, obj=name)


# --- 3. a photo under landing/feedback/ --------------------------------------------------------


@pytest.mark.parametrize("name", ["photo.jpg", "photo.jsonl", "notes.txt", "sub/photo.jpeg"])
def test_a_file_that_is_not_jsonl_is_quarantined_never_archived_or_copied(world, name) -> None:
    photo = (CORPUS / "progressive_exif_gps.jpg").read_bytes()
    exif = photo[20 : 20 + 234]  # the APP1 segment: the photo's GPS position
    assert b"Exif" in exif
    data = photo if name != "notes.txt" else b"\x00\x01binary notes " + exif
    key = _land_bytes(name, data)
    ok = _land("ok.jsonl", [_fix("user-a", world["user-a"][0], 5, "ok-1")])
    applied = _run()

    assert applied["files"] == 1 and applied["accepted"] == 1
    [aside] = applied["quarantined"]
    sha = hashlib.sha256(data).hexdigest()
    assert aside["key"] == key and aside["size"] == len(data) and aside["sha256"] == sha
    assert aside["reason"] == "not_jsonl"
    assert list(applied["reports"]) == []  # no report copies its bytes, escaped or not
    for path, stored in _lake_files().items():  # not archived, not in any table or report
        assert exif not in stored, path
        assert sha not in path, path
    escaped = json.dumps(exif.decode("utf-8", "backslashreplace"))[1:40]
    assert not any(escaped.encode() in stored for stored in _lake_files().values())
    quarantined = {str(p): lake.read_bytes(p) for p in lake.list_files(lake.table("quarantine"))}
    [(original, kept)] = [(p, b) for p, b in quarantined.items() if "reason.json" not in p]
    assert kept == data and f"date={DAY}" in original
    reason = json.loads(next(b for p, b in quarantined.items() if p.endswith("reason.json")))
    assert reason["code"] == "not_jsonl" and reason["detail"]["sha256"] == sha
    assert not lake.exists(lake.landing() / key) and not lake.exists(lake.landing() / ok)


def test_a_non_jsonl_key_uploaded_twice_with_other_bytes_keeps_both_originals(world) -> None:
    first, second = b"\x89PNG first upload", b"\x89PNG second, other bytes"
    _land_bytes("photo.png", first)
    _run()
    _land_bytes("photo.png", second)  # the same key again, after the first went to quarantine
    _run()

    kept = [
        lake.read_bytes(p)
        for p in lake.list_files(lake.table("quarantine"))
        if not str(p).endswith("reason.json")
    ]
    assert sorted(kept) == sorted([first, second])


# --- 4. one user suppressing another's feedback ----------------------------------------------


def test_a_rejected_event_of_one_user_does_not_claim_the_id_of_another_users_event(world) -> None:
    a = world["user-a"]
    hostile = _fix("user-c", a[0], 20, "shared-1")  # user-c points at user-a's item: not_owner
    legit = _fix("user-a", a[0], 10, "shared-1")
    _land("x.jsonl", [hostile, legit])
    applied = _run()

    assert applied["accepted"] == 1 and applied["rejected"] == {"not_owner": 1}
    [row] = lake.read_table("feedback").to_dict("records")
    assert (row["user_id"], row["event_id"]) == ("user-a", "shared-1")


def test_event_ids_are_per_user_across_files_and_runs(world) -> None:
    a, c = world["user-a"], world["user-c"]
    _land("c.jsonl", [_fix("user-c", c[0], 30, "same-id")])
    applied = _run()
    assert applied["accepted"] == 1

    _land("a.jsonl", [_fix("user-a", a[0], 20, "same-id"), _fix("user-a", a[1], 10, "same-id")])
    later = _run(NOW + timedelta(minutes=1))
    assert later["accepted"] == 1 and later["rejected"] == {"duplicate_event": 1}
    [dup] = _rejected(later)
    assert dup["line"] == 2 and "feedback/a.jsonl" in dup["detail"]
    owners = lake.read_table("feedback").groupby("user_id")["event_id"].apply(list).to_dict()
    assert owners == {"user-a": ["same-id"], "user-c": ["same-id"]}


def test_a_replayed_deletion_is_a_duplicate_not_an_event_about_a_deleted_item(world) -> None:
    a = world["user-a"]
    delete = _fix("user-a", a[0], 10, "del-1", event_type="item_deleted")
    delete.pop("changes")
    _land("d1.jsonl", [delete])
    _run()
    _land("d2.jsonl", [delete, "{"])  # other bytes, the same event
    again = _run(NOW + timedelta(minutes=1))
    assert again["rejected"] == {"duplicate_event": 1, "malformed_json": 1}


# --- 5. a byte-order mark ---------------------------------------------------------------------


def test_a_leading_byte_order_mark_does_not_cost_the_first_line(world) -> None:
    a = world["user-a"]
    text = "".join(
        json.dumps(e) + "\r\n"
        for e in (_fix("user-a", a[0], 10, "bom-1"), _fix("user-a", a[1], 5, "bom-2"))
    )
    _land_bytes("bom.jsonl", b"\xef\xbb\xbf" + text.encode())
    applied = _run()
    assert applied["accepted"] == 2 and applied["rejected_total"] == 0


def test_invalid_utf8_and_binary_lines_are_rejections_not_crashes(world) -> None:
    a = world["user-a"]
    good = json.dumps(_fix("user-a", a[0], 10, "ok-1")).encode()
    cesu = json.dumps(_fix("user-a", a[1], 9, "x"), ensure_ascii=False).replace("x", "\ud800")
    lines = [
        good,
        b"\xff\xfe\x00{",
        cesu.encode("utf-8", "surrogatepass"),  # a surrogate encoded raw: not UTF-8
        b'{"event_id": NaN}',
        b"[" * 100_000,
        b'{"n": ' + b"9" * 5000 + b"}",
        b"\xef\xbb\xbf{}",  # a BOM inside the file is not stripped: not JSON
    ]
    _land_bytes("bytes.jsonl", b"\n".join(lines) + b"\n")
    applied = _run()
    assert applied["accepted"] == 1
    assert [r["reason"] for r in _rejected(applied)] == [
        "not_utf8",
        "not_utf8",
        "malformed_json",
        "malformed_json",
        "malformed_json",
        "malformed_json",
    ]


def test_a_file_name_that_is_not_utf8_is_processed_and_reported_encodably(world) -> None:
    folder = Path(str(lake.landing().path)) / "feedback"
    folder.mkdir(parents=True, exist_ok=True)
    good = json.dumps(_fix("user-a", world["user-a"][0], 5, "ok-1")).encode()
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.jsonl"), "wb") as fh:
        fh.write(good + b"\n{\n")
    applied = _run()

    assert applied["accepted"] == 1 and applied["rejected"] == {"malformed_json": 1}
    [rejection] = _rejected(applied)
    assert rejection["source"] == "feedback/caf\\udce9.jsonl"
    assert list(lake.read_table("feedback")["source"]) == ["feedback/caf\\udce9.jsonl"]
    assert os.listdir(os.fsencode(folder)) == []
