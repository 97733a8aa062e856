"""Lake reads (issue 17): the readers ingest, outfits and features run, Delta vs Parquet parts.

What is measured, on synthetic lakes at two scales (``small`` and ``large`` = ``--factor`` x
small), each read in a fresh process (an Airflow task is one), ``--repeat`` times:

* ``discovery`` — what ``ingest.discover`` asks the manifest for 5,000 landing keys:
  ``tables.manifest_state(settings, keys=keys, days=ingest.lookback_days(settings))`` (the
  lookback's partition listing included). Landing itself is not listed: the keys are given, so
  only the manifest read is timed. Half the keys were processed on the last day (a crash
  before clean-up), half are new.
* ``batch`` — a pre-generation batch: ``tables.current_wardrobes_of(<200 user ids>)``
  (``wardrobe_items`` plus the users' wardrobe events), 200 user ids in the order
  ``outfit_pregen`` plans its batches (``delta.user_order``: bucket by bucket, by id), from the
  middle of that order, as a batch is when every user is active.
* ``style`` — one style-features interval: ``features.tasks.compute_style(window)`` as the
  DAG calls it (``users.active_users`` over the ``users`` table, ``--active`` active users
  spread over all ids, their current wardrobes, their ``wore_instead`` events, the features,
  the ``user_style`` part written).

Each read runs against three layouts of the same rows:

* ``delta`` — the project's Delta tables, not compacted, written with ``write_deltalake`` into
  ``delta.location(name)`` with the columns ``delta.write_part`` writes (``_part``, ``date``):
  ``manifests`` partitioned by ``date``, ``wardrobe_items`` and ``user_events`` (the
  feedback's events by user) by ``user_bucket``. The newest ``--recent-days`` days as
  ingest commits them, ``--commits-per-day`` commits a day; older days in bulk commits
  (committing a 900-day history commit by commit would take about an hour here: a commit's
  cost grows with the table's live files);
* ``delta z-ordered`` — the same tables after ``lake_maintenance``'s own
  ``maintenance.maintain`` (z-order by the table's cluster column per partition, row groups
  of ``maintenance.ROW_GROUP_ROWS``, vacuum with retention 0); its time and peak memory are
  reported too;
* ``parquet parts`` (the baseline) — the same rows as the legacy layout, one Parquet part per
  commit under ``<table>/date=D/``, read by the same project functions with the Delta tables
  switched off, i.e. the reader before this change: ``lake.read_table`` reads every part of
  the table with ``pq.read_table`` (the ``user_id in`` filter applied per part), the fold's
  events come from every ``feedback`` part, and discovery is the old
  ``manifest_state(settings)``: every manifest row into pandas, grouped.

``feedback`` is Parquet parts in every layout (it is not a Delta table); ``users`` is the
project's state table in the Delta layouts (one row per user, by ``user_bucket``) and one
Parquet part in the baseline.

History: by default the large lake has ``--factor`` times the *days* of the small one at the
same daily volume (``--history longer``: the same product, a longer history, which is what
"cost flat in history" asks about); ``--history busier`` keeps the days and multiplies the
daily volume instead.

Time is wall time of the call alone (``time.perf_counter``), the median of the runs. Memory
is the process's peak resident set (``VmHWM``) and the part the call added over the resident
set just before it (imports, settings and inputs loaded first; pandas, pyarrow, deltalake and
Airflow's SDK are imported in every layout's process, as in a task). Not ``ru_maxrss``: a
child's starts from its parent's high-water mark at fork, so it would report the builder's.
A read whose memory passes ``--rss-cap-mb`` is killed and reported as such.

    .venv/bin/python bench/lake.py                 # small 1M / 100k users, large 10M / 1M: ~35 min
    .venv/bin/python bench/lake.py --quick         # 50k / 5k and 500k / 50k, 1 run each: ~2.5 min
    .venv/bin/python bench/lake.py --manifests 200000 --users 20000 --scale small
    .venv/bin/python bench/lake.py --dir D --keep  # then, on the same lakes:
    .venv/bin/python bench/lake.py --dir D --reuse --layouts "delta z-ordered" --what-if
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from _capped import run_capped

LAST_DAY = date(2026, 11, 22)
READS = ("discovery", "batch", "style")
LAYOUTS = ("delta", "delta z-ordered", "parquet parts")
BUCKETED = ("wardrobe_items", "user_events", "users")  # by user_bucket, as the project
LANDING_KEYS = 5_000
BATCH_USERS = 200
ITEMS_PER_USER = 25

# Targets of the issue (2-core machine), per read: seconds, MB.
TARGETS = {"discovery": (2.0, 500), "batch": (1.0, 300)}
FLAT_WITHIN = 1.5
BULK_ROWS = 300_000  # rows per bulk Delta commit of the older history (see build)

STATUSES = ("accepted", "duplicate", "quarantined", "digitize_failed")
STATUS_P = (0.90, 0.03, 0.03, 0.04)
FORMATS = ("jpeg", "heic", "webp", "png")
CATEGORIES = ("top", "bottom", "dress", "outerwear", "footwear", "bag", "accessory")
SUBCATEGORIES = ("t-shirt", "shirt", "jeans", "skirt", "coat", "sneakers", "tote", "scarf")
WARMTH = ("light", "medium", "warm", "heavy")
FORMALITY = ("casual", "smart_casual", "business", "formal", "sport")
PATTERNS = ("solid", "striped", "checked", "floral", "dotted")
MATERIALS = ("cotton", "denim", "wool", "leather", "linen", "polyester")
SEASONS = ("spring", "summer", "autumn", "winter")
COLORS = ("black", "white", "navy", "grey", "beige", "red", "green", "blue", "brown", "pink")
COLOR_HEXES = tuple(f"#{i * 0x1A2B3C % 0xFFFFFF:06x}" for i in range(len(COLORS)))
CITIES = ("Berlin", "Lisbon", "São Paulo", "Toronto", "Osaka", "Nairobi", "Oslo", "Lima")
EVENT_TYPES = ("item_corrected", "item_deleted", "outfit_rated", "wore_instead")
EVENT_P = (0.4, 0.1, 0.2, 0.3)


@dataclass(frozen=True)
class Scale:
    """One synthetic lake."""

    name: str
    manifests: int
    users: int
    days: int
    commits_per_day: int
    feedback_parts_per_day: int
    feedback_per_item: float
    active: int
    recent_days: int

    @property
    def items(self) -> int:
        return self.users * ITEMS_PER_USER

    @property
    def commits(self) -> int:
        return self.days * self.commits_per_day


# --- synthetic rows (numpy and pyarrow compute: no Python loop per row) ----------------------


def _hex_table():
    return np.array([f"{i:02x}" for i in range(256)], dtype="S2")


def _hex(raw):
    """Rows of bytes (uint8, n x k) as hex strings of 2k characters."""
    k = raw.shape[1]
    text = _hex_table()[raw].view(f"S{2 * k}").ravel()
    return pa.array(text, pa.binary()).cast(pa.string())


def _random_hex(rng, n: int, nbytes: int):
    return _hex(rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8))


def _numbered(prefix: str, numbers, width: int, suffix: str = ""):
    """``prefix`` + zero-padded numbers + ``suffix``, vectorized."""
    digits = pc.utf8_lpad(pa.array(numbers).cast(pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, suffix, "")


def user_ids(numbers):
    return _numbered("user-", numbers, 7)


def item_ids(rows):
    """Item ids from global item row numbers: ``item-`` + 16 hex digits (a fixed mix)."""
    mixed = rows.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # wraps: a fixed shuffle
    raw = mixed.astype(">u8").view(np.uint8).reshape(-1, 8)
    return pc.binary_join_element_wise("item-", _hex(raw), "")


def _pick(rng, values, n: int, p=None):
    index = rng.choice(len(values), size=n, p=p)
    return pa.array(values, pa.string()).take(pa.array(index))


def _stamps(rng, day: date, n: int, slot: int, slots: int):
    """ISO UTC stamps with milliseconds inside the ``slot``-th of ``slots`` parts of ``day``."""
    width = 86_400_000 // slots
    ms = np.sort(rng.integers(slot * width, (slot + 1) * width, size=n))
    moments = np.datetime64(day.isoformat(), "ms") + ms.astype("timedelta64[ms]")
    text = np.datetime_as_string(moments, unit="ms").astype("S23")
    return pc.binary_join_element_wise(pa.array(text, pa.binary()).cast(pa.string()), "+00:00", "")


def _lists(rng, values, n: int, most: int, parallel=None):
    """A list<string> column of 1..``most`` values per row (and ``parallel``'s lists)."""
    counts = rng.integers(1, most + 1, size=n)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]), pa.int32())
    index = pa.array(rng.integers(0, len(values), size=int(counts.sum())))
    first = pa.ListArray.from_arrays(offsets, pa.array(values, pa.string()).take(index))
    if parallel is None:
        return first
    return first, pa.ListArray.from_arrays(offsets, pa.array(parallel, pa.string()).take(index))


