"""The CI gate: every blueprint in git passes its golden-set gate against the simulator.

A blueprint that fails its gate fails `make test`. The simulator serves the production model
id with its `faithful` profile (occasional dropped items, chatter, fences, a rare unowned item
— seeded, so the verdicts are reproducible); a blueprint naming another model is answered by
that model's profile. The kept failing example (`include/prompts/_examples/`) names a sloppy
simulated model and must be rejected, or the gate would have no teeth. These are the
simulator's numbers, not Gemma's: the gate checks that a blueprint keeps the contract (schema,
placeholders, tools, the model it names), not how well Gemma follows its wording.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from dresscode.llm import blueprints
from dresscode.llm.blueprints import Blueprint
from dresscode.llm.client import LLMClient
from dresscode.registry import golden
from dresscode.registry.evaluation import digitizer as evaluation
from dresscode.registry.evaluation import stylist as stylist_eval
from dresscode.sim.testing import running_simulator

GEMMA = "google/gemma-4-26B-A4B-it"
SLOPPY = "dresscode-sim/sloppy"
IN_GIT = [bp for name in blueprints.prompt_names() for bp in blueprints.versions_in_git(name)]
EXAMPLES = blueprints.PROMPTS_DIR / "_examples"


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    script = golden.write_script(
        golden.load_wardrobe_golden(), tmp_path_factory.mktemp("gate") / "golden.jsonl"
    )
    with running_simulator(
        scripts=[script],
        served_model_name=[f"{GEMMA}=faithful", f"{SLOPPY}=sloppy"],
        fixed_latency_ms=2,
        max_num_seqs=64,
    ) as url:
        yield url


def verdict(blueprint: Blueprint, url: str) -> tuple[bool, list[str]]:
    if blueprint.name == evaluation.STYLIST_PROMPT:
        metrics, _ = stylist_eval.evaluate_stylist(blueprint, url, max_concurrency=32)
        return stylist_eval.stylist_gate(metrics)

    async def run() -> evaluation.DigitizerMetrics:
        async with LLMClient(url, model=blueprint.model, max_concurrency=32) as client:
            return await evaluation.evaluate_digitizer(
                client, blueprint, golden.load_wardrobe_golden()
            )

    result = evaluation.gate(asyncio.run(run()))
    return result.passed, result.reasons


def test_both_prompts_have_at_least_two_versions_in_git() -> None:
    versions = {
        name: [b.version for b in IN_GIT if b.name == name] for name in blueprints.prompt_names()
    }
    assert set(versions) == {"wardrobe-digitizer", "outfit-stylist"}
    assert all(len(v) >= 2 for v in versions.values()), versions


@pytest.mark.parametrize("blueprint", IN_GIT, ids=lambda b: b.ref)
def test_every_blueprint_in_git_passes_its_gate(blueprint: Blueprint, endpoint: str) -> None:
    passed, reasons = verdict(blueprint, endpoint)
    assert passed, f"{blueprint.ref} ({blueprint.source}) fails its gate: {'; '.join(reasons)}"


def test_the_sloppy_example_fails_its_gate(endpoint: str) -> None:
    [example] = blueprints.versions_in_git("wardrobe-digitizer", EXAMPLES)
    assert example.model == SLOPPY
    passed, reasons = verdict(example, endpoint)
    assert not passed
    assert any(r.startswith("item F1") for r in reasons), reasons


def test_examples_are_never_released() -> None:
    assert "_examples" not in blueprints.prompt_names()
    assert all(Path(b.source).parts[:3] != ("include", "prompts", "_examples") for b in IN_GIT)
