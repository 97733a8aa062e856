"""Ingest throughput: N photos through wardrobe_ingest's own task code against the simulator.

What runs: ``ingest.discover`` then ``ingest.process_batch`` over every batch, in ``--workers``
processes at once (what two LocalExecutor slots of the `llm` pool would run), each keeping
``slots / workers`` model calls in flight. The model is the project's vLLM simulator in its own
process with a fixed latency per call — **a stand-in for Gemma 4, not its speed**.

What it reports: wall time, photos/s, the share of the simulator's slots that were busy (over
the whole run and over its steady middle, polled from ``/sim/stats``), and the baseline
capacity ``slots / latency``. With ``--airflow-overhead`` it also runs the real DAG with
``dag.test()`` on a few batches and reports the task-runner time per batch that is not
``process_batch`` itself (scheduler latency of a real deployment comes on top).

    .venv/bin/python bench/ingest.py --photos 2000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx

MODEL = "google/gemma-4-26B-A4B-it"


def _make_upload(args: tuple[int, tuple[int, int]]) -> tuple[str, bytes]:
    """One distinct phone-like JPEG (a synthetic wardrobe photo, q90, EXIF with GPS)."""
    from dresscode.local import samples

    i, size = args
    img, _ = samples.wardrobe_photo(i, size=size)
    return f"user-{i % 97:03d}/photo-{i:06d}.jpg", samples.encode(
        img, "JPEG", orientation=1 + 5 * (i % 2)
    )


def seed_landing(n: int, size: tuple[int, int], workers: int) -> float:
    from dresscode.core import lake

    started = time.perf_counter()
    landing = lake.landing()
    with ProcessPoolExecutor(workers) as pool:
        for key, data in pool.map(_make_upload, [(i, size) for i in range(n)], chunksize=8):
            lake.write_bytes(landing / key, data)
    return time.perf_counter() - started


def _process(args: tuple[list[str], str, int, int]) -> dict:
    from dresscode.core.connections import LLMEndpoint
    from dresscode.ingest import tasks as ingest

    keys, url, concurrency, index = args
    endpoint = LLMEndpoint(url, "EMPTY", MODEL, 120.0, concurrency)
    return ingest.process_batch(
        keys, run_id="bench", day="2026-11-23", endpoint=endpoint, label=f"batch {index + 1}"
    )


class StatsPoller(threading.Thread):
    """Samples /sim/stats every ``every_s`` seconds: (t, busy_slot_seconds, requests_total)."""

    def __init__(self, base: str, every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.base, self.every_s, self.samples = base, every_s, []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.is_set():
                stats = client.get(f"{self.base}/sim/stats").json()
                self.samples.append(
                    (time.perf_counter(), stats["busy_slot_seconds"], stats["requests_total"])
                )
                self.stop.wait(self.every_s)


def busy_share(
    samples: list[tuple[float, float, int]], slots: int, start: float, end: float
) -> float:
    """Slot-seconds used / slot-seconds available between two times (nearest samples)."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2:
        return float("nan")
    (t0, b0, _), (t1, b1, _) = inside[0], inside[-1]
    return (b1 - b0) / (slots * (t1 - t0))


