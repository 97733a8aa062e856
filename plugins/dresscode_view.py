"""Airflow plugin: the Dresscode view (prompt versions, gates, drift, SLOs, quarantine).

Thin on purpose: the logic lives in ``dresscode.ui.view``. Airflow's api-server mounts the app
under ``/dresscode`` and the UI shows a "Dresscode" entry in its Browse menu that opens it.
The app requires an authenticated Airflow user on every route (Airflow's own
``requires_authenticated`` dependency): the UI's session cookie or a bearer JWT.

Every Airflow process imports plugins — each task runner too, for macros — but only the
api-server serves this app, so it is built on its first request: importing this file costs
nothing (building the app pulls in Airflow's API security module, ~2 s).
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/dresscode"  # dresscode.ui.view.URL_PREFIX


class LazyApp:
    """An ASGI app that builds ``dresscode.ui.view.create_app()`` when it is first called."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self._app is None:
            from dresscode.ui import view

            self._app = view.create_app()
        await self._app(scope, receive, send)


class DresscodeViewPlugin(AirflowPlugin):
    name = "dresscode_view"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "Dresscode view"}
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "Dresscode",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "dresscode",
        }
    ]
