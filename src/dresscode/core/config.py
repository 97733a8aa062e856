"""Settings: the knobs of the one configuration surface of the project.

Knobs are typed settings read from ``DRESSCODE_*`` environment variables with documented
defaults (``docs/configuration.md`` is generated from ``SETTINGS``). Endpoints and credentials
are Airflow Connections, settable as ``AIRFLOW_CONN_<ID>`` env vars, read in
``dresscode.core.connections``. A bad value fails at start with one sentence that names the
variable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

from dresscode.core.settings_catalog import REPO_ROOT, SETTINGS
from dresscode.core.settings_parsers import (
    MAX_VALUE_CHARS,
    SLO_DEFAULTS,
    Knob,
    SettingsError,
)

# Re-exported: the settings' error and knob types are part of this module's interface.
__all__ = [
    "REPO_ROOT",
    "SETTINGS",
    "SLO_DEFAULTS",
    "Knob",
    "Settings",
    "SettingsError",
    "get_settings",
    "load_settings",
]


@dataclass(frozen=True)
class Settings:
    """Typed settings; build with :func:`get_settings` (or :func:`load_settings` in tests)."""

    home: Path
    lake_uri: str
    landing_uri: str
    aws_conn_id: str
    lake_retention_hours: int
    lake_target_file_mb: int
    ingest_sqs_queue_url: str | None
    ingest_batch_size: int
    ingest_max_photos_per_run: int
    ingest_manifest_lookback_days: int
    ingest_max_failure_rate: float
    ingest_settle_s: float
    ingest_hidden_max_age_s: float
    ingest_near_duplicate_bits: int
    ingest_near_duplicate_candidates: int
    ingest_near_duplicate_delta_e: float
    embedding_dimension: int
    embedding_batch_size: int
    embedding_max_items_per_run: int
    embedding_max_chars: int
    embedding_duplicate_distance: float
    embedding_text_prefix: str | None
    image_long_edge: int
    image_jpeg_quality: int
    image_max_bytes: int
    image_max_pixels: int
    image_max_jpeg_scans: int
    image_max_decode_s: float
    image_formats: frozenset[str]
    llm_max_concurrency: int
    llm_pool_slots: int
    eval_priority: int
    llm_timeout_s: float
    llm_max_attempts: int
    llm_retry_budget_s: float
    active_user_days: int
    weather_cache_ttl_s: int
    weather_stale_max_s: int
    weather_timeout_s: float
    weather_max_attempts: int
    feast_repo: Path
    feast_env: str
    feast_write_batch_size: int
    materialize_overlap_h: int
    outfit_max_turns: int
    outfit_batch_size: int
    release_auto_promote: bool
    monitoring_auto_promote: bool
    approval_timeout_hours: float
    serve_port: int
    serve_conn_id: str
    worker_preload: str | None
    executor: str
    celery_workers: int
    celery_worker_concurrency: int
    celery_broker_url: str
    airflow_db_url: str | None
    serve_max_concurrency: int
    serve_alias_refresh_s: float
    serve_table_refresh_s: float
    serve_reader_processes: int
    serve_canary_share: float
    serve_shadow_share: float
    serve_rate_limit_per_min: int
    serve_max_days_ahead: int
    serve_log_flush_s: float
    shadow_live_gate: dict[str, float]
    mlflow_tracking_uri: str
    alerts_file: Path
    runbook_base_url: str
    alert_backends: frozenset[str]
    alert_slack_conn_id: str
    alert_smtp_conn_id: str
    alert_email_to: str | None
    alert_sns_topic_arn: str | None
    deadlines: bool
    monitoring_slos: dict[str, float]
    drift_reference_days: int
    drift_baseline_uri: str | None
    drift_min_rows: int
    drift_share: float
    drift_max_rows: int
    feedback_max_future_s: int
    model_prices: dict[str, dict[str, float]]
    trace_sample_rate: float
    eval_judges: bool
    judge_model: str | None
    judge_min_agreement: float
    judge_timeout_s: int
    monitoring_judge_sample: int

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        """Per-run overrides (DAG Params), validated like env values."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, raw in overrides.items():
            if name not in SETTINGS:
                raise SettingsError(
                    f"Unknown setting {name!r}; known: {', '.join(sorted(SETTINGS))}."
                )
            values[name] = _parse(name, str(raw))
        return Settings(**values)


def _parse(name: str, raw: str) -> Any:
    knob = SETTINGS[name]
    shown = repr(raw) if len(raw) <= 60 else f"{raw[:60]!r}… ({len(raw):,} characters)"
    try:
        if len(raw) > MAX_VALUE_CHARS:
            raise ValueError(f"longer than {MAX_VALUE_CHARS} characters")
        return knob.parse(raw)
    except (ValueError, TypeError) as exc:
        expected = (knob.parse.__doc__ or "a valid value").strip()
        raise SettingsError(
            f"{knob.env}={shown} is invalid: expected {expected} ({exc})."
        ) from None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read every knob from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    raw_home = env.get(SETTINGS["home"].env)
    home = _parse("home", raw_home) if raw_home else (REPO_ROOT / ".local").resolve()
    values = {}
    for name, knob in SETTINGS.items():
        raw = env.get(knob.env)
        if raw is None or (raw == "" and knob.empty_is_default):
            values[name] = knob.default(home)
        else:
            values[name] = _parse(name, raw)
    values["landing_uri"] = values["landing_uri"] or f"{values['lake_uri']}/landing"
    return Settings(**values)


@cache
def get_settings() -> Settings:
    """Process-wide settings (cached: the environment does not change under a running task)."""
    return load_settings()


@contextmanager
def environ_overrides(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block and put back what was there (for libraries,
    such as MLflow and its judges, that read their knobs only from the environment)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
