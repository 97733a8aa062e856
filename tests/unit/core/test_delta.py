"""The lake's Delta tables: a part replaces itself, types hold, reads skip, failures are named."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dresscode.core import delta, lake

DAY = "2026-05-01"


def _item(item_id: str, user: str, **extra: object) -> dict:
    return {"item_id": item_id, "user_id": user, "category": "top"} | extra


def test_the_same_part_again_replaces_it_in_one_commit(dresscode_home: Path) -> None:
    lake.write_parquet("wardrobe_items", DAY, "batch-1", [_item("a", "u1"), _item("b", "u1")])
    lake.write_parquet("wardrobe_items", DAY, "batch-2", [_item("c", "u2")])
    lake.write_parquet("wardrobe_items", DAY, "batch-1", [_item("a", "u1", category="coat")])
    frame = lake.read_table("wardrobe_items").sort_values("item_id")
    assert list(frame["item_id"]) == ["a", "c"]  # batch-1's old rows are gone, batch-2's kept
    assert list(frame["category"]) == ["coat", "top"]
    assert set(frame["date"]) == {DAY} and "_part" not in frame.columns


def test_known_columns_keep_their_types_whatever_a_batch_holds(dresscode_home: Path) -> None:
    # A batch where prompt_version is all null, then one with ints with gaps (floats in
    # pandas), then a new column: the table's types do not drift.
    lake.write_parquet("wardrobe_items", DAY, "p1", [_item("a", "u1", prompt_version=None)])
    lake.write_parquet(
        "wardrobe_items", DAY, "p2", [_item("b", "u1", prompt_version=2), _item("c", "u1")]
    )
    lake.write_parquet("wardrobe_items", DAY, "p3", [_item("d", "u1", brand_new="x")])
    schema = delta.open_table("wardrobe_items").schema()
    types = {f.name: str(f.type) for f in schema.fields}
    assert "long" in types["prompt_version"] and "string" in types["brand_new"]
    frame = lake.read_table("wardrobe_items").set_index("item_id")
    assert frame.loc["b", "prompt_version"] == 2 and frame["prompt_version"].isna().sum() == 3


def test_feature_timestamps_are_utc_microseconds_and_read_back_equal(
    dresscode_home: Path,
) -> None:
    import pandas as pd
    import pyarrow as pa

    # What the feature jobs hand over: pandas nanoseconds (aware), Python datetimes, a naive
    # value (UTC by Feast's convention) and a missing one.
    exact = pd.Timestamp("2026-05-01T10:00:00.123456Z")
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "event_timestamp": pd.Series([exact, exact + pd.Timedelta(seconds=1)]),
            "created": [datetime(2026, 5, 1, 12, tzinfo=UTC), datetime(2026, 5, 1, 12)],
            "last_upload": [pd.NaT, exact + pd.Timedelta(nanoseconds=789)],
            "wardrobe_size": [1, 2],
        }
    )
    assert str(frame["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    lake.write_parquet("user_style", DAY, "night", frame)
    schema = pa.schema(delta.open_table("user_style").schema())
    for column in ("event_timestamp", "created", "last_upload"):
        assert schema.field(column).type == pa.timestamp("us", "UTC")
    back = lake.read_table("user_style").sort_values("user_id").reset_index(drop=True)
    assert list(back["event_timestamp"]) == list(frame["event_timestamp"])
    assert list(back["created"]) == [pd.Timestamp("2026-05-01T12:00:00Z")] * 2
    assert pd.isna(back.loc[0, "last_upload"])
    assert back.loc[1, "last_upload"] == exact  # nanoseconds below a microsecond are floored
    # A later batch in another shape (strings) keeps the column's type.
    lake.write_parquet(
        "user_style", DAY, "late", [{"user_id": "u3", "event_timestamp": "2026-05-02T00:00:00Z"}]
    )
    assert pa.schema(delta.open_table("user_style").schema()).field(
        "event_timestamp"
    ).type == pa.timestamp("us", "UTC")
    late = lake.read_table("user_style", filters=[("user_id", "=", "u3")])
    assert list(late["event_timestamp"]) == [pd.Timestamp("2026-05-02T00:00:00Z")]


def test_filters_and_days_read_only_matching_rows(dresscode_home: Path) -> None:
    for n in range(6):
        day = f"2026-05-0{1 + n % 2}"
        lake.write_parquet("wardrobe_items", day, f"p{n}", [_item(f"i{n}", f"u{n}")])
    got = lake.read_table("wardrobe_items", filters=[("user_id", "in", ["u1", "u4"])])
    assert sorted(got["item_id"]) == ["i1", "i4"]
    got = lake.read_table("wardrobe_items", days=["2026-05-02"], columns=["item_id", "missing"])
    assert sorted(got["item_id"]) == ["i1", "i3", "i5"] and got["missing"].isna().all()
    assert lake.partition_days("wardrobe_items") == ["2026-05-01", "2026-05-02"]


def test_a_missing_data_file_is_an_error_naming_the_table_and_file(dresscode_home: Path) -> None:
    lake.write_parquet("manifests", DAY, "p1", [{"upload_key": "u1/a.jpg", "status": "accepted"}])
    table = delta.open_table("manifests")
    assert table is not None
    [path] = table.file_uris()
    os.remove(path.removeprefix("file://"))
    with pytest.raises(
        delta.DeltaTableError, match=r"lake table 'manifests' at .*manifests"
    ) as err:
        lake.read_table("manifests")
    assert Path(path).name in str(err.value)


def test_time_travel_reads_an_old_version_and_names_a_vanished_one(dresscode_home: Path) -> None:
    lake.write_parquet("manifests", DAY, "p1", [{"upload_key": "u1/a.jpg", "status": "accepted"}])
    first = delta.current_version("manifests")
    lake.write_parquet("manifests", DAY, "p1", [{"upload_key": "u1/b.jpg", "status": "accepted"}])
    assert list(delta.read("manifests", version=first)["upload_key"]) == ["u1/a.jpg"]
    assert list(lake.read_table("manifests")["upload_key"]) == ["u1/b.jpg"]
    with pytest.raises(delta.DeltaTableError, match=r"lake table .manifests. at .*99"):
        delta.read("manifests", version=99)


def test_a_snapshot_pins_what_every_read_in_it_sees(dresscode_home: Path) -> None:
    lake.write_parquet("manifests", DAY, "p1", [{"upload_key": "u1/a.jpg", "status": "accepted"}])
    with delta.snapshot("manifests", "wardrobe_items") as versions:
        assert versions == {"manifests": delta.current_version("manifests")}  # items: none yet
        lake.write_parquet(
            "manifests", "2026-05-02", "p2", [{"upload_key": "u1/b.jpg", "status": "accepted"}]
        )
        assert list(lake.read_table("manifests")["upload_key"]) == ["u1/a.jpg"]
        assert lake.partition_days("manifests") == [DAY]
    assert sorted(lake.read_table("manifests")["upload_key"]) == ["u1/a.jpg", "u1/b.jpg"]


def test_a_tables_row_group_bounds_each_group_and_keeps_the_compression(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    import pyarrow.parquet as pq

    spec = dataclasses.replace(delta.TABLES["user_style"], row_group=2)
    monkeypatch.setitem(delta.TABLES, "user_style", spec)
    rows = [{"user_id": f"u{n}", "wardrobe_size": n} for n in range(5)]
    lake.write_parquet("user_style", DAY, "night", rows)
    [path] = delta.open_table("user_style").file_uris()
    metadata = pq.ParquetFile(path).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [2, 2, 1]
    assert metadata.row_group(0).column(0).compression == "SNAPPY"  # as delta-rs writes the rest


def test_changed_users_names_the_users_of_the_commits_since_a_version(
    dresscode_home: Path,
) -> None:
    users = [f"user-{n}" for n in range(12)]
    assert delta.changed_users("wardrobe_items", -1) == set()  # no table: nothing to read
    lake.write_parquet("wardrobe_items", DAY, "all", [_item(f"i-{u}", u) for u in users])
    start = delta.current_version("wardrobe_items")
    assert start is not None
    assert delta.changed_users("wardrobe_items", -1) == set(users)
    assert delta.changed_users("wardrobe_items", start) == set()
    lake.write_parquet("wardrobe_items", DAY, "one", [_item("x", users[3])])
    assert delta.changed_users("wardrobe_items", start) == {users[3]}
    # a part written again replaces its rows: the user whose rows it removed changed too
    lake.write_parquet("wardrobe_items", DAY, "one", [_item("x", users[5])])
    assert delta.changed_users("wardrobe_items", start) == {users[3], users[5]}
    with delta.at_versions({"wardrobe_items": start + 1}):  # up to a pinned version
        assert delta.changed_users("wardrobe_items", start) == {users[3]}


def test_a_compaction_changes_no_user(dresscode_home: Path) -> None:
    from deltalake import DeltaTable

    for n in range(3):  # three small files in one bucket
        lake.write_parquet("wardrobe_items", DAY, f"p{n}", [_item(f"i{n}", "u1")])
    before = delta.current_version("wardrobe_items")
    assert before is not None
    uri, options = delta.location("wardrobe_items")
    metrics = DeltaTable(uri, storage_options=options).optimize.z_order(["user_id"])
    assert metrics["numFilesRemoved"] == 3  # the rewrite happened
    assert delta.current_version("wardrobe_items") == before + 1
    assert delta.changed_users("wardrobe_items", before) == set()
    lake.write_parquet("wardrobe_items", DAY, "p9", [_item("i9", "u2")])
    assert delta.changed_users("wardrobe_items", before) == {"u2"}


def test_changed_users_cannot_tell_without_the_old_version(dresscode_home: Path) -> None:
    for n in range(3):
        lake.write_parquet("wardrobe_items", DAY, f"p{n}", [_item(f"i{n}", f"u{n}")])
    assert delta.changed_users("wardrobe_items", None) is None  # no record: read everyone
    assert delta.changed_users("wardrobe_items", 99) is None  # a re-created table
    from deltalake import DeltaTable

    uri, options = delta.location("wardrobe_items")
    DeltaTable(uri, storage_options=options).create_checkpoint()  # at version 2
    for v in (0, 1):  # log entries older than the checkpoint cleaned up (lake_maintenance)
        Path(uri, "_delta_log", f"{v:020d}.json").unlink()
    lake.write_parquet("wardrobe_items", DAY, "p3", [_item("i3", "u3")])
    assert delta.changed_users("wardrobe_items", 2) == {"u3"}
    assert delta.changed_users("wardrobe_items", 0) is None
    with pytest.raises(ValueError, match="not partitioned by user_bucket"):
        delta.changed_users("manifests", 0)


def test_rows_in_memory_are_filtered_as_the_expression_filters_them() -> None:
    """A kept table's rows are filtered by a mask (``rows_matching``), not an Acero plan: for
    every operator, nulls, days and terms together, the rows the read's own expression keeps
    (the ranges an ``in`` filter adds are for row-group statistics and change nothing)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from dresscode.core import delta_filters
    from dresscode.core.delta_layout import user_bucket

    users = ["u1", "u2", "u7", None, "zz", "u3", "u9", "u1"]
    rows = pa.table(
        {
            "user_id": users,
            "user_bucket": [user_bucket(str(u)) for u in users],
            "date": ["2026-05-02", "2026-05-03"] * 4,
            "n": pa.array([1, 2, None, 4, 5, 6, 7, 8], type=pa.int32()),
        }
    )
    names = set(rows.column_names)
    cases: list[tuple[list[str] | None, list[tuple[str, str, object]]]] = [
        (None, []),
        (["2026-05-02"], []),
        (None, [("user_id", "in", ["u1", "u7", "zz", "nobody"])]),
        (["2026-05-03"], [("user_id", "in", ["u1", "u2", "u9"])]),
        (None, [("user_id", "not in", ["u1", "u2"])]),
        *((None, [("n", op, 4)]) for op in ("=", "==", "!=", "<", "<=", ">", ">=")),
        (["2026-05-02", "2026-05-03"], [("user_id", "in", ["u1", "zz"]), ("n", ">", 1)]),
        (None, [("user_id", "=", "u9"), ("n", "!=", 7)]),
    ]
    for days, filters in cases:
        terms, _ = delta_filters.conditions(days, filters, names)
        expression = delta_filters.all_of(terms)
        expected = rows if expression is None else rows.filter(expression)
        found = delta_filters.rows_matching(rows, days, filters)
        assert found.equals(expected), (days, filters)
    assert delta_filters.rows_matching(rows, None, [("n", ">", 100)]).num_rows == 0
    # No days, no ids: no rows (an Acero plan refuses an empty list's type instead).
    assert delta_filters.rows_matching(rows, [], []).num_rows == 0
    assert delta_filters.rows_matching(rows, None, [("user_id", "in", [])]).num_rows == 0
    with pytest.raises(pa.ArrowInvalid, match="nope"):  # as Acero says a missing column
        delta_filters.rows_matching(rows, None, [("nope", "in", ["x"])])
    with pytest.raises(pa.ArrowInvalid):
        rows.filter(pc.field("nope").isin(["x"]))
    with pytest.raises(ValueError, match="unsupported filter operator"):
        delta_filters.rows_matching(rows, None, [("n", "~", 1)])
