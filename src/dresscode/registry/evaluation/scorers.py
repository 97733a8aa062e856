"""The project's metrics as MLflow code scorers, and the gate figures read back from them.

An evaluation hands its golden examples to ``mlflow.genai.evaluate`` as ``inputs`` /
``outputs`` / ``expectations`` (the async runner produced the outputs; no ``predict_fn``), with
the scorers below. MLflow records one assessment per scorer and example (the per-example
scores in its UI) and a ``<scorer>/mean``; the gate figures are aggregated from those same
assessments (:func:`digitizer_summary`, :func:`stylist_summary`), with the definitions of
``docs/evaluation.md``, so the gate and the UI read one result.

A scorer answers ``None`` where its metric does not apply (a rate "of the scenarios whose
answer parsed" skips the others), so MLflow's means are the project's rates. A scorer that
raises on one example leaves that example's value empty with the error message; the others are
scored, and :class:`Scored` counts the errors (the gate refuses to pass on a partial score).

Scorers are built inside functions: ``mlflow`` is imported only when an evaluation runs.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# Scorer names: the MLflow assessment names, and the columns ``<name>/value`` of its results.
DIGITIZER_SCORERS = ("item_tp", "item_fp", "item_fn", "item_f1", "json_valid", "repaired",
                     "count_match")  # fmt: skip
STYLIST_SCORERS = ("structured_output", "hallucinated_items", "weather_rules",
                   "tool_call_when_needed", "tool_call_ok", "expectations_met",
                   "suggestion_ok")  # fmt: skip


def digitizer_scorers() -> list[Any]:
    """Item matching (TP/FP/FN, per-example F1), JSON validity, repairs, item count."""
    from mlflow.entities import Feedback
    from mlflow.genai.scorers import scorer

    from dresscode.registry.evaluation.digitizer import match_items

    @scorer(name="item_match")
    def item_match(outputs: dict[str, Any], expectations: dict[str, Any]) -> list[Feedback]:
        predicted, labelled = outputs["items"], expectations["items"]
        tp = len(match_items(predicted, labelled))
        fp, fn = len(predicted) - tp, len(labelled) - tp
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
        why = f"{tp} of {len(labelled)} labelled items found, {fp} extra"
        return [
            Feedback(name="item_tp", value=tp, rationale=why),
            Feedback(name="item_fp", value=fp),
            Feedback(name="item_fn", value=fn),
            Feedback(name="item_f1", value=f1, rationale=why),
        ]

    @scorer
    def json_valid(outputs: dict[str, Any]) -> Feedback:
        return Feedback(value=bool(outputs["json_valid"]), rationale=outputs.get("error_class"))

    @scorer
    def repaired(outputs: dict[str, Any]) -> bool:
        return bool(outputs["repaired"])

    @scorer
    def count_match(outputs: dict[str, Any], expectations: dict[str, Any]) -> bool:
        return len(outputs["items"]) == len(expectations["items"])

    return [item_match, json_valid, repaired, count_match]


def stylist_scorers() -> list[Any]:
    """The stylist's gate checks per scenario, from what the production loop decided."""
    from mlflow.entities import Feedback
    from mlflow.genai.scorers import scorer

    from dresscode.outfits import rules

    @scorer
    def structured_output(outputs: dict[str, Any]) -> bool | None:
        return bool(outputs["structured_ok"]) if outputs["reached_model"] else None

    @scorer
    def hallucinated_items(outputs: dict[str, Any]) -> Feedback | None:
        if not outputs["structured_ok"]:
            return None
        named = [i for i in outputs["dropped_items"].split(",") if i]
        return Feedback(value=len(named), rationale=", ".join(named) or "every item owned")

    @scorer
    def weather_rules(outputs: dict[str, Any]) -> Feedback | None:
        if not outputs["structured_ok"]:
            return None
        broken = [
            v
            for v in outputs["rule_violations"].split("; ")
            if v and rules.violation_code(v) in rules.WEATHER_VIOLATIONS
        ]
        return Feedback(value=not broken, rationale="; ".join(broken) or "no weather rule broken")

    @scorer
    def tool_call_when_needed(outputs: dict[str, Any], expectations: dict[str, Any]) -> bool | None:
        return outputs["tool_calls"] > 0 if expectations["expect_tool_call"] else None

    @scorer
    def tool_call_ok(outputs: dict[str, Any]) -> bool | None:
        return outputs["tool_call_ok"] is True if outputs["tool_calls"] > 0 else None

    @scorer
    def expectations_met(outputs: dict[str, Any]) -> Feedback:
        failures = outputs["expectation_failures"]
        return Feedback(value=bool(outputs["expectations_ok"]), rationale=failures or "all met")

    @scorer
    def suggestion_ok(outputs: dict[str, Any]) -> bool:
        return outputs["status"] == "ok"

    return [
        structured_output,
        hallucinated_items,
        weather_rules,
        tool_call_when_needed,
        tool_call_ok,
        expectations_met,
        suggestion_ok,
    ]


