"""A failure alert names the DAG, task, run, try, first line of the cause, log and runbook —
and reaches the local file, Slack, e-mail and SNS, or says in the file and the log why not.

Every backend is exercised against a real server on loopback: an HTTP server standing in for
Slack's webhook endpoint, aiosmtpd for SMTP, moto's server for SNS (with an SQS subscription
to read what was published). "Down" is a closed port.
"""

from __future__ import annotations

import email
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from dresscode.core import config
from dresscode.orchestration import alerts

RUN_ID = "manual__2026-11-23T10:00:00"


def _context(exc: BaseException) -> dict:
    ti = SimpleNamespace(
        dag_id="wardrobe_ingest",
        task_id="report",
        run_id=RUN_ID,
        try_number=3,
        map_index=-1,
        log_url="http://127.0.0.1:8080/dags/wardrobe_ingest/runs/x/tasks/report",
    )
    return {"ti": ti, "exception": exc}


def _fail(message: str = "12 of 64 photos failed (18.8% > 5% allowed)") -> None:
    alerts.FailureNotifier().notify(_context(RuntimeError(f"{message}\nTraceback noise")))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _use(monkeypatch: pytest.MonkeyPatch, backends: str, **env: str) -> None:
    monkeypatch.setenv("DRESSCODE_ALERT_BACKENDS", backends)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config.get_settings.cache_clear()


def _pending(home: Path) -> list[Path]:
    folder = home / "alerts.jsonl.pending"
    return sorted(folder.iterdir()) if folder.exists() else []


def _assert_names_everything(text: str) -> None:
    assert "wardrobe_ingest.report" in text
    assert f"run {RUN_ID}, try 3" in text
    assert "cause: RuntimeError: 12 of 64 photos failed" in text
    assert "Traceback noise" not in text
    assert "runbook: docs/runbooks/wardrobe_ingest.md" in text


# ----------------------------------------------------------------------------- the local file


def test_failure_alert_has_everything_on_call_needs(dresscode_home: Path) -> None:
    _fail()

    [record] = alerts.read_alerts()
    text = record["text"]
    assert record["kind"] == "task_failed"
    assert record["dag_id"] == "wardrobe_ingest" and record["task_id"] == "report"
    assert record["run_id"] == RUN_ID and record["try_number"] == 3
    _assert_names_everything(text)
    assert "log: http://127.0.0.1:8080/dags/wardrobe_ingest" in text
    assert record["delivery"] == {}  # no backend selected: the file only


def test_a_retry_after_a_lost_heartbeat_alerts_with_the_worker(dresscode_home: Path) -> None:
    # What the dag-processor passes for a task whose heartbeat stopped: no exception.
    context = _context(RuntimeError("unused"))
    context.pop("exception")
    context["ti"].hostname = "worker-2@node-7"
    alerts.WorkerLostNotifier().notify(context)
    alerts.WorkerLostNotifier().notify(context)  # the same loss handed over twice: one alert

    [record] = alerts.read_alerts()
    assert record["kind"] == "worker_lost" and record["details"] == {"worker": "worker-2@node-7"}
    assert record["summary"].startswith("worker worker-2@node-7 stopped heartbeating")
    assert "[dresscode] worker lost: wardrobe_ingest.report" in record["text"]
    assert "runbook: docs/runbooks/wardrobe_ingest.md" in record["text"]


def test_a_retry_the_task_asked_for_is_not_an_alert(dresscode_home: Path) -> None:
    alerts.WorkerLostNotifier().notify(_context(RuntimeError("the endpoint timed out")))
    assert alerts.read_alerts() == []


