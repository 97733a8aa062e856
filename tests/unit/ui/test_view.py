"""The Dresscode view, served by Airflow's real api-server app with the plugin mounted.

The app is built the way ``airflow api-server`` builds it (``create_app``: plugins from the
plugins folder, the simple auth manager, its JWT); the data is a real lake on a tmp dir and a
real MLflow registry on SQLite holding the git blueprints.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dresscode.core import config, lake
from dresscode.llm import blueprints
from dresscode.registry import prompt_registry as registry
from dresscode.ui import view

PLUGINS = config.REPO_ROOT / "plugins"
DIGITIZER = "wardrobe-digitizer"
TODAY = datetime.now(UTC).date()


@pytest.fixture(scope="module")
def airflow_app(airflow_db: Path) -> Iterator[object]:
    """Airflow's api-server app with this repo's plugins folder; yields a TestClient."""
    from airflow import plugins_manager, settings
    from airflow.api_fastapi import app as api_app
    from fastapi.testclient import TestClient

    mp = pytest.MonkeyPatch()
    mp.setattr(settings, "PLUGINS_FOLDER", str(PLUGINS))
    _clear_plugin_caches(plugins_manager)
    api_app.purge_cached_app()
    try:
        yield TestClient(api_app.create_app(apps="core"))
    finally:
        mp.undo()
        _clear_plugin_caches(plugins_manager)
        api_app.purge_cached_app()


def _clear_plugin_caches(plugins_manager: object) -> None:
    for name in dir(plugins_manager):
        fn = getattr(plugins_manager, name)
        if callable(fn) and hasattr(fn, "cache_clear"):
            fn.cache_clear()


@pytest.fixture(scope="module")
def token(airflow_app: object) -> str:
    """A JWT for the admin user, signed by the auth manager the app initialized."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="ADMIN"))


@pytest.fixture
def registered(empty_mlflow_db: Path, dresscode_home: Path, monkeypatch: pytest.MonkeyPatch):
    """Every git prompt synced; the digitizer v1 gated and promoted, v2 failed as candidate."""
    dresscode_home.mkdir(parents=True, exist_ok=True)
    db = dresscode_home / "mlflow.db"
    shutil.copy(empty_mlflow_db, db)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    config.get_settings.cache_clear()
    for name in blueprints.prompt_names():
        registry.sync(name)
    registry.mark_gate(DIGITIZER, 1, True, {"f1": 0.91, "json_validity": 1.0})
    registry.promote(DIGITIZER, 1, actor="test", reason="first release")
    registry.mark_gate(DIGITIZER, 2, False, {"f1": 0.52, "json_validity": 0.97})
    registry.set_candidate(DIGITIZER, 2)
    return dresscode_home


def _metric(day: str, version: str, metric: str, value: float, n: int) -> dict:
    return {
        "day": day,
        "prompt_name": DIGITIZER,
        "prompt_version": version,
        "metric": metric,
        "value": value,
        "n": n,
    }


def _manifest(key: str, status: str, code: str | None, at: str) -> dict:
    return {
        "upload_key": key,
        "status": status,
        "reason_code": code,
        "reason": f"<b>{code}</b> detail" if code else None,
        "processed_at": at,
    }


