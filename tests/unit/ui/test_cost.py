"""The view's cost section over a real lake: rows written by the monitoring's own writer."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from dresscode.core import config, lake
from dresscode.monitoring import cost as monitoring_cost
from dresscode.monitoring import metrics
from dresscode.ui import cost

TODAY = date(2026, 3, 10)
DIGITIZER, STYLIST = "wardrobe-digitizer", "outfit-stylist"


def _day(days_ago: int) -> str:
    return (TODAY - timedelta(days=days_ago)).isoformat()


def _row(days_ago: int, prompt: str, version: str, metric: str, value: float, n: int) -> dict:
    return {
        "day": _day(days_ago),
        "prompt_name": prompt,
        "prompt_version": version,
        "metric": metric,
        "value": value,
        "n": n,
    }


def _by_day(shown: cost.CostOverview) -> dict[str, cost.CostDay]:
    return {d["day"]: d for d in shown["days"]}


def _html_row(page: str, day: str) -> str:
    found = re.search(rf"<tr><td>{day}</td>.*?</tr>", page)
    assert found, f"no table row for {day}"
    return found.group(0)


def test_figures_per_day_pool_versions_by_n_against_the_settings_bounds(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "DRESSCODE_MONITORING_SLOS", '{"cost_usd_per_day_max": 60, "tokens_per_outfit_max": 9000}'
    )
    config.get_settings.cache_clear()
    rows = [
        # Yesterday: two stylist versions, one digitizer version, spend within the budget.
        _row(1, STYLIST, "1", "tokens_per_outfit", 3000.0, 3),
        _row(1, STYLIST, "2", "tokens_per_outfit", 5000.0, 1),
        _row(1, STYLIST, "1", "cost_per_outfit_usd", 0.002, 3),
        _row(1, STYLIST, "2", "cost_per_outfit_usd", 0.004, 1),
        _row(1, DIGITIZER, "7", "tokens_per_photo", 800.0, 10),
        _row(1, DIGITIZER, "7", "cost_per_photo_usd", 0.0004, 10),
        _row(1, "", "", "cost_usd_per_day", 42.5, 50),
        _row(1, STYLIST, "1", "calls", 99999.0, 9),  # not a cost metric
        # Today: over the budget (60 from the settings, not the default 100) and the token bound.
        _row(0, "", "", "cost_usd_per_day", 75.0, 80),
        _row(0, STYLIST, "2", "tokens_per_outfit", 9500.0, 2),
        # Three days ago: a stylist version without data (NaN, n = 0) is left out of the pool.
        _row(3, STYLIST, "1", "tokens_per_outfit", 8000.0, 4),
        _row(3, STYLIST, "2", "tokens_per_outfit", float("nan"), 0),
    ]
    metrics.write_metrics(pd.DataFrame(rows))

    shown = cost.cost_by_day(today=TODAY)

    assert [d["day"] for d in shown["days"]] == [_day(i) for i in range(6, -1, -1)]
    assert shown["bounds"] == {"cost_usd_per_day_max": 60.0, "tokens_per_outfit_max": 9000.0}
    days = _by_day(shown)
    yesterday, today, earlier = days[_day(1)], days[_day(0)], days[_day(3)]
    assert yesterday["tokens_per_outfit"] == pytest.approx((3000 * 3 + 5000) / 4)
    assert yesterday["cost_per_outfit_usd"] == pytest.approx((0.002 * 3 + 0.004) / 4)
    assert yesterday["tokens_per_photo"] == pytest.approx(800.0)
    assert yesterday["cost_per_photo_usd"] == pytest.approx(0.0004)
    assert yesterday["spend_usd"] == pytest.approx(42.5)
    assert yesterday["breaches"] == [] and yesterday["unpriced"] == []
    assert today["spend_usd"] == pytest.approx(75.0)
    assert sorted(today["breaches"]) == ["cost_usd_per_day_max", "tokens_per_outfit_max"]
    assert today["tokens_per_photo"] is None  # no row: no data, not zero
    assert earlier["tokens_per_outfit"] == pytest.approx(8000.0) and earlier["breaches"] == []
    assert days[_day(2)]["spend_usd"] is None and days[_day(2)]["unpriced"] == []
    assert shown["breach_days"] == {
        "cost_usd_per_day_max": [_day(0)],
        "tokens_per_outfit_max": [_day(0)],
    }

    page = cost.render_cost(shown)
    assert "Cost, last 7 days" in page
    over, within = _html_row(page, _day(0)), _html_row(page, _day(1))
    assert 'class="failed"' in over and "$75.00 &gt; $60.00" in over and "9,500" in over
    assert 'class="failed"' not in within
    assert "$42.50" in within and "$60.00" in within and "3,500" in within
    assert "$0.002500" in within and "$0.0004000" in within and "800" in within
    assert today["trace_url"] is None  # a file store has no MLflow UI to link to
    assert "heaviest trace" not in page
    # With a server, the day over the token bound links its heaviest suggestion trace.
    linked = {**today, "trace_url": "http://mlflow.example/#/experiments/3/traces?traceId=tr-1"}
    page = cost.render_cost({**shown, "days": [*shown["days"][:-1], linked]})
    assert '<a href="http://mlflow.example/#/experiments/3/traces?traceId=tr-1"' in page


def test_an_unpriced_model_shows_no_price_set_never_zero_dollars(dresscode_home: Path) -> None:
    # The monitoring's own cost rows for calls of a model with no price, and of a priced one.
    def call(day: int, model: str, photo: str, prompt: int, completion: int) -> dict:
        return {
            "day": _day(day),
            "prompt_name": DIGITIZER,
            "prompt_version": "3",
            "purpose": "digitize",
            "model": model,
            "image_sha256": photo,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
        }

    calls = pd.DataFrame(
        [
            call(1, "no-price-model", "a", 900, 100),
            call(1, "no-price-model", "a", 900, 300),  # a re-ask of the same photo
            call(1, "no-price-model", "b", 700, 100),
            call(0, "priced", "c", 1000, 500),
        ]
    )
    prices = {"priced": {"prompt_per_1m": 2.0, "completion_per_1m": 10.0}}
    rows = monitoring_cost.cost_metrics(calls, prices, by_day=True, span=timedelta(days=1))
    metrics.write_metrics(rows)

    shown = _by_day(cost.cost_by_day(today=TODAY))

    unpriced, priced = shown[_day(1)], shown[_day(0)]
    assert unpriced["tokens_per_photo"] == pytest.approx((900 + 100 + 900 + 300 + 700 + 100) / 2)
    assert unpriced["spend_usd"] is None and unpriced["cost_per_photo_usd"] is None
    assert sorted(unpriced["unpriced"]) == ["cost_per_photo_usd", "spend_usd"]
    assert unpriced["breaches"] == []  # an unknown spend is no breach either
    expected = (1000 * 2.0 + 500 * 10.0) / 1_000_000
    assert priced["spend_usd"] == pytest.approx(expected)
    assert priced["cost_per_photo_usd"] == pytest.approx(expected)
    assert priced["unpriced"] == []

    page = cost.render_cost(cost.cost_by_day(today=TODAY))
    row = _html_row(page, _day(1))
    assert row.count("no price set") == 2
    assert "$0" not in row and "1,500" in row
    assert "no price set" not in _html_row(page, _day(0))
    assert "$0.007000" in _html_row(page, _day(0))


def test_only_the_last_seven_days_partitions_are_read(dresscode_home: Path) -> None:
    metrics.write_metrics(
        pd.DataFrame(
            [
                _row(6, "", "", "cost_usd_per_day", 11.0, 5),  # the window's first day
                _row(7, "", "", "cost_usd_per_day", 22.0, 5),  # one day before it
                _row(30, "", "", "cost_usd_per_day", 999.0, 5),
            ]
        )
    )
    # A row dated today in a partition 30 days old: reading the whole table and filtering
    # on the day column would show it; reading the window's partitions does not.
    stray = _row(0, "", "", "cost_usd_per_day", 777.0, 5)
    lake.write_parquet("quality_metrics", _day(30), "stray", [stray])

    shown = cost.cost_by_day(today=TODAY)

    spends = {d["day"]: d["spend_usd"] for d in shown["days"]}
    assert spends == {_day(i): (11.0 if i == 6 else None) for i in range(7)}
    page = cost.render_cost(shown)
    for absent in ("22.00", "999", "777", _day(7), _day(30)):
        assert absent not in page


def test_the_section_escapes_its_text_and_says_whose_token_counts(dresscode_home: Path) -> None:
    shown = cost.cost_by_day(today=TODAY)
    page = cost.render_cost(shown)
    assert "No cost metrics in the last 7 days." in page
    assert "simulator" in page and "DRESSCODE_MODEL_PRICES" in page

    hostile = "<script>alert(1)</script>"
    shown["note"] = hostile
    shown["days"][-1]["day"] = f'"><img src=x onerror=alert(2)>{hostile}'
    shown["days"][-1]["spend_usd"] = 1.0
    page = cost.render_cost(shown)
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0.0, "$0.00"), (1234.5, "$1,234.50"), (0.25, "$0.2500"), (0.00001234, "$0.00001234")],
)
def test_dollars_keep_four_significant_digits_below_a_dollar(value: float, shown: str) -> None:
    # A call's cost must never round to a $0.00 that reads as free.
    assert cost.usd(value) == shown
