"""The live shadow: a sampled share of real requests also answered by the candidate.

For a request picked by :func:`dresscode.serve.routing.shadowed` the service starts the
candidate on the same inputs (wardrobe, features, weather answers) as a background task the
user never waits for, then compares it with what the user was given: agreement (overlap of
the outfit items, ``registry.shadow.outfit_agreement``), whether its tool calls were well
formed, the unowned ids it named, whether it answered at all, latency and tokens of both. One
``serve_shadow`` row per request; ``prompt_release`` reads them as a promotion gate
(``registry.live_shadow``).

Shadows never crowd out users: at most ``max_in_flight`` run at once and a request arriving
when they are all busy is not shadowed (counted in ``skipped``). A candidate that fails costs
a row saying so, never the user's answer. The candidate's own model calls are not written to
``inference_log`` (nobody was served them); their numbers are in the shadow row. They are not
streamed (``stream=False``): nobody watches them arrive, and a stream costs the serving loop
one event per token, time the primaries' streams wait for; a candidate's latency is its calls'
whole time either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypedDict

from dresscode.llm.blueprints import Blueprint
from dresscode.outfits.stylist import Suggestion
from dresscode.registry.shadow import outfit_agreement

log = logging.getLogger(__name__)

Outcome = tuple[Suggestion, list[dict[str, Any]]]


class ServeShadowRow(TypedDict):
    """One ``serve_shadow`` row: a request answered by production (served) and candidate."""

    request_id: str
    ts: str
    user_id: str
    prompt_name: str
    production_version: int
    candidate_version: int
    production_model: str
    candidate_model: str
    agreement: float | None  # None: the user's answer never completed (disconnect)
    candidate_ok: bool
    candidate_skip_reason: str | None
    candidate_tool_calls: int
    candidate_tool_call_ok: bool | None
    candidate_hallucinated_items: int
    production_hallucinated_items: int | None
    candidate_latency_ms: float
    production_latency_ms: float | None
    candidate_prompt_tokens: int
    candidate_completion_tokens: int
    production_completion_tokens: int | None


def _latency(records: list[dict[str, Any]]) -> float:
    return round(sum(float(r.get("latency_ms") or 0.0) for r in records), 3)


def _tokens(records: list[dict[str, Any]], field: str) -> int:
    return sum(int(r.get(field) or 0) for r in records)


def compare(
    request_id: str,
    production: Blueprint,
    candidate: Blueprint,
    served: Outcome | None,
    shadow: Outcome,
) -> ServeShadowRow:
    """The shadow row of one request (``served`` None: the user's answer did not complete)."""
    ours, our_calls = shadow
    theirs, their_calls = served if served is not None else (None, [])
    return ServeShadowRow(
        request_id=request_id,
        ts=datetime.now(UTC).isoformat(timespec="milliseconds"),
        user_id=ours.user_id,
        prompt_name=candidate.name,
        production_version=production.version,
        candidate_version=candidate.version,
        production_model=production.model,
        candidate_model=candidate.model,
        agreement=None if theirs is None else round(outfit_agreement(ours, theirs), 4),
        candidate_ok=ours.ok,
        candidate_skip_reason=str(ours.skip_reason) if ours.skip_reason else None,
        candidate_tool_calls=ours.tool_calls,
        candidate_tool_call_ok=ours.tool_call_ok,
        candidate_hallucinated_items=len(ours.dropped_items),
        production_hallucinated_items=None if theirs is None else len(theirs.dropped_items),
        candidate_latency_ms=_latency(our_calls),
        production_latency_ms=None if theirs is None else _latency(their_calls),
        candidate_prompt_tokens=_tokens(our_calls, "prompt_tokens"),
        candidate_completion_tokens=_tokens(our_calls, "completion_tokens"),
        production_completion_tokens=None
        if theirs is None
        else _tokens(their_calls, "completion_tokens"),
    )


class LiveShadow:
    """Runs shadows in the background, bounded, and hands their rows to ``record``."""

    def __init__(self, record: Callable[[ServeShadowRow], None], max_in_flight: int) -> None:
        self._record = record
        self._max_in_flight = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()
        self.skipped = 0
        self.done = 0

    def start(
        self,
        request_id: str,
        production: Blueprint,
        candidate: Blueprint,
        run_candidate: Callable[[], Awaitable[Outcome]],
        served: asyncio.Future[Outcome | None],
    ) -> bool:
        """Start one shadow now; False (and nothing started) when too many are running."""
        if len(self._tasks) >= self._max_in_flight:
            self.skipped += 1
            return False
        task = asyncio.create_task(
            self._run(request_id, production, candidate, run_candidate, served),
            name=f"shadow-{request_id}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(
        self,
        request_id: str,
        production: Blueprint,
        candidate: Blueprint,
        run_candidate: Callable[[], Awaitable[Outcome]],
        served: asyncio.Future[Outcome | None],
    ) -> None:
        try:
            shadow = await run_candidate()
            theirs = await served
            self._record(compare(request_id, production, candidate, theirs, shadow))
            self.done += 1
        except asyncio.CancelledError:
            raise
        except Exception:  # a shadow's bug must never reach a user: log it and move on
            log.exception("live shadow of request %s failed", request_id)

    async def aclose(self, timeout_s: float = 30.0) -> None:
        """Let running shadows finish (up to ``timeout_s``), then cancel the rest."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in pending:
                task.cancel()
