#!/usr/bin/env bash
# The stress and fault suite (tests/stress) at the sizes issue 9 names: once on conveyor per
# poller backend this machine offers (CONVEYOR_POLLER=epoll, poll, select on Linux) and once
# on stock asyncio, then a table of every case on every run.
#
#   scripts/stress.sh            full sizes (CONVEYOR_STRESS=full): 512 MiB bodies, 100k
#                                connections, 1,500 faulty peers, 8 x 100k thread calls
#   scripts/stress.sh --quick    the quick sizes `pytest tests` uses, on every backend
#
# Other arguments go to pytest (e.g. -k slow_reader, -x). Exits non-zero if any case fails
# (an xfail, a known stock-asyncio failure, does not count).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export CONVEYOR_STRESS=full
if [ "${1:-}" = "--quick" ]; then
    export CONVEYOR_STRESS=quick
    shift
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
runs=()
for backend in $("$PY" -c 'import conveyor.poller as p; print(" ".join(p.available()))'); do
    label="conveyor/$backend"
    echo "== $label ($CONVEYOR_STRESS sizes)"
    runs+=("$label")
    CONVEYOR_POLLER=$backend "$PY" -m pytest -q tests/stress -k "conveyor" \
        --timeout=3600 --junitxml="$out/${label//\//_}.xml" "$@" || status=1
done
echo "== asyncio ($CONVEYOR_STRESS sizes)"
runs+=("asyncio")
"$PY" -m pytest -q tests/stress -k "asyncio" --timeout=3600 \
    --junitxml="$out/asyncio.xml" "$@" || status=1

"$PY" - "$out" "${runs[@]}" <<'PYEOF'
"""Summary: one row per case, one column per run (pass / FAIL / xfail, with seconds)."""
import re
import sys
import xml.etree.ElementTree as ET

out, runs = sys.argv[1], sys.argv[2:]
table: dict[str, dict[str, str]] = {}
for run in runs:
    try:
        root = ET.parse(f"{out}/{run.replace('/', '_')}.xml").getroot()
    except (OSError, ET.ParseError):
        continue
    for case in root.iter("testcase"):
        name = case.get("name", "")
        m = re.match(r"(\w+)\[(.*)\]$", name)
        if m:
            params = [p for p in m.group(2).split("-") if p not in ("conveyor", "asyncio")]
            name = m.group(1) + (f"[{'-'.join(params)}]" if params else "")
        if case.find("failure") is not None or case.find("error") is not None:
            result = "FAIL"
        elif (skipped := case.find("skipped")) is not None:
            result = "xfail" if "xfail" in (skipped.get("type", "") + skipped.get("message", "")) else "skip"
        else:
            result = "pass"
        table.setdefault(name, {})[run] = f"{result} {float(case.get('time', 0)):.0f}s"
width = max([len(n) for n in table] + [4])
print()
print(f"{'case':<{width}}  " + "  ".join(f"{r:<16}" for r in runs))
for name in sorted(table):
    print(f"{name:<{width}}  " + "  ".join(f"{table[name].get(r, '-'):<16}" for r in runs))
PYEOF
exit $status
