"""The LLM judges, nightly, on a sample of what users were actually shown.

The golden scenarios tell how a blueprint behaves on cases someone wrote down; production
shows the cases nobody wrote down. ``model_monitoring``'s ``judge_production`` task takes
``DRESSCODE_MONITORING_JUDGE_SAMPLE`` of the window's suggestions — a fixed sample: the
smallest hashes of ``user_id|day``, so a re-run judges the same ones and a user is not picked
for being first in a file — and has the four judges of
:mod:`dresscode.registry.evaluation.judges` score them through ``mlflow.genai.evaluate``, as
the stylist's evaluation does: what the user read (outfits, reasons, notes) against the
user's wardrobe and the day's weather features for the user's city.

Reads are bounded by the window and the sample, never by history: the window's
``outfit_suggestions`` partitions, the sampled users' ``wardrobe_items``/``user_events``
buckets and ``users`` rows, and the window's ``weather`` partitions.

``owned_garments`` is checked against the deterministic rule (:mod:`dresscode.outfits.mentions`)
on every judged suggestion, so each night also measures how far the judge can be trusted on
production text: below ``DRESSCODE_JUDGE_MIN_AGREEMENT`` the result says UNRELIABLE. Judges
never gate or page: the result is an MLflow run in ``dresscode-monitoring`` (per-suggestion
verdicts and rationales, pass rates as metrics), the task's XCom and its log. Verdicts on the
simulator are the simulator's rules, not Gemma's.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict

from dresscode.core.config import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd

    from dresscode.registry.evaluation.genai_run import Example

log = logging.getLogger(__name__)

EXPERIMENT = "dresscode-monitoring"  # beside the drift reports of the same nights
SHOWN_FAILURES = 10


class JudgedSample(TypedDict):
    """One night's judges on production suggestions."""

    suggestions: int  # answered suggestions in the window
    judged: int  # of them, in the sample
    pass_rates: dict[str, float | None]  # per judge, of the suggestions it gave a verdict on
    errors: int  # verdicts not given (garbage, timeouts, a dead endpoint)
    rule_agreement: float | None  # owned_garments against the deterministic rule
    unowned_by_rule: int  # sampled suggestions naming a garment the user does not own
    judges: str  # "reliable: ..." / "UNRELIABLE: ..." / "not run"
    failing: list[str]  # "<user>/<day> <judge>" of each "no", the first few (rationales: MLflow)
    mlflow_run_id: str | None


def window_days(start: datetime, end: datetime) -> list[str]:
    """The suggestion days a window covers: ``[start, end)`` by calendar day (UTC)."""
    last = (end - timedelta(microseconds=1)).date()
    day, days = start.date(), []
    while day <= last:
        days.append(day.isoformat())
        day += timedelta(days=1)
    return days


def sample_key(user_id: str, day: str) -> str:
    return hashlib.blake2b(f"{user_id}|{day}".encode(), digest_size=8).hexdigest()


def sample(days: list[str], size: int, settings: Settings) -> tuple[pd.DataFrame, int]:
    """The window's answered suggestions (one per user and day, the newest) and the sample of
    ``size`` taken from them; returns ``(sample, how many there were)``."""
    from dresscode.core.rows import latest_suggestions

    found = latest_suggestions(settings, days=days)
    if found.empty:
        return found, 0
    answered = found[(found["status"] == "ok") & (found["n_outfits"].fillna(0) > 0)].copy()
    answered["_key"] = [
        sample_key(str(u), str(d))
        for u, d in zip(answered["user_id"], answered["day"], strict=True)
    ]
    picked = answered.sort_values("_key").head(size).drop(columns="_key")
    return picked, len(answered)


