"""User style features: one row per user summarising their wardrobe, for Feast's ``user_style``.

Pure pandas over wardrobe rows, so the nightly task, a replay and a test compute the same
thing. The rows are the user's wardrobe as they see it (``tables.current_wardrobe_items``:
deleted items gone, added ones present, corrected fields replaced), never raw
``wardrobe_items``: a garment the user deleted must not shape their features. The vocabularies (categories, warmth, formality) come from the wardrobe-digitizer
blueprint's output schema — the single schema source — so a category the model may emit and a
share column here can never drift apart. Feature columns are named from those vocabularies:
``share_<category>``, ``warmth_<level>``, ``formality_<level>``.

Choices a reader may wonder about:

* A user with no items is a row (``wardrobe_size`` 0, every share 0.0, no colours, no last
  upload): an empty wardrobe is a valid, common state that the stylist must see, not a
  missing key.
* Shares of one attribute are over the user's items with a *known* value of that attribute,
  so they sum to 1 for a non-empty wardrobe. An unknown value (model drift, an old prompt)
  still counts in ``wardrobe_size`` and is logged as a warning, once per value.
* ``top_colors`` is a list of up to 3 colour names (Feast ``Array(String)``: the SQLite and
  Redis online stores and the file offline store round-trip it, empty lists included). Colours
  are lower-cased, counted once per item, ordered by count then name (deterministic).
* ``style_clusters`` names what the wardrobe is made of, largest group first (``["blue top
  x5", "black footwear x3"]``): k-means over the item description vectors in Feast's online
  store (:mod:`dresscode.features.embeddings.clusters`), only of the items counted here. It is
  passed in (:func:`clusters_as_of` reads those items' vectors online): a user
  the embedding DAG has not reached yet, or every user before it first ran, gets an empty list.
* Point in time: only items whose day is on or before ``as_of`` count, so replaying a past
  interval gives the same features even after newer uploads landed.
* What people wore sits beside what they own: ``worn_count_30d``, ``worn_colors`` and
  ``worn_pairs`` come from their ``wore_instead`` feedback over the 30 days before ``as_of``
  (:mod:`dresscode.features.worn`, which reads only the feedback partitions of those days);
  a user who wore nothing there gets 0 and empty lists.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import TYPE_CHECKING

from dresscode.core.config import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# The blueprint whose output schema defines the vocabularies. Pinned: a new digitizer version
# that changes a vocabulary changes the feature view too, so it must be a deliberate bump here.
SCHEMA_BLUEPRINT = "wardrobe-digitizer@2"
TOP_COLORS = 3
TABLE = "user_style"  # a Delta table of the lake (dresscode.core.delta.TABLES)


@dataclass(frozen=True)
class Vocabularies:
    categories: tuple[str, ...]
    warmth: tuple[str, ...]
    formality: tuple[str, ...]


@cache
def vocabularies() -> Vocabularies:
    """The closed vocabularies of wardrobe items, read from the digitizer blueprint's schema."""
    from dresscode.llm import blueprints

    schema = blueprints.resolve(SCHEMA_BLUEPRINT).output_schema
    return Vocabularies(
        categories=tuple(blueprints.enum_of(schema, "items", "category")),
        warmth=tuple(blueprints.enum_of(schema, "items", "warmth")),
        formality=tuple(blueprints.enum_of(schema, "items", "formality")),
    )


def share_columns() -> dict[str, list[str]]:
    """Share column names per attribute (``category`` / ``warmth`` / ``formality``)."""
    v = vocabularies()
    return {
        "category": [f"share_{c}" for c in v.categories],
        "warmth": [f"warmth_{w}" for w in v.warmth],
        "formality": [f"formality_{f}" for f in v.formality],
    }


# Column name -> pandas dtype of the output (besides the share columns, all float64).
_FIXED = {
    "user_id": "object",
    "event_timestamp": "datetime64[ns, UTC]",
    "created": "datetime64[ns, UTC]",
    "wardrobe_size": "int64",
    "outerwear_count": "int64",
    "water_resistant_count": "int64",
    "top_colors": "object",
    "style_clusters": "object",
    "last_upload": "datetime64[ns, UTC]",
    "worn_count_30d": "int64",
    "worn_colors": "object",
    "worn_pairs": "object",
}
# The columns from what the user wore (``wore_instead`` feedback): dresscode.features.worn.
WORN_COLUMNS = ("worn_count_30d", "worn_colors", "worn_pairs")
_COUNTS = ("wardrobe_size", "outerwear_count", "water_resistant_count", "worn_count_30d")
_LISTS = ("top_colors", "style_clusters", "worn_colors", "worn_pairs")


