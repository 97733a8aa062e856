"""Feedback events on a real local lake: validation, dedup, ordering, labels, golden candidates."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from dresscode.core import config, delta, lake
from dresscode.core.tables import current_wardrobe_items
from dresscode.feedback import events, references
from dresscode.feedback import labels as feedback_labels
from dresscode.feedback import tasks as feedback
from dresscode.feedback.events import Reason
from dresscode.ingest import photos as images
from dresscode.ingest import tasks as ingest
from dresscode.local import cli, golden_tool, samples, seed
from dresscode.outfits import stylist as outfits
from dresscode.registry import golden

DAY = "2026-03-03"
NOW = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
TABLES = ("feedback", "corrected_labels", "golden_candidates")


@dataclass(frozen=True)
class Photo:
    user_id: str
    sha: str
    jpeg: bytes
    items: list[dict]
    item_ids: list[str]


@pytest.fixture
def world(dresscode_home: Path) -> dict[str, Photo]:
    """Two users' digitized photos (images, manifests, items) and one day of suggestions."""
    photos = {
        "a": _photo("user-a", 1, 3),
        "b": _photo("user-a", 2, 1),
        "c": _photo("user-c", 3, 2),
        "d": _photo("user-c", 4, 1),
    }
    manifests, items = [], []
    for key, p in photos.items():
        lake.write_bytes(ingest.image_path(p.sha, config.get_settings()), p.jpeg)
        upload = f"{p.user_id}/{key}.jpg"
        manifests.append(
            {
                "upload_key": upload,
                "user_id": p.user_id,
                "status": "accepted",
                "image_sha256": p.sha,
                "prompt_version": 2,
                "processed_at": "2026-03-01T08:00:00.000+00:00",
            }
        )
        for item_id, item in zip(p.item_ids, p.items, strict=True):
            items.append(
                {
                    "item_id": item_id,
                    "user_id": p.user_id,
                    "image_sha256": p.sha,
                    "upload_key": upload,
                    "prompt_version": 2,
                    **_flat(item),
                }
            )
    lake.write_parquet("manifests", "2026-03-01", "batch-test", manifests)
    lake.write_parquet("wardrobe_items", "2026-03-01", "batch-test", items)
    suggestion = outfits.Suggestion(
        user_id="user-a",
        day=date(2026, 3, 2),
        outfits=[{"item_ids": photos["a"].item_ids[:2], "occasion": "work", "reason": "mild"}] * 2,
        prompt_version="1",
    )
    row = suggestion.row() | {"generated_at": datetime(2026, 3, 2, 5, tzinfo=UTC)}
    lake.write_parquet("outfit_suggestions", "2026-03-02", "users-test", [row])
    return photos


def _photo(user_id: str, seed_: int, n_items: int) -> Photo:
    img, labels = samples.wardrobe_photo(seed_, size=(320, 240), n_items=n_items)
    png = io.BytesIO()
    img.save(png, "PNG")
    clean = images.normalize(png.getvalue(), long_edge=320)
    ids = [f"{user_id}-{seed_}-{i}" for i in range(n_items)]
    return Photo(user_id, clean.sha256, clean.jpeg, [i.to_json() for i in labels], ids)


def _flat(item: dict) -> dict:
    flat = {k: v for k, v in item.items() if k != "colors"}
    flat["color_names"] = [c["name"] for c in item["colors"]]
    flat["color_hexes"] = [c["hex"] for c in item["colors"]]
    return flat


def _event(kind: str, user: str, minutes_ago: float, event_id: str | None = None, **fields) -> dict:
    at = (NOW - timedelta(minutes=minutes_ago)).isoformat()
    body = json.dumps(fields, sort_keys=True)
    eid = event_id or "e-" + hashlib.sha256(f"{kind}{user}{at}{body}".encode()).hexdigest()[:12]
    return {"event_id": eid, "event_type": kind, "user_id": user, "event_time": at, **fields}


def _land(name: str, lines: list[dict | str]) -> str:
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    key = f"feedback/{name}"
    lake.write_bytes(lake.landing() / key, text.encode())
    return key


