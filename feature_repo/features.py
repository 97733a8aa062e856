"""Feast definitions of Dresscode: who we serve (users, cities) and what we know about them.

* ``user_style`` — one row per user per night from ``<lake>/user_style/`` (wardrobe size,
  category / warmth / formality shares, top colours, style clusters of the item vectors,
  outerwear, last upload; and, from the ``wore_instead`` feedback of the last 30 days, outfits
  worn, worn colours and pairs worn together). Its feature names come from
  :mod:`dresscode.features.style`, which takes them from the wardrobe-digitizer blueprint's
  schema: one schema source.
* ``weather`` — the derived forecast per city from ``<lake>/weather/`` (the offline history,
  materialized nightly, used for training data and backfills).
* ``weather_live`` — the same features, pushed by the hourly ``weather_ingest`` through the
  push source ``weather_push``. Its own view (its own online table) so that materializing
  ``weather`` from older batch rows never overwrites a fresher push: the SQLite online store
  upserts without comparing timestamps. Never materialize ``weather_live``.
* ``outfit_context`` — what the stylist reads online: ``user_style`` + ``weather_live``; an
  entity row carries ``user_id`` and ``city_id``.

The lake tables are Delta tables partitioned by ``date`` (``DeltaFormat``): the offline store
(``dresscode.features.offline_store``, Feast's Dask store reading a Delta source through its
log) reads the files of the table's current version, never a part that was replaced; ``date``
comes along as an extra column that no view selects. The lake root comes from the settings
(``DRESSCODE_LAKE_URI``) when this module is loaded, so ``feast apply`` / ``dresscode.features.store
.apply()`` record the lake of the environment that applies them.
"""

from __future__ import annotations

import os
from datetime import timedelta

from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    PushSource,
    ValueType,
)
from feast.data_format import DeltaFormat, ParquetFormat
from feast.types import Array, Bool, Float32, Float64, Int64, String, UnixTimestamp

from dresscode.features import style
from dresscode.features.store import repo_settings

TIMESTAMP = "event_timestamp"
CREATED = "created"


def lake_path(table: str) -> str:
    """Where Feast reads a lake table: a local path for file:// lakes, the URI for s3://."""
    uri = repo_settings().lake_uri
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    return f"{uri}/{table}"


# For S3-compatible stores (MinIO in the full stack); unset on AWS.
S3_ENDPOINT = (
    os.environ.get("FEAST_S3_ENDPOINT_URL")
    or os.environ.get("AWS_ENDPOINT_URL_S3")
    or os.environ.get("AWS_ENDPOINT_URL")
    or None
)

# The full stack's online store of each view (feature_store.fullstack.yaml routes by this tag;
# its value is the store type's last part in lower case, dresscode.features.hybrid_online_store):
# Redis for the key-value views, PostgreSQL for the vectors. The local store keeps every view.
KEY_VALUE_STORE = {"online_store": "redis"}
VECTOR_STORE = {"online_store": "vectorpostgresqlonlinestore"}

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="A Dresscode user (the product's user id).",
)
city = Entity(
    name="city",
    join_keys=["city_id"],
    value_type=ValueType.STRING,
    description="A city users dress for (weather is per city).",
)

user_style_source = FileSource(
    name="user_style_source",
    path=lake_path("user_style"),
    file_format=DeltaFormat(),
    timestamp_field=TIMESTAMP,
    created_timestamp_column=CREATED,
    s3_endpoint_override=S3_ENDPOINT,
    description="Nightly user style snapshots: the Delta table <lake>/user_style (by date).",
)

weather_source = FileSource(
    name="weather_source",
    path=lake_path("weather"),
    file_format=DeltaFormat(),
    timestamp_field=TIMESTAMP,
    created_timestamp_column=CREATED,
    s3_endpoint_override=S3_ENDPOINT,
    description="Derived forecasts per city: the Delta table <lake>/weather (by date).",
)

weather_push = PushSource(
    name="weather_push",
    batch_source=weather_source,
    description="Hourly weather_ingest pushes fresh forecasts here (online, and offline).",
)


def _user_style_schema() -> list[Field]:
    shares = style.share_columns()
    share_fields = [Field(name=n, dtype=Float64) for names in shares.values() for n in names]
    return [
        Field(name="wardrobe_size", dtype=Int64),
        *share_fields,
        Field(name="top_colors", dtype=Array(String)),
        # What the wardrobe is made of: "blue top x5", ... (dresscode.features.embeddings.clusters).
        Field(name="style_clusters", dtype=Array(String)),
        Field(name="outerwear_count", dtype=Int64),
        Field(name="water_resistant_count", dtype=Int64),
        Field(name="last_upload", dtype=UnixTimestamp),
        # What the user wore: their wore_instead feedback of the 30 days before the row's
        # event time (dresscode.features.worn).
        Field(name="worn_count_30d", dtype=Int64),
        Field(name="worn_colors", dtype=Array(String)),
        Field(name="worn_pairs", dtype=Array(String)),
    ]


