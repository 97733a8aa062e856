"""The MLflow Prompt Registry: git holds the blueprints, MLflow holds what is deployed.

``sync`` registers every git version of a prompt once (template, model config, response format
and the whole blueprint as tags); ``load`` rebuilds a Blueprint from MLflow by alias
(``candidate``, ``production``, ``previous``) or by git version. ``promote``, ``rollback``,
``set_candidate`` and ``mark_gate`` move the aliases and record why.

A human decision is never undone by automation (DESIGN.md, principle 8): a rollback **parks**
the version it replaces and a rejected approval parks the candidate (:func:`park`): the
``candidate`` alias leaves it and a ``dresscode.blocked`` tag says who, when and why. A
blocked version is never made candidate, promoted or rolled back to until a person unblocks it
(:func:`unblock`).

Versions are always named by their **git** version (``v<N>.yaml``); MLflow numbers its own
versions, and the ``dresscode.git_version`` tag maps one to the other. MLflow is imported inside
functions only: DAG files import this module and must stay cheap. MLflow being unreachable is
an error (``RegistryError``), never a silent fallback to git.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from dresscode.llm.blueprints import Blueprint
from dresscode.registry.audit import AUDIT_EXPERIMENT as AUDIT_EXPERIMENT
from dresscode.registry.audit import audit as audit
from dresscode.registry.audit import use_experiment as use_experiment
from dresscode.registry.store import AliasNotSet as AliasNotSet
from dresscode.registry.store import RegistryError as RegistryError
from dresscode.registry.store import connect as _mlflow
from dresscode.registry.store import is_not_found as _is_not_found
from dresscode.registry.store import is_unreachable as is_unreachable
from dresscode.registry.store import now as _now
from dresscode.registry.store import tracking_uri as _uri

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
GATE_GOLDEN_TAG = "dresscode.gate_golden_hash"  # the golden set the gate metrics were made on
GATE_RUN_TAG = "dresscode.gate_run"  # the MLflow run of those metrics
GATE_FROM_TAG = "dresscode.gate_started_at"  # when that evaluation began calling the model
BLOCKED_TAG = "dresscode.blocked"  # a parked version: JSON Block
UNBLOCKED_TAG = "dresscode.unblocked"  # the last unblock: JSON Block (action "unblock")


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

    @property
    def block(self) -> Block | None:
        """Why this version is parked (a rollback or a rejected approval), or None."""
        raw = self.tags.get(BLOCKED_TAG)
        if not raw:
            return None
        try:
            return Block(**json.loads(raw))
        except (TypeError, ValueError):  # a hand-edited tag still blocks: say so, do not crash
            return Block(self.name, self.git_version, "rejected", "unknown", f"tag {raw!r}", "?")


@dataclass(frozen=True)
class Block:
    """A parked version: who took it out of the automatic path, when and why."""

    name: str
    version: int
    action: Literal["rollback", "rejected", "unblock"]
    actor: str
    reason: str
    at: str  # ISO 8601, UTC

    def describe(self) -> str:
        how = {"rollback": "rolled back", "rejected": "rejected", "unblock": "unblocked"}
        return (
            f"{self.name} v{self.version} {how[self.action]} by {self.actor} at {self.at}: "
            f"{self.reason}"
        )


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
        _refuse_blocked(info, "made candidate")
        client.set_prompt_alias(name, "candidate", info.mlflow_version)
    log.info("%s candidate is now v%d", name, info.git_version)


def mark_gate(
    name: str,
    version: int | str,
    passed: bool,
    metrics: dict[str, Any],
    *,
    golden_hash: str | None = None,
    run_id: str | None = None,
    started_at: str | None = None,
) -> None:
    """Record the evaluation gate verdict (and its metrics) on a registered version, with the
    golden set's content hash and the MLflow run they came from: a later comparison with these
    metrics is like with like only on the same golden set. ``started_at`` (ISO 8601): when the
    evaluation began calling the model — a re-evaluation after a later window may reuse it
    (:mod:`dresscode.monitoring.reevaluation`)."""
    with _mlflow(name) as client:
        info = _find(client, name, _version(name, version))
        verdict = "passed" if passed else "failed"
        tags = {
            GATE_TAG: verdict,
            GATE_METRICS_TAG: json.dumps(metrics, sort_keys=True),
            GATE_AT_TAG: _now(),
            GATE_GOLDEN_TAG: golden_hash or "",
            GATE_RUN_TAG: run_id or "",
            GATE_FROM_TAG: started_at or "",
        }
        for key, value in tags.items():
            client.set_prompt_version_tag(name, info.mlflow_version, key, value)
    log.info("%s v%d gate %s: %s", name, info.git_version, verdict, metrics)


def promote(name: str, version: int | str, *, actor: str, reason: str) -> Promotion:
    """Make ``version`` production; the current production (if any) becomes ``previous``.

    Refused for a blocked version: a person parked it, only a person unblocks it.
    """
    with _mlflow(name) as client:
        target = _find(client, name, _version(name, version))
        _refuse_blocked(target, "promoted")
        return _move_production(client, name, target, "promote", actor, reason)


def rollback(name: str, target: str | int = "previous", *, actor: str, reason: str) -> Promotion:
    """Put production back on ``previous`` (or a git version) that passed its gate.

    The version being replaced becomes ``previous`` and is parked (:func:`park`): automation
    never promotes it again. Refused when the target is unknown, never passed the gate, is
    blocked, or is production already.
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
        _refuse_blocked(info, "rolled back to")
        done = _move_production(client, name, info, "rollback", actor, reason)
        if done.from_version is not None:
            replaced = _find(client, name, done.from_version)
            _park(client, replaced, "rollback", actor, reason, done.at)
        return done


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
        raise RegistryError(
            f"{name} v{target.git_version} is already production: nothing to {action}."
        )
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


