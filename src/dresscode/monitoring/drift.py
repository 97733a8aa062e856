"""Drift: is this window's traffic still like the traffic the prompt was promoted on?

One row per digitized photo (:func:`photo_frame`): photo properties (bytes, resolution, aspect,
brightness, source format), the model's output (item count, the first item's category and
colour, 'none' for an empty answer) and the call's latency, TTFT and completion tokens. The
current window is compared with a reference window (:func:`reference_window`: a frozen
baseline, the days since the last promotion, or the days before) by Evidently 0.7's data
drift preset with its per-column tests (:func:`detect_drift`).

A column needs ``min_rows`` non-null values in *both* windows to be tested; with fewer it is
reported ``not_enough_data`` and never counts as drift (a quiet night is not an incident).
The data set is drifted when at least one column drifted and the share of drifted columns
among the tested ones reaches ``drift_share``. The HTML report and its JSON summary go to ``reports/drift/`` in the lake
(:func:`write_report`) and to MLflow (:func:`log_to_mlflow`).

Tests per column follow Evidently's default rule (``_stattest``): up to 1,000 reference rows
a p-value test (Kolmogorov-Smirnov for numbers; for labels and numbers with at most 5 values a
chi-square test), above that a distance (normed Wasserstein for numbers, Jensen-Shannon for
labels), with Evidently's default thresholds. Two departures, both measured:

* the chi-square test is a test of *homogeneity* of the two windows (``chi2_contingency``,
  registered with Evidently as ``chi2_homogeneity``), not Evidently's ``chisquare``, which
  tests the current counts against the reference shares as if those were exact: on pairs of
  same-distribution windows of 300-500 rows over 7 categories it flagged 37-40% of them at
  p < 0.05 instead of 5% (1,000 pairs; alibi-detect fixed the same bias in its PR #203);
* the rule is applied once here and passed explicitly: left to Evidently it is recomputed
  three times per column (the preset computes each column's drift for its tests, its count
  and its table), a fifth of the time at 1M rows (docs/benchmarks.md, "Drift report").

Heavy libraries (pandas, Evidently, MLflow) are imported inside functions.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from dresscode.core import lake, prompts
from dresscode.core.config import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

Kind = Literal["num", "cat"]
Status = Literal["drifted", "stable", "not_enough_data"]

# The columns tested, in report order, with their kind.
DRIFT_COLUMNS: dict[str, Kind] = {
    "source_bytes": "num",
    "source_megapixels": "num",
    "source_aspect": "num",
    "brightness": "num",
    "source_format": "cat",
    "n_items": "num",
    "primary_category": "cat",
    "primary_color": "cat",
    "latency_ms": "num",
    "ttft_ms": "num",
    "completion_tokens": "num",
}
# Kept beside the drift columns so a row can be traced back (and a baseline dated).
ID_COLUMNS = ("upload_key", "image_sha256", "prompt_version", "processed_at")
# Labels are categoricals: a 1M-photo window's labels take 3 MB instead of 180 MB of strings.
LABEL_COLUMNS = tuple(c for c, kind in DRIFT_COLUMNS.items() if kind == "cat")
NO_ITEMS = "none"  # primary_category / primary_color of a photo the model found nothing in

EXPERIMENT = "dresscode-monitoring"
DIGITIZER = prompts.DIGITIZER.name
# Ingest writes a photo into the partition of its run's start (run_after), processed later:
# rows processed in a window can sit in partitions up to this many days before it.
PARTITION_SLACK_DAYS = 2
# Our chi-square test of homogeneity (registered with Evidently, see _homogeneity_test).
HOMOGENEITY = "chi2_homogeneity"
# Drift tests that return a p-value (drift when *below* the threshold); every other test
# here is a distance (drift when at or above it).
P_VALUE_TESTS = frozenset({"ks", "chisquare", "z", HOMOGENEITY})
# Evidently switches from p-value tests to distances above this many reference rows.
SMALL_SAMPLE_ROWS = 1000


class DriftError(RuntimeError):
    """Drift cannot be computed as configured; the message names the input."""


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A time range of photos and why it was chosen (``source``: current, baseline,
    since_promotion, days_before)."""

    start: datetime
    end: datetime
    source: str
    note: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "source": self.source,
            "note": self.note,
        }


