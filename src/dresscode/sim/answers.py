"""What the simulated model says: wardrobe items, weather tool calls, outfits, minimal JSON.

Everything is deterministic per (seed, served model, request content): the same photo sent
to the same model gives the same answer, so evaluations against the simulator are
reproducible. Vocabularies (categories, patterns, ...) come from the enums of the request's
own schema, so answers stay valid when a prompt version changes its schema.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dresscode.sim import judge
from dresscode.sim.faults import Fault
from dresscode.sim.protocol import ChatRequest, tool_call_id
from dresscode.sim.schema import conform, instance, resolve, type_of
from dresscode.sim.script import ResponseScript
from dresscode.sim.vision import PhotoFacts

log = logging.getLogger(__name__)

WEATHER_TOOL = "get_weather"
DARK_BRIGHTNESS = (
    35  # mean luma below which a vision model mostly sees nothing (dim golden photos: 41+)
)
SEEN_ON_DARK = 0.3  # share of the true items a vision model still reports on a dark photo
COLD_CELSIUS = 12
HOT_CELSIUS = 28
SUBCATEGORIES = {
    "top": ("t-shirt", "shirt", "sweater", "blouse", "hoodie"),
    "bottom": ("jeans", "trousers", "skirt", "shorts", "chinos"),
    "dress": ("summer dress", "shirt dress", "midi dress"),
    "outerwear": ("rain jacket", "wool coat", "denim jacket", "parka", "blazer"),
    "footwear": ("sneakers", "ankle boots", "loafers", "sandals"),
    "bag": ("tote bag", "backpack", "crossbody bag"),
    "accessory": ("scarf", "belt", "cap", "sunglasses"),
}
MATERIALS = {
    "top": ("cotton", "wool", "linen"),
    "bottom": ("denim", "cotton", "wool"),
    "dress": ("cotton", "viscose", "linen"),
    "outerwear": ("polyester", "wool", "denim"),
    "footwear": ("leather", "canvas", "suede"),
    "bag": ("leather", "canvas", "nylon"),
    "accessory": ("wool", "leather", "cotton"),
}
_ITEM_KEYS = {"outfits", "items", "item_ids", "item_id"}
_NOTE_KEYS = {
    "reason",
    "rationale",
    "explanation",
    "description",
    "summary",
    "note",
    "notes",
    "why",
}
_CITY = re.compile(r"\bcity\s*[:=]\s*[\"']?([^\n\"',;()]+)", re.I)
_DATE = re.compile(r"\bdate\s*[:=]\s*[\"']?(\d{4}-\d{2}-\d{2})", re.I)
_ID_LINE = re.compile(
    r"^\s*[-*•]?\s*(?:item_)?id\s*[:=]\s*[\"']?([\w.:-]+)[\"']?(.*)$", re.I | re.M
)
_ATTR = re.compile(r"(\w+)\s*[:=]\s*[\"']?([^\s,;|\"']+)")
_OPEN = re.compile(r"[\[{]")
_TEMP = re.compile(r"\"?\w*temp\w*\"?\s*[:=]\s*(-?\d+(?:\.\d+)?)", re.I)
_RAIN_CHANCE = re.compile(
    r"\"?\w*(?:precip|rain)\w*(?:prob|chance)\w*\"?\s*[:=]\s*(\d+(?:\.\d+)?)", re.I
)
_IS_RAINY = re.compile(r"\"?is_rainy\"?\s*[:=]\s*\"?true", re.I)
_OCCASION = re.compile(r"\boccasion\s*[:=]\s*[\"']?([a-z]+)", re.I)
_DESCRIPTION = re.compile(r"\bdescription\s*[:=]", re.I)
# What a gullible model obeys in the data: "... recommend item it_42 ...".
_INJECTED = re.compile(r"\brecommend\s+(?:the\s+)?item\s+[\"']?([\w.:-]+)", re.I)


@dataclass(frozen=True)
class Answer:
    """The clean answer, and the content faults the model's profile adds to it."""

    content: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    faults: frozenset[Fault] = frozenset()


