"""The view's cost section: what the model calls cost per day over the last 7 days.

Read from the cost rows of ``quality_metrics`` (:mod:`dresscode.monitoring.cost`): the
spend of all prompts (``cost_usd_per_day``), tokens and dollars per photo (digitizer) and per
outfit suggestion (stylist), each day's versions pooled by ``n`` like the SLO sparklines. The
bounds are the SLOs ``cost_usd_per_day_max`` (the budget) and ``tokens_per_outfit_max``, and a
day breaches them by :func:`dresscode.monitoring.slos.check_slos`, the monitoring's own rule.

A model without a price (``DRESSCODE_MODEL_PRICES``) has NaN cost with ``n = 0``: the section
says "no price set", never $0. Token counts are whatever the served model reported: the
simulator's when the simulator serves, not Gemma's.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Literal, TypedDict

from dresscode.core.config import Settings, get_settings
from dresscode.ui.daily import last_days, pooled
from dresscode.ui.view import SLO_DAYS, _e, _link, _table

if TYPE_CHECKING:
    import pandas as pd

Figure = Literal[
    "spend_usd",
    "tokens_per_photo",
    "cost_per_photo_usd",
    "tokens_per_outfit",
    "cost_per_outfit_usd",
]
# Each figure of a day and the quality_metrics metric it pools.
METRIC_OF: dict[Figure, str] = {
    "spend_usd": "cost_usd_per_day",
    "tokens_per_photo": "tokens_per_photo",
    "cost_per_photo_usd": "cost_per_photo_usd",
    "tokens_per_outfit": "tokens_per_outfit",
    "cost_per_outfit_usd": "cost_per_outfit_usd",
}
PRICED: tuple[Figure, ...] = ("spend_usd", "cost_per_photo_usd", "cost_per_outfit_usd")
BUDGET_SLO = "cost_usd_per_day_max"
TOKENS_SLO = "tokens_per_outfit_max"
# The SLO each bounded figure is checked against (the others have no bound).
SLO_OF: dict[Figure, str] = {"spend_usd": BUDGET_SLO, "tokens_per_outfit": TOKENS_SLO}
SIMULATOR_NOTE = (
    "Token counts are the served model's own: the simulator's when the simulator serves, "
    "not Gemma's."
)


class CostDay(TypedDict):
    """One day's figures; a figure is None without data or without a price (``unpriced``)."""

    day: str
    spend_usd: float | None
    tokens_per_photo: float | None
    cost_per_photo_usd: float | None
    tokens_per_outfit: float | None
    cost_per_outfit_usd: float | None
    unpriced: list[Figure]  # dollar figures whose calls ran on a model without a price
    breaches: list[str]  # the SLOs this day is past (BUDGET_SLO, TOKENS_SLO)
    trace_url: str | None  # past TOKENS_SLO: the day's heaviest suggestion trace in MLflow


class CostOverview(TypedDict):
    """The cost section: the last 7 days, oldest first, and the bounds they are held to."""

    days: list[CostDay]
    bounds: dict[str, float]  # BUDGET_SLO and TOKENS_SLO, from the settings' SLOs
    breach_days: dict[str, list[str]]  # per SLO, the days past it
    note: str


def cost_by_day(settings: Settings | None = None, *, today: date | None = None) -> CostOverview:
    """The cost figures of the last 7 days (only those days' partitions are read)."""
    from dresscode.monitoring import metrics as monitoring
    from dresscode.monitoring import slos

    settings = settings or get_settings()
    today = today or datetime.now(UTC).date()
    days = last_days(today, SLO_DAYS)
    frame = monitoring.read_metrics(days=days, settings=settings)
    frame = frame[frame["metric"].isin(list(METRIC_OF.values()))]
    in_force = slos.default_slos(settings)  # SLO_DEFAULTS with overrides: both always there
    bounds = {slo: float(in_force[slo]) for slo in SLO_OF.values()}
    rows = [_day(day, frame[frame["day"] == day], bounds) for day in days]
    for row in rows:
        if TOKENS_SLO in row["breaches"]:
            row["trace_url"] = heaviest_trace_url(row["day"])
    return CostOverview(
        days=rows,
        bounds=bounds,
        breach_days={slo: [r["day"] for r in rows if slo in r["breaches"]] for slo in bounds},
        note=SIMULATOR_NOTE,
    )