@dataclass(frozen=True)
class ColumnDrift:
    """One column's verdict. ``score`` is the test's p-value or distance (see ``stattest``)."""

    column: str
    kind: Kind
    status: Status
    stattest: str | None
    score: float | None
    threshold: float | None
    n_reference: int
    n_current: int

    @property
    def effect(self) -> float | None:
        """How far past its threshold the score is (1.0 = at the threshold, higher = more
        moved), comparable across p-value and distance tests; None when not tested."""
        if self.score is None or not self.threshold:
            return None
        if self.stattest in P_VALUE_TESTS:
            if not 0 < self.threshold < 1:
                return None
            return -math.log10(max(self.score, 1e-300)) / -math.log10(self.threshold)
        return self.score / self.threshold

    def to_dict(self) -> dict[str, Any]:
        effect = self.effect
        return asdict(self) | {"effect": None if effect is None else round(effect, 4)}


@dataclass
class DriftResult:
    """The verdict over all columns, the HTML report ('' when no column could be tested) and
    the windows compared (set by the caller)."""

    drifted: bool
    drift_share: float  # share of drifted columns among the tested ones
    columns: list[ColumnDrift]
    n_reference: int
    n_current: int
    html: str
    reference: Window | None = None
    current: Window | None = None
    share_threshold: float = 0.0
    min_rows: int = 0
    max_rows: int = 0
    seconds: float = 0.0

    def moved(self) -> list[ColumnDrift]:
        """Drifted columns, largest effect first."""
        drifted = [c for c in self.columns if c.status == "drifted"]
        return sorted(drifted, key=lambda c: -(c.effect or 0.0))

    def tested(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.status != "not_enough_data"]

    def summary(self) -> dict[str, Any]:
        """JSON-safe summary (what write_report stores and the DAG branches on)."""
        return {
            "drifted": self.drifted,
            "drift_share": round(self.drift_share, 6),
            "share_threshold": self.share_threshold,
            "n_columns": len(self.columns),
            "n_tested": len(self.tested()),
            "n_drifted": sum(c.status == "drifted" for c in self.columns),
            "n_not_enough_data": sum(c.status == "not_enough_data" for c in self.columns),
            "moved": [c.column for c in self.moved()],
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "min_rows": self.min_rows,
            "max_rows": self.max_rows,
            "reference": self.reference.to_dict() if self.reference else None,
            "current": self.current.to_dict() if self.current else None,
            "columns": [c.to_dict() for c in self.columns],
        }


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
    for col in LABEL_COLUMNS:
        frame[col] = frame[col].astype("category")
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
                "category": _label(first["category"]),
                "color": _label(first["color_names"].str[0]),
            }
        )
        joined = frame[key].merge(first, on=key, how="left")
        frame["primary_category"] = joined["category"].to_numpy()
        frame["primary_color"] = joined["color"].to_numpy()
    empty = frame["n_items"] == 0
    frame.loc[empty, "primary_category"] = NO_ITEMS
    frame.loc[empty, "primary_color"] = NO_ITEMS
    return frame


def _label(values: pd.Series) -> pd.Series:
    """Category and colour names as the model spells them, compared case-insensitively."""
    return values.where(values.isna(), values.astype(str).str.strip().str.lower())


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
    for col in LABEL_COLUMNS:  # an all-null categorical comes back from Parquet as object
        if col in frame:
            frame[col] = frame[col].astype("category")
    log.info("reference: %d rows from the frozen baseline %s", len(frame), uri)
    return frame


