"""What people wore: worn count, colours and pairs from ``wore_instead`` feedback over 30 days."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from dresscode.core import lake
from dresscode.features import style, worn

AS_OF = datetime(2026, 5, 3, 2, tzinfo=UTC)
CREATED = datetime(2026, 5, 3, 3, tzinfo=UTC)


def wore(user: str, event_id: str, at: datetime, *item_ids: str, payload: str | None = None):
    """One ``feedback`` row of a ``wore_instead`` event, as feedback_ingest writes it."""
    fields = {"suggestion_day": at.date().isoformat(), "item_ids": list(item_ids)}
    return {
        "event_id": event_id,
        "event_type": "wore_instead",
        "user_id": user,
        "event_time": at.isoformat(timespec="milliseconds"),
        "received_at": AS_OF.isoformat(timespec="milliseconds"),
        "item_id": None,
        "image_sha256": None,
        "prompt_version": None,
        "payload": json.dumps(fields, sort_keys=True) if payload is None else payload,
        "source": "feedback/app.jsonl",
        "source_sha256": "0" * 64,
    }


def owned(user: str, item_id: str, *colors: str, category: str = "top") -> dict:
    """A current-wardrobe row."""
    return {
        "item_id": item_id,
        "user_id": user,
        "category": category,
        "color_names": list(colors),
        "warmth": "medium",
        "formality": "casual",
        "water_resistant": False,
        "date": "2026-04-01",
    }


WARDROBE = pd.DataFrame(
    [
        owned("u1", "tee", "White"),
        owned("u1", "jeans", "navy", "blue", category="bottom"),
        owned("u1", "coat", "navy", category="outerwear"),
        owned("u1", "boots", "black", category="footwear"),
        owned("u2", "dress", "red", category="dress"),
    ]
)


def features(events: list[dict], wardrobe: pd.DataFrame = WARDROBE) -> pd.DataFrame:
    return worn.worn_features(pd.DataFrame(events), wardrobe, as_of=AS_OF)


def day_before(days: float) -> datetime:
    return AS_OF - timedelta(days=days)


# --- the aggregation -------------------------------------------------------------------------


def test_colours_and_pairs_come_from_two_worn_outfits() -> None:
    out = features(
        [
            wore("u1", "e1", day_before(2), "tee", "jeans", "boots"),
            wore("u1", "e2", day_before(1), "jeans", "coat", "tee"),
        ]
    )
    row = out.loc["u1"]
    assert row["worn_count_30d"] == 2
    # navy: jeans twice + coat once = 3; white (tee) 2; blue (jeans) 2; black 1.
    # Ties by name: blue before white.
    assert row["worn_colors"] == ["navy", "blue", "white"]
    # jeans+tee in both outfits; the other pairs once each, by string.
    assert row["worn_pairs"] == ["jeans+tee", "boots+jeans", "boots+tee"]
    assert list(out.index) == ["u1"]  # u2 wore nothing: not in the result


def test_colours_count_once_per_worn_item_per_event() -> None:
    wardrobe = pd.DataFrame([owned("u1", "scarf", "Red", "red ", "RED"), owned("u1", "hat")])
    out = features([wore("u1", "e1", day_before(1), "scarf", "hat")], wardrobe)
    assert out.loc["u1", "worn_colors"] == ["red"]
    assert out.loc["u1", "worn_pairs"] == ["hat+scarf"]


def test_an_event_older_than_the_30_day_window_is_left_out() -> None:
    assert worn.WORN_WINDOW_DAYS == 30
    out = features(
        [
            wore("u1", "edge", day_before(30), "tee", "jeans"),  # the window's first instant
            wore("u1", "old", day_before(30) - timedelta(milliseconds=1), "coat", "boots"),
        ]
    )
    assert out.loc["u1", "worn_count_30d"] == 1
    assert out.loc["u1", "worn_pairs"] == ["jeans+tee"]


def test_an_event_after_as_of_is_left_out_so_a_replay_gives_the_same_features() -> None:
    before = [wore("u1", "e1", AS_OF, "tee", "jeans")]  # as_of itself is in
    later = [
        wore("u1", "e2", AS_OF + timedelta(milliseconds=1), "coat", "boots"),
        wore("u2", "e3", AS_OF + timedelta(days=2), "dress"),
    ]
    replay = features(before + later)
    pd.testing.assert_frame_equal(replay, features(before))
    assert replay.loc["u1", "worn_count_30d"] == 1
    assert replay.loc["u1", "worn_colors"] == ["blue", "navy", "white"]


def test_a_duplicate_event_counts_once_but_another_users_same_id_counts() -> None:
    first = wore("u1", "e1", day_before(1), "tee", "jeans")
    out = features([first, dict(first), wore("u2", "e1", day_before(1), "dress")])
    assert out.loc["u1", "worn_count_30d"] == 1
    assert out.loc["u1", "worn_pairs"] == ["jeans+tee"]
    assert out.loc["u1", "worn_colors"] == ["blue", "navy", "white"]  # one each, not two
    assert out.loc["u2", "worn_count_30d"] == 1


def test_a_worn_item_not_in_the_wardrobe_is_ignored_and_counted_in_the_log(caplog) -> None:
    events = [
        # "sandals" was deleted since (or never known); "dress" is u2's, not u1's.
        wore("u1", "e1", day_before(1), "tee", "sandals", "dress"),
    ]
    with caplog.at_level(logging.INFO, logger="dresscode.features.worn"):
        out = features(events)
    row = out.loc["u1"]
    assert row["worn_count_30d"] == 1  # the outfit was worn all the same
    assert row["worn_colors"] == ["white"]
    assert row["worn_pairs"] == []  # one known item: no pair
    assert "3 worn items (2 not in the wardrobe, ignored)" in caplog.text


def test_an_unreadable_payload_is_skipped_with_a_warning(caplog) -> None:
    events = [
        wore("u1", "good", day_before(1), "tee", "jeans"),
        wore("u1", "bad-json", day_before(1), payload="{not json"),
        wore("u1", "no-items", day_before(1), payload=json.dumps({"suggestion_day": "x"})),
        wore("u1", "not-a-list", day_before(1), payload=json.dumps({"item_ids": "tee"})),
        wore("u2", "null", day_before(1), payload="null"),
    ]
    with caplog.at_level(logging.WARNING, logger="dresscode.features.worn"):
        out = features(events)
    assert out.loc["u1", "worn_count_30d"] == 1
    assert out.loc["u1", "worn_pairs"] == ["jeans+tee"]
    assert "u2" not in out.index
    skipped = [r for r in caplog.records if "unreadable_payload" in r.getMessage()]
    assert [r.levelno for r in skipped] == [logging.WARNING] * 4
    assert {r.args[0] for r in skipped} == {"bad-json", "no-items", "not-a-list", "null"}


def test_other_event_types_are_not_worn_outfits() -> None:
    rated = wore("u1", "r1", day_before(1), "tee") | {"event_type": "outfit_rated"}
    assert features([rated]).empty


def test_a_user_who_wore_nothing_gets_zero_and_empty_lists() -> None:
    wore_frame = features([wore("u1", "e1", day_before(1), "tee", "jeans")])
    out = style.style_features(
        WARDROBE, as_of=AS_OF, user_ids=["u3"], created=CREATED, worn=wore_frame
    ).set_index("user_id")
    assert (out.loc["u2", "worn_count_30d"], out.loc["u2", "worn_colors"]) == (0, [])
    assert out.loc["u2", "worn_pairs"] == []
    assert out.loc["u3", "wardrobe_size"] == 0 and out.loc["u3", "worn_count_30d"] == 0
    assert out.loc["u1", "worn_count_30d"] == 1
    assert out.loc["u1", "worn_pairs"] == ["jeans+tee"]
    assert out["worn_count_30d"].dtype == "int64"


def test_no_events_and_no_wardrobe_at_all_give_an_empty_result() -> None:
    out = worn.worn_features(pd.DataFrame(), pd.DataFrame(), as_of=AS_OF)
    assert out.empty and list(out.columns) == list(worn.COLUMNS)


def test_worn_columns_keep_their_table_types_when_nobody_wore_anything(dresscode_home) -> None:
    from dresscode.core import delta

    frame = style.style_features(WARDROBE, as_of=AS_OF, created=CREATED, worn=features([]))
    lake.write_parquet(style.TABLE, AS_OF.date(), "night", frame)
    schema = pa.schema(delta.open_table(style.TABLE).schema())
    stored = lake.read_table(style.TABLE)
    for name in ("worn_colors", "worn_pairs"):
        assert schema.field(name).type == pa.list_(pa.string())
        assert [list(v) for v in stored[name]] == [[], []]
    assert schema.field("worn_count_30d").type == pa.int64()


# --- reading the lake ------------------------------------------------------------------------


def write_events(rows: list[dict], part: str = "app") -> None:
    """Rows in the partition of their event's UTC day, as feedback_ingest writes them."""
    by_day: dict[str, list[dict]] = {}
    for row in rows:
        by_day.setdefault(row["event_time"][:10], []).append(row)
    for day, day_rows in by_day.items():
        lake.write_parquet("feedback", day, part, day_rows)


