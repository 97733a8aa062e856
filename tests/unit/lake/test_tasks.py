"""The door of lake_maintenance: one table per task, and a report that names what failed."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from dresscode.core import config, lake
from dresscode.lake import tasks


def test_every_delta_table_gets_a_task() -> None:
    assert tasks.TABLES == (
        "manifests",
        "wardrobe_items",
        "redigitized",
        "user_events",
        "users",
        "user_style",
        "weather",
    )


def test_maintain_refuses_a_table_that_is_not_delta(dresscode_home: Path) -> None:
    with pytest.raises(ValueError, match="'feedback' is not a Delta table of the lake"):
        tasks.maintain("feedback", day=date(2026, 3, 2))


def test_the_report_totals_and_fails_naming_each_table_that_failed(
    dresscode_home: Path,
) -> None:
    for part in range(3):
        lake.write_parquet(
            "wardrobe_items", "2026-03-01", f"p{part}", [{"item_id": str(part), "user_id": "u1"}]
        )
    done = [
        tasks.maintain(name, day=date(2026, 3, 2))
        for name in ("wardrobe_items", "redigitized", "user_events", "users")
    ]
    unwritten = ("user_style", "weather")  # like redigitized: never written
    done += [{**done[1], "table": t} for t in unwritten]

    with pytest.raises(tasks.MaintenanceFailed) as failed:
        tasks.report(done)  # manifests' task failed: it has no result

    lake_uri = config.get_settings().lake_uri
    expected = f"lake maintenance failed for 1 of 7 tables of {lake_uri}: manifests ("
    assert str(failed.value).startswith(expected)
    totals = tasks.report([*done, {**done[1], "table": "manifests"}])
    assert totals == {
        "maintained": ["wardrobe_items"],
        "never_written": ["manifests", "redigitized", "user_events", "users", *unwritten],
        "files_before": 3,
        "files_after": 1,
        "files_vacuumed": 0,
    }
