"""The weather provider as an Airflow connection type: ``dresscode_weather``.

Modelled on the OpenAI provider's ``OpenAIHook``: :class:`WeatherProviderHook` is the one place
a forecast-provider client (:class:`~dresscode.features.weather.provider.WeatherProvider`) is
made (:meth:`~WeatherProviderHook.get_conn`), and it answers the UI's Test button with one
cheap forecast request (:meth:`~WeatherProviderHook.test_connection`). The connection is parsed
by :func:`dresscode.core.connections.weather_endpoint` (host = forecast base URL, password = API
key, extra = ``geocoding_url`` and ``timeout``); without a ``weather_api`` connection, Open-Meteo's
public URLs are used.

Decisions:

- The connection form (labels, placeholders, the geocoding URL and timeout fields) is declared
  with the connection type in ``dresscode.core.connections``: Airflow 3.3 builds the form from
  the provider info without importing hooks. :meth:`get_ui_field_behaviour` returns the same
  declaration.
- Airflow's ProvidersManager imports this module: httpx loads inside the methods that need it.
- The Test button answers in one sentence naming the connection, never shows the API key, and
  waits at most ``TEST_TIMEOUT_S``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from dresscode.core.config import SettingsError, get_settings
from dresscode.core.connections import (
    CONNECTION_TYPES,
    WEATHER_CONN_ID,
    WeatherEndpoint,
    field_behaviour,
    weather_endpoint,
)
from dresscode.features.weather.derive import WeatherError
from dresscode.features.weather.provider import RetryPolicy, WeatherProvider

if TYPE_CHECKING:
    import httpx

    from dresscode.core.config import Settings

CONN_TYPE = "dresscode_weather"
# The type's name, form and hook path are declared once, with the other connection types.
_DECLARED = next(c for c in CONNECTION_TYPES if c["connection-type"] == CONN_TYPE)
# The UI's Test button should answer in seconds, whatever the connection's timeout.
TEST_TIMEOUT_S = 10.0


class WeatherProviderHook(BaseHook):
    """The Open-Meteo-shaped forecast provider (the public API, a paid plan, a mirror, the stub).

    :param conn_id: the connection (default ``weather_api``).
    :param settings: settings for the fallbacks (timeout, attempts); default the process settings.
    :param endpoint: an already resolved endpoint (tests, callers that have one): the
        connection is then not read.
    """

    conn_name_attr = "conn_id"
    default_conn_name = WEATHER_CONN_ID
    conn_type = CONN_TYPE
    hook_name = _DECLARED["hook-name"]

    def __init__(
        self,
        conn_id: str = default_conn_name,
        settings: Settings | None = None,
        *,
        endpoint: WeatherEndpoint | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.settings = settings
        self._endpoint = endpoint

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The form's relabelled, hidden and pre-filled fields (declared with the connection type)."""
        return field_behaviour(cls.conn_type)

    def endpoint(self) -> WeatherEndpoint:
        """The parsed connection; SettingsError (one sentence naming the connection) if bad."""
        if self._endpoint is None:
            self._endpoint = weather_endpoint(self.conn_id, settings=self.settings)
        return self._endpoint

    def get_conn(
        self, *, client: httpx.Client | None = None, retry: RetryPolicy | None = None
    ) -> WeatherProvider:
        """A provider client for one batch; use it as a context manager so it is closed.

        ``client`` shares a caller's connection pool (then not closed by the provider);
        ``retry`` defaults to :class:`RetryPolicy` with ``DRESSCODE_WEATHER_MAX_ATTEMPTS``.
        """
        import httpx

        endpoint = self.endpoint()
        retry = retry or RetryPolicy()
        attempts = retry.max_attempts or (self.settings or get_settings()).weather_max_attempts
        if client is not None:
            return WeatherProvider(endpoint, client, retry, attempts)
        http = httpx.Client(timeout=endpoint.timeout_s, follow_redirects=True)
        return WeatherProvider(endpoint, http, retry, attempts, owns_client=True)

    def test_connection(self) -> tuple[bool, str]:
        """One forecast request, one attempt: is the provider there and answering forecasts?"""
        from dresscode.core.connections import tested_as

        name = tested_as(f"Connection {self.conn_id!r}", self.conn_id)
        try:
            endpoint = self.endpoint()
        except SettingsError as err:
            return False, tested_as(str(err), self.conn_id)
        quick = dataclasses.replace(endpoint, timeout_s=min(endpoint.timeout_s, TEST_TIMEOUT_S))
        hook = WeatherProviderHook(self.conn_id, self.settings, endpoint=quick)
        try:
            with hook.get_conn(retry=RetryPolicy(max_attempts=1)) as provider:
                provider.check()
        except WeatherError as err:
            return False, f"{name}: {endpoint.base_url}: {err.message}"
        return True, f"{name}: {endpoint.base_url} answers forecasts."
