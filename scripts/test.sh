#!/usr/bin/env bash
# `make test`: the whole suite, as two pytest processes at once. tests/integration (real
# servers and subprocesses: mostly waiting) runs beside the rest (CPU-bound: images, Airflow's
# dag.test()), so on a 2-core machine the suite takes about as long as its longer half. The
# integration half's output is shown once the rest is done (and kept in its log). Extra
# arguments go to both halves. Fails when either half fails.
set -uo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
log=.local/test/integration.log
mkdir -p .local/test

"$py" -m pytest tests/integration -p no:cacheprovider "$@" >"$log" 2>&1 &
integration=$!
trap 'kill "$integration" 2>/dev/null' EXIT

"$py" -m pytest --ignore=tests/integration "$@"
rest=$?

echo
echo "=== tests/integration (ran alongside; log: $log) ==="
tail -n +1 --pid="$integration" -f "$log"
wait "$integration"
integration_rc=$?
trap - EXIT

if [ "$rest" -ne 0 ] || [ "$integration_rc" -ne 0 ]; then
    echo "make test FAILED: rest exit $rest, tests/integration exit $integration_rc" >&2
    exit 1
fi