def _run(now: datetime = NOW) -> tuple[dict, dict]:
    applied = feedback.validate_and_apply(feedback.discover(), day=DAY, now=now)
    staged = feedback.stage_golden_candidates(day=DAY, now=now)
    return applied, staged


def _rejected(applied: dict) -> list[dict]:
    rows = []
    for path in applied["reports"].values():
        text = lake.read_bytes(lake.storage_path(path)).decode()
        rows += [json.loads(line) for line in text.splitlines()]
    return rows


def _labels(photo: Photo) -> list[dict]:
    table = feedback_labels.latest_corrected_labels()
    row = table[table["image_sha256"] == photo.sha].iloc[0]
    return json.loads(row["items_json"])


def _snapshot() -> dict[str, pd.DataFrame]:
    out = {}
    for name in TABLES:
        frame = lake.read_table(name)
        out[name] = frame.sort_values(list(frame.columns[:2])).reset_index(drop=True)
    return out


def _fix_category(photo: Photo, index: int, category: str, minutes_ago: float, **kw) -> dict:
    changes = {"category": category}
    return _event(
        "item_corrected",
        photo.user_id,
        minutes_ago,
        item_id=photo.item_ids[index],
        changes=changes,
        **kw,
    )


# --- the acceptance criteria -----------------------------------------------------------------


def test_corrections_raise_the_correction_rate_and_stage_golden_candidates(world) -> None:
    a = world["a"]
    before = feedback_labels.correction_rate()
    assert before["photos"] == 4 and before["corrected_photos"] == 0
    assert before["correction_rate"] == 0.0

    _land("day1.jsonl", [_fix_category(a, 0, "outerwear", 30)])
    applied, staged = _run()

    assert applied["accepted"] == 1 and applied["rejected_total"] == 0
    after = feedback_labels.correction_rate()
    assert after["corrected_photos"] == 1 and after["correction_rate"] == 0.25
    assert after["corrected_items"] == 1 and after["items"] == 7
    assert after["by_prompt_version"]["2"]["corrected_photos"] == 1
    labels = _labels(a)
    assert labels[0]["category"] == "outerwear"
    assert labels[1:] == a.items[1:]
    assert staged["staged"] == 1 and staged["pending"] == 1
    candidates = golden.latest_candidates()
    assert list(candidates["image_sha256"]) == [a.sha]
    assert json.loads(candidates.iloc[0]["items_json"]) == labels
    # The candidate names the table versions its labels were computed from (time travel).
    read_at = json.loads(candidates.iloc[0]["lake_versions"])
    assert read_at == {
        "wardrobe_items": delta.current_version("wardrobe_items"),
        "user_events": delta.current_version("user_events"),
    }


def test_corrections_move_the_monitoring_correction_rate_metric(world) -> None:
    from dresscode.monitoring import metrics as monitoring

    day = datetime(2026, 3, 1, tzinfo=UTC)  # the photos were digitized that day

    def rate() -> tuple[float, int]:
        frame = monitoring.compute_metrics(day, day + timedelta(days=1))
        row = frame[frame["metric"] == "correction_rate"].iloc[0]
        return float(row["value"]), int(row["n"])

    assert rate() == (0.0, 4)
    _land("day1.jsonl", [_fix_category(world["a"], 0, "outerwear", 30)])
    _run()
    assert rate() == (0.25, 4)
    _land("day1.jsonl", [_fix_category(world["a"], 0, "outerwear", 30)])  # replayed
    _run(NOW + timedelta(hours=1))
    assert rate() == (0.25, 4)


def test_replaying_the_same_file_changes_no_table(world) -> None:
    a, b = world["a"], world["b"]
    lines = [
        _fix_category(a, 0, "dress", 40),
        _event("item_deleted", b.user_id, 35, item_id=b.item_ids[0]),
        _event(
            "outfit_rated", "user-a", 30, suggestion_day="2026-03-02", outfit_index=1, rating="up"
        ),
        "{broken",
    ]
    _land("replay.jsonl", lines)
    first, _ = _run()
    assert first["accepted"] == 3 and first["rejected"] == {"malformed_json": 1}
    tables = _snapshot()
    report = _rejected(first)

    _land("replay.jsonl", lines)
    again, staged = _run(NOW + timedelta(hours=3))

    assert staged["staged"] == 0
    for name, frame in _snapshot().items():
        pd.testing.assert_frame_equal(frame, tables[name], obj=name)
    assert _rejected(again) == report
    assert feedback.discover() == []


