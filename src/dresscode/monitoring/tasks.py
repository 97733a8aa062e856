"""The work of ``model_monitoring``, one function per task, with typed values between them.

Measure the window's quality metrics against the SLOs, test it for drift against a reference,
decide (healthy / quality_degraded / drifted), and for the last two re-evaluate production and
candidate on the golden set: promote a candidate that passes its gate and beats production on
the same golden set — after a person approves, unless ``auto_promote`` — else page the on-call
with everything needed to act; record the decision and its reasons in the lake. A parked
(blocked) version is never re-evaluated or promoted here: a rollback or a rejection stands. The DAG only wires these functions: every choice (the branch, what to re-evaluate,
promote or page, the action recorded) is made here.

What crosses an XCom is a ``TypedDict`` — a plain JSON dict at runtime (Airflow 3 refuses to
deserialize other classes from XCom) whose fields are named here: :class:`Window` ->
:class:`Measured` + :class:`DriftVerdict` -> :class:`Decision` -> :class:`Evaluation` ->
``list[str]`` (promotions, or parked versions after a rejection) or :class:`Paged` ->
:class:`Outcome` in the decisions table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Literal, NotRequired, TypedDict

from dresscode.core import lake, prompts
from dresscode.core.config import Settings, get_settings
from dresscode.monitoring.drift import DriftSummary
from dresscode.monitoring.production_judges import JudgedSample as JudgedSample
from dresscode.monitoring.reevaluation import headline as _headline
from dresscode.monitoring.slos import Branch, SloCheckRecord
from dresscode.registry.approval import APPROVAL_TIMEOUT as APPROVAL_TIMEOUT
from dresscode.registry.approval import Answer as Answer
from dresscode.registry.approval import PromotionApproval as PromotionApproval
from dresscode.registry.approval import approval_timeout as approval_timeout

log = logging.getLogger(__name__)

DAG_ID = "model_monitoring"
DIGITIZER = prompts.DIGITIZER.name
STYLIST = prompts.STYLIST.name
# SLOs about the stylist's calls; a breach there re-evaluates the stylist prompt too.
STYLIST_SLOS = {"tool_call_success_rate_min", "hallucination_rate_max", "tokens_per_outfit_max"}
DEFAULT_WINDOW = timedelta(hours=24)


# --- the values between the tasks (XCom: plain JSON dicts) -----------------------------------


class Window(TypedDict):
    """The time range under test, as ISO 8601 timestamps with a zone; ``start`` < ``end``."""

    start: str
    end: str


class Measured(TypedDict):
    """The window's SLO checks (every SLO, per prompt) and their table for people."""

    checks: list[SloCheckRecord]
    table: str


class DriftVerdict(TypedDict):
    """The drift test of the window against its reference."""

    drifted: bool
    moved: list[str]  # the drifted columns, largest effect first
    summary: DriftSummary  # the report's JSON summary
    text: str  # one line per column, drifted first
    report: str | None  # the HTML report's URI
    mlflow_run_id: str | None  # None when MLflow was unreachable


class Evidence(TypedDict):
    """What a decision rests on, for the page and the decisions table."""

    slo_table: str
    moved: list[str]
    drift_text: str
    drift_report: str | None
    drift_run: str | None  # its MLflow run (None: MLflow was unreachable)


class Decision(TypedDict):
    """The branch, the sentences that explain it, and what it asks for."""

    branch: Branch
    reasons: list[str]
    reevaluate: list[str]  # prompts to re-evaluate on the golden set; empty when healthy
    evidence: Evidence
    window_end: NotRequired[str]  # the checked window's end (set on the branches that act)


class GateRun(TypedDict):
    """One prompt version's golden-set evaluation (fresh, or one that started after the window)."""

    version: int
    passed: bool  # its release gate
    reasons: list[str]  # why the gate failed
    metrics: dict[str, float]
    mlflow_run_id: str
    golden_hash: str  # the golden set the metrics were made on
    reused: NotRequired[bool]  # the version's gate from an evaluation after the window
    evaluated_at: NotRequired[str]  # when that evaluation started


