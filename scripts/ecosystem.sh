#!/usr/bin/env bash
# The test suites of uvicorn, anyio and websockets (pinned releases), each run on stock
# asyncio and on conveyor, compared in one table. See scripts/ecosystem.py and docs/testing.md.
#
#   bash scripts/ecosystem.sh                 # every suite
#   bash scripts/ecosystem.sh anyio           # one suite
#   CONVEYOR_WEBSOCKETS_SRC=/path/to/websockets-17.0.1 bash scripts/ecosystem.sh websockets
#
# Uses its own venv, .venvs/ecosystem (made with $PYTHON, else python3), so the libraries'
# test dependencies never mix with the project's. Exits non-zero on a conveyor-only failure
# that is not explained in scripts/ecosystem.py, or when a suite could not be run.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
venv=.venvs/ecosystem
if [ ! -x "$venv/bin/python" ]; then
    "$PY" -m venv "$venv" || exit 1
fi
exec "$venv/bin/python" scripts/ecosystem.py "$@"
