"""The MLflow Prompt Registry: git holds the blueprints, MLflow holds what is deployed.

``sync`` registers every git version of a prompt once (template, model config, response format
and the whole blueprint as tags); ``load`` rebuilds a Blueprint from MLflow by alias
(``candidate``, ``production``, ``previous``) or by git version. ``promote``, ``rollback``,
``set_candidate`` and ``mark_gate`` move the aliases and record why.

Versions are always named by their **git** version (``v<N>.yaml``); MLflow numbers its own
versions, and the ``dresscode.git_version`` tag maps one to the other. MLflow is imported inside
functions only: DAG files import this module and must stay cheap. MLflow being unreachable is
an error (``RegistryError``), never a silent fallback to git.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from dresscode.llm.blueprints import Blueprint

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import PromptVersion

log = logging.getLogger(__name__)

Alias = Literal["candidate", "production", "previous"]
ALIASES: tuple[Alias, ...] = ("candidate", "production", "previous")

GIT_VERSION_TAG = "dresscode.git_version"
CONTENT_HASH_TAG = "dresscode.content_hash"
SOURCE_TAG = "dresscode.source"
BLUEPRINT_TAG = "dresscode.blueprint"
GATE_TAG = "dresscode.gate"
GATE_METRICS_TAG = "dresscode.gate_metrics"
GATE_AT_TAG = "dresscode.gate_at"
PROMOTED_TAG = "dresscode.promoted"

_NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


class RegistryError(RuntimeError):
    """The registry cannot do what was asked; the message names the prompt and version."""


class AliasNotSet(RegistryError):
    """The prompt has no such alias (or is not registered at all): nothing was ever promoted."""


class Serving(TypedDict):
    """What a run serves, resolved once at its start (small and plain: it crosses XCom)."""

    ref: str  # name@vN, the git blueprint
    content_hash: str  # checked against git by blueprint_for
    source: str  # "registry production", or the git fallback while nothing is promoted


@dataclass(frozen=True)
class SyncResult:
    """One git version after ``sync``: its MLflow version and whether it was just registered."""

    name: str
    git_version: int
    mlflow_version: int
    content_hash: str
    created: bool


@dataclass(frozen=True)
class VersionInfo:
    """One registered version as the registry sees it."""

    name: str
    git_version: int
    mlflow_version: int
    content_hash: str
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def gate(self) -> str | None:
        """``passed``, ``failed``, or None when never evaluated."""
        return self.tags.get(GATE_TAG)


@dataclass(frozen=True)
class Promotion:
    """An alias move: who moved ``production`` from which git version to which, when and why."""

    name: str
    action: Literal["promote", "rollback"]
    from_version: int | None
    to_version: int
    actor: str
    reason: str
    at: str  # ISO 8601, UTC

    def describe(self) -> str:
        was = f"v{self.from_version}" if self.from_version is not None else "nothing"
        return (
            f"{self.action}: {self.name} production v{self.to_version} (was {was}) "
            f"by {self.actor} at {self.at}: {self.reason}"
        )


# --- git -> MLflow ---------------------------------------------------------------------------


def sync(name: str, blueprints: list[Blueprint] | None = None) -> list[SyncResult]:
    """Register every git version of ``name`` not yet in MLflow; safe to re-run.

    A version already registered with the same content hash is left alone. A git version whose
    content changed after it was registered is refused: released versions are immutable, add
    a new ``v<N+1>.yaml`` instead.
    """
    if blueprints is None:
        from dresscode.llm.blueprints import versions_in_git

        blueprints = versions_in_git(name)
    with _mlflow(name) as client:
        registered = {info.git_version: info for info in _registered(client, name)}
        results = [_sync_one(client, name, bp, registered.get(bp.version)) for bp in blueprints]
    created = sum(r.created for r in results)
    log.info(
        "synced %s: %d git versions, %d registered now, %d already in MLflow",
        name,
        len(results),
        created,
        len(results) - created,
    )
    return results


def _sync_one(
    client: MlflowClient, name: str, blueprint: Blueprint, existing: VersionInfo | None
) -> SyncResult:
    if blueprint.name != name:
        raise RegistryError(
            f"{blueprint.source}: blueprint is named {blueprint.name!r}, not {name!r}."
        )
    digest = blueprint.content_hash()
    if existing is not None:
        if existing.content_hash != digest:
            raise RegistryError(
                f"{name} v{blueprint.version} in git ({blueprint.source}) differs from the "
                f"registered v{blueprint.version} (MLflow version {existing.mlflow_version}); "
                f"registered versions are immutable, add v{blueprint.version + 1} instead."
            )
        return SyncResult(name, blueprint.version, existing.mlflow_version, digest, created=False)
    registered = client.register_prompt(
        name=name,
        template=_chat_template(blueprint),
        commit_message=f"git v{blueprint.version} ({blueprint.source})",
        tags=_version_tags(blueprint),
        response_format=blueprint.output_schema,
        model_config=_model_config(blueprint),
    )
    ours = int(registered.version)
    # Two syncs at once (a release run and an engineer's `dresscode prompts sync`) can both
    # register the same git version. The lowest MLflow version wins; each loser removes its
    # own copy, so exactly one stays whatever the interleaving.
    twins = sorted(
        i.mlflow_version for i in _registered(client, name) if i.git_version == blueprint.version
    )
    if twins and twins[0] != ours:
        client.delete_prompt_version(name, str(ours))
        log.info(
            "%s v%d was registered concurrently as MLflow version %d; removed our copy %d",
            name,
            blueprint.version,
            twins[0],
            ours,
        )
        return SyncResult(name, blueprint.version, twins[0], digest, created=False)
    log.info("registered %s v%d as MLflow version %s", name, blueprint.version, ours)
    return SyncResult(name, blueprint.version, ours, digest, created=True)


def _chat_template(blueprint: Blueprint) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": blueprint.system},
        {"role": "user", "content": blueprint.user},
    ]


def _model_config(blueprint: Blueprint) -> dict[str, Any]:
    return {
        "model_name": blueprint.model,
        "temperature": blueprint.temperature,
        "max_tokens": blueprint.max_tokens,
        "extra_params": {"image_long_edge": blueprint.image_long_edge},
    }


def _version_tags(blueprint: Blueprint) -> dict[str, str]:
    return {
        GIT_VERSION_TAG: str(blueprint.version),
        CONTENT_HASH_TAG: blueprint.content_hash(),
        SOURCE_TAG: blueprint.source,
        BLUEPRINT_TAG: json.dumps(asdict(blueprint), sort_keys=True),
    }


# --- MLflow -> Blueprint ---------------------------------------------------------------------


def load(name: str, alias_or_version: str | int = "production") -> Blueprint:
    """The Blueprint behind an alias (``production``…) or a git version (``2``, ``"v2"``).

    Always asks MLflow (no alias cache), so an alias moved a moment ago is seen at once.
    """
    with _mlflow(name) as client:
        version = _git_version_or_none(alias_or_version)
        if version is None:
            prompt = _by_alias(client, name, str(alias_or_version))
        else:
            prompt = _by_git_version(client, name, version)
        return _blueprint_from(prompt)


def serving(name: str) -> Serving:
    """What to serve this run: the registry's ``production`` (resolved once per run).

    Falls back to the newest blueprint in git, with a warning, only while nothing was ever
    promoted. An unreachable registry fails: never serve an unknown blueprint.
    Returns ``{"ref", "content_hash", "source"}`` (small enough for XCom).
    """
    from dresscode.llm import blueprints

    try:
        blueprint, source = load(name, "production"), "registry production"
    except AliasNotSet as exc:
        log.warning("%s Serving the newest blueprint in git instead.", exc)
        blueprint, source = blueprints.resolve(name), "git (nothing promoted yet)"
    log.info("serving %s from %s", blueprint.ref, source)
    return {"ref": blueprint.ref, "content_hash": blueprint.content_hash(), "source": source}


def blueprint_for(serving_ref: Serving) -> Blueprint:
    """The git blueprint a ``serving`` answer names, checked against the registered content."""
    from dresscode.llm import blueprints

    blueprint = blueprints.resolve(serving_ref["ref"])
    if blueprint.content_hash() != serving_ref["content_hash"]:
        raise blueprints.BlueprintError(
            f"{blueprint.ref} in git differs from the one the registry serves "
            f"({serving_ref['source']}); re-sync the prompts or fix the checkout."
        )
    return blueprint


def _blueprint_from(prompt: PromptVersion) -> Blueprint:
    ref = f"{prompt.name} (MLflow version {prompt.version})"
    raw = prompt.tags.get(BLUEPRINT_TAG)
    if raw is None:
        raise RegistryError(f"{ref} has no {BLUEPRINT_TAG} tag; it was not registered by sync.")
    blueprint = Blueprint(**json.loads(raw))
    if blueprint.content_hash() != prompt.tags.get(CONTENT_HASH_TAG):
        raise RegistryError(f"{ref}: blueprint tag does not match its {CONTENT_HASH_TAG} tag.")
    if prompt.template != _chat_template(blueprint):
        raise RegistryError(f"{ref}: registered template does not match its blueprint tag.")
    return blueprint


def _by_alias(client: MlflowClient, name: str, alias: str) -> PromptVersion:
    try:
        return client.load_prompt(f"prompts:/{name}@{alias}", cache_ttl_seconds=0)
    except Exception as exc:
        if _is_not_found(exc):
            raise AliasNotSet(
                f"{name} has no alias {alias!r} in MLflow at {_uri()} "
                f"(known aliases: {sorted(_aliases(client, name))})."
            ) from None
        raise


def _by_git_version(client: MlflowClient, name: str, version: int) -> PromptVersion:
    info = _find(client, name, version)
    return client.load_prompt(f"prompts:/{name}/{info.mlflow_version}", cache_ttl_seconds=0)


def _git_version_or_none(alias_or_version: str | int) -> int | None:
    if isinstance(alias_or_version, int):
        return alias_or_version
    text = alias_or_version.strip()
    digits = text[1:] if text[:1] in {"v", "V"} else text
    return int(digits) if digits.isdigit() else None


# --- what is registered ----------------------------------------------------------------------


def aliases(name: str) -> dict[str, int]:
    """Alias → git version, for the aliases that are set."""
    with _mlflow(name) as client:
        return _aliases(client, name)


def versions(name: str) -> list[VersionInfo]:
    """Every version of ``name`` registered by ``sync``, oldest git version first."""
    with _mlflow(name) as client:
        by_version = _aliases(client, name)
        return [
            VersionInfo(
                name=info.name,
                git_version=info.git_version,
                mlflow_version=info.mlflow_version,
                content_hash=info.content_hash,
                aliases=tuple(a for a in ALIASES if by_version.get(a) == info.git_version),
                tags=info.tags,
            )
            for info in _registered(client, name)
        ]


def _registered(client: MlflowClient, name: str) -> list[VersionInfo]:
    """Versions registered by ``sync`` (those with a git version tag); [] for a new prompt."""
    infos: list[VersionInfo] = []
    token: str | None = None
    while True:
        try:
            page = client.search_prompt_versions(name, max_results=100, page_token=token)
        except Exception as exc:
            if _is_not_found(exc):
                return []
            raise
        infos.extend(_info(p) for p in page if GIT_VERSION_TAG in p.tags)
        token = page.token
        if not token:
            return sorted(infos, key=lambda i: i.git_version)


def _info(prompt: PromptVersion) -> VersionInfo:
    return VersionInfo(
        name=prompt.name,
        git_version=int(prompt.tags[GIT_VERSION_TAG]),
        mlflow_version=int(prompt.version),
        content_hash=prompt.tags.get(CONTENT_HASH_TAG, ""),
        tags=dict(prompt.tags),
    )


def _find(client: MlflowClient, name: str, version: int) -> VersionInfo:
    infos = _registered(client, name)
    for info in infos:
        if info.git_version == version:
            return info
    if not infos:
        raise RegistryError(f"{name} is not registered in MLflow at {_uri()}; run sync first.")
    raise RegistryError(
        f"{name} has no git version {version} in MLflow at {_uri()} "
        f"(registered: {[i.git_version for i in infos]}); run sync first."
    )


def _aliases(client: MlflowClient, name: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for alias in ALIASES:
        try:
            prompt = client.get_prompt_version_by_alias(name, alias)
        except Exception as exc:
            if _is_not_found(exc):
                continue
            raise
        if GIT_VERSION_TAG in prompt.tags:
            found[alias] = int(prompt.tags[GIT_VERSION_TAG])
    return found


# --- moving aliases --------------------------------------------------------------------------


def set_candidate(name: str, version: int | str) -> None:
    """Point ``candidate`` at a registered git version."""
    with _mlflow(name) as client:
        info = _find(client, name, _version(name, version))
        client.set_prompt_alias(name, "candidate", info.mlflow_version)
    log.info("%s candidate is now v%d", name, info.git_version)


def mark_gate(name: str, version: int | str, passed: bool, metrics: dict[str, Any]) -> None:
    """Record the evaluation gate verdict (and its metrics) on a registered version."""
    with _mlflow(name) as client:
        info = _find(client, name, _version(name, version))
        verdict = "passed" if passed else "failed"
        client.set_prompt_version_tag(name, info.mlflow_version, GATE_TAG, verdict)
        client.set_prompt_version_tag(
            name, info.mlflow_version, GATE_METRICS_TAG, json.dumps(metrics, sort_keys=True)
        )
        client.set_prompt_version_tag(name, info.mlflow_version, GATE_AT_TAG, _now())
    log.info("%s v%d gate %s: %s", name, info.git_version, verdict, metrics)


def promote(name: str, version: int | str, *, actor: str, reason: str) -> Promotion:
    """Make ``version`` production; the current production (if any) becomes ``previous``."""
    with _mlflow(name) as client:
        target = _find(client, name, _version(name, version))
        return _move_production(client, name, target, "promote", actor, reason)


def rollback(name: str, target: str | int = "previous", *, actor: str, reason: str) -> Promotion:
    """Put production back on ``previous`` (or a git version) that passed its gate.

    The version being replaced becomes ``previous``. Refused when the target is unknown or
    never passed the gate.
    """
    with _mlflow(name) as client:
        wanted = _git_version_or_none(target)
        if wanted is None:
            current = _aliases(client, name)
            if str(target) not in current:
                raise RegistryError(f"{name}: cannot roll back, no {target!r} alias is set.")
            wanted = current[str(target)]
        info = _find(client, name, wanted)
        if info.gate != "passed":
            raise RegistryError(
                f"{name} v{info.git_version}: cannot roll back to a version whose gate has "
                f"not passed (gate: {info.gate or 'never evaluated'})."
            )
        return _move_production(client, name, info, "rollback", actor, reason)


def _move_production(
    client: MlflowClient,
    name: str,
    target: VersionInfo,
    action: Literal["promote", "rollback"],
    actor: str,
    reason: str,
) -> Promotion:
    current = _aliases(client, name).get("production")
    if current == target.git_version:
        raise RegistryError(f"{name} v{target.git_version} is already production.")
    if current is not None:
        previous = _find(client, name, current)
        client.set_prompt_alias(name, "previous", previous.mlflow_version)
    client.set_prompt_alias(name, "production", target.mlflow_version)
    record = Promotion(name, action, current, target.git_version, actor, reason, _now())
    client.set_prompt_version_tag(
        name, target.mlflow_version, PROMOTED_TAG, json.dumps(asdict(record))
    )
    log.info(record.describe())
    return record


AUDIT_EXPERIMENT = "dresscode-releases"


def use_experiment(mlflow: Any, name: str, settings: Any) -> None:
    """Select the experiment; with a local (SQLite) store its artifacts live under
    DRESSCODE_HOME, not in ./mlruns of whatever directory the command ran from."""
    if mlflow.get_experiment_by_name(name) is None and settings.mlflow_tracking_uri.startswith(
        "sqlite:"
    ):
        mlflow.create_experiment(
            name, artifact_location=(settings.home / "mlflow-artifacts").as_uri()
        )
    mlflow.set_experiment(name)


def audit(promotion: Promotion) -> str:
    """Record an alias move as an MLflow run (who, when, why, from, to); returns the run id.

    Release and rollback history then sits next to the evaluations, searchable by prompt.
    """
    import mlflow

    from dresscode.core.config import get_settings

    settings = get_settings()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    use_experiment(mlflow, AUDIT_EXPERIMENT, settings)
    was = f"v{promotion.from_version}" if promotion.from_version is not None else "none"
    with mlflow.start_run(
        run_name=f"{promotion.action} {promotion.name} {was} -> v{promotion.to_version}"
    ) as run:
        mlflow.set_tags(
            {
                "dresscode.prompt": promotion.name,
                "dresscode.action": promotion.action,
                "dresscode.from_version": was,
                "dresscode.to_version": f"v{promotion.to_version}",
                "dresscode.actor": promotion.actor,
                "dresscode.reason": promotion.reason,
                "dresscode.at": promotion.at,
            }
        )
        mlflow.log_dict(asdict(promotion), "promotion.json")
    log.info("audit record %s: %s", run.info.run_id, promotion.describe())
    return run.info.run_id


def _version(name: str, version: int | str) -> int:
    parsed = _git_version_or_none(version)
    if parsed is None:
        raise RegistryError(f"{name}: {version!r} is not a git version number.")
    return parsed


# --- MLflow plumbing -------------------------------------------------------------------------


def _uri() -> str:
    from dresscode.core.config import get_settings

    return get_settings().mlflow_tracking_uri


@contextmanager
def _mlflow(name: str) -> Iterator[MlflowClient]:
    """A client for the configured MLflow; MLflow failures become RegistryError."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = _uri()
    try:
        yield MlflowClient(tracking_uri=uri, registry_uri=uri)
    except RegistryError:
        raise
    except MlflowException as exc:
        if is_unreachable(exc):
            raise RegistryError(
                f"MLflow at {uri} is unreachable: {_first_line(exc)} (prompt {name})."
            ) from exc
        raise RegistryError(
            f"MLflow at {uri} failed for prompt {name}: {_first_line(exc)}"
        ) from exc


def _is_not_found(exc: Exception) -> bool:
    return getattr(exc, "error_code", None) in _NOT_FOUND_CODES and not is_unreachable(exc)


def is_unreachable(exc: BaseException) -> bool:
    import requests

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, requests.exceptions.RequestException):
            return True
        seen = seen.__cause__ or seen.__context__
    return "API request to" in str(exc) and "failed with exception" in str(exc)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
