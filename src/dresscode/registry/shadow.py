"""Shadow comparison: replay recent real inputs through a candidate and production, side by side.

The golden set says whether a candidate is *good*; the shadow says whether it behaves like
production on today's traffic (photos for the digitizer, users for the stylist) — how often the two agree, and what it costs (latency, tokens,
JSON failures). Nothing is written to user-facing tables: answers go into a report under
``reports/shadow/`` in the lake.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any, cast

from dresscode.core import lake, tables
from dresscode.core.config import Settings, get_settings
from dresscode.llm.blueprints import Blueprint

log = logging.getLogger(__name__)

SAMPLE_SIZE = 24


@dataclass(frozen=True)
class CallStats:
    """What one blueprint's shadow calls cost and how often they failed."""

    calls: int
    failures: int  # transport errors, unparseable or schema-invalid answers
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    completion_tokens_mean: float | None

    @classmethod
    def of(cls, records: list[dict[str, Any]]) -> CallStats:
        latencies = sorted(float(r["latency_ms"]) for r in records if r.get("http_status") == 200)
        tokens = [r["completion_tokens"] for r in records if r.get("completion_tokens") is not None]
        return cls(
            calls=len(records),
            failures=sum(1 for r in records if r.get("error_class")),
            latency_p50_ms=_quantile(latencies, 0.5),
            latency_p95_ms=_quantile(latencies, 0.95),
            completion_tokens_mean=round(statistics.fmean(tokens), 1) if tokens else None,
        )


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))], 1)


@dataclass(frozen=True)
class ShadowReport:
    prompt: str
    candidate: int
    production: int
    inputs: int
    agreement: float  # mean per-input agreement in [0, 1]; 1.0 = same answers
    candidate_stats: CallStats
    production_stats: CallStats
    at: str
    # The manifests table version the inputs were chosen from (digitizer shadows): reading it
    # again (recent_photos(version=...)) gives the same photos, so the comparison reproduces.
    lake_version: int | None = None

    def summary(self) -> str:
        c, p = self.candidate_stats, self.production_stats
        return (
            f"shadow {self.prompt} v{self.candidate} vs v{self.production} on {self.inputs} "
            f"recent inputs: agreement {self.agreement:.2f}; failures {c.failures} vs "
            f"{p.failures}; latency p50 {c.latency_p50_ms} vs {p.latency_p50_ms} ms; "
            f"completion tokens {c.completion_tokens_mean} vs {p.completion_tokens_mean}"
        )


def recent_photos(
    n: int = SAMPLE_SIZE, settings: Settings | None = None, *, version: int | None = None
) -> list[tuple[str, bytes]]:
    """The ``n`` most recently accepted distinct photos, as ``(sha256, jpeg)`` from the lake.

    ``version`` reads the ``manifests`` table as it was then (the version a shadow report
    records), so a comparison can be run again on the very same photos.
    """
    settings = settings or get_settings()
    photos: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    # Newest partitions first, one day at a time, until there are n: not the whole history.
    for day in reversed(lake.partition_days(tables.MANIFESTS.name, settings, version=version)):
        manifest = lake.read_table(
            tables.MANIFESTS.name,
            settings,
            version=version,
            days=[day],
            columns=["status", "image_sha256", "processed_at"],
            filters=[("status", "=", tables.ACCEPTED)],
        )
        if manifest.empty:
            continue
        for sha in manifest.sort_values("processed_at", ascending=False)["image_sha256"]:
            if not isinstance(sha, str) or sha in seen:
                continue
            seen.add(sha)
            path = tables.image_path(sha, settings)
            if lake.exists(path):
                photos.append((sha, lake.read_bytes(path)))
            if len(photos) == n:
                return photos
    return photos