def feature_names() -> list[str]:
    """Every feature column of ``user_style`` (no entity key, no timestamps), in output order."""
    shares = share_columns()
    return [
        "wardrobe_size",
        *shares["category"],
        "top_colors",
        "style_clusters",
        *shares["warmth"],
        *shares["formality"],
        "outerwear_count",
        "water_resistant_count",
        "last_upload",
        *WORN_COLUMNS,
    ]


def columns() -> list[str]:
    return ["user_id", "event_timestamp", "created", *feature_names()]


def _aware_utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware (got naive {value.isoformat()})")
    return value.astimezone(UTC)


def _item_times(items: pd.DataFrame) -> pd.Series:
    """When each item arrived: ``ingested_at`` where present, else its partition day (00:00 UTC)."""
    import pandas as pd

    by_day = pd.to_datetime(items["date"], utc=True, errors="coerce")
    if "ingested_at" in items.columns:
        ingested = pd.to_datetime(items["ingested_at"], utc=True, errors="coerce")
        return ingested.fillna(by_day)
    return by_day


def _warn_unknown(values: pd.Series, known: Iterable[str], attribute: str) -> None:
    unknown = values[~values.isin(list(known))]
    for value, count in sorted(Counter(unknown.fillna("<null>").astype(str)).items()):
        log.warning(
            "unknown_%s: %d item(s) with %s %r are counted in wardrobe_size but in no %s share",
            attribute,
            count,
            attribute,
            value,
            attribute,
        )


def _shares(
    items: pd.DataFrame, attribute: str, vocab: tuple[str, ...], names: list[str]
) -> pd.DataFrame:
    """Per-user share of each known value of ``attribute`` (0.0 where the user has none)."""
    import pandas as pd

    values = items[attribute]
    _warn_unknown(values, vocab, attribute)
    known = items[values.isin(list(vocab))]
    counts = pd.crosstab(known["user_id"], known[attribute]).reindex(columns=list(vocab))
    counts = counts.fillna(0)
    totals = counts.sum(axis=1)
    shares = counts.div(totals.where(totals > 0), axis=0).fillna(0.0).astype("float64")
    shares.columns = names
    return shares


def ranked(rows: pd.DataFrame, column: str, limit: int) -> pd.Series:
    """Per user, up to ``limit`` values of ``column``, by number of rows, ties by value."""
    import pandas as pd

    if rows.empty:
        return pd.Series(dtype=object)
    counts = rows.groupby(["user_id", column]).size().rename("n").reset_index()
    counts = counts.sort_values(["user_id", "n", column], ascending=[True, False, True])
    top = counts.groupby("user_id").head(limit)
    return top.groupby("user_id")[column].agg(list)


def top_colors(items: pd.DataFrame, *, limit: int = TOP_COLORS) -> pd.Series:
    """Up to ``limit`` colour names per user: lower-cased, counted once per row (item), ties
    by name."""
    import pandas as pd

    if items.empty:
        return pd.Series(dtype=object)
    pairs = items[["user_id", "color_names"]].explode("color_names").dropna()
    pairs["color_names"] = pairs["color_names"].astype(str).str.strip().str.lower()
    pairs = pairs[pairs["color_names"] != ""]
    # Once per item: "black, black" on one item is one black item.
    pairs = pairs.reset_index().drop_duplicates(["index", "color_names"])
    return ranked(pairs, "color_names", limit)


