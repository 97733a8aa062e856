"""Digitize: one normalized photo -> validated wardrobe items, through the model endpoint.

The blueprint gives the prompt, the sampling settings and the output schema. The answer goes
through ``parsing.parse_structured`` (strict JSON, counted repairs, schema validation). Items
that break the schema's closed vocabularies are dropped one by one and counted; the rest of
the photo's items are kept. Item ids are deterministic (user, image hash, index, prompt version), so
re-running never duplicates items.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dresscode.core import prompts
from dresscode.llm import blueprints
from dresscode.llm.blueprints import Blueprint

if TYPE_CHECKING:
    from dresscode.core.config import LLMEndpoint, Settings
    from dresscode.llm.client import LLMClient

log = logging.getLogger(__name__)

PROMPT_NAME = prompts.DIGITIZER.name
PURPOSE = prompts.DIGITIZER.purpose


@dataclass(frozen=True)
class Digitized:
    """What became of one photo: its valid items and the inference-log row of the call."""

    image_sha256: str
    items: list[dict[str, Any]]
    record: dict[str, Any]
    dropped_items: int

    @property
    def ok(self) -> bool:
        """True when the answer gave items (possibly none, possibly with some dropped)."""
        return self.record["n_items"] is not None


def vocabularies(schema: dict[str, Any]) -> dict[str, str]:
    """Template values: the closed vocabularies of the item schema, as the prompt shows them."""
    item = ("items",)
    return {
        "categories": ", ".join(blueprints.enum_of(schema, *item, "category")),
        "patterns": ", ".join(blueprints.enum_of(schema, *item, "pattern")),
        "warmth_levels": ", ".join(blueprints.enum_of(schema, *item, "warmth")),
        "formality_levels": ", ".join(blueprints.enum_of(schema, *item, "formality")),
        "seasons": ", ".join(blueprints.enum_of(schema, *item, "seasons")),
    }


def build_messages(blueprint: Blueprint, jpeg: bytes) -> list[dict[str, Any]]:
    from dresscode.llm.client import image_part

    values = vocabularies(blueprint.output_schema)
    return [
        {"role": "system", "content": blueprint.render(blueprint.system, values)},
        {
            "role": "user",
            "content": [
                image_part(jpeg),
                {"type": "text", "text": blueprint.render(blueprint.user, values)},
            ],
        },
    ]


def fit_to_blueprint(jpeg: bytes, blueprint: Blueprint) -> bytes:
    """The photo as the blueprint wants it: stored images are downscaled further when the
    blueprint's ``image_long_edge`` is smaller (a prompt version may trade detail for tokens)."""
    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as im:  # reads the header only
        if max(im.size) <= blueprint.image_long_edge:
            return jpeg
    from dresscode.ingest import photos as images

    return images.normalize(jpeg, long_edge=blueprint.image_long_edge).jpeg


def item_id(user_id: str, image_sha256: str, index: int, blueprint: Blueprint) -> str:
    """Deterministic: the same user, photo, position and prompt version give the same id."""
    return hashlib.sha256(f"{user_id}:{image_sha256}:{index}:{blueprint.ref}".encode()).hexdigest()[
        :24
    ]


