"""Shared by bench/load_stack.py: where a wardrobe_ingest run loses the model endpoint.

Inputs are what the run leaves behind: the task instances' own times from Airflow's REST API
(scheduled, queued, started, ended; every try) and each batch's ``timings`` from its XCom
(``dresscode.ingest.timings``: when its code began, its setup, its model window and call time,
its commit), plus the simulator's busy slot-seconds sampled during the run. Imported as
``from _phases import ...`` (the benchmarks run as scripts from bench/).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime
from typing import Any


def epoch(stamp: str | None) -> float | None:
    """An Airflow API timestamp (ISO 8601 with offset) as epoch seconds."""
    return None if not stamp else datetime.fromisoformat(stamp).timestamp()


@dataclass(frozen=True)
class Batch:
    """One try of one mapped ``process`` task instance."""

    map_index: int
    try_number: int
    hostname: str
    scheduled: float | None  # the scheduler made it runnable (then it waits for pool slots)
    queued: float | None  # sent to the executor
    start: float  # the task process started
    end: float
    timings: dict[str, Any] | None  # the batch's own (None: a try that died, no XCom)

    @property
    def t(self) -> dict[str, Any]:
        """The timings ({} for a try that died)."""
        return self.timings or {}

    @property
    def code_start(self) -> float:
        return self.timings["started_at"] if self.timings else self.end


def union_seconds(spans: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one of the spans."""
    covered, reach = 0.0, float("-inf")
    for begin, finish in sorted(spans):
        if finish <= reach:
            continue
        covered += finish - max(begin, reach)
        reach = finish
    return covered


@dataclass(frozen=True)
class Breakdown:
    rows: list[tuple[str, float, str]]  # phase, batch-seconds summed, note
    run_s: float
    batches: int
    busy_share: float | None  # endpoint slot-seconds used / offered over the run
    model_window_share: float  # of the run's wall, time with at least one call in flight


def breakdown(
    batches: list[Batch],
    run_start: float,
    run_end: float,
    slots: int,
    busy_slot_seconds: float | None,
) -> Breakdown:
    """The phases, summed over batches (they add up to the run's wall time when one batch
    runs at a time; with batches overlapping, more)."""
    run_s = run_end - run_start
    done = [b for b in batches if b.timings]
    lost = [b for b in batches if not b.timings]
    with_calls = [b for b in done if b.timings and b.t["model_first_at"] is not None]
    windows = [(b.t["model_first_at"], b.t["model_last_at"]) for b in with_calls]
    running = [(b.start, b.end) for b in batches]
    waiting_for_slot = [
        b.queued - b.scheduled for b in batches if b.queued is not None and b.scheduled is not None
    ]
    queued_to_start = [b.start - b.queued for b in batches if b.queued is not None]

    def total(values: list[float]) -> float:
        return float(sum(values))

    startup = [b.code_start - b.start for b in done]
    setup = [b.t["setup_s"] for b in done]
    ramp = [b.t["model_first_at"] - b.code_start - b.t["setup_s"] for b in with_calls]
    model = [last - first for first, last in windows]
    tail = [b.end - b.t["model_last_at"] for b in with_calls]
    commit = [b.t["commit_s"] for b in done]
    no_batch = run_s - union_seconds(running)
    no_calls = run_s - union_seconds(windows)

    def med(values: list[float]) -> str:
        return f"median {statistics.median(values):.1f} s" if values else "-"

    rows = [
        ("no batch task running (run start, gaps between batches, report)", no_batch,
         "run wall minus the union of the batches' task times"),
        ("waiting for `llm` pool slots (scheduled -> queued)", total(waiting_for_slot),
         med(waiting_for_slot) + " (overlaps the other phases: the previous batch holds the slots)"),
        ("queued -> task process started", total(queued_to_start), med(queued_to_start)),
        ("task start-up (process start -> task code)", total(startup), med(startup)),
        ("batch setup (manifest state, fingerprints)", total(setup), med(setup)),
        ("ramp: first photos normalized -> first model request", total(ramp), med(ramp)),
        ("model calls (first request -> last answer)", total(model),
         f"{med(model)}; {total(model) / max(run_s - no_calls, 1e-9):.1f} batches calling at a time"),
        ("tail: last answer -> task end (commit, XCom, exit)", total(tail),
         f"{med(tail)}; of which commit {total(commit):.0f} s"),
        ("tries that died (no result)", total([b.end - b.start for b in lost]),
         f"{len(lost)} tries"),
    ]  # fmt: skip
    return Breakdown(
        rows=rows,
        run_s=run_s,
        batches=len(done),
        busy_share=None if busy_slot_seconds is None else busy_slot_seconds / (slots * run_s),
        model_window_share=(run_s - no_calls) / run_s if run_s else 0.0,
    )


def markdown(result: Breakdown, normalize_cpu_s: float) -> str:
    lines = [
        f"- run wall: {result.run_s:.0f} s, {result.batches} batches; time with a model call in "
        f"flight: {result.model_window_share:.0%} of it",
    ]
    if result.busy_share is not None:
        lines.append(
            f"- **endpoint busy over the run: {result.busy_share:.1%}** (the simulator's "
            "busy slot-seconds / its slots x the run's wall)"
        )
    lines += [
        f"- normalization CPU (threads, all batches): {normalize_cpu_s:.0f} s",
        "",
        "| phase | seconds (summed over batches) | note |",
        "|---|---:|---|",
        *(f"| {name} | {seconds:.0f} | {note} |" for name, seconds, note in result.rows),
    ]
    return "\n".join(lines)
