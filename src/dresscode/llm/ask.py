"""One trip to the model: render the blueprint, call, parse and validate, record.

A stage asks the model layer once per answer. :func:`ask` takes a
:class:`~dresscode.llm.blueprints.Blueprint` and either the template values of a first turn
(plus an optional photo) or the conversation so far, sends one chat call through the
:class:`~dresscode.llm.client.LLMClient` (the blueprint's model, sampling settings, tools and,
when ``constrained``, its output schema as ``response_format``), parses the answer with
:func:`~dresscode.llm.parsing.parse_structured` (strict JSON, counted repairs, schema
validation) and returns an :class:`Answer` holding the :class:`~dresscode.llm.client.ChatResult`,
the :class:`~dresscode.llm.parsing.ParseOutcome` and the finished ``inference_log`` row.

What only the stage knows — which items survive its own checks, how many ids it dropped as
hallucinated, whether the tool calls were well formed — it says in a *judge*: a function of
the call's result and parse outcome, run inside :func:`ask` before the row is built, that
returns a :class:`Judgement` (the stage's own value plus the row fields it fills). So the row
is complete when :func:`ask` returns, and a stage never steps through the model layer's
pieces itself. A multi-turn loop (the stylist's tool round) asks once per model turn and
extends :attr:`Answer.messages`.

Decisions:

- The answer is parsed only when the call succeeded and was not a round of tool calls (a
  tool-call turn has no content to parse; its row has ``parse_ok`` None).
- The judge is asked only about answers: when the call failed there is nothing to judge and
  the row says why (``error_class``). It may be async (the stylist looks up the weather).
- Photos go as JPEG ``data:`` URLs in the user message, before its text (how vLLM takes
  images); this module imports nothing heavy, so stages may import it at module level.
"""

from __future__ import annotations

import base64
import inspect
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from dresscode.llm import tracing
from dresscode.llm.inference_log import inference_record

if TYPE_CHECKING:
    from dresscode.llm.blueprints import Blueprint
    from dresscode.llm.client import ChatResult, ContentSink, LLMClient
    from dresscode.llm.parsing import ParseOutcome

__all__ = [
    "Answer",
    "Judge",
    "Judgement",
    "ask",
    "image_part",
    "json_schema_format",
    "render",
]

T = TypeVar("T")

_SCHEMA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class Judgement(Generic[T]):
    """What a stage made of one answer: its own value and the log fields only it can fill.

    ``columns`` are the stage's extra ``inference_log`` columns; they override the defaults
    given to :func:`ask` (``columns=``), which keep every row of a stage one shape.
    """

    value: T | None = None
    n_items: int | None = None
    hallucinated_items: int = 0
    tool_call_ok: bool | None = None
    columns: Mapping[str, Any] = field(default_factory=dict)


Judge = Callable[["ChatResult", "ParseOutcome | None"], "Judgement[T] | Awaitable[Judgement[T]]"]
"""``(result, parse) -> Judgement``, sync or async; asked only when the call succeeded.
``parse`` is None for a turn of tool calls."""


@dataclass(frozen=True)
class Answer(Generic[T]):
    """One model call: what was sent, what came back, what it parsed to, and its log row.

    ``parse`` is None when the call failed or the model called tools; ``judged`` is the
    judge's value (None without a judge or when the call failed); ``record`` is the finished
    ``inference_log`` row.
    """

    messages: list[dict[str, Any]]
    result: ChatResult
    parse: ParseOutcome | None
    judged: T | None
    record: dict[str, Any]

    @property
    def ok(self) -> bool:
        """True when the call returned an answer (which may still fail to parse)."""
        return self.result.ok

    @property
    def value(self) -> Any:
        """The parsed, schema-valid value; None when there is none."""
        return self.parse.value if self.parse is not None and self.parse.usable else None

    @property
    def request_id(self) -> str:
        return self.result.request_id

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """The model's tool calls (``{"id", "name", "arguments"}``), if it made any."""
        return self.result.tool_calls