def _masked(values, keep):
    return pc.if_else(pa.array(keep), values, pa.scalar(None, values.type))


def manifest_rows(rng, first_row: int, n: int, day: date, slot: int, scale: Scale):
    """``n`` manifest rows (one ingest commit), rows ``first_row..`` of the history."""
    rows = np.arange(first_row, first_row + n)
    users = rng.integers(0, scale.users, size=n)
    user = user_ids(users)
    upload = _numbered("upload-", rows, 1)
    status_index = rng.choice(len(STATUSES), size=n, p=STATUS_P)
    status = pa.array(STATUSES, pa.string()).take(pa.array(status_index))
    accepted = status_index == 0
    has_image = status_index <= 1
    quarantined = status_index == 2
    called = np.isin(status_index, (0, 3))
    width = rng.integers(1000, 4000, size=n)
    height = (width * 3) // 4
    stamp = _stamps(rng, day, n, slot, scale.commits_per_day)
    hour = (slot * 24) // scale.commits_per_day
    columns = {
        "upload_key": pc.binary_join_element_wise(user, "/", upload, ".jpg", ""),
        "user_id": user,
        "upload_id": upload,
        "status": status,
        "raw_sha256": _random_hex(rng, n, 32),
        "image_sha256": _masked(_random_hex(rng, n, 32), has_image),
        "reason_code": _masked(pa.array(["decompression_bomb"] * n), quarantined),
        "reason": _masked(
            pa.array(["the photo decodes to more pixels than allowed"] * n), quarantined
        ),
        "source_format": _pick(rng, FORMATS, n, (0.6, 0.3, 0.08, 0.02)),
        "source_bytes": pa.array(rng.integers(200_000, 6_000_000, size=n), pa.int64()),
        "source_width": pa.array(width, pa.int64()),
        "source_height": pa.array(height, pa.int64()),
        "width": pa.array(np.full(n, 768), pa.int64()),
        "height": pa.array(np.full(n, 576), pa.int64()),
        "brightness": pa.array(rng.random(n), pa.float64()),
        "prompt_version": pa.array(np.full(n, 2), pa.int64()),
        "n_items": _masked(pa.array(rng.integers(1, 6, size=n), pa.int64()), accepted),
        "model_called": pa.array(called, pa.bool_()),
        "attempt": pa.array(np.ones(n, dtype=np.int64), pa.int64()),
        "run_id": pa.array([f"scheduled__{day.isoformat()}T{hour:02d}:00:00+00:00"] * n),
        "processed_at": stamp,
    }
    return pa.table(columns)


