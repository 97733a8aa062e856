"""Where a Delta table's rows lie: the ``date`` and ``user_bucket`` partitions, and the SQL
literal the predicates are written with (:mod:`dresscode.core.delta`)."""

from __future__ import annotations

import hashlib

PART = "_part"  # the part name a row was written under (a retried write replaces its part)
PARTITION = "date"  # every row's day; the partition of the tables read by day
BUCKET = "user_bucket"  # the partition of the tables read by user (see user_bucket)
# A layout constant, not a setting: rows are found by recomputing their bucket, so changing it
# is a migration (``dresscode lake migrate`` re-partitions). 64: ~16k users a bucket at 1M.
USER_BUCKETS = 64


def user_bucket(user_id: object) -> str:
    """The ``user_bucket`` partition of a user's rows: ``00``..``63``, stable across
    processes and releases (SHA-256 of the id, not Python's salted ``hash``)."""
    digest = hashlib.sha256(str(user_id).encode("utf-8")).digest()
    return f"{int.from_bytes(digest[:4], 'big') % USER_BUCKETS:02d}"


def user_order(user_id: object) -> tuple[str, str]:
    """A sort key that keeps each bucket's users together, in id order: batches planned in
    this order read one or two ``user_bucket`` partitions and a narrow id range of each."""
    return user_bucket(user_id), str(user_id)


def sql(value: str) -> str:
    """A SQL string literal for delta-rs predicates."""
    return "'" + str(value).replace("'", "''") + "'"
