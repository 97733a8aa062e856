"""core.http.retry_after_seconds: one reading of Retry-After for every client of the project."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dresscode.core.http import retry_after_seconds

NOW = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("Sat, 05 Dec 2026 12:00:30 GMT", 30.0),  # the HTTP-date form
        ("Sat, 05 Dec 2026 11:59:00 GMT", 0.0),  # a date in the past: retry now
        (None, None),
        ("", None),
        ("-3", None),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("Sat, 99 Foo 2026 99:99:99 GMT", None),
    ],
)
def test_retry_after_reads_seconds_and_dates_and_refuses_the_rest(
    raw: str | None, expected: float | None
) -> None:
    assert retry_after_seconds(raw, now=NOW) == expected
