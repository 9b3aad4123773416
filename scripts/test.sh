#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine, then run all of it on every
# CPython >= 3.11 the machine has.
#
# - Debian packages: wrk (HTTP load), chromium (renders the trace timeline),
#   redis-server and postgresql (real servers for the library integration tests), gcc and
#   libssl-dev (the bench's C load generator, with TLS, is built and tested).
# - Python: the package with its test, bench and integration extras, into the default
#   interpreter ($PYTHON, else python3) and into one venv per other version (.venvs/X.Y.Z).
# - The version matrix (scripts/pythons.py picks the interpreters): the whole suite once per
#   version, two versions side by side on a machine with two cores (CONVEYOR_JOBS=1 runs
#   them one after another); a line when each starts and finishes, then every log in full. CONVEYOR_PYTHONS="3.12
#   /usr/bin/python3.13" names the interpreters instead of finding them; CONVEYOR_TESTS
#   ("tests/unit -x") narrows what pytest runs per version (default: tests).
# - On the default interpreter only, the loop core and the CPython conformance suite once
#   more per other poller backend, so fallbacks stay tested (the conformance files come from
#   each interpreter's own test.test_asyncio, so the matrix runs 3.12's and 3.13's too).
# - At the end, one result line per version, the versions it could not test, and a total.
# Exits non-zero if any test fails on any version.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS='.[test,bench,integration]'
read -r -a TESTS <<<"${CONVEYOR_TESTS:-tests}"

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    need=()
    for pkg in wrk chromium redis-server postgresql gcc libssl-dev; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    if [ ${#need[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
            || { echo "apt-get install ${need[*]} failed"; exit 1; }
    fi
fi

# pip's notes about the machine's extra index locations are noise here; errors still show.
quiet_pip() { "$@" 2>&1 | grep -v "^WARNING: Location '" ; return "${PIPESTATUS[0]}"; }

quiet_pip "$PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore -e "$EXTRAS" \
    || { echo "pip install into $PY failed"; exit 1; }
default_version=$("$PY" -c 'import sys; print(*sys.version_info[:3], sep=".")')

# An interpreter for version $1 at $2, with conveyor and its extras installed: the default
# interpreter as it is, any other in its own venv (reinstalled when pyproject.toml changes).
prepare() {
    local version=$1 python=$2 venv=.venvs/$1
    if [ "$version" = "$default_version" ]; then
        echo "$PY"
        return 0
    fi
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -m venv "$venv" >&2 || return 1
    fi
    local stamp="$venv/.conveyor-installed" want
    want=$(cat pyproject.toml "$venv/bin/python" 2>/dev/null | cksum)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        quiet_pip "$venv/bin/python" -m pip install -q --disable-pip-version-check --root-user-action=ignore -e "$EXTRAS" >&2 \
            || return 1
        echo "$want" > "$stamp"
    fi
    echo "$venv/bin/python"
}

# The closing "N passed, M skipped in Xs" of a pytest log, without the ='s.
summary_of() { grep -E '^(=+ )?[0-9]+ [a-z]+.* in [0-9.]+s' "$1" | tail -n 1 | sed -E 's/^=+ //; s/ =+$//'; }

# Adds the passed/failed/skipped/error counts of a pytest log to the totals.
total_passed=0 total_failed=0 total_skipped=0
count() {
    local line n
    line=$(summary_of "$1")
    n=$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+'); total_passed=$((total_passed + ${n:-0}))
    n=$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+'); total_failed=$((total_failed + ${n:-0}))
    n=$(grep -oE '[0-9]+ errors?' <<<"$line" | grep -oE '[0-9]+'); total_failed=$((total_failed + ${n:-0}))
    n=$(grep -oE '[0-9]+ skipped' <<<"$line" | grep -oE '[0-9]+'); total_skipped=$((total_skipped + ${n:-0}))
}

mkdir -p artifacts
status=0
results=()
untested=()
runs=()
while read -r kind version rest; do
    case $kind in
        run) runs+=("$version $rest") ;;
        missing)
            if [ "$rest" = not-requested ]; then
                untested+=("$version (not named in CONVEYOR_PYTHONS)")
            else
                untested+=("$version (no interpreter found on this machine)")
            fi ;;
        unusable) echo "CONVEYOR_PYTHONS: $version is not a Python >= 3.11 interpreter"; status=1 ;;
    esac