def _weather(picked: pd.DataFrame, settings: Settings) -> dict[tuple[str, str], dict[str, Any]]:
    """What the stylist's weather tool would have said, per (user, day): the day's weather
    features for the user's city (none where the lake has none)."""
    from dresscode.core import lake
    from dresscode.features import weather

    ids = sorted(set(picked["user_id"].astype(str)))
    users = lake.read_table(
        "users", settings, columns=["user_id", "city"], filters=[("user_id", "in", ids)]
    )
    cities = dict(zip(users["user_id"].astype(str), users["city"].astype(str), strict=True))
    keys: dict[str, str] = {}
    for city in set(cities.values()):
        try:
            keys[city] = weather.city_id(city)
        except weather.InvalidCity:
            continue
    days = sorted(set(picked["day"].astype(str)))
    rows = lake.read_table(
        "weather", settings, days=days, filters=[("city_id", "in", sorted(set(keys.values())))]
    ) if keys else None  # fmt: skip
    by_city_day: dict[tuple[str, str], dict[str, Any]] = {}
    if rows is not None and not rows.empty:
        day_column = "day" if "day" in rows.columns else "date"
        for row in rows.to_dict("records"):
            by_city_day[(str(row["city_id"]), str(row[day_column])[:10])] = row
    found = {}
    for user, day in zip(picked["user_id"].astype(str), picked["day"].astype(str), strict=True):
        city = cities.get(user)
        row = by_city_day.get((keys.get(city or "", ""), day))
        if city and row is not None and row.get("temperature_c") is not None:
            found[(user, day)] = weather.tool_answer(row, city=city, day=day)
    return found


def examples(picked: pd.DataFrame, settings: Settings, *, as_of: datetime) -> list[Example]:
    """Each sampled suggestion as the judges see a golden example: the wardrobe and the day's
    weather in, what the user read out."""
    from dresscode.core import tables
    from dresscode.registry.evaluation.genai_run import Example

    ids = sorted(set(picked["user_id"].astype(str)))
    wardrobes = tables.current_wardrobes_of(ids, settings, as_of=as_of)
    forecasts = _weather(picked, settings)
    out = []
    for row in picked.to_dict("records"):
        user, day = str(row["user_id"]), str(row["day"])
        try:
            outfits = json.loads(row.get("outfits") or "[]")
        except ValueError:
            log.warning("suggestion %s/%s: outfits are not JSON; not judged", user, day)
            continue
        out.append(
            Example(
                inputs={
                    "example_id": f"{user}/{day}",
                    "date": day,
                    "city": (forecasts.get((user, day)) or {}).get("city"),
                    "weather": forecasts.get((user, day)),
                    "wardrobe": wardrobes.get(user, []),
                },
                outputs={"outfits": outfits, "notes": row.get("notes") or ""},
                expectations={},
            )
        )
    return out


def judge_production(
    start: datetime, end: datetime, run_key: str, settings: Settings | None = None
) -> JudgedSample:
    """Judge the window's sample; record it in MLflow. Judges that fail make errors, not a
    failed task; MLflow unreachable fails the task with one sentence (nothing half written:
    the run is recorded in one block)."""
    settings = settings or get_settings()
    size = settings.monitoring_judge_sample
    if size <= 0:
        log.info("production judges: off (DRESSCODE_MONITORING_JUDGE_SAMPLE=0)")
        return _empty(0, "not run (DRESSCODE_MONITORING_JUDGE_SAMPLE=0)")
    picked, total = sample(window_days(start, end), size, settings)
    judged_examples = examples(picked, settings, as_of=end) if total else []
    if not judged_examples:
        log.info("production judges: no answered suggestion in the window, nothing judged")
        return _empty(total, "not run (no suggestion in the window)")
    return _judge(judged_examples, total, run_key, (start, end), settings)


def _empty(total: int, why: str) -> JudgedSample:
    return JudgedSample(suggestions=total, judged=0, pass_rates={}, errors=0, rule_agreement=None,
                        unowned_by_rule=0, judges=why, failing=[], mlflow_run_id=None)  # fmt: skip


