"""Settings and connections fail at start with one sentence that names the variable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dresscode.core import config, connections
from dresscode.core.config import SETTINGS, SettingsError, load_settings
from dresscode.core.connections import llm_endpoint, weather_endpoint

README = Path(__file__).resolve().parents[3] / "README.md"


def test_defaults_need_no_environment(tmp_path: Path) -> None:
    settings = load_settings({"DRESSCODE_HOME": str(tmp_path)})
    assert settings.lake_uri == (tmp_path / "lake").as_uri()
    assert settings.ingest_batch_size == 64
    assert settings.image_long_edge == 768
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.mark.parametrize(
    ("env", "raw", "expected"),
    [
        ("DRESSCODE_INGEST_BATCH_SIZE", "abc", "an integer between 1 and 10000"),
        ("DRESSCODE_INGEST_BATCH_SIZE", "0", "between 1 and 10000"),
        ("DRESSCODE_INGEST_MAX_FAILURE_RATE", "5%", "a number between 0.0 and 1.0"),
        ("DRESSCODE_LAKE_URI", "ftp://x", "file:///path, s3://bucket/prefix or a filesystem path"),
        ("DRESSCODE_LAKE_URI", "s3://", "is not an S3 bucket name"),
        ("DRESSCODE_LAKE_URI", "file://data/lake", "a file URI names a folder below the root"),
        ("DRESSCODE_IMAGE_FORMATS", "JPEG,GIF", "unknown: ['GIF']"),
        ("DRESSCODE_IMAGE_FORMATS", "", "names none"),
        ("DRESSCODE_IMAGE_FORMATS", "JPEG;PNG", "unknown: ['JPEG;PNG']"),
        ("DRESSCODE_LLM_TIMEOUT_S", "nan", "nan is not between 1 and 3600"),
        ("DRESSCODE_MONITORING_SLOS", '{"json_error_rate_max": -1}', "between 0 and 1"),
        ("DRESSCODE_MONITORING_SLOS", "[" * 3000, "not JSON"),
        ("DRESSCODE_FEAST_REPO", "   ", "not empty"),
        ("DRESSCODE_AWS_CONN_ID", "aws\ndefault", "one line of text"),
    ],
)
def test_bad_setting_names_the_variable(env: str, raw: str, expected: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({env: raw})
    message = str(err.value)
    assert message.startswith(f"{env}={raw[:60]!r}") and " is invalid: expected " in message
    assert expected in message


def test_a_lake_location_may_be_a_plain_path_and_round_trips(tmp_path: Path) -> None:
    settings = load_settings({"DRESSCODE_LAKE_URI": str(tmp_path / "lake") + "/"})
    assert settings.lake_uri == (tmp_path / "lake").as_uri()
    assert load_settings({"DRESSCODE_LAKE_URI": settings.lake_uri}).lake_uri == settings.lake_uri
    assert load_settings({"DRESSCODE_LAKE_URI": "s3://bucket/lake/"}).lake_uri == "s3://bucket/lake"


def test_a_huge_value_is_refused_and_not_quoted_in_full() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({"DRESSCODE_INGEST_BATCH_SIZE": "9" * 100_000})
    assert "100,000 characters" in str(err.value) and len(str(err.value)) < 300


def test_per_run_overrides_are_validated() -> None:
    settings = load_settings({})
    assert settings.with_overrides({"ingest_batch_size": 8}).ingest_batch_size == 8
    with pytest.raises(SettingsError, match="DRESSCODE_INGEST_BATCH_SIZE"):
        settings.with_overrides({"ingest_batch_size": -1})
    with pytest.raises(SettingsError, match="Unknown setting 'batch'"):
        settings.with_overrides({"batch": 8})


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = README.read_text()
    missing = [knob.env for knob in SETTINGS.values() if f"`{knob.env}`" not in readme]
    assert missing == []


def _set_llm_conn(monkeypatch: pytest.MonkeyPatch, **conn: object) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_DRESSCODE_LLM", json.dumps({"conn_type": "http", **conn}))
    config.get_settings.cache_clear()


def test_llm_connection_resolves(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_llm_conn(
        monkeypatch,
        host="http://127.0.0.1:8000/v1/",
        password="key",
        extra={"model": "m", "max_concurrency": 4},
    )
    endpoint = llm_endpoint()
    assert (endpoint.base_url, endpoint.api_key, endpoint.model, endpoint.max_concurrency) == (
        "http://127.0.0.1:8000/v1",
        "key",
        "m",
        4,
    )


def test_missing_llm_connection_says_which_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_DRESSCODE_LLM", raising=False)
    with pytest.raises(SettingsError, match="set AIRFLOW_CONN_DRESSCODE_LLM"):
        llm_endpoint()


@pytest.mark.parametrize(
    ("conn", "expected"),
    [
        ({"host": "localhost:8000", "extra": {"model": "m"}}, "no http:// or https://"),
        ({"extra": {"model": "m"}}, "host must be the base URL .* got nothing"),
        ({"host": "ftp://h/v1", "extra": {"model": "m"}}, "the scheme must be http or https"),
        ({"host": "http:///v1", "extra": {"model": "m"}}, "no host name"),
        ({"host": "http://h/v1", "port": 8000, "extra": {"model": "m"}}, "put the port inside"),
        ({"host": "http://h:8000/v1", "extra": {}}, "extra must name the served model"),
        (
            {"host": "http://h:8000/v1", "extra": {"model": "m", "timeout": "soon"}},
            "extra timeout must be a number above 0 and at most 3600, got 'soon'",
        ),
        (
            {"host": "http://h:8000/v1", "extra": {"model": "m", "max_concurrency": 0}},
            "extra max_concurrency must be a number above 0",
        ),
        (
            {"host": "http://h:8000/v1", "extra": {"model": "m", "timeout": "NaN"}},
            "extra timeout must be a number",
        ),
        (
            {"host": "http://h:8000/v1", "extra": {"model": "m", "timeout": True}},
            "extra timeout must be a number",
        ),
        (
            {"host": "http://h:8000/v1", "extra": {"model": "m", "max_concurrency": 2.5}},
            "max_concurrency must be a whole number",
        ),
        (
            {"host": "http://h:8000/v1", "extra": {"model": "m", "max_concurrency": 10**400}},
            "at most 1024",
        ),
    ],
)
def test_malformed_llm_connection_is_explained(
    monkeypatch: pytest.MonkeyPatch, conn: dict, expected: str
) -> None:
    _set_llm_conn(monkeypatch, **conn)
    with pytest.raises(SettingsError, match=expected):
        llm_endpoint()


def test_empty_extra_fields_of_the_connection_form_fall_back_to_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The connection form saves an emptied field as null (or ""), not as a missing key.
    _set_llm_conn(
        monkeypatch,
        host="http://h:8000/v1",
        extra={"model": "m", "timeout": None, "max_concurrency": ""},
    )
    monkeypatch.setenv("DRESSCODE_LLM_TIMEOUT_S", "33")
    config.get_settings.cache_clear()
    endpoint = llm_endpoint()
    assert (endpoint.timeout_s, endpoint.max_concurrency, endpoint.api_key) == (33.0, 16, "EMPTY")


def test_without_a_weather_connection_open_meteo_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_WEATHER_API", raising=False)
    endpoint = weather_endpoint()
    assert (endpoint.base_url, endpoint.api_key) == (connections.DEFAULT_WEATHER_URL, None)


@pytest.mark.parametrize("conn_id", ["zrfnb18j", "nOl0fhgH"])
def test_the_test_buttons_random_id_reads_as_this_connection(
    monkeypatch: pytest.MonkeyPatch, conn_id: str
) -> None:
    from dresscode.core.connections import tested_as

    message = f"Connection {conn_id!r}: http://x/v1 serves 'm'"
    assert tested_as(message, conn_id) == message  # not exported: a saved connection's name
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", "http://x")
    assert tested_as(message, conn_id) == "This connection: http://x/v1 serves 'm'"
    assert tested_as("Connection 'dresscode_llm': ok", "dresscode_llm").startswith("Connection")
