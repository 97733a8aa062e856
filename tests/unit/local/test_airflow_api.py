"""wait_for_run: a long run that keeps making progress is waited for; a stuck one is not. A
request the busy SQLite metadata DB refused is asked again only when that is safe.

The Airflow API's answers are scripted (a subclass overriding the two reads) and the clock is
fake: what is tested is the waiting logic, which a real ``make up`` run exercises end to end.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from dresscode.local import airflow_api
from dresscode.local.airflow_api import AirflowAPI


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(airflow_api.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(airflow_api.time, "sleep", fake.sleep)
    return fake


class ScriptedRun(AirflowAPI):
    """A run whose mapped task finishes one more map index every ``every_s`` seconds."""

    def __init__(self, clock: FakeClock, batches: int, every_s: float, stuck_after: int | None):
        super().__init__("http://127.0.0.1:1", "admin", "admin")
        self.clock, self.batches, self.every_s = clock, batches, every_s
        self.stuck_after = stuck_after

    def _done(self) -> int:
        done = int(self.clock.now // self.every_s)
        return min(done, self.stuck_after if self.stuck_after is not None else self.batches)

    def run_state(self, dag_id: str, run_id: str) -> str:
        return "success" if self._done() >= self.batches else "running"

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        done = self._done()
        return {f"process[{i}]": "success" if i < done else "queued" for i in range(self.batches)}


def test_a_run_longer_than_the_timeout_is_waited_for_while_it_progresses(clock: FakeClock) -> None:
    # 157 batches, one every 20 s: 52 minutes in all, against a 30-minute stall timeout.
    api = ScriptedRun(clock, batches=157, every_s=20, stuck_after=None)
    assert api.wait_for_run("wardrobe_ingest", "manual__1", timeout_s=1800) == "success"
    assert clock.now >= 157 * 20


def test_a_stuck_run_is_given_up_after_the_timeout_without_progress(clock: FakeClock) -> None:
    api = ScriptedRun(clock, batches=10, every_s=20, stuck_after=3)
    assert api.wait_for_run("wardrobe_ingest", "manual__1", timeout_s=600) == "running"
    # Stuck at 60 s: given up 600 s after the last change it saw (checked every 15 s).
    assert 600 <= clock.now - 60 <= 600 + 15 + 2


class _Flaky(BaseHTTPRequestHandler):
    """Answers like Airflow's API on a SQLite busy moment: 500 "Database error", twice. With
    ``created_anyway``, the first failed POST had committed its run: the next gets a 409."""

    calls: ClassVar[dict[str, int]] = {}
    posted: ClassVar[list[dict]] = []
    created_anyway: ClassVar[bool] = False

    def _answer(self) -> None:
        if self.path.startswith("/auth/token"):
            body, status = b'{"access_token": "t"}', 201
        else:
            _Flaky.calls[self.command] = _Flaky.calls.get(self.command, 0) + 1
            if self.command == "POST":
                length = int(self.headers.get("Content-Length") or 0)
                _Flaky.posted.append(json.loads(self.rfile.read(length) or b"{}"))
            if _Flaky.created_anyway and self.command == "POST" and _Flaky.calls["POST"] > 1:
                body, status = b'{"detail": "already exists"}', 409
            elif _Flaky.calls[self.command] <= 2:
                body, status = b'{"detail": {"reason": "Database error"}}', 500
            else:
                body, status = b'{"ok": true}', 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PATCH = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky_api() -> Iterator[str]:
    _Flaky.calls, _Flaky.posted, _Flaky.created_anyway = {}, [], False
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_an_idempotent_request_is_asked_again_after_a_database_busy_500(flaky_api: str) -> None:
    api = AirflowAPI(flaky_api, "admin", "admin", retry_delay_s=0.0)
    assert api.request("PATCH", "/api/v2/dags/style_features", json={"is_paused": False}) == {
        "ok": True
    }
    assert _Flaky.calls["PATCH"] == 3


def test_a_trigger_names_its_run_so_a_busy_500_is_asked_again_for_the_same_run(
    flaky_api: str,
) -> None:
    api = AirflowAPI(flaky_api, "admin", "admin", retry_delay_s=0.0)
    run_id = api.trigger("style_features", {"x": 1})
    assert run_id.startswith("manual__") and _Flaky.calls["POST"] == 3
    assert [body["dag_run_id"] for body in _Flaky.posted] == [run_id] * 3


def test_a_retried_trigger_that_finds_its_run_created_returns_it(flaky_api: str) -> None:
    _Flaky.created_anyway = True
    api = AirflowAPI(flaky_api, "admin", "admin", retry_delay_s=0.0)
    run_id = api.trigger("style_features")
    assert _Flaky.calls["POST"] == 2 and _Flaky.posted[1]["dag_run_id"] == run_id


def test_a_409_on_the_first_attempt_is_an_error(flaky_api: str) -> None:
    _Flaky.created_anyway, _Flaky.calls = True, {"POST": 1}  # as if the id were taken already
    api = AirflowAPI(flaky_api, "admin", "admin", retry_delay_s=0.0)
    with pytest.raises(RuntimeError, match="answered 409"):
        api.trigger("style_features")


def test_a_plain_post_is_never_sent_twice(flaky_api: str) -> None:
    api = AirflowAPI(flaky_api, "admin", "admin", retry_delay_s=0.0)
    with pytest.raises(RuntimeError, match="answered 500"):
        api.request("POST", "/api/v2/dags/style_features/dagRuns", json={})
    assert _Flaky.calls["POST"] == 1  # a POST (a new run) is never repeated
