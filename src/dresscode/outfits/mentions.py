"""The text users read names only garments they own.

An outfit's ``reason`` and the suggestion's ``notes`` are shown to the user as written. A
model that says "your leather boots" to someone without boots has hallucinated as surely as
one that names an unowned item id, so :func:`unowned_mentions` finds the garment nouns of a
text that no owned item accounts for, and the validator counts each as a hallucinated item
(``text:<noun>`` beside the unowned ids) and withholds the text.

A noun is accounted for when an owned item is of the same **kind** (its subcategory,
description or category names a word of the kind: "coat" is owned by a "wool coat" or a
"parka", "sneakers" by "trainers", but not by "sandals"); generic words ("shoes", "top",
"bottoms") by any item of their category. A mention right after a negation ("no coat needed",
"without a jacket") is not a claim and is skipped. The vocabulary is English, like the
prompts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# Kinds of garment: the words that name them (singular and plural spelled out: "jeans" and
# "shorts" have no singular, and a stemmer would turn "dress" into "dres").
KINDS: dict[str, tuple[str, ...]] = {
    "coat": ("coat", "coats", "overcoat", "parka", "parkas", "anorak", "raincoat", "raincoats",
             "trench", "puffer", "jacket", "jackets", "blazer", "blazers", "windbreaker", "mac"),
    "knit": ("sweater", "sweaters", "jumper", "jumpers", "pullover", "cardigan", "cardigans",
             "hoodie", "hoodies", "sweatshirt", "fleece", "knit", "turtleneck"),
    "shirt": ("shirt", "shirts", "t-shirt", "t-shirts", "tee", "tees", "blouse", "blouses",
              "polo", "tank", "camisole"),
    "trousers": ("trousers", "pants", "jeans", "chinos", "slacks", "leggings", "joggers"),
    "shorts": ("shorts",),
    "skirt": ("skirt", "skirts"),
    "dress": ("dress", "dresses", "gown", "jumpsuit"),
    "boots": ("boot", "boots", "wellies", "wellingtons"),
    "sneakers": ("sneaker", "sneakers", "trainer", "trainers"),
    "sandals": ("sandal", "sandals", "flip-flops", "espadrilles"),
    "smart_shoes": ("loafer", "loafers", "oxfords", "brogues", "heels", "pumps", "flats"),
    "scarf": ("scarf", "scarves"),
    "hat": ("hat", "hats", "cap", "caps", "beanie", "beanies"),
    "gloves": ("gloves", "mittens"),
    "belt": ("belt", "belts"),
    "bag": ("bag", "bags", "tote", "backpack", "handbag", "purse", "crossbody"),
    "umbrella": ("umbrella", "umbrellas"),
    "sunglasses": ("sunglasses",),
    "tights": ("tights", "socks", "stockings"),
}  # fmt: skip
# Generic words: owned by any item of the category.
GENERIC: dict[str, str] = {
    "shoes": "footwear", "shoe": "footwear", "footwear": "footwear",
    "top": "top", "tops": "top", "bottoms": "bottom", "outerwear": "outerwear",
}  # fmt: skip
_KIND_OF = {word: kind for kind, words in KINDS.items() for word in words}
_NEGATIONS = frozenset({"no", "not", "without", "skip", "never", "instead", "nor", "don't",
                        "won't", "needn't", "leave"})  # fmt: skip
_WORD = re.compile(r"[a-z]+(?:[-'][a-z]+)*")
_NEGATION_REACH = 3  # words between a negation and the noun it negates ("no heavy wool coat")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def owned_kinds(wardrobe: Iterable[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """The garment kinds and the categories the wardrobe holds."""
    kinds: set[str] = set()
    categories: set[str] = set()
    for item in wardrobe:
        categories.add(str(item.get("category") or "").lower())
        text = " ".join(str(item.get(k) or "") for k in ("subcategory", "description"))
        kinds.update(_KIND_OF[w] for w in _words(text) if w in _KIND_OF)
    return kinds, categories


def unowned_mentions(text: Any, wardrobe: Iterable[dict[str, Any]]) -> list[str]:
    """Garment nouns in ``text`` that no owned item accounts for (first spelling, once each)."""
    if not text:
        return []
    kinds, categories = owned_kinds(wardrobe)
    words = _words(str(text))
    found: dict[str, str] = {}  # kind or category -> the word the text used
    for n, word in enumerate(words):
        if word in _KIND_OF:
            key, owned = _KIND_OF[word], _KIND_OF[word] in kinds
        elif word in GENERIC:
            key, owned = GENERIC[word], GENERIC[word] in categories
        else:
            continue
        if owned or key in found:
            continue
        if _NEGATIONS.intersection(words[max(0, n - _NEGATION_REACH) : n]):
            continue
        found[key] = word
    return list(found.values())
