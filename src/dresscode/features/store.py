"""The project's Feast operations: open the store, apply, materialize, push, read, check.

Feast is imported inside the functions (the import alone costs ~18 s), never at module level.

**Which store.** ``DRESSCODE_FEAST_ENV`` picks ``feature_repo/feature_store.yaml`` (local: file
registry and SQLite online store under ``<home>/feast``) or ``feature_store.fullstack.yaml``
(SQL registry on PostgreSQL, Redis online store; ``DRESSCODE_FEAST_REGISTRY_URL`` and
``DRESSCODE_FEAST_REDIS``). The yaml's ``${VARS}`` are expanded here, from the process
environment plus ``DRESSCODE_HOME`` = the settings' home, and an unset variable is an error
naming it — Feast's own loader (``os.path.expandvars``) would silently keep ``${NAME}`` and
create a folder called that.

**Materialization.** Feast's ``materialize`` (local compute engine over the file offline store)
reads *every* partition of the source with Dask, sorts the whole table by event time, filters
the window, turns it into pandas and back, and — unless ``online_write_batch_size`` is set —
builds one protobuf per value for the whole window before the first write. Memory grows with
the table's history, not with the window. :func:`materialize` does the same job with Feast's
own write API and bounded memory:

1. list only the partitions that can hold the window (``date=`` from ``start - overlap - 1
   day`` to ``end + 1 day``: a row's event time may fall on the day after its partition);
2. pass 1 reads just (entity key, event_timestamp, created) of rows in the window and keeps,
   per entity, the row with the latest (event_timestamp, created) — Feast's latest-per-entity
   semantics, exactly, whatever the number of rows per entity per day;
3. pass 2 streams the winning rows in record batches of ``DRESSCODE_FEAST_WRITE_BATCH_SIZE``
   and hands each to ``FeatureStore.write_to_online_store``;
4. the interval is recorded in the registry like Feast's ``materialize`` does.

The overlap (``DRESSCODE_MATERIALIZE_OVERLAP_H``) re-reads late rows before the interval.

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
import time
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from dresscode.core.config import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from feast import FeatureStore, FeatureView

log = logging.getLogger(__name__)

LOCAL_YAML = "feature_store.yaml"
FULLSTACK_YAML = "feature_store.fullstack.yaml"
DEFINITIONS = "features.py"
MATERIALIZED_VIEWS = ("user_style", "weather")
PUSH_SOURCE = "weather_push"
PUSH_VIEW = "weather_live"
SERVICE = "outfit_context"
TIMESTAMP = "event_timestamp"
CREATED = "created"
# A row's event time may be up to a day after its partition day (interval start vs end).
PARTITION_SLACK = timedelta(days=1)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")

# The settings the feature definitions read while `apply`/`plan` load them (see repo_settings).
_DEFINING: ContextVar[Settings | None] = ContextVar("dresscode_feast_defining", default=None)


class StaleFeatures(RuntimeError):
    """Online features are missing or older than required; the message names view and entities."""


class FeastConfigError(RuntimeError):
    """The feature store yaml cannot be loaded; the message names the file and the variable."""


class OnlineStoreUnavailable(RuntimeError):
    """The online store could not be reached; the message names the store, view and progress."""


def _connection_errors() -> tuple[type[BaseException], ...]:
    """What an unreachable online store raises (after its client's own retries)."""
    errors: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    try:
        import redis.exceptions
    except ImportError:  # the local SQLite online store has no network to lose
        return errors
    return (*errors, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def _online_store_name(store: FeatureStore) -> str:
    """``redis at host:port``: never the connection string's options (they may hold a password)."""
    online = store.config.online_store
    where = getattr(online, "connection_string", None) or getattr(online, "path", None) or "?"
    return f"{online.type} at {str(where).split(',')[0]}"


@dataclass
class ViewReport:
    view: str
    partitions: int = 0
    rows_in_window: int = 0
    entities_written: int = 0
    batches: int = 0
    seconds: float = 0.0

    @property
    def rows_per_s(self) -> float:
        return self.entities_written / self.seconds if self.seconds > 0 else 0.0


@dataclass
class MaterializeReport:
    """What one materialization wrote: the window actually read and a line per view."""

    start: datetime
    end: datetime
    views: list[ViewReport] = field(default_factory=list)

    @property
    def entities_written(self) -> int:
        return sum(v.entities_written for v in self.views)

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "entities_written": self.entities_written,
            "views": [{**asdict(v), "rows_per_s": round(v.rows_per_s, 1)} for v in self.views],
        }


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


# --- materialization -------------------------------------------------------------------------


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware (got naive {value.isoformat()})")
    return value.astimezone(UTC)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _source_files(source_uri: str, start: datetime, end: datetime, settings: Settings) -> tuple:
    """(pyarrow filesystem, files, partitions): Parquet parts of the partitions the window can hit."""
    from pyarrow.fs import FSSpecHandler, LocalFileSystem, PyFileSystem

    from dresscode.core import lake

    days = _days((start - PARTITION_SLACK).date(), (end + PARTITION_SLACK).date())
    if "://" not in source_uri or source_uri.startswith("file://"):
        base = Path(source_uri.removeprefix("file://"))
        filesystem = LocalFileSystem()
        files, partitions = [], 0
        for day in days:
            folder = base / f"date={day.isoformat()}"
            if not folder.is_dir():
                continue
            partitions += 1
            files += sorted(
                str(p)
                for p in folder.iterdir()
                if p.suffix == ".parquet" and not p.name.startswith((".", "_"))
            )
        return filesystem, files, partitions
    root = lake.storage_path(source_uri, settings)
    filesystem = PyFileSystem(FSSpecHandler(root.fs))
    files, partitions = [], 0
    for day in days:
        found = [
            p
            for p in lake.list_files(root / f"date={day.isoformat()}")
            if p.name.endswith(".parquet") and not p.name.startswith((".", "_"))
        ]
        partitions += bool(found)
        files += [p.path for p in found]
    return filesystem, files, partitions


def _window_filter(schema: pa.Schema, start: datetime, end: datetime) -> Any:
    import pyarrow as pa
    import pyarrow.dataset as ds

    ts_type = schema.field(TIMESTAMP).type
    if not pa.types.is_timestamp(ts_type):
        raise TypeError(f"{TIMESTAMP} must be a timestamp column, found {ts_type}")

    def bound(moment: datetime) -> Any:
        # Naive event times are UTC (Feast's convention): compare like with like.
        value = moment if ts_type.tz else moment.replace(tzinfo=None)
        return pa.scalar(value, type=pa.timestamp(ts_type.unit, ts_type.tz))

    # Inclusive on both ends, like Feast's file offline store.
    return (ds.field(TIMESTAMP) >= bound(start)) & (ds.field(TIMESTAMP) <= bound(end))


def _latest_rows(dataset: Any, key: str, window: Any) -> tuple[dict[int, Any], int]:
    """Pass 1: per entity, the (file, row) of its latest row in the window.

    Reads only the key and timestamp columns; returns {file index: sorted row positions} and
    the number of rows in the window. Ties on (event_timestamp, created) go to the later part.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = []
    for index, fragment in enumerate(dataset.get_fragments()):
        cols = [key, TIMESTAMP] + ([CREATED] if CREATED in dataset.schema.names else [])
        table = fragment.to_table(schema=dataset.schema, columns=cols, filter=window)
        if table.num_rows == 0:
            continue
        n = table.num_rows
        table = table.append_column("_file", pa.array(np.full(n, index, dtype=np.int32)))
        table = table.append_column("_row", pa.array(np.arange(n, dtype=np.int64)))
        if CREATED not in table.column_names:
            table = table.append_column(CREATED, pa.nulls(n, pa.timestamp("us", "UTC")))
        parts.append(table.select([key, TIMESTAMP, CREATED, "_file", "_row"]))
    if not parts:
        return {}, 0
    rows = pa.concat_tables(parts, promote_options="permissive")
    total = rows.num_rows
    order = pc.sort_indices(
        rows,
        sort_keys=[
            (key, "ascending"),
            (TIMESTAMP, "descending"),
            (CREATED, "descending"),
            ("_file", "descending"),
            ("_row", "descending"),
        ],
    )
    rows = rows.take(order)
    keys = rows.column(key).combine_chunks()
    first = np.ones(len(keys), dtype=bool)
    if len(keys) > 1:
        first[1:] = pc.not_equal(keys.slice(1), keys.slice(0, len(keys) - 1)).to_numpy(
            zero_copy_only=False
        )
    winners = rows.filter(pa.array(first))
    files = winners.column("_file").to_numpy()
    positions = winners.column("_row").to_numpy()
    by_file = {int(f): np.sort(positions[files == f]) for f in np.unique(files)}
    return by_file, total


class _Progress:
    """INFO line at most every ``every_s``: rows n of N, rate, ETA."""

    def __init__(self, label: str, total: int, every_s: float = 10.0) -> None:
        self.label, self.total, self.every_s = label, total, every_s
        self.started = self.last = time.monotonic()

    def __call__(self, done: int, batch: int) -> None:
        now = time.monotonic()
        if done < self.total and now - self.last < self.every_s:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        eta = (self.total - done) / rate if rate else float("inf")
        log.info(
            "%s: batch %d, %d/%d entities, %.0f rows/s, ETA %s",
            self.label,
            batch,
            done,
            self.total,
            rate,
            "unknown" if eta == float("inf") else f"{eta:.0f}s",
        )


def _feature_columns(view: FeatureView) -> list[str]:
    keys = [c.name for c in view.entity_columns]
    return [*keys, TIMESTAMP, CREATED, *(f.name for f in view.features)]


def _materialize_view(
    store: FeatureStore, view: FeatureView, start: datetime, end: datetime, settings: Settings
) -> ViewReport:
    import warnings

    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as ds

    report = ViewReport(view=view.name)
    began = time.monotonic()
    source_uri = view.batch_source.path
    filesystem, files, report.partitions = _source_files(source_uri, start, end, settings)
    if not files:
        log.warning(
            "no_source_partitions: %s has no partitions for %s..%s under %s",
            view.name,
            start.isoformat(),
            end.isoformat(),
            source_uri,
        )
        return report
    schemas = [ds.dataset(f, format="parquet", filesystem=filesystem).schema for f in files]
    schema = pa.unify_schemas(schemas, promote_options="permissive")
    dataset = ds.dataset(files, schema=schema, format="parquet", filesystem=filesystem)
    key = view.entity_columns[0].name
    wanted = [c for c in _feature_columns(view) if c in schema.names]
    missing = sorted(set(_feature_columns(view)) - set(wanted) - {CREATED})
    if missing:
        raise ValueError(f"{view.name}: source {source_uri} lacks columns {missing}")
    window = _window_filter(schema, start, end)
    winners, report.rows_in_window = _latest_rows(dataset, key, window)
    total = sum(len(rows) for rows in winners.values())
    progress = _Progress(f"materialize {view.name}", total)
    log.info(
        "materialize %s %s..%s: %d partitions, %d files, %d rows in window, %d entities",
        view.name,
        start.isoformat(),
        end.isoformat(),
        report.partitions,
        len(files),
        report.rows_in_window,
        total,
    )
    batch_size = settings.feast_write_batch_size
    for index, fragment in enumerate(dataset.get_fragments()):
        rows = winners.get(index)
        if rows is None or len(rows) == 0:
            continue
        offset = 0
        for batch in fragment.to_batches(
            schema=schema, columns=wanted, filter=window, batch_size=batch_size
        ):
            lo, hi = np.searchsorted(rows, [offset, offset + batch.num_rows])
            take = rows[lo:hi] - offset
            offset += batch.num_rows
            if len(take) == 0:
                continue
            chunk = batch.take(pa.array(take)).to_pandas()
            try:
                with warnings.catch_warnings():
                    # An all-null chunk is skipped by Feast with a UserWarning; nothing to keep.
                    warnings.simplefilter("ignore", UserWarning)
                    store.write_to_online_store(view.name, chunk)
            except _connection_errors() as exc:
                raise OnlineStoreUnavailable(
                    f"{view.name}: the online store ({_online_store_name(store)}) is unreachable "
                    f"after {report.entities_written} of {total} entities were written: {exc} "
                    "Re-running the interval completes it."
                ) from exc
            report.entities_written += len(take)
            report.batches += 1
            progress(report.entities_written, report.batches)
    report.seconds = time.monotonic() - began
    return report


def materialize(
    start: datetime,
    end: datetime,
    *,
    views: Sequence[str] = MATERIALIZED_VIEWS,
    settings: Settings | None = None,
) -> MaterializeReport:
    """Load the latest row per entity with event time in [start - overlap, end] into the online store.

    Re-running the same interval writes the same values and timestamps (idempotent).
    """
    settings = settings or get_settings()
    start, end = _aware(start, "start"), _aware(end, "end")
    if PUSH_VIEW in views:
        raise ValueError(
            f"{PUSH_VIEW} is fed by pushes only; materializing it would overwrite fresher pushes."
        )
    if end < start:
        raise ValueError(f"materialize: end {end.isoformat()} is before start {start.isoformat()}")
    window_start = start - timedelta(hours=settings.materialize_overlap_h)
    store = feature_store(settings)
    report = MaterializeReport(start=window_start, end=end)
    for name in views:
        view = store.get_feature_view(name)
        view_report = _materialize_view(store, view, window_start, end, settings)
        store.registry.apply_materialization(view, store.project, window_start, end)
        report.views.append(view_report)
        log.info(
            "materialized %s: %d entities from %d rows in %d partitions, %.1fs, %.0f rows/s",
            name,
            view_report.entities_written,
            view_report.rows_in_window,
            view_report.partitions,
            view_report.seconds,
            view_report.rows_per_s,
        )
    return report


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
    needed = [c for c in _feature_columns(view) if c != CREATED]
    missing = sorted(set(needed) - set(frame.columns))
    if missing:
        raise ValueError(f"push_weather: rows lack {missing}")
    frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], utc=True)
    if CREATED not in frame.columns:
        frame[CREATED] = pd.Timestamp(datetime.now(UTC))
    frame[CREATED] = pd.to_datetime(frame[CREATED], utc=True)
    frame["city_id"] = frame["city_id"].astype(str)
    store.push(PUSH_SOURCE, frame[_feature_columns(view)], to=PushMode.ONLINE)
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
    not_before = _aware(not_before, "not_before").replace(microsecond=0)
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
