"""The project's Feast store: open it, apply the definitions, push, read, check freshness.

Feast is imported inside the functions (the import alone costs ~18 s), never at module level.

**Which store.** ``DRESSCODE_FEAST_ENV`` picks ``feature_repo/feature_store.yaml`` (local: file
registry and SQLite online store under ``<home>/feast``) or ``feature_store.fullstack.yaml``
(SQL registry on PostgreSQL, Redis online store; ``DRESSCODE_FEAST_REGISTRY_URL`` and
``DRESSCODE_FEAST_REDIS``). The yaml's ``${VARS}`` are expanded here, from the process
environment plus ``DRESSCODE_HOME`` = the settings' home, and an unset variable is an error
naming it — Feast's own loader (``os.path.expandvars``) would silently keep ``${NAME}`` and
create a folder called that.

**Materialization** (partition pruning, bounded memory) is
:func:`dresscode.features.materialization.materialize`.

**Push.** ``push_weather`` writes ``weather_live`` ONLINE only. Feast's offline push for a
file source reads the source path as one Parquet file and rewrites it with the new rows — on
our partitioned lake folder that would fail or clobber it. The offline copy of a forecast is
the ``weather`` lake table, which ``weather_ingest`` writes itself.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from dresscode.core.config import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore, FeatureView

log = logging.getLogger(__name__)

LOCAL_YAML = "feature_store.yaml"
FULLSTACK_YAML = "feature_store.fullstack.yaml"
DEFINITIONS = "features.py"
MATERIALIZED_VIEWS = ("user_style", "weather")
PUSH_SOURCE = "weather_push"
PUSH_VIEW = "weather_live"
# Written online by the embedding run only (removed items as null vectors): never materialized.
VECTOR_VIEW = "item_embeddings"
SERVICE = "outfit_context"
TIMESTAMP = "event_timestamp"
CREATED = "created"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")

# The settings the feature definitions read while `apply`/`plan` load them (see repo_settings).
_DEFINING: ContextVar[Settings | None] = ContextVar("dresscode_feast_defining", default=None)


class StaleFeatures(RuntimeError):
    """Online features are missing or older than required; the message names view and entities."""


class FeastConfigError(RuntimeError):
    """The feature store yaml cannot be loaded; the message names the file and the variable."""


class OnlineStoreUnavailable(RuntimeError):
    """The online store could not be reached; the message names the store, view and progress."""


# --- the store -------------------------------------------------------------------------------


def repo_settings() -> Settings:
    """The settings feature definitions use: those of the ongoing apply/plan, else the process's."""
    return _DEFINING.get() or get_settings()


