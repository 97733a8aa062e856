"""Blueprints in git: loaded, validated, rendered; bad ones refused with the file named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dresscode.llm import blueprints
from dresscode.llm.blueprints import BlueprintError

GOOD = yaml.safe_load((blueprints.PROMPTS_DIR / "wardrobe-digitizer" / "v1.yaml").read_text())


def _write(tmp_path: Path, doc: object, name: str = "wardrobe-digitizer", version: int = 1) -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"v{version}.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def test_every_blueprint_in_git_loads() -> None:
    names = blueprints.prompt_names()
    assert names == ["outfit-stylist", "wardrobe-digitizer"]
    for name in names:
        assert blueprints.versions_in_git(name), name
    examples = blueprints.PROMPTS_DIR / "_examples"
    assert blueprints.versions_in_git("wardrobe-digitizer", examples)  # the failing example


def test_newest_version_wins_and_versions_resolve(tmp_path: Path) -> None:
    _write(tmp_path, GOOD)
    _write(tmp_path, GOOD | {"version": 2, "temperature": 0.2}, version=2)
    assert blueprints.resolve("wardrobe-digitizer", tmp_path).version == 2
    assert blueprints.resolve("wardrobe-digitizer@1", tmp_path).temperature == 0.0
    with pytest.raises(BlueprintError, match="no version 7"):
        blueprints.resolve("wardrobe-digitizer@7", tmp_path)


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: [unclosed\n")
    with pytest.raises(BlueprintError, match=r"v1\.yaml: invalid YAML"):
        blueprints.load_file(path)


def test_schema_that_is_not_json_schema_is_refused(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        GOOD | {"output_schema": {"type": "object", "properties": {"items": {"type": "lst"}}}},
    )
    with pytest.raises(BlueprintError, match="not valid JSON Schema"):
        blueprints.load_file(path)


def test_file_name_must_match_the_version(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD | {"version": 3}, version=1)
    with pytest.raises(
        BlueprintError, match=r"must be include/prompts/wardrobe-digitizer/v3\.yaml"
    ):
        blueprints.load_file(path)


def test_unknown_placeholder_is_an_error(tmp_path: Path) -> None:
    blueprint = blueprints.load_file(
        _write(tmp_path, GOOD | {"user": "List items in {{colour_list}}"})
    )
    with pytest.raises(BlueprintError, match=r"\{\{colour_list\}\} has no value"):
        blueprint.render(blueprint.user, {"categories": "top"})


def test_content_hash_ignores_where_it_came_from(tmp_path: Path) -> None:
    a = blueprints.load_file(_write(tmp_path / "a", GOOD))
    b = blueprints.load_file(_write(tmp_path / "b", GOOD))
    c = blueprints.load_file(_write(tmp_path / "c", GOOD | {"temperature": 0.7}))
    assert a.content_hash() == b.content_hash() != c.content_hash()
