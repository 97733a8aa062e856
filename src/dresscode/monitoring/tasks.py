"""The work of ``model_monitoring``, one function per task.

Measure the window's quality metrics against the SLOs, test it for drift against a reference,
decide (healthy / quality_degraded / drifted), and for the last two re-evaluate production and
candidate on the golden set: promote a candidate that passes its gate and beats production,
else page the on-call with everything needed to act. Each function returns a small JSON-safe
dict (XCom and the task log); the decision and its reasons go to the lake.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from dresscode.core import lake, prompts
from dresscode.core.config import Settings, get_settings

log = logging.getLogger(__name__)

DAG_ID = "model_monitoring"
DIGITIZER = prompts.DIGITIZER.name
STYLIST = prompts.STYLIST.name
# SLOs about the stylist's calls; a breach there re-evaluates the stylist prompt too.
STYLIST_SLOS = {"tool_call_success_rate_min", "hallucination_rate_max"}
DEFAULT_WINDOW = timedelta(hours=24)


def current_window(
    interval_start: datetime | None,
    interval_end: datetime | None,
    run_after: datetime,
    *,
    start: str | None = None,
    end: str | None = None,
) -> dict[str, str]:
    """The window under test: the Params if given, else the data interval, else the last 24 h.

    Manual runs have a zero-length data interval; the 24 hours before they started are the
    sensible default. Params let an engineer re-check any past window.
    """
    end_at = _parse_ts(end, "window_end") if end else None
    start_at = _parse_ts(start, "window_start") if start else None
    if end_at is None:
        has_interval = interval_start is not None and interval_end is not None
        end_at = interval_end if has_interval and interval_end > interval_start else run_after
    if start_at is None:
        has_interval = interval_start is not None and interval_end is not None
        start_at = (
            interval_start
            if has_interval and interval_end > interval_start and end is None
            else end_at - DEFAULT_WINDOW
        )
    if start_at >= end_at:
        raise ValueError(
            f"The monitoring window is empty: window_start {start_at.isoformat()} is not "
            f"before window_end {end_at.isoformat()}."
        )
    return {"start": start_at.isoformat(), "end": end_at.isoformat()}


def _parse_ts(raw: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(
            f"Param {name}={raw!r} is not an ISO 8601 timestamp (e.g. 2026-11-23T00:00:00+00:00)."
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _bounds(window: dict[str, str]) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(window["start"]), datetime.fromisoformat(window["end"])


def measure(window: dict[str, str], settings: Settings | None = None) -> dict[str, Any]:
    """Write the metrics table for the window's days; check the window against the SLOs."""
    from dresscode.monitoring import metrics as monitoring

    settings = settings or get_settings()
    start, end = _bounds(window)
    # Whole days, so a day's row in the table is always that full day (replaced, not merged).
    day_start = start.replace(hour=0, minute=0, second=0, microsecond=0)
    day_end = end.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    table = monitoring.compute_metrics(day_start, day_end, settings)
    days = [
        (day_start + timedelta(days=i)).date().isoformat()
        for i in range((day_end - day_start).days)
    ]
    # Every day of the window is written, so a day that became empty loses its stale part.
    monitoring.write_metrics(table, settings, days=days)
    checks = monitoring.check_slos(
        monitoring.window_metrics(start, end, settings), settings.monitoring_slos
    )
    text = monitoring.render_table(checks)
    breaches = monitoring.breaches(checks)
    log.info(
        "window %s .. %s: %d SLOs checked, %d breached\n%s",
        window["start"],
        window["end"],
        len(checks),
        len(breaches),
        text,
    )
    return {"checks": [asdict(c) for c in checks], "table": text}


