"""An older lake's layout brought to this release's: wardrobe_items re-partitioned by user bucket
in one verified commit, the feedback's wardrobe events indexed by user; both idempotent."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from dresscode.core import delta, lake, tables
from dresscode.local import lake_layout, lake_migrate

DAY = "2026-04-01"


def _old_items_table(n_users: int = 40) -> list[dict[str, object]]:
    """wardrobe_items as the previous release wrote it: a Delta table partitioned by date."""
    rows = [
        {
            "item_id": f"item-{u}-{i}",
            "user_id": f"user-{u:03d}",
            "category": "top",
            "date": DAY if i % 2 else "2026-04-02",
            "_part": f"batch-{u % 3}",
        }
        for u in range(n_users)
        for i in range(3)
    ]
    uri, _ = delta.location("wardrobe_items")
    write_deltalake(uri, pa.Table.from_pylist(rows), partition_by=["date"])
    return rows


def _feedback_part(day: str, events: list[dict[str, object]], part: str = "app-1") -> None:
    """A feedback part as the previous release wrote it (bytes only: nothing indexed)."""
    lake.write_bytes(
        lake.partition("feedback", day) / f"{part}.parquet", lake.to_parquet_bytes(events)
    )


def _event(user: str, item: str, kind: str, event_id: str) -> dict[str, object]:
    payload = {"item_deleted": {}, "item_corrected": {"changes": {"category": "bottom"}}}
    return {
        "event_id": event_id,
        "event_type": kind,
        "user_id": user,
        "event_time": f"{DAY}T10:00:00.000Z",
        "item_id": item,
        "payload": json.dumps(payload.get(kind, {"outfit": "x"})),
    }


def test_an_old_date_partitioned_items_table_refuses_writes_naming_the_command(
    dresscode_home: Path,
) -> None:
    _old_items_table()
    with pytest.raises(
        delta.DeltaTableError, match="dresscode lake migrate --table wardrobe_items"
    ):
        lake.write_parquet("wardrobe_items", DAY, "new", [{"item_id": "x", "user_id": "u"}])


def test_re_partitioning_keeps_every_row_and_a_user_read_prunes_to_its_bucket(
    dresscode_home: Path,
) -> None:
    rows = _old_items_table()
    assert lake_layout.pending() == ["wardrobe_items"]

    [report] = lake_layout.migrate_layout()

    table = delta.open_table("wardrobe_items")
    assert table is not None
    assert list(table.metadata().partition_columns) == [delta.BUCKET]
    assert report.rows == len(rows) and "verified" in report.action
    read = lake.read_table("wardrobe_items")
    assert sorted(read["item_id"]) == sorted(str(r["item_id"]) for r in rows)
    assert sorted(read["date"]) == sorted(str(r["date"]) for r in rows)  # days kept as a column
    # A part written before the change is still replaced by the same part again (a retry:
    # the same batch, so the same users, one item each this time).
    users = sorted({str(r["user_id"]) for r in rows if r["_part"] == "batch-1"})
    lake.write_parquet(
        "wardrobe_items", DAY, "batch-1", [{"item_id": f"new-{u}", "user_id": u} for u in users]
    )
    again = lake.read_table("wardrobe_items")
    assert sorted(again.loc[again["item_id"].str.startswith("new-"), "user_id"]) == users
    assert len(again) == len(rows) - 3 * len(users) + len(users)
    # Nothing left to do: a second run changes nothing.
    version = delta.current_version("wardrobe_items")
    assert lake_layout.pending() == [] and lake_layout.migrate_layout() == []
    assert delta.current_version("wardrobe_items") == version


def test_the_user_events_of_older_feedback_parts_are_indexed_once(dresscode_home: Path) -> None:
    lake.write_parquet(
        "wardrobe_items",
        DAY,
        "b",
        [
            {"item_id": "i1", "user_id": "u1", "category": "top"},
            {"item_id": "i2", "user_id": "u1", "category": "top"},
        ],
    )
    _feedback_part(
        DAY,
        [
            _event("u1", "i1", "item_deleted", "e1"),
            _event("u1", "i2", "item_corrected", "e2"),
            _event("u1", "i2", "outfit_rated", "e3"),  # indexed too; the fold ignores it
        ],
    )
    # Before the index, the fold does not see the edits (what `make up` fixes first).
    assert sorted(tables.current_wardrobe_items(["u1"])["item_id"]) == ["i1", "i2"]
    assert lake_layout.pending() == ["user_events"]

    [report] = lake_layout.migrate_layout()

    assert report.rows == 3
    current = tables.current_wardrobe_items(["u1"])
    assert list(current["item_id"]) == ["i2"] and list(current["category"]) == ["bottom"]
    version = delta.current_version("user_events")
    assert lake_layout.pending() == []
    lake_layout.index_user_events()  # by hand again: the same parts replace themselves
    assert len(lake.read_table("user_events")) == 3
    assert delta.current_version("user_events") == (version or 0) + 1


def test_feedback_without_events_is_marked_indexed_so_up_does_not_read_it_again(
    dresscode_home: Path,
) -> None:
    _feedback_part(DAY, [])  # a feedback part with no event (a file of rejected lines)
    assert lake_layout.pending() == ["user_events"]
    lake_layout.migrate_layout()
    assert lake_layout.pending() == []
    assert lake.read_table("user_events").empty


def test_up_brings_the_layout_up_to_date_before_starting(
    dresscode_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _old_items_table(5)
    lake_migrate.prepare_lake()
    out = capsys.readouterr().out
    assert "bringing the lake's layout up to date (wardrobe_items)" in out
    assert "re-partitioned by user_bucket, verified (15 rows)" in out
    lake_migrate.prepare_lake()
    assert capsys.readouterr().out == ""
