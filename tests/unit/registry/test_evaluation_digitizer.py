"""Digitizer evaluation: matching, metric math, the promotion gate, and the golden set end to end."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

from dresscode.llm import blueprints
from dresscode.llm.client import LLMClient
from dresscode.local import samples
from dresscode.registry import golden
from dresscode.registry.evaluation import digitizer as evaluation
from dresscode.registry.evaluation.digitizer import (
    DigitizerExample,
    DigitizerMetrics,
    color_family,
    gate,
    match_items,
    score_digitizer,
)
from dresscode.sim.testing import running_simulator

MODEL = "google/gemma-4-26B-A4B-it"


def item(category: str, color: str = "navy", **extra) -> dict:
    """A schema-valid item; colour from the samples palette."""
    return {
        "category": category, "subcategory": extra.pop("subcategory", category),
        "colors": [{"name": color, "hex": samples.PALETTE[color]}], "pattern": "solid",
        "material": "cotton", "warmth": "light", "formality": "casual", "seasons": ["summer"],
        "water_resistant": False, "description": "An item.",
    } | extra  # fmt: skip


# -- colour families ------------------------------------------------------------------------


def test_every_palette_colour_has_a_family_by_name_and_by_hex() -> None:
    for name, hex_colour in samples.PALETTE.items():
        assert evaluation.COLOR_FAMILIES[name] == evaluation.family_of_hex(hex_colour), name
    assert set(evaluation.COLOR_FAMILIES.values()) == set(evaluation.FAMILIES)


def test_unknown_names_fall_back_to_a_family_word_then_to_the_hex() -> None:
    assert color_family({"name": "Navy Blue", "hex": "#000000"}) == "blue"
    assert color_family({"name": "midnight", "hex": "#1f2a44"}) == "blue"
    assert color_family({"name": "", "hex": "not-a-hex"}) is None


# -- matching ---------------------------------------------------------------------------------


def test_matching_needs_same_category_and_colour_family() -> None:
    labelled = [item("top", "navy"), item("bottom", "black")]
    predicted = [item("bottom", "black"), item("top", "red"), item("dress", "navy")]
    assert match_items(predicted, labelled) == [(0, 1)]
    # navy and light blue are one family: a colour-name quibble is not a miss
    assert match_items([item("top", "light blue")], [item("top", "navy")]) == [(0, 0)]


def test_duplicates_of_a_category_are_matched_one_to_one() -> None:
    labelled = [item("top", "white", subcategory="t-shirt"), item("top", "grey"), item("top")]
    predicted = [item("top", "navy"), item("top", "white", subcategory="t-shirt")] * 2
    pairs = match_items(predicted, labelled)
    assert len(pairs) == 2  # one white and one navy label can be matched, the grey cannot
    assert len({p for p, _ in pairs}) == len({lab for _, lab in pairs}) == 2
    assert {lab for _, lab in pairs} == {0, 2}


def test_ties_are_broken_towards_the_same_subcategory() -> None:
    labelled = [
        item("top", "navy", subcategory="shirt"),
        item("top", "blue", subcategory="t-shirt"),
    ]
    predicted = [
        item("top", "navy", subcategory="t-shirt"),
        item("top", "navy", subcategory="shirt"),
    ]
    assert match_items(predicted, labelled) == [(0, 1), (1, 0)]


def test_the_number_of_pairs_is_the_most_possible_per_category_and_family() -> None:
    labelled = [item("top"), item("top"), item("top", "red"), item("bag", "camel")]
    predicted = [item("top", "blue"), item("top", "red"), item("top", "burgundy"), item("bag")]
    # top/blue: min(2, 1) = 1; top/red: min(1, 2) = 1; bag: camel vs navy, 0
    assert len(match_items(predicted, labelled)) == 2


def test_empty_predictions_or_labels_match_nothing() -> None:
    assert match_items([], [item("top")]) == []
    assert match_items([item("top")], []) == []
    assert match_items([], []) == []


# -- metric math -------------------------------------------------------------------------------


def test_metrics_follow_their_definitions_on_a_hand_built_set() -> None:
    examples = [
        # perfect: 2 labelled, 2 right
        DigitizerExample("a", [item("top"), item("bottom", "black")],
                         [item("bottom", "black"), item("top")]),
        # one missed, one wrong category (fp + fn), and the answer needed repairs
        DigitizerExample("b", [item("dress", "red"), item("bag", "beige"), item("footwear")],
                         [item("dress", "burgundy"), item("accessory", "beige")], repaired=True),
        # nothing usable came back
        DigitizerExample("c", [item("outerwear", "camel")], [], json_valid=False,
                         error_class="invalid_json"),
        # a hallucinated extra item
        DigitizerExample("d", [], [item("accessory", "grey")]),
    ]  # fmt: skip
    m = score_digitizer(examples)
    tp, fp, fn = 2 + 1 + 0 + 0, 0 + 1 + 0 + 1, 0 + 2 + 1 + 0
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    assert (m.tp, m.fp, m.fn) == (tp, fp, fn)
    assert m.precision == pytest.approx(precision)
    assert m.recall == pytest.approx(recall)
    assert m.f1 == pytest.approx(2 * precision * recall / (precision + recall))
    assert m.count_accuracy == pytest.approx(1 / 4)  # only "a" has the right count
    assert m.json_validity == pytest.approx(3 / 4)
    assert m.repaired_rate == pytest.approx(1 / 4)
    rows = {r.id: r for r in m.rows}
    assert (rows["b"].n_labelled, rows["b"].n_predicted, rows["b"].tp) == (3, 2, 1)
    assert (rows["b"].fp, rows["b"].fn) == (1, 2)
    assert rows["c"].error_class == "invalid_json" and not rows["c"].json_valid
    assert m.table()[0] | {"matched": 2} == m.table()[0]


def test_empty_photos_answered_empty_are_perfect_and_no_examples_score_zero() -> None:
    m = score_digitizer([DigitizerExample("empty", [], [])])
    assert (m.precision, m.recall, m.f1, m.count_accuracy) == (1.0, 1.0, 1.0, 1.0)
    nothing = score_digitizer([])
    assert nothing.n_examples == 0 and nothing.json_validity == 0.0


def test_summary_round_trips_for_use_as_a_baseline() -> None:
    m = score_digitizer([DigitizerExample("a", [item("top")], [item("top"), item("bag")])])
    again = DigitizerMetrics.from_summary(m.summary())
    assert again.summary() == m.summary() and again.rows == []


# -- gate ---------------------------------------------------------------------------------------


def _metrics(f1: float, json_validity: float) -> DigitizerMetrics:
    return DigitizerMetrics(
        n_examples=100, tp=0, fp=0, fn=0, precision=f1, recall=f1, f1=f1,
        count_accuracy=1.0, json_validity=json_validity, repaired_rate=0.0,
    )  # fmt: skip


def test_gate_passes_at_the_floors_and_fails_below_them() -> None:
    assert gate(_metrics(evaluation.MIN_F1, evaluation.MIN_JSON_VALIDITY)) == (
        evaluation.GateVerdict(True, [])
    )
    verdict = gate(_metrics(0.90, 0.95))
    assert not verdict.passed
    assert verdict.reasons == ["item F1 0.900 < 0.950", "JSON validity 0.950 < 0.990"]


def test_gate_fails_a_regression_against_the_baseline_beyond_the_allowance() -> None:
    production = _metrics(0.99, 1.0)
    assert gate(_metrics(0.981, 1.0), baseline=production).passed  # within 0.01
    verdict = gate(_metrics(0.97, 1.0), baseline=production)
    assert not verdict.passed
    assert verdict.reasons == [
        "f1 0.970 regressed from the baseline's 0.990 (by 0.020 > 0.010 allowed)"
    ]
    assert gate(_metrics(0.97, 1.0), baseline=production, max_regression=0.05).passed


def test_gate_fails_an_empty_evaluation() -> None:
    verdict = gate(score_digitizer([]))
    assert not verdict.passed and "no examples were evaluated" in verdict.reasons


# -- end to end: the golden set through the simulator ------------------------------------------


@pytest.fixture(scope="module")
def golden_set() -> list[golden.GoldenPhoto]:
    return golden.load_wardrobe_golden()


@pytest.fixture(scope="module")
def simulator(golden_set, tmp_path_factory) -> str:
    script = golden.write_script(golden_set, tmp_path_factory.mktemp("sim") / "golden.jsonl")
    with running_simulator(
        scripts=[script],
        served_model_name=[f"{MODEL}=perfect", "gemma-sloppy=sloppy"],
        fixed_latency_ms=5,
    ) as base_url:
        yield base_url


def _evaluate(base_url: str, model: str, photos: list[golden.GoldenPhoto]) -> DigitizerMetrics:
    # The blueprint names the model it is served with; the request carries that name.
    blueprint = dataclasses.replace(blueprints.resolve("wardrobe-digitizer@1"), model=model)

    async def run() -> DigitizerMetrics:
        async with LLMClient(base_url, model=model, max_concurrency=16, max_attempts=2) as client:
            return await evaluation.evaluate_digitizer(client, blueprint, photos)

    return asyncio.run(run())


def test_a_perfect_model_scores_one_and_passes_the_gate(simulator: str, golden_set) -> None:
    m = _evaluate(simulator, MODEL, golden_set)
    assert m.n_examples == len(golden_set)
    assert (m.f1, m.count_accuracy, m.json_validity) == (1.0, 1.0, 1.0)
    assert m.tp == sum(len(p.items) for p in golden_set)
    assert gate(m).passed


def test_a_sloppy_model_fails_the_gate_with_reasons(simulator: str, golden_set) -> None:
    m = _evaluate(simulator, "gemma-sloppy", golden_set)
    verdict = gate(m)
    assert not verdict.passed
    assert any(r.startswith("item F1") for r in verdict.reasons)
    assert any(r.startswith("JSON validity") for r in verdict.reasons)
    assert m.fn > 0 and m.fp > 0 and m.repaired_rate > 0
    bad = [r for r in m.rows if r.error_class is not None]
    assert bad and json.dumps(m.table())  # the per-example table is plain data


def test_golden_photos_are_sent_as_stored(golden_set: list[golden.GoldenPhoto]) -> None:
    # The script is keyed by the stored bytes' sha256; the digitizer must not re-encode them.
    from dresscode.ingest.digitize import fit_to_blueprint

    blueprint = blueprints.resolve("wardrobe-digitizer@1")
    jpeg = golden_set[0].read_jpeg()
    assert fit_to_blueprint(jpeg, blueprint) == jpeg


def test_script_file_round_trips(tmp_path: Path, golden_set) -> None:
    path = golden.write_script(golden_set[:3], tmp_path / "s.jsonl")
    assert [json.loads(line) for line in path.read_text().splitlines()] == golden.script_lines(
        golden_set[:3]
    )
