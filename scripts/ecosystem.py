"""The test suites of uvicorn, anyio and websockets, on stock asyncio and on conveyor.

    bash scripts/ecosystem.sh                 # every suite
    bash scripts/ecosystem.sh uvicorn         # one suite
    CONVEYOR_WEBSOCKETS_SRC=~/src/websockets bash scripts/ecosystem.sh websockets

What it does (run with the interpreter of the dedicated venv, .venvs/ecosystem, which
scripts/ecosystem.sh makes):

1. Installs conveyor (editable) and the pinned release of each library with the test
   dependencies its own pyproject lists (its dependency group, less linters, type checkers,
   coverage and doc tools).
2. Gets each suite at test time: from the library's PyPI sdist where it ships its tests
   (uvicorn, anyio), else from a source snapshot named by an environment variable
   (websockets: CONVEYOR_WEBSOCKETS_SRC, a checkout of the pinned tag, e.g.
   `git archive 17.0.1 | tar x -C DIR` in a websockets clone); a suite with neither
   is reported as not run. Nothing of a library's tests is ever copied into this repository:
   the work tree is under .ecosystem/ (ignored by git).
3. Runs each suite twice with the same arguments: on stock asyncio, and with
   CONVEYOR_ECOSYSTEM=conveyor, which makes conveyor the loop of every test and of every
   process the suite starts (conveyor/testing/ecosystem.py). Both runs record per test its
   outcome and which loops it built or ran.
4. Prints the table (suite, version, passed/failed/skipped on each loop, tests that did not
   run on conveyor) and the tests that fail on conveyor only. Exits non-zero if any suite
   has a conveyor-only failure not listed in KNOWN below (with its reason), or if a run
   could not be made.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".ecosystem"
REPORTS = REPO / "artifacts" / "ecosystem"

#: Test dependencies that are tooling, not needed to run the tests.
TOOLING = re.compile(r"^(ruff|mypy|twine|types-|coverage|pytest-codspeed|pytest-xdist|"
                     r"sphinx|zensical|mkdocs|towncrier|pre-commit)", re.I)


#: Why a test fails on stock asyncio too, on this machine (matched against the test id).
BOTH_REASONS = (
    (re.compile(r"ipv6|dualstack|happy_eyeballs", re.I), "no IPv6 on this machine"),
    (re.compile(r"abstract", re.I), "Linux abstract-namespace Unix sockets (check the log)"),
)


@dataclass
class Suite:
    name: str
    version: str
    #: the dependency groups of the library's pyproject.toml that hold its test requirements
    groups: tuple[str, ...]
    #: extra packages the tests need beyond the groups (pinned library extras)
    extra: tuple[str, ...] = ()
    #: pytest arguments, run from the suite's source directory
    args: tuple[str, ...] = ()
    #: where the tests come from: "sdist", or the env var naming a source snapshot
    source: str = "sdist"
    timeout: int = 1500
    #: conveyor-only failures understood and explained: nodeid (or prefix) -> reason
    known: dict[str, str] = field(default_factory=dict)


SUITES = {
    "uvicorn": Suite(
        "uvicorn", "0.54.0", groups=("dev",), extra=("uvicorn[standard]==0.54.0",),
        # uvicorn's addopts run 8 xdist workers; on 2 cores one process is faster and keeps
        # the loop bookkeeping in one place. The rest of its options are kept.
        # Its benchmarks need pytest-codspeed (tooling) and measure, not test.
        args=("--ignore=tests/benchmarks", "-o", "addopts=", "-rfE", "--strict-config",
              "--strict-markers",
              "-p", "timeout", "--timeout", "120"),
        known={test: ("asserts that uvicorn picks stock asyncio's loop class (or uvloop) by "
                      "default: the conveyor run replaces exactly that choice, by design")
               for test in ("tests/test_auto_detection.py::test_loop_auto",
                            "tests/test_compat.py::test_asyncio_run__default_loop_factory",
                            "tests/test_config.py::test_get_loop_factory[asyncio-")},
    ),
    "anyio": Suite(
        "anyio", "4.16.0", groups=("test",),
        # The asyncio backends only (plain and eager task factory): the uvloop and trio
        # parametrizations test other loops by design, and network tests need the Internet.
        args=("-k", "not uvloop and not trio", "-m", "not network", "--timeout", "120"),
        known={
            "tests/test_to_thread.py::TestBlockingPortalProvider::test_single_thread": (
                "order-dependent: anyio's find_root_task() recognises the task that "
                "run_until_complete() runs only by asyncio's private "
                "base_events._run_until_complete_cb (or a callback from uvloop.loop); conveyor's "
                "is neither, so after test_asyncio_run_sync_multiple an idle AnyIO worker "
                "thread is not stopped with the root task and exits on its 10 s idle timeout "
                "during this test, which counts threads"),
            "tests/test_pytest_plugin.py::test_dynamic_async_fixture_access_does_not_hang": (
                "timing: a whole pytest subprocess must finish in 3 s; on conveyor its start-up "
                "also imports conveyor (~0.3 s); passes when run alone (2.5 s)"),
        },
    ),
    "websockets": Suite(
        "websockets", "17.0.1", groups=(), source="CONVEYOR_WEBSOCKETS_SRC",
        # Its tests/requirements.txt, less mitmproxy (a whole proxy application; the proxy
        # tests skip themselves without it) and trio (the trio implementation's tests are
        # not run). Only the asyncio implementations' tests: the rest (sans-I/O protocol,
        # threads, trio) run no event loop.
        extra=("python-socks[asyncio]", "werkzeug"),
        args=("tests/asyncio", "tests/legacy", "-p", "timeout", "--timeout", "120"),
    ),
}


def log(*args) -> None:
    print(*args, flush=True)


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args]
    result = subprocess.run(cmd, capture_output=True, text=True)
    noise = re.compile(r"^WARNING: Location '")
    for line in (result.stdout + result.stderr).splitlines():
        if not noise.match(line):
            log("   pip:", line)
    if result.returncode != 0:
        raise SystemExit(f"pip install {' '.join(args)} failed")


def fetch_sdist(suite: Suite) -> Path:
    """The suite's sdist unpacked under .ecosystem/src (downloaded once)."""
    target = WORK / "src" / f"{suite.name}-{suite.version}"
    if target.is_dir():
        return target
    download = WORK / "sdist"
    download.mkdir(parents=True, exist_ok=True)
    archive = next(download.glob(f"{suite.name}-{suite.version}.tar.gz"), None)
    if archive is None:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:",
                        "--no-deps", f"{suite.name}=={suite.version}", "-d", str(download)],
                       check=True, capture_output=True)
        archive = next(download.glob(f"{suite.name}-{suite.version}.tar.gz"))
    (WORK / "src").mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(WORK / "src", filter="data")
    return target


