"""Exact vector search for the project's Feast online stores: rank with numpy, answer in key order.

Shared by :mod:`dresscode.features.vector_online_store` (SQLite, local) and
:mod:`dresscode.features.postgres_vector_store` (PostgreSQL, the full stack). Both keep a
vector as raw float32 bytes in the online table's ``vector_value`` column and answer
``retrieve_online_documents_v2`` the same way:

1. the store reads the vectors that pass the filters (its SQL does the filtering, through an
   index; a conjunction of equalities through :func:`first_and_rest`), in chunks of
   :data:`CHUNK` rows ``(entity_key, vector bytes, event_ts)``;
2. :func:`nearest` ranks each chunk exactly — cosine (1 - cos) or L2, the metric asked for —
   and keeps the ``top_k``;
3. the store reads the hits' other requested features, and :func:`documents` returns the rows
   in **join-key order**: ``FeatureStore._retrieve_from_online_store_v2`` pairs the store's rows
   with the entities sorted by join key, so rows in distance order would come back carrying
   another item's features (sort the answer by ``distance``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from feast.feature_view import FeatureView
from feast.filter_models import ComparisonFilter, CompoundFilter
from feast.infra.key_encoding_utils import deserialize_entity_key, serialize_entity_key
from feast.infra.online_stores.helpers import extract_text_and_num
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import FloatList
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig
from feast.utils import _get_feature_view_vector_field_metadata, to_naive_utc

METRICS = ("COSINE", "L2")
CHUNK = 4096  # vectors ranked at a time: memory stays bounded on a scan of every vector

Row = tuple[datetime | None, EntityKeyProto | None, dict[str, ValueProto] | None]
Candidate = tuple[bytes, bytes, datetime | None]  # entity key, float32 bytes, event time
Hit = tuple[float, bytes, bytes, datetime | None]  # distance, then the candidate
Written = list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]]


def first_and_rest(
    filters: ComparisonFilter | CompoundFilter | None,
) -> tuple[ComparisonFilter | CompoundFilter | None, list[tuple[str, str]]]:
    """A conjunction of string equalities (``user_id = u AND category = c``) as its first
    filter, for Feast's translator (one index lookup: the user's rows), and the rest as
    ``(feature, value)`` pairs the store tests per row of that answer (:data:`ALSO_EQUAL`).

    Feast's translators turn each equality into ``entity_key IN (SELECT …)``, and SQLite then
    builds every such set in full for each query — all of a category's items in the store:
    134 ms a search at 200,000 items, against the user's few hundred rows. Any other filter is
    returned whole."""
    if (
        isinstance(filters, CompoundFilter)
        and filters.type == "and"
        and len(filters.filters) > 1
        and all(
            isinstance(f, ComparisonFilter) and f.type == "eq" and isinstance(f.value, str)
            for f in filters.filters
        )
    ):
        first, *rest = filters.filters
        return first, [(f.key, str(f.value)) for f in rest if isinstance(f, ComparisonFilter)]
    return filters, []


# One of first_and_rest's pairs, tested per candidate row through the table's primary key
# (entity_key, feature_name); {table} and {mark} (the driver's placeholder) filled by the store.
ALSO_EQUAL = (
    " AND EXISTS (SELECT 1 FROM {table} c WHERE c.entity_key = v.entity_key"
    " AND c.feature_name = {mark} AND c.value_text = {mark})"
)


def write_columns(with_num: bool) -> list[str]:
    """The online table's columns one written feature fills (``value_num`` with Feast's
    OpenAI-compatible store on); the first two are the table's key."""
    columns = ["entity_key", "feature_name", "value", "value_text"]
    columns += ["value_num"] if with_num else []
    return [*columns, "vector_value", "event_ts", "created_ts"]


def write_rows(
    config: RepoConfig, view: FeatureView, data: Written, with_num: bool
) -> Iterator[list[Any]]:
    """One row per (entity, feature) of ``data``, in :func:`write_columns`' order: the vector
    field's float32 bytes in ``vector_value``, NULL there for every other feature."""
    vector, length = vector_field(view), vector_length(view)
    for key, values, event_ts, created_ts in data:
        key_bin = serialize_entity_key(
            key, entity_key_serialization_version=config.entity_key_serialization_version
        )
        for feature, value in values.items():
            text, num = extract_text_and_num(value, with_num)
            row = [key_bin, feature, value.SerializeToString(), text]
            row += [num] if with_num else []
            yield [
                *row,
                vector_bytes(vector, feature, value, length),
                to_naive_utc(event_ts),
                to_naive_utc(created_ts) if created_ts is not None else None,
            ]


