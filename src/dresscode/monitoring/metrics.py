"""Quality metrics and SLOs: how the model does in production, per day and prompt version.

The inference log (one row per model call) is the source of truth for model behaviour; the
manifests add what became of the uploads (quarantine, photos digitized) and the feedback table
what users corrected afterwards. :func:`compute_metrics` turns one window of them into a tidy
table — ``day, prompt_name, prompt_version, metric, value, n`` with ``n`` the denominator — that
:func:`write_metrics` stores as lake table ``quality_metrics`` (one part per day, so recomputing
a day replaces it). :func:`window_metrics` gives the same metrics over the whole window per
prompt, :func:`check_slos` compares them with the SLO bounds (``DRESSCODE_MONITORING_SLOS``
over ``config.SLO_DEFAULTS``) and :func:`decide` picks ``model_monitoring``'s branch.

A metric without data (no tool calls, hence no tool-call success rate) is NaN with ``n = 0``:
its SLO is ``no_data``, never a breach. Columns missing in older parts only shrink the
denominators of the metrics that need them. Definitions: docs/monitoring.md.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from dresscode.core import lake, prompts
from dresscode.core.config import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

TABLE = "quality_metrics"
PART = "metrics"
COLUMNS = ["day", "prompt_name", "prompt_version", "metric", "value", "n"]
KEYS = ["day", "prompt_name", "prompt_version"]

DIGITIZE = "digitize"  # dresscode.ingest.digitize.PURPOSE
OUTFIT = "outfit"  # dresscode.outfits.stylist.PURPOSE
DIGITIZER_PROMPT = prompts.DIGITIZER.name  # manifests lack the prompt name
# Eval and shadow purposes never reach the lake's inference log, but if they did they are not
# production traffic.
PRODUCTION_PURPOSES = (DIGITIZE, OUTFIT)
CORRECTION_EVENTS = ("item_corrected", "item_deleted", "item_added")
FINAL_STATUSES = ("accepted", "duplicate", "quarantined")  # dresscode.ingest.tasks.FINAL_STATUSES
# Parts are dated by the run's logical day, rows by the wall clock of the call: a run that
# starts late writes rows newer than its partition. Partitions this many days before the
# window are read too.
PARTITION_SLACK_DAYS = 2

# Every metric, in table order. Rates are shares in [0, 1]; times in milliseconds.
CALL_METRICS = (
    "calls",
    "call_error_rate",
    "json_error_rate",
    "repaired_rate",
    "schema_violation_rate",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "latency_p95_ms",
    "tokens_per_call",
)
DIGITIZE_METRICS = ("items_per_photo", "zero_item_share", "photos", "correction_rate")
OUTFIT_METRICS = ("tool_call_success_rate", "hallucination_rate")
UPLOAD_METRICS = ("uploads", "quarantine_rate")  # plus quarantine_rate:<reason_code>
METRICS = CALL_METRICS + DIGITIZE_METRICS + OUTFIT_METRICS + UPLOAD_METRICS
KEY_NUMBERS = (  # what the per-day log line shows, per prompt
    "calls",
    "call_error_rate",
    "json_error_rate",
    "photos",
    "items_per_photo",
    "correction_rate",
    "tool_call_success_rate",
    "hallucination_rate",
    "ttft_p95_ms",
    "latency_p95_ms",
)

Status = Literal["ok", "watch", "breach", "no_data"]
# z of a two-sided 95 % Wilson interval: a rate breaches only when the whole interval is past
# its bound, so one bad call among 40 on a quiet day is "watch", not a page.
WILSON_Z = 1.96
Kind = Literal["max", "min"]


# --- values ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricValue:
    """One metric of one prompt (``prompt_name`` empty: prompt-independent, e.g. quarantine)."""

    prompt_name: str
    metric: str
    value: float
    n: int
    prompt_version: str = ""  # empty in window metrics: all versions of the window pooled

    @property
    def scope(self) -> str:
        """``wardrobe-digitizer``, ``wardrobe-digitizer@3``, or empty (prompt-independent)."""
        if self.prompt_name and self.prompt_version:
            return f"{self.prompt_name}@{self.prompt_version}"
        return self.prompt_name

    @property
    def key(self) -> str:
        return f"{self.scope}/{self.metric}" if self.scope else self.metric


@dataclass(frozen=True)
class SloCheck:
    """One SLO against one metric value. ``scope`` says whose metric (a prompt, or empty)."""

    slo: str
    metric: str
    bound: float
    kind: Kind
    value: float | None
    n: int
    status: Status
    scope: str = ""

    @property
    def label(self) -> str:
        return f"{self.scope} {self.metric}" if self.scope else self.metric

    def to_dict(self) -> dict[str, Any]:
        """Plain types, for XCom and the decisions table."""
        return asdict(self)

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> SloCheck:
        return cls(**{k: record[k] for k in cls.__dataclass_fields__ if k in record})


@dataclass(frozen=True)
class Decision:
    """``model_monitoring``'s branch and the sentences that explain it."""

    branch: Literal["healthy", "quality_degraded", "drifted"]
    reasons: list[str] = field(default_factory=list)


