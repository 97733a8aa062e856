"""Who may call the service, and how often: the caller's API key and a per-user rate limit.

The caller is the app backend, not the end user: it sends ``Authorization: Bearer <key>``
with the key held in the Airflow connection ``DRESSCODE_SERVE_CONN_ID`` (default
``dresscode_serve``; its password is the key, e.g.
``AIRFLOW_CONN_DRESSCODE_SERVE='{"conn_type": "generic", "password": "<key>"}'``). The key is
read once at start-up; a connection without a password stops the service at start, naming it.
Keys are compared in constant time and never logged.

The rate limit is a token bucket per user id (``DRESSCODE_SERVE_RATE_LIMIT_PER_MIN``, bursts up
to the same number), in the process: behind several replicas each enforces its own share, so
set it per replica.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable

from dresscode.core.config import Settings, SettingsError
from dresscode.core.connections import get_connection

MAX_TRACKED_USERS = 100_000  # buckets kept before idle (full) ones are forgotten


def api_key_from_connection(settings: Settings) -> str:
    """The key callers must present; SettingsError (one sentence) when it is not set."""
    conn = get_connection(settings.serve_conn_id)
    key = (conn.password or "").strip()
    if not key:
        env = f"AIRFLOW_CONN_{settings.serve_conn_id.upper()}"
        raise SettingsError(
            f"Connection {settings.serve_conn_id!r} has no password: set the API key callers of "
            f"dresscode serve must send as its password ({env})."
        )
    return key


def authorized(header: str | None, key: str) -> bool:
    """True when ``header`` is ``Bearer <key>`` (constant-time comparison)."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), key.encode())


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests a minute, bursts up to ``per_minute``."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be >= 1")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def allow(self, key: str) -> tuple[bool, float]:
        """Take a token: ``(True, 0)``, or ``(False, seconds until the next one)``."""
        now = self._clock()
        tokens, at = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > MAX_TRACKED_USERS:
                self._forget_idle(now)
            return True, 0.0
        self._buckets[key] = (tokens, now)
        return False, math.ceil((1.0 - tokens) / self.rate * 10) / 10

    def _forget_idle(self, now: float) -> None:
        full_after = self.capacity / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
