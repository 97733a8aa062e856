"""Promotion governance: a human decision (a rollback, a rejection) is never undone by automation.

One story, in order, on a real MLflow registry and the simulator over real HTTP, with the DAGs
run through ``dag.test()``: release v3 -> roll back to v2 -> a drifted night does not bring v3
back; a rejected approval parks its candidate the same way; an approval nobody answers pages
the on-call and times out to Reject; an approval answered after a rollback cannot promote.

``dag.test()`` parks an approval in ``awaiting_input`` and waits for an answer from outside, as
the UI would give it. A helper thread plays that part on the same metadata DB: for a person,
what the REST API's ``PATCH .../hitlDetails`` does (record the response, resume the task); for
silence, the scheduler's own timeout sweep (``check_awaiting_input_timeouts``) after moving the
deadline into the past — the 12 hours themselves are not waited for.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from dresscode.llm import blueprints
from dresscode.monitoring import tasks as jobs
from dresscode.orchestration import alerts
from dresscode.registry import golden
from dresscode.registry import prompt_registry as registry

GEMMA = "google/gemma-4-26B-A4B-it"
DIGITIZER = "wardrobe-digitizer"
ROLLBACK_REASON = "v3 drops shoes on real photos"


def _states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def _add_version(prompts: Path, version: int) -> None:
    data = yaml.safe_load((prompts / DIGITIZER / "v2.yaml").read_text())
    data.update(version=version, max_tokens=1500 + version)  # a new blueprint, same quality
    (prompts / DIGITIZER / f"v{version}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _version(version: int) -> registry.VersionInfo:
    [info] = [v for v in registry.versions(DIGITIZER) if v.git_version == version]
    return info


@pytest.fixture(scope="module")
def env(load_dag, module_home) -> Iterator[dict[str, Any]]:
    from dresscode.sim.testing import running_simulator

    home, monkeypatch = module_home
    prompts = home / "prompts"
    shutil.copytree(blueprints.PROMPTS_DIR, prompts)
    monkeypatch.setattr(blueprints, "PROMPTS_DIR", prompts)
    labels = golden.write_script(golden.load_wardrobe_golden(), home / "golden.jsonl")
    with running_simulator(
        scripts=[labels],
        served_model_name=[f"{GEMMA}=perfect"],
        fixed_latency_ms=2,
        max_num_seqs=64,
    ) as url:
        conn = {"conn_type": "http", "host": url, "extra": {"model": GEMMA}}
        monkeypatch.setenv("AIRFLOW_CONN_DRESSCODE_LLM", json.dumps(conn))
        yield {
            "prompts": prompts,
            "release": load_dag("prompt_release"),
            "rollback": load_dag("prompt_rollback"),
            "monitoring": load_dag("model_monitoring"),
        }


def _release(env: dict[str, Any], *, auto_promote: bool, answer: Callable[[], None] | None = None):
    """One prompt_release run; ``answer`` plays the person (or the clock) in a thread."""
    from airflow._shared.timezones import timezone

    failures: list[BaseException] = []
    started = timezone.utcnow()

    def play() -> None:
        try:
            assert answer is not None
            answer()
        except BaseException as exc:  # dag.test() would wait for ever: end the run, report
            failures.append(exc)
            _when_waiting(
                "prompt_release", lambda ti, session: ti.set_state("failed", session), since=started
            )

    responder = threading.Thread(target=play, daemon=True) if answer else None
    if responder:
        responder.start()
    run = env["release"].test(run_conf={"auto_promote": auto_promote})
    if responder:
        responder.join(timeout=30)
    assert not failures, failures
    return run


def _when_waiting(
    dag_id: str, act: Callable[[Any, Any], None], within_s: float = 600, since: Any = None
) -> None:
    """Wait until an approve task of ``dag_id`` started from now on waits for input, then
    ``act(ti, session)`` (another module may share the test DB: older runs are not ours)."""
    from airflow._shared.timezones import timezone
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select
    from sqlalchemy.orm import joinedload

    since = since or timezone.utcnow() - timedelta(seconds=5)
    give_up = time.monotonic() + within_s
    while time.monotonic() < give_up:
        with create_session() as session:
            ti = session.scalars(
                select(TaskInstance)
                .where(
                    TaskInstance.dag_id == dag_id,
                    TaskInstance.task_id == "approve",
                    TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
                    TaskInstance.start_date >= since,
                )
                .options(joinedload(TaskInstance.hitl_detail))
            ).first()
            if ti is not None:
                act(ti, session)
                return
        time.sleep(0.5)
    raise AssertionError(f"{dag_id}: approve never waited for input")


def _respond(choice: str, user: str, before: Callable[[], None] | None = None):
    """What the REST API does when ``user`` clicks ``choice`` in Required actions."""

    def act(ti: Any, session: Any) -> None:
        from airflow._shared.timezones import timezone
        from airflow.models.trigger import handle_event_submit
        from airflow.triggers.base import TriggerEvent

        if before:
            before()
        detail = ti.hitl_detail
        detail.responded_by = {"id": user, "name": user}
        detail.responded_at = timezone.utcnow()
        detail.chosen_options = [choice]
        detail.params_input = {}
        session.add(detail)
        handle_event_submit(
            TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session
        )

    return lambda: _when_waiting("prompt_release", act)


def _time_out(seen: list[dict[str, Any]]):
    """Nobody answers: note the page sent meanwhile, then let the scheduler's sweep apply the
    default once the deadline (moved into the past) has gone by."""

    def act(ti: Any, session: Any) -> None:
        import logging

        from airflow._shared.timezones import timezone
        from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

        seen.extend(a for a in alerts.read_alerts() if a["summary"].startswith("approval waiting"))
        seen.append({"deadline": ti.trigger_timeout})
        ti.trigger_timeout = timezone.utcnow() - timedelta(seconds=1)
        session.flush()
        sweeper = type("Sweeper", (), {"log": logging.getLogger("sweep")})()
        SchedulerJobRunner.check_awaiting_input_timeouts(sweeper, session=session)  # type: ignore[arg-type]

    return lambda: _when_waiting("prompt_release", act)


def _drifted_night() -> tuple[list[jobs.Evaluation], str, str]:
    """model_monitoring's decision path on a drifted night: reevaluate, choose, page."""
    decision = jobs.Decision(
        branch="drifted",
        reasons=["drift in brightness, items_per_photo"],
        reevaluate=[DIGITIZER],
        evidence=jobs.Evidence(
            slo_table="(every SLO met)", moved=["brightness"], drift_text="", drift_report=None
        ),
    )
    evaluated = jobs.reevaluate(decision)
    action = jobs.choose_action(evaluated)
    if action != "page":
        return evaluated, action, ""
    window = jobs.Window(start="2026-11-22T03:00:00+00:00", end="2026-11-23T03:00:00+00:00")
    return evaluated, action, jobs.page(decision, evaluated, window=window, run_id="night")["text"]


