"""Load run: N seeded photos through the local stack, measured from outside.

What runs: a scratch stack home (default ``.local/load``, its own ports) is seeded with N phone
photos by ``dresscode.local.seed`` (JPEG, PNG, WebP and HEIC with EXIF GPS and rotations, at
``--size``) in ``--workers`` processes. Then, by default, the stack's Airflow parts and the
simulator start (``--executor local``: LocalExecutor on SQLite, as ``make up``; ``celery``: the
CeleryExecutor with ``--celery-workers`` workers, Redis and a scratch PostgreSQL database on
loopback) and one ``wardrobe_ingest`` run takes the whole landing
(``DRESSCODE_INGEST_MAX_PHOTOS_PER_RUN`` is raised to N). ``--whole-pipeline`` instead runs
``dresscode up --photos 0``: every DAG and the monitoring demo, as the issue-8 load run did.

The model is the project's vLLM simulator (16 slots, its latency model) — **a stand-in for
Gemma 4: the throughput here is the pipeline's (decode, normalize, lake writes, Airflow), not
Gemma's**.

What it reports: whether the runs succeeded; photos accepted and quarantined; the
wardrobe_ingest run's wall time and photos/s; **how busy the endpoint was over the run** (the
simulator's busy slot-seconds, sampled every 0.5 s, over its slots x the run's wall) and **the
phase breakdown** of the run (``_phases``: gaps with no batch running, waiting for pool slots,
task start-up, batch setup, the ramp to the first model call, the model window and how full it
kept the slots, the tail after the last answer, tries that died); the workers that ran batches;
peak RSS per task (``VmHWM`` of each ``airflow worker -- <task instance id>`` process, every
0.25 s); every log line with ``database is locked``. The stack is stopped at the end unless
``--keep``.

    .venv/bin/python bench/load_stack.py --photos 10000 --seed-cache .local/load-seed-10k
    .venv/bin/python bench/load_stack.py --photos 10000 --seed-cache .local/load-seed-10k \
        --executor celery --home .local/load-celery
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Self

import httpx
from _phases import Batch, breakdown, epoch, markdown

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


def keep_seed(cache: Path, landing: Path, script: Path) -> None:
    """Keep the seeded landing and the simulator's script for the next run (seeding 10,000
    photos takes ~17 min on 2 cores; the LocalExecutor and Celery runs take the same photos)."""
    shutil.rmtree(cache, ignore_errors=True)
    shutil.copytree(landing, cache / "landing")
    shutil.copy2(script, cache / "script.jsonl")
    (cache / "complete").touch()


def restore_seed(cache: Path, landing: Path, script: Path) -> tuple[int, float]:
    """The kept photos and script into this home, and the users' profiles as seeding writes them."""
    from dresscode.local import seed

    started = time.perf_counter()
    shutil.copytree(cache / "landing", landing, dirs_exist_ok=True)
    script.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(cache / "script.jsonl", script)
    seed.seed(0, script_path=script, bad_files=False)  # no photos: only the users table
    count = sum(1 for p in landing.rglob("*") if p.is_file())
    return count, time.perf_counter() - started


class Sampler:
    """Calls :meth:`tick` every ``interval_s`` in a thread while the ``with`` block runs, and
    once more after it."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.tick()  # one after the run, however slow the box

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.tick()

    def tick(self) -> None:
        raise NotImplementedError


class PeakRss(Sampler):
    """The VmHWM of every Airflow task process, every 0.25 s: ti id -> peak MB."""

    def __init__(self, interval_s: float = 0.25) -> None:
        super().__init__(interval_s)
        self.peaks: dict[str, float] = {}

    def tick(self) -> None:
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


class EndpointSampler(Sampler):
    """The simulator's busy slot-seconds every ``interval_s``: (epoch, busy, running)."""

    def __init__(self, url: str, interval_s: float = 0.5) -> None:
        super().__init__(interval_s)
        self.samples: list[tuple[float, float, int]] = []
        self._url = url

    def tick(self) -> None:
        try:
            stats = httpx.get(f"{self._url}/sim/stats", timeout=30).json()
        except httpx.HTTPError:
            return
        self.samples.append((time.time(), stats["busy_slot_seconds"], stats["running"]))

    def busy_between(self, begin: float, end: float) -> float | None:
        """Busy slot-seconds between two instants (linear between the samples around each)."""

        def at(when: float) -> float | None:
            before = [s for s in self.samples if s[0] <= when]
            after = [s for s in self.samples if s[0] >= when]
            if not before or not after:
                return None
            (t0, b0, _), (t1, b1, _) = before[-1], after[0]
            return b0 if t1 == t0 else b0 + (b1 - b0) * (when - t0) / (t1 - t0)

        first, last = at(begin), at(end)
        return None if first is None or last is None else last - first


