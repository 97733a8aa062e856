"""The HTTP face of the online stylist: ``POST /v1/outfits`` (SSE) and ``GET /health``.

Checks run cheapest first, each refusing with a JSON ``{"error": {"code", "message"}}`` and
one sentence: the caller's key (401), the body's size (413, read in pieces so a huge body is
never held), its shape (422), the user's rate (429 with ``Retry-After``), the date window
(422), then the inputs (:meth:`Service.prepare`: 404 unknown user, 422 empty wardrobe). Only
then does the stream start. The occasion is free text from the app: a word of the schema's
vocabulary is used, anything else (including text written to steer the model) is replaced by
"any" and never reaches the prompt; the final event says so.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import ClientDisconnect

from dresscode.serve.access import RateLimiter, authorized
from dresscode.serve.service import Query, Refused, Service

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024  # a request is a user id, a date, a city and an occasion


class OutfitRequest(BaseModel):
    """The body of ``POST /v1/outfits``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    user_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
    date: dt.date | None = None
    city: str | None = Field(default=None, min_length=1, max_length=100)
    occasion: str | None = Field(default=None, max_length=200)


def _refusal(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it passes ``limit`` bytes (declared or counted)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            return None
    return bytes(body)


CLIENT_GONE = 499  # nginx's "client closed request": nobody reads it, the access log does


def _one_sentence(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "body"
    return f"{where}: {first.get('msg', 'invalid')} ({error.error_count()} problem(s) in the body)."


def create_app(
    service: Service, *, api_key: str, rate_limit_per_min: int, max_days_ahead: int
) -> FastAPI:
    """The ASGI app around one :class:`Service` (started and closed with the app)."""
    limiter = RateLimiter(rate_limit_per_min)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.aclose()

    app = FastAPI(title="Dresscode stylist", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "serving": service.prompts.describe()}

    @app.post("/v1/outfits")
    async def outfits(request: Request) -> Response:
        received_at = time.perf_counter()
        if not authorized(request.headers.get("authorization"), api_key):
            return _refusal(
                401, "unauthorized", "Send the service's API key as 'Authorization: Bearer <key>'."
            )
        try:
            raw = await _read_body(request, MAX_BODY_BYTES)
        except ClientDisconnect:
            return Response(status_code=CLIENT_GONE)
        if raw is None:
            return _refusal(
                413, "body_too_large", f"The body is larger than {MAX_BODY_BYTES} bytes."
            )
        try:
            body = OutfitRequest.model_validate(json.loads(raw or b"{}"))
        except (ValueError, RecursionError) as exc:
            message = (
                _one_sentence(exc) if isinstance(exc, ValidationError) else "The body is not JSON."
            )
            return _refusal(422, "invalid_request", message)
        allowed, wait_s = limiter.allow(body.user_id)
        if not allowed:
            return _refusal(
                429,
                "rate_limited",
                f"Too many requests for user {body.user_id!r}; retry in {wait_s:g} s.",
                {"Retry-After": str(max(1, round(wait_s)))},
            )
        today = datetime.now(UTC).date()
        day = body.date or today
        if not today - timedelta(days=1) <= day <= today + timedelta(days=max_days_ahead):
            return _refusal(
                422,
                "date_out_of_range",
                f"date {day.isoformat()} is outside the forecast window: from "
                f"{(today - timedelta(days=1)).isoformat()} to "
                f"{(today + timedelta(days=max_days_ahead)).isoformat()}.",
            )
        given = body.occasion or None
        known = given.casefold() if given and given.casefold() in service.occasions() else None
        query = Query(body.user_id, day, body.city, known, given)
        try:
            prepared = await service.prepare(query, received_at)
        except Refused as refused:
            return _refusal(refused.status, refused.code, refused.message)
        return StreamingResponse(
            service.events(prepared),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return app
