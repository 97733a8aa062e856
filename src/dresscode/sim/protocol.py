"""The OpenAI-compatible wire format as vLLM speaks it: request checks, errors, responses.

Requests are checked by hand rather than by pydantic models so every rejection carries
vLLM's error envelope and a sentence naming the offending field, and so the hot path stays
cheap (160 requests/s with photos on one core).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from dresscode.sim import vision
from dresscode.sim.config import ServedModel, SimConfig

IMAGE_TOKENS = 280  # Gemma 4's default per-image token budget
MESSAGE_OVERHEAD_TOKENS = 4  # role markers of the chat template
ROLES = ("system", "developer", "user", "assistant", "tool")
_DATA_URL = re.compile(r"data:(?P<mime>[\w.+/-]*)(?:;[^,;]*)*?;base64,", re.ASCII)
_ERROR_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "NotFoundError",
    429: "RateLimitError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}


class ApiError(Exception):
    """A request that ends in an error response, in vLLM's envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.headers = headers or {}

    def envelope(self) -> dict[str, Any]:
        kind = (
            _ERROR_TYPES.get(self.status)
            or HTTPStatus(self.status).phrase.replace(" ", "") + "Error"
        )
        return {
            "error": {
                "message": self.message,
                "type": kind,
                "param": self.param,
                "code": self.status,
            }
        }


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)


@dataclass(frozen=True)
class Photo:
    """One image of the request: the sha256 of its bytes as sent, and what it shows."""

    sha256: str
    facts: vision.PhotoFacts


@dataclass
class ChatRequest:
    """A checked ``/v1/chat/completions`` request, reduced to what the simulator uses."""

    model: ServedModel
    messages: list[dict[str, Any]]
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    schema: dict[str, Any] | None = None  # the JSON schema the answer must follow
    json_mode: bool = False  # JSON requested (with or without a schema)
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: str | dict[str, Any] = "none"
    photos: list[Photo] = field(default_factory=list)
    prompt_text: str = ""  # system + user text, in order
    tool_results: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    priority: int = 0  # vLLM's request priority: lower is served first (priority policy only)

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]


