"""Feast's PostgreSQL online store with an exact vector search that needs no pgvector.

Checked against Feast 0.67.0. Its ``PostgreSQLOnlineStore`` keeps a feature view in one table (a
row per entity and feature) and, with ``vector_enabled``, searches with pgvector: the
``vector_value`` column becomes a ``vector``, every feature of the view is written to it as
text, and the search ranks every row of the table before the filters apply. This project's
PostgreSQL has no pgvector (the machine's 15, compose's ``postgres:16.9-bookworm``), and the
search must be per user. So this subclass, for the full stack's ``item_embeddings`` (through
:mod:`dresscode.features.hybrid_online_store`), changes four things and keeps the rest (the
connection, the table, ``online_read``, teardown):

* ``update`` creates Feast's table with ``vector_value`` as ``BYTEA`` whatever
  ``vector_enabled`` says, and indexes ``(feature_name, value_text)``, so that a filter such as
  ``user_id == u1`` is an index lookup, not a scan;
* ``online_write_batch`` writes ``vector_value`` — the vector's float32 bytes — for the view's
  vector field only, and NULL for a null vector (a removed item), which no search returns;
* ``retrieve_online_documents_v2`` reads the vectors that pass the filters (filtered in SQL),
  ranks them exactly with numpy — cosine or L2, the metric asked for — and returns the top k in
  join-key order (:mod:`dresscode.features.vector_search`, shared with the SQLite store);
* ``url`` may stand for host, port, database, user and password (the full stack passes the
  Feast registry's URL: the vectors live in the registry's database).

No approximate index (pgvector's HNSW): a search reads one user's items (hundreds) — measured
here, ~2.5 ms in the store for one user's 100 of 2,000 vectors (~10 ms through
``FeatureStore``), ~25 ms for a scan of all 2,000 — and pgvector is not available here. Text
search (BM25) is not supported. Configure it with::

    type: dresscode.features.postgres_vector_store.VectorPostgreSQLOnlineStore
    url: postgresql+psycopg://user:pass@host:5432/feast
    sslmode: prefer
    vector_enabled: true
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from feast import Entity
from feast.feature_view import FeatureView
from feast.filter_models import ComparisonFilter, CompoundFilter
from feast.infra.online_stores.postgres_online_store.postgres import (
    PostgresFilterTranslator,
    PostgreSQLOnlineStore,
    PostgreSQLOnlineStoreConfig,
    _table_id,
)
from feast.infra.utils.postgres.connection_utils import _get_conn, _get_connection_pool
from feast.infra.utils.postgres.postgres_config import ConnectionType
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig
from pydantic import StrictStr, model_validator

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

STORE_TYPE = "dresscode.features.postgres_vector_store.VectorPostgreSQLOnlineStore"


class VectorPostgreSQLOnlineStoreConfig(PostgreSQLOnlineStoreConfig):
    """Feast's PostgreSQL config; ``url`` may stand for host, port, database, user, password."""

    type: StrictStr = STORE_TYPE  # type: ignore[assignment]
    url: StrictStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_url(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("url"):
            return data
        parts = urlsplit(data["url"])
        if not parts.scheme.startswith("postgresql") or not parts.hostname:
            raise ValueError("url: postgresql://user:pass@host:port/database")
        found = {
            "host": parts.hostname,
            "port": parts.port or 5432,
            "database": unquote(parts.path.lstrip("/")),
            "user": unquote(parts.username or ""),
            "password": unquote(parts.password or ""),
        }
        return {**found, **data}  # fields given on their own win over the url's


class VectorPostgreSQLOnlineStore(PostgreSQLOnlineStore):
    """Feast's PostgreSQL online store; vectors as float32 bytes, searched exactly (see the module)."""

    @contextlib.contextmanager
    def _get_conn(self, config: RepoConfig, autocommit: bool = False) -> Generator[Any, Any, Any]:
        # Feast's, without its check that the store's type is "postgres".
        store = config.online_store
        if store.conn_type == ConnectionType.pool:
            if not self._conn_pool:
                self._conn_pool = _get_connection_pool(store)
                self._conn_pool.open()
            connection = self._conn_pool.getconn()
            connection.set_autocommit(autocommit)
            try:
                yield connection
            finally:
                self._conn_pool.putconn(connection)
        else:
            if not self._conn:
                self._conn = _get_conn(store)
            self._conn.set_autocommit(autocommit)
            yield self._conn

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        from psycopg import sql

        super().update(
            _without_pgvector(config),
            tables_to_delete,
            tables_to_keep,
            entities_to_delete,
            entities_to_keep,
            partial,
        )
        with self._get_conn(config) as conn, conn.cursor() as cur:
            for view in tables_to_keep:
                name = self._table(config, view)
                cur.execute(
                    sql.SQL(
                        "CREATE INDEX IF NOT EXISTS {} ON {} (feature_name, value_text)"
                    ).format(sql.Identifier(f"{name}_text"), sql.Identifier(name))
                )
            conn.commit()

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        from psycopg import sql

        name = self._table(config, table)
        with self._get_conn(config) as conn, conn.cursor() as cur:
            number = self._check_table_has_value_num(cur, name, config)
            columns = write_columns(number)
            query = sql.SQL(
                "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (entity_key, feature_name) "
                "DO UPDATE SET {}"
            ).format(
                sql.Identifier(name),
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(sql.Placeholder() * len(columns)),
                sql.SQL(", ").join(
                    sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns[2:]
                ),
            )
            cur.executemany(query, list(write_rows(config, table, data, number)))
            conn.commit()
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
        from psycopg import sql

        vector, metric = search_spec(STORE_TYPE, table, embedding, query_string, distance_metric)
        assert embedding is not None  # search_spec refuses a search without one
        name = self._table(config, table)
        with self._get_conn(config, autocommit=True) as conn, conn.cursor() as cur:
            numeric = filters is not None and self._filters_need_value_num(filters)
            if numeric and not self._check_table_has_value_num(cur, name, config):
                raise ValueError("numeric filters need enable_openai_compatible_store: true")
            first, rest = first_and_rest(filters)
            where, params = PostgresFilterTranslator(name, alias="v").translate(first)
            query = sql.SQL(
                "SELECT v.entity_key, v.vector_value, v.event_ts FROM {} v "
                "WHERE v.feature_name = %s AND v.vector_value IS NOT NULL"
            ).format(sql.Identifier(name))
            if where.as_string(conn).strip():
                query += sql.SQL(" AND ") + where
            for feature, value in rest:
                query += sql.SQL(ALSO_EQUAL.format(table="{}", mark="%s")).format(
                    sql.Identifier(name)
                )
                params = [*params, feature, value]
            cur.execute(query, [vector, *params])
            best = nearest(iter(lambda: cur.fetchmany(CHUNK), []), embedding, metric, top_k)
            features: dict[bytes, dict[str, ValueProto]] = {key: {} for _, key, _, _ in best}
            others = [f for f in requested_features or [] if f != vector]
            if best and others:
                cur.execute(
                    sql.SQL(
                        "SELECT entity_key, feature_name, value FROM {} "
                        "WHERE entity_key = ANY(%s) AND feature_name = ANY(%s)"
                    ).format(sql.Identifier(name)),
                    [list(features), others],
                )
                for key, feature, value in cur.fetchall():
                    features[bytes(key)][feature] = ValueProto.FromString(bytes(value))
        return documents(config, best, vector, features)

    @staticmethod
    def _table(config: RepoConfig, view: FeatureView) -> str:
        return _table_id(
            config.project, view, config.registry.enable_online_feature_view_versioning
        )


def _without_pgvector(config: RepoConfig) -> RepoConfig:
    """``config`` with ``vector_enabled`` off: Feast's ``update`` then keeps ``vector_value``
    a ``BYTEA`` (on, it would create a pgvector column)."""
    if not config.online_store.vector_enabled:
        return config
    copy = config.model_copy()
    copy.online_config = config.online_store.model_copy(update={"vector_enabled": False})
    copy._online_store = copy.online_config
    return copy