class Evaluation(TypedDict):
    """A prompt's ``production`` and ``candidate``, evaluated (None: not set, the same, or
    blocked), and the parked versions newer than production, one sentence each."""

    name: str
    because: Branch  # why the run re-evaluated (the decision's branch)
    production: GateRun | None
    candidate: GateRun | None
    parked: list[str]


class Candidate(GateRun):
    """A candidate that passed its gate and scored higher than production."""

    name: str
    beats: GateRun


class Paged(TypedDict):
    """The page sent to the on-call."""

    summary: str
    text: str


Action = Literal["promoted", "paged", "rejected", "none"]


class Outcome(TypedDict):
    """What the run did: the promotions' descriptions, the page, the versions parked after a
    rejected approval, or nothing (healthy)."""

    action: Action
    detail: list[str] | Paged | None


# --- the window ------------------------------------------------------------------------------


def current_window(
    interval_start: datetime | None,
    interval_end: datetime | None,
    run_after: datetime,
    *,
    start: str | None = None,
    end: str | None = None,
) -> Window:
    """The window under test: the Params if given, else the data interval, else the last 24 h.

    Manual runs have a zero-length data interval; the 24 hours before they started are the
    sensible default. Params let an engineer re-check any past window.
    """
    # The data interval, when the run has a real one (manual runs: zero length).
    interval = (
        (interval_start, interval_end)
        if interval_start is not None and interval_end is not None and interval_end > interval_start
        else None
    )
    end_at = _parse_ts(end, "window_end") if end else interval[1] if interval else run_after
    if start:
        start_at = _parse_ts(start, "window_start")
    elif interval and end is None:
        start_at = interval[0]
    else:
        start_at = end_at - DEFAULT_WINDOW
    if start_at >= end_at:
        raise ValueError(
            f"The monitoring window is empty: window_start {start_at.isoformat()} is not "
            f"before window_end {end_at.isoformat()}."
        )
    return Window(start=start_at.isoformat(), end=end_at.isoformat())


