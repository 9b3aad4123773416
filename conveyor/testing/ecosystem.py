"""Other projects' test suites with conveyor as the loop of every test.

conveyor promises to be a drop-in for asyncio's loop; the strongest check of that is the test
suites of the libraries people run on it (uvicorn, anyio, websockets, ...), run as their
authors run them, once on stock asyncio and once on conveyor. `scripts/ecosystem.py` drives
that; this module is the part that lives inside the test processes:

- `ecosystem_activate.activate()` makes every loop a process builds conveyor's: it installs conveyor's policy
  (so `asyncio.run`, `asyncio.new_event_loop`, `asyncio.Runner` without a factory,
  `IsolatedAsyncioTestCase` and anyio's asyncio backend make conveyor loops) and replaces the
  loop factories libraries pick themselves (uvicorn's `Config(loop="auto"|"asyncio")`). The
  ecosystem venv runs it from a `.pth` line whenever `CONVEYOR_ECOSYSTEM=conveyor`, so the
  subprocesses a suite starts (uvicorn's workers, reloaders) run on conveyor too.
- a pytest plugin (`pytest -p conveyor.testing.ecosystem`) that records, per test, its outcome
  and the loops it built or ran, by kind (conveyor, asyncio, uvloop), and writes them as JSON
  to `$CONVEYOR_ECOSYSTEM_REPORT`. A test that built or ran a loop other than conveyor's did
  not test conveyor, whatever its outcome; the driver counts those.

Loops are seen two ways, since a runner may build one loop and reuse it for many tests (anyio
does): when one is constructed, and each time one starts running (`_set_running_loop`, which
both conveyor's and asyncio's loops call on entering run_forever).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import defaultdict
from typing import Any

ENV_MODE = "CONVEYOR_ECOSYSTEM"
ENV_REPORT = "CONVEYOR_ECOSYSTEM_REPORT"

# ------------------------------------------------------------------------ the pytest plugin

_current = "<outside any test>"
_loops: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
_outcomes: dict[str, str] = {}


def _kind(loop: Any) -> str:
    import conveyor
    if isinstance(loop, conveyor.EventLoop):
        return "conveyor"
    module = type(loop).__module__ or ""
    if module.startswith("uvloop"):
        return "uvloop"
    if isinstance(loop, asyncio.BaseEventLoop):
        return "asyncio"
    return "other"


def _note(loop: Any) -> None:
    _loops[_current][_kind(loop)] += 1


def _watch_loops() -> None:
    """Wrap what every kind of loop goes through when built and when it starts running."""
    import conveyor

    def recording_init(original):
        def __init__(self, *args, **kwargs):
            _note(self)
            original(self, *args, **kwargs)
        return __init__

    conveyor.EventLoop.__init__ = recording_init(conveyor.EventLoop.__init__)
    asyncio.BaseEventLoop.__init__ = recording_init(asyncio.BaseEventLoop.__init__)
    try:
        import uvloop
    except ImportError:
        pass
    else:
        uvloop.Loop.__init__ = recording_init(uvloop.Loop.__init__)

    real_set_running = asyncio.events._set_running_loop

    def _set_running_loop(loop):
        if loop is not None:
            _note(loop)
        real_set_running(loop)

    # conveyor calls asyncio._set_running_loop; asyncio's loops call events._set_running_loop.
    asyncio._set_running_loop = _set_running_loop
    asyncio.events._set_running_loop = _set_running_loop


def pytest_configure(config) -> None:
    if os.environ.get(ENV_MODE) == "conveyor":
        from .ecosystem_activate import activate
        activate()
    _watch_loops()


def pytest_runtest_logstart(nodeid, location) -> None:
    global _current
    _current = nodeid


def pytest_runtest_logfinish(nodeid, location) -> None:
    global _current
    _current = "<outside any test>"


def pytest_runtest_logreport(report) -> None:
    previous = _outcomes.get(report.nodeid)
    if report.failed:
        outcome = "failed"
    elif report.skipped:
        outcome = "skipped"
    elif report.when == "call":
        outcome = "passed"
    else:
        return
    # Worst phase wins: a teardown error after a passing call is a failure.
    if previous == "failed" or (previous == "skipped" and outcome == "passed"):
        return
    _outcomes[report.nodeid] = outcome


def pytest_sessionfinish(session, exitstatus) -> None:
    path = os.environ.get(ENV_REPORT)
    if not path:
        return
    tests = {nodeid: {"outcome": outcome, "loops": dict(_loops.get(nodeid, {}))}
             for nodeid, outcome in _outcomes.items()}
    with open(path, "w") as f:
        json.dump({"mode": os.environ.get(ENV_MODE, "asyncio"), "exitstatus": int(exitstatus),
                   "tests": tests, "outside": dict(_loops.get("<outside any test>", {}))},
                  f, indent=1)
