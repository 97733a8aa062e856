"""Feast's SQLite online store with a vector search that works here: exact, filtered first.

Checked against Feast 0.67.0. Its ``SqliteOnlineStore`` keeps every feature view in one SQLite
file (a row per entity and feature; a vector feature also as raw float32 in ``vector_value``)
and answers ``retrieve_online_documents_v2`` with sqlite-vec. As shipped, that does not work
for ``item_embeddings`` (each point measured, Python 3.11):

* sqlite-vec is loaded only when ``sys.version_info[0:2] == (3, 10)``, and this Python's
  ``sqlite3`` cannot load extensions at all (built without them);
* loaded anyway (through ``pysqlite3``, a sqlite3 with its own SQLite): the search copies every
  vector into a ``vec_table`` on each query and never empties it, so the second query in a
  process fails (``UNIQUE constraint failed on vec_table primary key``); the distance is L2
  whatever the view declares; filters apply after the top k was cut; the vector comes back as
  one float per *byte*; and with ``vector_enabled`` every feature of every view is written to
  ``vector_value``, which ``user_style``'s ``Array(String)`` features cannot be;
* worse, a process that also loaded sqlite-vec through ``apsw`` (the project's former item
  index file) then held two SQLite libraries sharing one extension, and aborted (``free():
  invalid pointer``, the first embedding batch);
* Feast itself (``FeatureStore._retrieve_from_online_store_v2``) pairs the store's rows with
  the entities in join-key order: rows returned in distance order come back with another
  item's features and distance — the "mismatched rows" seen with Milvus Lite.

So this subclass loads no extension and changes three things, keeping the rest (the
connection, tables, ``online_read``, teardown):

* ``update`` also indexes ``(feature_name, value_text)``, so that a filter such as
  ``user_id == u1`` is a lookup, not a scan;
* ``online_write_batch`` writes ``vector_value`` for the view's vector field only;
* ``retrieve_online_documents_v2`` reads the vectors that pass the filters (in chunks) and
  ranks them with numpy — exact cosine or L2 distance, the metric asked for — then returns the
  top k in join-key order (Feast puts them back in place; sort by ``distance``). The ranking
  and the ordering are :mod:`dresscode.features.vector_search`, shared with the full stack's
  PostgreSQL store (:mod:`dresscode.features.postgres_vector_store`).

A null vector is not searched: writing an item with ``vector=None`` takes it out of search
(the embedding run does so for items no longer in any wardrobe). Text search (BM25) is not
supported. A search over one user's items reads only theirs (~0.5 ms at 10,000 vectors); one
over every vector is a scan (~20 ms at 10,000; docs/benchmarks.md). Configure it with::

    online_store:
      type: dresscode.features.vector_online_store.VectorSqliteOnlineStore
      path: ...
      vector_enabled: true
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from feast import Entity
from feast.feature_view import FeatureView
from feast.filter_models import ComparisonFilter, CompoundFilter
from feast.infra.online_stores import sqlite as feast_sqlite
from feast.infra.online_stores.sqlite import (
    SqliteFilterTranslator,
    SqliteOnlineStore,
    SqliteOnlineStoreConfig,
)
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig
from pydantic import StrictStr

from dresscode.features.vector_search import (
    ALSO_EQUAL,
    CHUNK,
    Row,
    documents,
    first_and_rest,
    nearest,
    search_spec,
    write_columns,
    write_rows,
)

STORE_TYPE = "dresscode.features.vector_online_store.VectorSqliteOnlineStore"


class VectorSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    """``online_store: {type: dresscode.features.vector_online_store.VectorSqliteOnlineStore}``."""

    type: StrictStr = STORE_TYPE  # type: ignore[assignment]


class VectorSqliteOnlineStore(SqliteOnlineStore):
    """Feast's SQLite online store; vectors searched exactly, filters first (see the module)."""

    def _get_conn(self, config: RepoConfig) -> Any:
        if not self._conn:  # Feast's connection, never with sqlite-vec (see the module)
            self._conn = feast_sqlite._initialize_conn(self._get_db_path(config))
        return self._conn

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        super().update(
            config, tables_to_delete, tables_to_keep, entities_to_delete, entities_to_keep, partial
        )
        conn = self._get_conn(config)
        with conn:
            for view in tables_to_keep:
                name = self._table(config, view)
                conn.execute(
                    f"CREATE INDEX IF NOT EXISTS {_quote(name + '_text')} "
                    f"ON {_quote(name)} (feature_name, value_text)"
                )

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        conn = self._get_conn(config)
        number = config.online_store.enable_openai_compatible_store
        columns = write_columns(number)
        sql = (
            f"INSERT INTO {_quote(self._table(config, table))} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))}) ON CONFLICT(entity_key, feature_name) "
            f"DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in columns[2:])}"
        )
        with conn:
            conn.executemany(sql, write_rows(config, table, data, number))
        if progress:
            progress(len(data))

    def retrieve_online_documents_v2(
        self,
        config: RepoConfig,
        table: FeatureView,
        requested_features: list[str],
        embedding: list[float] | None,
        top_k: int,
        distance_metric: str | None = None,
        query_string: str | None = None,
        filters: ComparisonFilter | CompoundFilter | None = None,
        include_feature_view_version_metadata: bool = False,
    ) -> list[Row]:
        vector, metric = search_spec(STORE_TYPE, table, embedding, query_string, distance_metric)
        assert embedding is not None  # search_spec refuses a search without one
        numeric = filters is not None and self._filters_need_value_num(filters)
        if numeric and not config.online_store.enable_openai_compatible_store:
            raise ValueError("numeric filters need enable_openai_compatible_store: true")
        name = self._table(config, table)
        first, rest = first_and_rest(filters)
        where, params = SqliteFilterTranslator(name, alias="v").translate(first)
        for feature, value in rest:
            where += ALSO_EQUAL.format(table=_quote(name), mark="?")
            params = [*params, feature, value]
        conn = self._get_conn(config)
        cursor = conn.execute(
            f"SELECT v.entity_key, v.vector_value, v.event_ts FROM {_quote(name)} v "
            "WHERE v.feature_name = ? AND v.vector_value IS NOT NULL"
            + (f" AND {where}" if where else ""),
            [vector, *params],
        )
        best = nearest(iter(lambda: cursor.fetchmany(CHUNK), []), embedding, metric, top_k)
        features: dict[bytes, dict[str, ValueProto]] = {key: {} for _, key, _, _ in best}
        others = [f for f in requested_features or [] if f != vector]
        if best and others:
            rows = conn.execute(
                f"SELECT entity_key, feature_name, value FROM {_quote(name)} "
                f"WHERE entity_key IN ({', '.join('?' * len(features))}) "
                f"AND feature_name IN ({', '.join('?' * len(others))})",
                [*features, *others],
            )
            for key, feature, value in rows:
                features[key][feature] = ValueProto.FromString(value)
        return documents(config, best, vector, features)

    @staticmethod
    def _table(config: RepoConfig, view: FeatureView) -> str:
        versioning = config.registry.enable_online_feature_view_versioning
        return feast_sqlite._table_id(config.project, view, versioning)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
