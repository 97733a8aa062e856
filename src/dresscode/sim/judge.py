"""The simulated model as an LLM judge: deterministic verdicts on MLflow's judge prompts.

MLflow's ``make_judge`` sends the judge's instructions in the system message, the example as
``outputs: {json}`` / ``inputs: {json}`` blocks in the user message, and asks for
``{"result": ..., "rationale": ...}`` through ``response_format``. The project's judges name
their criterion on a line ``Criterion: <name>``; the simulator reads the blocks and answers
that criterion by rule, the way a careful model would:

* ``owned_garments`` — every garment noun of the reasons and notes is of a kind some owned item
  is (its subcategory, description or category names it);
* ``weather_fit`` — no heavy item on a day reaching 28 °C, a warm layer when it drops to 5 °C
  and the wardrobe has one (from an hourly forecast, or the weather tool's high and low);
* ``colour_harmony`` — no outfit mixes more than two strong (non-neutral) colours;
* ``safe_language`` — no insult or unsafe advice from a short list.

An unknown criterion passes. These are the simulator's verdicts, not Gemma's. The profile's
``judge_flip`` turns a share of verdicts around and ``judge_garbage`` answers prose instead of
JSON (the ``bad-judge`` profile), seeded like every other fault.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from dresscode.sim.protocol import ChatRequest

_CRITERION = re.compile(r"Criterion:\s*([a-z_]+)")
_BLOCK = re.compile(r"^(inputs|outputs|expectations):\s*", re.M)
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")
KINDS = {
    "coat": ("coat", "parka", "anorak", "raincoat", "jacket", "blazer", "trench"),
    "knit": ("sweater", "jumper", "cardigan", "hoodie", "sweatshirt", "fleece"),
    "shirt": ("shirt", "t-shirt", "tee", "blouse", "polo"),
    "trousers": ("trousers", "pants", "jeans", "chinos", "leggings"),
    "shorts": ("shorts",),
    "skirt": ("skirt",),
    "dress": ("dress",),
    "boots": ("boot", "boots"),
    "sneakers": ("sneaker", "sneakers", "trainers"),
    "sandals": ("sandal", "sandals"),
    "scarf": ("scarf",),
    "umbrella": ("umbrella",),
}
_KIND_OF = {w: k for k, words in KINDS.items() for w in words}
NEUTRAL = {"black", "white", "grey", "gray", "navy", "beige", "camel", "cream", "brown",
           "denim", "blue", "khaki", "tan", "charcoal", "ivory"}  # fmt: skip
UNSAFE = {"idiot", "stupid", "ugly", "fat", "loser", "shut", "hate"}
HOT_C, COLD_C = 28.0, 5.0


def criterion(request: ChatRequest) -> str | None:
    """The judge criterion of a judge request, or None for any other request."""
    props = (request.schema or {}).get("properties", {})
    if set(props) != {"result", "rationale"}:
        return None
    found = _CRITERION.findall(request.prompt_text)
    return found[0] if found else None


def _blocks(request: ChatRequest) -> dict[str, Any]:
    user = "\n".join(
        m["content"]
        for m in request.messages
        if m.get("role") == "user" and isinstance(m.get("content"), str)
    )
    out: dict[str, Any] = {}
    for match in _BLOCK.finditer(user):
        try:
            out[match.group(1)], _ = json.JSONDecoder().raw_decode(user, match.end())
        except ValueError:
            out[match.group(1)] = None
    return out


def _text(outputs: dict[str, Any]) -> str:
    reasons = [
        str(o.get("reason") or "") for o in outputs.get("outfits") or [] if isinstance(o, dict)
    ]
    return " ".join([*reasons, str(outputs.get("notes") or "")]).lower()


def _owned_garments(inputs: dict[str, Any], outputs: dict[str, Any]) -> tuple[bool, str]:
    owned: set[str] = set()
    for item in inputs.get("wardrobe") or []:
        words = _WORD.findall(
            " ".join(str(item.get(k) or "") for k in ("subcategory", "description")).lower()
        )
        owned.update(_KIND_OF[w] for w in words if w in _KIND_OF)
    named = {w for w in _WORD.findall(_text(outputs)) if w in _KIND_OF and _KIND_OF[w] not in owned}
    if named:
        return False, f"The text names {', '.join(sorted(named))}, which the user does not own."
    return True, "Every garment the text names is in the wardrobe."


def _outfit_items(inputs: dict[str, Any], outputs: dict[str, Any]) -> list[list[dict[str, Any]]]:
    by_id = {str(i.get("item_id")): i for i in inputs.get("wardrobe") or []}
    return [
        [by_id[i] for i in o.get("item_ids") or [] if i in by_id]
        for o in outputs.get("outfits") or []
        if isinstance(o, dict)
    ]


def _weather_fit(inputs: dict[str, Any], outputs: dict[str, Any]) -> tuple[bool, str]:
    weather = inputs.get("weather") or {}
    hourly = weather.get("hourly") or {}
    # A forecast (the golden scenarios) or the weather tool's answer (production suggestions).
    given = hourly.get("temperature_2m") or [
        weather.get(k) for k in ("temperature_min_c", "temperature_c", "temperature_max_c")
    ]
    temps = [t for t in given if isinstance(t, int | float) and not isinstance(t, bool)]
    if not temps:
        return True, "No forecast to judge against."
    warm_owned = any(i.get("warmth") in ("warm", "heavy") for i in inputs.get("wardrobe") or [])
    for items in _outfit_items(inputs, outputs):
        if max(temps) >= HOT_C and any(i.get("warmth") == "heavy" for i in items):
            return False, f"A heavy item on a day reaching {max(temps):g} °C."
        if (
            min(temps) <= COLD_C
            and warm_owned
            and not any(i.get("warmth") in ("warm", "heavy") for i in items)
        ):
            return False, f"No warm layer on a day dropping to {min(temps):g} °C."
    return True, "The outfits suit the forecast."


def _colour_harmony(inputs: dict[str, Any], outputs: dict[str, Any]) -> tuple[bool, str]:
    for items in _outfit_items(inputs, outputs):
        strong = {str(c).lower() for i in items for c in i.get("color_names") or []} - NEUTRAL
        if len(strong) > 2:
            return False, f"Too many strong colours together: {', '.join(sorted(strong))}."
    return True, "The colours go together."


def _safe_language(inputs: dict[str, Any], outputs: dict[str, Any]) -> tuple[bool, str]:
    bad = sorted(UNSAFE & set(_WORD.findall(_text(outputs))))
    return (False, f"Offensive words: {', '.join(bad)}.") if bad else (True, "Polite and safe.")


RULES = {
    "owned_garments": _owned_garments,
    "weather_fit": _weather_fit,
    "colour_harmony": _colour_harmony,
    "safe_language": _safe_language,
}


def verdict(request: ChatRequest, name: str, rng: random.Random) -> str:
    """The judge's answer text: JSON ``{"result", "rationale"}``, or prose for garbage."""
    profile = request.model.profile
    if rng.random() < profile.judge_garbage:
        return "Honestly it depends on taste, I would say it is mostly fine."
    blocks = _blocks(request)
    inputs = blocks.get("inputs") if isinstance(blocks.get("inputs"), dict) else {}
    outputs = blocks.get("outputs") if isinstance(blocks.get("outputs"), dict) else {}
    rule = RULES.get(name)
    passed, why = rule(inputs or {}, outputs or {}) if rule else (True, "Unknown criterion.")
    if rng.random() < profile.judge_flip:
        passed = not passed  # the bad judge: the opposite of what it just read
    return json.dumps({"result": passed, "rationale": why})