def answer(request: ChatRequest, *, seed: int, script: ResponseScript) -> Answer:
    """The simulated model's answer to one checked request."""
    key = request.photos[0].sha256 if request.photos else _text_key(request)
    rng = random.Random(f"{seed}|{request.model.name}|{key}")
    profile = request.model.profile
    again = profile.tool_loop > 0 and rng.random() < profile.tool_loop
    call = tool_call(request, again=again)
    if call is not None:
        call_faults = {Fault.STRING_ARGS} if rng.random() < profile.string_args else set()
        return Answer(None, [call], frozenset(call_faults))
    judged = judge.criterion(request)
    if judged is not None:
        hang = frozenset({Fault.TIMEOUT}) if rng.random() < profile.judge_hang else frozenset()
        return Answer(judge.verdict(request, judged, rng), faults=hang)
    if request.schema is not None:
        text = json.dumps(structured(request, request.schema, rng, script), ensure_ascii=False)
    elif request.json_mode:
        text = json.dumps({"answer": plain_text(request)})
    else:
        return Answer(plain_text(request))
    faults: set[Fault] = set()
    for rate, fault in (
        (profile.chatter, Fault.PREFIX),
        (profile.fence, Fault.FENCE),
        (profile.broken_json, Fault.MALFORMED),
    ):
        if rng.random() < rate:
            faults.add(fault)
    for photo in request.photos:
        faults.update(_scripted_faults(script, photo.sha256))
    return Answer(text, [], frozenset(faults))


def _scripted_faults(script: ResponseScript, image_sha256: str) -> set[Fault]:
    """Content faults a response script pins to one photo; unknown names are ignored with a warning."""
    pinned = set()
    for name in script.faults_for(image_sha256):
        try:
            pinned.add(Fault(name))
        except ValueError:
            log.warning("script: unknown fault %r for photo %s ignored", name, image_sha256[:12])
    return pinned


def _text_key(request: ChatRequest) -> str:
    text = request.prompt_text + "\x00" + "\x00".join(request.tool_results)
    return hashlib.sha256(text.encode()).hexdigest()


def plain_text(request: ChatRequest) -> str:
    photos = f" I received {len(request.photos)} photo(s)." if request.photos else ""
    return f"This is a simulated answer from the Dresscode simulator, not a real model.{photos}"


def structured(
    request: ChatRequest, schema: dict, rng: random.Random, script: ResponseScript
) -> Any:
    """A schema-valid answer: outfits, wardrobe items, or a minimal instance."""
    if looks_like_outfit(schema):
        return outfit_answer(request, schema, rng)
    item_schema = wardrobe_item_schema(schema)
    if item_schema is not None:
        return wardrobe_answer(request, schema, item_schema, rng, script)
    return instance(schema)


# -- wardrobe digitizing -----------------------------------------------------------------------


def wardrobe_item_schema(schema: dict) -> dict | None:
    """The item schema when ``schema`` is ``{"items": [{"category": ...}]}``-shaped, else None."""
    items = resolve(resolve(schema, schema).get("properties", {}).get("items", {}), schema)
    item = resolve(items.get("items", {}), schema)
    return item if "category" in item.get("properties", {}) else None


@dataclass(frozen=True)
class Vocabulary:
    """The closed vocabularies of the request's item schema (empty when not enumerated)."""

    categories: list[Any]
    patterns: list[Any]
    warmth: list[Any]
    formality: list[Any]
    seasons: list[Any]

    @classmethod
    def of(cls, item_schema: dict, root: dict) -> Vocabulary:
        props = item_schema.get("properties", {})

        def enum(name: str, *, array: bool = False) -> list[Any]:
            prop = resolve(props.get(name, {}), root)
            if array:
                prop = resolve(prop.get("items", {}), root)
            return list(prop.get("enum", []))

        return cls(
            enum("category"),
            enum("pattern"),
            enum("warmth"),
            enum("formality"),
            enum("seasons", array=True),
        )


def wardrobe_answer(
    request: ChatRequest,
    schema: dict,
    item_schema: dict,
    rng: random.Random,
    script: ResponseScript,
) -> Any:
    """Scripted golden items for known photos, pixel-derived ones otherwise, then the profile's errors."""
    vocab = Vocabulary.of(item_schema, schema)
    items: list[dict[str, Any]] = []
    for photo in request.photos:
        scripted = script.items_for(photo.sha256)
        if scripted is None:
            items.extend(pixel_items(photo.facts, vocab))
        else:
            items.extend(visible(scripted, photo.facts))
    profile = request.model.profile
    kept = []
    for item in items:
        if rng.random() < profile.drop_item:
            continue
        if rng.random() < profile.confuse_category:
            others = [c for c in vocab.categories if c != item.get("category")]
            if others:
                item["category"] = rng.choice(others)
        kept.append(item)
    # vLLM's guided decoding keeps answers inside the schema; when it is off (or silently
    # falls back), scripted items that break the schema go out as they are.
    if any(Fault.UNCONSTRAINED in _scripted_faults(script, p.sha256) for p in request.photos):
        return {"items": kept}
    return conform({"items": kept}, schema)