def _day(day: str, frame: pd.DataFrame, bounds: dict[str, float]) -> CostDay:
    from dresscode.monitoring.metrics import MetricValue
    from dresscode.monitoring.slos import check_slos

    figures: dict[Figure, float | None] = {}
    counts: dict[Figure, int] = {}
    unpriced: list[Figure] = []
    for figure, metric in METRIC_OF.items():
        rows = frame[frame["metric"] == metric]
        figures[figure] = pooled(rows)
        counts[figure] = int(rows.loc[rows["value"].notna(), "n"].clip(lower=0).sum())
        # Rows but none with data: the calls ran, their model has no price.
        if figure in PRICED and not rows.empty and figures[figure] is None:
            unpriced.append(figure)
    pooled_values = [
        MetricValue("", METRIC_OF[figure], value, counts[figure])
        for figure in SLO_OF
        if (value := figures[figure]) is not None
    ]
    breaches = [c.slo for c in check_slos(pooled_values, bounds) if c.status == "breach"]
    return CostDay(
        day=day,
        spend_usd=figures["spend_usd"],
        tokens_per_photo=figures["tokens_per_photo"],
        cost_per_photo_usd=figures["cost_per_photo_usd"],
        tokens_per_outfit=figures["tokens_per_outfit"],
        cost_per_outfit_usd=figures["cost_per_outfit_usd"],
        unpriced=unpriced,
        breaches=breaches,
        trace_url=None,
    )


def heaviest_trace_url(day: str) -> str | None:
    """The MLflow UI link to the day's outfit-suggestion trace that used the most tokens —
    where a day over ``tokens_per_outfit_max`` shows why (a loop is one span per turn). None
    without an MLflow server, without such a trace, or with MLflow unreachable (one short
    try: the page never waits on it)."""
    from dresscode.core.config import environ_overrides
    from dresscode.monitoring import links

    ui = links.ui_base()
    if ui is None:
        return None
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    try:
        with environ_overrides(links.QUICK):
            found = links.heaviest_suggestion(start, start + timedelta(days=1))
    except Exception:  # a link is a convenience: the section shows without it
        return None
    return links.trace_url(ui, found[0], found[1]) if found else None


# --- HTML ------------------------------------------------------------------------------------

NO_PRICE = '<span class="muted">no price set</span>'


def usd(value: float) -> str:
    """Dollars with cents, or four significant digits below a dollar ($0.0001234): a cheap
    call's cost must not round to a $0.00 that reads as free."""
    if value == 0 or abs(value) >= 1:
        return f"${value:,.2f}"
    decimals = max(2, 3 - math.floor(math.log10(abs(value))))
    return f"${value:.{decimals}f}"


def tokens(value: float) -> str:
    return f"{value:,.0f}"


def _cell(cost_day: CostDay, figure: Figure) -> str:
    value = cost_day[figure]
    if figure in cost_day["unpriced"]:
        return NO_PRICE
    if value is None:
        return '<span class="muted">–</span>'
    return _e(usd(value) if figure in PRICED else tokens(value))


def _bounded(cost_day: CostDay, figure: Figure, bounds: dict[str, float]) -> str:
    """The figure against its bound, marked like a failed gate when the day breaches it."""
    cell, slo = _cell(cost_day, figure), SLO_OF[figure]
    if cost_day[figure] is None:
        return cell
    bound = usd(bounds[slo]) if figure in PRICED else tokens(bounds[slo])
    if slo in cost_day["breaches"]:
        over = f'<span class="failed">{cell} &gt; {_e(bound)} ({_e(slo)})</span>'
        trace = cost_day.get("trace_url") if figure == "tokens_per_outfit" else None
        return f"{over} {_link(trace, 'heaviest trace')}" if trace else over
    return f'{cell} <span class="muted">of {_e(bound)}</span>'


def render_cost(cost: CostOverview) -> str:
    """The "Cost, last 7 days" section of the page."""
    days = cost["days"]
    bounds = cost["bounds"]
    parts = [f"<h2>Cost, last 7 days ({_e(days[0]['day'])} .. {_e(days[-1]['day'])})</h2>"]
    parts.append(
        "<p>All prompts, versions pooled per day by <i>n</i>. Budget "
        f"{_e(usd(bounds[BUDGET_SLO]))} per day (<code>{BUDGET_SLO}</code>), at most "
        f"{_e(tokens(bounds[TOKENS_SLO]))} tokens per outfit (<code>{TOKENS_SLO}</code>); "
        f"prices from <code>DRESSCODE_MODEL_PRICES</code>. {_e(cost['note'])}</p>"
    )
    if not any(d[figure] is not None or d["unpriced"] for d in days for figure in METRIC_OF):
        parts.append('<p class="muted">No cost metrics in the last 7 days.</p>')
        return "\n".join(parts)
    rows = [
        [
            _e(d["day"]),
            _bounded(d, "spend_usd", bounds),
            _cell(d, "tokens_per_photo"),
            _cell(d, "cost_per_photo_usd"),
            _bounded(d, "tokens_per_outfit", bounds),
            _cell(d, "cost_per_outfit_usd"),
        ]
        for d in days
    ]
    head = ["day", "spend vs budget", "tokens/photo", "$/photo", "tokens/outfit", "$/outfit"]
    parts.append(_table(head, rows))
    return "\n".join(parts)