def style_features(
    items: pd.DataFrame,
    *,
    as_of: datetime,
    user_ids: Iterable[str] | None = None,
    created: datetime | None = None,
    worn: pd.DataFrame | None = None,
    clusters: Mapping[str, list[str]] | None = None,
) -> pd.DataFrame:
    """One row per user from ``wardrobe_items`` rows, as of ``as_of`` (aware UTC).

    ``user_ids`` adds users with no items (a zero row each); without it, only users with
    items (or worn outfits) appear. ``created`` (default now) is when the row was computed:
    Feast uses it to pick between two rows with the same event timestamp, so a recomputation
    wins. ``worn`` is :func:`dresscode.features.worn.worn_features` of the same ``as_of``
    (indexed by ``user_id``); without it, or for a user not in it, the worn columns are 0 and
    empty lists. ``clusters`` is each user's ``style_clusters`` (:func:`clusters_as_of` of the
    same items and ``as_of``); a user not in it gets an empty list.
    """
    import pandas as pd

    as_of = _aware_utc(as_of, "as_of")
    created = _aware_utc(created, "created") if created else datetime.now(UTC)
    vocab = vocabularies()
    shares = share_columns()

    items = items.reset_index(drop=True)
    for name in ("user_id", "category", "warmth", "formality", "color_names", "date"):
        if name not in items.columns:
            items[name] = pd.Series(dtype=object)
    items["user_id"] = items["user_id"].astype(str)
    items["_at"] = _item_times(items)
    future = items["_at"] > as_of
    if future.any():
        log.info("style features as of %s: %d later item(s) left out", as_of, int(future.sum()))
    items = items[~future]

    worn_ids = {str(u) for u in worn.index} if worn is not None else set()
    users = sorted(set(items["user_id"]) | {str(u) for u in (user_ids or ())} | worn_ids)
    out = pd.DataFrame(index=pd.Index(users, name="user_id"))
    out["wardrobe_size"] = items.groupby("user_id").size()
    out = out.join(_shares(items, "category", vocab.categories, shares["category"]))
    out["top_colors"] = top_colors(items)
    out["style_clusters"] = pd.Series(dict(clusters or {}), dtype=object)
    out = out.join(_shares(items, "warmth", vocab.warmth, shares["warmth"]))
    out = out.join(_shares(items, "formality", vocab.formality, shares["formality"]))
    out["outerwear_count"] = items[items["category"] == "outerwear"].groupby("user_id").size()
    wet = items.get("water_resistant", pd.Series(False, index=items.index)).isin([True])
    out["water_resistant_count"] = items[wet].groupby("user_id").size()
    out["last_upload"] = items.groupby("user_id")["_at"].max()
    for name in WORN_COLUMNS:
        out[name] = _worn_column(worn, name)

    out = out.reset_index()
    for name in _COUNTS:
        out[name] = pd.to_numeric(out[name]).fillna(0).astype("int64")
    for names in shares.values():
        out[names] = out[names].fillna(0.0).astype("float64")
    for name in _LISTS:
        out[name] = [list(c) if isinstance(c, list) else [] for c in out[name]]
    out["last_upload"] = pd.to_datetime(out["last_upload"], utc=True)
    out["event_timestamp"] = pd.Timestamp(as_of)
    out["created"] = pd.Timestamp(created)
    out = out[columns()].astype(_FIXED)
    return out.sort_values("user_id", kind="stable").reset_index(drop=True)


def clusters_as_of(
    items: pd.DataFrame, *, as_of: datetime, settings: Settings | None = None
) -> dict[str, list[str]]:
    """``style_clusters`` of the users in ``items`` (``wardrobe_items`` rows), from the vectors
    of the items :func:`style_features` counts as of ``as_of``; only those users' vectors are read."""
    from dresscode.features.embeddings import clusters

    if items.empty or "item_id" not in items.columns:
        return {}
    as_of = _aware_utc(as_of, "as_of")
    # The rows style_features keeps: not after as_of (an item of unknown time counts).
    counted = items[~(_item_times(items) > as_of)]
    wardrobes = {
        str(user): [str(i) for i in ids.dropna()]
        for user, ids in counted.groupby(counted["user_id"].astype(str))["item_id"]
    }
    return clusters.names_by_user(wardrobes, settings=settings)


def _worn_column(worn: pd.DataFrame | None, name: str) -> pd.Series:
    import pandas as pd

    if worn is None or name not in worn.columns:
        return pd.Series(dtype=object)
    column = worn[name]
    return column.set_axis(column.index.astype(str))


def style_features_for_interval(
    start: datetime,
    end: datetime,
    *,
    user_ids: Iterable[str] | None = None,
    settings: Settings | None = None,
    created: datetime | None = None,
    write: bool = True,
) -> pd.DataFrame:
    """Features as of ``end`` from every user's wardrobe as of ``end`` (corrections up to
    ``end`` applied), its items' vectors (``style_clusters``) and what they wore in the 30 days
    before; written to ``user_style``.

    The part lands in the partition of the interval's first day and is named by the interval,
    so re-running the interval replaces it. Reads the whole item history (a wardrobe is
    everything ever uploaded); fine at today's scale, the first thing to make incremental later.
    """
    from dresscode.core import lake, tables
    from dresscode.features import worn

    settings = settings or get_settings()
    start, end = _aware_utc(start, "start"), _aware_utc(end, "end")
    items = tables.current_wardrobe_items(None, settings, as_of=end)
    wore = worn.worn_as_of(items, as_of=end, settings=settings)
    named = clusters_as_of(items, as_of=end, settings=settings)
    frame = style_features(
        items, as_of=end, user_ids=user_ids, created=created, worn=wore, clusters=named
    )
    log.info(
        "user style as of %s: %d users (%d with an empty wardrobe) from %d items",
        end.isoformat(),
        len(frame),
        int((frame["wardrobe_size"] == 0).sum()),
        len(items),
    )
    if write and not frame.empty:
        part = f"{TABLE}-{start:%Y%m%dT%H%M%S}-{end:%Y%m%dT%H%M%S}"
        lake.write_parquet(TABLE, partition_day(start), part, frame[columns()], settings)
    return frame


def partition_day(moment: datetime) -> date:
    """The lake partition of a row whose interval starts at ``moment``."""
    return _aware_utc(moment, "moment").date()
