"""The committed wardrobe golden set: valid, complete, reproducible; bad labels are refused."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from dresscode.local import golden_tool, samples
from dresscode.registry import golden
from dresscode.registry.golden import GoldenError, load_wardrobe_golden


@pytest.fixture(scope="module")
def committed() -> list[golden.GoldenPhoto]:
    return load_wardrobe_golden()


def _write(tmp_path: Path, rows: list[dict], name: str = "labels.jsonl") -> Path:
    (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def _one_photo(tmp_path: Path, items: list[dict] | None = None) -> dict:
    """A tiny labelled photo in tmp_path; returns its label row."""
    jpeg = (golden.GOLDEN_DIR / "photos" / "synth-0001.jpg").read_bytes()
    (tmp_path / "photos").mkdir(exist_ok=True)
    (tmp_path / "photos" / "a.jpg").write_bytes(jpeg)
    _, labels = samples.wardrobe_photo(1, size=(64, 48), n_items=2)
    return {
        "id": "a",
        "file": "photos/a.jpg",
        "image_sha256": hashlib.sha256(jpeg).hexdigest(),
        "items": items if items is not None else [i.to_json() for i in labels],
        "tags": [],
    }


def test_committed_set_is_large_valid_and_hashes_match(committed) -> None:
    # load_wardrobe_golden validated every item against the schema and every photo's sha256.
    assert len(committed) >= 100
    assert len({p.id for p in committed}) == len(committed)


def test_committed_set_covers_every_category_and_the_hard_cases(committed) -> None:
    categories = {item["category"] for p in committed for item in p.items}
    assert categories == set(samples.CATEGORIES)
    tags = {t for p in committed for t in p.tags}
    assert {"dark", "cluttered", "multi", "accessory", "bag", "footwear", "same_category"} <= tags
    assert sum(len(p.items) >= 2 for p in committed) > len(committed) / 2


def test_committed_photos_are_small_jpegs_sent_as_stored(committed) -> None:
    total = 0
    for p in committed[:10]:
        with Image.open(p.path) as im:
            assert im.format == "JPEG" and max(im.size) <= 768
        total += p.path.stat().st_size
    assert total / 10 < 60_000  # the whole set stays a few MB


def test_regenerating_gives_identical_files(tmp_path: Path, committed) -> None:
    fresh = golden_tool.generate(tmp_path, count=6)
    assert [p.id for p in fresh] == [p.id for p in committed[:6]]
    for new, old in zip(fresh, committed[:6], strict=True):
        assert new.path.read_bytes() == old.path.read_bytes()
        assert (new.image_sha256, new.items, new.tags) == (old.image_sha256, old.items, old.tags)
    committed_lines = (golden.GOLDEN_DIR / "labels.jsonl").read_text().splitlines()
    assert (tmp_path / "labels.jsonl").read_text().splitlines() == committed_lines[:6]


def test_script_lines_answer_each_photo_with_its_labels(committed) -> None:
    lines = golden.script_lines(committed)
    assert len(lines) == len(committed)
    assert lines[0] == {"image_sha256": committed[0].image_sha256, "items": committed[0].items}


def test_unknown_category_is_refused_naming_file_and_line(tmp_path: Path) -> None:
    good = _one_photo(tmp_path)
    bad = good | {"id": "b", "items": [good["items"][0] | {"category": "spacesuit"}]}
    _write(tmp_path, [good, bad])
    with pytest.raises(
        GoldenError, match=r"labels\.jsonl:2: b: label items/0/category: 'spacesuit'"
    ):
        load_wardrobe_golden(tmp_path)


def test_wrong_hash_missing_file_and_duplicate_id_are_refused(tmp_path: Path) -> None:
    good = _one_photo(tmp_path)
    _write(tmp_path, [good | {"image_sha256": "0" * 64}])
    with pytest.raises(GoldenError, match=r"labels\.jsonl:1: a: photos/a\.jpg hashes to"):
        load_wardrobe_golden(tmp_path)
    _write(tmp_path, [good | {"file": "photos/missing.jpg"}])
    with pytest.raises(GoldenError, match="does not exist"):
        load_wardrobe_golden(tmp_path)
    _write(tmp_path, [good, good])
    with pytest.raises(GoldenError, match=r"labels\.jsonl:2: duplicate id 'a'"):
        load_wardrobe_golden(tmp_path)


def test_extra_label_files_are_loaded_after_the_synthetic_ones(tmp_path: Path) -> None:
    good = _one_photo(tmp_path)
    _write(tmp_path, [good])
    _write(tmp_path, [good | {"id": "real-1"}], name="labels-real.jsonl")
    assert [p.id for p in load_wardrobe_golden(tmp_path)] == ["a", "real-1"]


def test_add_normalizes_a_real_photo_and_appends_its_label(tmp_path: Path) -> None:
    img, labels = samples.wardrobe_photo(5, size=(1200, 900), n_items=2)
    source = tmp_path / "IMG_0001.jpg"
    source.write_bytes(samples.encode(img, "JPEG"))
    out = tmp_path / "golden"
    photo = golden.add_photo(
        source, [i.to_json() for i in labels], out_dir=out, photo_id="real-1", tags=["real"]
    )
    loaded = load_wardrobe_golden(out)
    assert [p.id for p in loaded] == ["real-1"] and "real" in loaded[0].tags
    with Image.open(photo.path) as im:
        assert max(im.size) <= 768 and not im.getexif()  # normalized: downscaled, no GPS
