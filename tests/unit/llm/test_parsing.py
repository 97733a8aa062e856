"""dresscode.llm.parsing: strict JSON, counted repairs, schema validation — and Gemma 4's bugs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema.exceptions import SchemaError

from dresscode.llm.parsing import FailureClass, ParseOutcome, Repair, parse_structured

DIGITIZER_V1 = Path(__file__).parents[3] / "include/prompts/wardrobe-digitizer/v1.yaml"

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["items"],
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["category"],
                "properties": {
                    "category": {"enum": ["top", "bottom", "footwear"]},
                    "description": {"type": "string"},
                    "layers": {"type": "integer"},
                    "water_resistant": {"type": "boolean"},
                },
            },
        }
    },
}

ANSWER = {"items": [{"category": "top", "description": "A blue shirt."}]}
ANSWER_JSON = json.dumps(ANSWER)


def parse(text: str | None, finish_reason: str | None = "stop", schema=SCHEMA) -> ParseOutcome:
    return parse_structured(text, finish_reason=finish_reason, schema=schema)


# --- clean output --------------------------------------------------------------------------


def test_clean_json_is_ok_without_repairs():
    out = parse(ANSWER_JSON)
    assert out.value == ANSWER
    assert (out.parse_ok, out.repaired, out.schema_ok, out.failure) == (True, False, True, None)
    assert out.repairs == () and out.errors == ()
    assert out.usable and out.outcome is FailureClass.OK


def test_surrounding_whitespace_is_still_strict_json():
    out = parse(f"\n  {ANSWER_JSON}\n\n")
    assert out.parse_ok and not out.repaired and out.value == ANSWER


def test_clean_json_that_ends_exactly_at_the_token_limit_is_ok():
    out = parse(ANSWER_JSON, finish_reason="length")
    assert out.failure is None and out.usable


def test_no_schema_skips_validation():
    out = parse("[1, 2, 3]", schema=None)
    assert out.value == [1, 2, 3] and out.schema_ok and out.failure is None


def test_real_digitizer_schema_accepts_a_full_item():
    schema = yaml.safe_load(DIGITIZER_V1.read_text())["output_schema"]
    item = {
        "category": "outerwear",
        "subcategory": "rain jacket",
        "colors": [{"name": "navy", "hex": "#1f2a44"}],
        "pattern": "solid",
        "material": "nylon",
        "warmth": "medium",
        "formality": "casual",
        "seasons": ["autumn", "spring"],
        "water_resistant": True,
        "description": "A navy hooded rain jacket.",
    }
    assert parse(json.dumps({"items": [item]}), schema=schema).usable
    item["colors"][0]["hex"] = "navy"
    out = parse(json.dumps({"items": [item]}), schema=schema)
    assert out.failure is FailureClass.SCHEMA_VIOLATION
    assert out.errors[0].startswith("$.items[0].colors[0].hex:")


# --- Gemma 4: text before the JSON, fences, trailing text -----------------------------------


def test_text_before_json_is_stripped_and_counted():
    out = parse(f"Here is the JSON you asked for:\n{ANSWER_JSON}")
    assert out.value == ANSWER and out.usable
    assert not out.parse_ok and out.repaired
    assert out.repairs == (Repair.LEADING_TEXT,)
    assert out.failure is None and out.outcome is FailureClass.REPAIRED


def test_json_inside_a_code_fence_is_unwrapped():
    out = parse(f"```json\n{ANSWER_JSON}\n```")
    assert out.value == ANSWER and out.repairs == (Repair.CODE_FENCE,) and out.usable


def test_fence_with_chatter_around_it_and_no_language_tag():
    out = parse(f"Sure! Here you go:\n```\n{ANSWER_JSON}\n```\nLet me know if you need more.")
    assert out.value == ANSWER and out.repairs == (Repair.CODE_FENCE,)


def test_unclosed_fence_runs_to_the_end():
    out = parse(f"```json\n{ANSWER_JSON}\n")
    assert out.value == ANSWER and Repair.CODE_FENCE in out.repairs


def test_text_after_the_json_is_dropped_and_counted():
    out = parse(f"{ANSWER_JSON}\nI hope this helps!")
    assert out.value == ANSWER and out.repairs == (Repair.TRAILING_TEXT,) and out.usable


def test_leading_and_trailing_text_both_counted_in_order():
    out = parse(f"JSON: {ANSWER_JSON} -- end")
    assert out.repairs == (Repair.LEADING_TEXT, Repair.TRAILING_TEXT)


def test_bracket_in_chatter_is_skipped_when_the_schema_wants_an_object():
    out = parse(f"Note [1]: {ANSWER_JSON}")
    assert out.value == ANSWER and out.repairs == (Repair.LEADING_TEXT,)


def test_non_json_brace_in_chatter_is_skipped():
    out = parse(f"Items {{see below}}:\n{ANSWER_JSON}", schema=None)
    assert out.value == ANSWER and out.repairs == (Repair.LEADING_TEXT,)


def test_byte_order_mark_counts_as_leading_text():
    out = parse("\ufeff" + ANSWER_JSON)
    assert out.value == ANSWER and out.repairs == (Repair.LEADING_TEXT,)


# --- braces inside strings and unicode --------------------------------------------------------


def test_braces_inside_strings_do_not_end_the_value():
    answer = {"items": [{"category": "top", "description": 'Print says "} {[" on it'}]}
    out = parse("Result: " + json.dumps(answer) + " }")
    assert out.value == answer and out.repairs == (Repair.LEADING_TEXT, Repair.TRAILING_TEXT)


def test_unicode_survives_parsing_and_repair():
    answer = {"items": [{"category": "top", "description": "Crème Blüse 👚 — 丝绸"}]}
    raw = json.dumps(answer, ensure_ascii=False)
    assert parse(raw).value == answer
    assert parse(f"Voilà : {raw}").value == answer
    assert parse(json.dumps(answer)).value == answer  # \u escapes


# --- Gemma 4: repetition until max_tokens -------------------------------------------------


def test_repeated_json_until_max_tokens_recovers_the_first_copy_but_says_repetition():
    raw = (ANSWER_JSON + "\n") * 4 + ANSWER_JSON[:17]
    out = parse(raw, finish_reason="length")
    assert out.value == ANSWER and out.schema_ok and out.usable
    assert out.repairs == (Repair.FIRST_OF_REPEATED,)
    assert out.failure is FailureClass.REPETITION


def test_repeated_copies_that_differ_in_whitespace_still_count_as_repeats():
    raw = ANSWER_JSON + json.dumps(ANSWER, indent=2) + json.dumps(ANSWER, indent=1)
    out = parse(raw, finish_reason="length")
    assert out.repairs == (Repair.FIRST_OF_REPEATED,) and out.failure is FailureClass.REPETITION


def test_repeated_json_with_a_stop_finish_is_repaired_not_a_failure():
    out = parse(ANSWER_JSON + ANSWER_JSON)
    assert out.value == ANSWER and out.repairs == (Repair.FIRST_OF_REPEATED,)
    assert out.failure is None and out.outcome is FailureClass.REPAIRED


def test_item_repeated_inside_an_unfinished_array_is_repetition():
    item = json.dumps(ANSWER["items"][0])
    raw = '{"items": [' + ", ".join([item] * 12) + ', {"categ'
    out = parse(raw, finish_reason="length")
    assert out.value is None and not out.usable
    assert out.failure is FailureClass.REPETITION
    assert out.errors[0].startswith("invalid JSON at char")


def test_whitespace_loop_until_max_tokens_is_repetition():
    raw = '{"items": [{"category": "top"' + " " * 500
    assert parse(raw, finish_reason="length").failure is FailureClass.REPETITION


def test_answer_cut_off_by_max_tokens_is_truncated():
    raw = '{"items": [{"category": "top", "description": "A long story about a shi'
    out = parse(raw, finish_reason="length")
    assert out.value is None and out.failure is FailureClass.TRUNCATED


def test_complete_answer_followed_by_runaway_prose_at_the_limit_is_truncated():
    out = parse(ANSWER_JSON + "\nThe shirt looks lovely and goes well with", finish_reason="length")
    assert out.value == ANSWER and out.failure is FailureClass.TRUNCATED


def test_broken_json_with_a_normal_stop_is_invalid_json():
    out = parse('{"items": [{"category": "top",, }]}')
    assert out.value is None and out.failure is FailureClass.INVALID_JSON
    assert "invalid JSON at char" in out.errors[0]


def test_broken_json_does_not_yield_an_inner_fragment():
    out = parse('{"items": [{"category": "top"}] "oops": {"a": 1}}', schema=None)
    assert out.value is None and out.failure is FailureClass.INVALID_JSON


def test_single_quoted_pseudo_json_is_invalid():
    out = parse("{'items': [{'category': 'top'}]}")
    assert out.failure is FailureClass.INVALID_JSON


def test_prose_without_json_is_invalid_json():
    out = parse("I cannot see any clothes in this photo.")
    assert out.failure is FailureClass.INVALID_JSON
    assert out.errors == ("no JSON object or array found",)


# --- Gemma 4: <pad> and empty output --------------------------------------------------------


def test_pad_only_output_is_pad_output():
    out = parse("<pad>" * 50, finish_reason="length")
    assert out.value is None and out.failure is FailureClass.PAD_OUTPUT


def test_pad_tokens_around_json_are_stripped_and_counted():
    out = parse(f"<pad><pad>{ANSWER_JSON}<pad>")
    assert out.value == ANSWER and out.repairs == (Repair.PAD_TOKENS,) and out.usable


@pytest.mark.parametrize("text", [None, "", "   \n\t"])
def test_empty_content_is_no_content(text):
    out = parse(text)
    assert out.value is None and out.failure is FailureClass.NO_CONTENT and not out.usable
    assert out.errors == ("the answer is empty",)


# --- schema validation ----------------------------------------------------------------------


def test_schema_errors_name_the_json_path_in_document_order():
    answer = {"items": [{"category": "hat"}, {"category": "top", "layers": "x"}], "extra": 1}
    out = parse(json.dumps(answer))
    assert out.value == answer and out.parse_ok and not out.schema_ok and not out.usable
    assert out.failure is FailureClass.SCHEMA_VIOLATION
    assert [e.split(":")[0] for e in out.errors] == [
        "$",
        "$.items[0].category",
        "$.items[1].layers",
    ]


def test_at_most_five_schema_errors_and_each_is_short():
    answer = {"items": [{"category": "x" * 5000} for _ in range(9)]}
    out = parse(json.dumps(answer))
    assert len(out.errors) == 5
    assert all(len(error) <= 200 for error in out.errors)


def test_numbers_and_booleans_sent_as_strings_are_coerced_and_counted():
    answer = {"items": [{"category": "top", "layers": "2", "water_resistant": "false"}]}
    out = parse(json.dumps(answer))
    assert out.value == {"items": [{"category": "top", "layers": 2, "water_resistant": False}]}
    assert out.parse_ok and out.repaired and out.repairs == (Repair.STRING_SCALARS,)
    assert out.usable and out.failure is None


def test_strings_that_are_not_numbers_stay_schema_errors():
    out = parse(json.dumps({"items": [{"category": "top", "layers": "two"}]}))
    assert out.failure is FailureClass.SCHEMA_VIOLATION and Repair.STRING_SCALARS not in out.repairs


def test_repetition_takes_precedence_over_a_schema_violation():
    bad = json.dumps({"items": [{"category": "hat"}]})
    out = parse(bad * 3, finish_reason="length")
    assert out.failure is FailureClass.REPETITION and not out.schema_ok and out.errors


def test_equal_schemas_share_one_compiled_validator():
    from dresscode.llm import parsing

    parsing._compiled.cache_clear()
    parse(ANSWER_JSON, schema=json.loads(json.dumps(SCHEMA)))
    parse(ANSWER_JSON, schema=dict(reversed(list(SCHEMA.items()))))
    assert parsing._compiled.cache_info().misses == 1


# --- programmer errors raise; model output never does ---------------------------------------


def test_invalid_schema_raises():
    with pytest.raises(SchemaError):
        parse(ANSWER_JSON, schema={"type": "no-such-type"})


def test_non_string_text_raises():
    with pytest.raises(TypeError):
        parse(b"{}")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "{",
        "}",
        "[",
        "```",
        "```json",
        "<pad",
        '{"a": "\\ud800"}',
        "{" * 10_000,
        "[" * 100_000,
        "\x00\x01{]",
    ],
)
@pytest.mark.parametrize("finish_reason", ["stop", "length", None])
def test_garbage_never_raises(text, finish_reason):
    out = parse(text, finish_reason=finish_reason)
    assert isinstance(out, ParseOutcome)
    assert out.failure is not None or out.usable


def test_absurdly_deep_nesting_is_invalid_json_not_a_crash():
    out = parse("[" * 100_000 + "]" * 100_000, schema=None)
    assert out.value is None and out.failure is FailureClass.INVALID_JSON


def test_pad_run_cut_mid_token_at_the_limit_is_pad_output() -> None:
    outcome = parse_structured("<pad>" * 40 + "<pa", finish_reason="length", schema=None)
    assert outcome.failure is FailureClass.PAD_OUTPUT
