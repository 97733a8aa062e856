"""Benchmark: what ``dresscode serve`` adds to the model's time to first token, under load.

Starts the vLLM simulator (its own process, ``--max-num-seqs 256`` so the endpoint never
queues) and the online stylist (its own process, the real app and service over a scratch
lake with ``--users`` users and their wardrobes; the Feast online read is stubbed to "no
features", the weather reader answers from memory — both sit outside what is measured here
only in that they are not called), then opens ``--concurrency`` streams at once, ``--rounds``
times, and measures per stream:

* **time to first text** as the client sees it (request sent -> first ``delta`` event), and
  the endpoint's own share of it (the final event's per-call timings: the tool-call turn's
  whole latency plus the answering turn's time to first token). **Added** = the difference:
  reading the inputs, answering the tool, the SSE path.
* requests/s per core of the service process (requests over its CPU seconds) and its peak RSS
  (summed over its ``--workers`` uvicorn worker processes);
* the cores each side kept busy on average: the service's processes, and the harness beside
  it on the same machine (the simulator and this load generator);
* the load generator's own event-loop lag, so a reader knows when the client's clock includes
  the client's own delay (each client holds one connection, made before the clock starts: a
  shared pool, or clients made during the run, put seconds of the client's own delay into
  the p95).

Each phase is a fresh service process and starts with a warm-up of ``--concurrency`` streams at
once, not measured: the clock starts with every connection open, as under steady traffic.
Phases: the service as shipped (its reads in ``--reader-processes`` reader processes, its
start-up objects frozen: ``serve.reader_process``, ``serve.memory``) with the live shadow off
and on, alternated ``--repeats`` times and pooled (on a shared 2-core box one pair of phases
differs by +-5 % with nothing changed), and once the same service with its reads in threads
and nothing frozen (the baseline of the ratio). Each phase also counts the service's full
garbage collections under load and the longest (a full collection pauses every stream).

With the live shadow on (``--shadow-share``, a candidate set) the primary's p95 must stay
within 5 % of the run without it; the bench prints that ratio's two parts (the endpoint's own
time, the service's added time). Every number here is the simulator's model time plus this
service's; nothing is Gemma's.

    .venv/bin/python bench/serve.py --concurrency 200 --rounds 3 --users 601 --repeats 2

``--pin`` puts the service on core 0 and the harness on the others (on a 2-core machine one
core is less than the service needs at 200 streams: measured, docs/benchmarks.md).
``--candidate-endpoint own`` serves the shadow's candidate from a second simulator (its own
deployment, as a blueprint naming its connection is served): the model's share of the
shadow's cost leaves the production endpoint and what is left is the service's and the box's.
``--harness-nice N`` runs the simulators and the load generator at niceness N and the service
at 0 (they stand in for GPU nodes and app servers that would not share its cores).

    .venv/bin/python bench/serve.py --concurrency 200 --rounds 3 --users 601 --repeats 4 \
        --candidate-endpoint own
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

API_KEY = "bench-key"
SERVICE_CORES = [0]  # with --pin
MODEL = "google/gemma-4-26B-A4B-it"
STAGGER_S = 2.5  # about one stream's length: the clients' start is spread over it
CATEGORIES = ["top", "top", "bottom", "bottom", "footwear", "outerwear", "top", "dress"]


def seed_lake(home: Path, users: int) -> None:
    """Profiles and wardrobes of ``users`` users in a scratch lake."""
    os.environ["DRESSCODE_HOME"] = str(home)
    from dresscode.core import config, lake
    from dresscode.features import users as profiles

    config.get_settings.cache_clear()
    now = datetime.now(UTC)
    ids = [f"user-{n:04d}" for n in range(users)]
    profiles.write_profiles(
        [{"user_id": u, "city": "Oslo", "last_active_at": now} for u in ids],
        day=now.date().isoformat(),
    )
    items = [
        {
            "item_id": f"{u}-item-{k}",
            "user_id": u,
            "image_sha256": f"{n:032x}{k:032x}",
            "prompt_version": 2,
            "category": category,
            "subcategory": category,
            "color_names": ["navy"],
            "color_hexes": ["#000080"],
            "warmth": "medium",
            "formality": "casual",
            "water_resistant": category == "outerwear",
            "description": f"A {category}.",
        }
        for n, u in enumerate(ids)
        for k, category in enumerate(CATEGORIES)
    ]
    lake.write_parquet("wardrobe_items", now.date(), "bench", items)


WEATHER = {
    "temperature_c": 14.0,
    "temperature_max_c": 17.0,
    "temperature_min_c": 9.0,
    "precipitation_probability": 20,
}


def bench_readers(settings: Any) -> Any:
    """The production lake readers with Feast's online read stubbed ("no features") and the
    weather answered from memory: built in the service, and in its reader process."""
    import dataclasses
    from datetime import date

    from dresscode.serve.context import lake_readers

    return dataclasses.replace(
        lake_readers(settings),
        online=lambda keys: {},
        warm=None,  # nothing to open: Feast is stubbed
        weather=lambda city, day: {"city": city, "date": date.isoformat(day), **WEATHER},
    )


def build_bench_app() -> Any:
    """The real app over the scratch lake (Feast and weather stubbed), configured from the
    environment :func:`run_service` sets: what each uvicorn worker process builds."""
    import dataclasses

    sim_url = os.environ["BENCH_SIM_URL"]
    shadow_share = float(os.environ["BENCH_SHADOW_SHARE"])
    from dresscode.core.config import get_settings
    from dresscode.llm import blueprints
    from dresscode.llm.client import LLMClient
    from dresscode.registry.store import AliasNotSet
    from dresscode.serve.aliases import LivePrompts
    from dresscode.serve.app import create_app
    from dresscode.serve.logbook import LakeLog
    from dresscode.serve.memory import import_and_freeze
    from dresscode.serve.reader_process import ReaderProcess
    from dresscode.serve.service import ATTEMPTS, Service

    settings = get_settings()
    reader_processes = int(os.environ["BENCH_READER_PROCESSES"])
    _log_collector_pauses(Path(os.environ["BENCH_GC_LOG"]))
    for name in ("httpx", "httpx2"):  # as DresscodeLLMHook.client_for does: no line per call
        logging.getLogger(name).setLevel(logging.WARNING)
    production = dataclasses.replace(blueprints.resolve("outfit-stylist@2"), model=MODEL)
    aliases = {"production": production}
    # The candidate on its own deployment (blue-green: a blueprint names its connection) when
    # --candidate-endpoint own started a second simulator; else on the production endpoint.
    candidate_url = os.environ.get("BENCH_CANDIDATE_URL", "")
    if shadow_share:
        aliases["candidate"] = dataclasses.replace(
            production, version=3, connection="candidate" if candidate_url else ""
        )

    def load(name: str, alias: str) -> Any:
        if alias not in aliases:
            raise AliasNotSet(alias)
        return aliases[alias]

    readers = bench_readers(settings)
    if reader_processes:  # as serve.main does, with the bench's stubs in the reader too
        readers = ReaderProcess(settings, reader_processes, build=bench_readers).readers(readers)
    if os.environ["BENCH_FREEZE"]:
        import_and_freeze(settings=settings)
    service = Service(
        prompts=LivePrompts("outfit-stylist", 60, load=load),
        readers=readers,
        lake_log=LakeLog(settings, 5.0),
        client_for=lambda conn: LLMClient(
            candidate_url if conn == "candidate" else sim_url,
            model=MODEL,
            max_concurrency=settings.serve_max_concurrency,
            max_attempts=ATTEMPTS,
        ),
        weather_ttl_s=3600,
        max_turns=4,
        canary_share=0.0,
        shadow_share=shadow_share,
    )
    return create_app(service, api_key=API_KEY, rate_limit_per_min=10_000, max_days_ahead=14)


def _log_collector_pauses(path: Path) -> None:
    """Every garbage collection of 5 ms or more, as a line ``generation ms`` in ``path``: a
    full collection stops every stream of the process."""
    import gc

    started: list[float] = [0.0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        pause_ms = (time.perf_counter() - started[0]) * 1000
        if pause_ms >= 5:
            with path.open("a") as out:
                out.write(f"{info['generation']} {pause_ms:.1f}\n")

    gc.callbacks.append(timed)


def _collector_pauses(path: Path) -> list[tuple[int, float]]:
    if not path.exists():
        return []
    return [
        (int(g), float(ms)) for g, ms in (line.split() for line in path.read_text().splitlines())
    ]


def run_service(
    home: str,
    sim_url: str,
    port: int,
    shadow_share: float,
    workers: int,
    reader_processes: int,
    freeze: bool,
    gc_log: str,
    cores: list[int] | None = None,
    candidate_url: str = "",
) -> None:
    """The stylist: ``workers`` uvicorn worker processes on one port, each building its own
    app from :func:`build_bench_app` (as replicas of the service would); on ``cores`` only
    when given (its workers and reader processes inherit them)."""
    import uvicorn

    if cores:
        os.sched_setaffinity(0, cores)
    if os.getpriority(os.PRIO_PROCESS, 0) > 0:  # --harness-nice: only the harness yields
        try:
            os.setpriority(os.PRIO_PROCESS, 0, 0)
        except PermissionError:  # a niced service would measure nothing this bench claims
            raise SystemExit(
                "--harness-nice needs root: the service cannot take nice 0 back"
            ) from None

    os.environ.update(
        DRESSCODE_HOME=home,
        BENCH_SIM_URL=sim_url,
        BENCH_SHADOW_SHARE=str(shadow_share),
        BENCH_READER_PROCESSES=str(reader_processes),
        BENCH_FREEZE="1" if freeze else "",
        BENCH_GC_LOG=gc_log,
        BENCH_CANDIDATE_URL=candidate_url,
    )
    # Keep-alive longer than any pause between a client's streams: a connection the server
    # closes as the client reuses it is a client-side ReadError, not the service's doing.
    uvicorn.run(
        "serve:build_bench_app",
        factory=True,
        app_dir=str(Path(__file__).parent),
        workers=workers,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=75,
    )


@dataclass
class Stream:
    meta_ms: float | None  # request sent -> the meta event: auth, checks, the inputs read
    first_text_ms: float | None
    total_ms: float
    endpoint_first_text_ms: float | None
    ok: bool
    service_inputs_ms: float | None = None  # as the service measured it, from arrival
    service_first_text_ms: float | None = None


async def one_stream(client: httpx.AsyncClient, url: str, user: str) -> Stream:
    """One request, timed on the client's clock. The body is scanned as bytes for the first
    ``meta`` and ``delta`` events and parsed only for the final ``outfit`` (the load generator
    shares the cores with the service: it does as little per event as it can). A connection
    error is a stream that did not succeed, counted, not the end of the benchmark."""
    started = time.perf_counter()
    first: float | None = None
    meta: float | None = None
    body = bytearray()
    try:
        async with client.stream(
            "POST",
            f"{url}/v1/outfits",
            json={"user_id": user},
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as response:
            async for chunk in response.aiter_raw():
                seen = max(0, len(body) - 16)  # an event name split over two chunks
                body += chunk
                if meta is None and body.find(b"event: meta\n", seen) >= 0:
                    meta = (time.perf_counter() - started) * 1000
                if first is None and body.find(b"event: delta\n", seen) >= 0:
                    first = (time.perf_counter() - started) * 1000
    except httpx.TransportError as exc:
        print(f"stream of {user} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return Stream(meta, first, (time.perf_counter() - started) * 1000, None, False)
    total = (time.perf_counter() - started) * 1000
    final = _final_event(bytes(body))
    own = None
    if final and final["calls"]:
        *before, last = final["calls"]
        if last.get("ttft_ms") is not None:
            own = sum(c["latency_ms"] for c in before) + last["ttft_ms"]
    timings = (final or {}).get("timings") or {}
    return Stream(
        meta,
        first,
        total,
        own,
        final is not None,
        timings.get("inputs_ms"),
        timings.get("first_text_ms"),
    )


def _final_event(body: bytes) -> dict[str, Any] | None:
    """The ``outfit`` event's data, or None (the stream ended with an ``error``)."""
    at = body.rfind(b"event: outfit\ndata: ")
    if at < 0:
        return None
    line = body[at + len(b"event: outfit\ndata: ") :].split(b"\n", 1)[0]
    found: dict[str, Any] = json.loads(line)
    return found


