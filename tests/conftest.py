"""What every test shares: the leak check, and a fresh conveyor loop that fails the test on
any exception-handler call.

A test module that needs a different loop (several loops, a virtual clock, other checks)
defines its own `loop` fixture, which takes precedence over this one; the leak check applies
to every test whatever its loop. The helpers the test files import (`run`, `wait_until`, ...)
are in tests/support.py.
"""

from __future__ import annotations

import gc

import pytest

import conveyor
from support import LEAK_KINDS, Leftovers, checked_loop


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "leaves(*kinds, reason): the test leaves these behind on purpose (kinds: "
        f"{', '.join(LEAK_KINDS)}), and the reason says why; the leak check skips them")


def _allowed_leaks(node: pytest.Item) -> set[str]:
    allowed = set()
    for mark in node.iter_markers("leaves"):
        unknown = set(mark.args) - set(LEAK_KINDS)
        if unknown or not mark.args or not mark.kwargs.get("reason"):
            pytest.fail(f"@pytest.mark.leaves takes kinds from {LEAK_KINDS} and a reason=, "
                        f"got {mark.args} {mark.kwargs}", pytrace=False)
        allowed.update(mark.args)
    return allowed


@pytest.fixture(autouse=True)
def leak_check(request):
    """Fail the test if it leaves an fd open, a thread running or a child process unreaped.

    Set up before (and so torn down after) the test's other function-scoped fixtures, its
    loop included. Longer-lived fixtures (module, session) are set up before the snapshot,
    so what they hold is not counted. A test that leaves something on purpose says so:
    `@pytest.mark.leaves("threads", reason="...")`.
    """
    before = Leftovers()
    yield
    leaks = before.since(allowed=_allowed_leaks(request.node))
    if leaks:
        pytest.fail("left behind by the test:\n  " + "\n  ".join(leaks), pytrace=False)


@pytest.fixture
def loop():
    """A new conveyor loop; afterwards, no exception-handler calls.

    Handler calls are kept in `loop.errors` so a test that expects one can inspect and
    clear them.
    """
    yield from checked_loop(conveyor.new_event_loop)


def pytest_collection_finish(session):
    """Move everything collection created (modules, test items, hypothesis' strategies) out
    of the garbage collector's sight. CPython's conformance tests call gc.collect() hundreds
    of times (test_task_del_collect: 100 per case, 9 cases), and each full collection walks
    the whole heap: in a process holding the collected suite that took 20-47 s per case.
    Objects the tests create are still collected as before."""
    gc.collect()
    gc.freeze()
