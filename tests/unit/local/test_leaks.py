"""The log and alert leak scanner: it must see what a leak looks like, and only that."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from PIL import Image

from dresscode.local import leaks


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(out, "JPEG")
    return out.getvalue()


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "PNG")
    return out.getvalue()


def _whats(path: Path, known: dict[str, str] | None = None) -> list[str]:
    return [f"{f.line}: {f.what}" for f in leaks.scan_file(path, known)]


def test_a_clean_task_log_has_no_finding(tmp_path: Path) -> None:
    log = tmp_path / "attempt=1.log"
    log.write_text(
        '{"event": "batch 0: 16 photos, 15 accepted, 1 quarantined (truncated)", "level": "info"}\n'
        '{"event": "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}\n'
        "Connection dresscode_llm: password ***\n"
        "GET http://127.0.0.1:8000/v1/models 200\n"
    )
    assert leaks.scan_file(log) == []


def test_a_photo_in_a_log_is_found_in_every_form(tmp_path: Path) -> None:
    jpeg, png = _jpeg(), _png()
    b64 = base64.b64encode(jpeg).decode()
    log = tmp_path / "task.log"
    log.write_bytes(
        b"line one\n"
        + b"raw: "
        + jpeg
        + b"\n"
        + f'{{"url": "data:image/jpeg;base64,{b64}"}}\n'.encode()
        + b"png: "
        + png
        + b"\n"
        + b"chunk "
        + base64.b64encode(png)
        + b"\n"
    )
    whats = {f.what for f in leaks.scan_file(log)}
    assert {"JPEG bytes", "image data URL", "base64 image", "PNG bytes"} <= whats
    # Each finding points at the line it is on.
    assert any(f.line == 2 and f.what == "JPEG bytes" for f in leaks.scan_file(log))


def test_a_long_base64_payload_is_found_even_without_an_image_signature(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text("body=" + base64.b64encode(bytes(range(256)) * 4).decode() + "\n")
    assert _whats(log) == ["1: long base64 run"]


def test_known_secret_values_are_reported_by_name_never_by_value(tmp_path: Path) -> None:
    key = "sk-local-" + "9c1f2e7d"
    log = tmp_path / "api-server.log"
    log.write_text(f"ok\nAuthorization: Bearer {key}\n")
    findings = leaks.scan_file(log, {key: "dresscode_llm password"})
    assert [str(f) for f in findings] == [f"{log}:2: known secret: dresscode_llm password"]
    assert key not in str(findings[0])


def test_short_known_values_are_left_to_the_patterns(tmp_path: Path) -> None:
    # "admin" would match every "admin" in a log: too short to be a known-value check.
    log = tmp_path / "a.log"
    log.write_text("user admin logged in\n")
    assert leaks.scan_file(log, {"admin": "admin password"}) == []


def test_credentials_in_urls_are_found_in_logs(tmp_path: Path) -> None:
    log = tmp_path / "scheduler.log"
    log.write_text("connecting to postgresql://airflow:" + "hunter22@db.internal/airflow\n")
    assert _whats(log) == ["1: password in URL"]


def test_connection_secrets_come_from_json_and_uri_connections() -> None:
    environ = {
        "AIRFLOW_CONN_DRESSCODE_LLM": json.dumps(
            {"conn_type": "http", "password": "llm-key-123", "extra": {"api_key": "extra-key-1"}}
        ),
        "AIRFLOW_CONN_SLACK": "slack://:xoxb-token-abc@hooks.example/",
        "AIRFLOW_CONN_WEATHER_API": json.dumps({"conn_type": "http", "extra": {"timeout": 5}}),
        "PATH": "/usr/bin",
    }
    assert leaks.connection_secrets(environ) == {
        "llm-key-123": "dresscode_llm password",
        "extra-key-1": "dresscode_llm extra api_key",
        "xoxb-token-abc": "slack password",
    }


def test_scan_tree_counts_files_and_skips_missing_roots(tmp_path: Path) -> None:
    (tmp_path / "logs" / "dag_id=x").mkdir(parents=True)
    (tmp_path / "logs" / "dag_id=x" / "attempt=1.log").write_text("fine\n")
    (tmp_path / "alerts.jsonl").write_text('{"summary": "ok"}\n')
    scanned, findings = leaks.scan_tree(
        [tmp_path / "logs", tmp_path / "alerts.jsonl", tmp_path / "absent"]
    )
    assert (scanned, findings) == (2, [])
