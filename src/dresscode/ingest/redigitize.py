"""Re-digitize: existing clean photos through a newer digitizer (``wardrobe_redigitize``).

After a digitizer promotion, the photos ingested before it keep the old version's items until
they are digitized again. This module selects them, runs them through the target version and
commits the new items so that the user sees the new digitization without losing a correction:

* **Select** (:func:`select`): accepted uploads whose photo's current digitization is not the
  target version (a user filter and a limit bound the run), oldest first.
* **Digitize**: the target version's cached answer when there is one (``digitized/``), else one
  model call, through the same code as ingest (:func:`batch.digitize_accepted`).
* **Commit** (:func:`commit`): the new ``wardrobe_items`` rows, stamped with ``digitized_at``
  (readers keep a photo's newest digitization, :mod:`dresscode.core.wardrobe`), each naming
  the earlier item of the photo it takes over from (``replaces``, :func:`match`) so that a
  correction, a deletion, follows the garment; then the model calls' inference-log rows; then,
  last, one ``redigitized`` row per photo — the record that makes the next run skip it.

Idempotent: a photo with a ``redigitized`` row for the target is skipped (a retried batch, an
overlapping or a second run); a run interrupted midway finds the photos whose model call
finished in the digitize cache, so running it again makes no second call for them. A failed
call leaves the photo's items as they were, and the next run tries again. An answer with no
items also leaves the earlier items in place (logged): a new digitizer that sees nothing where
an older one saw garments is likelier wrong than the wardrobe empty.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypedDict

from dresscode.core import lake, tables
from dresscode.core.config import Settings
from dresscode.core.wardrobe import DIGITIZED_AT, REPLACES
from dresscode.ingest.manifest import Answers, PhotoOutcome, flatten_item, write_calls

if TYPE_CHECKING:
    from dresscode.ingest.digitize import Digitized
    from dresscode.llm.blueprints import Blueprint
    from dresscode.llm.client import LLMClient

log = logging.getLogger(__name__)


class Pending(TypedDict):
    """One photo to digitize again (XCom: a batch is a list of these)."""

    upload_key: str
    user_id: str
    upload_id: str | None
    image_sha256: str
    from_version: int | None  # the digitizer version of its current items


class RedigitizeResult(TypedDict):
    """What one batch did (XCom to the report task)."""

    batch: str
    photos: int
    redigitized: int  # photos whose new items are now current
    empty: int  # answered with no items: the earlier items stay
    skipped: int  # done already (a retried batch, an overlapping run)
    set_aside: dict[str, int]  # reason -> photos not attempted (image_missing)
    failed: dict[str, int]  # reason -> photos whose call failed; the next run retries
    items: int
    carried: int  # new items that took over an earlier item (its corrections follow)
    model_calls: int
    cached: int
    seconds: float


# --- select -----------------------------------------------------------------------------------


def current_versions(settings: Settings) -> dict[tuple[str, str], tuple[str, int]]:
    """(upload key, photo) -> (when, digitizer version) of its latest re-digitization."""
    columns = ["upload_key", "image_sha256", "prompt_version", "processed_at"]
    frame = lake.read_table(tables.REDIGITIZED.name, settings, columns=columns)
    latest: dict[tuple[str, str], tuple[str, int]] = {}
    for key, sha, version, at in frame.reindex(columns=columns).itertuples(index=False, name=None):
        found = latest.get((key, sha))
        if found is None or str(at) > found[0]:
            latest[(key, sha)] = (str(at), int(version))
    return latest


def select(target: int, *, users: list[str], limit: int, settings: Settings) -> list[Pending]:
    """Up to ``limit`` accepted photos (of ``users``; empty: everyone's) not at ``target``."""
    state = tables.manifest_state(settings)
    redone = current_versions(settings)
    wanted = set(users)
    rows: list[tuple[str, Pending]] = []
    for key, row in state.items():
        sha, user = row.get("image_sha256"), row.get("user_id")
        if row["status"] != tables.ACCEPTED or not isinstance(sha, str) or not user:
            continue
        if wanted and user not in wanted:
            continue
        version = _int_or_none(row.get("prompt_version"))
        at = redone.get((key, sha))
        if at is not None and at[0] > str(row["processed_at"]):
            version = at[1]
        if version == target:
            continue
        pending = Pending(
            upload_key=key,
            user_id=str(user),
            upload_id=row.get("upload_id"),
            image_sha256=sha,
            from_version=version,
        )
        rows.append((str(row["processed_at"]), pending))
    rows.sort(key=lambda r: (r[0], r[1]["upload_key"]))
    log.info(
        "%d photos are not at digitizer v%d%s; this run takes %d (limit %d)",
        len(rows),
        target,
        f" among users {sorted(wanted)}" if wanted else "",
        min(len(rows), limit),
        limit,
    )
    return [pending for _, pending in rows[:limit]]


def _int_or_none(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):  # None, NaN (a missing number read back from Parquet)
        return None
    return number


# --- digitize ---------------------------------------------------------------------------------


async def digitize(
    photos: list[Pending],
    client: LLMClient,
    blueprint: Blueprint,
    settings: Settings,
    label: str,
    run_id: str,
) -> tuple[list[PhotoOutcome], list[Digitized], Answers, dict[str, str]]:
    """Each photo through ``blueprint`` (its cache, else the model); never raises for one photo.

    Returns the outcomes (``accepted`` or ``digitize_failed``), the model calls, the answers and
    the photos set aside (upload key -> reason).
    """
    from dresscode.ingest.batch import Progress, digitize_accepted

    progress = Progress(label, len(photos))
    calls: list[Digitized] = []
    answers: Answers = {}
    set_aside: dict[str, str] = {}
    outcomes: list[PhotoOutcome] = []
    done = 0

    async def one(photo: Pending) -> None:
        nonlocal done
        path = tables.image_path(photo["image_sha256"], settings)
        try:
            jpeg = await asyncio.to_thread(lake.read_bytes, path)
        except FileNotFoundError:
            log.warning("%s: image_missing (%s); its items stay", photo["upload_key"], path)
            set_aside[photo["upload_key"]] = "image_missing"
        else:
            outcome = PhotoOutcome(
                photo["upload_key"],
                photo["user_id"],
                photo["upload_id"],
                tables.ACCEPTED,
                image_sha256=photo["image_sha256"],
                run_id=run_id,
            )
            await digitize_accepted(outcome, jpeg, client, blueprint, {}, settings, calls, answers)
            outcomes.append(outcome)
        done += 1
        progress(done)

    await asyncio.gather(*(one(p) for p in photos))
    return outcomes, calls, answers, set_aside


# --- match and commit -------------------------------------------------------------------------


def match(
    new_items: list[dict[str, Any]],
    old_items: list[tables.WardrobeItemRow],
    seen_as: dict[str, str],
) -> list[str | None]:
    """For each new item, the earlier item of the same photo it takes over from, or None.

    A pair needs the same category — the digitizer's, or the one the user corrected it to
    (``seen_as``: item id -> category now) — then shared subcategory and colours rank the
    pairs; best pairs first, each earlier item taken once.
    """
    ranked: list[tuple[float, int, int]] = []
    for i, new in enumerate(new_items):
        colours = {str(c.get("name", "")).lower() for c in new.get("colors", [])}
        for j, old in enumerate(old_items):
            category = {old.get("category"), seen_as.get(str(old.get("item_id")))}
            if new.get("category") not in category:
                continue
            theirs = {str(c).lower() for c in old.get("color_names") or []}
            overlap = len(colours & theirs) / len(colours | theirs) if colours | theirs else 0.0
            same_sub = new.get("subcategory") == old.get("subcategory")
            ranked.append((-(2.0 * same_sub + overlap), i, j))
    taken: list[str | None] = [None] * len(new_items)
    used: set[int] = set()
    for _, i, j in sorted(ranked):
        if taken[i] is None and j not in used:
            taken[i], used = str(old_items[j]["item_id"]), used | {j}
    return taken


def commit(
    name: str,
    photos: list[Pending],
    outcomes: list[PhotoOutcome],
    calls: list[Digitized],
    answers: Answers,
    blueprint: Blueprint,
    day: str,
    settings: Settings,
) -> tuple[int, int, int]:
    """Items, then the inference log, then the ``redigitized`` rows (last: the done marker).

    Returns (photos with new items, items written, items that took over an earlier one).
    """
    from dresscode.ingest.digitize import item_id

    done = [o for o in outcomes if o.status == tables.ACCEPTED]
    by_key = {p["upload_key"]: p for p in photos}
    users = sorted({p["user_id"] for p in photos})
    columns = ("item_id", "image_sha256", "category", "subcategory", "color_names")
    before = tables.wardrobes_of(users, settings, columns=columns)
    now_seen = tables.current_wardrobe_items(users, settings)
    seen_as = dict(zip(now_seen.get("item_id", []), now_seen.get("category", []), strict=True))
    rows: list[tables.WardrobeItemRow] = []
    carried = with_items = 0
    for outcome in done:
        photo, items = by_key[outcome.upload_key], answers.get(outcome.image_sha256 or "", [])
        if not items:
            log.warning(
                "%s: v%d saw no items; its earlier items stay",
                outcome.upload_key,
                blueprint.version,
            )
            continue
        old = [
            i for i in before[photo["user_id"]] if i.get("image_sha256") == photo["image_sha256"]
        ]
        replaced = match(items, old, seen_as)
        after = f"{blueprint.name}@v{photo['from_version']}"
        with_items += 1
        carried += sum(r is not None for r in replaced)
        for index, (item, old_id) in enumerate(zip(items, replaced, strict=True)):
            row = {
                "item_id": item_id(
                    photo["user_id"], photo["image_sha256"], index, blueprint, after=after
                ),
                "user_id": photo["user_id"],
                "image_sha256": photo["image_sha256"],
                "upload_key": photo["upload_key"],
                "prompt_version": blueprint.version,
                DIGITIZED_AT: outcome.processed_at,
                REPLACES: old_id,
                **item,
            }
            rows.append(flatten_item(row))
    if rows:
        lake.write_parquet(tables.WARDROBE_ITEMS.name, day, name, rows, settings)
    write_calls(calls, day, settings)
    marks = [_mark(by_key[o.upload_key], o, blueprint) for o in done]
    if marks:
        lake.write_parquet(tables.REDIGITIZED.name, day, name, marks, settings)
    return with_items, len(rows), carried


def _mark(photo: Pending, outcome: PhotoOutcome, blueprint: Blueprint) -> dict[str, Any]:
    return {
        "upload_key": photo["upload_key"],
        "user_id": photo["user_id"],
        "image_sha256": photo["image_sha256"],
        "prompt_version": blueprint.version,
        "from_version": photo["from_version"],
        "n_items": outcome.n_items,
        "model_called": outcome.model_called,
        "run_id": outcome.run_id,
        "processed_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }


def already_done(photos: list[Pending], target: int, settings: Settings) -> set[tuple[str, str]]:
    """(upload key, photo) of ``photos`` that have a ``redigitized`` row for ``target``."""
    if not photos:
        return set()
    keys = sorted({p["upload_key"] for p in photos})
    columns = ["upload_key", "image_sha256"]
    frame = lake.read_table(
        tables.REDIGITIZED.name,
        settings,
        columns=columns,
        filters=[("upload_key", "in", keys), ("prompt_version", "=", target)],
    )
    return set(frame.reindex(columns=columns).astype(str).itertuples(index=False, name=None))


def part_name(photos: list[Pending], outcomes: list[PhotoOutcome], target: int) -> str:
    """Named by the photos, the target and the outcomes: a retried batch replaces its part."""
    sig = "\n".join(
        sorted(f"{o.upload_key}|{o.image_sha256}|{o.status}" for o in outcomes)
        + sorted(p["upload_key"] for p in photos)
    )
    return f"redigitize-v{target}-" + hashlib.sha256(sig.encode()).hexdigest()[:16]


def result_of(
    name: str,
    photos: int,
    skipped: int,
    outcomes: list[PhotoOutcome],
    set_aside: dict[str, str],
    written: tuple[int, int, int],
    model_calls: int,
    started: float,
) -> RedigitizeResult:
    with_items, items, carried = written
    ok = [o for o in outcomes if o.status == tables.ACCEPTED]
    return RedigitizeResult(
        batch=name,
        photos=photos,
        redigitized=with_items,
        empty=len(ok) - with_items,
        skipped=skipped,
        set_aside=dict(Counter(set_aside.values())),
        failed=dict(
            Counter(o.reason_code or o.status for o in outcomes if o.status != tables.ACCEPTED)
        ),
        items=items,
        carried=carried,
        model_calls=model_calls,
        cached=sum(1 for o in ok if not o.model_called),
        seconds=round(time.monotonic() - started, 3),
    )