async def load(
    url: str,
    users: list[str],
    concurrency: int,
    rounds: int,
    *,
    burst: bool,
    warmed: Callable[[], None],
) -> list[Stream]:
    """``concurrency`` clients, each streaming ``rounds`` suggestions back to back, after a
    warm-up whose end ``warmed`` marks (the clock starts there).

    Warm-up: ``concurrency`` streams at once of the last user (never one of the load's), so
    the measured streams find what steady traffic finds: the service's lazy first steps done
    and its connections to the model endpoint open, and the load generator's to the service
    (before it, ~200 connections were opened during the first seconds measured; py-spy).

    Steady (default): the clients start spread over ``STAGGER_S`` (about one stream's length),
    so ``concurrency`` streams are in flight at a steady arrival rate, as under real traffic.
    ``burst``: every round's requests are sent at the same instant (the worst case: a
    thundering herd, each request queued behind the others' input reads and parsing).
    """
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    results: list[Stream] = []
    if burst:
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            await asyncio.gather(*(one_stream(client, url, users[-1]) for _ in range(concurrency)))
        warmed()
        for r in range(rounds):
            # A fresh pool per round: a keep-alive connection the server closed between
            # rounds would be a client-side ReadError, not something the service did.
            async with httpx.AsyncClient(timeout=120, limits=limits) as client:
                batch = [
                    users[(r * concurrency + i) % (len(users) - 1)] for i in range(concurrency)
                ]
                results += await asyncio.gather(*(one_stream(client, url, u) for u in batch))
        return results

    async def client_loop(client: httpx.AsyncClient, n: int) -> list[Stream]:
        await asyncio.sleep(STAGGER_S * n / concurrency)
        return [
            await one_stream(client, url, users[(r * concurrency + n) % (len(users) - 1)])
            for r in range(rounds)
        ]

    # One connection per client, as an app backend's worker holds, each client made before
    # the clock starts: making one (its TLS context) blocks the load generator's loop ~20 ms,
    # which 200 of them during the run turned into seconds of the client's own delay.
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(timeout=120, limits=one) for _ in range(concurrency)]
    try:
        await asyncio.gather(*(one_stream(client, url, users[-1]) for client in clients))
        warmed()
        for streams in await asyncio.gather(
            *(client_loop(client, n) for n, client in enumerate(clients))
        ):
            results += streams
    finally:
        for client in clients:
            await client.aclose()
    return results