# --- computing -------------------------------------------------------------------------------


def compute_metrics(
    start: datetime, end: datetime, settings: Settings | None = None
) -> pd.DataFrame:
    """The metrics table for rows timestamped in [start, end): per day and prompt version.

    Columns ``day`` (YYYY-MM-DD of the row's UTC timestamp), ``prompt_name``,
    ``prompt_version`` (both empty for the prompt-independent upload metrics), ``metric``,
    ``value`` (float, NaN when the denominator is 0) and ``n`` (the denominator; the count
    itself for ``calls``, ``photos`` and ``uploads``). Logs one INFO line per day.
    """
    settings = settings or get_settings()
    start, end = _utc(start), _utc(end)
    frame = _compute(start, end, settings, by_day=True)
    for day in _days(start, end):
        _log_day(day.isoformat(), frame[frame["day"] == day.isoformat()])
    return frame


def window_metrics(
    start: datetime, end: datetime, settings: Settings | None = None
) -> dict[str, MetricValue]:
    """The same metrics over the whole window, per prompt (all its versions pooled).

    One prompt version serves at a time, so pooling the window is "production over the
    window"; on the day of a promotion both versions count. Keyed by ``MetricValue.key``
    (``wardrobe-digitizer/json_error_rate``, ``quarantine_rate``).
    """
    settings = settings or get_settings()
    start, end = _utc(start), _utc(end)
    frame = _compute(start, end, settings, by_day=False)
    values = [
        MetricValue(r["prompt_name"], r["metric"], float(r["value"]), int(r["n"]))
        for r in frame.to_dict("records")
    ]
    _log_day(f"window {start.isoformat()}..{end.isoformat()}", frame)
    return {v.key: v for v in values}


def _compute(start: datetime, end: datetime, settings: Settings, *, by_day: bool) -> pd.DataFrame:
    import pandas as pd

    calls = _load_calls(start, end, settings, by_day=by_day)
    manifests = _load_manifests(start, end, settings, by_day=by_day)
    corrected = _corrected_photos(start, settings) if not manifests.empty else set()
    parts = [
        _call_metrics(calls),
        _photo_metrics(manifests, calls, corrected),
        _upload_metrics(manifests),
    ]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return _empty()
    frame = pd.concat(parts, ignore_index=True)
    rank = {name: i for i, name in enumerate(METRICS)}
    frame["_rank"] = frame["metric"].map(lambda m: rank.get(m.split(":")[0], len(rank)))
    frame = frame.sort_values([*KEYS, "_rank", "metric"], kind="stable")
    return _typed(frame[COLUMNS].reset_index(drop=True))


# --- inputs ----------------------------------------------------------------------------------


def _load_calls(
    start: datetime, end: datetime, settings: Settings, *, by_day: bool
) -> pd.DataFrame:
    """Production inference-log rows of the window, with the group keys and typed columns."""
    frame = _read_window("inference_log", "ts", "request_id", start, end, settings)
    if frame.empty:
        return frame
    frame = frame[_col(frame, "purpose").isin(PRODUCTION_PURPOSES)].copy()
    # An empty name would read as a prompt-independent metric (the upload metrics' scope).
    name = _col(frame, "prompt_name").fillna("").astype(str)
    frame["prompt_name"] = name.where(name != "", "unknown")
    frame["prompt_version"] = _version(_col(frame, "prompt_version"))
    return _keyed(frame, "ts", by_day)


