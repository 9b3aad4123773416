"""Runs CPython's own asyncio tests (`test.test_asyncio`) against conveyor.

Each `test_cpython_*.py` file here imports the CPython test classes of one module or area;
pytest collects them as unittest cases. This conftest makes them test conveyor and not the
standard loop, and applies each file's exclusions (see README.md):

- every test runs with `conveyor.EventLoopPolicy` installed, so `asyncio.new_event_loop()`,
  `asyncio.run()` and `unittest.IsolatedAsyncioTestCase` build conveyor loops;
- CPython's virtual-clock `TestLoop` (what `self.new_test_loop()` builds) is replaced by
  `conveyor.testing.VirtualClockLoop`, which honours the same generator contract;
- CPython's tests patch `asyncio.base_events.logger` (and selector_events', sslproto's, ...)
  to watch what the loop logs; conveyor logs to the same `logging.getLogger("asyncio")`, and
  here conveyor's module-level `logger` names are routed through those attributes so the
  patches see conveyor's log calls too;
- a test that builds a standard asyncio loop fails: it would not be testing conveyor. Give it
  a conveyor loop or exclude it, with the reason.

Per file, two module-level names:

    EXCLUDED = {"ClassName.test_name": "why it cannot apply to conveyor"}   # skipped, counted
    ONLY = {"ClassName": {"test_a", "test_b"}}   # the class's other tests belong to other files

The terminal summary prints "conformance [poller=...]: N passed, M excluded, ..." so the count
is visible in every run, and a failing included test fails the run like any other test.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import pkgutil
import sys
import warnings

import pytest

import conveyor
import conveyor.transports
from conveyor import poller as poller_mod
from conveyor.testing import VirtualClockLoop

from test.test_asyncio import utils as cpython_test_utils

EXCLUDED_PREFIX = "excluded from conformance: "


#: Where CPython's tests patch the standard loop's logger (all of them are, unpatched, the
#: same `logging.getLogger("asyncio")` object conveyor logs to).
_PATCHED_LOGGER_MODULES = ("base_events", "selector_events", "unix_events", "sslproto",
                           "base_subprocess", "log")


class _RoutedLogger:
    """A conveyor module's `logger`, resolved on every use through the standard loop's names.

    Unpatched, every name is the `asyncio` logger itself. When a test replaces one of them
    with a mock (`mock.patch('asyncio.base_events.logger')`), conveyor's log calls reach the
    mock exactly as the standard loop's would.
    """

    def __init__(self, real: logging.Logger) -> None:
        self._real = real

    def __getattr__(self, name):
        for module_name in _PATCHED_LOGGER_MODULES:
            module = importlib.import_module(f"asyncio.{module_name}")
            current = getattr(module, "logger", self._real)
            if current is not self._real:
                return getattr(current, name)
        return getattr(self._real, name)


def _route_conveyor_loggers() -> None:
    # Import the core and transport modules first (some are imported lazily by the loop).
    for package in (conveyor, conveyor.transports):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            if not info.ispkg and not info.name.rpartition(".")[2].startswith("_"):
                importlib.import_module(info.name)
    real = logging.getLogger("asyncio")
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith("conveyor") and getattr(module, "logger", None) is real:
            module.logger = _RoutedLogger(real)


_route_conveyor_loggers()
cpython_test_utils.TestLoop = VirtualClockLoop


def _set_policy(policy) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_event_loop_policy(policy)


def _is_conformance(item: pytest.Item) -> bool:
    """A test of a module that declares EXCLUDED: a CPython test file, or the harness check."""
    return hasattr(getattr(item, "module", None), "EXCLUDED")


@pytest.fixture(autouse=True)
def _conveyor_everywhere(request, monkeypatch):
    """Give the test conveyor loops, and fail it if it built a standard loop anyway."""
    if not _is_conformance(request.node):
        yield
        return
    standard_loops = []
    original_init = asyncio.BaseEventLoop.__init__

    def recording_init(self, *args, **kwargs):
        standard_loops.append(type(self).__name__)
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(asyncio.BaseEventLoop, "__init__", recording_init)
    _set_policy(conveyor.EventLoopPolicy())
    try:
        yield
    finally:
        _set_policy(None)
    if standard_loops:
        pytest.fail(f"the test built standard asyncio loop(s) {standard_loops}, so it did not "
                    "test conveyor: adapt it or list it in EXCLUDED with the reason",
                    pytrace=False)


def pytest_collection_modifyitems(config, items):
    kept, deselected = [], []
    for item in items:
        module = getattr(item, "module", None)
        cls = getattr(item, "cls", None)
        if module is None or cls is None or not _is_conformance(item):
            kept.append(item)
            continue
        name = getattr(item, "originalname", None) or item.name
        only = getattr(module, "ONLY", {}).get(cls.__name__)
        if only is not None and name not in only:
            deselected.append(item)
            continue
        reason = module.EXCLUDED.get(f"{cls.__name__}.{name}")
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=EXCLUDED_PREFIX + reason))
            item.user_properties.append(("conformance", "excluded"))
        kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def _poller_name() -> str:
    return os.environ.get("CONVEYOR_POLLER") or poller_mod.available()[0]


def pytest_terminal_summary(terminalreporter):
    counts = {"passed": 0, "excluded": 0, "skipped here": 0, "failed": 0}
    seen = False
    for key in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(key, []):
            if "test_cpython_" not in report.nodeid:
                continue  # the harness's own checks are not CPython tests
            seen = True
            if key == "passed" and report.when == "call":
                counts["passed"] += 1
            elif key in ("failed", "error"):
                counts["failed"] += 1
            elif key == "skipped":
                reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
                if EXCLUDED_PREFIX in str(reason):
                    counts["excluded"] += 1
                else:
                    counts["skipped here"] += 1
    if seen:
        summary = ", ".join(f"{n} {what}" for what, n in counts.items())
        terminalreporter.write_line(f"conformance [poller={_poller_name()}]: {summary}")
