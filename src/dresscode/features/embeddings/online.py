"""The item vectors in Feast's online store: written per batch, searched per user.

The ``item_embeddings`` feature view (``feature_repo/features.py``) is online, keyed by
``item_id``, with its ``vector`` declared for search (384 numbers, cosine). Where the online
store searches vectors (``vector_enabled``) every embedding batch is written to it and "similar
items" is ``FeatureStore.retrieve_online_documents_v2`` filtered to the item's user: locally
:mod:`dresscode.features.vector_online_store` (SQLite), on the full stack
:mod:`dresscode.features.postgres_vector_store` (PostgreSQL, the view routed there by
:mod:`dresscode.features.hybrid_online_store`; the other views stay in Redis). Both rank the
user's vectors exactly (:mod:`dresscode.features.vector_search`). A store without vector search
(a yaml without ``vector_enabled``): :func:`open_store` gives None and the callers search the
index (:mod:`dresscode.features.embeddings.index`), a local file per worker.

An item no longer in any wardrobe is written again with no vector: Feast has no online
delete, and a null vector is never a search answer. Never materialize ``item_embeddings``:
the lake keeps every vector ever made, removed items' included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dresscode.core.config import Settings, get_settings
from dresscode.features.embeddings.index import Neighbour

if TYPE_CHECKING:
    from feast import FeatureStore

VIEW = "item_embeddings"
FEATURES = ("vector", "user_id", "category", "colour_family", "model", "possible_duplicate_of")


def open_store(settings: Settings | None = None, *, apply: bool = False) -> FeatureStore | None:
    """The project's FeatureStore when its online store searches vectors, else None.

    ``apply``: bring the registry up to date with ``feature_repo`` first (what a writer does:
    the view must be registered, and its online table created, before the first write)."""
    from dresscode.features import store as features

    settings = settings or get_settings()
    store = features.feature_store(settings)
    if not getattr(store.config.online_store, "vector_enabled", False):
        return None
    if apply:
        features.apply(settings)
    return store


def write(store: FeatureStore, rows: Sequence[Mapping[str, Any]]) -> int:
    """Upsert ``item_embeddings`` rows (``item_id``, the view's features, ``event_timestamp``)."""
    import pandas as pd
    import pyarrow as pa

    if not rows:
        return 0
    frame = pd.DataFrame.from_records(list(rows))
    for name in FEATURES:
        if name not in frame.columns:
            frame[name] = None
    # Typed, so that a row without a vector is still a list column to Feast.
    frame["vector"] = pd.Series(
        [None if v is None else [float(x) for x in v] for v in frame["vector"]],
        dtype=pd.ArrowDtype(pa.list_(pa.float32())),
        index=frame.index,
    )
    store.write_to_online_store(VIEW, frame[["item_id", *FEATURES, "event_timestamp"]])
    return len(frame)


def remove(store: FeatureStore, users: Mapping[str, str]) -> int:
    """Take items out of search: ``users`` is item id -> its user (rows without a vector)."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    rows = [
        {"item_id": item, "user_id": user, "vector": None, "event_timestamp": now}
        for item, user in users.items()
    ]
    return write(store, rows)


def vector_of(store: FeatureStore, item_id: str) -> tuple[str, str, str, list[float]] | None:
    """(user_id, category, colour family, vector) of an item, or None when it has none."""
    from feast.errors import FeatureViewNotFoundException

    try:
        found = store.get_online_features(
            features=[
                f"{VIEW}:{name}" for name in ("vector", "user_id", "category", "colour_family")
            ],
            entity_rows=[{"item_id": item_id}],
        ).to_dict()
    except FeatureViewNotFoundException:  # never applied: nothing was embedded here yet
        return None
    vector = found["vector"][0]
    if vector is None or len(vector) == 0:
        return None
    return (
        str(found["user_id"][0]),
        str(found["category"][0] or ""),
        str(found["colour_family"][0] or ""),
        [float(x) for x in vector],
    )


def nearest(
    store: FeatureStore,
    vector: Sequence[float],
    *,
    user_id: str,
    k: int,
    category: str | None = None,
    exclude: str | None = None,
) -> list[Neighbour]:
    """The user's ``k`` items closest to ``vector`` (of ``category`` when given), nearest first.

    ``Neighbour.colour`` is the colour family (the view keeps no colour names)."""
    from feast.filter_models import ComparisonFilter, CompoundFilter

    where: list[ComparisonFilter | CompoundFilter] = [
        ComparisonFilter(key="user_id", value=user_id, type="eq")
    ]
    if category is not None:
        where.append(ComparisonFilter(key="category", value=category, type="eq"))
    rows = store.retrieve_online_documents_v2(
        features=[f"{VIEW}:user_id", f"{VIEW}:category", f"{VIEW}:colour_family"],
        query=[float(x) for x in vector],
        top_k=k + (1 if exclude else 0),
        distance_metric="COSINE",
        filters=where[0] if len(where) == 1 else CompoundFilter(type="and", filters=where),
    ).to_dict()
    found = sorted(
        (
            Neighbour(str(i), float(d), str(c or ""), str(f or ""))
            for i, d, c, f in zip(
                rows.get("item_id", []),
                rows.get("distance", []),
                rows.get("category", []),
                rows.get("colour_family", []),
                strict=True,
            )
        ),
        key=lambda n: (n.distance, n.item_id),  # Feast returns them in item id order
    )
    return [n for n in found if n.item_id != exclude][:k]
