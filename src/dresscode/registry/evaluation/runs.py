"""Recorded evaluations (``dresscode eval PROMPT[@VERSION|@ALIAS]``): a prompt version on its
golden set through the ``dresscode_llm`` endpoint, one MLflow run, the gate verdict on the
version.

The digitizer runs on the golden photos (gate: F1, JSON validity, and not worse than
production *on the same golden set*); the stylist on the outfit scenarios. Each run names the
golden set's content hash and the git commit (:mod:`.provenance`). Scoring lives in
``digitizer.py`` and ``stylist.py``, imported inside functions (``digitizer`` re-exports this
module's public names).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dresscode.core import prompts
from dresscode.registry.evaluation import provenance

if TYPE_CHECKING:
    from dresscode.llm.blueprints import Blueprint
    from dresscode.registry.evaluation.digitizer import DigitizerMetrics, GateVerdict
    from dresscode.registry.evaluation.genai_run import Example
    from dresscode.registry.evaluation.scorers import Scored
    from dresscode.registry.golden import GoldenPhoto

log = logging.getLogger(__name__)

EXPERIMENT = "dresscode-evaluations"
STYLIST_PROMPT = prompts.STYLIST.name


@dataclass(frozen=True)
class EvalRun:
    """One recorded evaluation: the prompt version, its metrics, the verdict, the MLflow run,
    and what it ran on (the golden set's content hash, the git commit)."""

    ref: str
    metrics: dict[str, float]  # the headline numbers logged to MLflow
    verdict: GateVerdict
    baseline_ref: str | None
    mlflow_run_id: str
    examples: int
    golden_hash: str = ""
    git_commit: str = ""
    judges: str = "not run"  # the LLM judges' reliability, as the run's dresscode.judges tag


@dataclass(frozen=True)
class Baseline:
    """Production's metrics on the golden set a candidate is gated on (like with like)."""

    ref: str  # "name@vN (recorded on this golden set)" or "... (re-scored on this golden set)"
    metrics: DigitizerMetrics
    golden_hash: str
    mlflow_run_id: str


def _production_baseline(
    name: str, evaluated_version: int, photos: Sequence[GoldenPhoto], golden_hash: str
) -> Baseline | None:
    """Production's gate metrics on *this* golden set, unless production is what we evaluate.

    Its recorded metrics serve when they were made on the same golden set (same content hash);
    otherwise — the set grew (``dresscode golden accept``), or the record predates hashes —
    production is re-scored on this set first (its own recorded evaluation run), so a
    candidate is never gated against a score made on other data.
    """
    import json

    from dresscode.registry import prompt_registry as registry
    from dresscode.registry.evaluation.digitizer import DigitizerMetrics

    production = next((i for i in registry.versions(name) if "production" in i.aliases), None)
    if production is None or production.git_version == evaluated_version:
        return None
    ref = f"{name}@{production.git_version}"
    raw = production.tags.get(registry.GATE_METRICS_TAG)
    recorded_on = production.tags.get(registry.GATE_GOLDEN_TAG) or ""
    if raw and recorded_on == golden_hash:
        return Baseline(
            f"{ref} (recorded on this golden set)",
            DigitizerMetrics.from_summary(json.loads(raw)),
            golden_hash,
            production.tags.get(registry.GATE_RUN_TAG) or "",
        )
    log.info(
        "%s: production's gate metrics were made on golden set %s, this set is %s: "
        "re-scoring production on it before comparing",
        ref,
        recorded_on[:12] or "(unrecorded)",
        golden_hash[:12],
    )
    try:
        run = evaluate_prompt(ref, golden=photos)
    except ModelNotServed as exc:
        # A model migration: production's model is gone, so no like-for-like score exists.
        log.warning("%s cannot be re-scored (%s): no regression comparison", ref, exc)
        return None
    return Baseline(
        f"{ref} (re-scored on this golden set)",
        DigitizerMetrics.from_summary(run.metrics),
        run.golden_hash,
        run.mlflow_run_id,
    )


class ModelNotServed(ValueError):
    """The blueprint names a model the endpoint does not serve: no evaluation can mean anything."""


def check_served(blueprint: Blueprint, base_url: str, api_key: str = "EMPTY") -> None:
    """Ask the endpoint's ``/models`` whether it serves the blueprint's model; raise if not."""
    import httpx

    response = httpx.get(
        f"{base_url.rstrip('/')}/models",
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=10.0,
    )
    response.raise_for_status()
    served = sorted(m.get("id", "") for m in response.json().get("data", []))
    if blueprint.model not in served:
        raise ModelNotServed(
            f"{blueprint.ref} names model {blueprint.model!r}, which {base_url} does not serve "
            f"(it serves {served}); fix the blueprint's model or point dresscode_llm elsewhere."
        )


def evaluate_prompt(
    ref: str,
    *,
    golden: Sequence[GoldenPhoto] | None = None,
    scenarios: Sequence[Any] | None = None,
) -> EvalRun:
    """Evaluate a blueprint on its golden set through the ``dresscode_llm`` endpoint.

    ``wardrobe-digitizer`` versions run on the golden photos (gate: F1, JSON validity, and not
    worse than production); ``outfit-stylist`` versions on the outfit scenarios (gate: no
    hallucinated item, weather rules, tool calls, structured output). The version is synced to
    the registry first (idempotent), the verdict is recorded on it (``mark_gate``) and
    everything goes into one MLflow run: metrics, the verdict and its reasons, and the
    per-example table (``examples.json``), linked to the prompt version by tags, so a data
    engineer can see why a candidate failed. The run names its golden set's content hash and
    the git commit (``dresscode.golden_hash``, ``dresscode.git_commit``); the version's gate
    record carries the same hash.
    """
    import mlflow

    from dresscode.core.config import get_settings
    from dresscode.llm.hook import DresscodeLLMHook
    from dresscode.registry import prompt_registry as registry
    from dresscode.registry.evaluation import genai_run, judges

    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    name, _, selector = ref.partition("@")
    registry.sync(name)
    blueprint = registry.load(name, selector or "production")
    settings = get_settings()
    endpoint = DresscodeLLMHook(settings=settings).endpoint()
    check_served(blueprint, endpoint.base_url, endpoint.api_key)
    if name == STYLIST_PROMPT:
        ran = _run_stylist(blueprint, scenarios)
    else:
        ran = _run_digitizer(blueprint, golden)
    tags = provenance.run_tags(ran.golden_set, ran.golden_hash)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    registry.use_experiment(mlflow, EXPERIMENT, settings)
    experiment_id = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id  # type: ignore[union-attr]
    mlflow_version = next(
        (i.mlflow_version for i in registry.versions(name) if i.git_version == blueprint.version),
        None,
    )
    with genai_run.recording(blueprint.ref):
        dataset = genai_run.golden_dataset(
            ran.golden_set, ran.golden_hash, ran.examples, experiment_id
        )
        model_id = genai_run.logged_model(blueprint, experiment_id, mlflow_version)
        with (
            judges.environment(endpoint, settings.judge_timeout_s),
            mlflow.start_run(run_name=f"eval {blueprint.ref}") as active,
        ):
            run_id = active.info.run_id
            mlflow.set_tags(
                {
                    "dresscode.prompt": name,
                    "dresscode.prompt_version": str(blueprint.version),
                    "dresscode.model": blueprint.model,
                    "dresscode.content_hash": blueprint.content_hash(),
                    genai_run.LOGGED_MODEL_TAG: model_id,
                    "dresscode.golden_examples": str(len(ran.rows)),
                    **genai_run.tag_dataset(run_id, dataset),
                    **tags,
                }
            )
            scored = genai_run.evaluate(
                ran.examples, ran.scorers, ran.scorer_names, model_id=model_id
            )
            summary, verdict = ran.verdict_on(scored)
            trust = judges.reliability(
                ran.judges, ran.examples, scored, settings.judge_min_agreement
            )
            mlflow.log_metrics(trust.metrics())
            baseline = ran.baseline
            mlflow.set_tags(
                {
                    "dresscode.gate": "passed" if verdict.passed else "failed",
                    "dresscode.gate_reasons": "; ".join(verdict.reasons) or "-",
                    "dresscode.baseline": baseline.ref if baseline else "-",
                    "dresscode.baseline_run": baseline.mlflow_run_id if baseline else "-",
                    "dresscode.baseline_golden_hash": baseline.golden_hash if baseline else "-",
                    "dresscode.scorer_errors": str(len(scored.errors)),
                    "dresscode.judges": trust.sentence(),
                }
            )
            mlflow.log_metrics(summary)
            mlflow.log_dict({"rows": ran.rows}, "examples.json")
            genai_run.link_prompt(run_id, name, mlflow_version)
    registry.mark_gate(
        name,
        blueprint.version,
        verdict.passed,
        summary,
        golden_hash=ran.golden_hash,
        run_id=run_id,
        started_at=started_at,
    )
    return EvalRun(
        blueprint.ref,
        summary,
        verdict,
        baseline.ref if baseline else None,
        run_id,
        len(ran.rows),
        golden_hash=ran.golden_hash,
        git_commit=tags[provenance.GIT_COMMIT_TAG],
        judges=trust.sentence(),
    )


@dataclass(frozen=True)
class _Ran:
    """One golden-set run before it is scored and recorded: the examples for MLflow, the
    runner's per-example table, and how the scores become a gate verdict."""

    examples: list[Example]
    rows: list[dict[str, Any]]
    scorers: list[Any]
    scorer_names: tuple[str, ...]
    baseline: Baseline | None
    golden_set: str  # "wardrobe" or "outfits"
    golden_hash: str
    judges: list[Any] = field(default_factory=list)  # the LLM judges among the scorers

    def verdict_on(self, scored: Scored) -> tuple[dict[str, float], GateVerdict]:
        """The gate figures from MLflow's assessments, and the verdict on them; a scorer
        error fails the gate (a partial score proves nothing)."""
        from dresscode.registry.evaluation import scorers
        from dresscode.registry.evaluation import stylist as stylist_eval
        from dresscode.registry.evaluation.digitizer import DigitizerMetrics, GateVerdict, gate

        if self.golden_set == "outfits":
            summary = scorers.stylist_summary(scored)
            counts = {k: int(summary[k]) for k in ("n_answered", "hallucinated_items")}
            passed, reasons = stylist_eval.stylist_gate({**summary, **counts})
            verdict = GateVerdict(passed, reasons)
        else:
            summary = scorers.digitizer_summary(scored)
            baseline = self.baseline.metrics if self.baseline else None
            verdict = gate(DigitizerMetrics.from_summary(summary), baseline=baseline)
        # A judge's error is that example's judgement missing, not a reason to refuse a
        # release: the gate is deterministic.
        errors = scored.errors_sentence(ignore={j.name for j in self.judges})
        if errors:
            log.error("%s", errors)
            verdict = GateVerdict(False, [*verdict.reasons, errors])
        return summary, verdict


def _run_digitizer(blueprint: Blueprint, golden: Sequence[GoldenPhoto] | None) -> _Ran:
    import asyncio

    from dresscode.core.config import get_settings
    from dresscode.ingest.digitize import digitize_many
    from dresscode.llm.hook import DresscodeLLMHook
    from dresscode.registry.evaluation import genai_run, scorers
    from dresscode.registry.evaluation.digitizer import DigitizerExample, score_digitizer
    from dresscode.registry.golden import load_wardrobe_golden

    settings = get_settings()
    photos = list(golden) if golden is not None else load_wardrobe_golden()
    golden_hash = provenance.golden_photos_hash(photos)
    baseline = _production_baseline(blueprint.name, blueprint.version, photos, golden_hash)

    async def run() -> list[DigitizerExample]:
        # Sent as stored: golden JPEGs are normalized, so the labels' sha256 is what is seen.
        async with DresscodeLLMHook(settings=settings).get_offline_client() as client:
            answers = await digitize_many(
                client, blueprint, [(p.image_sha256, p.read_jpeg()) for p in photos]
            )
        return [DigitizerExample.from_digitized(p, a) for p, a in zip(photos, answers, strict=True)]

    answered = asyncio.run(run())
    examples = [
        genai_run.digitizer_example(
            photo,
            {
                "items": ex.predicted,
                "json_valid": ex.json_valid,
                "repaired": ex.repaired,
                "error_class": ex.error_class,
            },
        )
        for photo, ex in zip(photos, answered, strict=True)
    ]
    table = score_digitizer(answered).table()
    return _Ran(
        examples,
        table,
        scorers.digitizer_scorers(),
        scorers.DIGITIZER_SCORERS,
        baseline,
        "wardrobe",
        golden_hash,
    )


def _run_stylist(blueprint: Blueprint, scenarios: Sequence[Any] | None) -> _Ran:
    import asyncio

    from dresscode.core.config import get_settings
    from dresscode.llm.hook import DresscodeLLMHook
    from dresscode.registry.evaluation import genai_run, judges, scorers
    from dresscode.registry.evaluation import stylist as stylist_eval

    settings = get_settings()
    chosen = list(scenarios) if scenarios is not None else stylist_eval.load_scenarios()

    async def run() -> list[stylist_eval.StylistResult]:
        async with DresscodeLLMHook(settings=settings).get_offline_client() as client:
            return await stylist_eval.run_scenarios(
                client, blueprint, chosen, max_turns=settings.outfit_max_turns
            )

    results = asyncio.run(run())
    judged = []
    if settings.eval_judges:
        endpoint = DresscodeLLMHook(settings=settings).endpoint()
        judged = judges.from_settings(endpoint, settings)
    rows = [stylist_eval.example_row(r) for r in results]
    examples = [
        genai_run.stylist_example(
            r.scenario, row, {"outfits": r.suggestion.outfits, "notes": r.suggestion.notes}
        )
        for r, row in zip(results, rows, strict=True)
    ]
    return _Ran(
        examples,
        rows,
        [*scorers.stylist_scorers(), *judges.as_scorers(judged)],
        (*scorers.STYLIST_SCORERS, *(j.name for j in judged)),
        None,
        "outfits",
        provenance.scenarios_hash(chosen),
        judged,
    )