# --- parking: a human decision automation never undoes ---------------------------------------


def park(
    name: str,
    version: int | str,
    *,
    action: Literal["rollback", "rejected"],
    actor: str,
    reason: str,
) -> Block:
    """Take ``version`` out of the automatic path: tag it blocked (who, when, why) and move
    ``candidate`` off it. Idempotent; refused for the version in production (roll it back)."""
    with _mlflow(name) as client:
        info = _find(client, name, _version(name, version))
        if _aliases(client, name).get("production") == info.git_version:
            raise RegistryError(
                f"{name} v{info.git_version} is production; roll it back instead of parking it."
            )
        return _park(client, info, action, actor, reason, _now())


def unblock(name: str, version: int | str, *, actor: str, reason: str) -> Block:
    """A person lets a parked version back on the automatic path (recorded, like the block)."""
    with _mlflow(name) as client:
        info = _find(client, name, _version(name, version))
        if info.block is None:
            raise RegistryError(f"{name} v{info.git_version} is not blocked.")
        record = Block(name, info.git_version, "unblock", actor, reason, _now())
        client.set_prompt_version_tag(
            name, info.mlflow_version, UNBLOCKED_TAG, json.dumps(asdict(record))
        )
        client.delete_prompt_version_tag(name, info.mlflow_version, BLOCKED_TAG)
    log.info("%s (was: %s)", record.describe(), info.block.describe())
    return record


def _park(
    client: MlflowClient,
    info: VersionInfo,
    action: Literal["rollback", "rejected"],
    actor: str,
    reason: str,
    at: str,
) -> Block:
    name = info.name
    record = info.block or Block(name, info.git_version, action, actor, reason, at)
    if info.block is None:
        client.set_prompt_version_tag(
            name, info.mlflow_version, BLOCKED_TAG, json.dumps(asdict(record))
        )
    if _aliases(client, name).get("candidate") == info.git_version:
        client.delete_prompt_alias(name, "candidate")
        log.info("%s: candidate alias removed from v%d", name, info.git_version)
    log.warning("parked: %s", record.describe())
    return record


def _refuse_blocked(info: VersionInfo, what: str) -> None:
    if info.block is not None:
        raise RegistryError(
            f"{info.name} v{info.git_version} is blocked and cannot be {what} "
            f"({info.block.describe()}); a person must unblock it first."
        )


def _version(name: str, version: int | str) -> int:
    parsed = _git_version_or_none(version)
    if parsed is None:
        raise RegistryError(f"{name}: {version!r} is not a git version number.")
    return parsed
