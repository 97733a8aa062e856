"""The pure line checks of dresscode/feedback/events.py: times, text, lines, reasons."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from dresscode.feedback.events import (
    LineChecker,
    Reason,
    Rejection,
    item_schema,
    parse_time,
    safe_text,
    split_lines,
)

NOW = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def checker() -> LineChecker:
    return LineChecker(now=NOW, max_future_s=300, item=item_schema())


def _line(**fields: object) -> bytes:
    event = {
        "event_id": "e-1",
        "event_type": "item_deleted",
        "user_id": "user-a",
        "event_time": "2026-03-03T10:00:00+00:00",
        "item_id": "user-a-0",
    }
    return json.dumps(event | fields).encode()


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59-05:00",
        "2026-03-03T10:00:00",
        "not a time",
        "",
    ],
)
def test_a_time_out_of_utc_range_or_without_zone_is_none_not_an_error(value) -> None:
    assert parse_time(value) is None


def test_a_time_with_a_zone_is_utc() -> None:
    assert parse_time("2026-03-01T21:00:00-05:00") == datetime(2026, 3, 2, 2, tzinfo=UTC)


def test_every_reason_has_a_sentence() -> None:
    for reason in Reason:
        assert reason.value == reason.value.lower() and reason.sentence.endswith(".")


def test_safe_text_escapes_lone_surrogates_and_keeps_everything_else() -> None:
    assert safe_text("caf\u00e9 \U0001f600") == "caf\u00e9 \U0001f600"
    assert safe_text("a\ud800b\udcff") == "a\\ud800b\\udcff"
    safe_text("a\ud800b").encode("utf-8")


def test_a_leading_bom_is_not_part_of_line_one() -> None:
    assert split_lines(b"\xef\xbb\xbf{}\r\n\n[]\n") == [(1, b"{}"), (3, b"[]")]
    assert split_lines(b"\xef\xbb\xbf") == []


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (_line(event_time="0001-01-01T00:00:00+05:00"), Reason.INVALID_FIELD),
        (_line(event_time="1999-12-31T23:59:59+00:00"), Reason.INVALID_FIELD),
        (_line(item_id="\ud800"), Reason.LONE_SURROGATE),
        (_line(**{"\udfff": 1}), Reason.LONE_SURROGATE),
        (_line(item_id="x").replace(b'"x"', b"NaN"), Reason.MALFORMED_JSON),
        (_line(item_id="x").replace(b'"x"', b"1e999"), Reason.MALFORMED_JSON),
        (_line(item_id="x").replace(b'"x"', b"9" * 5000), Reason.MALFORMED_JSON),
        (_line(item_id="x").replace(b'"x"', b"[" * 40 + b"]" * 40), Reason.TOO_DEEP),
        (b"[" * 100_000, Reason.MALFORMED_JSON),
        (b"\xed\xa0\x80", Reason.NOT_UTF8),
    ],
    ids=[
        "year-1",
        "before-2000",
        "surrogate",
        "surrogate-key",
        "nan",
        "inf",
        "digits",
        "deep",
        "deeper",
        "cesu",
    ],
)
def test_hostile_lines_are_rejections_with_their_reason(checker, raw, reason) -> None:
    result = checker.check(raw, line=7, source="feedback/x.jsonl", sha="0" * 64)
    assert isinstance(result, Rejection) and result.reason is reason and result.line == 7
    json.dumps(result.record(), ensure_ascii=False).encode("utf-8")


def test_an_unexpected_error_in_a_check_is_a_check_failed_rejection(checker, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise MemoryError("a surprise")

    monkeypatch.setattr(checker, "_check", boom)
    result = checker.check(b"{}", line=3, source="feedback/x.jsonl", sha="0" * 64)
    assert isinstance(result, Rejection) and result.reason is Reason.CHECK_FAILED
    assert "MemoryError" in result.detail
