"""What is embedded for an item: its colours, category and kind, then its description.

"navy top: t-shirt. Navy cotton t-shirt." The description is the model's own words about the
garment (the issue's "a good thing to embed"); colours and category go first so that an item
with an empty, emoji-only or unreadable description still has a text that says what it is,
and so that "similar" leans on what users mean by it (same kind, same colour family).
Measured with the local model on the golden wardrobe items (``docs/benchmarks.md``, "Item
embeddings"): this text, embedded as a passage, gives precision@5 0.87; the description alone
0.84; the description followed by every attribute (material, warmth, formality, pattern)
0.72-0.76 — the attributes every item shares drown the ones that tell items apart.

The description is cut to ``DRESSCODE_EMBEDDING_MAX_CHARS``: a 10 KB description says nothing
a 1,000-character one does not, and would cost the endpoint seconds (the local model windows
long inputs). Non-Latin text is kept as it is: the model is multilingual.

``RECIPE`` names this recipe: it is part of the model record an embedding is stored with, so
changing how texts are built re-embeds every item, like a model change does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

RECIPE = "item-text-v1"


def item_text(item: Mapping[str, Any], *, max_chars: int, prefix: str | None = None) -> str:
    """The text embedded for one ``wardrobe_items`` row (corrections applied)."""
    description = " ".join(str(item.get("description") or "").split())[:max_chars]
    category = str(item.get("category") or "item")
    sub = str(item.get("subcategory") or "")
    colours = ", ".join(_names(item.get("color_names")))
    head = f"{colours} {category}" if colours else category
    head += f": {sub}." if sub and sub != category else "."
    text = f"{head} {description}" if description else head
    return f"{prefix.rstrip()} {text}" if prefix else text


def _names(value: Any) -> list[str]:
    if value is None or isinstance(value, str):
        return [value] if value else []
    if isinstance(value, Sequence) or hasattr(value, "tolist"):
        return [str(v) for v in list(value) if v]
    return []


def text_sha(text: str) -> str:
    """The key of a text: an item whose text did not change is not embedded again."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]
