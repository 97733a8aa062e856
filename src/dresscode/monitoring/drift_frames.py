"""The rows drift compares: the window's photo frame and the reference it is compared with.

:func:`photo_frame` gives one row per digitized photo of a window: the drift columns
(``drift.DRIFT_COLUMNS``) plus ``ID_COLUMNS`` to trace a row back. :func:`reference_window`
chooses what the current window is compared with — a frozen baseline
(``DRESSCODE_DRIFT_BASELINE_URI``), the days since the last promotion
(:func:`last_promotion`), or the days before — and :func:`reference_frame` reads its rows.

Only the partitions of the window's days (and a little slack) are read, only the columns
needed: the cost follows the window, not the age of the lake.

The label columns are closed vocabularies (:func:`closed_labels`): category from the digitizer
blueprints' enum, colour from the palette (:data:`COLORS`), source format
from the image formats; anything else is ``'other'``. The model's free text (a colour name is
any string up to 30 characters) never reaches the drift report, whose HTML embeds the labels.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING

from dresscode.core import lake, prompts
from dresscode.core.config import Settings, get_settings
from dresscode.monitoring.drift import DRIFT_COLUMNS, LABEL_COLUMNS, DriftError, Window

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# Kept beside the drift columns so a row can be traced back (and a baseline dated).
ID_COLUMNS = ("upload_key", "image_sha256", "prompt_version", "processed_at")
NO_ITEMS = "none"  # primary_category / primary_color of a photo the model found nothing in
OTHER = "other"  # a label outside its column's vocabulary
DIGITIZER = prompts.DIGITIZER.name
# Ingest writes a photo into the partition of its run's start (run_after), processed later:
# rows processed in a window can sit in partitions up to this many days before it.
PARTITION_SLACK_DAYS = 2


# --- the photo frame -------------------------------------------------------------------------


def photo_frame(start: datetime, end: datetime, settings: Settings | None = None) -> pd.DataFrame:
    """One row per photo accepted in [start, end): the drift columns plus ``ID_COLUMNS``.

    A photo's manifest row is its latest one in the window (retries add rows). Latency, TTFT
    and completion tokens come from the latest digitize call for its image and prompt version
    made before ``end``, only for photos whose model was called in this run (a cached answer
    has no latency); category and colour from its first item (``'none'`` when the model found
    no item, missing when its items are not in the lake).
    """
    import pandas as pd

    settings = settings or get_settings()
    start, end = _utc(start), _utc(end)
    days = _days(start, end)
    photos = _accepted(start, end, days, settings)
    if photos.empty:
        log.info("photo frame [%s, %s): 0 photos", start.isoformat(), end.isoformat())
        return _empty_frame()
    photos["prompt_version"] = _version_str(photos["prompt_version"])
    width = pd.to_numeric(photos["source_width"], errors="coerce")
    height = pd.to_numeric(photos["source_height"], errors="coerce")
    frame = pd.DataFrame(
        {
            "upload_key": photos["upload_key"].astype(str),
            "image_sha256": photos["image_sha256"],
            "prompt_version": photos["prompt_version"],
            "processed_at": photos["processed_at"],
            "source_bytes": pd.to_numeric(photos["source_bytes"], errors="coerce"),
            "source_megapixels": width * height / 1e6,
            "source_aspect": width / height.where(height > 0),
            "brightness": pd.to_numeric(photos["brightness"], errors="coerce"),
            "source_format": photos["source_format"].str.upper(),
            "n_items": pd.to_numeric(photos["n_items"], errors="coerce"),
            "model_called": photos["model_called"].astype("boolean").fillna(False).astype(bool),
        }
    )
    frame = _join_calls(frame, end, days, settings)
    frame = _join_items(frame, days, settings)
    frame = frame.sort_values(["processed_at", "upload_key"], kind="stable")
    frame = frame[list(ID_COLUMNS) + list(DRIFT_COLUMNS)].reset_index(drop=True)
    frame = closed_labels(frame, settings)
    log.info(
        "photo frame [%s, %s): %d photos, %d with call timings, %d with items",
        start.isoformat(),
        end.isoformat(),
        len(frame),
        int(frame["latency_ms"].notna().sum()),
        int(frame["primary_category"].notna().sum()),
    )
    return frame


def _accepted(start: datetime, end: datetime, days: list[str], settings: Settings) -> pd.DataFrame:
    """Latest manifest row per upload processed in [start, end), kept when accepted."""
    import pandas as pd

    wanted = [
        "upload_key",
        "status",
        "image_sha256",
        "source_format",
        "source_bytes",
        "source_width",
        "source_height",
        "brightness",
        "prompt_version",
        "n_items",
        "model_called",
        "processed_at",
    ]
    rows = _read_days("manifests", days, wanted, settings)
    if rows.empty:
        return rows
    rows["processed_at"] = pd.to_datetime(rows["processed_at"], utc=True, format="ISO8601")
    rows = rows[(rows["processed_at"] >= start) & (rows["processed_at"] < end)]
    rows = rows.sort_values("processed_at", kind="stable").drop_duplicates(
        "upload_key", keep="last"
    )
    return rows[rows["status"] == "accepted"].copy()


def _join_calls(
    frame: pd.DataFrame, end: datetime, days: list[str], settings: Settings
) -> pd.DataFrame:
    import pandas as pd

    timing = ["latency_ms", "ttft_ms", "completion_tokens"]
    wanted = ["ts", "purpose", "prompt_version", "image_sha256", *timing]
    calls = _read_days("inference_log", days, wanted, settings)
    if not calls.empty:
        calls = calls[(calls["purpose"] == "digitize") & calls["image_sha256"].notna()]
        calls = calls.assign(
            ts=pd.to_datetime(calls["ts"], utc=True, format="ISO8601"),
            prompt_version=_version_str(calls["prompt_version"]),
        )
        calls = calls[calls["ts"] < end].sort_values("ts", kind="stable")
        calls = calls.drop_duplicates(["image_sha256", "prompt_version"], keep="last")
        calls = calls[["image_sha256", "prompt_version", *timing]]
        frame = frame.merge(calls, on=["image_sha256", "prompt_version"], how="left")
    for col in timing:
        values = pd.to_numeric(frame[col], errors="coerce") if col in frame else math.nan
        frame[col] = values
        frame.loc[~frame["model_called"], col] = math.nan
    return frame


def _join_items(frame: pd.DataFrame, days: list[str], settings: Settings) -> pd.DataFrame:
    import pandas as pd

    key = ["upload_key", "image_sha256", "prompt_version"]
    items = _read_days("wardrobe_items", days, [*key, "category", "color_names"], settings)
    frame["primary_category"] = pd.Series(None, index=frame.index, dtype=object)
    frame["primary_color"] = pd.Series(None, index=frame.index, dtype=object)
    if not items.empty:
        items = items.assign(
            upload_key=items["upload_key"].astype(str),
            prompt_version=_version_str(items["prompt_version"]),
        )
        # Items are stored in the model's order: the first row of a photo is its first item.
        first = items.drop_duplicates(key, keep="first")
        first = pd.DataFrame(
            {
                **{k: first[k] for k in key},
                "category": _spelled(first["category"]),
                "color": _spelled(first["color_names"].str[0]),
            }
        )
        joined = frame[key].merge(first, on=key, how="left")
        frame["primary_category"] = joined["category"].to_numpy()
        frame["primary_color"] = joined["color"].to_numpy()
    empty = frame["n_items"] == 0
    frame.loc[empty, "primary_category"] = NO_ITEMS
    frame.loc[empty, "primary_color"] = NO_ITEMS
    return frame


def _spelled(values: pd.Series) -> pd.Series:
    """Category and colour names as the model spells them, compared case-insensitively."""
    return values.where(values.isna(), values.astype(str).str.strip().str.lower())


def vocabularies(settings: Settings | None = None) -> dict[str, frozenset[str]]:
    """The closed vocabulary of each label column (``'none'`` and ``'other'`` included)."""
    settings = settings or get_settings()
    categories, colors = _item_vocabularies()
    extra = {NO_ITEMS, OTHER}
    return {
        "source_format": frozenset(settings.image_formats) | _IMAGE_FORMATS | {OTHER},
        "primary_category": categories | extra,
        "primary_color": colors | extra,
    }


# The formats ingest can report (ingest.formats); DRESSCODE_IMAGE_FORMATS may accept fewer.
_IMAGE_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "HEIF"})


# The colours a garment is named by: the palettes the local samples and golden set are drawn
# in (``dresscode.local.samples.PALETTE``) and the simulator names colours from
# (``dresscode.sim.vision.PALETTE``) — both out of this layer's reach; a test keeps this the
# union of the two. A colour the model names otherwise is 'other' for drift.
COLORS = frozenset({
    "black", "white", "grey", "light grey", "navy", "blue", "light blue", "red", "burgundy",
    "pink", "orange", "yellow", "green", "olive", "beige", "camel", "brown", "purple", "teal",
})  # fmt: skip


@cache
def _item_vocabularies() -> tuple[frozenset[str], frozenset[str]]:
    """Categories: the enum of every digitizer blueprint in git; colours: :data:`COLORS`."""
    from dresscode.llm import blueprints

    categories = {
        c
        for b in blueprints.versions_in_git(DIGITIZER)
        for c in blueprints.enum_of(b.output_schema, "items", "category")
    }
    return frozenset(categories), COLORS


def closed_labels(frame: pd.DataFrame, settings: Settings | None = None) -> pd.DataFrame:
    """``frame`` with each label column mapped onto its vocabulary (:func:`vocabularies`):
    a known value stays, any other becomes ``'other'``, a missing one stays missing. Labels
    are matched case-insensitively (formats upper case, the rest lower case)."""
    vocab = vocabularies(settings)
    frame = frame.copy()
    for col in LABEL_COLUMNS:
        if col not in frame:
            continue
        values = frame[col].astype(object)
        known = values.isna()
        spelled = values.where(known, values.astype(str).str.strip())
        spelled = spelled.str.upper() if col == "source_format" else spelled.str.lower()
        spelled = spelled.where(known | spelled.isin(vocab[col]), OTHER)
        frame[col] = spelled.where(~known, None).astype("category")
    return frame


def _version_str(values: pd.Series) -> pd.Series:
    """Prompt versions are ints in manifests and items, strings in the inference log."""
    import pandas as pd

    numbers = pd.to_numeric(values, errors="coerce")
    return numbers.astype("Int64").astype(str).where(numbers.notna(), None)


def _empty_frame() -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in ID_COLUMNS})
    for col, kind in DRIFT_COLUMNS.items():
        frame[col] = pd.Series(dtype=float if kind == "num" else "category")
    return frame


def _read_days(table: str, days: list[str], columns: list[str], settings: Settings) -> pd.DataFrame:
    """Some columns of some days of a table. Unlike ``lake.read_table`` a column missing from
    a part (outfit calls have no image_sha256) is read as nulls instead of failing."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if lake.is_delta(table):  # the log says which files are live; missing columns read as null
        return lake.read_table(table, settings, days=days, columns=columns)[columns]
    parts = []
    for day in days:
        for path in lake.list_files(lake.partition(table, day, settings)):
            if not path.name.endswith(".parquet"):
                continue
            with path.fs.open(path.path, "rb") as fh:
                parquet = pq.ParquetFile(fh)
                present = [c for c in columns if c in parquet.schema_arrow.names]
                part = parquet.read(columns=present)
            for name in columns:
                if name not in part.column_names:
                    part = part.append_column(name, pa.nulls(part.num_rows))
            parts.append(part.select(columns))
    if not parts:
        return pd.DataFrame(columns=columns)
    return pa.concat_tables(parts, promote_options="permissive").to_pandas()


