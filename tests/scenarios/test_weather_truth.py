"""One weather truth: evaluation sees the weather exactly as production derives it.

The golden outfit scenarios state their weather as the provider's answer (Open-Meteo hourly
data); the stylist's ``get_weather`` answer is made from it by the code ``weather_ingest`` runs
(``features.weather.derive`` -> ``tool_answer``), and the rules read the fields that answer, the
lake table and the Feast views share. So the cold-morning and hot-afternoon scenarios fail a
stylist that ignores the day's low or high, through production's path — where, with only the
daytime mean (what production used to derive), both would have passed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dresscode.features import weather
from dresscode.features.weather.derive import FEATURE_KEYS, HOURLY_VARIABLES
from dresscode.llm import blueprints
from dresscode.llm.client import ChatResult
from dresscode.outfits import rules
from dresscode.outfits import stylist as outfits
from dresscode.outfits.rules import Violation
from dresscode.registry.evaluation import stylist as stylist_eval
from dresscode.registry.evaluation.stylist import Scenario, StylistResult

BLUEPRINT = blueprints.resolve("outfit-stylist@2")
SCENARIOS = {s.id: s for s in stylist_eval.load_scenarios()}
COLD_MORNING = SCENARIOS["cold-morning-mild-afternoon"]
HOT_AFTERNOON = SCENARIOS["cool-morning-hot-afternoon"]
# What an Open-Meteo /v1/forecast answer holds besides `hourly` (no field of our own).
PROVIDER_KEYS = {
    "latitude",
    "longitude",
    "timezone",
    "utc_offset_seconds",
    "timezone_abbreviation",
    "elevation",
    "generationtime_ms",
    "hourly_units",
    "hourly",
}
EXTREMES = ("temperature_max_c", "temperature_min_c")

# What each stylist proposes: the one that ignores the low wears a t-shirt on a 3-14 °C day;
# the one that ignores the high keeps the heavy parka for the 30 °C afternoon.
IGNORES_THE_LOW = ["tee-white", "jeans-blue", "sneakers-white"]
READS_THE_LOW = ["sweater-wool", "jeans-blue", "sneakers-white", "coat-wool"]
IGNORES_THE_HIGH = ["tee-white", "jeans-blue", "sneakers-white", "parka-heavy"]
READS_THE_HIGH = ["tee-white", "shorts-khaki", "sneakers-white", "jacket-denim"]


def production_answer(scenario: Scenario) -> dict[str, Any]:
    """The get_weather answer production gives for the scenario's forecast."""
    return weather.forecast_answer(scenario.weather, city=scenario.city, day=scenario.day)


def outfit(ids: list[str]) -> dict[str, Any]:
    return {"outfits": [{"item_ids": ids, "occasion": "everyday", "reason": "r"}], "notes": "n"}


# --- the scenarios are provider payloads, derived like production ----------------------------


@pytest.mark.parametrize(
    "scenario", [s for s in SCENARIOS.values() if s.weather], ids=lambda s: s.id
)
def test_every_scenario_states_a_provider_forecast_that_production_derives(
    scenario: Scenario,
) -> None:
    assert scenario.weather is not None
    assert set(scenario.weather) <= PROVIDER_KEYS, "an evaluation-only weather field"
    assert set(scenario.weather["hourly"]) == {"time", *HOURLY_VARIABLES}
    answer = production_answer(scenario)  # raises WeatherError for a payload that is not one
    assert answer["temperature_min_c"] <= answer["temperature_c"] <= answer["temperature_max_c"]
    assert scenario.weather_lookup(scenario.city, scenario.day) == scenario.weather


def test_the_lake_the_feature_views_the_tool_and_the_rules_share_the_fields(
    dresscode_home: Path,
) -> None:
    from dresscode.features import store

    definitions = store.load_definitions()
    for view in (definitions.weather, definitions.weather_live):
        assert {f.name for f in view.features} == {*FEATURE_KEYS, "day"}
    answer = production_answer(COLD_MORNING)
    derived = weather.forecast_features(COLD_MORNING.weather, day=COLD_MORNING.day)
    assert {k: answer[k] for k in ("temperature_c", *EXTREMES)} == {
        k: derived[k] for k in ("temperature_c", *EXTREMES)
    }
    facts = rules.weather_facts(answer)
    assert facts is not None
    assert (facts.high_c, facts.low_c) == (
        derived["temperature_max_c"],
        derived["temperature_min_c"],
    )


def test_the_mean_alone_would_have_hidden_both_days() -> None:
    cold, hot = production_answer(COLD_MORNING), production_answer(HOT_AFTERNOON)
    assert cold["temperature_min_c"] <= rules.COLD_C < cold["temperature_c"]
    assert hot["temperature_c"] < rules.HOT_C <= hot["temperature_max_c"]