def _load_manifests(
    start: datetime, end: datetime, settings: Settings, *, by_day: bool
) -> pd.DataFrame:
    """Each upload's latest manifest row per day of the window (the whole window: its latest)."""
    frame = _read_window("manifests", "processed_at", "upload_key", start, end, settings)
    if frame.empty:
        return frame
    frame = frame.copy()
    frame["prompt_version"] = _version(_col(frame, "prompt_version"))
    frame = _keyed(frame, "processed_at", by_day)
    frame = frame.sort_values("processed_at", kind="stable")
    return frame.groupby(["upload_key", "day"], sort=False).tail(1)


def _read_window(
    table: str, ts: str, ident: str, start: datetime, end: datetime, settings: Settings
) -> pd.DataFrame:
    """Rows of ``table`` whose ``ts`` column is in [start, end); unreadable stamps skipped."""
    import pandas as pd

    first = start.date() - timedelta(days=PARTITION_SLACK_DAYS)
    days = [first + timedelta(days=i) for i in range((end.date() - first).days + 1)]
    frame = lake.read_table(table, settings, days=days)  # all columns: older parts lack some
    if frame.empty:
        return frame
    stamps = pd.to_datetime(_col(frame, ts), utc=True, errors="coerce", format="ISO8601")
    bad = stamps.isna()
    for name in _col(frame, ident)[bad].astype(str).head(10):
        log.warning("skipped %s row %s: bad_timestamp (no readable %s)", table, name, ts)
    if bad.sum() > 10:
        log.warning("skipped %d more %s rows: bad_timestamp", int(bad.sum()) - 10, table)
    frame = frame.assign(**{ts: stamps})
    return frame[~bad & (stamps >= start) & (stamps < end)]


def _keyed(frame: pd.DataFrame, ts: str, by_day: bool) -> pd.DataFrame:
    """Add the ``day`` key (empty for window metrics, whose versions are pooled too)."""
    if by_day:
        frame["day"] = frame[ts].dt.strftime("%Y-%m-%d")
    else:
        frame["day"] = ""
        frame["prompt_version"] = ""
    return frame


def _corrected_photos(start: datetime, settings: Settings) -> set[str]:
    """``user_id/image_sha256`` of every photo with a correction event from ``start``'s day on.

    Corrections come after the photo was digitized, so only feedback partitions (event days)
    from the window's first day on are read (one day earlier for device clocks).
    """
    first = (start.date() - timedelta(days=1)).isoformat()
    days = [d for d in _partition_days("feedback", settings) if d >= first]
    if not days:
        return set()
    frame = lake.read_table("feedback", settings, days=days)
    if frame.empty:
        return set()
    frame = frame[_col(frame, "event_type").isin(CORRECTION_EVENTS)]
    frame = frame[_col(frame, "image_sha256").notna() & _col(frame, "user_id").notna()]
    return set(frame["user_id"].astype(str) + "/" + frame["image_sha256"].astype(str))


def _partition_days(table: str, settings: Settings) -> list[str]:
    folder = lake.table(table, settings)
    if not lake.exists(folder):
        return []
    names = (p.rstrip("/").rsplit("/", 1)[-1] for p in folder.fs.ls(folder.path, detail=False))
    return sorted(n[len("date=") :] for n in names if n.startswith("date="))


# --- metrics ---------------------------------------------------------------------------------


