"""Outfits: the stylist's tool-calling loop and the validators behind every suggestion.

One user, one day: the blueprint's prompt lists the user's wardrobe (as sanitized data inside
``<wardrobe>`` delimiters), the style summary, the city and the date; the model asks
``get_weather`` (answered by a :data:`WeatherLookup` the caller supplies: features first,
provider fallback) and answers with up to three outfits of item ids. Every answer is parsed
with :mod:`dresscode.llm.parsing` (counted repairs) and validated here before anyone sees it:

* **Owned items only.** An id the user does not own is dropped and counted as a
  hallucination; an outfit left incomplete by the drop is removed.
* **Complete outfit** (:func:`is_complete`): a top with a bottom, or a dress, plus footwear.
  Footwear is required only when the user owns some: digitized wardrobes often lack shoes
  (people rarely photograph them), and suggesting nothing would be worse than an outfit
  without shoes. Outerwear, bags and accessories are optional.
* **Weather rules** (:func:`weather_violations`), against the real weather of the user's city
  and day (looked up through the same ``WeatherLookup``, so an outfit is not exempt because
  the model skipped the tool; when the weather is unknown no rule applies and the suggestion
  carries the ``weather_unavailable`` caveat):

  - day's high ≥ :data:`HOT_C` °C: no outerwear of warmth ``heavy``;
  - precipitation probability ≥ :data:`RAIN_PCT` %: a water-resistant item, *when the user
    owns one that the heat rule allows*;
  - day's low ≤ :data:`COLD_C` °C: a warm layer (top, dress or outerwear of warmth ``warm``
    or ``heavy``), *when the user owns one*.

  An outfit that breaks a rule is removed and the violation recorded. When the user owns
  nothing that could satisfy a rule (a blizzard and no warm layer), outfits still go out and
  the suggestion says so in ``caveats`` (``no_warm_layer_owned``, ``no_rain_gear_owned``).

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
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from dresscode.core import prompts
from dresscode.llm import blueprints
from dresscode.llm.blueprints import Blueprint

if TYPE_CHECKING:
    from dresscode.llm.client import ChatResult, LLMClient
    from dresscode.llm.parsing import ParseOutcome

log = logging.getLogger(__name__)

PROMPT_NAME = prompts.STYLIST.name
PURPOSE = prompts.STYLIST.purpose
WEATHER_TOOL = "get_weather"

# Weather rules (documented above; the v2 prompt shows the same numbers).
HOT_C = 28.0  # at or above: no heavy outerwear
RAIN_PCT = 60.0  # at or above: rain protection, when owned
COLD_C = 5.0  # at or below: a warm layer, when owned

WARM_LEVELS = frozenset({"warm", "heavy"})
LAYER_CATEGORIES = frozenset({"top", "dress", "outerwear"})

# Prompt hygiene: wardrobe text is user data inside delimiters.
MAX_DESCRIPTION_CHARS = 160
MAX_FIELD_CHARS = 40
# The wardrobe_items fields the stylist reads (prompt lines, validators, golden scenarios).
WARDROBE_FIELDS = (
    "item_id",
    "category",
    "subcategory",
    "color_names",
    "warmth",
    "formality",
    "water_resistant",
    "description",
)
MAX_WARDROBE_ITEMS = 150  # ~40 tokens a line; keeps the prompt far from the context limit
MAX_STYLE_FEATURES = 16
MAX_TOOL_CALLS_PER_TURN = 4
_SAFE_ID = re.compile(r"[^\w.:-]")
_ANGLE = str.maketrans({"<": "‹", ">": "›"})
_STYLE_SKIP = frozenset({"user_id", "event_timestamp", "created", "created_at", "date", "day"})

# The tool answer when the lookup has nothing (timeout, unknown city): the model must answer anyway.
WEATHER_UNAVAILABLE = {"error": "weather unavailable"}

WeatherLookup = Callable[[str, date], "dict | Awaitable[dict | None] | None"]
"""``get_weather``'s answer source: ``(city, day) -> weather dict | None``.