# --- bad inputs ------------------------------------------------------------------------------


def test_malformed_json_is_kept_with_its_line_and_the_rest_applied(world) -> None:
    a = world["a"]
    _land("mixed.jsonl", [_fix_category(a, 0, "dress", 10), '{"event_id": "x", ', "[1, 2"])
    applied, _ = _run()

    assert applied["accepted"] == 1
    rejected = _rejected(applied)
    assert [(r["line"], r["reason"]) for r in rejected] == [
        (2, "malformed_json"),
        (3, "malformed_json"),
    ]
    assert rejected[0]["raw"] == '{"event_id": "x", '
    assert rejected[0]["source"] == "feedback/mixed.jsonl"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: e.pop("event_time"), Reason.MISSING_FIELD),
        (lambda e: e.pop("event_type"), Reason.MISSING_FIELD),
        (lambda e: e.pop("changes"), Reason.MISSING_FIELD),
        (lambda e: e.update(user_id=42), Reason.INVALID_FIELD),
        (lambda e: e.update(event_time="2026-03-03T10:00:00"), Reason.INVALID_FIELD),  # no zone
        (lambda e: e.update(event_time="yesterday"), Reason.INVALID_FIELD),
        (lambda e: e.update(changes={"category": "spacesuit"}), Reason.INVALID_FIELD),
        (
            lambda e: e.update(changes={"colors": [{"name": "red", "hex": "red"}]}),
            Reason.INVALID_FIELD,
        ),
        (lambda e: e.update(changes={}), Reason.INVALID_FIELD),
        (lambda e: e.update(stars=5), Reason.INVALID_FIELD),
    ],
    ids=[
        "no-time",
        "no-type",
        "no-changes",
        "user-int",
        "naive-time",
        "not-a-time",
        "bad-category",
        "bad-hex",
        "no-change",
        "extra-field",
    ],
)
def test_events_missing_fields_or_with_wrong_types_are_rejected(world, mutate, reason) -> None:
    event = _fix_category(world["a"], 0, "dress", 10)
    mutate(event)
    _land("bad.jsonl", [event])
    applied, _ = _run()

    assert applied["accepted"] == 0
    assert [r["reason"] for r in _rejected(applied)] == [reason.value]
    assert lake.read_table("feedback").empty


def test_a_line_that_is_not_an_object_or_not_utf8_is_rejected(world) -> None:
    key = "feedback/odd.jsonl"
    lake.write_bytes(lake.landing() / key, b'"just a string"\n\xff\xfe{}\n')
    applied, _ = _run()
    assert [r["reason"] for r in _rejected(applied)] == ["invalid_field", "not_utf8"]


def test_a_duplicate_event_in_one_file_keeps_the_first(world) -> None:
    a = world["a"]
    first = _fix_category(a, 0, "dress", 10, event_id="dup-1")
    second = _fix_category(a, 0, "bag", 5, event_id="dup-1")
    _land("dups.jsonl", [first, second])
    applied, _ = _run()

    assert applied["accepted"] == 1
    assert [(r["line"], r["reason"]) for r in _rejected(applied)] == [(2, "duplicate_event")]
    assert _labels(a)[0]["category"] == "dress"


def test_a_duplicate_event_in_another_file_or_a_later_run_is_rejected(world) -> None:
    a = world["a"]
    event = _fix_category(a, 0, "dress", 10, event_id="dup-2")
    other = _fix_category(a, 1, "bag", 8)
    _land("one.jsonl", [event])
    _land("two.jsonl", [event, other])
    applied, _ = _run()
    assert applied["accepted"] == 2
    assert [r["reason"] for r in _rejected(applied)] == ["duplicate_event"]
    assert "feedback/one.jsonl" in _rejected(applied)[0]["detail"]
    tables = _snapshot()

    _land("three.jsonl", [event, dict(_fix_category(a, 2, "dress", 7), user_id=42)])  # later
    later, _ = _run(NOW + timedelta(hours=1))
    assert later["accepted"] == 0
    assert later["rejected"] == {"duplicate_event": 1, "invalid_field": 1}
    for name, frame in _snapshot().items():
        pd.testing.assert_frame_equal(frame, tables[name], obj=name)

    _land("copy-of-one.jsonl", [event])  # the same bytes under a new name: a replay
    _run(NOW + timedelta(hours=2))
    for name, frame in _snapshot().items():
        pd.testing.assert_frame_equal(frame, tables[name], obj=name)


