"""The caller's API key and the per-user rate limit."""

from __future__ import annotations

import json

import pytest

from dresscode.core.config import SettingsError, get_settings
from dresscode.serve.access import RateLimiter, api_key_from_connection, authorized


def test_only_the_exact_bearer_key_is_authorized() -> None:
    assert authorized("Bearer s3cret", "s3cret")
    assert authorized("bearer s3cret", "s3cret")  # the scheme is case-insensitive
    for header in (None, "", "s3cret", "Bearer", "Bearer s3cre", "Bearer s3cret2", "Basic s3cret"):
        assert not authorized(header, "s3cret"), header


def test_the_rate_limit_allows_a_burst_then_refills_at_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(6, clock=lambda: now[0])  # 6 a minute: one every 10 s
    assert [limiter.allow("u1")[0] for _ in range(7)] == [True] * 6 + [False]
    allowed, wait = limiter.allow("u1")
    assert not allowed and 0 < wait <= 10
    assert limiter.allow("u2")[0]  # per user: another user is not held back
    now[0] = 10.0
    assert limiter.allow("u1")[0] and not limiter.allow("u1")[0]


def test_the_api_key_comes_from_the_connection_and_a_missing_one_is_named(
    dresscode_home: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_DRESSCODE_SERVE", json.dumps({"conn_type": "generic", "password": "k-1"})
    )
    assert api_key_from_connection(get_settings()) == "k-1"
    monkeypatch.setenv("AIRFLOW_CONN_DRESSCODE_SERVE", json.dumps({"conn_type": "generic"}))
    with pytest.raises(SettingsError, match="AIRFLOW_CONN_DRESSCODE_SERVE"):
        api_key_from_connection(get_settings())
