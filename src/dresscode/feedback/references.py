"""What an event may point at: the user's items, photos and suggestions in the lake.

A schema-valid event is accepted only if, in event-time order, the item, photo or suggestion
it names exists and belongs to the user, the user has no accepted event with its id yet, and an
item is not corrected after it was deleted — checked in that order. :func:`load_state` reads
the references once per run (items, accepted photos from the manifest, suggestions, earlier
deletions, additions and accepted event ids); :func:`resolve` checks one event against them.

Event ids are the user's own: de-duplication is per ``(user_id, event_id)`` and only among
accepted events, so a line another user sends (or a rejected line) never claims an id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from dresscode.core import lake, tables
from dresscode.core.config import Settings
from dresscode.core.wardrobe import DUPLICATE_CONFIRMED, DUPLICATE_EVENTS
from dresscode.feedback.events import (
    COMMON_FIELDS,
    Event,
    Reason,
    Rejection,
    cell_text,
)

if TYPE_CHECKING:
    import pandas as pd

# Events about one existing item of the user's (checked for existence, owner, deletion).
_NAMES_ONE_ITEM = ("item_corrected", "item_deleted", *DUPLICATE_EVENTS)


@dataclass(frozen=True)
class ItemRef:
    user_id: str
    image_sha256: str
    prompt_version: str


@dataclass
class LakeState:
    """The references an event may point at, and the deletions made so far."""

    items: dict[str, ItemRef] = field(default_factory=dict)
    photos: dict[str, dict[str, str]] = field(default_factory=dict)
    """image_sha256 -> {user_id: prompt_version} for every accepted photo."""
    suggestions: dict[tuple[str, str], int] = field(default_factory=dict)
    """(user_id, day) -> number of outfits suggested."""
    deleted_at: dict[str, str] = field(default_factory=dict)
    """item_id -> the earliest time it was deleted."""
    accepted: dict[tuple[str, str], str] = field(default_factory=dict)
    """(user_id, event_id) -> where that accepted event came from (for the duplicate's detail)."""

    def delete(self, item_id: str, at: str) -> None:
        if item_id not in self.deleted_at or at < self.deleted_at[item_id]:
            self.deleted_at[item_id] = at

    def add_item(self, item_id: str, ref: ItemRef) -> None:
        self.items.setdefault(item_id, ref)


def load_state(
    feedback: pd.DataFrame,
    settings: Settings,
    *,
    users: Sequence[str] | None = None,
    days: Sequence[str] | None = None,
) -> LakeState:
    """Items, photos and suggestions from the lake, deletions from ``feedback`` rows.

    ``users``: only what those users' events can point at is read (their items and accepted
    photos: their ``user_bucket`` files, their id range of ``manifests``), and ``days``: only
    those days of suggestions — a run reads what its files are about, not the lake's history.
    None reads everything (the tests of the whole state).
    """
    state = LakeState()
    by_user = None if users is None else [("user_id", "in", sorted(set(users)))]
    if users is not None and not users:
        return state
    items = lake.read_table(
        "wardrobe_items",
        settings,
        columns=["item_id", "user_id", "image_sha256", "prompt_version"],
        filters=by_user,
    )
    for row in items.to_dict("records"):
        ref = ItemRef(
            str(row["user_id"]), str(row["image_sha256"]), cell_text(row["prompt_version"]) or ""
        )
        state.add_item(str(row["item_id"]), ref)
        state.photos.setdefault(ref.image_sha256, {}).setdefault(ref.user_id, ref.prompt_version)
    for row in _accepted_photos(by_user, settings):
        sha, user = cell_text(row.get("image_sha256")), cell_text(row.get("user_id"))
        if sha and user:
            state.photos.setdefault(sha, {})[user] = cell_text(row.get("prompt_version")) or ""
    suggestions = tables.latest_suggestions(settings, days=days)
    if by_user is not None and not suggestions.empty:
        suggestions = suggestions[suggestions["user_id"].astype(str).isin(set(users or []))]
    for row in suggestions.to_dict("records"):
        n = int(row["n_outfits"]) if row.get("status") == "ok" else 0
        state.suggestions[(str(row["user_id"]), str(row["day"]))] = n
    for row in feedback.to_dict("records"):
        remember(state, row)
    return state


def _accepted_photos(
    by_user: list[tuple[str, str, Any]] | None, settings: Settings
) -> list[dict[str, Any]]:
    """The accepted uploads' rows (of the users), oldest first: a later row's version wins."""
    if by_user is None:
        rows = [
            r for r in tables.manifest_state(settings).values() if r["status"] == tables.ACCEPTED
        ]
        return [dict(r) for r in rows]
    columns = ["upload_key", "user_id", "status", "image_sha256", "prompt_version", "processed_at"]
    frame = lake.read_table(
        tables.MANIFESTS.name,
        settings,
        columns=columns,
        filters=[*by_user, ("status", "=", tables.ACCEPTED)],
    )
    if frame.empty:
        return []
    return list(frame.sort_values("processed_at", kind="stable").to_dict("records"))


def remember(state: LakeState, row: Mapping[str, Any]) -> None:
    """Fold one accepted feedback row into the state (its id, added items, deletions)."""
    key = (str(row["user_id"]), str(row["event_id"]))
    state.accepted.setdefault(key, f"{row['source']} (received {row['received_at']})")
    if row["event_type"] in ("item_deleted", DUPLICATE_CONFIRMED):
        state.delete(str(row["item_id"]), str(row["event_time"]))
    elif row["event_type"] == "item_added":
        ref = ItemRef(
            str(row["user_id"]), str(row["image_sha256"]), cell_text(row["prompt_version"]) or ""
        )
        state.add_item(str(row["item_id"]), ref)


def added_item_id(user_id: str, event_id: str) -> str:
    """Deterministic id of an item a user added, so later events can correct it."""
    return hashlib.sha256(f"added:{user_id}:{event_id}".encode()).hexdigest()[:24]


class Resolved(TypedDict):
    """What an event points at, as ``feedback`` row fields (None where it names no item)."""

    item_id: str | None
    image_sha256: str | None
    prompt_version: str | None


def resolve(event: Event, state: LakeState) -> Resolved | Rejection:
    """The feedback row fields an event resolves to, or why it cannot be accepted.

    Existence and ownership first, then the user's own duplicates, then deletions: a replayed
    deletion is a ``duplicate_event``, not an event about an item already deleted.
    """
    owned = _owned(event, state)
    if isinstance(owned, Rejection):
        return owned
    first = state.accepted.get((event.user_id, event.event_id))
    if first is not None:
        return _reject(
            event, Reason.DUPLICATE_EVENT, f"event {event.event_id} already received from {first}"
        )
    named = event.fields.get("item_ids", [])
    if event.event_type in _NAMES_ONE_ITEM:
        named = [event.fields["item_id"]]
    for item_id in named:
        deleted = state.deleted_at.get(item_id)
        if deleted is not None and deleted <= event.event_time:
            return _reject(event, Reason.ITEM_DELETED, f"item {item_id} was deleted at {deleted}")
    return owned


def _reject(event: Event, reason: Reason, detail: str) -> Rejection:
    raw = json.dumps(_event_json(event), sort_keys=True)
    return Rejection(event.source, event.source_sha256, event.line, reason, detail, raw)


def _owned(event: Event, state: LakeState) -> Resolved | Rejection:
    """What the event points at, if it exists and is the user's."""

    def check_item(item_id: str) -> Rejection | ItemRef:
        ref = state.items.get(item_id)
        if ref is None:
            return _reject(event, Reason.UNKNOWN_ITEM, f"no wardrobe item {item_id}")
        if ref.user_id != event.user_id:
            return _reject(event, Reason.NOT_OWNER, f"item {item_id} belongs to another user")
        return ref

    def check_suggestion() -> Rejection | None:
        day, index = event.fields["suggestion_day"], event.fields.get("outfit_index")
        n = state.suggestions.get((event.user_id, day))
        if n is None:
            return _reject(
                event, Reason.UNKNOWN_SUGGESTION, f"no suggestion for {event.user_id} on {day}"
            )
        if index is not None and index >= n:
            return _reject(
                event,
                Reason.UNKNOWN_SUGGESTION,
                f"the suggestion of {day} has {n} outfits, not #{index}",
            )
        return None

    row = Resolved(item_id=None, image_sha256=None, prompt_version=None)
    if event.event_type in _NAMES_ONE_ITEM:
        ref = check_item(event.fields["item_id"])
        if isinstance(ref, Rejection):
            return ref
        return row | {
            "item_id": event.fields["item_id"],
            "image_sha256": ref.image_sha256,
            "prompt_version": ref.prompt_version or None,
        }
    if event.event_type == "item_added":
        sha = event.fields["image_sha256"]
        owners = state.photos.get(sha)
        if not owners:
            return _reject(event, Reason.UNKNOWN_PHOTO, f"no accepted photo {sha[:12]}")
        if event.user_id not in owners:
            return _reject(event, Reason.NOT_OWNER, f"photo {sha[:12]} belongs to another user")
        return row | {
            "item_id": added_item_id(event.user_id, event.event_id),
            "image_sha256": sha,
            "prompt_version": owners[event.user_id] or None,
        }
    bad = check_suggestion()
    if bad is not None:
        return bad
    for item_id in event.fields.get("item_ids", []):
        ref = check_item(item_id)
        if isinstance(ref, Rejection):
            return ref
    return row


def _event_json(event: Event) -> dict[str, Any]:
    common = {k: getattr(event, k) for k in COMMON_FIELDS}
    return common | event.fields
