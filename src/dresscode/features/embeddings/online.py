"""The item vectors in Feast's online store: the one store of them, written per batch.

The ``item_embeddings`` feature view (``feature_repo/features.py``) is online, keyed by
``item_id``, with its ``vector`` declared for search (384 numbers, cosine) and, beside it, what
the vector was made from (``model``: :attr:`EmbeddingModel.ref`, ``text_sha``). Every embedding
batch is written here, and every reader reads here: the embedding run's "is this item up to
date" (:func:`stored`, an online read of the run's current item ids), the same-garment check
and "similar items" (:func:`nearest`, ``FeatureStore.retrieve_online_documents_v2`` filtered to
the item's user), style clusters (:func:`vectors_of`). Locally the store is
:mod:`dresscode.features.vector_online_store` (SQLite), on the full stack
:mod:`dresscode.features.postgres_vector_store` (PostgreSQL, the view routed there by
:mod:`dresscode.features.hybrid_online_store`; the other views stay in Redis): one store shared
by every worker. Both rank the user's vectors exactly (:mod:`dresscode.features.vector_search`).

An item no longer in any wardrobe is written again with no vector (and no model): Feast has no
online delete, and a null vector is never a search answer nor "up to date". Never materialize
``item_embeddings``: the lake keeps every vector ever made, removed items' included.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dresscode.core.config import Settings, get_settings

if TYPE_CHECKING:
    from feast import FeatureStore

VIEW = "item_embeddings"
FEATURES = (
    "vector",
    "user_id",
    "category",
    "colour_family",
    "model",
    "text_sha",
    "possible_duplicate_of",
)
READ_CHUNK = 1000  # entity rows per online read: memory and statement size stay bounded


@dataclass(frozen=True)
class Neighbour:
    item_id: str
    distance: float  # cosine distance: 0 the same direction, 1 unrelated, 2 opposite
    category: str
    colour: str  # the colour family


class NoVectorSearch(RuntimeError):
    """The configured online store searches no vectors: item vectors have nowhere to live."""


def open_store(settings: Settings | None = None, *, apply: bool = False) -> FeatureStore:
    """The project's FeatureStore; raises :class:`NoVectorSearch` when its online store does not
    search vectors (a yaml without ``vector_enabled``).

    ``apply``: bring the registry up to date with ``feature_repo`` first (what a writer does:
    the view must be registered, and its online table created, before the first write)."""
    from dresscode.features import store as features

    settings = settings or get_settings()
    store = features.feature_store(settings)
    if not getattr(store.config.online_store, "vector_enabled", False):
        raise NoVectorSearch(
            f"the Feast online store of {settings.feast_env!r} ({settings.feast_repo}) does not "
            "search vectors: item_embeddings needs one with vector_enabled: true "
            "(feature_repo/feature_store.yaml, feature_store.fullstack.yaml)"
        )
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


def drop(settings: Settings | None = None) -> bool:
    """Take every item vector out of the online store: the ``item_embeddings`` view and its
    online table are deleted (the lake keeps every vector). For a deliberate change of
    ``DRESSCODE_EMBEDDING_DIMENSION``: the next embedding run applies the view again and
    re-embeds every item. False when there was nothing to drop."""
    from feast.errors import FeatureViewNotFoundException

    from dresscode.features import store as features
    from dresscode.features.embeddings import progress

    settings = settings or get_settings()
    progress.clear(settings)  # what was planned is gone with the vectors: plan everyone next
    store = features.feature_store(settings)
    try:
        view = store.get_feature_view(VIEW)
    except FeatureViewNotFoundException:
        return False
    store.apply([], objects_to_delete=[view], partial=False)
    return True


def _read(
    store: FeatureStore, item_ids: Iterable[str], features: Sequence[str]
) -> Iterator[dict[str, Any]]:
    """The online rows of ``item_ids`` (``item_id`` and ``features``), :data:`READ_CHUNK` at a
    time; nothing when the view was never applied (nothing was embedded yet)."""
    from feast.errors import FeatureViewNotFoundException

    ids = list(dict.fromkeys(str(i) for i in item_ids))
    for start in range(0, len(ids), READ_CHUNK):
        chunk = ids[start : start + READ_CHUNK]
        try:
            found = store.get_online_features(
                features=[f"{VIEW}:{name}" for name in features],
                entity_rows=[{"item_id": i} for i in chunk],
            ).to_dict()
        except FeatureViewNotFoundException:
            return
        for n, item in enumerate(found["item_id"]):
            yield {"item_id": str(item), **{name: found[name][n] for name in features}}


def stored(store: FeatureStore, item_ids: Iterable[str]) -> dict[str, tuple[str, str, str]]:
    """item_id -> (user_id, model ref, text sha) of those of ``item_ids`` that have a vector
    online (no vectors are read: a removed item has no model either)."""
    return {
        row["item_id"]: (str(row["user_id"]), str(row["model"]), str(row["text_sha"] or ""))
        for row in _read(store, item_ids, ("user_id", "model", "text_sha"))
        if row["model"]
    }


def vectors_of(
    store: FeatureStore, item_ids: Iterable[str]
) -> list[tuple[str, str, str, str, list[float]]]:
    """(item_id, user_id, category, colour family, vector) of those of ``item_ids`` that have
    a vector, in the order asked."""
    return [
        (
            row["item_id"],
            str(row["user_id"]),
            str(row["category"] or ""),
            str(row["colour_family"] or ""),
            [float(x) for x in row["vector"]],
        )
        for row in _read(store, item_ids, ("vector", "user_id", "category", "colour_family"))
        if row["vector"] is not None and len(row["vector"]) > 0
    ]


def vector_of(store: FeatureStore, item_id: str) -> tuple[str, str, str, list[float]] | None:
    """(user_id, category, colour family, vector) of an item, or None when it has none."""
    for _item, user, category, colour, vector in vectors_of(store, [item_id]):
        return user, category, colour, vector
    return None


def nearest(
    store: FeatureStore,
    vector: Sequence[float],
    *,
    user_id: str,
    k: int,
    category: str | None = None,
    exclude: str | None = None,
) -> list[Neighbour]:
    """The user's ``k`` items closest to ``vector`` (of ``category`` when given), nearest first."""
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