def search_spec(
    store: str,
    table: FeatureView,
    embedding: Sequence[float] | None,
    query_string: str | None,
    distance_metric: str | None,
) -> tuple[str, str]:
    """(the view's vector field, the metric) of a search; ValueError for one not supported."""
    if embedding is None or query_string is not None:
        raise ValueError(f"{store} searches by vector only (no text search)")
    vector = vector_field(table)
    if vector is None:
        raise ValueError(f"feature view {table.name} has no vector field (vector_index=True)")
    metric = (distance_metric or "L2").upper()
    if metric not in METRICS:
        raise ValueError(f"distance metric {distance_metric!r}: one of {METRICS}")
    return vector, metric


def nearest(
    chunks: Iterable[Sequence[Candidate]], embedding: Sequence[float], metric: str, top_k: int
) -> list[Hit]:
    """The ``top_k`` candidates closest to ``embedding``, nearest first (ties: read order)."""
    import numpy as np

    query = np.asarray(embedding, dtype=np.float32)
    best: list[Hit] = []
    for chunk in chunks:
        if not chunk:
            continue
        matrix = np.frombuffer(b"".join(bytes(c[1]) for c in chunk), np.float32)
        found = distances(matrix.reshape(len(chunk), -1), query, metric)
        for i in np.argsort(found, kind="stable")[:top_k]:
            key, blob, event_ts = chunk[i]
            best.append((float(found[i]), bytes(key), bytes(blob), event_ts))
        best = sorted(best, key=lambda hit: hit[0])[:top_k]
    return best


def documents(
    config: RepoConfig,
    best: Sequence[Hit],
    vector: str,
    features: Mapping[bytes, Mapping[str, ValueProto]],
) -> list[Row]:
    """The hits as Feast's rows — their ``features`` (key -> other requested features), the
    vector and ``distance`` — in join-key order (see the module)."""
    found: list[tuple[tuple[Any, ...], Row]] = []
    for distance, key, blob, event_ts in best:
        values = dict(features.get(key, {}))
        values[vector] = ValueProto(float_list_val=FloatList(val=floats(blob)))
        values["distance"] = ValueProto(float_val=distance)
        entity = deserialize_entity_key(
            key, entity_key_serialization_version=config.entity_key_serialization_version
        )
        found.append((tuple(_plain(v) for v in entity.entity_values), (event_ts, entity, values)))
    found.sort(key=lambda pair: pair[0])
    return [row for _, row in found]


def distances(matrix: Any, query: Any, metric: str) -> Any:
    """Distance of each row of ``matrix`` to ``query``: cosine (1 - cos) or L2."""
    import numpy as np

    if metric == "L2":
        return np.linalg.norm(matrix - query, axis=1)
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(query)
    return 1.0 - (matrix @ query) / np.where(norms == 0, 1.0, norms)


def vector_field(view: FeatureView) -> str | None:
    """The view's field declared for search (``vector_index=True``), if any."""
    fields = [f.name for f in view.features if getattr(f, "vector_index", False)]
    return fields[0] if fields else None


def vector_length(view: FeatureView) -> int:
    return int(getattr(_get_feature_view_vector_field_metadata(view), "vector_length", 0) or 0)


def vector_bytes(
    view_vector: str | None, feature: str, value: ValueProto, length: int
) -> bytes | None:
    """What ``vector_value`` holds for one feature: float32 bytes of the vector field, else None
    (also for a null vector: a removed item, which no search returns)."""
    from feast.infra.key_encoding_utils import serialize_f32

    if feature != view_vector or not value.HasField("float_list_val"):
        return None
    floats_ = value.float_list_val.val
    return serialize_f32(floats_, length or len(floats_)) if floats_ else None


def floats(blob: bytes) -> list[float]:
    import numpy as np

    return np.frombuffer(blob, dtype=np.float32).tolist()


def _plain(value: ValueProto) -> Any:
    kind = value.WhichOneof("val")
    return getattr(value, kind) if kind else None
