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
  vector the index still holds for an item deleted since, or one added after the row's time,
  does not shape the clusters. The vectors themselves are the index's current ones.
* Cost per user, never the whole index: each user's vectors are read from their own partition
  of the index (``index.of_user``), one connection for the whole run.
* No vectors is not an error: a user the embedding DAG has not reached yet has no clusters
  (the caller gives an empty list), and with no index file at all (the DAG never ran) nothing
  is read and the file is not created. An index of another dimension than the settings'
  (``DimensionMismatch``: the ``item_embeddings`` DAG fails on it, loudly) gives no clusters
  and a warning here: the other style features still get computed and served.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from dresscode.core.config import Settings, get_settings
from dresscode.features.embeddings import colours, index
from dresscode.features.embeddings.client import DimensionMismatch

log = logging.getLogger(__name__)

MAX_CLUSTERS = 6

# What index.of_user gives per item: (item_id, category, colour, vector).
VectorRow = tuple[str, str, str, Sequence[float]]


@dataclass(frozen=True)
class StyleCluster:
    name: str  # "blue top": the most common colour family and category
    size: int
    item_ids: list[str]


def style_clusters(
    user_id: str, *, max_clusters: int = MAX_CLUSTERS, settings: Settings | None = None
) -> list[StyleCluster]:
    """The user's wardrobe in clusters, largest first; [] for an empty or unembedded one."""
    with index.connect(settings or get_settings()) as db:
        rows = index.of_user(db, user_id)
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
    the feature row describes). Users without vectors of those items are left out; with no
    index file (or one of another dimension, logged), the answer is empty."""
    settings = settings or get_settings()
    wanted = {user: set(ids) for user, ids in wardrobes.items() if ids}
    if not wanted:
        return {}
    if not index.path(settings).exists():
        log.info(
            "no item vector index at %s (item_embeddings has not run): no style clusters",
            index.path(settings),
        )
        return {}
    names: dict[str, list[str]] = {}
    try:
        with index.connect(settings) as db:
            for user, ids in wanted.items():
                rows = [r for r in index.of_user(db, user) if r[0] in ids]
                if rows:
                    names[user] = cluster_names(clusters_of(rows, max_clusters=max_clusters))
    except DimensionMismatch as exc:
        log.warning("style_clusters_unavailable: %s", exc)
        return {}
    log.info("style clusters for %d of %d users with items", len(names), len(wanted))
    return names