def source_of(suite: Suite) -> tuple[Path | None, str]:
    """Where the suite's tests are, or None and why not."""
    if suite.source == "sdist":
        path = fetch_sdist(suite)
        if not (path / "tests").is_dir():
            return None, f"the {suite.name} {suite.version} sdist ships no tests"
        return path, f"PyPI sdist {suite.name}-{suite.version}"
    given = os.environ.get(suite.source)
    if not given:
        return None, (f"its sdist ships no tests; set {suite.source} to a source snapshot of "
                      f"{suite.name} {suite.version} to run it")
    path = Path(given).expanduser().resolve()
    if not (path / "tests").is_dir():
        return None, f"{suite.source}={given} has no tests/ directory"
    found = _snapshot_version(path, suite.name)
    if found != suite.version:
        return None, (f"{suite.source}={given} is {suite.name} {found or 'of unknown version'}"
                      f", the pinned release is {suite.version}")
    return path, f"source snapshot {path}"


def _snapshot_version(path: Path, name: str) -> str | None:
    """The release a source snapshot is of, from its version module (websockets' layout)."""
    for candidate in (path / "src" / name / "version.py", path / name / "version.py"):
        if candidate.exists():
            match = re.search(r'^tag = version = commit = "([^"]+)"', candidate.read_text(), re.M)
            if match:
                return match.group(1)
    return None


