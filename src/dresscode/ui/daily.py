"""The days the view's sections show, and one day's metric rows pooled into one figure.

Shared by the SLO sparklines and feedback table (:mod:`dresscode.ui.view`) and the cost table
(:mod:`dresscode.ui.cost`), so every section means the same days and the same pooling.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def last_days(today: date, count: int) -> list[str]:
    """The ISO dates of the ``count`` days ending ``today``, oldest first: the partitions of
    ``quality_metrics`` a section reads (never the whole table)."""
    return [(today - timedelta(days=i)).isoformat() for i in range(count - 1, -1, -1)]


def pooled(rows: pd.DataFrame) -> float | None:
    """The ``n``-weighted mean of metric rows (``value``, ``n``), e.g. one day's versions; None
    when no row has data. Exact for rates and means; for percentiles an approximation.

    Rows without data (NaN, ``n = 0``: an unpriced model's cost) are left out, so they count
    as unknown, never as a zero.
    """
    known = rows[(rows["n"] > 0) & rows["value"].notna()]
    weight = float(known["n"].sum())
    if known.empty or weight <= 0:
        return None
    return float((known["value"] * known["n"]).sum() / weight)
