"""A small client for Airflow 3's public REST API (``/api/v2``), used by ``make up``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

TERMINAL_STATES = {"success", "failed"}
# Requests that may be sent again: the local stack's SQLite metadata DB answers a busy moment
# (a scheduled run writing at the same instant) with 500 "Database error" after its 5 s lock
# timeout; asking again is safe for these (and for a trigger, which names its run) and keeps
# `make up` from failing on that moment.
IDEMPOTENT = {"GET", "PATCH", "PUT", "DELETE"}
RETRIES = 3


class AirflowAPIError(RuntimeError):
    """An answer of 400 or more (after the retries a request may have); ``status`` says which."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class AirflowAPI:
    base_url: str
    username: str
    password: str
    _token: str | None = None
    retry_delay_s: float = 2.0

    def _client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token()}"} if self._token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30.0)

    def token(self) -> str:
        if self._token is None:
            resp = httpx.post(
                f"{self.base_url}/auth/token",
                json={"username": self.username, "password": self.password},
                timeout=30.0,
            )
            resp.raise_for_status()
            self._token = resp.json()["access_token"]
        return self._token

    def request(
        self, method: str, path: str, *, created_if_conflict: bool = False, **kwargs: Any
    ) -> Any:
        """``created_if_conflict``: a POST that names what it creates, so it may be sent again —
        a 409 on a second attempt means the first one created it."""
        self.token()
        attempts = RETRIES if method.upper() in IDEMPOTENT or created_if_conflict else 1
        for attempt in range(1, attempts + 1):
            with self._client() as client:
                resp = client.request(method, path, **kwargs)
            if created_if_conflict and attempt > 1 and resp.status_code == 409:
                return None
            if resp.status_code < 500 or attempt == attempts:
                break
            time.sleep(self.retry_delay_s * attempt)
        if resp.status_code >= 400:
            raise AirflowAPIError(
                resp.status_code,
                f"Airflow API {method} {path} answered {resp.status_code}: {resp.text[:300]}",
            )
        return resp.json() if resp.content else None

    def healthy(self) -> dict[str, str]:
        """Component name -> status from the unauthenticated health endpoint."""
        resp = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=10.0)
        resp.raise_for_status()
        return {name: (info or {}).get("status", "unknown") for name, info in resp.json().items()}

    def dag_ids(self) -> set[str]:
        return {
            d["dag_id"] for d in self.request("GET", "/api/v2/dags", params={"limit": 200})["dags"]
        }

    def import_errors(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/v2/importErrors")["import_errors"]

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def dag(self, dag_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v2/dags/{dag_id}")

    def trigger(
        self,
        dag_id: str,
        conf: dict[str, Any] | None = None,
        *,
        logical_date: str | None = None,
        data_interval: tuple[str, str] | None = None,
    ) -> str:
        # The run id is ours (Airflow's manual form), so a trigger the busy SQLite metadata DB
        # answered with a 500 is sent again safely.
        run_id = f"manual__{datetime.now(UTC).isoformat()}"
        body: dict[str, Any] = {
            "dag_run_id": run_id,
            "logical_date": logical_date,
            "conf": conf or {},
        }
        if data_interval:
            body["data_interval_start"], body["data_interval_end"] = data_interval
        self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body, created_if_conflict=True)
        return run_id

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.request(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 50, "order_by": "-run_after"}
        )["dag_runs"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        tis = self.request(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 500}
        )
        counts: dict[str, str] = {}
        for ti in tis["task_instances"]:
            key = (
                ti["task_id"]
                if ti.get("map_index", -1) == -1
                else f"{ti['task_id']}[{ti['map_index']}]"
            )
            counts[key] = ti.get("state") or "none"
        return counts

    def result(self, dag_id: str, run_id: str, task_id: str) -> Any:
        """A task's return value (its ``return_value`` XCom), deserialized by the API."""
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
            "/xcomEntries/return_value"
        )
        return self.request("GET", path, params={"deserialize": True})["value"]

    def wait_for_run(
        self, dag_id: str, run_id: str, timeout_s: float, progress_every_s: float = 15.0
    ) -> str:
        """Wait until the run ends; give up after ``timeout_s`` without progress.

        Progress is any change of the run's state or of its task instances' states, so a long
        run that keeps finishing tasks (10,000 photos) is waited for and a stuck one is not.
        Returns the run's last state.
        """
        deadline = time.monotonic() + timeout_s
        last_check = -progress_every_s
        state, seen = "queued", None
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in TERMINAL_STATES:
                return state
            if time.monotonic() - last_check >= progress_every_s:
                snapshot = (state, tuple(sorted(self.task_states(dag_id, run_id).items())))
                if snapshot != seen:
                    seen, deadline = snapshot, time.monotonic() + timeout_s
                print(f"  … {dag_id} {run_id}: {state}", flush=True)
                last_check = time.monotonic()
            time.sleep(2.0)
        return state
