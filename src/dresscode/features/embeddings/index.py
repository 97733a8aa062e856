"""The item vector index: sqlite-vec in a SQLite file, nearest neighbours per user.

"Similar items" is served by Feast's online store where it searches vectors (locally,
:mod:`dresscode.features.embeddings.online`). This index stays, because:

* it is the record of what is embedded (model, text) and of what left: Feast can neither list
  nor delete online rows, and the embedding run plans from it;
* the possible-duplicate check reads it inside the batch's transaction (two copies of a
  garment in one batch find each other) and style clusters read one user's partition;
* the full stack's Redis online store has no vector search: there "similar items" is here.

Only this module loads sqlite-vec (through apsw). Feast's online store must not load it into
another SQLite library in the same process: two SQLite libraries sharing one extension abort
(``free(): invalid pointer`` in the first embedding batch, when Feast's store loaded it through
``pysqlite3``; see :mod:`dresscode.features.vector_online_store`).

The index is SQLite through ``apsw`` (which ships a SQLite that loads extensions) with ``sqlite-vec``'s ``vec0`` table, cosine distance, partitioned by
user (a user's items are searched without touching anyone else's) and the category as a
metadata column a query can filter on. ``chunk_size=64``: vec0 allocates vectors in chunks per
partition (1,024 by default), so a user with 200 items held a 1,024-vector chunk — 8 GB per
million vectors on disk; chunks of 64 bring it to ~2 GB (the vectors themselves are 1.5 GB)
and made one user's query faster too (bench/embeddings.py). The offline copy of every vector is the lake's
``item_embeddings`` table. The file is ``<DRESSCODE_HOME>/vectors/items.db``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from dresscode.core.config import Settings, get_settings
from dresscode.features.embeddings.client import DimensionMismatch

if TYPE_CHECKING:
    import apsw

TABLE = "item_vectors"


@dataclass(frozen=True)
class StoredVector:
    item_id: str
    user_id: str
    category: str
    colour: str  # the item's first colour name ("" when none)
    model: str  # EmbeddingModel.ref
    text_sha: str
    vector: Sequence[float]


@dataclass(frozen=True)
class Neighbour:
    item_id: str
    distance: float  # cosine distance: 0 the same direction, 1 unrelated, 2 opposite
    category: str
    colour: str


def path(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).home / "vectors" / "items.db"


@contextmanager
def connect(settings: Settings | None = None, *, dimension: int | None = None) -> Iterator[Any]:
    """The index (created on first use). A stored dimension other than ``dimension`` (default:
    ``DRESSCODE_EMBEDDING_DIMENSION``) raises :class:`DimensionMismatch` before any write."""
    import apsw
    import sqlite_vec

    settings = settings or get_settings()
    size = dimension or settings.embedding_dimension
    file = path(settings)
    file.parent.mkdir(parents=True, exist_ok=True)
    db = apsw.Connection(str(file))
    try:
        db.set_busy_timeout(30_000)  # a DAG task and the CLI may share the file
        db.enable_load_extension(True)
        db.load_extension(sqlite_vec.loadable_path())
        db.enable_load_extension(False)
        _create(db, size, file)
        yield db
    finally:
        db.close()


def _create(db: apsw.Connection, size: int, file: Path) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS index_info(key TEXT PRIMARY KEY, value TEXT)")
    row = db.execute("SELECT value FROM index_info WHERE key = 'dimension'").fetchone()
    if row is not None and int(row[0]) != size:
        raise DimensionMismatch(
            f"the item index at {file} holds vectors of {row[0]} numbers, not {size} "
            "(DRESSCODE_EMBEDDING_DIMENSION); nothing was written. Move the file aside to "
            "re-embed every item at the new size."
        )
    with db:
        db.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {TABLE} USING vec0("
            "item_id TEXT PRIMARY KEY, user_id TEXT PARTITION KEY, "
            f"embedding float[{size}] distance_metric=cosine, category TEXT, "
            "+colour TEXT, +model TEXT, +text_sha TEXT, chunk_size=64)"
        )
        db.execute(
            "INSERT OR IGNORE INTO index_info(key, value) VALUES ('dimension', ?)", (str(size),)
        )


def stored(db: apsw.Connection) -> dict[str, tuple[str, str, str]]:
    """item_id -> (user_id, model ref, text sha) of every vector (no vectors are read)."""
    rows = db.execute(f"SELECT item_id, user_id, model, text_sha FROM {TABLE}")
    return {str(i): (str(u), str(m), str(t)) for i, u, m, t in rows}


def upsert(db: apsw.Connection, vectors: Iterable[StoredVector]) -> int:
    """Write vectors, replacing an item's earlier one; one transaction."""
    import numpy as np

    rows = list(vectors)
    with db:
        for v in rows:
            db.execute(f"DELETE FROM {TABLE} WHERE item_id = ?", (v.item_id,))
            db.execute(
                f"INSERT INTO {TABLE}(item_id, user_id, embedding, category, colour, model, "
                "text_sha) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    v.item_id,
                    v.user_id,
                    np.asarray(v.vector, dtype=np.float32).tobytes(),
                    v.category,
                    v.colour,
                    v.model,
                    v.text_sha,
                ),
            )
    return len(rows)


def delete(db: apsw.Connection, item_ids: Iterable[str]) -> int:
    ids = list(item_ids)
    with db:
        for item_id in ids:
            db.execute(f"DELETE FROM {TABLE} WHERE item_id = ?", (item_id,))
    return len(ids)


def vector_of(db: apsw.Connection, item_id: str) -> tuple[str, str, str, list[float]] | None:
    """(user_id, category, colour, vector) of an item, or None when it has none."""
    import numpy as np

    row = db.execute(
        f"SELECT user_id, category, colour, embedding FROM {TABLE} WHERE item_id = ?",
        (item_id,),
    ).fetchone()
    if row is None:
        return None
    user, category, colour, blob = row
    return str(user), str(category), str(colour), np.frombuffer(blob, np.float32).tolist()


def nearest(
    db: apsw.Connection,
    vector: Sequence[float],
    *,
    user_id: str,
    k: int,
    category: str | None = None,
    exclude: str | None = None,
) -> list[Neighbour]:
    """The user's ``k`` items closest to ``vector`` (of ``category`` when given), nearest first."""
    import numpy as np

    blob = np.asarray(vector, dtype=np.float32).tobytes()
    wanted = k + (1 if exclude else 0)
    sql = (
        f"SELECT item_id, distance, category, colour FROM {TABLE} "
        "WHERE embedding MATCH ? AND k = ? AND user_id = ?"
    )
    params: list[Any] = [blob, wanted, user_id]
    if category is not None:
        sql += " AND category = ?"
        params.append(category)
    rows = db.execute(sql + " ORDER BY distance", params).fetchall()
    found = [Neighbour(str(i), float(str(d)), str(c), str(col)) for i, d, c, col in rows]
    return [n for n in found if n.item_id != exclude][:k]


def of_user(db: apsw.Connection, user_id: str) -> list[tuple[str, str, str, list[float]]]:
    """(item_id, category, colour, vector) of every item of one user (one partition)."""
    import numpy as np

    rows = db.execute(
        f"SELECT item_id, category, colour, embedding FROM {TABLE} WHERE user_id = ?",
        (user_id,),
    ).fetchall()
    return [
        (str(i), str(c), str(col), np.frombuffer(cast(bytes, blob), np.float32).tolist())
        for i, c, col, blob in rows
    ]


def count(db: apsw.Connection) -> int:
    row = db.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
    return int(str(row[0])) if row is not None else 0
