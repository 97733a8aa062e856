"""Outfits: the stylist's tool-calling loop.

One user, one day: the blueprint's prompt lists the user's wardrobe (as sanitized data inside
``<wardrobe>`` delimiters), the style summary (:mod:`dresscode.outfits.style_line`), the city
and the date; the model asks ``get_weather`` (answered by a :data:`WeatherLookup` the caller
supplies: features first, provider fallback) and answers with up to three outfits of item ids. Each model turn is one
trip to the model layer (:func:`dresscode.llm.ask.ask`: render, call, parse with counted
repairs, record). The final answer is checked against :mod:`dresscode.outfits.rules` before
anyone sees it: owned items only (an unowned id is dropped and counted as a hallucination),
complete outfits, and the weather rules against the real weather of the user's city and day
(looked up through the same ``WeatherLookup``, so an outfit is not exempt because the model
skipped the tool).

No complete outfit left: the user is skipped (``no_complete_outfit``). An empty wardrobe, or
one that cannot form an outfit at all, is skipped without calling the model.

The loop (:func:`suggest`) withholds ``response_format`` until the model has had its tool
round: vLLM applies a ``response_format`` as a decoding constraint even with
``tool_choice: "auto"`` and the model then cannot emit a tool call (vllm-project/vllm#39929).
From the second turn on (or after a free-text answer that did not parse) the answer is
constrained to the blueprint's output schema. Tool calls to unknown tools and unparseable or
schema-breaking arguments get an error JSON as the tool answer (the model may retry) and count
as ``tool_call_ok = False``; number arguments sent as strings are coerced and counted. A
model that never stops calling tools is skipped after ``max_turns`` calls (``max_turns``).

Every model call gives one ``inference_log`` row (purpose ``outfit``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Any

from dresscode.core import prompts, tables
from dresscode.llm import blueprints
from dresscode.llm.ask import Judgement, ask, render
from dresscode.llm.blueprints import Blueprint
from dresscode.outfits.rules import (
    COLD_C,
    HOT_C,
    RAIN_PCT,
    ToolArgumentError,
    can_form_outfit,
    caveats,
    clean_text,
    coerce_arguments,
    is_water_resistant,
    owned_notes,
    safe_id,
    unique_items,
    validate,
)
from dresscode.outfits.style_line import style_summary

if TYPE_CHECKING:
    from dresscode.llm.client import ChatResult, LLMClient
    from dresscode.llm.parsing import ParseOutcome

log = logging.getLogger(__name__)

PROMPT_NAME = prompts.STYLIST.name
PURPOSE = prompts.STYLIST.purpose
WEATHER_TOOL = "get_weather"
SCHEMA_NAME = "outfits"  # the response_format's name

# Prompt hygiene: wardrobe text is user data inside delimiters.
MAX_DESCRIPTION_CHARS = 160
MAX_FIELD_CHARS = 40
# The wardrobe_items fields the stylist reads (prompt lines, validators, golden scenarios).
WARDROBE_FIELDS = tables.WARDROBE_SUMMARY
MAX_WARDROBE_ITEMS = 150  # ~40 tokens a line; keeps the prompt far from the context limit
MAX_TOOL_CALLS_PER_TURN = 4

# The tool answer when the lookup has nothing (timeout, unknown city): the model must answer anyway.
WEATHER_UNAVAILABLE = {"error": "weather unavailable"}

WeatherLookup = Callable[[str, date], "dict | Awaitable[dict | None] | None"]
"""``get_weather``'s answer source: ``(city, day) -> weather dict | None``.