# --- detection -------------------------------------------------------------------------------


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    min_rows: int,
    drift_share: float,
    max_rows: int = 0,
    seed: int = 0,
) -> DriftResult:
    """Compare ``current`` with ``reference`` over ``DRIFT_COLUMNS`` (missing columns count as
    empty). ``max_rows`` > 0 tests a seeded sample of that many rows per window."""
    began = time.perf_counter()
    ref, cur = _prepare(reference, max_rows, seed), _prepare(current, max_rows, seed)
    columns: dict[str, ColumnDrift] = {}
    for col, kind in DRIFT_COLUMNS.items():
        n_ref, n_cur = int(ref[col].notna().sum()), int(cur[col].notna().sum())
        if min(n_ref, n_cur) < min_rows:
            log.warning(
                "drift: %s not tested: %d reference and %d current values, %d needed in each "
                "(reason: not_enough_data)",
                col,
                n_ref,
                n_cur,
                min_rows,
            )
            columns[col] = ColumnDrift(col, kind, "not_enough_data", None, None, None, n_ref, n_cur)
        else:
            columns[col] = ColumnDrift(col, kind, "stable", None, None, None, n_ref, n_cur)
    tested = [c for c, v in columns.items() if v.status != "not_enough_data"]
    html = ""
    if tested:
        verdicts, html = _run_evidently(ref, cur, tested, drift_share)
        for col, (stattest, score, threshold, drifted) in verdicts.items():
            status: Status = "drifted" if drifted else "stable"
            old = columns[col]
            columns[col] = ColumnDrift(
                col, old.kind, status, stattest, score, threshold, old.n_reference, old.n_current
            )
    n_drifted = sum(c.status == "drifted" for c in columns.values())
    share = n_drifted / len(tested) if tested else 0.0
    result = DriftResult(
        drifted=n_drifted > 0 and share >= drift_share,
        drift_share=share,
        columns=list(columns.values()),
        n_reference=len(ref),
        n_current=len(cur),
        html=html,
        share_threshold=drift_share,
        min_rows=min_rows,
        max_rows=max_rows,
        seconds=time.perf_counter() - began,
    )
    log.info(
        "drift: %d columns, %d tested, %d not enough data, %d drifted (share %.2f, threshold "
        "%.2f: %s); %d reference rows, %d current rows, %.1fs",
        len(columns),
        len(tested),
        len(columns) - len(tested),
        n_drifted,
        share,
        drift_share,
        "drifted" if result.drifted else "not drifted",
        len(ref),
        len(cur),
        result.seconds,
    )
    return result


