"""Fuzzing landing keys: over 10,000 generated keys per run through key validation and parsing.

Keys are what a bucket or a local folder can hold and worse: lone surrogates (a file name that
is not UTF-8), control characters, newlines (``$`` matches before one), dots, slashes, reserved
names in any case, bidi overrides, huge lengths. For every key:

* nothing raises but ``KeyRejected`` (0 uncaught exceptions);
* the key is either accepted with a safe user id — ASCII, ``[A-Za-z0-9][A-Za-z0-9._=@+-]*``,
  no ``..``, no reserved name — or rejected with a stable reason code and a sentence;
* the key travels through XCom (its portable form is valid UTF-8 and JSON) and comes back as
  the same file name; its quarantine folder stays inside the day's quarantine partition.

Seeds that once failed are kept as ``@example``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dresscode.core import config, lake, tables
from dresscode.ingest import landing
from dresscode.ingest import tasks as ingest

DAY = "2026-11-23"
N_FREE = 7_000  # any text, any bytes
N_SHAPED = 4_000  # <user>/<name>.<ext> built from hostile parts
SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=@+-]{0,199}")
CODES = {c.value for c in landing.KeyCode}
SEEN = {"keys": 0, "accepted": 0, "rejected": 0, "seconds": 0.0}

ANY_CHAR = st.characters(exclude_categories=[])  # surrogates too (the default leaves them out)
HOSTILE_CHARS = st.sampled_from(
    [
        "\n", "\r", "\t", "\x00", "\x7f", "\x1b", "\u202e", "\u200b", "\ufeff", "\udcff",
        "\udc80", "\ud800", "/", "\\", ".", "..", " ", "%2e", "%2f", "é", "ﬁ", "Ａ", "𝔘",
        "=", "@", "+", "-", "_", ":", "*", "?", "~",
    ]
)  # fmt: skip
SEGMENT = st.one_of(
    st.from_regex(SAFE, fullmatch=True),
    st.text(st.characters(codec="ascii"), max_size=12),
    st.lists(
        st.one_of(HOSTILE_CHARS, st.from_regex(r"[a-z0-9]{1,4}", fullmatch=True)), max_size=6
    ).map("".join),
    st.sampled_from(["feedback", "Feedback", "FEEDBACK", "fEEDBACK", ".", "..", "", "x" * 201]),
    st.text(st.characters(exclude_categories=[]), max_size=8),
)
EXT = st.one_of(
    st.sampled_from(["jpg", "JPG", "png", "heic", "webp", "", "jpg\n", "jpg.", "tar.gz"]),
    st.text(ANY_CHAR, max_size=5),
)
SAFE_SEGMENT = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._=@+-]{0,20}", fullmatch=True)


def _near_miss(parts: tuple[str, str, str, str, int, bool]) -> str:
    """A good key with at most one hostile character at the start or end of one part."""
    user, name, ext, bad, where, at_end = parts
    fields = [user, name, ext]
    fields[where] = fields[where] + bad if at_end else bad + fields[where]
    return f"{fields[0]}/{fields[1]}.{fields[2]}"


NEAR_MISS = st.tuples(
    SAFE_SEGMENT,
    SAFE_SEGMENT,
    st.sampled_from(["jpg", "png", "heic", "webp"]),
    st.one_of(st.just(""), HOSTILE_CHARS),
    st.integers(0, 2),
    st.booleans(),
).map(_near_miss)
SHAPED = st.one_of(
    NEAR_MISS,
    st.tuples(SEGMENT, SEGMENT, EXT).map(lambda t: f"{t[0]}/{t[1]}.{t[2]}"),
    st.tuples(SEGMENT, SEGMENT).map(lambda t: f"{t[0]}/.{t[1]}"),  # dot files
    st.lists(SEGMENT, min_size=1, max_size=5).map("/".join),
)
FREE = st.one_of(
    st.text(ANY_CHAR, max_size=60),  # every code point, lone surrogates included
    st.binary(max_size=60).map(lambda b: b.decode("utf-8", "surrogateescape")),  # a POSIX name
    st.text(ANY_CHAR, min_size=200, max_size=1100),  # huge (S3 keys go to 1,024 bytes)
    st.text(st.characters(codec="ascii"), max_size=40),
)


@pytest.fixture(scope="module")
def fuzz_settings(tmp_path_factory: pytest.TempPathFactory) -> config.Settings:
    home = tmp_path_factory.mktemp("fuzz-home")
    return config.load_settings({"DRESSCODE_HOME": str(home)})


_BASES: dict[str, str] = {}


def quarantine_base(settings_: config.Settings) -> str:
    if settings_.lake_uri not in _BASES:
        _BASES[settings_.lake_uri] = str(lake.partition(tables.QUARANTINE.name, DAY, settings_))
    return _BASES[settings_.lake_uri]


def check(key: str, settings_: config.Settings) -> None:
    """The properties every landing key must have (see the module docstring)."""
    SEEN["keys"] += 1
    portable = lake.portable_key(key)
    wire = json.dumps(portable, ensure_ascii=False).encode("utf-8")  # XCom, Parquet: UTF-8
    assert json.loads(wire) == portable
    try:
        native = key.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        native = None  # a lone high surrogate: no file system hands such a name out
    if native is not None:
        assert lake.native_key(portable) == key
    lake.printable_key(portable).encode("utf-8")
    hidden = landing.is_hidden(portable)
    owner = tables.landing_owner(lake.native_key(portable))
    try:
        upload = ingest.Upload.parse(portable)
    except ingest.KeyRejected as exc:
        SEEN["rejected"] += 1
        assert exc.code in CODES and str(exc)
        assert isinstance(exc, lake.UnsafeKey)
        folder = landing.quarantine_folder(portable, None, DAY, settings_)
        assert str(folder).startswith(quarantine_base(settings_) + "/_unsafe_keys/")
        return
    SEEN["accepted"] += 1
    assert not hidden and owner is None
    assert upload.key == key == portable
    assert SAFE.fullmatch(upload.user_id) and ".." not in upload.user_id
    assert upload.user_id.casefold() not in tables.RESERVED_USER_IDS
    assert upload.user_id.isascii() and upload.upload_id.isascii() and upload.ext
    assert f"{upload.user_id}/{upload.upload_id}.{upload.ext}".lower() == key.lower()
    assert not any(c in key for c in "\n\r\x00\\")
    folder = landing.quarantine_folder(key, "0" * 64, DAY, settings_)
    expected = f"{quarantine_base(settings_)}/{upload.user_id}/{key.rpartition('/')[2]}/{'0' * 32}"
    assert str(folder) == expected


def fuzz(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,  # nothing written into the working tree; failing seeds become @example
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@fuzz(N_FREE)
@given(key=FREE)
@example(key="rt-nl\n/photo.jpg")
@example(key="u1/\udcff\udcfe.jpg")
@example(key="u1/\ud800.jpg")
@example(key="\x00b64:dTEvcGhvdG8uanBn")  # looks like a token, is a NUL name
@example(key="\x00b64:!!")
@example(key="feedback/photo.jpg")
@example(key="u1/.tmp-0123-photo.jpg")
@example(key="u1/photo.")
def test_any_key_is_accepted_safely_or_rejected_with_a_reason(
    fuzz_settings: config.Settings, key: str
) -> None:
    started = time.monotonic()
    check(key, fuzz_settings)
    SEEN["seconds"] += time.monotonic() - started


@fuzz(N_SHAPED)
@given(key=SHAPED)
@example(key="Feedback/photo.jpg")
@example(key="u1/photo.jpg\n")
@example(key="u1\r\n/photo.jpg")
@example(key="u1/..photo.jpg")
@example(key="u1/photo\u202egpj.exe")
@example(key="x" * 201 + "/p.jpg")
def test_keys_shaped_like_uploads_are_accepted_safely_or_rejected_with_a_reason(
    fuzz_settings: config.Settings, key: str
) -> None:
    check(key, fuzz_settings)


def test_over_ten_thousand_keys_were_checked(record_property: pytest.RecordProperty) -> None:
    if SEEN["keys"] == 0:
        pytest.skip("run with the fuzz tests above")
    record_property("fuzz_keys", dict(SEEN))
    print(f"\nfuzzed landing keys: {SEEN}")
    assert SEEN["keys"] >= 10_000
    assert SEEN["accepted"] > 0 and SEEN["rejected"] > 0


def test_the_settings_home_of_the_fuzz_is_never_written(fuzz_settings: config.Settings) -> None:
    assert not any(Path(fuzz_settings.home).rglob("*"))
