"""dresscode.features.hybrid_online_store routes each view to the store its tag names: here two
SQLite files, Feast's store for the key-value view and the project's vector store for vectors."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.filter_models import ComparisonFilter
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import FloatList
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig
from feast.types import Array, Float32, Int64, String

from dresscode.features.hybrid_online_store import VectorHybridOnlineStore, routed_config

VECTOR_STORE = "dresscode.features.vector_online_store.VectorSqliteOnlineStore"
NOW = datetime(2026, 12, 6, tzinfo=UTC)


def _view(name: str, join_key: str, fields: list[Field], tags: dict[str, str]) -> FeatureView:
    entity = Entity(name=join_key, join_keys=[join_key], value_type=ValueType.STRING)
    source = FileSource(name=f"{name}_source", path="unused.parquet", timestamp_field="ts")
    return FeatureView(name=name, entities=[entity], schema=fields, source=source, tags=tags)


STYLE = _view("style", "user_id", [Field(name="size", dtype=Int64)], {"store": "sqlite"})
VECTORS = _view(
    "vectors",
    "item_id",
    [
        Field(name="vector", dtype=Array(Float32), vector_index=True, vector_length=2),
        Field(name="user_id", dtype=String),
    ],
    {"store": "VectorSqliteOnlineStore"},  # the tag's case does not matter
)


@pytest.fixture
def hybrid(tmp_path: Path) -> tuple[VectorHybridOnlineStore, RepoConfig, Path]:
    config = RepoConfig(
        project="p",
        provider="local",
        registry=str(tmp_path / "registry.db"),
        entity_key_serialization_version=3,
        online_store={
            "type": "dresscode.features.hybrid_online_store.VectorHybridOnlineStore",
            "routing_tag": "store",
            "online_stores": [
                {"type": "sqlite", "conf": {"path": str(tmp_path / "kv.db")}},
                {
                    "type": VECTOR_STORE,
                    "conf": {"path": str(tmp_path / "vectors.db"), "vector_enabled": True},
                },
            ],
        },
    )
    store = VectorHybridOnlineStore()
    store.update(config, [], [STYLE, VECTORS], [], [], partial=False)
    return store, config, tmp_path


def _key(name: str, value: str) -> EntityKey:
    return EntityKey(join_keys=[name], entity_values=[ValueProto(string_val=value)])


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_each_view_lives_in_its_own_store_and_reads_back(hybrid) -> None:
    store, config, tmp = hybrid
    assert _tables(tmp / "kv.db") == {"p_style"}
    assert _tables(tmp / "vectors.db") == {"p_vectors"}
    store.online_write_batch(
        config, STYLE, [(_key("user_id", "u1"), {"size": ValueProto(int64_val=3)}, NOW, None)], None
    )
    rows = [
        (
            _key("item_id", item),
            {
                "vector": ValueProto(float_list_val=FloatList(val=vector)),
                "user_id": ValueProto(string_val=user),
            },
            NOW,
            None,
        )
        for item, user, vector in (("a", "u1", [1, 0]), ("b", "u1", [0, 1]), ("c", "u2", [1, 0]))
    ]
    store.online_write_batch(config, VECTORS, rows, None)
    [(_, style)] = store.online_read(config, STYLE, [_key("user_id", "u1")])
    assert style is not None and style["size"].int64_val == 3
    found = store.retrieve_online_documents_v2(
        config, VECTORS, ["user_id"], [0.9, 0.1], top_k=5, distance_metric="COSINE",
        filters=ComparisonFilter(key="user_id", value="u1", type="eq"),
    )  # fmt: skip
    assert [entity.entity_values[0].string_val for _, entity, _ in found] == ["a", "b"]
    # The caller's config is left as it was (Feast's own hybrid overwrites it).
    assert config.online_store.routing_tag == "store"
    assert routed_config(config.online_store, STYLE).type == "sqlite"
    assert routed_config(config.online_store, VECTORS).type == VECTOR_STORE
    assert config.online_store.vector_enabled


def test_a_view_without_a_known_tag_is_an_error_naming_it(hybrid) -> None:
    store, config, _ = hybrid
    untagged = _view("loose", "user_id", [Field(name="size", dtype=Int64)], {})
    with pytest.raises(ValueError, match="loose has no 'store' tag"):
        store.online_read(config, untagged, [_key("user_id", "u1")])
    elsewhere = _view("far", "user_id", [Field(name="size", dtype=Int64)], {"store": "redis"})
    with pytest.raises(ValueError, match="far: no online store 'redis'"):
        store.update(config, [], [elsewhere], [], [], partial=False)


def test_update_and_teardown_drop_each_view_from_its_store_only(hybrid) -> None:
    store, config, tmp = hybrid
    untagged: Any = _view("vectors", "item_id", VECTORS.features, {})  # registered before the tag
    store.update(config, [untagged], [STYLE], [], [], partial=False)
    assert _tables(tmp / "kv.db") == {"p_style"}
    assert _tables(tmp / "vectors.db") == set()
    store.teardown(config, [STYLE], [])
    assert _tables(tmp / "kv.db") == set()
