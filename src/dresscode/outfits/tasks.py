"""The work of ``outfit_pregen``: plan user batches, suggest outfits per batch, total the run.

A batch reads each user's features from Feast (``outfit_context``) and wardrobe from the lake
as the user sees it (``tables.current_wardrobes_of``: deleted items gone, added ones present,
corrected fields replaced — so the rules and the tool answers see the user's categories), runs the stylist's tool-calling loop for all of them concurrently (bounded by the client's
semaphore, like digitization), and writes ``outfit_suggestions`` and ``inference_log`` parts
named by the batch's users — a retried batch replaces its own parts.

Values handed from task to task (XCom) are the ``TypedDict`` s below: plain JSON dicts.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast, get_args

from dresscode.core import lake, prompts, tables
from dresscode.core.config import Settings, get_settings
from dresscode.core.tables import current_wardrobes_of
from dresscode.features import users
from dresscode.llm import tracing
from dresscode.registry.prompt_registry import Serving

if TYPE_CHECKING:
    from dresscode.outfits.stylist import Suggestion

log = logging.getLogger(__name__)

PROMPT_NAME = prompts.STYLIST.name
# More than this share of users failing on model errors is an outage: fail the run loudly.
MAX_MODEL_ERROR_SHARE = 0.2


__all__ = [
    "PROMPT_NAME",
    "BatchSummary",
    "PregenError",
    "RunTotals",
    "Serving",
    "UserRef",
    "current_wardrobes_of",
    "label_part",
    "plan_batches",
    "report",
    "resolve_prompt",
    "run_batch",
    "summarize",
]

# One row of the ``outfit_context`` feature service (Feast names the columns: user_id,
# city_id, the style and the weather features), and the ``get_weather`` tool's answer
# (``features.weather.tool_answer``).
OnlineRow = Mapping[str, Any]
WeatherAnswer = dict[str, Any]  # what the stylist's WeatherLookup hands the model


class PregenError(RuntimeError):
    """The run must fail; the message names the cause and what to check."""


class UserRef(TypedDict):
    """One active user of a batch (XCom)."""

    user_id: str
    city: str


class Counts(TypedDict):
    """What a batch's suggestions and model calls add up to."""

    users: int
    suggested: int
    skipped_total: int
    skipped: dict[str, int]  # skip reason -> users
    hallucinated_items: int
    rule_violations: int
    coerced_args: int
    model_calls: int
    model_errors: int


class BatchSummary(Counts):
    """One batch's result (XCom, to the report task)."""

    batch: str
    seconds: float
    weather_fallbacks: int  # get_weather answers the provider gave (not the features)


class RunTotals(TypedDict, total=False):
    """The run's totals: ``batches`` and ``skipped`` always, the counts once a batch ran."""

    batches: int
    skipped: dict[str, int]
    users: int
    suggested: int
    skipped_total: int
    hallucinated_items: int
    rule_violations: int
    coerced_args: int
    model_calls: int
    model_errors: int


Summed = Literal[
    "users",
    "suggested",
    "skipped_total",
    "hallucinated_items",
    "rule_violations",
    "coerced_args",
    "model_calls",
    "model_errors",
]
_SUMMED: tuple[Summed, ...] = get_args(Summed)


def resolve_prompt() -> Serving:
    """The registry's production stylist, resolved once per run."""
    from dresscode.registry import prompt_registry as registry

    return registry.serving(PROMPT_NAME)


def plan_batches(settings: Settings | None = None) -> list[list[UserRef]]:
    """Active users in batches of ``DRESSCODE_OUTFIT_BATCH_SIZE``, bucket by bucket: a batch's
    users share one or two ``user_bucket`` partitions and a narrow id range of each, so its
    wardrobe read opens those files and row groups only (:func:`delta.user_order`)."""
    from dresscode.core import delta

    settings = settings or get_settings()
    found = users.active_users(settings=settings)
    active = [
        UserRef(user_id=u.user_id, city=u.city)
        for u in sorted(found, key=lambda u: delta.user_order(u.user_id))
    ]
    size = settings.outfit_batch_size
    batches = [active[i : i + size] for i in range(0, len(active), size)]
    log.info("%d active users in %d batches of up to %d", len(active), len(batches), size)
    return batches


