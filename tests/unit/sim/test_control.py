"""The simulators' control routes refuse what a web page could send them (issue: a page the
developer has open could reset counters or inject faults with a cross-origin text/plain POST)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from dresscode.sim.testing import running_simulator, running_weather_stub


@pytest.fixture(scope="module")
def sim_root() -> Iterator[str]:
    with running_simulator() as url:
        yield url.removesuffix("/v1")


@pytest.fixture(scope="module")
def weather_control() -> Iterator[str]:
    with running_weather_stub() as url:
        yield url.removesuffix("/v1")


def _controls(sim_root: str, weather_control: str) -> list[tuple[str, dict[str, str] | None]]:
    return [
        (f"{sim_root}/sim/reset", None),
        (f"{sim_root}/weather/_reset", None),
        (f"{sim_root}/weather/_faults", {"*": "server_error"}),
        (f"{weather_control}/_reset", None),
        (f"{weather_control}/_faults", {"*": "server_error"}),
    ]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": "http://evil.example"}, 403),
        ({"Origin": "null"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Content-Type": "text/plain"}, 415),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({"Content-Type": "multipart/form-data; boundary=x"}, 415),
    ],
    ids=["foreign-origin", "opaque-origin", "cross-site", "text-plain", "form", "multipart"],
)
def test_control_routes_refuse_what_a_browser_sends_cross_origin(
    sim_root: str, weather_control: str, headers: dict[str, str], status: int
) -> None:
    for url, body in _controls(sim_root, weather_control):
        content = '{"*": "server_error"}' if body else "reset"
        response = httpx.post(url, content=content, headers=headers)
        assert response.status_code == status, (url, response.text)
    # Nothing was changed by the refused calls: no fault is armed.
    for control in (weather_control, f"{sim_root}/weather"):
        assert httpx.get(f"{control}/_stats").json()["faults"] == {}


def test_control_routes_still_take_json_and_bodiless_calls_from_code(
    sim_root: str, weather_control: str
) -> None:
    for url, body in _controls(sim_root, weather_control):
        response = httpx.post(url, json=body) if body else httpx.post(url)
        assert response.status_code == 200, (url, response.text)
    httpx.post(f"{weather_control}/_reset").raise_for_status()
    httpx.post(f"{sim_root}/weather/_reset").raise_for_status()
