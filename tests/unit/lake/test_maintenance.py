"""Lake maintenance on a real local Delta lake: fewer files, the same rows, old versions kept
as long as the retention says, and nothing lost while another process keeps committing."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from deltalake.exceptions import CommitFailedError

from dresscode.core import config, delta, delta_filters, lake
from dresscode.core.config import Settings
from dresscode.lake import maintenance

TABLE = "manifests"  # partitioned by date (the by-user layout: the tests at the end)
DAY = "2026-03-01"
RUN_DAY = date(2026, 3, 2)  # the maintenance run's day: DAY is a past, complete partition


def _items(part: int, n: int = 5) -> list[dict[str, object]]:
    """Manifest rows (an upload each)."""
    return [
        {
            "upload_key": f"user-{(part * 7 + i) % 11}/upload-{part}-{i}.jpg",
            "user_id": f"user-{(part * 7 + i) % 11}",
            "status": ["accepted", "duplicate", "quarantined"][i % 3],
            "prompt_version": 1 + part % 2,
            "model_called": i % 2 == 0,
            "reason": f"upload {i} of part {part}",
        }
        for i in range(n)
    ]


def _write_parts(parts: range, day: str = DAY) -> None:
    for part in parts:
        lake.write_parquet(TABLE, day, f"p{part}", _items(part))


def _rows(frame: pd.DataFrame) -> list[str]:
    """The rows as sorted JSON lines (list cells as lists): comparable whatever the file order."""
    records = frame.sort_values(list({"upload_key", "item_id"} & set(frame.columns))).to_dict(
        orient="records"
    )
    return [json.dumps(r, sort_keys=True, default=lambda v: list(v)) for r in records]


def _active_files() -> int:
    table = delta.open_table(TABLE)
    assert table is not None
    return len(table.file_uris())


def _parquet_on_disk(home: Path) -> set[Path]:
    return set((home / "lake" / TABLE).glob("date=*/*.parquet"))


def _settings(**changes: object) -> Settings:
    return dataclasses.replace(config.get_settings(), **changes)


def test_twenty_small_parts_become_one_file_with_every_row_unchanged(dresscode_home: Path) -> None:
    _write_parts(range(20))
    before = _rows(lake.read_table(TABLE))
    assert _active_files() == 20

    done = maintenance.maintain(TABLE, today=RUN_DAY)

    assert _active_files() == 1
    assert (done["files_before"], done["files_after"]) == (20, 1)
    assert done["partitions_compacted"] == [DAY]
    assert (done["files_compacted"], done["files_written"]) == (20, 1)
    assert _rows(lake.read_table(TABLE)) == before
    assert len(before) == 100


def test_a_second_run_has_nothing_to_compact(dresscode_home: Path) -> None:
    _write_parts(range(20))
    first = maintenance.maintain(TABLE, today=RUN_DAY)

    second = maintenance.maintain(TABLE, today=RUN_DAY)

    assert second["partitions_compacted"] == [] and second["files_compacted"] == 0
    assert second["version"] == first["version"]  # no commit at all
    assert second["files_before"] == second["files_after"] == 1


def test_z_ordered_files_each_hold_a_range_of_users_so_a_lookup_reads_one(
    dresscode_home: Path,
) -> None:
    """A target small enough for several output files: each covers its own key range."""
    for part in range(20):
        rows = [
            {"upload_key": f"user-{(part * 7 + i) % 40:02d}/u-{part}-{i}.jpg", "status": "accepted"}
            for i in range(150)
        ]
        lake.write_parquet(TABLE, DAY, f"p{part}", rows)
    before = _rows(lake.read_table(TABLE))
    table = delta.open_table(TABLE)
    assert table is not None

    done = maintenance.compact(table, TABLE, target_bytes=8192, before=RUN_DAY)

    table = delta.open_table(TABLE)
    assert table is not None
    assert (done.files_removed, len(table.file_uris())) == (20, done.files_added)
    assert done.files_added > 1
    for key in ("user-03/u-1-2.jpg", "user-20/u-9-5.jpg", "user-39/u-19-140.jpg"):
        assert len(table.file_uris(file_pruning_predicate=[("upload_key", "=", key)])) == 1
    assert _rows(lake.read_table(TABLE)) == before
    # Full files are closed at the target: the next night finds nothing small to compact.
    assert maintenance.partitions_to_compact(table, target_bytes=8192, before=RUN_DAY) == []


def test_the_run_days_partition_is_left_to_the_next_night(dresscode_home: Path) -> None:
    _write_parts(range(5), day=RUN_DAY.isoformat())

    tonight = maintenance.maintain(TABLE, today=RUN_DAY)
    tomorrow = maintenance.maintain(TABLE, today=date(2026, 3, 3))

    assert tonight["partitions_compacted"] == [] and tonight["files_after"] == 5
    assert tomorrow["partitions_compacted"] == [RUN_DAY.isoformat()]
    assert tomorrow["files_after"] == 1


def test_only_files_under_half_the_target_count_as_small(dresscode_home: Path) -> None:
    import pyarrow as pa

    _write_parts(range(3))
    table = delta.open_table(TABLE)
    assert table is not None
    sizes = pa.table(table.get_add_actions(flatten=True)).column("size_bytes").to_pylist()

    def partitions(target_bytes: int) -> list[str]:
        return maintenance.partitions_to_compact(table, target_bytes=target_bytes, before=RUN_DAY)

    assert partitions(2 * max(sizes) + 2) == [DAY]  # every file under half: compacted
    assert partitions(2 * min(sizes)) == []  # none under half: already the right size


def test_vacuum_with_zero_retention_deletes_the_replaced_files_and_keeps_every_row(
    dresscode_home: Path,
) -> None:
    _write_parts(range(20))
    before = _rows(lake.read_table(TABLE))

    done = maintenance.maintain(TABLE, _settings(lake_retention_hours=0), today=RUN_DAY)

    assert done["files_vacuumed"] == 20
    table = delta.open_table(TABLE)
    assert table is not None
    assert _parquet_on_disk(dresscode_home) == {Path(uri) for uri in table.file_uris()}
    assert _rows(lake.read_table(TABLE)) == before
    # The price of a short retention: the versions before the compaction are gone.
    with pytest.raises(delta.DeltaTableError, match="not found"):
        delta.read(TABLE, version=1)


def test_an_old_version_stays_readable_within_the_retention(dresscode_home: Path) -> None:
    _write_parts(range(20))

    done = maintenance.maintain(TABLE, today=RUN_DAY)

    assert done["files_vacuumed"] == 0  # removed minutes ago, kept for 168 h
    assert len(_parquet_on_disk(dresscode_home)) == 21
    version_1 = delta.read(TABLE, version=1)  # parts p0 and p1, as they were committed
    assert _rows(version_1) == _rows(
        lake.read_table(TABLE, filters=[("_part", "in", ["p0", "p1"])])
    )
    assert len(version_1) == 10


def test_the_tables_retention_follows_the_setting(dresscode_home: Path) -> None:
    _write_parts(range(3))

    maintenance.maintain(TABLE, today=RUN_DAY)  # 168 h: Delta's default, nothing to write
    default = dict(_configuration())
    maintenance.maintain(TABLE, _settings(lake_retention_hours=2160), today=RUN_DAY)

    assert maintenance.DELETED_FILE_RETENTION not in default
    assert _configuration() == {
        maintenance.DELETED_FILE_RETENTION: "interval 2160 hours",
        maintenance.LOG_RETENTION: "interval 2160 hours",  # time travel needs the log too
    }


def _configuration() -> dict[str, str]:
    table = delta.open_table(TABLE)
    assert table is not None
    return dict(table.metadata().configuration)


def test_a_table_never_written_is_skipped(
    dresscode_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="dresscode.lake.maintenance"):
        done = maintenance.maintain("redigitized", today=RUN_DAY)

    assert done["written"] is False and done["version"] is None
    assert delta.open_table("redigitized") is None  # maintenance created nothing
    assert "redigitized: never written, nothing to maintain" in caplog.text
    assert all(r.levelno == logging.INFO for r in caplog.records)


# Commits parts to DAY until the stop file exists, retrying a commit that lost to a concurrent
# one as the ingest task's retry would. A separate process: delta-rs does not survive fork.
APPENDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from deltalake.exceptions import CommitFailedError

    from dresscode.core import lake

    stop, day, first = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    written = conflicts = 0
    while (written < 5 or not stop.exists()) and written < 400:
        part = first + written
        rows = [
            {"upload_key": f"user-{(part * 7 + i) % 11}/u-{part}-{i}.jpg", "status": "accepted"}
            for i in range(5)
        ]
        for _ in range(50):
            try:
                lake.write_parquet("manifests", day, f"p{part}", rows)
                break
            except CommitFailedError:
                conflicts += 1
        else:
            sys.exit(f"part {part}: 50 commits lost in a row")
        written += 1
        if written == 1:
            print("ready", flush=True)
    print(f"written {written} conflicts {conflicts}", flush=True)
    """
)


