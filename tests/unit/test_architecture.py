"""The architecture's rules are checked by tools, and the tools catch a broken import.

`make lint` runs the import contracts (pyproject.toml ``[tool.importlinter]``) over the package
and ``scripts/check_dag_imports.py`` over ``dags/``. These tests write a forbidden import into a
temporary copy of the tree and check that each checker fails and names it.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    shutil.copytree(
        REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    shutil.copytree(REPO / "dags", root / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def _append(path: Path, code: str) -> str:
    before = path.read_text()
    path.write_text(before + "\n\n" + code + "\n")
    return before


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run(
        [str(BIN / "lint-imports"), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.parametrize(
    ("module", "code", "named"),
    [
        (
            "features/style.py",
            "def _sneaky():\n    from dresscode.local import seed\n\n    return seed",
            "dresscode.features.style -> dresscode.local.seed",
        ),
        (
            "monitoring/drift.py",
            "def _sneaky():\n    from dresscode.ingest import tasks\n\n    return tasks",
            "dresscode.monitoring.drift -> dresscode.ingest.tasks",
        ),
        (
            "core/lake.py",
            "def _sneaky():\n    from dresscode.registry import golden\n\n    return golden",
            "dresscode.core.lake -> dresscode.registry.golden",
        ),
    ],
    ids=["a-stage-imports-local", "a-stage-imports-another-stages-tasks", "core-imports-a-stage"],
)
def test_the_import_contracts_catch_a_forbidden_import(
    tree_copy: Path, module: str, code: str, named: str
) -> None:
    path = tree_copy / "src/dresscode" / module
    before = _append(path, code)
    try:
        result = _lint_imports(tree_copy)
    finally:
        path.write_text(before)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert named in out, out
    assert "BROKEN" in out


def _check_dags(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts/check_dag_imports.py"), str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_dag_file_importing_a_second_stages_tasks_fails_naming_the_import(
    tree_copy: Path,
) -> None:
    path = tree_copy / "dags/wardrobe_ingest.py"
    before = _append(path, "from dresscode.features import tasks as other_stage  # noqa")
    try:
        result = _check_dags(tree_copy / "dags")
    finally:
        path.write_text(before)
    assert result.returncode == 1
    assert "wardrobe_ingest.py" in result.stdout
    assert (
        "2 stage tasks modules (dresscode.features.tasks, dresscode.ingest.tasks)" in result.stdout
    )


def test_a_dag_file_importing_a_stage_module_that_is_not_its_door_fails(tree_copy: Path) -> None:
    path = tree_copy / "dags/outfit_pregen.py"
    before = _append(path, "from dresscode.outfits.stylist import suggest_many  # noqa")
    try:
        result = _check_dags(tree_copy / "dags")
    finally:
        path.write_text(before)
    assert result.returncode == 1
    assert "outfit_pregen.py" in result.stdout
    assert "imports dresscode.outfits.stylist.suggest_many" in result.stdout


MAX_MODULE_LINES = 600


def test_no_module_is_over_600_lines() -> None:
    long = {
        str(path.relative_to(REPO)): n
        for path in (REPO / "src/dresscode").rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}, f"split these by concern (limit {MAX_MODULE_LINES} lines): {long}"


def _untyped_dicts(annotation: ast.expr | None) -> list[str]:
    """A bare ``dict``/``Mapping`` or one whose values are ``Any``, anywhere in an annotation.

    ``dict[str, int]`` says what it holds; ``dict[str, Any]`` and ``dict`` do not.
    """
    if annotation is None:
        return []
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        annotation = ast.parse(annotation.value, mode="eval").body
    names = {"dict", "Dict", "Mapping", "MutableMapping"}
    subscripted = {
        id(node.value) for node in ast.walk(annotation) if isinstance(node, ast.Subscript)
    }
    found = []
    for node in ast.walk(annotation):
        bare = isinstance(node, ast.Name) and node.id in names and id(node) not in subscripted
        of_any = (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id in names
            and isinstance(node.slice, ast.Tuple)
            and ast.unparse(node.slice.elts[-1]) in {"Any", "object"}
        )
        if bare or of_any:
            found.append(ast.unparse(annotation))
    return found


@pytest.mark.parametrize(
    ("annotation", "untyped"),
    [
        ("dict[str, Any]", True),
        ("dict", True),
        ("list[dict]", True),
        ("Mapping[str, Any] | None", True),
        ("'dict[str, object]'", True),
        ("dict[str, int]", False),
        ("list[BatchResult]", False),
        ("Window", False),
    ],
)
def test_the_signature_check_tells_named_values_from_untyped_dicts(
    annotation: str, untyped: bool
) -> None:
    assert bool(_untyped_dicts(ast.parse(annotation, mode="eval").body)) is untyped


def test_no_tasks_module_takes_or_returns_an_untyped_dict() -> None:
    offenders = []
    for path in sorted((REPO / "src/dresscode").glob("*/tasks.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            args = node.args
            annotations = [a.annotation for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
            for annotation in [*annotations, node.returns]:
                offenders += [
                    f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {bad}"
                    for bad in _untyped_dicts(annotation)
                ]
    assert offenders == [], "name the value (a TypedDict or a dataclass):\n" + "\n".join(offenders)
