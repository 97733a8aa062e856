"""Golden candidates: photos whose corrected labels wait for a human to accept them.

Each photo's newest corrected labels are staged as a ``pending`` row of ``golden_candidates``;
a photo is staged again only when its labels changed since its latest row, accepted or not.
Accepting (``dresscode golden accept``: writing the photo and its labels in the golden-set
format) is :func:`dresscode.registry.golden.accept_candidates`; the table's reader and its
statuses are defined there, next to the golden set they feed.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypedDict

from dresscode.core import lake, tables
from dresscode.core.config import Settings, get_settings
from dresscode.feedback.events import cell_text, iso_utc
from dresscode.feedback.labels import digest_of, latest_corrected_labels, latest_rows
from dresscode.registry.golden import ACCEPTED, PENDING, latest_candidates

log = logging.getLogger(__name__)


class Staged(TypedDict):
    """What one staging pass did, and the review queue after it."""

    staged: int
    pending: int
    accepted: int
    missing_photo: int  # photos with corrected labels but no images/ copy: not staged


def stage(*, day: str, now: datetime | None = None, settings: Settings | None = None) -> Staged:
    """Stage each photo's newest corrected labels as a pending golden candidate.

    One candidate per photo (the user whose corrections are newest wins); a photo is staged
    again only when its labels changed since its latest candidate row — accepted or not.
    """
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    labels = latest_corrected_labels(settings)
    if labels.empty:
        log.info("golden candidates: no corrected labels yet")
        return Staged(staged=0, pending=0, accepted=0, missing_photo=0)
    labels = latest_rows(labels, ["image_sha256"], ["last_event_time", "computed_at"])
    current = latest_candidates(settings)
    latest = {r["image_sha256"]: r for r in current.to_dict("records")} if not current.empty else {}
    rows, missing = [], 0
    for row in labels.to_dict("records"):
        sha = row["image_sha256"]
        digest = hashlib.sha256(row["items_json"].encode()).hexdigest()
        before = latest.get(sha, {})
        if before.get("labels_digest") == digest:
            continue
        if not lake.exists(tables.image_path(sha, settings)):
            log.warning("photo %s: missing_photo (no images/ copy); not staged", sha[:12])
            missing += 1
            continue
        rows.append(_candidate(row, digest, now, revision=int(before.get("revision", 0)) + 1))
    if rows:
        part = "staged-" + digest_of(f"{r['labels_digest']}:{r['revision']}" for r in rows)[:16]
        lake.write_parquet("golden_candidates", day, part, rows, settings)
    state = latest_candidates(settings)
    statuses = Counter(state["status"]) if not state.empty else Counter()
    result = Staged(
        staged=len(rows),
        pending=statuses.get(PENDING, 0),
        accepted=statuses.get(ACCEPTED, 0),
        missing_photo=missing,
    )
    log.info(
        "golden candidates: %d staged, %d pending review, %d accepted so far",
        result["staged"],
        result["pending"],
        result["accepted"],
    )
    return result


def _candidate(
    labels: Mapping[str, Any], digest: str, now: datetime, *, revision: int
) -> dict[str, Any]:
    at = iso_utc(now)
    return {
        "image_sha256": labels["image_sha256"],
        "user_id": labels["user_id"],
        "prompt_version": labels["prompt_version"],
        "items_json": labels["items_json"],
        "n_items": int(labels["n_items"]),
        "n_corrections": int(labels["n_corrections"]),
        "last_event_time": labels["last_event_time"],
        "labels_digest": digest,
        # The Delta table versions the labels were computed from ({} before they were kept).
        "lake_versions": cell_text(labels.get("lake_versions")) or "{}",
        "status": PENDING,
        "revision": revision,
        "staged_at": at,
        "updated_at": at,
        "accepted_at": None,
        "golden_id": None,
        "golden_file": None,
    }