def test_feedback_for_items_photos_or_suggestions_that_are_not_the_users_is_rejected(
    world,
) -> None:
    a, c = world["a"], world["c"]
    item = a.items[0]
    lines = [
        _event("item_deleted", "user-a", 9, item_id="no-such-item"),
        _event("item_deleted", "user-c", 8, item_id=a.item_ids[0]),
        _event("item_added", "user-a", 7, image_sha256="0" * 64, item=item),
        _event("item_added", "user-a", 6, image_sha256=c.sha, item=item),
        _event(
            "outfit_rated", "user-a", 5, suggestion_day="2026-02-01", outfit_index=0, rating="up"
        ),
        _event(
            "outfit_rated", "user-a", 4, suggestion_day="2026-03-02", outfit_index=7, rating="up"
        ),
        _event(
            "outfit_rated", "user-c", 3, suggestion_day="2026-03-02", outfit_index=0, rating="up"
        ),
        _event("wore_instead", "user-a", 2, suggestion_day="2026-03-02", item_ids=[c.item_ids[0]]),
    ]
    _land("foreign.jsonl", lines)
    applied, _ = _run()

    assert applied["accepted"] == 0
    assert [r["reason"] for r in _rejected(applied)] == [
        "unknown_item",
        "not_owner",
        "unknown_photo",
        "not_owner",
        "unknown_suggestion",
        "unknown_suggestion",
        "unknown_suggestion",
        "not_owner",
    ]


def test_events_beyond_the_clock_skew_allowance_are_rejected(world, monkeypatch) -> None:
    monkeypatch.setenv("DRESSCODE_FEEDBACK_MAX_FUTURE_S", "120")
    config.get_settings.cache_clear()
    a = world["a"]
    _land("future.jsonl", [_fix_category(a, 0, "dress", -1), _fix_category(a, 1, "bag", -5)])
    applied, _ = _run()

    assert applied["accepted"] == 1  # one minute ahead is clock skew, five is the future
    assert [(r["line"], r["reason"]) for r in _rejected(applied)] == [(2, "future_event")]


def test_an_unknown_event_type_is_rejected_and_named(world) -> None:
    _land("types.jsonl", [_event("item_liked", "user-a", 5, item_id=world["a"].item_ids[0])])
    applied, _ = _run()
    rejected = _rejected(applied)
    assert [r["reason"] for r in rejected] == ["unknown_event_type"]
    assert "item_liked" in rejected[0]["detail"]


def test_an_empty_file_is_reported_archived_and_cleared(world) -> None:
    key = _land("empty.jsonl", [])
    applied, _ = _run()

    assert applied["files"] == 1 and applied["lines"] == 0 and applied["accepted"] == 0
    assert [(r["line"], r["reason"]) for r in _rejected(applied)] == [(0, "empty_file")]
    sha = hashlib.sha256(b"").hexdigest()
    assert lake.exists(lake.table("feedback") / "raw" / sha / "empty.jsonl")
    assert not lake.exists(lake.landing() / key)


def test_rejections_are_counted_in_the_log_once_per_reason(world, caplog) -> None:
    lines = ["{", "{", _event("item_deleted", "user-a", 1, item_id="nope")]
    _land("log.jsonl", lines)
    with caplog.at_level(logging.WARNING, logger="dresscode.feedback"):
        _run()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("2 rejected as malformed_json (lines 1, 2)" in m for m in warnings)
    assert any("1 rejected as unknown_item (lines 3)" in m for m in warnings)
    assert len(warnings) == 2


# --- ordering and labels ---------------------------------------------------------------------


