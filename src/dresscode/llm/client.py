"""Async client for the OpenAI-compatible model endpoint (vLLM serving Gemma 4, or the simulator).

One :class:`LLMClient` per task and event loop. It keeps the endpoint saturated without
drowning it (a semaphore bounds the calls in flight and the HTTP pool is sized to match),
retries only what is worth retrying (429, 5xx, connection errors, timeouts — never other 4xx)
with exponential backoff, full jitter and ``Retry-After``, and streams with ``include_usage``
so every call reports its time to first token, latency and token counts (a call nobody watches
arrive, the live shadow's, may ask for its answer in one response instead).

API and network failures never raise: :meth:`LLMClient.chat` returns a :class:`ChatResult`
with ``error_class`` set, so one bad call never fails a batch. Stages go through
:func:`dresscode.llm.ask.ask`, which renders the request, calls, parses and builds the
``inference_log`` row (:mod:`dresscode.llm.inference_log`) in one trip. Prompt text, image
bytes and the API key are never logged.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import random
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, cast

import openai

from dresscode.core.http import retry_after_seconds
from dresscode.llm.assembly import Assembly

# Request shaping and the log row live next door; their old home keeps them importable.

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ChatResult",
    "ContentSink",
    "ErrorClass",
    "LLMClient",
]

log = logging.getLogger(__name__)


class ErrorClass:
    """Stable names for why a call failed (the inference log's ``error_class``).

    Plain ``str`` constants, not an Enum, so results and log rows hold ordinary strings.
    """

    RATE_LIMITED = "rate_limited"  # 429
    SERVER_ERROR = "server_error"  # 5xx
    TIMEOUT = "timeout"  # no answer within timeout_s
    CONNECTION = "connection"  # refused, reset, dropped mid-stream
    STREAM_ERROR = "stream_error"  # the server sent an error event inside a 200 stream
    BAD_REQUEST = "bad_request"  # 400, 422: our request is wrong; retrying cannot help
    AUTH = "auth"  # 401, 403
    NOT_FOUND = "not_found"  # 404: wrong base URL or model name
    CLIENT_ERROR = "client_error"  # any other 4xx


ContentSink = Callable[[str, int], None]
"""``(text delta, attempt)``: told each piece of the answer's text as it streams in (the
online stylist relays it to the user); a new ``attempt`` means a retry started over."""

# Only these are transient; everything else would fail the same way again.
RETRYABLE = frozenset(
    {
        ErrorClass.RATE_LIMITED,
        ErrorClass.SERVER_ERROR,
        ErrorClass.TIMEOUT,
        ErrorClass.CONNECTION,
        ErrorClass.STREAM_ERROR,
    }
)

# Error messages may quote the request (vLLM's 400s echo pydantic input): keep them short
# and never let an inline image through.
MAX_MESSAGE_CHARS = 300
_DATA_URL = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+")


@dataclass(frozen=True)
class ChatResult:
    """One chat call: the answer (or why there is none) and how it went.

    ``ttft_ms`` is the time to the first content or tool-call delta and ``latency_ms`` the
    time to the end of the stream (or to the failure), both for the last attempt.
    ``http_status`` is 200 on success, else the last status seen (0 for connection errors
    and timeouts).
    ``tool_calls`` items are ``{"id", "name", "arguments"}`` with the raw argument string.
    """

    request_id: str
    model: str
    content: str | None
    tool_calls: list[dict] = field(default_factory=list)
    finish_reason: str | None = None
    ttft_ms: float | None = None
    latency_ms: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    http_status: int = 200
    error_class: str | None = None
    error_message: str | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        """True when the call returned an answer (which may still fail to parse)."""
        return self.error_class is None


@dataclass
class _Failure:
    """One failed attempt, classified."""

    error_class: str
    http_status: int
    message: str
    retry_after_s: float | None = None
    latency_ms: float = 0.0


class LLMClient:
    """Bounded-concurrency, retrying, streaming chat client over ``openai.AsyncOpenAI``.

    Create and use it inside one event loop (an Airflow task's ``asyncio.run``); close it
    with :meth:`aclose` or ``async with``. ``timeout_s`` bounds each attempt from start to
    the end of the stream; ``retry_budget_s`` bounds the whole call including backoff.
    ``transport`` picks the HTTP stack when no ``http_client`` is given: ``auto`` uses the
    SDK's aiohttp transport if aiohttp is installed (cheaper per call), else httpx.
    ``priority`` goes out as vLLM's request ``priority`` (lower is served first; 0, the
    default, is not sent): an endpoint without ``--scheduling-policy priority`` refuses it,
    and the client then says so once and sends this client's calls without it.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str = "EMPTY",
        model: str,
        max_concurrency: int = 16,
        timeout_s: float = 60.0,
        max_attempts: int = 5,
        retry_budget_s: float = 120.0,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        extra_headers: dict | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: Literal["auto", "aiohttp", "httpx"] = "auto",
        priority: int = 0,
    ) -> None:
        if max_concurrency < 1 or max_attempts < 1:
            raise ValueError("max_concurrency and max_attempts must be >= 1")
        if min(timeout_s, retry_budget_s) <= 0 or min(backoff_base_s, backoff_max_s) < 0:
            raise ValueError("timeouts must be > 0 and backoff times >= 0")
        self.model = model
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.retry_budget_s = retry_budget_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.priority = priority
        self._owns_http = http_client is None
        self._openai = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key,
            max_retries=0,  # we retry ourselves: our rules, our logs, our attempt count
            timeout=_sdk_timeout(timeout_s),
            default_headers=extra_headers,
            # The SDK annotates its vendored httpx2 client; an httpx.AsyncClient is what it runs.
            http_client=http_client or _pooled_http_client(max_concurrency, timeout_s, transport),  # type: ignore[arg-type]
        )
        self._slots = asyncio.Semaphore(max_concurrency)
        self._random = random.Random()
        self._in_flight = 0
        self._max_in_flight_seen = 0

    @property
    def in_flight(self) -> int:
        """HTTP attempts running right now."""
        return self._in_flight

    @property
    def max_in_flight_seen(self) -> int:
        """The most HTTP attempts that ran at once (never above ``max_concurrency``)."""
        return self._max_in_flight_seen

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP pool (unless it was passed in; its owner closes it)."""
        if self._owns_http:
            await self._openai.close()

    async def chat(
        self,
        messages: list[dict],
        *,
        response_format: dict | None = None,
        tools: list[dict] | None = None,
        tool_choice: Any = None,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        headers: dict | None = None,
        request_id: str | None = None,
        model: str | None = None,
        on_content: ContentSink | None = None,
        stream: bool = True,
    ) -> ChatResult:
        """One chat completion, retried as needed. Never raises for API or network failures.

        ``model`` overrides the client's default served model for this call (a blueprint
        names the model it was evaluated with). ``request_id`` (a fresh uuid4 hex by default) goes out as ``X-Request-Id`` on every
        attempt, so the server's logs tie the retries of one call together.
        ``on_content`` is told each text delta as it arrives (see :data:`ContentSink`).
        ``stream=False`` asks for the whole answer in one response, for calls nobody watches
        arrive (the live shadow's): one JSON parse instead of one SSE event per token, and no
        ``ttft_ms``.
        """
        if on_content is not None and not stream:
            raise ValueError("on_content hears a streamed answer: it needs stream=True")
        request_id = request_id or uuid.uuid4().hex
        body = self._request_body(
            messages, response_format, tools, tool_choice, temperature, max_tokens, stream
        )
        if model:
            body["model"] = model
        headers = {**(headers or {}), "X-Request-Id": request_id}
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            outcome = await self._attempt(body, headers, request_id, attempt, on_content)
            if isinstance(outcome, ChatResult):
                return outcome
            if "priority" in body and _priority_refused(outcome):
                self._drop_priority(body)
                attempt -= 1  # the endpoint's setup, not this call's failure
                continue
            delay = self._retry_delay(outcome, attempt, time.perf_counter() - started)
            if delay is None:
                # Class and status only: vLLM's error messages can echo parts of the prompt.
                log.warning(
                    "llm request %s failed after %d attempt(s): %s (HTTP %s)",
                    request_id,
                    attempt,
                    outcome.error_class,
                    outcome.http_status or "-",
                )
                return self._failed_result(request_id, outcome, attempt, body["model"])
            log.warning(
                "llm request %s attempt %d/%d failed: %s (HTTP %s) — retrying in %.2fs",
                request_id,
                attempt,
                self.max_attempts,
                outcome.error_class,
                outcome.http_status or "-",
                delay,
            )
            await asyncio.sleep(delay)

    # --- one attempt -----------------------------------------------------------------------

    def _request_body(
        self,
        messages: list[dict],
        response_format: dict | None,
        tools: list[dict] | None,
        tool_choice: Any,
        temperature: float,
        max_tokens: int,
        stream: bool,
    ) -> dict[str, Any]:
        """The JSON body shared by every attempt of one call."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if response_format is not None:
            body["response_format"] = response_format
        if tools:
            body["tools"] = tools
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
        if self.priority:
            body["priority"] = self.priority
        return body

    def _drop_priority(self, body: dict[str, Any]) -> None:
        if self.priority:
            log.warning(
                "the model endpoint does not schedule by priority (vLLM without "
                "--scheduling-policy priority): these calls go out at the default priority, "
                "beside production traffic; set DRESSCODE_EVAL_PRIORITY=0 to stop this warning"
            )
            self.priority = 0
        body.pop("priority", None)

    async def _attempt(
        self,
        body: dict[str, Any],
        headers: dict[str, str],
        request_id: str,
        attempt: int,
        on_content: ContentSink | None = None,
    ) -> ChatResult | _Failure:
        """Send one attempt in a concurrency slot; a result, or the classified failure."""
        async with self._slots:
            self._in_flight += 1
            self._max_in_flight_seen = max(self._max_in_flight_seen, self._in_flight)
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(self.timeout_s):
                    if not body["stream"]:
                        return await self._complete(body, headers, request_id, attempt)
                    return await self._stream(body, headers, request_id, attempt, on_content)
            except (openai.APIError, TimeoutError, ValueError) as err:
                failure = _classify(err)
                failure.latency_ms = (time.perf_counter() - t0) * 1000.0
                return failure
            finally:
                self._in_flight -= 1

    async def _stream(
        self,
        body: dict[str, Any],
        headers: dict[str, str],
        request_id: str,
        attempt: int,
        on_content: ContentSink | None = None,
    ) -> ChatResult:
        """Stream one completion and assemble content, tool calls, usage and timings.

        This goes through the SDK's generic ``post`` with raw dict chunks rather than the
        typed ``chat.completions.create``: the typed path re-walks the whole body (image and
        schema included) through its TypedDict transform and builds a pydantic object per
        chunk, which cost more CPU than everything else in the client (see
        docs/benchmarks.md). Auth, base URL, SSE decoding, timeouts and the error classes
        stay the SDK's.
        """
        answer = Assembly()
        t0 = time.perf_counter()
        stream = await self._openai.post(
            "/chat/completions",
            cast_to=object,
            body=body,
            options={"headers": headers},
            stream=True,
            stream_cls=openai.AsyncStream[object],
        )
        async with stream:
            async for chunk in stream:
                pieces = len(answer.content)
                if answer.add(cast("dict[str, Any]", chunk)) and answer.ttft_ms is None:
                    answer.ttft_ms = (time.perf_counter() - t0) * 1000.0
                if on_content is not None and len(answer.content) > pieces:
                    on_content(answer.content[-1], attempt)
        return _result(answer, body, request_id, attempt, t0)

    async def _complete(
        self, body: dict[str, Any], headers: dict[str, str], request_id: str, attempt: int
    ) -> ChatResult:
        """One completion in one response (``stream: false``), a plain dict like the streamed
        chunks (see :meth:`_stream`)."""
        t0 = time.perf_counter()
        completion = await self._openai.post(
            "/chat/completions", cast_to=object, body=body, options={"headers": headers}
        )
        return _result(Assembly.of_completion(completion), body, request_id, attempt, t0)

    # --- retries ---------------------------------------------------------------------------

    def _retry_delay(self, failure: _Failure, attempt: int, elapsed_s: float) -> float | None:
        """Seconds to wait before the next attempt, or None to give up.

        Full jitter (uniform in [0, base * 2^(n-1)], capped) spreads a burst of retries out;
        a server's ``Retry-After`` is a floor with the jitter on top (clients told "1 s" must not
        all come back in the same millisecond), still capped by ``backoff_max_s``.
        """
        if failure.error_class not in RETRYABLE or attempt >= self.max_attempts:
            return None
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        delay = self._random.uniform(0.0, ceiling)
        if failure.retry_after_s is not None:
            delay = min(self.backoff_max_s, failure.retry_after_s + delay)
        if elapsed_s + delay >= self.retry_budget_s:
            return None
        return delay

    def _failed_result(
        self, request_id: str, failure: _Failure, attempts: int, model: str
    ) -> ChatResult:
        return ChatResult(
            request_id=request_id,
            model=model,
            content=None,
            latency_ms=failure.latency_ms,
            http_status=failure.http_status,
            error_class=failure.error_class,
            error_message=failure.message,
            attempts=attempts,
        )


def _result(
    answer: Assembly, body: dict[str, Any], request_id: str, attempt: int, t0: float
) -> ChatResult:
    return ChatResult(
        request_id=request_id,
        model=answer.model or body["model"],
        content="".join(answer.content) if answer.content else None,
        tool_calls=answer.tool_call_list(),
        finish_reason=answer.finish_reason,
        ttft_ms=answer.ttft_ms,
        latency_ms=(time.perf_counter() - t0) * 1000.0,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        http_status=200,
        attempts=attempt,
    )


def _priority_refused(failure: _Failure) -> bool:
    """vLLM's answer to a ``priority`` under the fcfs policy (a 400)."""
    return failure.http_status == 400 and "Priority scheduling is not enabled" in failure.message


def _classify(err: Exception) -> _Failure:
    """Map an SDK/transport exception to an error class, status and safe message."""
    if isinstance(err, openai.APIStatusError):
        status = err.status_code
        return _Failure(
            _status_class(status),
            status,
            _safe_message(_api_message(err)),
            retry_after_seconds(err.response.headers.get("retry-after")),
        )
    if isinstance(err, TimeoutError | openai.APITimeoutError) and not _connection_failed(err):
        return _Failure(ErrorClass.TIMEOUT, 0, "no complete answer within the timeout")
    if isinstance(err, openai.APIConnectionError):
        return _Failure(ErrorClass.CONNECTION, 0, _safe_message(_cause_message(err)))
    if isinstance(err, openai.APIError):  # an error event inside a 200 stream
        return _Failure(ErrorClass.STREAM_ERROR, 200, _safe_message(err.message))
    # ValueError: a stream chunk that is not JSON. The server is misbehaving; retry it.
    return _Failure(ErrorClass.STREAM_ERROR, 200, _safe_message(f"unreadable stream: {err}"))


def _connection_failed(err: BaseException) -> bool:
    """True when a "timeout" was really a refused or dropped connection.

    The SDK's aiohttp transport maps every ``aiohttp.ClientConnectionError`` to a connect
    *timeout*; the cause chain still says what happened, and on-call needs the difference
    ("endpoint down" vs "endpoint slow").
    """
    aiohttp = sys.modules.get("aiohttp")
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ConnectionError):
            return True
        if (
            aiohttp is not None
            and isinstance(cause, aiohttp.ClientConnectionError)
            and not isinstance(cause, TimeoutError)
        ):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _status_class(status: int) -> str:
    if status == 429:
        return ErrorClass.RATE_LIMITED
    if status >= 500:
        return ErrorClass.SERVER_ERROR
    if status in (401, 403):
        return ErrorClass.AUTH
    if status == 404:
        return ErrorClass.NOT_FOUND
    if status in (400, 422):
        return ErrorClass.BAD_REQUEST
    return ErrorClass.CLIENT_ERROR


