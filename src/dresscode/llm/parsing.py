"""Parse, repair and validate structured model output — pure, no I/O.

Gemma 4 behind vLLM usually returns clean JSON, but it has known failure modes the pipelines
must survive: chatter before the JSON, JSON inside Markdown fences, the same JSON repeated
until ``max_tokens`` (``finish_reason: length``), ``<pad>`` tokens, empty content and numbers
returned as strings. :func:`parse_structured` tries strict JSON first, then a small, *counted*
set of repairs, then JSON-schema validation, and says exactly what happened in a
:class:`ParseOutcome` — so the inference log can show how often each repair was needed.

It never raises on bad model output; it raises only on programmer errors (wrong argument
types, an invalid JSON schema).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

__all__ = ["FailureClass", "ParseOutcome", "Repair", "parse_structured"]


class FailureClass(StrEnum):
    """What became of one structured answer. Stable, snake_case: logs and metrics use it.

    ``OK`` and ``REPAIRED`` are outcomes, not failures (``ParseOutcome.failure`` is ``None``
    for them; ``ParseOutcome.outcome`` returns them). A failure does not always mean "no
    value": a complete first value recovered from repeated output keeps its value but is
    still classed ``REPETITION`` — the model ran to ``max_tokens``, which costs time and money.
    """

    OK = "ok"
    REPAIRED = "repaired"
    NO_CONTENT = "no_content"  # empty or whitespace-only content
    PAD_OUTPUT = "pad_output"  # nothing but <pad> tokens
    REPETITION = "repetition"  # finish_reason length with a repeated pattern
    TRUNCATED = "truncated"  # finish_reason length otherwise
    INVALID_JSON = "invalid_json"  # no recoverable JSON value
    SCHEMA_VIOLATION = "schema_violation"  # valid JSON, wrong shape


class Repair(StrEnum):
    """One repair applied to the raw text, in the order they are tried."""

    PAD_TOKENS = "pad_tokens"
    CODE_FENCE = "code_fence"
    LEADING_TEXT = "leading_text"
    FIRST_OF_REPEATED = "first_of_repeated"
    TRAILING_TEXT = "trailing_text"
    STRING_SCALARS = "string_scalars"  # "3" -> 3 where the schema wants a number/boolean


@dataclass(frozen=True)
class ParseOutcome:
    """The result of parsing one answer.

    ``parse_ok`` means strict ``json.loads`` succeeded on the raw text; ``repaired`` means a
    value was only obtained (or only became schema-valid) through ``repairs``. ``errors`` holds
    a few human-readable reasons (parse error or schema errors with their JSON path).
    """

    value: Any  # None when no value was recovered
    parse_ok: bool
    repaired: bool
    repairs: tuple[str, ...]
    schema_ok: bool
    errors: tuple[str, ...]
    failure: FailureClass | None

    @property
    def usable(self) -> bool:
        """True when ``value`` can be used: a value was obtained and it matches the schema."""
        return self.value is not None and self.schema_ok

    @property
    def outcome(self) -> FailureClass:
        """One label for the whole outcome: the failure, else ``REPAIRED`` or ``OK``."""
        if self.failure is not None:
            return self.failure
        return FailureClass.REPAIRED if self.repaired else FailureClass.OK


# At most this many schema errors are reported; the first few are what a person reads.
MAX_ERRORS = 5
# Error messages can quote whole model outputs; keep each one short.
MAX_ERROR_CHARS = 200
# How many opening brackets in leading chatter are tried as the start of the JSON value.
MAX_START_CANDIDATES = 32
# A tail counts as a repetition loop when one block repeats this many times back to back ...
MIN_REPEATS = 3
# ... and the repeating tail is at least this long (so "}}}" at the end is not a loop).
MIN_REPEAT_SPAN = 24
# Longest block searched for; Gemma's loops repeat an item or a whole answer.
MAX_REPEAT_PERIOD = 4096

PAD_TOKEN = "<pad>"
_FENCE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\r?\n?(.*?)(?:```|\Z)", re.DOTALL)
_START_ANY = re.compile(r"[\[{]")
_START_OBJECT = re.compile(r"\{")
_START_ARRAY = re.compile(r"\[")
_SEPARATORS = " \t\r\n,;"
_DECODER = json.JSONDecoder()


def parse_structured(
    text: str | None, *, finish_reason: str | None, schema: dict | None
) -> ParseOutcome:
    """Parse one model answer: strict JSON, then counted repairs, then schema validation.

    ``finish_reason`` is the API's (``"stop"``, ``"length"``, ...); ``"length"`` turns an
    unparseable answer into ``TRUNCATED`` or ``REPETITION``. ``schema`` is a JSON schema
    (Draft 2020-12) or ``None`` to skip validation.
    """
    if text is not None and not isinstance(text, str):
        raise TypeError(f"text must be str or None, not {type(text).__name__}")
    if schema is not None and not isinstance(schema, dict):
        raise TypeError(f"schema must be a dict or None, not {type(schema).__name__}")
    validator = _validator(schema) if schema is not None else None
    hit_limit = finish_reason == "length"

    if text is None or not text.strip():
        return _failed(FailureClass.NO_CONTENT, (), "the answer is empty")

    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        pass
    else:
        # The text is exactly one JSON value: clean output, even if it hit the token limit.
        return _validated(value, validator, parse_ok=True, repairs=[], failure=None)

    repairs: list[str] = []
    cleaned = _strip_pad(text, repairs)
    if not cleaned.strip():
        return _failed(FailureClass.PAD_OUTPUT, tuple(repairs), "the answer is only <pad> tokens")
    cleaned = _strip_fence(cleaned, repairs)
    found = _first_value(cleaned, _start_pattern(schema), repairs)
    if isinstance(found, str):  # no value: found is the reason
        return _failed(_unparseable_class(cleaned, hit_limit), tuple(repairs), found)

    value, start, end = found
    _note_what_follows(cleaned[start:end], value, cleaned[end:], repairs)
    failure = _limit_class(cleaned, repairs) if hit_limit else None
    return _validated(value, validator, parse_ok=False, repairs=repairs, failure=failure)


# --- repairs -------------------------------------------------------------------------------


def _strip_pad(text: str, repairs: list[str]) -> str:
    """Drop ``<pad>`` tokens; they are never part of an answer."""
    if PAD_TOKEN not in text:
        return text
    repairs.append(Repair.PAD_TOKENS)
    cleaned = text.replace(PAD_TOKEN, "")
    # A run of pads cut at max_tokens can end in a partial token ("<pa").
    tail = cleaned.rstrip()
    for cut in range(len(PAD_TOKEN) - 1, 0, -1):
        if tail.endswith(PAD_TOKEN[:cut]):
            return tail[:-cut]
    return cleaned


def _strip_fence(text: str, repairs: list[str]) -> str:
    """Take the body of the first Markdown code fence (an unclosed fence runs to the end)."""
    match = _FENCE.search(text)
    if match is None:
        return text
    repairs.append(Repair.CODE_FENCE)
    return match.group(1)


def _first_value(text: str, start_at: re.Pattern, repairs: list[str]) -> tuple[Any, int, int] | str:
    """Decode the first complete JSON object/array: (value, start, end), or why there is none.

    Opening brackets are tried in order, but only while the previous candidate failed right
    at its opening bracket (``Note [1]: {...}``): once a candidate got past its first token, a
    later bracket would be *inside* it, and decoding that would return a fragment.
    """
    reason = "no JSON object or array found"  # until a candidate says more
    for n, match in enumerate(start_at.finditer(text)):
        if n >= MAX_START_CANDIDATES:
            break
        start = match.start()
        try:
            value, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError as err:
            reason = _decode_reason(err)
            if text[start + 1 : err.pos].strip():
                break  # got into the value, so this is the JSON and it is broken
            continue
        except RecursionError:
            reason = "JSON nested too deeply"
            break
        if text[:start].strip():
            repairs.append(Repair.LEADING_TEXT)
        return value, start, end
    return reason


def _start_pattern(schema: dict | None) -> re.Pattern:
    """Where a value may start, given the schema's root type.

    Our schemas always have an object root, which rules out ``[``: ``Note [1]: {...}`` must
    not decode as ``[1]``.
    """
    root = schema.get("type") if schema else None
    if root == "object":
        return _START_OBJECT
    if root == "array":
        return _START_ARRAY
    return _START_ANY


def _note_what_follows(first_json: str, value: Any, rest: str, repairs: list[str]) -> None:
    """Record what follows the first value: copies of it (a repetition loop) or other text.

    ``first_json`` is the first value's text. Copies are matched byte for byte, then by value
    (a copy may differ in whitespace); a copy cut off by ``max_tokens`` counts when it is a
    prefix of the first value's text.
    """
    copies = 0
    rest = rest.lstrip(_SEPARATORS)
    while rest:
        if rest.startswith(first_json):
            rest = rest[len(first_json) :]
        elif first_json.startswith(rest.rstrip()):
            rest = ""  # a copy truncated by the token limit
        else:
            try:
                again, end = _DECODER.raw_decode(rest)
            except json.JSONDecodeError:
                break
            if again != value:
                break
            rest = rest[end:]
        copies += 1
        rest = rest.lstrip(_SEPARATORS)
    if copies:
        repairs.append(Repair.FIRST_OF_REPEATED)
    if rest.strip():
        repairs.append(Repair.TRAILING_TEXT)


def _coerce_string_scalars(value: Any, validator: Draft202012Validator) -> bool:
    """Turn strings into the number/boolean the schema wants, in place; True if any changed.

    vLLM's Gemma 4 tool parser sometimes returns ``"7"`` for ``7``. Only type errors at a
    path whose string cleanly converts are touched; everything else stays a schema error.
    """
    changed = False
    for error in list(validator.iter_errors(value)):  # listed first: we mutate `value`
        if error.validator != "type" or not isinstance(error.instance, str) or not error.path:
            continue
        wanted = error.validator_value
        wanted = [wanted] if isinstance(wanted, str) else list(wanted)
        converted = _convert_scalar(error.instance, wanted)
        if converted is _NO_CONVERSION:
            continue
        *parents, key = error.path
        container = value
        for step in parents:
            container = container[step]
        container[key] = converted
        changed = True
    return changed


_NO_CONVERSION = object()


def _convert_scalar(raw: str, wanted: list[str]) -> Any:
    """The value ``raw`` spells in the first wanted scalar type it fits, else a sentinel."""
    text = raw.strip()
    for kind in wanted:
        if kind == "integer" and re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        if kind == "number" and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
            number = float(text)
            return int(number) if number.is_integer() and "." not in text else number
        if kind == "boolean" and text.lower() in ("true", "false"):
            return text.lower() == "true"
    return _NO_CONVERSION


# --- classification ------------------------------------------------------------------------


def _unparseable_class(text: str, hit_limit: bool) -> FailureClass:
    """No value could be recovered: why?"""
    if not hit_limit:
        return FailureClass.INVALID_JSON
    return FailureClass.REPETITION if _looks_repetitive(text) else FailureClass.TRUNCATED


def _limit_class(text: str, repairs: list[str]) -> FailureClass | None:
    """A value was recovered but the model ran into max_tokens: repetition or runaway text.

    ``None`` when nothing followed the value (it simply ended exactly at the limit).
    """
    if Repair.FIRST_OF_REPEATED in repairs or _looks_repetitive(text):
        return FailureClass.REPETITION
    if Repair.TRAILING_TEXT in repairs:
        return FailureClass.TRUNCATED
    return None


def _looks_repetitive(text: str) -> bool:
    """True when the text ends in one block repeated ``MIN_REPEATS`` times (a decoding loop).

    Periodicity survives truncation at any point, so the tail is checked for a period ``p``:
    the last ``MIN_REPEATS * p`` characters equal themselves shifted by ``p``.
    """
    tail = text  # not stripped: a loop of whitespace is a loop too
    n = len(tail)
    if n < MIN_REPEAT_SPAN:
        return False
    last = tail[-1]
    for period in range(1, min(MAX_REPEAT_PERIOD, n // MIN_REPEATS) + 1):
        if tail[n - 1 - period] != last:
            continue  # cheap filter before the slice comparison
        span = max(period * MIN_REPEATS, MIN_REPEAT_SPAN)
        if span > n:
            break
        window = tail[n - span :]
        if window[period:] == window[:-period]:
            return True
    return False


# --- results -------------------------------------------------------------------------------


def _validated(
    value: Any,
    validator: Draft202012Validator | None,
    *,
    parse_ok: bool,
    repairs: list[str],
    failure: FailureClass | None,
) -> ParseOutcome:
    """Validate a recovered value against the schema and build the outcome."""
    errors: tuple[str, ...] = ()
    schema_ok = True
    if validator is not None and not validator.is_valid(value):
        if _coerce_string_scalars(value, validator):
            repairs.append(Repair.STRING_SCALARS)
        errors = _schema_errors(value, validator)
        schema_ok = not errors
    if not schema_ok and failure is None:
        failure = FailureClass.SCHEMA_VIOLATION
    return ParseOutcome(
        value=value,
        parse_ok=parse_ok,
        repaired=bool(repairs),
        repairs=tuple(repairs),
        schema_ok=schema_ok,
        errors=errors,
        failure=failure,
    )


def _failed(failure: FailureClass, repairs: tuple[str, ...], reason: str) -> ParseOutcome:
    """An outcome without a value."""
    return ParseOutcome(
        value=None,
        parse_ok=False,
        repaired=False,
        repairs=repairs,
        schema_ok=False,
        errors=(reason,),
        failure=failure,
    )


def _schema_errors(value: Any, validator: Draft202012Validator) -> tuple[str, ...]:
    """The first few schema errors, in document order, as ``$.path: message``."""
    found = sorted(validator.iter_errors(value), key=_error_sort_key)
    return tuple(_short(f"{error.json_path}: {error.message}") for error in found[:MAX_ERRORS])


def _error_sort_key(error: ValidationError) -> tuple[str, ...]:
    return tuple(f"{step:08d}" if isinstance(step, int) else step for step in error.path)


def _decode_reason(err: json.JSONDecodeError) -> str:
    return _short(f"invalid JSON at char {err.pos}: {err.msg}")


def _short(message: str) -> str:
    return message if len(message) <= MAX_ERROR_CHARS else message[: MAX_ERROR_CHARS - 1] + "…"


# --- validators ----------------------------------------------------------------------------


def _strict_pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Any:
    """JSON Schema's ``pattern``, with ``$`` meaning the end of the string.

    The keyword is a regex *search* in Python, where ``$`` also matches before a final newline:
    ``^#[0-9a-f]{6}$`` accepts ``"#a1b2c3\n"``, and a user id pattern accepts ``"rt-nl\n"``. The
    blueprints' schemas also go to vLLM's guided decoding, so they keep the portable ``$``; the
    check here reads it strictly.
    """
    if not isinstance(instance, str):
        return
    strict = (
        pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith("\\$") else pattern
    )
    if re.search(strict, instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


StrictValidator = validators.extend(Draft202012Validator, {"pattern": _strict_pattern})
"""Draft 2020-12 with ``$`` in patterns meaning the end of the string: every validator of
untrusted JSON (model answers, feedback events, golden labels) is one of these."""


def _validator(schema: dict) -> Draft202012Validator:
    """A compiled validator, cached by the schema's canonical JSON (so equal schemas share)."""
    try:
        key = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise TypeError(f"schema is not JSON-serialisable: {err}") from None
    return _compiled(key)


@lru_cache(maxsize=64)
def _compiled(canonical_schema: str) -> Draft202012Validator:
    schema = json.loads(canonical_schema)
    Draft202012Validator.check_schema(schema)  # a bad schema is a programmer error: raise
    return StrictValidator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
