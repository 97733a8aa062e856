"""Who gets which prompt: the canary split and the live shadow's sample.

Both are decided by hashing, never by a random draw, so a decision can be repeated and
explained: the canary hashes the **user id** (the same user stays on the same variant across
requests and restarts, and raising the share only moves users from production to candidate,
never back), the shadow hashes the **request id** (each request is sampled on its own).
Each has its own salt, so the canary's users are not also the shadow's requests.
"""

from __future__ import annotations

import hashlib
from typing import Literal

Variant = Literal["production", "candidate"]

_CANARY_SALT = b"dresscode-canary\x00"
_SHADOW_SALT = b"dresscode-shadow\x00"
_SCALE = float(2**64)


def _unit(salt: bytes, key: str) -> float:
    """A stable number in [0, 1) for ``key``: the first 8 bytes of SHA-256 over salt + key."""
    digest = hashlib.sha256(salt + key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def variant_for(user_id: str, canary_share: float, *, candidate_available: bool) -> Variant:
    """``candidate`` for a stable ``canary_share`` of users, ``production`` for the rest
    (and for everyone while there is no candidate)."""
    if candidate_available and _unit(_CANARY_SALT, user_id) < canary_share:
        return "candidate"
    return "production"


def shadowed(request_id: str, shadow_share: float) -> bool:
    """Whether this request is also sent to the candidate in the background."""
    return _unit(_SHADOW_SALT, request_id) < shadow_share
