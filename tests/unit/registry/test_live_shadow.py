"""The live shadow gate: serve_shadow rows decide whether prompt_release may promote."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from dresscode.core import config, lake
from dresscode.llm import blueprints
from dresscode.registry import live_shadow
from dresscode.registry import prompt_registry as registry
from dresscode.registry import tasks as release

NAME = "outfit-stylist"


def shadow_row(n: int, *, version: int = 2, **changes: Any) -> dict[str, Any]:
    row = {
        "request_id": f"r{n:04d}",
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "user_id": f"u{n}",
        "prompt_name": NAME,
        "production_version": 1,
        "candidate_version": version,
        "production_model": "m",
        "candidate_model": "m",
        "agreement": 0.8,
        "candidate_ok": True,
        "candidate_skip_reason": None,
        "candidate_tool_calls": 1,
        "candidate_tool_call_ok": True,
        "candidate_hallucinated_items": 0,
        "production_hallucinated_items": 0,
        "candidate_latency_ms": 1000.0,
        "production_latency_ms": 1000.0,
        "candidate_prompt_tokens": 1700,
        "candidate_completion_tokens": 60,
        "production_completion_tokens": 60,
    }
    return row | changes


def write(rows: list[dict[str, Any]]) -> None:
    today = datetime.now(UTC).date()
    lake.write_parquet("serve_shadow", today, "serve-test", rows)


def test_no_shadowed_requests_do_not_hold_a_promotion_unless_samples_are_required(
    dresscode_home: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    verdict = live_shadow.verdict(NAME, 2)
    assert (
        verdict.passed is None and verdict.refusal() is None and "not applied" in verdict.summary()
    )
    monkeypatch.setenv("DRESSCODE_SHADOW_LIVE_GATE", json.dumps({"min_samples": 5}))
    config.get_settings.cache_clear()
    write([shadow_row(n) for n in range(3)])
    verdict = live_shadow.verdict(NAME, 2)
    assert verdict.passed is False and "3 of the 5 shadowed requests" in (verdict.refusal() or "")


def test_each_bound_broken_is_named_with_its_value(dresscode_home: Any) -> None:
    rows = [shadow_row(n) for n in range(20)]
    rows[0] |= {"candidate_hallucinated_items": 2}  # 5 % of the requests named unowned ids
    rows[1] |= {"candidate_ok": False, "candidate_tool_call_ok": False}
    for row in rows:
        row["agreement"] = 0.3
        row["candidate_latency_ms"] = 2500.0
    rows.append(shadow_row(99, version=3, agreement=0.0))  # another version: not counted
    write(rows)
    verdict = live_shadow.verdict(NAME, 2)
    assert verdict.samples == 20 and verdict.passed is False
    joined = "; ".join(verdict.reasons)
    assert "agreement 0.3 < 0.5 (agreement_min)" in joined
    assert "hallucination_rate 0.05 > 0.02" in joined
    assert "latency_ratio 2.5 > 1.5" in joined
    assert "error_rate" not in joined  # 1 in 20 is exactly the 5 % bound
    assert verdict.metrics["tool_call_success_rate"] == 0.95  # = the bound: passes


def test_prompt_release_does_not_promote_a_candidate_failing_the_live_shadow_and_says_why(
    mlflow_uri: str,
) -> None:
    v1 = blueprints.resolve(f"{NAME}@1")
    v2 = blueprints.resolve(f"{NAME}@2")
    registry.sync(NAME, [v1, v2])
    for version in (1, 2):
        registry.mark_gate(NAME, version, passed=True, metrics={})
    registry.promote(NAME, 1, actor="test", reason="baseline")
    registry.set_candidate(NAME, 2)
    candidate: release.Shadowed = {
        "name": NAME,
        "version": 2,
        "passed": True,
        "reasons": [],
        "metrics": {},
        "mlflow_run_id": "run-1",
        "golden_hash": "g",
        "shadow": None,
        "against": 1,
    }
    write([shadow_row(n, agreement=0.1) for n in range(10)])
    with pytest.raises(release.ReleaseFailed) as failed:
        release.promote([candidate], actor="prompt_release")
    assert str(failed.value).startswith(
        f"{NAME} v2 is not promoted: live shadow over 10 requests FAILED"
    )
    assert "agreement 0.1 < 0.5" in str(failed.value)
    assert registry.aliases(NAME)["production"] == 1
    # Better live evidence (the same requests answered well): promoted, the reason says so.
    write([shadow_row(n) for n in range(10)])
    done = release.promote([candidate], actor="prompt_release")
    assert registry.aliases(NAME)["production"] == 2
    assert "live shadow over 10 requests passed" in done[0]