async def lagging(work: Any, lags: list[float]) -> Any:
    """Run ``work`` while measuring the load generator's own event-loop lag (how late a 10 ms
    sleep wakes, ms): when it is large the client's clock includes the client's own delay."""

    async def watch() -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append((time.perf_counter() - started) * 1000 - 10)

    watcher = asyncio.create_task(watch())
    try:
        return await work
    finally:
        watcher.cancel()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def phase(
    label: str,
    sim_url: str,
    home: Path,
    users: list[str],
    args: argparse.Namespace,
    shadow: float,
    *,
    reader_processes: int,
    freeze: bool,
    candidate_url: str = "",
) -> dict[str, Any]:
    from dresscode.sim.testing import free_port, wait_healthy

    port = free_port()
    gc_log = home.parent / f"gc-{port}.log"
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(
        # Not a daemon: uvicorn's supervisor starts the worker processes (stopped below).
        target=run_service,
        args=(
            *(str(home), sim_url, port, shadow, args.workers),
            *(reader_processes, freeze, str(gc_log), SERVICE_CORES if args.pin else None),
            candidate_url,
        ),
    )
    proc.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(_Popen(proc), f"{url}/health", 120, "the stylist")
        service = psutil.Process(proc.pid)
        processes = [service, *service.children(recursive=True)]  # uvicorn's workers, readers
        # The harness beside it on the same cores: this process (the load generator) and the
        # simulator (this process's other child).
        me = psutil.Process()
        harness = [me, *(p for p in me.children() if p.pid != proc.pid)]
        lags: list[float] = []
        clock: dict[str, float] = {}

        def warmed() -> None:  # what is measured starts here
            gc_log.unlink(missing_ok=True)  # the pauses under load, not those of the warm-up
            lags.clear()
            clock.update(
                cpu0=_cpu_s(processes), harness0=_cpu_s(harness), wall0=time.perf_counter()
            )

        work = load(url, users, args.concurrency, args.rounds, burst=args.burst, warmed=warmed)
        streams = asyncio.run(lagging(work, lags))
        wall = time.perf_counter() - clock["wall0"]
        cpu_s = _cpu_s(processes) - clock["cpu0"]
        harness_cpu_s = _cpu_s(harness) - clock["harness0"]
        rss_mb = sum(p.memory_info().rss for p in processes) / 2**20
        peak_mb = sum(_peak_rss_mb(p.pid) for p in processes)
    finally:
        proc.terminate()
        proc.join(30)
    full_pauses = [ms for generation, ms in _collector_pauses(gc_log) if generation == 2]
    ok = [
        s
        for s in streams
        if s.ok and s.first_text_ms is not None and s.endpoint_first_text_ms is not None
    ]
    added = [s.first_text_ms - s.endpoint_first_text_ms for s in ok]  # type: ignore[operator]
    # The same, from the service's own clock: arrival -> first text, less the endpoint's share.
    added_in_service = [s.service_first_text_ms - s.endpoint_first_text_ms for s in ok]  # type: ignore[operator]
    inputs_in_service = [s.service_inputs_ms for s in ok]
    return {
        "label": label,
        "added": added,
        "added_in_service": added_in_service,
        "first_text": [s.first_text_ms for s in ok],
        "endpoint_own": [s.endpoint_first_text_ms for s in ok],
        "streams": len(streams),
        "ok": len(ok),
        "added_p50_ms": statistics.median(added),
        "added_p95_ms": pct(added, 0.95),
        "svc_added_p50_ms": statistics.median(added_in_service),
        "svc_added_p95_ms": pct(added_in_service, 0.95),
        "svc_inputs_p50_ms": statistics.median(inputs_in_service),  # type: ignore[type-var]
        "svc_inputs_p95_ms": pct(inputs_in_service, 0.95),  # type: ignore[arg-type]
        "meta_p50_ms": statistics.median(s.meta_ms for s in ok),  # type: ignore[type-var]
        "meta_p95_ms": pct([s.meta_ms for s in ok], 0.95),  # type: ignore[misc]
        "first_text_p50_ms": statistics.median(s.first_text_ms for s in ok),  # type: ignore[type-var]
        "first_text_p95_ms": pct([s.first_text_ms for s in ok], 0.95),  # type: ignore[misc]
        "total_p95_ms": pct([s.total_ms for s in ok], 0.95),
        "req_per_s": len(streams) / wall,
        "service_cpu_s": cpu_s,
        "req_per_cpu_s": len(streams) / cpu_s if cpu_s else float("nan"),
        "service_cores": cpu_s / wall,  # cores busy on average while measured
        "harness_cores": harness_cpu_s / wall,
        "client_lag_p95_ms": pct(lags, 0.95),
        "client_lag_max_ms": max(lags),
        "full_gc_pauses": len(full_pauses),
        "full_gc_max_ms": max(full_pauses, default=0.0),
        "rss_mb": rss_mb,
        "peak_rss_mb": peak_mb,
    }


