"""The view's "similar items" panel: one item and the user's items most like it.

``/items/{item_id}/similar`` (HTML) and ``/api/items/{item_id}/similar`` (JSON), mounted by
:func:`dresscode.ui.view.create_app`. The neighbours come from the item vectors in Feast's
online store (:func:`dresscode.features.embeddings.similar.similar_items`: the user's current
wardrobe only, so a deleted item is never shown); their descriptions from the user's current
wardrobe.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

K = 5


class NoVector(LookupError):
    """The item has no vector: not an item id, or not embedded yet."""


def similar_panel(item_id: str, k: int = K) -> dict[str, Any]:
    """The item, and its ``k`` most similar items with their similarity and description."""
    from dresscode.core import tables
    from dresscode.features.embeddings import similar

    found = similar.vector_of(item_id)
    if found is None:
        raise NoVector(
            f"item {item_id!r} has no vector: not an item id, or not embedded yet "
            "(item_embeddings runs hourly and after each ingest)"
        )
    user = found[0]
    near = similar.similar_items(item_id, k=k)
    items = tables.current_wardrobe_items([user])
    described = {
        str(r["item_id"]): r for r in (items.to_dict("records") if not items.empty else [])
    }

    def card(item: str) -> dict[str, Any]:
        row = described.get(item, {})
        return {
            "item_id": item,
            "category": row.get("category"),
            "subcategory": row.get("subcategory"),
            "description": row.get("description"),
        }

    return {
        "user_id": user,
        "item": card(item_id),
        "similar": [card(n.item_id) | {"similarity": round(1 - n.distance, 4)} for n in near],
    }


def render_similar(panel: dict[str, Any]) -> str:
    def e(value: Any) -> str:
        return html.escape("" if value is None else str(value))

    item = panel["item"]
    rows = "".join(
        f"<tr><td>{e(s['item_id'])}</td><td>{s['similarity']:.3f}</td>"
        f"<td>{e(s['category'])} / {e(s['subcategory'])}</td><td>{e(s['description'])}</td></tr>"
        for s in panel["similar"]
    )
    return (
        "<!doctype html><meta charset=utf-8><title>Similar items</title>"
        f"<h1>Similar to {e(item['item_id'])}</h1>"
        f"<p>{e(item['category'])} / {e(item['subcategory'])}: {e(item['description'])} "
        f"(user {e(panel['user_id'])})</p>"
        "<table><tr><th>item</th><th>similarity</th><th>kind</th><th>description</th></tr>"
        f"{rows}</table>"
        "<p>From the item vectors in Feast's online store (a real embedding model; cosine similarity of the "
        "descriptions). Only the user's current wardrobe is searched.</p>"
    )


def register(app: FastAPI) -> None:
    from fastapi import Request
    from fastapi.responses import HTMLResponse, JSONResponse

    @app.exception_handler(NoVector)
    async def _no_vector(_request: Request, exc: NoVector) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.get("/items/{item_id}/similar", response_class=HTMLResponse)
    def similar_page(item_id: str) -> HTMLResponse:
        return HTMLResponse(render_similar(similar_panel(item_id)))

    @app.get("/api/items/{item_id}/similar")
    def similar_api(item_id: str) -> JSONResponse:
        return JSONResponse(similar_panel(item_id))
