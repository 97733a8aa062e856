"""What users said about their outfits, as quality metrics of the stylist version that served them.

Feedback events ``outfit_rated`` (thumbs up or down) and ``wore_instead`` name the suggestion
they are about (``suggestion_day``, ``outfit_index``); joined to ``outfit_suggestions`` (the
newest row of that user and day) they give the stylist prompt and version that made it. Rows
are keyed by the day of the event (``event_time``, UTC): feedback arriving days after the
suggestion counts on the day it was given, for the version that served the suggestion.

* ``thumbs_down_rate``: outfits rated down / outfits rated (``n``); a user rating the same
  outfit again counts once, with their latest rating.
* ``wore_instead_rate``: suggestions the user reported wearing something else instead of /
  suggestions with any outfit feedback (a rating or a ``wore_instead``; ``n``).

An event whose suggestion is not in the lake (cannot be: feedback checks it) has no version and
is left out. SLOs: ``thumbs_down_rate_max``, ``wore_instead_rate_max``
(``SLO_DEFAULTS`` in ``dresscode.core.settings_parsers``).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from dresscode.core import lake, tables
from dresscode.core.config import Settings

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

FEEDBACK_METRICS = ("thumbs_down_rate", "wore_instead_rate")
OUTFIT_EVENTS = ("outfit_rated", "wore_instead")
_COLUMNS = ["day", "prompt_name", "prompt_version", "metric", "value", "n"]


def feedback_metrics(
    start: datetime, end: datetime, settings: Settings, *, by_day: bool
) -> pd.DataFrame:
    """The feedback metrics of events timed in [start, end), per day and stylist version
    (``by_day`` False: over the window per prompt, versions pooled, ``day`` empty)."""
    import pandas as pd

    events = _outfit_events(start, end, settings)
    if events.empty:
        return pd.DataFrame(columns=_COLUMNS)
    # Only the partitions of the days the events are about: cost follows the window.
    served = tables.latest_suggestions(settings, days=events["suggestion_day"])
    if served.empty:
        return pd.DataFrame(columns=_COLUMNS)
    served = served[["user_id", "day", "prompt_name", "prompt_version"]].rename(
        columns={"day": "suggestion_day"}
    )
    served["user_id"] = served["user_id"].astype(str)
    served["suggestion_day"] = served["suggestion_day"].astype(str)
    served["prompt_version"] = served["prompt_version"].map(_version)
    events = events.merge(served, on=["user_id", "suggestion_day"], how="inner")
    if events.empty:
        return pd.DataFrame(columns=_COLUMNS)
    events["day"] = events["event_time"].str.slice(0, 10) if by_day else ""
    if not by_day:
        events["prompt_version"] = ""
    keys = ["day", "prompt_name", "prompt_version"]
    rows: list[dict[str, Any]] = []
    for key, group in events.groupby(keys, sort=True):
        rated = group[group["event_type"] == "outfit_rated"]
        rated = rated.drop_duplicates(["user_id", "suggestion_day", "outfit_index"], keep="last")
        down = int((rated["rating"] == "down").sum())
        rows.append(_row(key, "thumbs_down_rate", down, len(rated)))
        given = group.drop_duplicates(["user_id", "suggestion_day"])
        wore = group[group["event_type"] == "wore_instead"]
        wore = wore.drop_duplicates(["user_id", "suggestion_day"])
        rows.append(_row(key, "wore_instead_rate", len(wore), len(given)))
    return pd.DataFrame(rows, columns=_COLUMNS)


def _row(key: Any, metric: str, hits: int, n: int) -> dict[str, Any]:
    day, name, version = key
    value = hits / n if n else float("nan")
    return {
        "day": day,
        "prompt_name": name,
        "prompt_version": version,
        "metric": metric,
        "value": value,
        "n": n,
    }


def _outfit_events(start: datetime, end: datetime, settings: Settings) -> pd.DataFrame:
    """``outfit_rated`` and ``wore_instead`` events timed in [start, end), payload unpacked,
    in event-time order. Feedback parts are dated by the run that accepted them, never before
    the event: partitions from the window's first day on (one earlier for device clocks)."""
    import pandas as pd

    from dresscode.monitoring.metrics import _partition_days

    first = (start.date() - timedelta(days=1)).isoformat()
    days = [d for d in _partition_days(tables.FEEDBACK.name, settings) if d >= first]
    frame = lake.read_table(tables.FEEDBACK.name, settings, days=days) if days else None
    if frame is None or frame.empty:
        return pd.DataFrame()
    frame = frame[frame["event_type"].isin(OUTFIT_EVENTS)]
    stamps = pd.to_datetime(frame["event_time"], utc=True, errors="coerce", format="ISO8601")
    frame = frame[(stamps >= start) & (stamps < end)]
    rows = []
    for event in frame.sort_values(["event_time", "event_id"], kind="stable").to_dict("records"):
        try:
            payload = json.loads(event["payload"])
            rows.append(
                {
                    "user_id": str(event["user_id"]),
                    "event_type": event["event_type"],
                    "event_time": str(event["event_time"]),
                    "suggestion_day": str(payload["suggestion_day"]),
                    "outfit_index": payload.get("outfit_index"),
                    "rating": payload.get("rating"),
                }
            )
        except (KeyError, TypeError, ValueError):
            log.warning("skipped feedback event %s: unreadable_payload", event.get("event_id"))
    return pd.DataFrame(rows)


def _version(value: Any) -> str:
    """Prompt versions as the metrics table writes them: "3", not 3 or 3.0."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