def detect_drift(
    window: dict[str, str], run_key: str, settings: Settings | None = None
) -> dict[str, Any]:
    """Evidently drift of the window against its reference; report to the lake and MLflow."""
    from dresscode.monitoring import drift

    settings = settings or get_settings()
    start, end = _bounds(window)
    reference = drift.reference_window(
        start, settings, last_promotion=drift.last_promotion(DIGITIZER)
    )
    log.info(
        "reference %s: %s .. %s%s",
        reference.source,
        reference.start.isoformat(),
        reference.end.isoformat(),
        f" ({reference.note})" if reference.note else "",
    )
    result = drift.detect_drift(
        drift.reference_frame(reference, settings),
        drift.photo_frame(start, end, settings),
        min_rows=settings.drift_min_rows,
        drift_share=settings.drift_share,
        max_rows=settings.drift_max_rows,
    )
    result.reference = reference
    result.current = drift.Window(start, end, "current")
    # Run ids carry ':' (manual__2026-11-23T03:00:00+00:00): not a safe lake key segment.
    key = re.sub(r"[^A-Za-z0-9._=@+-]", "-", run_key)
    paths = drift.write_report(result, key, settings)
    mlflow_run = drift.log_to_mlflow(result, paths, f"drift {run_key}", settings)
    moved = [c.column for c in result.moved()]
    log.info(
        "drift: %s — %d of %d tested columns drifted (share %.2f, threshold %.2f)%s; report %s",
        "DRIFTED" if result.drifted else "no drift",
        len(moved),
        sum(c.status != "not_enough_data" for c in result.columns),
        result.drift_share,
        settings.drift_share,
        f": {', '.join(moved)}" if moved else "",
        paths.get("html"),
    )
    return {
        "drifted": result.drifted,
        "moved": moved,
        "summary": result.summary(),
        "text": drift_text(result),
        "report": paths.get("html"),
        "mlflow_run_id": mlflow_run,
    }


def drift_text(result: Any) -> str:
    """One line per tested or skipped column, drifted first (for the page and the log)."""
    lines = []
    order = {"drifted": 0, "stable": 1, "not_enough_data": 2}
    for c in sorted(result.columns, key=lambda c: (order.get(c.status, 3), c.column)):
        if c.status == "not_enough_data":
            lines.append(
                f"{c.column}: not enough data ({c.n_reference} reference, {c.n_current} current rows)"
            )
            continue
        score = "" if c.score is None else f" {c.stattest} {c.score:.3g}"
        bound = "" if c.threshold is None else f" (threshold {c.threshold:.3g})"
        lines.append(f"{c.column}: {c.status}{score}{bound}")
    return "\n".join(lines)


def decide(measured: dict[str, Any], drifted: dict[str, Any]) -> dict[str, Any]:
    """The branch and its reasons (pure: SLO checks + drift verdict in, decision out)."""
    from dresscode.monitoring import metrics as monitoring

    checks = [monitoring.SloCheck(**c) for c in measured["checks"]]
    decision = monitoring.decide(checks, drifted["drifted"], drifted["moved"])
    log.info(
        "decision: %s\n%s",
        decision.branch,
        "\n".join(f"- {r}" for r in decision.reasons) or "- every SLO met, no drift",
    )
    return {"branch": decision.branch, "reasons": list(decision.reasons)}


def prompts_to_reevaluate(measured: dict[str, Any]) -> list[str]:
    """The digitizer always (drift and most SLOs are about it); the stylist if its SLOs broke."""
    names = [DIGITIZER]
    if any(c["slo"] in STYLIST_SLOS and c["status"] == "breach" for c in measured["checks"]):
        names.append(STYLIST)
    return names


def reevaluate(names: list[str]) -> list[dict[str, Any]]:
    """Golden-set evaluation of ``production`` and ``candidate`` of each prompt, fresh."""
    from dresscode.registry import prompt_registry as registry
    from dresscode.registry.evaluation import digitizer as evaluation

    results = []
    for name in names:
        aliases = registry.aliases(name)
        production = aliases.get("production")
        candidate = aliases.get("candidate")
        entry: dict[str, Any] = {
            "name": name,
            "production": None,
            "candidate": None,
        }
        if production is None:
            log.warning("%s: nothing in production, nothing to re-evaluate", name)
            results.append(entry)
            continue
        for role, version in (("production", production), ("candidate", candidate)):
            if version is None or (role == "candidate" and version == production):
                continue
            run = evaluation.evaluate_prompt(f"{name}@{version}")
            entry[role] = {
                "version": version,
                "passed": run.verdict.passed,
                "reasons": list(run.verdict.reasons),
                "metrics": run.metrics,
                "mlflow_run_id": run.mlflow_run_id,
            }
            log.info(
                "%s@%s (%s): gate %s, %s",
                name,
                version,
                role,
                "passed" if run.verdict.passed else "FAILED: " + "; ".join(run.verdict.reasons),
                _headline(run.metrics),
            )
        results.append(entry)
    return results


# The score that decides "beats production": item F1 for the digitizer; for the stylist, the
# share of scenarios meeting every expectation.
SCORES = {name: spec.score_metric for name, spec in prompts.CATALOGUE.items()}


def _score(name: str, metrics: dict[str, float]) -> float | None:
    value = metrics.get(SCORES.get(name, "f1"))
    return None if value is None else float(value)