def image_part(jpeg: bytes) -> dict:
    """A chat content part carrying one JPEG as a ``data:`` URL (how vLLM takes images)."""
    if not jpeg.startswith(b"\xff\xd8"):
        raise ValueError("image_part expects JPEG bytes (normalize the photo first)")
    encoded = base64.b64encode(jpeg).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{encoded}"}}


def json_schema_format(name: str, schema: dict) -> dict:
    """A ``response_format`` asking for JSON matching ``schema`` (strict, object at the root)."""
    if not _SCHEMA_NAME.fullmatch(name):
        raise ValueError(f"schema name {name!r} must match {_SCHEMA_NAME.pattern}")
    if schema.get("type") != "object":
        raise ValueError("response_format schemas must have an object at the root")
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def render(
    blueprint: Blueprint, values: Mapping[str, Any], *, image: bytes | None = None
) -> list[dict[str, Any]]:
    """The first turn: the blueprint's system and user templates filled with ``values``.

    With ``image`` (JPEG bytes) the user message carries the photo, then the text.
    """
    values = dict(values)
    user = blueprint.render(blueprint.user, values)
    return [
        {"role": "system", "content": blueprint.render(blueprint.system, values)},
        {
            "role": "user",
            "content": user
            if image is None
            else [image_part(image), {"type": "text", "text": user}],
        },
    ]


async def ask(
    client: LLMClient,
    blueprint: Blueprint,
    *,
    purpose: str,
    schema_name: str,
    values: Mapping[str, Any] | None = None,
    image: bytes | None = None,
    messages: Sequence[dict[str, Any]] | None = None,
    constrained: bool = True,
    judge: Judge[T] | None = None,
    columns: Mapping[str, Any] | None = None,
    request_id: str | None = None,
    on_content: ContentSink | None = None,
    stream: bool = True,
) -> Answer[T]:
    """Ask the model once; never raises for model or network failures.

    Give ``values`` (and ``image``) for a first turn rendered from the blueprint, or
    ``messages`` to continue a conversation. ``constrained`` sends the blueprint's output
    schema as ``response_format`` under ``schema_name``; the blueprint's tools are always
    offered (``tool_choice: auto``). ``purpose`` and ``columns`` go into the log row, the
    judge's fields on top (see :class:`Judgement`). ``on_content`` hears the text as it streams;
    ``stream=False`` for an answer nobody watches arrive (:meth:`LLMClient.chat`).
    """
    from dresscode.llm.parsing import parse_structured

    if (values is None) == (messages is None):
        raise ValueError("ask needs either values (a first turn) or messages (a conversation)")
    if image is not None and messages is not None:
        raise ValueError("an image goes with values: it is part of the rendered first turn")
    sent = render(blueprint, values, image=image) if values is not None else list(messages or ())
    tools = blueprint.tools or None
    result = await client.chat(
        sent,
        response_format=(
            json_schema_format(schema_name, blueprint.output_schema) if constrained else None
        ),
        tools=tools,
        tool_choice="auto" if tools else None,
        temperature=blueprint.temperature,
        max_tokens=blueprint.max_tokens,
        request_id=request_id,
        model=blueprint.model,
        on_content=on_content,
        stream=stream,
    )
    parse = None
    if result.ok and not (tools and result.tool_calls):
        parse = parse_structured(
            result.content, finish_reason=result.finish_reason, schema=blueprint.output_schema
        )
    judgement: Judgement[T] = Judgement()
    if judge is not None and result.ok:
        verdict = judge(result, parse)
        judgement = await verdict if inspect.isawaitable(verdict) else verdict
    record = inference_record(
        result,
        purpose=purpose,
        prompt_name=blueprint.name,
        prompt_version=blueprint.version,
        parse=parse,
        n_items=judgement.n_items,
        tool_call_ok=judgement.tool_call_ok,
        hallucinated_items=judgement.hallucinated_items,
        extra={**(columns or {}), **judgement.columns},
    )
    tracing.note(record)  # a sampled share becomes an MLflow trace at the batch's end
    return Answer(sent, result, parse, judgement.value, record)