The caller supplies it (features first, provider fallback); it may be sync or async. It runs
on the event loop, so a sync lookup must be quick (a dict of pre-fetched features). The dict
is a ``get_weather`` answer (``features.weather.tool_answer``: ``temperature_c``, the day's
high and low ``temperature_max_c`` / ``temperature_min_c``, ``precipitation_probability`` in
percent, ...; the rules read these) or the provider's whole forecast (Open-Meteo JSON with
``hourly``, as a golden scenario states it), which is turned into that answer by the
production derive (``features.weather.forecast_answer``). ``None`` (or an exception, or a
forecast that does not derive; logged) means the weather is unavailable.
"""


class SkipReason(StrEnum):
    """Why a user got no suggestion. Stable, snake_case: logs, the lake and metrics use it."""

    EMPTY_WARDROBE = "empty_wardrobe"  # nothing digitized yet; the model is not called
    INCOMPLETE_WARDROBE = "incomplete_wardrobe"  # no top+bottom and no dress; not called
    NO_COMPLETE_OUTFIT = "no_complete_outfit"  # every suggested outfit failed validation
    MAX_TURNS = "max_turns"  # the model kept calling tools
    MODEL_ERROR = "model_error"  # the endpoint failed after the client's retries
    INVALID_OUTPUT = "invalid_output"  # the final answer did not parse or broke the schema


@dataclass(frozen=True)
class UserContext:
    """Everything the stylist knows about one user and day.

    ``wardrobe`` holds ``wardrobe_items`` rows (item_id, category, subcategory, color_names,
    warmth, formality, water_resistant, description); ``style`` the ``user_style`` features
    (may be empty); ``occasion`` one of the schema's occasions, or None for no preference.
    """

    user_id: str
    city: str
    day: date
    wardrobe: list[dict[str, Any]]
    style: dict[str, Any] = field(default_factory=dict)
    occasion: str | None = None


@dataclass
class Suggestion:
    """What the stylist gave one user for one day (validated), and how it went."""

    user_id: str
    day: date
    status: str = "ok"  # "ok" | "skipped"
    skip_reason: SkipReason | None = None
    outfits: list[dict[str, Any]] = field(default_factory=list)  # {item_ids, occasion, reason}
    dropped_items: list[str] = field(default_factory=list)  # ids the user does not own
    rule_violations: list[str] = field(default_factory=list)  # "<Violation>: outfit n ..."
    caveats: list[str] = field(default_factory=list)
    notes: str = ""
    tool_calls: int = 0
    tool_call_ok: bool | None = None  # None: no tool call was made
    coerced_args: int = 0
    turns: int = 0
    prompt_name: str = PROMPT_NAME
    prompt_version: str = ""
    request_ids: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def row(self) -> dict[str, Any]:
        """One ``outfit_suggestions`` row; outfits as a JSON string, every field one type."""
        return {
            "user_id": self.user_id,
            "day": self.day.isoformat(),
            "status": self.status,
            "skip_reason": str(self.skip_reason) if self.skip_reason else None,
            "outfits": json.dumps(self.outfits, ensure_ascii=False),
            "n_outfits": len(self.outfits),
            "dropped_items": list(self.dropped_items),
            "n_dropped_items": len(self.dropped_items),
            "rule_violations": list(self.rule_violations),
            "caveats": list(self.caveats),
            "notes": self.notes,
            "tool_calls": int(self.tool_calls),
            "tool_call_ok": self.tool_call_ok,
            "coerced_args": int(self.coerced_args),
            "turns": int(self.turns),
            "prompt_name": self.prompt_name,
            "prompt_version": self.prompt_version,
            "request_ids": list(self.request_ids),
        }


# --------------------------------------------------------------------------------------------
# Prompt: the wardrobe as data
# --------------------------------------------------------------------------------------------


def _names(value: Any) -> list[str]:
    if value is None or isinstance(value, str | bytes):
        return [str(value)] if value else []
    try:
        return [str(v) for v in value]
    except TypeError:
        return []


def wardrobe_line(item: dict[str, Any]) -> str:
    """One item as one line of data; the description is a quoted, cleaned, capped string."""
    colours = ", ".join(clean_text(c, MAX_FIELD_CHARS) for c in _names(item.get("color_names")))
    description = json.dumps(
        clean_text(item.get("description"), MAX_DESCRIPTION_CHARS), ensure_ascii=False
    )
    fields = [
        f"- id: {safe_id(item.get('item_id'))}",
        f"category: {clean_text(item.get('category'), MAX_FIELD_CHARS)}",
        f"subcategory: {clean_text(item.get('subcategory'), MAX_FIELD_CHARS)}",
        f"colours: {colours or 'unknown'}",
        f"warmth: {clean_text(item.get('warmth'), MAX_FIELD_CHARS)}",
        f"formality: {clean_text(item.get('formality'), MAX_FIELD_CHARS)}",
        f"water_resistant: {'true' if is_water_resistant(item) else 'false'}",
        f"description: {description}",
    ]
    return " | ".join(fields)


def occasions(blueprint: Blueprint) -> list[str]:
    """The occasion vocabulary of the blueprint's output schema."""
    return blueprints.enum_of(blueprint.output_schema, "outfits", "occasion")


