"""One online suggestion, from a checked request to the last Server-Sent Event.

:class:`Service` holds what lives as long as the process (model clients per deployment, the
live aliases, the weather answers, the lake log, the shadow) and answers one request in two
steps: :meth:`Service.prepare` reads and checks the inputs (an unknown user or an empty
wardrobe is refused before any stream starts, with one sentence), :meth:`Service.events`
streams the answer.

The stream, as ``text/event-stream`` events:

- ``meta``: request id, the prompt version and variant (production or canary candidate) and
  whether the answer is live or the morning's pre-generated one;
- ``delta`` (live only): the stylist's text as the model generates it,
  ``{"turn", "attempt", "text"}`` — a new turn or attempt starts the text over;
- then exactly one of ``outfit`` (``suggestion`` validates against the blueprint's output
  schema: unowned items removed, weather rules applied; ``hallucinated_items`` counts the
  ids dropped) or ``error`` (``code`` and one ``message``), and the stream ends.

Decisions:

- The request keeps the blueprint snapshot it started with: a promotion mid-stream does not
  switch it.
- The model layer's retries are few and short here (``ATTEMPTS``, ``RETRY_BUDGET_S``): a user
  is waiting, and a failed call must end in an ``error`` event, never a hang.
- The client going away cancels the request's task: the model call's HTTP stream is closed,
  which frees the endpoint's slot (vLLM aborts the request).
- Every model call the user was served is an ``inference_log`` row (purpose ``outfit``, like
  the batch); a call cut off by a disconnect is not (it produced no answer to judge).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from dresscode.core import tables
from dresscode.llm.blueprints import Blueprint
from dresscode.outfits import stylist
from dresscode.outfits.rules import can_form_outfit, unique_items
from dresscode.serve import routing
from dresscode.serve.aliases import LivePrompts
from dresscode.serve.context import (
    Loaders,
    Readers,
    RequestContext,
    UnknownUser,
    WeatherAnswers,
    city_key,
    read_context,
)
from dresscode.serve.logbook import LakeLog
from dresscode.serve.shadow import LiveShadow, Outcome

if TYPE_CHECKING:
    from dresscode.llm.client import LLMClient

log = logging.getLogger(__name__)

ATTEMPTS = 2  # one retry: a user is waiting
RETRY_BUDGET_S = 20.0
SHADOWS_IN_FLIGHT = 32
_ERROR_CODES = {
    stylist.SkipReason.MODEL_ERROR: "model_unavailable",
    stylist.SkipReason.NO_COMPLETE_OUTFIT: "no_complete_outfit",
    stylist.SkipReason.INVALID_OUTPUT: "invalid_output",
    stylist.SkipReason.MAX_TURNS: "max_turns",
}


class Refused(Exception):
    """A request answered with an HTTP error before any stream: status, code, one sentence."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Query:
    """A checked request: the occasion is one of the schema's or None (``occasion_given``
    keeps what the caller wrote, for the note saying it was not understood)."""

    user_id: str
    day: date
    city: str | None
    occasion: str | None
    occasion_given: str | None = None


@dataclass
class Prepared:
    """A request ready to stream: its id, inputs and the blueprint it will be answered with."""

    request_id: str
    query: Query
    context: RequestContext
    blueprint: Blueprint
    variant: routing.Variant
    production: Blueprint
    candidate: Blueprint | None
    received_at: float = 0.0  # time.perf_counter() when the request arrived
    inputs_read_at: float = 0.0
    first_text_at: float | None = None


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One Server-Sent Event (JSON data on one line)."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"event: {event}\ndata: {payload}\n\n".encode()


