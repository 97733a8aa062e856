"""Fuzzing the command line's argument paths: any argv gives an exit code, never a traceback.

Hypothesis generates argument vectors (text with NULs, lone surrogates as the shell hands over
undecodable bytes, huge and negative numbers, paths that are folders, missing, or the input
itself). Property: `dresscode.local.cli.main` returns 0, 1 or 2 or argparse exits 2 with a
usage line; no exception escapes. Failing seeds found here are kept below as ``@example``s.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dresscode.local import cli

# Everything argv can hold on Linux: any text without NUL... and NUL too (argv cannot carry it,
# but Path arguments from other callers can; the CLI must still say so in one sentence).
ARG = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["-5", "0", "1", "10**9", "99999999999999999999", "nan", "", " ", "--", "-"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=()), max_size=10).map(
        lambda s: s + "\udcff"
    ),
)


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse: usage error
            code = int(exc.code or 0)
    return code, err.getvalue()


@pytest.fixture
def files(tmp_path: Path, dresscode_home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    # Generated relative names are written relative to the working directory: keep it here.
    monkeypatch.chdir(tmp_path)
    photo = tmp_path / "in.jpg"
    photo.write_bytes((Path(__file__).parents[1] / "corpus" / "progressive.jpg").read_bytes())
    (tmp_path / "folder").mkdir()
    return {
        "photo": str(photo),
        "folder": str(tmp_path / "folder"),
        "missing": str(tmp_path / "missing.jpg"),
        "no_dir": str(tmp_path / "nope" / "out.jpg"),
        "out": str(tmp_path / "out.jpg"),
    }


PATHS = st.sampled_from(["photo", "folder", "missing", "no_dir", "out"])


@settings(
    max_examples=800,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    source=st.one_of(PATHS.map(lambda k: ("file", k)), ARG.map(lambda a: ("text", a))),
    target=st.one_of(PATHS.map(lambda k: ("file", k)), ARG.map(lambda a: ("text", a))),
    long_edge=st.one_of(st.none(), ARG),
)
@example(source=("text", "a\x00b"), target=("file", "out"), long_edge=None)
@example(source=("file", "photo"), target=("file", "photo"), long_edge=None)
@example(source=("file", "folder"), target=("file", "out"), long_edge="-5")
def test_normalize_answers_any_arguments_with_an_exit_code(
    files: dict[str, str],
    source: tuple[str, str],
    target: tuple[str, str],
    long_edge: str | None,
) -> None:
    src = files[source[1]] if source[0] == "file" else source[1]
    dst = files[target[1]] if target[0] == "file" else target[1]
    argv = ["normalize", src, dst] + ([f"--long-edge={long_edge}"] if long_edge is not None else [])
    code, err = _run(argv)
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err
    if code != 0:
        assert err.strip(), argv  # a failure always says why
    assert Path(files["photo"]).read_bytes()[:2] == b"\xff\xd8"  # the input is never overwritten


@settings(max_examples=800, deadline=None, database=None)
@given(
    command=st.sampled_from(
        [
            ["seed", "--photos"],
            ["seed", "--start"],
            ["up", "--photos"],
            ["prompts", "list"],
            ["prompts", "rollback"],
            ["eval"],
            ["digitize", "x.jpg", "--prompt"],
        ]
    ),
    value=ARG,
)
def test_numbers_and_prompt_names_are_checked_before_anything_runs(
    command: list[str], value: str
) -> None:  # parse_args only: nothing runs, nothing is written
    # Only invalid values reach the command: a valid count would start a seed or the stack, so
    # the property is checked on parsing, which is where every value is validated.
    parser = cli.build_parser()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            args = parser.parse_args([*command, value])
        except SystemExit as exc:
            assert exc.code == 2
            assert "error:" in err.getvalue()
            return
    # Accepted: then it is a count >= 0 or a catalogue prompt.
    for name in ("photos", "start"):
        if hasattr(args, name) and command[-1] == f"--{name}":
            assert isinstance(getattr(args, name), int) and getattr(args, name) >= 0
    if command[:1] in (["prompts"], ["eval"]) or command[-1] == "--prompt":
        chosen = getattr(args, "name", None) or getattr(args, "prompt", None)
        assert str(chosen).split("@", 1)[0] in ("wardrobe-digitizer", "outfit-stylist")
