"""Which items need a vector, and embedding them in bounded, idempotent batches.

A run reads the current wardrobes of the users whose ``wardrobe_items`` or ``user_events`` rows
changed since the last complete run (:mod:`dresscode.features.embeddings.progress`: the Delta
log names the commits' files, and only their ``user_id`` column is read to find them), so an
hourly run costs what the hour changed, not the age of the lake; the first run and a model
change read every wardrobe (the backfill, capped per run).

Feast's online store (``item_embeddings``, :mod:`dresscode.features.embeddings.online`) is the
one record of what is embedded, shared by every worker: an item of those wardrobes needs a
vector when the online store has none for it, or one made by another model or recipe
(:attr:`EmbeddingModel.ref`), or from another text (``text_sha``: a user corrected the item).
That is one online read of the planned items' ids (in chunks), never of the whole store.
Everything else is up to date: a second run over the same wardrobes — on this worker or any
other — makes **zero** calls.

An item no longer in any current wardrobe (deleted, a confirmed duplicate) leaves online search:
it is written again with no vector. Feast cannot list online rows, so the candidates are the
items the lake knows of those users (digitized, or added by the user) that are not current;
one online read of those tells which still have a vector.

Each batch is one ``/v1/embeddings`` call, then one online write of the whole batch (a failed
write raises and writes nothing else, so the next run embeds those items again), then one lake
part (``item_embeddings``, the offline copy of the same rows: the drift reference and Feast's
source). A run that stops half-way keeps what it wrote and records no progress, so the next run
plans the same wardrobes and starts where it stopped. The endpoint down or slow never touches
ingest: items land without vectors and are embedded by a later run. The possible-duplicate
check (:mod:`dresscode.features.embeddings.similar`) searches the items already online and
compares the batch's own new vectors among themselves, so two copies of one garment in the
same batch find each other.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dresscode.core.config import Settings
from dresscode.features.embeddings import colours, online
from dresscode.features.embeddings.client import DimensionMismatch, EmbeddingModel, embed
from dresscode.features.embeddings.text import item_text, text_sha

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore
    from openai import OpenAI

    from dresscode.core.connections import LLMEndpoint

log = logging.getLogger(__name__)

TABLE = "item_embeddings"
WARDROBE = "wardrobe_items"
EVENTS = "user_events"
ITEM_ADDED = "item_added"


@dataclass(frozen=True)
class Todo:
    item_id: str
    user_id: str
    category: str
    colour: str
    text: str
    text_sha: str
    new: bool  # never embedded before: a candidate duplicate of the user's other items


@dataclass
class Plan:
    todo: list[Todo]
    gone: list[str]  # item ids with a vector online but in no current wardrobe
    current: int
    deferred: int  # past DRESSCODE_EMBEDDING_MAX_ITEMS_PER_RUN: the next run takes them
    up_to_date_ids: list[str] = field(default_factory=list)  # embedded already: no call
    users_read: int | None = None  # users whose wardrobes were planned (None: everyone)

    @property
    def up_to_date(self) -> int:
        return len(self.up_to_date_ids)


def first_colour(row: Mapping[str, Any]) -> str:
    names = row.get("color_names")
    if names is None or isinstance(names, str):
        return str(names or "")
    values = list(names)
    return str(values[0]) if values else ""


def plan(
    items: pd.DataFrame,
    stored: Mapping[str, tuple[str, str, str]],
    model: EmbeddingModel,
    settings: Settings,
) -> Plan:
    """What this run does, from the current wardrobes and what the online store holds for them
    (``stored``: item_id -> (user, model ref, text sha) of the current items with a vector)."""
    todo: list[Todo] = []
    current = 0
    fresh: list[str] = []
    for row in items.to_dict("records") if not items.empty else []:
        item_id, user = str(row["item_id"]), str(row["user_id"])
        current += 1
        text = item_text(
            row, max_chars=settings.embedding_max_chars, prefix=settings.embedding_text_prefix
        )
        sha = text_sha(text)
        if stored.get(item_id) == (user, model.ref, sha):
            fresh.append(item_id)
            continue
        todo.append(
            Todo(
                item_id,
                user,
                str(row.get("category") or ""),
                first_colour(row),
                text,
                sha,
                new=item_id not in stored,
            )
        )
    todo.sort(key=lambda t: (not t.new, t.user_id, t.item_id))  # new items first
    cap = settings.embedding_max_items_per_run
    return Plan(todo[:cap], [], current, max(0, len(todo) - cap), fresh)


# (the online store, a new item, its vector, the whole batch with its vectors) -> (the item it
# may repeat, cosine distance) or None: dresscode.features.embeddings.similar.duplicate_finder.
DuplicateFinder = Callable[
    [Any, Todo, list[float], Sequence[tuple[Todo, list[float]]]], tuple[str, float] | None
]


def gone_items(
    store: FeatureStore, current: set[str], settings: Settings, users: Sequence[str] | None
) -> dict[str, str]:
    """item id -> user of the items with a vector online that are in no current wardrobe.

    The candidates are the items the lake knows of ``users`` (None: everyone) that are not
    current: digitized (``wardrobe_items``) or added by the user (``user_events``), two columns
    read, then one online read of those."""
    from dresscode.core import lake

    if users is not None and not users:
        return {}
    where = [] if users is None else [("user_id", "in", sorted(users))]
    known: dict[str, str] = {}
    for table, kinds in ((WARDROBE, None), (EVENTS, [ITEM_ADDED])):
        filters = where + ([("event_type", "in", kinds)] if kinds else [])
        rows = lake.read_table(table, settings, columns=["item_id", "user_id"], filters=filters)
        for item, user in zip(rows.get("item_id", []), rows.get("user_id", []), strict=True):
            if item is not None and str(item) not in current:
                known[str(item)] = str(user)
    return {item: user for item, (user, _, _) in online.stored(store, known).items()}


def check_dimension(
    store: FeatureStore, stored: Mapping[str, tuple[str, str, str]], model: EmbeddingModel
) -> None:
    """Raise :class:`DimensionMismatch` before anything is written when the vectors online are
    not the model's size (one search over vectors of two sizes cannot be answered)."""
    for _item, _user, _category, _colour, vector in online.vectors_of(store, list(stored)[:1]):
        if len(vector) != model.dimension:
            raise DimensionMismatch(
                f"Feast's online store holds item vectors of {len(vector)} numbers, not "
                f"{model.dimension} (DRESSCODE_EMBEDDING_DIMENSION); nothing was written. To "
                "re-embed every item at the new size, take the old vectors out first: "
                "dresscode.features.embeddings.online.drop() (docs/runbooks/item_embeddings.md)."
            )


