"""The Dresscode view in a real headless Chromium, against a running ``make up`` stack.

Opt-in (it needs the stack up and Debian's ``chromium`` + ``chromium-driver``):

    make up
    DRESSCODE_BROWSER_TEST=1 .venv/bin/python -m pytest tests/integration/test_view_browser.py

It logs in through Airflow's own token endpoint, opens Browse → Dresscode's URL with the UI's
session cookie, checks what a data engineer would look for on the page, and saves the
screenshot the README shows (``docs/img/dresscode-view.png``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

BASE = os.environ.get("DRESSCODE_BROWSER_BASE_URL", "http://127.0.0.1:8080")
SHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "dresscode-view.png"

pytestmark = pytest.mark.skipif(
    os.environ.get("DRESSCODE_BROWSER_TEST") != "1",
    reason="opt-in: start the stack with `make up`, then set DRESSCODE_BROWSER_TEST=1",
)


def _token() -> str:
    response = httpx.post(
        f"{BASE}/auth/token", json={"username": "admin", "password": "admin"}, timeout=10
    )
    response.raise_for_status()
    return response.json()["access_token"]


def test_the_view_renders_real_data_in_headless_chromium() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_bin, "install Debian's chromium and chromium-driver"
    assert httpx.get(f"{BASE}/dresscode/", timeout=10).status_code == 401  # no login, no view

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,2000"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(driver_bin), options=options)
    try:
        browser.get(f"{BASE}/auth/login")  # any page of the origin, to set its cookie on
        browser.add_cookie({"name": "_token", "value": _token(), "path": "/"})
        browser.get(f"{BASE}/dresscode/")
        page = browser.page_source
        assert "wardrobe-digitizer" in page and "outfit-stylist" in page
        assert "production" in page  # aliases from the MLflow registry
        assert "<svg" in page  # the 7-day SLO sparklines from quality_metrics
        assert "drifted" in page or "healthy" in page  # the last monitoring decision
        SHOT.parent.mkdir(parents=True, exist_ok=True)
        height = browser.execute_script("return document.body.scrollHeight")
        browser.set_window_size(1400, max(900, min(int(height) + 40, 4000)))
        assert browser.save_screenshot(str(SHOT))
    finally:
        browser.quit()
    assert SHOT.stat().st_size > 10_000
