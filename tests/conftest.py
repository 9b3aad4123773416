"""The fixture most tests share: a fresh conveyor loop that fails the test on anything left
behind.

A test module that needs a different loop (several loops, a virtual clock, other checks)
defines its own `loop` fixture, which takes precedence over this one.
"""

from __future__ import annotations

import gc
import os

import pytest

import conveyor


@pytest.fixture
def loop():
    """A new conveyor loop; afterwards, no exception-handler calls and no leaked fds.

    Handler calls are kept in `loop.errors` so a test that expects one can inspect and
    clear them.
    """
    gc.collect()
    fds_before = set(os.listdir("/proc/self/fd"))
    loop = conveyor.new_event_loop()
    loop.errors = []
    loop.set_exception_handler(lambda _loop, context: loop.errors.append(context))
    yield loop
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()
    gc.collect()
    assert loop.errors == [], "unexpected exception handler calls"
    assert set(os.listdir("/proc/self/fd")) == fds_before, "file descriptors leaked"


def pytest_collection_finish(session):
    """Move everything collection created (modules, test items, hypothesis' strategies) out
    of the garbage collector's sight. CPython's conformance tests call gc.collect() hundreds
    of times (test_task_del_collect: 100 per case, 9 cases), and each full collection walks
    the whole heap: in a process holding the collected suite that took 20-47 s per case.
    Objects the tests create are still collected as before."""
    gc.collect()
    gc.freeze()