def test_notifier_never_raises_when_the_alert_file_cannot_be_written(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = dresscode_home / "not-a-dir"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where a folder should be")
    monkeypatch.setenv("DRESSCODE_ALERTS_FILE", str(blocker / "alerts.jsonl"))
    config.get_settings.cache_clear()

    alerts.FailureNotifier().notify(_context(ValueError("boom")))

    assert "Could not write the alert file" in caplog.text
    assert "cause: ValueError: boom" in caplog.text  # still in the task log


def test_an_invalid_setting_does_not_silence_the_alert(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DRESSCODE_INGEST_BATCH_SIZE", "0")
    config.get_settings.cache_clear()
    with pytest.raises(config.SettingsError):
        config.get_settings()

    _fail()

    [record] = alerts.read_alerts()
    assert record["runbook"] == "docs/runbooks/wardrobe_ingest.md"
    assert "DRESSCODE_INGEST_BATCH_SIZE" in caplog.text


def test_first_line_of_an_exception_without_message() -> None:
    assert alerts.first_line(KeyError()) == "KeyError"
    assert alerts.first_line(None).startswith("unknown cause")


def test_page_shows_a_metric_table_as_an_aligned_block(dresscode_home: Path) -> None:
    table = "metric            value  slo\njson_error_rate   0.081  <= 0.02\nttft_p95_ms       4100   <= 3000"
    alert = alerts.page(
        "model_monitoring",
        "2 SLOs breached and drift on 4 of 9 columns",
        {"metrics": table, "report": "reports/drift/2026-11-23.html"},
        run_id="scheduled__2026-11-23T03:00:00",
    )

    [record] = alerts.read_alerts()
    assert record["id"] == alert.id and record["kind"] == "page"
    assert record["details"]["metrics"] == table
    lines = record["text"].splitlines()
    assert lines[0] == "[dresscode] page: model_monitoring"
    assert "run scheduled__2026-11-23T03:00:00" in lines
    assert "summary: 2 SLOs breached and drift on 4 of 9 columns" in lines
    start = lines.index("metrics:")
    assert lines[start + 1 : start + 4] == [f"    {row}" for row in table.splitlines()]
    assert "report: reports/drift/2026-11-23.html" in lines
    assert lines[-1] == "runbook: docs/runbooks/model_monitoring.md"
    # Slack gets the table in a code block, and its "<" escaped.
    slack = alerts.slack_text(alert)
    assert (
        "metrics:\n```\nmetric            value  slo\njson_error_rate   0.081  &lt;= 0.02" in slack
    )


# ----------------------------------------------------------------------------- Slack


class _Webhook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.bodies.append(json.loads(body))
        self.server.received.set()
        self.server.release.wait(30)  # a hung endpoint, when the test asks for one
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def slack_server() -> Iterator[ThreadingHTTPServer]:
    """A Slack-incoming-webhook-shaped endpoint on loopback; ``.bodies`` are the JSON posts."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    server.bodies, server.received, server.release = [], threading.Event(), threading.Event()
    server.release.set()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def _slack_conn(url: str) -> str:
    return json.dumps({"conn_type": "slackwebhook", "password": f"{url}/services/T0/B0/secret"})


def test_slack_receives_the_whole_alert(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch, slack_server: ThreadingHTTPServer
) -> None:
    url = f"http://127.0.0.1:{slack_server.server_port}"
    _use(monkeypatch, "slack", AIRFLOW_CONN_SLACK_ALERTS=_slack_conn(url))

    _fail()

    [body] = slack_server.bodies
    _assert_names_everything(body["text"])
    [record] = alerts.read_alerts()
    assert record["delivery"] == {"slack": "sent"}
    assert _pending(dresscode_home) == []


def test_slack_down_keeps_the_alert_and_logs_why(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    down = f"http://127.0.0.1:{_closed_port()}"
    _use(monkeypatch, "slack", AIRFLOW_CONN_SLACK_ALERTS=_slack_conn(down))

    _fail()  # must not raise

    [record] = alerts.read_alerts()
    _assert_names_everything(record["text"])
    assert record["delivery"]["slack"].startswith("failed: ")
    assert "refused" in record["delivery"]["slack"].lower()
    failures = [
        r for r in caplog.records if r.levelname == "ERROR" and "NOT sent to slack" in r.message
    ]
    assert failures and record["id"] in failures[0].message
    assert _pending(dresscode_home) == []


def test_slack_without_its_connection_says_which_variable_to_set(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_SLACK_ALERTS", raising=False)
    _use(monkeypatch, "slack")

    _fail()

    [record] = alerts.read_alerts()
    assert "AIRFLOW_CONN_SLACK_ALERTS" in record["delivery"]["slack"]


def test_a_sender_killed_mid_send_loses_no_alert(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch, slack_server: ThreadingHTTPServer
) -> None:
    url = f"http://127.0.0.1:{slack_server.server_port}"
    _use(monkeypatch, "slack", AIRFLOW_CONN_SLACK_ALERTS=_slack_conn(url))
    slack_server.release.clear()  # the webhook hangs: the sender is stuck mid-send
    sender = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from dresscode.orchestration import alerts; alerts.deliver(alerts.Alert("
            "kind='page', dag_id='model_monitoring', summary='drift', runbook='rb'))",
        ],
        env=os.environ.copy(),
    )
    try:
        assert slack_server.received.wait(60), "the sender never reached the webhook"
    finally:
        sender.kill()
        sender.wait()

    [pending] = alerts.read_alerts()  # listed while the file does not have it yet
    assert pending["summary"] == "drift" and pending["delivery"] == {"slack": "pending"}

    # Long after every backend would have given up, the next alert moves it into the file.
    [stale] = _pending(dresscode_home)
    two_hours_ago = time.time() - 2 * 3600
    os.utime(stale, (two_hours_ago, two_hours_ago))
    slack_server.release.set()
    _fail()

    interrupted, failure = alerts.read_alerts()
    assert interrupted["id"] == pending["id"]
    assert interrupted["delivery"]["slack"].startswith("interrupted")
    assert failure["kind"] == "task_failed" and failure["delivery"] == {"slack": "sent"}
    assert _pending(dresscode_home) == []


# ----------------------------------------------------------------------------- SMTP


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.Message]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, _Inbox]]:
    """A real SMTP server (aiosmtpd) on loopback; yields its port and inbox."""
    from aiosmtpd.controller import Controller

    inbox = _Inbox()
    port = _closed_port()  # free now; the server takes it
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, inbox
    controller.stop()


def _smtp_conn(port: int) -> str:
    extra = {
        "from_email": "alerts@dresscode.test",
        "disable_tls": True,
        "disable_ssl": True,
        "timeout": 5,
        "retry_limit": 0,
    }
    return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": port, "extra": extra})


def test_email_reaches_every_recipient(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch, smtp_server: tuple[int, _Inbox]
) -> None:
    port, inbox = smtp_server
    _use(
        monkeypatch,
        "smtp",
        AIRFLOW_CONN_SMTP_ALERTS=_smtp_conn(port),
        DRESSCODE_ALERT_EMAIL_TO="oncall@dresscode.test, ml@dresscode.test",
    )

    _fail()

    [(recipients, message)] = inbox.messages
    assert sorted(recipients) == ["ml@dresscode.test", "oncall@dresscode.test"]
    assert message["From"] == "alerts@dresscode.test"
    assert message["Subject"] == "[dresscode] task failed: wardrobe_ingest.report"
    [part] = [p for p in message.walk() if p.get_content_type() == "text/html"]
    _assert_names_everything(part.get_payload(decode=True).decode())
    assert alerts.read_alerts()[0]["delivery"] == {"smtp": "sent"}


def test_email_server_down_keeps_the_alert(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _use(
        monkeypatch,
        "smtp",
        AIRFLOW_CONN_SMTP_ALERTS=_smtp_conn(_closed_port()),
        DRESSCODE_ALERT_EMAIL_TO="oncall@dresscode.test",
    )

    _fail()

    [record] = alerts.read_alerts()
    _assert_names_everything(record["text"])
    assert "refused" in record["delivery"]["smtp"].lower()
    assert any(r.levelname == "ERROR" and "NOT sent to smtp" in r.message for r in caplog.records)


def test_email_without_recipients_says_which_variable_to_set(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch, smtp_server: tuple[int, _Inbox]
) -> None:
    port, inbox = smtp_server
    monkeypatch.delenv("DRESSCODE_ALERT_EMAIL_TO", raising=False)
    _use(monkeypatch, "smtp", AIRFLOW_CONN_SMTP_ALERTS=_smtp_conn(port))

    _fail()

    assert inbox.messages == []
    assert "DRESSCODE_ALERT_EMAIL_TO" in alerts.read_alerts()[0]["delivery"]["smtp"]


# ----------------------------------------------------------------------------- SNS

_CREDS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region_name": "us-east-1",
}


def _aws_conn(endpoint: str) -> str:
    extra = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2},
    }
    return json.dumps(
        {"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}
    )


@pytest.fixture
def sns_topic(s3_server: str) -> Iterator[tuple[str, Callable[[], list[dict]]]]:
    """A fresh topic on moto's server with an SQS queue subscribed; yields (arn, receive)."""
    import boto3

    sns = boto3.client("sns", endpoint_url=s3_server, **_CREDS)
    sqs = boto3.client("sqs", endpoint_url=s3_server, **_CREDS)
    name = f"alerts-{uuid.uuid4().hex[:8]}"
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])

    def receive() -> list[dict]:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        return [json.loads(m["Body"]) for m in got.get("Messages", [])]

    yield topic, receive


