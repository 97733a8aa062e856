"""The served aliases follow the MLflow prompt registry without a restart."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from dresscode.llm import blueprints
from dresscode.registry import prompt_registry as registry
from dresscode.serve.aliases import LivePrompts

NAME = "outfit-stylist"
REFRESH_S = 0.3


@pytest.fixture
def registered(mlflow_uri: str) -> None:
    registry.sync(NAME, [blueprints.resolve(f"{NAME}@1"), blueprints.resolve(f"{NAME}@2")])
    for version in (1, 2):
        registry.mark_gate(NAME, version, passed=True, metrics={})


async def until(condition: Any, bound_s: float) -> float:
    """Seconds until ``condition()`` holds; fails after ``bound_s``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < bound_s, "not seen within the bound"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_nothing_promoted_serves_the_newest_git_blueprint(mlflow_uri: str) -> None:
    prompts = LivePrompts(NAME, REFRESH_S)
    await prompts.start()
    try:
        snapshot = prompts.current()
        assert snapshot.production.ref == f"{NAME}@2" and snapshot.candidate is None
        assert snapshot.source.startswith("git")
    finally:
        await prompts.aclose()


async def test_a_promotion_and_a_rollback_are_served_within_the_refresh_bound(
    registered: None,
) -> None:
    registry.promote(NAME, 1, actor="test", reason="first")
    registry.set_candidate(NAME, 2)
    prompts = LivePrompts(NAME, REFRESH_S)
    await prompts.start()
    try:
        held = prompts.current()  # what a stream that started now keeps
        assert (held.production.version, held.candidate and held.candidate.version) == (1, 2)
        await asyncio.to_thread(registry.promote, NAME, 2, actor="test", reason="go")
        # The bound: one refresh interval plus one registry read (MLflow on SQLite: well under 2 s).
        await until(lambda: prompts.current().production.version == 2, REFRESH_S + 2.0)
        assert prompts.current().candidate is None  # candidate == production: nothing to compare
        assert held.production.version == 1  # the earlier snapshot is unchanged
        await asyncio.to_thread(registry.rollback, NAME, "previous", actor="test", reason="undo")
        await until(lambda: prompts.current().production.version == 1, REFRESH_S + 2.0)
    finally:
        await prompts.aclose()


async def test_an_unreadable_registry_keeps_the_last_good_blueprints(
    registered: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.promote(NAME, 2, actor="test", reason="first")
    prompts = LivePrompts(NAME, 3600)
    await prompts.start()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
        from dresscode.core import config

        config.get_settings.cache_clear()
        await prompts.refresh()
        assert prompts.current().production.version == 2
    finally:
        await prompts.aclose()


def test_a_blueprint_names_the_deployment_serving_it_without_changing_older_hashes() -> None:
    import dataclasses

    from dresscode.serve.service import Service

    v2 = blueprints.resolve(f"{NAME}@2")
    assert v2.connection == ""  # written before blueprints named a deployment: hash unchanged
    quantized = dataclasses.replace(v2, connection="dresscode_llm_fp8")
    assert quantized.content_hash() != v2.content_hash()  # another deployment is another version
    assert (
        blueprints.from_mapping(
            {**dataclasses.asdict(quantized), "output_schema": v2.output_schema}, "x"
        ).connection
        == "dresscode_llm_fp8"
    )

    made: list[str] = []

    def client_for(conn_id: str) -> Any:
        made.append(conn_id)
        return object()

    service = Service.__new__(Service)  # only the client routing is under test here
    service._client_for, service._clients = client_for, {}
    first = service.client(v2)
    assert service.client(quantized) is not first and service.client(v2) is first
    assert made == ["", "dresscode_llm_fp8"]  # one client per deployment, made once
