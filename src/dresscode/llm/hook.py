"""The model endpoint as an Airflow connection type: ``dresscode_llm``.

:class:`DresscodeLLMHook` is the one place a model client comes from. It reads the connection
(host = base URL, password = API key, extra = model, timeout, max_concurrency; parsed by
``dresscode.core.connections``), hands out the project's async :class:`~dresscode.llm.client.LLMClient`
(:meth:`~DresscodeLLMHook.get_client`, or :meth:`~DresscodeLLMHook.client_for` given an endpoint)
and answers the UI's Test button (:meth:`~DresscodeLLMHook.test_connection`: ``GET /models``).

Decisions:

- The connection form (labels, placeholders, the model / timeout / max_concurrency fields) is
  declared as data in ``dresscode.core.connections`` and registered by
  ``dresscode.orchestration.provider``: Airflow 3.3 builds the React form from the provider
  info without importing hooks, and deprecates the hook methods for it (since 3.2).
  :meth:`get_ui_field_behaviour` returns the same declaration for callers that still ask.
- Airflow's ProvidersManager imports this module: it imports nothing heavy (openai, httpx load
  inside the methods that need them).
- The Test button runs in the API server with a throwaway connection id; its answers are one
  sentence each, never contain the API key, and wait at most ``TEST_TIMEOUT_S``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from dresscode.core.connections import (
    LLM_CONN_ID,
    LLMEndpoint,
    field_behaviour,
    get_connection,
    parse_llm_connection,
    tested_as,
)

if TYPE_CHECKING:
    from dresscode.core.config import Settings
    from dresscode.llm.client import LLMClient

# The UI's Test button should answer in seconds, whatever the connection's call timeout.
TEST_TIMEOUT_S = 10.0


class DresscodeLLMHook(BaseHook):
    """The OpenAI-compatible model endpoint (vLLM serving Gemma 4, or the simulator).

    :param conn_id: the connection (default ``dresscode_llm``).
    :param settings: settings for the fallbacks (timeout, concurrency, retries); default
        the process settings.
    """

    conn_name_attr = "conn_id"
    default_conn_name = LLM_CONN_ID
    conn_type = "dresscode_llm"
    hook_name = "Dresscode model endpoint (OpenAI-compatible)"

    def __init__(
        self, conn_id: str = default_conn_name, settings: Settings | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.settings = settings

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The form's relabelled, hidden and pre-filled fields (declared in the provider info)."""
        return field_behaviour(cls.conn_type)

    def endpoint(self) -> LLMEndpoint:
        """The parsed connection; SettingsError (one sentence naming the connection) if bad."""
        return parse_llm_connection(get_connection(self.conn_id), self.conn_id, self.settings)

    def get_conn(self) -> LLMClient:
        """Airflow's generic accessor: the same as :meth:`get_client`."""
        return self.get_client()

    def get_client(self, **overrides: Any) -> LLMClient:
        """A new async client for this connection; close it (``async with``) in its event loop.

        ``overrides`` are :class:`~dresscode.llm.client.LLMClient` keyword arguments that win
        over the connection and settings (``extra_headers``, ``max_attempts``, ``transport``...).
        """
        return self.client_for(self.endpoint(), self.settings, **overrides)

    def get_offline_client(self, **overrides: Any) -> LLMClient:
        """A client for offline work — golden evaluations, shadow replays — whose calls yield
        to production traffic at ``DRESSCODE_EVAL_PRIORITY`` (vLLM's request priority)."""
        from dresscode.core.config import get_settings

        priority = (self.settings or get_settings()).eval_priority
        return self.get_client(**({"priority": priority} | overrides))

    @staticmethod
    def client_for(
        endpoint: LLMEndpoint, settings: Settings | None = None, **overrides: Any
    ) -> LLMClient:
        """The client for an already resolved endpoint (every LLMClient of the package is built here).

        Connection: base URL, key, model, timeout, concurrency; settings: attempts and retry
        budget (``DRESSCODE_LLM_MAX_ATTEMPTS``, ``DRESSCODE_LLM_RETRY_BUDGET_S``).
        """
        from dresscode.core.config import get_settings
        from dresscode.llm.client import LLMClient

        settings = settings or get_settings()
        # httpx (httpx2 under openai 3) logs every request at INFO: thousands of lines per batch that bury the progress lines.
        for name in ("httpx", "httpx2"):
            logging.getLogger(name).setLevel(logging.WARNING)
        options: dict[str, Any] = {
            "api_key": endpoint.api_key,
            "model": endpoint.model,
            "max_concurrency": endpoint.max_concurrency,
            "timeout_s": endpoint.timeout_s,
            "max_attempts": settings.llm_max_attempts,
            "retry_budget_s": settings.llm_retry_budget_s,
        }
        return LLMClient(endpoint.base_url, **(options | overrides))

    def test_connection(self) -> tuple[bool, str]:
        """``GET {base_url}/models`` with the key: is the endpoint there, the key right, the model served?"""
        from dresscode.core.config import SettingsError

        try:
            endpoint = self.endpoint()
        except SettingsError as err:
            return False, tested_as(str(err), self.conn_id)
        ok, message = _check_models(self.conn_id, endpoint)
        return ok, tested_as(message, self.conn_id)


def _check_models(conn_id: str, endpoint: LLMEndpoint) -> tuple[bool, str]:
    import httpx

    name = f"Connection {conn_id!r}"
    url = f"{endpoint.base_url}/models"
    try:
        response = httpx.get(
            url,
            headers={"Authorization": f"Bearer {endpoint.api_key}"},
            timeout=min(endpoint.timeout_s, TEST_TIMEOUT_S),
        )
    except httpx.TimeoutException:
        return False, (
            f"{name}: {endpoint.base_url} did not answer GET /models within "
            f"{min(endpoint.timeout_s, TEST_TIMEOUT_S):g} s; check the host and that the server is up."
        )
    except httpx.HTTPError as exc:
        return False, (
            f"{name}: cannot reach {endpoint.base_url} ({_reason(exc)}); "
            "check the host and port and that the server is running."
        )
    status = response.status_code
    if status in (401, 403):
        return False, (
            f"{name}: {endpoint.base_url} rejected the API key (HTTP {status}); "
            "set the password to the endpoint's API key."
        )
    if status == 404:
        return False, (
            f"{name}: GET {url} answered 404; the host must be the base URL with its API "
            f"prefix, such as http://localhost:8000/v1."
        )
    if status != 200:
        return False, f"{name}: GET {url} answered HTTP {status}; is the model server healthy?"
    try:
        listed = response.json()["data"]
        served = sorted(str(m["id"]) for m in listed)
    except (ValueError, KeyError, TypeError):
        return False, (
            f"{name}: GET {url} did not answer an OpenAI model list; is {endpoint.base_url} "
            "an OpenAI-compatible endpoint?"
        )
    if endpoint.model not in served:
        return False, (
            f"{name}: {endpoint.base_url} does not serve the model {endpoint.model!r} named in "
            f"extra; it serves {served}."
        )
    simulated = any(m.get("simulator") for m in listed if isinstance(m, dict))
    what = " (the simulator, not a real model)" if simulated else ""
    return True, f"{name}: {endpoint.base_url} serves {endpoint.model!r}{what}."


def _reason(exc: Exception) -> str:
    """The innermost cause in a few words (``[Errno 111] Connection refused``)."""
    while exc.__cause__ is not None and isinstance(exc.__cause__, Exception):
        exc = exc.__cause__
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
