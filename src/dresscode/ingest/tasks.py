"""Wardrobe ingest: landing -> validate/normalize -> digitize -> items, manifest, inference log.

The door of the ingest stage: what ``wardrobe_ingest`` calls. The work is in
``ingest.landing`` (upload keys, clean-up, quarantine), ``ingest.batch`` (one batch, photo by
photo), ``ingest.manifest`` (the commit) and ``ingest.photos`` / ``ingest.digitize``.

Nothing is lost: an upload leaves the landing area only after its cleaned copy (or its
quarantine copy with ``reason.json``) and its manifest row exist. Photos whose model call
failed stay in landing and are retried by the next run, up to ``MAX_DIGITIZE_ATTEMPTS`` runs,
then they are quarantined as ``model_failed``.

Idempotent: the manifest says which uploads are done, so a re-run or an overlapping run skips
them; cleaned images are content-addressed; a photo digitized with the same prompt version is
answered from its cached result, not sent again; parts are named by their content.

Values handed from task to task (XCom) are the ``TypedDict`` s below: plain JSON dicts.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import typing
from collections import Counter
from datetime import date, timedelta
from typing import TYPE_CHECKING, Literal, TypedDict

from airflow.sdk.exceptions import AirflowFailException

from dresscode.core import delta, tables
from dresscode.core.config import Settings, get_settings
from dresscode.core.lake import printable_key
from dresscode.core.tables import (
    ACCEPTED,
    DIGITIZE_FAILED,
    DUPLICATE,
    FINAL_STATUSES,
    NEAR_DUPLICATE,
    QUARANTINED,
    READ_FAILED,
    image_path,
    landing_keys,
    landing_owner,
    manifest_state,
)
from dresscode.ingest.batch import MAX_DIGITIZE_ATTEMPTS
from dresscode.ingest.landing import (
    KeyCode,
    KeyRejected,
    Upload,
    Waiting,
    clean_up_if_committed,
    quarantine,
    quarantine_folder,
)
from dresscode.ingest.manifest import WAITING, PhotoOutcome
from dresscode.ingest.redigitize import Pending, RedigitizeResult
from dresscode.ingest.timings import BatchClock, BatchTimings
from dresscode.llm import tracing
from dresscode.registry.prompt_registry import Serving

if TYPE_CHECKING:
    from dresscode.core.connections import LLMEndpoint
    from dresscode.ingest.digitize import Digitized
    from dresscode.ingest.manifest import Answers
    from dresscode.llm.blueprints import Blueprint

# Names other modules and tests read through the stage's door.
__all__ = [
    "ACCEPTED",
    "DIGITIZE_FAILED",
    "DUPLICATE",
    "FINAL_STATUSES",
    "MAX_DIGITIZE_ATTEMPTS",
    "NEAR_DUPLICATE",
    "QUARANTINED",
    "READ_FAILED",
    "WAITING",
    "BatchResult",
    "IngestFailed",
    "KeyCode",
    "KeyRejected",
    "Pending",
    "PhotoOutcome",
    "RedigitizeResult",
    "RedigitizeTotals",
    "RunTotals",
    "Serving",
    "Upload",
    "Waiting",
    "batch_name",
    "commit_and_report",
    "discover",
    "image_path",
    "landing_keys",
    "manifest_state",
    "process_batch",
    "quarantine",
    "quarantine_folder",
    "redigitize_batch",
    "redigitize_report",
    "redigitize_selection",
    "resolve_prompt",
    "resolve_redigitize_prompt",
]

log = logging.getLogger(__name__)


class IngestFailed(AirflowFailException):
    """The run's failure rate is above the threshold: a systemic problem, not a bad photo.

    Fails the task without retries: re-adding the same batch results gives the same verdict,
    and the failed photos are retried by the next run anyway.
    """


class BatchResult(TypedDict):
    """Counts of one batch; travels through XCom to the report task."""

    batch: str
    photos: int
    accepted: int
    duplicates: int
    near_duplicates: int  # the same picture re-sent: a model call avoided each
    quarantined: dict[str, int]  # reason code -> uploads
    failed: dict[str, int]  # reason code -> uploads left in landing for the next run
    # reason -> keys left in landing untouched, not failures (landing.Waiting, "reuploaded")
    waiting: dict[str, int]
    items: int
    model_calls: int
    cached: int  # accepted photos answered from the digitize cache
    seconds: float
    timings: BatchTimings  # where the batch's time went (a load run's phase breakdown)


class RunTotals(TypedDict):
    """The run's totals (the report task's XCom and the ``wardrobe_items`` Asset event)."""

    batches: int
    photos: int
    accepted: int
    duplicates: int
    near_duplicates: int
    items: int
    model_calls: int
    cached: int
    quarantined: dict[str, int]
    failed: dict[str, int]
    waiting: dict[str, int]
    failure_rate: float


Summed = Literal[
    "photos", "accepted", "duplicates", "near_duplicates", "items", "model_calls", "cached"
]
_SUMMED: tuple[Summed, ...] = typing.get_args(Summed)


def resolve_prompt() -> Serving:
    """The registry's production digitizer, resolved once per run (a promotion or rollback
    applies from the next run on)."""
    from dresscode.ingest.digitize import PROMPT_NAME
    from dresscode.registry import prompt_registry as registry

    return registry.serving(PROMPT_NAME)


def discover(settings: Settings | None = None) -> list[list[str]]:
    """New uploads in batches; uploads whose manifest row is final are only cleaned up.

    Keys are portable (valid UTF-8 whatever the file name), so the batches always go through
    XCom. Each key is handled on its own: one that cannot be cleaned up stays in landing and
    is logged, the others go on (only when every key fails is it the storage, and the task
    fails).
    """
    settings = settings or get_settings()
    keys = landing_keys(settings)
    state = manifest_state(settings, keys=keys, days=lookback_days(settings))
    todo: list[str] = []
    errors: list[tuple[str, Exception]] = []
    for key in keys:
        try:
            if not clean_up_if_committed(key, state, settings):
                todo.append(key)
        except Exception as exc:  # one key's trouble is that key's, not the run's
            log.warning("could not check %s against the manifest: %s", printable_key(key), exc)
            errors.append((key, exc))
    if errors and len(errors) == len(keys):
        raise errors[0][1]
    capped = todo[: settings.ingest_max_photos_per_run]
    if len(todo) > len(capped):
        log.warning(
            "%d uploads waiting; this run takes %d (DRESSCODE_INGEST_MAX_PHOTOS_PER_RUN)",
            len(todo),
            len(capped),
        )
    # Bucket by bucket (after the cap, which keeps landing's order): a batch's items land in
    # one or two user_bucket partitions of wardrobe_items, not in one small file of each.
    capped.sort(key=lambda k: (delta.user_order(landing_owner(k) or ""), k))
    size = settings.ingest_batch_size
    batches = [capped[i : i + size] for i in range(0, len(capped), size)]
    log.info("discovered %d new uploads in %d batches of up to %d", len(capped), len(batches), size)
    return batches


def lookback_days(settings: Settings) -> list[str]:
    """The manifest partitions ingest reads: the newest ``DRESSCODE_INGEST_MANIFEST_LOOKBACK_DAYS``
    days of partitions (from the table's log: no data is read to list them).

    Enough for every question ingest asks about a key in landing, without reading history: a
    key committed but not yet removed, or whose model call failed, was processed by one of the
    last runs (every 15 minutes; a failing photo is quarantined after three). A key whose last
    row is older is an upload sent again under a reused id after landing was cleared — new
    bytes, processed as new; the same bytes again are caught as a duplicate of the user's
    photo (:func:`tables.accepted_photos_of` reads the user's whole history).
    """
    from dresscode.core import lake

    days = lake.partition_days(tables.MANIFESTS.name, settings)
    if not days:
        return []
    first = date.fromisoformat(max(days)) - timedelta(days=settings.ingest_manifest_lookback_days)
    return [d for d in days if d >= first.isoformat()]


def batch_name(keys: list[str]) -> str:
    return "batch-" + hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


def process_batch(
    keys: list[str],
    *,
    run_id: str,
    day: str,
    serving: Serving | None = None,
    endpoint: LLMEndpoint | None = None,
    blueprint: Blueprint | None = None,
    settings: Settings | None = None,
    label: str = "batch",
) -> BatchResult:
    """Ingest one batch of landing keys end to end.

    The blueprint is ``blueprint``, else the one ``serving`` names (checked against git), else
    the digitizer's current one.
    """
    from dresscode.ingest import batch, digitize, manifest
    from dresscode.llm.hook import DresscodeLLMHook

    started = time.monotonic()
    clock = BatchClock()  # setup below includes resolving the endpoint and the blueprint
    settings = settings or get_settings()
    endpoint = endpoint or DresscodeLLMHook(settings=settings).endpoint()
    if blueprint is None and serving is not None:
        from dresscode.registry import prompt_registry as registry

        blueprint = registry.blueprint_for(serving)
    blueprint = blueprint or digitize.current_blueprint()
    state = manifest_state(settings, keys=keys, days=lookback_days(settings))
    # A retried task gets the same keys: what an earlier try committed is only cleaned up,
    # and counted when that try was of this run (it failed before it could report).
    name = batch_name(keys)
    committed = {key for key in keys if clean_up_if_committed(key, state, settings)}
    earlier = [
        PhotoOutcome.of(state[k]) for k in sorted(committed) if state[k].get("run_id") == run_id
    ]
    keys = [key for key in keys if key not in committed]
    seen = manifest.seen_photos(keys, settings)
    fingerprints = manifest.earlier_fingerprints(keys, settings)
    clock.mark("setup", time.monotonic() - started)

    async def run() -> tuple[list[PhotoOutcome], list[Digitized], Answers]:
        async with DresscodeLLMHook.client_for(endpoint, settings) as client:
            return await batch.process(
                keys, client, blueprint, seen, state, day, settings, run_id, label, fingerprints, clock
            )  # fmt: skip

    outcomes, calls, answers = asyncio.run(run()) if keys else ([], [], {})
    batch.give_up_on_repeated_failures(outcomes, day, settings)
    committing = time.monotonic()
    changed = manifest.commit(name, outcomes, calls, answers, blueprint, day, settings)
    clock.mark("commit", time.monotonic() - committing)
    seconds = time.monotonic() - started
    result = _count(name, outcomes + earlier, len(calls), seconds, clock.timings())
    if changed:
        result["waiting"]["reuploaded"] = len(changed)
    log.info(
        "%s: %d photos, %d ok, %d duplicates, %d near-duplicates (model calls avoided), %s quarantined, %s failed, %s left waiting, %d items, %d model calls (%d cached), %.1f photos/s",
        label,
        result["photos"],
        result["accepted"],
        result["duplicates"],
        result["near_duplicates"],
        _fmt_counts(result["quarantined"]),
        _fmt_counts(result["failed"]),
        _fmt_counts(result["waiting"]),
        result["items"],
        result["model_calls"],
        result["cached"],
        result["photos"] / max(result["seconds"], 1e-9),
    )
    tracing.flush()  # the batch's sampled calls as MLflow traces; never raises
    return result


def _count(
    name: str,
    outcomes: list[PhotoOutcome],
    model_calls: int,
    seconds: float,
    timings: BatchTimings,
) -> BatchResult:
    result = BatchResult(
        batch=name,
        photos=sum(1 for o in outcomes if o.status != WAITING),
        accepted=0,
        duplicates=0,
        near_duplicates=0,
        quarantined={},
        failed={},
        waiting={},
        items=0,
        model_calls=model_calls,
        cached=0,
        seconds=round(seconds, 3),
        timings=timings,
    )
    quarantined: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    waiting: Counter[str] = Counter()
    for outcome in outcomes:
        if outcome.status == WAITING:
            waiting[outcome.reason_code or WAITING] += 1
            continue
        if outcome.status == tables.ACCEPTED:
            result["accepted"] += 1
            result["items"] += outcome.n_items or 0
            result["cached"] += 0 if outcome.model_called else 1
        elif outcome.status == tables.DUPLICATE:
            result["duplicates"] += 1
        elif outcome.status == tables.NEAR_DUPLICATE:
            result["near_duplicates"] += 1
        elif outcome.status == tables.QUARANTINED:
            quarantined[outcome.reason_code or "unknown"] += 1
        else:
            failed[outcome.reason_code or outcome.status] += 1
    result["quarantined"], result["failed"] = dict(quarantined), dict(failed)
    result["waiting"] = dict(waiting)
    return result


def _fmt_counts(counts: dict[str, int]) -> str:
    """``3 (truncated 2, animated 1)``: a total, then the reasons, most common first."""
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    detail = ", ".join(f"{code} {n}" for code, n in ranked)
    return f"{sum(counts.values())} ({detail})" if detail else "0"


def commit_and_report(results: list[BatchResult], settings: Settings | None = None) -> RunTotals:
    """Totals of the run; raises IngestFailed when the failure rate is above the threshold."""
    settings = settings or get_settings()
    sums: dict[Summed, int] = dict.fromkeys(_SUMMED, 0)
    quarantined: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    waiting: Counter[str] = Counter()
    for result in results:
        for key in _SUMMED:
            sums[key] += result.get(key, 0)  # results of an older release lack newer counts
        quarantined.update(result["quarantined"])
        failed.update(result["failed"])
        waiting.update(result.get("waiting", {}))  # results of an older release have none
    n_failed = sum(failed.values())
    rate = n_failed / sums["photos"] if sums["photos"] else 0.0
    totals = RunTotals(
        batches=len(results),
        photos=sums["photos"],
        accepted=sums["accepted"],
        duplicates=sums["duplicates"],
        near_duplicates=sums["near_duplicates"],
        items=sums["items"],
        model_calls=sums["model_calls"],
        cached=sums["cached"],
        quarantined=dict(quarantined),
        failed=dict(failed),
        waiting=dict(waiting),
        failure_rate=round(rate, 4),
    )
    log.info(
        "run: %d photos in %d batches: %d accepted, %d duplicates, %d near-duplicates (model calls avoided), %s quarantined, %s failed, %s left waiting in landing, %d items, %d model calls",
        totals["photos"],
        totals["batches"],
        totals["accepted"],
        totals["duplicates"],
        totals["near_duplicates"],
        _fmt_counts(quarantined),
        _fmt_counts(failed),
        _fmt_counts(waiting),
        totals["items"],
        totals["model_calls"],
    )
    if rate > settings.ingest_max_failure_rate:
        top = ", ".join(f"{code} x{n}" for code, n in failed.most_common(3))
        raise IngestFailed(
            f"{n_failed} of {totals['photos']} photos failed ({rate:.1%} > {settings.ingest_max_failure_rate:.0%} allowed); "
            f"top reasons: {top}. They stay in landing and are retried by the next run."
        )
    return totals


# --- wardrobe_redigitize ----------------------------------------------------------------------


class RedigitizeTotals(TypedDict):
    """The re-digitize run's totals (its report task's XCom)."""

    batches: int
    photos: int
    redigitized: int
    empty: int
    skipped: int
    items: int
    carried: int
    model_calls: int
    cached: int
    set_aside: dict[str, int]
    failed: dict[str, int]


RedigitizeSummed = Literal[
    "photos", "redigitized", "empty", "skipped", "items", "carried", "model_calls", "cached"
]
_REDIGITIZE_SUMMED: tuple[RedigitizeSummed, ...] = typing.get_args(RedigitizeSummed)


def resolve_redigitize_prompt(version: int | None) -> Serving:
    """The digitizer to re-digitize with: ``version`` (a registered, unblocked git version), or
    the registry's production when None.

    Refused in one sentence (no retry helps): a version not registered, or one parked by a
    rollback or a rejected approval — re-digitizing with it would undo a person's decision.
    """
    from dresscode.ingest.digitize import PROMPT_NAME
    from dresscode.registry import prompt_registry as registry

    if version is None:
        return registry.serving(PROMPT_NAME)
    known = {v.git_version: v for v in registry.versions(PROMPT_NAME)}
    info = known.get(version)
    if info is None:
        raise AirflowFailException(
            f"{PROMPT_NAME} v{version} is not registered (registered: "
            f"{', '.join(f'v{v}' for v in sorted(known)) or 'none'}); run prompt_release first."
        )
    if info.block is not None:
        raise AirflowFailException(
            f"{PROMPT_NAME} v{version} is blocked ({info.block.describe()}); "
            "unblock it before re-digitizing with it."
        )
    blueprint = registry.load(PROMPT_NAME, version)
    log.info("re-digitizing with %s (asked for by version)", blueprint.ref)
    return Serving(
        ref=blueprint.ref, content_hash=blueprint.content_hash(), source=f"registry v{version}"
    )


def redigitize_selection(
    serving: Serving, *, users: list[str], limit: int, settings: Settings | None = None
) -> list[list[Pending]]:
    """The photos not at the serving digitizer's version, in batches of the ingest batch size."""
    from dresscode.ingest import redigitize
    from dresscode.llm import blueprints

    settings = settings or get_settings()
    target = blueprints.resolve(serving["ref"]).version
    photos = redigitize.select(target, users=users, limit=limit, settings=settings)
    size = settings.ingest_batch_size
    return [photos[i : i + size] for i in range(0, len(photos), size)]


def redigitize_batch(
    photos: list[Pending],
    *,
    serving: Serving,
    run_id: str,
    day: str,
    settings: Settings | None = None,
    label: str = "batch",
) -> RedigitizeResult:
    """Digitize one batch of photos again with the serving digitizer and commit the new items."""
    from dresscode.ingest import redigitize
    from dresscode.llm.hook import DresscodeLLMHook
    from dresscode.registry import prompt_registry as registry

    settings = settings or get_settings()
    started = time.monotonic()
    blueprint = registry.blueprint_for(serving)
    done = redigitize.already_done(photos, blueprint.version, settings)
    todo = [p for p in photos if (p["upload_key"], p["image_sha256"]) not in done]
    if len(todo) < len(photos):
        log.info(
            "%s: %d photos done already (an earlier try or run)", label, len(photos) - len(todo)
        )
    endpoint = DresscodeLLMHook(settings=settings).endpoint()

    async def run() -> tuple[list[PhotoOutcome], list[Digitized], Answers, dict[str, str]]:
        async with DresscodeLLMHook.client_for(endpoint, settings) as client:
            return await redigitize.digitize(todo, client, blueprint, settings, label, run_id)

    outcomes, calls, answers, set_aside = asyncio.run(run()) if todo else ([], [], {}, {})
    name = redigitize.part_name(todo, outcomes, blueprint.version)
    written = redigitize.commit(name, todo, outcomes, calls, answers, blueprint, day, settings)
    result = redigitize.result_of(
        name,
        len(photos),
        len(photos) - len(todo),
        outcomes,
        set_aside,
        written,
        len(calls),
        started,
    )
    log.info(
        "%s: %d photos, %d re-digitized (%d items, %d took over an earlier item), %d answered "
        "with no items, %d done already, %s set aside, %s failed, %d model calls (%d cached)",
        label,
        result["photos"],
        result["redigitized"],
        result["items"],
        result["carried"],
        result["empty"],
        result["skipped"],
        _fmt_counts(result["set_aside"]),
        _fmt_counts(result["failed"]),
        result["model_calls"],
        result["cached"],
    )
    return result


def redigitize_report(results: list[RedigitizeResult]) -> RedigitizeTotals:
    """The run's totals; failed photos are retried by the next run, so they do not fail this one
    unless every attempted photo failed (then it is the endpoint, and the task fails)."""
    totals = RedigitizeTotals(
        batches=len(results),
        photos=0,
        redigitized=0,
        empty=0,
        skipped=0,
        items=0,
        carried=0,
        model_calls=0,
        cached=0,
        set_aside={},
        failed={},
    )
    set_aside: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for result in results:
        for key in _REDIGITIZE_SUMMED:
            totals[key] += result[key]
        set_aside.update(result["set_aside"])
        failed.update(result["failed"])
    totals["set_aside"], totals["failed"] = dict(set_aside), dict(failed)
    log.info(
        "re-digitize run: %d photos in %d batches: %d re-digitized (%d items, %d corrections "
        "can follow), %d with no items, %d done already, %s set aside, %s failed "
        "(the next run retries them), %d model calls",
        totals["photos"],
        totals["batches"],
        totals["redigitized"],
        totals["items"],
        totals["carried"],
        totals["empty"],
        totals["skipped"],
        _fmt_counts(set_aside),
        _fmt_counts(failed),
        totals["model_calls"],
    )
    attempted = totals["photos"] - totals["skipped"] - sum(set_aside.values())
    if attempted and sum(failed.values()) == attempted:
        top = ", ".join(f"{code} x{n}" for code, n in failed.most_common(3))
        raise IngestFailed(
            f"every one of {attempted} photos failed to re-digitize ({top}): the endpoint, not "
            "the photos. Nothing changed; run the DAG again once the endpoint answers."
        )
    return totals