def yaml_path(settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    name = FULLSTACK_YAML if settings.feast_env == "fullstack" else LOCAL_YAML
    return settings.feast_repo / name


def expand_vars(text: str, env: Mapping[str, str], source: str) -> str:
    """``${NAME}`` / ``$NAME`` from ``env``; an unset or empty variable is an error naming it."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        value = env.get(name)
        if not value:
            raise FeastConfigError(f"{source} needs ${{{name}}}, which is not set.")
        return value

    return "\n".join(
        line if line.lstrip().startswith("#") else _VAR.sub(sub, line) for line in text.splitlines()
    )


def _repo_config(settings: Settings) -> Any:
    import yaml
    from feast.repo_config import RepoConfig

    path = yaml_path(settings)
    env = {**os.environ, "DRESSCODE_HOME": str(settings.home)}
    raw = yaml.safe_load(expand_vars(path.read_text(), env, str(path)))
    raw.setdefault("materialization", {})["online_write_batch_size"] = (
        settings.feast_write_batch_size
    )
    config = RepoConfig(**raw)
    config.repo_path = settings.feast_repo
    return config


def feature_store(settings: Settings | None = None) -> FeatureStore:
    """The project's FeatureStore for ``settings.feast_env`` (creates ``<home>/feast``)."""
    from feast import FeatureStore

    settings = settings or get_settings()
    (settings.home / "feast").mkdir(parents=True, exist_ok=True)
    # The Feast CLI expands the yaml from the environment: keep it consistent with ours.
    os.environ.setdefault("DRESSCODE_HOME", str(settings.home))
    return FeatureStore(repo_path=str(settings.feast_repo), config=_repo_config(settings))


# --- definitions: plan and apply ---------------------------------------------------------------

_loads = itertools.count()


def load_definitions(settings: Settings | None = None) -> ModuleType:
    """Execute ``feature_repo/features.py`` afresh with ``settings`` (the lake path is read then)."""
    settings = settings or get_settings()
    path = settings.feast_repo / DEFINITIONS
    spec = importlib.util.spec_from_file_location(f"_dresscode_feature_repo_{next(_loads)}", path)
    if spec is None or spec.loader is None:
        raise FeastConfigError(f"Cannot load feature definitions from {path}.")
    module = importlib.util.module_from_spec(spec)
    token = _DEFINING.set(settings)
    try:
        spec.loader.exec_module(module)
    finally:
        _DEFINING.reset(token)
    return module


def repo_contents(module: ModuleType, project: str) -> Any:
    """The Feast objects a definitions module declares, as Feast's ``RepoContents``."""
    from feast import Entity, FeatureService, FeatureView, Project
    from feast.data_source import DataSource, PushSource
    from feast.feature_view import DUMMY_ENTITY
    from feast.repo_contents import RepoContents

    sources: list[DataSource] = []
    entities: list[Entity] = []
    views: list[FeatureView] = []
    services: list[FeatureService] = []

    def add_source(source: DataSource | None) -> None:
        if source is not None and not any(source is s for s in sources):
            sources.append(source)

    for obj in vars(module).values():
        if isinstance(obj, DataSource):
            add_source(obj)
            if isinstance(obj, PushSource):
                add_source(obj.batch_source)
        elif isinstance(obj, FeatureView):
            views.append(obj)
            add_source(obj.batch_source)
            add_source(obj.stream_source)
        elif isinstance(obj, Entity):
            entities.append(obj)
        elif isinstance(obj, FeatureService):
            services.append(obj)
    return RepoContents(
        projects=[Project(name=project)],
        data_sources=sources,
        feature_views=views,
        on_demand_feature_views=[],
        stream_feature_views=[],
        label_views=[],
        entities=[*entities, DUMMY_ENTITY],
        feature_services=services,
        permissions=[],
    )


def plan(settings: Settings | None = None) -> tuple[str, str]:
    """``feast plan`` in-process: (registry diff, infra diff) as text. Raises on a bad definition."""
    settings = settings or get_settings()
    store = feature_store(settings)
    repo = repo_contents(load_definitions(settings), store.project)
    registry_diff, infra_diff, _ = store.plan(repo)
    return registry_diff.to_string(), infra_diff.to_string()


def apply(settings: Settings | None = None) -> list[str]:
    """``feast apply`` of ``feature_repo`` (idempotent; objects gone from the repo are deleted).

    Returns the names of the applied objects (entities, sources, views, services).
    """
    from feast.repo_operations import extract_objects_for_apply_delete

    settings = settings or get_settings()
    store = feature_store(settings)
    repo = repo_contents(load_definitions(settings), store.project)
    to_apply, to_delete, _, _ = extract_objects_for_apply_delete(
        store.project, store.registry, repo
    )
    store.apply([*repo.data_sources, *to_apply], objects_to_delete=to_delete, partial=False)
    objects = (*repo.entities, *repo.data_sources, *repo.feature_views, *repo.feature_services)
    names = sorted({o.name for o in objects} - {"__dummy"})
    log.info(
        "feast apply (%s, project %s): %d objects, %d deleted: %s",
        settings.feast_env,
        store.project,
        len(names),
        len(to_delete),
        ", ".join(names),
    )
    return names


def aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware (got naive {value.isoformat()})")
    return value.astimezone(UTC)


def feature_columns(view: FeatureView) -> list[str]:
    keys = [c.name for c in view.entity_columns]
    return [*keys, TIMESTAMP, CREATED, *(f.name for f in view.features)]


# --- push, read, check -----------------------------------------------------------------------


def push_weather(rows: list[dict[str, Any]], settings: Settings | None = None) -> int:
    """Push derived forecasts (city_id, event_timestamp, features) to ``weather_live`` online.

    Rows must carry aware ``event_timestamp``; ``created`` defaults to now. Returns rows pushed.
    """
    import pandas as pd
    from feast.data_source import PushMode

    if not rows:
        return 0
    settings = settings or get_settings()
    store = feature_store(settings)
    view = store.get_feature_view(PUSH_VIEW)
    frame = pd.DataFrame.from_records(rows)
    needed = [c for c in feature_columns(view) if c != CREATED]
    missing = sorted(set(needed) - set(frame.columns))
    if missing:
        raise ValueError(f"push_weather: rows lack {missing}")
    frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], utc=True)
    if CREATED not in frame.columns:
        frame[CREATED] = pd.Timestamp(datetime.now(UTC))
    frame[CREATED] = pd.to_datetime(frame[CREATED], utc=True)
    frame["city_id"] = frame["city_id"].astype(str)
    store.push(PUSH_SOURCE, frame[feature_columns(view)], to=PushMode.ONLINE)
    log.info("pushed %d forecast row(s) to %s (online)", len(frame), PUSH_VIEW)
    return len(frame)


