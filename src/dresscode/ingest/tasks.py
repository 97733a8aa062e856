"""Wardrobe ingest: landing -> validate/normalize -> digitize -> items, manifest, inference log.

Nothing is lost: an upload leaves the landing area only after its cleaned copy (or its
quarantine copy with ``reason.json``) and its manifest row exist. Photos whose model call
failed stay in landing and are retried by the next run, up to ``MAX_DIGITIZE_ATTEMPTS`` runs,
then they are quarantined as ``model_failed``.

Idempotent: the manifest says which uploads are done, so a re-run or an overlapping run skips
them; cleaned images are content-addressed; a photo digitized with the same prompt version is
answered from its cached result, not sent again; parts are named by their content.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from dresscode.core import lake
from dresscode.core.config import Settings, get_settings

if TYPE_CHECKING:
    from dresscode.core.config import LLMEndpoint
    from dresscode.ingest.digitize import Digitized
    from dresscode.llm.blueprints import Blueprint
    from dresscode.llm.client import LLMClient

log = logging.getLogger(__name__)

MAX_DIGITIZE_ATTEMPTS = 3

# Manifest statuses. Final ones leave landing; the others are retried by the next run.
ACCEPTED = "accepted"
DUPLICATE = "duplicate"
QUARANTINED = "quarantined"
DIGITIZE_FAILED = "digitize_failed"
READ_FAILED = "read_failed"
FINAL_STATUSES = frozenset({ACCEPTED, DUPLICATE, QUARANTINED})


class IngestFailed(AirflowFailException):
    """The run's failure rate is above the threshold: a systemic problem, not a bad photo.

    Fails the task without retries: re-adding the same batch results gives the same verdict,
    and the failed photos are retried by the next run anyway.
    """


@dataclass(frozen=True)
class Upload:
    """One landing object: ``<user_id>/<upload_id>.<ext>``."""

    key: str
    user_id: str
    upload_id: str
    ext: str

    @classmethod
    def parse(cls, key: str) -> Upload:
        """Parse and check a landing key; raises lake.UnsafeKey for anything odd."""
        parts = key.split("/")
        if len(parts) != 2:
            raise lake.UnsafeKey(f"Landing key {key!r} is not <user_id>/<upload_id>.<ext>.")
        user_id = lake.safe_segment(parts[0], what="user id")
        name = lake.safe_segment(parts[1], what="file name")
        upload_id, dot, ext = name.rpartition(".")
        if not dot or not upload_id:
            raise lake.UnsafeKey(f"Landing file name {name!r} has no extension.")
        return cls(key, user_id, upload_id, ext.lower())


@dataclass
class PhotoOutcome:
    """What became of one upload in this run (one manifest row)."""

    upload_key: str
    user_id: str | None
    upload_id: str | None
    status: str
    raw_sha256: str | None = None
    image_sha256: str | None = None
    reason_code: str | None = None
    reason: str | None = None
    source_format: str | None = None
    source_bytes: int | None = None
    source_width: int | None = None
    source_height: int | None = None
    width: int | None = None
    height: int | None = None
    brightness: float | None = None
    prompt_version: int | None = None
    n_items: int | None = None
    model_called: bool = False
    attempt: int = 1
    run_id: str = ""
    processed_at: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds")
    )


@dataclass
class BatchResult:
    """Counts of one batch; travels through XCom to the report task."""

    batch: str
    photos: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    items: int = 0
    model_calls: int = 0
    cached: int = 0
    seconds: float = 0.0


# --- discovery -------------------------------------------------------------------------------


def manifest_state(settings: Settings) -> dict[str, dict[str, Any]]:
    """upload_key -> its latest manifest row, plus the count of failed digitize attempts."""
    frame = lake.read_table("manifests", settings)
    if frame.empty:
        return {}
    frame = frame.sort_values("processed_at")
    failed = frame[frame["status"] == DIGITIZE_FAILED].groupby("upload_key").size().to_dict()
    latest = frame.groupby("upload_key").tail(1)
    state = {}
    for row in latest.to_dict("records"):
        row["failed_attempts"] = int(failed.get(row["upload_key"], 0))
        state[row["upload_key"]] = row
    return state


def landing_keys(settings: Settings) -> list[str]:
    """Every upload in landing, as keys relative to the landing root (feedback/ excluded)."""
    root = lake.landing(settings)
    base = str(root).rstrip("/") + "/"
    keys = []
    for path in lake.list_files(root):
        key = str(path)[len(base) :] if str(path).startswith(base) else path.name
        if key.startswith("feedback/"):
            continue
        keys.append(key)
    return keys


def discover(settings: Settings | None = None) -> list[list[str]]:
    """New uploads in batches; uploads whose manifest row is final are only cleaned up."""
    settings = settings or get_settings()
    state = manifest_state(settings)
    todo = [
        key for key in landing_keys(settings) if not _clean_up_if_committed(key, state, settings)
    ]
    capped = todo[: settings.ingest_max_photos_per_run]
    if len(todo) > len(capped):
        log.warning(
            "%d uploads waiting; this run takes %d (DRESSCODE_INGEST_MAX_PHOTOS_PER_RUN)",
            len(todo),
            len(capped),
        )
    size = settings.ingest_batch_size
    batches = [capped[i : i + size] for i in range(0, len(capped), size)]
    log.info("discovered %d new uploads in %d batches of up to %d", len(capped), len(batches), size)
    return batches


def _clean_up_if_committed(key: str, state: dict[str, dict[str, Any]], settings: Settings) -> bool:
    """Remove an upload that an earlier run (or try) committed but did not get to remove.

    Only when the landing object is the very upload its final manifest row describes: new
    bytes under a finished key (an app reusing an upload id) are a new upload. Returns True
    when the key was cleaned up and must not be processed.
    """
    row = state.get(key)
    if row is None or row["status"] not in FINAL_STATUSES:
        return False
    raw = _read_if_exists(lake.landing(settings) / key)
    if raw is None:
        # Committed and gone from landing: a retried task is handed its batch's keys again.
        log.info("upload %s is already in the manifest as %s", key, row["status"])
        return True
    recorded = row.get("raw_sha256")
    if not recorded or hashlib.sha256(raw).hexdigest() != recorded:
        log.warning("upload %s was sent again with other bytes; processing it as a new upload", key)
        return False
    log.warning(
        "upload %s is already in the manifest as %s; removing it from landing", key, row["status"]
    )
    lake.delete(lake.landing(settings) / key)
    return True


# --- one batch -------------------------------------------------------------------------------


def batch_name(keys: list[str]) -> str:
    return "batch-" + hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


def image_path(image_sha256: str, settings: Settings) -> lake.ObjectStoragePath:
    return lake.table("images", settings) / image_sha256[:2] / f"{image_sha256}.jpg"


def digitized_path(
    image_sha256: str, blueprint: Blueprint, settings: Settings
) -> lake.ObjectStoragePath:
    return (
        lake.table("digitized", settings)
        / f"{blueprint.name}@v{blueprint.version}"
        / f"{image_sha256}.json"
    )


def quarantine(
    upload: Upload | None,
    key: str,
    raw: bytes | None,
    code: str,
    message: str,
    detail: dict[str, Any],
    day: str,
    settings: Settings,
) -> None:
    """Copy the original to quarantine with a reason.json next to it (before it leaves landing)."""
    folder = lake.partition("quarantine", day, settings)
    if upload is None:
        # An unsafe key never becomes a path: file it under the hash of the key itself.
        stem = (
            folder
            / "_unsafe_keys"
            / hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        )
        name = "original"
    else:
        # The full file name, not the upload id: photo.gif and photo.webp must not collide.
        stem = folder / upload.user_id / upload.key.rpartition("/")[2]
        name = f"original.{upload.ext}"
    if raw is not None:
        lake.write_bytes(stem / name, raw)
    lake.write_json(
        stem / "reason.json",
        {"code": code, "message": message, "detail": detail, "upload_key": key},
    )


def _prepare(
    key: str, seen: dict[tuple[str, str], str], day: str, settings: Settings, run_id: str
) -> tuple[PhotoOutcome, bytes | None]:
    """Read, validate and normalize one upload; quarantine it when it is bad. Runs in a thread."""
    from dresscode.ingest import photos as images

    try:
        upload = Upload.parse(key)
    except lake.UnsafeKey as exc:
        raw = _read_if_exists(lake.landing(settings) / key)
        quarantine(None, key, raw, "unsafe_key", str(exc), {"key": repr(key)}, day, settings)
        log.warning("quarantined %r: unsafe_key", key)
        return PhotoOutcome(
            key, None, None, QUARANTINED, reason_code="unsafe_key", reason=str(exc), run_id=run_id
        ), None
    try:
        raw = lake.read_bytes(lake.landing(settings) / key)
    except Exception as exc:  # a storage hiccup: keep the upload in landing, retry next run
        log.warning("could not read %s: %s", key, exc)
        return PhotoOutcome(
            key,
            upload.user_id,
            upload.upload_id,
            READ_FAILED,
            reason_code="read_failed",
            reason=str(exc)[:200],
            run_id=run_id,
        ), None
    raw_sha = hashlib.sha256(raw).hexdigest()
    base = {
        "user_id": upload.user_id,
        "upload_id": upload.upload_id,
        "raw_sha256": raw_sha,
        "source_bytes": len(raw),
        "run_id": run_id,
    }
    try:
        photo = images.normalize(
            raw,
            filename=key,
            long_edge=settings.image_long_edge,
            quality=settings.image_jpeg_quality,
            max_bytes=settings.image_max_bytes,
            max_pixels=settings.image_max_pixels,
            allowed_formats=settings.image_formats,
        )
    except images.Rejected as rej:
        quarantine(upload, key, raw, rej.code.value, rej.message, rej.detail, day, settings)
        log.warning("quarantined %s: %s (%s)", key, rej.code.value, rej.message)
        return PhotoOutcome(
            key, status=QUARANTINED, reason_code=rej.code.value, reason=rej.message, **base
        ), None
    lake.write_bytes(image_path(photo.sha256, settings), photo.jpeg)
    outcome = PhotoOutcome(
        key,
        status=ACCEPTED,
        image_sha256=photo.sha256,
        source_format=photo.source_format,
        source_width=photo.source_width,
        source_height=photo.source_height,
        width=photo.width,
        height=photo.height,
        brightness=round(photo.brightness, 2),
        **base,
    )
    # The same user sending the same photo again (same bytes, or the same picture with other
    # metadata) is a duplicate: recorded, not digitized twice. Other users' copies are theirs.
    first = seen.setdefault((upload.user_id, raw_sha), key)
    first = first if first != key else seen.setdefault((upload.user_id, photo.sha256), key)
    if first != key:
        outcome.status = DUPLICATE
        outcome.reason = f"same photo as {first}"
        return outcome, None
    return outcome, photo.jpeg


def _read_if_exists(path: lake.ObjectStoragePath) -> bytes | None:
    """The object's bytes, or None when it does not exist.

    Any other error (S3 unreachable) propagates: taken for "missing", it would make a
    committed upload look new (processed twice) or a saved answer look unsaved (asked again).
    """
    try:
        return lake.read_bytes(path)
    except FileNotFoundError:
        return None


class Progress:
    """Logs n of N, rate and ETA at most every ``every_s`` seconds."""

    def __init__(self, label: str, total: int, every_s: float = 10.0) -> None:
        self.label, self.total, self.every_s = label, total, every_s
        self.started = self.last = time.monotonic()

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if done < self.total and now - self.last < self.every_s:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        log.info(
            "%s: %d/%d photos, %.1f photos/s, ETA %s",
            self.label,
            done,
            self.total,
            rate,
            _fmt_seconds(eta),
        )


def _fmt_seconds(seconds: float) -> str:
    if seconds == float("inf"):
        return "unknown"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


async def _process(
    keys: list[str],
    client: LLMClient,
    blueprint: Blueprint,
    seen: dict[tuple[str, str], str],
    state: dict[str, dict[str, Any]],
    day: str,
    settings: Settings,
    run_id: str,
    label: str,
) -> tuple[list[PhotoOutcome], list[Digitized], dict[str, list[dict[str, Any]]]]:
    """Normalize in a thread pool and digitize as soon as each photo is ready (CPU and GPU overlap)."""
    loop = asyncio.get_running_loop()
    progress = Progress(label, len(keys))
    done = 0
    calls: list[Digitized] = []
    answers: dict[str, list[dict[str, Any]]] = {}

    async def one(key: str, pool: ThreadPoolExecutor) -> PhotoOutcome:
        nonlocal done
        outcome, jpeg = await loop.run_in_executor(pool, _prepare, key, seen, day, settings, run_id)
        if outcome.status == ACCEPTED and jpeg is not None:
            await _digitize_outcome(
                outcome, jpeg, client, blueprint, state, settings, calls, answers
            )
        done += 1
        progress(done)
        return outcome

    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        try:
            outcomes = await asyncio.gather(*(one(k, pool) for k in keys))
        except BaseException:
            # Storage or the model client failed the batch: drop the queued photos instead of
            # working through them (each would retry the dead endpoint) before the task fails.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return list(outcomes), calls, answers


async def _digitize_outcome(
    outcome: PhotoOutcome,
    jpeg: bytes,
    client: LLMClient,
    blueprint: Blueprint,
    state: dict[str, dict[str, Any]],
    settings: Settings,
    calls: list[Digitized],
    answers: dict[str, list[dict[str, Any]]],
) -> None:
    """Digitize one accepted photo, or take its cached answer for this prompt version.

    The photo's items go into ``answers`` (image sha256 -> items) for the commit.
    """
    from dresscode.ingest.digitize import digitize_photo

    outcome.prompt_version = blueprint.version
    cache = digitized_path(outcome.image_sha256 or "", blueprint, settings)
    cached = _read_if_exists(cache)
    if cached is not None:
        answers[outcome.image_sha256 or ""] = json.loads(cached)["items"]
        outcome.n_items = len(answers[outcome.image_sha256 or ""])
        return
    result = await digitize_photo(client, blueprint, outcome.image_sha256, jpeg)
    calls.append(result)
    outcome.model_called = True
    if result.ok:
        outcome.n_items = len(result.items)
        answers[outcome.image_sha256 or ""] = result.items
        lake.write_json(
            cache,
            {
                "items": result.items,
                "request_id": result.record["request_id"],
                "prompt": blueprint.ref,
            },
        )
        return
    previous = state.get(outcome.upload_key, {}).get("failed_attempts", 0)
    outcome.attempt = previous + 1
    record = result.record
    outcome.reason_code = record["error_class"] or "model_failed"
    if record["parse_ok"] is None:  # no answer at all: the endpoint failed the client's retries
        what = (
            f"model call failed: {outcome.reason_code} (HTTP {record['http_status'] or '-'}) "
            f"after {record['attempts']} attempt(s)"
        )
    else:
        what = f"model answer unusable: {outcome.reason_code}"
    outcome.reason = (
        f"{what}; ingest run {outcome.attempt} of {MAX_DIGITIZE_ATTEMPTS}, the next run retries"
    )
    outcome.status = DIGITIZE_FAILED


def process_batch(
    keys: list[str],
    *,
    run_id: str,
    day: str,
    endpoint: LLMEndpoint | None = None,
    blueprint: Blueprint | None = None,
    settings: Settings | None = None,
    label: str = "batch",
) -> dict[str, Any]:
    """Ingest one batch of landing keys end to end. Returns BatchResult as a dict (XCom)."""
    from dresscode.core.config import llm_endpoint
    from dresscode.ingest import digitize

    settings = settings or get_settings()
    endpoint = endpoint or llm_endpoint(settings=settings)
    blueprint = blueprint or digitize.current_blueprint()
    started = time.monotonic()
    state = manifest_state(settings)
    # A retried task gets the same keys: what an earlier try committed is only cleaned up,
    # and counted when that try was of this run (it failed before it could report).
    name = batch_name(keys)
    committed = {key for key in keys if _clean_up_if_committed(key, state, settings)}
    earlier = [_outcome_of(state[k]) for k in sorted(committed) if state[k].get("run_id") == run_id]
    keys = [key for key in keys if key not in committed]
    seen = _seen_photos(state, keys)

    async def run() -> tuple[list[PhotoOutcome], list[Digitized], dict[str, list[dict[str, Any]]]]:
        async with digitize.make_client(endpoint, settings) as client:
            return await _process(
                keys, client, blueprint, seen, state, day, settings, run_id, label
            )

    outcomes, calls, answers = asyncio.run(run()) if keys else ([], [], {})
    _give_up_on_repeated_failures(outcomes, day, settings)
    _commit(name, outcomes, calls, answers, blueprint, day, settings)
    result = _count(name, outcomes + earlier, calls, time.monotonic() - started)
    log.info(
        "%s: %d photos, %d ok, %d duplicates, %s quarantined, %s failed, %d items, %d model calls (%d cached), %.1f photos/s",
        label,
        result.photos,
        result.accepted,
        result.duplicates,
        _fmt_counts(result.quarantined),
        _fmt_counts(result.failed),
        result.items,
        result.model_calls,
        result.cached,
        result.photos / max(result.seconds, 1e-9),
    )
    return asdict(result)


def _outcome_of(row: dict[str, Any]) -> PhotoOutcome:
    """A manifest row back as the outcome it recorded (Parquet's NaN read as None)."""
    values = {f.name: row.get(f.name) for f in fields(PhotoOutcome)}
    return PhotoOutcome(**{k: None if _missing(v) else v for k, v in values.items()})


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _fmt_counts(counts: dict[str, int]) -> str:
    """``3 (truncated 2, animated 1)``: a total, then the reasons, most common first."""
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    detail = ", ".join(f"{code} {n}" for code, n in ranked)
    return f"{sum(counts.values())} ({detail})" if detail else "0"


def _seen_photos(state: dict[str, dict[str, Any]], keys: list[str]) -> dict[tuple[str, str], str]:
    """(user_id, raw or image sha256) -> the upload that first brought that photo."""
    batch = set(keys)
    seen = {}
    for key, row in state.items():
        if row["status"] != ACCEPTED or key in batch:
            continue
        for sha in (row.get("raw_sha256"), row.get("image_sha256")):
            if sha:
                seen[(row["user_id"], sha)] = key
    return seen


def _give_up_on_repeated_failures(
    outcomes: list[PhotoOutcome], day: str, settings: Settings
) -> None:
    """After MAX_DIGITIZE_ATTEMPTS failed runs, a photo goes to quarantine as model_failed."""
    for outcome in outcomes:
        if outcome.status == DIGITIZE_FAILED and outcome.attempt >= MAX_DIGITIZE_ATTEMPTS:
            upload = Upload.parse(outcome.upload_key)
            raw = lake.read_bytes(lake.landing(settings) / outcome.upload_key)
            message = f"The model gave no usable answer in {outcome.attempt} runs (last: {outcome.reason_code})."
            quarantine(
                upload,
                outcome.upload_key,
                raw,
                "model_failed",
                message,
                {"last_error": outcome.reason_code},
                day,
                settings,
            )
            outcome.status, outcome.reason_code, outcome.reason = (
                QUARANTINED,
                "model_failed",
                message,
            )


def _commit(
    name: str,
    outcomes: list[PhotoOutcome],
    calls: list[Digitized],
    answers: dict[str, list[dict[str, Any]]],
    blueprint: Blueprint,
    day: str,
    settings: Settings,
) -> None:
    """Write items, inference log and manifest atomically; only then clear landing."""
    from dresscode.ingest.digitize import item_id

    if not outcomes:
        return

    items = []
    for outcome in outcomes:
        if outcome.status == ACCEPTED and outcome.n_items:
            sha, user = outcome.image_sha256 or "", outcome.user_id or ""
            items.extend(
                {
                    "item_id": item_id(user, sha, i, blueprint),
                    "user_id": user,
                    "image_sha256": sha,
                    "upload_key": outcome.upload_key,
                    "prompt_version": blueprint.version,
                    **item,
                }
                for i, item in enumerate(answers[sha])
            )
    # Parts are named by the batch's keys *and* outcomes: a retried batch replaces its own part,
    # a later batch with the same keys (an upload id reused for a new photo) adds a new one.
    part = name + "-" + _outcome_hash(outcomes)
    if items:
        lake.write_parquet("wardrobe_items", day, part, [_flatten_item(i) for i in items], settings)
    if calls:
        ids = "\n".join(sorted(c.record["request_id"] for c in calls))
        calls_part = "calls-" + hashlib.sha256(ids.encode()).hexdigest()[:16]
        lake.write_parquet("inference_log", day, calls_part, [c.record for c in calls], settings)
    lake.write_parquet(
        "manifests",
        day,
        part,
        [asdict(o) for o in outcomes],
        settings,
    )
    for outcome in outcomes:
        if outcome.status in FINAL_STATUSES:
            lake.delete(lake.landing(settings) / outcome.upload_key)


def _outcome_hash(outcomes: list[PhotoOutcome]) -> str:
    # A retried batch with the same outcomes replaces its parts; a later run with different
    # outcomes (a retried model failure that now succeeded, a new photo under a reused key)
    # adds new ones.
    sig = "\n".join(
        sorted(f"{o.upload_key}|{o.status}|{o.attempt}|{o.image_sha256}" for o in outcomes)
    )
    return hashlib.sha256(sig.encode()).hexdigest()[:12]


def _flatten_item(item: dict[str, Any]) -> dict[str, Any]:
    """Parquet-friendly item row: colours as parallel lists, seasons as a list."""
    flat = dict(item)
    colors = flat.pop("colors", [])
    flat["color_names"] = [c["name"] for c in colors]
    flat["color_hexes"] = [c["hex"] for c in colors]
    flat["seasons"] = list(flat.get("seasons", []))
    return flat


def _count(
    name: str, outcomes: list[PhotoOutcome], calls: list[Digitized], seconds: float
) -> BatchResult:
    result = BatchResult(batch=name, photos=len(outcomes), seconds=round(seconds, 3))
    quarantined: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for outcome in outcomes:
        if outcome.status == ACCEPTED:
            result.accepted += 1
            result.items += outcome.n_items or 0
            result.cached += 0 if outcome.model_called else 1
        elif outcome.status == DUPLICATE:
            result.duplicates += 1
        elif outcome.status == QUARANTINED:
            quarantined[outcome.reason_code or "unknown"] += 1
        else:
            failed[outcome.reason_code or outcome.status] += 1
    result.quarantined, result.failed = dict(quarantined), dict(failed)
    result.model_calls = len(calls)
    return result


# --- the run ---------------------------------------------------------------------------------


def commit_and_report(
    results: list[dict[str, Any]], settings: Settings | None = None
) -> dict[str, Any]:
    """Totals of the run; raises IngestFailed when the failure rate is above the threshold."""
    settings = settings or get_settings()
    totals: dict[str, Any] = {
        "batches": len(results),
        "photos": 0,
        "accepted": 0,
        "duplicates": 0,
        "items": 0,
        "model_calls": 0,
        "cached": 0,
    }
    quarantined: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for result in results:
        for key in ("photos", "accepted", "duplicates", "items", "model_calls", "cached"):
            totals[key] += result[key]
        quarantined.update(result["quarantined"])
        failed.update(result["failed"])
    totals["quarantined"] = dict(quarantined)
    totals["failed"] = dict(failed)
    n_failed = sum(failed.values())
    rate = n_failed / totals["photos"] if totals["photos"] else 0.0
    totals["failure_rate"] = round(rate, 4)
    log.info(
        "run: %d photos in %d batches: %d accepted, %d duplicates, %s quarantined, %s failed, %d items, %d model calls",
        totals["photos"],
        totals["batches"],
        totals["accepted"],
        totals["duplicates"],
        _fmt_counts(quarantined),
        _fmt_counts(failed),
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


def summarize(settings: Settings | None = None) -> dict[str, Any]:
    """What the lake holds for this stage (the ``make up`` summary reads it)."""
    settings = settings or get_settings()
    state = manifest_state(settings)
    statuses = Counter(row["status"] for row in state.values())
    reasons = Counter(row["reason_code"] for row in state.values() if row["status"] == QUARANTINED)
    items = lake.read_table("wardrobe_items", settings, columns=["item_id"])
    calls = lake.read_table("inference_log", settings, columns=["purpose", "error_class"])
    digitize_calls = calls[calls["purpose"] == "digitize"] if not calls.empty else calls
    return {
        "uploads": len(state),
        "accepted": statuses.get(ACCEPTED, 0),
        "duplicates": statuses.get(DUPLICATE, 0),
        "quarantined": dict(reasons.most_common()),
        "waiting_retry": statuses.get(DIGITIZE_FAILED, 0) + statuses.get(READ_FAILED, 0),
        "items": int(items["item_id"].nunique()) if not items.empty else 0,
        "model_calls": len(digitize_calls),
        "model_call_errors": int(digitize_calls["error_class"].notna().sum())
        if not digitize_calls.empty
        else 0,
        "landing_left": len(landing_keys(settings)),
    }
