"""Digitize: one normalized photo -> validated wardrobe items, through the model endpoint.

The blueprint gives the prompt, the sampling settings and the output schema. One photo is one
trip to the model (:func:`dresscode.llm.ask.ask`: render, call, parse with counted repairs and
schema validation, record); what this module adds is the judgement of the answer. Items
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
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dresscode.core import prompts
from dresscode.llm import blueprints
from dresscode.llm.ask import Judgement, ask, render
from dresscode.llm.blueprints import Blueprint

if TYPE_CHECKING:
    from dresscode.llm.client import ChatResult, LLMClient
    from dresscode.llm.parsing import ParseOutcome

log = logging.getLogger(__name__)

PROMPT_NAME = prompts.DIGITIZER.name
PURPOSE = prompts.DIGITIZER.purpose


class DigitizeFailed(Exception):
    """The model gave no usable answer for a photo; the message says whether the call failed
    or the answer was unusable, and why. (An answer with no items is an answer, not this.)"""


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

    def failure(self) -> str:
        """Why there is no usable answer, in one sentence ("" when :attr:`ok`)."""
        if self.ok:
            return ""
        record = self.record
        error = record.get("error_class") or "unknown error"
        if record.get("parse_ok") is None:  # no answer at all: the client's retries failed
            status = record.get("http_status") or "-"
            attempts = record.get("attempts") or 0
            return f"the model call failed: {error} (HTTP {status}) after {attempts} attempt(s)"
        return f"the model's answer was unusable: {error}"


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
    """The prompt for one photo: the vocabularies filled in, the photo before the text."""
    return render(blueprint, vocabularies(blueprint.output_schema), image=jpeg)


def fit_to_blueprint(jpeg: bytes, blueprint: Blueprint) -> bytes:
    """The photo as the blueprint wants it: stored images are downscaled further when the
    blueprint's ``image_long_edge`` is smaller (a prompt version may trade detail for tokens)."""
    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as im:  # reads the header only
        if max(im.size) <= blueprint.image_long_edge:
            return jpeg
    from dresscode.ingest import photos as images

    return images.normalize(jpeg, long_edge=blueprint.image_long_edge).jpeg


def item_id(
    user_id: str, image_sha256: str, index: int, blueprint: Blueprint, *, after: str = ""
) -> str:
    """Deterministic: the same user, photo, position and prompt version give the same id.

    ``after`` names the digitization a re-digitized photo replaces (``name@vN``): going back
    to a version the photo had before gives new ids, never ones an older row already holds.
    """
    seed = f"{user_id}:{image_sha256}:{index}:{blueprint.ref}" + (
        f":after:{after}" if after else ""
    )
    return hashlib.sha256(seed.encode()).hexdigest()[:24]


def salvage_items(value: Any, schema: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Keep the items that satisfy the item schema; count the others.

    The whole answer failed validation; if its shape is still ``{"items": [...]}``, one item
    with an unknown category should not throw away the photo's other items.
    """
    from dresscode.llm.parsing import StrictValidator

    if not isinstance(value, dict) or not isinstance(value.get("items"), list):
        return [], 0
    validator = StrictValidator(schema["properties"]["items"]["items"])
    kept = [item for item in value["items"] if validator.is_valid(item)]
    return kept, len(value["items"]) - len(kept)


async def digitize_photo(
    client: LLMClient, blueprint: Blueprint, image_sha256: str, jpeg: bytes
) -> Digitized:
    """One model call for one photo; never raises for model or network failures."""
    answer = await ask(
        client,
        blueprint,
        purpose=PURPOSE,
        schema_name="wardrobe_items",
        values=vocabularies(blueprint.output_schema),
        image=fit_to_blueprint(jpeg, blueprint),
        judge=partial(_judge_items, image_sha256=image_sha256, schema=blueprint.output_schema),
        columns={"image_sha256": image_sha256, "dropped_items": 0},
    )
    if not answer.ok:
        log.warning(
            "photo %s: model call failed after %d attempts: %s %s",
            image_sha256[:12],
            answer.result.attempts,
            answer.result.error_class,
            answer.result.error_message,
        )
    items, dropped = answer.judged or ([], 0)
    return Digitized(image_sha256, items, answer.record, dropped)


def _judge_items(
    result: ChatResult, parse: ParseOutcome | None, *, image_sha256: str, schema: dict[str, Any]
) -> Judgement[tuple[list[dict[str, Any]], int]]:
    """The photo's items: all of a valid answer, else the valid ones of a salvageable answer.

    ``n_items`` stays None when the answer gave no items at all (unparseable, wrong shape).
    """
    if parse is None:  # a round of tool calls; digitizer blueprints offer no tools
        return Judgement(value=([], 0))
    items: list[dict[str, Any]] = []
    dropped = 0
    if parse.usable:
        items = list(parse.value["items"])
    elif parse.value is not None:
        items, dropped = salvage_items(parse.value, schema)
    if not parse.usable:
        log.warning(
            "photo %s: %s (%s)%s",
            image_sha256[:12],
            parse.outcome,
            "; ".join(parse.errors[:2]),
            f", kept {len(items)} valid items, dropped {dropped}" if dropped else "",
        )
    salvaged = not parse.usable and bool(items or dropped)
    return Judgement(
        value=(items, dropped),
        n_items=len(items) if parse.usable or salvaged else None,
        columns={"dropped_items": dropped},
    )


async def digitize_many(
    client: LLMClient, blueprint: Blueprint, photos: Sequence[tuple[str, bytes]]
) -> list[Digitized]:
    """Digitize photos concurrently (the client's semaphore bounds the calls in flight)."""
    return list(
        await asyncio.gather(
            *(digitize_photo(client, blueprint, sha, jpeg) for sha, jpeg in photos)
        )
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
    """The CLI's ``dresscode digitize PHOTO``: normalize one file and digitize it.

    Returns the items (an empty list when the model answered that there are none). Raises
    :class:`~dresscode.ingest.rejects.Rejected` for a photo ingest would quarantine, and
    :class:`DigitizeFailed` when the call failed or the answer was unusable.
    """
    from dresscode.core.config import get_settings
    from dresscode.ingest import photos as images
    from dresscode.llm.hook import DresscodeLLMHook

    settings = get_settings()
    blueprint = current_blueprint(blueprint_ref)
    with path.open("rb") as handle:  # one byte over the cap is enough to say too_large
        raw = handle.read(settings.image_max_bytes + 1)
    photo = images.normalize(
        raw,
        filename=path.name,
        long_edge=blueprint.image_long_edge,
        quality=settings.image_jpeg_quality,
        max_bytes=settings.image_max_bytes,
        max_pixels=settings.image_max_pixels,
        allowed_formats=settings.image_formats,
        max_jpeg_scans=settings.image_max_jpeg_scans,
        max_decode_s=settings.image_max_decode_s,
    )
    started = time.perf_counter()
    async with DresscodeLLMHook(settings=settings).get_client() as client:
        out = await digitize_photo(client, blueprint, photo.sha256, photo.jpeg)
    log.info(
        "digitized %s in %.0f ms: %d items",
        path.name,
        (time.perf_counter() - started) * 1000,
        len(out.items),
    )
    if not out.ok:
        raise DigitizeFailed(f"{path.name}: {out.failure()}")
    return out.items
