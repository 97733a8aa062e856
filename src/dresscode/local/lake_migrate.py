"""``dresscode lake migrate`` — an older release's Parquet parts into the lake's Delta tables.

Until the Delta tables (:mod:`dresscode.core.delta`), every table was a folder of Parquet parts,
``<table>/date=YYYY-MM-DD/<part>.parquet``. A Delta table lives in the same folder, but readers
see only the files its log references: an older release's parts are there and invisible. This
module commits each such *legacy part* to the Delta table under its own name (the file's stem),
checks that nothing was lost, and only then moves the file out of the table folder.

Decisions:

* A legacy part is a ``*.parquet`` file of the table folder (outside ``_delta_log/`` and other
  ``_``/``.`` folders) that the Delta log does not reference **and** that has no ``_part``
  column. The second test matters: a part replaced in the Delta table leaves its old file in the
  folder until a vacuum, unreferenced; migrating it would bring replaced rows back.
* Idempotent by part name: a part the Delta table already holds (same day, same name) is not
  committed again. With the same keys it is an earlier run's commit (interrupted before the
  move); with other keys it was written again after the upgrade, and the newer rows stay (the
  old release's rule: the same part again replaces it); either way the legacy file is moved.
* Nothing is moved before the check: the table read back through :func:`delta.read` must hold
  exactly the key tuples (with multiplicity, so the row count too) it held before plus those of
  the parts committed now. A crash between commit and move is safe: the rerun finds the parts
  committed and moves them.
* Moved, never deleted: ``<lake>/_migrated/<table>/<path in the table>``. A file that cannot be
  read as Parquet (or that lies where the old release never wrote a part) goes to
  ``_migrated/<table>/_unreadable/`` with a ``.reason.txt`` beside it, and the run fails naming
  it. An I/O error is not corruption: that file stays where it is and the run fails.

Run it with nothing writing to the lake (``make down`` first): a concurrent writer makes the
check fail, which moves nothing (run it again).
"""

from __future__ import annotations

import logging
import math
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from dresscode.core import delta, lake
from dresscode.core.config import Settings, get_settings
from dresscode.core.tables import CATALOGUE
from dresscode.local import lake_layout

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

MIGRATED = "_migrated"  # <lake>/_migrated/<table>/...: legacy files after their migration
UNREADABLE = "_unreadable"  # <lake>/_migrated/<table>/_unreadable/...: files set aside

Keys = Counter[tuple[str | None, ...]]


class MigrationFailed(RuntimeError):
    """The migration did not complete; the message names the tables and files. Nothing lost."""


class Unreadable(Exception):
    """A legacy file that cannot be migrated; the message is the reason written beside it."""


@dataclass(frozen=True)
class LegacyPart:
    """One Parquet file of the previous release in a table folder."""

    path: ObjectStoragePath
    rel: str  # below the table folder, e.g. date=2026-01-02/batch-ab12.parquet
    day: str | None  # from the date= folder; None: not where the old release wrote parts
    part: str  # the file's stem: the Delta part it is committed as


@dataclass(frozen=True)
class MigrationReport:
    """What the migration of one table did (or, in a dry run, would do)."""

    table: str
    legacy_files: int = 0  # legacy parts found, readable or not
    rows: int = 0  # rows in the readable ones
    committed: int = 0  # parts committed now (a dry run: parts that would be)
    already: int = 0  # parts the Delta table held already with the same keys (an earlier run)
    superseded: tuple[str, ...] = ()  # parts written again after the upgrade: the newer rows stay
    moved: int = 0  # legacy files moved to _migrated/<table>/
    set_aside: tuple[str, ...] = ()  # "<where it went>: <reason>" (dry run: would go)
    failures: tuple[str, ...] = ()  # what went wrong; those files stay where they are
    verified: bool | None = None  # None: nothing to check (nothing to do, or a dry run)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.set_aside and not self.failures

    @property
    def problems(self) -> list[str]:
        """One sentence per file set aside or failure, naming the table."""
        verb = "would be set aside" if self.dry_run else "set aside"
        return [f"{self.table}: {verb}: {s}" for s in self.set_aside] + [
            f"{self.table}: {f}" for f in self.failures
        ]

    def summary(self) -> str:
        """One line: legacy files, rows, and whether the result was verified."""
        if not self.legacy_files:
            return f"{self.table}: nothing to do (no legacy Parquet parts)"
        head = f"{self.table}: {self.legacy_files} legacy files, {self.rows} rows"
        notes = []
        if self.already:
            notes.append(f"{self.already} committed by an earlier run")
        if self.superseded:
            notes.append(f"{len(self.superseded)} superseded by newer Delta parts")
        if self.set_aside:
            notes.append(f"{len(self.set_aside)} unreadable")
        if self.failures:
            notes.append(f"{len(self.failures)} failures")
        tail = f" ({', '.join(notes)})" if notes else ""
        if self.dry_run:
            return f"{head}: dry run, would commit {self.committed} parts{tail}; nothing changed"
        if self.verified:
            return (
                f"{head}: committed {self.committed} parts, verified, "
                f"moved {self.moved} files to {MIGRATED}/{self.table}/{tail}"
            )
        return f"{head}: committed {self.committed} parts, NOT verified, nothing moved{tail}"


