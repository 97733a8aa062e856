"""dresscode.registry against a real MLflow SQLite store (one migrated DB copied per test)."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from dresscode.core import config
from dresscode.llm import blueprints
from dresscode.llm.blueprints import Blueprint
from dresscode.registry import prompt_registry as registry

NAME = "wardrobe-digitizer"
V1_PATH = config.REPO_ROOT / "include" / "prompts" / NAME / "v1.yaml"


@pytest.fixture
def v1() -> Blueprint:
    return blueprints.from_mapping(yaml.safe_load(V1_PATH.read_text()), "include/prompts/v1")


@pytest.fixture
def v2(v1: Blueprint) -> Blueprint:
    return replace(
        v1,
        version=2,
        temperature=0.2,
        image_long_edge=1024,
        system=v1.system + "Never guess brands.\n",
        source=f"include/prompts/{NAME}/v2.yaml",
    )


@pytest.fixture
def synced(mlflow_uri: str, v1: Blueprint, v2: Blueprint) -> list[registry.SyncResult]:
    return registry.sync(NAME, [v1, v2])


def test_sync_registers_every_git_version(synced: list[registry.SyncResult]) -> None:
    assert [(r.git_version, r.created) for r in synced] == [(1, True), (2, True)]
    infos = registry.versions(NAME)
    assert [i.git_version for i in infos] == [1, 2]
    assert [i.mlflow_version for i in infos] == [r.mlflow_version for r in synced]
    assert infos[0].tags[registry.SOURCE_TAG] == "include/prompts/v1"


def test_resync_creates_no_new_mlflow_version(
    synced: list[registry.SyncResult], v1: Blueprint, v2: Blueprint
) -> None:
    again = registry.sync(NAME, [v1, v2])

    assert [r.created for r in again] == [False, False]
    assert [r.mlflow_version for r in again] == [r.mlflow_version for r in synced]
    assert len(registry.versions(NAME)) == 2


def test_sync_refuses_a_git_version_edited_after_registration(
    synced: list[registry.SyncResult], v1: Blueprint
) -> None:
    with pytest.raises(registry.RegistryError, match=r"wardrobe-digitizer v1 in git .* differs"):
        registry.sync(NAME, [replace(v1, max_tokens=2048)])


def test_mlflow_holds_template_model_config_and_response_format(
    synced: list[registry.SyncResult], mlflow_uri: str, v2: Blueprint
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    prompt = client.get_prompt_version(NAME, synced[1].mlflow_version)

    assert prompt.template == [
        {"role": "system", "content": v2.system},
        {"role": "user", "content": v2.user},
    ]
    assert prompt.model_config["model_name"] == v2.model
    assert prompt.model_config["temperature"] == 0.2
    assert prompt.model_config["extra_params"] == {"image_long_edge": 1024}
    assert prompt.response_format == v2.output_schema
    assert prompt.tags[registry.CONTENT_HASH_TAG] == v2.content_hash()


def test_load_by_version_and_alias_round_trips_the_blueprint(
    synced: list[registry.SyncResult], v1: Blueprint, v2: Blueprint
) -> None:
    registry.set_candidate(NAME, 2)

    for ref, expected in [(1, v1), ("2", v2), ("v1", v1), ("candidate", v2)]:
        loaded = registry.load(NAME, ref)
        assert loaded == expected
        assert loaded.content_hash() == expected.content_hash()


def test_promote_moves_production_to_previous(
    synced: list[registry.SyncResult], caplog: pytest.LogCaptureFixture
) -> None:
    first = registry.promote(NAME, 1, actor="alice", reason="first release")
    with caplog.at_level(logging.INFO, logger="dresscode.registry.prompt_registry"):
        second = registry.promote(NAME, 2, actor="bob", reason="F1 0.97 on golden set")

    assert (first.from_version, first.to_version) == (None, 1)
    assert (second.from_version, second.to_version, second.actor) == (1, 2, "bob")
    assert registry.aliases(NAME) == {"production": 2, "previous": 1}
    assert "production v2 (was v1) by bob" in caplog.text
    by_version = {i.git_version: i.aliases for i in registry.versions(NAME)}
    assert by_version == {1: ("previous",), 2: ("production",)}


def test_a_fresh_alias_is_seen_at_once(
    synced: list[registry.SyncResult], v1: Blueprint, v2: Blueprint
) -> None:
    registry.promote(NAME, 1, actor="alice", reason="first release")
    assert registry.load(NAME) == v1  # MLflow's alias cache would keep this for 60 s

    registry.promote(NAME, 2, actor="alice", reason="better")

    assert registry.load(NAME) == v2


def test_rollback_to_previous_that_passed_its_gate(
    synced: list[registry.SyncResult], v1: Blueprint
) -> None:
    registry.mark_gate(NAME, 1, passed=True, metrics={"item_f1": 0.96})
    registry.promote(NAME, 1, actor="alice", reason="first release")
    registry.promote(NAME, 2, actor="alice", reason="better")

    done = registry.rollback(NAME, actor="oncall", reason="v2 drops shoes")

    assert (done.action, done.from_version, done.to_version) == ("rollback", 2, 1)
    assert registry.aliases(NAME) == {"production": 1, "previous": 2}
    assert registry.load(NAME) == v1
    gate = {i.git_version: i.gate for i in registry.versions(NAME)}
    assert gate == {1: "passed", 2: None}


def test_rollback_is_refused_for_a_version_that_never_passed(
    synced: list[registry.SyncResult],
) -> None:
    registry.mark_gate(NAME, 1, passed=False, metrics={"item_f1": 0.80})
    registry.promote(NAME, 1, actor="alice", reason="hotfix")
    registry.promote(NAME, 2, actor="alice", reason="better")

    with pytest.raises(registry.RegistryError, match=r"v1: cannot roll back.*gate: failed"):
        registry.rollback(NAME, actor="oncall", reason="try")
    with pytest.raises(registry.RegistryError, match=r"no 'previous' alias"):
        registry.rollback("outfit-stylist", actor="oncall", reason="try")
    assert registry.aliases(NAME)["production"] == 2


def test_rollback_to_a_missing_version_is_refused(synced: list[registry.SyncResult]) -> None:
    with pytest.raises(registry.RegistryError, match=r"wardrobe-digitizer has no git version 7"):
        registry.rollback(NAME, 7, actor="oncall", reason="try")


def test_unknown_alias_or_version_names_prompt_and_version(
    synced: list[registry.SyncResult],
) -> None:
    with pytest.raises(
        registry.RegistryError, match=r"wardrobe-digitizer has no alias 'production'"
    ):
        registry.load(NAME)
    with pytest.raises(registry.RegistryError, match=r"wardrobe-digitizer has no git version 9"):
        registry.load(NAME, 9)
    with pytest.raises(registry.RegistryError, match=r"outfit-stylist is not registered"):
        registry.load("outfit-stylist", 1)


def test_unreachable_mlflow_raises_quickly(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MLflow loads its request-header plugins (and with them feast) on the first HTTP call:
    # a one-off import cost, not the network. Pay it before timing.
    import mlflow.tracking.request_header.registry  # noqa: F401

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    config.get_settings.cache_clear()

    started = time.monotonic()
    with pytest.raises(
        registry.RegistryError, match=r"MLflow at http://127.0.0.1:9 is unreachable"
    ):
        registry.load(NAME)
    assert time.monotonic() - started < 5


def test_a_concurrent_sync_of_the_same_version_leaves_exactly_one(
    mlflow_uri: str, v1: Blueprint
) -> None:
    # Another sync registered v1 between our read of the registry and our own register call:
    # replay that interleaving by handing _sync_one a stale "not registered yet" view.
    [theirs] = registry.sync(NAME, [v1])
    with registry._mlflow(NAME) as client:
        ours = registry._sync_one(client, NAME, v1, existing=None)
    assert (ours.created, ours.mlflow_version) == (False, theirs.mlflow_version)
    assert [(i.git_version, i.mlflow_version) for i in registry.versions(NAME)] == [
        (1, theirs.mlflow_version)
    ]
    assert registry.load(NAME, 1).content_hash() == v1.content_hash()


# --- parking: a rollback or a rejection sticks ------------------------------------------------


def test_a_rollback_parks_the_replaced_version_and_takes_candidate_off_it(
    synced: list[registry.SyncResult],
) -> None:
    registry.mark_gate(NAME, 1, passed=True, metrics={})
    registry.promote(NAME, 1, actor="alice", reason="first release")
    registry.set_candidate(NAME, 2)
    registry.promote(NAME, 2, actor="release", reason="passed its gate")

    registry.rollback(NAME, actor="oncall", reason="v2 drops shoes")

    assert registry.aliases(NAME) == {"production": 1, "previous": 2}  # no candidate left
    block = next(v.block for v in registry.versions(NAME) if v.git_version == 2)
    assert block is not None
    assert (block.action, block.actor, block.reason) == ("rollback", "oncall", "v2 drops shoes")
    assert block.describe().startswith(f"{NAME} v2 rolled back by oncall at ")


def test_a_blocked_version_is_refused_everywhere_until_a_person_unblocks_it(
    synced: list[registry.SyncResult],
) -> None:
    registry.mark_gate(NAME, 2, passed=True, metrics={})
    registry.promote(NAME, 1, actor="alice", reason="first release")
    registry.set_candidate(NAME, 2)

    registry.park(NAME, 2, action="rejected", actor="bob", reason="release rejected")

    assert "candidate" not in registry.aliases(NAME)
    for move in (
        lambda: registry.promote(NAME, 2, actor="x", reason="y"),
        lambda: registry.set_candidate(NAME, 2),
        lambda: registry.rollback(NAME, 2, actor="x", reason="y"),
    ):
        with pytest.raises(
            registry.RegistryError, match=r"v2 is blocked and cannot be .* rejected by bob"
        ):
            move()
    registry.unblock(NAME, 2, actor="carol", reason="fixed upstream")
    registry.promote(NAME, 2, actor="carol", reason="after review")
    assert registry.aliases(NAME)["production"] == 2


def test_parking_production_or_rolling_back_to_production_is_refused(
    synced: list[registry.SyncResult],
) -> None:
    registry.mark_gate(NAME, 1, passed=True, metrics={})
    registry.promote(NAME, 1, actor="alice", reason="first release")

    with pytest.raises(registry.RegistryError, match=r"v1 is production; roll it back instead"):
        registry.park(NAME, 1, action="rejected", actor="bob", reason="no")
    with pytest.raises(registry.RegistryError, match=r"v1 is already production: nothing to"):
        registry.rollback(NAME, 1, actor="oncall", reason="again")


def test_the_gate_record_names_its_golden_set_and_run(synced: list[registry.SyncResult]) -> None:
    registry.mark_gate(NAME, 1, passed=True, metrics={"f1": 1.0}, golden_hash="abc", run_id="r1")

    tags = next(v.tags for v in registry.versions(NAME) if v.git_version == 1)
    assert (tags[registry.GATE_GOLDEN_TAG], tags[registry.GATE_RUN_TAG]) == ("abc", "r1")