def _online(batch: list[UserRef], settings: Settings) -> dict[str, OnlineRow]:
    """Each user's ``outfit_context`` features (style and live weather), by user id."""
    from dresscode.features import store as features

    rows = [{"user_id": u["user_id"], "city_id": _city_key(u["city"])} for u in batch]
    frame = features.online_context(rows, settings)
    return {r["user_id"]: r for r in frame.to_dict("records")}


def _city_key(city: str) -> str:
    """The city's feature-store id; a name no provider could know gets a key nothing matches."""
    from dresscode.features import weather

    try:
        return weather.city_id(city)
    except weather.InvalidCity:
        return "invalid-city"


# An online weather row answers the tool only with these: the mean, and the day's high and
# low the rules read. A row pushed before the high and low were derived goes to the provider.
_ANSWERING_FEATURES = ("temperature_c", "temperature_max_c", "temperature_min_c")


class _WeatherLookup:
    """The ``get_weather`` tool's answers: online features first, then the provider, per city.

    Answers are kept per (city, day) so a batch asks the provider at most once per city.
    """

    def __init__(self, online: dict[str, OnlineRow], settings: Settings) -> None:
        self.settings = settings
        self.from_features: dict[str, OnlineRow] = {}
        self.answers: dict[tuple[str, str], WeatherAnswer | None] = {}
        self.provider_calls = 0
        for row in online.values():
            if row.get("city_id") and all(_has(row.get(k)) for k in _ANSWERING_FEATURES):
                self.from_features[row["city_id"]] = row

    def __call__(self, city: str, day: date) -> WeatherAnswer | None:
        key = (_city_key(city), day.isoformat())
        if key not in self.answers:
            self.answers[key] = self._lookup(city, day)
        return self.answers[key]

    def _lookup(self, city: str, day: date) -> WeatherAnswer | None:
        from dresscode.features import weather

        row = self.from_features.get(_city_key(city))
        if row is not None and str(row.get("day")) == day.isoformat():
            return weather.tool_answer(row, city=city, day=day.isoformat())
        self.provider_calls += 1
        found = weather.weather_for(city, day=day, settings=self.settings)
        if isinstance(found, weather.Missing):
            log.warning("no weather for %s on %s: %s", city, day, found.reason)
            return None
        return found.tool_answer()


def _has(value: Any) -> bool:
    """Not None and not NaN (lists and arrays count as present)."""
    if value is None:
        return False
    return not isinstance(value, float) or value == value


