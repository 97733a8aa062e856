"""Stylist evaluation: run the outfit golden scenarios through the real loop, score, gate.

A scenario (``include/golden/outfits/<id>.yaml``, format in that folder's README) is one user
and day: city, date, the weather ``get_weather`` answers (or ``null``: the tool times out),
a wardrobe and expectations. :func:`run_scenarios` sends every scenario through
:func:`dresscode.outfits.stylist.suggest` concurrently, exactly as ``outfit_pregen`` does; the weather
lookup answers only for the scenario's own city and date, so a model that asks about another
place gets "weather unavailable".

Metrics (:func:`score_stylist`), each a share of scenarios:

* ``hallucination_rate`` — of the scenarios whose final answer parsed, the share in which the
  model named at least one item id the user does not own (the validator dropped it);
  ``hallucinated_items`` is the total count of such ids (item level).
* ``weather_rule_pass_rate`` — of the scenarios whose final answer parsed, the share in which
  no outfit the model proposed broke a weather rule (before the validator removed it).
* ``tool_call_rate_when_needed`` — of the scenarios expecting a ``get_weather`` call, the
  share in which the model made at least one.
* ``tool_call_ok_rate`` — of the scenarios with tool calls, the share whose calls were all
  well-formed (known tool, valid arguments).
* ``structured_output_validity`` — of the scenarios that reached the model, the share whose
  final answer was schema-valid (strictly or after counted repairs). Model errors and
  ``max_turns`` count as invalid.
* ``expectation_pass_rate`` — the share meeting every expectation of its file (status,
  skip reason, tool call, categories, must/must-not items, rain gear, warm layer, caveats).
  Reported, not gated: expectations are a stylist's taste as much as a rule.

An empty evaluation has every rate 0. The gate (:func:`stylist_gate`): at least one scenario
answered, hallucinated items ≤ :data:`MAX_HALLUCINATED_ITEMS` (zero), weather-rule pass rate
≥ :data:`MIN_WEATHER_RULE_PASS_RATE`, tool-call rate when needed ≥ :data:`MIN_TOOL_CALL_RATE`,
structured validity ≥ :data:`MIN_STRUCTURED_VALIDITY`.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dresscode.core.config import REPO_ROOT
from dresscode.outfits import rules
from dresscode.outfits import stylist as outfits

if TYPE_CHECKING:
    from dresscode.llm.blueprints import Blueprint
    from dresscode.llm.client import LLMClient

log = logging.getLogger(__name__)

# Gate defaults (DESIGN.md "Registry, evaluation, promotion": zero hallucinated items,
# weather rules pass, tool call made when needed).
MAX_HALLUCINATED_ITEMS = 0
MIN_WEATHER_RULE_PASS_RATE = 0.95
MIN_TOOL_CALL_RATE = 0.95
MIN_STRUCTURED_VALIDITY = 0.95

SCENARIOS_DIR = REPO_ROOT / "include" / "golden" / "outfits"
WARDROBE_SCHEMA_REF = "wardrobe-digitizer@1"  # the closed vocabularies of wardrobe items
DEFAULT_MAX_TURNS = 4

_TOP_KEYS = {
    "id",
    "description",
    "city",
    "date",
    "occasion",
    "style",
    "weather",
    "wardrobe",
    "expectations",
    "tags",
}
_ITEM_KEYS = frozenset(outfits.WARDROBE_FIELDS)
_STATUSES = ("ok", "skipped")


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Expectations:
    """What a good stylist does with one scenario (every field optional in the file)."""

    status: str = "ok"
    skip_reason: str | None = None
    expect_tool_call: bool = True
    must_include_category: list[str] = field(default_factory=list)  # in every outfit
    must_include_any: list[str] = field(default_factory=list)  # one of these ids, every outfit
    must_not_include: list[str] = field(default_factory=list)  # ids never named
    needs_rain_gear: bool = False  # every outfit has a water-resistant item
    needs_warm_layer: bool = False  # every outfit has a warm layer
    caveats: list[str] = field(default_factory=list)  # the ok suggestion carries these


@dataclass(frozen=True)
class Scenario:
    """One golden scenario: a user, a day, the weather the tool answers, expectations."""

    id: str
    city: str
    day: date
    weather: dict[str, Any] | None
    wardrobe: list[dict[str, Any]]
    expectations: Expectations
    style: dict[str, Any] = field(default_factory=dict)
    occasion: str | None = None
    description: str = ""
    tags: list[str] = field(default_factory=list)
    source: str = ""

    def context(self) -> outfits.UserContext:
        return outfits.UserContext(
            user_id=f"golden-{self.id}",
            city=self.city,
            day=self.day,
            wardrobe=copy.deepcopy(self.wardrobe),
            style=dict(self.style),
            occasion=self.occasion,
        )

    def weather_lookup(self, city: str, day: date) -> dict[str, Any] | None:
        """The scenario's weather, for its own city and day only (else unavailable)."""
        same_city = " ".join(city.split()).casefold() == " ".join(self.city.split()).casefold()
        if not same_city or day != self.day or self.weather is None:
            return None
        return copy.deepcopy(self.weather)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_scenarios(path: Path = SCENARIOS_DIR) -> list[Scenario]:
    """Every ``*.yaml`` scenario under ``path``, sorted by id; ids must be unique."""
    import yaml

    files = sorted(path.glob("*.yaml"))
    if not files:
        raise ScenarioError(f"{path}: no scenario files (*.yaml).")
    vocab = _vocabularies()
    scenarios: dict[str, Scenario] = {}
    for file in files:
        where = str(file.relative_to(REPO_ROOT) if file.is_relative_to(REPO_ROOT) else file)
        try:
            data = yaml.safe_load(file.read_text())
        except yaml.YAMLError as exc:
            raise ScenarioError(f"{where}: invalid YAML ({str(exc).splitlines()[0]}).") from None
        scenario = scenario_from_mapping(data, where, vocab)
        if scenario.id in scenarios:
            raise ScenarioError(
                f"{where}: id {scenario.id!r} is also used by {scenarios[scenario.id].source}."
            )
        scenarios[scenario.id] = scenario
    return [scenarios[k] for k in sorted(scenarios)]


