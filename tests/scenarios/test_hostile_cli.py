"""The command line never lies and never crashes (issue: hostile inputs, "The CLI lies or crashes").

Each case runs the installed ``dresscode`` command as a user would and checks: one sentence on
stderr, no traceback, a non-zero exit, and nothing overwritten or read whole.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DRESSCODE = Path(sys.executable).parent / "dresscode"
PHOTO = Path(__file__).resolve().parents[1] / "corpus" / "progressive.jpg"


def run(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DRESSCODE_HOME": str(home)}
    return subprocess.run(
        [str(DRESSCODE), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def place(tmp_path: Path) -> Path:
    (tmp_path / "folder").mkdir()
    (tmp_path / "a.jpg").write_bytes(PHOTO.read_bytes())
    return tmp_path


def _one_sentence(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    for word in words:
        assert word in last, last


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("normalize", "missing.jpg", "out.jpg"), ("missing.jpg: no such file",)),
        (("normalize", "folder", "out.jpg"), ("folder: is a directory",)),
        (("normalize", "a.jpg", "nope/out.jpg"), ("its folder nope does not exist",)),
        (("normalize", "a.jpg", "a.jpg"), ("is the input",)),
        (("normalize", "a.jpg", "folder"), ("folder: is a directory",)),
        (("digitize", "missing.jpg"), ("missing.jpg: no such file",)),
        (("digitize", "folder"), ("folder: is a directory",)),
    ],
    ids=[
        "normalize-missing-input",
        "normalize-directory-input",
        "normalize-missing-output-folder",
        "normalize-output-is-input",
        "normalize-output-is-a-directory",
        "digitize-missing-input",
        "digitize-directory-input",
    ],
)
def test_a_bad_path_is_one_sentence_and_exit_1(
    place: Path, tmp_path: Path, args: tuple[str, ...], words: tuple[str, ...]
) -> None:
    before = (place / "a.jpg").read_bytes()
    result = run(*args, cwd=place, home=tmp_path / "home")
    _one_sentence(result, 1, "error:", *words)
    assert (place / "a.jpg").read_bytes() == before  # the original is never overwritten


def test_normalize_reads_an_endless_input_only_up_to_the_size_cap(place: Path) -> None:
    # /dev/zero never ends: the command must stop at the cap and say so, not be killed for memory.
    result = run("normalize", "/dev/zero", "out.jpg", cwd=place, home=place / "home")
    _one_sentence(result, 2, "too_large", "/dev/zero is larger than the", "MB limit")
    assert not (place / "out.jpg").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("prompts", "list", "nosuch"), ("unknown prompt 'nosuch'", "wardrobe-digitizer")),
        (("prompts", "rollback", "nosuch", "--reason", "x"), ("unknown prompt 'nosuch'",)),
        (("eval", "nosuch@2"), ("unknown prompt 'nosuch@2'",)),
        (("seed", "--photos", "-5"), ("-5 is negative",)),
        (("up", "--photos", "-1"), ("-1 is negative",)),
        (("normalize", "a.jpg", "b.jpg", "--long-edge", "0"), ("must be at least 1",)),
    ],
    ids=[
        "list-unknown",
        "rollback-unknown",
        "eval-unknown",
        "seed-negative",
        "up-negative",
        "zero-edge",
    ],
)
def test_a_bad_argument_is_refused_before_anything_runs(
    place: Path, args: tuple[str, ...], words: tuple[str, ...]
) -> None:
    result = run(*args, cwd=place, home=place / "home")
    _one_sentence(result, 2, *words)
    assert not (place / "home" / "lake").exists()  # nothing ran: no lake was made