def _prepare(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """Only the drift columns, typed: numbers as float64 (inf as missing), labels as
    categoricals (faster to count); a seeded sample when ``max_rows`` caps the rows."""
    import numpy as np
    import pandas as pd

    if max_rows and len(frame) > max_rows:
        frame = frame.sample(n=max_rows, random_state=seed)
    out = {}
    for col, kind in DRIFT_COLUMNS.items():
        if col not in frame:
            values = pd.Series(
                np.nan, index=frame.index, dtype="float64" if kind == "num" else "category"
            )
        elif kind == "num":
            values = pd.to_numeric(frame[col], errors="coerce").astype("float64", copy=False)
            values = values.replace([np.inf, -np.inf], np.nan)
        else:
            values = _as_labels(frame[col])
        out[col] = values
    prepared = pd.DataFrame(out, index=frame.index)
    prepared.index = pd.RangeIndex(len(prepared))  # no copy, unlike reset_index
    return prepared


def _as_labels(values: pd.Series) -> pd.Series:
    """A label column as a categorical of strings with only the values present."""
    import pandas as pd

    if isinstance(values.dtype, pd.CategoricalDtype) and all(
        isinstance(c, str) for c in values.cat.categories
    ):
        return values.cat.remove_unused_categories()
    values = values.astype(object)
    return values.where(values.isna(), values.astype(str)).astype("category")


def _stattest(ref: pd.Series, cur: pd.Series, kind: Kind) -> str:
    """Evidently's default test for a column (``_get_default_stattest`` in 0.7), decided once,
    with our chi-square test of homogeneity in place of its ``chisquare`` and ``z``."""
    import pandas as pd

    ref = ref.dropna()
    few = kind == "cat"
    # More than 5 values among the first 10,000 settles it without hashing 2M values.
    if not few and ref.head(10_000).nunique() <= 5:
        few = pd.concat([ref, cur.dropna()], ignore_index=True).nunique() <= 5
    if len(ref) <= SMALL_SAMPLE_ROWS:
        return HOMOGENEITY if few else "ks"
    return "jensenshannon" if few else "wasserstein"


@cache
def _homogeneity_test() -> str:
    """Register the chi-square test of homogeneity with Evidently (once per process)."""
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
    from evidently.legacy.core import ColumnType

    test = StatTest(
        name=HOMOGENEITY,
        display_name="chi-square homogeneity p_value",
        allowed_feature_types=[ColumnType.Categorical, ColumnType.Numerical],
    )
    register_stattest(test, default_impl=_chi2_homogeneity)
    return test.display_name


def _chi2_homogeneity(
    reference: pd.Series, current: pd.Series, _feature_type: Any, threshold: float
) -> tuple[float, bool]:
    """p-value that both windows come from one distribution over their values (a 2 x k
    contingency table; for 2 values the same p as Evidently's two-proportion z-test)."""
    import numpy as np
    import pandas as pd
    from scipy.stats import chi2_contingency

    table = pd.concat(
        [reference.value_counts(), current.value_counts()], axis=1, sort=False
    ).fillna(0)
    table = table[table.sum(axis=1) > 0]
    if len(table) < 2:
        return 1.0, False
    p_value = float(chi2_contingency(np.asarray(table.T, dtype=float), correction=False).pvalue)
    return p_value, p_value < threshold


def _run_evidently(
    ref: pd.DataFrame, cur: pd.DataFrame, tested: list[str], drift_share: float
) -> tuple[dict[str, tuple[str, float | None, float | None, bool]], str]:
    """Evidently's data drift preset with per-column tests over the tested columns.

    Returns column -> (stattest, score, threshold, drifted) and the HTML report.
    """
    import numpy as np
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    _homogeneity_test()
    methods = {col: _stattest(ref[col], cur[col], DRIFT_COLUMNS[col]) for col in tested}
    definition = DataDefinition(
        numerical_columns=[c for c in tested if DRIFT_COLUMNS[c] == "num"],
        categorical_columns=[c for c in tested if DRIFT_COLUMNS[c] == "cat"],
    )
    report = Report(
        [DataDriftPreset(columns=tested, drift_share=drift_share, per_column_method=methods)],
        include_tests=True,
    )
    # A constant column makes Evidently's correlation plots divide by zero: harmless, hidden.
    with np.errstate(divide="ignore", invalid="ignore"):
        snapshot = report.run(
            Dataset.from_pandas(_columns(cur, tested), data_definition=definition),
            Dataset.from_pandas(_columns(ref, tested), data_definition=definition),
        )
        html = snapshot.get_html_str(as_iframe=False)
    verdicts = _parse_snapshot(snapshot.dict(), methods)
    missing = sorted(set(tested) - set(verdicts))
    if missing:
        raise DriftError(f"Evidently returned no drift result for {missing}.")
    return verdicts, html


def _columns(frame: pd.DataFrame, wanted: list[str]) -> pd.DataFrame:
    """``frame[wanted]`` without a copy when every column is wanted (1M rows: 90 MB)."""
    return frame if list(frame.columns) == wanted else frame[wanted]


def _parse_snapshot(
    snapshot: dict[str, Any], chosen: dict[str, str]
) -> dict[str, tuple[str, float | None, float | None, bool]]:
    """Per-column drift from the snapshot's structured fields: each ``ValueDrift`` metric
    (config: column, method, threshold; value: the score) and its test (linked by
    ``metric_config.metric_id``; FAIL = drift detected). Without a test result the score is
    compared with the threshold in the test's direction."""
    status_by_metric = {
        test.get("metric_config", {}).get("metric_id"): str(test.get("status", "")).upper()
        for test in snapshot.get("tests", [])
    }
    names = _stattest_names()
    verdicts = {}
    for metric in snapshot.get("metrics", []):
        config = metric.get("config", {})
        if not str(config.get("type", "")).endswith(":ValueDrift"):
            continue
        column = config.get("column")
        if column not in chosen:
            continue
        stattest = names.get(config.get("method"), chosen[column])
        score = _finite(metric.get("value"))
        threshold = _finite(config.get("threshold"))
        status = status_by_metric.get(metric.get("id"))
        if status in {"FAIL", "SUCCESS"}:
            drifted = status == "FAIL"
        elif score is None or threshold is None:
            drifted = False
        elif stattest in P_VALUE_TESTS:
            drifted = score < threshold
        else:
            drifted = score >= threshold
        verdicts[column] = (stattest, score, threshold, drifted)
    return verdicts


def _stattest_names() -> dict[str, str]:
    """Evidently's test display name (what a snapshot records) -> its registered name."""
    from evidently.legacy.calculations import stattests
    from evidently.legacy.calculations.stattests.registry import StatTest

    found = (v for v in vars(stattests).values() if isinstance(v, StatTest))
    return {test.display_name: test.name for test in found} | {_homogeneity_test(): HOMOGENEITY}


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# --- outputs ---------------------------------------------------------------------------------


def write_report(
    result: DriftResult,
    key: str,
    settings: Settings | None = None,
    *,
    day: date | str | None = None,
) -> dict[str, str]:
    """Write ``reports/drift/date=<day>/<key>.html`` and ``<key>.json`` (the summary), each
    atomically; ``day`` defaults to the current window's start day. Returns their URIs."""
    settings = settings or get_settings()
    lake.safe_segment(key, what="report key")
    if day is None:
        day = (result.current.start if result.current else datetime.now(UTC)).date()
    day_str = day.isoformat() if isinstance(day, date) else date.fromisoformat(day).isoformat()
    folder = lake.table("reports", settings) / "drift" / f"date={day_str}"
    html_path, json_path = folder / f"{key}.html", folder / f"{key}.json"
    lake.write_bytes(html_path, (result.html or _placeholder_html(result)).encode())
    lake.write_json(json_path, result.summary())
    paths = {"html": str(html_path), "json": str(json_path)}
    log.info("drift report written: %s, %s", paths["html"], paths["json"])
    return paths


def _placeholder_html(result: DriftResult) -> str:
    import html

    rows = "".join(
        f"<tr><td>{html.escape(c.column)}</td><td>{c.n_reference}</td><td>{c.n_current}</td></tr>"
        for c in result.columns
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Drift report</title></head>"
        "<body><h1>Drift report: not enough data</h1>"
        f"<p>No column had {result.min_rows} values in both windows, so nothing was tested "
        "and no drift is reported.</p><table><tr><th>column</th><th>reference values</th>"
        f"<th>current values</th></tr>{rows}</table></body></html>"
    )


def log_to_mlflow(
    result: DriftResult,
    paths: dict[str, str],
    run_name: str,
    settings: Settings | None = None,
) -> str | None:
    """One run in ``dresscode-monitoring``: the verdict, per-column scores and both report
    files as artifacts. Returns the run id, or None (with a warning) when MLflow is
    unreachable: the report is already in the lake and the drift decision must not wait."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from dresscode.orchestration.alerts import first_line
    from dresscode.registry import prompt_registry as registry

    settings = settings or get_settings()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    summary = result.summary()
    try:
        registry.use_experiment(mlflow, EXPERIMENT, settings)
        with mlflow.start_run(run_name=run_name) as run:
            mlflow.set_tags(_tags(result, paths))
            mlflow.log_metrics(_metrics(result, summary))
            for uri in paths.values():
                data = lake.read_bytes(lake.storage_path(uri, settings))
                mlflow.log_text(data.decode(), f"drift/{uri.rsplit('/', 1)[-1]}")
    except MlflowException as exc:
        if not registry.is_unreachable(exc):
            raise
        log.warning(
            "drift: MLflow at %s is unreachable, report kept only in the lake (%s): %s "
            "(reason: mlflow_unreachable)",
            settings.mlflow_tracking_uri,
            paths.get("json"),
            first_line(exc),
        )
        return None
    log.info("drift: MLflow run %s in %s", run.info.run_id, EXPERIMENT)
    return run.info.run_id


def _metrics(result: DriftResult, summary: dict[str, Any]) -> dict[str, float]:
    metrics = {
        "drifted": float(result.drifted),
        "drift_share": result.drift_share,
        "n_drifted": float(summary["n_drifted"]),
        "n_tested": float(summary["n_tested"]),
        "n_not_enough_data": float(summary["n_not_enough_data"]),
        "n_reference": float(result.n_reference),
        "n_current": float(result.n_current),
    }
    for col in result.columns:
        if col.score is not None:
            metrics[f"score.{col.column}"] = col.score
            metrics[f"drifted.{col.column}"] = float(col.status == "drifted")
    return metrics


def _tags(result: DriftResult, paths: dict[str, str]) -> dict[str, str]:
    tags = {
        "dresscode.monitoring.drift.drifted": str(result.drifted).lower(),
        "dresscode.monitoring.drift.moved": ", ".join(c.column for c in result.moved()) or "-",
        "dresscode.monitoring.drift.report_html": paths.get("html", "-"),
        "dresscode.monitoring.drift.report_json": paths.get("json", "-"),
    }
    for name, window in (("reference", result.reference), ("current", result.current)):
        if window is not None:
            tags[f"dresscode.monitoring.drift.{name}"] = (
                f"{window.source} [{window.start.isoformat()}, {window.end.isoformat()})"
            )
    return tags


__all__ = [
    "DRIFT_COLUMNS",
    "ColumnDrift",
    "DriftError",
    "DriftResult",
    "Window",
    "detect_drift",
    "last_promotion",
    "log_to_mlflow",
    "photo_frame",
    "reference_frame",
    "reference_window",
    "write_report",
]
