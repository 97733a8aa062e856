"""The embedding run over Feast's online store (dresscode.features.embeddings.backfill): the
online store is the record of what is embedded, shared by every worker; the same garment twice
is found among the items online and within one batch; gone items leave search once.

The endpoint is a stand-in (one deterministic vector per text, calls counted): what is tested
is what the run decides and where it writes, not the model."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dresscode.core import config, lake
from dresscode.core.config import Settings
from dresscode.features.embeddings import backfill, client, online, similar
from dresscode.features.embeddings.client import EmbeddingModel

DAY = "2026-12-06"
REPO = Path(__file__).parents[3] / "feature_repo"


def item(item_id: str, user: str = "u1", colour: str = "light blue", **extra: Any) -> dict:
    return {
        "item_id": item_id, "user_id": user, "category": "top", "subcategory": "shirt",
        "color_names": [colour], "description": f"{colour.capitalize()} cotton shirt.",
    } | extra  # fmt: skip


class Endpoint:
    """``backfill.embed``'s stand-in: the same text gives the same unit vector."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, _client: Any, _endpoint: Any, model: EmbeddingModel, texts: list[str]):
        self.calls.append(len(texts))
        out = []
        for text in texts:
            seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
            v = np.random.default_rng(seed).standard_normal(model.dimension)
            out.append((v / np.linalg.norm(v)).tolist())
        return out


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Endpoint:
    fake = Endpoint()
    monkeypatch.setattr(backfill, "embed", fake)
    return fake


def _run(items: list[dict], settings: Settings, dimension: int | None = None):
    model = EmbeddingModel("fake-e5", dimension or settings.embedding_dimension)
    return backfill.run(
        pd.DataFrame(items), None, None, model, settings, DAY,  # type: ignore[arg-type]
        similar.duplicate_finder(settings),
    )  # fmt: skip


def _worker(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A worker of the full stack: its own DRESSCODE_HOME (where an index file would have
    lived), the shared lake, and a Feast repo whose registry and online store are shared."""
    shared = tmp_path / "shared-feast"
    repo = tmp_path / "feature_repo"
    if not repo.exists():
        repo.mkdir()
        shared.mkdir()
        shutil.copy(REPO / "features.py", repo / "features.py")
        yaml = (REPO / "feature_store.yaml").read_text()
        (repo / "feature_store.yaml").write_text(
            yaml.replace("${DRESSCODE_HOME}/feast", str(shared))
        )
    monkeypatch.setenv("DRESSCODE_HOME", str(tmp_path / name))
    monkeypatch.setenv("DRESSCODE_LAKE_URI", f"file://{tmp_path / 'lake'}")
    monkeypatch.setenv("DRESSCODE_FEAST_REPO", str(repo))
    config.get_settings.cache_clear()
    return config.get_settings()


def test_a_rerun_on_another_worker_makes_no_calls_and_sees_the_first_workers_items(
    dresscode_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, endpoint: Endpoint
) -> None:
    wardrobe = [item("shirt-1"), item("coat-1", category="outerwear", colour="camel")]
    a = _worker(tmp_path, "worker-a", monkeypatch)
    plan, embedded, calls, _ = _run(wardrobe, a)
    assert (embedded, calls) == (2, 1)

    b = _worker(tmp_path, "worker-b", monkeypatch)
    assert b.home != a.home and b.lake_uri == a.lake_uri
    plan, embedded, calls, _ = _run(wardrobe, b)
    assert (calls, embedded, plan.up_to_date) == (0, 0, 2)  # what A embedded is up to date

    copy = item("shirt-2")  # the same garment again, uploaded to worker B
    _, embedded, calls, duplicates = _run([*wardrobe, copy], b)
    assert (embedded, calls) == (1, 1)
    assert [(d["item_id"], d["possible_duplicate_of"]) for d in duplicates] == [
        ("shirt-2", "shirt-1")
    ]
    for home in (a.home, b.home):
        assert not (home / "vectors").exists()  # no per-worker index file


def test_two_copies_in_one_batch_find_each_other(dresscode_home: Path, endpoint: Endpoint) -> None:
    settings = config.get_settings()
    other = item("shirt-1", user="u2")  # another user's copy: never a match
    _run([other], settings)
    batch = [item("shirt-a"), item("shirt-b"), item("shirt-c", colour="black")]
    _, embedded, calls, duplicates = _run([other, *batch], settings)
    assert (embedded, calls) == (3, 1)
    assert {d["item_id"]: d["possible_duplicate_of"] for d in duplicates} == {
        "shirt-a": "shirt-b",
        "shirt-b": "shirt-a",
    }
    marks = lake.read_table(backfill.TABLE).set_index("item_id")["possible_duplicate_of"]
    assert marks["shirt-a"] == "shirt-b" and pd.isna(marks["shirt-c"])


def test_what_is_up_to_date_is_read_online_model_and_text(
    dresscode_home: Path, endpoint: Endpoint
) -> None:
    settings = config.get_settings()
    wardrobe = [item("shirt-1"), item("shirt-2", colour="black")]
    _run(wardrobe, settings)
    stored = online.stored(online.open_store(), ["shirt-1", "shirt-2", "nope"])
    assert set(stored) == {"shirt-1", "shirt-2"}
    assert {s[1] for s in stored.values()} == {"fake-e5+item-text-v1"}
    corrected = [wardrobe[0], wardrobe[1] | {"description": "Black linen shirt."}]
    plan, embedded, calls, _ = _run(corrected, settings)
    assert (embedded, calls, plan.up_to_date) == (1, 1, 1)  # only the corrected one
    offline = lake.read_table(backfill.TABLE)
    assert {"model", "text_sha"} <= set(offline.columns) and len(offline) == 3


def test_a_gone_item_leaves_search_once(dresscode_home: Path, endpoint: Endpoint) -> None:
    settings = config.get_settings()
    wardrobe = [item("shirt-1"), item("shirt-2", colour="black"), item("shirt-3", colour="red")]
    _run(wardrobe, settings)
    plan, _, calls, _ = _run(wardrobe[:2], settings)  # shirt-3 deleted
    assert (plan.gone, calls) == (["shirt-3"], 0)
    store = online.open_store()
    assert online.vector_of(store, "shirt-3") is None
    assert "shirt-3" not in {
        n.item_id for n in online.nearest(store, [1.0] * 384, user_id="u1", k=5)
    }
    plan, _, calls, _ = _run(wardrobe[:2], settings)
    assert (plan.gone, calls) == ([], 0)  # removed once, not every run


def test_vectors_of_another_size_are_refused_until_dropped(
    dresscode_home: Path, endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    wardrobe = [item("shirt-1"), item("shirt-2", colour="black")]
    _run(wardrobe, config.get_settings())
    monkeypatch.setenv("DRESSCODE_EMBEDDING_DIMENSION", "8")
    config.get_settings.cache_clear()
    small = config.get_settings()
    with pytest.raises(client.DimensionMismatch, match="holds item vectors of 384"):
        _run(wardrobe, small)
    assert endpoint.calls == [2]  # nothing embedded at the new size
    assert online.drop(small)
    _, embedded, calls, _ = _run(wardrobe, small)
    assert (embedded, calls) == (2, 1)
    assert len(online.vector_of(online.open_store(), "shirt-1")[3]) == 8  # type: ignore[index]
