"""Fuzz every knob of ``dresscode.core.config``: ``load_settings`` on generated environments.

Two things must hold for every value of every ``DRESSCODE_*`` variable: a bad value raises the
project's ``SettingsError`` naming the variable, in one line (never a ``ValueError``,
``RecursionError``, ``RuntimeError`` or ``OverflowError`` from below); and an accepted value
round-trips (written back as text and read again, it gives the same setting) and is sensible
(numbers finite and in range, text one stripped line, lake locations file:// or s3://).

Over 10,000 values a run, in about ten seconds. Inputs that once broke a parser are kept as
``@example``s.
"""

from __future__ import annotations

import json
import math
import re
import string
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dresscode.core import config
from dresscode.core.config import SETTINGS, SettingsError, load_settings

# What no accepted text may hold: C0/C1 controls, line separators, zero-width and bidi controls.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
ENV_NAMES = {knob.env: name for name, knob in SETTINGS.items()}
EXAMPLES = 2_500
MIN_VALUES = 10_000

# --- generated raw values -------------------------------------------------------------------

_blanks = st.sampled_from(["", " ", "\t", "\n", " \r\n "])
_numbers = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        ["nan", "-inf", "1e999", "-0", "0x10", "1_000", "1,5", "1.000", "٣", "10%", "9" * 5000]
    ),
)
_separators = st.sampled_from([",", ";", " ", "|", ", ", ",,", "\n"])
_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**40), 10**40),
        st.floats(),
        st.text(max_size=8),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=6,
)
_uris = st.builds(
    "{}{}{}".format,
    st.sampled_from(["", "file://", "file:///", "s3://", "S3://", "ftp://", "http://", "gs://"]),
    st.sampled_from(["", "localhost", "bucket", "b", "My_Bucket", "data", "~", ".."]),
    st.sampled_from(["", "/", "/lake", "/lake/", "/a b", "?x=1", "#f", "/%2e%2e", "/\x00"]),
)
_anything = st.text(max_size=40) | st.text(string.printable, max_size=12)


def _targeted(name: str) -> st.SearchStrategy[str]:
    """Values aimed at one knob's parser: near its bounds, its choices, its shapes."""
    parse = SETTINGS[name].parse
    kind = parse.__qualname__.split(".")[0]
    doc = parse.__doc__ or ""
    if kind in ("_int_between", "_float_between"):
        return _numbers
    if kind in ("_choice", "_names_of", "_bool"):
        words = [w.strip(",") for w in doc.replace("(or empty)", "").split()]
        words += ["true", "false", "yes", "no", "1", "0"]
        parts = st.lists(st.sampled_from(words).map(str).flatmap(_cased) | _anything, max_size=4)
        return st.builds(lambda sep, items: sep.join(items), _separators, parts)
    if kind == "_slos":
        keys = st.sampled_from(sorted(config.SLO_DEFAULTS)) | st.text(max_size=6)
        objects = st.dictionaries(keys, _json | st.floats(), max_size=4).map(json.dumps)
        return (
            objects
            | _json.map(json.dumps)
            | st.sampled_from(['{"call_error_rate_max": NaN}', "[" * 3000, '{"a": 1'])
        )
    if kind in ("_uri", "_optional_uri", "_path", "_sqs_url"):
        return _uris | st.sampled_from(["~/x", "~nobody-here/x", "./lake", "https://sqs.x/1"])
    return _anything


def _cased(word: str) -> st.SearchStrategy[str]:
    return st.sampled_from([word, word.upper(), f" {word.title()} ", word[:-1]])


_VALUES = {
    name: st.one_of(_targeted(name), _blanks, _numbers, _anything, _uris) for name in SETTINGS
}


def _value(name: str) -> st.SearchStrategy[str]:
    return _VALUES[name]


_envs = st.lists(st.sampled_from(sorted(SETTINGS)), min_size=1, max_size=8, unique=True).flatmap(
    lambda names: st.fixed_dictionaries({SETTINGS[n].env: _value(n) for n in names})
)

