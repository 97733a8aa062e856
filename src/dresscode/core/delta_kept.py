"""Delta tables kept open by a long-lived reader, brought up to date at most every few seconds.

A task reads a table a few times and exits: opening it each time (the log from the last
checkpoint) and listing its files as a pyarrow dataset (each file's partition and column
ranges, so a scan skips the files that cannot hold its keys) is a small part of its work. The
online stylist reads three tables for every few requests, and there the opening was most of
the cost: ~24 ms to open ``wardrobe_items`` and list its 64 files, against ~1 ms per file a
request's users' rows are in (``docs/benchmarks.md``, the online stylist). Both grow with the
table's log and file count, so a service reading them per request would get slower as the
lake ages.

:class:`KeptTables` keeps each table open with its dataset. A read older than ``max_age_s``
since the last check asks the log for commits since (``update_incremental``: the new entries
only) and lists the files again only when the version moved; otherwise it prunes the kept
dataset's files with the read's own filter (the same partition values and column ranges
delta-rs would). A read may therefore see a version up to ``max_age_s`` old — the bound the
reader chooses.

It also keeps the files' rows: a Delta table's data files never change (a commit adds and
removes whole files), so a file read once is the same file for every later read, of this
version or the next. :meth:`KeptTables.scan` reads each file the filter leaves whole, once,
keeps it in memory (least recently used dropped beyond ``max_bytes``), and filters the kept
rows: a user's rows cost a filter over their bucket's file, not opening it (~1 ms a file).
Reads pinned to a version (:func:`dresscode.core.delta.snapshot`) never use any of this.

Used through :func:`keeping`: within the block (a context variable, so a thread started with
``asyncio.to_thread`` from inside it sees it too) :func:`dresscode.core.delta.read` takes its
tables from the given :class:`KeptTables`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deltalake import DeltaTable


_COMBINE_MAX_BYTES = 8 * 2**20


@dataclass
class Kept:
    """One open table: its dataset (all files, their ranges) and when the log was last asked."""

    table: DeltaTable
    dataset: Any  # pyarrow.dataset.Dataset
    version: int
    checked_at: float
    owner: KeptTables

    def scan(self, prune: Any, keep: Callable[[Any], Any] | None, columns: list[str] | None) -> Any:
        """The matching rows (a pyarrow.Table), from the owner's kept files."""
        return self.owner.scan(self, prune, keep, columns)


class KeptTables:
    """Open tables by URI, each refreshed from its log at most every ``max_age_s``."""

    def __init__(self, max_age_s: float, max_bytes: int = 256 * 2**20) -> None:
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self._kept: dict[str, Kept] = {}
        self._absent: dict[str, float] = {}  # tables not written yet: when last looked for
        self._files: dict[str, Any] = {}  # file path -> its rows (pyarrow.Table), oldest first
        self._bytes = 0
        self.files_read = 0  # data files read from storage (for tests and benchmarks)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.opens = 0  # tables opened and datasets listed (for tests and benchmarks)

    def get(self, uri: str, open_table: Callable[[], DeltaTable | None]) -> Kept | None:
        """The table at ``uri`` as of at most ``max_age_s`` ago; None while it does not exist
        (asked again on the next read: a table written later is found)."""
        with self._guard:
            lock = self._locks.setdefault(uri, threading.Lock())
        with lock:  # one refresh per table at a time; the others wait for it, then share it
            kept = self._kept.get(uri)
            now = time.monotonic()
            if kept is not None and now - kept.checked_at < self.max_age_s:
                return kept
            if kept is None:
                if now - self._absent.get(uri, -self.max_age_s) < self.max_age_s:
                    return None  # not there at the last look, and that is recent enough
                table = open_table()
                if table is None:
                    self._absent[uri] = now
                    return None
                kept = self._listed(table, now)
            else:
                kept.table.update_incremental()
                if kept.table.version() != kept.version:
                    kept = self._listed(kept.table, now)
                kept.checked_at = now
            self._kept[uri] = kept
            return kept

    def scan(
        self,
        kept: Kept,
        prune: Any,
        keep: Callable[[Any], Any] | None,
        columns: list[str] | None,
    ) -> Any:
        """The rows of ``kept`` that ``keep`` keeps (rows -> rows; None: all), with
        ``columns`` (None: all), from the files ``prune`` (an expression on the partition
        column, or None) leaves, each read once and kept."""
        import pyarrow as pa

        files = []
        for fragment in kept.dataset.get_fragments(filter=prune):
            with self._guard:
                rows = self._files.pop(fragment.path, None)
                if rows is not None:
                    self._files[fragment.path] = rows  # the most recently used is last
            if rows is None:
                rows = fragment.to_table(schema=kept.dataset.schema)
                self._keep(fragment.path, rows)
            files.append(rows)
        if not files:
            return kept.dataset.schema.empty_table().select(columns or kept.dataset.schema.names)
        # A file kept from an older version lacks the columns added since: nulls there.
        found = pa.concat_tables(files, promote_options="default")
        if keep is not None:
            # In one chunk first: pyarrow's filter pays a fixed cost per chunk, most of the work
            # for a few users' files (five files, 350 rows: ~1.9 -> ~0.7 ms of CPU; measured).
            # Not for a large read, where copying its files would cost more than it saves.
            if found.nbytes <= _COMBINE_MAX_BYTES:
                found = found.combine_chunks()
            found = keep(found)
        return found if columns is None else found.select(columns)

    def _keep(self, path: str, rows: Any) -> None:
        with self._guard:
            self.files_read += 1
            previous = self._files.pop(path, None)  # two readers read it at once: keep one
            if previous is not None:
                self._bytes -= previous.nbytes
            self._files[path] = rows
            self._bytes += rows.nbytes
            while self._bytes > self.max_bytes and len(self._files) > 1:
                oldest = next(iter(self._files))
                self._bytes -= self._files.pop(oldest).nbytes

    def _listed(self, table: DeltaTable, now: float) -> Kept:
        self.opens += 1
        return Kept(table, table.to_pyarrow_dataset(), table.version(), now, self)


_IN_USE: ContextVar[KeptTables | None] = ContextVar("dresscode_delta_kept", default=None)


@contextmanager
def keeping(tables: KeptTables) -> Iterator[KeptTables]:
    """Within the block, lake reads of the latest version use ``tables``."""
    token = _IN_USE.set(tables)
    try:
        yield tables
    finally:
        _IN_USE.reset(token)


def in_use() -> KeptTables | None:
    return _IN_USE.get()
