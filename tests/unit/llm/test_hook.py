"""The dresscode_llm connection type: the Test button's sentences and the one client factory.

Against the vLLM simulator over real HTTP (a background thread on loopback); connections come
from ``AIRFLOW_CONN_*`` env vars, the way a deployment sets them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from dresscode.core import config
from dresscode.core.config import SettingsError
from dresscode.core.connections import LLM_CONNECTION_TYPE, LLMEndpoint
from dresscode.llm.hook import DresscodeLLMHook
from dresscode.orchestration.provider import get_provider_info
from dresscode.sim.testing import free_port, running_simulator

MODEL = "google/gemma-4-26B-A4B-it"
KEY = "right-key-s3cret"


@pytest.fixture(scope="module")
def sim() -> Iterator[str]:
    with running_simulator(
        fixed_latency_ms=1, served_model_name=[f"{MODEL}=perfect"], api_key=KEY
    ) as base_url:
        yield base_url


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    config.get_settings.cache_clear()
    yield
    config.get_settings.cache_clear()


def connect(
    monkeypatch: pytest.MonkeyPatch, conn_id: str = "dresscode_llm", **conn: object
) -> DresscodeLLMHook:
    """Define ``conn_id`` as an env-var connection of type dresscode_llm; a hook on it."""
    body = {"conn_type": "dresscode_llm", **conn}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(body))
    return DresscodeLLMHook(conn_id)


def good(sim: str, **extra: object) -> dict[str, object]:
    return {"host": sim, "password": KEY, "extra": {"model": MODEL, **extra}}


def test_a_good_connection_passes_and_says_what_it_serves(sim, monkeypatch) -> None:
    ok, message = connect(monkeypatch, **good(sim)).test_connection()
    assert ok, message
    assert message == (
        f"Connection 'dresscode_llm': {sim} serves '{MODEL}' (the simulator, not a real model)."
    )


def test_a_wrong_api_key_is_named_and_never_shown(sim, monkeypatch) -> None:
    hook = connect(monkeypatch, "llm_bad_key", **{**good(sim), "password": "wrong-k3y"})
    ok, message = hook.test_connection()
    assert not ok
    assert message == (
        f"Connection 'llm_bad_key': {sim} rejected the API key (HTTP 401); "
        "set the password to the endpoint's API key."
    )
    assert "wrong-k3y" not in message and KEY not in message


def test_a_missing_api_key_is_rejected_the_same_way(sim, monkeypatch) -> None:
    conn = good(sim)
    del conn["password"]
    ok, message = connect(monkeypatch, **conn).test_connection()
    assert not ok and "rejected the API key (HTTP 401)" in message


def test_nobody_listening_on_the_port_is_unreachable(monkeypatch) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    ok, message = connect(monkeypatch, host=url, extra={"model": MODEL}).test_connection()
    assert not ok
    assert message.startswith(f"Connection 'dresscode_llm': cannot reach {url} (")
    assert message.endswith("check the host and port and that the server is running.")


@pytest.mark.parametrize(
    ("host", "why"),
    [
        (None, "got nothing."),
        ("localhost:8000/v1", "got 'localhost:8000/v1' (no http:// or https:// in front)."),
        ("ftp://models.internal/v1", "(the scheme must be http or https)."),
        ("http:///v1", "got 'http:///v1' (no host name)."),
    ],
)
def test_a_malformed_base_url_is_explained_in_one_sentence(monkeypatch, host, why) -> None:
    conn = {"extra": {"model": MODEL}} | ({"host": host} if host else {})
    ok, message = connect(monkeypatch, **conn).test_connection()
    assert not ok
    assert message.startswith(
        "Connection 'dresscode_llm': host must be the base URL such as http://localhost:8000/v1, "
    )
    assert message.endswith(why)


def test_a_base_url_without_the_api_prefix_gets_a_404_hint(sim, monkeypatch) -> None:
    root = sim.removesuffix("/v1")
    ok, message = connect(monkeypatch, **{**good(sim), "host": root}).test_connection()
    assert not ok
    assert message == (
        f"Connection 'dresscode_llm': GET {root}/models answered 404; the host must be the "
        "base URL with its API prefix, such as http://localhost:8000/v1."
    )


def test_no_model_in_extra_is_explained(sim, monkeypatch) -> None:
    ok, message = connect(monkeypatch, host=sim, password=KEY, extra={}).test_connection()
    assert not ok
    assert message.startswith("Connection 'dresscode_llm': extra must name the served model")


def test_a_model_the_endpoint_does_not_serve_is_named_with_what_it_serves(sim, monkeypatch) -> None:
    conn = {**good(sim), "extra": {"model": "google/gemma-3-27b-it"}}
    ok, message = connect(monkeypatch, **conn).test_connection()
    assert not ok
    assert message == (
        f"Connection 'dresscode_llm': {sim} does not serve the model 'google/gemma-3-27b-it' "
        f"named in extra; it serves ['{MODEL}']."
    )


def test_an_undefined_connection_says_which_variable_to_set(monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_LLM", raising=False)
    ok, message = DresscodeLLMHook("no_such_llm").test_connection()
    assert (ok, message) == (
        False,
        "Connection 'no_such_llm' is not defined: set AIRFLOW_CONN_NO_SUCH_LLM "
        "(see README, 'Configuration').",
    )


async def test_get_client_talks_to_the_endpoint_with_the_connection_settings(
    sim, monkeypatch
) -> None:
    hook = connect(monkeypatch, **good(sim, timeout=30, max_concurrency=3))
    async with hook.get_client() as client:
        result = await client.chat([{"role": "user", "content": "Say hello as JSON."}])
    assert result.ok, result.error_message
    assert (client.model, client.max_concurrency, client.timeout_s) == (MODEL, 3, 30.0)


async def test_get_client_overrides_win_over_the_connection_and_settings(sim, monkeypatch) -> None:
    monkeypatch.setenv("DRESSCODE_LLM_MAX_ATTEMPTS", "7")
    hook = connect(monkeypatch, **good(sim))
    async with hook.get_client() as from_settings:
        assert from_settings.max_attempts == 7
    async with hook.get_client(max_attempts=1, model="other") as overridden:
        assert (overridden.max_attempts, overridden.model) == (1, "other")


async def test_client_for_an_endpoint_takes_retries_from_the_settings(sim, monkeypatch) -> None:
    monkeypatch.setenv("DRESSCODE_LLM_RETRY_BUDGET_S", "42")
    endpoint = LLMEndpoint(sim, KEY, MODEL, 5.0, 2)
    async with DresscodeLLMHook.client_for(endpoint) as client:
        result = await client.chat([{"role": "user", "content": "Say hello as JSON."}])
    assert result.ok, result.error_message
    assert (client.retry_budget_s, client.timeout_s, client.max_concurrency) == (42.0, 5.0, 2)


def test_get_client_on_a_malformed_connection_raises_the_same_sentence(monkeypatch) -> None:
    hook = connect(monkeypatch, host="localhost:8000", extra={"model": MODEL})
    with pytest.raises(SettingsError, match="no http:// or https:// in front"):
        hook.get_client()


def test_the_form_the_hook_reports_is_the_one_the_provider_registers() -> None:
    (declared,) = [
        c
        for c in get_provider_info()["connection-types"]
        if c["connection-type"] == DresscodeLLMHook.conn_type
    ]
    assert declared == LLM_CONNECTION_TYPE
    assert declared["hook-class-name"] == "dresscode.llm.hook.DresscodeLLMHook"
    assert declared["hook-name"] == DresscodeLLMHook.hook_name
    behaviour = DresscodeLLMHook.get_ui_field_behaviour()
    assert behaviour["relabeling"] == {"host": "Base URL", "password": "API key"}
    assert behaviour["placeholders"]["host"] == "http://localhost:8000/v1"
    assert {"schema", "port", "login"} <= set(behaviour["hidden_fields"])
    assert set(declared["conn-fields"]) == {"model", "timeout", "max_concurrency"}


def test_the_provider_info_is_valid_for_airflow() -> None:
    from airflow.providers_manager import _create_provider_info_schema_validator

    _create_provider_info_schema_validator().validate(get_provider_info())
    assert get_provider_info()["package-name"] == "dresscode-pipelines"


def test_importing_the_hook_loads_no_model_client_library() -> None:
    # ProvidersManager imports the hook in every Airflow component: it must stay light.
    code = (
        "import sys, dresscode.llm.hook, dresscode.orchestration.provider; "
        "print(sorted(m for m in ('openai', 'pandas', 'PIL', 'mlflow', 'feast') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
