"""`dresscode prompts …`: what the engineer on call types, against a real MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest

from dresscode.local import cli
from dresscode.registry import prompt_registry as registry

NAME = "wardrobe-digitizer"


@pytest.fixture
def synced(dresscode_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["prompts", "sync", NAME]) == 0
    assert "v1: registered" in capsys.readouterr().out


def test_sync_twice_registers_nothing_new(synced: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["prompts", "sync", NAME]) == 0
    out = capsys.readouterr().out
    assert "v1: already registered" in out and "v2: already registered" in out


def test_promote_needs_a_reason_and_a_passed_gate(
    synced: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["prompts", "promote", NAME, "2"]) == 2
    assert "needs --reason" in capsys.readouterr().err
    assert cli.main(["prompts", "promote", NAME, "2", "--reason", "looks better"]) == 1
    assert "has not passed its gate (gate: never evaluated)" in capsys.readouterr().err
    assert registry.aliases(NAME) == {}


def test_promote_then_rollback_from_the_shell(
    synced: None, capsys: pytest.CaptureFixture[str]
) -> None:
    for version in (1, 2):
        registry.mark_gate(NAME, version, True, {"item_f1": 0.97})
    assert (
        cli.main(["prompts", "promote", NAME, "1", "--reason", "baseline", "--actor", "ana"]) == 0
    )
    assert (
        cli.main(["prompts", "promote", NAME, "v2", "--reason", "better F1", "--actor", "ana"]) == 0
    )
    capsys.readouterr()

    assert (
        cli.main(
            [
                "prompts",
                "rollback",
                NAME,
                "--reason",
                "wool coats in a heatwave",
                "--actor",
                "oncall",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "rollback: wardrobe-digitizer production v1 (was v2) by oncall" in out
    assert cli.main(["prompts", "list", NAME]) == 0
    listing = capsys.readouterr().out
    assert "v1  aliases: production" in listing and "v2  aliases: previous" in listing


def test_rollback_to_a_version_that_never_passed_is_refused(
    synced: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["prompts", "rollback", NAME, "7", "--reason", "panic"]) == 1
    assert capsys.readouterr().err.startswith("error: ")