def prompt_values(blueprint: Blueprint, ctx: UserContext) -> dict[str, str]:
    """The template values of the first turn; the wardrobe is data between ``<wardrobe>``
    delimiters, one cleaned line per item."""
    items = unique_items(ctx.wardrobe)
    if len(items) > MAX_WARDROBE_ITEMS:
        log.warning(
            "user %s: wardrobe of %d items cut to %d in the prompt",
            ctx.user_id,
            len(items),
            MAX_WARDROBE_ITEMS,
        )
        items = items[:MAX_WARDROBE_ITEMS]
    vocabulary = occasions(blueprint)
    return {
        "wardrobe": "\n".join(wardrobe_line(item) for item in items),
        "style": style_summary(ctx.style),
        "occasion": ctx.occasion if ctx.occasion in vocabulary else "any",
        "occasions": ", ".join(vocabulary),
        "city": clean_text(ctx.city, 100),
        "date": ctx.day.isoformat(),
        "hot_c": f"{HOT_C:g}",
        "rain_pct": f"{RAIN_PCT:g}",
        "cold_c": f"{COLD_C:g}",
    }


def build_messages(blueprint: Blueprint, ctx: UserContext) -> list[dict[str, Any]]:
    """System + user messages of the first turn (what :func:`suggest` sends first)."""
    return render(blueprint, prompt_values(blueprint, ctx))


# --------------------------------------------------------------------------------------------
# Tool calls
# --------------------------------------------------------------------------------------------


class _Weather:
    """The user's weather lookups, cached per (city, day) for one loop."""

    def __init__(self, lookup: WeatherLookup, user_id: str) -> None:
        self._lookup = lookup
        self._user_id = user_id
        self._cache: dict[tuple[str, date], dict[str, Any] | None] = {}

    async def get(self, city: str, day: date) -> dict[str, Any] | None:
        key = (" ".join(city.split()).casefold(), day)
        if key not in self._cache:
            try:
                answer = self._lookup(city, day)
                if inspect.isawaitable(answer):
                    answer = await answer
                if isinstance(answer, dict) and "hourly" in answer:  # the provider's forecast
                    from dresscode.features.weather import forecast_answer

                    answer = forecast_answer(answer, city=city, day=day)
            except Exception as exc:  # a weather outage must not fail the user's suggestion
                log.warning(
                    "user %s: weather lookup for %s on %s failed: %s: %s",
                    self._user_id,
                    city,
                    day,
                    type(exc).__name__,
                    str(exc)[:200],
                )
                answer = None
            self._cache[key] = dict(answer) if isinstance(answer, dict) and answer else None
        return self._cache[key]


@dataclass
class _ToolRound:
    """One assistant turn of tool calls (ids filled in), the tool messages answering it, and
    how the calls went."""

    calls: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    ok: bool
    coerced: int


def _tool_parameters(blueprint: Blueprint) -> dict[str, dict[str, Any]]:
    """Parameter schemas of the tools the blueprint offers, by name."""
    found = {}
    for tool in blueprint.tools:
        function = tool.get("function") or {}
        if function.get("name"):
            found[function["name"]] = function.get("parameters") or {"type": "object"}
    return found


def _json(value: Any) -> str:
    return json.dumps(
        value, ensure_ascii=False, default=lambda o: o.item() if hasattr(o, "item") else str(o)
    )


async def _answer_tools(
    calls: list[dict[str, Any]], parameters: dict[str, dict[str, Any]], weather: _Weather
) -> _ToolRound:
    """Answer every tool call of one turn: weather, or an error JSON the model can read."""
    messages = []
    ok = True
    coerced = 0
    for n, call in enumerate(calls):
        name = call.get("name")
        content: dict[str, Any]
        if n >= MAX_TOOL_CALLS_PER_TURN:
            ok = False
            content = {
                "error": f"too many tool calls in one turn (at most {MAX_TOOL_CALLS_PER_TURN})"
            }
        elif name != WEATHER_TOOL or name not in parameters:
            ok = False
            content = {"error": f"unknown tool {str(name)[:64]!r}; available: {sorted(parameters)}"}
        else:
            try:
                args, changed = coerce_arguments(call.get("arguments"), parameters[name])
                day = date.fromisoformat(str(args["date"]))
            except (ToolArgumentError, KeyError, ValueError) as exc:
                ok = False
                content = {"error": f"invalid arguments for {name}: {exc}"[:300]}
            else:
                coerced += changed
                city = str(args["city"])
                found = await weather.get(city, day)
                content = (
                    {"city": city, "date": day.isoformat(), **found}
                    if found
                    else dict(WEATHER_UNAVAILABLE)
                )
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": _json(content)})
    return _ToolRound(calls, messages, ok, coerced)


