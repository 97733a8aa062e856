"""Outfits: the rules every suggestion is validated against before anyone sees it.

The stylist (:mod:`dresscode.outfits.stylist`) asks the model; these pure functions decide
what of its answer survives:

* **Owned items only** (:func:`validate`). An id the user does not own is dropped and counted
  as a hallucination; an outfit left incomplete by the drop is removed. So is a garment noun
  in the text the user reads (an outfit's ``reason``, the ``notes``) that no owned item
  accounts for (:mod:`.mentions`): counted as ``text:<noun>`` and the text withheld.
* **Complete outfit** (:func:`is_complete`): a top with a bottom, or a dress, plus footwear.
  Footwear is required only when the user owns some: digitized wardrobes often lack shoes
  (people rarely photograph them), and suggesting nothing would be worse than an outfit
  without shoes. Outerwear, bags and accessories are optional.
* **Weather rules** (:func:`weather_violations`), against the real weather of the user's city
  and day (the stylist looks it up through its ``WeatherLookup``, so an outfit is not exempt
  because the model skipped the tool; when the weather is unknown no rule applies and the
  suggestion carries the ``weather_unavailable`` caveat). The high and the low are the
  ``get_weather`` answer's ``temperature_max_c`` / ``temperature_min_c`` — the fields
  :func:`dresscode.features.weather.derive` derives over the daytime hours, the Feast views
  hold and the model is shown (one weather truth; :func:`weather_facts`):

  - day's high ≥ :data:`HOT_C` °C: no outerwear of warmth ``heavy``;
  - precipitation probability ≥ :data:`RAIN_PCT` %: a water-resistant item, *when the user
    owns one that the heat rule allows*;
  - day's low ≤ :data:`COLD_C` °C: a warm layer (top, dress or outerwear of warmth ``warm``
    or ``heavy``), *when the user owns one*.

  An outfit that breaks a rule is removed and the violation recorded. When the user owns
  nothing that could satisfy a rule (a blizzard and no warm layer), outfits still go out and
  the suggestion says so in :func:`caveats` (``no_warm_layer_owned``, ``no_rain_gear_owned``).
* **Tool-call arguments** (:func:`coerce_arguments`): a JSON object matching the tool's
  parameter schema, numbers sent as strings coerced and counted.
* **Wardrobe text is data** (:func:`clean_text`, :func:`safe_id`): one line, no control
  characters, no angle brackets, capped — what the prompt may show between delimiters.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from dresscode.outfits import mentions

if TYPE_CHECKING:
    from dresscode.outfits.stylist import UserContext

TEXT_MENTION = "text:"  # prefix of a hallucinated garment named in text, among dropped ids

# Weather rules (documented above; the v2 prompt shows the same numbers).
HOT_C = 28.0  # at or above: no heavy outerwear
RAIN_PCT = 60.0  # at or above: rain protection, when owned
COLD_C = 5.0  # at or below: a warm layer, when owned

WARM_LEVELS = frozenset({"warm", "heavy"})
LAYER_CATEGORIES = frozenset({"top", "dress", "outerwear"})

_SAFE_ID = re.compile(r"[^\w.:-]")
_ANGLE = str.maketrans({"<": "‹", ">": "›"})


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


# --------------------------------------------------------------------------------------------
# Wardrobe text as data
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
    """High, low and rain chance from a ``get_weather`` answer; None when there is nothing
    to go on.

    The high is ``temperature_max_c`` and the low ``temperature_min_c``, as production derives
    them. Only an answer without them (a row written before they existed, a hand-made dict)
    falls back on ``temperature_c``, the one temperature it has.
    """
    if not weather or "error" in weather:
        return None
    mean = _number(weather.get("temperature_c"))
    high = _number(weather.get("temperature_max_c"))
    low = _number(weather.get("temperature_min_c"))
    precipitation = _number(weather.get("precipitation_probability"))
    facts = WeatherFacts(
        high_c=high if high is not None else mean,
        low_c=low if low is not None else mean,
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
        reason = clean_text(outfit.get("reason"), 300)
        unowned = mentions.unowned_mentions(reason, wardrobe)
        dropped.extend(f"{TEXT_MENTION}{noun}" for noun in unowned)
        kept.append(
            {
                "item_ids": ids,
                "occasion": str(outfit.get("occasion") or ""),
                "reason": "" if unowned else reason,  # never show a garment they do not own
            }
        )
    notes = mentions.unowned_mentions(clean_text(answer.get("notes"), 300), wardrobe)
    dropped.extend(f"{TEXT_MENTION}{noun}" for noun in notes)
    return kept, list(dict.fromkeys(dropped)), violations


def owned_notes(notes: Any, wardrobe: Iterable[dict[str, Any]]) -> str:
    """The suggestion's notes as the user may read them: withheld when they name a garment
    the user does not own (:func:`validate` counted it)."""
    text = clean_text(notes, 300)
    return "" if mentions.unowned_mentions(text, wardrobe) else text


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
# Tool-call arguments
# --------------------------------------------------------------------------------------------


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
