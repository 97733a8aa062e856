"""The runs ``make up`` drives through Airflow's REST API: the pipeline and the monitoring demo.

Each run starts as soon as the runs it reads from have ended, not stage by stage: the golden
evaluation of ``prompt_release`` (the longest run, bound by the model endpoint) runs beside
the ingest, the features and the first demo batch, and only the runs that need its verdict —
``outfit_pregen`` (the stylist in production) and the drifted demo batch's re-evaluation —
wait for it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dresscode.local.airflow_api import TERMINAL_STATES, AirflowAPI
from dresscode.local.stack import dags_in_folder, run_dir, sim_script

SKIP = object()  # a step's ``before`` answers this when its run is not needed (done earlier)
SEED = "seed"  # the step that writes the demo's uploads and users
PROGRESS_CHECK_S = 15.0


@dataclass
class Step:
    """One DAG run of ``make up``, started once every step it ``needs`` has ended (whatever
    its state: a failed run is reported, and what reads it runs on what is there)."""

    name: str  # as reported: the DAG id, or "<dag> (<what>)" for a second run of a DAG
    dag_id: str | None  # None: local work only (``before``), no run
    needs: tuple[str, ...] = ()
    # Work before the run (seeding); returns the run's conf, or SKIP.
    before: Callable[[], Any] | None = None
    after: Callable[[str], None] | None = None  # called with the run's final state


# What each pipeline DAG reads from the others. outfit_pregen waits for the release: it
# serves the stylist in production, and a first release is what puts one there.
PIPELINE_NEEDS: dict[str, tuple[str, ...]] = {
    "prompt_release": (),
    "wardrobe_ingest": (SEED,),
    "weather_ingest": (SEED,),  # the seeded users' cities
    "item_embeddings": ("wardrobe_ingest",),
    "style_features": ("wardrobe_ingest", "weather_ingest"),
    "outfit_pregen": ("style_features", "weather_ingest", "prompt_release"),
    "feedback_ingest": ("outfit_pregen",),  # its demo events rate the suggestions
}
PIPELINE = tuple(PIPELINE_NEEDS)


def start_run(client: AirflowAPI, dag_id: str, conf: dict | None = None) -> str:
    """Start a run of ``dag_id`` now and unpause it; returns its run id.

    Unpausing a scheduled DAG makes the scheduler run its latest interval at once, even with
    ``catchup=False``: before, ``make up`` ran that work twice (the issue's prompt_release ran a
    122 s golden evaluation nobody asked for, and ours queued behind it). On a paused DAG our
    run takes the logical date of that scheduled run, so the scheduler finds it already there
    and moves on to the next interval (Airflow keys scheduled runs on it); its data interval
    is the 24 hours before now, as for any run started by hand.
    """
    from datetime import timedelta

    info = client.dag(dag_id)
    logical = info.get("next_dagrun_logical_date") if info.get("is_paused") else None
    if logical:
        now = datetime.now(UTC)
        window = ((now - timedelta(days=1)).isoformat(), now.isoformat())
        run_id = client.trigger(dag_id, conf, logical_date=logical, data_interval=window)
    else:
        run_id = client.trigger(dag_id, conf)
    client.unpause(dag_id)
    print(f"• triggered {dag_id} ({run_id})", flush=True)
    return run_id


def report(
    client: AirflowAPI, name: str, dag_id: str, run_id: str, state: str, took_s: float
) -> None:
    tasks = client.task_states(dag_id, run_id)
    failed = [t for t, s in tasks.items() if s not in {"success", "skipped"}]
    taken = [
        t
        for t in ("healthy", "quality_degraded", "drifted", "promote", "page")
        if tasks.get(t) == "success"
    ]
    note = f" (not successful: {', '.join(failed)})" if failed else ""
    branch = f", took {' -> '.join(taken)}" if taken else ""
    print(f"  {name}: {state}{branch}{note} [{took_s:.0f} s]", flush=True)
    if tasks.get("judge_production") == "success":
        print(f"    {judges_line(client, dag_id, run_id)}", flush=True)


def judges_line(client: AirflowAPI, dag_id: str, run_id: str) -> str:
    """What the LLM judges made of the window's production suggestions, in one line."""
    try:
        judged = client.result(dag_id, run_id, "judge_production")
    except Exception as exc:  # a line of the summary, never a reason to fail make up
        return f"production judges: result not readable ({exc})"
    if not judged.get("judged"):
        return f"production judges: {judged.get('judges')}"
    rates = ", ".join(
        f"{k} {v:.0%}" for k, v in sorted(judged["pass_rates"].items()) if v is not None
    )
    return (
        f"production judges: {judged['judged']} of {judged['suggestions']} suggestions judged "
        f"(simulator verdicts): {rates}; {judged['judges']}"
    )


