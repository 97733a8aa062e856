"""Digitizer evaluation: match predicted items to labels, score them, gate a prompt version.

Pure functions plus one async runner (:func:`evaluate_digitizer`) that sends every golden photo
through :func:`dresscode.ingest.digitize.digitize_photo`. Metric definitions and gate defaults are
written up in ``docs/evaluation.md``; the numbers here and there must agree.

Matching: a predicted item *can* match a labelled item when both have the same ``category`` and
their first (dominant) colours fall in the same colour family (:func:`color_family`). Among the
possible pairings the one with the most pairs is taken (an exact assignment, scipy's
``linear_sum_assignment``; since "same category and family" groups items, that is the sum over
groups of min(predicted, labelled)); ties are broken towards pairs that also agree on
subcategory, pattern and the other colours, so the per-example table pairs what a person would.
"""

from __future__ import annotations

import colorsys
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from dresscode.core import prompts

if TYPE_CHECKING:
    from dresscode.ingest.digitize import Digitized
    from dresscode.llm.blueprints import Blueprint
    from dresscode.llm.client import LLMClient
    from dresscode.registry.golden import GoldenPhoto

log = logging.getLogger(__name__)

# Gate defaults (DESIGN.md "Registry, evaluation, promotion").
MIN_F1 = 0.95
MIN_JSON_VALIDITY = 0.99
MAX_REGRESSION = 0.01

# --------------------------------------------------------------------------------------------
# Colour families
# --------------------------------------------------------------------------------------------

COLOR_FAMILIES: dict[str, str] = {
    # neutrals
    "black": "black", "charcoal": "black", "jet": "black",
    "white": "white", "cream": "white", "ivory": "white", "off-white": "white",
    "off white": "white", "ecru": "white",
    "grey": "grey", "gray": "grey", "silver": "grey", "light grey": "grey",
    "dark grey": "grey", "heather grey": "grey",
    # browns (incl. the beige/camel/tan range)
    "brown": "brown", "beige": "brown", "camel": "brown", "tan": "brown", "khaki": "brown",
    "chocolate": "brown", "taupe": "brown", "sand": "brown", "cognac": "brown",
    # blues (incl. navy, denim and teal)
    "blue": "blue", "navy": "blue", "light blue": "blue", "dark blue": "blue",
    "sky blue": "blue", "denim": "blue", "teal": "blue", "turquoise": "blue", "cobalt": "blue",
    # reds, pinks and the other hues
    "red": "red", "burgundy": "red", "maroon": "red", "wine": "red", "crimson": "red",
    "pink": "pink", "rose": "pink", "blush": "pink", "fuchsia": "pink", "magenta": "pink",
    "orange": "orange", "rust": "orange", "coral": "orange", "peach": "orange",
    "yellow": "yellow", "mustard": "yellow", "gold": "yellow", "lemon": "yellow",
    "green": "green", "olive": "green", "dark green": "green", "mint": "green",
    "sage": "green", "emerald": "green", "forest green": "green",
    "purple": "purple", "lilac": "purple", "lavender": "purple", "violet": "purple",
    "plum": "purple", "mauve": "purple",
}  # fmt: skip
"""Colour name -> family. Covers every :data:`dresscode.local.samples.PALETTE` name and common
synonyms; names not listed fall back to a family word inside the name, then to the hex."""

FAMILIES = ("black", "white", "grey", "brown", "blue", "red", "pink", "orange", "yellow",
            "green", "purple")  # fmt: skip
_WORD = re.compile(r"[a-z]+")
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")


def family_of_hex(hex_colour: str) -> str | None:
    """Family by hue, saturation and value; None for a malformed hex."""
    match = _HEX.fullmatch(hex_colour.strip())
    if not match:
        return None
    value = int(match.group(1), 16)
    r, g, b = ((value >> shift) & 255 for shift in (16, 8, 0))
    h, s, v = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
    hue = h * 360
    if v < 0.2:
        return "black"
    if s < 0.15:
        return "white" if v > 0.85 else "grey" if v > 0.3 else "black"
    if 15 <= hue < 50 and (s < 0.5 or v < 0.6):
        return "brown"  # beige, camel, tan: desaturated or dark orange
    if 40 <= hue < 70 and v < 0.5:
        return "green"  # olive: dark yellow
    if (hue >= 300 or hue < 15) and s < 0.5 and v > 0.7:
        return "pink"  # light, soft red
    for upper, family in ((15, "red"), (40, "orange"), (70, "yellow"), (165, "green"),
                          (260, "blue"), (300, "purple"), (340, "pink"), (361, "red")):  # fmt: skip
        if hue < upper:
            return family
    return "red"  # unreachable: hue < 360


