"""The MLflow UI of the local stack in a real headless Chromium: what a data engineer opens
MLflow for — both prompts with their aliases, the latest evaluation with per-example scores,
and the trace of an outfit suggestion with its tool-call spans.

Opt-in (it needs the stack up and Debian's ``chromium`` + ``chromium-driver``):

    make up
    DRESSCODE_BROWSER_TEST=1 .venv/bin/python -m pytest tests/integration/test_mlflow_browser.py

``DRESSCODE_MLFLOW_BROWSER_URL`` points it at another MLflow (default: the stack's,
``http://127.0.0.1:$DRESSCODE_MLFLOW_PORT``). What the pages show comes from the pipeline's
runs against the simulator, not from Gemma.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

BASE = os.environ.get(
    "DRESSCODE_MLFLOW_BROWSER_URL",
    f"http://127.0.0.1:{os.environ.get('DRESSCODE_MLFLOW_PORT', '5000')}",
)
PROMPTS = ("wardrobe-digitizer", "outfit-stylist")

pytestmark = pytest.mark.skipif(
    os.environ.get("DRESSCODE_BROWSER_TEST") != "1",
    reason="opt-in: start the stack with `make up`, then set DRESSCODE_BROWSER_TEST=1",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_bin, "install Debian's chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1600,2000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_bin), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def client() -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=BASE, registry_uri=BASE)


def _page(browser: Any, path: str, *expected: str) -> str:
    """The page's visible text once every ``expected`` string shows (the UI renders late)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{BASE}/{path}")

    def shown(driver: Any) -> str | bool:
        text = driver.find_element(By.TAG_NAME, "body").text
        return text if all(e in text for e in expected) else False

    try:
        return WebDriverWait(browser, 60).until(shown)
    except Exception:  # say what the page did show
        text = browser.find_element(By.TAG_NAME, "body").text
        missing = [e for e in expected if e not in text]
        raise AssertionError(f"{path}: {missing} not on the page:\n{text[:2000]}") from None


def test_both_prompts_show_their_aliases(browser: Any) -> None:
    for name in PROMPTS:
        text = _page(browser, f"#/prompts/{name}", name, "@ production")
        assert "Version" in text


def test_the_latest_evaluation_shows_its_dataset_and_per_example_scores(
    browser: Any, client: Any
) -> None:
    experiment = client.get_experiment_by_name("dresscode-evaluations")
    [run] = client.search_runs(
        [experiment.experiment_id], order_by=["start_time DESC"], max_results=1
    )
    tags = run.data.tags
    scorer = "hallucinated_items" if tags["dresscode.prompt"] == "outfit-stylist" else "item_f1"
    _page(
        browser,
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
        f"#/experiments/{experiment.experiment_id}/traces?traceId={example.info.trace_id}",
        scorer,
        str(example_id),
    )


def test_an_outfit_suggestion_is_one_trace_with_its_tool_call_spans(
    browser: Any, client: Any
) -> None:
    experiment = client.get_experiment_by_name("dresscode-traces")
    assert experiment is not None, "no trace was sent: is DRESSCODE_TRACE_SAMPLE_RATE 0?"
    traces = client.search_traces(locations=[experiment.experiment_id], max_results=200)
    suggestion = next(t for t in traces if t.data.spans[0].name == "outfit_suggestion")
    text = _page(
        browser,
        f"#/experiments/{experiment.experiment_id}/traces?traceId={suggestion.info.trace_id}",
        "outfit_suggestion",
        "turn 1",
        "get_weather",
    )
    assert "outfit-stylist@" in text