def migrate(
    settings: Settings | None = None,
    *,
    tables: Sequence[str] | None = None,
    dry_run: bool = False,
) -> list[MigrationReport]:
    """Migrate the legacy parts of every Delta table (or of ``tables``); one report each."""
    settings = settings or get_settings()
    names = list(delta.TABLES) if tables is None else list(dict.fromkeys(tables))
    unknown = [n for n in names if not delta.is_delta(n)]
    if unknown:
        raise ValueError(
            f"not a Delta table of the lake: {', '.join(unknown)}; "
            f"the Delta tables are {', '.join(delta.TABLES)}"
        )
    return [_migrate_table(name, settings, dry_run=dry_run) for name in names]


def legacy_parts(name: str, settings: Settings | None = None) -> list[LegacyPart]:
    """The previous release's Parquet files in the table folder, by path (none: nothing to do)."""
    settings = settings or get_settings()
    folder = lake.table(name, settings)
    base = folder.path.rstrip("/")
    candidates = []
    for path in lake.list_files(folder):
        rel = path.path[len(base) :].lstrip("/")
        segments = rel.split("/")
        if not rel.endswith(".parquet") or any(s[:1] in {"_", "."} for s in segments):
            continue  # _delta_log/, _change_data/, hidden files: Delta's or nobody's
        candidates.append((path, rel))
    if not candidates:
        return []
    referenced = _referenced(name, settings)
    found = []
    for path, rel in candidates:
        if rel in referenced or _written_by_delta(path):
            continue
        found.append(LegacyPart(path, rel, _day(rel), rel.rsplit("/", 1)[-1][: -len(".parquet")]))
    return found


def command(tables: Sequence[str] | None, *, dry_run: bool = False) -> int:
    """The CLI: migrate, print one line per table and every problem; 1 when anything failed."""
    # Progress to stderr, whatever logging Airflow's import configured (it may print to
    # stdout, which is the command's summary).
    progress = logging.StreamHandler(sys.stderr)
    progress.setFormatter(logging.Formatter("%(message)s"))
    for logger in (log, logging.getLogger(lake_layout.__name__)):
        logger.handlers[:] = [progress]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    settings = get_settings()
    # The layout first: a legacy part is committed in this release's partitioning.
    for layout in lake_layout.migrate_layout(settings, dry_run=dry_run):
        print(layout.summary(), flush=True)
    reports = migrate(settings, tables=tables or None, dry_run=dry_run)
    for report in reports:
        print(report.summary(), flush=True)
    problems = [p for r in reports for p in r.problems]
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        print(
            f"error: {len(problems)} problems; nothing was deleted "
            f"(set-aside files and their .reason.txt are under {lake.root()}/{MIGRATED}/)",
            file=sys.stderr,
        )
    return 1 if problems else 0


def prepare_lake(settings: Settings | None = None) -> None:
    """For ``dresscode up``: migrate an older release's parts before Airflow starts (if any).

    Silent when there is nothing to migrate. Raises MigrationFailed when a table could not be
    migrated completely, so the pipeline never runs on a lake whose history it cannot see.
    """
    settings = settings or get_settings()
    _prepare_layout(settings)  # first: legacy parts are committed in this release's layout
    pending = [name for name in delta.TABLES if legacy_parts(name, settings)]
    if not pending:
        return
    print(
        f"• migrating the lake of an older release into Delta tables ({', '.join(pending)}), "
        "as `dresscode lake migrate` does",
        flush=True,
    )
    reports = migrate(settings, tables=pending)
    for report in reports:
        print(f"  {report.summary()}", flush=True)
    problems = [p for r in reports for p in r.problems]
    if problems:
        raise MigrationFailed(
            "the lake migration did not complete: "
            + "; ".join(problems)
            + ". Nothing was deleted; run `dresscode lake migrate` again after fixing it."
        )


def _prepare_layout(settings: Settings) -> None:
    stale = lake_layout.pending(settings)
    if not stale:
        return
    print(f"• bringing the lake's layout up to date ({', '.join(stale)})", flush=True)
    for report in lake_layout.migrate_layout(settings):
        print(f"  {report.summary()}", flush=True)


# --- one table --------------------------------------------------------------------------------


