"""Stylist evaluation: the outfit golden scenarios load, the metrics mean what they say, and
the gate passes a perfect model and stops a sloppy one — through the real simulator."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from dresscode.llm import blueprints
from dresscode.outfits import stylist as outfits
from dresscode.registry.evaluation import stylist as stylist_eval
from dresscode.registry.evaluation.stylist import ScenarioError, StylistResult
from dresscode.sim.testing import running_simulator

BLUEPRINT = blueprints.resolve("outfit-stylist@2")
SCENARIOS = stylist_eval.load_scenarios()


def test_the_golden_set_covers_the_hard_cases() -> None:
    assert len(SCENARIOS) >= 25
    assert len({s.id for s in SCENARIOS}) == len(SCENARIOS)
    tags = {t for s in SCENARIOS for t in s.tags}
    for needed in ("heat", "cold", "snow", "rain", "wind", "mild", "missing-weather", "tiny"):
        assert needed in tags, needed
    for needed in ("injection", "southern-hemisphere", "formal", "documented-outcome"):
        assert needed in tags, needed
    assert any(s.weather is None for s in SCENARIOS)
    assert any(s.expectations.status == "skipped" for s in SCENARIOS)
    rainy_with_gear = [s for s in SCENARIOS if s.expectations.needs_rain_gear]
    rainy_without = [s for s in SCENARIOS if "no_rain_gear_owned" in s.expectations.caveats]
    assert rainy_with_gear and rainy_without


def test_the_scenario_lookup_answers_only_for_its_own_city_and_day() -> None:
    scenario = next(s for s in SCENARIOS if s.id == "heatwave-seville")
    assert scenario.weather_lookup(" seville ", scenario.day) == scenario.weather
    assert scenario.weather_lookup("Madrid", scenario.day) is None
    assert scenario.weather_lookup("Seville", date(2025, 1, 1)) is None
    scenario.weather_lookup("Seville", scenario.day)["hourly"]["temperature_2m"][15] = -50
    assert scenario.weather["hourly"]["temperature_2m"][15] == 41  # callers get a copy


def test_scenario_weather_is_a_provider_forecast_derived_like_production() -> None:
    from dresscode.features import weather

    stated = [s for s in SCENARIOS if s.weather is not None]
    assert stated and all(set(s.weather or {}) >= {"latitude", "hourly"} for s in stated)
    for scenario in stated:  # every one derives (a junk payload raises WeatherError)
        answer = weather.forecast_answer(scenario.weather, city=scenario.city, day=scenario.day)
        assert answer["temperature_min_c"] <= answer["temperature_c"]
        assert answer["temperature_c"] <= answer["temperature_max_c"]


def _write(folder: Path, name: str, doc: Any) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(doc))


GOOD = yaml.safe_load((stylist_eval.SCENARIOS_DIR / "mild-spring-paris.yaml").read_text())


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"forecast": {}}, r"unknown keys \['forecast'\]"),
        ({"date": "next tuesday"}, "date must be YYYY-MM-DD"),
        ({"occasion": "party"}, "occasion 'party'"),
        ({"expectations": {"needs_umbrella": True}}, "unknown expectations"),
        ({"expectations": {"caveats": ["bring_a_coat"]}}, "unknown caveats"),
        (
            {"wardrobe": [{"item_id": "a", "category": "spacesuit", "warmth": "light"}]},
            "category 'spacesuit'",
        ),
        (
            {"wardrobe": [{"item_id": "a", "category": "top", "warmth": "light"}] * 2},
            "duplicate item_id",
        ),
    ],
)
def test_a_bad_scenario_file_names_the_file_and_the_problem(
    tmp_path: Path, change: dict, match: str
) -> None:
    _write(tmp_path, "broken", GOOD | change)
    with pytest.raises(ScenarioError, match=match) as info:
        stylist_eval.load_scenarios(tmp_path)
    assert "broken.yaml" in str(info.value)


def test_scenario_ids_must_be_unique_across_files(tmp_path: Path) -> None:
    _write(tmp_path, "a", GOOD)
    _write(tmp_path, "b", GOOD)
    with pytest.raises(ScenarioError, match="also used by"):
        stylist_eval.load_scenarios(tmp_path)


# --- scoring (pure) -------------------------------------------------------------------------


def _result(
    scenario_id: str,
    *,
    dropped: list[str] | None = None,
    violations: list[str] | None = None,
    tool_calls: int = 1,
    schema_ok: bool | None = True,
    outfit_ids: list[str] | None = None,
) -> StylistResult:
    scenario = next(s for s in SCENARIOS if s.id == scenario_id)
    suggestion = outfits.Suggestion("u", scenario.day)
    suggestion.dropped_items = dropped or []
    suggestion.rule_violations = violations or []
    suggestion.tool_calls, suggestion.tool_call_ok = tool_calls, (True if tool_calls else None)
    suggestion.outfits = [{"item_ids": outfit_ids or [], "occasion": "everyday", "reason": ""}]
    records = [{"schema_ok": None}] * tool_calls + [{"schema_ok": schema_ok}]
    return StylistResult(scenario, suggestion, records)


def test_metrics_count_what_the_model_proposed() -> None:
    results = [
        _result("mild-spring-paris", dropped=["ghost-1", "ghost-2"]),
        _result("heatwave-seville", violations=["heavy_outerwear_in_heat: outfit 1, parka"]),
        _result("autumn-berlin", violations=["incomplete_outfit: outfit 2, top"], tool_calls=0),
        _result("rain-edge-60", schema_ok=False),
    ]
    metrics = stylist_eval.score_stylist(results)
    assert metrics["n_scenarios"] == 4 and metrics["n_answered"] == 3
    assert metrics["hallucinated_items"] == 2 and metrics["hallucination_rate"] == pytest.approx(
        1 / 3
    )
    assert metrics["weather_rule_pass_rate"] == pytest.approx(
        2 / 3
    )  # incomplete is no weather rule
    assert metrics["tool_call_rate_when_needed"] == pytest.approx(3 / 4)
    assert metrics["structured_output_validity"] == pytest.approx(3 / 4)
    passed, reasons = stylist_eval.stylist_gate(metrics)
    assert not passed and len(reasons) == 4
    assert reasons[0].startswith("2 hallucinated item(s) > 0")


def test_an_empty_evaluation_fails_the_gate() -> None:
    metrics = stylist_eval.score_stylist([])
    assert metrics["weather_rule_pass_rate"] == 0.0 and metrics["n_answered"] == 0
    passed, reasons = stylist_eval.stylist_gate(metrics)
    assert not passed and "no scenario was answered" in reasons


def test_expectations_spell_out_what_was_missed() -> None:
    missed = _result(
        "formal-event-vienna", outfit_ids=["hoodie-grey", "jeans-blue", "sneakers-white"]
    )
    failures = stylist_eval.check_expectations(missed)
    assert "named hoodie-grey" in failures and "named sneakers-white" in failures
    assert "outfit 1 has none of ['shirt-dress']" in failures
    cold = _result("blizzard-montreal", outfit_ids=["tee-white", "jeans-blue", "sneakers-white"])
    failures = stylist_eval.check_expectations(cold)
    assert {
        "outfit 1 has no warm layer",
        "outfit 1 has no rain gear",
        "outfit 1 has no outerwear",
    } <= set(failures)


# --- the real loop against the simulator ----------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Any:
    with running_simulator(
        served_model_name=["perfect=perfect", "sloppy=sloppy"], fixed_latency_ms=5, max_num_seqs=32
    ) as url:
        yield url


def test_a_perfect_model_passes_the_gate(sim: str) -> None:
    metrics, rows = stylist_eval.evaluate_stylist(BLUEPRINT, sim, "perfect", SCENARIOS)
    passed, reasons = stylist_eval.stylist_gate(metrics)
    assert passed, reasons
    assert metrics["hallucinated_items"] == 0 and metrics["weather_rule_pass_rate"] == 1.0
    assert metrics["tool_call_rate_when_needed"] == 1.0
    assert len(rows) == len(SCENARIOS) and {r["id"] for r in rows} == {s.id for s in SCENARIOS}
    by_id = {r["id"]: r for r in rows}
    assert by_id["empty-wardrobe"]["reached_model"] is False
    assert by_id["weather-timeout"]["caveats"] == "weather_unavailable"
    failed = {r["id"]: r["expectation_failures"] for r in rows if not r["expectations_ok"]}
    assert failed == {}


def test_a_sloppy_model_fails_the_gate_on_hallucinated_items(sim: str) -> None:
    metrics, rows = stylist_eval.evaluate_stylist(BLUEPRINT, sim, "sloppy", SCENARIOS)
    passed, reasons = stylist_eval.stylist_gate(metrics)
    assert not passed
    assert metrics["hallucinated_items"] > 0 and any("hallucinated" in r for r in reasons)
    assert sum(r["hallucinated_items"] for r in rows) == metrics["hallucinated_items"]
