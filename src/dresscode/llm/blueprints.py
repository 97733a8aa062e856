"""Prompt blueprints: prompt + model config + output schema, one YAML per version in git.

A blueprint is what gets deployed (``include/prompts/<name>/v<N>.yaml``). Its ``output_schema``
is the single schema source: it goes into ``response_format`` and the validators use it, and
its enums are the closed vocabularies. Templates use MLflow's ``{{ name }}`` placeholders.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dresscode.core.config import REPO_ROOT

log = logging.getLogger(__name__)

PROMPTS_DIR = REPO_ROOT / "include" / "prompts"
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_REQUIRED = (
    "name",
    "version",
    "model",
    "temperature",
    "max_tokens",
    "system",
    "user",
    "output_schema",
)


class BlueprintError(ValueError):
    """A blueprint that must not be served; the message names the file and the problem."""


@dataclass(frozen=True)
class Blueprint:
    name: str
    version: int
    model: str
    temperature: float
    max_tokens: int
    system: str
    user: str
    output_schema: dict[str, Any]
    image_long_edge: int = 768
    description: str = ""
    tools: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""  # where it was loaded from (a path or a registry URI)
    # The dresscode_llm-type connection of the deployment serving it (blue-green: e.g. a
    # quantized Gemma 4 on new nodes); empty = the default connection.
    connection: str = ""

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def content_hash(self) -> str:
        """Hash of everything that changes the model's behaviour (not the source); an unset
        ``connection`` is left out, so blueprints written before it existed keep their hash."""
        body = {k: v for k, v in asdict(self).items() if k not in {"source", "description"}}
        if not self.connection:
            body.pop("connection")
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def placeholders(self) -> set[str]:
        return set(_PLACEHOLDER.findall(self.system)) | set(_PLACEHOLDER.findall(self.user))

    def render(self, template: str, values: dict[str, Any]) -> str:
        """Fill ``{{ name }}`` placeholders; a placeholder without a value is an error."""

        def fill(match: re.Match[str]) -> str:
            key = match.group(1)
            if key not in values:
                raise BlueprintError(
                    f"{self.ref}: template placeholder {{{{{key}}}}} has no value (known: {sorted(values)})."
                )
            return str(values[key])

        return _PLACEHOLDER.sub(fill, template)


def from_mapping(data: Any, source: str) -> Blueprint:
    """Validate a parsed blueprint document and build the Blueprint."""
    if not isinstance(data, dict):
        raise BlueprintError(f"{source}: a blueprint must be a YAML mapping.")
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise BlueprintError(f"{source}: missing fields {missing}.")
    schema = data["output_schema"]
    _check_schema(schema, source)
    try:
        return Blueprint(
            name=str(data["name"]),
            version=int(data["version"]),
            model=str(data["model"]),
            temperature=float(data["temperature"]),
            max_tokens=int(data["max_tokens"]),
            system=str(data["system"]),
            user=str(data["user"]),
            output_schema=schema,
            image_long_edge=int(data.get("image_long_edge", 768)),
            description=str(data.get("description", "")),
            tools=list(data.get("tools") or []),
            source=source,
            connection=str(data.get("connection") or ""),
        )
    except (TypeError, ValueError) as exc:
        raise BlueprintError(f"{source}: {exc}.") from None


def _check_schema(schema: Any, source: str) -> None:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise BlueprintError(
            f"{source}: output_schema must be a JSON Schema with an object at the root."
        )
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise BlueprintError(
            f"{source}: output_schema is not valid JSON Schema: {exc.message}."
        ) from None


def load_file(path: Path) -> Blueprint:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise BlueprintError(f"{path}: invalid YAML ({str(exc).splitlines()[0]}).") from None
    blueprint = from_mapping(
        data, str(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path)
    )
    if path.stem != f"v{blueprint.version}" or path.parent.name != blueprint.name:
        raise BlueprintError(
            f"{path}: file must be include/prompts/{blueprint.name}/v{blueprint.version}.yaml."
        )
    return blueprint


def prompt_names(prompts_dir: Path | None = None) -> list[str]:
    """Every prompt with blueprints in git (``<prompts_dir>/<name>/``); ``_*`` folders hold
    examples that are never synced, released or served."""
    prompts_dir = prompts_dir or PROMPTS_DIR
    return sorted(p.name for p in prompts_dir.iterdir() if p.is_dir() and p.name[0] != "_")


def versions_in_git(name: str, prompts_dir: Path | None = None) -> list[Blueprint]:
    """Every blueprint of ``name`` in git, oldest first (``PROMPTS_DIR`` is read at call time,
    so tests can point it at a scratch copy)."""
    folder = (prompts_dir or PROMPTS_DIR) / name
    if not folder.is_dir():
        raise BlueprintError(f"No prompt folder {folder}.")
    blueprints = [load_file(p) for p in folder.glob("v*.yaml")]
    return sorted(blueprints, key=lambda b: b.version)


def resolve(ref: str, prompts_dir: Path | None = None) -> Blueprint:
    """``name`` (the newest in git) or ``name@<version>``, from git.

    The registry (MLflow) is the deployed state; until a prompt is registered there,
    readers fall back to the newest version in git, with a warning.
    """
    name, _, version = ref.partition("@")
    blueprints = versions_in_git(name, prompts_dir)
    if not blueprints:
        raise BlueprintError(f"No blueprint versions in {(prompts_dir or PROMPTS_DIR) / name}.")
    if not version:
        return blueprints[-1]
    wanted = int(version.lstrip("v"))
    for blueprint in blueprints:
        if blueprint.version == wanted:
            return blueprint
    raise BlueprintError(
        f"{name} has no version {wanted} in git (have {[b.version for b in blueprints]})."
    )


def enum_of(schema: dict[str, Any], *path: str) -> list[str]:
    """The enum at a property path of an object schema, following array ``items``."""
    node: Any = schema
    for key in path:
        node = node.get("items", node) if node.get("type") == "array" else node
        node = node["properties"][key]
    node = node.get("items", node) if node.get("type") == "array" else node
    return list(node["enum"])