def item_rows(rng, owners, first_row: int, day: date, slot: int, scale: Scale):
    """The wardrobe items of global item rows ``first_row..`` (one commit), owners given."""
    n = len(owners)
    rows = np.arange(first_row, first_row + n)
    user = user_ids(owners)
    names, hexes = _lists(rng, COLORS, n, 3, COLOR_HEXES)
    columns = {
        "item_id": item_ids(rows),
        "user_id": user,
        "image_sha256": _random_hex(rng, n, 32),
        "upload_key": pc.binary_join_element_wise(
            user, "/", _numbered("upload-", rng.integers(0, scale.manifests, size=n), 1), ".jpg", ""
        ),
        "prompt_version": pa.array(np.full(n, 2), pa.int64()),
        "category": _pick(rng, CATEGORIES, n),
        "subcategory": _pick(rng, SUBCATEGORIES, n),
        "color_names": names,
        "color_hexes": hexes,
        "pattern": _pick(rng, PATTERNS, n),
        "material": _pick(rng, MATERIALS, n),
        "warmth": _pick(rng, WARMTH, n),
        "formality": _pick(rng, FORMALITY, n),
        "seasons": _lists(rng, SEASONS, n, 2),
        "water_resistant": pa.array(rng.random(n) < 0.15, pa.bool_()),
        "description": pc.binary_join_element_wise(
            _pick(rng, COLORS, n),
            " ",
            _pick(rng, MATERIALS, n),
            " ",
            _pick(rng, SUBCATEGORIES, n),
            " with a relaxed fit",
            "",
        ),
        "digitized_at": _stamps(rng, day, n, slot, scale.commits_per_day),
        "replaces": pa.nulls(n, pa.string()),
    }
    return pa.table(columns)


def feedback_rows(rng, owners, day: date, n: int, items_so_far: int):
    """``n`` feedback events of ``day`` about items written on or before it."""
    rows = rng.integers(0, max(items_so_far, 1), size=n)
    kind = rng.choice(len(EVENT_TYPES), size=n, p=EVENT_P)
    item = item_ids(rows)
    on_item = kind != 2
    stamp = _stamps(rng, day, n, 0, 1)
    suggestion = f'"suggestion_day": "{day.isoformat()}", "outfit_index": 0'
    payload = pc.choose(
        pa.array(kind),
        pc.binary_join_element_wise(
            '{"changes": {"category": "', _pick(rng, CATEGORIES, n), '"}}', ""
        ),
        pa.array(["{}"] * n),
        pa.array(["{" + suggestion + ', "rating": "up"}'] * n),
        pc.binary_join_element_wise("{" + suggestion + ', "item_ids": ["', item, '"]}', ""),
    )
    columns = {
        "event_id": pc.binary_join_element_wise("evt-", _random_hex(rng, n, 8), ""),
        "event_type": pa.array(EVENT_TYPES, pa.string()).take(pa.array(kind)),
        "user_id": user_ids(owners[rows]),
        "event_time": stamp,
        "received_at": stamp,
        "item_id": _masked(item, on_item),
        "image_sha256": pa.nulls(n, pa.string()),
        "prompt_version": _masked(pa.array(["2"] * n), on_item),
        "payload": payload,
        "source": pa.array([f"feedback/export-{day.isoformat()}.jsonl"] * n),
        "source_sha256": _random_hex(rng, n, 32),
    }
    table = pa.table(columns)
    return table.take(pc.sort_indices(table, [("event_time", "ascending")]))


# --- building the lakes ----------------------------------------------------------------------


def day_of(scale: Scale, index: int) -> date:
    return LAST_DAY - timedelta(days=scale.days - 1 - index)