def test_corrections_apply_in_event_time_order_not_file_order(world) -> None:
    a = world["a"]
    newer = _fix_category(a, 0, "bag", 5)
    older = _fix_category(a, 0, "dress", 50)
    _land("order.jsonl", [newer, older])
    _run()
    assert _labels(a)[0]["category"] == "bag"


def test_a_correction_after_a_deletion_is_rejected(world) -> None:
    a = world["a"]
    delete = _event("item_deleted", "user-a", 20, item_id=a.item_ids[0])
    _land("late.jsonl", [delete, _fix_category(a, 0, "bag", 10)])
    applied, _ = _run()

    assert [r["reason"] for r in _rejected(applied)] == ["item_deleted"]
    assert _labels(a) == a.items[1:]


def test_a_deletion_after_a_correction_removes_the_corrected_item(world) -> None:
    a = world["a"]
    delete = _event("item_deleted", "user-a", 10, item_id=a.item_ids[0])
    _land("fix-then-delete.jsonl", [delete, _fix_category(a, 0, "bag", 20)])
    applied, _ = _run()

    assert applied["accepted"] == 2 and applied["rejected_total"] == 0
    assert _labels(a) == a.items[1:]
    row = feedback_labels.latest_corrected_labels().set_index("image_sha256").loc[a.sha]
    assert row["n_corrections"] == 2 and list(row["item_ids"]) == a.item_ids[1:]


def test_an_added_item_can_be_corrected_later(world) -> None:
    b = world["b"]
    scarf = dict(world["c"].items[0], category="accessory", subcategory="scarf")
    added = _event("item_added", "user-a", 30, event_id="add-1", image_sha256=b.sha, item=scarf)
    _land("add.jsonl", [added])
    _run()
    new_id = references.added_item_id("user-a", "add-1")
    _land(
        "fix-added.jsonl",
        [_event("item_corrected", "user-a", 10, item_id=new_id, changes={"pattern": "dotted"})],
    )
    applied, _ = _run(NOW + timedelta(minutes=1))

    assert applied["accepted"] == 1
    labels = _labels(b)
    assert labels == [*b.items, dict(scarf, pattern="dotted")]


def test_outfit_events_are_recorded_without_touching_labels(world) -> None:
    a = world["a"]
    ref = {"suggestion_day": "2026-03-02"}
    _land(
        "thumbs.jsonl",
        [
            _event("outfit_rated", "user-a", 9, **ref, outfit_index=0, rating="up"),
            _event("outfit_rated", "user-a", 8, **ref, outfit_index=1, rating="down"),
            _event("wore_instead", "user-a", 7, **ref, item_ids=a.item_ids[1:]),
        ],
    )
    applied, staged = _run()

    assert applied["by_type"] == {"outfit_rated": 2, "wore_instead": 1}
    events = lake.read_table("feedback")
    assert events["item_id"].isna().all() and events["image_sha256"].isna().all()
    assert json.loads(events.sort_values("event_time").iloc[1]["payload"])["rating"] == "down"
    assert lake.read_table("corrected_labels").empty and staged["staged"] == 0


def test_feedback_rows_follow_the_contract(world) -> None:
    a = world["a"]
    event = _fix_category(a, 2, "dress", 60 * 24)  # sent from New York
    event["event_time"] = "2026-03-01T21:00:00-05:00"  # 02:00 UTC on March 2
    _land("contract.jsonl", [event])
    _run()

    rows = lake.read_table("feedback")
    row = rows.iloc[0]
    assert row["date"] == "2026-03-02"  # partitioned by event day (UTC)
    assert row["event_time"] == "2026-03-02T02:00:00.000+00:00"
    assert row["received_at"] == "2026-03-03T12:00:00.000+00:00"
    assert (row["item_id"], row["image_sha256"], row["prompt_version"]) == (
        a.item_ids[2],
        a.sha,
        "2",
    )
    assert json.loads(row["payload"]) == {
        "item_id": a.item_ids[2],
        "changes": {"category": "dress"},
    }
    assert row["source"] == "feedback/contract.jsonl"