def color_family(color: dict[str, Any] | None) -> str | None:
    """The family of one ``{"name", "hex"}`` colour: by name, then a word of it, then the hex."""
    if not isinstance(color, dict):
        return None
    name = str(color.get("name", "")).strip().lower()
    if name in COLOR_FAMILIES:
        return COLOR_FAMILIES[name]
    for word in reversed(_WORD.findall(name)):  # "navy blue" -> blue, "dusty rose" -> pink
        if word in COLOR_FAMILIES:
            return COLOR_FAMILIES[word]
    return family_of_hex(str(color.get("hex", "")))


def _first_family(item: dict[str, Any]) -> str | None:
    colors = item.get("colors") or []
    return color_family(colors[0]) if colors else None


# --------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------

_PAIR = 1000.0  # every allowed pair is worth this much: more pairs always win ...
_SAME_SUBCATEGORY = 4.0  # ... and these only break ties (at most 7 per pair, 20 items max,
_SAME_PATTERN = 2.0  # so 20 * 7 < 1000)
_SAME_ALL_FAMILIES = 1.0


def can_match(predicted: dict[str, Any], labelled: dict[str, Any]) -> bool:
    """Same category and same colour family of the first colour."""
    return (
        predicted.get("category") == labelled.get("category")
        and _first_family(predicted) is not None
        and _first_family(predicted) == _first_family(labelled)
    )


def _pair_score(predicted: dict[str, Any], labelled: dict[str, Any]) -> float:
    if not can_match(predicted, labelled):
        return 0.0
    score = _PAIR
    if (
        str(predicted.get("subcategory", "")).lower()
        == str(labelled.get("subcategory", "")).lower()
    ):
        score += _SAME_SUBCATEGORY
    if predicted.get("pattern") == labelled.get("pattern"):
        score += _SAME_PATTERN
    families = [
        {color_family(c) for c in item.get("colors") or []} for item in (predicted, labelled)
    ]
    if families[0] == families[1]:
        score += _SAME_ALL_FAMILIES
    return score


def match_items(
    predicted: Sequence[dict[str, Any]], labelled: Sequence[dict[str, Any]]
) -> list[tuple[int, int]]:
    """One-to-one ``(predicted index, labelled index)`` pairs, as many as possible.

    Only pairs allowed by :func:`can_match` are returned; sorted by predicted index.
    """
    if not predicted or not labelled:
        return []
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    scores = np.array([[_pair_score(p, lab) for lab in labelled] for p in predicted])
    rows, cols = linear_sum_assignment(scores, maximize=True)
    return sorted(
        (int(r), int(c)) for r, c in zip(rows, cols, strict=True) if scores[r, c] >= _PAIR
    )


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DigitizerExample:
    """One golden photo and what the digitizer answered for it.

    ``json_valid``: the answer gave a schema-valid value, strictly or after repairs.
    ``repaired``: that value needed repairs. ``error_class`` is the inference log's.
    """

    id: str
    labelled: list[dict[str, Any]]
    predicted: list[dict[str, Any]]
    json_valid: bool = True
    repaired: bool = False
    error_class: str | None = None

    @classmethod
    def from_digitized(cls, photo: GoldenPhoto, out: Digitized) -> DigitizerExample:
        record = out.record
        return cls(
            id=photo.id,
            labelled=photo.items,
            predicted=out.items,
            json_valid=record.get("schema_ok") is True,
            repaired=record.get("repaired") is True,
            error_class=record.get("error_class"),
        )


@dataclass(frozen=True)
class ExampleRow:
    """One line of the per-example table."""

    id: str
    n_labelled: int
    n_predicted: int
    matched: list[tuple[int, int]]
    tp: int
    fp: int
    fn: int
    json_valid: bool
    repaired: bool
    error_class: str | None


@dataclass(frozen=True)
class DigitizerMetrics:
    """Scores of one digitizer run over a golden set (definitions: docs/evaluation.md)."""

    n_examples: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    count_accuracy: float
    json_validity: float
    repaired_rate: float
    rows: list[ExampleRow] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """The headline numbers, flat (for ``mlflow.log_metrics``)."""
        keys = ("n_examples", "tp", "fp", "fn", "precision", "recall", "f1", "count_accuracy")
        return {k: float(getattr(self, k)) for k in (*keys, "json_validity", "repaired_rate")}

    def table(self) -> list[dict[str, Any]]:
        """The per-example rows as plain dicts (for a DataFrame or ``mlflow.log_table``)."""
        return [asdict(row) | {"matched": len(row.matched)} for row in self.rows]

    @classmethod
    def from_summary(cls, summary: dict[str, float]) -> DigitizerMetrics:
        """Rebuild headline metrics (no rows), e.g. production's from its MLflow run."""
        ints = {"n_examples", "tp", "fp", "fn"}
        values: dict[str, Any] = {k: int(v) if k in ints else float(v) for k, v in summary.items()}
        return cls(**values)


def _ratio(num: int, den: int, *, empty: float) -> float:
    return num / den if den else empty


