"""Tables kept open by a long-lived reader: the same rows as a fresh read, fewer opens and file
reads, new commits seen within the bound, and never for a pinned read."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from dresscode.core import delta, lake, tables
from dresscode.core.delta_kept import KeptTables, keeping

DAY = "2026-05-01"
USERS = [f"user-{n:03d}" for n in range(40)]  # over many of the 64 buckets


def _seed() -> None:
    lake.write_parquet(
        "wardrobe_items",
        DAY,
        "p1",
        [
            {"item_id": f"{u}-{k}", "user_id": u, "category": c, "image_sha256": f"{u}{k}"}
            for u in USERS
            for k, c in enumerate(["top", "bottom", "footwear"])
        ],
    )
    lake.write_parquet(
        "wardrobe_items",
        "2026-05-02",
        "p2",
        [{"item_id": f"{u}-9", "user_id": u, "category": "dress"} for u in USERS[:5]],
    )
    stamp = datetime(2026, 5, 2, 9, tzinfo=UTC).isoformat()
    lake.write_parquet(
        "feedback",
        "2026-05-02",
        "f1",
        [
            {
                "event_id": f"e-{u}",
                "user_id": u,
                "event_type": "item_deleted",
                "item_id": f"{u}-0",
                "event_time": stamp,
                "payload": "{}",
            }
            for u in USERS[:3]
        ],
    )


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[sorted(frame.columns)]
    return frame.sort_values(list(frame.columns)[:3]).reset_index(drop=True)


READS = [
    {"filters": [("user_id", "in", USERS[:1])]},
    {"filters": [("user_id", "in", USERS[:6])], "columns": ["item_id", "category"]},
    {"filters": [("user_id", "in", USERS)]},  # more buckets than are pruned by range
    {"filters": [("user_id", "in", ["nobody"])]},
    {"days": ["2026-05-02"]},
    {"filters": [("category", "in", ["dress"]), ("user_id", "in", USERS[3:9])]},
    {},
]


@pytest.mark.parametrize("read", READS, ids=range(len(READS)))
def test_a_kept_read_gives_the_rows_a_fresh_read_gives(dresscode_home: Path, read: dict) -> None:
    _seed()
    fresh = lake.read_table("wardrobe_items", **read)
    kept = KeptTables(60)
    with keeping(kept):
        first = lake.read_table("wardrobe_items", **read)
        again = lake.read_table("wardrobe_items", **read)
    assert kept.opens == 1  # the kept path was taken, and listed the table once
    assert len(fresh) == len(first) and list(first.columns) == list(fresh.columns)
    pd.testing.assert_frame_equal(_sorted(first), _sorted(fresh))
    pd.testing.assert_frame_equal(_sorted(again), _sorted(fresh))


def test_the_current_wardrobe_through_kept_tables_is_the_same(dresscode_home: Path) -> None:
    _seed()
    fresh = tables.current_wardrobes_of(USERS[:8])
    kept_tables = KeptTables(60)
    with keeping(kept_tables):
        kept = tables.current_wardrobes_of(USERS[:8])
    assert kept_tables.opens == 2  # wardrobe_items and user_events
    assert kept == fresh
    assert {i["item_id"] for i in kept[USERS[0]]} == {f"{USERS[0]}-{k}" for k in (1, 2, 9)}


def test_a_table_is_listed_once_and_each_file_read_once(dresscode_home: Path) -> None:
    _seed()
    kept = KeptTables(60)
    with keeping(kept):
        lake.read_table("wardrobe_items", filters=[("user_id", "in", USERS[:2])])
        read_first = kept.files_read
        for _ in range(3):
            lake.read_table("wardrobe_items", filters=[("user_id", "in", USERS[:2])])
        lake.read_table("wardrobe_items", filters=[("user_id", "in", USERS[2:4])])
    assert kept.opens == 1
    assert 1 <= read_first <= 4  # two users: their buckets' files of two days, no more
    assert kept.files_read > read_first  # two other users: their own files, once


def test_a_commit_is_seen_once_the_bound_has_passed(dresscode_home: Path) -> None:
    _seed()
    slow, every_read = KeptTables(3600), KeptTables(0)
    wanted = [("user_id", "in", ["newcomer"])]
    with keeping(slow):
        assert lake.read_table("wardrobe_items", filters=wanted).empty
    with keeping(every_read):
        assert lake.read_table("wardrobe_items", filters=wanted).empty
    lake.write_parquet(
        "wardrobe_items", DAY, "p3", [{"item_id": "n-1", "user_id": "newcomer", "category": "top"}]
    )
    with keeping(slow):  # within its bound: the version it has
        assert lake.read_table("wardrobe_items", filters=wanted).empty
    with keeping(every_read):
        assert list(lake.read_table("wardrobe_items", filters=wanted)["item_id"]) == ["n-1"]
    assert every_read.opens == 2  # listed again for the new version


def test_a_table_written_later_is_found(dresscode_home: Path) -> None:
    kept = KeptTables(0)
    with keeping(kept):
        assert lake.read_table("wardrobe_items", filters=[("user_id", "in", ["u1"])]).empty
        lake.write_parquet("wardrobe_items", DAY, "p1", [{"item_id": "a", "user_id": "u1"}])
        assert list(lake.read_table("wardrobe_items")["item_id"]) == ["a"]


def test_kept_files_stay_within_the_memory_bound(dresscode_home: Path) -> None:
    _seed()
    kept = KeptTables(60, max_bytes=1)
    with keeping(kept):
        for user in USERS:
            found = lake.read_table("wardrobe_items", filters=[("user_id", "in", [user])])
            assert set(found["user_id"]) == {user}
    assert len(kept._files) == 1  # only the last file read is kept


def test_a_pinned_read_never_uses_the_kept_table(dresscode_home: Path) -> None:
    _seed()
    old = delta.current_version("wardrobe_items")
    lake.write_parquet("wardrobe_items", DAY, "p1", [{"item_id": "only", "user_id": "u1"}])
    kept = KeptTables(3600)
    with keeping(kept), delta.at_versions({"wardrobe_items": old}):  # type: ignore[dict-item]
        assert len(lake.read_table("wardrobe_items")) == 3 * len(USERS) + 5
    assert kept.opens == 0


def test_a_missing_data_file_is_an_error_naming_the_table(dresscode_home: Path) -> None:
    lake.write_parquet("manifests", DAY, "p1", [{"upload_key": "u1/a.jpg", "status": "accepted"}])
    [path] = delta.open_table("manifests").file_uris()  # type: ignore[union-attr]
    os.remove(path.removeprefix("file://"))
    with keeping(KeptTables(60)), pytest.raises(delta.DeltaTableError, match="'manifests'"):
        lake.read_table("manifests")


def test_a_column_added_by_a_later_commit_reads_as_null_until_the_refresh(
    dresscode_home: Path,
) -> None:
    _seed()
    slow, every_read = KeptTables(3600), KeptTables(0)
    wanted = {"filters": [("user_id", "in", USERS[:1])], "columns": ["item_id", "brand"]}
    for kept in (slow, every_read):
        with keeping(kept):
            assert lake.read_table("wardrobe_items", **wanted)["brand"].isna().all()
    lake.write_parquet(
        "wardrobe_items", DAY, "p9", [{"item_id": "b-1", "user_id": USERS[0], "brand": "Acme"}]
    )
    with keeping(slow):  # its version has no such column yet: nulls, not an error
        assert lake.read_table("wardrobe_items", **wanted)["brand"].isna().all()
    with keeping(every_read):  # files kept from before the column lack it: nulls there
        found = lake.read_table("wardrobe_items", **wanted)
    pd.testing.assert_frame_equal(
        _sorted(found), _sorted(lake.read_table("wardrobe_items", **wanted))
    )
    assert found.set_index("item_id")["brand"].to_dict() == {
        "b-1": "Acme",
        **{f"{USERS[0]}-{k}": None for k in (0, 1, 2, 9)},
    }


def test_a_file_two_readers_read_at_once_is_counted_once(dresscode_home: Path) -> None:
    import pyarrow as pa

    kept = KeptTables(60)
    rows = pa.table({"user_id": ["u1", "u2"]})
    kept._keep("bucket-1/part.parquet", rows)  # both readers missed it, both read it, both keep it
    kept._keep("bucket-1/part.parquet", rows)
    assert kept._bytes == rows.nbytes and len(kept._files) == 1 and kept.files_read == 2
