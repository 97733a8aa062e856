"""The work of ``prompt_release``: sync git to the registry, gate new versions, shadow, promote.

A blueprint change is a deployment. Versions newer than ``production`` (and than any version
already judged) that were never evaluated are pending; per prompt they are evaluated on the
golden set newest first, stopping at the first that passes: that newest passing version becomes
``candidate`` (an older one would never be chosen over it, so it is not evaluated — a first
release gates v2, and v1 only if v2 fails). The candidate is compared with production on recent
real inputs (the shadow), and is promoted — automatically or after a human approves
(:class:`PromotionApproval`). A rejection, or no answer in time, parks the candidate
(:func:`park`). An unchanged tree does nothing: no version, no evaluation, no alias move.

``prompt_rollback`` calls :func:`rollback`: ``production`` back to a known-good version; the
version it replaces is parked. Parked (blocked) versions are never evaluated, made candidate or
promoted again by automation; a promotion whose evidence went stale while it waited (production
moved) is refused.

Values handed from task to task (XCom) are the ``TypedDict`` s below: plain JSON dicts.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, TypedDict

from airflow.sdk.exceptions import AirflowFailException

from dresscode.core import prompts, tables
from dresscode.llm import blueprints
from dresscode.registry.approval import APPROVAL_TIMEOUT as APPROVAL_TIMEOUT
from dresscode.registry.approval import Answer as Answer
from dresscode.registry.approval import PromotionApproval as PromotionApproval
from dresscode.registry.approval import approval_timeout as approval_timeout

log = logging.getLogger(__name__)


class ReleaseFailed(AirflowFailException):
    """No new version passed its gate; the message is the report. No retries: it is a verdict."""


class PromptVersion(TypedDict):
    """One git version of a prompt (``name@version``)."""

    name: str
    version: int


class Pending(TypedDict):
    """A prompt's versions waiting for a gate verdict, newest first."""

    name: str
    versions: list[int]


class Evaluated(PromptVersion):
    """A version's golden-set verdict, as recorded in MLflow."""

    passed: bool
    reasons: list[str]  # why it failed its gate (empty when it passed)
    metrics: dict[str, float]
    mlflow_run_id: str
    golden_hash: str  # the golden set's content hash the metrics were made on


class ShadowSummary(TypedDict):
    summary: str  # one line: agreement, failures, latency and tokens against production
    report: str  # the report's path in the lake (reports/shadow/)


class Shadowed(Evaluated):
    """A candidate after its shadow comparison (None: nothing in production or no inputs)."""

    shadow: ShadowSummary | None
    against: int | None  # production's version when it was compared (None: nothing promoted)


class RolledBack(TypedDict):
    """A rollback as audited: the alias move and the audit's MLflow run id."""

    name: str
    action: Literal["promote", "rollback"]
    from_version: int | None
    to_version: int
    actor: str
    reason: str
    at: str
    audit_run_id: str
    parked: str | None  # the replaced version, now blocked: who, when, why


def sync_all() -> list[Pending]:
    """Register every git version (idempotent); return, per prompt, the versions that need a
    gate verdict, newest first.

    Those are the versions newer than production and than the newest version already judged
    (passed, failed or parked) that were never evaluated: an older one was superseded — the
    release chooses the newest passing version. Re-running on an unchanged tree returns the
    same (usually empty) list.
    """
    from dresscode.registry import prompt_registry as registry

    pending: list[Pending] = []
    for name in blueprints.prompt_names():
        created = [r for r in registry.sync(name) if r.created]
        for r in created:
            log.info(
                "%s v%d: registered (MLflow version %d)", name, r.git_version, r.mlflow_version
            )
        infos = registry.versions(name)
        production = registry.aliases(name).get("production", 0)
        judged = max((i.git_version for i in infos if i.gate or i.block is not None), default=0)
        versions = sorted(
            (i.git_version for i in infos if i.git_version > max(production, judged)),
            reverse=True,
        )
        if versions:
            pending.append(Pending(name=name, versions=versions))
    log.info(
        "to evaluate (newest first, until one passes): %s",
        "; ".join(f"{p['name']} v{', v'.join(map(str, p['versions']))}" for p in pending)
        or "nothing",
    )
    return pending


