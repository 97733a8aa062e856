"""The user's style features as one line of the stylist's prompt: ``name=value`` pairs.

The model reads the wardrobe in outline before its items: up to :data:`MAX_STYLE_FEATURES`
pairs, those of :data:`STYLE_FIRST` first — what the wardrobe is made of (``style_clusters``,
"blue top x5,black footwear x3"), its colours, then what the user actually wears — and the
rest (the category, warmth and formality shares) by name. It is user data like the wardrobe:
every key and value goes through :func:`dresscode.outfits.rules.clean_text`.

Choices a reader may wonder about:

* A list is its values joined by commas, up to :data:`MAX_LIST_VALUES`, each cleaned and
  capped on its own: one cap on the joined string cut the clusters after the second and a
  worn pair (two 24-character item ids) inside its second id.
* An empty list is left out like a missing value: ``style_clusters`` is empty until the
  embedding DAG has reached the user's items, which means "unknown", not "nothing"; an empty
  colour list says nothing ``wardrobe_size`` does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dresscode.outfits.rules import clean_text

MAX_STYLE_FEATURES = 16
MAX_VALUE_CHARS = 40  # a key, a number, a word: as for a wardrobe field
MAX_LIST_VALUES = 6  # style_clusters holds up to 6 (embeddings.clusters.MAX_CLUSTERS)
MAX_LIST_VALUE_CHARS = 64  # "item_a+item_b" of worn_pairs is 49
# The style features the stylist reads first (the rest follow by name, up to the cap): what the
# user owns in outline, then what they actually wear (worn_pairs names their item ids).
STYLE_FIRST = (
    "wardrobe_size",
    "style_clusters",
    "top_colors",
    "worn_colors",
    "worn_pairs",
    "worn_count_30d",
    "outerwear_count",
    "water_resistant_count",
)
_SKIP = frozenset({"user_id", "event_timestamp", "created", "created_at", "date", "day"})


def style_summary(style: dict[str, Any]) -> str:
    """The user's style features as one line of ``name=value`` pairs (data, cleaned)."""
    parts = []
    first = {name: rank for rank, name in enumerate(STYLE_FIRST)}
    for key in sorted(style, key=lambda k: (first.get(k, len(first)), k)):
        value = style[key]
        if key in _SKIP or value is None or isinstance(value, dict):
            continue
        if isinstance(value, float):
            if value != value:
                continue
            value = round(value, 2)
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            text = clean_text(value, MAX_VALUE_CHARS)  # numbers, words, timestamps
        else:  # a list (from Feast's online store, a numpy array)
            names = [clean_text(v, MAX_LIST_VALUE_CHARS) for v in list(value)[:MAX_LIST_VALUES]]
            text = ",".join(n for n in names if n)
            if not text:
                continue
        parts.append(f"{clean_text(key, MAX_VALUE_CHARS)}={text}")
        if len(parts) == MAX_STYLE_FEATURES:
            break
    return "; ".join(parts) or "unknown (no style features yet)"
