"""Build the online stylist from the settings and run it (``dresscode serve``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from dresscode.core import prompts
from dresscode.core.config import Settings, get_settings
from dresscode.serve.access import api_key_from_connection
from dresscode.serve.aliases import LivePrompts
from dresscode.serve.context import lake_readers
from dresscode.serve.logbook import LakeLog
from dresscode.serve.reader_process import readers_for
from dresscode.serve.service import ATTEMPTS, RETRY_BUDGET_S, Service

if TYPE_CHECKING:
    from fastapi import FastAPI

    from dresscode.llm.client import LLMClient

log = logging.getLogger(__name__)


def build_app(settings: Settings | None = None) -> FastAPI:
    """The app over the lake, Feast, the registry and the model connection(s)."""
    from dresscode.core.connections import LLM_CONN_ID
    from dresscode.llm.hook import DresscodeLLMHook
    from dresscode.serve.app import create_app

    settings = settings or get_settings()
    api_key = api_key_from_connection(settings)

    def client_for(conn_id: str) -> LLMClient:
        return DresscodeLLMHook(conn_id or LLM_CONN_ID, settings=settings).get_client(
            max_concurrency=settings.serve_max_concurrency,
            max_attempts=min(ATTEMPTS, settings.llm_max_attempts),
            retry_budget_s=RETRY_BUDGET_S,
        )

    service = Service(
        prompts=LivePrompts(prompts.STYLIST.name, settings.serve_alias_refresh_s),
        readers=readers_for(settings, lake_readers(settings)),
        lake_log=LakeLog(settings, settings.serve_log_flush_s),
        client_for=client_for,
        weather_ttl_s=float(settings.weather_cache_ttl_s),
        max_turns=settings.outfit_max_turns,
        canary_share=settings.serve_canary_share,
        shadow_share=settings.serve_shadow_share,
    )
    return create_app(
        service,
        api_key=api_key,
        rate_limit_per_min=settings.serve_rate_limit_per_min,
        max_days_ahead=settings.serve_max_days_ahead,
    )


def run(host: str = "127.0.0.1", port: int | None = None) -> None:
    """Serve until stopped (SIGTERM/SIGINT finish the open streams' lake writes first)."""
    import uvicorn

    from dresscode.serve.memory import import_and_freeze

    settings = get_settings()
    app = build_app(settings)
    import_and_freeze(settings=settings)
    uvicorn.run(
        app,
        host=host,
        port=port or settings.serve_port,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=30,
        # Longer than a load balancer's or app backend's idle timeout (60 s is common): the
        # caller, not the service, closes an idle connection, so it never reuses one just closed.
        timeout_keep_alive=75,
    )
