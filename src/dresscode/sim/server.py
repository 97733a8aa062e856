"""The simulator's HTTP server: vLLM's OpenAI-compatible routes, on FastAPI.

``create_app(config)`` builds one independent simulator (its own slots, metrics and seeded
randomness), so tests can run several in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dresscode.sim import answers, control, faults, protocol
from dresscode.sim.config import DEFAULT_MODEL, SimConfig
from dresscode.sim.latency import LatencyModel, QueueFull, SlotPool, Ticket
from dresscode.sim.metrics import Metrics
from dresscode.sim.protocol import ApiError, ChatRequest, sse
from dresscode.sim.script import ResponseScript
from dresscode.sim.weather import create_weather_app

T = TypeVar("T")
CLIENT_CLOSED = 499  # nginx's code for "client went away"; only ever seen in sim metrics
STREAM_PIECES = 8  # content arrives in up to this many chunks, not one per token


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


class Simulator:
    """The state of one simulator: config, slots, latency model, script, metrics."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.metrics = Metrics([m.name for m in config.served_models], config.max_num_seqs)
        self.pool = SlotPool(
            config.max_num_seqs,
            config.max_queue,
            preemptive=config.scheduling_policy == "priority",
        )
        self.latency = LatencyModel(
            ttft_ms=config.ttft_ms,
            itl_ms=config.itl_ms,
            load_factor=config.load_factor,
            jitter=config.jitter,
            max_num_seqs=config.max_num_seqs,
            fixed_latency_ms=config.fixed_latency_ms,
            seed=config.seed,
        )
        self.script = ResponseScript(config.scripts)
        self.attempts = faults.AttemptCounter()
        self.fault_rng = random.Random(f"faults|{config.seed}")
        self.created = int(time.time())

    # -- routes -----------------------------------------------------------------------------

    def authorize(self, request: Request) -> None:
        key = self.config.api_key
        if key and request.headers.get("authorization") != f"Bearer {key}":
            raise ApiError(
                401, "Unauthorized: a valid 'Authorization: Bearer <api key>' header is required."
            )

    def models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": m.name,
                    "object": "model",
                    "created": self.created,
                    "owned_by": "dresscode-simulator",
                    "root": DEFAULT_MODEL,
                    "parent": None,
                    "max_model_len": self.config.max_model_len,
                    "permission": [],
                    "simulator": True,
                    "profile": m.profile.name,
                    "note": "SIMULATOR — not a real model; quality numbers are not Gemma's",
                }
                for m in self.config.served_models
            ],
        }

    async def chat(self, request: Request) -> Response:
        """``POST /v1/chat/completions``: check, maybe fail on purpose, then answer in time."""
        arrival = time.monotonic()
        label = "unknown"
        try:
            self.authorize(request)
            chat = protocol.parse_chat_request(await request.body(), self.config)
            label = chat.model.name
            injected = faults.from_headers(request.headers, self.attempts) | faults.from_rates(
                self.fault_rng,
                self.config.fault_rate_5xx,
                self.config.fault_rate_429,
                self.config.fault_rate_timeout,
            )
            if faults.Fault.TIMEOUT in injected:
                await until_disconnected(request, asyncio.sleep(self.config.timeout_fault_seconds))
            if (error := faults.error_for(injected)) is not None:
                raise error
            reply = answers.answer(chat, seed=self.config.seed, script=self.script)
            if faults.Fault.TIMEOUT in reply.faults:  # a model that does not answer this one
                await until_disconnected(request, asyncio.sleep(self.config.timeout_fault_seconds))
            output = faults.render(
                reply.content, reply.tool_calls, injected | reply.faults, chat.max_tokens
            )
            ticket = self._admit(chat.priority)
        except ApiError as exc:
            self.metrics.received(label, exc.status)
            return JSONResponse(exc.envelope(), status_code=exc.status, headers=exc.headers)
        except ClientGone:
            self.metrics.received(label, CLIENT_CLOSED)
            return Response(status_code=CLIENT_CLOSED)
        except Exception:
            self.metrics.received(label, 500)  # a simulator bug; the app's handler answers 500
            raise
        lease = _Lease(self, label, ticket)  # no await since admission: no burst slips past
        if chat.stream:
            self.metrics.received(label, 200)  # the status line goes out before the first token
            return StreamingResponse(
                self._stream(chat, output, arrival, lease),
                media_type="text/event-stream",
                # Starlette may cancel before the generator ever runs (client gone at once);
                # then only this frees the lease.
                background=BackgroundTask(lease.release_async),
            )
        response = await self._complete(request, chat, output, arrival, lease)
        self.metrics.received(label, response.status_code)
        return response

    # -- generation -------------------------------------------------------------------------

    def _admit(self, priority: int = 0) -> Ticket:
        try:
            return self.pool.admit(priority)
        except QueueFull:
            raise ApiError(
                503,
                f"Scheduler waiting queue is full (max_queue={self.config.max_queue}); "
                "the request was rejected. Please retry later.",
            ) from None

    async def _complete(
        self,
        request: Request,
        chat: ChatRequest,
        output: faults.Output,
        arrival: float,
        lease: _Lease,
    ) -> Response:
        model = chat.model.name

        async def generate() -> float:
            await lease.ready()
            ttft, generation = self.latency.plan(output.completion_tokens, self.pool.running)
            start = time.monotonic()
            await lease.hold_until(start + ttft, recompute_s=ttft)
            first_token = time.monotonic()
            await lease.hold_until(start + ttft + generation, recompute_s=ttft)
            return first_token

        try:
            first_token = await until_disconnected(request, generate())
        except ClientGone:
            self._finished(chat, output, "abort", None, arrival)
            return Response(status_code=CLIENT_CLOSED)
        finally:
            lease.release()
        self._finished(chat, output, output.finish_reason, first_token - arrival, arrival)
        body = protocol.completion(
            protocol.completion_id(),
            model,
            content=output.content,
            tool_calls=output.tool_calls,
            finish_reason=output.finish_reason,
            prompt_tokens=chat.prompt_tokens,
            completion_tokens=output.completion_tokens,
        )
        return JSONResponse(body)

    async def _stream(
        self, chat: ChatRequest, output: faults.Output, arrival: float, lease: _Lease
    ) -> AsyncIterator[bytes]:
        """SSE chunks: role at TTFT, deltas spread over the generation time, usage, [DONE]."""
        model, cid, created = chat.model.name, protocol.completion_id(), int(time.time())
        reason, ttft_s = "abort", None
        try:
            await lease.ready()
            ttft, generation = self.latency.plan(output.completion_tokens, self.pool.running)
            # Pace against absolute deadlines: relative sleeps would add every late wake-up
            # under load to the time a slot is held.
            start = time.monotonic()
            await lease.hold_until(start + ttft, recompute_s=ttft)
            ttft_s = time.monotonic() - arrival
            yield sse(protocol.chunk(cid, model, created, {"role": "assistant", "content": ""}))
            deltas = _deltas(output)
            step = generation / max(1, len(deltas))
            for i, delta in enumerate(deltas):
                if i:
                    await lease.hold_until(start + ttft + i * step, recompute_s=ttft)
                yield sse(protocol.chunk(cid, model, created, delta))
            await lease.hold_until(start + ttft + generation, recompute_s=ttft)
            yield sse(protocol.chunk(cid, model, created, {}, output.finish_reason))
            lease.release()
            reason = output.finish_reason
            if chat.include_usage:
                usage = protocol.usage_chunk(
                    cid, model, created, chat.prompt_tokens, output.completion_tokens
                )
                yield sse(usage)
            yield sse("[DONE]")
        finally:
            lease.release()
            self._finished(chat, output, reason, ttft_s, arrival)

    def _finished(
        self,
        chat: ChatRequest,
        output: faults.Output,
        reason: str,
        ttft_s: float | None,
        arrival: float,
    ) -> None:
        self.metrics.finished(
            chat.model.name,
            reason=reason,
            prompt_tokens=chat.prompt_tokens,
            completion_tokens=output.completion_tokens if reason != "abort" else 0,
            ttft_s=ttft_s,
            e2e_s=time.monotonic() - arrival,
        )