def _api_message(err: openai.APIStatusError) -> str:
    """The ``error.message`` of vLLM's envelope when there is one, else the SDK's message."""
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
    return err.message


def _cause_message(err: openai.APIConnectionError) -> str:
    cause = err.__cause__
    return f"{err.message}: {type(cause).__name__}: {cause}" if cause else err.message


def _safe_message(message: str) -> str:
    message = _DATA_URL.sub("data:…", message)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return message


def _sdk_timeout(timeout_s: float) -> Any:
    """The SDK's own Timeout type (httpx or httpx2, depending on the SDK version)."""
    return type(openai.DEFAULT_TIMEOUT)(timeout_s, connect=min(timeout_s, 10.0))


def _pooled_http_client(max_concurrency: int, timeout_s: float, transport: str) -> Any:
    """The SDK's HTTP client with a pool that holds a connection for every slot.

    ``auto`` picks the SDK's aiohttp transport (``openai.DefaultAioHttpClient``) when aiohttp
    is installed — it needs about 40 % less CPU per call than the httpx2 pool, which is what
    decides whether one task can keep 64 GPU slots busy (docs/benchmarks.md) — else the
    SDK's default httpx2 client. Keep-alive must cover ``max_concurrency`` or a saturated
    client would reconnect on every call. ``type(DEFAULT_CONNECTION_LIMITS)`` is the Limits
    class of whichever httpx the SDK is built on, so this survives SDK upgrades.
    """
    limits = type(openai.DEFAULT_CONNECTION_LIMITS)(
        max_connections=max(max_concurrency, 16) * 2,
        max_keepalive_connections=max(max_concurrency, 16),
    )
    options = {"limits": limits, "timeout": _sdk_timeout(timeout_s)}
    if transport in ("auto", "aiohttp") and _has_aiohttp():
        return openai.DefaultAioHttpClient(**options)
    if transport == "aiohttp":
        raise RuntimeError("transport 'aiohttp' needs aiohttp: install openai[aiohttp]")
    if transport not in ("auto", "httpx"):
        raise ValueError(f"transport must be 'auto', 'aiohttp' or 'httpx', not {transport!r}")
    return openai.DefaultAsyncHttpxClient(**options)


def _has_aiohttp() -> bool:
    return importlib.util.find_spec("aiohttp") is not None
