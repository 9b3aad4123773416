"""CPython's test_asyncio.test_unix_events on conveyor: only `TestFork` (Python 3.12+).

The rest of that module tests the standard loop's Unix internals (its pipe transports and
signal plumbing through mocks, the child watchers) and is not imported. TestFork is about any
loop: a forked child must not inherit the parent's running loop, and a signal sent to a
forked child must not reach the parent's handlers (conveyor's signal wake-up fd included).
"""

import sys

import pytest

if sys.version_info < (3, 12):
    pytest.skip("CPython's TestFork is new in Python 3.12", allow_module_level=True)

from test.test_asyncio.test_unix_events import TestFork  # noqa: E402,F401 - collected

EXCLUDED: dict[str, str] = {}
