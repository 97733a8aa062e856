"""dresscode.llm against the vLLM simulator over real HTTP: timing, retries, limits, repairs.

The simulator runs in a background thread on loopback. Tests assert on behaviour — what the
client returns and what the server saw (``/sim/stats``) — never on wall-clock speed.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from PIL import Image

from dresscode.llm import blueprints
from dresscode.llm.ask import Judgement, ask, image_part, json_schema_format
from dresscode.llm.client import ChatResult, LLMClient
from dresscode.llm.inference_log import inference_record
from dresscode.llm.parsing import FailureClass, Repair, parse_structured
from dresscode.sim.testing import running_simulator

MODEL = "google/gemma-4-26B-A4B-it"
BLUEPRINT = Path(__file__).parents[3] / "include/prompts/wardrobe-digitizer/v1.yaml"
SCHEMA = yaml.safe_load(BLUEPRINT.read_text())["output_schema"]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Forecast for a city and day.",
        "parameters": {
            "type": "object",
            "required": ["city", "days"],
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
        },
    },
}
# Retries in these tests wait at most 20 ms (the simulator's Retry-After: 1 is capped too).
FAST = {"backoff_base_s": 0.005, "backoff_max_s": 0.02}


@pytest.fixture(scope="module")
def sim() -> Iterator[str]:
    with running_simulator(
        max_num_seqs=8, fixed_latency_ms=40, served_model_name=[f"{MODEL}=perfect"]
    ) as base_url:
        yield base_url


@pytest.fixture(autouse=True)
def fresh_stats(sim: str) -> None:
    httpx.post(_root(sim) + "/sim/reset").raise_for_status()


@pytest.fixture(params=["aiohttp", "httpx"])
def transport(request) -> str:
    """Both HTTP stacks the client can run on (the default is aiohttp when installed)."""
    return request.param


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (30, 60, 160)).save(buffer, "JPEG")
    return buffer.getvalue()


def _root(base_url: str) -> str:
    return base_url.removesuffix("/v1")


def stats(base_url: str) -> dict:
    return httpx.get(_root(base_url) + "/sim/stats").json()


def photo_messages(jpeg: bytes) -> list[dict]:
    text = "List the wardrobe items in this photo as JSON."
    return [{"role": "user", "content": [{"type": "text", "text": text}, image_part(jpeg)]}]


def say(text: str = "Say hello as JSON.") -> list[dict]:
    return [{"role": "user", "content": text}]


def fault(name: str, times: int | None = None) -> dict[str, str]:
    headers = {"X-Sim-Fault": name}
    if times is not None:
        headers["X-Sim-Fault-Times"] = str(times)
    return headers


# --- success: answer, timing, usage ---------------------------------------------------------


async def test_photo_answer_streams_with_usage_ttft_and_a_valid_schema(sim, jpeg, transport):
    async with LLMClient(sim, model=MODEL, transport=transport) as client:
        result = await client.chat(
            photo_messages(jpeg), response_format=json_schema_format("wardrobe_items", SCHEMA)
        )
    assert result.ok and result.http_status == 200 and result.attempts == 1
    assert result.model == MODEL and result.finish_reason == "stop"
    assert result.ttft_ms is not None and 0 < result.ttft_ms <= result.latency_ms
    assert result.prompt_tokens > 280  # the image alone is Gemma's 280-token budget
    assert result.completion_tokens > 0
    outcome = parse_structured(result.content, finish_reason=result.finish_reason, schema=SCHEMA)
    assert outcome.usable and outcome.parse_ok and not outcome.repaired
    assert outcome.value["items"]


async def test_tool_call_is_assembled_from_streamed_fragments(sim):
    async with LLMClient(sim, model=MODEL) as client:
        result = await client.chat(
            say("Plan an outfit. city: Lisbon"), tools=[WEATHER_TOOL], tool_choice="required"
        )
    assert result.ok and result.finish_reason == "tool_calls" and result.ttft_ms is not None
    [call] = result.tool_calls
    assert call["name"] == "get_weather" and call["id"]
    assert json.loads(call["arguments"])["city"] == "Lisbon"


async def test_an_answer_nobody_watches_comes_whole_with_the_same_fields(sim, transport):
    # stream=False (the live shadow's calls): one response, the same content, tool calls and
    # usage as streamed; no time to first token.
    async with LLMClient(sim, model=MODEL, transport=transport) as client:
        said = await client.chat(
            say(), response_format=json_schema_format("hello", {"type": "object"}), stream=False
        )
        called = await client.chat(
            say("Plan an outfit. city: Lisbon"),
            tools=[WEATHER_TOOL],
            tool_choice="required",
            stream=False,
        )
        streamed = await client.chat(
            say(), response_format=json_schema_format("hello", {"type": "object"})
        )
    assert said.ok and said.finish_reason == "stop" and said.ttft_ms is None
    assert said.content and json.loads(said.content) == json.loads(streamed.content or "")
    assert said.prompt_tokens == streamed.prompt_tokens and said.completion_tokens
    assert said.latency_ms > 0 and said.model == MODEL
    assert called.ok and called.finish_reason == "tool_calls" and called.content is None
    [call] = called.tool_calls
    assert call["name"] == "get_weather" and call["id"]
    assert json.loads(call["arguments"])["city"] == "Lisbon"
    assert streamed.ttft_ms is not None  # (the streamed call of the same prompt, for contrast)


async def test_text_cannot_be_relayed_from_an_answer_that_is_not_streamed(sim):
    async with LLMClient(sim, model=MODEL) as client:
        with pytest.raises(ValueError, match="needs stream=True"):
            await client.chat(say(), on_content=lambda text, attempt: None, stream=False)


async def test_tool_numbers_sent_as_strings_are_repaired_by_the_parser(sim):
    async with LLMClient(sim, model=MODEL) as client:
        result = await client.chat(
            say("city: Oslo"),
            tools=[WEATHER_TOOL],
            tool_choice="required",
            headers=fault("string_args"),
        )
    raw = result.tool_calls[0]["arguments"]
    assert isinstance(json.loads(raw)["days"], str)
    parsed = parse_structured(
        raw, finish_reason=None, schema=WEATHER_TOOL["function"]["parameters"]
    )
    assert parsed.usable and parsed.repairs == (Repair.STRING_SCALARS,)
    assert isinstance(parsed.value["days"], int)


# --- retries ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class"),
    [("503", "server_error"), ("429", "rate_limited"), ("500", "server_error")],
)
async def test_transient_errors_are_retried_until_success(sim, status, error_class, caplog):
    caplog.set_level(logging.WARNING, logger="dresscode.llm.client")
    async with LLMClient(sim, model=MODEL, **FAST) as client:
        result = await client.chat(say(), headers=fault(status, times=2), request_id="req-123")
    assert result.ok and result.attempts == 3 and result.request_id == "req-123"
    seen = stats(sim)
    assert seen["requests_total"] == 3
    assert seen["requests_by_status"] == {status: 2, "200": 1}
    # The simulator applies the fault to the first 2 requests *with the same X-Request-Id*;
    # success on attempt 3 proves every attempt carried the same id.
    warnings = [r.getMessage() for r in caplog.records if r.name == "dresscode.llm.client"]
    assert len(warnings) == 2
    assert all("req-123" in w and error_class in w and f"HTTP {status}" in w for w in warnings)
    assert "1/5" in warnings[0] and "2/5" in warnings[1]


async def test_gives_up_after_max_attempts_without_raising(sim, transport):
    async with LLMClient(sim, model=MODEL, max_attempts=3, transport=transport, **FAST) as client:
        result = await client.chat(say(), headers=fault("503"))
    assert not result.ok and result.content is None
    assert (result.error_class, result.http_status, result.attempts) == ("server_error", 503, 3)
    assert "overloaded" in result.error_message
    assert stats(sim)["requests_total"] == 3


async def test_retry_after_is_honoured_as_a_floor(sim, caplog):
    caplog.set_level(logging.WARNING, logger="dresscode.llm.client")
    client = LLMClient(sim, model=MODEL, backoff_base_s=0.001, backoff_max_s=5)
    async with client:
        result = await client.chat(say(), headers=fault("429", times=1))
    assert result.ok and result.attempts == 2
    [retry] = [r.getMessage() for r in caplog.records if r.name == "dresscode.llm.client"]
    assert "retrying in 1.00s" in retry  # the simulator's Retry-After


async def test_retry_budget_stops_retries_that_could_not_finish_in_time(sim):
    # Retry-After: 1 (honoured, backoff_max_s=5) does not fit a 0.5 s budget: one attempt only.
    async with LLMClient(sim, model=MODEL, retry_budget_s=0.5, backoff_max_s=5) as client:
        result = await client.chat(say(), headers=fault("503"))
    assert (result.error_class, result.attempts) == ("server_error", 1)
    assert stats(sim)["requests_total"] == 1


async def test_bad_request_is_never_retried(sim, transport):
    async with LLMClient(sim, model=MODEL, transport=transport, **FAST) as client:
        result = await client.chat(say(), temperature=-1.0)
    assert (result.error_class, result.http_status, result.attempts) == ("bad_request", 400, 1)
    assert "temperature" in result.error_message  # vLLM's envelope message, not the SDK's
    assert stats(sim)["requests_total"] == 1


async def test_a_priority_the_endpoint_does_not_schedule_by_is_dropped_once_with_a_warning(
    sim, caplog
):
    caplog.set_level(logging.WARNING, logger="dresscode.llm.client")
    async with LLMClient(sim, model=MODEL, priority=10, **FAST) as client:
        first = await client.chat(say())
        second = await client.chat(say())
    assert first.ok and second.ok and first.attempts == 1 and client.priority == 0
    # the refused attempt and the two calls: the second call was sent without a priority
    assert stats(sim)["requests_total"] == 3
    warnings = [r.getMessage() for r in caplog.records if "priority" in r.getMessage()]
    assert len(warnings) == 1 and "--scheduling-policy priority" in warnings[0]


async def test_a_priority_goes_out_to_an_endpoint_that_schedules_by_it():
    with running_simulator(
        fixed_latency_ms=1, scheduling_policy="priority", served_model_name=[f"{MODEL}=perfect"]
    ) as base_url:
        async with LLMClient(base_url, model=MODEL, priority=10, **FAST) as client:
            result = await client.chat(say())
        assert result.ok and client.priority == 10 and stats(base_url)["requests_total"] == 1


async def test_unknown_model_is_not_found_and_not_retried(sim):
    async with LLMClient(sim, model="no/such-model", **FAST) as client:
        result = await client.chat(say())
    assert (result.error_class, result.http_status, result.attempts) == ("not_found", 404, 1)
    assert stats(sim)["requests_total"] == 1


async def test_timeout_is_classified_and_retried(sim, transport):
    client = LLMClient(sim, model=MODEL, timeout_s=0.3, max_attempts=2, transport=transport, **FAST)
    async with client:
        result = await client.chat(say(), headers=fault("timeout"))
    assert (result.error_class, result.http_status, result.attempts) == ("timeout", 0, 2)
    assert result.latency_ms >= 250  # the last attempt ran until the timeout (0.3 s)


async def test_timeout_then_success(sim):
    async with LLMClient(sim, model=MODEL, timeout_s=0.3, **FAST) as client:
        result = await client.chat(say(), headers=fault("timeout", times=1))
    assert result.ok and result.attempts == 2


async def test_connection_refused_is_classified_and_never_raises(transport):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        url = f"http://127.0.0.1:{port}/v1"
        client = LLMClient(url, model=MODEL, max_attempts=2, transport=transport, **FAST)
        async with client:
            result = await client.chat(say())
    assert (result.error_class, result.http_status, result.attempts) == ("connection", 0, 2)


async def test_auth_failure_is_not_retried_and_the_key_is_never_logged(caplog):
    caplog.set_level(logging.DEBUG)
    with running_simulator(api_key="right-key", fixed_latency_ms=1) as base_url:
        async with LLMClient(base_url, api_key="wrong-key-s3cret", model=MODEL) as client:
            result = await client.chat(say("my private prompt"))
    assert (result.error_class, result.http_status, result.attempts) == ("auth", 401, 1)
    assert "s3cret" not in caplog.text


async def test_retry_logs_never_contain_the_prompt_or_the_image(sim, jpeg, caplog):
    caplog.set_level(logging.WARNING)
    async with LLMClient(sim, model=MODEL, **FAST) as client:
        await client.chat(photo_messages(jpeg), headers=fault("503", times=1))
    assert [r for r in caplog.records if r.name == "dresscode.llm.client"]
    assert "wardrobe items" not in caplog.text and "base64" not in caplog.text


# --- model failure modes end in the right ParseOutcome ----------------------------------


@pytest.mark.parametrize(
    ("name", "finish_reason", "failure", "repairs"),
    [
        ("prefix", "stop", None, (Repair.LEADING_TEXT,)),
        ("fence", "stop", None, (Repair.CODE_FENCE,)),
        ("repeat", "length", FailureClass.REPETITION, (Repair.FIRST_OF_REPEATED,)),
        ("pad", "length", FailureClass.PAD_OUTPUT, (Repair.PAD_TOKENS,)),
        ("malformed", "stop", FailureClass.INVALID_JSON, ()),
    ],
)
async def test_gemma_failure_modes_end_in_the_right_parse_outcome(
    sim, jpeg, name, finish_reason, failure, repairs
):
    async with LLMClient(sim, model=MODEL) as client:
        result = await client.chat(
            photo_messages(jpeg),
            response_format=json_schema_format("wardrobe_items", SCHEMA),
            max_tokens=400,
            headers=fault(name),
        )
    assert result.ok and result.finish_reason == finish_reason
    outcome = parse_structured(result.content, finish_reason=result.finish_reason, schema=SCHEMA)
    assert outcome.failure == failure
    assert outcome.repairs == repairs
    assert outcome.usable == (failure in (None, FailureClass.REPETITION))


# --- concurrency --------------------------------------------------------------------------


async def test_concurrency_bound_is_honoured_and_reached(sim, transport):
    async with LLMClient(sim, model=MODEL, max_concurrency=3, transport=transport) as client:
        results = await asyncio.gather(*(client.chat(say(f"n={i}")) for i in range(20)))
        assert client.in_flight == 0
    assert all(r.ok for r in results)
    assert len({r.request_id for r in results}) == 20
    seen = stats(sim)
    assert seen["requests_total"] == 20
    assert seen["max_running_seen"] == 3  # never more than the bound; and the bound is used
    assert client.max_in_flight_seen == 3


# --- the inference log ------------------------------------------------------------------

LOG_FIELDS = {
    "request_id", "ts", "purpose", "prompt_name", "prompt_version", "model", "ttft_ms",
    "latency_ms", "prompt_tokens", "completion_tokens", "http_status", "finish_reason",
    "parse_ok", "schema_ok", "repaired", "n_items", "tool_calls", "tool_call_ok",
    "hallucinated_items", "error_class", "attempts",
}  # fmt: skip


def _result(**overrides) -> ChatResult:
    base = dict(
        request_id="r1", model=MODEL, content='{"items": []}', finish_reason="stop",
        ttft_ms=12.5, latency_ms=80.0, prompt_tokens=300, completion_tokens=9,
    )  # fmt: skip
    return ChatResult(**{**base, **overrides})


def test_inference_record_has_exactly_the_log_fields_with_stable_types():
    parsed = parse_structured('Here: {"items": []}', finish_reason="stop", schema=SCHEMA)
    row = inference_record(
        _result(), purpose="digitize", prompt_name="wardrobe-digitizer", prompt_version=1,
        parse=parsed, n_items=0,
    )  # fmt: skip
    assert set(row) == LOG_FIELDS
    assert row["prompt_version"] == "1" and row["ts"].endswith("+00:00")
    assert (row["parse_ok"], row["schema_ok"], row["repaired"]) == (False, True, True)
    assert row["error_class"] is None and row["tool_calls"] == 0 and row["attempts"] == 1
    assert json.dumps(row)  # flat and serialisable


def test_inference_record_error_class_is_the_transport_failure_else_the_parse_failure():
    failed = _result(content=None, http_status=503, error_class="server_error", attempts=5)
    row = inference_record(failed, purpose="digitize", prompt_name="p", prompt_version="2")
    assert row["error_class"] == "server_error" and row["parse_ok"] is None
    looped = parse_structured('{"items": []}' * 3, finish_reason="length", schema=SCHEMA)
    row = inference_record(_result(), purpose="d", prompt_name="p", prompt_version=1, parse=looped)
    assert row["error_class"] == "repetition" and type(row["error_class"]) is str


def test_inference_record_counts_tool_calls_and_refuses_to_overwrite_fields():
    called = _result(tool_calls=[{"id": "c1", "name": "get_weather", "arguments": "{}"}])
    row = inference_record(
        called, purpose="outfit", prompt_name="outfit-stylist", prompt_version=3,
        tool_call_ok=True, extra={"user_id": "u1"},
    )  # fmt: skip
    assert row["tool_calls"] == 1 and row["tool_call_ok"] is True and row["user_id"] == "u1"
    with pytest.raises(ValueError, match="model"):
        inference_record(
            called, purpose="o", prompt_name="p", prompt_version=1, extra={"model": "x"}
        )


# --- helpers ------------------------------------------------------------------------------


def test_image_part_is_a_jpeg_data_url(jpeg):
    part = image_part(jpeg)
    assert part["type"] == "image_url"
    assert part["image_url"]["url"].startswith("data:image/jpeg;base64,/9j/")
    with pytest.raises(ValueError):
        image_part(b"\x89PNG\r\n")


def test_json_schema_format_is_strict_and_wants_an_object_root():
    fmt = json_schema_format("wardrobe_items", SCHEMA)
    assert fmt == {
        "type": "json_schema",
        "json_schema": {"name": "wardrobe_items", "schema": SCHEMA, "strict": True},
    }
    with pytest.raises(ValueError):
        json_schema_format("has spaces", SCHEMA)
    with pytest.raises(ValueError):
        json_schema_format("list", {"type": "array"})


# --- one trip: ask ------------------------------------------------------------------------

DIGITIZER = blueprints.resolve("wardrobe-digitizer@1")
VOCABULARIES = dict.fromkeys(
    ("categories", "patterns", "warmth_levels", "formality_levels", "seasons"), "…"
)
PLANNER = blueprints.from_mapping(
    {
        **DIGITIZER.__dict__,
        "name": "outfit-planner",
        "system": "You plan outfits.",
        "user": "Plan an outfit. city: {{city}}",
        "tools": [WEATHER_TOOL],
    },
    "test",
)


async def test_one_ask_renders_calls_parses_and_records_a_photo(sim, jpeg):
    async with LLMClient(sim, model=MODEL) as client:
        answer = await ask(
            client,
            DIGITIZER,
            purpose="digitize",
            schema_name="wardrobe_items",
            values=VOCABULARIES,
            image=jpeg,
            columns={"image_sha256": "abc"},
        )
    system, user = answer.messages
    assert "{{" not in system["content"] and "{{" not in user["content"][1]["text"]
    assert user["content"][0] == image_part(jpeg)  # the photo goes before the text
    assert answer.ok and answer.parse is not None and answer.parse.parse_ok
    assert answer.value["items"] and answer.judged is None  # no judge, nothing judged
    row = answer.record
    assert set(row) == LOG_FIELDS | {"image_sha256"} and row["image_sha256"] == "abc"
    assert (row["purpose"], row["prompt_name"], row["prompt_version"]) == (
        "digitize",
        "wardrobe-digitizer",
        "1",
    )
    assert row["request_id"] == answer.request_id and row["schema_ok"] is True


async def test_the_judge_fills_the_row_fields_only_the_stage_knows(sim, jpeg):
    seen = []

    async def judge(result: ChatResult, parse) -> Judgement[str]:
        seen.append((result.ok, parse.usable))
        return Judgement("kept 3", n_items=3, hallucinated_items=1, columns={"dropped": 2})

    async with LLMClient(sim, model=MODEL) as client:
        answer = await ask(
            client,
            DIGITIZER,
            purpose="digitize",
            schema_name="wardrobe_items",
            values=VOCABULARIES,
            image=jpeg,
            judge=judge,
            columns={"photo": "p1", "dropped": 0},
        )
    assert seen == [(True, True)] and answer.judged == "kept 3"
    row = answer.record
    assert (row["n_items"], row["hallucinated_items"]) == (3, 1)
    assert (row["photo"], row["dropped"]) == ("p1", 2)  # the judge's columns win


async def test_a_turn_of_tool_calls_is_not_parsed_and_the_conversation_goes_on(sim):
    seen = []

    def judge(result: ChatResult, parse) -> Judgement[str]:
        seen.append(parse)
        return Judgement("answered the tools", tool_call_ok=True)

    async with LLMClient(sim, model=MODEL) as client:
        answer = await ask(
            client,
            PLANNER,
            purpose="outfit",
            schema_name="outfits",
            values={"city": "Lisbon"},
            constrained=False,
            judge=judge,
        )
    assert answer.ok and answer.parse is None and seen == [None]
    assert answer.judged == "answered the tools"
    [call] = answer.tool_calls
    assert call["name"] == "get_weather" and json.loads(call["arguments"])["city"] == "Lisbon"
    assert answer.messages[1]["content"] == "Plan an outfit. city: Lisbon"
    row = answer.record
    assert (row["tool_calls"], row["tool_call_ok"], row["parse_ok"]) == (1, True, None)
    assert row["finish_reason"] == "tool_calls" and row["error_class"] is None


async def test_a_failed_call_is_recorded_and_never_judged():
    def judge(result, parse):
        raise AssertionError("a failed call has nothing to judge")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"  # refuses connections
        async with LLMClient(url, model=MODEL, max_attempts=1) as client:
            answer = await ask(
                client,
                DIGITIZER,
                purpose="digitize",
                schema_name="wardrobe_items",
                values=VOCABULARIES,
                judge=judge,
                columns={"dropped_items": 0},
            )
    assert not answer.ok and answer.parse is None and answer.judged is None
    assert answer.value is None and answer.record["error_class"] == "connection"
    assert answer.record["dropped_items"] == 0 and answer.record["http_status"] == 0


async def test_ask_takes_either_template_values_or_a_conversation(jpeg):
    kwargs = {"purpose": "digitize", "schema_name": "wardrobe_items"}
    with pytest.raises(ValueError, match="either values"):
        await ask(None, DIGITIZER, **kwargs)
    with pytest.raises(ValueError, match="either values"):
        await ask(None, DIGITIZER, values=VOCABULARIES, messages=say(), **kwargs)
    with pytest.raises(ValueError, match="image goes with values"):
        await ask(None, DIGITIZER, messages=say(), image=jpeg, **kwargs)