def estimate_tokens(text: str) -> int:
    """About four characters per token, at least one."""
    return max(1, len(text) // 4)


def parse_chat_request(body: bytes, config: SimConfig) -> ChatRequest:
    """Check a raw request body; raises ApiError (400/404) with vLLM's wording."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.")

    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' is required and must be a non-empty list.", "messages")
    name = data.get("model")
    if name is None:
        model = config.served_models[0]  # vLLM, like here, defaults to the first served name
    elif not isinstance(name, str):
        raise bad_request("'model' must be a string.", "model")
    elif (found := config.model(name)) is None:
        raise ApiError(404, f"The model `{name}` does not exist.", param="model")
    else:
        model = found
    texts, tool_results, photos, n_chars = _read_messages(messages)

    request = ChatRequest(model=model, messages=messages, photos=photos, tool_results=tool_results)
    request.prompt_text = "\n".join(texts)
    request.stream = _typed(data, "stream", bool, False)
    options = _typed(data, "stream_options", dict, None) or {}
    request.include_usage = bool(options.get("include_usage", False))
    request.max_tokens = _max_tokens(data)
    temperature = _typed(data, "temperature", (int, float), None)
    if temperature is not None and temperature < 0:
        raise bad_request("'temperature' must be >= 0.", "temperature")
    if _typed(data, "n", int, 1) != 1:
        raise bad_request("The simulator supports only n=1.", "n")
    request.priority = _typed(data, "priority", int, 0)
    if request.priority != 0 and config.scheduling_policy != "priority":
        raise bad_request(
            f"Got priority {request.priority} but Priority scheduling is not enabled.", "priority"
        )
    request.schema, request.json_mode = _response_schema(data)
    request.tools, request.tool_choice = _tools(data)

    request.prompt_tokens = (
        n_chars // 4
        + IMAGE_TOKENS * len(photos)
        + MESSAGE_OVERHEAD_TOKENS * len(messages)
        + (len(json.dumps(request.tools)) // 4 if request.tools else 0)
    )
    _check_context(request.prompt_tokens, request.max_tokens, config.max_model_len)
    return request


def _typed(data: dict, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise bad_request(f"'{key}' must be of type {names}.", key)
    return value


def _max_tokens(data: dict) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = _typed(data, key, int, None)
        if value is not None:
            if value < 1:
                raise bad_request(f"'{key}' must be at least 1, got {value}.", key)
            return value
    return None


def _read_messages(messages: list[Any]) -> tuple[list[str], list[str], list[Photo], int]:
    """Prompt texts (system/user), tool results, photos and the total character count."""
    texts: list[str] = []
    tool_results: list[str] = []
    photos: list[Photo] = []
    n_chars = 0
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad_request(f"{where} must be an object.", where)
        role = message.get("role")
        if role not in ROLES:
            raise bad_request(
                f"{where}.role must be one of {', '.join(ROLES)}; got {role!r}.", f"{where}.role"
            )
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise bad_request(
                f"{where}: a tool message needs 'tool_call_id'.", f"{where}.tool_call_id"
            )
        content = message.get("content")
        parts: list[str] = []
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                parts.extend(_read_part(part, f"{where}.content[{j}]", photos))
        elif content is not None or role not in ("assistant",):
            raise bad_request(
                f"{where}.content must be a string or a list of content parts.", f"{where}.content"
            )
        text = "\n".join(parts)
        calls = message.get("tool_calls")
        n_chars += len(text) + (len(json.dumps(calls)) if calls else 0)
        if role == "tool":
            tool_results.append(text)
        elif role != "assistant":
            texts.append(text)
    return texts, tool_results, photos, n_chars


def _read_part(part: Any, where: str, photos: list[Photo]) -> list[str]:
    if not isinstance(part, dict):
        raise bad_request(f"{where} must be an object.", where)
    kind = part.get("type")
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise bad_request(f"{where}.text must be a string.", f"{where}.text")
        return [part["text"]]
    if kind == "image_url":
        ref = part.get("image_url")
        url = ref.get("url") if isinstance(ref, dict) else ref
        if not isinstance(url, str):
            raise bad_request(f"{where}.image_url.url must be a string.", f"{where}.image_url")
        photos.append(_decode_image(url, f"{where}.image_url"))
        return []
    raise bad_request(
        f"{where}.type {kind!r} is not supported (use 'text' or 'image_url').", f"{where}.type"
    )


def _decode_image(url: str, where: str) -> Photo:
    match = _DATA_URL.match(url)
    if not match:
        raise bad_request(
            "The simulator accepts images only as data:image/...;base64 URLs (it does not fetch).",
            where,
        )
    try:
        raw = base64.b64decode(url[match.end() :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_request(f"Invalid base64 image data: {exc}", where) from None
    sha = vision.sha256_hex(raw)
    try:
        facts = vision.analyze(raw, sha)
    except vision.BadImage as exc:
        raise bad_request(f"Failed to load image: {exc}", where) from None
    return Photo(sha, facts)


def _response_schema(data: dict) -> tuple[dict | None, bool]:
    """The JSON schema of the answer, from ``response_format`` or vLLM's own fields."""
    fmt = _typed(data, "response_format", dict, None)
    if fmt is not None:
        kind = fmt.get("type")
        if kind == "json_schema":
            spec = fmt.get("json_schema")
            schema = spec.get("schema", spec.get("schema_")) if isinstance(spec, dict) else None
            if not isinstance(schema, dict):
                raise bad_request(
                    "response_format.json_schema.schema must be an object.", "response_format"
                )
            return schema, True
        if kind == "json_object":
            return None, True
        if kind != "text":
            raise bad_request(f"response_format.type {kind!r} is not supported.", "response_format")
    structured = _typed(data, "structured_outputs", dict, None)
    guided = structured.get("json") if structured else data.get("guided_json")
    if guided is not None:
        if isinstance(guided, str):
            try:
                guided = json.loads(guided)
            except ValueError:
                raise bad_request(
                    "The JSON schema for structured output is not valid JSON.", "structured_outputs"
                ) from None
        if not isinstance(guided, dict):
            raise bad_request(
                "The JSON schema for structured output must be an object.", "structured_outputs"
            )
        return guided, True
    return None, False


def _tools(data: dict) -> tuple[list[dict], str | dict]:
    tools = _typed(data, "tools", list, [])
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise bad_request(
                f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ...}}}}.",
                f"tools[{i}]",
            )
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise bad_request(f"tools[{i}].function.parameters must be an object.", f"tools[{i}]")
    choice = data.get("tool_choice")
    if choice is None:
        return tools, "auto" if tools else "none"
    if choice in ("none", "auto", "required"):
        if choice != "none" and not tools:
            raise bad_request(f"tool_choice {choice!r} needs 'tools'.", "tool_choice")
        return tools, choice
    name = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    if not isinstance(name, str):
        raise bad_request(
            "tool_choice must be 'none', 'auto', 'required' or a named function.", "tool_choice"
        )
    if name not in [t["function"]["name"] for t in tools]:
        raise bad_request(f"tool_choice names {name!r}, which is not in 'tools'.", "tool_choice")
    return tools, choice


def _check_context(prompt_tokens: int, max_tokens: int | None, max_model_len: int) -> None:
    if prompt_tokens >= max_model_len:
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, your request has "
            f"{prompt_tokens} input tokens. Please reduce the length of the input messages.",
            "messages",
        )
    if max_tokens is not None and prompt_tokens + max_tokens > max_model_len:
        raise bad_request(
            f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This model's maximum "
            f"context length is {max_model_len} tokens and your request has {prompt_tokens} input "
            f"tokens ({max_tokens} > {max_model_len} - {prompt_tokens}).",
            "max_tokens",
        )


# -- responses -------------------------------------------------------------------------------


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def tool_call_id() -> str:
    return f"chatcmpl-tool-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": None,
    }


def completion(
    cid: str,
    model: str,
    *,
    content: str | None,
    tool_calls: list[dict],
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    """A non-streaming ``chat.completion`` body."""
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": content,
                    "reasoning_content": None,
                    "tool_calls": tool_calls,
                },
                "logprobs": None,
                "finish_reason": finish_reason,
                "stop_reason": None,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
        "prompt_logprobs": None,
    }


def chunk(
    cid: str, model: str, created: int, delta: dict, finish_reason: str | None = None
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` with a single choice."""
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def usage_chunk(
    cid: str, model: str, created: int, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    """The last chunk when ``stream_options.include_usage`` is set: no choices, only usage."""
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()
