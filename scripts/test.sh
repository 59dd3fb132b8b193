#!/usr/bin/env bash
# The whole test suite: creates/updates .venv (and .venv-ops, the checkers of the
# Kubernetes, Prometheus and Docker files), lints, runs pytest (extra
# arguments go to pytest). pytest's "no tests collected" (exit 5) is a failure. The
# 25 slowest tests are listed at the end: the suite must stay under 20 minutes in CI.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh || exit 1
source scripts/ops-tools.sh || exit 1
echo "== ruff"
ruff check . || exit 1
echo "== import contracts (import-linter)"
lint-imports --no-cache || exit 1
echo "== pytest"
python -m pytest -p no:cacheprovider --durations=25 "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