def online_context(
    entities: list[dict[str, Any]], settings: Settings | None = None
) -> pd.DataFrame:
    """``outfit_context`` online for entity rows ``{user_id, city_id}``.

    An unknown user or city is not an error: its features come back null (NaN / None),
    like a user whose features expired (TTL). Callers decide what a missing value means.
    """
    import pandas as pd

    if not entities:
        return pd.DataFrame()
    store = feature_store(settings)
    service = store.get_feature_service(SERVICE)
    rows = [{"user_id": str(e["user_id"]), "city_id": str(e["city_id"])} for e in entities]
    return store.get_online_features(features=service, entity_rows=rows).to_df()


def _read_timestamps(
    store: FeatureStore, view: FeatureView, rows: list[dict[str, Any]]
) -> list[datetime | None]:
    """Online event time per entity row (None when the store has nothing for it)."""
    keys = [c.name for c in view.entity_columns]
    feature = view.features[0].name
    response = store.get_online_features(
        features=[f"{view.name}:{feature}"],
        entity_rows=[{k: str(r[k]) for k in keys} for r in rows],
    ).to_dict(include_event_timestamps=True)
    # Feast reports whole seconds since the epoch, 0 where it found nothing.
    return [
        datetime.fromtimestamp(seconds, UTC) if seconds else None
        for seconds in response[f"{feature}__ts"]
    ]


def check_fresh(
    sample: list[dict[str, Any]],
    *,
    view: str,
    not_before: datetime,
    settings: Settings | None = None,
) -> None:
    """Read ``sample`` entity rows of ``view`` back online; raise StaleFeatures if any is
    missing or has an event time before ``not_before``. Used right after a materialize/push."""
    # Feast reports online event times in whole seconds: compare at that precision.
    not_before = aware(not_before, "not_before").replace(microsecond=0)
    if not sample:
        return
    store = feature_store(settings)
    feature_view = store.get_feature_view(view)
    keys = [c.name for c in feature_view.entity_columns]
    times = _read_timestamps(store, feature_view, sample)
    bad = []
    for row, ts in zip(sample, times, strict=True):
        ident = ", ".join(f"{k}={row[k]}" for k in keys)
        if ts is None:
            bad.append(f"{ident}: missing")
        elif ts < not_before:
            bad.append(f"{ident}: event time {ts.isoformat()}")
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise StaleFeatures(
            f"{view}: {len(bad)} of {len(sample)} sampled entities are missing online or older "
            f"than {not_before.isoformat()} ({shown})."
        )
    log.info("%s fresh online: %d sampled entities at or after %s", view, len(sample), not_before)
