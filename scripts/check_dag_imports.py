#!/usr/bin/env python3
"""Each DAG file imports exactly one ``dresscode.<stage>.tasks`` and no other stage module.

The import contracts in pyproject.toml cover the package; DAG files are not a package, so this
checks them: a DAG file may import the shared layers a DAG is wired with
(``dresscode.orchestration``, ``dresscode.core``) and one stage's ``tasks`` module, its door.
Run by ``make lint``; exits 1 naming every offending import, file and line.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

STAGES = ("ingest", "features", "outfits", "registry", "monitoring", "feedback", "lake", "serve")
SHARED = ("dresscode.core", "dresscode.orchestration")


def imported_modules(tree: ast.AST) -> list[tuple[str, int]]:
    """Every ``dresscode…`` module a file imports, anywhere in it, with its line."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("dresscode")]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and (node.module == "dresscode" or node.module.startswith("dresscode."))
        ):
            # `from dresscode.features import tasks` imports dresscode.features.tasks
            found += [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
    return found


def problems_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    doors: set[str] = set()
    problems: list[str] = []
    for module, line in imported_modules(tree):
        parts = module.split(".")
        if module.startswith(SHARED):
            continue
        if len(parts) >= 3 and parts[1] in STAGES and parts[2] == "tasks":
            doors.add(".".join(parts[:3]))
            continue
        problems.append(
            f"{path}:{line}: imports {module}; a DAG file imports only one dresscode.<stage>.tasks "
            f"(and {', '.join(SHARED)})"
        )
    if len(doors) != 1:
        problems.append(
            f"{path}: imports {len(doors)} stage tasks modules ({', '.join(sorted(doors)) or 'none'}); "
            "a DAG file imports exactly one dresscode.<stage>.tasks"
        )
    return problems


def main(argv: list[str]) -> int:
    folder = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "dags"
    problems = [p for path in sorted(folder.glob("*.py")) for p in problems_of(path)]
    for problem in problems:
        print(problem)
    if problems:
        print(f"DAG imports: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"DAG imports: {len(list(folder.glob('*.py')))} files, each imports one stage's tasks")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