PTH_LINE = ("import os; os.environ.get('CONVEYOR_ECOSYSTEM') == 'conveyor' and "
            "__import__('conveyor.testing.ecosystem_activate', fromlist=['activate']).activate()\n")


def install_pth() -> None:
    """A .pth line in this venv: every Python process started with CONVEYOR_ECOSYSTEM=conveyor
    (the suites' subprocesses included) makes conveyor its loop before any user code runs."""
    if sys.prefix == sys.base_prefix:
        raise SystemExit("run this from its own venv (scripts/ecosystem.sh makes one): it "
                         "adds a startup hook to the interpreter's site-packages")
    site = Path(sysconfig.get_paths()["purelib"])
    (site / "conveyor_ecosystem.pth").write_text(PTH_LINE)


def requirements(suite: Suite, source: Path | None) -> list[str]:
    reqs = [f"{suite.name}=={suite.version}", *suite.extra]
    pyproject = source / "pyproject.toml" if source else None
    if pyproject and pyproject.exists():
        groups = tomllib.loads(pyproject.read_text()).get("dependency-groups", {})
        for group in suite.groups:
            for req in groups.get(group, []):
                if not isinstance(req, str):
                    continue  # {include-group = ...}
                req = " ".join(req.split())
                name = re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0]
                if name.lower() == suite.name or TOOLING.match(name):
                    continue
                reqs.append(req)
    return reqs


def run_suite(suite: Suite, source: Path, mode: str) -> dict:
    report = REPORTS / f"{suite.name}-{mode}.json"
    report.unlink(missing_ok=True)
    env = dict(os.environ, CONVEYOR_ECOSYSTEM_REPORT=str(report), PYTHONDONTWRITEBYTECODE="1")
    env.pop("CONVEYOR_ECOSYSTEM", None)
    if mode == "conveyor":
        env["CONVEYOR_ECOSYSTEM"] = "conveyor"
    cmd = [sys.executable, "-m", "pytest", "-p", "conveyor.testing.ecosystem",
           "-p", "no:cacheprovider", "-q", *suite.args]
    output = REPORTS / f"{suite.name}-{mode}.log"
    started = time.monotonic()
    with open(output, "w") as out:
        try:
            result = subprocess.run(cmd, cwd=source, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, timeout=suite.timeout)
            code = result.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    elapsed = time.monotonic() - started
    tail = output.read_text().strip().splitlines()[-1:] or [""]
    log(f"   {mode:8} exit {code} in {elapsed:.0f}s: {tail[0]}   (log: {output.relative_to(REPO)})")
    if not report.exists():
        return {"error": f"no report (exit {code}); see {output}", "seconds": elapsed}
    data = json.loads(report.read_text())
    data["seconds"] = elapsed
    return data


def counts(run: dict) -> dict[str, int]:
    result = {"passed": 0, "failed": 0, "skipped": 0}
    for test in run.get("tests", {}).values():
        result[test["outcome"]] += 1
    return result


