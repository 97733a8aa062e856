"""Colour families: "similar" and "the same garment" compare families, not exact names.

The digitizer names colours from an open list (the golden set uses 18); a navy shirt and a
blue one are the same family, a navy one and a black one are not. Names outside the table
are their own family.
"""

from __future__ import annotations

FAMILIES: dict[str, tuple[str, ...]] = {
    "black": ("black", "charcoal", "jet"),
    "white": ("white", "ivory", "cream", "off-white"),
    "grey": ("grey", "gray", "silver", "light grey", "dark grey"),
    "blue": ("navy", "blue", "light blue", "denim", "sky blue", "royal blue", "cobalt"),
    "red": ("red", "burgundy", "maroon", "wine", "crimson"),
    "pink": ("pink", "rose", "blush", "fuchsia", "magenta"),
    "yellow-orange": ("yellow", "orange", "mustard", "gold", "rust"),
    "green": ("green", "olive", "khaki", "teal", "mint", "forest green", "sage"),
    "brown": ("brown", "beige", "camel", "tan", "chocolate", "taupe", "sand"),
    "purple": ("purple", "lilac", "lavender", "violet", "plum"),
}
_FAMILY_OF = {name: family for family, names in FAMILIES.items() for name in names}


def family(colour: str) -> str:
    """The family of a colour name ("" for no colour)."""
    name = " ".join(colour.lower().split())
    return _FAMILY_OF.get(name, name)