def item_agreement(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> float:
    """F1 of one answer's items against the other's (same one-to-one matching as the eval)."""
    from dresscode.registry.evaluation.digitizer import match_items

    if not a and not b:
        return 1.0
    matched = len(match_items(a, b))
    return 2 * matched / (len(a) + len(b))


async def compare_digitizer(
    client: Any,
    candidate: Blueprint,
    production: Blueprint,
    photos: list[tuple[str, bytes]],
    *,
    lake_version: int | None = None,
) -> ShadowReport:
    """Digitize the photos with both blueprints concurrently and compare the answers."""
    import asyncio

    from dresscode.ingest.digitize import digitize_many

    ours, theirs = await asyncio.gather(
        digitize_many(client, candidate, photos), digitize_many(client, production, photos)
    )
    scores = [item_agreement(c.items, p.items) for c, p in zip(ours, theirs, strict=True)]
    return ShadowReport(
        prompt=candidate.name,
        candidate=candidate.version,
        production=production.version,
        inputs=len(photos),
        agreement=round(statistics.fmean(scores), 4) if scores else 1.0,
        candidate_stats=CallStats.of([c.record for c in ours]),
        production_stats=CallStats.of([p.record for p in theirs]),
        at=datetime.now(UTC).isoformat(timespec="seconds"),
        lake_version=lake_version,
    )


def write_report(report: ShadowReport, settings: Settings | None = None) -> str:
    """Store the report as JSON under ``reports/shadow/``; returns its path."""
    name = (
        f"{report.prompt}-v{report.candidate}-vs-v{report.production}-"
        f"{report.at.replace(':', '').replace('-', '')}.json"
    )
    path = lake.table("reports", settings) / "shadow" / lake.safe_segment(name)
    lake.write_json(path, asdict(report))
    return str(path)


# --- the stylist --------------------------------------------------------------------------


def recent_stylist_inputs(n: int = SAMPLE_SIZE, settings: Settings | None = None) -> list[Any]:
    """UserContexts of the newest day's suggested users, rebuilt from the lake: their wardrobe
    now, and that day's weather from the ``weather`` table (None where there was none)."""
    from dresscode.features import users
    from dresscode.outfits import stylist as outfits

    settings = settings or get_settings()
    # Suggestions are partitioned by their day: the newest partition is the newest day.
    days = lake.partition_days(tables.OUTFIT_SUGGESTIONS.name, settings)
    if not days:
        return []
    done = lake.read_table(
        tables.OUTFIT_SUGGESTIONS.name,
        settings,
        days=days[-1:],
        columns=["user_id", "day", "status"],
    )
    if done.empty:
        return []
    day = str(done["day"].max())
    ids = sorted(set(done.loc[(done["day"] == day) & (done["status"] == "ok"), "user_id"]))[:n]
    cities = {u.user_id: u.city for u in users.active_users(settings=settings)}
    items = tables.current_wardrobes_of(ids, settings)  # what the user sees, feedback applied
    return [
        outfits.UserContext(u, cities[u], date.fromisoformat(day), cast("list[dict]", items[u]))
        for u in ids
        if u in cities
    ]


def weather_on_record(settings: Settings, days: Iterable[date]) -> Any:
    """A ``get_weather`` answer source for ``days`` from the lake's weather table (no provider
    calls; only the rows forecasting those days are read)."""
    from dresscode.features import weather

    wanted = sorted({d.isoformat() for d in days})
    table = lake.read_table("weather", settings, filters=[("day", "in", wanted)])
    answers: dict[tuple[str, str], dict[str, Any]] = {}
    if not table.empty:
        for row in table.sort_values("event_timestamp").to_dict("records"):
            answers[(str(row["city"]), str(row["day"]))] = weather.tool_answer(
                row, city=row["city"], day=str(row["day"])
            )
    return lambda city, day: answers.get((city, day.isoformat()))


def outfit_agreement(a: Any, b: Any) -> float:
    """Jaccard overlap of the items the two suggestions put in their outfits (1.0 if both skip)."""
    mine = {i for o in a.outfits for i in o["item_ids"]}
    theirs = {i for o in b.outfits for i in o["item_ids"]}
    if not mine and not theirs:
        return 1.0 if a.status == b.status else 0.0
    return len(mine & theirs) / len(mine | theirs)


async def compare_stylist(
    client: Any,
    candidate: Blueprint,
    production: Blueprint,
    contexts: list[Any],
    weather: Any,
    *,
    max_turns: int,
) -> ShadowReport:
    """Run the stylist loop for the same users with both blueprints and compare."""
    import asyncio

    from dresscode.outfits.stylist import suggest_many

    ours, theirs = await asyncio.gather(
        suggest_many(client, candidate, contexts, weather, max_turns=max_turns),
        suggest_many(client, production, contexts, weather, max_turns=max_turns),
    )
    scores = [outfit_agreement(c, p) for (c, _), (p, _) in zip(ours, theirs, strict=True)]
    return ShadowReport(
        prompt=candidate.name,
        candidate=candidate.version,
        production=production.version,
        inputs=len(contexts),
        agreement=round(statistics.fmean(scores), 4) if scores else 1.0,
        candidate_stats=CallStats.of([r for _, rows in ours for r in rows]),
        production_stats=CallStats.of([r for _, rows in theirs for r in rows]),
        at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
