"""The parsers behind the settings table (``dresscode.core.config.SETTINGS``).

Each parser takes the raw text of one ``DRESSCODE_*`` variable and returns the typed value, or
raises ValueError with what was expected; ``config`` turns that into a SettingsError naming
the variable. Every one refuses what no setting means: control characters, NaN, infinity,
values over MAX_VALUE_CHARS.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class SettingsError(ValueError):
    """A setting or connection is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Knob:
    """One documented setting: its env var, type, default and meaning. An empty value is unset
    (compose files write ``${VAR:-}``) unless ``empty_is_default`` is False."""

    env: str
    parse: Callable[[str], Any]
    default: Callable[[Path], Any]  # given the resolved home folder
    help: str
    empty_is_default: bool = True


MAX_VALUE_CHARS = 4096  # longer values are refused unparsed: no setting needs more
# Control characters, line separators, zero-width and bidi controls: never meant in a setting.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def _int_between(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return value

    parse.__doc__ = f"an integer between {lo} and {hi}"
    return parse


def _float_between(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not math.isfinite(value) or not lo <= value <= hi:
            raise ValueError(f"{value:g} is not between {lo:g} and {hi:g}")
        return value

    parse.__doc__ = f"a number between {lo} and {hi}"
    return parse


def _str(raw: str) -> str:
    """a non-empty string"""
    value = raw.strip()
    if not value or _CONTROL.search(value):  # a pasted newline or tab, or only blanks
        raise ValueError("must be one line of text, not empty")
    return value


def _uri(raw: str) -> str:
    """file:///path, s3://bucket/prefix or a filesystem path"""
    value = _str(raw)
    parts = urlsplit(value if "://" in value else _path(value).as_uri())
    if parts.scheme not in ("s3", "file"):
        raise ValueError(f"{parts.scheme or '(no scheme)'}:// is not supported")
    if parts.query or parts.fragment:
        raise ValueError("a lake location has no ?query or #fragment")
    if parts.scheme == "s3" and not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", parts.netloc):
        raise ValueError(f"{parts.netloc!r} is not an S3 bucket name")
    path = parts.path.rstrip("/")
    if parts.scheme == "file" and (parts.netloc not in ("", "localhost") or path[:2] in ("", "//")):
        raise ValueError("a file URI names a folder below the root, as file:///data/lake does")
    return parts._replace(path=path).geturl()


def _optional_uri(raw: str) -> str | None:
    """file:///path, s3://bucket/key or a filesystem path (empty: unset)"""
    return _uri(raw) if raw.strip() else None


def _path(raw: str) -> Path:
    """a filesystem path"""
    try:
        return Path(_str(raw)).expanduser().resolve()
    except (OSError, RuntimeError) as exc:  # "~nobody/x": no such user's home
        raise ValueError(str(exc)) from None


def _sqs_url(raw: str) -> str:
    """an SQS queue URL"""
    value = _str(raw)
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(
            "must be a queue URL such as https://sqs.eu-west-1.amazonaws.com/123456789012/uploads"
        )
    return value


def _bool(raw: str) -> bool:
    """true or false"""
    value = raw.strip().lower()
    if value not in {"true", "false", "1", "0", "yes", "no"}:
        raise ValueError("must be true or false")
    return value in {"true", "1", "yes"}


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    parse.__doc__ = f"one of {', '.join(options)}"
    return parse


# Monitoring SLOs: ``<metric>_max`` is an upper bound, ``<metric>_min`` a lower bound on the
# metric of the current window (names match ``dresscode.monitoring.metrics``'s metric columns).
SLO_DEFAULTS: dict[str, float] = {
    "call_error_rate_max": 0.05,
    "json_error_rate_max": 0.02,
    "schema_violation_rate_max": 0.02,
    "repaired_rate_max": 0.10,
    "zero_item_share_max": 0.10,
    "items_per_photo_min": 1.0,
    "ttft_p95_ms_max": 3000.0,
    "latency_p95_ms_max": 30000.0,
    "tool_call_success_rate_min": 0.95,
    "hallucination_rate_max": 0.01,
    "quarantine_rate_max": 0.50,
    "correction_rate_max": 0.20,
    "thumbs_down_rate_max": 0.35,
    "wore_instead_rate_max": 0.50,
    # Cost (monitoring/cost.py). A suggestion is 2 turns (tool call, answer); a 150-item
    # wardrobe is ~6k prompt tokens a turn, so 12k is a big wardrobe answered, and a model
    # looping to max_turns goes past it. Set it to ~1.5x your usual figure (the monitoring
    # report shows it). The budget needs DRESSCODE_MODEL_PRICES.
    "tokens_per_outfit_max": 12000.0,
    "cost_usd_per_day_max": 100.0,
}
ALERT_BACKENDS = ("slack", "smtp", "sns")


def _slos(raw: str) -> dict[str, float]:
    """a JSON object of SLO overrides"""
    try:
        given = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg}") from None
    except (ValueError, RecursionError):  # a 5000-digit number, "[[[[…" nested too deep
        raise ValueError("not JSON this program can read") from None
    if not isinstance(given, dict):
        raise ValueError('must be a JSON object such as {"json_error_rate_max": 0.05}')
    unknown = sorted(set(given) - set(SLO_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown SLO {unknown}; known: {', '.join(SLO_DEFAULTS)}")
    values: dict[str, float] = {}
    for name, value in given.items():
        ceiling = 1.0 if "rate" in name or "share" in name else 1e9
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if number is None or not 0 <= number <= ceiling:  # NaN fails both comparisons
            raise ValueError(f"SLO {name} must be a number between 0 and {ceiling:g}")
        values[name] = float(number)
    return SLO_DEFAULTS | values


# The live shadow's promotion gate (prompt_release reads the serve_shadow table): a candidate
# with at least min_samples shadowed requests in the last `days` must meet every bound.
LIVE_SHADOW_GATE_DEFAULTS: dict[str, float] = {
    "min_samples": 0,  # 0: no live traffic shadowed yet does not hold a promotion
    "days": 7,
    "agreement_min": 0.5,  # mean overlap of the outfit items with production's
    "tool_call_success_rate_min": 0.95,
    "hallucination_rate_max": 0.02,  # shadowed requests where the candidate named unowned ids
    "error_rate_max": 0.05,  # shadowed requests the candidate could not answer
    "latency_ratio_max": 1.5,  # candidate p95 latency over production's, same requests
}


def _live_shadow_gate(raw: str) -> dict[str, float]:
    """a JSON object of live shadow gate overrides"""
    try:
        given = json.loads(raw)
    except (ValueError, RecursionError):
        raise ValueError("not JSON this program can read") from None
    if not isinstance(given, dict):
        raise ValueError('must be a JSON object such as {"agreement_min": 0.6}')
    unknown = sorted(set(given) - set(LIVE_SHADOW_GATE_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown bound {unknown}; known: {', '.join(LIVE_SHADOW_GATE_DEFAULTS)}")
    values: dict[str, float] = {}
    for name, value in given.items():
        ceiling = 1.0 if name.endswith(("_min", "_rate_max")) else 1e6
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if number is None or not 0 <= number <= ceiling:  # NaN fails both comparisons
            raise ValueError(f"{name} must be a number between 0 and {ceiling:g}")
        values[name] = float(number)
    return LIVE_SHADOW_GATE_DEFAULTS | values


def _names_of(*known: str, empty: bool) -> Callable[[str], frozenset[str]]:
    """A parser of a comma-separated list of ``known`` names (any case); ``empty``: allowed."""
    by_key = {name.lower(): name for name in known}

    def parse(raw: str) -> frozenset[str]:
        given = [part.strip() for part in raw.split(",") if part.strip()]
        if unknown := sorted(name for name in given if name.lower() not in by_key):
            raise ValueError(f"unknown: {unknown}")
        if not given and not empty:
            raise ValueError("names none; unset the variable for the default")
        return frozenset(by_key[name.lower()] for name in given)

    parse.__doc__ = f"a comma-separated list of {', '.join(known)}{' (or empty)' * empty}"
    return parse


def _prices(raw: str) -> dict[str, dict[str, float]]:
    """a JSON object of US dollar prices per million tokens per served model, such as {"google/gemma-4-26B-A4B-it": {"prompt_per_1m": 0.1, "completion_per_1m": 0.4}}"""
    try:
        given = json.loads(raw)
    except (ValueError, RecursionError):
        raise ValueError("not JSON this program can read") from None
    if not isinstance(given, dict):
        raise ValueError("must be a JSON object keyed by served model")
    prices: dict[str, dict[str, float]] = {}
    for model, price in given.items():
        if not isinstance(price, dict) or set(price) != {"prompt_per_1m", "completion_per_1m"}:
            raise ValueError(f"{model!r} needs exactly prompt_per_1m and completion_per_1m")
        for key, value in price.items():
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 <= value <= 1e6
            ):
                raise ValueError(f"{model!r} {key} must be a number between 0 and 1e6")
        prices[str(model)] = {k: float(v) for k, v in price.items()}
    return prices


def _optional_str(raw: str) -> str | None:
    """a string (empty: unset)"""
    return _str(raw) if raw.strip() else None


IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF")