@pytest.fixture
def lake_rows(registered: Path) -> dict[str, str]:
    """Quality metrics for two days, a decision with its drift report, some manifests."""
    yesterday, today = (TODAY - timedelta(days=1)).isoformat(), TODAY.isoformat()
    old = (TODAY - timedelta(days=10)).isoformat()
    lake.write_parquet(
        "quality_metrics",
        yesterday,
        "metrics",
        [
            _metric(yesterday, "1", "call_error_rate", 0.10, 30),
            _metric(yesterday, "2", "call_error_rate", 0.0, 10),
        ],
    )
    spend = _metric(today, "", "cost_usd_per_day", 123.45, 40) | {"prompt_name": ""}
    lake.write_parquet(
        "quality_metrics",
        today,
        "metrics",
        [_metric(today, "1", "call_error_rate", 0.02, 50), spend],
    )
    # Older than 7 days: must not be on the chart.
    lake.write_parquet(
        "quality_metrics", old, "metrics", [_metric(old, "1", "json_error_rate", 0.5, 10)]
    )
    report = lake.table("reports") / "drift" / f"date={yesterday}" / "run-abc.html"
    lake.write_bytes(report, b"<html><body>EVIDENTLY DRIFT REPORT</body></html>")
    decision = {
        "run_id": "scheduled__1",
        "window_start": f"{yesterday}T00:00:00+00:00",
        "window_end": f"{today}T00:00:00+00:00",
        "branch": "drift_detected",
        "reasons": json.dumps(["category drifted <script>alert(1)</script>"]),
        "drifted_columns": json.dumps(["category"]),
        "drift_report": str(report),
        "action": "reevaluate",
        "outcome": "{}",
        "decided_at": f"{today}T01:00:00+00:00",
    }
    older = decision | {"branch": "healthy", "decided_at": f"{yesterday}T01:00:00+00:00"}
    lake.write_parquet("monitoring_decisions", today, "decision-new", [decision])
    lake.write_parquet("monitoring_decisions", yesterday, "decision-old", [older])
    lake.write_parquet(
        "manifests",
        today,
        "batch",
        [
            _manifest("u/1", "quarantined", "too_dark", "2026-01-01T00:00:00.000Z"),
            _manifest("u/2", "quarantined", "too_dark", "2026-01-01T00:00:00.000Z"),
            _manifest("u/3", "quarantined", "not_an_image", "2026-01-01T00:00:00.000Z"),
            # Quarantined first, accepted on retry: the latest row wins.
            _manifest("u/4", "quarantined", "too_small", "2026-01-01T00:00:00.000Z"),
            _manifest("u/4", "accepted", None, "2026-01-02T00:00:00.000Z"),
        ],
    )
    return {"yesterday": yesterday, "today": today}


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_plugin_is_mounted_and_listed_as_a_nav_view(airflow_app, token: str) -> None:
    response = airflow_app.get("/api/v2/plugins", headers=_auth(token))

    assert response.status_code == 200
    plugin = next(p for p in response.json()["plugins"] if p["name"] == "dresscode_view")
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/dresscode"
    assert plugin["external_views"][0]["href"] == "/dresscode/"
    assert plugin["external_views"][0]["destination"] == "nav"


@pytest.mark.parametrize("path", ["/dresscode/", "/dresscode/api/prompts"])
def test_request_without_credentials_is_401(airflow_app, path: str) -> None:
    assert airflow_app.get(path).status_code == 401


def test_request_with_a_forged_token_is_refused(airflow_app) -> None:
    response = airflow_app.get("/dresscode/api/prompts", headers=_auth("not.a.jwt"))

    assert response.status_code in (401, 403)


def test_ui_session_cookie_is_accepted(airflow_app, token: str, lake_rows) -> None:
    airflow_app.cookies.set("_token", token)
    try:
        assert airflow_app.get("/dresscode/api/prompts").status_code == 200
    finally:
        airflow_app.cookies.clear()