def task_instances(client: Any, dag_id: str = "~", run_id: str = "~") -> list[dict[str, Any]]:
    """Every task instance (latest try) of a run, or of every run of every DAG (``~``)."""
    out: list[dict[str, Any]] = []
    while True:
        page = client.request(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
            params={"limit": 100, "offset": len(out)},
        )["task_instances"]
        out += page
        if len(page) < 100:
            return out


def batches_of(client: Any, run_id: str) -> list[Batch]:
    """Every try of every ``process`` instance of the run, with its XCom timings."""
    base = f"/api/v2/dags/wardrobe_ingest/dagRuns/{run_id}/taskInstances/process"
    found = []
    for ti in task_instances(client, "wardrobe_ingest", run_id):
        if ti["task_id"] != "process":
            continue
        index = ti["map_index"]
        tries = client.request("GET", f"{base}/{index}/tries")["task_instances"]
        try:
            value = client.request(
                "GET", f"{base}/xcomEntries/return_value", params={"map_index": index}
            )["value"]
        except RuntimeError:  # no XCom: the task failed for good
            value = None
        if isinstance(value, str):
            value = json.loads(value)
        for attempt in tries:
            if not attempt.get("start_date"):
                continue
            last = attempt["try_number"] == ti["try_number"]
            found.append(
                Batch(
                    map_index=index,
                    try_number=attempt["try_number"],
                    hostname=attempt.get("hostname") or "",
                    scheduled=epoch(attempt.get("scheduled_when")),
                    queued=epoch(attempt.get("queued_when")),
                    start=epoch(attempt["start_date"]) or 0.0,
                    end=epoch(attempt.get("end_date")) or time.time(),
                    timings=(value or {}).get("timings") if last else None,
                )
            )
    return found


def task_table(
    tis: list[dict[str, Any]], peaks: dict[str, float]
) -> list[tuple[str, str, int, float, float]]:
    """(dag_id, task_id, instances, max peak MB, median peak MB) for each sampled task."""
    by_task: dict[tuple[str, str], list[float]] = {}
    for ti in tis:
        peak = peaks.get(str(ti.get("id")))
        if peak is not None:
            by_task.setdefault((ti["dag_id"], ti["task_id"]), []).append(peak)
    return [
        (dag, task, len(mbs), max(mbs), statistics.median(mbs))
        for (dag, task), mbs in sorted(by_task.items())
    ]


def locked_lines(logs: Path) -> list[str]:
    hits = []
    for path in sorted(p for p in logs.rglob("*") if p.is_file()):
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if "database is locked" in line:
                hits.append(f"{path.relative_to(logs)}:{lineno}: {line.strip()[:160]}")
    return hits


def executor_env(args: argparse.Namespace) -> dict[str, str]:
    if args.executor == "local":
        return {"DRESSCODE_EXECUTOR": "local"}
    return {
        "DRESSCODE_EXECUTOR": "celery",
        "DRESSCODE_CELERY_WORKERS": str(args.celery_workers),
        "DRESSCODE_AIRFLOW_DB_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{args.pg_db}",
        "DRESSCODE_CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{args.redis_db}",
    }


