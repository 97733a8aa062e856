"""SLO checks, Wilson intervals, the branch and the SLO table, on values built in a line."""

from __future__ import annotations

import json

from dresscode.monitoring import slos
from dresscode.monitoring.metrics import MetricValue
from dresscode.monitoring.slos import SloCheck

DIGITIZER = "wardrobe-digitizer"
STYLIST = "outfit-stylist"


def test_max_and_min_bounds_and_the_bound_itself_is_ok() -> None:
    values = [
        MetricValue(DIGITIZER, "json_error_rate", 0.02, 100),  # at the max: ok
        MetricValue(DIGITIZER, "items_per_photo", 0.9, 50),  # below the min: breach
        MetricValue(STYLIST, "tool_call_success_rate", 0.95, 20),  # at the min: ok
        MetricValue("", "quarantine_rate", 0.6, 200),  # above the max: breach
        MetricValue("", "quarantine_rate:truncated", 0.6, 200),  # no SLO of its own
    ]
    bounds = {
        "json_error_rate_max": 0.02,
        "items_per_photo_min": 1.0,
        "tool_call_success_rate_min": 0.95,
        "quarantine_rate_max": 0.5,
    }

    checks = {c.slo: c for c in slos.check_slos(values, bounds)}

    assert {s: c.status for s, c in checks.items()} == {
        "json_error_rate_max": "ok",
        "items_per_photo_min": "breach",
        "tool_call_success_rate_min": "ok",
        "quarantine_rate_max": "breach",
    }
    assert [c.slo for c in slos.breaches(checks.values())] == [
        "items_per_photo_min",
        "quarantine_rate_max",
    ]


def test_a_rate_past_its_bound_by_chance_is_watch_not_a_breach() -> None:
    bounds = {"json_error_rate_max": 0.02, "zero_item_share_max": 0.1}
    values = [
        # 1 bad answer in 41: 2.4 % > 2 %, but the 95 % interval reaches down to 0.4 %.
        MetricValue(DIGITIZER, "json_error_rate", 1 / 41, 41),
        # 15 empty photos in 40: 37.5 %, the interval (24 %..53 %) is all above 10 %.
        MetricValue(DIGITIZER, "zero_item_share", 15 / 40, 40),
    ]

    checks = {c.slo: c.status for c in slos.check_slos(values, bounds)}

    assert checks == {"json_error_rate_max": "watch", "zero_item_share_max": "breach"}
    low, high = slos.wilson_interval(15 / 40, 40)
    assert 0.1 < low < 15 / 40 < high < 1
    # The same 2.4 % over 4,100 answers is no longer chance.
    many = slos.check_slos([MetricValue(DIGITIZER, "json_error_rate", 1 / 41, 4100)], bounds)
    assert [c.status for c in many if c.metric == "json_error_rate"] == ["breach"]


def _checks() -> list[SloCheck]:
    return [
        SloCheck("json_error_rate_max", "json_error_rate", 0.02, "max", 0.05, 40, "breach", DIGITIZER),
        SloCheck("ttft_p95_ms_max", "ttft_p95_ms", 3000.0, "max", 1200.0, 40, "ok", DIGITIZER),
        SloCheck("tool_call_success_rate_min", "tool_call_success_rate", 0.95, "min", None, 0, "no_data", STYLIST),
    ]  # fmt: skip


def test_decide_drift_wins_and_names_columns_and_breaches() -> None:
    decision = slos.decide(_checks(), True, ["brightness", "n_items"])

    assert decision.branch == "drifted"
    assert "brightness, n_items" in decision.reasons[0]
    assert any("json_error_rate 0.0500 > max 0.0200" in r for r in decision.reasons)


def test_decide_quality_degraded_names_metric_value_and_bound() -> None:
    decision = slos.decide(_checks(), False, [])

    assert decision.branch == "quality_degraded"
    assert decision.reasons == [
        f"{DIGITIZER} json_error_rate 0.0500 > max 0.0200 (json_error_rate_max, n=40)"
    ]


def test_decide_healthy_without_breaches_or_drift() -> None:
    checks = [c for c in _checks() if c.status != "breach"]

    decision = slos.decide(checks, False, [])

    assert decision.branch == "healthy"
    assert decision.reasons == ["1 SLO check(s) ok, 1 without data, no drift"]


def test_render_table_shows_every_check_aligned() -> None:
    text = slos.render_table(_checks())
    header, rule, *rows = text.splitlines()

    assert header.split() == ["metric", "value", "bound", "n", "status"]
    assert set(rule) == {"-", " "}
    assert len(rows) == 3
    assert rows[0].startswith(f"{DIGITIZER} json_error_rate") and rows[0].endswith("BREACH")
    assert "<= 0.0200" in rows[0] and ">= 0.9500" in rows[2]
    # no data shows as "-", and the status column starts at the same place on every line
    assert " - " in rows[2]
    starts = {line.rfind(" ") for line in [header, *rows]}
    assert len(starts) == 1


def test_slo_checks_survive_a_round_trip_through_xcom_dicts() -> None:
    checks = _checks()
    again = [SloCheck.from_dict(json.loads(json.dumps(c.to_dict()))) for c in checks]

    assert again == checks


def test_feedback_slos_are_defaults_the_settings_can_override(monkeypatch) -> None:
    from dresscode.core import config

    defaults = slos.default_slos()
    assert (defaults["thumbs_down_rate_max"], defaults["wore_instead_rate_max"]) == (0.35, 0.50)
    assert set(config.get_settings().monitoring_slos) <= set(defaults)
    value = MetricValue(STYLIST, "thumbs_down_rate", 0.9, 200, "7")
    (check,) = [c for c in slos.check_slos([value]) if c.metric == "thumbs_down_rate"]
    assert (check.status, check.scope) == ("breach", f"{STYLIST}@7")