# --- derive -> tool answer -> rules ----------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "bad", "good", "violation"),
    [
        (COLD_MORNING, IGNORES_THE_LOW, READS_THE_LOW, Violation.NO_WARM_LAYER),
        (HOT_AFTERNOON, IGNORES_THE_HIGH, READS_THE_HIGH, Violation.HEAVY_IN_HEAT),
    ],
    ids=["cold-morning", "hot-afternoon"],
)
def test_the_rules_catch_a_stylist_that_ignores_the_low_or_the_high(
    scenario: Scenario, bad: list[str], good: list[str], violation: Violation
) -> None:
    answer = production_answer(scenario)
    kept, _, violations = rules.validate(outfit(bad), scenario.context(), answer)
    assert kept == [] and [rules.violation_code(v) for v in violations] == [violation]
    kept, _, violations = rules.validate(outfit(good), scenario.context(), answer)
    assert len(kept) == 1 and violations == []
    # What production used to answer (the mean, no high or low) let the bad answer through.
    mean_only = {k: v for k, v in answer.items() if k not in EXTREMES}
    assert rules.validate(outfit(bad), scenario.context(), mean_only)[2] == []


# --- the whole evaluation loop ---------------------------------------------------------------


class ScriptedStylist:
    """A model client that asks for the weather, then answers ``pick(tool answer)``."""

    def __init__(self, scenario: Scenario, pick: Callable[[dict[str, Any]], list[str]]) -> None:
        self.scenario, self.pick = scenario, pick
        self.seen: list[dict[str, Any]] = []

    async def chat(self, messages: list[dict[str, Any]], **_: Any) -> ChatResult:
        tools = [json.loads(m["content"]) for m in messages if m["role"] == "tool"]
        if not tools:
            arguments = {"city": self.scenario.city, "date": self.scenario.day.isoformat()}
            call = {"id": "call_1", "name": "get_weather", "arguments": json.dumps(arguments)}
            return ChatResult("r1", BLUEPRINT.model, None, [call], finish_reason="tool_calls")
        self.seen.append(tools[-1])
        content = json.dumps(outfit(self.pick(tools[-1])))
        return ChatResult("r2", BLUEPRINT.model, content, finish_reason="stop")


async def evaluate(scenario: Scenario, pick: Callable[[dict[str, Any]], list[str]]) -> Any:
    client = ScriptedStylist(scenario, pick)
    suggestion, records = await outfits.suggest(
        client,  # type: ignore[arg-type]
        BLUEPRINT,
        scenario.context(),
        scenario.weather_lookup,
        max_turns=4,
    )
    return StylistResult(scenario, suggestion, records), client.seen


def by_mean(cold: list[str], warm: list[str]) -> Callable[[dict[str, Any]], list[str]]:
    """A stylist that dresses for the daytime mean (ignores the high and the low)."""
    return lambda w: cold if w["temperature_c"] <= rules.COLD_C else warm


def by_extremes(cold: list[str], warm: list[str]) -> Callable[[dict[str, Any]], list[str]]:
    """A stylist that reads the day's low for warmth (what the v2 prompt asks)."""
    return lambda w: cold if w["temperature_min_c"] <= rules.COLD_C else warm


def by_high(hot: list[str], mild: list[str]) -> Callable[[dict[str, Any]], list[str]]:
    """A stylist that reads the day's high for heat (what the v2 prompt asks)."""
    return lambda w: hot if w["temperature_max_c"] >= rules.HOT_C else mild


def by_mean_heat(hot: list[str], mild: list[str]) -> Callable[[dict[str, Any]], list[str]]:
    """A stylist that takes the daytime mean for the heat (ignores the high)."""
    return lambda w: hot if w["temperature_c"] >= rules.HOT_C else mild


@pytest.mark.parametrize(
    ("scenario", "bad", "good"),
    [
        (
            COLD_MORNING,
            by_mean(READS_THE_LOW, IGNORES_THE_LOW),
            by_extremes(READS_THE_LOW, IGNORES_THE_LOW),
        ),
        (
            HOT_AFTERNOON,
            by_mean_heat(READS_THE_HIGH, IGNORES_THE_HIGH),
            by_high(READS_THE_HIGH, IGNORES_THE_HIGH),
        ),
    ],
    ids=["cold-morning", "hot-afternoon"],
)
async def test_the_scenario_fails_a_stylist_that_ignores_the_low_or_the_high(
    scenario: Scenario,
    bad: Callable[[dict[str, Any]], list[str]],
    good: Callable[[dict[str, Any]], list[str]],
) -> None:
    result, seen = await evaluate(scenario, bad)
    assert seen == [production_answer(scenario)]  # the model saw production's answer
    assert result.weather_failures, "the weather rules let the bad answer through"
    # Its only outfit was removed: the scenario misses its expectation and its weather rule.
    assert stylist_eval.check_expectations(result) == [
        "status skipped (no_complete_outfit), expected ok"
    ]
    assert stylist_eval.score_stylist([result])["weather_rule_pass_rate"] == 0.0

    result, _ = await evaluate(scenario, good)
    assert result.weather_failures == [] and result.suggestion.status == "ok"
    assert stylist_eval.check_expectations(result) == []
    assert stylist_eval.score_stylist([result])["weather_rule_pass_rate"] == 1.0
