"""Benchmark: Feast materialization of ``user_style`` — the project's way vs Feast's defaults.

What is measured: loading the latest ``user_style`` row per user of one nightly window into
the online store, for N users, with every case in its own fresh subprocess (own
DRESSCODE_HOME, so an empty online store and registry) over the *same* lake:

* ``feast-default`` — ``FeatureStore.materialize`` with Feast's defaults (the repo's
  feature_store.yaml without ``materialization:``, so ``online_write_batch_size`` is None);
* ``feast-batched`` — the same call with ``online_write_batch_size`` = the project's setting;
* ``project`` — ``dresscode.features.materialization.materialize`` (partition pruning, a key-only pass for
  latest-per-entity, then record batches through ``FeatureStore.write_to_online_store``);
* ``project-redis`` / ``feast-default-redis`` (``--redis``) — the same into Redis at
  ``--redis-url`` (a dedicated db number, 14 by default; the keys are removed afterwards
  with ``store.teardown()``, so flush that db if a case is killed midway).

The lake holds ``--days`` nightly snapshots (partition ``date=D`` has event time D+1 00:00,
each user once per day), so the window of the last night, [D - overlap, D + 1], holds two
rows per user: both ways must pick the newer one (the script checks a sample).

The nights are commits to the ``user_style`` Delta table (``--row-group``, default the table's
``DeltaSpec.row_group``, rows per row group: the project's reader decodes one group at a time).

Each case prints one JSON line: seconds of the materialize call, rows/s (entities written
per second), peak RSS of the process (``VmHWM``) and RSS just before the call. Run:

    .venv/bin/python bench/materialize.py --users 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _capped import run_capped

REPO = Path(__file__).resolve().parents[1]
LAST_DAY = datetime(2026, 5, 10, tzinfo=UTC)
CASES = ("feast-default", "feast-batched", "project")
REDIS_CASES = ("project-redis", "feast-default-redis")


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- data --------------------------------------------------------------------------------------


def make_lake(lake: Path, users: int, days: int, row_group: int) -> None:
    """``days`` nightly user_style snapshots of ``users`` users in the ``user_style`` Delta
    table, one part (one commit) a night, typed like the lake writes it
    (``delta_types.USER_STYLE_TYPES``), ``row_group`` rows per row group."""
    import numpy as np
    import pyarrow as pa
    from deltalake import WriterProperties, write_deltalake

    from dresscode.core import delta, delta_types
    from dresscode.features import style

    arrow = {
        delta_types.STR: pa.string(),
        delta_types.INT: pa.int64(),
        delta_types.STRS: pa.list_(pa.string()),
        delta_types.TIMESTAMP: pa.timestamp("us", "UTC"),
    }
    schema = pa.schema(
        [
            (name, arrow.get(delta_types.USER_STYLE_TYPES.get(name, ""), pa.float64()))
            for name in style.columns()
        ]
    )
    rng = np.random.default_rng(7)
    ids = pa.array([f"user-{i:08d}" for i in range(users)], pa.string())
    palette = np.array(["black", "white", "navy", "grey", "beige", "red", "green", "blue"])
    colors = [list(palette[rng.choice(8, size=3, replace=False)]) for _ in range(min(users, 4096))]
    for back in range(days):
        day = LAST_DAY - timedelta(days=days - 1 - back)
        event = day + timedelta(days=1)
        cols = {}
        for field in schema:
            name = field.name
            if name == "user_id":
                cols[name] = ids
            elif name in ("event_timestamp", "created"):
                cols[name] = pa.array(np.full(users, event), field.type)
            elif name == "last_upload":
                cols[name] = pa.array(np.full(users, day), field.type)
            elif pa.types.is_list(field.type):  # top_colors, worn_colors, worn_pairs
                cols[name] = pa.array([colors[i % len(colors)] for i in range(users)], field.type)
            elif name == "wardrobe_size":
                # The day is encoded in the size so the check can tell the snapshots apart.
                cols[name] = pa.array(rng.integers(0, 200, users) * 100 + back, pa.int64())
            elif pa.types.is_integer(field.type):
                cols[name] = pa.array(rng.integers(0, 20, users), pa.int64())
            else:
                cols[name] = pa.array(rng.random(users), pa.float64())
        cols[delta.PARTITION] = pa.array([day.date().isoformat()] * users, pa.string())
        cols[delta.PART] = pa.array(["night"] * users, pa.string())
        write_deltalake(
            str(lake / "user_style"),
            pa.table(cols),
            partition_by=[delta.PARTITION],
            mode="append",
            writer_properties=WriterProperties(max_row_group_size=row_group, compression="SNAPPY"),
        )


# --- one case (child process) --------------------------------------------------------------------


def _default_yaml(home: Path, redis_url: str | None) -> Path:
    """The repo's yaml with Feast's materialization defaults (and Redis if asked)."""
    import yaml

    raw = yaml.safe_load((REPO / "feature_repo" / "feature_store.yaml").read_text())
    raw.pop("materialization", None)
    if redis_url:
        raw["online_store"] = {"type": "redis", "connection_string": redis_url}
    path = home / "feature_store.default.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _bench_repo(home: Path, redis_url: str) -> Path:
    """A copy of feature_repo whose full-stack yaml keeps Redis but a file registry: the
    registry is not what is measured, and the shared PostgreSQL stays untouched."""
    import yaml

    repo = home / "feature_repo"
    shutil.copytree(REPO / "feature_repo", repo, ignore=shutil.ignore_patterns("__pycache__"))
    raw = yaml.safe_load((repo / "feature_store.fullstack.yaml").read_text())
    raw["registry"] = {"registry_type": "file", "path": str(home / "feast" / "registry.db")}
    raw["online_store"]["connection_string"] = redis_url
    (repo / "feature_store.fullstack.yaml").write_text(yaml.safe_dump(raw))
    return repo


def run_case(
    case: str, lake: Path, home: Path, redis_url: str | None, batch: int, days: int
) -> dict:
    os.environ.update(
        {
            "DRESSCODE_HOME": str(home),
            "DRESSCODE_LAKE_URI": lake.as_uri(),
            "DRESSCODE_FEAST_WRITE_BATCH_SIZE": str(batch),
        }
    )
    if redis_url:
        (home / "feast").mkdir(parents=True, exist_ok=True)
        os.environ["DRESSCODE_FEAST_ENV"] = "fullstack"
        os.environ["DRESSCODE_FEAST_REPO"] = str(_bench_repo(home, redis_url))
    from dresscode.core.config import get_settings
    from dresscode.features import materialization as features
    from dresscode.features import store as feature_store

    settings = get_settings()
    store = _store(case, settings, home, redis_url)
    definitions = feature_store.load_definitions(settings)
    repo = feature_store.repo_contents(definitions, store.project)
    store.apply([*repo.data_sources, *repo.entities, *repo.feature_views, *repo.feature_services])
    start, end = LAST_DAY, LAST_DAY + timedelta(days=1)
    window_start = start - timedelta(hours=settings.materialize_overlap_h)
    rss_before = _rss_mb("VmRSS")
    began = time.perf_counter()
    if case.startswith("project"):
        report = features.materialize(start, end, views=("user_style",), settings=settings)
        written = report.entities_written
    else:
        store.materialize(window_start, end, feature_views=["user_style"])
        written = None
    seconds = time.perf_counter() - began
    peak = _rss_mb("VmHWM")
    sample = store.get_online_features(
        features=["user_style:wardrobe_size"],
        entity_rows=[{"user_id": f"user-{i:08d}"} for i in (0, 1, 2)],
    ).to_dict()["wardrobe_size"]
    result = {
        "case": case,
        "seconds": round(seconds, 1),
        "entities_written": written,
        "rss_before_mb": round(rss_before),
        "peak_rss_mb": round(peak),
        "newest_snapshot": all(size % 100 == days - 1 for size in sample),
    }
    if redis_url:
        store.teardown()  # removes this project's keys from the bench's Redis db
    return result


def _store(case: str, settings, home: Path, redis_url: str | None):
    from feast import FeatureStore

    from dresscode.features import store as features

    if case.startswith("project"):
        return features.feature_store(settings)
    (home / "feast").mkdir(parents=True, exist_ok=True)
    yaml_file = _default_yaml(home, redis_url)
    if case == "feast-batched":
        import yaml

        raw = yaml.safe_load(yaml_file.read_text())
        raw["materialization"] = {"online_write_batch_size": settings.feast_write_batch_size}
        yaml_file.write_text(yaml.safe_dump(raw))
    return FeatureStore(repo_path=str(settings.feast_repo), fs_yaml_file=yaml_file)


# --- driver ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--days", type=int, default=3, help="nightly snapshots in the lake")
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    parser.add_argument("--redis", action="store_true", help="also the Redis cases")
    parser.add_argument("--redis-url", default="127.0.0.1:6379,db=14")
    parser.add_argument("--batch", type=int, default=10_000, help="rows per online write")
    parser.add_argument(
        "--row-group", type=int, default=None, help="Parquet row group (default: style's)"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--rss-cap-mb",
        type=int,
        default=8000,
        help="kill a case whose RSS passes this (the machine is shared; 0 = no cap)",
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--lake", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.case:
        redis_url = args.redis_url if args.case.endswith("redis") else None
        result = run_case(args.case, args.lake, args.home, redis_url, args.batch, args.days)
        print("RESULT " + json.dumps(result), flush=True)
        return

    if args.row_group is None:
        from dresscode.core import delta

        args.row_group = delta.TABLES["user_style"].row_group or 65_536
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-materialize-"))
    cases = list(args.cases) + (list(REDIS_CASES) if args.redis else [])
    print(f"# nproc={os.cpu_count()} workdir={work}", flush=True)
    for users in args.users:
        lake = work / f"lake-{users}-rg{args.row_group}"
        if not lake.exists():
            began = time.perf_counter()
            make_lake(lake, users, args.days, args.row_group)
            print(f"# lake {users} users x {args.days} days: {time.perf_counter() - began:.0f}s")
        for case in cases:
            home = work / f"home-{users}-{case}"
            shutil.rmtree(home, ignore_errors=True)
            home.mkdir(parents=True)
            cmd = [sys.executable, __file__, "--case", case, "--lake", str(lake)]
            cmd += ["--home", str(home), "--batch", str(args.batch), "--days", str(args.days)]
            cmd += ["--redis-url", args.redis_url]
            began = time.perf_counter()
            returncode, stdout, stderr, capped = run_capped(cmd, args.rss_cap_mb)
            wall = time.perf_counter() - began
            lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
            if capped:
                print(
                    json.dumps(
                        {
                            "case": case,
                            "users": users,
                            "killed": f"RSS above {args.rss_cap_mb} MB after {wall:.0f}s",
                        }
                    ),
                    flush=True,
                )
                continue
            if returncode or not lines:
                print(f"{users} {case}: FAILED rc={returncode}\n{stderr[-3000:]}", flush=True)
                continue
            result = json.loads(lines[-1][len("RESULT ") :])
            result.update(users=users, process_wall_s=round(wall, 1))
            result["rows_per_s"] = round(users / result["seconds"]) if result["seconds"] else None
            print(json.dumps(result), flush=True)
            db = home / "feast" / "online.db"
            if db.exists():
                db.unlink()  # a 1M-user online DB is GBs; the figures are taken


if __name__ == "__main__":
    main()