def _migrate_table(name: str, settings: Settings, *, dry_run: bool) -> MigrationReport:
    parts = legacy_parts(name, settings)
    if not parts:
        log.info("%s: nothing to do (no legacy Parquet parts)", name)
        return MigrationReport(name, dry_run=dry_run)
    key = CATALOGUE[name].key
    state = bool(delta.TABLES[name].key)
    before, held = _held(name, key, settings)
    expected = Counter(before)
    rows = committed = already = 0
    superseded: list[str] = []
    set_aside: list[str] = []
    failures: list[str] = []
    to_move: list[LegacyPart] = []
    log.info("%s: %d legacy parts to migrate%s", name, len(parts), " (dry run)" if dry_run else "")
    for n, part in enumerate(parts, start=1):
        step = f"{name}: part {n}/{len(parts)} {part.rel}"
        try:
            frame = _read(part)
        except Unreadable as exc:
            set_aside.append(_set_aside(name, part, str(exc), settings, dry_run=dry_run))
            log.warning(
                "%s: unreadable, %s: %s",
                step,
                "would be set aside" if dry_run else "set aside",
                exc,
            )
            continue
        except OSError as exc:
            failures.append(f"{part.rel}: could not be read ({exc}); left in place")
            log.warning("%s: could not be read (%s); left in place", step, exc)
            continue
        assert part.day is not None  # _read refuses a part outside a date= folder
        rows += len(frame)
        keys = _keys(frame, key)
        held_keys = held.get((part.day, part.part))
        if held_keys is not None:
            if held_keys == keys:
                already += 1
                log.info("%s: %d rows, committed by an earlier run", step, len(frame))
            else:
                superseded.append(part.rel)
                log.warning(
                    "%s: %d rows; the Delta table holds part %r of %s with other rows, written "
                    "after the upgrade: the newer rows stay, the legacy file is only moved",
                    step,
                    len(frame),
                    part.part,
                    part.day,
                )
            to_move.append(part)
            continue
        if dry_run:
            committed += 1
            log.info("%s: %d rows would be committed", step, len(frame))
            continue
        try:
            if state:  # one row per key: merged (the newest wins), so a rerun is a no-op
                delta.upsert(name, part.day, frame, settings)
            else:
                delta.write_part(name, part.day, part.part, frame, settings)
        except Exception as exc:  # one part's failure must not stop the others: reported
            failures.append(f"{part.rel}: could not be committed ({exc}); left in place")
            log.exception("%s: could not be committed; left in place", step)
            continue
        committed += 1
        expected.update(keys)
        to_move.append(part)
        log.info("%s: %d rows committed", step, len(frame))

    verified = None
    moved = 0
    if not dry_run:
        actual = _keys(delta.read(name, settings, columns=list(key)), key)
        if state:  # merged on the key: each key once, whatever the parts repeated
            expected = Counter(set(expected))
        mismatch = _mismatch(expected, actual)
        verified = mismatch is None
        if mismatch is not None:
            failures.append(f"read back does not match: {mismatch}; no legacy file was moved")
            log.error("%s: NOT verified: %s; no legacy file was moved", name, mismatch)
        else:
            log.info(
                "%s: verified %d rows; moving %d legacy files", name, expected.total(), len(to_move)
            )
            for part in to_move:
                try:
                    _move(part.path, _migrated(name, settings) / part.rel)
                except OSError as exc:
                    failures.append(f"{part.rel}: migrated but could not be moved ({exc})")
                    log.warning("%s: %s: could not be moved (%s)", name, part.rel, exc)
                else:
                    moved += 1
    return MigrationReport(
        name,
        legacy_files=len(parts),
        rows=rows,
        committed=committed,
        already=already,
        superseded=tuple(superseded),
        moved=moved,
        set_aside=tuple(set_aside),
        failures=tuple(failures),
        verified=verified,
        dry_run=dry_run,
    )


def _read(part: LegacyPart) -> pd.DataFrame:
    """The part's rows. OSError: it could not be fetched. Unreadable: it is not a part."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if part.day is None:
        raise Unreadable(
            "not in a date=YYYY-MM-DD folder, where the previous release wrote every part: "
            "its day is unknown, so it is not migrated"
        )
    data = lake.read_bytes(part.path)  # I/O errors raise here: the file stays where it is
    try:  # from memory: any error now is the bytes' fault
        table = pq.read_table(pa.BufferReader(data))
    except Exception as exc:
        raise Unreadable(f"not readable as Parquet ({type(exc).__name__}: {exc})") from exc
    return table.to_pandas()


def _held(
    name: str, key: Sequence[str], settings: Settings
) -> tuple[Keys, dict[tuple[str, str], Keys]]:
    """The Delta table's key tuples now, in all and per (day, part)."""
    table = delta.open_table(name, settings)
    if table is None:
        return Counter(), {}
    dataset = table.to_pyarrow_dataset()
    wanted = [*key, delta.PARTITION, delta.PART]
    frame = dataset.to_table(columns=[c for c in wanted if c in dataset.schema.names]).to_pandas()
    per_part: dict[tuple[str, str], Keys] = {}
    if frame.empty:
        return Counter(), per_part
    for column in wanted:
        if column not in frame.columns:
            frame[column] = None
    for (day, part), group in frame.groupby([delta.PARTITION, delta.PART], dropna=False):
        per_part[(str(day), str(part))] = _keys(group, key)
    return _keys(frame, key), per_part