def _judge(
    cases: list[Example],
    total: int,
    run_key: str,
    window: tuple[datetime, datetime],
    settings: Settings,
) -> JudgedSample:
    import mlflow

    from dresscode.llm.hook import DresscodeLLMHook
    from dresscode.registry import prompt_registry as registry
    from dresscode.registry.evaluation import genai_run, judges

    endpoint = DresscodeLLMHook(settings=settings).endpoint()
    built = judges.from_settings(endpoint, settings)
    names = [j.name for j in built]
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    with genai_run.recording(f"the production judges of {run_key}"):
        registry.use_experiment(mlflow, EXPERIMENT, settings)
        with (
            judges.environment(endpoint, settings.judge_timeout_s),
            mlflow.start_run(run_name=f"production judges {run_key}") as run,
        ):
            scored = genai_run.evaluate(cases, judges.as_scorers(built), names, model_id=None)
            result = summarize(cases, scored, names, total, settings.judge_min_agreement)
            guard_notes = {j.guard.note() for j in built if j.guard.note()}
            if guard_notes:
                result["judges"] = f"UNRELIABLE: judge calls skipped: {'; '.join(guard_notes)}"
            mlflow.set_tags(
                {
                    "dresscode.kind": "production_judges",
                    "dresscode.run": run_key,
                    "dresscode.window": f"{window[0].isoformat()} .. {window[1].isoformat()}",
                    "dresscode.judges": result["judges"],
                    "dresscode.sample": f"{result['judged']} of {total}",
                }
            )
            mlflow.log_metrics(_metrics(result))
            result["mlflow_run_id"] = run.info.run_id
    log.info(
        "production judges: %d of %d suggestions judged; pass rates %s; %d errors; %s "
        "(MLflow run %s)",
        result["judged"],
        total,
        ", ".join(f"{k} {_pct(v)}" for k, v in result["pass_rates"].items()),
        result["errors"],
        result["judges"],
        result["mlflow_run_id"],
    )
    for line in result["failing"]:
        log.warning("judged no: %s", line)
    return result


def _metrics(result: JudgedSample) -> dict[str, float]:
    found = {f"judge_pass_rate_{k}": v for k, v in result["pass_rates"].items() if v is not None}
    found |= {"judged": float(result["judged"]), "judge_errors": float(result["errors"])}
    if result["rule_agreement"] is not None:
        found["judge_agreement_owned_garments"] = result["rule_agreement"]
    return found


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def summarize(
    cases: list[Example], scored: Any, names: list[str], total: int, min_agreement: float
) -> JudgedSample:
    """Pass rates, errors, the failing verdicts and owned_garments' agreement with the rule."""
    from dresscode.outfits.mentions import unowned_mentions
    from dresscode.registry.evaluation.judges import shown_text

    pass_rates: dict[str, float | None] = {}
    errors = 0
    failing: list[str] = []
    for name in names:
        verdicts = scored.values.get(name, {})
        given = [v for v in verdicts.values() if isinstance(v, bool)]
        errors += len(cases) - len(given)
        pass_rates[name] = sum(given) / len(given) if given else None
        failing += [f"{ex} {name}" for ex, v in sorted(verdicts.items()) if v is False]
    expected = {
        str(c.inputs["example_id"]): not unowned_mentions(
            shown_text(c.outputs), c.inputs.get("wardrobe") or []
        )
        for c in cases
    }
    owned = scored.values.get("owned_garments", {})
    agreed = sum(owned.get(ex) is want for ex, want in expected.items())
    agreement = agreed / len(expected) if expected else None
    if agreement is None:
        sentence = "not run"
    elif agreement < min_agreement:
        sentence = (f"UNRELIABLE: owned_garments agrees with the rule on {agreement:.0%} of "
                    f"{len(expected)} production suggestions < {min_agreement:.0%}")  # fmt: skip
    else:
        sentence = f"reliable: owned_garments agrees with the rule on {agreement:.0%}"
    return JudgedSample(
        suggestions=total,
        judged=len(cases),
        pass_rates=pass_rates,
        errors=errors,
        rule_agreement=agreement,
        unowned_by_rule=sum(not ok for ok in expected.values()),
        judges=sentence,
        failing=failing[:SHOWN_FAILURES],
        mlflow_run_id=None,
    )
