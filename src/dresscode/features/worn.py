"""What people wore: user features from ``wore_instead`` feedback, beside those of what they own.

A ``wore_instead`` event says which of their items a user actually wore on a day
(``item_ids``). Over the :data:`WORN_WINDOW_DAYS` days before ``as_of`` this module gives,
per user, the ``user_style`` columns:

* ``worn_count_30d`` — the user's ``wore_instead`` events in the window (one worn outfit each);
* ``worn_colors`` — up to :data:`TOP_WORN` colour names of the items worn, counted once per
  worn item per event, lower-cased, ordered by count then name (like ``top_colors``);
* ``worn_pairs`` — up to :data:`TOP_WORN` pairs ``"<item_a>+<item_b>"`` (ids sorted within the
  pair) of items worn together in one event, ordered by count then the string.

Choices a reader may wonder about:

* Only items in the user's current wardrobe count (the rows ``style_features`` summarises):
  a worn id the user deleted since, another user's or an unknown one is left out of colours and
  pairs and counted in the log line. The event itself still counts in ``worn_count_30d``: the
  user did wear an outfit that day.
* The window is ``[as_of - 30 days, as_of]`` by event time, both ends included, like the
  wardrobe's corrections (``tables.current_wardrobe_items``): a replay of a past interval gives
  the same features, save for events that arrived late and so were not there the first time.
* Cost flat in history: ``feedback`` parts are partitioned by the event's UTC day
  (``feedback.landing.prepare`` writes ``date=event_time[:10]`` however late the event is
  received), so every event of the window lies in the 31 partitions of its days, and only
  those are read (:func:`window_days`), never the whole table.
* A duplicate event (same ``user_id`` + ``event_id``) counts once; an event whose payload
  cannot be read is skipped with a WARNING (``unreadable_payload``), never an error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dresscode.core import lake, tables
from dresscode.core.config import Settings, get_settings
from dresscode.core.wardrobe import WORE_INSTEAD
from dresscode.features import style

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

WORN_WINDOW_DAYS = 30
TOP_WORN = 3
COLUMNS = style.WORN_COLUMNS
EVENT_COLUMNS = ["user_id", "event_id", "event_type", "event_time", "payload"]


def window(as_of: datetime) -> tuple[datetime, datetime]:
    """``(start, end)`` of the worn window ending at ``as_of`` (aware UTC), both included."""
    if as_of.tzinfo is None:
        raise ValueError(f"as_of must be timezone-aware (got naive {as_of.isoformat()})")
    end = as_of.astimezone(UTC)
    return end - timedelta(days=WORN_WINDOW_DAYS), end


def window_days(as_of: datetime) -> list[date]:
    """The ``feedback`` partitions that can hold events of the window: one per UTC day."""
    start, end = window(as_of)
    return [start.date() + timedelta(days=n) for n in range((end.date() - start.date()).days + 1)]


def read_wore_events(
    as_of: datetime,
    settings: Settings | None = None,
    *,
    user_ids: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The ``wore_instead`` rows of the window's partitions (of ``user_ids``; None: everyone).

    Rows of those days outside the exact window are left for :func:`worn_features` to drop.
    """
    settings = settings or get_settings()
    days = window_days(as_of)
    frame = lake.read_table(tables.FEEDBACK.name, settings, days=days, columns=EVENT_COLUMNS)
    if frame.empty:
        return frame
    keep = frame["event_type"].astype(str) == WORE_INSTEAD
    if user_ids is not None:
        keep &= frame["user_id"].astype(str).isin({str(u) for u in user_ids})
    frame = frame[keep].reset_index(drop=True)
    log.info(
        "worn: %d wore_instead rows from the feedback partitions %s..%s",
        len(frame),
        days[0].isoformat(),
        days[-1].isoformat(),
    )
    return frame


