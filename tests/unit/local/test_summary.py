"""The make-up summary reads the newest suggestion per user, whatever batch wrote it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from dresscode.core import lake
from dresscode.local import summary


def _row(user: str, status: str, at: datetime, reason: str | None = None) -> dict:
    return {
        "user_id": user,
        "day": "2026-11-23",
        "status": status,
        "skip_reason": reason,
        "n_dropped_items": 0,
        "rule_violations": [],
        "coerced_args": 0,
        "generated_at": at,
    }


def test_a_user_rewritten_by_a_later_batch_counts_once(dresscode_home: Path) -> None:
    early = datetime(2026, 11, 23, 5, tzinfo=UTC)
    later = early + timedelta(hours=1)
    lake.write_parquet(
        "outfit_suggestions",
        "2026-11-23",
        "users-a",
        [_row("u1", "skipped", early, "model_error"), _row("u2", "ok", early)],
    )
    lake.write_parquet(
        "outfit_suggestions",
        "2026-11-23",
        "users-b",
        [_row("u1", "ok", later), _row("u2", "ok", later), _row("u3", "ok", later)],
    )
    got = summary.outfits()
    assert (got["users"], got["suggested"], got["skipped"]) == (3, 3, {})
