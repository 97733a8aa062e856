"""Row types of the tables the model's calls and the stylist write, and the reader of
suggestions several stages share (see :mod:`dresscode.core.tables`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, TypedDict

from dresscode.core import lake
from dresscode.core.config import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd

OUTFIT_SUGGESTIONS_NAME = "outfit_suggestions"
OUTFIT_SUGGESTIONS_KEY = ("user_id", "day")


# --- inference log --------------------------------------------------------------------------


class InferenceLogRow(TypedDict, total=False):
    """One ``inference_log`` row (built by ``dresscode.llm.inference_log`` through ``llm.ask``; stages may add columns)."""

    request_id: str
    ts: str
    purpose: str
    prompt_name: str
    prompt_version: str
    model: str
    ttft_ms: float | None
    latency_ms: float
    prompt_tokens: int | None
    completion_tokens: int | None
    http_status: int
    finish_reason: str | None
    parse_ok: bool | None
    schema_ok: bool | None
    repaired: bool | None
    n_items: int | None
    tool_calls: int
    tool_call_ok: bool | None
    hallucinated_items: int
    error_class: str | None
    attempts: int


# --- outfit suggestions ---------------------------------------------------------------------


class OutfitSuggestionRow(TypedDict, total=False):
    """One ``outfit_suggestions`` row; ``outfits`` is a JSON string."""

    user_id: str
    day: str
    status: str  # "ok" or "skipped"
    skip_reason: str | None
    outfits: str
    n_outfits: int
    dropped_items: list[str]
    n_dropped_items: int
    rule_violations: list[str]
    caveats: list[str]
    notes: str | None
    tool_calls: int
    tool_call_ok: bool | None
    coerced_args: int
    turns: int
    prompt_name: str
    prompt_version: int
    request_ids: list[str]
    generated_at: str


def latest_suggestions(
    settings: Settings | None = None, *, days: Iterable[str] | None = None
) -> pd.DataFrame:
    """``outfit_suggestions`` with one row per user and day: the newest ``generated_at``.

    A user's suggestion for a day may be written again by a later run with other batch mates
    (another part); the newest wins. ``days`` (suggestion days) reads only those partitions.
    """
    wanted = sorted(set(days)) if days is not None else None
    frame = lake.read_table(OUTFIT_SUGGESTIONS_NAME, settings or get_settings(), days=wanted)
    if frame.empty:
        return frame
    if "generated_at" in frame.columns:
        frame = frame.sort_values("generated_at", kind="stable")
    return frame.drop_duplicates(list(OUTFIT_SUGGESTIONS_KEY), keep="last")
