"""Per-user style clusters: a wardrobe grouped by its items' description vectors.

k-means (scikit-learn, seeded) over one user's vectors, k = about the square root of half the
wardrobe (at most ``max_clusters``): a wardrobe of 40 items falls into ~4 groups such as "blue
tops", "black footwear". Each cluster is named by its most common colour family and category,
so the stylist (or the app) can read "what this wardrobe is made of" as a short list of
strings; the cluster of an item is what "more like this" browses.

The names are the ``style_clusters`` feature of ``user_style`` (Feast ``Array(String)``):
:func:`names_by_user` gives them for the users of one ``dresscode.features.style`` run. Choices
a reader may wonder about:

* Only the items of the wardrobe the row describes count (the caller passes their ids): a
  vector still online for an item deleted since, or one added after the row's time, does not
  shape the clusters. The vectors themselves are the current ones in Feast's online store
  (``item_embeddings``, :mod:`dresscode.features.embeddings.online`), shared by every worker.
* Cost per item asked for, never the whole store: an online read of exactly those item ids
  (in chunks), for all users of the run at once.
* No vectors is not an error: a user the embedding DAG has not reached yet has no clusters
  (the caller gives an empty list), and before the view was ever applied (the DAG never ran)
  the answer is empty, logged. Vectors of another size than ``DRESSCODE_EMBEDDING_DIMENSION``
  (made before a deliberate change of size) are left out with a warning: the other style
  features still get computed and served.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from dresscode.core.config import Settings, get_settings
from dresscode.features.embeddings import colours, online

log = logging.getLogger(__name__)

MAX_CLUSTERS = 6

# One item's vector row: (item_id, category, colour or colour family, vector).
VectorRow = tuple[str, str, str, Sequence[float]]


@dataclass(frozen=True)
class StyleCluster:
    name: str  # "blue top": the most common colour family and category
    size: int
    item_ids: list[str]


def style_clusters(
    user_id: str, *, max_clusters: int = MAX_CLUSTERS, settings: Settings | None = None
) -> list[StyleCluster]:
    """The user's current wardrobe in clusters, largest first; [] for an empty or unembedded
    one."""
    from dresscode.core import tables

    settings = settings or get_settings()
    items = tables.current_wardrobe_items([user_id], settings)
    ids = [] if items.empty else [str(i) for i in items["item_id"]]
    rows = [
        (item, category, colour, vector)
        for item, _user, category, colour, vector in online.vectors_of(
            online.open_store(settings), ids
        )
    ]
    return clusters_of(rows, max_clusters=max_clusters)


def clusters_of(
    rows: Sequence[VectorRow], *, max_clusters: int = MAX_CLUSTERS
) -> list[StyleCluster]:
    """One user's vector rows in clusters, largest first (ties by name); [] for no rows."""
    import numpy as np
    from sklearn.cluster import KMeans

    if not rows:
        return []
    k = max(1, min(max_clusters, len(rows), round(math.sqrt(len(rows) / 2))))
    vectors = np.asarray([r[3] for r in rows], dtype=np.float32)
    # One seeded k-means++ start, not several: style_features clusters every active user each
    # night, and four starts cost ~4x for a few items' difference in a wardrobe's few groups.
    labels = (
        KMeans(n_clusters=k, n_init=1, random_state=0).fit_predict(vectors)
        if k > 1
        else [0] * len(rows)
    )
    clusters = []
    for label in sorted(set(int(x) for x in labels)):
        members = [r for r, x in zip(rows, labels, strict=True) if int(x) == label]
        kind = Counter(f"{colours.family(r[2]) or 'plain'} {r[1]}" for r in members)
        clusters.append(
            StyleCluster(kind.most_common(1)[0][0], len(members), [r[0] for r in members])
        )
    return sorted(clusters, key=lambda c: (-c.size, c.name))


def cluster_names(clusters: list[StyleCluster]) -> list[str]:
    """The feature value: ``["blue top x5", "black footwear x3", …]``."""
    return [f"{c.name} x{c.size}" for c in clusters]


def names_by_user(
    wardrobes: Mapping[str, Collection[str]],
    *,
    max_clusters: int = MAX_CLUSTERS,
    settings: Settings | None = None,
) -> dict[str, list[str]]:
    """``style_clusters`` per user, from ``wardrobes`` (user id -> the item ids of the wardrobe
    the feature row describes). Users without vectors of those items are left out; before
    anything was embedded, the answer is empty (logged)."""
    settings = settings or get_settings()
    wanted = {user: set(ids) for user, ids in wardrobes.items() if ids}
    if not wanted:
        return {}
    owner = {item: user for user, ids in wanted.items() for item in ids}
    by_user: dict[str, list[VectorRow]] = {}
    other_size = 0
    for item, _user, category, colour, vector in online.vectors_of(
        online.open_store(settings), sorted(owner)
    ):
        if len(vector) != settings.embedding_dimension:
            other_size += 1  # made before a change of size, not re-embedded yet
            continue
        by_user.setdefault(owner[item], []).append((item, category, colour, vector))
    if other_size:
        log.warning(
            "style_clusters_unavailable: %d item vectors online are not of %d numbers "
            "(DRESSCODE_EMBEDDING_DIMENSION); they are left out (docs/runbooks/item_embeddings.md)",
            other_size,
            settings.embedding_dimension,
        )
    if not by_user:
        log.info(
            "no item vectors online for the %d users with items (item_embeddings has not "
            "run, or not reached them): no style clusters",
            len(wanted),
        )
        return {}
    names = {
        user: cluster_names(clusters_of(rows, max_clusters=max_clusters))
        for user, rows in sorted(by_user.items())
    }
    log.info("style clusters for %d of %d users with items", len(names), len(wanted))
    return names