def not_on_conveyor(run: dict) -> tuple[list[str], list[str]]:
    """Tests that built or ran a loop other than conveyor's, and tests that ran no loop."""
    other, none = [], []
    for nodeid, test in run.get("tests", {}).items():
        if test["outcome"] == "skipped":
            continue
        loops = test["loops"]
        if any(n for kind, n in loops.items() if kind != "conveyor"):
            other.append(nodeid)
        elif not loops.get("conveyor"):
            none.append(nodeid)
    return other, none


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suites", nargs="*", help=f"which of {', '.join(SUITES)} (default: all)")
    parser.add_argument("--no-install", action="store_true",
                        help="skip pip (the venv is already set up)")
    options = parser.parse_args()
    unknown = set(options.suites) - set(SUITES)
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(sorted(unknown))}")
    REPORTS.mkdir(parents=True, exist_ok=True)
    chosen = [SUITES[name] for name in (options.suites or SUITES)]

    sources: dict[str, tuple[Path | None, str]] = {}
    for suite in chosen:
        sources[suite.name] = source_of(suite)
    if not options.no_install:
        log("== installing conveyor and the pinned libraries with their test dependencies")
        reqs = ["-e", str(REPO)]
        for suite in chosen:
            reqs += requirements(suite, sources[suite.name][0])
        pip(*reqs)
    install_pth()

    rows, failures, problems, both = [], [], [], []
    for suite in chosen:
        source, how = sources[suite.name]
        if source is None:
            log(f"== {suite.name} {suite.version}: not run ({how})")
            rows.append((suite.name, suite.version, None, None, how))
            continue
        log(f"== {suite.name} {suite.version} from {how}")
        stock = run_suite(suite, source, "asyncio")
        ours = run_suite(suite, source, "conveyor")
        if "error" in stock or "error" in ours:
            problems.append(f"{suite.name}: {stock.get('error') or ours.get('error')}")
            rows.append((suite.name, suite.version, None, None, "run failed"))
            continue
        other, none = not_on_conveyor(ours)
        rows.append((suite.name, suite.version, stock, ours, (other, none)))
        stock_tests = stock["tests"]
        for nodeid, test in sorted(ours["tests"].items()):
            if test["outcome"] != "failed":
                continue
            before = stock_tests.get(nodeid, {}).get("outcome", "not run")
            if before == "failed":
                both.append((suite.name, nodeid))
                continue
            reason = next((why for key, why in suite.known.items() if nodeid.startswith(key)),
                          None)
            failures.append((suite.name, nodeid, before, reason))

    log("")
    header = (f"{'suite':11} {'version':8} {'asyncio pass/fail/skip':>23} "
              f"{'conveyor pass/fail/skip':>24} {'not on conveyor':>16} {'no loop':>8} "
              f"{'time (asyncio/conveyor)':>24}")
    log(header)
    log("-" * len(header))
    for name, version, stock, ours, extra in rows:
        if stock is None:
            log(f"{name:11} {version:8} {'not run: ' + extra}")
            continue
        a, c = counts(stock), counts(ours)
        other, none = extra
        log(f"{name:11} {version:8} "
            f"{a['passed']:>9}/{a['failed']:>5}/{a['skipped']:>5}  "
            f"{c['passed']:>10}/{c['failed']:>5}/{c['skipped']:>5}  "
            f"{len(other):>16} {len(none):>8} "
            f"{stock['seconds']:>14.0f}s/{ours['seconds']:>6.0f}s")
    for name, version, stock, ours, extra in rows:
        if stock is not None and extra[0]:
            log(f"\n{name}: tests that built or ran a loop other than conveyor's:")
            for nodeid in extra[0]:
                loops = ours["tests"][nodeid]["loops"]
                log(f"   {nodeid}  {loops}")
    log("")
    if both:
        log("failing on both loops (this machine, not conveyor):")
        for name, nodeid in both:
            reason = next((why for pattern, why in BOTH_REASONS if pattern.search(nodeid)),
                          "fails on stock asyncio too: see the asyncio log")
            log(f"   {name}: {nodeid} - {reason}")
        log("")
    if failures:
        log("conveyor-only failures (fail on conveyor, not on stock asyncio):")
        for name, nodeid, before, reason in failures:
            log(f"   {name}: {nodeid} (asyncio: {before})" + (f" - {reason}" if reason else ""))
    else:
        log("conveyor-only failures: none")
    for problem in problems:
        log("problem:", problem)
    unexplained = [f for f in failures if f[3] is None]
    return 1 if unexplained or problems else 0


if __name__ == "__main__":
    sys.exit(main())
