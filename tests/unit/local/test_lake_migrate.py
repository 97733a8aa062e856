"""`dresscode lake migrate`: an older release's Parquet parts become Delta rows, nothing lost."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from dresscode.core import delta, lake
from dresscode.local import cli, lake_migrate

DAY1, DAY2 = "2026-11-23", "2026-11-24"

# What the previous release wrote: parts written at different times, so one lacks a column the
# others have, one has a column that is null in every row, and one has ints with gaps (NaN).
LEGACY: dict[str, list[tuple[str, str, list[dict[str, Any]]]]] = {
    "manifests": [
        (
            DAY1,
            "batch-a",
            [
                {"upload_key": "u/1.jpg", "status": "accepted", "width": 768, "reason": None},
                {"upload_key": "u/2.jpg", "status": "quarantined", "width": 0, "reason": "dark"},
            ],
        ),
        (  # no "reason" column: written before it existed
            DAY1,
            "batch-b",
            [{"upload_key": "u/3.jpg", "status": "accepted", "width": 640}],
        ),
        (  # "reason_code" null in every row; "width" has a gap
            DAY2,
            "batch-c",
            [
                {"upload_key": "u/4.jpg", "status": "accepted", "width": 512, "reason_code": None},
                {
                    "upload_key": "u/5.jpg",
                    "status": "read_failed",
                    "width": None,
                    "reason_code": None,
                },
                {"upload_key": "u/1.jpg", "status": "accepted", "width": 768, "reason_code": None},
            ],
        ),
    ],
    "redigitized": [
        (  # the key holds an int column with a gap
            DAY2,
            "batch-d",
            [
                {"upload_key": "u/1.jpg", "prompt_version": 2, "n_items": 3},
                {"upload_key": "u/2.jpg", "prompt_version": None, "n_items": None},
            ],
        ),
    ],
}


def _write_legacy(name: str, day: str, part: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """A part as the previous release wrote it (lake.write_parquet now commits to Delta)."""
    lake.write_bytes(lake.partition(name, day) / f"{part}.parquet", lake.to_parquet_bytes(rows))


def _legacy_lake() -> None:
    for name, parts in LEGACY.items():
        for day, part, rows in parts:
            _write_legacy(name, day, part, rows)


def _keys(frame: pd.DataFrame, *columns: str) -> list[tuple[Any, ...]]:
    """Key tuples with multiplicity, sorted; NaN and None both as None, 2.0 as 2."""

    def plain(value: Any) -> Any:
        if value is None or (isinstance(value, float) and value != value):
            return None
        return int(value) if isinstance(value, float) else value

    return sorted(
        (tuple(plain(v) for v in row) for row in frame[list(columns)].itertuples(index=False)),
        key=str,
    )


def _legacy_frame(name: str) -> pd.DataFrame:
    return pd.DataFrame([row for _, _, rows in LEGACY[name] for row in rows])


def _table_files(name: str) -> dict[str, bytes]:
    folder = lake.table(name)
    return {
        p.path.removeprefix(folder.path).lstrip("/"): lake.read_bytes(p)
        for p in lake.list_files(folder)
    }


def _report(reports: list[lake_migrate.MigrationReport], name: str) -> lake_migrate.MigrationReport:
    return next(r for r in reports if r.table == name)


def test_every_legacy_row_reads_back_from_delta_and_the_files_move_aside(
    dresscode_home: Path,
) -> None:
    _legacy_lake()
    lake.write_parquet("manifests", DAY2, "batch-new", [{"upload_key": "u/9.jpg", "width": 1}])

    reports = lake_migrate.migrate()

    manifests = _report(reports, "manifests")
    assert (manifests.legacy_files, manifests.rows, manifests.committed) == (3, 6, 3)
    assert manifests.verified and manifests.ok and manifests.moved == 3
    frame = lake.read_table("manifests")
    expected = pd.concat([_legacy_frame("manifests"), pd.DataFrame([{"upload_key": "u/9.jpg"}])])
    assert _keys(frame, "upload_key") == _keys(expected, "upload_key")  # u/1.jpg twice
    statuses = sorted(zip(frame["upload_key"], frame["status"].fillna("-"), strict=True))
    assert statuses == sorted(
        zip(expected["upload_key"], expected["status"].fillna("-"), strict=True)
    )
    widths = frame.set_index("upload_key")["width"]
    assert pd.isna(widths["u/5.jpg"]) and widths["u/3.jpg"] == 640  # the gap stays a gap
    assert frame.loc[frame["upload_key"] == "u/3.jpg", "reason"].isna().all()  # column it lacked
    assert frame["reason_code"].isna().all()  # all-null column kept
    assert sorted(frame["date"]) == [DAY1] * 3 + [DAY2] * 4  # each row in its partition

    redigitized = _report(reports, "redigitized")
    assert redigitized.verified and redigitized.rows == 2
    assert _keys(lake.read_table("redigitized"), "upload_key", "prompt_version") == [
        ("u/1.jpg", 2),
        ("u/2.jpg", None),
    ]

    migrated = lake.root() / "_migrated"
    assert lake.exists(migrated / "manifests" / f"date={DAY1}" / "batch-a.parquet")
    assert lake.exists(migrated / "redigitized" / f"date={DAY2}" / "batch-d.parquet")
    assert not any(name.endswith("batch-a.parquet") for name in _table_files("manifests"))
    assert lake_migrate.legacy_parts("manifests") == []


def test_a_second_migration_changes_nothing(dresscode_home: Path) -> None:
    _legacy_lake()
    lake_migrate.migrate()
    version = delta.current_version("manifests")
    rows = len(lake.read_table("manifests"))

    again = lake_migrate.migrate()

    assert [r.summary() for r in again] == [
        f"{name}: nothing to do (no legacy Parquet parts)" for name in delta.TABLES
    ]
    assert delta.current_version("manifests") == version
    assert len(lake.read_table("manifests")) == rows


def test_a_dry_run_reports_what_it_would_do_and_changes_nothing(dresscode_home: Path) -> None:
    _legacy_lake()
    lake.write_bytes(lake.partition("manifests", DAY2) / "broken.parquet", b"not parquet")
    before = {name: _table_files(name) for name in delta.TABLES}

    reports = lake_migrate.migrate(dry_run=True)

    manifests = _report(reports, "manifests")
    assert (manifests.legacy_files, manifests.rows, manifests.committed) == (4, 6, 3)
    assert manifests.verified is None and manifests.moved == 0
    assert "would be set aside" in manifests.problems[0]
    assert "dry run, would commit 3 parts" in manifests.summary()
    assert {name: _table_files(name) for name in delta.TABLES} == before
    assert delta.open_table("manifests") is None
    assert not lake.exists(lake.root() / "_migrated")


def test_a_corrupt_part_is_set_aside_with_its_reason_and_the_command_fails(
    dresscode_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _legacy_lake()
    corrupt = lake.partition("manifests", DAY1) / "batch-torn.parquet"
    lake.write_bytes(corrupt, b"PAR1 torn in half")
    stray = lake.table("manifests") / "stray.parquet"  # not where the old release wrote parts
    lake.write_bytes(stray, lake.to_parquet_bytes([{"upload_key": "u/x.jpg"}]))

    assert cli.main(["lake", "migrate"]) == 1

    out, err = capsys.readouterr()
    assert "manifests: 5 legacy files, 6 rows: committed 3 parts, verified" in out
    assert "2 unreadable" in out
    assert "batch-torn.parquet" in err and "not readable as Parquet" in err
    assert "stray.parquet" in err and "date=YYYY-MM-DD" in err
    aside = lake.root() / "_migrated" / "manifests" / "_unreadable"
    assert lake.read_bytes(aside / f"date={DAY1}" / "batch-torn.parquet") == b"PAR1 torn in half"
    reason = lake.read_bytes(aside / f"date={DAY1}" / "batch-torn.parquet.reason.txt").decode()
    assert "not readable as Parquet" in reason
    assert lake.exists(aside / "stray.parquet.reason.txt")
    assert not lake.exists(corrupt) and not lake.exists(stray)
    assert len(lake.read_table("manifests")) == 6  # the readable parts are migrated

    assert cli.main(["lake", "migrate"]) == 0  # set aside once; the next run is clean


def test_an_interrupted_migration_completes_on_rerun_without_duplicates(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _legacy_lake()
    move = lake_migrate._move
    calls = []

    def crash_on_the_second_move(src: Any, dst: Any) -> None:
        calls.append(src)
        if len(calls) == 2:
            raise RuntimeError("killed between commit and move")
        move(src, dst)

    monkeypatch.setattr(lake_migrate, "_move", crash_on_the_second_move)
    with pytest.raises(RuntimeError, match="killed"):
        lake_migrate.migrate(tables=["manifests"])
    assert len(lake_migrate.legacy_parts("manifests")) == 2  # committed, not yet moved

    manifests = _report(lake_migrate.migrate(tables=["manifests"]), "manifests")

    assert (manifests.committed, manifests.already, manifests.moved) == (0, 2, 2)
    assert manifests.verified and manifests.ok
    assert _keys(lake.read_table("manifests"), "upload_key") == _keys(
        _legacy_frame("manifests"), "upload_key"
    )
    assert lake_migrate.legacy_parts("manifests") == []


def test_nothing_moves_when_the_read_back_does_not_match(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _legacy_lake()
    read = delta.read
    monkeypatch.setattr(delta, "read", lambda *a, **k: read(*a, **k).iloc[1:])  # a row lost

    manifests = _report(lake_migrate.migrate(tables=["manifests"]), "manifests")

    assert manifests.verified is False and not manifests.ok and manifests.moved == 0
    assert "1 expected rows missing" in manifests.failures[0]
    assert "NOT verified, nothing moved" in manifests.summary()
    assert len(lake_migrate.legacy_parts("manifests")) == 3
    assert not lake.exists(lake.root() / "_migrated")


def test_a_replaced_delta_part_left_until_vacuum_is_not_taken_for_a_legacy_part(
    dresscode_home: Path,
) -> None:
    lake.write_parquet("manifests", DAY1, "batch-1", [{"upload_key": "u/old.jpg"}])
    lake.write_parquet("manifests", DAY1, "batch-1", [{"upload_key": "u/new.jpg"}])
    assert sum(name.endswith(".parquet") for name in _table_files("manifests")) == 2

    assert lake_migrate.legacy_parts("manifests") == []
    assert _report(lake_migrate.migrate(), "manifests").legacy_files == 0
    assert lake.read_table("manifests")["upload_key"].tolist() == ["u/new.jpg"]


def test_the_state_tables_replaced_files_are_not_taken_for_legacy_parts(
    dresscode_home: Path,
) -> None:
    """``users`` is merged, so its files have no ``_part``: the files a merge replaced (kept
    until vacuum) and those of a merge that lost a commit race (two seeding processes at once)
    are delta-rs's, and `make up` must not refuse to start over them."""
    from datetime import UTC, datetime, timedelta

    from dresscode.features import users

    seen = datetime(2026, 11, 23, 8, tzinfo=UTC)
    users.write_profiles([{"user_id": "u1", "city": "Oslo", "last_active_at": seen}], day=DAY1)
    moved = seen + timedelta(days=1)
    users.write_profiles([{"user_id": "u1", "city": "Lima", "last_active_at": moved}], day=DAY2)
    files = [name for name in _table_files("users") if name.endswith(".parquet")]
    assert len(files) == 2  # the replaced file is still on disk

    assert lake_migrate.legacy_parts("users") == []
    lake_migrate.prepare_lake()  # raised MigrationFailed ("not in a date=YYYY-MM-DD folder")
    assert lake.read_table("users")["city"].tolist() == ["Lima"]


