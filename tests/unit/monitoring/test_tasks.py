"""model_monitoring's pure decisions: which window it checks, which candidate beats production."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from dresscode.monitoring import tasks as jobs
from dresscode.monitoring.slos import SloCheck, Status

NIGHT = datetime(2026, 11, 23, 3, tzinfo=UTC)


def test_a_scheduled_run_checks_its_data_interval() -> None:
    window = jobs.current_window(NIGHT - timedelta(days=1), NIGHT, NIGHT)
    assert window == {"start": (NIGHT - timedelta(days=1)).isoformat(), "end": NIGHT.isoformat()}


def test_a_manual_run_checks_the_24_hours_before_it() -> None:
    # Manual runs have a zero-length data interval.
    window = jobs.current_window(NIGHT, NIGHT, NIGHT)
    assert window == {"start": (NIGHT - timedelta(hours=24)).isoformat(), "end": NIGHT.isoformat()}


def test_params_override_the_window_and_a_naive_timestamp_is_utc() -> None:
    window = jobs.current_window(
        NIGHT, NIGHT, NIGHT, start="2026-11-20T10:00:00", end="2026-11-20T12:00:00+00:00"
    )
    assert window == {"start": "2026-11-20T10:00:00+00:00", "end": "2026-11-20T12:00:00+00:00"}


def test_only_an_end_param_checks_the_24_hours_before_it() -> None:
    window = jobs.current_window(NIGHT - timedelta(days=1), NIGHT, NIGHT, end="2026-11-20T12:00Z")
    assert window["start"] == "2026-11-19T12:00:00+00:00"


def test_an_empty_or_malformed_window_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"window_start .* is not before window_end"):
        jobs.current_window(NIGHT, NIGHT, NIGHT, start="2026-11-21T00:00Z", end="2026-11-20T00:00Z")
    with pytest.raises(ValueError, match=r"Param window_start='yesterday' is not an ISO 8601"):
        jobs.current_window(NIGHT, NIGHT, NIGHT, start="yesterday")


def _eval(version: int, f1: float, passed: bool = True, golden: str = "g1") -> jobs.GateRun:
    reasons = [] if passed else ["item F1 below the floor"]
    return jobs.GateRun(
        version=version,
        passed=passed,
        reasons=reasons,
        metrics={"f1": f1},
        mlflow_run_id=f"run-{version}",
        golden_hash=golden,
    )


@pytest.mark.parametrize(
    ("candidate", "promoted"),
    [
        (_eval(3, 0.97), True),  # passes and scores higher
        (_eval(3, 0.95), False),  # a tie does not move production
        (_eval(3, 0.99, passed=False), False),  # a failed gate never promotes
        (None, False),  # candidate is production: nothing to compare
        (_eval(3, 0.99, golden="g2"), False),  # scored on another golden set: not comparable
    ],
)
def test_only_a_passing_candidate_that_beats_production_is_promoted(
    candidate: jobs.GateRun | None, promoted: bool
) -> None:
    results = [
        jobs.Evaluation(
            name=jobs.DIGITIZER,
            because="drifted",
            production=_eval(2, 0.95),
            candidate=candidate,
            parked=[],
        )
    ]
    chosen = jobs.better_candidates(results)
    assert [c["version"] for c in chosen] == ([3] if promoted else [])
    assert jobs.choose_action(results, auto_promote=True) == ("promote" if promoted else "page")
    # Without auto_promote (the default) a better candidate waits for a person's approval.
    assert jobs.choose_action(results) == ("approve" if promoted else "page")


def _measured(status: Status) -> jobs.Measured:
    check = SloCheck("hallucination_rate_max", "hallucination_rate", 0.0, "max", 0.1, 9, status)
    return jobs.Measured(checks=[check.to_dict()], table="(table)")


def _drift(drifted: bool) -> jobs.DriftVerdict:
    moved = ["brightness"] if drifted else []
    return jobs.DriftVerdict(
        drifted=drifted, moved=moved, summary={}, text="", report="r.html", mlflow_run_id=None
    )  # type: ignore[typeddict-item]


def test_the_stylist_is_reevaluated_only_when_its_slos_broke() -> None:
    assert jobs.prompts_to_reevaluate(_measured("ok")) == [jobs.DIGITIZER]
    assert jobs.prompts_to_reevaluate(_measured("breach")) == [jobs.DIGITIZER, jobs.STYLIST]


@pytest.mark.parametrize(
    ("status", "drifted", "branch", "reevaluate"),
    [
        ("ok", False, "healthy", []),
        ("watch", False, "healthy", []),
        ("breach", False, "quality_degraded", ["wardrobe-digitizer", "outfit-stylist"]),
        ("ok", True, "drifted", ["wardrobe-digitizer"]),
    ],
)
def test_the_decision_names_its_branch_what_to_reevaluate_and_its_evidence(
    status: Status, drifted: bool, branch: str, reevaluate: list[str]
) -> None:
    decision = jobs.decide(_measured(status), _drift(drifted))

    assert (decision["branch"], decision["reevaluate"]) == (branch, reevaluate)
    assert decision["evidence"]["moved"] == (["brightness"] if drifted else [])
    assert decision["evidence"]["slo_table"] == "(table)"
    assert json.loads(json.dumps(decision)) == decision  # a plain JSON dict, for XCom


def test_reevaluate_takes_the_decision_of_the_branch_that_ran() -> None:
    decision = jobs.decide(_measured("ok"), _drift(True))

    assert jobs.taken(None, decision) is decision
    with pytest.raises(ValueError, match="exactly one branch"):
        jobs.taken(None, None)


def test_the_recorded_action_follows_what_ran() -> None:
    paged = jobs.Paged(summary="drifted", text="...")

    assert jobs.outcome_of(["promoted: wardrobe-digitizer v2"], None)["action"] == "promoted"
    assert jobs.outcome_of(None, paged) == {"action": "paged", "detail": paged}
    assert jobs.outcome_of(None, None) == {"action": "none", "detail": None}
    parked = ["wardrobe-digitizer v3 rejected by bob at ...: promotion rejected"]
    assert jobs.outcome_of(None, None, parked) == {"action": "rejected", "detail": parked}
