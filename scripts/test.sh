#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine, then run all of it.
#
# - Debian packages: wrk (HTTP load), chromium (renders the trace timeline),
#   redis-server and postgresql (real servers for the library integration tests).
# - Python: the package with its test, bench and integration extras.
# - The whole suite on the default poller, then the loop core and the CPython
#   conformance suite once more per other poller backend, so fallbacks stay tested.
# Exits non-zero if any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    need=()
    for pkg in wrk chromium redis-server postgresql; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    if [ ${#need[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
fi

"$PY" -m pip install -q --disable-pip-version-check -e '.[test,bench,integration]'

mkdir -p artifacts
status=0
echo "== full suite, default poller ($("$PY" -c 'import conveyor.poller as p; print(p.available()[0])'))"
"$PY" -m pytest tests || status=1

for backend in $("$PY" -c 'import conveyor.poller as p; print(" ".join(p.available()[1:]))'); do
    echo "== loop core and conformance, CONVEYOR_POLLER=$backend"
    CONVEYOR_POLLER=$backend "$PY" -m pytest -q tests/unit/test_loop_core.py tests/conformance || status=1
done
exit $status