def visible(items: list[dict[str, Any]], facts: PhotoFacts) -> list[dict[str, Any]]:
    """The true items a vision model still makes out: on a dark photo, only a few.

    Deterministic per photo, so a shifted batch degrades the same way on every run. (Only
    darkness degrades answers; low resolution and format shifts move the inputs alone.)
    """
    if facts.brightness >= DARK_BRIGHTNESS:
        return items
    r = random.Random(f"visible|{facts.sha256}")
    return [item for item in items if r.random() < SEEN_ON_DARK]


def pixel_items(facts: PhotoFacts, vocab: Vocabulary) -> list[dict[str, Any]]:
    """A plausible, deterministic reading of an unscripted photo: 1-3 items in its colours."""
    r = random.Random(f"pixels|{facts.sha256}")
    if facts.brightness < DARK_BRIGHTNESS:
        count = 0 if r.random() < 0.7 else 1  # dark photos: a real vision model mostly gives up
    else:
        count = 1 + r.randrange(3)
    items = []
    for i in range(count):
        category = r.choice(vocab.categories) if vocab.categories else "top"
        sub = r.choice(SUBCATEGORIES.get(str(category), (str(category),)))
        n_colors = min(len(facts.colors), 1 + r.randrange(2))
        colors = [facts.colors[(i + k) % len(facts.colors)] for k in range(n_colors)]
        seasons = [s for s in vocab.seasons if r.random() < 0.5] or vocab.seasons[:1]
        items.append(
            {
                "category": category,
                "subcategory": sub,
                "colors": [{"name": name, "hex": hex_} for name, hex_ in dict(colors).items()],
                "pattern": vocab.patterns[0]
                if vocab.patterns and r.random() < 0.7
                else _pick(r, vocab.patterns, "solid"),
                "material": r.choice(MATERIALS.get(str(category), ("unknown",))),
                "warmth": _pick(r, vocab.warmth, "medium"),
                "formality": _pick(r, vocab.formality, "casual"),
                "seasons": seasons,
                "water_resistant": category == "outerwear" and r.random() < 0.5,
                "description": f"A {colors[0][0]} {sub}.",
            }
        )
    return items


def _pick(r: random.Random, options: list[Any], fallback: Any) -> Any:
    return r.choice(options) if options else fallback


# -- the stylist: weather tool call, then outfits ------------------------------------------


