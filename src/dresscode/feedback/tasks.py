"""The work of ``feedback_ingest``, one function per task: discover, validate_and_apply,
stage_golden_candidates, report.

The concerns live next door: :mod:`.events` (reading and checking event lines, the landing
files, the rejected-lines reports, the archive), :mod:`.references` (what an event may point
at), :mod:`.labels` (corrections applied -> ``corrected_labels``, the correction rate) and
:mod:`.candidates` (golden candidates). Accepting candidates into the golden set is
``dresscode.registry.golden.accept_candidates``.

Idempotent: parts are named by the source file's content hash, events a file already
contributed are its own (not duplicates) when it is processed again, and the derived tables
(``corrected_labels``, ``golden_candidates``) are reconciled — a row is written only when what
it would say differs from its latest row. Replaying a file changes nothing. What crosses an
XCom is a ``TypedDict``: a plain JSON dict at runtime.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TypedDict

from dresscode.core import lake
from dresscode.core.config import Settings, get_settings
from dresscode.feedback import candidates, labels
from dresscode.feedback.candidates import Staged
from dresscode.feedback.events import (
    LANDING_PREFIX,
    Event,
    FeedbackRow,
    LandingFile,
    LineChecker,
    Reason,
    Rejection,
    archive_and_remove,
    iso_utc,
    read_feedback,
    read_landing_files,
    split_lines,
    write_events,
    write_rejections,
)
from dresscode.feedback.labels import CorrectionRates
from dresscode.feedback.references import load_state, remember, resolve

log = logging.getLogger(__name__)


class Applied(TypedDict):
    """``validate_and_apply``'s result: the run's counts."""

    files: int
    lines: int
    accepted: int
    by_type: dict[str, int]  # event type -> events accepted
    rejected_total: int
    rejected: dict[str, int]  # Reason value -> lines rejected
    reports: dict[str, str]  # landing key -> its rejected-lines report
    unreadable: list[str]  # landing keys left for the next run
    labels_updated: int
    photos_with_corrections: int


class Report(TypedDict):
    """``report``'s result: the run's totals and the correction rate."""

    applied: Applied
    golden: Staged
    correction: CorrectionRates


def discover(settings: Settings | None = None) -> list[str]:
    """Every file under ``landing/feedback/``, as keys relative to the landing root."""
    settings = settings or get_settings()
    root = lake.landing(settings)
    base = str(root).rstrip("/") + "/"
    keys = [
        str(path)[len(base) :]
        for path in lake.list_files(root / LANDING_PREFIX)
        if str(path).startswith(base)
    ]
    log.info("discovered %d feedback files in %s%s/", len(keys), base, LANDING_PREFIX)
    return keys


def validate_and_apply(
    keys: Sequence[str],
    *,
    day: str,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> Applied:
    """Validate, deduplicate and apply the events of landing files; returns the run's counts.

    Outputs are committed (feedback parts, rejected-lines reports, corrected labels, the raw
    archive) before any file leaves landing.
    """
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    files, unreadable = read_landing_files(keys, settings)
    existing = read_feedback(settings)
    own = {f.sha256 for f in files}
    if not existing.empty:
        prior = existing[~existing["source_sha256"].isin(own)]
        mine = existing[existing["source_sha256"].isin(own)]
    else:
        prior, mine = existing, existing
    known = {str(r["event_id"]): r for r in prior.to_dict("records")}
    earlier_own = {str(r["event_id"]): r for r in mine.to_dict("records")}
    checker = LineChecker(now=now, max_future_s=settings.feedback_max_future_s)

    rejections: dict[str, list[Rejection]] = {f.sha256: [] for f in files}
    events, lines = _check_files(files, checker, known, rejections)
    state = load_state(prior, settings)
    rows: dict[str, list[FeedbackRow]] = {f.sha256: [] for f in files}
    received_at = iso_utc(now)
    for event in sorted(events, key=lambda e: (e.event_time, e.event_id)):
        resolved = resolve(event, state)
        if isinstance(resolved, Rejection):
            rejections[event.source_sha256].append(resolved)
            continue
        before = earlier_own.get(event.event_id, {})
        row = FeedbackRow(
            event_id=event.event_id,
            event_type=event.event_type,
            user_id=event.user_id,
            event_time=event.event_time,
            received_at=before.get("received_at", received_at),
            item_id=resolved["item_id"],
            image_sha256=resolved["image_sha256"],
            prompt_version=resolved["prompt_version"],
            payload=json.dumps(event.fields, sort_keys=True, ensure_ascii=False),
            source=before.get("source", event.source),
            source_sha256=event.source_sha256,
        )
        remember(state, row)
        rows[event.source_sha256].append(row)

    reports = {}
    for f in files:
        write_events(f, rows[f.sha256], mine, settings)
        if rejections[f.sha256]:
            reports[f.key] = write_rejections(f, rejections[f.sha256], day, settings)
    updated = labels.reconcile_corrected_labels(day=day, now=now, settings=settings)
    for f in files:
        archive_and_remove(f, settings)
    return _summarize(files, lines, rows, rejections, reports, updated, unreadable)


def _check_files(
    files: list[LandingFile],
    checker: LineChecker,
    known: Mapping[str, FeedbackRow],
    rejections: dict[str, list[Rejection]],
) -> tuple[list[Event], dict[str, int]]:
    """Schema-valid, first-seen events of every file (file by file, line by line)."""
    seen: dict[str, str] = {}
    events = []
    lines = {}
    for f in files:
        numbered = split_lines(f.data)
        lines[f.sha256] = len(numbered)
        if not numbered:
            rejections[f.sha256].append(
                Rejection(f.key, f.sha256, 0, Reason.EMPTY_FILE, "the file holds no events", "")
            )
            continue
        for n, raw in numbered:
            checked = checker.check(raw, line=n, source=f.key, sha=f.sha256)
            if isinstance(checked, Event):
                checked = _dedup(checked, raw, seen, known)
            if isinstance(checked, Rejection):
                rejections[f.sha256].append(checked)
            else:
                seen[checked.event_id] = f"{f.key}:{n}"
                events.append(checked)
    return events, lines


def _dedup(
    event: Event, raw: bytes, seen: Mapping[str, str], known: Mapping[str, FeedbackRow]
) -> Event | Rejection:
    first = seen.get(event.event_id)
    if first is None and event.event_id in known:
        row = known[event.event_id]
        first = f"{row['source']} (received {row['received_at']})"
    if first is None:
        return event
    text = raw.decode("utf-8", errors="backslashreplace")
    return Rejection(
        event.source,
        event.source_sha256,
        event.line,
        Reason.DUPLICATE_EVENT,
        f"event {event.event_id} already received from {first}",
        text,
    )


def _summarize(
    files: list[LandingFile],
    lines: Mapping[str, int],
    rows: Mapping[str, list[FeedbackRow]],
    rejections: Mapping[str, list[Rejection]],
    reports: Mapping[str, str],
    updated: Mapping[str, int],
    unreadable: list[str],
) -> Applied:
    rejected: Counter[str] = Counter()
    by_type: Counter[str] = Counter()
    for f in files:
        file_rejected = Counter(r.reason.value for r in rejections[f.sha256])
        rejected.update(file_rejected)
        by_type.update(r["event_type"] for r in rows[f.sha256])
        log.info(
            "%s: %d lines, %d accepted, %d rejected %s",
            f.key,
            lines[f.sha256],
            len(rows[f.sha256]),
            sum(file_rejected.values()),
            dict(file_rejected) or "",
        )
    result = Applied(
        files=len(files),
        lines=sum(lines.values()),
        accepted=sum(by_type.values()),
        by_type=dict(sorted(by_type.items())),
        rejected_total=sum(rejected.values()),
        rejected=dict(rejected.most_common()),
        reports=dict(reports),
        unreadable=list(unreadable),
        labels_updated=updated["updated"],
        photos_with_corrections=updated["photos"],
    )
    log.info(
        "feedback: %d files, %d lines: %d events accepted %s, %d rejected %s; %d photos' labels updated",
        result["files"],
        result["lines"],
        result["accepted"],
        result["by_type"] or "",
        result["rejected_total"],
        result["rejected"] or "",
        result["labels_updated"],
    )
    return result


def stage_golden_candidates(
    *, day: str, now: datetime | None = None, settings: Settings | None = None
) -> Staged:
    """Stage each photo's newest corrected labels as a pending golden candidate."""
    return candidates.stage(day=day, now=now, settings=settings)


def report(applied: Applied, staged: Staged, settings: Settings | None = None) -> Report:
    """The run's totals and the correction-rate metric, in one log line and one dict."""
    rates = labels.correction_rate(settings)
    summary = Report(applied=applied, golden=staged, correction=rates)
    shown = rates["correction_rate"]
    log.info(
        "feedback_ingest: %d events accepted, %d lines rejected %s; correction rate %s "
        "(%d of %d photos), item correction rate %s; golden candidates: %d staged, %d pending",
        applied.get("accepted", 0),
        applied.get("rejected_total", 0),
        applied.get("rejected") or "",
        "n/a" if shown is None else f"{shown:.1%}",
        rates["corrected_photos"],
        rates["photos"],
        "n/a" if rates["item_correction_rate"] is None else f"{rates['item_correction_rate']:.1%}",
        staged.get("staged", 0),
        staged.get("pending", 0),
    )
    return summary
