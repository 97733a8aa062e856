"""Similar items and the same garment twice, from the item vectors.

*Similar* is the user's nearest items by cosine distance of their description vectors (any
category: "something like this blue shirt" may be a blouse), answered by Feast's online store
(``retrieve_online_documents_v2``, :mod:`dresscode.features.embeddings.online`: SQLite locally,
PostgreSQL on the full stack), by the index where the store searches no vectors. *The same
garment twice* is stricter: a **new** item whose nearest item of the **same user and category** is within
``DRESSCODE_EMBEDDING_DUPLICATE_DISTANCE`` and of the **same colour family** is marked
``possible_duplicate_of`` that item with a score (1 - distance). Nothing is deleted: the
user's feedback confirms (the item leaves the current wardrobe) or rejects it. It reads the
index inside the embedding batch's transaction (:mod:`dresscode.features.embeddings.backfill`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dresscode.core.config import Settings, get_settings
from dresscode.features.embeddings import colours, index, online
from dresscode.features.embeddings.backfill import Todo


def duplicate_finder(
    settings: Settings,
) -> Callable[[Any, Todo, list[float]], tuple[str, float] | None]:
    """For a new item: (the earlier item it may repeat, cosine distance), or None."""
    limit = settings.embedding_duplicate_distance

    def find(db: Any, item: Todo, vector: list[float]) -> tuple[str, float] | None:
        family = colours.family(item.colour)
        for near in index.nearest(
            db, vector, user_id=item.user_id, k=3, category=item.category, exclude=item.item_id
        ):
            if near.distance > limit:
                return None
            if colours.family(near.colour) == family:
                return near.item_id, near.distance
        return None

    return find


def similar_items(
    item_id: str, k: int = 5, settings: Settings | None = None
) -> list[index.Neighbour]:
    """The ``k`` items of the same user closest to ``item_id``; [] when it has no vector yet.

    Only items in the user's current wardrobe are answers: one deleted (or confirmed a
    duplicate) since the last ``item_embeddings`` run is still searchable until that run
    removes it, and is filtered out here (one read of that user's rows).
    """
    from dresscode.core import tables

    settings = settings or get_settings()
    store = online.open_store(settings)
    if store is not None:
        found = online.vector_of(store, item_id)
        if found is None:
            return []
        user, vector = found[0], found[3]
        near = online.nearest(store, vector, user_id=user, k=k + _SPARE, exclude=item_id)
    else:
        with index.connect(settings) as db:
            found = index.vector_of(db, item_id)
            if found is None:
                return []
            user, vector = found[0], found[3]
            near = index.nearest(db, vector, user_id=user, k=k + _SPARE, exclude=item_id)
    current = tables.current_wardrobe_items([user], settings)
    ids = set(current["item_id"].astype(str)) if not current.empty else set()
    return [n for n in near if n.item_id in ids][:k]


_SPARE = 20  # extra neighbours fetched so that items deleted since the last run can be dropped


def has_vector(item_id: str, settings: Settings | None = None) -> bool:
    settings = settings or get_settings()
    store = online.open_store(settings)
    if store is not None:
        return online.vector_of(store, item_id) is not None
    with index.connect(settings) as db:
        return index.vector_of(db, item_id) is not None