def _days(start: datetime, end: datetime) -> list[str]:
    first = (start - timedelta(days=PARTITION_SLACK_DAYS)).date()
    last = end.date()
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --- the reference window --------------------------------------------------------------------


def last_promotion(prompt_name: str = DIGITIZER) -> datetime | None:
    """When ``production`` of ``prompt_name`` last moved (a promotion or a rollback), or None
    when it never did.

    Read from the promotion records the registry writes on the promoted version in the same
    call that moves the alias (the ``dresscode.promoted`` tag); the audit runs in
    ``dresscode-releases`` are written after it and may be missing. An unreachable registry
    raises ``RegistryError``: the reference must not silently change.
    """
    import json

    from dresscode.registry import prompt_registry as registry

    moved: list[datetime] = []
    for info in registry.versions(prompt_name):
        raw = info.tags.get(registry.PROMOTED_TAG)
        if not raw:
            continue
        try:
            moved.append(_utc(datetime.fromisoformat(json.loads(raw)["at"])))
        except (ValueError, KeyError, TypeError):
            log.warning(
                "%s v%d: unreadable %s tag %r (reason: bad_promotion_record)",
                prompt_name,
                info.git_version,
                registry.PROMOTED_TAG,
                raw[:80],
            )
    return max(moved, default=None)