def test_sns_publishes_the_alert_with_filterable_attributes(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch, s3_server: str, sns_topic
) -> None:
    topic, receive = sns_topic
    _use(
        monkeypatch,
        "sns",
        AIRFLOW_CONN_AWS_DEFAULT=_aws_conn(s3_server),
        DRESSCODE_ALERT_SNS_TOPIC_ARN=topic,
    )

    _fail()

    [notification] = receive()
    assert notification["TopicArn"] == topic
    assert notification["Subject"] == "[dresscode] task failed: wardrobe_ingest.report"
    _assert_names_everything(notification["Message"])
    assert notification["MessageAttributes"]["kind"]["Value"] == "task_failed"
    assert notification["MessageAttributes"]["dag_id"]["Value"] == "wardrobe_ingest"
    assert alerts.read_alerts()[0]["delivery"] == {"sns": "sent"}


def test_sns_down_keeps_the_alert_and_other_backends_still_get_it(
    dresscode_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    slack_server: ThreadingHTTPServer,
) -> None:
    url = f"http://127.0.0.1:{slack_server.server_port}"
    _use(
        monkeypatch,
        "sns,slack",
        AIRFLOW_CONN_AWS_DEFAULT=_aws_conn(f"http://127.0.0.1:{_closed_port()}"),
        DRESSCODE_ALERT_SNS_TOPIC_ARN="arn:aws:sns:us-east-1:123456789012:alerts",
        AIRFLOW_CONN_SLACK_ALERTS=_slack_conn(url),
    )

    _fail()

    [record] = alerts.read_alerts()
    assert record["delivery"]["slack"] == "sent" and len(slack_server.bodies) == 1
    assert record["delivery"]["sns"].startswith("failed: EndpointConnectionError")
    assert any(r.levelname == "ERROR" and "NOT sent to sns" in r.message for r in caplog.records)


def test_sns_without_a_topic_says_which_variable_to_set(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DRESSCODE_ALERT_SNS_TOPIC_ARN", raising=False)
    _use(monkeypatch, "sns")

    _fail()

    assert "DRESSCODE_ALERT_SNS_TOPIC_ARN" in alerts.read_alerts()[0]["delivery"]["sns"]