def test_a_run_that_died_after_writing_events_is_completed_by_the_next(world) -> None:
    a = world["a"]
    _land("heal.jsonl", [_fix_category(a, 0, "dress", 10)])
    _run()
    expected = _labels(a)
    for name in ("corrected_labels", "golden_candidates"):  # as if the run died before them
        for path in lake.list_files(lake.table(name)):
            lake.delete(path)

    applied, staged = _run()
    assert applied["files"] == 0 and applied["labels_updated"] == 1
    assert _labels(a) == expected and staged["staged"] == 1


def test_a_file_left_in_landing_after_its_commit_is_processed_to_the_same_result(world) -> None:
    a = world["a"]
    lines = [_fix_category(a, 0, "dress", 10), "{"]
    _land("again.jsonl", lines)
    _run()
    tables = _snapshot()
    _land("again.jsonl", lines)  # the landing delete never happened
    applied, _ = _run(NOW + timedelta(minutes=5))
    assert applied["accepted"] == 1 and applied["rejected"] == {"malformed_json": 1}
    for name, frame in _snapshot().items():
        pd.testing.assert_frame_equal(frame, tables[name], obj=name)


# --- golden accept ---------------------------------------------------------------------------


@pytest.fixture
def staged(world) -> dict[str, Photo]:
    a, c = world["a"], world["c"]
    _land(
        "golden.jsonl",
        [
            _fix_category(a, 0, "outerwear", 20),
            _event("item_deleted", "user-c", 10, item_id=c.item_ids[1]),
        ],
    )
    _, staged = _run()
    assert staged["pending"] == 2
    return world


def test_golden_accept_writes_the_golden_format_and_it_validates(staged, tmp_path) -> None:
    a, c = staged["a"], staged["c"]
    out = tmp_path / "golden"
    done = golden.accept_candidates([a.sha[:10]], golden_dir=out)

    assert done.accepted == [f"feedback-{a.sha[:12]}"]
    loaded = golden.load_wardrobe_golden(out)  # the golden set's own validator
    assert [(p.id, p.image_sha256) for p in loaded] == [(f"feedback-{a.sha[:12]}", a.sha)]
    assert loaded[0].read_jpeg() == a.jpeg
    assert loaded[0].items == _labels(a) and "feedback" in loaded[0].tags
    state = golden.latest_candidates().set_index("image_sha256")
    assert state.loc[a.sha, "status"] == "accepted" and state.loc[c.sha, "status"] == "pending"

    golden.accept_candidates(all_pending=True, golden_dir=out)
    assert {p.image_sha256 for p in golden.load_wardrobe_golden(out)} == {a.sha, c.sha}


def test_accepting_twice_changes_nothing(staged, tmp_path) -> None:
    a = staged["a"]
    out = tmp_path / "golden"
    golden.accept_candidates([a.sha], golden_dir=out)
    labels = (out / "labels-feedback.jsonl").read_bytes()
    table = lake.read_table("golden_candidates")

    again = golden.accept_candidates([a.sha], golden_dir=out)
    assert again.accepted == [] and again.already == [a.sha]
    assert (out / "labels-feedback.jsonl").read_bytes() == labels
    pd.testing.assert_frame_equal(lake.read_table("golden_candidates"), table)


def test_an_unknown_sha_is_an_error_naming_it(staged, tmp_path) -> None:
    with pytest.raises(golden.CandidateError, match="no golden candidate deadbeefcafe"):
        golden.accept_candidates([staged["a"].sha, "deadbeefcafe"], golden_dir=tmp_path)
    assert not (tmp_path / "labels-feedback.jsonl").exists()  # nothing half-done


def test_a_new_correction_re_stages_an_accepted_photo_and_replaces_its_label(
    staged, tmp_path
) -> None:
    a = staged["a"]
    out = tmp_path / "golden"
    golden.accept_candidates([a.sha], golden_dir=out)
    _land("more.jsonl", [_fix_category(a, 1, "bag", 5)])
    _, again = _run(NOW + timedelta(minutes=10))

    assert again["staged"] == 1
    assert golden.latest_candidates().set_index("image_sha256").loc[a.sha, "status"] == "pending"
    golden.accept_candidates([a.sha], golden_dir=out, now=NOW + timedelta(minutes=11))
    loaded = golden.load_wardrobe_golden(out)
    assert len(loaded) == 1 and loaded[0].items[1]["category"] == "bag"