class _Lease:
    """A slot ticket plus the gauges: waiting while queued, running while holding the slot."""

    def __init__(self, sim: Simulator, model: str, ticket: Ticket) -> None:
        self._metrics, self._model, self._ticket = sim.metrics, model, ticket
        self._state = "queued" if ticket.queued else "running"
        self._since = time.monotonic()
        self._lost_s = 0.0  # slot time lost to preemptions: later deadlines move by it
        if self._state == "queued":
            self._metrics.enter_queue(model)
        else:
            self._metrics.start_running(model)

    async def ready(self) -> None:
        await self._ticket.ready()
        if self._state == "queued":
            self._metrics.leave_queue(self._model)
            self._metrics.start_running(self._model)
            self._state, self._since = "running", time.monotonic()

    async def hold_until(self, deadline: float, recompute_s: float) -> None:
        """Hold the slot until ``deadline``, plus the time lost to preemptions so far (paced
        against absolute deadlines: relative sleeps would add every late wake-up under load to
        the time a slot is held). Preempted, the request waits in the queue again, then
        recomputes its prefill (``recompute_s``); the lost time moves every later deadline."""
        while (remaining := deadline + self._lost_s - time.monotonic()) > 0:
            if not await self._ticket.hold(remaining):
                return
            lost_from = time.monotonic()
            self._metrics.preempted(self._model)
            self._metrics.stop_running(self._model, lost_from - self._since)
            self._metrics.enter_queue(self._model)
            self._state = "queued"
            await self.ready()
            self._lost_s += time.monotonic() - lost_from + recompute_s

    async def release_async(self) -> None:
        """``release`` for Starlette's background task: async, so it stays on the event loop."""
        self.release()

    def release(self) -> None:
        """Idempotent: the generator, the handler and a background task may all call it."""
        if self._state == "queued":
            self._metrics.leave_queue(self._model)
        elif self._state == "running":
            self._metrics.stop_running(self._model, time.monotonic() - self._since)
        if self._state != "done":
            self._state = "done"
            self._ticket.release()


