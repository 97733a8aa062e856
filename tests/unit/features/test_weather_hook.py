"""The ``dresscode_weather`` connection type: its form, its Test button, its clients.

The Test button is exercised against the Open-Meteo-shaped stub (``dresscode.sim.weather``)
on loopback, through an ``AIRFLOW_CONN_*`` connection as the UI would define it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest

from dresscode.core import connections
from dresscode.core.connections import WEATHER_CONN_ID, WeatherEndpoint
from dresscode.features.weather import RetryPolicy, fetch_weather
from dresscode.features.weather.hook import WeatherProviderHook
from dresscode.sim.testing import free_port, running_weather_stub


@pytest.fixture(scope="module")
def stub_url() -> Iterator[str]:
    with running_weather_stub(seed=7) as url:
        yield url


def _connect(monkeypatch: pytest.MonkeyPatch, host: str, conn_id: str = WEATHER_CONN_ID) -> None:
    conn = {"conn_type": "dresscode_weather", "host": host, "extra": {"timeout": 2}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def test_the_hook_declares_the_connection_type_the_project_uses() -> None:
    assert WeatherProviderHook.conn_type == "dresscode_weather"
    assert WeatherProviderHook.default_conn_name == WEATHER_CONN_ID == "weather_api"
    assert WeatherProviderHook.conn_name_attr == "conn_id"
    assert WeatherProviderHook().conn_id == WEATHER_CONN_ID


def test_the_hook_is_the_one_the_connection_type_declares() -> None:
    declared = next(
        c for c in connections.CONNECTION_TYPES if c["connection-type"] == "dresscode_weather"
    )
    hook = WeatherProviderHook
    assert declared["hook-class-name"] == f"{hook.__module__}.{hook.__qualname__}"
    assert declared["hook-name"] == hook.hook_name


def test_the_form_calls_host_the_base_url_and_hides_unused_fields() -> None:
    form = WeatherProviderHook.get_ui_field_behaviour()
    assert "base url" in form["relabeling"]["host"].lower()
    assert form["placeholders"]["host"] == connections.DEFAULT_WEATHER_URL
    assert {"schema", "login", "port"} <= set(form["hidden_fields"])
    assert "host" not in form["hidden_fields"] and "password" not in form["hidden_fields"]


def test_test_connection_succeeds_against_the_stub_with_one_forecast_request(
    stub_url: str, monkeypatch: pytest.MonkeyPatch, dresscode_home: Path
) -> None:
    control = stub_url.removesuffix("/v1")
    httpx.post(f"{control}/_reset").raise_for_status()
    _connect(monkeypatch, stub_url)

    ok, message = WeatherProviderHook().test_connection()

    assert ok, message
    assert message == f"Connection 'weather_api': {stub_url} answers forecasts."
    assert httpx.get(f"{control}/_stats").json()["forecast_total"] == 1


def test_test_connection_names_the_connection_when_the_provider_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, dresscode_home: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    _connect(monkeypatch, dead, conn_id="weather_backup")

    ok, message = WeatherProviderHook("weather_backup").test_connection()

    assert not ok
    assert "'weather_backup'" in message and "Could not reach the provider" in message
    assert message.count("\n") == 0


def test_test_connection_explains_a_base_url_that_is_not_a_url(
    monkeypatch: pytest.MonkeyPatch, dresscode_home: Path
) -> None:
    _connect(monkeypatch, "api.open-meteo.com/v1")

    ok, message = WeatherProviderHook().test_connection()

    assert not ok
    assert "'weather_api'" in message and "host must be the forecast base URL" in message


def test_fetch_weather_gets_its_client_from_the_hook(
    stub_url: str, monkeypatch: pytest.MonkeyPatch, dresscode_home: Path
) -> None:
    made: list[WeatherEndpoint] = []
    real = WeatherProviderHook.get_conn

    def spy(self: WeatherProviderHook, **kwargs: object):  # type: ignore[no-untyped-def]
        made.append(self.endpoint())
        return real(self, **kwargs)

    monkeypatch.setattr(WeatherProviderHook, "get_conn", spy)
    _connect(monkeypatch, stub_url)
    batch = fetch_weather(["Paris"], day=date.today(), retry=RetryPolicy(sleep=lambda _s: None))

    assert [e.base_url for e in made] == [stub_url]
    assert len(batch.rows) == 1 and batch.rows[0].source == "provider"


def test_a_client_from_the_hook_closes_only_the_pool_it_made(stub_url: str) -> None:
    endpoint = WeatherEndpoint(stub_url, stub_url, None, 2.0)
    with WeatherProviderHook(endpoint=endpoint).get_conn() as provider:
        own = provider.client
    assert own.is_closed
    shared = httpx.Client()
    with WeatherProviderHook(endpoint=endpoint).get_conn(client=shared) as provider:
        assert provider.client is shared
    assert not shared.is_closed
    shared.close()