def test_api_prompts_lists_aliases_decision_quarantine_and_cost(
    airflow_app, token: str, lake_rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dresscode.ui import cost

    monkeypatch.setattr(cost, "datetime", _NoonOfToday)
    data = airflow_app.get("/dresscode/api/prompts", headers=_auth(token)).json()

    by_name = {p["name"]: p for p in data["prompts"]}
    assert set(by_name) == set(blueprints.prompt_names())
    digitizer = by_name[DIGITIZER]
    assert digitizer["production"] == 1
    assert digitizer["production_gate"] == "passed"
    assert data["drift"]["branch"] == "drift_detected"  # the newest decision, not the older one
    day = lake_rows["yesterday"]
    assert data["drift"]["report_url"] == f"/dresscode/drift-report/{day}/run-abc.html"
    assert [(q["reason_code"], q["uploads"]) for q in data["quarantine"]] == [
        ("too_dark", 2),
        ("not_an_image", 1),
    ]
    spent = {d["day"]: d["spend_usd"] for d in data["cost"]["days"]}
    assert spent[lake_rows["today"]] == pytest.approx(123.45)  # over the default $100 budget
    assert data["cost"]["breach_days"]["cost_usd_per_day_max"] == [lake_rows["today"]]


class _NoonOfToday(datetime):
    """The view's clock held at noon of the day the rows were written: a run that crosses
    midnight UTC must not compare yesterday's rows with today's window."""

    @classmethod
    def now(cls, tz=None):  # type: ignore[override]
        return datetime.combine(TODAY, time(12), tzinfo=UTC)


def test_api_prompt_has_versions_gates_and_seven_days_of_slo_metrics(
    airflow_app, token: str, lake_rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dresscode.ui import view

    monkeypatch.setattr(view, "datetime", _NoonOfToday)
    data = airflow_app.get(f"/dresscode/api/prompts/{DIGITIZER}", headers=_auth(token)).json()

    v1 = next(v for v in data["versions"] if v["version"] == 1)
    assert "production" in v1["aliases"]
    assert v1["gate"] == "passed"
    assert v1["gate_metrics"]["f1"] == pytest.approx(0.91)
    assert {(e["version"], e["gate"]) for e in data["evaluations"]} == {
        (1, "passed"),
        (2, "failed"),
    }
    ats = [e["at"] for e in data["evaluations"]]
    assert ats == sorted(ats, reverse=True)
    assert len(data["slo"]["days"]) == 7 and data["slo"]["days"][-1] == lake_rows["today"]
    series = data["slo"]["metrics"]["call_error_rate"]
    assert series["bound"] == config.SLO_DEFAULTS["call_error_rate_max"]
    # Yesterday pools v1 (0.10 over 30 calls) and v2 (0.0 over 10) by n: 3 errors / 40 calls.
    assert series["values"][-2:] == [pytest.approx(3 / 40), pytest.approx(0.02)]
    assert series["values"][:-2] == [None] * 5
    assert "json_error_rate" not in data["slo"]["metrics"]  # only 10 days ago


def test_unknown_prompt_is_a_clear_404(airflow_app, token: str, lake_rows) -> None:
    for path in ("/dresscode/api/prompts/no-such-prompt", "/dresscode/prompts/no-such-prompt"):
        response = airflow_app.get(path, headers=_auth(token))

        assert response.status_code == 404
        assert "unknown prompt 'no-such-prompt'" in response.json()["detail"]
        assert DIGITIZER in response.json()["detail"]


def test_page_renders_every_section_escaped_with_svg_sparklines(
    airflow_app, token: str, lake_rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dresscode.ui import cost

    monkeypatch.setattr(cost, "datetime", _NoonOfToday)
    response = airflow_app.get("/dresscode/", headers=_auth(token))

    assert response.status_code == 200
    page = response.text
    for name in blueprints.prompt_names():
        assert f'id="{name}"' in page
    assert "<svg" in page and "<polyline" in page
    assert 'href="/dresscode/drift-report/' in page
    assert "too_dark" in page
    assert "Cost, last 7 days" in page and '<span class="failed">$123.45 &gt; $100.00' in page
    # Lake strings are data, never markup.
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>too_dark</b>" not in page
    assert "<script" not in page and "http" not in page.replace("http://www.w3.org/2000/svg", "")


def test_drift_report_is_served_from_the_lake(airflow_app, token: str, lake_rows) -> None:
    day = lake_rows["yesterday"]
    response = airflow_app.get(f"/dresscode/drift-report/{day}/run-abc.html", headers=_auth(token))

    assert response.status_code == 200
    assert "EVIDENTLY DRIFT REPORT" in response.text


@pytest.mark.parametrize(
    "tail",
    [
        "..%2F..%2Fsecret.html",
        "..%2F..%2F..%2Fsecret.html",
        "2026-01-01/..%2F..%2F..%2Fsecret.html",
        "2026-01-01/..%2F..%2Fsecret.html",
        "..%2F../secret.html",
        "2026-01-01/%2E%2E",
        "2026-01-01/run-abc.json",
    ],
)
def test_drift_report_route_refuses_paths_outside_reports_drift(
    airflow_app, token: str, lake_rows, tail: str
) -> None:
    # Files a traversal out of reports/drift/date=<day>/ would reach.
    lake.write_bytes(lake.table("reports") / "secret.html", b"SECRET")
    lake.write_bytes(lake.root() / "secret.html", b"SECRET")
    lake.write_json(lake.table("reports") / "drift" / "date=2026-01-01" / "run-abc.json", {})

    response = airflow_app.get(f"/dresscode/drift-report/{tail}", headers=_auth(token))

    assert response.status_code == 404
    assert "SECRET" not in response.text


def test_report_outside_reports_drift_gets_no_link(dresscode_home: Path) -> None:
    elsewhere = str(lake.table("manifests") / "date=2026-01-01" / "x.html")
    inside = str(lake.table("reports") / "drift" / "date=2026-01-01" / "k.html")

    assert view.report_ref(elsewhere) is None
    assert view.report_ref(inside) == ("2026-01-01", "k.html")
    assert view.report_ref(inside.replace("k.html", "../../../x.html")) is None


def test_plugin_module_imports_no_heavy_libraries() -> None:
    # Task runners import plugins too; the app (and Airflow's API security) is built lazily.
    code = (
        "import sys, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('p', {str(PLUGINS / 'dresscode_view.py')!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "heavy = ('mlflow', 'pandas', 'feast', 'evidently', 'airflow.api_fastapi.core_api.security')\n"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy()
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


@pytest.mark.parametrize(
    ("day", "file"),
    [
        ("2026-01-01", "../../secret.html"),
        ("2026-01-01", "../../../secret.html"),
        ("2026-01-01/../..", "secret.html"),
        ("../..", "secret.html"),
    ],
)
def test_drift_report_reader_refuses_traversal(dresscode_home: Path, day: str, file: str) -> None:
    # Starlette's routing already keeps "/" out of a path parameter; the reader must not
    # rely on that.
    lake.write_bytes(lake.table("reports") / "secret.html", b"SECRET")
    lake.write_bytes(lake.root() / "secret.html", b"SECRET")

    with pytest.raises(ValueError):
        view.drift_report_html(day, file)


# --- hostile reports and host paths --------------------------------------------------------------


def test_drift_report_is_sandboxed_away_from_the_airflow_origin(
    airflow_app, token: str, lake_rows
) -> None:
    day = lake_rows["yesterday"]
    response = airflow_app.get(f"/dresscode/drift-report/{day}/run-abc.html", headers=_auth(token))

    policy = [d.strip() for d in response.headers["Content-Security-Policy"].split(";")]
    sandbox = next(d.split() for d in policy if d.startswith("sandbox"))
    # An opaque origin: no Airflow cookies or API as the user; no dialogs, forms or popups.
    assert sandbox[0] == "sandbox" and set(sandbox[1:]) <= {"allow-scripts"}
    assert "connect-src 'none'" in policy and "default-src 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["content-type"].startswith("text/html")


def test_pages_forbid_every_script_and_json_is_nosniff(airflow_app, token: str, lake_rows) -> None:
    for path in ("/dresscode/", f"/dresscode/prompts/{DIGITIZER}"):
        response = airflow_app.get(path, headers=_auth(token))

        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "script-src" not in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    api = airflow_app.get("/dresscode/api/prompts", headers=_auth(token))
    assert api.headers["X-Content-Type-Options"] == "nosniff"


def test_api_names_lake_files_relative_to_the_lake_root_never_by_host_path(
    airflow_app, token: str, lake_rows
) -> None:
    response = airflow_app.get("/dresscode/api/prompts", headers=_auth(token))

    day = lake_rows["yesterday"]
    assert response.json()["drift"]["drift_report"] == f"reports/drift/date={day}/run-abc.html"
    root = lake.root()
    for leak in (str(root), root.path, str(config.get_settings().home), "file://"):
        assert leak not in response.text
    page = airflow_app.get("/dresscode/", headers=_auth(token)).text
    assert root.path not in page


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["reports", "drift", "date=2026-01-01", "..", ".", "", "k.html"])))
def test_lake_relative_never_returns_a_path_that_leaves_the_lake(parts: list[str]) -> None:
    config.get_settings.cache_clear()
    root = str(lake.root()).rstrip("/")
    rel = view.lake_relative(root + "/" + "/".join(parts))

    if rel is not None:
        assert rel == "/".join(parts)
        assert not {"", ".", ".."} & set(rel.split("/"))
        assert not rel.startswith("/")
    assert view.lake_relative("/etc/passwd") is None
    assert view.lake_relative(root + "-other/x.html") is None


def test_feedback_rates_are_shown_per_stylist_version(dresscode_home: Path) -> None:
    import pandas as pd

    from dresscode.monitoring import metrics

    day = TODAY.isoformat()
    rows = [
        _metric(day, "4", "thumbs_down_rate", 0.5, 10) | {"prompt_name": "outfit-stylist"},
        _metric(day, "4", "wore_instead_rate", 0.2, 5) | {"prompt_name": "outfit-stylist"},
        _metric(day, "5", "thumbs_down_rate", 0.1, 20) | {"prompt_name": "outfit-stylist"},
        _metric(day, "5", "calls", 3.0, 3) | {"prompt_name": "outfit-stylist"},
    ]
    metrics.write_metrics(pd.DataFrame(rows))
    shown = view.feedback_by_version("outfit-stylist")
    assert shown == [
        {
            "version": "4",
            "thumbs_down_rate": 0.5,
            "thumbs_down_rate_n": 10,
            "wore_instead_rate": 0.2,
            "wore_instead_rate_n": 5,
        },
        {
            "version": "5",
            "thumbs_down_rate": 0.1,
            "thumbs_down_rate_n": 20,
            "wore_instead_rate": None,
            "wore_instead_rate_n": 0,
        },
    ]
    detail = {"name": "outfit-stylist", "versions": [], "evaluations": [], "feedback": shown}
    detail["slo"] = view.slo_series("outfit-stylist")
    page = view.render_prompt(detail)
    assert "User feedback per version" in page
    assert "v5</td><td>0.1 (n=20)" in page