def airflow_overhead(url: str, batches: int, batch_size: int, size: tuple[int, int]) -> dict:
    """Run the real DAG with dag.test() and compare task durations with process_batch's own time."""
    os.environ["AIRFLOW_CONN_DRESSCODE_LLM"] = json.dumps(
        {"conn_type": "http", "host": url, "extra": {"model": MODEL}}
    )
    os.environ["DRESSCODE_INGEST_BATCH_SIZE"] = str(batch_size)
    from dresscode.core import config

    config.get_settings.cache_clear()
    from dresscode.core import lake

    landing = lake.landing()
    for i in range(batches * batch_size):
        key, data = _make_upload((1_000_000 + i, size))
        lake.write_bytes(landing / key, data)
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(
        dag_folder=str(Path(__file__).resolve().parents[1] / "dags" / "wardrobe_ingest.py")
    ).dags["wardrobe_ingest"]
    run = dag.test()
    tis = [ti for ti in run.get_task_instances() if ti.task_id == "process"]
    inner = sum(
        r["seconds"]
        for r in (ti.xcom_pull(task_ids="process", map_indexes=ti.map_index) for ti in tis)
    )
    outer = sum((ti.end_date - ti.start_date).total_seconds() for ti in tis)
    return {
        "batches": len(tis),
        "task_s": outer,
        "process_batch_s": inner,
        "overhead_per_batch_s": (outer - inner) / max(len(tis), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument(
        "--size", default="2000x1500", help="photo size WxH (default 2000x1500, a 3 MP phone photo)"
    )
    parser.add_argument(
        "--slots", type=int, default=32, help="simulator --max-num-seqs (default 32)"
    )
    parser.add_argument(
        "--latency-ms", type=int, default=2000, help="fixed latency per model call (default 2000)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="batch tasks at once (default 2, one per core)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--airflow-overhead", action="store_true", help="also time the real DAG with dag.test()"
    )
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.split("x"))

    home = Path(tempfile.mkdtemp(prefix="dresscode-bench-"))
    os.environ["DRESSCODE_HOME"] = str(home)
    # Airflow reads its configuration at first import (the lake imports it): isolate it first.
    airflow_home = home / "airflow"
    os.environ.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(Path(__file__).resolve().parents[1] / "dags"),
        }
    )
    if args.airflow_overhead:
        import subprocess

        airflow_home.mkdir(parents=True)
        subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
            check=True,
            capture_output=True,
        )
    os.environ["DRESSCODE_INGEST_BATCH_SIZE"] = str(args.batch_size)
    os.environ["DRESSCODE_INGEST_MAX_PHOTOS_PER_RUN"] = str(args.photos)
    from dresscode.ingest import tasks as ingest
    from dresscode.sim.testing import simulator_process

    print(f"seeding {args.photos} photos of {args.size} into {home} ...", flush=True)
    seed_s = seed_landing(args.photos, size, args.workers)
    print(f"seeded in {seed_s:.0f} s", flush=True)
    sim_args = (
        "--max-num-seqs",
        str(args.slots),
        "--fixed-latency-ms",
        str(args.latency_ms),
        "--served-model-name",
        f"{MODEL}=perfect",
    )
    with simulator_process(*sim_args) as url:
        base = url.removesuffix("/v1")
        batches = ingest.discover()
        poller = StatsPoller(base)
        poller.start()
        started = time.perf_counter()
        per_worker = max(1, args.slots // args.workers)
        with ProcessPoolExecutor(args.workers) as pool:
            results = list(
                pool.map(_process, [(b, url, per_worker, i) for i, b in enumerate(batches)])
            )
        wall = time.perf_counter() - started
        poller.stop.set()
        poller.join()
        totals = ingest.commit_and_report(results)
        first_call = next(t for t, _, n in poller.samples if n > 0)
        steady = busy_share(
            poller.samples, args.slots, first_call + 0.1 * wall, started + 0.9 * wall
        )
        overall = busy_share(poller.samples, args.slots, started, started + wall)
        report(args, totals, len(batches), wall, overall, steady)
        if args.airflow_overhead:
            overhead = airflow_overhead(url, 3, 32, size)
            print(
                f"| Airflow task overhead per batch (dag.test, {overhead['batches']} batches of 32) | {overhead['overhead_per_batch_s']:.2f} s |"
            )
    return 0


def report(
    args: argparse.Namespace,
    totals: dict,
    n_batches: int,
    wall: float,
    overall: float,
    steady: float,
) -> None:
    capacity = args.slots / (args.latency_ms / 1000)
    rate = totals["photos"] / wall
    print()
    print(f"`.venv/bin/python bench/ingest.py {' '.join(sys.argv[1:])}`")
    print()
    print("| figure | value |")
    print("|---|---:|")
    print(f"| photos ({args.size} JPEG) | {totals['photos']} |")
    print(f"| accepted / model calls | {totals['accepted']} / {totals['model_calls']} |")
    print(f"| batches x batch tasks at once | {n_batches} x {args.workers} |")
    print(
        f"| simulator capacity (slots / latency) | {args.slots} / {args.latency_ms / 1000:.1f} s = {capacity:.1f} calls/s |"
    )
    print(f"| wall time | {wall:.1f} s |")
    print(f"| throughput | {rate:.1f} photos/s ({rate / capacity:.0%} of capacity) |")
    print(f"| slots busy, whole run | {overall:.0%} |")
    print(f"| slots busy, steady middle (10-90 %) | {steady:.0%} |")


if __name__ == "__main__":
    sys.exit(main())