done < <("$PY" scripts/pythons.py)

# One version's run: the whole suite, and on the default interpreter the poller reruns.
# Writes its pytest logs and, last, artifacts/result-<version> ("passed|FAILED <line>").
run_version() {
    local version=$1 pybin=$2 t0=$SECONDS verdict=passed extra="" backend plog
    local log=artifacts/test-python-$version.log
    local poller
    poller=$("$pybin" -c 'import conveyor.poller as p; print(p.available()[0])')
    echo "== Python $version ($pybin): full suite, default poller ($poller), started"
    "$pybin" -m pytest "${TESTS[@]}" >"$log" 2>&1 || verdict=FAILED
    if [ "$version" = "$default_version" ]; then
        for backend in $("$pybin" -c 'import conveyor.poller as p; print(" ".join(p.available()[1:]))'); do
            plog=artifacts/test-python-$version-$backend.log
            if CONVEYOR_POLLER=$backend "$pybin" -m pytest -q tests/unit/test_loop_core.py tests/conformance >"$plog" 2>&1; then
                extra+="; $backend: $(summary_of "$plog" | sed -E 's/ in [0-9.]+s.*//')"
            else
                extra+="; $backend: FAILED ($(summary_of "$plog" | sed -E 's/ in [0-9.]+s.*//'))"
                verdict=FAILED
            fi
        done
    fi
    local elapsed=$((SECONDS - t0))
    local line="Python $version: $verdict in $((elapsed / 60))m$((elapsed % 60))s ($(summary_of "$log" | sed -E 's/ in [0-9.]+s.*//')$extra)"
    echo "== finished $line"
    echo "$verdict $line" > "artifacts/result-$version"
}

# The versions run side by side, CONVEYOR_JOBS at a time (default: one per core, at most
# two): each pytest is one process on one core, and the suite mostly waits on sockets and
# children, so two lanes halve the wall time. The default interpreter starts first (it also
# reruns the poller backends, the longest lane). Logs are printed whole once all are done.
cores=$(nproc 2>/dev/null || echo 1)
jobs=${CONVEYOR_JOBS:-$(( cores < 2 ? 1 : 2 ))}
started=$SECONDS
order=()
for entry in "${runs[@]}"; do
    version=${entry%% *}
    python=${entry#* }
    rm -f "artifacts/result-$version" artifacts/test-python-"$version"*.log
    if ! pybin=$(prepare "$version" "$python"); then
        echo "== Python $version: could not create its venv or install conveyor's extras"
        results+=("Python $version: FAILED (venv or install failed)")
        status=1
        continue
    fi
    order+=("$version")
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    run_version "$version" "$pybin" &
done
wait

for version in "${order[@]}"; do
    for log in artifacts/test-python-"$version".log artifacts/test-python-"$version"-*.log; do
        [ -f "$log" ] || continue
        echo
        echo "== log $log"
        cat "$log"
        count "$log"
    done
done
for version in "${order[@]}"; do
    if [ -f "artifacts/result-$version" ]; then
        read -r verdict line < "artifacts/result-$version"
        [ "$verdict" = passed ] || status=1
    else
        line="Python $version: FAILED (the run did not finish)"
        status=1
    fi
    results+=("$line")
done

elapsed=$((SECONDS - started))
echo
echo "== version matrix ($((elapsed / 60))m$((elapsed % 60))s)"
for line in "${results[@]}"; do echo "   $line"; done
if [ ${#untested[@]} -gt 0 ]; then
    echo "   not tested: ${untested[*]}"
fi
if [ ${#runs[@]} -eq 0 ]; then
    echo "   no interpreter to test"
    status=1
fi
echo "total: $total_passed passed, $total_failed failed, $total_skipped skipped"
exit $status
