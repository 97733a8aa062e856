"""Minimal JSON-schema instances, and bending a near-valid value into a schema.

Constrained decoding in vLLM guarantees schema-valid output; the simulator gets the same
guarantee cheaply: :func:`instance` builds the smallest valid value (required properties,
first enum value, ``minItems`` elements) and :func:`conform` fixes a plausible value (from a
script or from pixels) so it validates against whatever schema the request carries.
It covers the keywords structured-output schemas use, not all of JSON Schema.
"""

from __future__ import annotations

import json
import re
from typing import Any

_FORMATS = {
    "date": "2025-01-01",
    "date-time": "2025-01-01T00:00:00Z",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
# Tried in order against a `pattern`; good enough for ids, hex colours and digit strings.
_PATTERN_CANDIDATES = ("sample", "#808080", "0", "a", "A", "item_1", "2025-01-01", "")


def resolve(schema: Any, root: dict) -> dict:
    """Follow local ``$ref`` s and merge ``allOf`` so callers see one plain schema."""
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        ref = schema["$ref"]
        target: Any = root
        for part in ref.removeprefix("#/").split("/") if ref.startswith("#/") else []:
            target = target.get(part, {}) if isinstance(target, dict) else {}
        schema = {**{k: v for k, v in schema.items() if k != "$ref"}, **target}
    if not isinstance(schema, dict):
        return {}
    if "allOf" in schema:
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = resolve(part, root)
            merged["properties"] = {**merged.get("properties", {}), **part.get("properties", {})}
            merged["required"] = [*merged.get("required", []), *part.get("required", [])]
            merged.update({k: v for k, v in part.items() if k not in ("properties", "required")})
        return merged
    return schema


def type_of(schema: dict) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind:
        return str(kind)
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def instance(schema: Any, root: dict | None = None) -> Any:
    """The smallest value valid against ``schema``."""
    root = root if root is not None else (schema if isinstance(schema, dict) else {})
    schema = resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return instance(schema[key][0], root)
    kind = type_of(schema)
    if kind == "object":
        props = schema.get("properties", {})
        return {name: instance(props.get(name, {}), root) for name in schema.get("required", [])}
    if kind == "array":
        return _fill_array([], schema, root)
    if kind in ("integer", "number"):
        return _clamp(0, schema, integer=kind == "integer")
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return _string(schema)


def conform(value: Any, schema: Any, root: dict | None = None) -> Any:
    """``value`` changed as little as needed to be valid against ``schema``."""
    root = root if root is not None else (schema if isinstance(schema, dict) else {})
    schema = resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return value if value in schema["enum"] else schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            options = [resolve(s, root) for s in schema[key]]
            match = next((s for s in options if _matches_type(value, type_of(s))), options[0])
            return conform(value, match, root)
    kind = type_of(schema)
    if not _matches_type(value, kind):
        return instance(schema, root)
    if kind == "object":
        props = schema.get("properties", {})
        closed = schema.get("additionalProperties") is False
        out = {
            k: conform(v, props[k], root) if k in props else v
            for k, v in value.items()
            if k in props or not closed
        }
        for name in schema.get("required", []):
            if name not in out:
                out[name] = instance(props.get(name, {}), root)
        return out
    if kind == "array":
        items = [conform(v, schema.get("items", {}), root) for v in value]
        return _fill_array(items, schema, root)
    if kind in ("integer", "number"):
        return _clamp(value, schema, integer=kind == "integer")
    if kind == "string":
        pattern = schema.get("pattern")
        if pattern and not re.search(pattern, value):
            return _string(schema)
        return _fit_length(value, schema)
    return value


def _matches_type(value: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    return isinstance(value, str)


def _fill_array(items: list, schema: dict, root: dict) -> list:
    item_schema = resolve(schema.get("items", {}), root)
    if schema.get("uniqueItems"):
        unique: dict[str, Any] = {}
        for v in items:
            unique.setdefault(json.dumps(v, sort_keys=True), v)
        items = list(unique.values())
    if "maxItems" in schema:
        items = items[: schema["maxItems"]]
    pool = list(item_schema.get("enum", [])) if schema.get("uniqueItems") else []
    while len(items) < schema.get("minItems", 0):
        # Unique enum arrays (e.g. seasons) need distinct values, not the first one twice.
        fresh = next((v for v in pool if v not in items), None)
        items.append(fresh if fresh is not None else instance(item_schema, root))
    return items


def _clamp(value: float, schema: dict, *, integer: bool) -> float:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    step = 1 if integer else 0.5
    if low is not None and (value < low or (value == low and "exclusiveMinimum" in schema)):
        value = low + step if "exclusiveMinimum" in schema else low
    if high is not None and (value > high or (value == high and "exclusiveMaximum" in schema)):
        value = high - step if "exclusiveMaximum" in schema else high
    return int(value) if integer else value


def _string(schema: dict) -> str:
    text = _FORMATS.get(schema.get("format", ""), "sample")
    pattern = schema.get("pattern")
    if pattern:
        text = next((c for c in _PATTERN_CANDIDATES if re.search(pattern, c)), text)
    return _fit_length(text, schema)


def _fit_length(text: str, schema: dict) -> str:
    text = text.ljust(schema.get("minLength", 0), "x")
    return text[: schema["maxLength"]] if "maxLength" in schema else text