def test_the_window_is_the_31_partitions_of_its_days() -> None:
    days = worn.window_days(AS_OF)
    assert len(days) == 31
    assert (days[0].isoformat(), days[-1].isoformat()) == ("2026-04-03", "2026-05-03")


def test_only_the_windows_partitions_are_read(dresscode_home: Path) -> None:
    write_events(
        [
            wore("u1", "e1", day_before(29.5), "tee", "jeans"),
            wore("u1", "e2", day_before(0.01), "coat", "jeans"),
            wore("u1", "late", AS_OF + timedelta(hours=1), "boots", "tee"),  # same partition
        ]
    )
    # Partitions a whole-table read would hit: long ago, and the day after as_of.
    for day in ("2025-01-01", "2026-04-02", "2026-05-04"):
        lake.write_bytes(lake.partition("feedback", day) / "broken.parquet", b"not parquet")
    with pytest.raises(pa.ArrowInvalid):
        lake.read_table("feedback")  # the broken parts are real: reading them fails

    events = worn.read_wore_events(AS_OF)
    assert sorted(events["event_id"]) == ["e1", "e2", "late"]
    out = worn.worn_features(events, WARDROBE, as_of=AS_OF)
    assert out.loc["u1", "worn_count_30d"] == 2
    assert out.loc["u1", "worn_pairs"] == ["coat+jeans", "jeans+tee"]


