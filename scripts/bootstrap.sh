#!/usr/bin/env bash
# Create or refresh .venv from uv.lock. Needs only python3.11 and pip; installs uv when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "Dresscode needs Python 3.11 (found $("$PY" --version 2>&1)). Set PYTHON=/path/to/python3.11." >&2
  exit 1
fi

if command -v uv >/dev/null 2>&1; then
  UV=(uv)
elif "$PY" -m uv --version >/dev/null 2>&1; then
  UV=("$PY" -m uv)
else
  echo "• installing uv (pip install --user uv)"
  "$PY" -m pip install --quiet --user uv
  UV=("$PY" -m uv)
fi

# Skip the sync when the lock file has not changed since the last one. (The stamp's name
# changed when the sync started compiling bytecode, so older venvs sync once more.)
stamp=.venv/.synced-bytecode
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$stamp" -nt uv.lock ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
# --compile-bytecode: every Airflow task, server and test process imports Airflow, pandas,
# MLflow... from these .pyc files instead of compiling the sources again. Python only writes
# .pyc itself on first import, and never where PYTHONDONTWRITEBYTECODE is set (as on CI
# machines): there `import mlflow, pandas, airflow.sdk` took 10 s in every process, 4 s with
# them (about 40 s once, here).
echo "• installing dependencies into .venv (uv sync --frozen --compile-bytecode)"
"${UV[@]}" sync --frozen --compile-bytecode --python "$PY" --quiet
touch "$stamp"