def _parse_ts(raw: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(
            f"Param {name}={raw!r} is not an ISO 8601 timestamp (e.g. 2026-11-23T00:00:00+00:00)."
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _bounds(window: Window) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(window["start"]), datetime.fromisoformat(window["end"])


# --- measure, detect drift, decide -----------------------------------------------------------


def measure(window: Window, settings: Settings | None = None) -> Measured:
    """Write the metrics table for the window's days; check the window against the SLOs."""
    from dresscode.monitoring import cost, metrics, slos

    settings = settings or get_settings()
    start, end = _bounds(window)
    # Whole days, so a day's row in the table is always that full day (replaced, not merged).
    day_start = start.replace(hour=0, minute=0, second=0, microsecond=0)
    day_end = end.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    table = metrics.compute_metrics(day_start, day_end, settings)
    days = [
        (day_start + timedelta(days=i)).date().isoformat()
        for i in range((day_end - day_start).days)
    ]
    # Every day of the window is written, so a day that became empty loses its stale part.
    metrics.write_metrics(table, settings, days=days)
    values = metrics.window_metrics(start, end, settings)
    checks = slos.check_slos(values, settings.monitoring_slos)
    text = slos.render_table(checks) + cost.summary(values)
    log.info(
        "window %s .. %s: %d SLOs checked, %d breached\n%s",
        window["start"],
        window["end"],
        len(checks),
        len(slos.breaches(checks)),
        text,
    )
    return Measured(checks=[c.to_dict() for c in checks], table=text)


def judge_production(window: Window, run_key: str) -> JudgedSample:
    """The LLM judges on a fixed sample of the window's suggestions (never gates or pages)."""
    from dresscode.monitoring import production_judges

    return production_judges.judge_production(*_bounds(window), run_key)


def detect_drift(window: Window, run_key: str, settings: Settings | None = None) -> DriftVerdict:
    """Evidently drift of the window against its reference; report to the lake and MLflow."""
    from dresscode.core import delta
    from dresscode.monitoring import drift, drift_frames, drift_report, embedding_drift

    settings = settings or get_settings()
    start, end = _bounds(window)
    reference = drift_frames.reference_window(
        start, settings, last_promotion=drift_frames.last_promotion(DIGITIZER)
    )
    log.info(
        "reference %s: %s .. %s%s",
        reference.source,
        reference.start.isoformat(),
        reference.end.isoformat(),
        f" ({reference.note})" if reference.note else "",
    )
    # One snapshot of the Delta tables for both frames; the report names its versions.
    with delta.snapshot("manifests", "wardrobe_items", settings=settings) as versions:
        reference_rows = drift_frames.reference_frame(reference, settings)
        current_rows = drift_frames.photo_frame(start, end, settings)
    result = drift.detect_drift(
        reference_rows,
        current_rows,
        min_rows=settings.drift_min_rows,
        drift_share=settings.drift_share,
        max_rows=settings.drift_max_rows,
    )
    result.lake_versions = versions
    result.reference = reference
    result.current = drift.Window(start, end, "current")
    # Run ids carry ':' (manual__2026-11-23T03:00:00+00:00): not a safe lake key segment.
    key = re.sub(r"[^A-Za-z0-9._=@+-]", "-", run_key)
    paths = drift_report.write_report(result, key, settings)
    mlflow_run = drift_report.log_to_mlflow(result, paths, f"drift {run_key}", settings)
    moved = [c.column for c in result.moved()]
    # The item descriptions' vectors too: a new kind of garment moves them before any SLO.
    described = embedding_drift.compare_windows(
        (reference.start, reference.end), (start, end), settings
    )
    log.info("embedding drift: %s", described.reason)
    moved += [embedding_drift.MOVED] if described.drifted else []
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
    return DriftVerdict(
        drifted=result.drifted or bool(described.drifted),
        moved=moved,
        summary=result.summary(),
        text=drift_report.drift_text(result) + f"\n{embedding_drift.MOVED}: {described.reason}",
        report=paths.get("html"),
        mlflow_run_id=mlflow_run,
    )


def decide(measured: Measured, drift: DriftVerdict) -> Decision:
    """The branch, its reasons, the prompts to re-evaluate, and the evidence (pure)."""
    from dresscode.monitoring import slos

    checks = [slos.SloCheck.from_dict(c) for c in measured["checks"]]
    verdict = slos.decide(checks, drift["drifted"], drift["moved"])
    log.info(
        "decision: %s\n%s",
        verdict.branch,
        "\n".join(f"- {r}" for r in verdict.reasons) or "- every SLO met, no drift",
    )
    return Decision(
        branch=verdict.branch,
        reasons=list(verdict.reasons),
        reevaluate=[] if verdict.branch == "healthy" else prompts_to_reevaluate(measured),
        evidence=Evidence(
            slo_table=measured["table"],
            moved=list(drift["moved"]),
            drift_text=drift["text"],
            drift_report=drift["report"],
            drift_run=drift["mlflow_run_id"],
        ),
    )


def prompts_to_reevaluate(measured: Measured) -> list[str]:
    """The digitizer always (drift and most SLOs are about it); the stylist if its SLOs broke."""
    names = [DIGITIZER]
    if any(c["slo"] in STYLIST_SLOS and c["status"] == "breach" for c in measured["checks"]):
        names.append(STYLIST)
    return names


def taken(*branches: Decision | None) -> Decision:
    """The decision handed on by the branch that ran (the skipped ones hand on None)."""
    ran = [d for d in branches if d is not None]
    if len(ran) != 1:
        raise ValueError(f"expected exactly one branch to have run, got {len(ran)}")
    return ran[0]


# --- re-evaluate, then promote or page -------------------------------------------------------


def reevaluate(decision: Decision, since: str | None = None) -> list[Evaluation]:
    """Golden-set evaluation of ``production`` and ``candidate`` of each prompt the decision
    names: :mod:`dresscode.monitoring.reevaluation` (``since``, the window's end: a version
    evaluated after it on today's golden set is not evaluated again)."""
    from dresscode.monitoring import reevaluation

    return reevaluation.run(decision, since)


# "Beats production" by: the digitizer's item F1; the share of stylist scenarios met in full.
SCORES = {name: spec.score_metric for name, spec in prompts.CATALOGUE.items()}


def _score(name: str, metrics: dict[str, float]) -> float | None:
    value = metrics.get(SCORES.get(name, "f1"))
    return None if value is None else float(value)


def better_candidates(results: list[Evaluation]) -> list[Candidate]:
    """Candidates that passed their gate and score strictly higher than production, both
    scored on the same golden set."""
    chosen = []
    for entry in results:
        cand, prod = entry.get("candidate"), entry.get("production")
        if not cand or not prod or not cand["passed"]:
            continue
        if cand.get("golden_hash") != prod.get("golden_hash"):
            log.warning("%s: scores made on different golden sets, not compared", entry["name"])
            continue
        ours, theirs = (
            _score(entry["name"], cand["metrics"]),
            _score(entry["name"], prod["metrics"]),
        )
        if ours is not None and theirs is not None and ours > theirs:
            chosen.append(Candidate(name=entry["name"], **cand, beats=prod))
    return chosen


def choose_action(
    evaluated: list[Evaluation], *, auto_promote: bool = False
) -> Literal["promote", "approve", "page"]:
    """A candidate beats production: promote it (``auto_promote``) or ask a person first
    (``approve``, the same step as prompt_release's). Else page the on-call."""
    if not better_candidates(evaluated):
        return "page"
    return "promote" if auto_promote else "approve"


def proposal(evaluated: list[Evaluation], decision: Decision) -> str:
    """What the approval asks, in Markdown: each better candidate against production, and why
    the run re-evaluated at all."""
    lines = [
        f"- **{c['name']}@{c['version']}** {_headline(c['metrics'])} vs production "
        f"@{c['beats']['version']} {_headline(c['beats']['metrics'])} on golden set "
        f"{c['golden_hash'][:12]} (MLflow runs {c['mlflow_run_id']}, {c['beats']['mlflow_run_id']})"
        for c in better_candidates(evaluated)
    ]
    why = "; ".join(decision["reasons"]) or decision["branch"]
    return "\n".join([*lines, "", f"model_monitoring re-evaluated because: {why}"])


def promote(evaluated: list[Evaluation], answer: Answer | None = None) -> list[str]:
    """Move production to each better candidate, audited like a release; the promotions.

    After an approval the approver is the actor. A candidate parked meanwhile, or whose
    production moved since it was scored (a rollback while the approval waited), is refused:
    the task fails with the reason once the others are promoted.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from dresscode.registry import prompt_registry as registry
    from dresscode.registry.approval import refusal

    because = {e["name"]: e["because"] for e in evaluated}
    done, refused = [], []
    for c in better_candidates(evaluated):
        why_not = refusal(c["name"], c["version"], c["beats"]["version"])
        if why_not:
            log.error("%s", why_not)
            refused.append(why_not)
            continue
        metric = SCORES.get(c["name"], "f1")
        reason = (
            f"model_monitoring ({because[c['name']]}): candidate {metric} "
            f"{c['metrics'][metric]:.3f} > production's {c['beats']['metrics'][metric]:.3f} "
            f"on the golden set (MLflow run {c['mlflow_run_id']})"
        )
        actor = DAG_ID
        if answer is not None:
            actor, reason = answer["by"], f"{reason}; approved at {answer['at']}"
        promotion = registry.promote(c["name"], c["version"], actor=actor, reason=reason)
        registry.audit(promotion)
        log.info("%s", promotion.describe())
        done.append(promotion.describe())
    if refused:
        raise AirflowFailException(" ".join(refused))
    return done


def park(evaluated: list[Evaluation], answer: Answer) -> list[str]:
    """A rejected (or unanswered) approval parks the candidates it proposed: blocked, with who
    and why, never promoted automatically again."""
    from dresscode.registry import prompt_registry as registry

    why = "promotion " + ("not approved in time" if answer["timed_out"] else "rejected")
    return [
        registry.park(
            c["name"],
            c["version"],
            action="rejected",
            actor=answer["by"],
            reason=f"{why} ({DAG_ID})",
        ).describe()
        for c in better_candidates(evaluated)
    ]


def page(
    decision: Decision,
    evaluated: list[Evaluation],
    *,
    window: Window,
    run_id: str | None,
) -> Paged:
    """Wake the on-call: what moved, the SLO table, the drift summary, the report, the runbook."""
    from dresscode.monitoring import links
    from dresscode.orchestration import alerts

    evidence = decision["evidence"]
    moved = evidence["moved"]
    headline = f"{decision['branch'].replace('_', ' ')}: " + (
        f"drift in {', '.join(moved)}" if moved else "; ".join(decision["reasons"][:2])
    )
    details = {
        "window": f"{window['start']} .. {window['end']}",
        "why": "\n".join(f"- {r}" for r in decision["reasons"]),
        "SLOs": evidence["slo_table"],
        "drift": evidence["drift_text"],
        "drift report": evidence["drift_report"] or "(none written)",
        "re-evaluation": evaluation_text(evaluated),
        **links.page_details(decision, evaluated, window),
        "next": "no candidate that may be promoted beats production on the golden set: find "
        "the cause with the report and the runbook, then release a fixed prompt "
        "(prompt_release) or roll back (prompt_rollback)",
    }
    alert = alerts.page(DAG_ID, headline, details, run_id=run_id, task_id="page")
    return Paged(summary=alert.summary, text=alert.text())


def evaluation_text(evaluated: list[Evaluation]) -> str:
    lines = []
    for entry in evaluated:
        for role, r in (("production", entry["production"]), ("candidate", entry["candidate"])):
            if r is None:
                continue
            verdict = "passes its gate" if r["passed"] else "FAILS: " + "; ".join(r["reasons"])
            when = (
                f" (evaluated at {r['evaluated_at']}, after the window)" if r.get("reused") else ""
            )
            lines.append(
                f"{entry['name']}@{r['version']} ({role}): {_headline(r['metrics'])}, "
                f"{verdict}{when}"
            )
        if entry["candidate"] is None and entry["production"] is not None:
            lines.append(f"{entry['name']}: no candidate other than production")
        lines += [f"blocked, never promoted automatically: {p}" for p in entry.get("parked", [])]
    return "\n".join(lines) or "nothing re-evaluated"


# --- record ----------------------------------------------------------------------------------


def outcome_of(
    promoted: list[str] | None, paged: Paged | None, parked: list[str] | None = None
) -> Outcome:
    """What the run did, from the outcomes of ``promote``, ``page`` and ``park`` (None:
    skipped)."""
    if promoted:
        return Outcome(action="promoted", detail=promoted)
    if paged:
        return Outcome(action="paged", detail=paged)
    if parked:
        return Outcome(action="rejected", detail=parked)
    return Outcome(action="none", detail=None)


def record(
    *,
    run_id: str,
    window: Window,
    decision: Decision,
    outcome: Outcome,
    settings: Settings | None = None,
) -> str:
    """Write the decision and its reasons to ``monitoring_decisions`` (re-runs replace it)."""
    settings = settings or get_settings()
    evidence = decision["evidence"]
    row = {
        "run_id": run_id,
        "window_start": window["start"],
        "window_end": window["end"],
        "branch": decision["branch"],
        "reasons": json.dumps(decision["reasons"]),
        "drifted_columns": json.dumps(evidence["moved"]),
        "drift_report": evidence["drift_report"],
        "action": outcome["action"],
        "outcome": json.dumps(outcome["detail"], default=str),
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    day = datetime.fromisoformat(window["end"]).date()
    part = "decision-" + hashlib.sha256(run_id.encode()).hexdigest()[:16]
    path = lake.write_parquet("monitoring_decisions", day, part, [row], settings)
    log.info("decision %s, action %s, recorded in %s", decision["branch"], outcome["action"], path)
    return str(path)