class Service:
    """The online stylist's long-lived state and its request flow."""

    def __init__(
        self,
        *,
        prompts: LivePrompts,
        readers: Readers,
        lake_log: LakeLog,
        client_for: Callable[[str], LLMClient],
        weather_ttl_s: float,
        max_turns: int,
        canary_share: float,
        shadow_share: float,
    ) -> None:
        self.prompts = prompts
        self.readers = readers
        self.loaders = Loaders(readers)
        self.lake_log = lake_log
        self._client_for = client_for
        self._clients: dict[str, LLMClient] = {}
        self.weather = WeatherAnswers(readers.weather, weather_ttl_s)
        self.max_turns = max_turns
        self.canary_share = canary_share
        self.shadow_share = shadow_share
        self.shadow = LiveShadow(
            lambda row: lake_log.add(tables.SERVE_SHADOW.name, [row]), SHADOWS_IN_FLIGHT
        )

    async def start(self) -> None:
        if self.readers.start is not None:
            await asyncio.to_thread(self.readers.start)
        if self.readers.warm is not None:  # reads in this process: warm them here
            await asyncio.to_thread(self.readers.warm)
        await self.prompts.start()
        self.lake_log.start()

    async def aclose(self) -> None:
        await self.shadow.aclose()
        await self.prompts.aclose()
        await self.lake_log.aclose()
        for client in self._clients.values():
            await client.aclose()
        if self.readers.close is not None:
            await asyncio.to_thread(self.readers.close)

    def client(self, blueprint: Blueprint) -> LLMClient:
        """The model client of the deployment the blueprint names (blue-green), made once."""
        conn_id = blueprint.connection or ""
        if conn_id not in self._clients:
            self._clients[conn_id] = self._client_for(conn_id)
        return self._clients[conn_id]

    def occasions(self) -> list[str]:
        return stylist.occasions(self.prompts.current().production)

    # --- step 1: inputs ------------------------------------------------------------------

    async def prepare(self, query: Query, received_at: float | None = None) -> Prepared:
        received_at = time.perf_counter() if received_at is None else received_at
        snapshot = self.prompts.current()
        try:
            context = await read_context(
                self.loaders, query.user_id, query.day, query.city, query.occasion
            )
        except UnknownUser:
            raise Refused(404, "unknown_user", f"No user {query.user_id!r} is known.") from None
        except Exception as exc:  # the lake is unreachable: say so, never a bare 500
            log.error("inputs of %s unreadable: %s: %s", query.user_id, type(exc).__name__, exc)
            raise Refused(
                503,
                "inputs_unavailable",
                "The user's profile or wardrobe cannot be read right now; try again shortly.",
            ) from None
        if not unique_items(context.user.wardrobe):
            raise Refused(
                422,
                "empty_wardrobe",
                f"User {query.user_id!r} has no wardrobe items yet: photograph some clothes first.",
            )
        if not can_form_outfit(context.user.wardrobe):
            raise Refused(
                422,
                "incomplete_wardrobe",
                f"User {query.user_id!r} has no top with a bottom and no dress: no outfit can be made.",
            )
        variant = routing.variant_for(
            query.user_id, self.canary_share, candidate_available=snapshot.candidate is not None
        )
        blueprint = snapshot.candidate if variant == "candidate" else snapshot.production
        assert blueprint is not None  # variant_for picks candidate only when there is one
        return Prepared(
            uuid.uuid4().hex,
            query,
            context,
            blueprint,
            variant,
            snapshot.production,
            snapshot.candidate,
            received_at,
            time.perf_counter(),
        )

    # --- step 2: the stream --------------------------------------------------------------

    async def events(self, prepared: Prepared) -> AsyncIterator[bytes]:
        ready = self._pregenerated(prepared)
        yield sse(
            "meta",
            {
                "request_id": prepared.request_id,
                "prompt": prepared.blueprint.ref,
                "variant": prepared.variant,
                "source": "pregenerated" if ready else "live",
                "user_id": prepared.query.user_id,
                "date": prepared.query.day.isoformat(),
                "city": prepared.context.user.city,
            },
        )
        if ready is not None:
            yield sse("outfit", self._final(prepared, ready, [], "pregenerated"))
            return
        async for event in self._live(prepared):
            yield event

    def _pregenerated(self, prepared: Prepared) -> stylist.Suggestion | None:
        """The morning's suggestion when it answers this request as the live prompt would:
        production's version, the profile city, the occasion, and only items still owned."""
        row, query, user = prepared.context.pregenerated, prepared.query, prepared.context.user
        if row is None or prepared.variant != "production":
            return None
        if (
            str(row.get("prompt_name")) != prepared.blueprint.name
            or str(row.get("prompt_version")) != str(prepared.blueprint.version)
            or city_key(user.city) != city_key(prepared.context.profile_city)
        ):
            return None
        owned = {str(i.get("item_id")) for i in user.wardrobe}
        outfits = [o for o in row.get("outfits") or [] if isinstance(o, dict)]
        if query.occasion is not None:
            outfits = [o for o in outfits if o.get("occasion") == query.occasion]
        if not outfits or any(str(i) not in owned for o in outfits for i in o["item_ids"]):
            return None
        found = stylist.Suggestion(user.user_id, query.day, outfits=outfits)
        found.notes = str(row.get("notes") or "")
        caveats = row.get("caveats")
        found.caveats = [str(c) for c in caveats if c] if caveats is not None else []
        return found

    async def _live(self, prepared: Prepared) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        user = prepared.context.user
        lookup = self.weather.lookup_for(prepared.context.online)

        def on_content(turn: int, text: str, attempt: int) -> None:
            if prepared.first_text_at is None:
                prepared.first_text_at = time.perf_counter()
            queue.put_nowait(sse("delta", {"turn": turn, "attempt": attempt, "text": text}))

        served: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
        if (
            prepared.candidate is not None
            and prepared.variant == "production"
            and routing.shadowed(prepared.request_id, self.shadow_share)
        ):
            candidate = prepared.candidate
            self.shadow.start(
                prepared.request_id,
                prepared.blueprint,
                candidate,
                # Not streamed: nobody watches the candidate's answer arrive, and a stream
                # costs this loop one event per token (the primaries' first tokens wait).
                lambda: stylist.suggest(
                    self.client(candidate),
                    candidate,
                    user,
                    lookup,
                    max_turns=self.max_turns,
                    stream=False,
                ),
                served,
            )
        task = asyncio.create_task(
            stylist.suggest(
                self.client(prepared.blueprint),
                prepared.blueprint,
                user,
                lookup,
                max_turns=self.max_turns,
                on_content=on_content,
            ),
            name=f"serve-{prepared.request_id}",
        )
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            ended = False
            while not ended and (event := await queue.get()) is not None:
                # Events that arrived meanwhile go in the same write: under load a stream's
                # chunks come several per loop turn, and each write is a trip through the
                # ASGI stack and a socket write.
                ready = [event]
                while not queue.empty():
                    more = queue.get_nowait()
                    if more is None:
                        ended = True
                        break
                    ready.append(more)
                yield b"".join(ready)
            try:
                suggestion, records = task.result()
            except Exception as exc:
                log.exception("request %s failed", prepared.request_id)
                yield sse("error", _error(prepared, "internal_error", f"{type(exc).__name__}."))
                return
            served.set_result((suggestion, records))
            self.lake_log.add(tables.INFERENCE_LOG.name, records)
            if suggestion.ok:
                yield sse("outfit", self._final(prepared, suggestion, records, "live"))
            else:
                reason = suggestion.skip_reason or stylist.SkipReason.MODEL_ERROR
                code = _ERROR_CODES.get(reason, str(reason))
                yield sse("error", _error(prepared, code, _message(code)))
        finally:
            if not task.done():  # the client went away: stop the model call, free its slot
                task.cancel()
                log.info(
                    "request %s: client disconnected, model call cancelled", prepared.request_id
                )
            if not served.done():
                served.set_result(None)

    def _final(
        self,
        prepared: Prepared,
        suggestion: stylist.Suggestion,
        records: list[dict[str, Any]],
        source: str,
    ) -> dict[str, Any]:
        notes = []
        if prepared.query.occasion_given and prepared.query.occasion is None:
            notes.append(
                "The occasion was not one we know, so the outfits are for any occasion "
                f"(known: {', '.join(self.occasions())})."
            )
        return {
            "request_id": prepared.request_id,
            "prompt": prepared.blueprint.ref,
            "variant": prepared.variant,
            "source": source,
            "suggestion": {"outfits": suggestion.outfits, "notes": suggestion.notes},
            "hallucinated_items": len(suggestion.dropped_items),
            "dropped_items": suggestion.dropped_items,
            "rule_violations": suggestion.rule_violations,
            "caveats": suggestion.caveats,
            "tool_calls": suggestion.tool_calls,
            "model_calls": len(records),
            # Where the time went, as the service saw it (ms from the request's arrival) and
            # the endpoint's own timings per call: what the service added is the rest.
            "timings": _timings(prepared),
            "calls": [
                {
                    "turn": r.get("turn"),
                    "ttft_ms": r.get("ttft_ms"),
                    "latency_ms": r.get("latency_ms"),
                }
                for r in records
            ],
            "service_notes": notes,
        }


def _timings(prepared: Prepared) -> dict[str, float | None]:
    def since_arrival(at: float | None) -> float | None:
        return None if at is None else round((at - prepared.received_at) * 1000, 3)

    return {
        "inputs_ms": since_arrival(prepared.inputs_read_at),
        "first_text_ms": since_arrival(prepared.first_text_at),
    }


def _error(prepared: Prepared, code: str, message: str) -> dict[str, Any]:
    return {"request_id": prepared.request_id, "code": code, "message": message}


def _message(code: str) -> str:
    return {
        "model_unavailable": "The stylist model is not answering right now; please try again shortly.",
        "no_complete_outfit": "The stylist could not put together a complete outfit from this wardrobe for this weather.",
        "invalid_output": "The stylist's answer could not be read; please try again.",
        "max_turns": "The stylist did not finish its answer; please try again.",
    }.get(code, "The suggestion could not be made.")