def salvage_items(value: Any, schema: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Keep the items that satisfy the item schema; count the others.

    The whole answer failed validation; if its shape is still ``{"items": [...]}``, one item
    with an unknown category should not throw away the photo's other items.
    """
    from jsonschema import Draft202012Validator

    if not isinstance(value, dict) or not isinstance(value.get("items"), list):
        return [], 0
    validator = Draft202012Validator(schema["properties"]["items"]["items"])
    kept = [item for item in value["items"] if validator.is_valid(item)]
    return kept, len(value["items"]) - len(kept)


async def digitize_photo(
    client: LLMClient, blueprint: Blueprint, image_sha256: str, jpeg: bytes
) -> Digitized:
    """One model call for one photo; never raises for model or network failures."""
    from dresscode.llm.client import inference_record, json_schema_format
    from dresscode.llm.parsing import parse_structured

    result = await client.chat(
        build_messages(blueprint, fit_to_blueprint(jpeg, blueprint)),
        response_format=json_schema_format("wardrobe_items", blueprint.output_schema),
        temperature=blueprint.temperature,
        max_tokens=blueprint.max_tokens,
        model=blueprint.model,
    )
    items: list[dict[str, Any]] = []
    dropped = 0
    parse = None
    if result.ok:
        parse = parse_structured(
            result.content, finish_reason=result.finish_reason, schema=blueprint.output_schema
        )
        if parse.usable:
            items = list(parse.value["items"])
        elif parse.value is not None:
            items, dropped = salvage_items(parse.value, blueprint.output_schema)
        if not parse.usable:
            log.warning(
                "photo %s: %s (%s)%s",
                image_sha256[:12],
                parse.outcome,
                "; ".join(parse.errors[:2]),
                f", kept {len(items)} valid items, dropped {dropped}" if dropped else "",
            )
    else:
        log.warning(
            "photo %s: model call failed after %d attempts: %s %s",
            image_sha256[:12],
            result.attempts,
            result.error_class,
            result.error_message,
        )
    salvaged = parse is not None and not parse.usable and (items or dropped)
    record = inference_record(
        result,
        purpose=PURPOSE,
        prompt_name=blueprint.name,
        prompt_version=blueprint.version,
        parse=parse,
        n_items=len(items) if (parse is not None and (parse.usable or salvaged)) else None,
        extra={"image_sha256": image_sha256, "dropped_items": dropped},
    )
    return Digitized(image_sha256, items, record, dropped)


async def digitize_many(
    client: LLMClient, blueprint: Blueprint, photos: Sequence[tuple[str, bytes]]
) -> list[Digitized]:
    """Digitize photos concurrently (the client's semaphore bounds the calls in flight)."""
    return list(
        await asyncio.gather(
            *(digitize_photo(client, blueprint, sha, jpeg) for sha, jpeg in photos)
        )
    )


def make_client(endpoint: LLMEndpoint, settings: Settings) -> LLMClient:
    from dresscode.llm.client import LLMClient

    # httpx (httpx2 under openai 3) logs every request at INFO: thousands of lines per batch that bury the progress lines.
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return LLMClient(
        endpoint.base_url,
        api_key=endpoint.api_key,
        model=endpoint.model,
        max_concurrency=endpoint.max_concurrency,
        timeout_s=endpoint.timeout_s,
        max_attempts=settings.llm_max_attempts,
        retry_budget_s=settings.llm_retry_budget_s,
    )


def current_blueprint(ref: str = PROMPT_NAME) -> Blueprint:
    """A blueprint from git: ``name@version``, or the newest version (with a warning)."""
    blueprint = blueprints.resolve(ref)
    if "@" not in ref:
        log.warning(
            "Serving the newest blueprint in git, %s, not the registry's production", blueprint.ref
        )
    return blueprint


async def digitize_file(path: Path, blueprint_ref: str = PROMPT_NAME) -> list[dict[str, Any]]:
    """The CLI's ``dresscode digitize PHOTO``: normalize one file and digitize it."""
    from dresscode.core.config import get_settings, llm_endpoint
    from dresscode.ingest import photos as images

    settings = get_settings()
    blueprint = current_blueprint(blueprint_ref)
    photo = images.normalize(
        path.read_bytes(), filename=path.name, long_edge=blueprint.image_long_edge
    )
    started = time.perf_counter()
    async with make_client(llm_endpoint(settings=settings), settings) as client:
        out = await digitize_photo(client, blueprint, photo.sha256, photo.jpeg)
    log.info(
        "digitized %s in %.0f ms: %d items",
        path.name,
        (time.perf_counter() - started) * 1000,
        len(out.items),
    )
    return out.items
