"""Corrected labels: each photo's model items with its users' corrections applied.

Corrections (``item_corrected``, ``item_deleted``, ``item_added``) are applied in event-time
order to the items the digitizer listed (:func:`apply_events`); ``corrected_labels`` holds one
row per (user, photo, prompt version) and is reconciled with the ``feedback`` table — a row is
written only when the set of events behind it changed, so a replay writes nothing and a run that
died after writing events is completed by the next one.

:func:`correction_rate` counts corrected photos and items per prompt version over all history;
what counts as a corrected photo is the monitoring metric's definition
(:mod:`dresscode.monitoring.metrics`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypedDict

from dresscode.core import lake, tables
from dresscode.core.config import Settings, get_settings
from dresscode.feedback.events import (
    CORRECTION_TYPES,
    ITEM_FIELDS,
    cell_list,
    cell_text,
    iso_utc,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def item_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``wardrobe_items`` row back to the digitizer's item JSON (schema field order)."""
    names, hexes = cell_list(row.get("color_names")), cell_list(row.get("color_hexes"))
    return {
        "category": str(row["category"]),
        "subcategory": str(row["subcategory"]),
        "colors": [{"name": str(n), "hex": str(h)} for n, h in zip(names, hexes, strict=False)],
        "pattern": str(row["pattern"]),
        "material": cell_text(row.get("material")) or "unknown",
        "warmth": str(row["warmth"]),
        "formality": str(row["formality"]),
        "seasons": [str(s) for s in cell_list(row.get("seasons"))],
        "water_resistant": bool(row["water_resistant"]),
        "description": cell_text(row.get("description")) or "",
    }


