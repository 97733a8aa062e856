"""The committed bad-input corpus (tests/corpus, made by scripts/make_corpus.py) end to end.

Three things must hold for every file: ``images.normalize`` never crashes (it accepts, or
rejects with exactly the manifest's code); ingest never loses an original (each one ends up in
quarantine with a ``reason.json`` naming its code, or as the source of an accepted image), and
no hostile key escapes the lake; no normalized output carries metadata (leak scan).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from dresscode.core import config, lake
from dresscode.core.connections import LLMEndpoint
from dresscode.ingest import photos as images
from dresscode.ingest import tasks as ingest
from dresscode.sim.testing import running_simulator

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
MANIFEST: dict[str, dict] = json.loads((CORPUS / "manifest.json").read_text())
FILES = sorted(name for name, entry in MANIFEST.items() if not entry.get("runtime"))
ACCEPTED = [name for name in FILES if MANIFEST[name]["expected"] == "accepted"]
MODEL = "google/gemma-4-26B-A4B-it"
DAY = "2026-11-24"
DRESSCODE_BIN = Path(sys.executable).parent / "dresscode"
# JFIF APP0 is the only segment a normalized JPEG may have before its frame header.
ALLOWED_INFO = {"jfif", "jfif_version", "jfif_unit", "jfif_density"}


def _raw(name: str) -> bytes:
    entry = MANIFEST[name]
    if entry.get("runtime"):
        return _oversized(entry["bytes"])
    return (CORPUS / name).read_bytes()


def _oversized(size: int) -> bytes:
    """A real JPEG padded after its EOI up to ``size`` bytes (too big to commit)."""
    head = (CORPUS / "progressive.jpg").read_bytes()
    return head + b"\x00" * (size - len(head))


def _outcome(raw: bytes, name: str) -> str | images.CleanPhoto:
    """The reject code, or the CleanPhoto; anything else raised is a crash and fails the test."""
    try:
        return images.normalize(raw, filename=name)
    except images.Rejected as rej:
        return rej.code.value


# --- the corpus itself ----------------------------------------------------------------------


def test_corpus_is_small_complete_and_matches_its_manifest() -> None:
    on_disk = {p.name for p in CORPUS.iterdir()} - {"manifest.json"}
    assert on_disk == set(FILES)
    for name in FILES:
        data = (CORPUS / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == MANIFEST[name]["sha256"], name
    assert len(MANIFEST) >= 30
    codes = {str(code) for code in images.RejectCode}
    assert {e["expected"] for e in MANIFEST.values()} <= codes | {"accepted"}
    # Every reject code the normalizer has is exercised by at least one file.
    assert codes <= {e["expected"] for e in MANIFEST.values()}
    assert sum((CORPUS / n).stat().st_size for n in on_disk) < 3_000_000


# --- (1) normalize: zero crashes ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_every_corpus_file_is_accepted_or_rejected_with_its_code(name: str) -> None:
    result = _outcome(_raw(name), name)
    got = "accepted" if isinstance(result, images.CleanPhoto) else result
    assert got == MANIFEST[name]["expected"], MANIFEST[name]["tests"]


CLI_CASES = [
    "polyglot_jpeg_zip.jpg",
    "heic_rotated_6_gps.heic",
    "svg_script.jpg",
    "declared_20000x20000.jpg",
    "ztxt_bomb.png",
    "truncated.webp",
    "too_large_50mb.jpg",
]


@pytest.mark.parametrize("name", CLI_CASES)
def test_normalize_command_exits_2_with_the_code_or_writes_the_photo(
    dresscode_home: Path, tmp_path: Path, name: str
) -> None:
    src = tmp_path / name
    src.write_bytes(_raw(name))
    out = tmp_path / "out.jpg"
    proc = subprocess.run(
        [str(DRESSCODE_BIN), "normalize", str(src), str(out)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    expected = MANIFEST[name]["expected"]
    if expected == "accepted":
        assert proc.returncode == 0, proc.stderr
        assert _leaks(out.read_bytes()) == []
    else:
        assert proc.returncode == 2, proc.stderr
        assert f"rejected: {expected}:" in proc.stderr
        assert "Traceback" not in proc.stderr and not out.exists()


# --- (2) ingest: no original lost, no key escapes -------------------------------------------


def _landing_key(index: int, name: str) -> str:
    # One user folder per file: the point here is each file's fate, not duplicate detection
    # (two corpus files can normalize to the same pixels; test_ingest covers duplicates).
    return MANIFEST[name].get("landing_key") or f"corpus-{index:02d}/{name}"


@pytest.fixture
def endpoint(dresscode_home: Path) -> Iterator[LLMEndpoint]:
    script = dresscode_home / "script.jsonl"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("")  # unscripted photos get the simulator's pixel-based answer
    with running_simulator(
        scripts=[script], served_model_name=[f"{MODEL}=perfect"], fixed_latency_ms=1
    ) as url:
        yield LLMEndpoint(url, "EMPTY", MODEL, 20.0, 8)


def _quarantined_original(key: str, name: str) -> tuple[bytes, dict]:
    """The quarantined copy of ``key`` and its reason.json, found under its key's folder (the
    copy may sit one level down, in a folder per content: re-uploads to one key keep theirs)."""
    folder = lake.partition("quarantine", DAY)
    try:
        upload = ingest.Upload.parse(key)
    except lake.UnsafeKey:
        stem, original = (
            folder / "_unsafe_keys" / hashlib.sha256(key.encode()).hexdigest()[:32],
            "original",
        )
    else:
        stem, original = folder / upload.user_id / name, f"original.{upload.ext}"
    reasons = sorted(stem.rglob("reason.json"), key=str)
    stem = reasons[0].parent if reasons else stem
    return lake.read_bytes(stem / original), lake.read_json(stem / "reason.json")


def test_every_original_is_kept_and_no_key_escapes_the_lake(
    dresscode_home: Path, endpoint: LLMEndpoint, tmp_path: Path
) -> None:
    keys = {name: _landing_key(i, name) for i, name in enumerate(sorted(MANIFEST))}
    assert len(set(keys.values())) == len(keys)
    for name, key in keys.items():
        lake.write_bytes(lake.landing() / key, _raw(name))
    before = {p for p in tmp_path.parent.rglob("*") if p.is_file()} - set(tmp_path.rglob("*"))

    batches = ingest.discover()
    assert sorted(k for b in batches for k in b) == sorted(keys.values())
    for batch in batches:
        ingest.process_batch(batch, run_id="corpus", day=DAY, endpoint=endpoint)

    state = ingest.manifest_state(config.get_settings())
    lost = []
    for name, key in keys.items():
        raw, entry, row = _raw(name), MANIFEST[name], state[key]
        expected = entry.get("ingest_expected", entry["expected"])
        assert row["raw_sha256"] in (None, hashlib.sha256(raw).hexdigest())
        if expected == "accepted":
            assert (row["status"], row["reason_code"]) == ("accepted", None), name
            image = lake.read_bytes(ingest.image_path(row["image_sha256"], config.get_settings()))
            assert _leaks(image) == [], name
            assert row["raw_sha256"] == hashlib.sha256(raw).hexdigest()
            continue
        assert (row["status"], row["reason_code"]) == ("quarantined", expected), name
        kept, reason = _quarantined_original(key, key.rpartition("/")[2])
        assert reason["code"] == expected and reason["upload_key"] == key
        if kept != raw:
            lost.append(name)
    assert lost == []
    assert ingest.landing_keys(config.get_settings()) == []  # everything reached a final state
    # Nothing was written outside this test's tmp dir, and no lake path is made of a hostile key.
    after = {p for p in tmp_path.parent.rglob("*") if p.is_file()} - set(tmp_path.rglob("*"))
    assert after == before
    home, landing = dresscode_home.resolve(), Path(lake.landing().path).resolve()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(p.resolve().is_relative_to(home) for p in written)
    for path in written:  # landing held the hostile keys (the test put them there); it is empty
        if not path.resolve().is_relative_to(landing):
            for part in path.resolve().relative_to(home).parts:
                assert part.isascii() and part.isprintable() and " " not in part, path


# --- (3) leak scan --------------------------------------------------------------------------


def _jpeg_segments(jpeg: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """(marker, payload) of every segment before the first scan, and the bytes after EOI."""
    assert jpeg[:2] == b"\xff\xd8", "not a JPEG"
    segments, pos = [], 2
    while True:
        assert jpeg[pos] == 0xFF, f"no marker at {pos}"
        marker = jpeg[pos + 1]
        length = int.from_bytes(jpeg[pos + 2 : pos + 4], "big")
        segments.append((marker, jpeg[pos + 4 : pos + 2 + length]))
        pos += 2 + length
        if marker == 0xDA:  # SOS: entropy-coded data follows, where FF D9 can only be EOI
            end = jpeg.index(b"\xff\xd9", pos) + 2
            return segments, jpeg[end:]


def _leaks(jpeg: bytes) -> list[str]:
    """Everything in a JPEG beyond JFIF + pixels: metadata, thumbnails, trailing payloads."""
    found = []
    segments, trailer = _jpeg_segments(jpeg)
    for marker, payload in segments:
        is_jfif_app0 = marker == 0xE0 and payload.startswith(b"JFIF\x00")
        if 0xE0 <= marker <= 0xEF and not is_jfif_app0:
            found.append(f"APP{marker - 0xE0} {payload[:12]!r}")
        if marker == 0xFE:
            found.append(f"COM {payload[:20]!r}")
    if trailer:
        found.append(f"{len(trailer)} bytes after EOI {trailer[:8]!r}")
    im = Image.open(io.BytesIO(jpeg))
    if exif := dict(im.getexif()):
        found.append(f"EXIF tags {sorted(exif)}")
    if extra := set(im.info) - ALLOWED_INFO:
        found.append(f"info keys {sorted(extra)}")  # xmp, comment, icc_profile, exif, adobe, ...
    if icc := im.info.get("icc_profile"):
        found.append(f"ICC profile of {len(icc)} bytes")
    return found


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Normalized JPEGs of every accepted corpus file and of a seeded batch of phone photos."""
    from dresscode.local import seed

    found = {name: _outcome(_raw(name), name).jpeg for name in ACCEPTED}
    home = tmp_path_factory.mktemp("leak-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DRESSCODE_HOME", str(home))
        for knob in ("DRESSCODE_LAKE_URI", "DRESSCODE_LANDING_URI"):
            mp.delenv(knob, raising=False)
        config.get_settings.cache_clear()
        try:
            seed.seed(12, script_path=home / "script.jsonl", bad_files=False, size=(800, 600))
            landing = lake.landing()
            for key in ingest.landing_keys(config.get_settings()):
                found[f"seed:{key}"] = images.normalize(
                    lake.read_bytes(landing / key), filename=key
                ).jpeg
        finally:
            config.get_settings.cache_clear()
    return found


