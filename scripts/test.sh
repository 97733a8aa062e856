#!/usr/bin/env bash
# `make test`: the whole suite, as four pytest processes at once. tests/dags (Airflow's
# dag.test(): simulators, retry delays) and tests/integration (real servers and subprocesses)
# spend much of their time waiting, so they run beside tests/unit instead of after it, and the
# suite takes about as long as its longest part. The background parts' output is shown once
# tests/unit is done (and kept in their logs). Extra arguments go to every pytest part. `make
# lint` (ruff, mypy, the import contracts) runs alongside too, so CI enforces it. Fails when
# any part fails. Each part ends with its ten slowest tests (--durations=10): where the time goes.
set -uo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python

# The browser tests drive Debian's headless Chromium: install it when missing. Under CI a
# missing browser is a failure; locally (no root, no apt) those tests skip, loudly.
if ! bash scripts/install_browser.sh; then
    [ -n "${CI:-}" ] && exit 1
    echo "warning: no Chromium; the browser tests will skip (run scripts/install_browser.sh as root)" >&2
fi
logs=.local/test
mkdir -p "$logs"

# The two longest stories run as a part of their own, so the parts end at about the same
# time: the Celery stack (tests/integration: two workers, a 500-photo ingest, a killed worker;
# ~5 min, mostly waiting on heartbeats and retries) and the promotion-governance scenario
# (tests/dags: a dozen dag.test() runs with approvals; ~4 min).
celery=tests/integration/test_celery_stack.py
governance=tests/dags/test_promotion_governance.py
declare -A args=(
    [dags]="tests/dags --ignore=$governance"
    [integration]="tests/integration --ignore=$celery"
    [celery]="$celery $governance"
)
declare -A pids
for part in dags integration celery; do
    # shellcheck disable=SC2086  # the arguments are words on purpose
    "$py" -m pytest ${args[$part]} -p no:cacheprovider --durations=10 "$@" >"$logs/$part.log" 2>&1 &
    pids[$part]=$!
done
make -s lint >"$logs/lint.log" 2>&1 &
pids[lint]=$!
trap 'kill "${pids[@]}" 2>/dev/null' EXIT

"$py" -m pytest --ignore=tests/dags --ignore=tests/integration --durations=10 "$@"
rc=$?
summary="tests/unit: exit $rc"
failed=$(( rc != 0 ))

for part in lint dags integration celery; do
    name="tests/$part"
    [ "$part" = lint ] && name="make lint"
    [ "$part" = celery ] && name="$celery $governance"
    echo
    echo "=== $name (ran alongside; log: $logs/$part.log) ==="
    tail -n +1 --pid="${pids[$part]}" -f "$logs/$part.log"
    wait "${pids[$part]}"
    rc=$?
    summary="$summary; $name: exit $rc"
    [ "$rc" -ne 0 ] && failed=1
done
trap - EXIT

echo
if [ "$failed" -ne 0 ]; then
    echo "make test FAILED ($summary)" >&2
    exit 1
fi
echo "make test passed ($summary)"
