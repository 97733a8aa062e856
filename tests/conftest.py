"""Fixtures shared by every test layer: isolated settings, a real S3 server on loopback."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from dresscode import config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dresscode_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh DRESSCODE_HOME with a local lake; settings cache cleared around the test."""
    home = tmp_path / "home"
    monkeypatch.setenv("DRESSCODE_HOME", str(home))
    for knob in ("DRESSCODE_LAKE_URI", "DRESSCODE_LANDING_URI", "MLFLOW_TRACKING_URI", "DRESSCODE_ALERTS_FILE"):
        monkeypatch.delenv(knob, raising=False)
    config.get_settings.cache_clear()
    yield home
    config.get_settings.cache_clear()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's standalone S3-compatible server on a loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_lake(s3_server: str, dresscode_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the lake and landing at a fresh bucket on the S3 server via the aws_default connection."""
    import json
    import uuid

    import boto3

    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
    boto3.client("s3", endpoint_url=s3_server, **creds).create_bucket(Bucket=bucket)
    conn = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": s3_server, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
    monkeypatch.setenv("DRESSCODE_LAKE_URI", f"s3://{bucket}/lake")
    monkeypatch.setenv("DRESSCODE_LANDING_URI", f"s3://{bucket}/landing")
    config.get_settings.cache_clear()
    _reset_object_store_cache()
    yield bucket
    config.get_settings.cache_clear()
    _reset_object_store_cache()


def _reset_object_store_cache() -> None:
    # ObjectStoragePath caches one filesystem per protocol+connection; each test's bucket
    # and connection differ, so start clean.
    from airflow.sdk.io import store

    store._STORE_CACHE.clear()
    os.environ.pop("AWS_ENDPOINT_URL", None)
