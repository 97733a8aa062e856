"""Per-user style clusters: a wardrobe grouped by its items' description vectors.

k-means (scikit-learn, seeded) over one user's vectors, k = about the square root of half the
wardrobe (at most ``max_clusters``): a wardrobe of 40 items falls into ~4 groups such as "blue
tops", "black footwear". Each cluster is named by its most common colour family and category,
so the stylist (or the app) can read "what this wardrobe is made of" as a short list of
strings; the cluster of an item is what "more like this" browses.

Not yet a Feast feature: ``user_style`` is computed by ``dresscode.features.style``; the lead
wires :func:`style_clusters` into it (a ``style_clusters`` Array(String) field) — see the
issue 19 report.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from dresscode.core.config import Settings, get_settings
from dresscode.features.embeddings import colours, index


@dataclass(frozen=True)
class StyleCluster:
    name: str  # "blue top": the most common colour family and category
    size: int
    item_ids: list[str]


def style_clusters(
    user_id: str, *, max_clusters: int = 6, settings: Settings | None = None
) -> list[StyleCluster]:
    """The user's wardrobe in clusters, largest first; [] for an empty or unembedded one."""
    import numpy as np
    from sklearn.cluster import KMeans

    with index.connect(settings or get_settings()) as db:
        rows = index.of_user(db, user_id)
    if not rows:
        return []
    k = max(1, min(max_clusters, len(rows), round(math.sqrt(len(rows) / 2))))
    vectors = np.asarray([r[3] for r in rows], dtype=np.float32)
    labels = (
        KMeans(n_clusters=k, n_init=4, random_state=0).fit_predict(vectors)
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