def build(scale: Scale, root: Path) -> dict:
    """Both layouts of one lake, plus the readers' inputs (keys, batch, window).

    Parquet parts: one part per commit, every day, as ingest wrote them. Delta: the newest
    ``scale.recent_days`` days one commit per ingest commit; older days in bulk commits of
    about ``BULK_ROWS`` rows, which leave one file per day (a Delta commit costs time in
    proportion to the table's live files: 7,200 single commits would take about an hour here).
    """
    from deltalake import DeltaTable, write_deltalake

    rng = np.random.default_rng(17)
    delta_lake, legacy = root / "delta", root / "legacy"
    shutil.rmtree(root / "what-if", ignore_errors=True)
    for lake in (delta_lake, legacy):
        shutil.rmtree(lake, ignore_errors=True)
        lake.mkdir(parents=True)
    owners = (rng.permutation(scale.items) // ITEMS_PER_USER).astype(np.int64)
    m_bounds = np.linspace(0, scale.manifests, scale.commits + 1).astype(np.int64)
    i_bounds = np.linspace(0, scale.items, scale.commits + 1).astype(np.int64)
    first_recent = (scale.days - scale.recent_days) * scale.commits_per_day
    pending: dict[str, list[pa.Table]] = {
        "manifests": [],
        "wardrobe_items": [],
        "user_events": [],
    }
    opened: dict[str, DeltaTable] = {}  # kept open: each commit updates it from the log
    buckets = _buckets(scale.users)

    def commit_delta(name: str) -> None:
        if not pending[name]:
            return
        rows = pa.concat_tables(pending[name])
        pending[name] = []
        if name in BUCKETED:
            owner = pc.cast(pc.utf8_slice_codeunits(rows.column("user_id"), 5), pa.int64())
            rows = rows.append_column("user_bucket", buckets.take(owner))
        if name in opened:
            write_deltalake(opened[name], rows, mode="append")
        else:
            uri = str(delta_lake / name)
            by = "user_bucket" if name in BUCKETED else "date"
            write_deltalake(uri, rows, mode="append", partition_by=[by])
            opened[name] = DeltaTable(uri)

    began = time.perf_counter()
    for commit in range(scale.commits):
        day = day_of(scale, commit // scale.commits_per_day)
        slot = commit % scale.commits_per_day
        part = f"batch-{commit:08x}"
        m0, m1 = int(m_bounds[commit]), int(m_bounds[commit + 1])
        i0, i1 = int(i_bounds[commit]), int(i_bounds[commit + 1])
        tables = {
            "manifests": manifest_rows(rng, m0, m1 - m0, day, slot, scale),
            "wardrobe_items": item_rows(rng, owners[i0:i1], i0, day, slot, scale),
        }
        for name, rows in tables.items():
            folder = legacy / name / f"date={day.isoformat()}"
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(rows, folder / f"{part}.parquet", compression="zstd")
            rows = rows.append_column("date", _constant(day.isoformat(), rows.num_rows))
            pending[name].append(rows.append_column("_part", _constant(part, rows.num_rows)))
            day_done = slot == scale.commits_per_day - 1
            bulk = day_done and sum(t.num_rows for t in pending[name]) >= BULK_ROWS
            if commit >= first_recent - 1 or bulk:
                commit_delta(name)
        if slot == scale.commits_per_day - 1:
            events = _write_feedback(
                rng, owners, scale, commit // scale.commits_per_day, int(i1), (delta_lake, legacy)
            )
            pending["user_events"].extend(events)
            queued = sum(t.num_rows for t in pending["user_events"])
            if commit >= first_recent - 1 or queued >= BULK_ROWS:
                commit_delta("user_events")
        if (commit + 1) % max(scale.commits // 10, 1) == 0:
            print(
                f"#   {scale.name}: {commit + 1}/{scale.commits} commits, "
                f"{time.perf_counter() - began:.0f} s",
                flush=True,
            )
    for name in pending:
        commit_delta(name)
    active = _write_users(rng, scale, (delta_lake, legacy))
    return _inputs(rng, scale, active, root)


def _buckets(users: int) -> pa.Array:
    """``delta.user_bucket`` of user 0..users-1 (the project's function, once per user)."""
    from dresscode.core import delta

    return pa.array([delta.user_bucket(f"user-{u:07d}") for u in range(users)], pa.string())


def _constant(value: str, n: int):
    return pa.array([value] * n, pa.string())


def _write_feedback(
    rng, owners, scale: Scale, day_index: int, items_so_far: int, lakes
) -> list[pa.Table]:
    """One day of feedback events in ``feedback_parts_per_day`` parts (one per app export);
    returns them as ``lake.write_user_events`` keeps them (``date``, ``_part``), for the
    Delta lake's ``user_events``."""
    from dresscode.core import delta

    events = []
    day = day_of(scale, day_index)
    per_day = round(scale.items * scale.feedback_per_item / scale.days)
    parts = scale.feedback_parts_per_day
    for p in range(parts):
        n = per_day // parts + (1 if p < per_day % parts else 0)
        if not n:
            continue
        rows = feedback_rows(rng, owners, day, n, items_so_far)
        part = f"events-{day_index:05d}{p:02d}"
        for lake in lakes:
            folder = lake / "feedback" / f"date={day.isoformat()}"
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(rows, folder / f"{part}.parquet", compression="zstd")
        edits = rows.select(
            [c for c in delta.TABLES["user_events"].types if c in rows.column_names]
        )
        edits = edits.append_column("date", _constant(day.isoformat(), edits.num_rows))
        events.append(edits.append_column("_part", _constant(f"{day}-{part}", edits.num_rows)))
    return events


def _write_users(rng, scale: Scale, lakes) -> list[int]:
    """Profiles of every user: ``active`` of them seen within the last 30 days."""
    as_of = datetime.combine(LAST_DAY + timedelta(days=1), datetime.min.time(), UTC)
    active = np.sort(rng.choice(scale.users, size=min(scale.active, scale.users), replace=False))
    days_ago = rng.integers(31, 365, size=scale.users)
    days_ago[active] = rng.integers(0, 29, size=len(active))
    seen = np.datetime64(as_of.replace(tzinfo=None), "us") - days_ago.astype("timedelta64[D]")
    table = pa.table(
        {
            "user_id": user_ids(np.arange(scale.users)),
            "city": _pick(rng, CITIES, scale.users),
            "last_active_at": pa.array(seen, pa.timestamp("us", tz="UTC")),
        }
    )
    from deltalake import write_deltalake

    delta_lake, legacy = lakes
    folder = legacy / "users" / f"date={LAST_DAY.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "profiles-0000000000000000.parquet", compression="zstd")
    # The project's users table: state, one row per user, partitioned by user_bucket.
    state = table.append_column("date", _constant(LAST_DAY.isoformat(), table.num_rows))
    state = state.append_column("user_bucket", _buckets(scale.users))
    write_deltalake(str(delta_lake / "users"), state, partition_by=["user_bucket"])
    return [int(u) for u in active]


def _inputs(rng, scale: Scale, active: list[int], root: Path) -> dict:
    """Landing keys (half processed on the last day, half new), the batch, the window."""
    last = LAST_DAY.isoformat()
    manifest = ds.dataset(root / "legacy" / "manifests" / f"date={last}", format="parquet")
    seen = manifest.to_table(columns=["upload_key"]).column("upload_key").to_pylist()
    half = LANDING_KEYS // 2
    processed = [
        seen[int(i)] for i in rng.choice(len(seen), size=min(half, len(seen)), replace=False)
    ]
    new_users = rng.integers(0, scale.users, size=LANDING_KEYS - half)
    new = [f"user-{u:07d}/upload-{scale.manifests + i}.jpg" for i, u in enumerate(new_users)]
    from dresscode.core import delta

    ordered = sorted((f"user-{u:07d}" for u in range(scale.users)), key=delta.user_order)
    middle = scale.users // 2 - BATCH_USERS // 2
    inputs = {
        "scale": asdict(scale),
        "keys": processed + new,
        "processed_keys": len(processed),
        "batch": ordered[middle : middle + BATCH_USERS],
        "window": {
            "start": datetime.combine(LAST_DAY, datetime.min.time(), UTC).isoformat(),
            "as_of": datetime.combine(
                LAST_DAY + timedelta(days=1), datetime.min.time(), UTC
            ).isoformat(),
        },
        "active": len(active),
    }
    (root / "inputs.json").write_text(json.dumps(inputs))
    return inputs


# --- one read (child process) ----------------------------------------------------------------


def run_read(read: str, layout: str, lake: Path, home: Path, inputs_file: Path) -> dict:
    """Time one read as a task would run it; the child's only output is one RESULT line."""
    os.environ["DRESSCODE_HOME"] = str(home)
    os.environ["DRESSCODE_LAKE_URI"] = lake.as_uri()
    import deltalake  # noqa: F401  (every layout imports what a task process imports)
    import pandas  # noqa: F401
    from airflow.sdk import ObjectStoragePath  # noqa: F401

    from dresscode.core import config, delta, tables
    from dresscode.features import style
    from dresscode.features import tasks as features
    from dresscode.ingest import tasks as ingest

    config.get_settings.cache_clear()
    settings = config.get_settings()
    if layout == "parquet parts":
        # The reader before this change: the tables are Parquet parts, read part by part, and
        # the fold's events come from the feedback table.
        delta.is_delta = lambda name: False
        tables.USER_EVENTS_TABLE = tables.FEEDBACK
    style.vocabularies()  # the blueprint's vocabularies are loaded once per process
    inputs = json.loads(inputs_file.read_text())
    rss_before = _status_mb("VmRSS")
    began = time.perf_counter()
    if read == "discovery":
        keys = inputs["keys"]
        if layout == "parquet parts":
            state = tables.manifest_state(settings)  # the old discover: the whole manifest
        else:
            state = tables.manifest_state(settings, keys=keys, days=ingest.lookback_days(settings))
        answer = sum(1 for k in keys if k in state)
    elif read == "batch":
        wardrobes = tables.current_wardrobes_of(inputs["batch"], settings)
        answer = sum(len(items) for items in wardrobes.values())
    elif read == "style":
        computed = features.compute_style(inputs["window"], settings)
        answer = computed["users"]
    else:
        raise ValueError(f"unknown read {read!r}")
    seconds = time.perf_counter() - began
    # VmHWM, not ru_maxrss: a child's ru_maxrss starts from its parent's high-water mark.
    result = {
        "seconds": seconds,
        "peak_mb": _status_mb("VmHWM"),
        "rss_before_mb": rss_before,
        "answer": answer,
    }
    result["parts"] = _breakdown(read, layout, inputs, settings)
    return result


def _breakdown(read: str, layout: str, inputs: dict, settings) -> dict:
    """Where the time goes, after the measured call (warm: a second read in the process):
    the table reads of the call on their own, and for Delta how many files the read opens."""
    from dresscode.core import lake, tables
    from dresscode.ingest import tasks as ingest

    timed: dict[str, float | str] = {}

    def clock(label: str, call) -> None:
        began = time.perf_counter()
        call()
        timed[label] = round(time.perf_counter() - began, 3)

    if read == "discovery" and layout != "parquet parts":
        days: list[str] = []
        clock("lookback_days", lambda: days.extend(ingest.lookback_days(settings)))
        keys = [("upload_key", "in", sorted(set(inputs["keys"])))]
        clock("manifests", lambda: lake.read_table("manifests", settings, days=days, filters=keys))
        timed["files"] = _files("manifests", days, "upload_key", inputs["keys"], settings)
    elif read == "batch":
        users = [("user_id", "in", inputs["batch"])]
        clock("wardrobe_items", lambda: lake.read_table("wardrobe_items", settings, filters=users))
        events = tables.USER_EVENTS_TABLE.name
        clock(events, lambda: lake.read_table(events, settings, filters=users))
        if layout != "parquet parts":
            timed["files"] = _files("wardrobe_items", None, "user_id", inputs["batch"], settings)
    return timed


def _files(name: str, days, column: str, values: list[str], settings) -> str:
    """Files of the table / files ``delta.read`` scans for this read (its file-pruning
    predicate: partitions, and the values' range per bucket)."""
    from dresscode.core import delta, delta_filters

    table = delta.open_table(name, settings)
    names = set(pa.schema(table.schema()).names)
    _, pruning = delta_filters.conditions(days, [(column, "in", values)], names)
    kept = table.file_uris(file_pruning_predicate=" AND ".join(pruning)) if pruning else None
    total = len(table.file_uris())
    return f"{total} / {total if kept is None else len(kept)}"


def run_compaction(lake: Path, home: Path) -> dict:
    """What lake_maintenance runs on each table (``maintenance.maintain``), vacuum at 0 h."""
    os.environ["DRESSCODE_HOME"] = str(home)
    os.environ["DRESSCODE_LAKE_URI"] = lake.as_uri()
    import dataclasses

    from dresscode.core import config, delta
    from dresscode.lake import maintenance

    config.get_settings.cache_clear()
    settings = dataclasses.replace(config.get_settings(), lake_retention_hours=0)
    began = time.perf_counter()
    files = {}
    for name in delta.TABLES:
        if delta.open_table(name, settings) is None:
            continue
        done = maintenance.maintain(name, settings, today=LAST_DAY + timedelta(days=1))
        files[name] = (done["files_before"], done["files_after"])
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "peak_mb": _status_mb("VmHWM"), "files": files}


def _status_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (this process's peak) from /proc, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- driver ----------------------------------------------------------------------------------


def _child(args: list[str], cap_mb: int) -> tuple[dict | None, str]:
    cmd = [sys.executable, __file__, *args]
    began = time.perf_counter()
    code, stdout, stderr, capped = run_capped(cmd, cap_mb)
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    if capped:
        return None, f"killed: RSS above {cap_mb} MB after {time.perf_counter() - began:.0f} s"
    if code or not lines:
        return None, f"FAILED rc={code}: {stderr[-2000:]}"
    return json.loads(lines[-1][len("RESULT ") :]), ""


def _built(root: Path, scale: Scale) -> dict | None:
    """The inputs of a lake an earlier run built with the same options, or None."""
    inputs_file = root / "inputs.json"
    if not inputs_file.exists():
        return None
    inputs = json.loads(inputs_file.read_text())
    return inputs if inputs.get("scale") == asdict(scale) else None


def measure(read: str, layout: str, root: Path, repeat: int, cap_mb: int) -> dict:
    lake = root / ("legacy" if layout == "parquet parts" else "delta")
    home = root / "home"
    home.mkdir(exist_ok=True)
    runs, error = [], ""
    for _ in range(repeat):
        result, error = _child(
            [
                "--child",
                read,
                "--layout",
                layout,
                "--lake",
                str(lake),
                "--home",
                str(home),
                "--inputs",
                str(root / "inputs.json"),
            ],
            cap_mb,
        )
        if result is None:
            break
        runs.append(result)
    if not runs:
        return {"error": error}
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "seconds_all": [round(r["seconds"], 3) for r in runs],
        "peak_mb": max(r["peak_mb"] for r in runs),
        "call_mb": max(r["peak_mb"] - r["rss_before_mb"] for r in runs),
        "answer": runs[0]["answer"],
        "answers": sorted({r["answer"] for r in runs}),
        "parts": runs[0].get("parts", {}),
        "error": error,
    }


def scales_from(args: argparse.Namespace) -> list[Scale]:
    small = Scale(
        "small",
        args.manifests,
        args.users,
        args.days,
        args.commits_per_day,
        args.feedback_parts_per_day,
        args.feedback_per_item,
        args.active,
        min(args.recent_days, args.days),
    )
    longer = args.history == "longer"
    large = Scale(
        "large",
        args.manifests * args.factor,
        args.users * args.factor,
        args.days * args.factor if longer else args.days,
        args.commits_per_day,
        args.feedback_parts_per_day,
        args.feedback_per_item,
        args.active,
        min(args.recent_days, args.days),
    )
    return [s for s in (small, large) if s.name in args.scale]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scale", nargs="+", choices=("small", "large"), default=["small", "large"]
    )
    parser.add_argument(
        "--manifests",
        type=int,
        default=1_000_000,
        help="manifest rows of the small lake (large: x --factor)",
    )
    parser.add_argument(
        "--users",
        type=int,
        default=100_000,
        help=f"users of the small lake, {ITEMS_PER_USER} items each",
    )
    parser.add_argument("--factor", type=int, default=10, help="large / small")
    parser.add_argument("--days", type=int, default=90, help="days of history of the small lake")
    parser.add_argument(
        "--history",
        choices=("longer", "busier"),
        default="longer",
        help="large lake: factor x the days (default) or factor x per day",
    )
    parser.add_argument("--commits-per-day", type=int, default=8, help="ingest commits a day")
    parser.add_argument(
        "--recent-days",
        type=int,
        default=8,
        help="newest days committed commit by commit in Delta (older: bulk, one file a day)",
    )
    parser.add_argument("--feedback-parts-per-day", type=int, default=4)
    parser.add_argument(
        "--feedback-per-item",
        type=float,
        default=0.05,
        help="feedback events over the history, per wardrobe item",
    )
    parser.add_argument(
        "--active", type=int, default=10_000, help="active users (style interval), at both scales"
    )
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per read")
    parser.add_argument("--reads", nargs="+", choices=READS, default=list(READS))
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the lakes of an earlier run in --dir built with the same options",
    )
    parser.add_argument(
        "--no-baseline-at-large",
        action="store_true",
        help="skip the Parquet-parts baseline on the large lake",
    )
    parser.add_argument(
        "--rss-cap-mb",
        type=int,
        default=8000,
        help="kill a read whose RSS passes this (the machine is shared)",
    )
    parser.add_argument("--dir", type=Path, default=None, help="where the lakes go")
    parser.add_argument("--keep", action="store_true", help="keep the lakes afterwards")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="50k / 5k users and 500k / 50k users, 20 and 200 days, 1 run each",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--layout", help=argparse.SUPPRESS)
    parser.add_argument("--lake", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "compaction":
        print("RESULT " + json.dumps(run_compaction(args.lake, args.home)), flush=True)
        return 0
    if args.child:
        result = run_read(args.child, args.layout, args.lake, args.home, args.inputs)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    if args.quick:
        args.manifests, args.users, args.days, args.repeat = 50_000, 5_000, 20, 1
        args.commits_per_day, args.active = 4, 1_000
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench-lake-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"# nproc={os.cpu_count()} dir={work} load={os.getloadavg()[0]:.1f}", flush=True)
    results: dict[tuple[str, str, str], dict] = {}
    scales = scales_from(args)
    facts: dict[str, dict] = {}
    failed = False
    for scale in scales:
        root = work / scale.name
        facts[scale.name] = {"inputs": _built(root, scale) if args.reuse else None}
        if facts[scale.name]["inputs"] is None:
            began = time.perf_counter()
            facts[scale.name]["inputs"] = build(scale, root)
            facts[scale.name]["build_s"] = time.perf_counter() - began
            print(f"# {scale.name}: built {scale} in {facts[scale.name]['build_s']:.0f} s")
        compacted = root / "delta" / "compaction.json"  # the z-order is done once per lake
        for layout in args.layouts:
            if layout == "parquet parts" and scale.name == "large" and args.no_baseline_at_large:
                continue
            if layout == "delta" and compacted.exists():
                for read in READS:
                    results[(scale.name, read, layout)] = {"error": "lake already z-ordered"}
                continue
            if layout == "delta z-ordered" and not compacted.exists():
                (root / "home").mkdir(exist_ok=True)
                compaction, error = _child(
                    [
                        "--child",
                        "compaction",
                        "--lake",
                        str(root / "delta"),
                        "--home",
                        str(root / "home"),
                    ],
                    args.rss_cap_mb,
                )
                print(f"# {scale.name}: compaction {compaction or error}", flush=True)
                if compaction is None:
                    facts[scale.name]["compaction"] = {"error": error}
                    failed = True
                    continue
                compacted.write_text(json.dumps(compaction))
            if compacted.exists():
                facts[scale.name]["compaction"] = json.loads(compacted.read_text())
            for read in args.reads:
                result = measure(read, layout, root, args.repeat, args.rss_cap_mb)
                results[(scale.name, read, layout)] = result
                print(f"# {scale.name} {read} [{layout}]: {json.dumps(result)}", flush=True)
                if result.get("error") and not result["error"].startswith("killed"):
                    failed = True
        if not args.keep:
            shutil.rmtree(root / "legacy", ignore_errors=True)
            shutil.rmtree(root / "delta", ignore_errors=True)
    failed |= not check_answers(results)
    report(args, scales, results, facts)
    if not args.keep and args.dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


