"""The prompt catalogue: every prompt the pipelines serve, named once.

A prompt's name is its key in git (``include/prompts/<name>/``), in the MLflow Prompt Registry,
in the inference log and in ``quality_metrics``. What each stage needs to know about a prompt
beyond its name lives here too: which score ranks two versions (monitoring's "is the candidate
better?") and which gate metrics the summary and the Dresscode view show first.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromptSpec:
    """One prompt of the catalogue."""

    name: str
    purpose: str  # the inference log's ``purpose`` column
    score_metric: str  # the evaluation metric that ranks two versions (higher is better)
    headline_metrics: tuple[str, ...]  # the gate metrics shown first (the rest are in MLflow)


DIGITIZER = PromptSpec(
    name="wardrobe-digitizer",
    purpose="digitize",
    score_metric="f1",
    headline_metrics=("f1", "json_validity", "count_accuracy"),
)
STYLIST = PromptSpec(
    name="outfit-stylist",
    purpose="outfit",
    score_metric="expectation_pass_rate",
    headline_metrics=(
        "hallucinated_items",
        "weather_rule_pass_rate",
        "tool_call_rate_when_needed",
        "structured_output_validity",
    ),
)

CATALOGUE: dict[str, PromptSpec] = {spec.name: spec for spec in (DIGITIZER, STYLIST)}
PROMPT_NAMES: tuple[str, ...] = tuple(CATALOGUE)


def spec(name: str) -> PromptSpec:
    """The catalogue entry of ``name``; a clear error naming the known prompts otherwise."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(
            f"unknown prompt {name!r}; the known prompts are {list(PROMPT_NAMES)}"
        ) from None
