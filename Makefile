# The two commands: `make up` (the whole pipeline, locally) and `make test` (the whole suite).
.PHONY: up down status test test-integration lint format bench venv

# The project's own .pyc too (a second or so per process that imports the package; Python
# writes none itself where PYTHONDONTWRITEBYTECODE is set): only changed files are compiled.
venv:
	@bash scripts/bootstrap.sh
	@.venv/bin/python -m compileall -q -j 0 src dags >/dev/null

up: venv
	@.venv/bin/dresscode up

down:
	@if [ -x .venv/bin/dresscode ]; then .venv/bin/dresscode down; else echo "Nothing to stop (no .venv)."; fi

status:
	@if [ -x .venv/bin/dresscode ]; then .venv/bin/dresscode status; else echo "Not installed yet: run make up."; fi

test: venv
	@bash scripts/test.sh

test-integration: venv
	@.venv/bin/python -m pytest tests/integration

# ruff (with Airflow's AIR rules), mypy over src/, the import contracts of the package
# (pyproject.toml [tool.importlinter]) and of the DAG files (scripts/check_dag_imports.py).
lint: venv
	@.venv/bin/ruff check . && .venv/bin/ruff format --check . \
		&& .venv/bin/mypy \
		&& .venv/bin/lint-imports \
		&& .venv/bin/python scripts/check_dag_imports.py

format: venv
	@.venv/bin/ruff format . && .venv/bin/ruff check --fix .