def check_answers(results: dict) -> bool:
    """Every layout must give the same answer for the same read and scale."""
    ok = True
    for scale, read in {(s, r) for s, r, _ in results}:
        answers = {
            layout: r["answers"]
            for (s, rd, layout), r in results.items()
            if s == scale and rd == read and "answers" in r
        }
        if len({tuple(a) for a in answers.values()}) > 1:
            print(f"# MISMATCH {scale} {read}: {answers}", flush=True)
            ok = False
    return ok


def _cell(result: dict | None) -> tuple[str, str, str]:
    if result is None:
        return "not run", "", ""
    if "seconds" not in result:
        return result.get("error", "failed")[:60], "", ""
    return f"{result['seconds']:.2f}", f"{result['peak_mb']:.0f}", f"{result['call_mb']:.0f}"


def _step(done: dict | None) -> str:
    if not done:
        return "not run"
    if "seconds" not in done:
        return done.get("error", "failed")
    return f"{done['seconds']:.0f} s, peak {done['peak_mb']:.0f} MB, files {done['files']}"


def report(args, scales: list[Scale], results: dict, facts: dict) -> None:
    print()
    print(f"`.venv/bin/python bench/lake.py {shlex.join(sys.argv[1:])}`")
    print()
    for scale in scales:
        f = facts[scale.name]
        built = f"built in {f['build_s']:.0f} s" if "build_s" in f else "built by an earlier run"
        print(
            f"- {scale.name}: {scale.manifests:,} manifest rows, {scale.users:,} users x "
            f"{ITEMS_PER_USER} = {scale.items:,} items, {scale.days} days x "
            f"{scale.commits_per_day} commits, feedback "
            f"{round(scale.items * scale.feedback_per_item):,} events in "
            f"{scale.days * scale.feedback_parts_per_day:,} parts, {f['inputs']['active']:,} "
            f"active users; {built}; lake_maintenance {_step(f.get('compaction'))}"
        )
    print()
    print(
        "| read | scale | layout | s (median) | peak RSS MB | added by the call MB "
        "| answer | baseline / this |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for read in args.reads:
        for scale in scales:
            base = results.get((scale.name, read, "parquet parts"))
            for layout in args.layouts:
                result = results.get((scale.name, read, layout))
                seconds, peak, call = _cell(result)
                ratio = ""
                if result and "seconds" in result and base and "seconds" in base:
                    ratio = f"{base['seconds'] / result['seconds']:.1f}x"
                answer = result.get("answer", "") if result else ""
                print(
                    f"| {read} | {scale.name} | {layout} | {seconds} | {peak} | {call} "
                    f"| {answer} | {ratio} |"
                )
    print()
    print(
        "| read | scale | layout | where the time goes (s, warm second read) "
        "| Delta files: live / scanned |"
    )
    print("|---|---|---|---|---:|")
    for read in args.reads:
        for scale in scales:
            for layout in args.layouts:
                parts = dict(results.get((scale.name, read, layout), {}).get("parts") or {})
                files = parts.pop("files", "")
                if parts or files:
                    spent = ", ".join(f"{k} {v}" for k, v in parts.items())
                    print(f"| {read} | {scale.name} | {layout} | {spent} | {files} |")
    names = [s.name for s in scales]
    if names == ["small", "large"]:
        print()
        print(
            f"| read | layout | time large / small | added MB large / small "
            f"| flat (both within {FLAT_WITHIN}x) |"
        )
        print("|---|---|---:|---:|---|")
        for read in args.reads:
            for layout in args.layouts:
                small = results.get(("small", read, layout), {})
                large = results.get(("large", read, layout), {})
                if "seconds" in small and "seconds" in large:
                    slower = large["seconds"] / small["seconds"]
                    bigger = large["call_mb"] / max(small["call_mb"], 1)
                    flat = "yes" if max(slower, bigger) <= FLAT_WITHIN else "no"
                    print(f"| {read} | {layout} | {slower:.2f} | {bigger:.2f} | {flat} |")
    print()
    print("| target | scale | layout | measured | met |")
    print("|---|---|---|---:|---|")
    for read, (limit_s, limit_mb) in TARGETS.items():
        for scale in scales:
            for layout in ("delta", "delta z-ordered"):
                r = results.get((scale.name, read, layout), {})
                if "seconds" not in r:
                    continue
                met = r["seconds"] < limit_s and r["call_mb"] < limit_mb
                print(
                    f"| {read} < {limit_s:.0f} s and < {limit_mb} MB | {scale.name} | {layout} "
                    f"| {r['seconds']:.2f} s, {r['call_mb']:.0f} MB added "
                    f"({r['peak_mb']:.0f} MB peak) | {'yes' if met else 'no'} |"
                )


if __name__ == "__main__":
    sys.exit(main())
