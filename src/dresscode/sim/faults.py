"""Fault injection: which faults hit a request, and what they do to its answer.

Faults come from three places: the ``X-Sim-Fault`` request header (``503,prefix`` or
``503*2`` = only the first two attempts), the CLI fault rates (seeded), and the served
model's profile (prose before the JSON and friends). ``X-Sim-Fault-Times: N`` limits every
header fault to the first N requests carrying the same ``X-Request-Id``, so a client's
retries (which reuse the id) eventually succeed.
"""

from __future__ import annotations

import json
import random
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dresscode.sim.protocol import ApiError, bad_request, estimate_tokens


class Fault(StrEnum):
    SERVICE_UNAVAILABLE = "503"
    RATE_LIMITED = "429"
    INTERNAL_ERROR = "500"
    TIMEOUT = "timeout"
    PREFIX = "prefix"  # chatter before the JSON
    FENCE = "fence"  # ```json fences around it
    REPEAT = "repeat"  # the answer repeated until max_tokens
    MALFORMED = "malformed"  # JSON cut mid-way
    STRING_ARGS = "string_args"  # tool-call numbers as strings
    PAD = "pad"  # nothing but <pad> tokens
    UNCONSTRAINED = "unconstrained"  # guided decoding off: scripted items go out unchecked
    UNKNOWN_TOOL = "unknown_tool"  # tool calls name a tool the request did not offer
    BAD_TOOL_ARGS = "bad_tool_args"  # tool-call arguments cut mid-way (not JSON)


ERROR_FAULTS = {
    Fault.SERVICE_UNAVAILABLE: (
        503,
        "The server is temporarily overloaded (simulated fault). Please retry.",
    ),
    Fault.RATE_LIMITED: (429, "Too many requests (simulated fault). Please retry after a moment."),
    Fault.INTERNAL_ERROR: (500, "Internal server error (simulated fault)."),
}
PREFIX_TEXT = "Sure! Here is the JSON:\n"
UNKNOWN_TOOL_NAME = "get_horoscope"  # what an `unknown_tool` fault calls instead
# With no max_tokens, vLLM lets a looping answer run to the context limit (minutes of GPU
# time); the simulator caps runaway output here instead.
RUNAWAY_TOKENS = 1024


class AttemptCounter:
    """Counts requests per ``X-Request-Id`` (bounded, oldest ids forgotten first)."""

    def __init__(self, max_ids: int = 100_000) -> None:
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._max_ids = max_ids
        self._lock = threading.Lock()

    def next(self, request_id: str) -> int:
        """The 1-based attempt number of this request id."""
        with self._lock:
            n = self._seen.pop(request_id, 0) + 1
            self._seen[request_id] = n
            if len(self._seen) > self._max_ids:
                self._seen.popitem(last=False)
            return n

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()


def from_headers(headers: Mapping[str, str], attempts: AttemptCounter) -> set[Fault]:
    """Faults the request asks for, honouring ``*N`` and ``X-Sim-Fault-Times``."""
    raw = headers.get("x-sim-fault", "").strip()
    if not raw:
        return set()
    default_times = _int_header(headers, "x-sim-fault-times")
    request_id = headers.get("x-request-id")
    attempt = attempts.next(request_id) if request_id else None
    chosen: set[Fault] = set()
    for token in filter(None, (t.strip() for t in raw.split(","))):
        name, _, times = token.partition("*")
        try:
            fault = Fault(name.strip().lower())
        except ValueError:
            known = ", ".join(f.value for f in Fault)
            raise bad_request(
                f"Unknown X-Sim-Fault {name!r}; known: {known}.", "X-Sim-Fault"
            ) from None
        limit = int(times) if times.strip().isdigit() else default_times
        # Without a request id there is nothing to count, so the fault always applies.
        if limit is None or attempt is None or attempt <= limit:
            chosen.add(fault)
    return chosen


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    if not value.strip().isdigit():
        raise bad_request(f"{name} must be a non-negative integer.", name)
    return int(value)


def from_rates(
    rng: random.Random, rate_5xx: float, rate_429: float, rate_timeout: float
) -> set[Fault]:
    """Faults drawn from the CLI rates (one draw each, in a fixed order: reproducible)."""
    chosen: set[Fault] = set()
    if rng.random() < rate_5xx:
        chosen.add(rng.choice([Fault.SERVICE_UNAVAILABLE, Fault.INTERNAL_ERROR]))
    if rng.random() < rate_429:
        chosen.add(Fault.RATE_LIMITED)
    if rng.random() < rate_timeout:
        chosen.add(Fault.TIMEOUT)
    return chosen


def error_for(faults: set[Fault]) -> ApiError | None:
    """The error response an error fault demands (503 before 429 before 500), or None."""
    for fault, (status, message) in ERROR_FAULTS.items():
        if fault in faults:
            headers = {"Retry-After": "1"} if status in (429, 503) else {}
            return ApiError(status, message, headers=headers)
    return None


@dataclass(frozen=True)
class Output:
    """The text the model "generated", after faults and ``max_tokens``."""

    content: str | None
    tool_calls: list[dict[str, Any]]
    finish_reason: str
    completion_tokens: int


def render(
    content: str | None,
    tool_calls: list[dict[str, Any]],
    faults: set[Fault],
    max_tokens: int | None,
) -> Output:
    """Apply content faults, then cut at ``max_tokens`` (finish_reason ``length``)."""
    if Fault.STRING_ARGS in faults:
        tool_calls = [_stringify_call(call) for call in tool_calls]
    if Fault.UNKNOWN_TOOL in faults:
        tool_calls = [_with_function(call, name=UNKNOWN_TOOL_NAME) for call in tool_calls]
    if Fault.BAD_TOOL_ARGS in faults:
        tool_calls = [
            _with_function(call, arguments=call["function"]["arguments"][:-2] or "{")
            for call in tool_calls
        ]
    if tool_calls:
        text = "".join(c["function"]["name"] + c["function"]["arguments"] for c in tool_calls)
        return Output(content, tool_calls, "tool_calls", estimate_tokens(text))
    text = content or ""
    runaway = bool(faults & {Fault.REPEAT, Fault.PAD})
    limit = max_tokens if max_tokens is not None else (RUNAWAY_TOKENS if runaway else None)
    if Fault.MALFORMED in faults:
        text = text[: max(1, len(text) * 3 // 5)]
    if Fault.FENCE in faults:
        text = f"```json\n{text}\n```"
    if Fault.PREFIX in faults:
        text = PREFIX_TEXT + text
    if limit is not None and Fault.REPEAT in faults:
        text = (text + "\n") * (limit * 4 // (len(text) + 1) + 2)
    if limit is not None and Fault.PAD in faults:
        text = "<pad>" * (limit * 4 // 5 + 2)
    if limit is not None and estimate_tokens(text) > limit:
        return Output(text[: limit * 4], [], "length", limit)
    return Output(text, [], "stop", estimate_tokens(text))


def _with_function(call: dict[str, Any], **changes: str) -> dict[str, Any]:
    return {**call, "function": {**call["function"], **changes}}


def _stringify_call(call: dict[str, Any]) -> dict[str, Any]:
    try:
        args = json.loads(call["function"]["arguments"])
    except ValueError:
        return call
    function = {**call["function"], "arguments": json.dumps(_stringify(args))}
    return {**call, "function": function}


def _stringify(value: Any) -> Any:
    """Numbers become strings, recursively: Gemma's tool-call parser sometimes does this."""
    if isinstance(value, dict):
        return {k: _stringify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value
