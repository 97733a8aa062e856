"""User profiles: who is active and which city they dress for.

Profiles come from the product's user service; here they are a lake table (``users``): state,
one row per user (user_id, city — a display name such as "São Paulo" — and last_active_at),
merged on user_id, the newest last_active_at winning (a late, older change is ignored). A user is *active* when seen within
``DRESSCODE_ACTIVE_USER_DAYS``; only active users get weather, style features and outfits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dresscode.core import lake
from dresscode.core.config import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class User:
    user_id: str
    city: str
    last_active_at: datetime


def write_profiles(
    profiles: Iterable[Mapping[str, Any]], *, day: str, settings: Settings | None = None
) -> int:
    """Merge profile rows (user_id, city, last_active_at) into ``users`` on user_id; writing
    the same rows again changes nothing."""
    rows = []
    for p in profiles:
        user_id = lake.safe_segment(str(p["user_id"]), what="user id")
        city = str(p.get("city") or "").strip()
        seen = p["last_active_at"]
        if not isinstance(seen, datetime) or seen.tzinfo is None:
            raise ValueError(f"user {user_id}: last_active_at must be a timezone-aware datetime")
        rows.append({"user_id": user_id, "city": city, "last_active_at": seen.astimezone(UTC)})
    if not rows:
        return 0
    counts = lake.upsert("users", day, rows, settings)
    log.info(
        "users: %d profiles merged (%d new, %d updated)",
        len(rows),
        counts.get("num_target_rows_inserted", 0),
        counts.get("num_target_rows_updated", 0),
    )
    return len(rows)


def active_users(now: datetime | None = None, settings: Settings | None = None) -> list[User]:
    """Latest profile per user, seen within the activity window, sorted by user_id.

    Users without a city are left out with a warning: nothing can be suggested without one.
    """
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    since = now - timedelta(days=settings.active_user_days)
    # One row per user (merged); the statistics of last_active_at skip files of idle users.
    table = lake.read_table(
        "users",
        settings,
        columns=["user_id", "city", "last_active_at"],
        filters=[("last_active_at", ">=", since)],
    )
    if table.empty:
        return []
    table = table.sort_values("last_active_at").drop_duplicates("user_id", keep="last")
    active = []
    for row in table.itertuples(index=False):
        seen = row.last_active_at.to_pydatetime()
        seen = seen if seen.tzinfo else seen.replace(tzinfo=UTC)
        if seen < since:
            continue
        if seen > now + timedelta(minutes=5):
            log.warning(
                "user %s: last_active_at %s is in the future (clock skew?)", row.user_id, seen
            )
        if not str(row.city or "").strip():
            log.warning("user %s has no city: left out (no weather to dress for)", row.user_id)
            continue
        active.append(User(str(row.user_id), str(row.city).strip(), seen))
    return sorted(active, key=lambda u: u.user_id)
