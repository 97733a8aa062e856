"""User profiles are state: one row per user in the ``users`` Delta table, merged on user_id,
the newest last_active_at winning; "who is active" reads that row, not every change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dresscode.core import delta, lake
from dresscode.features import users

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _profile(user: str, city: str, days_ago: float) -> dict[str, object]:
    return {"user_id": user, "city": city, "last_active_at": NOW - timedelta(days=days_ago)}


def test_a_profile_change_updates_the_users_one_row(dresscode_home: Path) -> None:
    users.write_profiles([_profile("u1", "Oslo", 3), _profile("u2", "Lima", 1)], day="2026-05-31")
    users.write_profiles([_profile("u1", "Berlin", 0)], day="2026-06-01")

    table = lake.read_table("users")
    assert sorted(table["user_id"]) == ["u1", "u2"]  # merged: no second row for u1
    assert [(u.user_id, u.city) for u in users.active_users(NOW)] == [
        ("u1", "Berlin"),
        ("u2", "Lima"),
    ]


def test_a_late_older_change_does_not_undo_a_newer_one(dresscode_home: Path) -> None:
    users.write_profiles([_profile("u1", "Berlin", 0)], day="2026-06-01")
    version = delta.current_version("users")
    users.write_profiles([_profile("u1", "Oslo", 5)], day="2026-05-27")  # arrives late

    assert [(u.user_id, u.city) for u in users.active_users(NOW)] == [("u1", "Berlin")]
    assert delta.current_version("users") == version  # nothing to change: no commit at all
    assert len(lake.read_table("users")) == 1


def test_writing_the_same_profiles_again_changes_nothing(dresscode_home: Path) -> None:
    rows = [_profile(f"u{i}", "Oslo", i) for i in range(40)]
    users.write_profiles(rows, day="2026-06-01")
    before = lake.read_table("users").sort_values("user_id").reset_index(drop=True)

    users.write_profiles(rows, day="2026-06-01")

    after = lake.read_table("users").sort_values("user_id").reset_index(drop=True)
    assert after.equals(before)


def test_only_users_seen_within_the_window_are_active(dresscode_home: Path) -> None:
    users.write_profiles(
        [_profile("recent", "Oslo", 2), _profile("idle", "Oslo", 90), _profile("nocity", "", 1)],
        day="2026-06-01",
    )
    assert [u.user_id for u in users.active_users(NOW)] == ["recent"]


def test_history_parts_cannot_be_written_to_a_state_table(dresscode_home: Path) -> None:
    with pytest.raises(ValueError, match="keeps state"):
        lake.write_parquet("users", "2026-06-01", "p", [_profile("u1", "Oslo", 0)])
