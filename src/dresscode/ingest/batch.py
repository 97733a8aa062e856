"""One batch of uploads, photo by photo: read, validate and normalize, then digitize.

Normalizing runs in a thread pool and each photo is digitized as soon as it is ready, so CPU
and model endpoint work overlap. A photo digitized before with the same prompt version is
answered from its cached result (``digitized/``), not sent again. A photo whose model call
failed stays in landing for the next run, up to ``MAX_DIGITIZE_ATTEMPTS`` runs, then it is
quarantined as ``model_failed``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from dresscode.core import lake, tables
from dresscode.core.config import Settings
from dresscode.ingest.landing import (
    KeyCode,
    KeyRejected,
    Upload,
    Waiting,
    hidden_max_age_s,
    is_hidden,
    landing_path,
    quarantine,
    read_if_exists,
    waiting_reason,
)
from dresscode.ingest.manifest import WAITING, Answers, PhotoOutcome
from dresscode.ingest.timings import BatchClock

if TYPE_CHECKING:
    from PIL import Image

    from dresscode.ingest.digitize import Digitized
    from dresscode.ingest.near_duplicates import Earlier, LabCache, Match
    from dresscode.llm.blueprints import Blueprint
    from dresscode.llm.client import LLMClient

log = logging.getLogger(__name__)

MAX_DIGITIZE_ATTEMPTS = 3

# (user_id, raw or image sha256) -> the upload that first brought that photo
Seen = dict[tuple[str, str], str]


def digitized_path(
    image_sha256: str, blueprint: Blueprint, settings: Settings
) -> lake.ObjectStoragePath:
    """The cached answer of one photo for one prompt version."""
    return (
        lake.table(tables.DIGITIZED.name, settings)
        / f"{blueprint.name}@v{blueprint.version}"
        / f"{image_sha256}.json"
    )


def prepare(
    key: str, seen: Seen, day: str, settings: Settings, run_id: str
) -> tuple[PhotoOutcome, bytes | None]:
    """Read, validate and normalize one upload; quarantine it when it is bad. Runs in a thread.

    Keys not ready (a writer's file in flight, a young dot file, another stage's prefix, gone)
    come back as ``WAITING``: untouched, no manifest row, reported in the batch's counts.
    """
    from dresscode.ingest import photos as images

    waiting = waiting_reason(key, settings)
    if waiting is not None:
        log.info("%s stays in landing this run: %s", lake.printable_key(key), waiting.value)
        return PhotoOutcome(
            key, None, None, WAITING, reason_code=waiting.value, run_id=run_id
        ), None
    path = landing_path(key, settings)
    try:
        if is_hidden(
            key
        ):  # a dot file older than DRESSCODE_INGEST_HIDDEN_MAX_AGE_S: not in flight any more
            raise KeyRejected(
                KeyCode.HIDDEN_FILE,
                f"Hidden file {lake.printable_key(key)!r} sat in landing for over "
                f"{hidden_max_age_s(settings):.0f} s: no upload in flight any more.",
            )
        upload = Upload.parse(key)
    except KeyRejected as exc:
        raw = read_if_exists(path)
        sha = hashlib.sha256(raw).hexdigest() if raw is not None else None
        detail = {"key": lake.printable_key(key)}
        quarantine(None, key, raw, exc.code.value, str(exc), detail, day, settings)
        log.warning("quarantined %s: %s", detail["key"], exc.code.value)
        return PhotoOutcome(
            key,
            None,
            None,
            tables.QUARANTINED,
            raw_sha256=sha,
            source_bytes=None if raw is None else len(raw),
            reason_code=exc.code.value,
            reason=str(exc),
            run_id=run_id,
        ), None
    try:
        raw = lake.read_bytes(path)
    except FileNotFoundError:
        return PhotoOutcome(key, None, None, WAITING, reason_code=Waiting.GONE, run_id=run_id), None
    except Exception as exc:  # a storage hiccup: keep the upload in landing, retry next run
        log.warning("could not read %s: %s", key, exc)
        return PhotoOutcome(
            key,
            upload.user_id,
            upload.upload_id,
            tables.READ_FAILED,
            reason_code="read_failed",
            reason=str(exc)[:200],
            run_id=run_id,
        ), None
    raw_sha = hashlib.sha256(raw).hexdigest()
    try:
        photo = images.normalize(
            raw,
            filename=key,
            long_edge=settings.image_long_edge,
            quality=settings.image_jpeg_quality,
            max_bytes=settings.image_max_bytes,
            max_pixels=settings.image_max_pixels,
            allowed_formats=settings.image_formats,
            max_jpeg_scans=settings.image_max_jpeg_scans,
            max_decode_s=settings.image_max_decode_s,
        )
    except images.Rejected as rej:
        quarantine(upload, key, raw, rej.code.value, rej.message, rej.detail, day, settings)
        log.warning("quarantined %s: %s (%s)", key, rej.code.value, rej.message)
        return PhotoOutcome(
            key,
            upload.user_id,
            upload.upload_id,
            tables.QUARANTINED,
            raw_sha256=raw_sha,
            source_bytes=len(raw),
            run_id=run_id,
            reason_code=rej.code.value,
            reason=rej.message,
        ), None
    lake.write_bytes(tables.image_path(photo.sha256, settings), photo.jpeg)
    outcome = PhotoOutcome(
        key,
        upload.user_id,
        upload.upload_id,
        tables.ACCEPTED,
        raw_sha256=raw_sha,
        source_bytes=len(raw),
        run_id=run_id,
        image_sha256=photo.sha256,
        source_format=photo.source_format,
        source_width=photo.source_width,
        source_height=photo.source_height,
        width=photo.width,
        height=photo.height,
        brightness=round(photo.brightness, 2),
    )
    # The same user sending the same photo again (same bytes, or the same picture with other
    # metadata) is a duplicate: recorded, not digitized twice. Other users' copies are theirs.
    first = seen.setdefault((upload.user_id, raw_sha), key)
    first = first if first != key else seen.setdefault((upload.user_id, photo.sha256), key)
    if first != key:
        outcome.status = tables.DUPLICATE
        outcome.reason = f"same photo as {first}"
        outcome.duplicate_of = first
        return outcome, None
    if settings.ingest_near_duplicate_bits:
        from dresscode.ingest import near_duplicates

        picture = near_duplicates.open_clean(photo.jpeg)
        outcome.phash = near_duplicates.fingerprint(picture).encode()
    return outcome, photo.jpeg


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
            fmt_seconds(eta),
        )


def fmt_seconds(seconds: float) -> str:
    if seconds == float("inf"):
        return "unknown"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


async def process(
    keys: list[str],
    client: LLMClient,
    blueprint: Blueprint,
    seen: Seen,
    state: dict[str, tables.ManifestEntry],
    day: str,
    settings: Settings,
    run_id: str,
    label: str,
    earlier: dict[str, list[Earlier]] | None = None,
    clock: BatchClock | None = None,
) -> tuple[list[PhotoOutcome], list[Digitized], Answers]:
    """Normalize in a thread pool and digitize as soon as each photo is ready (CPU and GPU overlap).

    ``earlier`` are the users' earlier photos (:func:`manifest.earlier_fingerprints`): a
    near-duplicate of one of them, or of a photo before it in this batch, is not digitized.
    Within a batch a photo is judged after the user's photos before it in ``keys``, so of two
    near-duplicates in one batch the second is the duplicate, whichever finished first.
    ``clock`` collects normalization CPU time and the model calls' times.
    """
    loop = asyncio.get_running_loop()
    clock = clock or BatchClock()
    timed_prepare = clock.cpu(prepare)
    progress = Progress(label, len(keys))
    done = 0
    calls: list[Digitized] = []
    answers: Answers = {}
    judged: dict[str, asyncio.Future[PhotoOutcome]] = {key: loop.create_future() for key in keys}
    position = {key: i for i, key in enumerate(keys)}
    labs: LabCache | None = None
    if settings.ingest_near_duplicate_bits:
        from dresscode.ingest.near_duplicates import LabCache

        labs = LabCache()  # the users' earlier photos, read once for the whole batch

    async def judge(outcome: PhotoOutcome, jpeg: bytes | None, pool: ThreadPoolExecutor) -> None:
        """Mark ``outcome`` near_duplicate when it repeats one of the user's earlier photos."""
        if outcome.status != tables.ACCEPTED or not outcome.phash or jpeg is None:
            return
        user = outcome.user_id or ""
        before = [
            await judged[k]
            for k in keys[: position[outcome.upload_key]]
            if k.partition("/")[0] == user
        ]
        candidates = list((earlier or {}).get(user, [])) + [
            _as_earlier(o) for o in before if o.status == tables.ACCEPTED and o.phash
        ]
        candidates = candidates[-settings.ingest_near_duplicate_candidates :]  # the newest
        if not candidates:
            return
        match = await loop.run_in_executor(
            pool, near_duplicate_of, jpeg, outcome.phash, candidates, settings, labs
        )
        if match is not None:
            outcome.status = tables.NEAR_DUPLICATE
            outcome.duplicate_of = match.earlier
            outcome.reason = (
                f"near-duplicate of {match.earlier} ({match.distance} pHash bits apart, "
                f"colour difference {match.colour_difference} ΔE): not sent to the model"
            )

    async def one(key: str, pool: ThreadPoolExecutor) -> PhotoOutcome:
        nonlocal done
        verdict = judged[key]  # the user's later photos in this batch wait for it
        try:
            outcome, jpeg = await loop.run_in_executor(
                pool, timed_prepare, key, seen, day, settings, run_id
            )
            await judge(outcome, jpeg, pool)
        except BaseException:
            verdict.cancel()
            raise
        verdict.set_result(outcome)
        if outcome.status == tables.ACCEPTED and jpeg is not None:
            called = await digitize_accepted(
                outcome, jpeg, client, blueprint, state, settings, calls, answers
            )
            if called is not None:  # its last attempt's time in an endpoint slot
                ended = time.time()
                clock.model_call(ended - float(called.record["latency_ms"]) / 1000.0, ended)
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


