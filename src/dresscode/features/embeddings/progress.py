"""How far the embedding runs have caught up with the wardrobes: what the next run reads.

Every wardrobe change lands in ``wardrobe_items`` (new digitizations) or ``user_events`` (a
correction, deletion, added item or duplicate answer), both Delta tables partitioned by
``user_bucket``. A run that planned every item of the table versions it read, and left nothing
deferred, records those versions here (``item_embeddings/_progress.json`` in the lake); the
next run reads only the wardrobes of the users whose rows changed since
(:func:`dresscode.core.delta.changed_users`: the commits' own files, from the log), so an
hourly run's reads follow the hour's changes, not the age of the lake.

Everyone is read — a full plan, the embedding backfill — when the record cannot vouch for the
online store: there is none (the first run), it was made with another model or text recipe
(:attr:`EmbeddingModel.ref`: a model change re-embeds every item), the log no longer holds its
versions, or its probe item (one that had a vector when the record was written) has none now —
the online store was emptied or replaced, and only a full plan can tell what it lacks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from dresscode.core import delta, lake
from dresscode.core.config import Settings

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath
    from feast import FeatureStore

log = logging.getLogger(__name__)

TABLE = "item_embeddings"
SOURCES = ("wardrobe_items", "user_events")  # the tables a wardrobe change is written to
FILE = "_progress.json"
NOT_YET = -1  # the version recorded for a source table that did not exist yet


@dataclass(frozen=True)
class Progress:
    model: str  # EmbeddingModel.ref the record was made with
    versions: dict[str, int] = field(default_factory=dict)  # SOURCES -> version (or NOT_YET)
    probe: str | None = None  # an item that had a vector online when this was written


def path(settings: Settings) -> ObjectStoragePath:
    return lake.table(TABLE, settings) / FILE


def load(settings: Settings) -> Progress | None:
    """The record, or None (never written, or unreadable: a full plan follows, logged)."""
    where = path(settings)
    if not lake.exists(where):
        return None
    try:
        raw = lake.read_json(where)
        return Progress(
            model=str(raw["model"]),
            versions={str(k): int(v) for k, v in dict(raw["versions"]).items()},
            probe=None if raw.get("probe") is None else str(raw["probe"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring %s (%s): every wardrobe is planned this run", where, exc)
        return None


def save(settings: Settings, progress: Progress) -> None:
    lake.write_json(path(settings), asdict(progress))


def clear(settings: Settings) -> bool:
    """Forget the record (the online vectors were dropped): the next run plans everyone."""
    where = path(settings)
    if not lake.exists(where):
        return False
    lake.delete(where)
    return True


def users_to_read(
    progress: Progress | None,
    settings: Settings,
    store: FeatureStore,
    model_ref: str,
    versions: Mapping[str, int],
) -> list[str] | None:
    """The users whose wardrobes this run plans (sorted; [] nothing changed), or None: every
    wardrobe (the reason is logged). ``progress`` is the record (:func:`load`), ``versions``
    the sources' versions this run reads (:func:`dresscode.core.delta.snapshot`)."""
    from dresscode.features.embeddings import online

    reason = None
    if progress is None:
        reason = "no record of an earlier run"
    elif progress.model != model_ref:
        reason = f"the embedding model changed ({progress.model} -> {model_ref})"
    elif progress.probe is not None and progress.probe not in online.stored(
        store, [progress.probe]
    ):
        reason = f"item {progress.probe} lost its vector online (the store was emptied?)"
    if reason is None and progress is not None:
        changed: set[str] = set()
        for name in SOURCES:
            users = delta.changed_users(
                name, progress.versions.get(name), settings, version=versions.get(name)
            )
            if users is None:
                reason = f"{name} no longer holds version {progress.versions.get(name)}"
                break
            changed |= users
        else:
            log.info(
                "planning the wardrobes of %d users: those changed since %s",
                len(changed),
                ", ".join(f"{n} v{progress.versions.get(n)}" for n in SOURCES),
            )
            return sorted(changed)
    log.info("planning every wardrobe: %s", reason)
    return None


def advance(
    settings: Settings,
    model_ref: str,
    versions: Mapping[str, int],
    probes: Iterable[str],
) -> None:
    """Record that every item of ``versions`` is planned (call only when nothing was
    deferred); ``probes``: items with a vector online now, the first is kept as the probe."""
    probe = next(iter(probes), None)
    planned = {name: int(versions.get(name, NOT_YET)) for name in SOURCES}
    save(settings, Progress(model_ref, planned, probe))