# The fields dresscode.features.weather.derive returns (FEATURE_KEYS) and the stylist's
# get_weather answer carries: mean, the day's high and low (the outfit rules' heat and cold
# thresholds read them), lowest feels-like, all over the daytime hours.
WEATHER_SCHEMA = [
    Field(name="temperature_c", dtype=Float64),
    Field(name="temperature_max_c", dtype=Float64),
    Field(name="temperature_min_c", dtype=Float64),
    Field(name="feels_like_c", dtype=Float64),
    Field(name="precip_prob", dtype=Float64),
    Field(name="wind_kph", dtype=Float64),
    Field(name="is_rainy", dtype=Bool),
    Field(name="temperature_tier", dtype=String),
    Field(name="season", dtype=String),
    Field(name="day", dtype=String),
]

user_style = FeatureView(
    name="user_style",
    entities=[user],
    ttl=timedelta(days=30),
    schema=_user_style_schema(),
    source=user_style_source,
    online=True,
    description="Wardrobe and worn-outfit summary per user, computed nightly by style_features.",
    tags={"owner": "dresscode", "dag": "style_features", **KEY_VALUE_STORE},
)

weather = FeatureView(
    name="weather",
    entities=[city],
    ttl=timedelta(days=2),
    schema=WEATHER_SCHEMA,
    source=weather_source,
    online=True,
    description="Derived forecast per city from the lake (materialized nightly).",
    tags={"owner": "dresscode", "dag": "weather_ingest", **KEY_VALUE_STORE},
)

weather_live = FeatureView(
    name="weather_live",
    entities=[city],
    ttl=timedelta(days=2),
    schema=WEATHER_SCHEMA,
    source=weather_push,
    online=True,
    description="Derived forecast per city as pushed hourly; never materialized.",
    tags={"owner": "dresscode", "dag": "weather_ingest", **KEY_VALUE_STORE},
)

item = Entity(
    name="item",
    join_keys=["item_id"],
    value_type=ValueType.STRING,
    description="A wardrobe item (the digitizer's item id).",
)

item_embeddings_source = FileSource(
    name="item_embeddings_source",
    path=lake_path("item_embeddings"),
    file_format=ParquetFormat(),
    timestamp_field=TIMESTAMP,
    s3_endpoint_override=S3_ENDPOINT,
    description="Item description vectors, <lake>/item_embeddings/date=YYYY-MM-DD/*.parquet.",
)

# Online, the one store of the item vectors: written per embedding batch by
# dresscode.features.embeddings.backfill (which also plans from it), searched
# (retrieve_online_documents_v2 over `vector`, filtered by user_id) by .similar, read by
# .clusters — locally in dresscode.features.vector_online_store (SQLite), on the full stack in
# dresscode.features.postgres_vector_store (PostgreSQL; exact, per user, no pgvector). Never
# materialized: the lake holds removed items' vectors too. Offline: training sets, drift.
item_embeddings = FeatureView(
    name="item_embeddings",
    entities=[item],
    ttl=timedelta(days=3650),
    schema=[
        Field(
            name="vector",
            dtype=Array(Float32),
            vector_index=True,
            vector_length=repo_settings().embedding_dimension,
            vector_search_metric="COSINE",
        ),
        Field(name="user_id", dtype=String),
        Field(name="category", dtype=String),
        Field(name="colour_family", dtype=String),
        # What the vector was made from: the embedding run's "up to date" is an online read
        # of these two (dresscode.features.embeddings.backfill).
        Field(name="model", dtype=String),
        Field(name="text_sha", dtype=String),
        Field(name="possible_duplicate_of", dtype=String),
    ],
    source=item_embeddings_source,
    online=True,
    description="Each item's description vector (multilingual-e5-small), by item_embeddings.",
    tags={"owner": "dresscode", "dag": "item_embeddings", **VECTOR_STORE},
)

outfit_context = FeatureService(
    name="outfit_context",
    features=[user_style, weather_live],
    description="What the stylist reads online per (user_id, city_id).",
    tags={"owner": "dresscode", "dag": "outfit_pregen"},
)