The caller supplies it (features first, provider fallback); it may be sync or async. It runs
on the event loop, so a sync lookup must be quick (a dict of pre-fetched features). A
weather dict uses these keys (others are passed to the model as they are):
``temperature_c`` (°C), optionally ``temperature_max_c`` / ``temperature_min_c`` (the day's
high and low), ``precipitation_probability`` (percent, 0-100) or, without it, ``is_rainy``
(bool). ``None`` (or an exception, logged) means the weather is unavailable.
"""


class SkipReason(StrEnum):
    """Why a user got no suggestion. Stable, snake_case: logs, the lake and metrics use it."""

    EMPTY_WARDROBE = "empty_wardrobe"  # nothing digitized yet; the model is not called
    INCOMPLETE_WARDROBE = "incomplete_wardrobe"  # no top+bottom and no dress; not called
    NO_COMPLETE_OUTFIT = "no_complete_outfit"  # every suggested outfit failed validation
    MAX_TURNS = "max_turns"  # the model kept calling tools
    MODEL_ERROR = "model_error"  # the endpoint failed after the client's retries
    INVALID_OUTPUT = "invalid_output"  # the final answer did not parse or broke the schema


class Violation(StrEnum):
    """Why an outfit was removed; ``rule_violations`` entries start with one of these."""

    INCOMPLETE = "incomplete_outfit"
    HEAVY_IN_HEAT = "heavy_outerwear_in_heat"
    NO_RAIN_PROTECTION = "no_rain_protection"
    NO_WARM_LAYER = "no_warm_layer"


WEATHER_VIOLATIONS = frozenset(
    {Violation.HEAVY_IN_HEAT, Violation.NO_RAIN_PROTECTION, Violation.NO_WARM_LAYER}
)


class Caveat(StrEnum):
    """Things the user should know about an ``ok`` suggestion."""

    WEATHER_UNAVAILABLE = "weather_unavailable"
    NO_WARM_LAYER_OWNED = "no_warm_layer_owned"
    NO_RAIN_GEAR_OWNED = "no_rain_gear_owned"
    NO_FOOTWEAR_OWNED = "no_footwear_owned"


class ToolArgumentError(ValueError):
    """Tool-call arguments that are not a JSON object or break the tool's parameter schema."""


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


def clean_text(value: Any, limit: int) -> str:
    """Free text made safe to put between delimiters: one line, no control or format
    characters, no angle brackets (so no ``</wardrobe>`` look-alike), at most ``limit``."""
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        return ""
    text = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in str(value)
    )
    text = " ".join(text.translate(_ANGLE).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def safe_id(value: Any) -> str:
    """An item id as the prompt shows it (ids are hex digests; anything else is stripped)."""
    return _SAFE_ID.sub("", str(value))[:64]


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes")


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
        f"water_resistant: {'true' if _flag(item.get('water_resistant')) else 'false'}",
        f"description: {description}",
    ]
    return " | ".join(fields)


def style_summary(style: dict[str, Any]) -> str:
    """The user's style features as one line of ``name=value`` pairs (data, cleaned)."""
    parts = []
    for key in sorted(style):
        value = style[key]
        if key in _STYLE_SKIP or value is None or isinstance(value, dict):
            continue
        if isinstance(value, float):
            if value != value:
                continue
            value = round(value, 2)
        elif not isinstance(value, str | int) and _names(value):
            value = ",".join(_names(value)[:5])
        parts.append(f"{clean_text(key, MAX_FIELD_CHARS)}={clean_text(value, MAX_FIELD_CHARS)}")
        if len(parts) == MAX_STYLE_FEATURES:
            break
    return "; ".join(parts) or "unknown (no style features yet)"


def occasions(blueprint: Blueprint) -> list[str]:
    """The occasion vocabulary of the blueprint's output schema."""
    return blueprints.enum_of(blueprint.output_schema, "outfits", "occasion")


