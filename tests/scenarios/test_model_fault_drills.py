"""Model endpoint fault drills: each way the model endpoint misbehaves, as one table.

A digitize drill seeds photos into a fresh local lake, puts one fault on the model endpoint
(the project's simulator, on loopback, over real HTTP) and runs what the wardrobe_ingest DAG
runs: ``ingest.discover``, ``ingest.process_batch`` per batch, ``ingest.commit_and_report``.
Then the next run goes against a healthy endpoint. What must hold for every drill: no
duplicate item or manifest row; no photo lost (each is accepted with its items, or waits in
landing with a ``digitize_failed`` manifest row naming the error class, and the next run
accepts it); no more model calls than the client's retry bound allows, and the next run sends
only the photos that failed. What must hold for one drill is its row of ``DRILLS``.

Transport faults (503, 429, timeout) come from a gateway in front of the simulator that
stamps the simulator's ``X-Sim-Fault`` header on chat requests (the production client sends
none); the simulator then fails the request itself, with vLLM's error envelope and
``Retry-After``. Content faults (prefix, repeat, malformed, pad) are pinned to half of the
photos by the response script. The stylist drill runs the tool loop (``outfits.suggest_many``,
what ``pregen.run_batch`` runs) with tool-call numbers sent as strings.

Every figure here comes from the simulator, not from Gemma (docs/simulator.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from dresscode.core import config, lake
from dresscode.core.connections import LLMEndpoint
from dresscode.ingest import tasks as ingest
from dresscode.llm import blueprints
from dresscode.llm.hook import DresscodeLLMHook
from dresscode.local import seed
from dresscode.outfits import stylist as outfits
from dresscode.sim.testing import running_simulator

log = logging.getLogger(__name__)

MODEL = "google/gemma-4-26B-A4B-it"
DAY = "2026-03-02"
N_PHOTOS = 6
FAULTY_PHOTOS = 3  # content faults hit these many photos; the others are the control
PHOTO_SIZE = (320, 240)
# DRESSCODE_LLM_MAX_ATTEMPTS for the drills (production default 5): the bound under test, and
# it keeps a drill whose calls all fail to a few seconds.
MAX_ATTEMPTS = 3
CONCURRENCY = 8  # every photo of the batch in flight at once
RETRY_AFTER_S = 1.0  # what the simulator sends with its 429 and 503 answers
OUTAGE_REQUESTS = 14  # the 503 outage drill: the endpoint fails this many chat requests
HEALTHY_TIMEOUT_S = 10.0
SLOW_LATENCY_MS = 1000.0
HANG_S = 15.0  # a `timeout` fault hangs this long unless the client hangs up first

# dresscode.llm.client's retry warning, matched exactly: if it changes, the retry checks fail loudly.
RETRY_LOG = "llm request %s attempt %d/%d failed: %s (HTTP %s) — retrying in %.2fs"


# --- the endpoint under a fault --------------------------------------------------------------


@dataclass
class Gateway:
    """Stands in front of the simulator like a flaky load balancer: stamps ``X-Sim-Fault``.

    ``first`` limits the stamp to the first N chat requests (an outage window); without it
    every chat request is stamped (``503*2`` then fails the first two attempts of each call,
    the simulator counting attempts by the client's ``X-Request-Id``).
    """

    fault: str
    first: int | None = None
    stamped: int = 0

    def wrap(self, app: Any) -> Any:
        async def gateway(scope: dict, receive: Any, send: Any) -> None:
            if (
                scope["type"] == "http"
                and scope["path"].endswith("/chat/completions")
                and (self.first is None or self.stamped < self.first)
            ):
                self.stamped += 1
                header = (b"x-sim-fault", self.fault.encode())
                scope = {**scope, "headers": [*scope["headers"], header]}
            await app(scope, receive, send)

        return gateway


@contextlib.contextmanager
def simulator(gateway: Gateway | None = None, **options: Any) -> Iterator[str]:
    """The simulator (``perfect`` profile, answers in 5 ms) on loopback; yields its /v1 URL."""
    options = {
        "served_model_name": [f"{MODEL}=perfect"],
        "fixed_latency_ms": 5.0,
        "timeout_fault_seconds": HANG_S,
        **options,
    }
    with running_simulator(wrap=gateway.wrap if gateway else None, **options) as url:
        yield url


def sim_stats(url: str) -> dict[str, Any]:
    return httpx.get(url.removesuffix("/v1") + "/sim/stats", timeout=5).json()


def settled_stats(url: str, at_least: int) -> dict[str, Any]:
    """The simulator's counters once it has counted ``at_least`` requests (or after 5 s).

    A request the client hung up on is counted when the server notices the hang-up, which
    can trail the client by a moment.
    """
    deadline = time.monotonic() + 5.0
    stats = sim_stats(url)
    while stats["requests_total"] < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = sim_stats(url)
    return stats


class RetryLog(logging.Handler):
    """The client's "retrying in ..." warnings: (error class, chosen delay in s)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.retries: list[tuple[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == RETRY_LOG:
            _, _, _, error_class, _, delay = record.args  # type: ignore[misc]
            self.retries.append((error_class, float(delay)))


@contextlib.contextmanager
def retry_log() -> Iterator[RetryLog]:
    handler = RetryLog()
    logger = logging.getLogger("dresscode.llm.client")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


# --- one drill -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Photo:
    key: str
    sha: str  # of the JPEG the model receives
    items: list[dict[str, Any]]  # the scripted (true) items


@dataclass
class Run:
    """One ingest run: what it wrote to the lake and what the endpoint saw."""

    manifest: list[dict[str, Any]]  # this run's manifest rows
    calls: list[dict[str, Any]]  # this run's inference_log rows
    landing: list[str]  # what is left in landing after it
    requests: int  # chat requests the simulator counted
    by_status: dict[str, int]
    retries: list[tuple[str, float]]  # (error class, delay) as the client logged them
    run_error: str | None  # IngestFailed's message, None when the run passed

    @property
    def accepted(self) -> int:
        return sum(row["status"] == ingest.ACCEPTED for row in self.manifest)

    @property
    def failed(self) -> dict[str, int]:
        return dict(
            Counter(
                row["reason_code"]
                for row in self.manifest
                if row["status"] == ingest.DIGITIZE_FAILED
            )
        )

    def call_for(self, photo: Photo) -> dict[str, Any]:
        [call] = [c for c in self.calls if c["image_sha256"] == photo.sha]
        return call

    def row_for(self, photo: Photo) -> dict[str, Any]:
        [row] = [r for r in self.manifest if r["upload_key"] == photo.key]
        return row


@dataclass
class DrillResult:
    drill: Drill
    photos: list[Photo]
    first: Run  # the run under the fault
    second: Run  # the next run, against a healthy endpoint
    items: list[dict[str, Any]]  # wardrobe_items after both runs
    manifest: list[dict[str, Any]]  # every manifest row after both runs
    faulty_photos: list[Photo] = field(default_factory=list)

    def losses(self) -> list[str]:
        """Uploads after the first run neither accepted with their items nor waiting in
        landing with a digitize_failed row that names why."""
        lost = []
        for photo in self.photos:
            rows = [r for r in self.first.manifest if r["upload_key"] == photo.key]
            items = [i for i in self.items if i["upload_key"] == photo.key]
            accepted = [r for r in rows if r["status"] == ingest.ACCEPTED]
            waiting = [
                r
                for r in rows
                if r["status"] == ingest.DIGITIZE_FAILED
                and r["reason_code"]
                and r["reason_code"] in (r["reason"] or "")
                and photo.key in self.first.landing
            ]
            if not (accepted and len(items) == len(photo.items)) and not waiting:
                lost.append(photo.key)
        return lost

    def duplicates(self) -> int:
        """Duplicate item ids, plus manifest rows beyond one per upload and run."""
        item_ids = Counter(i["item_id"] for i in self.items)
        rows = Counter((r["upload_key"], r["run_id"]) for r in self.manifest)
        return sum(n - 1 for n in item_ids.values()) + sum(n - 1 for n in rows.values())


@dataclass(frozen=True)
class Drill:
    """One row of the table: the fault, and what must hold under it (besides the invariants)."""

    id: str  # the test id
    name: str
    holds: str
    check: Callable[[DrillResult], None]
    gateway: tuple[str, int | None] | None = None  # (X-Sim-Fault, first N requests or all)
    photo_fault: str | None = None  # content fault scripted for the first FAULTY_PHOTOS
    latency_ms: float = 5.0
    timeout_s: float = HEALTHY_TIMEOUT_S


def scripted_photos(script: Path) -> list[Photo]:
    photos = []
    for line in script.read_text().splitlines():
        entry = json.loads(line)
        photos.append(Photo(entry["source"], entry["image_sha256"], entry["items"]))
    return sorted(photos, key=lambda p: p.key)


def script_with_faults(photos: list[Photo], fault: str | None, path: Path) -> Path:
    lines = [
        {"image_sha256": p.sha, "items": p.items}
        | ({"faults": [fault]} if fault and i < FAULTY_PHOTOS else {})
        for i, p in enumerate(photos)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def ingest_run(url: str, timeout_s: float, run_id: str, seen_calls: set[str]) -> Run:
    """discover -> process_batch per batch -> commit_and_report, as the DAG's tasks do."""
    endpoint = LLMEndpoint(url, "EMPTY", MODEL, timeout_s, CONCURRENCY)
    with retry_log() as retries:
        results = [
            ingest.process_batch(keys, run_id=run_id, day=DAY, endpoint=endpoint)
            for keys in ingest.discover()
        ]
    try:
        ingest.commit_and_report(results)
        run_error = None
    except ingest.IngestFailed as exc:
        run_error = str(exc)
    manifest = lake.read_table("manifests")
    calls = [
        row
        for row in lake.read_table("inference_log").to_dict("records")
        if row["request_id"] not in seen_calls
    ]
    seen_calls.update(c["request_id"] for c in calls)
    stats = settled_stats(url, at_least=sum(int(c["attempts"]) for c in calls))
    return Run(
        manifest=manifest[manifest["run_id"] == run_id].to_dict("records"),
        calls=calls,
        landing=sorted(ingest.landing_keys(config.get_settings())),
        requests=stats["requests_total"],
        by_status=stats["requests_by_status"],
        retries=retries.retries,
        run_error=run_error,
    )


def run_drill(drill: Drill, home: Path) -> DrillResult:
    script = home / "script.jsonl"
    seed.seed(N_PHOTOS, script_path=script, size=PHOTO_SIZE, bad_files=False)
    photos = scripted_photos(script)
    faulty_script = script_with_faults(photos, drill.photo_fault, home / "faulty-script.jsonl")
    gateway = Gateway(*drill.gateway) if drill.gateway else None
    seen_calls: set[str] = set()
    with simulator(gateway, scripts=[faulty_script], fixed_latency_ms=drill.latency_ms) as url:
        first = ingest_run(url, drill.timeout_s, "drill", seen_calls)
    with simulator(scripts=[script]) as url:
        second = ingest_run(url, HEALTHY_TIMEOUT_S, "next-run", seen_calls)
    result = DrillResult(
        drill=drill,
        photos=photos,
        first=first,
        second=second,
        items=lake.read_table("wardrobe_items").to_dict("records"),
        manifest=lake.read_table("manifests").to_dict("records"),
        faulty_photos=photos[:FAULTY_PHOTOS] if drill.photo_fault else [],
    )
    log.info("drill %s: %s", drill.name, json.dumps(figures(result)))
    return result


def figures(result: DrillResult) -> dict[str, Any]:
    """The measured numbers of one drill, for docs/reliability.md."""
    first, second = result.first, result.second
    return {
        "photos": len(result.photos),
        "calls": first.requests,
        "by_status": first.by_status,
        "retries": len(first.retries),
        "attempts": sorted(int(c["attempts"]) for c in first.calls),
        "accepted": first.accepted,
        "failed": first.failed,
        "run_error": first.run_error,
        "next_run_calls": second.requests,
        "next_run_accepted": second.accepted,
        "landing_left": len(second.landing),
        "duplicates": result.duplicates(),
        "losses": len(result.losses()),
    }


def items_by_photo(items: list[dict[str, Any]]) -> dict[str, list[str]]:
    """upload key -> its items as the script wrote them (sorted JSON), from wardrobe_items rows.

    The lake stores colours as parallel name/hex lists and adds its own columns.
    """
    found: dict[str, list[str]] = {}
    for row in items:
        item = {k: _plain(row[k]) for k in SCRIPTED_FIELDS}
        names, hexes = _plain(row["color_names"]), _plain(row["color_hexes"])
        item["colors"] = [{"hex": h, "name": n} for n, h in zip(names, hexes, strict=True)]
        found.setdefault(row["upload_key"], []).append(json.dumps(item, sort_keys=True))
    return {key: sorted(rows) for key, rows in found.items()}


def scripted_items(photos: list[Photo]) -> dict[str, list[str]]:
    return {p.key: sorted(json.dumps(item, sort_keys=True) for item in p.items) for p in photos}


def _plain(value: Any) -> Any:
    """numpy scalars and arrays from Parquet as plain Python values."""
    return value.tolist() if hasattr(value, "tolist") else value


SCRIPTED_FIELDS = (  # an item's fields in the script, besides its colours
    "category",
    "description",
    "formality",
    "material",
    "pattern",
    "seasons",
    "subcategory",
    "warmth",
    "water_resistant",
)


# --- what must hold, per drill ---------------------------------------------------------------


def retried_until_accepted(
    error_class: str, status: str, failures: int, retry_after_s: float | None = None
) -> Callable[[DrillResult], None]:
    """Every call fails ``failures`` times (the simulator answering ``status``), then succeeds
    within the client's attempts: every photo accepted, nothing left failed."""

    def check(r: DrillResult) -> None:
        assert (r.first.accepted, r.first.failed, r.first.run_error) == (N_PHOTOS, {}, None)
        assert r.first.by_status == {status: failures * N_PHOTOS, "200": N_PHOTOS}
        assert [c["attempts"] for c in r.first.calls] == [failures + 1] * N_PHOTOS
        assert {c["error_class"] for c in r.first.calls} == {None}
        assert [c for c, _ in r.first.retries] == [error_class] * (failures * N_PHOTOS)
        if retry_after_s is not None:
            # Each retry waited at least the server's Retry-After (the delay the client chose,
            # as it logged it; not a clock reading).
            assert min(delay for _, delay in r.first.retries) >= retry_after_s

    return check


def check_503_outage(r: DrillResult) -> None:
    failed = [p for p in r.photos if r.first.row_for(p)["status"] == ingest.DIGITIZE_FAILED]
    # Every failed request was one of the outage's; some photos used all their attempts in it.
    assert r.first.by_status == {"503": OUTAGE_REQUESTS, "200": N_PHOTOS - len(failed)}
    assert 0 < len(failed) < N_PHOTOS
    assert r.first.failed == {"server_error": len(failed)}
    for photo in failed:
        call = r.first.call_for(photo)
        assert (call["error_class"], call["http_status"], call["attempts"]) == (
            "server_error",
            503,
            MAX_ATTEMPTS,
        )
    assert r.first.run_error and "server_error" in r.first.run_error


def check_every_attempt_timed_out(r: DrillResult) -> None:
    assert r.first.accepted == 0 and r.first.failed == {"timeout": N_PHOTOS}
    # 499: the simulator saw the client hang up at its timeout, before any answer.
    assert r.first.by_status == {"499": MAX_ATTEMPTS * N_PHOTOS}
    assert {(c["error_class"], c["http_status"], c["attempts"]) for c in r.first.calls} == {
        ("timeout", 0, MAX_ATTEMPTS)
    }
    assert r.first.run_error and "timeout" in r.first.run_error


def check_slow_answers(r: DrillResult) -> None:
    assert (r.first.accepted, r.first.failed, r.first.retries) == (N_PHOTOS, {}, [])
    assert r.first.by_status == {"200": N_PHOTOS}
    assert [c["attempts"] for c in r.first.calls] == [1] * N_PHOTOS
    # The drill really was slow: the simulator held every answer for its fixed latency (a
    # lower bound the simulator guarantees, so it cannot flake on a slow machine).
    assert min(c["latency_ms"] for c in r.first.calls) >= SLOW_LATENCY_MS


def items_survive(error_class: str | None, repaired: bool) -> Callable[[DrillResult], None]:
    """The faulty answers still give every true item; the batch is untouched otherwise."""

    def check(r: DrillResult) -> None:
        assert (r.first.accepted, r.first.failed, r.first.run_error) == (N_PHOTOS, {}, None)
        assert r.first.by_status == {"200": N_PHOTOS}
        for photo in r.photos:
            call = r.first.call_for(photo)
            faulty = photo in r.faulty_photos
            assert call["error_class"] == (error_class if faulty else None), photo.key
            assert call["repaired"] is (repaired and faulty), photo.key
            assert call["n_items"] == len(photo.items), photo.key
        assert items_by_photo(r.items) == scripted_items(r.photos)

    return check


def parse_failure_waits(error_class: str) -> Callable[[DrillResult], None]:
    """The faulty photos wait in landing as a parse failure; the rest of the batch goes on."""

    def check(r: DrillResult) -> None:
        assert r.first.accepted == N_PHOTOS - FAULTY_PHOTOS
        assert r.first.failed == {error_class: FAULTY_PHOTOS}
        assert r.first.landing == sorted(p.key for p in r.faulty_photos)
        for photo in r.faulty_photos:
            call = r.first.call_for(photo)
            # A parse failure is not a transport failure: no retry now, the next run retries.
            assert (call["error_class"], call["attempts"]) == (error_class, 1)
            assert pd.isna(call["n_items"])  # no items: nothing salvaged from the answer
            assert r.first.row_for(photo)["reason_code"] == error_class
        assert r.first.by_status == {"200": N_PHOTOS}
        assert r.first.run_error and error_class in r.first.run_error

    return check


DRILLS = [
    Drill(
        "503x2",
        "503 on the first 2 attempts of every call",
        f"every photo accepted on attempt 3 of {MAX_ATTEMPTS}; each retry waits at least the "
        f"Retry-After ({RETRY_AFTER_S:g} s)",
        retried_until_accepted("server_error", "503", 2, RETRY_AFTER_S),
        gateway=("503*2", None),
    ),
    Drill(
        "503-outage",
        f"503 outage: the first {OUTAGE_REQUESTS} requests fail",
        "photos whose attempts all fell in the outage wait in landing as digitize_failed "
        "server_error (HTTP 503 in the log); the rest are accepted; the run fails loudly",
        check_503_outage,
        gateway=("503", OUTAGE_REQUESTS),
    ),
    Drill(
        "429x2",
        "429 on the first 2 attempts of every call",
        f"every photo accepted on attempt 3; each retry waits at least the Retry-After "
        f"({RETRY_AFTER_S:g} s)",
        retried_until_accepted("rate_limited", "429", 2, RETRY_AFTER_S),
        gateway=("429*2", None),
    ),
    Drill(
        "timeout-once",
        "timeout on the first attempt of every call (client timeout 2 s)",
        "every photo accepted on attempt 2; the simulator saw each hang-up (HTTP 499)",
        retried_until_accepted("timeout", "499", 1),
        gateway=("timeout*1", None),
        timeout_s=2.0,
    ),
    Drill(
        "timeout-always",
        "timeout on every attempt (client timeout 0.5 s)",
        f"every photo waits in landing as digitize_failed timeout after {MAX_ATTEMPTS} "
        "attempts; the run fails loudly",
        check_every_attempt_timed_out,
        gateway=("timeout", None),
        timeout_s=0.5,
    ),
    Drill(
        "slow",
        f"slow answers: {SLOW_LATENCY_MS / 1000:g} s each, client timeout 3 s",
        "every photo accepted on its first attempt, no retry",
        check_slow_answers,
        latency_ms=SLOW_LATENCY_MS,
        timeout_s=3.0,
    ),
    Drill(
        "prefix",
        f"prose before the JSON ({FAULTY_PHOTOS} of {N_PHOTOS} photos)",
        "every photo accepted with all its true items; the prefixed answers counted as repaired",
        items_survive(None, repaired=True),
        photo_fault="prefix",
    ),
    Drill(
        "repeat",
        f"the JSON repeated until max_tokens ({FAULTY_PHOTOS} of {N_PHOTOS} photos)",
        "every photo accepted with all its true items (the first copy); those calls logged as "
        "repetition",
        items_survive("repetition", repaired=True),
        photo_fault="repeat",
    ),
    Drill(
        "malformed",
        f"JSON cut mid-way ({FAULTY_PHOTOS} of {N_PHOTOS} photos)",
        "those photos wait in landing as digitize_failed invalid_json, not retried in the run; "
        "the rest are accepted",
        parse_failure_waits("invalid_json"),
        photo_fault="malformed",
    ),
    Drill(
        "pad",
        f"nothing but <pad> tokens ({FAULTY_PHOTOS} of {N_PHOTOS} photos)",
        "those photos wait in landing as digitize_failed pad_output; the rest are accepted",
        parse_failure_waits("pad_output"),
        photo_fault="pad",
    ),
]


@contextlib.contextmanager
def drill_settings(home: Path) -> Iterator[None]:
    """A fresh DRESSCODE_HOME (local lake) and the drills' retry bound, undone afterwards."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("DRESSCODE_HOME", str(home))
        for knob in ("DRESSCODE_LAKE_URI", "DRESSCODE_LANDING_URI", "DRESSCODE_ALERTS_FILE"):
            monkeypatch.delenv(knob, raising=False)
        monkeypatch.setenv("DRESSCODE_LLM_MAX_ATTEMPTS", str(MAX_ATTEMPTS))
        config.get_settings.cache_clear()
        try:
            yield
        finally:
            config.get_settings.cache_clear()


@pytest.fixture(scope="module", params=DRILLS, ids=lambda d: d.id)
def drill(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DrillResult]:
    """One drill in its own DRESSCODE_HOME (local lake): the faulty run and the next run."""
    home = tmp_path_factory.mktemp("drill")
    with drill_settings(home):
        yield run_drill(request.param, home)


# --- the invariants, for every drill ---------------------------------------------------------


def test_what_the_drill_must_hold(drill: DrillResult) -> None:
    drill.drill.check(drill)


def test_no_photo_is_lost(drill: DrillResult) -> None:
    assert drill.losses() == []
    assert sorted(r["upload_key"] for r in drill.first.manifest) == [p.key for p in drill.photos]
    for photo in drill.photos:
        row = drill.first.row_for(photo)
        if row["status"] == ingest.DIGITIZE_FAILED:
            # The manifest names the inference log's error class and says it will be retried.
            assert row["reason_code"] == drill.first.call_for(photo)["error_class"]
            assert row["reason_code"] in row["reason"]
            assert f"of {ingest.MAX_DIGITIZE_ATTEMPTS}" in row["reason"]
            assert row["model_called"] and row["image_sha256"]


def test_no_duplicate_items_or_manifest_rows(drill: DrillResult) -> None:
    assert drill.duplicates() == 0
    final = ingest.manifest_state(config.get_settings())
    assert {key: row["status"] for key, row in final.items()} == {
        p.key: ingest.ACCEPTED for p in drill.photos
    }


def test_model_calls_stay_within_the_clients_retry_bound(drill: DrillResult) -> None:
    first = drill.first
    # One logged call per photo sent; the simulator counted every attempt of those calls.
    assert sorted(c["image_sha256"] for c in first.calls) == sorted(p.sha for p in drill.photos)
    assert first.requests == sum(c["attempts"] for c in first.calls)
    assert max(c["attempts"] for c in first.calls) <= MAX_ATTEMPTS
    assert first.requests <= MAX_ATTEMPTS * N_PHOTOS


def test_the_next_run_accepts_the_waiting_photos_and_resends_nothing_else(
    drill: DrillResult,
) -> None:
    waiting = sum(drill.first.failed.values())
    second = drill.second
    assert (second.requests, second.accepted, second.failed) == (waiting, waiting, {})
    assert second.landing == [] and second.run_error is None
    assert items_by_photo(drill.items) == scripted_items(drill.photos)


# --- the stylist's tool loop -----------------------------------------------------------------


STYLIST = blueprints.resolve("outfit-stylist@2")
WARDROBE = [
    {
        "item_id": item_id,
        "category": category,
        "subcategory": category,
        "color_names": ["navy"],
        "warmth": "medium",
        "formality": "casual",
        "water_resistant": False,
        "description": f"A {category}.",
    }
    for item_id, category in (
        ("tee", "top"),
        ("sweater", "top"),
        ("jeans", "bottom"),
        ("sneakers", "footwear"),
    )
]
N_USERS = 6
MILD = {"temperature_c": 18, "precipitation_probability": 10}


def with_numeric_tool_argument(blueprint: blueprints.Blueprint) -> blueprints.Blueprint:
    """The blueprint with an integer ``days`` argument on get_weather (the production tool
    takes only strings, so there is nothing for the fault to turn into a string)."""
    tool = copy.deepcopy(blueprint.tools[0])
    tool["function"]["parameters"]["properties"]["days"] = {"type": "integer", "minimum": 1}
    tool["function"]["parameters"]["required"].append("days")
    return dataclasses.replace(blueprint, tools=[tool])


@dataclass(frozen=True)
class StylistDrill:
    id: str
    name: str
    blueprint: blueprints.Blueprint
    coerced_per_user: int  # string arguments the loop must turn back into numbers


STYLIST_DRILLS = [
    StylistDrill(
        "string-args",
        "tool-call numbers as strings (get_weather with an integer argument)",
        with_numeric_tool_argument(STYLIST),
        1,
    ),
    StylistDrill(
        "string-args-production-tool",
        "tool-call numbers as strings (production get_weather: strings only)",
        STYLIST,
        0,
    ),
]


@dataclass
class StylistResult:
    drill: StylistDrill
    suggestions: list[outfits.Suggestion]
    records: list[dict[str, Any]]
    requests: int
    by_status: dict[str, int]


@pytest.fixture(scope="module", params=STYLIST_DRILLS, ids=lambda d: d.id)
def stylist_drill(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StylistResult]:
    """Six users through the tool loop with every tool call's numbers sent as strings."""
    with drill_settings(tmp_path_factory.mktemp("stylist")):
        yield run_stylist_drill(request.param)


def run_stylist_drill(spec: StylistDrill) -> StylistResult:
    """``outfits.suggest_many`` with the client ``pregen.run_batch`` makes, every call stamped."""
    contexts = [
        outfits.UserContext(f"user-{i}", "Oslo", date(2026, 3, 2) + timedelta(days=i), WARDROBE)
        for i in range(N_USERS)
    ]

    def weather(city: str, day: date) -> dict[str, Any]:
        return dict(MILD)

    async def suggest_all(url: str) -> list[tuple[outfits.Suggestion, list[dict[str, Any]]]]:
        settings = config.get_settings()
        endpoint = LLMEndpoint(url, "EMPTY", MODEL, HEALTHY_TIMEOUT_S, CONCURRENCY)
        async with DresscodeLLMHook.client_for(endpoint, settings) as client:
            return await outfits.suggest_many(
                client, spec.blueprint, contexts, weather, max_turns=4
            )

    with simulator(Gateway("string_args")) as url:
        results = asyncio.run(suggest_all(url))
        stats = sim_stats(url)
    result = StylistResult(
        spec,
        [s for s, _ in results],
        [r for _, rows in results for r in rows],
        stats["requests_total"],
        stats["requests_by_status"],
    )
    log.info(
        "stylist drill %s: %s",
        spec.name,
        json.dumps(
            {
                "users": N_USERS,
                "ok": sum(s.ok for s in result.suggestions),
                "calls": result.requests,
                "by_status": result.by_status,
                "tool_calls": sum(s.tool_calls for s in result.suggestions),
                "coerced_args": sum(s.coerced_args for s in result.suggestions),
            }
        ),
    )
    return result


def test_string_tool_arguments_are_coerced_and_every_user_gets_outfits(
    stylist_drill: StylistResult,
) -> None:
    per_user = stylist_drill.drill.coerced_per_user
    suggestions = stylist_drill.suggestions
    assert [s.user_id for s in suggestions] == [f"user-{i}" for i in range(N_USERS)]
    assert all(s.ok and s.outfits for s in suggestions), [s.skip_reason for s in suggestions]
    assert [(s.tool_calls, s.tool_call_ok, s.turns) for s in suggestions] == [
        (1, True, 2)
    ] * N_USERS
    assert [s.coerced_args for s in suggestions] == [per_user] * N_USERS
    assert sum(r["coerced_args"] for r in stylist_drill.records) == per_user * N_USERS
    # Two model calls per user (the tool round, the answer), no retries, none lost or doubled.
    assert stylist_drill.by_status == {"200": 2 * N_USERS}
    assert len({r["request_id"] for r in stylist_drill.records}) == 2 * N_USERS
    assert {r["attempts"] for r in stylist_drill.records} == {1}