def _assistant_message(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """The model's tool-call turn, in OpenAI's format, to send back with the answers.

    Arguments that are not a JSON object are echoed as ``{}``: chat templates parse them,
    and a broken string would turn the next request into a 400. The tool message says what
    was wrong.
    """

    def echoed(raw: Any) -> str:
        try:
            return raw if isinstance(json.loads(raw or "{}"), dict) else "{}"
        except (TypeError, ValueError):
            return "{}"

    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call["id"],
                "type": "function",
                "function": {
                    "name": str(call.get("name")),
                    "arguments": echoed(call.get("arguments")),
                },
            }
            for call in calls
        ],
    }


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Final:
    """The final answer as the rules left it: the day's weather and what survived.

    ``invalid`` is the parse outcome when the answer could not be used (nothing survived).
    """

    weather: dict[str, Any] | None
    outfits: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    invalid: str | None = None


async def suggest(
    client: LLMClient,
    blueprint: Blueprint,
    ctx: UserContext,
    weather: WeatherLookup,
    *,
    max_turns: int,
    on_content: Callable[[int, str, int], None] | None = None,  # (turn, text delta, attempt)
    stream: bool = True,  # False: nobody watches it arrive (the live shadow)
) -> tuple[Suggestion, list[dict[str, Any]]]:
    """One user's suggestion and the inference-log rows of its model calls (one per call).

    Never raises for model, network or weather failures: they end in a skipped suggestion
    with its reason.
    """
    if max_turns < 1:
        raise ValueError("max_turns must be >= 1")
    out = Suggestion(ctx.user_id, ctx.day, prompt_version=str(blueprint.version))
    out.prompt_name = blueprint.name
    if not unique_items(ctx.wardrobe):
        return _skip(out, SkipReason.EMPTY_WARDROBE, "no wardrobe items"), []
    if not can_form_outfit(ctx.wardrobe):
        return _skip(out, SkipReason.INCOMPLETE_WARDROBE, "no top+bottom and no dress"), []

    lookups = _Weather(weather, ctx.user_id)
    parameters = _tool_parameters(blueprint)
    messages: list[dict[str, Any]] | None = None  # None: the first turn, from the blueprint
    records: list[dict[str, Any]] = []
    constrained = False  # response_format only after the tool round (vllm#39929)
    verdict: _ToolRound | _Final | None = None
    for turn in range(1, max_turns + 1):
        judge = partial(
            _judge_turn,
            ctx=ctx,
            lookups=lookups,
            parameters=parameters,
            turn=turn,
            final=constrained or turn == max_turns,
        )
        answer = await ask(
            client,
            blueprint,
            purpose=PURPOSE,
            schema_name=SCHEMA_NAME,
            values=prompt_values(blueprint, ctx) if messages is None else None,
            messages=messages,
            constrained=constrained,
            judge=judge,
            columns=_columns(ctx, turn),
            on_content=partial(on_content, turn) if on_content else None,
            stream=stream,
        )
        records.append(answer.record)
        out.turns, out.request_ids = turn, [*out.request_ids, answer.request_id]
        if not answer.ok:
            detail = f"{answer.result.error_class} after {answer.result.attempts} attempt(s)"
            return _skip(out, SkipReason.MODEL_ERROR, detail), records
        verdict = answer.judged
        if isinstance(verdict, _ToolRound):
            out.tool_calls += len(verdict.calls)
            out.coerced_args += verdict.coerced
            out.tool_call_ok = verdict.ok and out.tool_call_ok is not False
            messages = [*answer.messages, _assistant_message(verdict.calls), *verdict.messages]
            constrained = True
            continue
        if isinstance(verdict, _Final):
            break
        # A free-text answer that did not parse: ask again, constrained to the schema.
        messages = answer.messages
        constrained = True
    if not isinstance(verdict, _Final):
        detail = f"still calling tools after {max_turns} turn(s)"
        return _skip(out, SkipReason.MAX_TURNS, detail), records

    if verdict.invalid:
        return _skip(out, SkipReason.INVALID_OUTPUT, verdict.invalid), records
    out.outfits = verdict.outfits
    out.dropped_items = verdict.dropped
    out.rule_violations = verdict.violations
    out.notes = owned_notes(answer.value.get("notes"), ctx.wardrobe)
    if out.dropped_items:
        log.warning(
            "user %s: dropped %d item id(s) the user does not own",
            ctx.user_id,
            len(out.dropped_items),
        )
    if not out.outfits:
        return _skip(out, SkipReason.NO_COMPLETE_OUTFIT, "; ".join(out.rule_violations)), records
    out.caveats = caveats(ctx, verdict.weather)
    return out, records


