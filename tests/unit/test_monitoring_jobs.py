"""model_monitoring's pure decisions: which window it checks, which candidate beats production."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dresscode.monitoring import tasks as jobs

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


def _eval(version: int, f1: float, passed: bool = True) -> dict:
    reasons = [] if passed else ["item F1 below the floor"]
    return {
        "version": version,
        "passed": passed,
        "reasons": reasons,
        "metrics": {"f1": f1},
        "mlflow_run_id": f"run-{version}",
    }


@pytest.mark.parametrize(
    ("candidate", "promoted"),
    [
        (_eval(3, 0.97), True),  # passes and scores higher
        (_eval(3, 0.95), False),  # a tie does not move production
        (_eval(3, 0.99, passed=False), False),  # a failed gate never promotes
        (None, False),  # candidate is production: nothing to compare
    ],
)
def test_only_a_passing_candidate_that_beats_production_is_promoted(
    candidate: dict | None, promoted: bool
) -> None:
    results = [{"name": jobs.DIGITIZER, "production": _eval(2, 0.95), "candidate": candidate}]
    chosen = jobs.better_candidates(results)
    assert [c["version"] for c in chosen] == ([3] if promoted else [])


def test_the_stylist_is_reevaluated_only_when_its_slos_broke() -> None:
    ok = {"checks": [{"slo": "hallucination_rate_max", "status": "ok"}]}
    broke = {"checks": [{"slo": "hallucination_rate_max", "status": "breach"}]}
    assert jobs.prompts_to_reevaluate(ok) == [jobs.DIGITIZER]
    assert jobs.prompts_to_reevaluate(broke) == [jobs.DIGITIZER, jobs.STYLIST]