def evaluate_newest_passing(pending: Pending) -> list[Evaluated]:
    """Gate ``pending``'s versions newest first and stop at the first that passes; returns
    every verdict made (the failed newer ones too, for the report)."""
    results: list[Evaluated] = []
    for version in pending["versions"]:
        results.append(evaluate(PromptVersion(name=pending["name"], version=version)))
        if results[-1]["passed"]:
            older = [v for v in pending["versions"] if v < version]
            if older:
                log.info(
                    "%s: v%d passed, so v%s (older) are not evaluated: it would be chosen over "
                    "them (`dresscode eval %s@<version>` gates one by hand)",
                    pending["name"],
                    version,
                    ", v".join(map(str, older)),
                    pending["name"],
                )
            break
    return results


def evaluate(version: PromptVersion) -> Evaluated:
    """Golden-set evaluation of one version, recorded in MLflow and as its gate verdict."""
    from dresscode.registry.evaluation import runs as evaluation

    run = evaluation.evaluate_prompt(f"{version['name']}@{version['version']}")
    result = Evaluated(
        **version,
        passed=run.verdict.passed,
        reasons=list(run.verdict.reasons),
        metrics=run.metrics,
        mlflow_run_id=run.mlflow_run_id,
        golden_hash=run.golden_hash,
    )
    log.info(
        "%s@%s: gate %s%s (MLflow run %s)",
        version["name"],
        version["version"],
        "passed" if run.verdict.passed else "FAILED",
        "" if run.verdict.passed else ": " + "; ".join(run.verdict.reasons),
        run.mlflow_run_id,
    )
    return result


def choose_candidates(evaluated: list[list[Evaluated]]) -> list[Evaluated]:
    """The newest passing version per prompt becomes ``candidate``; a release with none fails.
    ``evaluated``: each prompt's verdicts (:func:`evaluate_newest_passing`)."""
    from dresscode.registry import prompt_registry as registry

    results = [r for verdicts in evaluated for r in verdicts]
    failed = [r for r in results if not r["passed"]]
    for r in failed:
        log.warning(
            "%s@%s failed its gate: %s (see MLflow run %s)",
            r["name"],
            r["version"],
            "; ".join(r["reasons"]),
            r["mlflow_run_id"],
        )
    chosen: dict[str, Evaluated] = {}
    for r in sorted((r for r in results if r["passed"]), key=lambda r: r["version"]):
        chosen[r["name"]] = r
    if results and not chosen:
        report = "; ".join(f"{r['name']}@{r['version']}: {', '.join(r['reasons'])}" for r in failed)
        raise ReleaseFailed(f"No new prompt version passed its gate, nothing released: {report}")
    for r in chosen.values():
        registry.set_candidate(r["name"], r["version"])
        log.info("%s@%s is the candidate", r["name"], r["version"])
    return list(chosen.values())


def shadow(candidate: Evaluated) -> Shadowed:
    """Compare the candidate with production on recent real inputs; the report goes to the lake."""
    import asyncio

    from dresscode.core.config import get_settings
    from dresscode.llm.hook import DresscodeLLMHook
    from dresscode.registry import prompt_registry as registry
    from dresscode.registry import shadow as shadowing

    name = candidate["name"]
    try:
        production = registry.load(name, "production")
    except registry.AliasNotSet:
        log.info("%s: nothing in production yet, no shadow comparison", name)
        return Shadowed(**candidate, shadow=None, against=None)
    settings = get_settings()
    blueprint = registry.load(name, candidate["version"])
    if name == prompts.DIGITIZER.name:
        from dresscode.core import delta

        # Pinned: the report names the table version, so the replay can be run again on it.
        version = delta.current_version(tables.MANIFESTS.name, settings)
        photos = shadowing.recent_photos(settings=settings, version=version)
        inputs: list[Any] = photos

        async def compare(client: Any) -> shadowing.ShadowReport:
            return await shadowing.compare_digitizer(
                client, blueprint, production, photos, lake_version=version
            )
    else:
        contexts = shadowing.recent_stylist_inputs(settings=settings)
        weather = shadowing.weather_on_record(settings, {c.day for c in contexts})
        inputs = contexts

        async def compare(client: Any) -> shadowing.ShadowReport:
            return await shadowing.compare_stylist(
                client,
                blueprint,
                production,
                contexts,
                weather,
                max_turns=settings.outfit_max_turns,
            )

    if not inputs:
        log.info("%s: no recent real inputs in the lake to replay", name)
        return Shadowed(**candidate, shadow=None, against=production.version)

    async def run() -> shadowing.ShadowReport:
        async with DresscodeLLMHook(settings=settings).get_offline_client() as client:
            return await compare(client)

    report = asyncio.run(run())
    path = shadowing.write_report(report, settings)
    log.info("%s (report %s)", report.summary(), path)
    summary = ShadowSummary(summary=report.summary(), report=path)
    return Shadowed(**candidate, shadow=summary, against=production.version)


