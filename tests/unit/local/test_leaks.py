"""The log and alert leak scanner: it must see what a leak looks like, and only that."""

from __future__ import annotations

import base64
import io
import json
import random
import urllib.parse
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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


# --- the lake: every area that can hold user bytes ----------------------------------------------

GPS = {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 7.0)}  # a flat in Paris


def _photo(seed: int = 0, *, gps: bool = False, size: tuple[int, int] = (64, 48)) -> bytes:
    """A JPEG as a phone sends it: EXIF with a GPS position when ``gps``."""
    rng = random.Random(seed)
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    if gps:
        exif[0x8825] = GPS
    colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    Image.new("RGB", size, colour).save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def _lake_findings(root: Path, landing: Path | None = None) -> list[str]:
    _, found = leaks.scan_lake(root, landing=landing)
    return sorted(f"{f.path.relative_to(root).as_posix()}: {f.what}" for f in found)


def _clean_lake(root: Path) -> None:
    """What a healthy lake holds: GPS only in uploads as sent, clean JPEGs, text reports."""
    from dresscode.ingest import photos as images

    (root / "landing" / "u1").mkdir(parents=True)
    (root / "landing" / "u1" / "up-1.jpg").write_bytes(_photo(1, gps=True))
    (root / "landing" / "feedback").mkdir()
    (root / "landing" / "feedback" / "events.jsonl").write_text('{"event": "like"}\n')
    evidence = root / "quarantine" / "date=2026-05-10" / "u2" / "bad.jpg"
    evidence.mkdir(parents=True)
    (evidence / "original.jpg").write_bytes(_photo(2, gps=True) + b"<html>trailing</html>")
    (evidence / "reason.json").write_text('{"reason_code": "trailing_data"}')
    clean = images.normalize(_photo(3, gps=True, size=(400, 300)), filename="x.jpg").jpeg
    (root / "images" / "ab").mkdir(parents=True)
    (root / "images" / "ab" / "ab12.jpg").write_bytes(clean)
    raw = root / "feedback" / "raw" / ("f" * 64)
    raw.mkdir(parents=True)
    (raw / "feedback.jsonl").write_text('{"user_id": "u1", "event": "dislike", "item": "ab12"}\n')
    (root / "reports" / "eval").mkdir(parents=True)
    (root / "reports" / "eval" / "run-1.json").write_text(
        json.dumps({"sha256": "ffd8" + "0" * 60, "f1": 0.91, "note": "JFIF-free"})
    )
    part = root / "wardrobe_items" / "date=2026-05-10"
    part.mkdir(parents=True)
    pq.write_table(
        pa.table({"item_id": ["a", "b"], "color_names": [["navy"], ["red", "white"]], "n": [1, 2]}),
        part / "items.parquet",
    )


def test_a_clean_lake_has_no_finding_and_gps_is_allowed_only_in_raw_areas(tmp_path: Path) -> None:
    _clean_lake(tmp_path)

    scanned, found = leaks.scan_lake(tmp_path)

    assert scanned == 8 and found == []


def test_a_gps_photo_in_feedback_raw_and_escaped_image_bytes_in_a_report_are_both_found(
    tmp_path: Path,
) -> None:
    _clean_lake(tmp_path)
    raw = tmp_path / "feedback" / "raw" / ("e" * 64)
    raw.mkdir(parents=True)
    (raw / "photo.jpg").write_bytes(_photo(4, gps=True))
    report = tmp_path / "reports" / "feedback" / "date=2026-05-10" / "run-1.html"
    report.parent.mkdir(parents=True)
    report.write_text(f"<pre>request body: {_photo(5)[:64]!r}</pre>\n")  # b'\xff\xd8\xff\xe0...'

    assert _lake_findings(tmp_path) == [
        f"feedback/raw/{'e' * 64}/photo.jpg: GPS position in EXIF",
        "reports/feedback/date=2026-05-10/run-1.html: escaped image bytes (\\x)",
        "reports/feedback/date=2026-05-10/run-1.html: image header as text",
    ]


@pytest.mark.parametrize(
    "area", ["images/ab", "feedback/raw/0a1b", "reports/drift/date=2026-05-10", "digitized/p@v2"]
)
def test_a_located_photo_outside_the_raw_areas_is_a_leak(tmp_path: Path, area: str) -> None:
    (tmp_path / area).mkdir(parents=True)
    (tmp_path / area / "x.jpg").write_bytes(_photo(6, gps=True))

    assert _lake_findings(tmp_path) == [f"{area}/x.jpg: GPS position in EXIF"]


def test_gps_in_an_xmp_packet_is_found_too(tmp_path: Path) -> None:
    jpeg = _photo(7)
    xmp = b'<x:xmpmeta><rdf:Description exif:GPSLatitude="48,51.4N"/></x:xmpmeta>'
    segment = b"\xff\xe1" + (len(xmp) + 31).to_bytes(2, "big") + b"http://ns.adobe.com/xap/1.0/\x00"
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "x.jpg").write_bytes(jpeg[:2] + segment + xmp + jpeg[2:])

    assert _lake_findings(tmp_path) == ["images/x.jpg: GPS position in XMP"]


def test_a_landing_area_outside_the_lake_is_scanned_as_raw(tmp_path: Path) -> None:
    lake_root, landing = tmp_path / "lake", tmp_path / "bucket-landing"
    (landing / "u1").mkdir(parents=True)
    (landing / "u1" / "a.jpg").write_bytes(_photo(8, gps=True))
    (landing / "u1" / "notes.txt").write_text("ghp_" + "a" * 36 + "\n")

    scanned, found = leaks.scan_lake(lake_root, landing=landing)

    assert scanned == 2
    assert [(f.path.name, f.what) for f in found] == [("notes.txt", "GitHub token")]