@dataclass
class BatchDone:
    embedded: int
    duplicates: list[dict[str, Any]]


def embed_batch(
    batch: list[Todo],
    client: OpenAI,
    endpoint: LLMEndpoint,
    model: EmbeddingModel,
    settings: Settings,
    day: str,
    find_duplicate: DuplicateFinder,
    store: FeatureStore,
) -> BatchDone:
    """One call, then ``store``'s online store (one write), then the lake; returns the possible
    duplicates it found."""
    import numpy as np

    from dresscode.core import lake

    vectors = embed(client, endpoint, model, [t.text for t in batch])  # raises before writes
    stamp = datetime.now(UTC)
    now = stamp.isoformat(timespec="milliseconds")
    embedded = list(zip(batch, vectors, strict=True))
    rows: list[dict[str, Any]] = []
    duplicates: list[dict[str, Any]] = []
    for t, v in embedded:
        match = find_duplicate(store, t, v, embedded) if t.new else None
        row = {
            "item_id": t.item_id,
            "user_id": t.user_id,
            "category": t.category,
            "colour_family": colours.family(t.colour),
            "model": model.ref,
            "text_sha": t.text_sha,
            "vector": np.asarray(v, dtype=np.float32),
            "embedded_at": now,
            "event_timestamp": stamp,  # Feast's item_embeddings view reads it
            "possible_duplicate_of": match[0] if match else None,
            "duplicate_score": round(1.0 - match[1], 4) if match else None,
        }
        rows.append(row)
        if match:
            duplicates.append(row)
    online.write(store, rows)  # one transaction: all of the batch or none of it
    part = (
        "emb-"
        + hashlib.sha256(
            "\n".join(f"{t.item_id}|{t.text_sha}|{model.ref}" for t in batch).encode()
        ).hexdigest()[:16]
    )
    lake.write_parquet(TABLE, day, part, rows, settings)
    return BatchDone(len(batch), duplicates)