# --- the approval step, as wired -------------------------------------------------------------


def test_both_dags_promote_through_one_approval_that_pages_and_defaults_to_reject(env) -> None:
    from dresscode.registry.approval import APPROVAL_TIMEOUT, ApprovalWaiting, PromotionApproval

    for dag in (env["release"], env["monitoring"]):
        approve = dag.get_task("approve")
        assert isinstance(approve, PromotionApproval), dag.dag_id
        assert approve.defaults == ["Reject"] and approve.response_timeout == APPROVAL_TIMEOUT
        assert any(isinstance(n, ApprovalWaiting) for n in approve.notifiers)
        assert (approve.on_approve, approve.on_reject) == ("promote", "park")
        assert approve.downstream_task_ids == {"promote", "park"}
        assert dag.params["auto_promote"] is False  # a person decides unless told otherwise


# --- the story ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def released_v3(env):
    first = _release(env, auto_promote=True)
    assert first.state == "success", _states(first)
    _add_version(env["prompts"], 3)
    run = _release(env, auto_promote=True)
    assert run.state == "success", _states(run)
    assert registry.aliases(DIGITIZER) == {"candidate": 3, "production": 3, "previous": 2}
    return run


@pytest.fixture(scope="module")
def rolled_back(env, released_v3):
    run = env["rollback"].test(
        run_conf={"prompt": DIGITIZER, "target": "previous", "reason": ROLLBACK_REASON}
    )
    assert run.state == "success", _states(run)
    return run


def test_a_rollback_parks_the_version_it_replaces(rolled_back) -> None:
    assert registry.aliases(DIGITIZER) == {"production": 2, "previous": 3}  # no candidate
    block = _version(3).block
    assert block is not None
    assert (block.action, block.actor, block.reason) == ("rollback", "dag_test", ROLLBACK_REASON)
    assert block.at  # when
    done = rolled_back.get_task_instance("rollback").xcom_pull(task_ids="rollback")
    assert done["parked"] == block.describe()


def test_a_drifted_night_keeps_the_rollback_and_the_page_says_why(rolled_back) -> None:
    evaluated, action, page = _drifted_night()

    assert action == "page"
    assert registry.aliases(DIGITIZER)["production"] == 2
    [entry] = evaluated
    assert entry["candidate"] is None  # v3 is not even re-evaluated
    assert f"{DIGITIZER} v3 rolled back by dag_test" in page and ROLLBACK_REASON in page
    assert "blocked, never promoted automatically" in page


def test_even_a_better_score_does_not_promote_a_blocked_version(rolled_back) -> None:
    # The old road: candidate v3 re-scored above production v2. Governance still refuses.
    from airflow.sdk.exceptions import AirflowFailException

    def scored(version: int, f1: float) -> jobs.GateRun:
        return jobs.GateRun(
            version=version, passed=True, reasons=[], metrics={"f1": f1},
            mlflow_run_id="-", golden_hash="same",
        )  # fmt: skip

    evaluated = [
        jobs.Evaluation(
            name=DIGITIZER,
            because="drifted",
            production=scored(2, 0.96),
            candidate=scored(3, 0.99),
            parked=[],
        )
    ]
    with pytest.raises(AirflowFailException, match=r"v3 is not promoted: it is blocked"):
        jobs.promote(evaluated)
    with pytest.raises(registry.RegistryError, match=r"v3 is blocked and cannot be promoted"):
        registry.promote(DIGITIZER, 3, actor="someone", reason="try")
    with pytest.raises(registry.RegistryError, match=r"cannot be made candidate"):
        registry.set_candidate(DIGITIZER, 3)
    assert registry.aliases(DIGITIZER)["production"] == 2


