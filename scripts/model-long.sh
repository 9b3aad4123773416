#!/usr/bin/env bash
# The transport model test (tests/model) with fresh random examples for about MINUTES
# minutes (default 20), split evenly over every transport kind and loop (conveyor on each
# poller backend, and stock asyncio). CI runs the same model derandomized and small; this
# is the long exploration issue 9 asks for. Prints how many examples ran, per case and in
# all; hypothesis prints a minimal failing example (and a @reproduce_failure blob) if any
# invariant breaks. Extra arguments go to pytest (e.g. -k tcp). Exits non-zero on failure.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
MINUTES=${1:-20}
shift || true
report=$(mktemp)
trap 'rm -f "$report"' EXIT
target=tests/model/test_transport_model.py::test_model
cases=$("$PY" -m pytest -q --collect-only "$target" "$@" | grep -c '::test_model\[')
if [ "$cases" -eq 0 ]; then echo "no model cases selected" >&2; exit 2; fi
per_case=$(awk -v m="$MINUTES" -v c="$cases" 'BEGIN {printf "%.1f", m * 60 / c}')
echo "== $cases cases, ${per_case} s each"
start=$(date +%s)
CONVEYOR_MODEL_PROFILE=long CONVEYOR_MODEL_CASE_SECONDS=$per_case CONVEYOR_MODEL_REPORT=$report \
    "$PY" -m pytest -q -o timeout=0 "$target" "$@"
status=$?
echo "== model run: $(( $(date +%s) - start )) s"
sort "$report" | sed 's/^/   /'
awk '{n += $3} END {print "== examples run in all: " n+0}' "$report"
exit $status
