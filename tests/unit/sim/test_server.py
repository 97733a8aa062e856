"""The vLLM simulator: wire format, answers, faults, latency and capacity — over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import random
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest
import yaml
from openai import AsyncOpenAI
from PIL import Image

from dresscode.sim import answers, faults
from dresscode.sim.__main__ import config_from_args
from dresscode.sim.schema import conform, instance
from dresscode.sim.testing import running_simulator, simulator_process

REPO = Path(__file__).resolve().parents[3]
GEMMA = "google/gemma-4-26B-A4B-it"
DIGITIZER_SCHEMA: dict[str, Any] = yaml.safe_load(
    (REPO / "include/prompts/wardrobe-digitizer/v1.yaml").read_text()
)["output_schema"]
DIGITIZER_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "wardrobe_items", "schema": DIGITIZER_SCHEMA},
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Forecast for a city and date.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "date": {"type": "string", "format": "date"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "date", "days"],
            "additionalProperties": False,
        },
    },
}
OUTFIT_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["outfits"],
    "properties": {
        "outfits": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["items", "reason"],
                "properties": {
                    "items": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["item_id"],
                            "properties": {"item_id": {"type": "string"}},
                        },
                    },
                    "reason": {"type": "string", "maxLength": 200},
                },
            },
        }
    },
}
WARDROBE_PROMPT = """Suggest an outfit.
City: Oslo
date: 2025-11-03
Wardrobe:
- id: it_top category: top warmth: medium
- id: it_jeans category: bottom warmth: medium
- id: it_boots category: footwear
- id: it_raincoat category: outerwear water_resistant: true
"""
OWNED = {"it_top", "it_jeans", "it_boots", "it_raincoat"}


# -- helpers -------------------------------------------------------------------------------


def jpeg(seed: int, *, dark: bool = False, size: tuple[int, int] = (64, 48)) -> bytes:
    """A small, unique noise photo; dark ones have a mean brightness far below 35/255."""
    raw = random.Random(seed).randbytes(size[0] * size[1] * 3)
    pixels = bytes(b % 30 for b in raw) if dark else bytes(90 + b % 160 for b in raw)
    out = io.BytesIO()
    Image.frombytes("RGB", size, pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def photo_message(
    data: bytes, text: str = "List the wardrobe items in this photo."
) -> list[dict[str, Any]]:
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
    ]


def root(base_url: str) -> str:
    return base_url.removesuffix("/v1")


def stats(base_url: str) -> dict[str, Any]:
    return httpx.get(f"{root(base_url)}/sim/stats").json()


def post(
    base_url: str, body: Any, headers: dict[str, str] | None = None, **kwargs: Any
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{base_url}/chat/completions",
        content=content,
        headers={"Content-Type": "application/json", **(headers or {})},
        timeout=kwargs.pop("timeout", 10),
        **kwargs,
    )


def chat_body(model: str = GEMMA, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hello"}], **extra}


def assert_envelope(response: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == error_type
    assert error["code"] == status
    assert error["message"] and "Traceback" not in error["message"]
    assert "param" in error
    return error


@pytest.fixture(scope="module")
def script_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "script.jsonl"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def sim(script_path: Path) -> Iterator[str]:
    """One shared simulator: a perfect Gemma, a sloppy and a faithful alias; 20 ms per request."""
    with running_simulator(
        fixed_latency_ms=20,
        ttft_ms=5,
        served_model_name=[f"{GEMMA}=perfect", "gemma-sloppy=sloppy", "gemma-faithful=faithful"],
        scripts=[script_path],
    ) as url:
        yield url


@pytest.fixture
async def client(sim: str) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=sim, api_key="unused", max_retries=0) as sdk:
        yield sdk


# -- discovery -----------------------------------------------------------------------------


async def test_models_listing_says_it_is_a_simulator(client: AsyncOpenAI, sim: str) -> None:
    models = await client.models.list()
    ids = {m.id for m in models.data}
    assert ids == {GEMMA, "gemma-sloppy", "gemma-faithful"}
    first = models.data[0].model_dump()
    assert first["owned_by"] == "dresscode-simulator"
    assert first["simulator"] is True
    assert first["max_model_len"] == 32768
    health = httpx.get(f"{root(sim)}/health")
    assert health.status_code == 200 and health.content == b""
    assert health.headers["X-Dresscode-Simulator"] == "true"


# -- completions ---------------------------------------------------------------------------


async def test_non_streaming_completion_has_openai_shape(client: AsyncOpenAI) -> None:
    response = await client.chat.completions.create(
        model=GEMMA, messages=[{"role": "user", "content": "Hi"}]
    )
    assert response.id.startswith("chatcmpl-")
    assert response.choices[0].message.role == "assistant"
    assert "simulat" in response.choices[0].message.content
    assert response.choices[0].finish_reason == "stop"
    usage = response.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.completion_tokens >= 1


async def test_stream_sends_usage_last_and_records_ttft(client: AsyncOpenAI, sim: str) -> None:
    stream = await client.chat.completions.create(
        model=GEMMA,
        messages=photo_message(jpeg(1)),
        response_format=DIGITIZER_FORMAT,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert (
        sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1
    )  # spread over chunks
    jsonschema.validate(json.loads(content), DIGITIZER_SCHEMA)
    metrics = httpx.get(f"{root(sim)}/metrics").text
    ttft_sum = next(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith(f'vllm:time_to_first_token_seconds_sum{{model_name="{GEMMA}"}}')
    )
    assert ttft_sum > 0


async def test_digitizer_answers_validate_against_the_prompt_schema(client: AsyncOpenAI) -> None:
    for seed in range(5):
        response = await client.chat.completions.create(
            model=GEMMA, messages=photo_message(jpeg(100 + seed)), response_format=DIGITIZER_FORMAT
        )
        answer = json.loads(response.choices[0].message.content)
        jsonschema.validate(answer, DIGITIZER_SCHEMA)
        assert 1 <= len(answer["items"]) <= 3


async def test_vocabulary_comes_from_the_request_schema(client: AsyncOpenAI) -> None:
    schema = json.loads(json.dumps(DIGITIZER_SCHEMA))
    schema["properties"]["items"]["items"]["properties"]["category"]["enum"] = ["garment", "shoe"]
    response = await client.chat.completions.create(
        model=GEMMA,
        messages=photo_message(jpeg(7)),
        response_format={"type": "json_schema", "json_schema": {"name": "v2", "schema": schema}},
    )
    answer = json.loads(response.choices[0].message.content)
    jsonschema.validate(answer, schema)
    assert {item["category"] for item in answer["items"]} <= {"garment", "shoe"}


async def test_scripted_photo_returns_the_golden_items(
    client: AsyncOpenAI, script_path: Path
) -> None:
    photo = jpeg(42)
    golden = [
        {
            "category": "outerwear",
            "subcategory": "trench coat",
            "colors": [{"name": "beige", "hex": "#d8c8a0"}],
            "pattern": "solid",
            "material": "cotton",
            "warmth": "medium",
            "formality": "smart_casual",
            "seasons": ["spring", "autumn"],
            "water_resistant": True,
            "description": "A beige trench coat.",
        }
    ]
    with script_path.open("a") as script:  # appended while the simulator runs, like the seeder
        script.write(
            json.dumps({"image_sha256": hashlib.sha256(photo).hexdigest(), "items": golden}) + "\n"
        )
    response = await client.chat.completions.create(
        model=GEMMA, messages=photo_message(photo), response_format=DIGITIZER_FORMAT
    )
    assert json.loads(response.choices[0].message.content) == {"items": golden}


async def test_dark_scripted_photos_lose_most_of_their_true_items(
    client: AsyncOpenAI, script_path: Path
) -> None:
    """A real vision model misses garments in a dark photo even when the labels say they are there."""
    item = {
        "category": "top",
        "subcategory": "t-shirt",
        "colors": [{"name": "white", "hex": "#ffffff"}],
        "pattern": "solid",
        "material": "cotton",
        "warmth": "light",
        "formality": "casual",
        "seasons": ["summer"],
        "water_resistant": False,
        "description": "A white t-shirt.",
    }
    photos = {"bright": [jpeg(600 + i) for i in range(10)], "dark": []}
    photos["dark"] = [jpeg(600 + i, dark=True) for i in range(10)]
    with script_path.open("a") as script:
        for photo in photos["bright"] + photos["dark"]:
            line = {"image_sha256": hashlib.sha256(photo).hexdigest(), "items": [item] * 4}
            script.write(json.dumps(line) + "\n")
    seen = {}
    for kind, batch in photos.items():
        seen[kind] = 0
        for photo in batch:
            r = await client.chat.completions.create(
                model=GEMMA, messages=photo_message(photo), response_format=DIGITIZER_FORMAT
            )
            seen[kind] += len(json.loads(r.choices[0].message.content)["items"])
    assert seen["bright"] == 40  # every labelled item, on every bright photo
    assert seen["dark"] < 40 * 0.6  # SEEN_ON_DARK = 0.3 of them, give or take the dice


async def test_sloppy_profile_gets_scripted_photos_wrong_sometimes(
    client: AsyncOpenAI, script_path: Path
) -> None:
    item = {
        "category": "top",
        "subcategory": "shirt",
        "colors": [{"name": "white", "hex": "#ffffff"}],
        "pattern": "solid",
        "material": "cotton",
        "warmth": "light",
        "formality": "business",
        "seasons": ["summer"],
        "water_resistant": False,
        "description": "A white shirt.",
    }
    photos = [jpeg(500 + i) for i in range(12)]
    with script_path.open("a") as script:
        for p in photos:
            script.write(
                json.dumps({"image_sha256": hashlib.sha256(p).hexdigest(), "items": [item, item]})
                + "\n"
            )
    exact, sloppy = 0, 0
    for p in photos:
        for model in (GEMMA, "gemma-sloppy"):
            r = await client.chat.completions.create(
                model=model, messages=photo_message(p), response_format=DIGITIZER_FORMAT
            )
            right = r.choices[0].message.content == json.dumps({"items": [item, item]})
            exact += right and model == GEMMA
            sloppy += (not right) and model == "gemma-sloppy"
    assert exact == len(photos)
    assert sloppy > 0


async def test_unknown_photo_gets_the_same_answer_every_time(client: AsyncOpenAI) -> None:
    photo = jpeg(9)
    first, second = [
        (
            await client.chat.completions.create(
                model=GEMMA, messages=photo_message(photo), response_format=DIGITIZER_FORMAT
            )
        )
        .choices[0]
        .message.content
        for _ in range(2)
    ]
    assert first == second


async def test_dark_photos_yield_fewer_items(client: AsyncOpenAI) -> None:
    async def count(data: bytes) -> int:
        r = await client.chat.completions.create(
            model=GEMMA, messages=photo_message(data), response_format=DIGITIZER_FORMAT
        )
        return len(json.loads(r.choices[0].message.content)["items"])

    dark = [await count(jpeg(300 + i, dark=True)) for i in range(8)]
    bright = [await count(jpeg(300 + i)) for i in range(8)]
    assert sum(dark) < sum(bright)
    assert dark.count(0) >= 3


async def test_other_schemas_get_a_minimal_valid_instance(client: AsyncOpenAI) -> None:
    schema = {
        "type": "object",
        "required": ["score", "labels", "verdict"],
        "properties": {
            "score": {"type": "number", "minimum": 0.5, "maximum": 1},
            "labels": {"type": "array", "minItems": 2, "items": {"type": "string"}},
            "verdict": {"enum": ["pass", "fail"]},
        },
    }
    r = await client.chat.completions.create(
        model=GEMMA,
        messages=[{"role": "user", "content": "judge"}],
        extra_body={"structured_outputs": {"json": schema}},
    )
    jsonschema.validate(json.loads(r.choices[0].message.content), schema)
    r = await client.chat.completions.create(
        model=GEMMA,
        messages=[{"role": "user", "content": "judge"}],
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(r.choices[0].message.content), dict)


# -- the stylist: tools --------------------------------------------------------------------


async def test_tool_call_round_trip_ends_in_an_outfit_of_owned_items(client: AsyncOpenAI) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": WARDROBE_PROMPT}]
    fmt = {"type": "json_schema", "json_schema": {"name": "outfits", "schema": OUTFIT_SCHEMA}}
    first = await client.chat.completions.create(
        model=GEMMA, messages=messages, tools=[WEATHER_TOOL], response_format=fmt
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    args = json.loads(call.function.arguments)
    assert call.function.name == "get_weather" and call.id
    assert args == {"city": "Oslo", "date": "2025-11-03", "days": 1}

    messages.append(choice.message.model_dump(exclude_none=True))
    forecast = {"temperature_c": 4, "precipitation_probability": 0.8}
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(forecast)})
    final = await client.chat.completions.create(
        model=GEMMA, messages=messages, tools=[WEATHER_TOOL], response_format=fmt
    )
    assert final.choices[0].finish_reason == "stop"
    answer = json.loads(final.choices[0].message.content)
    jsonschema.validate(answer, OUTFIT_SCHEMA)
    ids = {i["item_id"] for outfit in answer["outfits"] for i in outfit["items"]}
    assert ids == OWNED  # cold and rainy: top, jeans, boots and the raincoat


async def test_streamed_tool_call_parses_with_the_sdk(client: AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model=GEMMA,
        messages=[{"role": "user", "content": WARDROBE_PROMPT}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
    )
    name, arguments, reasons = "", "", []
    async for chunk in stream:
        for delta_call in chunk.choices[0].delta.tool_calls or []:
            name += delta_call.function.name or ""
            arguments += delta_call.function.arguments or ""
        reasons.append(chunk.choices[0].finish_reason)
    assert name == "get_weather"
    assert json.loads(arguments)["city"] == "Oslo"
    assert reasons[-1] == "tool_calls"


async def test_tool_choice_none_answers_without_calling(client: AsyncOpenAI) -> None:
    r = await client.chat.completions.create(
        model=GEMMA,
        messages=[{"role": "user", "content": WARDROBE_PROMPT}],
        tools=[WEATHER_TOOL],
        tool_choice="none",
    )
    assert not r.choices[0].message.tool_calls and r.choices[0].finish_reason == "stop"


async def test_sloppy_stylist_sometimes_names_items_the_user_does_not_own(
    client: AsyncOpenAI,
) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "outfits", "schema": OUTFIT_SCHEMA}}
    ghosts = {"gemma-sloppy": 0, GEMMA: 0}
    for day in range(1, 13):
        tool_answer = {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature_c": 20}'}
        messages = [{"role": "user", "content": f"{WARDROBE_PROMPT}\nday {day}"}, tool_answer]
        for model in ghosts:
            r = await client.chat.completions.create(
                model=model, messages=messages, tools=[WEATHER_TOOL], response_format=fmt
            )
            content = r.choices[0].message.content
            ghosts[model] += "item_hallucinated_" in content
    assert ghosts[GEMMA] == 0
    assert ghosts["gemma-sloppy"] > 0


# -- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [
        ("503", 503, "ServiceUnavailableError"),
        ("429", 429, "RateLimitError"),
        ("500", 500, "InternalServerError"),
    ],
)
def test_error_fault_headers_answer_in_the_vllm_envelope(
    sim: str, fault: str, status: int, error_type: str
) -> None:
    response = post(sim, chat_body(), {"X-Sim-Fault": fault})
    assert_envelope(response, status, error_type)
    if status == 429:
        assert response.headers["Retry-After"]


def test_fault_times_lets_retries_with_the_same_request_id_succeed(sim: str) -> None:
    headers = {"X-Sim-Fault": "503", "X-Sim-Fault-Times": "2", "X-Request-Id": "retry-me"}
    assert [post(sim, chat_body(), headers).status_code for _ in range(3)] == [503, 503, 200]
    star = {"X-Sim-Fault": "429*1", "X-Request-Id": "retry-star"}
    assert [post(sim, chat_body(), star).status_code for _ in range(2)] == [429, 200]


def test_fault_rates_fail_requests_without_any_header() -> None:
    with running_simulator(fault_rate_429=1.0, fixed_latency_ms=1) as url:
        assert_envelope(post(url, chat_body()), 429, "RateLimitError")
    with running_simulator(fault_rate_5xx=1.0, fixed_latency_ms=1) as url:
        assert {post(url, chat_body()).status_code for _ in range(6)} <= {500, 503}


def test_unknown_fault_name_is_a_400(sim: str) -> None:
    assert_envelope(post(sim, chat_body(), {"X-Sim-Fault": "meltdown"}), 400, "BadRequestError")


def _digitize(sim: str, fault: str, **extra: Any) -> dict[str, Any]:
    body = chat_body(messages=photo_message(jpeg(11)), response_format=DIGITIZER_FORMAT, **extra)
    response = post(sim, body, {"X-Sim-Fault": fault})
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]


def test_prefix_fault_puts_chatter_before_the_json(sim: str) -> None:
    content = _digitize(sim, "prefix")["message"]["content"]
    assert content.startswith(faults.PREFIX_TEXT)
    jsonschema.validate(json.loads(content.removeprefix(faults.PREFIX_TEXT)), DIGITIZER_SCHEMA)


def test_fence_fault_wraps_the_json_in_markdown(sim: str) -> None:
    content = _digitize(sim, "fence")["message"]["content"]
    assert content.startswith("```json\n") and content.endswith("\n```")
    json.loads(content.removeprefix("```json\n").removesuffix("\n```"))


def test_repeat_fault_loops_until_max_tokens(sim: str) -> None:
    choice = _digitize(sim, "repeat", max_tokens=300)
    assert choice["finish_reason"] == "length"
    content = choice["message"]["content"]
    first = json.JSONDecoder().raw_decode(content)[0]
    assert content.count(json.dumps(first)) >= 2


def test_malformed_fault_returns_invalid_json(sim: str) -> None:
    content = _digitize(sim, "malformed")["message"]["content"]
    with pytest.raises(json.JSONDecodeError):
        json.loads(content)


def test_pad_fault_returns_pad_tokens(sim: str) -> None:
    choice = _digitize(sim, "pad", max_tokens=50)
    assert choice["message"]["content"].replace("<pad>", "") == ""
    assert choice["finish_reason"] == "length"


def test_string_args_fault_quotes_numbers_in_tool_calls(sim: str) -> None:
    body = chat_body(messages=[{"role": "user", "content": WARDROBE_PROMPT}], tools=[WEATHER_TOOL])
    response = post(sim, body, {"X-Sim-Fault": "string_args"})
    arguments = json.loads(
        response.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    )
    assert arguments["days"] == "1"


def test_timeout_fault_hangs_and_is_abandoned_when_the_client_leaves(sim: str) -> None:
    with pytest.raises(httpx.ReadTimeout):
        post(sim, chat_body(), {"X-Sim-Fault": "timeout"}, timeout=0.3)
    assert post(sim, chat_body()).status_code == 200  # the server is not stuck


def test_max_tokens_truncates_with_finish_reason_length(sim: str) -> None:
    choice = post(
        sim,
        chat_body(messages=photo_message(jpeg(12)), response_format=DIGITIZER_FORMAT, max_tokens=5),
    ).json()
    assert choice["choices"][0]["finish_reason"] == "length"
    assert choice["usage"]["completion_tokens"] == 5


# -- request errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        ({"model": GEMMA}, "messages"),
        ({"model": GEMMA, "messages": []}, "messages"),
        ({"model": GEMMA, "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"model": GEMMA, "messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
        (chat_body(max_tokens=0), "max_tokens"),
        (chat_body(stream="yes"), "stream"),
        (chat_body(tool_choice="required"), "tool_choice"),
        (chat_body(priority="high"), "priority"),
    ],
)
def test_malformed_requests_get_a_400_envelope(sim: str, body: Any, param: str | None) -> None:
    error = assert_envelope(post(sim, body), 400, "BadRequestError")
    assert error["param"] == param


@pytest.mark.parametrize(
    "url",
    [
        "data:image/jpeg;base64,!!!not-base64!!!",
        "data:image/jpeg;base64," + base64.b64encode(b"definitely not a jpeg").decode(),
        "https://example.com/photo.jpg",
    ],
)
def test_bad_images_get_a_400_envelope(sim: str, url: str) -> None:
    content = [{"type": "image_url", "image_url": {"url": url}}]
    body = {"model": GEMMA, "messages": [{"role": "user", "content": content}]}
    error = assert_envelope(post(sim, body), 400, "BadRequestError")
    assert error["param"] == "messages[0].content[0].image_url"


async def test_unknown_model_is_a_404(client: AsyncOpenAI, sim: str) -> None:
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(
            model="gpt-5", messages=[{"role": "user", "content": "hi"}]
        )
    assert_envelope(post(sim, chat_body(model="gpt-5")), 404, "NotFoundError")


def test_context_overflow_is_a_400_with_vllms_wording(sim: str) -> None:
    long = {"role": "user", "content": "x" * 140_000}
    error = assert_envelope(post(sim, chat_body(messages=[long])), 400, "BadRequestError")
    assert "maximum context length is 32768 tokens" in error["message"]
    error = assert_envelope(
        post(sim, chat_body(max_tokens=32_000, messages=[{"role": "user", "content": "y" * 4000}])),
        400,
        "BadRequestError",
    )
    assert "maximum context length is 32768 tokens" in error["message"]


def test_api_key_is_required_when_configured() -> None:
    with running_simulator(api_key="s3cret", fixed_latency_ms=1) as url:
        assert_envelope(post(url, chat_body()), 401, "AuthenticationError")
        assert_envelope(
            post(url, chat_body(), {"Authorization": "Bearer wrong"}), 401, "AuthenticationError"
        )
        assert httpx.get(f"{url}/models").status_code == 401
        assert post(url, chat_body(), {"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(f"{root(url)}/health").status_code == 200  # health stays open, as in vLLM


# -- capacity ------------------------------------------------------------------------------


async def test_concurrency_is_bounded_by_max_num_seqs() -> None:
    with running_simulator(max_num_seqs=4, fixed_latency_ms=200) as url:
        client = AsyncOpenAI(base_url=url, api_key="unused", max_retries=0)
        replies = await asyncio.gather(
            *(
                client.chat.completions.create(
                    model=GEMMA, messages=[{"role": "user", "content": f"hi {i}"}]
                )
                for i in range(12)
            )
        )
        assert len(replies) == 12
        seen = stats(url)
        metrics = httpx.get(f"{root(url)}/metrics").text
    assert seen["max_running_seen"] == 4
    assert seen["max_waiting_seen"] > 0
    assert "sim:max_num_requests_running 4.0" in metrics
    assert seen["requests_total"] == 12 and seen["busy_slot_seconds"] > 0


def test_a_priority_needs_the_priority_policy_as_in_vllm(sim: str) -> None:
    error = assert_envelope(post(sim, chat_body(priority=10)), 400, "BadRequestError")
    assert error["message"] == "Got priority 10 but Priority scheduling is not enabled."
    assert post(sim, chat_body(priority=0)).status_code == 200


async def test_the_priority_policy_serves_the_queue_lower_priority_first() -> None:
    with running_simulator(
        max_num_seqs=1, fixed_latency_ms=300, ttft_ms=1, scheduling_policy="priority"
    ) as url:
        finished: list[str] = []
        async with httpx.AsyncClient(timeout=30) as http:

            async def ask(name: str, priority: int, after_s: float) -> None:
                await asyncio.sleep(after_s)
                body = chat_body(priority=priority, messages=[{"role": "user", "content": name}])
                response = await http.post(f"{url}/chat/completions", json=body)
                assert response.status_code == 200
                finished.append(name)

            # "first" holds the one slot; the batch job queues before the user, who goes first.
            await asyncio.gather(
                ask("first", 0, 0),
                ask("evaluation-1", 10, 0.05),
                ask("evaluation-2", 10, 0.06),
                ask("user", 0, 0.1),
            )
    assert finished == ["first", "user", "evaluation-1", "evaluation-2"]


async def test_an_urgent_request_preempts_a_running_batch_call_which_then_finishes() -> None:
    with running_simulator(
        max_num_seqs=1, fixed_latency_ms=600, ttft_ms=50, scheduling_policy="priority"
    ) as url:
        finished: list[str] = []
        async with httpx.AsyncClient(timeout=30) as http:

            async def evaluation() -> None:  # streamed: preempted between its chunks
                body = chat_body(priority=10, stream=True)
                async with http.stream("POST", f"{url}/chat/completions", json=body) as response:
                    lines = [line async for line in response.aiter_lines() if line]
                assert response.status_code == 200 and lines[-1] == "data: [DONE]"
                finished.append("evaluation")

            async def user() -> None:
                await asyncio.sleep(0.2)
                response = await http.post(f"{url}/chat/completions", json=chat_body())
                assert response.status_code == 200
                finished.append("user")

            await asyncio.gather(evaluation(), user())
        seen = stats(url)
        metrics = httpx.get(f"{root(url)}/metrics").text
    assert finished == ["user", "evaluation"]
    assert seen["preemptions_total"] == 1 and seen["running"] == seen["waiting"] == 0
    assert f'vllm:num_preemptions_total{{model_name="{GEMMA}"}} 1' in metrics
    # the preempted call held its slot 0.2 s, waited 0.6 s, then recomputed and finished
    assert seen["busy_slot_seconds"] >= 0.6 + 0.6


async def test_full_queue_rejects_with_503() -> None:
    with running_simulator(max_num_seqs=1, max_queue=1, fixed_latency_ms=400) as url:
        async with httpx.AsyncClient(timeout=10) as http:
            responses = await asyncio.gather(
                *(http.post(f"{url}/chat/completions", json=chat_body()) for _ in range(5))
            )
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) >= 2 and 503 in codes
    rejected = next(r for r in responses if r.status_code == 503)
    assert_envelope(rejected, 503, "ServiceUnavailableError")


async def test_clients_that_hang_up_free_their_slot() -> None:
    def wait_until_idle(url: str) -> dict[str, Any]:
        for _ in range(200):
            if (seen := stats(url))["running"] == 0:
                return seen
            time.sleep(0.01)
        return seen

    with running_simulator(max_num_seqs=1, fixed_latency_ms=5000, ttft_ms=10) as url:
        with pytest.raises(httpx.ReadTimeout):
            post(url, chat_body(), timeout=0.2)
        assert wait_until_idle(url)["running"] == 0
        client = AsyncOpenAI(base_url=url, api_key="unused", max_retries=0)
        stream = await client.chat.completions.create(
            model=GEMMA, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        first = await anext(aiter(stream))
        assert first.choices[0].delta.role == "assistant"
        await stream.close()
        seen = wait_until_idle(url)
    assert seen["running"] == 0
    assert seen["requests_by_status"] == {"200": 1, "499": 1}


def test_reset_zeroes_the_counters(sim: str) -> None:
    post(sim, chat_body())
    assert stats(sim)["requests_total"] > 0
    after = httpx.post(f"{root(sim)}/sim/reset").json()
    assert after["requests_total"] == 0 and after["busy_slot_seconds"] == 0
    assert stats(sim)["max_num_seqs"] == 16


# -- pure parts and entry points -----------------------------------------------------------


@pytest.mark.parametrize(
    "schema",
    [
        DIGITIZER_SCHEMA,
        OUTFIT_SCHEMA,
        {
            "type": "object",
            "properties": {"a": {"$ref": "#/$defs/A"}},
            "required": ["a"],
            "$defs": {"A": {"type": "string", "pattern": "^#[0-9a-f]{6}$"}},
        },
        {"type": "array", "minItems": 2, "uniqueItems": True, "items": {"enum": ["x", "y", "z"]}},
        {"anyOf": [{"type": "integer", "exclusiveMinimum": 3}, {"type": "null"}]},
    ],
)
def test_instance_and_conform_produce_valid_values(schema: dict[str, Any]) -> None:
    jsonschema.validate(instance(schema), schema)
    jsonschema.validate(conform({"items": [{"category": "spaceship", "extra": 1}]}, schema), schema)


def test_wardrobe_parser_reads_lines_and_json() -> None:
    text = 'Wardrobe:\n- id: a1 category: top\n[{"item_id": "b2", "category": "bottom", "colors": [{"name": "red"}]}]'
    items = {i["item_id"]: i["category"] for i in answers.parse_wardrobe(text)}
    assert items == {"a1": "top", "b2": "bottom"}


def test_cli_options_fall_back_to_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRESSCODE_SIM_MAX_NUM_SEQS", "64")
    monkeypatch.setenv("DRESSCODE_SIM_SERVED_MODEL_NAME", "a=sloppy,b")
    config, _ = config_from_args(["--port", "9001", "--fixed-latency-ms", "400"])
    assert (config.port, config.max_num_seqs, config.fixed_latency_ms) == (9001, 64, 400.0)
    assert [(m.name, m.profile.name) for m in config.served_models] == [
        ("a", "sloppy"),
        ("b", "faithful"),
    ]
    config, _ = config_from_args(["--max-num-seqs", "2"])
    assert config.max_num_seqs == 2  # the command line beats the environment


def test_simulator_process_serves_over_http() -> None:
    with simulator_process("--fixed-latency-ms", "1", "--served-model-name", "m=perfect") as url:
        assert httpx.get(f"{url}/models").json()["data"][0]["id"] == "m"
        assert post(url, chat_body(model="m")).status_code == 200


async def test_script_pins_content_faults_to_one_photo(
    client: AsyncOpenAI, script_path: Path
) -> None:
    chatty, free_form, other = jpeg(71), jpeg(72), jpeg(73)
    bad_item = {"category": "spacesuit", "subcategory": "suit"}
    with script_path.open("a") as script:
        for photo, items, faults in (
            (chatty, [], ["prefix"]),
            (free_form, [bad_item], ["unconstrained"]),
        ):
            line = {
                "image_sha256": hashlib.sha256(photo).hexdigest(),
                "items": items,
                "faults": faults,
            }
            script.write(json.dumps(line) + "\n")

    async def content(photo: bytes) -> str:
        response = await client.chat.completions.create(
            model=GEMMA, messages=photo_message(photo), response_format=DIGITIZER_FORMAT
        )
        return response.choices[0].message.content

    chatty_text = await content(chatty)
    assert not chatty_text.startswith("{") and chatty_text.endswith('{"items": []}')
    assert json.loads(await content(free_form)) == {"items": [bad_item]}
    assert (await content(other)).startswith("{")  # other photos are unaffected