def _item_ids(event: dict[str, Any]) -> list[str] | None:
    """The event's worn item ids, or None (logged) when its payload cannot be read."""
    try:
        ids = json.loads(event["payload"])["item_ids"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise TypeError("item_ids is not a list of strings")
    except (KeyError, TypeError, ValueError) as exc:
        log.warning(
            "skipped wore_instead event %s of %s: unreadable_payload (%s)",
            event.get("event_id"),
            event.get("user_id"),
            type(exc).__name__,
        )
        return None
    return list(dict.fromkeys(ids))  # unique, in order (the app's schema says so already)


def _in_window(events: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """The window's ``wore_instead`` events, each (user_id, event_id) once: the earliest."""
    import pandas as pd

    for name in EVENT_COLUMNS:
        if name not in events.columns:
            events[name] = pd.Series(dtype=object)
    start, end = window(as_of)
    events = events[events["event_type"].astype(str) == WORE_INSTEAD].copy()
    events["user_id"] = events["user_id"].astype(str)
    events["event_id"] = events["event_id"].astype(str)
    events["_at"] = pd.to_datetime(
        events["event_time"], utc=True, errors="coerce", format="ISO8601"
    )
    events = events[(events["_at"] >= start) & (events["_at"] <= end)]
    events = events.sort_values(["_at", "event_id"], kind="stable")
    return events.drop_duplicates(["user_id", "event_id"], keep="first").reset_index(drop=True)


def _owned(wardrobe: pd.DataFrame) -> pd.DataFrame:
    """(user_id, item_id, color_names) of the wardrobe, one row per item."""
    import pandas as pd

    cols = ["user_id", "item_id", "color_names"]
    if wardrobe.empty or not {"user_id", "item_id"} <= set(wardrobe.columns):
        return pd.DataFrame(columns=cols)
    owned = wardrobe.reindex(columns=cols).astype({"user_id": str, "item_id": str})
    return owned.drop_duplicates("item_id", keep="last")


def worn_features(events: pd.DataFrame, wardrobe: pd.DataFrame, *, as_of: datetime) -> pd.DataFrame:
    """Per user with a worn outfit in the window: :data:`COLUMNS`, indexed by ``user_id``.

    ``events`` are ``feedback`` rows (any types, any times: the window's ``wore_instead``
    events are picked here); ``wardrobe`` the users' current wardrobe rows (``user_id``,
    ``item_id``, ``color_names``). Users without a worn outfit are not in the result.
    """
    import pandas as pd

    out = pd.DataFrame(columns=list(COLUMNS), index=pd.Index([], name="user_id", dtype=object))
    events = _in_window(events.reset_index(drop=True), as_of)
    events["item_id"] = [_item_ids(e) for e in events.to_dict("records")]
    unreadable = int(events["item_id"].isna().sum())
    events = events[events["item_id"].notna()]
    if events.empty:
        _log_counts(as_of, 0, 0, 0, 0, unreadable)
        return out

    worn = events[["user_id", "event_id", "item_id"]].explode("item_id").dropna()
    worn["item_id"] = worn["item_id"].astype(str)
    known = worn.merge(_owned(wardrobe), on=["user_id", "item_id"], how="inner")
    # Pairs within one event: every two distinct known items, ids sorted within the pair.
    together = known[["user_id", "event_id", "item_id"]]
    pairs = together.merge(together, on=["user_id", "event_id"], suffixes=("_a", "_b"))
    pairs = pairs[pairs["item_id_a"] < pairs["item_id_b"]]
    pairs = pairs.assign(pair=pairs["item_id_a"] + "+" + pairs["item_id_b"])

    counts = events.groupby("user_id").size()
    out = pd.DataFrame(index=pd.Index(sorted(counts.index), name="user_id"))
    out["worn_count_30d"] = counts.astype("int64")
    out["worn_colors"] = style.top_colors(known.reset_index(drop=True), limit=TOP_WORN)
    out["worn_pairs"] = style.ranked(pairs[["user_id", "pair"]], "pair", TOP_WORN)
    for name in ("worn_colors", "worn_pairs"):
        out[name] = [list(v) if isinstance(v, list) else [] for v in out[name]]
    _log_counts(as_of, len(events), len(out), len(worn), len(worn) - len(known), unreadable)
    return out


def _log_counts(
    as_of: datetime, events: int, users: int, worn: int, ignored: int, unreadable: int
) -> None:
    log.info(
        "worn features as of %s: %d wore_instead events of %d users, %d worn items "
        "(%d not in the wardrobe, ignored), %d unreadable payloads skipped",
        as_of.isoformat(),
        events,
        users,
        worn,
        ignored,
        unreadable,
    )


def worn_as_of(
    wardrobe: pd.DataFrame,
    *,
    as_of: datetime,
    user_ids: Iterable[str] | None = None,
    settings: Settings | None = None,
) -> pd.DataFrame:
    """:func:`worn_features` over the window's ``feedback`` partitions: read, then aggregate."""
    events = read_wore_events(as_of, settings, user_ids=user_ids)
    return worn_features(events, wardrobe, as_of=as_of)