# --- what an accepted value must look like --------------------------------------------------


def _as_text(value: Any) -> str:
    """A parsed setting written back the way a person would set it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, frozenset):
        return ",".join(sorted(value))
    if isinstance(value, dict):
        return json.dumps(value)
    return repr(value) if isinstance(value, float) else str(value)


def _check_accepted(name: str, value: Any) -> None:
    if isinstance(value, float):
        assert math.isfinite(value), (name, value)
    if isinstance(value, str):
        assert value and value == value.strip() and not _CONTROL.search(value), (name, value)
    if name in ("lake_uri", "landing_uri") or (name == "drift_baseline_uri" and value):
        assert value.split("://", 1)[0] in ("file", "s3"), (name, value)
    if isinstance(value, dict):
        assert all(math.isfinite(v) and v >= 0 for v in value.values()), (name, value)
    again = load_settings({SETTINGS[name].env: _as_text(value)})
    assert getattr(again, name) == value, (name, value, _as_text(value))


def _load(env: dict[str, str], seen: Counter[str]) -> None:
    seen.update(list(env))
    try:
        loaded = load_settings(env)
    except SettingsError as exc:
        message = str(exc)
        assert "\n" not in message and len(message) < 1000
        assert any(message.startswith(f"{var}=") for var in env), message
        return
    for var in env:
        _check_accepted(ENV_NAMES[var], getattr(loaded, ENV_NAMES[var]))


def test_every_knob_takes_any_value_or_refuses_it_in_one_sentence() -> None:
    seen: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(env=_envs)
    # Values that once escaped as another exception or were accepted when they should not be.
    @example(env={"DRESSCODE_LAKE_URI": "ftp://x"})
    @example(env={"DRESSCODE_IMAGE_FORMATS": ""})
    @example(env={"DRESSCODE_MONITORING_SLOS": "[" * 3000})  # RecursionError
    @example(env={"DRESSCODE_MONITORING_SLOS": '{"call_error_rate_max": 1' + "0" * 400 + "}"})
    @example(env={"DRESSCODE_MONITORING_SLOS": '{"call_error_rate_max": NaN}'})
    @example(env={"DRESSCODE_HOME": "~nobody-here/x"})  # RuntimeError from expanduser
    @example(env={"DRESSCODE_FEAST_REPO": "a\x00b"})  # embedded null byte
    @example(env={"DRESSCODE_LLM_TIMEOUT_S": "nan"})
    @example(env={"DRESSCODE_INGEST_BATCH_SIZE": "9" * 5000})
    @example(env={"DRESSCODE_LAKE_URI": "file:///"})
    @example(env={"DRESSCODE_DRIFT_BASELINE_URI": "file:////"})  # once read back as "file:"
    @example(env={"DRESSCODE_LAKE_URI": "/a b"})
    @example(env={"DRESSCODE_ALERT_EMAIL_TO": "ops@example.com\nBcc: x"})
    @example(env={"DRESSCODE_INGEST_SQS_QUEUE_URL": "https://"})
    def run(env: dict[str, str]) -> None:
        _load(env, seen)

    started = time.monotonic()
    run()
    elapsed = time.monotonic() - started
    total = sum(seen.values())
    print(f"fuzzed {total} values of {len(seen)} variables in {elapsed:.1f} s")
    assert total >= MIN_VALUES
    assert set(seen) == {knob.env for knob in SETTINGS.values()}


def test_per_run_overrides_refuse_what_the_environment_refuses() -> None:
    base = load_settings({"DRESSCODE_HOME": str(Path("/tmp/fuzz-home"))})

    @settings(max_examples=300, deadline=None, database=None)
    @given(name=st.sampled_from(sorted(SETTINGS)), data=st.data())
    def run(name: str, data: st.DataObject) -> None:
        raw = data.draw(_value(name))
        try:
            overridden = base.with_overrides({name: raw})
        except SettingsError as exc:
            assert str(exc).startswith(f"{SETTINGS[name].env}=")
            return
        _check_accepted(name, getattr(overridden, name))

    run()