def run_batch(
    batch: list[UserRef],
    *,
    day: date,
    serving: Serving,
    label: str = "batch",
    settings: Settings | None = None,
) -> BatchSummary:
    """Suggest outfits for one batch of users; write suggestions and the inference log."""
    from dresscode.llm.hook import DresscodeLLMHook
    from dresscode.outfits import stylist as outfits
    from dresscode.registry import prompt_registry as registry

    settings = settings or get_settings()
    blueprint = registry.blueprint_for(serving)
    started = time.perf_counter()
    ids = [u["user_id"] for u in batch]
    wardrobes = current_wardrobes_of(ids, settings)
    online = _online(batch, settings)
    contexts = [
        outfits.UserContext(
            user_id=u["user_id"],
            city=u["city"],
            day=day,
            # The stylist takes plain dicts: wardrobe_items rows, corrections applied.
            wardrobe=cast("list[dict[str, Any]]", wardrobes.get(u["user_id"], [])),
            style={k: v for k, v in online.get(u["user_id"], {}).items() if _has(v)},
        )
        for u in batch
    ]
    lookup = _WeatherLookup(online, settings)

    async def run() -> list[Any]:
        async with DresscodeLLMHook(settings=settings).get_client() as client:
            return await outfits.suggest_many(
                client, blueprint, contexts, lookup, max_turns=settings.outfit_max_turns
            )

    results = asyncio.run(run())
    suggestions = [s for s, _ in results]
    records = [r for _, rows in results for r in rows]
    if suggestions:
        # A user's suggestion for a day may be written again by a later run with other batch
        # mates (another part): readers keep the newest `generated_at` per user and day.
        generated_at = datetime.now(UTC)
        rows = [s.row() | {"generated_at": generated_at} for s in suggestions]
        part = label_part(ids)
        lake.write_parquet(tables.OUTFIT_SUGGESTIONS.name, day, part, rows, settings)
    if records:
        # Every model call is a fact for monitoring: a re-run adds its own calls (named by
        # their request ids, so a retry of the same write replaces itself), never erases.
        request_ids = "\n".join(sorted(r["request_id"] for r in records))
        calls = "outfit-calls-" + hashlib.sha256(request_ids.encode()).hexdigest()[:16]
        lake.write_parquet(tables.INFERENCE_LOG.name, day, calls, records, settings)
    summary = BatchSummary(
        **summarize(suggestions, records),
        batch=label,
        seconds=round(time.perf_counter() - started, 3),
        weather_fallbacks=lookup.provider_calls,
    )
    log.info(
        "%s: %d users, %d suggested, %d skipped %s, %d hallucinated items dropped, %d model calls in %.1fs",
        label,
        summary["users"],
        summary["suggested"],
        summary["skipped_total"],
        summary["skipped"] or "",
        summary["hallucinated_items"],
        summary["model_calls"],
        summary["seconds"],
    )
    tracing.flush()  # the batch's sampled suggestions as MLflow traces; never raises
    return summary


def label_part(user_ids: list[str]) -> str:
    """Part name of a batch: stable for the same users, so a retry replaces it."""
    return "users-" + hashlib.sha256("\n".join(sorted(user_ids)).encode()).hexdigest()[:16]


def summarize(suggestions: list[Suggestion], records: list[tables.InferenceLogRow]) -> Counts:
    skipped = Counter(str(s.skip_reason) for s in suggestions if s.status != "ok")
    return Counts(
        users=len(suggestions),
        suggested=sum(1 for s in suggestions if s.status == "ok"),
        skipped_total=sum(skipped.values()),
        skipped=dict(skipped),
        hallucinated_items=sum(len(s.dropped_items) for s in suggestions),
        rule_violations=sum(len(s.rule_violations) for s in suggestions),
        coerced_args=sum(s.coerced_args for s in suggestions),
        model_calls=len(records),
        model_errors=sum(1 for r in records if r.get("http_status") != 200),
    )


def report(results: list[BatchSummary]) -> RunTotals:
    """Totals of the run; fails when model errors cost more than a fifth of the users."""
    totals = RunTotals(batches=len(results), skipped={})
    skipped: Counter[str] = Counter()
    for r in results:
        for key in _SUMMED:
            totals[key] = totals.get(key, 0) + int(r.get(key, 0))
        skipped.update(r.get("skipped", {}))
    totals["skipped"] = dict(skipped)
    log.info(
        "outfit_pregen: %d users, %d suggested, skipped %s, %d hallucinated items caught",
        totals.get("users", 0),
        totals.get("suggested", 0),
        totals["skipped"] or "none",
        totals.get("hallucinated_items", 0),
    )
    errors = totals["skipped"].get("model_error", 0)
    if totals.get("users") and errors > MAX_MODEL_ERROR_SHARE * totals["users"]:
        raise PregenError(
            f"{errors} of {totals['users']} users got no suggestion because the model failed: "
            "check the dresscode_llm endpoint (see docs/runbooks/outfit_pregen.md)."
        )
    return totals