def test_the_leak_scanner_sees_metadata_in_the_inputs() -> None:
    # The scan below is only worth something if it flags what it claims to look for.
    for name, expected in {
        "xmp_gps_only.jpg": "APP1",
        "exif_thumbnail_uncropped.jpg": "EXIF",
        "iptc_app13_comment.jpg": "APP13",
        "cmyk_adobe.jpg": "APP14",
        "adobe_rgb_icc.jpg": "ICC",
        "polyglot_jpeg_zip.jpg": "after EOI",
        "jpeg_html_appended.jpg": "after EOI",
    }.items():
        assert any(expected in leak for leak in _leaks(_raw(name))), name


def test_no_normalized_output_carries_metadata(outputs: dict[str, bytes]) -> None:
    assert len(outputs) >= len(ACCEPTED) + 12
    assert any(name.endswith(".heic") for name in outputs)
    leaks = {name: found for name, jpeg in outputs.items() if (found := _leaks(jpeg))}
    assert leaks == {}


# exiftool groups that describe the file itself, not metadata carried in it.
EXIFTOOL_OK_GROUPS = {"SourceFile", "ExifTool", "System", "File", "JFIF", "Composite"}


def test_exiftool_finds_no_metadata_in_normalized_outputs(
    outputs: dict[str, bytes], tmp_path: Path
) -> None:
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        pytest.skip("exiftool is not installed; the Pillow/marker scan above still ran")
    paths = []
    for i, jpeg in enumerate(outputs.values()):
        paths.append(tmp_path / f"out-{i:03d}.jpg")
        paths[-1].write_bytes(jpeg)
    proc = subprocess.run(
        [exiftool, "-j", "-G1", "-a", "-u", *map(str, paths)],
        capture_output=True,
        text=True,
        check=True,
    )
    leaks = {}
    for record in json.loads(proc.stdout):
        groups = {key.split(":")[0] for key in record}
        if extra := groups - EXIFTOOL_OK_GROUPS:
            leaks[record["SourceFile"]] = sorted(extra)
    assert leaks == {}
