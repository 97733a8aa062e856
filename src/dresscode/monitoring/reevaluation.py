"""Re-evaluation after a breach or drift: production and candidate on the golden set.

A prompt version is evaluated again (:func:`dresscode.registry.evaluation.runs
.evaluate_prompt`) unless its recorded gate is already what a re-evaluation now would be: an
evaluation that **started after the checked window ended**, on **today's golden set** (the same
content hash). Such an evaluation saw the endpoint as it was after the drift or breach, so
running it again would spend the golden set's model calls to learn the same thing — typical
when `prompt_release` evaluated the version after the window (a nightly release before the
nightly monitoring, or `make up`). The page says which evaluation it used, and its MLflow run is
linked like a fresh one. An evaluation that started before the window's end, on another golden
set, or with no start recorded (before this rule existed) is never reused.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dresscode.monitoring.tasks import Decision, Evaluation, GateRun
    from dresscode.registry.prompt_registry import VersionInfo

log = logging.getLogger(__name__)


def run(decision: Decision, since: str | None = None) -> list[Evaluation]:
    """Golden-set evaluation of ``production`` and ``candidate`` of each prompt the decision
    names (``since``: the checked window's end; None: always evaluate afresh). A blocked
    candidate is not evaluated: it is listed with the other parked versions, for the page."""
    from dresscode.registry import prompt_registry as registry

    results: list[Evaluation] = []
    for name in decision["reevaluate"]:
        infos = registry.versions(name)
        aliases = {a: i.git_version for i in infos for a in i.aliases}
        production = aliases.get("production")
        candidate = aliases.get("candidate")
        parked = [
            i.block.describe()
            for i in infos
            if i.block is not None and i.git_version > (production or 0)
        ]
        entry: Evaluation = {
            "name": name,
            "because": decision["branch"],
            "production": None,
            "candidate": None,
            "parked": parked,
        }
        if production is None:
            log.warning("%s: nothing in production, nothing to re-evaluate", name)
            results.append(entry)
            continue
        if any(i.git_version == candidate and i.block for i in infos):
            log.warning("%s: candidate v%s is blocked, not re-evaluated", name, candidate)
            candidate = None
        by_version = {i.git_version: i for i in infos}
        for role, version in (("production", production), ("candidate", candidate)):
            if version is None or (role == "candidate" and version == production):
                continue
            gate = recorded_gate(by_version[version], since) if since else None
            if gate is None:
                gate = evaluate(name, version)
            entry[role] = gate  # type: ignore[literal-required]
            log.info(
                "%s@%s (%s): gate %s, %s%s",
                name,
                version,
                role,
                "passed" if gate["passed"] else "FAILED: " + "; ".join(gate["reasons"]),
                headline(gate["metrics"]),
                f" (the evaluation of {gate['evaluated_at']}, reused)"
                if gate.get("reused")
                else "",
            )
        results.append(entry)
    return results


def evaluate(name: str, version: int) -> GateRun:
    from dresscode.registry.evaluation import runs as evaluation

    ran = evaluation.evaluate_prompt(f"{name}@{version}")
    return {
        "version": version,
        "passed": ran.verdict.passed,
        "reasons": list(ran.verdict.reasons),
        "metrics": ran.metrics,
        "mlflow_run_id": ran.mlflow_run_id,
        "golden_hash": ran.golden_hash,
    }


def recorded_gate(info: VersionInfo, since: str) -> GateRun | None:
    """The version's recorded gate as this run's re-evaluation, when it started after ``since``
    on today's golden set; None otherwise (the reason logged)."""
    import json

    from dresscode.registry import prompt_registry as registry

    tags = info.tags
    started, golden = tags.get(registry.GATE_FROM_TAG), tags.get(registry.GATE_GOLDEN_TAG)
    run_id = tags.get(registry.GATE_RUN_TAG)
    if not (started and golden and run_id and info.gate):
        return None
    if _instant(started) <= _instant(since):
        log.info(
            "%s v%d: its evaluation started at %s, before the window ended (%s): evaluating again",
            info.name,
            info.git_version,
            started,
            since,
        )
        return None
    today = golden_hash_now(info.name)
    if golden != today:
        log.info(
            "%s v%d: evaluated on golden set %s, today's is %s: evaluating again",
            info.name,
            info.git_version,
            golden[:12],
            today[:12],
        )
        return None
    try:
        metrics: dict[str, Any] = json.loads(tags.get(registry.GATE_METRICS_TAG) or "{}")
    except ValueError:
        return None
    return {
        "version": info.git_version,
        "passed": info.gate == "passed",
        "reasons": gate_reasons(run_id),
        "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)},
        "mlflow_run_id": run_id,
        "golden_hash": golden,
        "reused": True,
        "evaluated_at": started,
    }


def golden_hash_now(name: str) -> str:
    """The content hash of the golden set ``name`` is evaluated on, as it is now."""
    from dresscode.core import prompts
    from dresscode.registry.evaluation import provenance

    if name == prompts.STYLIST.name:
        from dresscode.registry.evaluation import stylist

        return provenance.scenarios_hash(stylist.load_scenarios())
    from dresscode.registry.golden import load_wardrobe_golden

    return provenance.golden_photos_hash(load_wardrobe_golden())


def gate_reasons(run_id: str) -> list[str]:
    """Why the recorded gate failed, from its MLflow run ([] when it passed or is unreadable)."""
    from dresscode.core.config import get_settings

    try:
        from mlflow import MlflowClient

        tags = MlflowClient(get_settings().mlflow_tracking_uri).get_run(run_id).data.tags
    except Exception as exc:  # the verdict stands without its sentences; say why
        log.warning("could not read the reasons of MLflow run %s: %s", run_id, exc)
        return []
    raw = tags.get("dresscode.gate_reasons", "-")
    return [] if raw in ("", "-") else raw.split("; ")


def headline(metrics: dict[str, float]) -> str:
    keys = [k for k in ("f1", "json_validity", "expectation_pass_rate") if k in metrics]
    return ", ".join(f"{k} {metrics[k]:.3f}" for k in keys) or "no headline metric"


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