def catch_up(
    client: OpenAI,
    endpoint: LLMEndpoint,
    model: EmbeddingModel,
    settings: Settings,
    day: str,
    find_duplicate: DuplicateFinder,
) -> tuple[Plan, int, int, list[dict[str, Any]]]:
    """One run of the ``item_embeddings`` DAG: the wardrobes of the users whose rows changed
    since the last complete run (:mod:`dresscode.features.embeddings.progress`; every wardrobe
    on the first run or after a model change), read at one snapshot of their tables, planned
    and embedded by :func:`run`; the progress advances when nothing was deferred."""
    from dresscode.core import delta, tables
    from dresscode.features.embeddings import progress

    store = online.open_store(settings, apply=True)
    recorded = progress.load(settings)
    with delta.snapshot(*progress.SOURCES, settings=settings) as versions:
        users = progress.users_to_read(recorded, settings, store, model.ref, versions)
        items = tables.current_wardrobe_items(users, settings)
        the_plan, embedded, calls, duplicates = run(
            items, client, endpoint, model, settings, day, find_duplicate,
            users=users, store=store,
        )  # fmt: skip
        the_plan.users_read = None if users is None else len(users)
    if the_plan.deferred:
        log.info("%d items deferred: the next run plans the same wardrobes", the_plan.deferred)
    else:
        # Items with a vector online now (the planned ones are current, so none is gone);
        # with nothing planned, the record's probe still is, unless this run removed it.
        online_now = [t.item_id for t in the_plan.todo] + the_plan.up_to_date_ids
        if recorded is not None and recorded.probe and recorded.probe not in the_plan.gone:
            online_now.append(recorded.probe)
        progress.advance(settings, model.ref, versions, online_now)
    return the_plan, embedded, calls, duplicates


def run(
    items: pd.DataFrame,
    client: OpenAI,
    endpoint: LLMEndpoint,
    model: EmbeddingModel,
    settings: Settings,
    day: str,
    find_duplicate: DuplicateFinder,
    *,
    users: Sequence[str] | None = None,
    store: FeatureStore | None = None,
) -> tuple[Plan, int, int, list[dict[str, Any]]]:
    """Plan ``items`` (the current wardrobes of ``users``; None: of everyone), drop the gone
    items of those users, embed the rest batch by batch. Returns the plan, items embedded,
    calls made and the possible duplicates found."""
    store = store or online.open_store(settings, apply=True)
    current = {str(i) for i in items["item_id"]} if not items.empty else set()
    stored = online.stored(store, current)
    check_dimension(store, stored, model)
    the_plan = plan(items, stored, model, settings)
    gone = gone_items(store, current, settings, users)
    the_plan.gone = sorted(gone)
    if gone:
        online.remove(store, gone)
        log.info("took %d items no longer in any wardrobe out of online search", len(gone))
    size = settings.embedding_batch_size
    batches = [the_plan.todo[i : i + size] for i in range(0, len(the_plan.todo), size)]
    embedded = calls = 0
    duplicates: list[dict[str, Any]] = []
    started = time.monotonic()
    for n, batch in enumerate(batches, 1):
        done = embed_batch(batch, client, endpoint, model, settings, day, find_duplicate, store)
        embedded += done.embedded
        calls += 1
        duplicates += done.duplicates
        rate = embedded / max(time.monotonic() - started, 1e-9)
        log.info(
            "batch %d/%d: %d items embedded (%d in all), %.0f items/s, ETA %.0fs",
            n,
            len(batches),
            done.embedded,
            embedded,
            rate,
            (len(the_plan.todo) - embedded) / rate if rate else 0.0,
        )
    return the_plan, embedded, calls, duplicates