def _maintain_with_retries(settings: Settings | None = None) -> maintenance.Maintained:
    """As the task does: a commit that lost to a concurrent one is tried again (2 retries)."""
    for attempt in range(3):
        try:
            return maintenance.maintain(TABLE, settings, today=RUN_DAY)
        except CommitFailedError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def test_maintenance_beside_a_process_committing_parts_loses_no_row(
    dresscode_home: Path, tmp_path: Path
) -> None:
    _write_parts(range(20))
    script, stop = tmp_path / "appender.py", tmp_path / "stop"
    script.write_text(APPENDER)
    appender = subprocess.Popen(
        [sys.executable, str(script), str(stop), DAY, "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert appender.stdout is not None
        assert appender.stdout.readline().strip() == "ready", appender.stderr
        rounds = [_maintain_with_retries() for _ in range(3)]  # while parts keep coming
        stop.touch()
        out, err = appender.communicate(timeout=240)
    finally:
        appender.kill()
    assert appender.returncode == 0, err
    summary = re.search(r"^written (\d+) conflicts (\d+)$", out, re.MULTILINE)
    assert summary, out
    written = int(summary.group(1))
    final = _maintain_with_retries()

    rows = lake.read_table(TABLE)
    expected = {str(r["upload_key"]) for p in range(20) for r in _items(p)} | {
        f"user-{(p * 7 + i) % 11}/u-{p}-{i}.jpg" for p in range(20, 20 + written) for i in range(5)
    }
    assert sorted(rows["upload_key"]) == sorted(expected)  # each exactly once
    assert any(r["files_compacted"] for r in rounds)
    assert final["files_after"] == 1  # the last parts joined the compacted file


# --- a table partitioned by user_bucket (wardrobe_items) --------------------------------------


def _bucketed_parts(parts: range, users: int = 300) -> None:
    for part in parts:
        rows = [
            {"item_id": f"item-{part}-{i}", "user_id": f"user-{(part * 37 + i) % users:04d}"}
            for i in range(200)
        ]
        lake.write_parquet("wardrobe_items", DAY, f"p{part}", rows)


def test_a_user_bucket_table_compacts_every_bucket_holding_small_files_and_keeps_every_row(
    dresscode_home: Path,
) -> None:
    """No day is left out (every ingest batch writes to some bucket, today included): each
    bucket becomes one file, z-ordered by user, in row groups a batch reads one or two of."""
    import pyarrow.parquet as pq

    _bucketed_parts(range(6))
    before = _rows(lake.read_table("wardrobe_items"))
    table = delta.open_table("wardrobe_items")
    assert table is not None
    buckets = {str(p[delta.BUCKET]) for p in table.partitions()}
    assert len(buckets) > 30  # 300 users spread over the 64 buckets

    done = maintenance.maintain("wardrobe_items", today=date.fromisoformat(DAY))

    assert sorted(done["partitions_compacted"]) == sorted(
        b
        for b in buckets
        if len(table.file_uris(file_pruning_predicate=[(delta.BUCKET, "=", b)])) >= 2
    )
    after = delta.open_table("wardrobe_items")
    assert after is not None
    for bucket in done["partitions_compacted"]:
        files = after.file_uris(file_pruning_predicate=[(delta.BUCKET, "=", bucket)])
        assert len(files) == 1
        group = pq.ParquetFile(files[0]).metadata.row_group(0)
        assert group.num_rows <= maintenance.ROW_GROUP_ROWS
        assert group.column(0).compression == "SNAPPY"  # not dropped with the row-group size
    assert _rows(lake.read_table("wardrobe_items")) == before


def test_a_batch_of_users_reads_only_its_buckets_files(dresscode_home: Path) -> None:
    _bucketed_parts(range(6))
    maintenance.maintain("wardrobe_items", today=date.fromisoformat(DAY))
    wanted = sorted({f"user-{u:04d}" for u in range(0, 300, 7)}, key=delta.user_order)[:5]
    table = delta.open_table("wardrobe_items")
    assert table is not None
    total = len(table.file_uris())

    rows = lake.read_table("wardrobe_items", filters=[("user_id", "in", wanted)])
    _, pruning = delta_filters.conditions(
        None, [("user_id", "in", wanted)], {"user_id", delta.BUCKET}
    )
    scanned = table.file_uris(file_pruning_predicate=" AND ".join(pruning))

    assert set(rows["user_id"]) == set(wanted)
    assert len(rows) == sum(
        1 for p in range(6) for i in range(200) if f"user-{(p * 37 + i) % 300:04d}" in wanted
    )
    assert len(scanned) <= len({delta.user_bucket(u) for u in wanted}) < total