def promote(candidates: list[Shadowed], *, actor: str, approval: Answer | None = None) -> list[str]:
    """Move ``production`` to each candidate (``previous`` keeps the old one), audited; after
    an ``approval`` the approver is the actor.

    A candidate that was parked, whose production moved since it was compared (a rollback
    while the approval waited), or that fails the live shadow gate (``live_shadow.verdict``,
    read at this moment) is refused: the others are promoted, then the task fails with the
    refusals (the later human decision wins, loudly).
    """
    from dresscode.registry import live_shadow
    from dresscode.registry import prompt_registry as registry
    from dresscode.registry.approval import refusal

    if approval is not None:
        actor = approval["by"]
    done, refused = [], []
    for c in candidates:
        if registry.aliases(c["name"]).get("production") == c["version"]:
            log.info("%s@%s is already production", c["name"], c["version"])
            continue
        why_not = refusal(c["name"], c["version"], c.get("against"))
        # Read now, not at the shadow task: requests shadowed while an approval waited count.
        live = live_shadow.verdict(c["name"], c["version"])
        why_not = why_not or live.refusal()
        if why_not:
            log.error("%s", why_not)
            refused.append(why_not)
            continue
        reason = f"passed its gate (MLflow run {c['mlflow_run_id']})"
        shadowed = c.get("shadow")
        if shadowed:
            reason += f"; {shadowed['summary']}"
        reason += f"; {live.summary()}"
        if approval is not None:
            reason += f"; approved by {approval['by']} at {approval['at']}"
        promotion = registry.promote(c["name"], c["version"], actor=actor, reason=reason)
        registry.audit(promotion)
        done.append(promotion.describe())
    if refused:
        raise ReleaseFailed(" ".join(refused))
    return done


def park(candidates: list[Shadowed], answer: Answer, *, dag_id: str) -> list[str]:
    """A rejected (or unanswered) approval parks every candidate it was about: blocked, with
    who and why, and no longer ``candidate``; automation never promotes them again."""
    from dresscode.registry import prompt_registry as registry

    why = (
        f"approval of the release timed out in {dag_id}"
        if answer["timed_out"]
        else f"release rejected in {dag_id}"
    )
    parked = []
    for c in candidates:
        block = registry.park(
            c["name"], c["version"], action="rejected", actor=answer["by"], reason=why
        )
        parked.append(block.describe())
    return parked


def rollback(prompt: str, target: str, *, actor: str, reason: str) -> RolledBack:
    """Move ``production`` back to ``target`` (``previous`` or a git version), audited.

    The target must exist, have passed its golden-set gate once, not be blocked and not be
    production already (each refused in one sentence); the replaced version becomes
    ``previous`` and is parked. The audit is an MLflow run in the releases experiment. A
    promotion waiting for approval meanwhile is refused when answered (production moved).
    """
    from dresscode.registry import prompt_registry as registry

    done = registry.rollback(prompt, target, actor=actor, reason=reason)
    run_id = registry.audit(done)
    block = next(
        (v.block for v in registry.versions(prompt) if v.git_version == done.from_version), None
    )
    return RolledBack(
        name=done.name,
        action=done.action,
        from_version=done.from_version,
        to_version=done.to_version,
        actor=done.actor,
        reason=done.reason,
        at=done.at,
        audit_run_id=run_id,
        parked=block.describe() if block else None,
    )