def _call_metrics(calls: pd.DataFrame) -> pd.DataFrame:
    """Per-call metrics of the inference log (definitions in the module's docs)."""
    import pandas as pd

    from dresscode.llm.client import ErrorClass

    if calls.empty:
        return _empty()
    transport = {v for k, v in vars(ErrorClass).items() if k.isupper() and isinstance(v, str)}
    status = pd.to_numeric(_col(calls, "http_status"), errors="coerce")
    failed = _col(calls, "error_class").isin(transport) | (status.notna() & (status != 200))
    ok = ~failed
    parse_ok, has_parse = _flag(calls, "parse_ok")
    repaired, has_repaired = _flag(calls, "repaired")
    schema_ok, has_schema = _flag(calls, "schema_ok")
    tool_ok, has_tool_ok = _flag(calls, "tool_call_ok")
    tool_calls = _num(calls, "tool_calls").fillna(0)
    n_items = _num(calls, "n_items")
    hallucinated = _num(calls, "hallucinated_items")
    digitize = calls["purpose"] == DIGITIZE
    outfit = calls["purpose"] == OUTFIT
    answered = ok & has_parse  # a structured answer came back and was parsed

    json_den = answered & has_repaired
    schema_den = answered & has_repaired & has_schema
    tool_den = outfit & ok & (tool_calls > 0) & has_tool_ok
    halluc_den = outfit & n_items.notna() & hallucinated.notna()
    items_den = digitize & n_items.notna()
    ratios = {
        "call_error_rate": (failed, pd.Series(True, index=calls.index)),
        "json_error_rate": (json_den & ~parse_ok & ~repaired, json_den),
        "repaired_rate": (answered & has_repaired & repaired, answered & has_repaired),
        "schema_violation_rate": (schema_den & (parse_ok | repaired) & ~schema_ok, schema_den),
        "zero_item_share": (items_den & (n_items == 0), items_den),
        "tool_call_success_rate": (tool_den & tool_ok, tool_den),
        "hallucination_rate": (halluc_den & (hallucinated > 0), halluc_den),
    }
    flags = calls[KEYS].copy()
    flags["_calls"], flags["_digitize"], flags["_outfit"] = 1, digitize, outfit
    for name, (num, den) in ratios.items():
        flags[f"{name}/num"], flags[f"{name}/den"] = num & den, den
    sums = flags.groupby(KEYS, sort=True).sum()
    index = sums.index

    ttft, latency = _num(calls, "ttft_ms"), _num(calls, "latency_ms")
    tokens = _num(calls, "prompt_tokens") + _num(calls, "completion_tokens")
    stats = {
        "ttft_p50_ms": _stat(calls, ttft.where(ok), index, q=0.50),
        "ttft_p95_ms": _stat(calls, ttft.where(ok), index, q=0.95),
        "latency_p95_ms": _stat(calls, latency.where(ok), index, q=0.95),
        "tokens_per_call": _stat(calls, tokens.where(ok), index),
        "items_per_photo": _stat(calls, n_items.where(items_den), index),
    }
    values: dict[str, tuple[pd.Series, pd.Series]] = {"calls": (sums["_calls"], sums["_calls"])}
    for name, _ in ratios.items():
        num, den = sums[f"{name}/num"], sums[f"{name}/den"]
        values[name] = (num / den.where(den > 0), den)
    values.update(stats)
    applies = {
        **{m: sums["_calls"] > 0 for m in CALL_METRICS},
        **{m: sums["_digitize"] > 0 for m in ("items_per_photo", "zero_item_share")},
        **{m: sums["_outfit"] > 0 for m in OUTFIT_METRICS},
    }
    rows = [
        _long(name, value, n, applies[name])
        for name, (value, n) in values.items()
        if name in applies
    ]
    return pd.concat(rows, ignore_index=True)


def _photo_metrics(
    manifests: pd.DataFrame, calls: pd.DataFrame, corrected: set[str]
) -> pd.DataFrame:
    """``photos`` and ``correction_rate`` per day and digitizer version, from the manifests.

    Emitted for every digitizer group of the calls too (0 photos on a day of failures).
    """
    import pandas as pd

    groups: list[tuple[str, str, str]] = []
    if not calls.empty:
        digitizer = calls[calls["purpose"] == DIGITIZE]
        groups = list(digitizer[KEYS].drop_duplicates().itertuples(index=False, name=None))
    accepted = pd.DataFrame(columns=[*KEYS, "photo"])
    if not manifests.empty:
        rows = manifests[_col(manifests, "status") == "accepted"].copy()
        sha = _col(rows, "image_sha256").fillna("?" + _col(rows, "upload_key").astype(str))
        rows["photo"] = _col(rows, "user_id").astype(str) + "/" + sha.astype(str)
        rows["prompt_name"] = DIGITIZER_PROMPT
        accepted = rows[[*KEYS, "photo"]].drop_duplicates()
    if accepted.empty and not groups:
        return _empty()
    accepted = accepted.assign(corrected=accepted["photo"].isin(corrected))
    sums = accepted.groupby(KEYS, sort=True).agg(
        photos=("photo", "size"), corrected=("corrected", "sum")
    )
    index = (
        sums.index.union(pd.MultiIndex.from_tuples(groups, names=KEYS)) if groups else sums.index
    )
    sums = sums.reindex(index, fill_value=0)
    photos = sums["photos"]
    always = pd.Series(True, index=index)
    return pd.concat(
        [
            _long("photos", photos, photos, always),
            _long("correction_rate", sums["corrected"] / photos.where(photos > 0), photos, always),
        ],
        ignore_index=True,
    )


