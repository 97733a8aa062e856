"""Drift: is this window's traffic still like the traffic the prompt was promoted on?

The rows compared are photo frames, one row per digitized photo
(:mod:`dresscode.monitoring.drift_frames`): photo properties (bytes, resolution, aspect,
brightness, source format), the model's output (item count, the first item's category and
colour, 'none' for an empty answer) and the call's latency, TTFT and completion tokens. The
current window is compared with a reference window (a frozen baseline, the days since the last
promotion, or the days before) by Evidently 0.7's data drift preset with its per-column tests
(:func:`detect_drift`, here). The HTML report and its JSON summary go to ``reports/drift/`` in
the lake and to MLflow (:mod:`dresscode.monitoring.drift_report`).

A column needs ``min_rows`` non-null values in *both* windows to be tested; with fewer it is
reported ``not_enough_data`` and never counts as drift (a quiet night is not an incident).
The data set is drifted when at least one column drifted and the share of drifted columns
among the tested ones reaches ``drift_share``.

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

Labels reach the HTML report inside Evidently's inline ``<script>`` JSON, which does not escape
``</script>``: any label that is not a plain word is replaced by a hash of itself
(:func:`inert_label`), whatever frame is passed in. The photo frame's labels are closed
vocabularies already (:func:`dresscode.monitoring.drift_frames.closed_labels`).

Heavy libraries (pandas, Evidently) are imported inside functions.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, TypedDict

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
# Labels are categoricals: a 1M-photo window's labels take 3 MB instead of 180 MB of strings.
LABEL_COLUMNS = tuple(c for c, kind in DRIFT_COLUMNS.items() if kind == "cat")

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


class WindowRecord(TypedDict):
    """A :class:`Window` as JSON: ISO 8601 bounds, why it was chosen."""

    start: str
    end: str
    source: str
    note: str


class ColumnRecord(TypedDict):
    """A :class:`ColumnDrift` as JSON, with its ``effect``."""

    column: str
    kind: Kind
    status: Status
    stattest: str | None
    score: float | None
    threshold: float | None
    n_reference: int
    n_current: int
    effect: float | None


class DriftSummary(TypedDict):
    """The report's JSON summary (``<key>.json`` beside the HTML report)."""

    drifted: bool
    drift_share: float
    share_threshold: float
    n_columns: int
    n_tested: int
    n_drifted: int
    n_not_enough_data: int
    moved: list[str]
    n_reference: int
    n_current: int
    min_rows: int
    max_rows: int
    reference: WindowRecord | None
    current: WindowRecord | None
    columns: list[ColumnRecord]
    lake_versions: dict[str, int]  # the Delta table versions the frames were read at


@dataclass(frozen=True)
class Window:
    """A time range of photos and why it was chosen (``source``: current, baseline,
    since_promotion, days_before)."""

    start: datetime
    end: datetime
    source: str
    note: str = ""

    def to_dict(self) -> WindowRecord:
        return WindowRecord(
            start=self.start.isoformat(),
            end=self.end.isoformat(),
            source=self.source,
            note=self.note,
        )


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

    def to_dict(self) -> ColumnRecord:
        effect = self.effect
        return ColumnRecord(
            column=self.column,
            kind=self.kind,
            status=self.status,
            stattest=self.stattest,
            score=self.score,
            threshold=self.threshold,
            n_reference=self.n_reference,
            n_current=self.n_current,
            effect=None if effect is None else round(effect, 4),
        )


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
    lake_versions: dict[str, int] = field(default_factory=dict)  # Delta table -> version read

    def moved(self) -> list[ColumnDrift]:
        """Drifted columns, largest effect first."""
        drifted = [c for c in self.columns if c.status == "drifted"]
        return sorted(drifted, key=lambda c: -(c.effect or 0.0))

    def tested(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.status != "not_enough_data"]

    def summary(self) -> DriftSummary:
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
            "lake_versions": dict(self.lake_versions),
        }


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
    """A label column as a categorical of inert strings with only the values present.

    Labels end up in the HTML report inside Evidently's inline ``<script>`` JSON, which does
    not escape ``</script>``: a label that is not a plain word (:func:`inert_label`) is
    replaced by a hash of itself, whatever frame is passed in (a frozen baseline, a bench).
    """
    import pandas as pd

    if not (
        isinstance(values.dtype, pd.CategoricalDtype)
        and all(isinstance(c, str) for c in values.cat.categories)
    ):
        values = values.astype(object)
        values = values.where(values.isna(), values.astype(str)).astype("category")
    values = values.cat.remove_unused_categories()
    names = [inert_label(c) for c in values.cat.categories]
    if names == list(values.cat.categories):
        return values
    if len(set(names)) == len(names):
        return values.cat.rename_categories(names)
    return values.astype(object).map(inert_label).astype("category")


# A label the report may show as it is: a word or two of letters, digits and _ . + - (the
# blueprint's enums, the palette's colour names, 'none', 'other', image formats).
_INERT_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.+-]{0,39}")


def inert_label(value: str) -> str:
    """``value`` when it is a plain word (:data:`_INERT_LABEL`), else ``x-`` and 12 hex
    digits of its SHA-256: distinct values stay distinct, none can carry markup."""
    if _INERT_LABEL.fullmatch(value):
        return value
    return "x-" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]


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