def _vocabularies() -> dict[str, list[str]]:
    from dresscode.llm import blueprints

    schema = blueprints.resolve(WARDROBE_SCHEMA_REF).output_schema
    stylist = blueprints.resolve(outfits.PROMPT_NAME).output_schema
    return {
        "category": blueprints.enum_of(schema, "items", "category"),
        "warmth": blueprints.enum_of(schema, "items", "warmth"),
        "formality": blueprints.enum_of(schema, "items", "formality"),
        "occasion": blueprints.enum_of(stylist, "outfits", "occasion"),
    }


def scenario_from_mapping(data: Any, where: str, vocab: dict[str, list[str]]) -> Scenario:
    """Check one parsed scenario document and build the Scenario."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{where}: a scenario must be a YAML mapping.")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {unknown} (known: {sorted(_TOP_KEYS)}).")
    missing = [k for k in ("id", "city", "date", "weather", "wardrobe") if k not in data]
    if missing:
        raise ScenarioError(f"{where}: missing keys {missing}.")
    try:
        day = data["date"] if isinstance(data["date"], date) else date.fromisoformat(data["date"])
    except (TypeError, ValueError):
        raise ScenarioError(f"{where}: date must be YYYY-MM-DD, got {data['date']!r}.") from None
    weather = data["weather"]
    if weather is not None and not isinstance(weather, dict):
        raise ScenarioError(f"{where}: weather must be a mapping or null.")
    if weather is not None:
        # The provider's forecast, through production's derive code: no evaluation-only field.
        from dresscode.features import weather as weather_features

        try:
            weather_features.forecast_answer(weather, city=str(data["city"]), day=day)
        except weather_features.WeatherError as err:
            raise ScenarioError(f"{where}: weather does not derive: {err.message}") from None
    occasion = data.get("occasion")
    if occasion is not None and occasion not in vocab["occasion"]:
        raise ScenarioError(f"{where}: occasion {occasion!r} is not one of {vocab['occasion']}.")
    return Scenario(
        id=str(data["id"]),
        city=str(data["city"]),
        day=day,
        weather=weather,
        wardrobe=_wardrobe(data["wardrobe"], where, vocab),
        expectations=_expectations(data.get("expectations") or {}, where),
        style=dict(data.get("style") or {}),
        occasion=occasion,
        description=str(data.get("description") or ""),
        tags=[str(t) for t in data.get("tags") or []],
        source=where,
    )


def _wardrobe(items: Any, where: str, vocab: dict[str, list[str]]) -> list[dict[str, Any]]:
    if not isinstance(items, list):
        raise ScenarioError(f"{where}: wardrobe must be a list of items.")
    seen: set[str] = set()
    for n, item in enumerate(items):
        at = f"{where}: wardrobe[{n}]"
        if not isinstance(item, dict):
            raise ScenarioError(f"{at} must be a mapping.")
        unknown = sorted(set(item) - _ITEM_KEYS)
        missing = sorted({"item_id", "category", "warmth"} - set(item))
        if unknown or missing:
            raise ScenarioError(f"{at}: unknown keys {unknown}, missing keys {missing}.")
        for key in ("category", "warmth", "formality"):
            if key in item and item[key] not in vocab[key]:
                raise ScenarioError(f"{at}: {key} {item[key]!r} is not one of {vocab[key]}.")
        if not isinstance(item.get("water_resistant", False), bool):
            raise ScenarioError(f"{at}: water_resistant must be true or false.")
        if str(item["item_id"]) in seen:
            raise ScenarioError(f"{at}: duplicate item_id {item['item_id']!r}.")
        seen.add(str(item["item_id"]))
    return [dict(item, item_id=str(item["item_id"])) for item in items]


def _expectations(data: Any, where: str) -> Expectations:
    if not isinstance(data, dict):
        raise ScenarioError(f"{where}: expectations must be a mapping.")
    known = set(Expectations.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ScenarioError(f"{where}: unknown expectations {unknown} (known: {sorted(known)}).")
    status = data.get("status", "ok")
    if status not in _STATUSES:
        raise ScenarioError(f"{where}: expectations.status must be one of {_STATUSES}.")
    reason = data.get("skip_reason")
    if reason is not None and reason not in {str(r) for r in outfits.SkipReason}:
        raise ScenarioError(f"{where}: unknown skip_reason {reason!r}.")
    caveat_names = {str(c) for c in rules.Caveat}
    bad = [c for c in data.get("caveats") or [] if c not in caveat_names]
    if bad:
        raise ScenarioError(f"{where}: unknown caveats {bad} (known: {sorted(caveat_names)}).")
    return Expectations(
        status=status,
        skip_reason=reason,
        expect_tool_call=bool(data.get("expect_tool_call", status == "ok")),
        must_include_category=[str(c) for c in data.get("must_include_category") or []],
        must_include_any=[str(i) for i in data.get("must_include_any") or []],
        must_not_include=[str(i) for i in data.get("must_not_include") or []],
        needs_rain_gear=bool(data.get("needs_rain_gear", False)),
        needs_warm_layer=bool(data.get("needs_warm_layer", False)),
        caveats=[str(c) for c in data.get("caveats") or []],
    )


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StylistResult:
    """One scenario run: the suggestion and the inference-log rows of its model calls."""

    scenario: Scenario
    suggestion: outfits.Suggestion
    records: list[dict[str, Any]]

    @property
    def reached_model(self) -> bool:
        return bool(self.records)

    @property
    def answer_valid(self) -> bool:
        """The final model call gave a schema-valid answer."""
        return bool(self.records) and self.records[-1].get("schema_ok") is True

    @property
    def weather_failures(self) -> list[str]:
        return [
            v
            for v in self.suggestion.rule_violations
            if rules.violation_code(v) in rules.WEATHER_VIOLATIONS
        ]


def check_expectations(result: StylistResult) -> list[str]:
    """The expectations a result misses, one short sentence each (empty: all met)."""
    want = result.scenario.expectations
    got = result.suggestion
    owned = {i["item_id"]: i for i in result.scenario.wardrobe}
    failures = []
    if got.status != want.status:
        failures.append(f"status {got.status} ({got.skip_reason}), expected {want.status}")
    if want.skip_reason and got.skip_reason != want.skip_reason:
        failures.append(f"skip reason {got.skip_reason}, expected {want.skip_reason}")
    if want.expect_tool_call and got.tool_calls == 0:
        failures.append("no get_weather call")
    named = {i for o in got.outfits for i in o["item_ids"]} | set(got.dropped_items)
    for item_id in want.must_not_include:
        if item_id in named:
            failures.append(f"named {item_id}")
    for n, outfit in enumerate(got.outfits, start=1):
        items = [owned[i] for i in outfit["item_ids"] if i in owned]
        categories = {str(i.get("category")) for i in items}
        for category in want.must_include_category:
            if category not in categories:
                failures.append(f"outfit {n} has no {category}")
        if want.must_include_any and not set(outfit["item_ids"]) & set(want.must_include_any):
            failures.append(f"outfit {n} has none of {want.must_include_any}")
        if want.needs_rain_gear and not any(rules.is_water_resistant(i) for i in items):
            failures.append(f"outfit {n} has no rain gear")
        if want.needs_warm_layer and not any(rules.is_warm_layer(i) for i in items):
            failures.append(f"outfit {n} has no warm layer")
    missing = [c for c in want.caveats if c not in got.caveats]
    if missing:
        failures.append(f"missing caveats {missing}")
    return failures


def example_row(result: StylistResult) -> dict[str, Any]:
    """One per-scenario row (flat, for ``mlflow.log_table`` or a DataFrame)."""
    got = result.suggestion
    failures = check_expectations(result)
    return {
        "id": result.scenario.id,
        "tags": ",".join(result.scenario.tags),
        "status": got.status,
        "skip_reason": str(got.skip_reason) if got.skip_reason else None,
        "expected_status": result.scenario.expectations.status,
        "reached_model": result.reached_model,
        "structured_ok": result.answer_valid,
        "turns": got.turns,
        "tool_call_needed": result.scenario.expectations.expect_tool_call,
        "tool_calls": got.tool_calls,
        "tool_call_ok": got.tool_call_ok,
        "coerced_args": got.coerced_args,
        "n_outfits": len(got.outfits),
        "hallucinated_items": len(got.dropped_items),
        "dropped_items": ",".join(got.dropped_items),
        "weather_rules_ok": not result.weather_failures,
        "rule_violations": "; ".join(got.rule_violations),
        "caveats": ",".join(got.caveats),
        "expectations_ok": not failures,
        "expectation_failures": "; ".join(failures),
    }


def _rate(hits: int, total: int) -> float:
    return hits / total if total else 0.0


def score_stylist(results: Sequence[StylistResult]) -> dict[str, Any]:
    """The stylist metrics (definitions in the module docstring), a flat dict for MLflow."""
    answered = [r for r in results if r.answer_valid]
    reached = [r for r in results if r.reached_model]
    needs_tool = [r for r in results if r.scenario.expectations.expect_tool_call]
    called = [r for r in results if r.suggestion.tool_calls > 0]
    return {
        "n_scenarios": len(results),
        "n_answered": len(answered),
        "hallucination_rate": _rate(
            sum(bool(r.suggestion.dropped_items) for r in answered), len(answered)
        ),
        "hallucinated_items": sum(len(r.suggestion.dropped_items) for r in answered),
        "weather_rule_pass_rate": _rate(
            sum(not r.weather_failures for r in answered), len(answered)
        ),
        "tool_call_rate_when_needed": _rate(
            sum(r.suggestion.tool_calls > 0 for r in needs_tool), len(needs_tool)
        ),
        "tool_call_ok_rate": _rate(
            sum(r.suggestion.tool_call_ok is True for r in called), len(called)
        ),
        "structured_output_validity": _rate(
            len([r for r in reached if r.answer_valid]), len(reached)
        ),
        "expectation_pass_rate": _rate(
            sum(not check_expectations(r) for r in results), len(results)
        ),
        "ok_rate": _rate(sum(r.suggestion.ok for r in results), len(results)),
    }


def stylist_gate(
    metrics: dict[str, Any],
    *,
    max_hallucinated_items: int = MAX_HALLUCINATED_ITEMS,
    min_weather_rule_pass_rate: float = MIN_WEATHER_RULE_PASS_RATE,
    min_tool_call_rate: float = MIN_TOOL_CALL_RATE,
    min_structured_validity: float = MIN_STRUCTURED_VALIDITY,
) -> tuple[bool, list[str]]:
    """Promote a stylist version only if it never names unowned items, keeps the weather
    rules, calls the weather tool when needed and answers in the schema. Returns
    ``(passed, reasons)``, one sentence per failed check."""
    reasons = []
    if not metrics.get("n_answered"):
        reasons.append("no scenario was answered")
    if metrics["hallucinated_items"] > max_hallucinated_items:
        reasons.append(
            f"{metrics['hallucinated_items']} hallucinated item(s) > {max_hallucinated_items} "
            f"(in {metrics['hallucination_rate']:.1%} of answers)"
        )
    if metrics["weather_rule_pass_rate"] < min_weather_rule_pass_rate:
        reasons.append(
            f"weather-rule pass rate {metrics['weather_rule_pass_rate']:.3f} "
            f"< {min_weather_rule_pass_rate:.3f}"
        )
    if metrics["tool_call_rate_when_needed"] < min_tool_call_rate:
        reasons.append(
            f"tool-call rate when needed {metrics['tool_call_rate_when_needed']:.3f} "
            f"< {min_tool_call_rate:.3f}"
        )
    if metrics["structured_output_validity"] < min_structured_validity:
        reasons.append(
            f"structured output validity {metrics['structured_output_validity']:.3f} "
            f"< {min_structured_validity:.3f}"
        )
    return not reasons, reasons


# --------------------------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------------------------


async def run_scenarios(
    client: LLMClient,
    blueprint: Blueprint,
    scenarios: Sequence[Scenario],
    *,
    max_turns: int = DEFAULT_MAX_TURNS,
) -> list[StylistResult]:
    """Every scenario through the real loop, concurrently (bounded by the client)."""

    async def one(scenario: Scenario) -> StylistResult:
        suggestion, records = await outfits.suggest(
            client, blueprint, scenario.context(), scenario.weather_lookup, max_turns=max_turns
        )
        return StylistResult(scenario, suggestion, records)

    return list(await asyncio.gather(*(one(s) for s in scenarios)))


def evaluate_stylist(
    blueprint: Blueprint,
    endpoint_url: str,
    model: str | None = None,
    scenarios: Sequence[Scenario] | None = None,
    *,
    api_key: str = "EMPTY",
    max_turns: int = DEFAULT_MAX_TURNS,
    max_concurrency: int = 16,
    timeout_s: float = 60.0,
    extra_headers: dict[str, str] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the scenarios (default: the golden set) against an endpoint; ``(metrics, rows)``.

    ``model`` evaluates the blueprint against another served model than the one it names.
    Synchronous (it runs its own event loop); from async code use :func:`run_scenarios` and
    :func:`score_stylist`.
    """
    import dataclasses

    from dresscode.core.config import get_settings
    from dresscode.core.connections import LLMEndpoint
    from dresscode.llm.hook import DresscodeLLMHook

    if model:
        blueprint = dataclasses.replace(blueprint, model=model)

    chosen = list(scenarios) if scenarios is not None else load_scenarios()

    async def run() -> list[StylistResult]:
        endpoint = LLMEndpoint(endpoint_url, api_key, blueprint.model, timeout_s, max_concurrency)
        async with DresscodeLLMHook.client_for(
            endpoint, extra_headers=extra_headers, priority=get_settings().eval_priority
        ) as client:
            return await run_scenarios(client, blueprint, chosen, max_turns=max_turns)

    results = asyncio.run(run())
    metrics = score_stylist(results)
    log.info(
        "%s on %d outfit scenarios: hallucinated items %d (rate %.3f), weather rules %.3f, "
        "tool call when needed %.3f, structured validity %.3f, expectations %.3f",
        blueprint.ref,
        metrics["n_scenarios"],
        metrics["hallucinated_items"],
        metrics["hallucination_rate"],
        metrics["weather_rule_pass_rate"],
        metrics["tool_call_rate_when_needed"],
        metrics["structured_output_validity"],
        metrics["expectation_pass_rate"],
    )
    return metrics, [example_row(r) for r in results]


