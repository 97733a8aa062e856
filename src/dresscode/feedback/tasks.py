"""The work of ``feedback_ingest``, one function per task: discover, validate_and_apply,
stage_golden_candidates, report.

The concerns live next door: :mod:`.events` (checking event lines), :mod:`.landing` (the
landing files, quarantine for what is not feedback, each file's outcome: rejected-lines
report, archive copy, event parts), :mod:`.references` (what an event may point at, per-user
duplicates), :mod:`.labels` (corrections applied -> ``corrected_labels``, the correction rate)
and :mod:`.candidates` (golden candidates). Accepting candidates into the golden set is
``dresscode.registry.golden.accept_candidates``.

Hostile input never fails the task: a line is one record (any exception while checking it is
a ``check_failed`` rejection), and a file is one unit of commit — its whole outcome is computed
before anything of it is written. Idempotent: parts are named by the source file's content
hash, events a file already contributed are its own (not duplicates) when it is processed
again, and the derived tables (``corrected_labels``, ``golden_candidates``) are reconciled — a
row is written only when what it would say differs from its latest row. Replaying a file (or
retrying a task that died half-way through its writes) changes nothing. What crosses an XCom
is a ``TypedDict``: a plain JSON dict at runtime.
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
from dresscode.feedback import candidates, labels, landing
from dresscode.feedback.candidates import Staged
from dresscode.feedback.events import (
    Event,
    FeedbackRow,
    LineChecker,
    Reason,
    Rejection,
    events_of,
    iso_utc,
    safe_text,
    split_lines,
)
from dresscode.feedback.labels import CorrectionRates
from dresscode.feedback.landing import LANDING_PREFIX, LandingFile, SetAside
from dresscode.feedback.references import LakeState, load_state, remember, resolve

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
    quarantined: list[SetAside]  # files under feedback/ that are not .jsonl: name, size, hash
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

    Files that are not ``.jsonl`` go to quarantine. Every ``.jsonl`` file's outcome is computed
    first; then each file's report, archive copy and event parts are written, then the
    corrected labels, and only then do the files leave landing.
    """
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    landed = landing.read_landing_files(keys, settings)
    quarantined = [landing.quarantine(f, why, day, settings) for f, why in landed.not_jsonl]
    files, unreadable = landed.files, landed.unreadable
    checker = LineChecker(now=now, max_future_s=settings.feedback_max_future_s)
    rejections: dict[str, list[Rejection]] = {f.sha256: [] for f in files}
    events, lines = _check_files(files, checker, rejections)
    # Only what these files' events can be about is read: their users' earlier events (the
    # duplicate check, deletions, added items), items and photos, and the suggestion days
    # they name — not the lake's history.
    users = sorted({e.user_id for e in events})
    days = sorted({str(e.fields["suggestion_day"]) for e in events if "suggestion_day" in e.fields})
    existing = events_of(users, settings)
    own = {f.sha256 for f in files}
    if not existing.empty:
        prior = existing[~existing["source_sha256"].isin(own)]
        mine = existing[existing["source_sha256"].isin(own)]
    else:
        prior, mine = existing, existing
    earlier_own = {  # (user, event id) -> (received_at, source) of this file's earlier rows
        (str(r["user_id"]), str(r["event_id"])): (str(r["received_at"]), str(r["source"]))
        for r in mine.to_dict("records")
    }
    state = load_state(prior, settings, users=users, days=days)
    rows: dict[str, list[FeedbackRow]] = {f.sha256: [] for f in files}
    received_at = iso_utc(now)
    for event in sorted(events, key=lambda e: (e.event_time, e.event_id)):
        accepted = _accept(event, state, earlier_own, received_at)
        if isinstance(accepted, Rejection):
            rejections[event.source_sha256].append(accepted)
        else:
            rows[event.source_sha256].append(accepted)

    outcomes = []
    for f in files:
        try:
            outcomes.append(
                landing.prepare(f, rows[f.sha256], rejections[f.sha256], mine, day, settings)
            )
        except Exception:  # a file-level surprise: nothing of it is written, it stays in landing
            log.exception("%s: could not be prepared; left in landing, nothing written", f.source)
            unreadable += [safe_text(k) for k in f.keys]
    reports = {}
    for outcome in outcomes:
        report = landing.commit(outcome, settings)
        if report is not None:
            reports[outcome.file.source] = report
    updated = labels.reconcile_corrected_labels(day=day, now=now, settings=settings)
    for outcome in outcomes:
        landing.remove(outcome.file, settings)
    done = [o.file for o in outcomes]
    return _summarize(done, lines, rows, rejections, reports, quarantined, updated, unreadable)