def run_ingest(args: argparse.Namespace, workers: list[str]) -> tuple[Any, str, str]:
    """Start the stack's Airflow parts and run one wardrobe_ingest; (client, run id, state)."""
    from dresscode.local import runs, stack

    ports = stack.Ports.from_env()
    stack.start(
        ports, only=("simulator", "mlflow", "api-server", "scheduler", "dag-processor", *workers)
    )
    client = stack.api(ports)
    stack.wait_for_dags(client, ["wardrobe_ingest"])
    run_id = runs.start_run(client, "wardrobe_ingest")
    state = client.wait_for_run("wardrobe_ingest", run_id, timeout_s=1800)
    return client, run_id, state


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=10_000)
    parser.add_argument("--size", default="800x600", help="seeded photo size, WxH")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--home", type=Path, default=REPO / ".local" / "load")
    parser.add_argument("--executor", choices=("local", "celery"), default="local")
    parser.add_argument("--celery-workers", type=int, default=2)
    parser.add_argument("--pg-db", default="dresscode_load", help="celery: scratch database")
    parser.add_argument("--redis-db", type=int, default=12, help="celery: broker DB index")
    parser.add_argument("--whole-pipeline", action="store_true", help="dresscode up --photos 0")
    parser.add_argument("--airflow-port", type=int, default=8091)
    parser.add_argument("--sim-port", type=int, default=8011)
    parser.add_argument("--mlflow-port", type=int, default=5091)
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    parser.add_argument(
        "--seed-cache",
        type=Path,
        help="take the photos seeded there by an earlier run, or keep this run's there",
    )
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    env = {
        **os.environ,
        "DRESSCODE_HOME": str(args.home),
        "DRESSCODE_AIRFLOW_PORT": str(args.airflow_port),
        "DRESSCODE_SIM_PORT": str(args.sim_port),
        "DRESSCODE_MLFLOW_PORT": str(args.mlflow_port),
        "DRESSCODE_INGEST_MAX_PHOTOS_PER_RUN": str(max(args.photos, 1)),
        **executor_env(args),
    }
    os.environ.update(env)  # the seeding processes and the stack read the same settings
    from dresscode.core import config, lake
    from dresscode.local import stack

    config.get_settings.cache_clear()
    if lake.list_files(lake.landing()):
        print(f"{args.home} already has uploads in landing: use a fresh --home", file=sys.stderr)
        return 2
    landing = Path(lake.landing().path)
    cache = args.seed_cache
    if cache is not None and (cache / "complete").exists():
        new, seed_s = restore_seed(cache, landing, stack.sim_script())
        print(f"copied {new} seeded uploads from {cache} in {seed_s:.0f} s", flush=True)
    else:
        print(f"seeding {args.photos} photos ({args.size}) in {args.workers} processes ...")
        new, seed_s = seed_photos(args.photos, (width, height), args.workers, stack.sim_script())
        print(f"seeded {new} uploads in {seed_s:.0f} s", flush=True)
        if cache is not None:
            keep_seed(cache, landing, stack.sim_script())

    workers = [f"worker-{i}" for i in range(1, args.celery_workers + 1)]
    workers = workers if args.executor == "celery" else []
    dresscode = str(Path(sys.executable).parent / "dresscode")
    sim_url = f"http://127.0.0.1:{args.sim_port}"
    started = time.perf_counter()
    ok = False
    try:
        with PeakRss() as rss, EndpointSampler(sim_url) as endpoint:
            if args.whole_pipeline:
                up = subprocess.run([dresscode, "up", "--photos", "0"], env=env, check=False)
                client = stack.api(stack.Ports.from_env())
                ingest = [r for r in client.runs("wardrobe_ingest") if r["state"] == "success"]
                run_id = max(ingest, key=lambda r: r["end_date"])["dag_run_id"] if ingest else ""
                ok = up.returncode == 0
            else:
                client, run_id, state = run_ingest(args, workers)
                ok = state == "success"
        wall_s = time.perf_counter() - started
        run = client.request("GET", f"/api/v2/dags/wardrobe_ingest/dagRuns/{run_id}")
        batches = batches_of(client, run_id)
        tis = (
            task_instances(client)
            if args.whole_pipeline
            else task_instances(client, "wardrobe_ingest", run_id)
        )
        manifests = lake.read_table("manifests")
        sim = httpx.get(f"{sim_url}/sim/stats", timeout=10).json()
        locked = locked_lines(args.home / "logs")
    finally:
        if not args.keep:
            subprocess.run([dresscode, "down"], env=env, check=False)

    run_start, run_end = epoch(run["start_date"]) or 0.0, epoch(run["end_date"]) or time.time()
    result = breakdown(
        batches,
        run_start,
        run_end,
        sim["max_num_seqs"],
        endpoint.busy_between(run_start, run_end),
    )
    settled = manifests[manifests["run_id"] == run_id]["upload_key"].nunique()
    accepted = int((manifests["status"] == "accepted").sum())
    quarantined = int((manifests["status"] == "quarantined").sum())
    hosts = sorted({b.hostname.split("@")[0] for b in batches if b.hostname})
    calls, busy = sim["requests_total"], sim["busy_slot_seconds"]
    mode = "whole pipeline (`dresscode up --photos 0`)" if args.whole_pipeline else "ingest run"
    print()
    print(f"## Load run: {args.photos} photos, {args.executor} executor, {mode}: ok={ok}")
    print()
    print(f"- seeding: {seed_s:.0f} s; stack start + run: {wall_s:.0f} s")
    print(
        f"- machine: {os.cpu_count()} CPUs, load average at the end {os.getloadavg()[1]:.1f} (5 min)"
    )
    print(f"- manifests: {accepted} accepted, {quarantined} quarantined")
    print(
        f"- wardrobe_ingest {run_id}: {settled} uploads settled in {result.run_s:.0f} s, "
        f"{settled / max(result.run_s, 1e-9):.2f} uploads/s"
    )
    if calls:
        per_call = busy / calls
        print(
            f"- simulated endpoint: {calls} calls, {per_call:.2f} s per call, "
            f"{sim['max_num_seqs']} slots: capacity {sim['max_num_seqs'] / per_call:.2f} calls/s"
        )
    print(f"- batches ran on: {', '.join(hosts) or '-'}")
    print(markdown(result, sum(b.timings["normalize_cpu_s"] for b in batches if b.timings)))
    print(f"- 'database is locked' lines in the logs: {len(locked)}")
    for line in locked[:10]:
        print(f"  {line}")
    print()
    print("| DAG | task | instances | peak RSS max (MB) | peak RSS median (MB) |")
    print("|---|---|---|---|---|")
    for dag, task, n, top, median in task_table(tis, rss.peaks):
        print(f"| {dag} | {task} | {n} | {top:.0f} | {median:.0f} |")
    return 0 if ok and not locked else 1


if __name__ == "__main__":
    sys.exit(main())