def test_cli_golden_accept(staged, tmp_path, capsys) -> None:
    a = staged["a"]
    out = tmp_path / "golden"
    assert cli.main(["golden", "accept", "--golden-dir", str(out)]) == 2
    listing = capsys.readouterr()
    assert a.sha in listing.out and "2 pending" in listing.err

    assert cli.main(["golden", "accept", "ffffffff00", "--golden-dir", str(out)]) == 1
    assert "ffffffff00" in capsys.readouterr().err

    assert cli.main(["golden", "accept", a.sha, "--golden-dir", str(out)]) == 0
    assert f"accepted feedback-{a.sha[:12]}" in capsys.readouterr().out
    assert cli.main(["golden", "accept", a.sha, "--golden-dir", str(out)]) == 0
    assert "already accepted" in capsys.readouterr().out
    assert golden_tool.main(["check", "--path", str(out)]) == 0


def test_golden_refuses_a_photo_it_already_holds_under_another_id(staged, tmp_path) -> None:
    a = staged["a"]
    out = tmp_path / "golden"
    golden.accept_photo(a.jpeg, a.items, out_dir=out, set_name="real", photo_id="real-1")
    with pytest.raises(golden.GoldenError, match="already in the golden set as 'real-1'"):
        golden.accept_candidates([a.sha], golden_dir=out)


# --- the demo seed ---------------------------------------------------------------------------


def test_seeded_demo_feedback_shows_every_rejection_and_applies_the_rest(world) -> None:
    result = seed.seed_feedback(now=NOW)
    assert result.key == seed.FEEDBACK_DEMO_KEY and result.bad_lines == 6
    applied, staged = _run()

    assert applied["accepted"] == result.events == 9
    assert set(applied["rejected"]) == {
        "malformed_json",
        "missing_field",
        "unknown_item",
        "future_event",
        "duplicate_event",
        "unknown_event_type",
    }
    # every type, the answers to two possible duplicates included
    assert set(applied["by_type"]) == set(events.EVENT_TYPES)
    assert staged["staged"] == 4  # two corrected, one deleted from, one added to
    assert feedback_labels.correction_rate()["corrected_photos"] == 4
    assert seed.seed_feedback(now=NOW).key is None  # already ingested: nothing to seed
    # ... not even after new photos arrive, which would change the photos the demo picks.
    newer = _photo("user-e", 9, 2)
    rows = [
        {"item_id": i, "user_id": "user-e", "image_sha256": "0" * 64, "upload_key": "user-e/x.jpg"}
        | {"prompt_version": 2, **_flat(item)}
        for i, item in zip(newer.item_ids, newer.items, strict=True)
    ]
    lake.write_parquet("wardrobe_items", "2026-03-02", "batch-later", rows)
    assert seed.seed_feedback(now=NOW + timedelta(days=1)).key is None


def test_a_confirmed_duplicate_leaves_the_wardrobe_a_rejected_one_stays_and_neither_is_a_correction(
    world,
) -> None:
    a = world["a"]
    first, second, third = a.item_ids[:3]
    _land(
        "dupes.jsonl",
        [
            _event("duplicate_confirmed", "user-a", 20, item_id=second, duplicate_of=first),
            _event("duplicate_rejected", "user-a", 19, item_id=third, duplicate_of=first),
            _event("duplicate_confirmed", "user-c", 18, item_id=first, duplicate_of=third),
        ],
    )
    applied, _ = _run()

    assert applied["by_type"]["duplicate_confirmed"] == 1
    assert applied["by_type"]["duplicate_rejected"] == 1
    assert applied["rejected"] == {"not_owner": 1}  # user-c cannot answer for user-a's item
    current = set(current_wardrobe_items(["user-a"])["item_id"])
    assert second not in current and {first, third} <= current
    assert feedback.wardrobe_changes(applied)["duplicate_confirmed"] == 1
    assert applied["labels_updated"] == 0  # the digitizer was right: nothing to correct
