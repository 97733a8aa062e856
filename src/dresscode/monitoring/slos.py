"""SLOs: is a quality metric past its bound, sure enough to page, and which branch follows.

:func:`check_slos` compares metric values (:mod:`dresscode.monitoring.metrics`) with the SLO
bounds (``DRESSCODE_MONITORING_SLOS`` over ``config.SLO_DEFAULTS``): ``<metric>_max`` breaches
when the value is above the bound, ``<metric>_min`` when below. A rate breaches only when its
whole 95 % Wilson interval is past the bound (:func:`wilson_interval`), so one bad call among
40 on a quiet day is ``watch``, not a page. A metric without data is ``no_data``, never a
breach. The bounds are the settings' (``SLO_DEFAULTS``, the feedback
rates' included, merged with ``DRESSCODE_MONITORING_SLOS``). :func:`render_table` prints the checks for the task log and the page; :func:`decide`
picks ``model_monitoring``'s branch from the checks and the drift verdict.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypedDict

from dresscode.core.config import Settings, get_settings
from dresscode.monitoring.metrics import MetricValue, fmt_value

if TYPE_CHECKING:
    import pandas as pd

Status = Literal["ok", "watch", "breach", "no_data"]
Kind = Literal["max", "min"]
Branch = Literal["healthy", "quality_degraded", "drifted"]
# z of a two-sided 95 % Wilson interval: a rate breaches only when the whole interval is past
# its bound, so one bad call among 40 on a quiet day is "watch", not a page.
WILSON_Z = 1.96


# Users' verdicts on the stylist, per version (:mod:`dresscode.monitoring.outfit_feedback`).
# A third of rated outfits thumbed down, or half of the suggestions users gave feedback on
# replaced by something else, is a stylist that no longer helps (docs/monitoring.md).
def default_slos(settings: Settings | None = None) -> dict[str, float]:
    """The SLO bounds in force: ``SLO_DEFAULTS`` merged with ``DRESSCODE_MONITORING_SLOS``."""
    return (settings or get_settings()).monitoring_slos


class SloCheckRecord(TypedDict):
    """An :class:`SloCheck` as plain JSON (XCom, the decisions table)."""

    slo: str
    metric: str
    bound: float
    kind: Kind
    value: float | None
    n: int
    status: Status
    scope: str


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

    def to_dict(self) -> SloCheckRecord:
        """Plain types, for XCom and the decisions table."""
        return SloCheckRecord(
            slo=self.slo,
            metric=self.metric,
            bound=self.bound,
            kind=self.kind,
            value=self.value,
            n=self.n,
            status=self.status,
            scope=self.scope,
        )

    @classmethod
    def from_dict(cls, record: SloCheckRecord) -> SloCheck:
        """Back from :meth:`to_dict` (a record without ``scope`` is prompt-independent)."""
        return cls(**{k: record[k] for k in cls.__dataclass_fields__ if k in record})  # type: ignore[literal-required]


@dataclass(frozen=True)
class Verdict:
    """``model_monitoring``'s branch and the sentences that explain it."""

    branch: Branch
    reasons: list[str] = field(default_factory=list)


# --- checking --------------------------------------------------------------------------------


def check_slos(
    metrics: Mapping[str, MetricValue] | Iterable[MetricValue] | pd.DataFrame,
    slos: Mapping[str, float] | None = None,
) -> list[SloCheck]:
    """Every SLO against every metric of its name (one check per prompt, or per row).

    ``slos`` defaults to :func:`default_slos`. ``<metric>_max`` breaches when the value
    is above the bound, ``<metric>_min`` when below — for rates, only when the 95 % Wilson
    interval of the rate is entirely past the bound; a rate past its bound by chance alone is
    ``watch``. A NaN value or ``n = 0`` is ``no_data``.
    An SLO whose metric does not occur at all gets one ``no_data`` check.
    """
    slos = default_slos() if slos is None else slos
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
    kinds: tuple[Kind, ...] = ("max", "min")
    for kind in kinds:
        if slo.endswith(f"_{kind}"):
            return slo[: -len(kind) - 1], kind
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
            fmt_value(c.value),
            f"{'<=' if c.kind == 'max' else '>='} {fmt_value(c.bound)}",
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


# --- the branch ------------------------------------------------------------------------------


def decide(checks: Iterable[SloCheck], drift_drifted: bool, drift_moved: list[str]) -> Verdict:
    """``drifted`` when drift was detected, else ``quality_degraded`` on any SLO breach, else
    ``healthy``. Reasons name the moved columns and every breach (metric, value, bound)."""
    checks = list(checks)
    broken = [_breach_reason(c) for c in breaches(checks)]
    if drift_drifted:
        moved = ", ".join(drift_moved) if drift_moved else "the report names no column"
        return Verdict("drifted", [f"drift in {len(drift_moved)} column(s): {moved}", *broken])
    if broken:
        return Verdict("quality_degraded", broken)
    no_data = sum(c.status == "no_data" for c in checks)
    ok = sum(c.status == "ok" for c in checks)
    return Verdict("healthy", [f"{ok} SLO check(s) ok, {no_data} without data, no drift"])


def _breach_reason(check: SloCheck) -> str:
    side = ">" if check.kind == "max" else "<"
    return (
        f"{check.label} {fmt_value(check.value)} {side} {check.kind} {fmt_value(check.bound)} "
        f"({check.slo}, n={check.n})"
    )