@dataclass
class _Running:
    step: Step
    dag_id: str
    run_id: str
    began: float
    seen: Any = None  # the last (state, task states) seen: a change is progress
    deadline: float = 0.0
    looked_at: float = float("-inf")  # when its task states were last read


@dataclass
class Runner:
    """Starts each step when what it needs has ended; waits for them all.

    A run that makes no progress (no change of its state or its tasks' states) for
    ``timeout_s`` is given up on and reported with the state it was in.
    """

    client: AirflowAPI
    timeout_s: float = 1800
    poll_s: float = 2.0
    progress_every_s: float = 30.0
    states: dict[str, str] = field(default_factory=dict)

    def run(self, steps: list[Step]) -> dict[str, str]:
        present = set(dags_in_folder())
        known = {s.name for s in steps if s.dag_id is None or s.dag_id in present}
        waiting = [s for s in steps if s.name in known]
        running: list[_Running] = []
        last_progress = time.monotonic()
        while waiting or running:
            for step in [s for s in waiting if self._ready(s, known)]:
                waiting.remove(step)
                started = self._start(step)
                if started is not None:
                    running.append(started)
            for r in list(running):
                state = self._check(r)
                if state is not None:
                    running.remove(r)
                    self._end(r, state)
            if running and time.monotonic() - last_progress >= self.progress_every_s:
                print(
                    "  … running: "
                    + ", ".join(
                        f"{r.step.name} ({time.monotonic() - r.began:.0f} s)" for r in running
                    ),
                    flush=True,
                )
                last_progress = time.monotonic()
            if running:
                time.sleep(self.poll_s)
        return {n: s for n, s in self.states.items() if s not in {"skipped", "done"}}

    def _ready(self, step: Step, known: set[str]) -> bool:
        return all(n in self.states or n not in known for n in step.needs)

    def _start(self, step: Step) -> _Running | None:
        conf = step.before() if step.before else None
        if step.dag_id is None:
            self.states[step.name] = "done"
            return None
        if conf is SKIP:
            self.states[step.name] = "skipped"
            return None
        run_id = start_run(self.client, step.dag_id, conf)
        now = time.monotonic()
        return _Running(step, step.dag_id, run_id, now, deadline=now + self.timeout_s)

    def _check(self, r: _Running) -> str | None:
        """The run's final state once it ended (or stalled); None while it goes on."""
        state = self.client.run_state(r.dag_id, r.run_id)
        if state in TERMINAL_STATES:
            return state
        now = time.monotonic()
        # Progress is read every 15 s, not at every poll: the local metadata DB is SQLite.
        if now - r.looked_at >= PROGRESS_CHECK_S:
            tasks = self.client.task_states(r.dag_id, r.run_id)
            snapshot, r.looked_at = (state, tuple(sorted(tasks.items()))), now
            if snapshot != r.seen:
                r.seen, r.deadline = snapshot, now + self.timeout_s
        return state if now >= r.deadline else None

    def _end(self, r: _Running, state: str) -> None:
        self.states[r.step.name] = state
        report(self.client, r.step.name, r.dag_id, r.run_id, state, time.monotonic() - r.began)
        if r.step.after:
            r.step.after(state)


# The monitoring demo: a second normal batch (the check must say healthy), then a batch of dark
# photos (it must see the drift, re-evaluate, and promote or page).
DEMO_BATCH = 40  # photos per demo batch: above DRESSCODE_DRIFT_MIN_ROWS, so drift is testable
DEMO_BATCHES = (("normal", None), ("dark", "dark"))


class Rendering:
    """The demo's photos drawn in a background thread from the moment ``up`` starts: seeding a
    batch then only writes it. Drawing and encoding its 160 photos is ~30 s of CPU, all of it
    on the critical path when each batch was drawn at its turn.

    ``get`` waits for a batch; one that failed to render is drawn again by the seeding itself.
    """

    def __init__(self, seed_photos: int) -> None:
        from dresscode.local import seed

        self.batches: dict[str, Callable[[], list[seed.Upload]]] = {
            "landing": lambda: seed.render(seed_photos, near_duplicates=4),
            **{
                name: functools.partial(
                    seed.render, DEMO_BATCH, start=seed_photos + i * DEMO_BATCH, shift=shift
                )
                for i, (name, shift) in enumerate(DEMO_BATCHES)
            },
        }
        self._done = {name: threading.Event() for name in self.batches}
        self._rendered: dict[str, list[seed.Upload] | None] = {}
        # A daemon: a failing ``up`` exits without waiting for photos nobody will seed.
        threading.Thread(target=self._render_all, name="render-demo", daemon=True).start()

    def _render_all(self) -> None:
        # Niced (Linux nices threads one by one): the parts starting up and the release's
        # golden evaluation are on the critical path; the photos are needed a minute later.
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        for name, render in self.batches.items():
            try:
                self._rendered[name] = render()
            except Exception as exc:  # the seeding draws them itself, and fails there if it must
                print(f"  note: drawing the {name} photos ahead failed ({exc})", flush=True)
                self._rendered[name] = None
            self._done[name].set()

    def get(self, name: str) -> Any:
        self._done[name].wait()
        return self._rendered[name]


