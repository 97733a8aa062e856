"""What counts as a feedback file in dresscode/feedback/landing.py."""

from __future__ import annotations

import pytest

from dresscode.feedback.landing import not_jsonl


@pytest.mark.parametrize(
    ("key", "data"),
    [
        ("feedback/events.jsonl", b'{"event_id": "e"}\n'),
        ("feedback/EVENTS.JSONL", b""),
        ("feedback/sub/day.jsonl", b"\xef\xbb\xbf{}\n"),
    ],
)
def test_jsonl_files_of_text_are_feedback(key, data) -> None:
    assert not_jsonl(key, data) is None


@pytest.mark.parametrize(
    ("key", "data", "why"),
    [
        ("feedback/photo.jpg", b"\xff\xd8\xff\xe1", ".jpg file"),
        ("feedback/notes", b"{}", "no file extension"),
        ("feedback/photo.jsonl", b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG"),
        ("feedback/photo.jsonl", b"\xef\xbb\xbf\x89PNG\r\n\x1a\n", "PNG"),
        ("feedback/clip.jsonl", b"\x00\x00\x00\x18ftypheic", "HEIC"),
        ("feedback/x.jsonl", b"PK\x03\x04", "ZIP"),
    ],
)
def test_anything_else_is_not_jsonl_by_name_or_first_bytes(key, data, why) -> None:
    reason = not_jsonl(key, data)
    assert reason is not None and why in reason