def test_the_reader_keeps_only_wore_instead_rows_of_the_users_asked(dresscode_home: Path) -> None:
    rated = wore("u1", "r1", day_before(1), "tee") | {"event_type": "outfit_rated"}
    write_events([wore("u1", "e1", day_before(1), "tee"), wore("u2", "e2", day_before(1)), rated])
    events = worn.read_wore_events(AS_OF, user_ids=["u1"])
    assert list(events["event_id"]) == ["e1"]
    assert worn.read_wore_events(AS_OF, user_ids=[]).empty


def test_a_duplicate_written_twice_to_the_lake_counts_once(dresscode_home: Path) -> None:
    event = wore("u1", "e1", day_before(3), "tee", "jeans")
    write_events([event], part="first-file")
    write_events([event], part="replayed-file")
    out = worn.worn_as_of(WARDROBE, as_of=AS_OF)
    assert out.loc["u1", "worn_count_30d"] == 1


def test_style_features_for_interval_joins_the_worn_columns(dresscode_home: Path) -> None:
    lake.write_parquet("wardrobe_items", "2026-04-01", "batch", WARDROBE.to_dict("records"))
    write_events(
        [
            wore("u1", "e1", day_before(2), "tee", "jeans", "boots"),
            wore("u1", "e2", day_before(40), "coat", "boots"),  # outside the window
        ]
    )
    start = AS_OF - timedelta(days=1)
    frame = style.style_features_for_interval(start, AS_OF, created=CREATED)
    stored = lake.read_table("user_style").set_index("user_id")
    for out in (frame.set_index("user_id"), stored):
        assert out.loc["u1", "worn_count_30d"] == 1
        assert list(out.loc["u1", "worn_colors"]) == ["black", "blue", "navy"]
        assert list(out.loc["u1", "worn_pairs"]) == ["boots+jeans", "boots+tee", "jeans+tee"]
        assert out.loc["u2", "worn_count_30d"] == 0
        assert list(out.loc["u2", "worn_pairs"]) == []


# --- end to end: feedback_ingest writes, style_features reads -------------------------------


def test_a_late_wore_instead_event_ingested_today_reaches_the_nightly_features(
    dresscode_home: Path,
) -> None:
    from dresscode.features import tasks as feature_jobs
    from dresscode.features import users
    from dresscode.feedback import tasks as feedback

    now = AS_OF - timedelta(hours=1)
    users.write_profiles(
        [{"user_id": "u1", "city": "Berlin", "last_active_at": now}], day="2026-05-02"
    )
    digitized = WARDROBE.assign(image_sha256="a" * 64, prompt_version=2)
    lake.write_parquet("wardrobe_items", "2026-04-01", "batch", digitized.to_dict("records"))
    suggestion = {
        "user_id": "u1",
        "day": "2026-04-20",
        "status": "ok",
        "n_outfits": 3,
        "prompt_name": "outfit-stylist",
        "prompt_version": 1,
        "generated_at": "2026-04-20T05:00:00.000+00:00",
    }
    lake.write_parquet("outfit_suggestions", "2026-04-20", "users", [suggestion])
    # Worn on April 20th, sent two weeks later: it lands in the partition of its event day.
    event = {
        "event_id": "w1",
        "event_type": "wore_instead",
        "user_id": "u1",
        "event_time": "2026-04-20T18:00:00+00:00",
        "suggestion_day": "2026-04-20",
        "outfit_index": 0,
        "item_ids": ["coat", "jeans"],
    }
    lake.write_bytes(lake.landing() / "feedback" / "app.jsonl", (json.dumps(event) + "\n").encode())
    applied = feedback.validate_and_apply(feedback.discover(), day="2026-05-03", now=now)
    assert applied["accepted"] == 1, applied
    assert list(lake.read_table("feedback")["date"]) == ["2026-04-20"]

    window = feature_jobs.Window(
        start=(AS_OF - timedelta(days=1)).isoformat(), as_of=AS_OF.isoformat()
    )
    computed = feature_jobs.compute_style(window)
    row = lake.read_table("user_style").set_index("user_id").loc["u1"]
    assert computed["users"] == 1
    assert row["worn_count_30d"] == 1
    assert list(row["worn_colors"]) == ["navy", "blue"]
    assert list(row["worn_pairs"]) == ["coat+jeans"]
    assert row["wardrobe_size"] == 4