def _upload_metrics(manifests: pd.DataFrame) -> pd.DataFrame:
    """``uploads`` (final outcomes), ``quarantine_rate`` and ``quarantine_rate:<reason>``."""
    import pandas as pd

    if manifests.empty:
        return _empty()
    status = _col(manifests, "status")
    final = status.isin(FINAL_STATUSES)
    quarantined = status == "quarantined"
    reason = _col(manifests, "reason_code").fillna("unknown").astype(str)
    frame = pd.DataFrame(
        {"day": manifests["day"], "final": final, "quarantined": quarantined & final}
    )
    frame["prompt_name"], frame["prompt_version"] = "", ""
    sums = frame.groupby(KEYS, sort=True)[["final", "quarantined"]].sum()
    uploads = sums["final"]
    always = pd.Series(True, index=sums.index)
    rows = [
        _long("uploads", uploads, uploads, always),
        _long("quarantine_rate", sums["quarantined"] / uploads.where(uploads > 0), uploads, always),
    ]
    by_reason = (
        frame[frame["quarantined"]]
        .assign(reason=reason[frame["quarantined"]])
        .groupby([*KEYS, "reason"], sort=True)
        .size()
    )
    for code in sorted(set(by_reason.index.get_level_values("reason"))):
        count = by_reason.xs(code, level="reason").reindex(sums.index, fill_value=0)
        value = count / uploads.where(uploads > 0)
        present = count > 0
        rows.append(_long(f"quarantine_rate:{code}", value, uploads, present))
    return pd.concat(rows, ignore_index=True)


def _stat(
    calls: pd.DataFrame, values: pd.Series, index: pd.Index, q: float | None = None
) -> tuple[pd.Series, pd.Series]:
    """A quantile (or the mean, ``q=None``) of ``values`` per group; NaN values are left out."""
    present = values.notna()
    grouped = values[present].groupby([calls.loc[present, k] for k in KEYS], sort=True)
    value = grouped.mean() if q is None else grouped.quantile(q)
    n = grouped.size()
    if value.empty:  # groupby of nothing loses the key names
        return _nan_series(index), _zero_series(index)
    return value.reindex(index), n.reindex(index, fill_value=0)


def _long(name: str, value: pd.Series, n: pd.Series, applies: pd.Series) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame({"value": value.astype(float), "n": n.astype("int64")})
    frame = frame[applies.reindex(frame.index, fill_value=False).astype(bool)]
    frame = frame.reset_index()
    frame["metric"] = name
    return frame[COLUMNS]


# --- column helpers --------------------------------------------------------------------------


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column, or all-missing when older parts (or all parts) lack it."""
    import pandas as pd

    if name in frame.columns:
        return frame[name]
    return pd.Series(None, index=frame.index, dtype="object")


def _flag(frame: pd.DataFrame, name: str) -> tuple[pd.Series, pd.Series]:
    """A boolean column as (value, present); a missing value is False but not present."""
    raw = _col(frame, name)
    present = raw.notna()
    return raw.astype("boolean").fillna(False).astype(bool), present


def _num(frame: pd.DataFrame, name: str) -> pd.Series:
    import pandas as pd

    return pd.to_numeric(_col(frame, name), errors="coerce").astype(float)


def _version(raw: pd.Series) -> pd.Series:
    """Prompt versions as strings: the log has "3", manifests 3 (or 3.0 next to nulls)."""
    import pandas as pd

    number = pd.to_numeric(raw, errors="coerce")
    whole = number.notna() & (number == number.round())
    text = raw.astype(object).where(raw.notna(), "").astype(str)
    text[whole] = number[whole].astype("int64").astype(str)
    return text


def _nan_series(index: pd.Index) -> pd.Series:
    import pandas as pd

    return pd.Series(float("nan"), index=index)


def _zero_series(index: pd.Index) -> pd.Series:
    import pandas as pd

    return pd.Series(0, index=index, dtype="int64")


def _empty() -> pd.DataFrame:
    import pandas as pd

    return _typed(pd.DataFrame({c: [] for c in COLUMNS}))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """The table's column types: strings as Python str, value float, n int."""
    frame = frame.astype({"value": "float64", "n": "int64"})
    for column in COLUMNS[:4]:
        frame[column] = frame[column].astype(str).astype(object)
    return frame


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _days(start: datetime, end: datetime) -> list[date]:
    last = (end - timedelta(microseconds=1)).date()
    return [start.date() + timedelta(days=i) for i in range((last - start.date()).days + 1)]


