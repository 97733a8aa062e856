"""Quality metrics: how the model does in production, per day and prompt version.

The inference log (one row per model call) is the source of truth for model behaviour; the
manifests add what became of the uploads, the feedback table what users corrected afterwards and
what they said of their outfits (:mod:`.outfit_feedback`, per stylist version). :func:`compute_metrics` turns one window of them into a tidy
table — ``day, prompt_name, prompt_version, metric, value, n`` with ``n`` the denominator — that
:func:`write_metrics` stores as lake table ``quality_metrics`` (one part per day, so recomputing
a day replaces it). :func:`window_metrics` gives the same metrics over the whole window per
prompt, for the SLO checks in :mod:`dresscode.monitoring.slos`. :func:`correction_rate` is the
one definition of the correction rate, for this table and for ``feedback_ingest``'s report.

A metric without data (no tool calls, hence no tool-call success rate) is NaN with ``n = 0``:
its SLO is ``no_data``, never a breach. Columns missing in older parts only shrink the
denominators of the metrics that need them. Definitions: docs/monitoring.md.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from dresscode.core import lake, prompts
from dresscode.core.config import Settings, get_settings
from dresscode.core.tables import FINAL_STATUSES, WARDROBE_EVENTS
from dresscode.monitoring.cost import cost_metrics  # ranked last: after METRICS
from dresscode.monitoring.outfit_feedback import FEEDBACK_METRICS, feedback_metrics

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

TABLE = "quality_metrics"
PART = "metrics"
COLUMNS = ["day", "prompt_name", "prompt_version", "metric", "value", "n"]
KEYS = ["day", "prompt_name", "prompt_version"]

DIGITIZE = prompts.DIGITIZER.purpose
OUTFIT = prompts.STYLIST.purpose
DIGITIZER_PROMPT = prompts.DIGITIZER.name  # manifests lack the prompt name
# Eval and shadow purposes are not production traffic (nor in the lake's inference log).
PRODUCTION_PURPOSES = (DIGITIZE, OUTFIT)
CORRECTION_EVENTS = WARDROBE_EVENTS  # the events that change a user's wardrobe
# Parts are dated by the run's logical day, rows by the call's clock (a late run writes rows
# newer than its partition): partitions this many days before the window are read too.
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
METRICS = CALL_METRICS + DIGITIZE_METRICS + OUTFIT_METRICS + FEEDBACK_METRICS + UPLOAD_METRICS
KEY_NUMBERS = (  # what the per-day log line shows, per prompt
    "calls", "call_error_rate", "json_error_rate", "photos", "items_per_photo",
    "correction_rate", "tool_call_success_rate", "hallucination_rate", "ttft_p95_ms",
    "latency_p95_ms",
)  # fmt: skip

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
    calls = _load_calls(start, end, settings, by_day=by_day)
    manifests = _load_manifests(start, end, settings, by_day=by_day)
    import pandas as pd

    corrections = _corrections(start, settings) if not manifests.empty else pd.DataFrame()
    parts = [
        _call_metrics(calls),
        _photo_metrics(manifests, calls, corrections),
        _upload_metrics(manifests),
        feedback_metrics(start, end, settings, by_day=by_day),
        cost_metrics(calls, settings.model_prices, by_day=by_day, span=end - start),
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


def _corrections(start: datetime, settings: Settings) -> pd.DataFrame:
    """The feedback events from ``start``'s day on (:func:`correction_rate` picks the
    corrections among them).

    Corrections come after the photo was digitized, so only feedback partitions (event days)
    from the window's first day on are read (one day earlier for device clocks).
    """
    import pandas as pd

    first = (start.date() - timedelta(days=1)).isoformat()
    days = [d for d in _partition_days("feedback", settings) if d >= first]
    if not days:
        return pd.DataFrame()
    return lake.read_table("feedback", settings, days=days)


def _partition_days(table: str, settings: Settings) -> list[str]:
    folder = lake.table(table, settings)
    if not lake.exists(folder):
        return []
    names = (p.rstrip("/").rsplit("/", 1)[-1] for p in folder.fs.ls(folder.path, detail=False))
    return sorted(n[len("date=") :] for n in names if n.startswith("date="))


# --- the correction rate --------------------------------------------------------------------


def correction_rate(
    photos: pd.DataFrame, events: pd.DataFrame, *, by: Sequence[str] = ()
) -> pd.DataFrame:
    """The correction rate: the share of digitized photos their users corrected.

    ``photos``: the accepted (digitized) photos, with ``user_id``, ``image_sha256`` and the
    ``by`` columns; a photo listed twice in a group counts once. ``events``: feedback rows with
    ``event_type``, ``user_id`` and ``image_sha256`` (other events are ignored). A photo is
    corrected when at least one ``CORRECTION_EVENTS`` event (an item corrected, deleted or
    added) names its user and image: more events, or one delivered twice, still count it once;
    another user's correction of their own copy of the same picture does not count.

    Returns one row per group of ``by`` values (one row when ``by`` is empty): the ``by``
    columns, ``photos``, ``corrected`` and ``correction_rate`` (``corrected / photos``, NaN
    when there are no photos).
    """
    import pandas as pd

    by = list(by)
    named = events[_col(events, "event_type").isin(CORRECTION_EVENTS)]
    named = named[_col(named, "user_id").notna() & _col(named, "image_sha256").notna()]
    corrected = set(_photo_ids(named))
    frame = pd.DataFrame({**{c: photos[c] for c in by}, "photo": _photo_ids(photos)})
    frame = frame.drop_duplicates()
    frame["corrected"] = frame["photo"].isin(corrected)
    if by:
        grouped = frame.groupby(by, sort=True)
        sums = grouped.agg(photos=("photo", "size"), corrected=("corrected", "sum"))
        sums = sums.reset_index()
    else:
        sums = pd.DataFrame({"photos": [len(frame)], "corrected": [frame["corrected"].sum()]})
    sums = sums.astype({"photos": "int64", "corrected": "int64"})
    sums["correction_rate"] = sums["corrected"] / sums["photos"].where(sums["photos"] > 0)
    return sums[[*by, "photos", "corrected", "correction_rate"]]


def _photo_ids(frame: pd.DataFrame) -> pd.Series:
    return _col(frame, "user_id").astype(str) + "/" + _col(frame, "image_sha256").astype(str)


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
    manifests: pd.DataFrame, calls: pd.DataFrame, corrections: pd.DataFrame
) -> pd.DataFrame:
    """``photos`` and ``correction_rate`` per day and digitizer version, from the manifests.

    Emitted for every digitizer group of the calls too (0 photos on a day of failures).
    """
    import pandas as pd

    groups: list[tuple[str, str, str]] = []
    if not calls.empty:
        digitizer = calls[calls["purpose"] == DIGITIZE]
        groups = list(digitizer[KEYS].drop_duplicates().itertuples(index=False, name=None))
    accepted = pd.DataFrame(columns=[*KEYS, "user_id", "image_sha256"])
    if not manifests.empty:
        rows = manifests[_col(manifests, "status") == "accepted"].copy()
        # A photo without a hash (an older manifest) is still a photo, one no event can name.
        sha = _col(rows, "image_sha256").fillna("?" + _col(rows, "upload_key").astype(str))
        rows["image_sha256"], rows["user_id"] = sha, _col(rows, "user_id")
        rows["prompt_name"] = DIGITIZER_PROMPT
        accepted = rows[[*KEYS, "user_id", "image_sha256"]]
    if accepted.empty and not groups:
        return _empty()
    index = pd.MultiIndex.from_tuples(groups, names=KEYS)
    sums = pd.DataFrame({"photos": 0, "corrected": 0}, index=index)
    if not accepted.empty:
        sums = correction_rate(accepted, corrections, by=KEYS).set_index(KEYS)
        sums = sums.reindex(sums.index.union(index) if groups else sums.index, fill_value=0)
    photos = sums["photos"]
    always = pd.Series(True, index=sums.index)
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
    import pandas as pd

    present = values.notna()
    grouped = values[present].groupby([calls.loc[present, k] for k in KEYS], sort=True)
    value = grouped.mean() if q is None else grouped.quantile(q)
    n = grouped.size()
    if value.empty:  # groupby of nothing loses the key names
        return pd.Series(float("nan"), index=index), pd.Series(0, index=index, dtype="int64")
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
        numbers = " ".join(f"{m}={fmt_value(by_metric.get(m))}" for m in shown)
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


def fmt_value(value: float | None) -> str:
    """A metric value for people: ``-`` without data, 4 decimals below 1, fewer above."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{value:.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"
