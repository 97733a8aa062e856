"""Similar items and the same garment twice, from the item vectors.

*Similar* is the user's nearest items by cosine distance of their description vectors (any
category: "something like this blue shirt" may be a blouse), answered by Feast's online store
(``retrieve_online_documents_v2``, :mod:`dresscode.features.embeddings.online`: SQLite locally,
PostgreSQL on the full stack). *The same garment twice* is stricter: a **new** item whose
nearest item of the **same user and category** is within
``DRESSCODE_EMBEDDING_DUPLICATE_DISTANCE`` and of the **same colour family** is marked
``possible_duplicate_of`` that item with a score (1 - distance). Nothing is deleted: the
user's feedback confirms (the item leaves the current wardrobe) or rejects it.

The check runs in the embedding batch (:mod:`dresscode.features.embeddings.backfill`), before
the batch is written: the user's items already online are searched (any worker wrote them), and
the batch's other items are compared in memory with their new vectors — so two copies of one
garment in the same batch find each other, and an item of the batch re-embedded after a
correction is compared by its new vector, not the one online.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dresscode.core.config import Settings, get_settings
from dresscode.features.embeddings import colours, online
from dresscode.features.embeddings.backfill import DuplicateFinder, Todo
from dresscode.features.embeddings.online import Neighbour

if TYPE_CHECKING:
    from feast import FeatureStore

_CANDIDATES = 3  # nearest items of the same category looked at for one of the same colour


def duplicate_finder(settings: Settings) -> DuplicateFinder:
    """For a new item: (the earlier item it may repeat, cosine distance), or None."""
    limit = settings.embedding_duplicate_distance

    def find(
        store: FeatureStore,
        item: Todo,
        vector: list[float],
        batch: Sequence[tuple[Todo, list[float]]],
    ) -> tuple[str, float] | None:
        family = colours.family(item.colour)
        peers = [
            (t, v)
            for t, v in batch
            if t.item_id != item.item_id
            and (t.user_id, t.category) == (item.user_id, item.category)
        ]
        in_batch = {t.item_id for t, _ in batch}
        near = [
            n
            for n in online.nearest(
                store,
                vector,
                user_id=item.user_id,
                k=_CANDIDATES + len(peers),
                category=item.category,
                exclude=item.item_id,
            )
            if n.item_id not in in_batch  # online with an older vector, if at all
        ]
        near += [
            Neighbour(t.item_id, cosine_distance(vector, v), t.category, colours.family(t.colour))
            for t, v in peers
        ]
        for n in sorted(near, key=lambda n: (n.distance, n.item_id))[:_CANDIDATES]:
            if n.distance > limit:
                return None
            if colours.family(n.colour) == family:
                return n.item_id, n.distance
        return None

    return find


def cosine_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """1 - cos(a, b), as the online stores rank (0 for a zero vector's cosine)."""
    import numpy as np

    x, y = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    norms = float(np.linalg.norm(x) * np.linalg.norm(y))
    return 1.0 - (float(x @ y) / norms if norms else 0.0)


def similar_items(item_id: str, k: int = 5, settings: Settings | None = None) -> list[Neighbour]:
    """The ``k`` items of the same user closest to ``item_id``; [] when it has no vector yet.

    Only items in the user's current wardrobe are answers: one deleted (or confirmed a
    duplicate) since the last ``item_embeddings`` run is still searchable until that run
    removes it, and is filtered out here (one read of that user's rows).
    """
    from dresscode.core import tables

    settings = settings or get_settings()
    store = online.open_store(settings)
    found = online.vector_of(store, item_id)
    if found is None:
        return []
    user, vector = found[0], found[3]
    near = online.nearest(store, vector, user_id=user, k=k + _SPARE, exclude=item_id)
    current = tables.current_wardrobe_items([user], settings)
    ids = set(current["item_id"].astype(str)) if not current.empty else set()
    return [n for n in near if n.item_id in ids][:k]


_SPARE = 20  # extra neighbours fetched so that items deleted since the last run can be dropped


def has_vector(item_id: str, settings: Settings | None = None) -> bool:
    return online.vector_of(online.open_store(settings or get_settings()), item_id) is not None


def vector_of(
    item_id: str, settings: Settings | None = None
) -> tuple[str, str, str, list[float]] | None:
    """(user_id, category, colour family, vector) of an item, or None when it has none."""
    return online.vector_of(online.open_store(settings or get_settings()), item_id)