def _log_day(label: str, frame: pd.DataFrame) -> None:
    """One INFO line with the day's key numbers, per prompt."""
    if frame.empty:
        log.info("%s: no model calls and no uploads", label)
        return
    pieces = []
    for (name, version), rows in frame.groupby(["prompt_name", "prompt_version"], sort=True):
        by_metric = dict(zip(rows["metric"], rows["value"], strict=True))
        if not name:
            shown = ["uploads", "quarantine_rate"]
            scope = "uploads"
        else:
            shown = [m for m in KEY_NUMBERS if m in by_metric]
            scope = f"{name}@{version}" if version else name
        numbers = " ".join(f"{m}={_fmt(by_metric.get(m))}" for m in shown)
        pieces.append(f"{scope}: {numbers}")
    log.info("%s: %s", label, "; ".join(pieces))


# --- the lake --------------------------------------------------------------------------------


def write_metrics(
    frame: pd.DataFrame,
    settings: Settings | None = None,
    *,
    days: Iterable[date | str] | None = None,
) -> list[str]:
    """Write :func:`compute_metrics`' table, one part per day (a day's part is replaced).

    ``days``: days to (re)write even when the frame has no row for them — pass the window's
    days so an empty day replaces what an earlier computation left. Returns the days written.
    """
    settings = settings or get_settings()
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"metrics frame lacks columns {missing}: pass compute_metrics' table")
    if (frame["day"].astype(str) == "").any():
        raise ValueError("metrics rows without a day (window metrics) cannot be written per day")
    wanted = {d.isoformat() if isinstance(d, date) else str(d) for d in days or ()}
    written = sorted(set(frame["day"].astype(str)) | wanted)
    for day in written:
        rows = _typed(frame.loc[frame["day"].astype(str) == day, COLUMNS])
        lake.write_parquet(
            TABLE, day, PART, rows.astype({c: "string" for c in COLUMNS[:4]}), settings
        )
    log.info("wrote %d metric rows for %d day(s) to %s", len(frame), len(written), TABLE)
    return written


def read_metrics(
    days: Iterable[date | str] | None = None, settings: Settings | None = None
) -> pd.DataFrame:
    """The ``quality_metrics`` table (or some days of it), in table order."""
    settings = settings or get_settings()
    frame = lake.read_table(TABLE, settings, days=days)
    if frame.empty:
        return _empty()
    frame = frame[COLUMNS].copy()
    rank = {name: i for i, name in enumerate(METRICS)}
    frame["_rank"] = frame["metric"].map(lambda m: rank.get(str(m).split(":")[0], len(rank)))
    frame = frame.sort_values([*KEYS, "_rank", "metric"], kind="stable")
    return _typed(frame[COLUMNS].reset_index(drop=True))


# --- SLOs ------------------------------------------------------------------------------------


def check_slos(
    metrics: Mapping[str, MetricValue] | Iterable[MetricValue] | pd.DataFrame,
    slos: Mapping[str, float] | None = None,
) -> list[SloCheck]:
    """Every SLO against every metric of its name (one check per prompt, or per row).

    ``slos`` defaults to ``settings.monitoring_slos``. ``<metric>_max`` breaches when the value
    is above the bound, ``<metric>_min`` when below — for rates, only when the 95 % Wilson
    interval of the rate is entirely past the bound; a rate past its bound by chance alone is
    ``watch``. A NaN value or ``n = 0`` is ``no_data``.
    An SLO whose metric does not occur at all gets one ``no_data`` check.
    """
    slos = get_settings().monitoring_slos if slos is None else slos
    values = _metric_values(metrics)
    checks = []
    for slo, bound in slos.items():
        metric, kind = _split_slo(slo)
        found = sorted((v for v in values if v.metric == metric), key=lambda v: v.scope)
        if not found:
            checks.append(SloCheck(slo, metric, float(bound), kind, None, 0, "no_data"))
        for value in found:
            checks.append(_check(slo, metric, float(bound), kind, value))
    return checks