def build_messages(blueprint: Blueprint, ctx: UserContext) -> list[dict[str, Any]]:
    """System + user messages; the wardrobe is data between ``<wardrobe>`` delimiters."""
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
    values = {
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
    return [
        {"role": "system", "content": blueprint.render(blueprint.system, values)},
        {"role": "user", "content": blueprint.render(blueprint.user, values)},
    ]


def unique_items(wardrobe: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Wardrobe rows with an id, first row per id."""
    seen: dict[str, dict[str, Any]] = {}
    for item in wardrobe:
        item_id = item.get("item_id")
        if item_id is not None and str(item_id) not in seen:
            seen[str(item_id)] = item
    return list(seen.values())


# --------------------------------------------------------------------------------------------
# Validators
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeatherFacts:
    """The numbers the rules read from a weather dict (None: not given)."""

    high_c: float | None
    low_c: float | None
    precipitation_pct: float | None
    rainy: bool

    @property
    def hot(self) -> bool:
        return self.high_c is not None and self.high_c >= HOT_C

    @property
    def cold(self) -> bool:
        return self.low_c is not None and self.low_c <= COLD_C

    @property
    def wet(self) -> bool:
        if self.precipitation_pct is not None:
            return self.precipitation_pct >= RAIN_PCT
        return self.rainy


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None


def weather_facts(weather: dict[str, Any] | None) -> WeatherFacts | None:
    """High, low and rain chance from a weather dict; None when there is nothing to go on.

    The high is the hottest of ``temperature_c`` and ``temperature_max_c``, the low the
    coldest of ``temperature_c`` and ``temperature_min_c``.
    """
    if not weather or "error" in weather:
        return None
    temps = {k: _number(weather.get(k)) for k in ("temperature_c", "temperature_max_c")}
    highs = [v for v in temps.values() if v is not None]
    lows = [
        v
        for v in (_number(weather.get("temperature_c")), _number(weather.get("temperature_min_c")))
        if v is not None
    ]
    precipitation = _number(weather.get("precipitation_probability"))
    facts = WeatherFacts(
        high_c=max(highs) if highs else None,
        low_c=min(lows) if lows else None,
        precipitation_pct=precipitation,
        rainy=_flag(weather.get("is_rainy")),
    )
    if facts.high_c is None and facts.low_c is None and precipitation is None:
        return None if "is_rainy" not in weather else facts
    return facts


def _category(item: dict[str, Any]) -> str:
    return str(item.get("category") or "").strip().lower()


def is_warm_layer(item: dict[str, Any]) -> bool:
    """A top, dress or outerwear of warmth ``warm`` or ``heavy`` (what the cold rule wants)."""
    return _category(item) in LAYER_CATEGORIES and str(item.get("warmth")).lower() in WARM_LEVELS


def is_water_resistant(item: dict[str, Any]) -> bool:
    return _flag(item.get("water_resistant"))


def _heavy_outerwear(item: dict[str, Any]) -> bool:
    return _category(item) == "outerwear" and str(item.get("warmth")).lower() == "heavy"


def can_form_outfit(wardrobe: Iterable[dict[str, Any]]) -> bool:
    """True when the wardrobe has a top and a bottom, or a dress."""
    categories = {_category(item) for item in wardrobe}
    return {"top", "bottom"} <= categories or "dress" in categories


def is_complete(items: Sequence[dict[str, Any]], *, footwear_required: bool) -> bool:
    """(top + bottom, or a dress) + footwear; footwear only when the user owns some."""
    categories = {_category(item) for item in items}
    body = {"top", "bottom"} <= categories or "dress" in categories
    return body and ("footwear" in categories or not footwear_required)


def rain_gear(wardrobe: Iterable[dict[str, Any]], facts: WeatherFacts) -> list[dict[str, Any]]:
    """Water-resistant items the user could wear today (heavy outerwear is out in heat)."""
    return [
        item
        for item in wardrobe
        if is_water_resistant(item) and not (facts.hot and _heavy_outerwear(item))
    ]


def weather_violations(
    items: Sequence[dict[str, Any]], wardrobe: Sequence[dict[str, Any]], facts: WeatherFacts | None
) -> list[tuple[Violation, str]]:
    """The weather rules one outfit (``items``) breaks, given what the user owns."""
    if facts is None:
        return []
    broken = []
    if facts.hot:
        heavy = [str(i["item_id"]) for i in items if _heavy_outerwear(i)]
        if heavy:
            broken.append(
                (Violation.HEAVY_IN_HEAT, f"{', '.join(heavy)} at a high of {facts.high_c:g} °C")
            )
    if facts.wet and rain_gear(wardrobe, facts) and not rain_gear(items, facts):
        chance = (
            f"{facts.precipitation_pct:g} %" if facts.precipitation_pct is not None else "rainy"
        )
        broken.append((Violation.NO_RAIN_PROTECTION, f"no water-resistant item at {chance}"))
    if (
        facts.cold
        and any(is_warm_layer(i) for i in wardrobe)
        and not any(is_warm_layer(i) for i in items)
    ):
        broken.append((Violation.NO_WARM_LAYER, f"no warm layer at a low of {facts.low_c:g} °C"))
    return broken


def validate(
    answer: dict[str, Any], ctx: UserContext, weather: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """The outfits that survive, the unowned ids dropped, and why outfits were removed.

    ``answer`` is a schema-valid model answer; ``weather`` the day's weather (None: unknown,
    no weather rule applies). Ids are deduplicated within an outfit; an outfit identical to
    an earlier kept one is dropped silently. Violations read ``"<Violation>: outfit <n>, ..."``
    (:func:`violation_code` gives the code back).
    """
    owned = {str(item["item_id"]): item for item in unique_items(ctx.wardrobe)}
    # The prompt shows ids through safe_id; an id it had to change still counts as owned.
    shown = {safe_id(real): real for real in owned}
    wardrobe = list(owned.values())
    footwear_required = any(_category(item) == "footwear" for item in wardrobe)
    facts = weather_facts(weather)
    kept: list[dict[str, Any]] = []
    dropped: list[str] = []
    violations: list[str] = []
    seen: set[frozenset[str]] = set()
    for n, outfit in enumerate(answer.get("outfits") or [], start=1):
        ids = [str(i) for i in outfit.get("item_ids") or []]
        ids = list(dict.fromkeys(i if i in owned else shown.get(i, i) for i in ids))
        dropped.extend(i for i in ids if i not in owned)
        ids = [i for i in ids if i in owned]
        items = [owned[i] for i in ids]
        if not is_complete(items, footwear_required=footwear_required):
            violations.append(f"{Violation.INCOMPLETE}: outfit {n}, {_shape(items)}")
            continue
        broken = weather_violations(items, wardrobe, facts)
        if broken:
            violations.extend(f"{code}: outfit {n}, {detail}" for code, detail in broken)
            continue
        if frozenset(ids) in seen:
            continue
        seen.add(frozenset(ids))
        kept.append(
            {
                "item_ids": ids,
                "occasion": str(outfit.get("occasion") or ""),
                "reason": clean_text(outfit.get("reason"), 300),
            }
        )
    return kept, list(dict.fromkeys(dropped)), violations


def violation_code(violation: str) -> str:
    """The :class:`Violation` code a ``rule_violations`` entry starts with."""
    return violation.split(":", 1)[0]


def _shape(items: Sequence[dict[str, Any]]) -> str:
    return "+".join(sorted(_category(i) or "?" for i in items)) or "no owned items"


def caveats(ctx: UserContext, weather: dict[str, Any] | None) -> list[str]:
    """What an ``ok`` suggestion could not take care of, given what the user owns."""
    wardrobe = unique_items(ctx.wardrobe)
    facts = weather_facts(weather)
    found = []
    if facts is None:
        found.append(Caveat.WEATHER_UNAVAILABLE)
    else:
        if facts.cold and not any(is_warm_layer(i) for i in wardrobe):
            found.append(Caveat.NO_WARM_LAYER_OWNED)
        if facts.wet and not rain_gear(wardrobe, facts):
            found.append(Caveat.NO_RAIN_GEAR_OWNED)
    if not any(_category(i) == "footwear" for i in wardrobe):
        found.append(Caveat.NO_FOOTWEAR_OWNED)
    return [str(c) for c in found]


# --------------------------------------------------------------------------------------------
# Tool calls
# --------------------------------------------------------------------------------------------

_SCALARS = ("integer", "number", "boolean")


def coerce_arguments(raw: str | dict | None, parameters_schema: dict) -> tuple[dict, int]:
    """Parse tool-call arguments; turn strings into the numbers/booleans the schema wants.

    Gemma's tool-call parser in vLLM sometimes returns ``"7"`` for ``7``. Returns the
    arguments and how many values were coerced. Raises :class:`ToolArgumentError` when the
    text is not a JSON object or the (coerced) arguments break ``parameters_schema``.
    An empty argument string means ``{}``.
    """
    from jsonschema import Draft202012Validator

    if isinstance(raw, dict):
        args: Any = dict(raw)
    else:
        text = (raw or "").strip() or "{}"
        try:
            args = json.loads(text)
        except ValueError as exc:
            raise ToolArgumentError(f"arguments are not valid JSON ({exc})") from None
    if not isinstance(args, dict):
        raise ToolArgumentError(f"arguments must be a JSON object, not {type(args).__name__}")
    coerced = _coerce(args, parameters_schema)
    validator = Draft202012Validator(
        parameters_schema, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(args), key=lambda e: [str(p) for p in e.path])
    if errors:
        first = errors[0]
        raise ToolArgumentError(f"{first.json_path}: {first.message}"[:200])
    return args, coerced


def _coerce(value: Any, schema: dict) -> int:
    """Coerce string scalars inside ``value`` in place, following ``properties``/``items``."""
    count = 0
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key not in value or not isinstance(sub, dict):
                continue
            converted = _scalar(value[key], sub)
            if converted is not _KEEP:
                value[key] = converted
                count += 1
            else:
                count += _coerce(value[key], sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, element in enumerate(value):
            converted = _scalar(element, schema["items"])
            if converted is not _KEEP:
                value[i] = converted
                count += 1
            else:
                count += _coerce(element, schema["items"])
    return count


_KEEP = object()


def _scalar(value: Any, schema: dict) -> Any:
    """The number/boolean a string spells when the schema wants one (and not a string)."""
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
    if not isinstance(value, str) or "string" in kinds:
        return _KEEP
    text = value.strip()
    for kind in kinds:
        if kind == "integer" and re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        if kind == "number" and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
            number = float(text)
            return (
                int(number) if number.is_integer() and re.fullmatch(r"[+-]?\d+", text) else number
            )
        if kind == "boolean" and text.lower() in ("true", "false"):
            return text.lower() == "true"
    return _KEEP


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
    """The tool messages answering one assistant turn, and how the calls went."""

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
    return _ToolRound(messages, ok, coerced)


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


async def suggest(
    client: LLMClient,
    blueprint: Blueprint,
    ctx: UserContext,
    weather: WeatherLookup,
    *,
    max_turns: int,
) -> tuple[Suggestion, list[dict[str, Any]]]:
    """One user's suggestion and the inference-log rows of its model calls (one per call).

    Never raises for model, network or weather failures: they end in a skipped suggestion
    with its reason.
    """
    from dresscode.llm.client import json_schema_format
    from dresscode.llm.parsing import parse_structured

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
    response_format = json_schema_format("outfits", blueprint.output_schema)
    messages = build_messages(blueprint, ctx)
    records: list[dict[str, Any]] = []
    constrained = False  # response_format only after the tool round (vllm#39929)
    parse: ParseOutcome | None = None
    result: ChatResult | None = None
    for turn in range(1, max_turns + 1):
        result = await client.chat(
            messages,
            response_format=response_format if constrained else None,
            tools=blueprint.tools or None,
            tool_choice="auto" if blueprint.tools else None,
            temperature=blueprint.temperature,
            max_tokens=blueprint.max_tokens,
            model=blueprint.model,
        )
        out.turns, out.request_ids = turn, [*out.request_ids, result.request_id]
        if not result.ok:
            records.append(_record(result, blueprint, ctx, turn))
            detail = f"{result.error_class} after {result.attempts} attempt(s)"
            return _skip(out, SkipReason.MODEL_ERROR, detail), records
        if result.tool_calls:
            calls = [
                {**call, "id": call.get("id") or f"call_{turn}_{i}"}
                for i, call in enumerate(result.tool_calls)
            ]
            done = await _answer_tools(calls, parameters, lookups)
            out.tool_calls += len(calls)
            out.coerced_args += done.coerced
            out.tool_call_ok = done.ok and out.tool_call_ok is not False
            records.append(
                _record(result, blueprint, ctx, turn, tool_call_ok=done.ok, coerced=done.coerced)
            )
            messages = [*messages, _assistant_message(calls), *done.messages]
            constrained = True
            continue
        parse = parse_structured(
            result.content, finish_reason=result.finish_reason, schema=blueprint.output_schema
        )
        if parse.usable or constrained or turn == max_turns:
            break
        # A free-text answer that did not parse: ask again, constrained to the schema.
        records.append(_record(result, blueprint, ctx, turn, parse=parse))
        constrained = True
        parse = None
    if parse is None or result is None:
        detail = f"still calling tools after {max_turns} turn(s)"
        return _skip(out, SkipReason.MAX_TURNS, detail), records

    truth = await lookups.get(ctx.city, ctx.day)
    if not parse.usable:
        records.append(_record(result, blueprint, ctx, out.turns, parse=parse))
        return _skip(out, SkipReason.INVALID_OUTPUT, f"{parse.outcome}"), records
    out.outfits, out.dropped_items, out.rule_violations = validate(parse.value, ctx, truth)
    out.notes = clean_text(parse.value.get("notes"), 300)
    records.append(
        _record(
            result,
            blueprint,
            ctx,
            out.turns,
            parse=parse,
            n_items=len(out.outfits),
            hallucinated=len(out.dropped_items),
            violations=len(out.rule_violations),
        )
    )
    if out.dropped_items:
        log.warning(
            "user %s: dropped %d item id(s) the user does not own",
            ctx.user_id,
            len(out.dropped_items),
        )
    if not out.outfits:
        return _skip(out, SkipReason.NO_COMPLETE_OUTFIT, "; ".join(out.rule_violations)), records
    out.caveats = caveats(ctx, truth)
    return out, records


def _skip(out: Suggestion, reason: SkipReason, detail: str) -> Suggestion:
    out.status, out.skip_reason, out.outfits = "skipped", reason, []
    log.warning("user %s: skipped, %s (%s)", out.user_id, reason, detail[:300])
    return out


def _record(
    result: ChatResult,
    blueprint: Blueprint,
    ctx: UserContext,
    turn: int,
    *,
    parse: ParseOutcome | None = None,
    tool_call_ok: bool | None = None,
    coerced: int = 0,
    n_items: int | None = None,
    hallucinated: int = 0,
    violations: int = 0,
) -> dict[str, Any]:
    """One inference-log row; the extra columns keep one type in every row."""
    from dresscode.llm.client import inference_record

    return inference_record(
        result,
        purpose=PURPOSE,
        prompt_name=blueprint.name,
        prompt_version=blueprint.version,
        parse=parse,
        n_items=n_items,
        tool_calls=len(result.tool_calls),
        tool_call_ok=tool_call_ok,
        hallucinated_items=hallucinated,
        extra={
            "user_id": str(ctx.user_id),
            "turn": int(turn),
            "coerced_args": int(coerced),
            "rule_violations": int(violations),
        },
    )


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