def _referenced(name: str, settings: Settings) -> set[str]:
    """Paths (below the table folder) of the files the Delta table's current version uses."""
    table = delta.open_table(name, settings)
    if table is None:
        return set()
    paths = table.get_add_actions(flatten=True).column("path").to_pylist()
    return {unquote(str(p)) for p in paths}


def _written_by_delta(path: ObjectStoragePath) -> bool:
    """A file of the Delta table (replaced, or a write that never committed): delta-rs wrote
    it, or it has ``_part``. The state table ``users`` has no ``_part``: a merge that lost a
    commit race leaves such files behind, and two seeding processes did (the load bench)."""
    import pyarrow.parquet as pq

    try:
        with path.fs.open(path.path, "rb") as fh:
            metadata = pq.ParquetFile(fh).metadata
            return (metadata.created_by or "").startswith("delta-rs") or (
                delta.PART in metadata.schema.names
            )
    except Exception:  # unreadable: a legacy candidate, judged when it is read in full
        return False


def _day(rel: str) -> str | None:
    """The day of ``date=YYYY-MM-DD/<part>.parquet``; None for any other shape."""
    segments = rel.split("/")
    if len(segments) != 2 or not segments[0].startswith("date="):
        return None
    try:
        return date.fromisoformat(segments[0][len("date=") :]).isoformat()
    except ValueError:
        return None


# --- keys -------------------------------------------------------------------------------------


def _keys(frame: pd.DataFrame, key: Sequence[str]) -> Keys:
    """The key tuples of ``frame`` with multiplicity, comparable across files and Delta.

    Values are normalised: a legacy int column with gaps reads as float (3.0) and Delta's as
    int64 (3), a missing column or NaN is None, everything else compares as its text.
    """
    columns = [frame[c] if c in frame.columns else [None] * len(frame) for c in key]
    return Counter(tuple(_plain(v) for v in row) for row in zip(*columns, strict=True))


def _plain(value: Any) -> str | None:
    import numpy as np
    import pandas as pd

    if isinstance(value, np.generic):
        value = value.item()  # numpy scalars as Python's
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    return str(value)


def _mismatch(expected: Keys, actual: Keys) -> str | None:
    if expected == actual:
        return None
    missing = expected - actual
    extra = actual - expected
    detail = []
    if missing:
        detail.append(
            f"{missing.total()} expected rows missing, e.g. keys {sorted(missing, key=str)[:3]}"
        )
    if extra:
        detail.append(f"{extra.total()} unexpected rows, e.g. keys {sorted(extra, key=str)[:3]}")
    return (
        f"expected {expected.total()} rows ({len(expected)} keys), read back {actual.total()} "
        f"rows ({len(actual)} keys): " + "; ".join(detail)
    )


# --- moving files -----------------------------------------------------------------------------


def _migrated(name: str, settings: Settings) -> ObjectStoragePath:
    return lake.root(settings) / MIGRATED / name


def _move(src: ObjectStoragePath, dst: ObjectStoragePath) -> None:
    """Copy, then delete (S3 has no rename): a crash in between leaves both, never neither."""
    lake.copy(src, dst)
    lake.delete(src)


def _set_aside(
    name: str, part: LegacyPart, reason: str, settings: Settings, *, dry_run: bool
) -> str:
    """Move an unmigratable file to ``_migrated/<table>/_unreadable/`` with its reason beside it.

    Returns where it went (or would go) and why. An I/O failure while moving is said so in the
    returned sentence: the file then stays where it was.
    """
    dst = _migrated(name, settings) / UNREADABLE / part.rel
    if dry_run:
        return f"{part.rel} -> {dst}: {reason}"
    note = (
        f"{part.rel} of lake table {name!r} was not migrated to the Delta table: {reason}.\n"
        f"Found at {part.path} by `dresscode lake migrate` on "
        f"{datetime.now(UTC).isoformat(timespec='seconds')}.\n"
    )
    try:
        lake.write_bytes(dst.parent / f"{dst.name}.reason.txt", note.encode())
        _move(part.path, dst)
    except OSError as exc:
        return f"{part.rel}: {reason}; could not be moved to {dst} ({exc}), left in place"
    return f"{dst} (reason in {dst.name}.reason.txt): {reason}"