def _as_earlier(outcome: PhotoOutcome) -> Earlier:
    from dresscode.ingest.near_duplicates import Earlier, Fingerprint

    return Earlier(
        outcome.upload_key, outcome.image_sha256 or "", Fingerprint.decode(outcome.phash or "")
    )


def near_duplicate_of(
    jpeg: bytes,
    phash: str,
    candidates: list[Earlier],
    settings: Settings,
    labs: LabCache | None = None,
) -> Match | None:
    """The earlier photo a clean photo repeats, judged on the stored clean JPEGs (``labs``: the
    batch's cache of what was read). Runs in a thread."""
    from dresscode.ingest import near_duplicates

    def load(sha: str) -> Image.Image | None:
        stored = read_if_exists(tables.image_path(sha, settings))
        return None if stored is None else near_duplicates.open_clean(stored)

    return near_duplicates.find(
        near_duplicates.open_clean(jpeg),
        near_duplicates.Fingerprint.decode(phash),
        candidates,
        load,
        max_distance=settings.ingest_near_duplicate_bits,
        max_colour_difference=settings.ingest_near_duplicate_delta_e,
        labs=labs,
    )


async def digitize_accepted(
    outcome: PhotoOutcome,
    jpeg: bytes,
    client: LLMClient,
    blueprint: Blueprint,
    state: dict[str, tables.ManifestEntry],
    settings: Settings,
    calls: list[Digitized],
    answers: Answers,
) -> Digitized | None:
    """Digitize one accepted photo, or take its cached answer for this prompt version.

    The photo's items go into ``answers`` (image sha256 -> items) for the commit. Returns the
    model call's result (None: answered from the cache).
    """
    from dresscode.ingest.digitize import digitize_photo

    outcome.prompt_version = blueprint.version
    cache = digitized_path(outcome.image_sha256 or "", blueprint, settings)
    cached = read_if_exists(cache)
    if cached is not None:
        answers[outcome.image_sha256 or ""] = json.loads(cached)["items"]
        outcome.n_items = len(answers[outcome.image_sha256 or ""])
        return None
    result = await digitize_photo(client, blueprint, outcome.image_sha256 or "", jpeg)
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
        return result
    row = state.get(outcome.upload_key)
    previous = row.get("failed_attempts", 0) if row is not None else 0
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
    outcome.status = tables.DIGITIZE_FAILED
    return result


def give_up_on_repeated_failures(
    outcomes: list[PhotoOutcome], day: str, settings: Settings
) -> None:
    """After MAX_DIGITIZE_ATTEMPTS failed runs, a photo goes to quarantine as model_failed."""
    for outcome in outcomes:
        if outcome.status == tables.DIGITIZE_FAILED and outcome.attempt >= MAX_DIGITIZE_ATTEMPTS:
            upload = Upload.parse(outcome.upload_key)
            raw = read_if_exists(landing_path(outcome.upload_key, settings))
            if raw is None or hashlib.sha256(raw).hexdigest() != outcome.raw_sha256:
                # Re-uploaded (or gone) since it was read: the new bytes get their own runs.
                continue
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
                tables.QUARANTINED,
                "model_failed",
                message,
            )