def apply_events(
    items: Sequence[tuple[str, dict[str, Any]]], events: Iterable[Mapping[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """Apply correction rows (already in event-time order) to ``(item_id, item)`` pairs.

    A correction changes only the fields it names (``colors`` as a whole); a deletion removes
    the item; an addition appends one. Events for an item no longer there change nothing.
    """
    out = [(item_id, dict(item)) for item_id, item in items]
    for event in events:
        payload = json.loads(event["payload"])
        item_id = event["item_id"]
        if event["event_type"] == "item_corrected":
            for _, item in (pair for pair in out if pair[0] == item_id):
                item.update(payload["changes"])
        elif event["event_type"] == "item_deleted":
            out = [pair for pair in out if pair[0] != item_id]
        elif event["event_type"] == "item_added" and all(i != item_id for i, _ in out):
            out.append(
                (item_id, {k: payload["item"][k] for k in ITEM_FIELDS if k in payload["item"]})
            )
    return [(i, {k: item[k] for k in ITEM_FIELDS if k in item}) for i, item in out]


def digest_of(values: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(values)).encode()).hexdigest()


def latest_rows(frame: pd.DataFrame, keys: list[str], order: list[str]) -> pd.DataFrame:
    """The newest row per key (``order`` ascending, last wins)."""
    if frame.empty:
        return frame
    return frame.sort_values(order, kind="stable").drop_duplicates(keys, keep="last")


LABEL_KEY = ["user_id", "image_sha256", "prompt_version"]


def latest_corrected_labels(settings: Settings | None = None) -> pd.DataFrame:
    """One row per (user, photo, prompt version): the newest corrected labels."""
    frame = lake.read_table("corrected_labels", settings or get_settings())
    return latest_rows(frame, LABEL_KEY, ["computed_at"])


def reconcile_corrected_labels(
    *, day: str, now: datetime | None = None, settings: Settings | None = None
) -> dict[str, int]:
    """Bring ``corrected_labels`` in line with the ``feedback`` table.

    A photo gets a new row only when its set of correction events differs from its latest
    row's, so a replay writes nothing and a run that died after writing events is completed
    by the next one.
    """
    from dresscode.core import delta

    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    # One snapshot of both tables: the rows name the versions they were computed from, so a
    # golden candidate can be traced (and recomputed) to the lake as it was.
    with delta.snapshot(
        tables.WARDROBE_ITEMS.name, lake.USER_EVENTS_TABLE, settings=settings
    ) as versions:
        # The correction events, kept by user (user_events), not every day of feedback.
        kinds = [("event_type", "in", list(CORRECTION_TYPES))]
        events = lake.read_table(lake.USER_EVENTS_TABLE, settings, filters=kinds)
        if events.empty:
            return {"photos": 0, "updated": 0}
        events = events[events["event_type"].isin(CORRECTION_TYPES)].copy()
        if events.empty:
            return {"photos": 0, "updated": 0}
        base = _base_items(sorted(set(events["user_id"].astype(str))), settings)
    read_at = json.dumps(versions, sort_keys=True)
    events["prompt_version"] = events["prompt_version"].map(lambda v: cell_text(v) or "")
    latest = latest_corrected_labels(settings)
    done = (
        {tuple(r[k] for k in LABEL_KEY): r["events_digest"] for r in latest.to_dict("records")}
        if not latest.empty
        else {}
    )
    rows = []
    for key, group in events.groupby(LABEL_KEY, sort=True):
        digest = digest_of(group["event_id"])
        if done.get(tuple(key)) == digest:
            continue
        ordered = group.sort_values(["event_time", "event_id"]).to_dict("records")
        pairs = apply_events(base.get(tuple(key), []), ordered)
        rows.append(
            {
                "image_sha256": key[1],
                "user_id": key[0],
                "prompt_version": key[2],
                "items_json": json.dumps([item for _, item in pairs], ensure_ascii=False),
                "item_ids": [item_id for item_id, _ in pairs],
                "n_items": len(pairs),
                "n_corrections": len(ordered),
                "last_event_time": ordered[-1]["event_time"],
                "events_digest": digest,
                "computed_at": iso_utc(now),
                "lake_versions": read_at,
            }
        )
    if rows:
        part = "labels-" + digest_of(r["events_digest"] + r["image_sha256"] for r in rows)[:16]
        lake.write_parquet("corrected_labels", day, part, rows, settings)
    n_photos = events.groupby(LABEL_KEY).ngroups
    log.info("corrected labels: %d photos with corrections, %d updated", n_photos, len(rows))
    return {"photos": n_photos, "updated": len(rows)}


def _base_items(
    users: list[str], settings: Settings
) -> dict[tuple[str, str, str], list[tuple[str, dict[str, Any]]]]:
    """The model's items per (user, photo, prompt version) of ``users`` (those with
    corrections: their buckets only), in the order it listed them."""
    items = lake.read_table("wardrobe_items", settings, filters=[("user_id", "in", users)])
    out: dict[tuple[str, str, str], list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    if items.empty:
        return out
    items = items.drop_duplicates("item_id", keep="first")
    for row in items.to_dict("records"):
        key = (
            str(row["user_id"]),
            str(row["image_sha256"]),
            cell_text(row["prompt_version"]) or "",
        )
        out[key].append((str(row["item_id"]), item_from_row(row)))
    return out


# --- the correction rate --------------------------------------------------------------------


class Rates(TypedDict):
    """Corrected photos and items over those digitized (rates None without a denominator)."""

    photos: int
    corrected_photos: int
    correction_rate: float | None
    items: int
    corrected_items: int
    item_correction_rate: float | None


class CorrectionRates(Rates):
    """:func:`correction_rate`: all prompt versions, and each one."""

    by_prompt_version: dict[str, Rates]


def correction_rate(settings: Settings | None = None) -> CorrectionRates:
    """Share of digitized photos (and items) users corrected, overall and per prompt version.

    Photos: the accepted uploads the digitizer answered; a photo counts as corrected when any
    item of it was corrected, deleted, or one was added. Items: corrected or deleted items over
    the items the model listed.

    The photo rate is monitoring's definition (:func:`dresscode.monitoring.metrics.correction_rate`,
    the one place it is defined), here over all history per prompt version of the photo;
    monitoring applies it per day of digitizing.
    """
    import pandas as pd

    from dresscode.monitoring.metrics import CORRECTION_EVENTS
    from dresscode.monitoring.metrics import correction_rate as photo_correction_rate

    settings = settings or get_settings()
    accepted = [
        {
            "user_id": str(row["user_id"]),
            "image_sha256": str(row["image_sha256"]),
            "prompt_version": cell_text(row.get("prompt_version")),
        }
        for row in tables.manifest_state(settings).values()
        if row["status"] == tables.ACCEPTED and cell_text(row.get("prompt_version"))
    ]
    photos = pd.DataFrame(accepted, columns=["user_id", "image_sha256", "prompt_version"])
    # The correction events only (user_events, filtered on event_type), not every feedback day.
    events = lake.read_table(
        lake.USER_EVENTS_TABLE, settings, filters=[("event_type", "in", list(CORRECTION_EVENTS))]
    )
    if events.empty:
        events = pd.DataFrame(
            columns=["event_type", "user_id", "image_sha256", "item_id", "prompt_version"]
        )
    per_version = photo_correction_rate(photos, events, by=["prompt_version"])
    overall = photo_correction_rate(photos, events)

    items = lake.read_table("wardrobe_items", settings, columns=["item_id", "prompt_version"])
    n_items: Counter[str] = Counter()
    if not items.empty:
        for version, n in items.drop_duplicates("item_id").groupby("prompt_version").size().items():
            n_items[cell_text(version) or ""] = int(n)
    corrected_items: dict[str, set[str]] = defaultdict(set)
    item_events = events[
        events["event_type"].isin(CORRECTION_EVENTS) & (events["event_type"] != "item_added")
    ]
    for row in item_events.to_dict("records"):
        corrected_items[cell_text(row.get("prompt_version")) or ""].add(str(row["item_id"]))

    by_version: dict[str, Rates] = {}
    for row in per_version.to_dict("records"):
        version = str(row["prompt_version"])
        by_version[version] = _rates(
            int(row["photos"]),
            int(row["corrected"]),
            n_items[version],
            len(corrected_items[version]),
        )
    total = _rates(
        int(overall["photos"].iloc[0]),
        int(overall["corrected"].iloc[0]),
        sum(n_items.values()),
        sum(len(i) for i in corrected_items.values()),
    )
    return CorrectionRates(**total, by_prompt_version=by_version)


def _rates(photos: int, corrected: int, items: int, corrected_items: int) -> Rates:
    return Rates(
        photos=photos,
        corrected_photos=corrected,
        correction_rate=round(corrected / photos, 4) if photos else None,
        items=items,
        corrected_items=corrected_items,
        item_correction_rate=round(corrected_items / items, 4) if items else None,
    )
