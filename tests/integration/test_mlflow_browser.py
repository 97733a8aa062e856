"""The MLflow UI in a real headless Chromium: what a data engineer opens MLflow for — both
prompts with their aliases, the latest evaluation with per-example scores, and the trace of an
outfit suggestion with its tool-call spans.

The module starts what it shows, as the stack does (``make up``'s ``mlflow`` part, alone): an
MLflow server over a fresh home's SQLite store on a free loopback port, and the project's vLLM
simulator as the ``dresscode_llm`` endpoint. Through the pipeline's own code it then registers
both prompts and promotes their newest git version to ``production``, records an evaluation of
the production stylist on a few golden scenarios (code scorers and LLM judges per example), and
runs the stylist's tool-calling loop for one user, as ``outfit_pregen``'s batches do, with every
call sampled, then flushes the trace to ``dresscode-traces``. What the pages show comes from
the simulator, not from Gemma.

Runs in CI: ``scripts/install_browser.sh`` installs Debian's chromium and chromium-driver.
Without them the tests fail under ``CI`` and are skipped, with a warning, elsewhere.

Against another MLflow (a ``make up`` stack, after its demo runs) the module starts and records
nothing and only looks::

    DRESSCODE_MLFLOW_BROWSER_URL=http://127.0.0.1:5000 \\
        .venv/bin/python -m pytest tests/integration/test_mlflow_browser.py
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dresscode.core import config

PROMPTS = ("wardrobe-digitizer", "outfit-stylist")
STYLIST = "outfit-stylist"
MODEL = "google/gemma-4-26B-A4B-it"
SCENARIOS = 4  # golden scenarios evaluated: enough for per-example scores, quick
OVERRIDE = os.environ.get("DRESSCODE_MLFLOW_BROWSER_URL")
# What tests/conftest.py's dresscode_home clears: nothing of the caller's environment leaks in.
HOME_KNOBS = (
    "DRESSCODE_LAKE_URI",
    "DRESSCODE_LANDING_URI",
    "MLFLOW_TRACKING_URI",
    "DRESSCODE_ALERTS_FILE",
)


# --- what the UI shows -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_ui(tmp_path_factory: pytest.TempPathFactory, headless_chrome: Any) -> Iterator[str]:
    """The MLflow server's URL, once it holds the prompts, an evaluation and a trace (asked
    for after the browser: without one, nothing is started)."""
    if OVERRIDE:
        yield OVERRIDE.rstrip("/")
        return
    from dresscode.local import stack
    from dresscode.sim.testing import free_port, running_simulator

    began = time.monotonic()
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("DRESSCODE_HOME", str(tmp_path_factory.mktemp("mlflow-ui") / "home"))
        for knob in HOME_KNOBS:
            mp.delenv(knob, raising=False)
        mp.setenv("DRESSCODE_MLFLOW_PORT", str(free_port()))
        config.get_settings.cache_clear()
        ports = stack.Ports.from_env()
        url = stack.mlflow_url(ports)
        assert url, "the home's MLflow store is not local SQLite"
        stack.start_part(stack.mlflow_part(ports), stack.airflow_env(ports))
        stack.wait_for(
            "the MLflow server",
            lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200,
            stack.MLFLOW_START_TIMEOUT_S,
            "mlflow",
        )
        started = time.monotonic() - began
        mp.setenv("MLFLOW_TRACKING_URI", url)
        # As the stack's tasks: two scoring threads, the server's store is one SQLite file.
        mp.setenv("MLFLOW_GENAI_EVAL_MAX_WORKERS", "2")
        config.get_settings.cache_clear()
        with running_simulator(served_model_name=[f"{MODEL}=perfect"], fixed_latency_ms=5) as sim:
            conn = {"conn_type": "http", "host": sim, "extra": {"model": MODEL}}
            mp.setenv("AIRFLOW_CONN_DRESSCODE_LLM", json.dumps(conn))
            config.get_settings.cache_clear()
            _record(mp)
        print(f"MLflow up in {started:.1f}s, recorded by {time.monotonic() - began:.1f}s")
        yield url
    finally:
        pid = stack.recorded_pid("mlflow")  # read under this module's home
        if pid:
            stack.stop_part("mlflow", pid)
        import mlflow

        mlflow.set_tracking_uri(None)  # process-global: leave no stopped server behind
        mp.undo()
        config.get_settings.cache_clear()


def _record(mp: pytest.MonkeyPatch) -> None:
    """Prompts promoted, the stylist evaluated, one outfit suggestion traced: the pipeline's
    own functions, against the simulator."""
    from dresscode.llm import blueprints, tracing
    from dresscode.registry import prompt_registry as registry
    from dresscode.registry.evaluation import runs
    from dresscode.registry.evaluation import stylist as stylist_eval

    for name in PROMPTS:
        registry.sync(name)
        newest = blueprints.versions_in_git(name)[-1].version
        registry.promote(name, newest, actor="test", reason="the MLflow UI browser test")

    scenarios = stylist_eval.load_scenarios()
    mp.setenv("DRESSCODE_TRACE_SAMPLE_RATE", "0")  # the evaluation's calls are not production's
    config.get_settings.cache_clear()
    evaluation = runs.evaluate_prompt(f"{STYLIST}@production", scenarios=scenarios[:SCENARIOS])
    assert evaluation.examples == SCENARIOS

    mp.setenv("DRESSCODE_TRACE_SAMPLE_RATE", "1")
    config.get_settings.cache_clear()
    needs_weather = next(
        s
        for s in scenarios
        if s.expectations.expect_tool_call and s.expectations.status == "ok" and s.weather
    )
    suggestion = _suggest(needs_weather)
    assert suggestion.ok and suggestion.tool_calls, suggestion
    assert tracing.flush() == tracing.Flushed(traces=1, dropped=0)


def _suggest(scenario: Any) -> Any:
    """One user's outfit suggestion as ``outfits.tasks.run_batch`` makes it: the registry's
    production stylist, the connection's client, the tool-calling loop (the scenario's weather
    answers ``get_weather``, where a batch asks the online features)."""
    from dresscode.llm.hook import DresscodeLLMHook
    from dresscode.outfits import stylist as outfits
    from dresscode.outfits import tasks
    from dresscode.registry import prompt_registry as registry

    settings = config.get_settings()
    blueprint = registry.blueprint_for(tasks.resolve_prompt())

    async def run() -> list[tuple[Any, list[dict[str, Any]]]]:
        async with DresscodeLLMHook(settings=settings).get_client() as client:
            return await outfits.suggest_many(
                client,
                blueprint,
                [scenario.context()],
                scenario.weather_lookup,
                max_turns=settings.outfit_max_turns,
            )

    [(suggestion, _records)] = asyncio.run(run())
    return suggestion


@pytest.fixture(scope="module")
def browser(
    mlflow_ui: str, headless_chrome: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    driver = headless_chrome(profile, "--window-size=1600,2000")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def client(mlflow_ui: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_ui, registry_uri=mlflow_ui)


def _page(browser: Any, base: str, path: str, *expected: str) -> str:
    """The page's visible text once every ``expected`` string shows (the UI renders late)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{base}/{path}")

    def shown(driver: Any) -> str | bool:
        text = driver.find_element(By.TAG_NAME, "body").text
        return text if all(e in text for e in expected) else False

    try:
        return WebDriverWait(browser, 60).until(shown)
    except Exception:  # say what the page did show
        text = browser.find_element(By.TAG_NAME, "body").text
        missing = [e for e in expected if e not in text]
        raise AssertionError(f"{path}: {missing} not on the page:\n{text[:2000]}") from None


