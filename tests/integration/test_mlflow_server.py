"""The local stack's MLflow server (``make up``'s ``mlflow`` part), started alone as the stack
starts it: SQLite store and artifacts under the home, on loopback. The registry, the
evaluations and the traces go through it; its UI answers; it going away mid-run drops traces
with a count and fails nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dresscode.core import config
from dresscode.llm import tracing
from dresscode.local import stack
from dresscode.registry import prompt_registry as registry
from dresscode.sim.testing import free_port


@pytest.fixture
def server(dresscode_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DRESSCODE_MLFLOW_PORT", str(free_port()))
    config.get_settings.cache_clear()
    ports = stack.Ports.from_env()
    url = stack.mlflow_url(ports)
    assert url == f"http://127.0.0.1:{ports.mlflow}"  # the default store is local SQLite
    part = stack.mlflow_part(ports)
    env = stack.airflow_env(ports)  # what the tasks get: the server's URL as tracking URI
    assert env["MLFLOW_TRACKING_URI"] == url
    pid = stack.start_part(part, env)
    try:
        stack.wait_for(
            "the MLflow server",
            lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200,
            stack.MLFLOW_START_TIMEOUT_S,
            "mlflow",
        )
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        config.get_settings.cache_clear()
        yield url
    finally:
        if stack.recorded_pid("mlflow"):
            stack.stop_part("mlflow", pid)


def test_the_registry_and_the_ui_are_served_on_loopback(server: str) -> None:
    from mlflow import MlflowClient

    for name in ("wardrobe-digitizer", "outfit-stylist"):
        registry.sync(name)
        registry.set_candidate(name, 2)
    client = MlflowClient(tracking_uri=server, registry_uri=server)
    names = {p.name for p in client.search_prompts()}
    assert {"wardrobe-digitizer", "outfit-stylist"} <= names
    assert registry.aliases("outfit-stylist")["candidate"] == 2
    page = httpx.get(f"{server}/", timeout=10)
    assert page.status_code == 200 and "<html" in page.text.lower()  # the UI's page
    assert stack.mlflow_part(stack.Ports.from_env()).argv[2:4] == ["--host", "127.0.0.1"]


def _suggestion(user: str) -> list[dict]:
    return [
        {"request_id": f"{user}-{turn}", "purpose": "outfit", "user_id": user, "turn": turn,
         "ts": f"2026-03-02T05:00:0{turn}", "latency_ms": 400.0, "ttft_ms": 120.0,
         "prompt_tokens": 900, "completion_tokens": 40, "attempts": 1,
         "tool_calls": 1 if turn == 1 else 0, "prompt_name": "outfit-stylist",
         "prompt_version": "2"}
        for turn in (1, 2)
    ]  # fmt: skip


def test_traces_go_through_the_server_and_its_absence_only_drops_them(server: str) -> None:
    import mlflow

    for record in _suggestion("u1"):
        tracing.note(record, rate=1.0)
    assert tracing.flush() == tracing.Flushed(traces=1, dropped=0)
    experiment = mlflow.get_experiment_by_name(tracing.EXPERIMENT)
    [trace] = mlflow.search_traces(locations=[experiment.experiment_id], return_type="list")
    assert [s.name for s in trace.data.spans][:2] == ["outfit_suggestion", "turn 1"]

    stack.stop_part("mlflow", stack.recorded_pid("mlflow") or 0)  # down mid-run
    for record in _suggestion("u2"):
        tracing.note(record, rate=1.0)
    assert tracing.flush() == tracing.Flushed(traces=0, dropped=2)


def test_a_page_links_the_runs_prompt_versions_and_heaviest_trace_it_is_about(
    server: str,
) -> None:
    import mlflow

    from dresscode.monitoring import links
    from dresscode.ui import cost

    registry.sync("outfit-stylist")
    heavy = [{**r, "prompt_tokens": 9000} for r in _suggestion("heavy")]
    later = [{**r, "prompt_tokens": 50_000, "ts": "2026-03-05T05:00:01"} for r in _suggestion("x")]
    for record in [*_suggestion("light"), *heavy, *later]:
        tracing.note(record, rate=1.0)
    assert tracing.flush().traces == 3
    experiment = mlflow.get_experiment_by_name(tracing.EXPERIMENT)
    traces = mlflow.search_traces(locations=[experiment.experiment_id], return_type="list")
    heavy_id = next(t.info.trace_id for t in traces if '"heavy"' in t.data.request)
    mlflow.set_experiment("dresscode-monitoring")
    with mlflow.start_run() as drift, mlflow.start_run(nested=True) as evaluation:
        pass
    decision = {"branch": "quality_degraded", "reasons": [],
                "reevaluate": ["wardrobe-digitizer", "outfit-stylist"],
                "evidence": {"slo_table": "", "moved": [], "drift_text": "",
                             "drift_report": None, "drift_run": drift.info.run_id}}  # fmt: skip
    gate = {"version": 2, "passed": True, "reasons": [], "metrics": {},
            "mlflow_run_id": evaluation.info.run_id, "golden_hash": "h"}  # fmt: skip
    evaluated = [{"name": "outfit-stylist", "because": "quality_degraded", "production": gate,
                  "candidate": None, "parked": []}]  # fmt: skip
    window = {"start": "2026-03-02T00:00:00+00:00", "end": "2026-03-03T00:00:00+00:00"}

    text = links.page_details(decision, evaluated, window)["MLflow"]  # type: ignore[arg-type]

    v2 = next(i.mlflow_version for i in registry.versions("outfit-stylist") if i.git_version == 2)
    assert text.splitlines() == [
        f"drift report run: {server}/#/runs/{drift.info.run_id}",
        f"outfit-stylist@2 (production) evaluation: {server}/#/runs/{evaluation.info.run_id}",
        f"outfit-stylist@2 prompt: {server}/#/prompts/outfit-stylist?promptVersion={v2}",
        # The window's heaviest suggestion, not the heavier one of a later day.
        f"heaviest outfit suggestion trace (18,080 tokens): "
        f"{server}/#/experiments/{experiment.experiment_id}/traces?traceId={heavy_id}",
    ]
    ui = httpx.get(f"{server}/ajax-api/2.0/mlflow/runs/get", params={"run_id": drift.info.run_id})
    assert ui.status_code == 200  # the linked run is the server's

    # The Dresscode view's cost section links the same trace for a day over the token bound.
    trace_url = f"{server}/#/experiments/{experiment.experiment_id}/traces?traceId={heavy_id}"
    assert cost.heaviest_trace_url("2026-03-02") == trace_url
    assert cost.heaviest_trace_url("2026-03-04") is None  # no suggestion that day

    stack.stop_part("mlflow", stack.recorded_pid("mlflow") or 0)  # MLflow down at page time
    down = links.page_details(decision, evaluated, window)["MLflow"]  # type: ignore[arg-type]
    assert f"#/runs/{drift.info.run_id}" in down  # the ids still reach the on-call
    assert "heaviest outfit suggestion trace: not looked up, MLflow failed (" in down
    assert cost.heaviest_trace_url("2026-03-02") is None  # the view shows without its link
