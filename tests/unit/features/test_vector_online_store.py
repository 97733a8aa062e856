"""Item vectors in Feast's online store (dresscode.features.vector_online_store, through the
project's feature repo): exact answers, each row its own item's, one user's items only, removed
items out of search, and an embedding batch whose online write fails leaves nothing behind."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dresscode.core import lake
from dresscode.features.embeddings import backfill, online
from dresscode.features.embeddings.client import EmbeddingModel

DIM = 384
ITEMS = 90  # item k belongs to user u{k % 3}, its category is c{k}


@pytest.fixture
def stored(dresscode_home: Path) -> tuple[Any, np.ndarray]:
    store = online.open_store(apply=True)
    vectors = np.random.default_rng(7).standard_normal((ITEMS, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    now = datetime.now(UTC)
    rows = [
        {"item_id": f"i{k:02d}", "user_id": f"u{k % 3}", "category": f"c{k}",
         "colour_family": "blue", "vector": vectors[k], "event_timestamp": now}
        for k in range(ITEMS)
    ]  # fmt: skip
    online.write(store, rows)
    return store, vectors


def _probe(vectors: np.ndarray, near: int) -> np.ndarray:
    noise = np.random.default_rng(near).standard_normal(DIM).astype(np.float32)
    probe = vectors[near] + 0.5 * noise / np.linalg.norm(noise)
    return probe / np.linalg.norm(probe)


def test_one_users_nearest_items_are_the_exact_ones_each_with_its_own_row(stored) -> None:
    store, vectors = stored
    probe = _probe(vectors, 4)
    found = online.nearest(store, probe.tolist(), user_id="u1", k=5)
    mine = np.arange(1, ITEMS, 3)
    distance = 1 - vectors[mine] @ probe
    order = np.argsort(distance)[:5]
    assert [n.item_id for n in found] == [f"i{mine[i]:02d}" for i in order]
    assert [n.distance for n in found] == pytest.approx(distance[order].tolist(), abs=1e-5)
    assert [n.category for n in found] == [f"c{int(n.item_id[1:])}" for n in found]
    category = online.nearest(store, probe.tolist(), user_id="u1", k=5, category="c4")
    assert [n.item_id for n in category] == ["i04"]
    assert online.nearest(store, probe.tolist(), user_id="u0", k=5, category="c4") == []
    assert "i04" not in {
        n.item_id for n in online.nearest(store, probe, user_id="u1", k=5, exclude="i04")
    }


def test_feast_pairs_every_row_with_its_own_item(stored) -> None:
    """Feast pairs the store's rows with entities in join-key order: rows in distance order
    would come back with other items' features (what Milvus Lite's answers looked like)."""
    store, vectors = stored
    probe = _probe(vectors, 10)
    answer = store.retrieve_online_documents_v2(
        features=["item_embeddings:user_id", "item_embeddings:category", "item_embeddings:vector"],
        query=probe.tolist(),
        top_k=10,
        distance_metric="COSINE",
    ).to_dict()
    nearest = {f"i{k:02d}" for k in np.argsort(1 - vectors @ probe)[:10]}
    assert set(answer["item_id"]) == nearest
    for item, user, category, vector, distance in zip(
        answer["item_id"], answer["user_id"], answer["category"], answer["vector"],
        answer["distance"], strict=True,
    ):  # fmt: skip
        k = int(item[1:])
        assert (user, category) == (f"u{k % 3}", f"c{k}")
        assert np.allclose(vector, vectors[k])
        assert distance == pytest.approx(float(1 - vectors[k] @ probe), abs=1e-5)


def test_a_removed_item_is_no_answer_and_has_no_vector(stored) -> None:
    store, vectors = stored
    assert online.vector_of(store, "i04") is not None
    online.remove(store, {"i04": "u1"})
    assert online.vector_of(store, "i04") is None
    found = online.nearest(store, vectors[4].tolist(), user_id="u1", k=5)
    assert len(found) == 5 and "i04" not in {n.item_id for n in found}


def test_a_failed_online_write_leaves_nothing_behind(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dresscode.core.config import get_settings

    settings = get_settings()
    store = online.open_store(settings, apply=True)
    todo = backfill.Todo("t1", "u1", "top", "navy", "Navy t-shirt.", "sha", new=True)
    monkeypatch.setattr(backfill, "embed", lambda *_: [[1.0] + [0.0] * (DIM - 1)])

    def down(*_: Any) -> int:
        raise ConnectionError("online store down")

    monkeypatch.setattr(online, "write", down)
    with pytest.raises(ConnectionError):
        backfill.embed_batch(
            [todo], None, None, EmbeddingModel("m", DIM), settings, "2026-12-06",  # type: ignore[arg-type]
            lambda *_: None, store,
        )  # fmt: skip
    assert online.stored(store, ["t1"]) == {}  # the next run embeds it again
    assert lake.read_table(backfill.TABLE, settings).empty  # and no offline copy either