# --- the tests -------------------------------------------------------------------------------


def test_both_prompts_show_their_aliases(browser: Any, mlflow_ui: str) -> None:
    for name in PROMPTS:
        text = _page(browser, mlflow_ui, f"#/prompts/{name}", name, "@ production")
        assert "Version" in text


def test_the_latest_evaluation_shows_its_dataset_and_per_example_scores(
    browser: Any, mlflow_ui: str, client: Any
) -> None:
    experiment = client.get_experiment_by_name("dresscode-evaluations")
    [run] = client.search_runs(
        [experiment.experiment_id], order_by=["start_time DESC"], max_results=1
    )
    tags = run.data.tags
    scorer = "hallucinated_items" if tags["dresscode.prompt"] == STYLIST else "item_f1"
    _page(
        browser,
        mlflow_ui,
        f"#/experiments/{experiment.experiment_id}/evaluation-runs",
        run.info.run_name,
        tags["dresscode.golden_dataset"],
        f"{scorer}/mean",
    )
    traces = client.search_traces(locations=[experiment.experiment_id], run_id=run.info.run_id)
    example = traces[0]
    example_id = json.loads(example.data.request)["example_id"]
    _page(
        browser,
        mlflow_ui,
        f"#/experiments/{experiment.experiment_id}/traces?traceId={example.info.trace_id}",
        scorer,
        str(example_id),
    )


def test_an_outfit_suggestion_is_one_trace_with_its_tool_call_spans(
    browser: Any, mlflow_ui: str, client: Any
) -> None:
    experiment = client.get_experiment_by_name("dresscode-traces")
    assert experiment is not None, "no trace was sent: is DRESSCODE_TRACE_SAMPLE_RATE 0?"
    traces = client.search_traces(locations=[experiment.experiment_id], max_results=200)
    suggestion = next(t for t in traces if t.data.spans[0].name == "outfit_suggestion")
    text = _page(
        browser,
        mlflow_ui,
        f"#/experiments/{experiment.experiment_id}/traces?traceId={suggestion.info.trace_id}",
        "outfit_suggestion",
        "turn 1",
        "get_weather",
    )
    assert "outfit-stylist@" in text