def score_digitizer(examples: Sequence[DigitizerExample]) -> DigitizerMetrics:
    """Micro-averaged item metrics plus answer-level rates over ``examples``.

    precision = TP / (TP + FP), recall = TP / (TP + FN), F1 their harmonic mean, all summed
    over every item of every example. With no predictions at all precision is 1 if there was
    nothing to find (else 0); with no labels at all recall is 1 if nothing was predicted
    (else 0). The rates are per example.
    """
    rows = []
    for ex in examples:
        pairs = match_items(ex.predicted, ex.labelled)
        tp = len(pairs)
        rows.append(
            ExampleRow(
                id=ex.id,
                n_labelled=len(ex.labelled),
                n_predicted=len(ex.predicted),
                matched=pairs,
                tp=tp,
                fp=len(ex.predicted) - tp,
                fn=len(ex.labelled) - tp,
                json_valid=ex.json_valid,
                repaired=ex.repaired,
                error_class=ex.error_class,
            )
        )
    tp = sum(r.tp for r in rows)
    fp = sum(r.fp for r in rows)
    fn = sum(r.fn for r in rows)
    precision = _ratio(tp, tp + fp, empty=1.0 if fn == 0 else 0.0)
    recall = _ratio(tp, tp + fn, empty=1.0 if fp == 0 else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n = len(rows)
    return DigitizerMetrics(
        n_examples=n,
        tp=tp,
        fp=fp,
        fn=fn,
        precision=precision,
        recall=recall,
        f1=f1,
        count_accuracy=_ratio(sum(r.n_predicted == r.n_labelled for r in rows), n, empty=0.0),
        json_validity=_ratio(sum(r.json_valid for r in rows), n, empty=0.0),
        repaired_rate=_ratio(sum(r.repaired for r in rows), n, empty=0.0),
        rows=rows,
    )


# --------------------------------------------------------------------------------------------
# Gate
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    reasons: list[str]
    """Why it failed (empty when it passed), one sentence each."""


def gate(
    metrics: DigitizerMetrics,
    *,
    min_f1: float = MIN_F1,
    min_json_validity: float = MIN_JSON_VALIDITY,
    baseline: DigitizerMetrics | None = None,
    max_regression: float = MAX_REGRESSION,
) -> GateVerdict:
    """Promote only if F1 and JSON validity clear their floors and, when a ``baseline``
    (production) is given, neither is more than ``max_regression`` below the baseline's."""
    reasons = []
    if metrics.n_examples == 0:
        reasons.append("no examples were evaluated")
    if metrics.f1 < min_f1:
        reasons.append(f"item F1 {metrics.f1:.3f} < {min_f1:.3f}")
    if metrics.json_validity < min_json_validity:
        reasons.append(f"JSON validity {metrics.json_validity:.3f} < {min_json_validity:.3f}")
    if baseline is not None:
        for name in ("f1", "json_validity"):
            ours, theirs = getattr(metrics, name), getattr(baseline, name)
            if ours < theirs - max_regression:
                reasons.append(
                    f"{name} {ours:.3f} regressed from the baseline's {theirs:.3f} "
                    f"(by {theirs - ours:.3f} > {max_regression:.3f} allowed)"
                )
    return GateVerdict(passed=not reasons, reasons=reasons)


# --------------------------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------------------------


async def evaluate_digitizer(
    client: LLMClient, blueprint: Blueprint, golden: Sequence[GoldenPhoto]
) -> DigitizerMetrics:
    """Digitize every golden photo concurrently (bounded by the client) and score the answers.

    The photos are sent as stored: golden JPEGs are already normalized, so the sha256 in the
    labels is the one the model (or the simulator's script) sees.
    """
    from dresscode.ingest.digitize import digitize_many

    photos = [(p.image_sha256, p.read_jpeg()) for p in golden]
    answers = await digitize_many(client, blueprint, photos)
    metrics = score_digitizer(
        [DigitizerExample.from_digitized(p, out) for p, out in zip(golden, answers, strict=True)]
    )
    log.info(
        "%s on %d golden photos: F1 %.3f (P %.3f, R %.3f), count accuracy %.3f, "
        "JSON validity %.3f, repaired %.3f",
        blueprint.ref,
        metrics.n_examples,
        metrics.f1,
        metrics.precision,
        metrics.recall,
        metrics.count_accuracy,
        metrics.json_validity,
        metrics.repaired_rate,
    )
    return metrics


STYLIST_PROMPT = prompts.STYLIST.name

# `dresscode eval`, the DAGs and older callers reach the recorded evaluations through this
# module, their first home; they live in runs.py (which imports this module lazily: no cycle).
from dresscode.registry.evaluation.runs import EXPERIMENT as EXPERIMENT  # noqa: E402
from dresscode.registry.evaluation.runs import EvalRun as EvalRun  # noqa: E402
from dresscode.registry.evaluation.runs import ModelNotServed as ModelNotServed  # noqa: E402
from dresscode.registry.evaluation.runs import check_served as check_served  # noqa: E402
from dresscode.registry.evaluation.runs import evaluate_prompt as evaluate_prompt  # noqa: E402
