"""make up's runs: each starts once what it reads has ended; a paused DAG's first run stands in
for the scheduled run unpausing starts.

The Airflow API is scripted (a subclass recording the requests ``start_run`` makes); that the
scheduler then skips the interval is Airflow's own rule (a scheduled run is keyed on its
logical date), exercised by every ``make up``: its runs list shows no ``scheduled__`` run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dresscode.local import runs
from dresscode.local.airflow_api import AirflowAPI
from dresscode.local.stack import dags_in_folder

NEXT = "2026-12-05T22:00:00Z"


class RecordingAPI(AirflowAPI):
    def __init__(self, paused: bool, next_logical: str | None) -> None:
        super().__init__("http://127.0.0.1:1", "admin", "admin")
        self.paused, self.next_logical = paused, next_logical
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def dag(self, dag_id: str) -> dict[str, Any]:
        return {
            "dag_id": dag_id,
            "is_paused": self.paused,
            "next_dagrun_logical_date": self.next_logical,
        }

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, **kwargs: Any) -> str:
        self.calls.append(("trigger", {"conf": conf, **kwargs}))
        return "manual__1"

    def unpause(self, dag_id: str) -> None:
        self.calls.append(("unpause", {}))


def test_a_paused_dags_run_takes_the_logical_date_of_the_scheduled_one() -> None:
    api = RecordingAPI(paused=True, next_logical=NEXT)
    before = datetime.now(UTC)
    assert runs.start_run(api, "prompt_release", {"x": 1}) == "manual__1"
    [(first, trigger), (second, _)] = api.calls
    assert (first, second) == ("trigger", "unpause")  # triggered while paused: no race
    assert trigger["logical_date"] == NEXT and trigger["conf"] == {"x": 1}
    start, end = (datetime.fromisoformat(t) for t in trigger["data_interval"])
    assert end - start == timedelta(days=1) and before <= end <= datetime.now(UTC)


def test_an_unpaused_dag_gets_a_plain_manual_run() -> None:
    api = RecordingAPI(paused=False, next_logical=NEXT)
    runs.start_run(api, "wardrobe_ingest")
    [(_, trigger), _] = api.calls
    assert trigger == {"conf": None}


def test_an_unscheduled_dag_gets_a_plain_manual_run() -> None:
    api = RecordingAPI(paused=True, next_logical=None)
    runs.start_run(api, "prompt_rollback")
    [(_, trigger), _] = api.calls
    assert trigger == {"conf": None}


def test_each_pipeline_dag_waits_for_what_it_reads() -> None:
    assert set(runs.PIPELINE) <= set(dags_in_folder())
    # what each DAG reads, written by another pipeline DAG
    reads = {
        "wardrobe_ingest": [runs.SEED],  # the seeded uploads
        "weather_ingest": [runs.SEED],  # the seeded users' cities
        "item_embeddings": ["wardrobe_ingest"],
        "style_features": ["wardrobe_ingest", "weather_ingest"],
        "outfit_pregen": ["style_features", "prompt_release", "weather_ingest"],
        "feedback_ingest": ["outfit_pregen"],
    }
    for dag, inputs in reads.items():
        assert set(inputs) <= set(runs.PIPELINE_NEEDS[dag]), dag


class ScriptedRuns(RecordingAPI):
    """Each run ends ``polls[dag_id]`` state checks after it was triggered (never, if None)."""

    def __init__(self, polls: dict[str, int | None], final: str = "success") -> None:
        super().__init__(paused=False, next_logical=None)
        self.polls, self.final = polls, final
        self.checks: dict[str, int] = {}
        self.log: list[str] = []  # "start <run>" / "end <run>" in the order they happened

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, **kwargs: Any) -> str:
        run_id = f"{dag_id}#{sum(r.startswith(dag_id + '#') for r in self.checks)}"
        self.checks[run_id] = 0
        self.log.append(f"start {run_id}")
        return run_id

    def run_state(self, dag_id: str, run_id: str) -> str:
        self.checks[run_id] += 1
        needed = self.polls.get(dag_id, 1)
        if needed is not None and self.checks[run_id] >= needed:
            if f"end {run_id}" not in self.log:
                self.log.append(f"end {run_id}")
            return self.final
        return "running"

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        return {"work": "running"}


def test_a_run_starts_once_what_it_needs_has_ended_and_independent_runs_overlap() -> None:
    api = ScriptedRuns({"prompt_release": 5, "wardrobe_ingest": 2, "style_features": 1})
    states = runs.Runner(api, poll_s=0).run(
        [
            runs.Step("prompt_release", "prompt_release"),
            runs.Step("wardrobe_ingest", "wardrobe_ingest"),
            runs.Step("style_features", "style_features", ("wardrobe_ingest",)),
            runs.Step("outfit_pregen", "outfit_pregen", ("style_features", "prompt_release")),
        ]
    )
    assert states == dict.fromkeys(
        ("prompt_release", "wardrobe_ingest", "style_features", "outfit_pregen"), "success"
    )
    at = {entry: i for i, entry in enumerate(api.log)}
    assert at["start style_features#0"] > at["end wardrobe_ingest#0"]
    # style_features ran while the release still went on; the pre-generation waited for both
    assert at["end style_features#0"] < at["end prompt_release#0"]
    assert at["start outfit_pregen#0"] > at["end prompt_release#0"]


def test_a_skipped_step_is_not_reported_and_does_not_hold_what_needs_it() -> None:
    api = ScriptedRuns({})
    states = runs.Runner(api, poll_s=0).run(
        [
            runs.Step("wardrobe_ingest (dark batch)", "wardrobe_ingest", before=lambda: runs.SKIP),
            runs.Step(
                "model_monitoring (dark batch)",
                "model_monitoring",
                ("wardrobe_ingest (dark batch)",),
                before=lambda: {"window_start": "a", "window_end": "b"},
            ),
        ]
    )
    assert states == {"model_monitoring (dark batch)": "success"}
    assert api.log == ["start model_monitoring#0", "end model_monitoring#0"]


def test_local_work_runs_before_what_needs_it_and_is_not_reported() -> None:
    api = ScriptedRuns({})
    seeded: list[str] = []
    states = runs.Runner(api, poll_s=0).run(
        [
            runs.Step("weather_ingest", "weather_ingest", (runs.SEED,)),
            runs.Step(runs.SEED, None, before=lambda: seeded.append(f"{len(api.log)} runs")),
        ]
    )
    assert seeded == ["0 runs"] and states == {"weather_ingest": "success"}


def test_a_failed_run_is_reported_and_what_reads_it_still_runs() -> None:
    api = ScriptedRuns({}, final="failed")
    ended: list[str] = []
    states = runs.Runner(api, poll_s=0).run(
        [
            runs.Step("wardrobe_ingest", "wardrobe_ingest", after=ended.append),
            runs.Step("item_embeddings", "item_embeddings", ("wardrobe_ingest",)),
        ]
    )
    assert states == {"wardrobe_ingest": "failed", "item_embeddings": "failed"}
    assert ended == ["failed"]


def test_a_run_without_progress_is_given_up_with_the_state_it_was_in() -> None:
    api = ScriptedRuns({"prompt_release": None})
    states = runs.Runner(api, timeout_s=0, poll_s=0).run(
        [runs.Step("prompt_release", "prompt_release")]
    )
    assert states == {"prompt_release": "running"}


def test_make_ups_steps_run_each_pipeline_dag_and_both_demo_batches() -> None:
    names = [s.name for s in runs.pipeline_steps(seed_photos=48)]
    # the release first: it reads nothing the seeding writes
    assert names[:2] == ["prompt_release", runs.SEED]
    assert sorted(names[: len(runs.PIPELINE) + 1]) == sorted([*runs.PIPELINE, runs.SEED])
    assert names[len(runs.PIPELINE) + 1 :] == [
        "wardrobe_ingest (normal batch)",
        "model_monitoring (normal batch)",
        "wardrobe_ingest (dark batch)",
        "model_monitoring (dark batch)",
    ]
    needs = {s.name: set(s.needs) for s in runs.pipeline_steps(seed_photos=48)}
    # the dark batch is seeded after the normal one was ingested (or ingest would take both)
    assert needs["wardrobe_ingest (dark batch)"] == {"wardrobe_ingest (normal batch)"}
    # its check re-evaluates what is in production and judges the day's suggestions: after
    # outfit_pregen (itself after the release), and after the normal check
    assert needs["model_monitoring (dark batch)"] == {
        "wardrobe_ingest (dark batch)",
        "model_monitoring (normal batch)",
        "outfit_pregen",
    }


class JudgedAPI(RecordingAPI):
    def __init__(self, judged: dict[str, Any] | Exception) -> None:
        super().__init__(paused=False, next_logical=None)
        self.judged = judged

    def result(self, dag_id: str, run_id: str, task_id: str) -> Any:
        assert (dag_id, task_id) == ("model_monitoring", "judge_production")
        if isinstance(self.judged, Exception):
            raise self.judged
        return self.judged


def test_the_summary_says_what_the_production_judges_made_of_the_window() -> None:
    judged = {"judged": 9, "suggestions": 9, "judges": "reliable: owned_garments agrees …",
              "pass_rates": {"weather_fit": 1.0, "owned_garments": 8 / 9, "x": None}}  # fmt: skip
    line = runs.judges_line(JudgedAPI(judged), "model_monitoring", "r1")
    assert line == (
        "production judges: 9 of 9 suggestions judged (simulator verdicts): "
        "owned_garments 89%, weather_fit 100%; reliable: owned_garments agrees …"
    )
    none = {"judged": 0, "suggestions": 0, "judges": "not run (no suggestion in the window)"}
    assert runs.judges_line(JudgedAPI(none), "model_monitoring", "r1") == (
        "production judges: not run (no suggestion in the window)"
    )
    broken = runs.judges_line(JudgedAPI(RuntimeError("404")), "model_monitoring", "r1")
    assert broken == "production judges: result not readable (404)"
