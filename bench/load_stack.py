"""Load run: N seeded photos through the local stack (`dresscode up`), measured from outside.

What runs: a scratch stack home (default ``.local/load``, its own ports) is seeded with N phone
photos by ``dresscode.local.seed`` (JPEG, PNG, WebP and HEIC with EXIF GPS and rotations, at
``--size``) in ``--workers`` processes, then ``dresscode up --photos 0`` starts Airflow
(LocalExecutor, SQLite metadata DB) and the simulator and runs the whole pipeline and the
monitoring demo, exactly as ``make up`` does. ``DRESSCODE_INGEST_MAX_PHOTOS_PER_RUN`` is raised
to N so one wardrobe_ingest run takes the whole landing (the default cap, 5,000, would leave the
rest to the next scheduled run).

The model is the project's vLLM simulator — **a stand-in for Gemma 4: the throughput here is
the pipeline's (decode, normalize, lake writes, Airflow), not Gemma's**.

What it reports: whether every run succeeded; photos accepted and quarantined; the
wardrobe_ingest run's wall time and photos/s; peak RSS per task (the kernel's high-water mark
``VmHWM`` of each ``airflow worker -- <task instance id>`` process, read every 0.25 s while it
runs; mapped tasks are summarised as max and median over their map indexes); and every log line
with ``database is locked``. The stack is stopped at the end unless ``--keep``.

    .venv/bin/python bench/load_stack.py --photos 10000
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
WORKER_TITLE = re.compile(rb"^airflow worker -- ([0-9a-f-]{36})")


def _seed_range(args: tuple[int, int, tuple[int, int], str]) -> int:
    from dresscode.local import seed

    start, count, size, script = args
    result = seed.seed(count, script_path=Path(script), start=start, size=size, bad_files=False)
    return result.new


def seed_photos(n: int, size: tuple[int, int], workers: int, script: Path) -> tuple[int, float]:
    """Seed ``n`` photos in ``workers`` processes; their script lines go into ``script``.

    Photo numbers start after the monitoring demo's batches (photos 0..79 of ``up --photos 0``),
    so the demo still ingests batches of its own.
    """
    from dresscode.local import runs

    first = len(runs.DEMO_BATCHES) * runs.DEMO_BATCH
    started = time.perf_counter()
    step = -(-n // workers)
    parts = [
        (s, min(step, first + n - s), size, f"{script}.part{i}")
        for i, s in enumerate(range(first, first + n, step))
    ]
    with ProcessPoolExecutor(workers) as pool:
        new = sum(pool.map(_seed_range, parts))
    script.parent.mkdir(parents=True, exist_ok=True)
    with script.open("a") as out:
        for *_, part in parts:
            out.write(Path(part).read_text())
            Path(part).unlink()
    return new, time.perf_counter() - started


class PeakRss:
    """Samples the VmHWM of every Airflow task process until stopped: ti id -> peak MB."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self.peaks: dict[str, float] = {}
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            for proc in Path("/proc").iterdir():
                if proc.name.isdigit():
                    self._sample(proc)

    def _sample(self, proc: Path) -> None:
        try:
            match = WORKER_TITLE.match((proc / "cmdline").read_bytes())
            if not match:
                return
            status = (proc / "status").read_text()
        except OSError:  # the process ended between the listing and the read
            return
        hwm = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
        if hwm:
            ti = match[1].decode()
            self.peaks[ti] = max(self.peaks.get(ti, 0.0), int(hwm[1]) / 1024)


def task_table(db: Path, peaks: dict[str, float]) -> list[tuple[str, str, int, float, float]]:
    """(dag_id, task_id, instances, max peak MB, median peak MB) for each sampled task."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, dag_id, task_id FROM task_instance").fetchall()
    by_task: dict[tuple[str, str], list[float]] = {}
    for ti, dag_id, task_id in rows:
        # SQLite keeps the UUID as 32 hex digits; the process title shows it with dashes.
        peak = peaks.get(str(uuid.UUID(ti)))
        if peak is not None:
            by_task.setdefault((dag_id, task_id), []).append(peak)
    return [
        (dag, task, len(mbs), max(mbs), statistics.median(mbs))
        for (dag, task), mbs in sorted(by_task.items())
    ]


def ingest_runs(db: Path, manifests: pd.DataFrame) -> list[tuple[str, float, int]]:
    """(run_id, seconds, uploads it settled) of every successful wardrobe_ingest run."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT run_id, (julianday(end_date) - julianday(start_date)) * 86400 FROM dag_run "
            "WHERE dag_id = 'wardrobe_ingest' AND state = 'success' ORDER BY start_date"
        ).fetchall()
    settled = manifests.groupby("run_id")["upload_key"].nunique()
    return [(run_id, float(s), int(settled.get(run_id, 0))) for run_id, s in rows]