def reference_window(
    current_start: datetime,
    settings: Settings | None = None,
    *,
    last_promotion: datetime | None,
) -> Window:
    """The window the current one is compared with.

    A frozen baseline (``DRESSCODE_DRIFT_BASELINE_URI``) wins. Otherwise the days since the
    last promotion, at most ``drift_reference_days`` before ``current_start``, when they hold
    at least ``drift_min_rows`` photos: drift is then measured against what the production
    prompt was promoted on. Else the ``drift_reference_days`` days before, with a note why.
    """
    settings = settings or get_settings()
    current_start = _utc(current_start)
    if settings.drift_baseline_uri:
        return _baseline_window(settings.drift_baseline_uri, current_start, settings)
    days = settings.drift_reference_days
    floor = current_start - timedelta(days=days)
    fallback = f"the {days} days before the current window"
    if last_promotion is None:
        note = f"{fallback}: the prompt was never promoted"
    else:
        promoted = _utc(last_promotion)
        if promoted <= floor:
            note = f"{fallback}: the last promotion ({promoted.isoformat()}) is older"
        elif promoted >= current_start:
            note = f"{fallback}: the last promotion ({promoted.isoformat()}) is inside the current window"
        else:
            count = len(
                _accepted(promoted, current_start, _days(promoted, current_start), settings)
            )
            if count >= settings.drift_min_rows:
                return Window(
                    promoted,
                    current_start,
                    "since_promotion",
                    f"{count} photos since the promotion at {promoted.isoformat()}",
                )
            note = (
                f"{fallback}: only {count} photos since the promotion at {promoted.isoformat()} "
                f"(DRESSCODE_DRIFT_MIN_ROWS={settings.drift_min_rows})"
            )
    return Window(floor, current_start, "days_before", note)


