"""The column types of the lake's Delta tables, and pandas columns cast to them.

A batch where a column is all null, or an int column with gaps that pandas holds as float, must
not change a Delta table's schema: known columns are written with the type declared here (and
a column the table already has, with the table's type). Used by :mod:`dresscode.core.delta`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from deltalake import DeltaTable

STR, INT, FLOAT, BOOL, STRS = "string", "int64", "float64", "bool", "list<string>"
TS = "timestamp"  # UTC, microseconds (Delta's timestamp)


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
USER_TYPES = {"user_id": STR, "city": STR, "last_active_at": TS}


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
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return STRS
    if pa.types.is_timestamp(arrow_type):
        return TS
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
    if kind == STRS:
        return pa.array(
            [None if missing(v) else [str(x) for x in v] for v in values], pa.list_(pa.string())
        )
    if kind == TS:  # aware datetimes or ISO strings; naive ones are taken as UTC
        stamps = pd.to_datetime(values, utc=True, errors="coerce")
        return pa.array(stamps, pa.timestamp("us", tz="UTC"), from_pandas=True)
    return pa.array([None if missing(v) else str(v) for v in values], pa.string())


def missing(value: Any) -> bool:
    if value is None:
        return True
    return isinstance(value, float) and value != value
