"""The column types of the lake's Delta tables, and pandas columns cast to them.

A batch where a column is all null, or an int column with gaps that pandas holds as float, must
not change a Delta table's schema: known columns are written with the type declared here (and
a column the table already has, with the table's type). Used by :mod:`dresscode.core.delta`.

Timestamps: Delta's ``timestamp`` is microseconds since the epoch, UTC. pandas hands over
nanoseconds (``datetime64[ns, UTC]``, or naive, or Python datetimes): they are cast explicitly
(naive values are UTC, Feast's convention; the sub-microsecond digits are floored), so a value
read back equals the one written to the microsecond, whatever pandas held.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from deltalake import DeltaTable

STR, INT, FLOAT, BOOL, STRS = "string", "int64", "float64", "bool", "list<string>"
TIMESTAMP = "timestamp[us, UTC]"


MANIFEST_TYPES = {
    "upload_key": STR,
    "user_id": STR,
    "upload_id": STR,
    "status": STR,
    "raw_sha256": STR,
    "image_sha256": STR,
    "reason_code": STR,
    "reason": STR,
    "source_format": STR,
    "source_bytes": INT,
    "source_width": INT,
    "source_height": INT,
    "width": INT,
    "height": INT,
    "brightness": FLOAT,
    "prompt_version": INT,
    "n_items": INT,
    "model_called": BOOL,
    "attempt": INT,
    "run_id": STR,
    "processed_at": STR,
    "phash": STR,
    "duplicate_of": STR,
}
ITEM_TYPES = {
    "item_id": STR,
    "user_id": STR,
    "image_sha256": STR,
    "upload_key": STR,
    "prompt_version": INT,
    "category": STR,
    "subcategory": STR,
    "color_names": STRS,
    "color_hexes": STRS,
    "pattern": STR,
    "material": STR,
    "warmth": STR,
    "formality": STR,
    "seasons": STRS,
    "water_resistant": BOOL,
    "description": STR,
    "digitized_at": STR,
    "replaces": STR,
}
REDIGITIZED_TYPES = {
    "upload_key": STR,
    "user_id": STR,
    "image_sha256": STR,
    "prompt_version": INT,
    "from_version": INT,
    "n_items": INT,
    "model_called": BOOL,
    "run_id": STR,
    "processed_at": STR,
}
EVENT_TYPES = {
    "event_id": STR,
    "user_id": STR,
    "event_type": STR,
    "event_time": STR,
    "item_id": STR,
    "payload": STR,
    "image_sha256": STR,
    "prompt_version": STR,
    "source_sha256": STR,
    "received_at": STR,
    "source": STR,
}
USER_TYPES = {"user_id": STR, "city": STR, "last_active_at": TIMESTAMP}

# The feature tables (written by dresscode.features, read by Feast and the materializer). The
# share columns of user_style (share_<category>, warmth_<level>, formality_<level>) are named
# from the digitizer blueprint's vocabularies: never null, pandas gives them float64 as written.
USER_STYLE_TYPES = {
    "user_id": STR,
    "event_timestamp": TIMESTAMP,
    "created": TIMESTAMP,
    "wardrobe_size": INT,
    "top_colors": STRS,
    "style_clusters": STRS,
    "outerwear_count": INT,
    "water_resistant_count": INT,
    "last_upload": TIMESTAMP,
    "worn_count_30d": INT,
    "worn_colors": STRS,
    "worn_pairs": STRS,
}
WEATHER_TYPES = {
    "city_id": STR,
    "city": STR,
    "latitude": FLOAT,
    "longitude": FLOAT,
    "day": STR,
    "temperature_c": FLOAT,
    "temperature_max_c": FLOAT,
    "temperature_min_c": FLOAT,
    "feels_like_c": FLOAT,
    "precip_prob": FLOAT,
    "wind_kph": FLOAT,
    "is_rainy": BOOL,
    "temperature_tier": STR,
    "season": STR,
    "fetched_at": TIMESTAMP,
    "source": STR,
    "event_timestamp": TIMESTAMP,
    "created": TIMESTAMP,
}


def schema_types(table: DeltaTable | None) -> dict[str, str]:
    if table is None:
        return {}
    import pyarrow as pa

    schema = pa.schema(table.schema())
    return {field.name: kind_of(field.type) for field in schema}


def kind_of(arrow_type: pa.DataType) -> str:
    import pyarrow as pa

    if pa.types.is_integer(arrow_type):
        return INT
    if pa.types.is_floating(arrow_type):
        return FLOAT
    if pa.types.is_boolean(arrow_type):
        return BOOL
    if pa.types.is_timestamp(arrow_type):
        return TIMESTAMP
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return STRS
    return STR


def column(values: pd.Series, kind: str | None) -> pa.Array:
    """One column as Arrow ``kind`` (None: as pandas infers it); NaN and None become null."""
    import pandas as pd
    import pyarrow as pa

    if kind is None:
        return pa.array(values, from_pandas=True)
    if kind == INT:
        return pa.array(pd.to_numeric(values, errors="coerce").astype("Int64"), pa.int64())
    if kind == FLOAT:
        return pa.array(pd.to_numeric(values, errors="coerce"), pa.float64(), from_pandas=True)
    if kind == BOOL:
        return pa.array([None if missing(v) else bool(v) for v in values], pa.bool_())
    if kind == TIMESTAMP:
        # Explicitly to Delta's unit: pyarrow would refuse (or a reader mis-read) nanoseconds.
        moments = pd.to_datetime(pd.Series(values), utc=True, errors="coerce")
        return pa.array(
            moments.dt.floor("us").dt.as_unit("us"), pa.timestamp("us", "UTC"), from_pandas=True
        )
    if kind == STRS:
        return pa.array(
            [None if missing(v) else [str(x) for x in v] for v in values], pa.list_(pa.string())
        )
    return pa.array([None if missing(v) else str(v) for v in values], pa.string())


def missing(value: Any) -> bool:
    if value is None:
        return True
    return isinstance(value, float) and value != value