class WardrobeChanges(TypedDict):
    """The ``wardrobe_current`` Asset event's extra: the run's accepted wardrobe events."""

    item_corrected: int
    item_deleted: int
    item_added: int
    duplicate_confirmed: int  # possible duplicates the user confirmed: gone like deletions


def wardrobe_changes(applied: Applied) -> WardrobeChanges:
    """What ``validate_and_apply`` changed in users' wardrobes, for the ``wardrobe_current``
    Asset (``tables.current_wardrobes_of`` applies these events; style_features reacts)."""
    by_type = applied["by_type"]
    return WardrobeChanges(
        item_corrected=by_type.get("item_corrected", 0),
        item_deleted=by_type.get("item_deleted", 0),
        item_added=by_type.get("item_added", 0),
        duplicate_confirmed=by_type.get("duplicate_confirmed", 0),
    )


def _accept(
    event: Event,
    state: LakeState,
    earlier_own: Mapping[tuple[str, str], tuple[str, str]],
    received_at: str,
) -> FeedbackRow | Rejection:
    """The event's row (folded into the state), or why not; never raises (one record)."""
    try:
        resolved = resolve(event, state)
        if isinstance(resolved, Rejection):
            return resolved
        received, source = earlier_own.get(
            (event.user_id, event.event_id), (received_at, safe_text(event.source))
        )
        row = FeedbackRow(
            event_id=event.event_id,
            event_type=event.event_type,
            user_id=event.user_id,
            event_time=event.event_time,
            received_at=received,
            item_id=resolved["item_id"],
            image_sha256=resolved["image_sha256"],
            prompt_version=resolved["prompt_version"],
            payload=json.dumps(event.fields, sort_keys=True, ensure_ascii=False),
            source=source,
            source_sha256=event.source_sha256,
        )
        remember(state, row)
        return row
    except Exception as exc:
        log.warning("%s line %d: check_failed (%s)", safe_text(event.source), event.line, exc)
        return Rejection(
            event.source,
            event.source_sha256,
            event.line,
            Reason.CHECK_FAILED,
            f"unexpected {type(exc).__name__} while resolving the event",
            json.dumps({"event_id": event.event_id, "user_id": event.user_id}),
        )


def _check_files(
    files: list[LandingFile],
    checker: LineChecker,
    rejections: dict[str, list[Rejection]],
) -> tuple[list[Event], dict[str, int]]:
    """Schema-valid events of every file (file by file, line by line); duplicates come later."""
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
            if isinstance(checked, Rejection):
                rejections[f.sha256].append(checked)
            else:
                events.append(checked)
    return events, lines


def _summarize(
    files: list[LandingFile],
    lines: Mapping[str, int],
    rows: Mapping[str, list[FeedbackRow]],
    rejections: Mapping[str, list[Rejection]],
    reports: Mapping[str, str],
    quarantined: list[SetAside],
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
            f.source,
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
        quarantined=list(quarantined),
        unreadable=list(unreadable),
        labels_updated=updated["updated"],
        photos_with_corrections=updated["photos"],
    )
    log.info(
        "feedback: %d files, %d lines: %d events accepted %s, %d rejected %s; "
        "%d photos' labels updated; %d files not .jsonl quarantined",
        result["files"],
        result["lines"],
        result["accepted"],
        result["by_type"] or "",
        result["rejected_total"],
        result["rejected"] or "",
        result["labels_updated"],
        len(result["quarantined"]),
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
