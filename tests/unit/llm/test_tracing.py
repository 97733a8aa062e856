"""Model calls as MLflow traces: sampled, a suggestion as one trace with its turns and tool
calls, no content or bytes, and MLflow down never fails anything."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

from dresscode.core import config
from dresscode.llm import blueprints, tracing
from dresscode.llm.client import LLMClient
from dresscode.local import leaks
from dresscode.outfits import stylist as outfits
from dresscode.registry.evaluation import stylist as stylist_eval
from dresscode.sim.testing import free_port, running_simulator


@pytest.fixture(autouse=True)
def _empty_buffer() -> None:
    tracing._take()


def _suggest(url: str, n: int = 2) -> list[dict]:
    blueprint = dataclasses.replace(blueprints.resolve("outfit-stylist@2"), model="perfect")
    scenarios = [s for s in stylist_eval.load_scenarios() if s.weather][:n]

    async def run() -> list[dict]:
        async with LLMClient(url, model="perfect") as client:
            done = [
                await outfits.suggest(client, blueprint, s.context(), s.weather_lookup, max_turns=4)
                for s in scenarios
            ]
        return [r for _, records in done for r in records]

    return asyncio.run(run())


def test_the_sample_is_deterministic_and_keeps_a_suggestion_whole() -> None:
    keys = [f"req-{i}" for i in range(2000)]
    share = sum(tracing.sampled(k, 0.1) for k in keys) / len(keys)
    assert 0.07 < share < 0.13
    assert [tracing.sampled(k, 0.1) for k in keys] == [tracing.sampled(k, 0.1) for k in keys]
    assert not any(tracing.sampled(k, 0.0) for k in keys)
    turns = [
        {"request_id": f"r{i}", "purpose": "outfit", "user_id": "u1", "ts": "2026-03-02T05:00:00"}
        for i in range(4)
    ]
    for turn in turns:
        tracing.note(turn, rate=0.5)
    kept, _ = tracing._take()
    assert len(kept) in (0, 4)  # all turns of the user's suggestion, or none


def test_a_suggestion_is_one_trace_with_a_span_per_turn_and_its_tool_call(
    mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.setenv("DRESSCODE_TRACE_SAMPLE_RATE", "1")
    config.get_settings.cache_clear()
    with running_simulator(served_model_name=["perfect=perfect"], fixed_latency_ms=5) as url:
        records = _suggest(url)

    flushed = tracing.flush()

    assert flushed == tracing.Flushed(traces=2, dropped=0)
    experiment = mlflow.get_experiment_by_name(tracing.EXPERIMENT)
    [trace, *_] = mlflow.search_traces(locations=[experiment.experiment_id], return_type="list")
    names = [s.name for s in trace.data.spans]
    assert names[0] == "outfit_suggestion" and "turn 1" in names and "get_weather" in names
    first_turn = next(s for s in trace.data.spans if s.name == "turn 1")
    attrs = first_turn.attributes
    assert attrs["dresscode.attempts"] == 1 and attrs["dresscode.prompt_tokens"] > 0
    assert "dresscode.ttft_ms" in attrs and attrs["dresscode.tool_calls"] == 1
    assert {r["request_id"] for r in records} >= {attrs["dresscode.request_id"]}
    # Nothing a user wrote or photographed, and no secret, is in a trace (the leak scan).
    assert "wardrobe" not in trace.to_json()
    scanned, found = leaks.scan_traces(mlflow_uri, {"sk-very-secret-key-123": "LLM key"})
    assert scanned == 2 and found == []


def test_mlflow_down_drops_the_traces_with_a_count_and_never_raises(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    config.get_settings.cache_clear()
    for i in range(3):
        tracing.note(
            {
                "request_id": f"r{i}",
                "purpose": "digitize",
                "ts": "2026-03-02T05:00:00",
                "latency_ms": 10.0,
            },
            rate=1.0,
        )

    flushed = tracing.flush()

    assert flushed == tracing.Flushed(traces=0, dropped=3)
    assert "traces: 3 trace(s) of 3 call(s) dropped, MLflow failed" in caplog.text


def test_a_trace_never_carries_fields_outside_the_whitelist() -> None:
    tracing.note(
        {
            "request_id": "r",
            "purpose": "digitize",
            "ts": "2026-03-02T05:00:00",
            "messages": "data:image/jpeg;base64,/9j/4AAQ",
            "api_key": "sk-x",
        },
        rate=1.0,
    )
    [kept], _ = tracing._take()
    assert set(kept) == {"request_id", "purpose", "ts"}
    assert json.dumps(kept).find("base64") == -1


def test_a_trace_longer_than_the_limit_keeps_its_first_spans_and_says_how_many_it_cut(
    mlflow_uri: str,
) -> None:
    import mlflow

    turns = tracing.MAX_SPANS + 10
    for turn in range(1, turns + 1):
        tracing.note(
            {"request_id": f"r{turn}", "purpose": "outfit", "user_id": "loop", "turn": turn,
             "ts": f"2026-03-02T05:{turn // 60:02d}:{turn % 60:02d}", "latency_ms": 100.0,
             "prompt_tokens": 900, "completion_tokens": 10, "tool_calls": 1},
            rate=1.0,
        )  # fmt: skip

    assert tracing.flush() == tracing.Flushed(traces=1, dropped=0)
    experiment = mlflow.get_experiment_by_name(tracing.EXPERIMENT)
    [trace] = mlflow.search_traces(locations=[experiment.experiment_id], return_type="list")
    root = trace.data.spans[0]
    assert root.attributes["dresscode.calls"] == turns
    assert root.attributes["dresscode.spans_cut"] == 10
    assert sum(s.name.startswith("turn ") for s in trace.data.spans) == tracing.MAX_SPANS
    assert root.attributes["dresscode.tokens"] == turns * 910  # the cut turns still count
