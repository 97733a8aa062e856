"""The Dresscode view links each prompt version and gate evaluation to MLflow's UI when the
tracking URI is a server; a SQLite store has no UI, so no link."""

from __future__ import annotations

from pathlib import Path

import pytest

from dresscode.core import config
from dresscode.ui import view


def test_links_point_at_the_tracking_servers_ui(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000/")
    config.get_settings.cache_clear()
    links = view._mlflow_links("outfit-stylist", 3, "abc123")
    assert links == {
        "prompt_url": "http://127.0.0.1:5000/#/prompts/outfit-stylist?promptVersion=3",
        "run_url": "http://127.0.0.1:5000/#/runs/abc123",
    }
    assert view._link(links["run_url"], "2026-12-05") == (
        '<a href="http://127.0.0.1:5000/#/runs/abc123" rel="noopener">2026-12-05</a>'
    )


def test_a_sqlite_store_and_odd_urls_get_plain_escaped_text(dresscode_home: Path) -> None:
    assert view._mlflow_links("outfit-stylist", 3, "abc") == {"prompt_url": None, "run_url": None}
    assert view._link("javascript:alert(1)", "<v3>") == "&lt;v3&gt;"