def _headline(metrics: dict[str, float]) -> str:
    keys = [k for k in ("f1", "json_validity", "expectation_pass_rate") if k in metrics]
    return ", ".join(f"{k} {metrics[k]:.3f}" for k in keys) or "no headline metric"


def better_candidates(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Candidates that passed their gate and score strictly higher than production."""
    chosen = []
    for entry in results:
        cand, prod = entry.get("candidate"), entry.get("production")
        if not cand or not prod or not cand["passed"]:
            continue
        ours, theirs = (
            _score(entry["name"], cand["metrics"]),
            _score(entry["name"], prod["metrics"]),
        )
        if ours is not None and theirs is not None and ours > theirs:
            chosen.append({"name": entry["name"], **cand, "beats": prod})
    return chosen


def promote(chosen: list[dict[str, Any]], decision: dict[str, Any]) -> list[str]:
    """Move production to each better candidate, audited like a release."""
    from dresscode.registry import prompt_registry as registry

    done = []
    for c in chosen:
        metric = SCORES.get(c["name"], "f1")
        reason = (
            f"model_monitoring ({decision['branch']}): candidate {metric} "
            f"{c['metrics'][metric]:.3f} > production's {c['beats']['metrics'][metric]:.3f} "
            f"on the golden set (MLflow run {c['mlflow_run_id']})"
        )
        promotion = registry.promote(c["name"], c["version"], actor=DAG_ID, reason=reason)
        registry.audit(promotion)
        log.info("%s", promotion.describe())
        done.append(promotion.describe())
    return done


def page(
    decision: dict[str, Any],
    measured: dict[str, Any],
    drifted: dict[str, Any],
    evaluated: list[dict[str, Any]],
    *,
    window: dict[str, str],
    run_id: str | None,
) -> dict[str, Any]:
    """Wake the on-call: what moved, the SLO table, the drift summary, the report, the runbook."""
    from dresscode.orchestration import alerts

    moved = drifted["moved"]
    headline = f"{decision['branch'].replace('_', ' ')}: " + (
        f"drift in {', '.join(moved)}" if moved else "; ".join(decision["reasons"][:2])
    )
    details = {
        "window": f"{window['start']} .. {window['end']}",
        "why": "\n".join(f"- {r}" for r in decision["reasons"]),
        "SLOs": measured["table"],
        "drift": drifted["text"],
        "drift report": drifted["report"] or "(none written)",
        "re-evaluation": evaluation_text(evaluated),
        "next": "no candidate beats production on the golden set: find the cause with the "
        "report and the runbook, then release a fixed prompt (prompt_release) or roll back "
        "(prompt_rollback)",
    }
    alert = alerts.page(DAG_ID, headline, details, run_id=run_id, task_id="page")
    return {"summary": alert.summary, "text": alert.text()}


def evaluation_text(evaluated: list[dict[str, Any]]) -> str:
    lines = []
    for entry in evaluated:
        for role in ("production", "candidate"):
            r = entry.get(role)
            if r is None:
                continue
            verdict = "passes its gate" if r["passed"] else "FAILS: " + "; ".join(r["reasons"])
            lines.append(
                f"{entry['name']}@{r['version']} ({role}): {_headline(r['metrics'])}, {verdict}"
            )
        if entry.get("candidate") is None and entry.get("production") is not None:
            lines.append(f"{entry['name']}: no candidate other than production")
    return "\n".join(lines) or "nothing re-evaluated"


def record(
    *,
    run_id: str,
    window: dict[str, str],
    decision: dict[str, Any],
    drifted: dict[str, Any],
    action: str,
    outcome: Any,
    settings: Settings | None = None,
) -> str:
    """Write the decision and its reasons to ``monitoring_decisions`` (re-runs replace it)."""
    settings = settings or get_settings()
    row = {
        "run_id": run_id,
        "window_start": window["start"],
        "window_end": window["end"],
        "branch": decision["branch"],
        "reasons": json.dumps(decision["reasons"]),
        "drifted_columns": json.dumps(drifted["moved"]),
        "drift_report": drifted["report"],
        "action": action,
        "outcome": json.dumps(outcome, default=str),
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    day = datetime.fromisoformat(window["end"]).date()
    part = "decision-" + hashlib.sha256(run_id.encode()).hexdigest()[:16]
    path = lake.write_parquet("monitoring_decisions", day, part, [row], settings)
    log.info("decision %s, action %s, recorded in %s", decision["branch"], action, path)
    return str(path)