# --------------------------------------------------------------------------------------------
# Command line: `python -m dresscode.registry.evaluation.stylist check|run`
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``check`` validates the scenario files; ``run`` scores a blueprint against an endpoint."""
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog="python -m dresscode.registry.evaluation.stylist", description=__doc__
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="load and validate every scenario file")
    check.add_argument("--dir", type=Path, default=SCENARIOS_DIR)
    run = sub.add_parser("run", help="evaluate a stylist blueprint on the scenarios")
    run.add_argument("--dir", type=Path, default=SCENARIOS_DIR)
    run.add_argument("--prompt", default=outfits.PROMPT_NAME, help="name or name@version (git)")
    run.add_argument("--endpoint", required=True, help="OpenAI-compatible base URL (…/v1)")
    run.add_argument("--model", required=True)
    run.add_argument("--max-turns", type=int, default=DEFAULT_MAX_TURNS)
    args = parser.parse_args(argv)

    scenarios = load_scenarios(args.dir)
    if args.command == "check":
        print(f"{len(scenarios)} scenarios OK in {args.dir}")
        return 0
    from dresscode.llm import blueprints

    blueprint = blueprints.resolve(args.prompt)
    metrics, rows = evaluate_stylist(
        blueprint, args.endpoint, args.model, scenarios, max_turns=args.max_turns
    )
    passed, reasons = stylist_gate(metrics)
    for row in rows:
        if not row["expectations_ok"] or not row["weather_rules_ok"]:
            print(f"  {row['id']}: {row['expectation_failures'] or row['rule_violations']}")
    print(json.dumps(metrics, indent=2))
    print(f"gate: {'passed' if passed else 'FAILED: ' + '; '.join(reasons)}")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