def pipeline_steps(seed_photos: int, rendering: Rendering | None = None) -> list[Step]:
    """The seeding and the pipeline's runs, then the monitoring demo's (:func:`demo_steps`).
    ``rendering``: the photos drawn ahead (:class:`Rendering`)."""
    from dresscode.local import seed

    def seed_landing() -> None:
        written = seed.seed(
            n_photos=seed_photos,
            script_path=sim_script(),
            near_duplicates=4,
            rendered=rendering.get("landing") if rendering else None,
        )
        print(
            f"• seeded landing: {written.new} new uploads ({written.skipped} already ingested earlier)",
            flush=True,
        )

    def seed_feedback() -> None:
        fed = seed.seed_feedback()
        print(
            f"• seeded user feedback: {fed.events} events and {fed.bad_lines} bad lines in {fed.key}"
            if fed.key
            else "• user feedback already ingested earlier",
            flush=True,
        )

    # In this order: the release starts before the seeding (~10 s), which it does not read.
    befores = {"feedback_ingest": seed_feedback}  # its demo file first
    steps = [Step(d, d, needs, befores.get(d)) for d, needs in PIPELINE_NEEDS.items()]
    steps.insert(1, Step(SEED, None, before=seed_landing))
    return steps + demo_steps(first_seed=seed_photos, rendering=rendering)


def demo_steps(first_seed: int, rendering: Rendering | None = None) -> list[Step]:
    """Per demo batch: seed and ingest it (after the batch before it was ingested, or one
    ingest would take both), then check its window — the checks in order, and the drifted
    batch's after the release, since it re-evaluates what is in production, and after the
    day's suggestions, which its ``judge_production`` samples."""
    windows = _DemoWindows(run_dir() / "demo-windows.json")
    steps: list[Step] = []
    ingested, checked = "wardrobe_ingest", None
    for i, (name, shift) in enumerate(DEMO_BATCHES):
        ingest, check = f"wardrobe_ingest ({name} batch)", f"model_monitoring ({name} batch)"
        seeder = _DemoBatch(name, shift, first_seed + i * DEMO_BATCH, windows, rendering)
        needs = (ingest, *([checked] if checked else []), *(["outfit_pregen"] if shift else []))
        steps += [
            Step(ingest, "wardrobe_ingest", (ingested,), seeder.seed, seeder.ingested),
            Step(check, "model_monitoring", needs, before=seeder.window),
        ]
        ingested, checked = ingest, check
    return steps


class _DemoWindows:
    """Each demo batch's window, recorded the first time it is ingested: running ``up`` again
    checks the same photos and reaches the same decision."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.windows: dict[str, dict[str, str]] = (
            json.loads(path.read_text()) if path.exists() else {}
        )

    def record(self, name: str, start: str) -> None:
        self.windows[name] = {"window_start": start, "window_end": datetime.now(UTC).isoformat()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.windows, indent=2))


@dataclass
class _DemoBatch:
    name: str
    shift: str | None
    start: int  # the first photo's number
    windows: _DemoWindows
    rendering: Rendering | None
    seeded_at: str = ""

    def seed(self) -> Any:
        """Write the batch into landing; SKIP its ingest when an earlier ``up`` did it."""
        from dresscode.local import seed

        # Before seeding: a scheduled wardrobe_ingest may pick the batch up at once.
        self.seeded_at = datetime.now(UTC).isoformat()
        written = seed.seed(
            n_photos=DEMO_BATCH,
            script_path=sim_script(),
            start=self.start,
            bad_files=False,
            shift=self.shift,
            rendered=self.rendering.get(self.name) if self.rendering else None,
        )
        print(f"• seeded the {self.name} demo batch: {written.new} new uploads", flush=True)
        return None if written.new or self.name not in self.windows.windows else SKIP

    def ingested(self, state: str) -> None:
        self.windows.record(self.name, self.seeded_at)

    def window(self) -> dict[str, str]:
        return self.windows.windows[self.name]
