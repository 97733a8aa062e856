"""The dresscode_llm connection type in Airflow's own API server: its form and its Test button.

Airflow's real api-server app runs in-process (``create_app``, the simple auth manager in
all-admins mode, ``[core] test_connection = Enabled``) on the test metadata DB; the connection
under test points at a simulator on loopback. This is what the UI's connection page calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from dresscode.sim.testing import free_port, running_simulator

pytestmark = pytest.mark.integration

MODEL = "google/gemma-4-26B-A4B-it"
KEY = "right-key-s3cret"
CONN_ID = "dresscode_llm_ui"


@pytest.fixture(scope="module")
def sim() -> Iterator[str]:
    with running_simulator(
        fixed_latency_ms=1, served_model_name=[f"{MODEL}=perfect"], api_key=KEY
    ) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def api(airflow_db: Path) -> Iterator[object]:
    """Airflow's api-server app (core API + UI API), every caller an admin; a TestClient."""
    from airflow.api_fastapi import app as api_app
    from fastapi.testclient import TestClient

    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW__CORE__TEST_CONNECTION", "Enabled")
    mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    mp.delenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", raising=False)
    api_app.purge_cached_app()
    try:
        yield TestClient(api_app.create_app(apps="core"))
    finally:
        api_app.purge_cached_app()
        mp.undo()


def press_test(api, **conn: object) -> dict:
    """POST /api/v2/connections/test, as the form's Test button does; ``{status, message}``."""
    body = {"connection_id": CONN_ID, "conn_type": "dresscode_llm", **conn}
    response = api.post("/api/v2/connections/test", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_test_button_passes_for_a_served_model(api, sim) -> None:
    answer = press_test(
        api, host=sim, password=KEY, extra=json.dumps({"model": MODEL, "timeout": 30})
    )
    assert answer["status"] is True, answer["message"]
    assert answer["message"].startswith(f"This connection: {sim} serves '{MODEL}'")


def test_the_test_button_fails_on_a_wrong_key_with_its_sentence(api, sim) -> None:
    answer = press_test(api, host=sim, password="wrong-k3y", extra=json.dumps({"model": MODEL}))
    assert answer["status"] is False
    assert answer["message"].endswith(
        f"{sim} rejected the API key (HTTP 401); set the password to the endpoint's API key."
    )
    assert "wrong-k3y" not in answer["message"]


def test_the_test_button_fails_on_a_dead_port_with_its_sentence(api) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    answer = press_test(api, host=url, password=KEY, extra=json.dumps({"model": MODEL}))
    assert answer["status"] is False
    assert f"cannot reach {url} (" in answer["message"]
    assert answer["message"].endswith("check the host and port and that the server is running.")


def test_the_test_button_explains_a_base_url_without_scheme(api) -> None:
    answer = press_test(api, host="localhost:8000/v1", extra=json.dumps({"model": MODEL}))
    assert answer["status"] is False
    # Airflow tests a copy under a random id; the sentence does not show it to the user.
    assert answer["message"].startswith("This connection: host must be the base URL such as")


def test_the_connection_form_lists_the_type_with_its_labels(api) -> None:
    response = api.get("/ui/connections/hook_meta")
    assert response.status_code == 200, response.text
    (meta,) = [m for m in response.json() if m["connection_type"] == "dresscode_llm"]
    assert meta["hook_name"] == "Dresscode model endpoint (OpenAI-compatible)"
    assert meta["hook_class_name"] == "dresscode.llm.hook.DresscodeLLMHook"
    standard = meta["standard_fields"]
    assert standard["host"] == {
        "hidden": False,
        "title": "Base URL",
        "placeholder": "http://localhost:8000/v1",
    }
    assert standard["password"]["title"] == "API key"
    assert all(standard[name]["hidden"] for name in ("url_schema", "port", "login"))
    extra = meta["extra_fields"]
    assert {name: field["schema"]["title"] for name, field in extra.items()} == {
        "model": "Model",
        "timeout": "Timeout (s)",
        "max_concurrency": "Max concurrency",
    }
    assert extra["model"]["schema"]["examples"] == [MODEL]
    assert all(field["value"] is None for field in extra.values())  # no default pinned


def test_the_weather_type_is_listed_beside_it(api) -> None:
    response = api.get("/ui/connections/hook_meta")
    types = {m["connection_type"]: m for m in response.json()}
    assert types["dresscode_weather"]["standard_fields"]["host"]["title"] == "Base URL"
    assert set(types["dresscode_weather"]["extra_fields"]) == {"geocoding_url", "timeout"}
