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

# Skip the sync when the lock file has not changed since the last one.
stamp=.venv/.synced
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$stamp" -nt uv.lock ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
echo "• installing dependencies into .venv (uv sync --frozen)"
"${UV[@]}" sync --frozen --python "$PY" --quiet
touch "$stamp"
