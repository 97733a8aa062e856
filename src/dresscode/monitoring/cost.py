"""What answers cost: tokens per photo and per outfit suggestion, and their price.

Rows of the metrics table (:mod:`.metrics`), from the inference log's ``prompt_tokens`` and
``completion_tokens`` (failed calls included: a call that ran to ``max_tokens`` and failed
still burned them):

* ``tokens_per_photo`` — digitizer tokens per distinct photo (``image_sha256``; retries and
  re-asks of one photo add up);
* ``tokens_per_outfit`` — stylist tokens per suggestion, a suggestion being one user's calls of
  the day (every turn of the tool loop): a model caught asking for the weather again and
  again shows here first ("if token volume climbs, the model is caught in a loop");
* ``cost_per_photo_usd``, ``cost_per_outfit_usd`` — the same at the served model's price;
* ``cost_usd_per_day`` — what all prompts spent, per day (over a window: its total divided by
  its days), prompt-independent.

Prices come from ``DRESSCODE_MODEL_PRICES`` (US dollars per million prompt and completion
tokens, per served model, the inference log's ``model``). A model without a price has no cost
(NaN, ``n = 0``): its cost SLO is ``no_data``, never a silent zero. Figures computed against
the simulator are the simulator's token counts, not Gemma's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING

from dresscode.core import prompts

if TYPE_CHECKING:
    import pandas as pd

    from dresscode.monitoring.metrics import MetricValue

KEYS = ["day", "prompt_name", "prompt_version"]
COLUMNS = [*KEYS, "metric", "value", "n"]
COST_METRICS = (
    "tokens_per_photo",
    "tokens_per_outfit",
    "cost_per_photo_usd",
    "cost_per_outfit_usd",
    "cost_usd_per_day",
)
DIGITIZE = prompts.DIGITIZER.purpose
OUTFIT = prompts.STYLIST.purpose
PER_MILLION = 1_000_000


def _num(frame: pd.DataFrame, name: str) -> pd.Series:
    import pandas as pd

    if name not in frame.columns:
        return pd.Series(float("nan"), index=frame.index)
    return pd.to_numeric(frame[name], errors="coerce").astype(float)


def call_cost(calls: pd.DataFrame, prices: dict[str, dict[str, float]]) -> pd.Series:
    """US dollars per call at its model's price; NaN where the model has no price."""
    import pandas as pd

    model = calls["model"] if "model" in calls.columns else pd.Series("", index=calls.index)
    per_prompt = model.map(lambda m: prices.get(str(m), {}).get("prompt_per_1m"))
    per_completion = model.map(lambda m: prices.get(str(m), {}).get("completion_per_1m"))
    prompt = _num(calls, "prompt_tokens").fillna(0) * pd.to_numeric(per_prompt, errors="coerce")
    completion = _num(calls, "completion_tokens").fillna(0) * pd.to_numeric(
        per_completion, errors="coerce"
    )
    return (prompt + completion) / PER_MILLION


def _per_unit(
    calls: pd.DataFrame, unit: list[str], tokens: pd.Series, cost: pd.Series, names: tuple[str, str]
) -> list[pd.DataFrame]:
    """Tokens and cost per unit (a photo, a suggestion), averaged per group of KEYS."""
    import pandas as pd

    if calls.empty:
        return []
    frame = calls[KEYS].copy()
    frame["_unit"] = calls[unit].astype(str).agg("/".join, axis=1)
    frame["_tokens"], frame["_cost"] = tokens[calls.index], cost[calls.index]
    per_unit = frame.groupby([*KEYS, "_unit"], sort=True).agg(
        tokens=("_tokens", lambda s: s.sum(min_count=1)),
        cost=("_cost", lambda s: s.sum(min_count=1)),
    )
    rows = []
    for metric, column in zip(names, ("tokens", "cost"), strict=True):
        grouped = per_unit[column].groupby(level=KEYS, sort=True)
        out = pd.DataFrame({"value": grouped.mean(), "n": grouped.count()}).reset_index()
        out["metric"] = metric
        rows.append(out[COLUMNS])
    return rows


def cost_metrics(
    calls: pd.DataFrame, prices: dict[str, dict[str, float]], *, by_day: bool, span: timedelta
) -> pd.DataFrame:
    """The cost rows of the metrics table for these (keyed) production calls; ``span`` is the
    window's length (a window's daily cost is its total over its days)."""
    import pandas as pd

    days = 1.0 if by_day else span / timedelta(days=1)
    if calls.empty:
        return pd.DataFrame(columns=COLUMNS)
    tokens = _num(calls, "prompt_tokens") + _num(calls, "completion_tokens")
    cost = call_cost(calls, prices)
    purpose = calls["purpose"] if "purpose" in calls.columns else pd.Series("", index=calls.index)
    photos = calls[purpose == DIGITIZE]
    outfits = calls[purpose == OUTFIT]
    parts = [
        *_per_unit(
            photos,
            ["image_sha256"] if "image_sha256" in photos.columns else ["request_id"],
            tokens,
            cost,
            ("tokens_per_photo", "cost_per_photo_usd"),
        ),
        *_per_unit(
            outfits,
            ["user_id"] if "user_id" in outfits.columns else ["request_id"],
            tokens,
            cost,
            ("tokens_per_outfit", "cost_per_outfit_usd"),
        ),
    ]
    priced = cost.notna()
    daily = pd.DataFrame({"day": calls["day"], "_cost": cost.where(priced), "_priced": priced})
    sums = daily.groupby("day", sort=True).agg(
        value=("_cost", lambda s: s.sum(min_count=1)), n=("_priced", "sum")
    )
    sums["value"] = sums["value"] / max(days, 1e-9)
    total = sums.reset_index()
    total["prompt_name"], total["prompt_version"], total["metric"] = "", "", "cost_usd_per_day"
    parts.append(total[COLUMNS])
    frame = pd.concat([p for p in parts if not p.empty], ignore_index=True)
    return frame.astype({"value": "float64", "n": "int64"})


def summary(values: Mapping[str, MetricValue]) -> str:
    """The window's cost figures under the SLO table (for the task log and the page), or ""."""
    from dresscode.monitoring.metrics import fmt_value

    lines = []
    for unit in ("photo", "outfit"):
        found = [v for v in values.values() if v.metric == f"tokens_per_{unit}"]
        for metric in sorted(found, key=lambda v: v.prompt_name):
            cost = values.get(f"{metric.prompt_name}/cost_per_{unit}_usd")
            price = f" ≈ ${cost.value:.4f}" if cost and cost.n else " (no price set)"
            lines.append(
                f"  {metric.prompt_name}: {fmt_value(metric.value)} tokens per {unit}{price} "
                f"(n={metric.n})"
            )
    daily = values.get("cost_usd_per_day")
    if daily is not None:
        spent = f"${daily.value:.2f}" if daily.n else "unknown (no price set)"
        lines.append(f"  all prompts: {spent} per day")
    if not lines:
        return ""
    return "\ncost (token counts are the simulator's when it serves):\n" + "\n".join(lines)