async def _judge_turn(
    result: ChatResult,
    parse: ParseOutcome | None,
    *,
    ctx: UserContext,
    lookups: _Weather,
    parameters: dict[str, dict[str, Any]],
    turn: int,
    final: bool,
) -> Judgement[_ToolRound | _Final]:
    """What one model turn comes to: a tool round answered, the final answer checked against
    the rules, or nothing (a free-text answer that did not parse, asked again)."""
    if parse is None:  # the model called tools
        calls = [
            {**call, "id": call.get("id") or f"call_{turn}_{i}"}
            for i, call in enumerate(result.tool_calls)
        ]
        done = await _answer_tools(calls, parameters, lookups)
        return Judgement(done, tool_call_ok=done.ok, columns={"coerced_args": done.coerced})
    if not parse.usable and not final:
        return Judgement()
    truth = await lookups.get(ctx.city, ctx.day)
    if not parse.usable:
        return Judgement(_Final(truth, invalid=str(parse.outcome)))
    outfits, dropped, violations = validate(parse.value, ctx, truth)
    return Judgement(
        _Final(truth, outfits, dropped, violations),
        n_items=len(outfits),
        hallucinated_items=len(dropped),
        columns={"rule_violations": len(violations)},
    )


def _columns(ctx: UserContext, turn: int) -> dict[str, Any]:
    """The stylist's inference-log columns; every row has them, with one type each."""
    return {"user_id": str(ctx.user_id), "turn": int(turn), "coerced_args": 0, "rule_violations": 0}


def _skip(out: Suggestion, reason: SkipReason, detail: str) -> Suggestion:
    out.status, out.skip_reason, out.outfits = "skipped", reason, []
    log.warning("user %s: skipped, %s (%s)", out.user_id, reason, detail[:300])
    return out


async def suggest_many(
    client: LLMClient,
    blueprint: Blueprint,
    contexts: Sequence[UserContext],
    weather: WeatherLookup,
    *,
    max_turns: int,
) -> list[tuple[Suggestion, list[dict[str, Any]]]]:
    """Every user concurrently (the client's semaphore bounds the calls in flight, so the
    endpoint stays busy while other users wait on their tool round), in input order."""
    started = time.perf_counter()
    results = list(
        await asyncio.gather(
            *(suggest(client, blueprint, ctx, weather, max_turns=max_turns) for ctx in contexts)
        )
    )
    suggestions = [s for s, _ in results]
    skipped = Counter(str(s.skip_reason) for s in suggestions if not s.ok)
    elapsed = time.perf_counter() - started
    log.info(
        "stylist %s: %d users, %d ok, %d skipped%s, %d model calls, %d tool calls, "
        "%d hallucinated ids dropped, %d outfits removed by rules, %.1f users/s",
        blueprint.ref,
        len(suggestions),
        len(suggestions) - sum(skipped.values()),
        sum(skipped.values()),
        f" ({', '.join(f'{n} {r}' for r, n in skipped.most_common())})" if skipped else "",
        sum(len(r) for _, r in results),
        sum(s.tool_calls for s in suggestions),
        sum(len(s.dropped_items) for s in suggestions),
        sum(len(s.rule_violations) for s in suggestions),
        len(suggestions) / elapsed if elapsed > 0 else 0.0,
    )
    return results