def breaches(checks: Iterable[SloCheck]) -> list[SloCheck]:
    return [c for c in checks if c.status == "breach"]


def _split_slo(slo: str) -> tuple[str, Kind]:
    for kind in ("max", "min"):
        if slo.endswith(f"_{kind}"):
            return slo[: -len(kind) - 1], kind  # type: ignore[return-value]
    raise ValueError(f"SLO {slo!r} must end in _max or _min")


def _check(slo: str, metric: str, bound: float, kind: Kind, value: MetricValue) -> SloCheck:
    number = value.value
    if number is None or math.isnan(number) or value.n <= 0:
        return SloCheck(slo, metric, bound, kind, None, int(value.n), "no_data", value.scope)
    beyond = number > bound if kind == "max" else number < bound
    status: Status = "ok"
    if beyond:
        status = "breach"
        if _is_rate(metric):
            low, high = wilson_interval(number, int(value.n))
            sure = low > bound if kind == "max" else high < bound
            status = "breach" if sure else "watch"
    return SloCheck(slo, metric, bound, kind, float(number), int(value.n), status, value.scope)


def _is_rate(metric: str) -> bool:
    """Shares of a count (``n`` trials); means and percentiles are compared as they are."""
    return metric.endswith(("_rate", "_share"))


def wilson_interval(rate: float, n: int, z: float = WILSON_Z) -> tuple[float, float]:
    """The Wilson score interval of a proportion observed as ``rate`` over ``n`` trials."""
    if n <= 0:
        return 0.0, 1.0
    denominator = 1 + z * z / n
    center = (rate + z * z / (2 * n)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


def _metric_values(
    metrics: Mapping[str, MetricValue] | Iterable[MetricValue] | pd.DataFrame,
) -> list[MetricValue]:
    if isinstance(metrics, Mapping):
        return list(metrics.values())
    if hasattr(metrics, "columns"):  # a metrics table (per day: one check per row)
        return [
            MetricValue(
                str(r["prompt_name"]),
                str(r["metric"]),
                float(r["value"]),
                int(r["n"]),
                str(r["prompt_version"]),
            )
            for r in metrics.to_dict("records")  # type: ignore[union-attr]
        ]
    return list(metrics)


def render_table(checks: Iterable[SloCheck]) -> str:
    """A fixed-width table of SLO checks for the task log and the on-call page."""
    header = ("metric", "value", "bound", "n", "status")
    rows = [
        (
            c.label,
            _fmt(c.value),
            f"{'<=' if c.kind == 'max' else '>='} {_fmt(c.bound)}",
            str(c.n),
            c.status.upper() if c.status == "breach" else c.status,
        )
        for c in checks
    ]
    if not rows:
        return "no SLOs configured"
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {1, 3}  # numbers right-aligned

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{value:.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"


# --- the branch ------------------------------------------------------------------------------


def decide(checks: Iterable[SloCheck], drift_drifted: bool, drift_moved: list[str]) -> Decision:
    """``drifted`` when drift was detected, else ``quality_degraded`` on any SLO breach, else
    ``healthy``. Reasons name the moved columns and every breach (metric, value, bound)."""
    checks = list(checks)
    broken = [_breach_reason(c) for c in breaches(checks)]
    if drift_drifted:
        moved = ", ".join(drift_moved) if drift_moved else "the report names no column"
        return Decision("drifted", [f"drift in {len(drift_moved)} column(s): {moved}", *broken])
    if broken:
        return Decision("quality_degraded", broken)
    no_data = sum(c.status == "no_data" for c in checks)
    ok = sum(c.status == "ok" for c in checks)
    return Decision("healthy", [f"{ok} SLO check(s) ok, {no_data} without data, no drift"])


def _breach_reason(check: SloCheck) -> str:
    side = ">" if check.kind == "max" else "<"
    return (
        f"{check.label} {_fmt(check.value)} {side} {check.kind} {_fmt(check.bound)} "
        f"({check.slo}, n={check.n})"
    )