# --------------------------------------------------------------------------------------------
# Reading the assessments back
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    """MLflow's per-example scores: ``values[scorer][example_id]`` (None: not applicable or
    an error), and the scorer errors as ``(example_id, scorer, message)``."""

    example_ids: list[str]
    values: dict[str, dict[str, Any]]
    errors: list[tuple[str, str, str]] = field(default_factory=list)

    def column(self, name: str) -> list[Any]:
        """The applicable values of one scorer (errors and ``None`` left out)."""
        by_id = self.values.get(name, {})
        return [by_id[i] for i in self.example_ids if by_id.get(i) is not None]

    def errors_sentence(self, ignore: Collection[str] = ()) -> str | None:
        """The scorer errors in one sentence (those of ``ignore`` left out), or None."""
        errors = [e for e in self.errors if e[1] not in ignore]
        if not errors:
            return None
        scorers = sorted({s for _, s, _ in errors})
        ids = sorted({i for i, _, _ in errors})
        return (
            f"{len(errors)} score(s) could not be computed ({', '.join(scorers)} raised on "
            f"{', '.join(ids[:5])}{' …' if len(ids) > 5 else ''}): those examples are errors"
        )


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def read_scores(
    result_df: pd.DataFrame, names: Sequence[str], example_ids: Sequence[str]
) -> Scored:
    """The per-example values of ``names`` from ``EvaluationResult.result_df``.

    Rows are matched to examples by ``inputs["example_id"]`` (MLflow does not promise to keep
    the input order); an example MLflow returned no row for is an error of every scorer.
    """
    values: dict[str, dict[str, Any]] = {name: {} for name in names}
    errors = []
    for n, row in result_df.iterrows():
        request = row.get("request")
        example_id = str(request.get("example_id")) if isinstance(request, dict) else str(n)
        for name in names:
            values[name][example_id] = _plain(row.get(f"{name}/value"))
        # A scorer answering several assessments (item_match) reports its error once, by its
        # own name: read every error column, not only those of ``names``.
        for column in result_df.columns:
            message = _plain(row.get(column)) if column.endswith("/error_message") else None
            if message:
                scorer_name = column.removesuffix("/error_message")
                errors.append((example_id, scorer_name, str(message).splitlines()[0]))
    scored_ids = set().union(*(v.keys() for v in values.values())) if values else set()
    for example_id in example_ids:
        if example_id not in scored_ids:
            errors.extend((example_id, name, "no result from MLflow") for name in names)
    return Scored(sorted(map(str, example_ids)), values, errors)


def _share(values: list[Any]) -> float:
    return sum(bool(v) for v in values) / len(values) if values else 0.0


def digitizer_summary(scored: Scored) -> dict[str, float]:
    """``DigitizerMetrics.summary()`` from the assessments (micro-averaged, docs/evaluation.md)."""
    tp, fp, fn = (int(sum(scored.column(n))) for n in ("item_tp", "item_fp", "item_fn"))
    precision = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
    recall = tp / (tp + fn) if tp + fn else (1.0 if fp == 0 else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n = len(scored.example_ids)

    def rate(name: str) -> float:
        return sum(bool(v) for v in scored.column(name)) / n if n else 0.0

    return {
        "n_examples": float(n),
        "tp": float(tp),
        "fp": float(fp),
        "fn": float(fn),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "count_accuracy": rate("count_match"),
        "json_validity": rate("json_valid"),
        "repaired_rate": rate("repaired"),
    }


def stylist_summary(scored: Scored) -> dict[str, float]:
    """``score_stylist``'s numbers from the assessments (definitions in ``stylist.py``)."""
    answered = [v for v in scored.column("structured_output") if v]
    counts = scored.column("hallucinated_items")
    return {
        "n_scenarios": float(len(scored.example_ids)),
        "n_answered": float(len(answered)),
        "hallucination_rate": _share([c > 0 for c in counts]),
        "hallucinated_items": float(sum(counts)),
        "weather_rule_pass_rate": _share(scored.column("weather_rules")),
        "tool_call_rate_when_needed": _share(scored.column("tool_call_when_needed")),
        "tool_call_ok_rate": _share(scored.column("tool_call_ok")),
        "structured_output_validity": _share(scored.column("structured_output")),
        "expectation_pass_rate": _share(scored.column("expectations_met")),
        "ok_rate": _share(scored.column("suggestion_ok")),
    }