def test_a_part_written_again_after_the_upgrade_keeps_its_newer_rows(
    dresscode_home: Path,
) -> None:
    _write_legacy("manifests", DAY1, "batch-1", [{"upload_key": "u/1.jpg", "attempt": 1}])
    lake.write_parquet(
        "manifests",
        DAY1,
        "batch-1",
        [{"upload_key": "u/1.jpg", "attempt": 2}, {"upload_key": "u/2.jpg"}],
    )

    manifests = _report(lake_migrate.migrate(), "manifests")

    assert manifests.superseded == (f"date={DAY1}/batch-1.parquet",)
    assert manifests.verified and manifests.ok and manifests.moved == 1
    assert sorted(lake.read_table("manifests")["upload_key"]) == ["u/1.jpg", "u/2.jpg"]
    assert lake.exists(lake.root() / "_migrated" / "manifests" / f"date={DAY1}" / "batch-1.parquet")


def test_the_command_line_names_tables_and_dry_runs(
    dresscode_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _legacy_lake()

    assert cli.main(["lake", "migrate", "--table", "redigitized", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "redigitized: 1 legacy files, 2 rows: dry run, would commit 1 parts; nothing changed"
    ]
    assert cli.main(["lake", "migrate", "--table", "redigitized"]) == 0
    assert (
        "redigitized: 1 legacy files, 2 rows: committed 1 parts, verified"
        in capsys.readouterr().out
    )
    assert len(lake_migrate.legacy_parts("manifests")) == 3  # not named: untouched
    with pytest.raises(SystemExit) as exit_:
        cli.main(["lake", "migrate", "--table", "feedback"])
    assert exit_.value.code == 2
    assert "'feedback' is not a Delta table" in capsys.readouterr().err


def test_up_migrates_before_starting_and_is_silent_when_there_is_nothing_to_do(
    dresscode_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lake_migrate.prepare_lake()
    assert capsys.readouterr().out == ""

    _legacy_lake()
    lake_migrate.prepare_lake()
    assert "migrating the lake of an older release" in capsys.readouterr().out
    assert lake_migrate.legacy_parts("manifests") == []

    lake.write_bytes(lake.partition("manifests", DAY1) / "torn.parquet", b"PAR1")
    with pytest.raises(lake_migrate.MigrationFailed, match=r"torn\.parquet"):
        lake_migrate.prepare_lake()


@pytest.mark.integration
def test_an_s3_lake_is_migrated_in_place(s3_lake: str) -> None:
    _write_legacy("manifests", DAY1, "batch-a", LEGACY["manifests"][0][2])
    _write_legacy("manifests", DAY2, "batch-c", LEGACY["manifests"][2][2])

    manifests = _report(lake_migrate.migrate(tables=["manifests"]), "manifests")

    assert manifests.verified and manifests.ok and (manifests.rows, manifests.moved) == (5, 2)
    assert sorted(lake.read_table("manifests")["upload_key"]) == [
        "u/1.jpg",
        "u/1.jpg",
        "u/2.jpg",
        "u/4.jpg",
        "u/5.jpg",
    ]
    assert lake.exists(lake.root() / "_migrated" / "manifests" / f"date={DAY2}" / "batch-c.parquet")
    assert _report(lake_migrate.migrate(tables=["manifests"]), "manifests").legacy_files == 0


def test_the_feature_tables_parts_become_delta_rows_with_their_timestamps(
    dresscode_home: Path,
) -> None:
    # user_style and weather as the previous release wrote them: Parquet parts with pandas'
    # nanosecond UTC timestamps, list columns (empty ones too) and an all-null column.
    at = pd.Timestamp("2026-11-24T02:00:00.123456Z")
    style_rows = pd.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "event_timestamp": [at, at],
            "created": [at, at],
            "wardrobe_size": [3, 0],
            "share_top": [1.0, 0.0],
            "top_colors": [["black"], []],
            "last_upload": [at - pd.Timedelta(days=2), pd.NaT],
        }
    )
    weather_rows = pd.DataFrame(
        {
            "city_id": ["oslo"],
            "day": [DAY1],
            "temperature_c": [-3.5],
            "is_rainy": [False],
            "event_timestamp": [at],
            "created": [at],
            "fetched_at": [at],
        }
    )
    for name, frame in (("user_style", style_rows), ("weather", weather_rows)):
        assert str(frame["event_timestamp"].dtype) == "datetime64[ns, UTC]"
        lake.write_bytes(lake.partition(name, DAY1) / "night.parquet", lake.to_parquet_bytes(frame))

    reports = lake_migrate.migrate(tables=["user_style", "weather"])

    assert all(r.verified and r.ok and r.moved == 1 for r in reports)
    style = lake.read_table("user_style").sort_values("user_id").reset_index(drop=True)
    assert list(style["event_timestamp"]) == [at, at]
    assert style.loc[0, "last_upload"] == at - pd.Timedelta(days=2)
    assert pd.isna(style.loc[1, "last_upload"])
    assert [list(c) for c in style["top_colors"]] == [["black"], []]
    assert list(style["wardrobe_size"]) == [3, 0] and list(style["date"]) == [DAY1] * 2
    weather = lake.read_table("weather")
    assert (weather.loc[0, "fetched_at"], weather.loc[0, "temperature_c"]) == (at, -3.5)
    assert lake.partition_days("weather") == [DAY1]
    assert lake_migrate.legacy_parts("user_style") == lake_migrate.legacy_parts("weather") == []