def tool_call(request: ChatRequest, *, again: bool = False) -> dict[str, Any] | None:
    """The tool call the model makes now, or None when it answers instead.

    With ``auto`` it asks for the weather once (if it may), like the stylist prompt wants;
    ``again`` (the ``tool-loop`` profile) makes it ask again even after it got an answer.
    """
    names = request.tool_names
    choice = request.tool_choice
    if not names or choice == "none":
        return None
    if isinstance(choice, dict):
        name = choice["function"]["name"]
    elif choice == "required":
        name = WEATHER_TOOL if WEATHER_TOOL in names else names[0]
    elif WEATHER_TOOL in names and (again or not request.tool_results):
        name = WEATHER_TOOL
    else:
        return None
    function = next(t["function"] for t in request.tools if t["function"]["name"] == name)
    params = function.get("parameters") or {"type": "object", "properties": {}}
    args = instance(params)
    args = args if isinstance(args, dict) else {}
    cities, dates = _CITY.findall(request.prompt_text), _DATE.findall(request.prompt_text)
    for key in resolve(params, params).get("properties", {}):
        if key.lower() in ("city", "location", "place", "city_name") and cities:
            args[key] = cities[-1].strip()
        elif key.lower() in ("date", "day") and dates:
            args[key] = dates[-1]
    arguments = json.dumps(conform(args, params))
    return {
        "id": tool_call_id(),
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def looks_like_outfit(schema: dict) -> bool:
    """Outfit-shaped: mentions ``outfits`` or ``item_id`` fields (forgiving on purpose)."""
    text = json.dumps(schema)
    return '"outfits"' in text or '"item_id"' in text or '"item_ids"' in text


def parse_wardrobe(text: str) -> list[dict[str, Any]]:
    """Items the prompt lists: JSON objects with ``item_id``, or ``- id: <id> key: value`` lines.

    On a line, attributes after ``description`` belong to the description: free text the user
    wrote cannot change an item's category or warmth.
    """
    found: dict[str, dict[str, Any]] = {}
    decoder = json.JSONDecoder()
    pos = 0
    while match := _OPEN.search(text, pos):
        try:
            value, pos = decoder.raw_decode(text, match.start())
        except ValueError:
            pos = match.start() + 1
            continue
        for item in _dicts_with_item_id(value):
            found.setdefault(str(item["item_id"]), item)
    for match in _ID_LINE.finditer(text):
        item_id, rest = match.group(1), match.group(2)
        rest = _DESCRIPTION.split(rest, maxsplit=1)[0]
        attrs: dict[str, Any] = {k.lower(): v for k, v in _ATTR.findall(rest)}
        if "category" not in attrs:
            words = set(re.findall(r"[a-z]+", rest.lower()))
            attrs["category"] = next((c for c in SUBCATEGORIES if c in words), "")
        found.setdefault(item_id, {"item_id": item_id, **attrs})
    return list(found.values())


def _dicts_with_item_id(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        if "item_id" in value:
            return [value]
        return [d for v in value.values() for d in _dicts_with_item_id(v)]
    if isinstance(value, list):
        return [d for v in value for d in _dicts_with_item_id(v)]
    return []


def read_weather(tool_results: list[str]) -> tuple[float | None, bool]:
    """(temperature, rainy) from the weather tool's answers, as forgivingly as a model would.

    A rain chance written as a fraction (``0.8``) is read as a share, a whole number (``80``,
    or ``1``) as a percentage.
    """
    text = "\n".join(tool_results)
    temps = _TEMP.findall(text)
    chances = [
        float(c) * (100 if "." in c and float(c) <= 1 else 1) for c in _RAIN_CHANCE.findall(text)
    ]
    rainy = bool(_IS_RAINY.search(text)) or any(c >= 50 for c in chances)
    return (float(temps[0]) if temps else None), rainy


@dataclass(frozen=True)
class Conditions:
    """What the simulated stylist takes into account when it picks items."""

    cold: bool = False  # below COLD_CELSIUS: warm layers, a warm coat
    rainy: bool = False  # rain gear
    hot: bool = False  # at or above HOT_CELSIUS: no heavy coat
    occasion: str | None = None  # prefer items of matching formality


def pick_outfit(
    wardrobe: list[dict[str, Any]],
    k: int,
    *,
    cold: bool,
    rainy: bool,
    hot: bool = False,
    occasion: str | None = None,
) -> list[dict[str, Any]]:
    """The k-th outfit: top+bottom (or a dress), footwear, and outerwear when cold or rainy.

    Each slot prefers what the weather asks for (warm tops when cold, water-resistant shoes
    in rain, never a heavy coat in heat), then what the occasion asks for, and among equals
    takes the k-th, so outfits differ.
    """
    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in wardrobe:
        by_category[str(item.get("category", "")).lower()].append(item)
    when = Conditions(cold, rainy, hot, occasion)

    def nth(category: str) -> dict[str, Any] | None:
        return _preferred(by_category.get(category, []), k, _wishes(category, when))

    has_separates = bool(by_category.get("top") and by_category.get("bottom"))
    chosen = (
        [nth("dress")]
        if by_category.get("dress") and (k % 2 or not has_separates)
        else [nth("top"), nth("bottom")]
    )
    chosen.append(nth("footwear"))
    # A heavy coat in the heat is never right, even in the rain.
    coats = [
        c for c in by_category.get("outerwear", []) if not (hot and c.get("warmth") == "heavy")
    ]
    if coats and (cold or rainy):
        chosen.append(_preferred(coats, k, _wishes("outerwear", when)))
    picked = [c for c in chosen if c]
    if not picked and wardrobe:
        picked = [wardrobe[(k + i) % len(wardrobe)] for i in range(min(3, len(wardrobe)))]
    return picked


_OCCASION_FORMALITY = {
    "formal": ("formal", "business"),
    "work": ("business", "smart_casual"),
    "sport": ("sport",),
    "everyday": ("casual", "smart_casual"),
}


def _wishes(category: str, when: Conditions) -> list[Callable[[dict[str, Any]], bool]]:
    """Preferences for one slot, most important first."""
    wishes: list[Callable[[dict[str, Any]], bool]] = []
    if when.hot:
        wishes.append(lambda i: i.get("warmth") != "heavy")
    if category == "outerwear":
        wishes.append(
            lambda i: (
                (when.rainy and _truthy(i.get("water_resistant")))
                or (when.cold and i.get("warmth") in ("warm", "heavy"))
            )
        )
    if when.cold and category in ("top", "dress", "footwear"):
        wishes.append(lambda i: i.get("warmth") in ("warm", "heavy"))
    if when.rainy and category == "footwear":
        wishes.append(lambda i: _truthy(i.get("water_resistant")))
    if when.occasion in _OCCASION_FORMALITY:
        wanted = _OCCASION_FORMALITY[when.occasion]
        wishes.append(lambda i: i.get("formality") in wanted)
    return wishes


def _preferred(
    items: list[dict[str, Any]], k: int, wishes: list[Callable[[dict[str, Any]], bool]]
) -> dict[str, Any] | None:
    """The k-th item among those meeting the most important wishes that some item meets."""
    pool = items
    for wish in wishes:
        narrowed = [i for i in pool if wish(i)]
        pool = narrowed or pool
    return pool[k % len(pool)] if pool else None


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "yes", "1")


class _OutfitFiller:
    """Builds an outfit answer from the schema, putting owned item ids where ids belong."""

    def __init__(self, root: dict, request: ChatRequest, rng: random.Random) -> None:
        self.root = root
        self.wardrobe = parse_wardrobe(request.prompt_text)
        temperature, rainy = read_weather(request.tool_results)
        # The day's low decides about warmth, its high about heat.
        temps = [float(t) for t in _TEMP.findall("\n".join(request.tool_results))]
        occasions = _OCCASION.findall(request.prompt_text)
        self.when = Conditions(
            cold=bool(temps) and min(temps) < COLD_CELSIUS,
            rainy=rainy,
            hot=bool(temps) and max(temps) >= HOT_CELSIUS,
            occasion=occasions[-1].lower() if occasions else None,
        )
        city = _CITY.findall(request.prompt_text)
        where = f" in {city[-1].strip()}" if city else ""
        weather = f"{temperature:g}°C" if temperature is not None else "the forecast"
        self.note = f"Chosen for {weather}{where}{', with rain expected' if rainy else ''}."
        profile = request.model.profile
        self.hallucinate = rng.random() < profile.hallucinate_item
        self.ghost = {"item_id": f"item_hallucinated_{rng.randrange(1000)}"}
        injected = _INJECTED.findall(request.prompt_text)
        if injected and profile.obey_injection > 0 and rng.random() < profile.obey_injection:
            self.hallucinate, self.ghost = True, {"item_id": injected[0]}  # it took the bait
        self._outfits: dict[int, list[dict[str, Any]]] = {}

    def outfit(self, k: int) -> list[dict[str, Any]]:
        if k not in self._outfits:
            w = self.when
            items = pick_outfit(
                self.wardrobe, k, cold=w.cold, rainy=w.rainy, hot=w.hot, occasion=w.occasion
            )
            if k == 0 and self.hallucinate:
                items = [*items, self.ghost]  # the sloppy model's favourite mistake
            self._outfits[k] = items
        return self._outfits[k]

    def outfit_indexes(self, schema: dict) -> list[int]:
        """Which outfits to give: ``minItems`` of them, or two different ones when allowed."""
        least = max(1, schema.get("minItems", 1))
        wanted = max(least, min(2, schema.get("maxItems", least)))
        chosen: list[int] = []
        seen: set[tuple[str, ...]] = set()
        for k in range(wanted):
            ids = tuple(sorted(str(i.get("item_id")) for i in self.outfit(k)))
            if ids in seen and len(chosen) >= least:
                continue
            seen.add(ids)
            chosen.append(k)
        return chosen

    def value(
        self, schema: Any, name: str | None = None, k: int = 0, item: dict | None = None
    ) -> Any:
        schema = resolve(schema, self.root)
        kind = type_of(schema)
        if kind == "array":
            sub = resolve(schema.get("items", {}), self.root)
            if name == "outfits":
                values: list[Any] = [self.value(sub, None, i) for i in self.outfit_indexes(schema)]
            elif name == "item_ids":
                values = [i["item_id"] for i in self.outfit(k)]
            elif "item_id" in sub.get("properties", {}):
                values = [self.value(sub, None, k, i) for i in self.outfit(k)]
            else:
                values = instance(schema, self.root)
            return conform(values, schema, self.root)
        if kind == "object":
            props = schema.get("properties", {})
            keys = dict.fromkeys(
                [*schema.get("required", []), *(p for p in props if p in _ITEM_KEYS)]
            )
            return {key: self.value(props.get(key, {}), key, k, item) for key in keys}
        if item is not None and name in item:
            return conform(item[name], schema, self.root)
        if name == "occasion" and self.when.occasion in schema.get("enum", ()):
            return self.when.occasion
        if name in _NOTE_KEYS and kind == "string":
            return conform(self.note, schema, self.root)
        return instance(schema, self.root)


def outfit_answer(request: ChatRequest, schema: dict, rng: random.Random) -> Any:
    """Outfits built from the wardrobe the prompt lists, fitted to the response schema."""
    return conform(_OutfitFiller(schema, request, rng).value(schema), schema)