def _deltas(output: faults.Output) -> list[dict[str, Any]]:
    """The answer cut into delta messages, in OpenAI's chunk format."""
    if output.tool_calls:
        deltas: list[dict[str, Any]] = []
        for index, call in enumerate(output.tool_calls):
            fn = call["function"]
            head = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": fn["name"], "arguments": ""},
            }
            deltas.append({"tool_calls": [head]})
            half = len(fn["arguments"]) // 2
            for piece in (fn["arguments"][:half], fn["arguments"][half:]):
                if piece:
                    deltas.append(
                        {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                    )
        return deltas
    text = output.content or ""
    size = max(1, -(-len(text) // STREAM_PIECES))
    return [{"content": text[i : i + size]} for i in range(0, len(text), size)]


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, but abandon it (raising ClientGone) if the client hangs up first.

    vLLM aborts a request whose client went away; so does the simulator, which frees the
    slot for the client's retry instead of finishing work nobody will read.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnect(request.receive))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watcher.cancel()
        raise
    watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise ClientGone


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class SimulatorHeader:
    """Pure ASGI middleware: every response says ``X-Dresscode-Simulator: true``.

    It also echoes ``X-Request-Id``, as vLLM does with ``--enable-request-id-headers``.
    (Pure ASGI rather than ``BaseHTTPMiddleware``: that one costs per request and breaks
    disconnect detection for streams.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        extra = [(b"x-dresscode-simulator", b"true")]
        extra += [(k, v) for k, v in scope.get("headers", []) if k == b"x-request-id"][:1]

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_marked)


def create_app(config: SimConfig) -> FastAPI:
    """A FastAPI app serving one simulator."""
    sim = Simulator(config)
    app = FastAPI(title="Dresscode vLLM simulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.simulator = sim
    app.add_middleware(SimulatorHeader)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        error = ApiError(400, f"Invalid request: {exc.errors()[:1]}")
        return JSONResponse(error.envelope(), status_code=400)

    @app.exception_handler(Exception)
    async def crashed(_: Request, exc: Exception) -> JSONResponse:
        error = ApiError(500, f"Simulator error: {type(exc).__name__}")
        return JSONResponse(error.envelope(), status_code=500)

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/version")
    async def version() -> dict[str, str]:
        return {"version": "dresscode-simulator"}

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        try:
            sim.authorize(request)
        except ApiError as exc:
            return JSONResponse(exc.envelope(), status_code=exc.status)
        return JSONResponse(sim.models())

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await sim.chat(request)

    @app.get("/metrics")
    async def metrics() -> Response:
        return PlainTextResponse(
            sim.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.get("/sim/stats")
    async def stats() -> dict[str, Any]:
        return sim.metrics.stats()

    @app.post("/sim/reset", response_model=None)
    async def reset(request: Request) -> dict[str, Any] | JSONResponse:
        refused = control.refusal(request)
        if refused is not None:
            return JSONResponse({"error": {"message": refused[1]}}, status_code=refused[0])
        sim.metrics.reset()
        sim.attempts.reset()
        return sim.metrics.stats()

    # The Open-Meteo-shaped weather stub rides along, so one local process serves the stylist
    # its model and its weather: http://<host>:<port>/weather/v1/forecast and /v1/search.
    app.mount("/weather", create_weather_app(seed=config.seed))
    return app