# Every way a report could carry a photo's bytes as text.
ENCODINGS = {
    "python repr": lambda b: repr(b),
    "JSON of Latin-1": lambda b: json.dumps(b.decode("latin-1")),
    "JSON of surrogate escapes": lambda b: json.dumps(b.decode("utf-8", "surrogateescape")),
    "UTF-8 of Latin-1": lambda b: b.decode("latin-1"),
    "percent-encoded": lambda b: urllib.parse.quote_from_bytes(b),
    "HTML entities": lambda b: "".join(f"&#{c};" for c in b),
    "HTML hex entities": lambda b: "".join(f"&#x{c:02X};" for c in b),
    "hex": lambda b: b.hex(),
    "hex dump": lambda b: b.hex(" "),
    "colon hex": lambda b: b.hex(":"),
    "base64": lambda b: base64.b64encode(b).decode(),
    "data URL": lambda b: "data:image/png;base64," + base64.b64encode(b).decode(),
}


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("kind", ["JPEG", "PNG"])
def test_image_bytes_are_found_in_a_report_however_they_are_escaped(
    tmp_path: Path, encoding: str, kind: str
) -> None:
    rng = random.Random(f"{encoding}-{kind}")
    for trial in range(5):
        size = (rng.randrange(8, 300), rng.randrange(8, 300))
        out = io.BytesIO()
        Image.effect_noise(size, rng.randrange(1, 100)).convert("RGB").save(out, kind)
        chunk = out.getvalue()[: rng.randrange(48, 400)]
        text = f"<p>{_words(rng)}</p>\n<pre>{ENCODINGS[encoding](chunk)}</pre>\n{_words(rng)}\n"
        report = tmp_path / "reports" / "eval" / f"r{trial}.html"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(text, encoding="utf-8", errors="surrogateescape")

        found = leaks.scan_lake_file(report, "reports")

        assert found, (encoding, kind, size, text[:200])


def _words(rng: random.Random) -> str:
    vocab = [
        "navy",
        "drift",
        "share",
        "0.25",
        "f1",
        "sha256",
        "ffd8",
        "JFIF",
        "Exif",
        "%20",
        "&amp;",
    ]
    return " ".join(rng.choice(vocab) for _ in range(rng.randrange(0, 40)))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.from_regex(r"[0-9a-f]{64}", fullmatch=True),  # hashes
            st.from_regex(r"[a-z]{1,12}", fullmatch=True),
            st.floats(allow_nan=False).map(str),
            st.uuids().map(str),
            st.sampled_from(["&amp;", "%20", "\\n", "\\u00e9", "é", "JFIF", "Exif", "<td>"]),
        ),
        max_size=200,
    )
)
def test_ordinary_report_text_is_not_taken_for_image_bytes(parts: list[str]) -> None:
    assert leaks.scan_bytes_for_images(" ".join(parts).encode()) == []


def test_a_parquet_cell_holding_a_secret_or_a_photo_is_found(tmp_path: Path) -> None:
    part = tmp_path / "inference_log" / "date=2026-05-10"
    part.mkdir(parents=True)
    b64 = base64.b64encode(_photo(9)).decode()
    pq.write_table(
        pa.table(
            {
                "request_id": ["r1", "r2", "r3"],
                "error": [None, "auth failed for hf_" + "x" * 34, None],
                "request": ["{}", "{}", f'{{"url": "data:image/jpeg;base64,{b64}"}}'],
            }
        ),
        part / "calls.parquet",
    )

    found = {(f.line, f.what) for f in leaks.scan_lake(tmp_path)[1]}

    assert (2, "Hugging Face token") in found
    assert {(3, "image data URL"), (3, "base64 image")} <= found


def test_a_font_data_url_is_allowed_but_a_photo_disguised_as_one_is_not(
    tmp_path: Path,
) -> None:
    # Evidently embeds its icon font as a data:font/ttf;base64 URL of 126 kB.
    font = base64.b64encode(b"wOF2" + bytes(range(256)) * 8).decode()
    fake = base64.b64encode(_photo(10) * 3).decode()
    ok = tmp_path / "ok.html"
    ok.write_text(f"@font-face{{src:url(data:font/ttf;base64,{font})}}")
    disguised = tmp_path / "disguised.html"
    disguised.write_text(f"@font-face{{src:url(data:font/ttf;base64,{fake})}}")

    assert leaks.scan_lake_file(ok, "reports") == []
    assert {f.what for f in leaks.scan_lake_file(disguised, "reports")} >= {"base64 image"}


def test_stack_leak_scan_covers_the_lake(dresscode_home: Path) -> None:
    from dresscode.core import lake
    from dresscode.local import stack

    root = Path(lake.root().path)
    raw = root / "feedback" / "raw" / ("c" * 64)
    raw.mkdir(parents=True)
    (raw / "photo.jpg").write_bytes(_photo(11, gps=True))
    (root / "landing" / "u1").mkdir(parents=True)
    (root / "landing" / "u1" / "a.jpg").write_bytes(_photo(12, gps=True))

    scanned, found = stack.leak_scan(stack.Ports(airflow=8080, sim=8000))

    assert scanned >= 2
    assert [(f.path.parent.parent.name, f.what) for f in found] == [("raw", "GPS position in EXIF")]