class _Popen:
    """What wait_healthy needs of a process: poll() and returncode."""

    def __init__(self, proc: multiprocessing.process.BaseProcess) -> None:
        self._proc = proc

    def poll(self) -> int | None:
        return None if self._proc.is_alive() else (self._proc.exitcode or 0)

    @property
    def returncode(self) -> int | None:
        return self._proc.exitcode


def _cpu_s(processes: list[psutil.Process]) -> float:
    return sum(t.user + t.system for t in (p.cpu_times() for p in processes))


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--shadow-share", type=float, default=0.1)
    parser.add_argument(
        "--workers", type=int, default=1, help="the service's uvicorn worker processes"
    )
    parser.add_argument(
        "--reader-processes",
        type=int,
        default=1,
        help="the service's reader processes (DRESSCODE_SERVE_READER_PROCESSES) as shipped",
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="shadow off / on pairs, alternated and pooled"
    )
    parser.add_argument(
        "--burst", action="store_true", help="send each round's requests at the same instant"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the service on core 0, the simulator and the load generator on the others "
        "(on 2 cores one is less than the service needs at 200 streams: docs/benchmarks.md)",
    )
    parser.add_argument(
        "--candidate-endpoint",
        choices=("same", "own"),
        default="same",
        help="the shadow's candidate served by the production endpoint (same) or by a second "
        "simulator, its own deployment (own: blue-green, the blueprint names its connection)",
    )
    parser.add_argument(
        "--harness-nice",
        type=int,
        default=0,
        help="run the simulator and the load generator at this niceness, the service at 0: "
        "they stand in for GPU nodes and app servers that would not share the service's cores",
    )
    args = parser.parse_args()
    if args.harness_nice:  # inherited by the simulators; the service takes its 0 back
        os.nice(args.harness_nice)
    if args.pin:  # the simulator, started below, inherits this process's cores
        os.sched_setaffinity(0, set(range(os.cpu_count() or 2)) - set(SERVICE_CORES))
    shipped: dict[str, Any] = {"reader_processes": args.reader_processes, "freeze": True}
    from dresscode.sim.testing import simulator_process

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        seed_lake(home, args.users)
        users = [f"user-{n:04d}" for n in range(args.users)]
        sim_args = ("--max-num-seqs", "256", "--max-queue", "1024")
        with contextlib.ExitStack() as endpoints:
            sim_url = endpoints.enter_context(simulator_process(*sim_args))
            if args.candidate_endpoint == "own":
                shipped["candidate_url"] = endpoints.enter_context(simulator_process(*sim_args))
            # Shadow off and on alternate --repeats times (pooled below): two phases are two
            # service processes on a shared 2-core box, and one pair's p95s differ by +-5 %
            # with nothing changed; the baseline runs once, after the first pair.
            runs = []
            for repeat in range(1, args.repeats + 1):
                runs.append(
                    phase(f"shadow off #{repeat}", sim_url, home, users, args, 0.0, **shipped)
                )
                runs.append(
                    phase(
                        f"shadow {args.shadow_share:.0%} #{repeat}",
                        *(sim_url, home, users, args, args.shadow_share),
                        **shipped,
                    )
                )
                if repeat == 1:
                    runs.append(
                        phase(
                            "shadow off, reads in a thread, nothing frozen (before)",
                            *(sim_url, home, users, args, 0.0),
                            reader_processes=0,
                            freeze=False,
                        )
                    )
    print(
        f"{args.concurrency} concurrent streams x {args.rounds} rounds "
        f"({'burst' if args.burst else 'steady'}), {args.workers} service worker(s), "
        f"{args.reader_processes} reader process(es), {os.cpu_count()} cores"
        f"{' (the service pinned to core 0, the rest on the others)' if args.pin else ''}; "
        f"{f'the harness at nice {args.harness_nice}; ' if args.harness_nice else ''}"
        f"the shadow's candidate on {'its own' if args.candidate_endpoint == 'own' else 'the production'} "
        "endpoint; model times are the simulator's (not Gemma's)\n"
    )
    print(
        "| run | streams ok | added TTFT p50 / p95, client's clock (ms) | of which to `meta` | "
        "added TTFT p50 / p95, service's clock (ms) | of which inputs | first text p50 / p95 (ms) | "
        "stream p95 (ms) | req/s | req per service CPU-s | full GC pauses (max ms) | "
        "RSS end / peak (MB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        print(
            f"| {r['label']} | {r['ok']}/{r['streams']} "
            f"| {r['added_p50_ms']:.1f} / {r['added_p95_ms']:.1f} "
            f"| {r['meta_p50_ms']:.1f} / {r['meta_p95_ms']:.1f} "
            f"| {r['svc_added_p50_ms']:.1f} / {r['svc_added_p95_ms']:.1f} "
            f"| {r['svc_inputs_p50_ms']:.1f} / {r['svc_inputs_p95_ms']:.1f} "
            f"| {r['first_text_p50_ms']:.0f} / {r['first_text_p95_ms']:.0f} | {r['total_p95_ms']:.0f} "
            f"| {r['req_per_s']:.1f} | {r['req_per_cpu_s']:.1f} "
            f"| {r['full_gc_pauses']} ({r['full_gc_max_ms']:.0f}) "
            f"| {r['rss_mb']:.0f} / {r['peak_rss_mb']:.0f} |"
        )
    for r in runs:
        print(
            f"{r['label']}: the load generator's own event-loop lag p95 "
            f"{r['client_lag_p95_ms']:.0f} ms, max {r['client_lag_max_ms']:.0f} ms; cores busy: "
            f"the service {r['service_cores']:.2f}, the simulator and load generator "
            f"{r['harness_cores']:.2f} (of {os.cpu_count()})"
        )
    offs = [r for r in runs if r["label"].startswith("shadow off #")]
    ons = [r for r in runs if r["label"].startswith("shadow ") and r not in offs]
    ons = [r for r in ons if "before" not in r["label"]]
    (before,) = [r for r in runs if "before" in r["label"]]

    def pooled(phases: list[dict[str, Any]], key: str) -> list[float]:
        return [v for r in phases for v in r[key]]

    off_service = pooled(offs, "added_in_service")
    print(
        f"\nshadow off, {len(offs)} phase(s) pooled: added TTFT p50 / p95 "
        f"{statistics.median(pooled(offs, 'added')):.1f} / {pct(pooled(offs, 'added'), 0.95):.1f} "
        f"ms on the client's clock, {statistics.median(off_service):.1f} / "
        f"{pct(off_service, 0.95):.1f} ms on the service's (target <= 50 at p95)"
    )
    print(
        f"as shipped vs reads in threads (first pair), service's clock p50 / p95: "
        f"{offs[0]['svc_added_p50_ms'] / before['svc_added_p50_ms']:.2f} / "
        f"{offs[0]['svc_added_p95_ms'] / before['svc_added_p95_ms']:.2f}; "
        f"requests per service CPU-s {offs[0]['req_per_cpu_s'] / before['req_per_cpu_s']:.2f}x"
    )
    on_p95 = pct(pooled(ons, "first_text"), 0.95)
    off_p95 = pct(pooled(offs, "first_text"), 0.95)
    print(
        f"primary first-text p95 with shadow on / off, pooled: {on_p95:.0f} / {off_p95:.0f} ms = "
        f"{on_p95 / off_p95:.3f} (target <= 1.05); per pair: "
        + ", ".join(
            f"{on['first_text_p95_ms'] / off['first_text_p95_ms']:.3f}"
            for off, on in zip(offs, ons, strict=True)
        )
    )
    # The two parts of it: the endpoint's own (the simulator's time grows with the sequences
    # it runs, the candidate's among them) and what the service adds.
    own = [pct(pooled(phases, "endpoint_own"), 0.95) for phases in (ons, offs)]
    added = [pct(pooled(phases, "added_in_service"), 0.95) for phases in (ons, offs)]
    print(
        f"  of which the endpoint's own p95 on / off: {own[0]:.0f} / {own[1]:.0f} ms = "
        f"{own[0] / own[1]:.3f}; added by the service p95 on / off: {added[0]:.1f} / "
        f"{added[1]:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
