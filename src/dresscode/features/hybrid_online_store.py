"""Feast's hybrid online store, routing by a view's tag, with vector search routed too.

The full stack keeps ``user_style`` and the weather views in Redis and ``item_embeddings`` in
PostgreSQL (:mod:`dresscode.features.postgres_vector_store`; Feast's Redis store cannot search
vectors). Feast 0.67.0 ships ``HybridOnlineStore`` for this: each feature view names its store
in a tag (``routing_tag``), whose value is the store's type — its last dotted part, lower
case (``redis``, ``vectorpostgresqlonlinestore``). As shipped it does not work for us (each
point tried, two SQLite stores and Redis):

* it has no ``retrieve_online_documents_v2``;
* it finds a store's config class from that lower-cased last part, which works for Feast's
  short names (``redis``) only — a store given by its class path fails to load
  (``FeastOnlineStoreInvalidName``);
* each read and write builds a new ``RepoConfig`` from the caller's, and first overwrites the
  caller's ``online_config`` (and adds keys to its ``__dict__``);
* ``update`` calls the first view's store with every view (that store creates the other
  store's tables too), then fails at the second view: it replaced its ``config`` with the
  first store's, which has no ``online_stores``; and it deletes nothing when no view is kept.

So this subclass keeps Feast's configuration and tag convention and routes every call itself:
one store and one ``RepoConfig`` (a copy with that store's config) per tag value, made once;
``update`` and ``teardown`` give each store its own views (a view to delete without a known
tag — registered before the tag existed — goes to every store: deleting what is not there is
a no-op);
``retrieve_online_documents_v2`` goes to the view's store. A kept view without the tag, or
with a tag no store answers to, is an error naming it. ``vector_enabled`` is true when one of
the stores has it (what :func:`dresscode.features.embeddings.online.open_store` reads)::

    online_store:
      type: dresscode.features.hybrid_online_store.VectorHybridOnlineStore
      routing_tag: online_store
      online_stores:
        - type: redis
          conf: {connection_string: "redis:6379,db=1"}
        - type: dresscode.features.postgres_vector_store.VectorPostgreSQLOnlineStore
          conf: {url: ..., vector_enabled: true}
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from feast import Entity
from feast.feature_view import FeatureView
from feast.filter_models import ComparisonFilter, CompoundFilter
from feast.infra.online_stores.helpers import get_online_store_from_config
from feast.infra.online_stores.hybrid_online_store.hybrid_online_store import (
    HybridOnlineStore,
    HybridOnlineStoreConfig,
)
from feast.infra.online_stores.online_store import OnlineStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig, get_online_config_from_type
from pydantic import StrictStr

from dresscode.features.vector_search import Row

STORE_TYPE = "dresscode.features.hybrid_online_store.VectorHybridOnlineStore"


def store_name(store_type: str) -> str:
    """The tag value that routes a view to a store of this type (Feast's convention)."""
    return store_type.split(".")[-1].lower()


def routed_config(online_config: Any, view: FeatureView) -> Any:
    """The config of the store ``view`` is routed to: ``online_config`` itself unless hybrid."""
    if not isinstance(online_config, HybridOnlineStoreConfig):
        return online_config
    name = (view.tags.get(online_config.routing_tag) or "").lower()
    for entry in online_config.online_stores or []:
        if store_name(entry.type) == name:
            return get_online_config_from_type(entry.type)(**entry.conf)
    return online_config


class VectorHybridOnlineStoreConfig(HybridOnlineStoreConfig):
    """Feast's hybrid config (``online_stores``, ``routing_tag``) under this store's type."""

    type: StrictStr = STORE_TYPE  # type: ignore[assignment]

    @property
    def vector_enabled(self) -> bool:
        return any(s.conf.get("vector_enabled") for s in self.online_stores or [])


class VectorHybridOnlineStore(HybridOnlineStore):
    """Feast's hybrid online store, routing every call by the view's tag (see the module)."""

    def __init__(self) -> None:
        super().__init__()
        self._routes: dict[str, tuple[OnlineStore, Any]] = {}
        self._configs: dict[str, tuple[RepoConfig, RepoConfig]] = {}

    def _route(self, config: RepoConfig, view: FeatureView) -> tuple[OnlineStore, RepoConfig]:
        """The view's store and the config to call it with."""
        tag = config.online_store.routing_tag
        name = view.tags.get(tag)
        if not name:
            raise ValueError(f"feature view {view.name} has no {tag!r} tag (which online store)")
        return self._store(config, name.lower(), view.name)

    def _store(
        self, config: RepoConfig, name: str, view: str = ""
    ) -> tuple[OnlineStore, RepoConfig]:
        if not self._routes:
            for entry in config.online_store.online_stores or []:
                store_config = get_online_config_from_type(entry.type)(**entry.conf)
                store = get_online_store_from_config(store_config)
                self._routes[store_name(entry.type)] = (store, store_config)
        if name not in self._routes:
            raise ValueError(
                f"feature view {view}: no online store {name!r} (one of {sorted(self._routes)})"
            )
        store, store_config = self._routes[name]
        made = self._configs.get(name)
        if made is None or made[0] is not config:
            copy = config.model_copy()
            copy.online_config = store_config
            copy._online_store = store_config
            made = self._configs[name] = (config, copy)
        return store, made[1]

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        odata: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        store, routed = self._route(config, table)
        store.online_write_batch(routed, table, odata, progress)

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        store, routed = self._route(config, table)
        return store.online_read(routed, table, entity_keys, requested_features)

    async def online_read_async(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        store, routed = self._route(config, table)
        return await store.online_read_async(routed, table, entity_keys, requested_features)

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
        store, routed = self._route(config, table)
        return store.retrieve_online_documents_v2(
            routed,
            table,
            requested_features,
            embedding,
            top_k,
            distance_metric,
            query_string,
            filters,
            include_feature_view_version_metadata,
        )

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        keep = self._by_store(config, tables_to_keep)
        delete = self._by_store(config, tables_to_delete, untagged_to_all=True)
        for name in sorted(set(keep) | set(delete)):
            store, routed = self._store(config, name)
            store.update(
                routed,
                delete.get(name, []),
                keep.get(name, []),
                entities_to_delete,
                entities_to_keep,
                partial,
            )

    def teardown(
        self, config: RepoConfig, tables: Sequence[FeatureView], entities: Sequence[Entity]
    ) -> None:
        for name, views in sorted(self._by_store(config, tables, untagged_to_all=True).items()):
            store, routed = self._store(config, name)
            store.teardown(routed, views, entities)

    def _by_store(
        self, config: RepoConfig, views: Sequence[FeatureView], *, untagged_to_all: bool = False
    ) -> dict[str, list[FeatureView]]:
        """Views grouped by the store they route to."""
        grouped: dict[str, list[FeatureView]] = defaultdict(list)
        tag = config.online_store.routing_tag
        everywhere = [store_name(e.type) for e in config.online_store.online_stores or []]
        for view in views:
            if untagged_to_all and (view.tags.get(tag) or "").lower() not in everywhere:
                for name in everywhere:
                    grouped[name].append(view)
                continue
            self._route(config, view)  # an unknown tag is an error, here too
            grouped[view.tags[tag].lower()].append(view)
        return grouped
