"""dresscode seed: normal and shifted batches land where ingest finds them, with true labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dresscode.core import lake
from dresscode.core.config import get_settings
from dresscode.core.tables import landing_keys
from dresscode.ingest import photos as images
from dresscode.local import seed
from dresscode.sim.answers import DARK_BRIGHTNESS

SIZE = (400, 300)


def _script(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _normalized(key: str) -> images.CleanPhoto:
    return images.normalize(lake.read_bytes(lake.landing() / key))


def test_a_dark_shift_writes_new_dark_uploads_with_their_true_labels(
    dresscode_home: Path,
) -> None:
    script = dresscode_home / "script.jsonl"
    seed.seed(4, script_path=script, size=SIZE)
    normal_keys = set(landing_keys(get_settings()))

    result = seed.seed(4, script_path=script, size=SIZE, shift="dark")

    dark_keys = set(landing_keys(get_settings())) - normal_keys
    assert result.new == 4
    assert len(dark_keys) == 4 and all("-dark." in key for key in dark_keys)
    assert all(_normalized(key).brightness < DARK_BRIGHTNESS for key in dark_keys)
    assert all(
        _normalized(key).brightness >= DARK_BRIGHTNESS for key in normal_keys if "photo-" in key
    )
    # The same garments as the normal photos with the same seeds: the labels are the truth.
    lines = _script(script)
    by_source = {line["source"]: line["items"] for line in lines}
    for key in dark_keys:
        assert by_source[key] == by_source[key.replace("-dark", "")]


def test_shifted_batches_carry_no_bad_files(dresscode_home: Path) -> None:
    seed.seed(3, script_path=dresscode_home / "script.jsonl", size=SIZE, shift="lowres")
    keys = landing_keys(get_settings())
    assert len(keys) == 3
    assert all(max(_normalized(k).width, _normalized(k).height) == seed.LOWRES_EDGE for k in keys)


def test_a_format_shift_uploads_everything_as_png(dresscode_home: Path) -> None:
    seed.seed(4, script_path=dresscode_home / "script.jsonl", size=SIZE, shift="format")
    keys = landing_keys(get_settings())
    assert sorted(Path(k).suffix for k in keys) == [".png"] * 4
    assert {_normalized(k).source_format for k in keys} == {"PNG"}


def test_seeding_a_shift_twice_adds_nothing(dresscode_home: Path) -> None:
    script = dresscode_home / "script.jsonl"
    seed.seed(2, script_path=script, size=SIZE, shift="dark")
    lines = len(_script(script))
    seed.seed(2, script_path=script, size=SIZE, shift="dark")
    assert len(_script(script)) == lines
    assert len(landing_keys(get_settings())) == 2


def test_an_unknown_shift_is_refused_by_name(dresscode_home: Path) -> None:
    with pytest.raises(ValueError, match="Unknown shift 'blurry'; known: dark, lowres, format"):
        seed.seed(1, script_path=dresscode_home / "script.jsonl", shift="blurry")


def test_near_duplicates_are_sent_again_as_smaller_copies(dresscode_home: Path) -> None:
    result = seed.seed(3, script_path=dresscode_home / "script.jsonl", size=SIZE,
                       bad_files=False, near_duplicates=2)  # fmt: skip
    keys = landing_keys(get_settings())
    copies = [k for k in keys if "/resent-" in k]
    assert result.new == 5 and len(copies) == 2
    for copy in copies:
        original = copy.replace("resent-", "photo-").rsplit(".", 1)[0]
        assert any(k.startswith(original) for k in keys)
        assert _normalized(copy).width < 400 or _normalized(copy).height < 300


def test_photos_drawn_ahead_seed_the_same_landing_and_script(dresscode_home: Path) -> None:
    args = {"start": 9, "size": SIZE, "shift": "dark", "near_duplicates": 1}
    rendered = seed.render(2, **args)
    drawn_here = seed.seed(2, script_path=dresscode_home / "a.jsonl", bad_files=False, **args)
    written = {k: lake.read_bytes(lake.landing() / k) for k in landing_keys(get_settings())}
    for key in written:
        lake.delete(lake.landing() / key)
    ahead = seed.seed(
        2, script_path=dresscode_home / "b.jsonl", bad_files=False, rendered=rendered, **args
    )
    assert ahead == drawn_here == seed.SeedResult(new=3, skipped=0)
    assert {k: lake.read_bytes(lake.landing() / k) for k in landing_keys(get_settings())} == written
    assert _script(dresscode_home / "a.jsonl") == _script(dresscode_home / "b.jsonl")