def _baseline_window(uri: str, current_start: datetime, settings: Settings) -> Window:
    """The baseline's own time range (from its processed_at column, when it has one)."""
    import pandas as pd
    import pyarrow.parquet as pq

    path = lake.storage_path(uri, settings)
    if not lake.exists(path):
        raise DriftError(f"DRESSCODE_DRIFT_BASELINE_URI={uri} does not exist.")
    with path.fs.open(path.path, "rb") as fh:
        parquet = pq.ParquetFile(fh)
        rows = parquet.metadata.num_rows
        dated = "processed_at" in parquet.schema_arrow.names
        stamps = parquet.read(columns=["processed_at"]).column(0).to_pandas() if dated else None
    note = f"frozen baseline {uri} ({rows} rows)"
    if stamps is None or stamps.isna().all():
        return Window(current_start, current_start, "baseline", note + ", undated")
    stamps = pd.to_datetime(stamps, utc=True, format="ISO8601")
    return Window(stamps.min().to_pydatetime(), stamps.max().to_pydatetime(), "baseline", note)


def reference_frame(window: Window, settings: Settings | None = None) -> pd.DataFrame:
    """The reference photos: the baseline's Parquet frame, or the window's photo frame."""
    import pandas as pd

    settings = settings or get_settings()
    if window.source != "baseline":
        return photo_frame(window.start, window.end, settings)
    uri = settings.drift_baseline_uri
    if not uri:
        raise DriftError("a baseline window needs DRESSCODE_DRIFT_BASELINE_URI to be set.")
    path = lake.storage_path(uri, settings)
    with path.fs.open(path.path, "rb") as fh:
        frame = pd.read_parquet(fh)
    # Baselines written before labels were closed still hold the model's free text.
    frame = closed_labels(frame, settings)
    log.info("reference: %d rows from the frozen baseline %s", len(frame), uri)
    return frame