def locked_lines(logs: Path) -> list[str]:
    hits = []
    for path in sorted(p for p in logs.rglob("*") if p.is_file()):
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if "database is locked" in line:
                hits.append(f"{path.relative_to(logs)}:{lineno}: {line.strip()[:160]}")
    return hits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=10_000)
    parser.add_argument("--size", default="800x600", help="seeded photo size, WxH")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--home", type=Path, default=REPO / ".local" / "load")
    parser.add_argument("--airflow-port", type=int, default=8091)
    parser.add_argument("--sim-port", type=int, default=8011)
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    env = {
        **os.environ,
        "DRESSCODE_HOME": str(args.home),
        "DRESSCODE_AIRFLOW_PORT": str(args.airflow_port),
        "DRESSCODE_SIM_PORT": str(args.sim_port),
        "DRESSCODE_INGEST_MAX_PHOTOS_PER_RUN": str(max(args.photos, 1)),
    }
    os.environ.update(env)  # the seeding processes read the same settings
    from dresscode.core import lake
    from dresscode.local import stack

    if lake.list_files(lake.landing()):
        print(f"{args.home} already has uploads in landing: use a fresh --home", file=sys.stderr)
        return 2
    print(f"seeding {args.photos} photos ({args.size}) in {args.workers} processes ...", flush=True)
    new, seed_s = seed_photos(args.photos, (width, height), args.workers, stack.sim_script())
    print(f"seeded {new} uploads in {seed_s:.0f} s", flush=True)

    dresscode = str(Path(sys.executable).parent / "dresscode")
    started = time.perf_counter()
    with PeakRss() as rss:
        up = subprocess.run([dresscode, "up", "--photos", "0"], env=env, check=False)
    up_s = time.perf_counter() - started
    try:
        db = args.home / "airflow" / "airflow.db"
        manifests = lake.read_table("manifests")
        runs = ingest_runs(db, manifests)
        tasks = task_table(db, rss.peaks)
        locked = locked_lines(args.home / "logs")
        sim = httpx.get(f"http://127.0.0.1:{args.sim_port}/sim/stats", timeout=10).json()
        accepted = int((manifests["status"] == "accepted").sum())
        quarantined = int((manifests["status"] == "quarantined").sum())
    finally:
        if not args.keep:
            subprocess.run([dresscode, "down"], env=env, check=False)

    print()
    print(f"## Load run: {args.photos} photos, `dresscode up` exit {up.returncode}")
    print()
    print(f"- seeding: {seed_s:.0f} s; `dresscode up --photos 0`: {up_s:.0f} s end to end")
    print(
        f"- machine: {os.cpu_count()} CPUs, load average at the end {os.getloadavg()[1]:.1f} (5 min)"
    )
    print(f"- manifests: {accepted} accepted, {quarantined} quarantined")
    for run_id, seconds, settled in runs:
        rate = f", {settled / seconds:.1f} uploads/s" if settled else ""
        print(f"- wardrobe_ingest {run_id}: {settled} uploads settled in {seconds:.0f} s{rate}")
    print(f"- task processes sampled for peak RSS: {len(rss.peaks)}")
    calls, busy = sim["requests_total"], sim["busy_slot_seconds"]
    if calls:
        per_call = busy / calls
        print(
            f"- simulated endpoint: {calls} calls, {per_call:.2f} s per call, "
            f"{sim['max_num_seqs']} slots: capacity {sim['max_num_seqs'] / per_call:.1f} calls/s"
        )
    print(f"- 'database is locked' lines in the logs: {len(locked)}")
    for line in locked[:10]:
        print(f"  {line}")
    print()
    print("| DAG | task | instances | peak RSS max (MB) | peak RSS median (MB) |")
    print("|---|---|---|---|---|")
    for dag, task, n, top, median in tasks:
        print(f"| {dag} | {task} | {n} | {top:.0f} | {median:.0f} |")
    return 0 if up.returncode == 0 and not locked else 1


if __name__ == "__main__":
    sys.exit(main())
