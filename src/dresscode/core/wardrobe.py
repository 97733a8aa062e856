"""A wardrobe's semantics: which digitization of a photo is current, which item took over
from which, and how the users' correction events fold into the items.

A photo may be digitized more than once: ``wardrobe_redigitize`` runs existing photos through a
newly promoted digitizer. Every digitization's items stay in ``wardrobe_items`` (the lake keeps
history: an evaluation may still ask what v1 said), and the readers of a wardrobe keep only a
photo's **newest digitization**: the rows with the latest ``digitized_at`` of that user and
photo. Rows written before the column existed count as the oldest.

A re-digitized item names the item it takes over from (``replaces``: the same photo's earlier
item it was matched to, see ``ingest.redigitize``), so the user's corrections follow the garment:
an event naming the old item applies to its successor, through any chain (v1 -> v2 -> v3).

Pure functions over ``wardrobe_items`` rows and ``feedback`` events (:func:`apply_event`);
``tables.current_wardrobe_items`` reads the lake and applies them.
"""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger(__name__)

DIGITIZED_AT = "digitized_at"  # ISO 8601 UTC (ms) of the digitization that wrote the row
REPLACES = "replaces"  # the item id this row took over from, or null

# The feedback events that change a wardrobe (``feedback`` writes them; values in the lake).
WARDROBE_EVENTS: tuple[str, ...] = ("item_corrected", "item_deleted", "item_added")
# The user's answer to a ``possible_duplicate_of`` mark (item_embeddings): a confirmed
# duplicate leaves the wardrobe like a deletion; a rejected one stays. Not corrections of the
# digitizer (the same garment photographed twice is no digitizer error): kept apart from
# WARDROBE_EVENTS, which monitoring counts as corrections.
DUPLICATE_CONFIRMED = "duplicate_confirmed"
DUPLICATE_EVENTS: tuple[str, ...] = (DUPLICATE_CONFIRMED, "duplicate_rejected")
# The feedback event naming the items a user wore on a day (features read it: worn palette).
WORE_INSTEAD = "wore_instead"
# The digitizer item's fields a feedback event may name (``item_corrected.changes``).
ITEM_FIELDS: tuple[str, ...] = (
    "category",
    "subcategory",
    "colors",
    "pattern",
    "material",
    "warmth",
    "formality",
    "seasons",
    "water_resistant",
    "description",
)
# Those a correction replaces as they are; ``colors`` sets both colour lists.
_CORRECTABLE = tuple(f for f in ITEM_FIELDS if f != "colors")


def one_row_per_item(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each item id once: the row of its latest ``digitized_at`` (a table format keeps no file
    order, so "the part written last" is not a thing a reader can rely on). Rows in the order
    of their stamps (stable), each where its item's last row was."""
    kept: dict[Any, dict[str, Any]] = {}
    for row in sorted(items, key=stamp_of):
        kept.pop(row.get("item_id"), None)  # the later row takes the later place
        kept[row.get("item_id")] = row
    return list(kept.values())


def newest_digitization(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Only each (user, photo)'s rows of its newest digitization (ties keep all their rows);
    rows without a photo column are kept."""
    newest: dict[tuple[str, str], str] = {}
    for row in items:
        if "image_sha256" in row:
            photo = _photo(row)
            newest[photo] = max(newest.get(photo, ""), stamp_of(row))
    return [r for r in items if "image_sha256" not in r or stamp_of(r) == newest[_photo(r)]]


def stamp_of(row: dict[str, Any]) -> str:
    """The row's ``digitized_at``; rows written before the column existed: "" (the oldest)."""
    stamp = row.get(DIGITIZED_AT)
    return "" if stamp is None else str(stamp)


def _photo(row: dict[str, Any]) -> tuple[str, str]:
    sha = row.get("image_sha256")
    return str(row.get("user_id")), "" if sha is None else str(sha)


def successors(items: list[dict[str, Any]]) -> dict[str, str]:
    """Old item id -> the id of the item that holds its place now (chains followed to the end).

    Only the rows given count: a caller that reads "as of" a moment passes the rows of that
    moment, so a later re-digitization does not move an earlier event.
    """
    direct: dict[str, str] = {}
    for row in items:
        new, old = row.get("item_id"), row.get(REPLACES)
        if isinstance(old, str) and old and old != new:
            direct[old] = str(new)
    resolved: dict[str, str] = {}
    for old, new in direct.items():
        seen = {old}
        while new in direct and new not in seen:  # a cycle (never written) ends the walk
            seen.add(new)
            new = direct[new]
        resolved[old] = new
    return resolved


# --- folding the users' events into their items ------------------------------------------


def apply_event(current: dict[str, dict[str, Any]], event: dict[str, Any]) -> None:
    """Fold one correction event into ``current`` (item id -> row); never raises."""
    item_id, user = str(event.get("item_id")), str(event.get("user_id"))
    try:
        payload = json.loads(event["payload"])
        row = current.get(item_id)
        kind = event["event_type"]
        if kind == "item_added" and row is None:
            current[item_id] = _added_row(item_id, event, payload["item"])
        elif row is None or str(row.get("user_id")) != user:
            return  # not there at this time (deleted, not yet added) or not the user's
        elif kind in ("item_deleted", DUPLICATE_CONFIRMED):
            del current[item_id]
        elif kind == "item_corrected":
            _correct(row, payload["changes"])
    except (KeyError, TypeError, ValueError) as exc:
        log.warning(
            "skipped feedback event %s of %s: unreadable_payload (%s)",
            event.get("event_id"),
            user,
            type(exc).__name__,
        )


def _correct(row: dict[str, Any], changes: dict[str, Any]) -> None:
    for field, value in changes.items():
        if field == "colors":
            row["color_names"] = [str(c["name"]) for c in value]
            row["color_hexes"] = [str(c["hex"]) for c in value]
        elif field in _CORRECTABLE:
            row[field] = value


def _added_row(item_id: str, event: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    version = str(event.get("prompt_version") or "")
    row: dict[str, Any] = {
        "item_id": item_id,
        "user_id": str(event["user_id"]),
        "image_sha256": event.get("image_sha256"),
        "prompt_version": int(version) if version.isdigit() else None,
        "color_names": [],
        "color_hexes": [],
        "date": str(event["event_time"])[:10],
    }
    _correct(row, {k: v for k, v in item.items() if k == "colors" or k in _CORRECTABLE})
    return row


def columns_of(names: list[str], current: dict[str, dict[str, Any]]) -> list[str]:
    """The table's columns, then any an added item brought."""
    names = list(names)
    for row in current.values():
        names += [k for k in row if k not in names]
    return names
