"""Which items need a vector, and embedding them in bounded, idempotent batches.

An item needs a vector when the index has none for it, or one made by another model or recipe
(:attr:`EmbeddingModel.ref`), or from another text (a user corrected the item). An item no
longer in any current wardrobe (deleted, a confirmed duplicate) leaves the index. Everything
else is up to date: a second run over the same wardrobes makes **zero** calls.

Each batch is one ``/v1/embeddings`` call, then one index transaction — inside which the batch
is also written to Feast's online store when it searches vectors
(:mod:`dresscode.features.embeddings.online`): a failed online write rolls the index back, so
the next run embeds those items again — and one lake part (``item_embeddings``, the offline
copy: the drift reference and Feast's source). A run that stops half-way keeps what it
committed and the next run starts where it stopped. The endpoint down or slow never touches
ingest: items land without vectors and are embedded by a later run.

The index stays the record of what is embedded (model, text) and of what left (Feast can
neither list nor delete online rows); the possible-duplicate check reads it inside the batch's
transaction, so two copies of one garment in the same batch find each other.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dresscode.core.config import Settings
from dresscode.features.embeddings import colours, index, online
from dresscode.features.embeddings.client import EmbeddingModel, embed
from dresscode.features.embeddings.text import item_text, text_sha

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore
    from openai import OpenAI

    from dresscode.core.connections import LLMEndpoint

log = logging.getLogger(__name__)

TABLE = "item_embeddings"


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
    gone: list[str]  # item ids in the index but in no current wardrobe
    current: int
    up_to_date: int
    deferred: int  # past DRESSCODE_EMBEDDING_MAX_ITEMS_PER_RUN: the next run takes them


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
    """What this run does, from the current wardrobes and what the index holds."""
    todo: list[Todo] = []
    current = up_to_date = 0
    seen: set[str] = set()
    for row in items.to_dict("records") if not items.empty else []:
        item_id, user = str(row["item_id"]), str(row["user_id"])
        seen.add(item_id)
        current += 1
        text = item_text(
            row, max_chars=settings.embedding_max_chars, prefix=settings.embedding_text_prefix
        )
        sha = text_sha(text)
        if stored.get(item_id) == (user, model.ref, sha):
            up_to_date += 1
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
    gone = sorted(set(stored) - seen)
    return Plan(todo[:cap], gone, current, up_to_date, max(0, len(todo) - cap))


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
    find_duplicate: Callable[[Any, Todo, list[float]], tuple[str, float] | None],
    store: FeatureStore | None = None,
) -> BatchDone:
    """One call, then the index (and ``store``'s online store) and the lake; returns the
    possible duplicates it found."""
    import numpy as np

    from dresscode.core import lake

    vectors = embed(client, endpoint, model, [t.text for t in batch])  # raises before writes
    stamp = datetime.now(UTC)
    now = stamp.isoformat(timespec="milliseconds")
    rows: list[dict[str, Any]] = []
    duplicates: list[dict[str, Any]] = []
    with index.connect(settings) as db, db:  # one transaction, committed after the online write
        index.upsert(
            db,
            (
                index.StoredVector(
                    t.item_id, t.user_id, t.category, t.colour, model.ref, t.text_sha, v
                )
                for t, v in zip(batch, vectors, strict=True)
            ),
        )
        for t, v in zip(batch, vectors, strict=True):
            match = find_duplicate(db, t, v) if t.new else None
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
        if store is not None:
            online.write(store, rows)
    part = (
        "emb-"
        + hashlib.sha256(
            "\n".join(f"{t.item_id}|{t.text_sha}|{model.ref}" for t in batch).encode()
        ).hexdigest()[:16]
    )
    lake.write_parquet(TABLE, day, part, rows, settings)
    return BatchDone(len(batch), duplicates)


def run(
    items: pd.DataFrame,
    client: OpenAI,
    endpoint: LLMEndpoint,
    model: EmbeddingModel,
    settings: Settings,
    day: str,
    find_duplicate: Callable[[Any, Todo, list[float]], tuple[str, float] | None],
) -> tuple[Plan, int, int, list[dict[str, Any]]]:
    """Plan, drop the gone items, embed the rest batch by batch. Returns the plan, items
    embedded, calls made and the possible duplicates found."""
    store = online.open_store(settings, apply=True)  # None: the online store has no vectors
    with index.connect(settings) as db, db:
        stored = index.stored(db)
        the_plan = plan(items, stored, model, settings)
        removed = index.delete(db, the_plan.gone)
        if store is not None:
            online.remove(store, {item: stored[item][0] for item in the_plan.gone})
    if removed:
        log.info("removed %d items no longer in any wardrobe from the index", removed)
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