def test_a_release_run_after_the_rollback_changes_nothing(env, rolled_back) -> None:
    before = registry.aliases(DIGITIZER)
    run = _release(env, auto_promote=True)
    assert run.state == "success", _states(run)
    assert _states(run)["evaluate"] == "skipped"
    assert registry.aliases(DIGITIZER) == before


def test_bad_rollbacks_are_refused_in_one_sentence(env, rolled_back) -> None:
    from dresscode.registry import tasks as release

    with pytest.raises(registry.RegistryError) as to_blocked:
        release.rollback(DIGITIZER, "3", actor="oncall", reason="undo the undo")
    assert str(to_blocked.value).startswith(
        f"{DIGITIZER} v3 is blocked and cannot be rolled back to"
    )
    with pytest.raises(registry.RegistryError) as to_production:
        release.rollback(DIGITIZER, "2", actor="oncall", reason="again")
    assert str(to_production.value) == f"{DIGITIZER} v2 is already production: nothing to rollback."
    # Through the DAG: the task fails and the alert's first line is the sentence.
    run = env["rollback"].test(
        run_conf={"prompt": DIGITIZER, "target": "previous", "reason": "previous is v3"}
    )
    assert run.state == "failed"
    alert = alerts.read_alerts()[-1]
    assert alert["dag_id"] == "prompt_rollback" and "v3 is blocked" in alert["summary"]
    assert registry.aliases(DIGITIZER)["production"] == 2


@pytest.fixture(scope="module")
def rejected_v4(env, rolled_back):
    _add_version(env["prompts"], 4)
    run = _release(env, auto_promote=False, answer=_respond("Reject", "bob"))
    assert run.state == "success", _states(run)
    return run


def test_a_rejected_approval_parks_the_candidate(rejected_v4) -> None:
    states = _states(rejected_v4)
    assert (states["approve"], states["promote"], states["park"]) == (
        "success",
        "skipped",
        "success",
    )
    assert "candidate" not in registry.aliases(DIGITIZER)
    block = _version(4).block
    assert block is not None and (block.action, block.actor) == ("rejected", "bob")
    assert "rejected in prompt_release" in block.reason


def test_a_drifted_night_does_not_promote_the_rejected_version(rejected_v4) -> None:
    _evaluated, action, page = _drifted_night()
    assert action == "page" and registry.aliases(DIGITIZER)["production"] == 2
    assert f"{DIGITIZER} v4 rejected by bob" in page


def test_an_unanswered_approval_pages_then_times_out_to_reject(env, rejected_v4) -> None:
    _add_version(env["prompts"], 5)
    seen: list[dict[str, Any]] = []
    run = _release(env, auto_promote=False, answer=_time_out(seen))

    assert run.state == "success", _states(run)
    pages, [deadline] = seen[:-1], seen[-1:]
    assert deadline["deadline"] is not None  # the response timeout was armed
    [page] = [p for p in pages if f"{DIGITIZER}@5" in p["details"]["proposal"]]
    assert page["kind"] == "page" and page["dag_id"] == "prompt_release"
    assert "the answer is Reject" in page["details"]["if nobody answers"]
    assert _states(run)["park"] == "success" and _states(run)["promote"] == "skipped"
    block = _version(5).block
    assert block is not None and block.actor.startswith("nobody (no answer within 12:00:00")
    assert "timed out" in block.reason
    assert registry.aliases(DIGITIZER)["production"] == 2


def test_an_approval_in_time_promotes_with_the_approver_as_actor(env, rejected_v4) -> None:
    _add_version(env["prompts"], 6)
    run = _release(env, auto_promote=False, answer=_respond("Approve", "carol"))

    assert run.state == "success", _states(run)
    assert registry.aliases(DIGITIZER)["production"] == 6
    promoted = json.loads(_version(6).tags[registry.PROMOTED_TAG])
    assert promoted["actor"] == "carol" and "approved by carol" in promoted["reason"]


def test_a_rollback_while_an_approval_waits_wins(env, rejected_v4) -> None:
    from dresscode.registry import tasks as release

    _add_version(env["prompts"], 7)

    def roll_back() -> None:
        release.rollback(DIGITIZER, "previous", actor="oncall", reason="v6 is slow")

    run = _release(env, auto_promote=False, answer=_respond("Approve", "dave", before=roll_back))

    assert run.state == "failed" and _states(run)["promote"] == "failed"
    assert registry.aliases(DIGITIZER)["production"] == 2  # the rollback stands
    alert = alerts.read_alerts()[-1]
    assert "production moved from v6 to v2 while the promotion waited" in alert["summary"]
