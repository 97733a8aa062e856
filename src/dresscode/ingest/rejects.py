"""Why a photo is rejected: a stable reason code paired with a sentence for people.

The codes are the values the quarantine's ``reason.json``, the metrics and the runbooks use.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class RejectCode(StrEnum):
    """Why a photo was rejected. Values are stable: quarantine, metrics and runbooks use them."""

    EMPTY = "empty"
    TOO_LARGE = "too_large"
    NOT_AN_IMAGE = "not_an_image"
    DISGUISED_TYPE = "disguised_type"
    UNSUPPORTED_FORMAT = "unsupported_format"
    ANIMATED = "animated"
    TRUNCATED = "truncated"
    CORRUPT = "corrupt"
    DECOMPRESSION_BOMB = "decompression_bomb"
    BAD_DIMENSIONS = "bad_dimensions"
    TOO_COMPLEX = "too_complex"
    """Too costly to decode: more JPEG scans, or more decode CPU time, than allowed."""


class Rejected(Exception):
    """A photo we will not process; ``code`` is stable, ``message`` is for people."""

    def __init__(self, code: RejectCode, message: str, detail: dict[str, Any] | None = None):
        super().__init__(code, message, detail)
        self.code = RejectCode(code)
        self.message = message
        self.detail: dict[str, Any] = dict(detail or {})

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, e.g. for a quarantine ``reason.json``."""
        return {"code": str(self.code), "message": self.message, "detail": self.detail}
