"""Hostile inputs, one class each: what costs too much to decode, a model call that fails behind
a zero exit, settings that end in a traceback instead of a sentence.

Every input is generated here (Hypothesis where the class is wide), and every test failed on
the behaviour it replaces: a progressive JPEG with its last scan repeated 3,000 times was
decoded for minutes and then accepted; ``dresscode digitize`` printed ``[]`` and exited 0
when the model call failed; ``DRESSCODE_LAKE_URI=ftp://x`` and an empty
``DRESSCODE_IMAGE_FORMATS`` were accepted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from dresscode.core import config
from dresscode.core.config import SettingsError, load_settings
from dresscode.ingest import digitize
from dresscode.ingest import photos as images
from dresscode.ingest.formats import DEFAULT_MAX_JPEG_SCANS, jpeg_scan_count
from dresscode.local import cli
from dresscode.sim.testing import free_port, running_simulator

DRESSCODE_BIN = Path(sys.executable).parent / "dresscode"
MODEL = "google/gemma-4-26B-A4B-it"


def _jpeg(img: Image.Image, **kw: object) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85, **kw)
    return out.getvalue()


def _repeat_scan(jpeg: bytes, times: int, which: int = -1) -> bytes:
    """``jpeg`` with one of its scans (the last by default) repeated ``times`` times before EOI.

    FF DA cannot occur inside entropy-coded data, so the scans are the spans between FF DA
    markers (the tables between scans travel with the scan before them, which is harmless).
    """
    starts = [m.start() for m in re.finditer(b"\xff\xda", jpeg)]
    start = starts[which]
    end = starts[starts.index(start) + 1] if start != starts[-1] else len(jpeg) - 2
    return jpeg[:-2] + jpeg[start:end] * times + b"\xff\xd9"


def _flat(size: tuple[int, int]) -> Image.Image:
    return Image.new("RGB", size, (120, 90, 60))


# --- (1) decode cost ----------------------------------------------------------------------------


def test_a_progressive_jpeg_with_a_repeated_scan_is_refused_before_any_decode() -> None:
    # The reported file, smaller: 4000x4000 with its last scan (a few bytes of EOB runs)
    # repeated 300 times took 2 s of CPU (6.6 ms a scan) and was accepted.
    raw = _repeat_scan(_jpeg(_flat((4000, 4000)), progressive=True), 300)
    assert len(raw) < 200_000
    started = time.thread_time()
    with pytest.raises(images.Rejected) as caught:
        images.normalize(raw, filename="coat.jpg")
    assert time.thread_time() - started < 0.5
    assert caught.value.code == images.RejectCode.TOO_COMPLEX
    assert caught.value.detail["scans"] == 310
    assert caught.value.message.endswith(".") and "310 scans" in caught.value.message


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    progressive=st.booleans(),
    grey=st.booleans(),
    repeats=st.integers(0, 40),
    which=st.integers(-12, -1),
    app_payload=st.binary(max_size=64),
    limit=st.integers(1, 30),
)
@example(progressive=True, grey=False, repeats=25, which=-1, app_payload=b"", limit=20)
@example(progressive=True, grey=False, repeats=0, which=-1, app_payload=b"\xff\xda" * 8, limit=10)
def test_the_scan_limit_decides_whatever_scan_is_repeated(
    progressive: bool, grey: bool, repeats: int, which: int, app_payload: bytes, limit: int
) -> None:
    img = _flat((96, 64)).convert("L") if grey else _flat((96, 64))
    base = _jpeg(img, progressive=progressive)
    raw = _repeat_scan(base, repeats, max(which, -base.count(b"\xff\xda")))
    # An APP segment may hold FF DA bytes (an EXIF thumbnail has its own scan): not counted.
    raw = raw[:2] + b"\xff\xe9" + struct.pack(">H", len(app_payload) + 2) + app_payload + raw[2:]
    scans = base.count(b"\xff\xda") + repeats
    assert jpeg_scan_count(raw) == scans
    try:
        images.normalize(raw, max_jpeg_scans=limit)
    except images.Rejected as rej:
        # Under the limit a bogus progression may still be refused by libjpeg, as corrupt.
        assert (rej.code == images.RejectCode.TOO_COMPLEX) == (scans > limit), rej
    else:
        assert scans <= limit


def test_real_photos_are_far_below_the_default_scan_limit() -> None:
    corpus = Path(__file__).resolve().parents[1] / "corpus"
    for name in ("progressive.jpg", "progressive_exif_gps.jpg", "rotated_6.jpg"):
        assert jpeg_scan_count((corpus / name).read_bytes()) <= 10, name
    grey = _jpeg(_flat((64, 64)).convert("L"), progressive=True)
    assert jpeg_scan_count(grey) < DEFAULT_MAX_JPEG_SCANS // 6


def test_a_decode_that_runs_over_its_cpu_budget_is_stopped_and_quarantined_as_too_complex() -> None:
    # Under the scan limit and still expensive: the budget, not the scan count, stops it.
    raw = _repeat_scan(_jpeg(_flat((3000, 3000)), progressive=True), 40)
    assert jpeg_scan_count(raw) <= DEFAULT_MAX_JPEG_SCANS
    with pytest.raises(images.Rejected) as caught:
        images.normalize(raw, max_decode_s=0.01)
    assert caught.value.code == images.RejectCode.TOO_COMPLEX
    assert "s of CPU time" in caught.value.message and caught.value.detail["cpu_s"] > 0.01


def test_every_task_that_handles_user_data_has_an_execution_timeout() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(Path(__file__).resolve().parents[2] / "dags"))
    assert bag.import_errors == {}
    wanted = {
        "wardrobe_ingest": {"discover", "process"},
        "feedback_ingest": {"discover", "validate_and_apply", "stage_golden_candidates", "report"},
        "outfit_pregen": {"suggest"},
        "weather_ingest": {"fetch_forecasts"},
    }
    for dag_id, task_ids in wanted.items():
        for task_id in task_ids:
            timeout = bag.dags[dag_id].get_task(task_id).execution_timeout
            assert timeout is not None, f"{dag_id}.{task_id}"
            assert 60 <= timeout.total_seconds() <= 4 * 3600, f"{dag_id}.{task_id}: {timeout}"


# --- (2) digitize: no answer is not "no items" --------------------------------------------------


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "shirt.jpg"
    img = Image.new("RGB", (400, 300), (30, 60, 200))
    img.paste((240, 240, 240), (100, 50, 300, 250))
    path.write_bytes(_jpeg(img))
    return path


def _sent_sha256(path: Path) -> str:
    """The sha256 of the photo as the CLI sends it (what the simulator's script is keyed by)."""
    blueprint = digitize.current_blueprint()
    jpeg = images.normalize(path.read_bytes(), long_edge=blueprint.image_long_edge).jpeg
    return hashlib.sha256(digitize.fit_to_blueprint(jpeg, blueprint)).hexdigest()


@pytest.fixture
def llm_at(dresscode_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Point the dresscode_llm connection at ``url``; one attempt per call, short timeouts."""

    def point(url: str) -> None:
        conn = {"conn_type": "dresscode_llm", "host": url, "extra": {"model": MODEL}}
        monkeypatch.setenv("AIRFLOW_CONN_DRESSCODE_LLM", json.dumps(conn))
        monkeypatch.setenv("DRESSCODE_LLM_MAX_ATTEMPTS", "1")
        monkeypatch.setenv("DRESSCODE_LLM_TIMEOUT_S", "5")
        config.get_settings.cache_clear()

    yield point
    config.get_settings.cache_clear()


def test_digitize_exits_1_with_one_sentence_when_the_model_call_fails(
    photo: Path, llm_at, capsys: pytest.CaptureFixture[str]
) -> None:
    llm_at(f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there
    code = cli.main(["digitize", str(photo)])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: shirt.jpg: the model call failed")


@pytest.mark.parametrize(
    ("script", "code", "stdout", "stderr"),
    [
        ({"items": []}, 0, "[]", ""),
        ({"items": [], "faults": ["malformed"]}, 1, "", "the model's answer was unusable"),
    ],
    ids=["no_items_is_an_answer", "unusable_answer"],
)
def test_digitize_tells_no_items_from_an_unusable_answer(
    photo: Path,
    llm_at,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    script: dict,
    code: int,
    stdout: str,
    stderr: str,
) -> None:
    lines = tmp_path / "script.jsonl"
    lines.write_text(json.dumps({"image_sha256": _sent_sha256(photo), **script}) + "\n")
    with running_simulator(
        scripts=[lines], served_model_name=[f"{MODEL}=perfect"], fixed_latency_ms=1
    ) as url:
        llm_at(url)
        assert cli.main(["digitize", str(photo)]) == code
    out, err = capsys.readouterr()
    assert out.strip() == stdout
    assert stderr in err and "Traceback" not in err


def test_digitize_of_a_hostile_photo_says_rejected_and_exits_2(
    tmp_path: Path, llm_at, capsys: pytest.CaptureFixture[str]
) -> None:
    llm_at(f"http://127.0.0.1:{free_port()}/v1")  # never reached
    path = tmp_path / "coat.jpg"
    path.write_bytes(_repeat_scan(_jpeg(_flat((512, 512)), progressive=True), 100))
    assert cli.main(["digitize", str(path)]) == 2
    assert capsys.readouterr().err.startswith("rejected: too_complex: The JPEG has 110 scans")


# --- (3) settings: one sentence naming the variable, never a traceback ---------------------------


@pytest.mark.parametrize(
    ("env", "raw", "says"),
    [
        ("DRESSCODE_LAKE_URI", "ftp://x", "file:///path, s3://bucket/prefix or a filesystem path"),
        ("DRESSCODE_LANDING_URI", "http://bucket/uploads", "http:// is not supported"),
        ("DRESSCODE_IMAGE_FORMATS", "", "names none"),
        ("DRESSCODE_IMAGE_FORMATS", " , ", "names none"),
        ("DRESSCODE_IMAGE_MAX_JPEG_SCANS", "0", "between 1 and 10000"),
        ("DRESSCODE_IMAGE_MAX_DECODE_S", "inf", "inf is not between"),
        ("DRESSCODE_DRIFT_BASELINE_URI", "gs://bucket/base.parquet", "gs:// is not supported"),
        ("DRESSCODE_MONITORING_SLOS", '{"call_error_rate_max": 1e999}', "between 0 and 1"),
        ("DRESSCODE_HOME", "~no-such-user-here/x", "a filesystem path"),
    ],
)
def test_a_bad_setting_is_one_sentence_naming_the_variable(env: str, raw: str, says: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({env: raw})
    message = str(err.value)
    assert message.startswith(f"{env}={raw!r} is invalid: expected ") and says in message
    assert "\n" not in message and message.endswith(".")


def test_the_cli_refuses_an_ftp_lake_in_one_sentence(tmp_path: Path, photo: Path) -> None:
    env = os.environ | {"DRESSCODE_HOME": str(tmp_path / "home"), "DRESSCODE_LAKE_URI": "ftp://x"}
    proc = subprocess.run(
        [str(DRESSCODE_BIN), "normalize", str(photo), str(tmp_path / "out.jpg")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: DRESSCODE_LAKE_URI='ftp://x' is invalid: expected file:///path, "
        "s3://bucket/prefix or a filesystem path (ftp:// is not supported)."
    ]
