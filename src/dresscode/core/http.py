"""HTTP details every client of the project shares (the model endpoint, the weather provider)."""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, datetime


def retry_after_seconds(raw: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds to wait, or None when absent or unreadable.

    Both forms of RFC 9110: delta-seconds (what vLLM and most proxies send) and an HTTP date.
    Negative or non-finite values are unreadable; a date in the past means "now" (0 s).
    """
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds
